//! What a node does with each publication of a room, given what it already holds: the pure
//! decision at the heart of recovery across nodes (no IO; the node carries it out).
//!
//! A node holds a room's history up to `last` under `epoch`. A publication is the next one
//! (commit it), an old one (a duplicate: a refill and the live channel can both bring it),
//! one past a gap (read the log from `last + 1` first: pub/sub dropped something), or of
//! another epoch (Redis lost the room and started over: reset, and tell the members).

use relaycast_shared::Epoch;

/// What to do with a publication numbered `seq` under `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The next message: into the history, out to the members.
    Commit,
    /// Already held: drop it.
    Duplicate,
    /// Messages `from..seq` are missing: read the log from `from` (this one comes with them).
    Refill { from: u64 },
    /// Another epoch: the history the node held is gone. Start over from the log's beginning
    /// under `epoch` (members are told `history_reset`).
    Reset { epoch: Epoch },
}

/// Where a node stands in a room's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: Epoch,
    /// The newest message held (0: none).
    pub last: u64,
}

impl Position {
    /// The step for a publication; `Commit` advances the position.
    pub fn step(&mut self, epoch: &Epoch, seq: u64) -> Step {
        if epoch != &self.epoch {
            return Step::Reset { epoch: epoch.clone() };
        }
        if seq <= self.last {
            return Step::Duplicate;
        }
        if seq > self.last + 1 {
            return Step::Refill { from: self.last + 1 };
        }
        self.last = seq;
        Step::Commit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn epoch(s: &str) -> Epoch {
        Epoch::try_from(s).unwrap()
    }

    #[test]
    fn next_old_gapped_and_foreign_publications() {
        let mut at = Position { epoch: epoch("e1"), last: 4 };
        assert_eq!(at.step(&epoch("e1"), 5), Step::Commit);
        assert_eq!(at.last, 5);
        assert_eq!(at.step(&epoch("e1"), 5), Step::Duplicate);
        assert_eq!(at.step(&epoch("e1"), 3), Step::Duplicate);
        assert_eq!(at.step(&epoch("e1"), 9), Step::Refill { from: 6 });
        assert_eq!(at.last, 5, "a gap moves nothing");
        assert_eq!(at.step(&epoch("e2"), 1), Step::Reset { epoch: epoch("e2") });
    }

    proptest! {
        /// Whatever order and repetition the live channel delivers in, committing in order and
        /// refilling each gap from a complete log leaves every message held exactly once, in
        /// order.
        #[test]
        fn every_message_is_held_once_in_order(arrivals in prop::collection::vec(1u64..40, 0..120)) {
            let e = epoch("e1");
            let mut at = Position { epoch: e.clone(), last: 0 };
            let mut held = Vec::new();
            for seq in arrivals {
                match at.step(&e, seq) {
                    Step::Commit => held.push(seq),
                    Step::Duplicate => {}
                    Step::Refill { from } => {
                        // The log has everything up to the newest publication.
                        for s in from..=seq {
                            prop_assert_eq!(at.step(&e, s), Step::Commit);
                            held.push(s);
                        }
                    }
                    Step::Reset { .. } => prop_assert!(false, "one epoch here"),
                }
            }
            let expected: Vec<u64> = (1..=at.last).collect();
            prop_assert_eq!(held, expected);
        }
    }
}

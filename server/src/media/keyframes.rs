//! Keyframes: when to ask a publisher for one, and when a viewer may see video again.
//!
//! A decoder can start only at a keyframe, and browsers send one rarely (seconds apart, or
//! only when asked). So a viewer who joins, or who lost frames, waits for a keyframe and the
//! relay asks the publisher for one (PLI). A hundred viewers joining at once must not become a
//! hundred requests: [`KeyframeGate`] sends at most one per interval and folds the rest into a
//! single deferred request, which a keyframe arriving in the meantime cancels.

use std::time::{Duration, Instant};

/// Rate limit of keyframe requests toward one publisher's video track.
#[derive(Debug, Clone)]
pub struct KeyframeGate {
    interval: Duration,
    last_sent: Option<Instant>,
    /// A request that came too soon after the last one, with when it was first wanted.
    pending_since: Option<Instant>,
}

/// What to do with a keyframe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Ask the publisher now.
    Send,
    /// Folded into a request the gate will send at its [`KeyframeGate::deadline`].
    Coalesced,
}

impl KeyframeGate {
    pub fn new(interval: Duration) -> Self {
        KeyframeGate { interval, last_sent: None, pending_since: None }
    }

    /// Someone wants a keyframe at `now`.
    pub fn request(&mut self, now: Instant) -> Decision {
        match self.last_sent {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.pending_since.get_or_insert(now);
                Decision::Coalesced
            }
            _ => {
                self.last_sent = Some(now);
                self.pending_since = None;
                Decision::Send
            }
        }
    }

    /// When the deferred request is due, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending_since?;
        Some(self.last_sent.map_or_else(Instant::now, |last| last + self.interval))
    }

    /// True when the deferred request is due at `now`: send it (the gate counts it as sent).
    pub fn poll(&mut self, now: Instant) -> bool {
        match self.deadline() {
            Some(due) if now >= due => {
                self.last_sent = Some(now);
                self.pending_since = None;
                true
            }
            _ => false,
        }
    }

    /// A keyframe came from the publisher at `now`: whoever asked before it has it.
    pub fn keyframe_arrived(&mut self, now: Instant) {
        if self.pending_since.is_some_and(|since| since <= now) {
            self.pending_since = None;
        }
    }
}

/// One viewer's video track: frames pass from a keyframe on, until frames are lost.
#[derive(Debug, Clone)]
pub struct VideoGate {
    waiting: bool,
}

impl Default for VideoGate {
    fn default() -> Self {
        VideoGate { waiting: true }
    }
}

impl VideoGate {
    /// Whether to forward a frame. Until a keyframe, the decoder could not use it.
    pub fn admit(&mut self, keyframe: bool) -> bool {
        if keyframe {
            self.waiting = false;
        }
        !self.waiting
    }

    /// Frames toward this viewer were lost: wait for the next keyframe.
    pub fn lost(&mut self) {
        self.waiting = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_request_goes_at_once_the_next_ones_fold_into_one() {
        let t0 = Instant::now();
        let mut gate = KeyframeGate::new(500 * MS);
        assert_eq!(gate.request(t0), Decision::Send);
        assert_eq!(gate.request(t0 + 10 * MS), Decision::Coalesced);
        assert_eq!(gate.request(t0 + 20 * MS), Decision::Coalesced);
        assert_eq!(gate.deadline(), Some(t0 + 500 * MS));
        assert!(!gate.poll(t0 + 499 * MS));
        assert!(gate.poll(t0 + 500 * MS));
        assert!(!gate.poll(t0 + 501 * MS), "sent once");
        assert_eq!(gate.deadline(), None);
    }

    #[test]
    fn a_keyframe_cancels_the_deferred_request() {
        let t0 = Instant::now();
        let mut gate = KeyframeGate::new(500 * MS);
        gate.request(t0);
        gate.request(t0 + 100 * MS);
        gate.keyframe_arrived(t0 + 200 * MS);
        assert!(!gate.poll(t0 + 600 * MS));
    }

    #[test]
    fn video_waits_for_a_keyframe_after_a_loss() {
        let mut gate = VideoGate::default();
        assert!(!gate.admit(false));
        assert!(gate.admit(true));
        assert!(gate.admit(false));
        gate.lost();
        assert!(!gate.admit(false));
        assert!(gate.admit(true));
    }

    proptest! {
        /// However many viewers ask, whenever: requests sent are at most one per interval
        /// (plus the first), and nobody who asked waits longer than an interval for a request.
        #[test]
        fn requests_are_spaced_and_nobody_is_forgotten(mut times in proptest::collection::vec(0u64..10_000, 1..300)) {
            times.sort_unstable();
            let t0 = Instant::now();
            let interval = 500 * MS;
            let mut gate = KeyframeGate::new(interval);
            let mut sent: Vec<u64> = Vec::new();
            let mut waiting_since: Option<u64> = None;
            let mut now = 0u64;
            let mut next = times.iter().peekable();
            while now <= 11_000 {
                if gate.poll(t0 + Duration::from_millis(now)) {
                    sent.push(now);
                    waiting_since = None;
                }
                while next.peek().is_some_and(|t| **t == now) {
                    next.next();
                    match gate.request(t0 + Duration::from_millis(now)) {
                        Decision::Send => { sent.push(now); waiting_since = None; }
                        Decision::Coalesced => { waiting_since.get_or_insert(now); }
                    }
                }
                if let Some(since) = waiting_since {
                    prop_assert!(now - since <= 500, "a request waited {} ms", now - since);
                }
                now += 1;
            }
            for pair in sent.windows(2) {
                prop_assert!(pair[1] - pair[0] >= 500, "two requests {} ms apart", pair[1] - pair[0]);
            }
            prop_assert!(sent.len() as u64 <= 1 + 11_000 / 500);
        }
    }
}

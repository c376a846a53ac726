//! How the chat's lines are laid out: consecutive messages from one sender within a few
//! minutes form a group (the name and time shown once), and a separator starts each day.
//! Pure: the local time zone comes in as an offset.

use super::room::Line;
use relaycast_shared::RoomMessage;

/// Messages further apart than this start a new group, even from the same sender.
pub const GROUP_GAP_MS: u64 = 5 * 60 * 1000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A row of the chat as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    /// The start of a local day (days since the Unix epoch, in local time).
    Day(i64),
    /// `lines[index]`; `continues` when it follows a message of the same group (its sender
    /// and time are not repeated).
    Line { index: usize, continues: bool },
}

/// The local day of a timestamp, with the zone `offset_ms` ahead of UTC.
pub fn local_day(at_ms: u64, offset_ms: i64) -> i64 {
    (at_ms as i64 + offset_ms).div_euclid(DAY_MS)
}

fn same_sender(a: &RoomMessage, b: &RoomMessage) -> bool {
    // A user (token mode) is one person across connections; in open mode the name is what
    // people see, and the peer id changes with every reconnect.
    match (&a.user, &b.user) {
        (Some(x), Some(y)) => x == y,
        (None, None) => a.name == b.name,
        _ => false,
    }
}

/// The rows for `lines`: day separators and groups.
pub fn rows(lines: &[Line], offset_ms: i64) -> Vec<Row> {
    let mut out = Vec::with_capacity(lines.len() + 2);
    let mut day = None;
    let mut previous: Option<&RoomMessage> = None;
    for (index, line) in lines.iter().enumerate() {
        match line {
            // An edit shows as the text of the message it changes, not as a line.
            Line::Message(m) if m.body.target().is_some() => {}
            Line::Message(m) => {
                let d = local_day(m.at, offset_ms);
                if day != Some(d) {
                    out.push(Row::Day(d));
                    day = Some(d);
                    previous = None;
                }
                let continues =
                    previous.is_some_and(|p| same_sender(p, m) && m.at.saturating_sub(p.at) <= GROUP_GAP_MS);
                out.push(Row::Line { index, continues });
                previous = Some(m);
            }
            Line::Notice(_) => {
                out.push(Row::Line { index, continues: false });
                previous = None;
            }
        }
    }
    out
}

/// A day separator's words, `today` being the local day now: "Today", "Yesterday", or the
/// date as the browser writes it (`date`).
pub fn day_label(day: i64, today: i64, date: impl FnOnce() -> String) -> String {
    match today - day {
        0 => "Today".into(),
        1 => "Yesterday".into(),
        _ => date(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::room::Notice;
    use relaycast_shared::*;

    fn m(seq: u64, name: &str, at: u64) -> Line {
        Line::Message(std::rc::Rc::new(RoomMessage {
            seq,
            from: PeerId::try_from(format!("p{seq}").as_str()).unwrap(),
            name: DisplayName::try_from(name).unwrap(),
            id: ClientMsgId::try_from(format!("m{seq}").as_str()).unwrap(),
            user: None,
            at,
            body: Body::Chat { text: ChatText::try_from("x").unwrap() },
        }))
    }

    const MIN: u64 = 60_000;
    const DAY: u64 = 24 * 60 * MIN;

    #[test]
    fn one_sender_within_minutes_is_one_group() {
        let t = 10 * DAY + 9 * 60 * MIN;
        let lines = [m(1, "Ada", t), m(2, "Ada", t + MIN), m(3, "Bob", t + 2 * MIN), m(4, "Bob", t + 20 * MIN)];
        let continues: Vec<bool> = rows(&lines, 0)
            .iter()
            .filter_map(|r| if let Row::Line { continues, .. } = r { Some(*continues) } else { None })
            .collect();
        assert_eq!(continues, [false, true, false, false], "a new sender and a long pause both start a group");
    }

    #[test]
    fn each_local_day_gets_a_separator() {
        // 23:30 and 00:30 UTC are one day in New York (UTC-5) and two in UTC.
        let late = 10 * DAY + 23 * 60 * MIN + 30 * MIN;
        let lines = [m(1, "Ada", late), m(2, "Ada", late + 60 * MIN)];
        let days = |offset| rows(&lines, offset).iter().filter(|r| matches!(r, Row::Day(_))).count();
        assert_eq!(days(0), 2);
        assert_eq!(days(-5 * 60 * MIN as i64), 1);
        // A new day also breaks the group.
        assert_eq!(rows(&lines, 0)[3], Row::Line { index: 1, continues: false });
    }

    #[test]
    fn edits_are_not_lines_and_do_not_break_a_group() {
        let edit = Line::Message(std::rc::Rc::new(RoomMessage {
            body: Body::Edit { of: 1, text: ChatText::try_from("y").unwrap() },
            ..match m(2, "Bob", MIN) {
                Line::Message(m) => (*m).clone(),
                _ => unreachable!(),
            }
        }));
        let lines = [m(1, "Ada", 0), edit, m(3, "Ada", 2 * MIN)];
        assert_eq!(
            rows(&lines, 0),
            vec![Row::Day(0), Row::Line { index: 0, continues: false }, Row::Line { index: 2, continues: true }]
        );
    }

    #[test]
    fn a_notice_breaks_a_group() {
        let lines = [m(1, "Ada", 0), Line::Notice(Notice::Reset), m(2, "Ada", MIN)];
        assert_eq!(rows(&lines, 0).last(), Some(&Row::Line { index: 2, continues: false }));
    }

    #[test]
    fn days_read_as_words_when_near() {
        assert_eq!(day_label(100, 100, || unreachable!()), "Today");
        assert_eq!(day_label(99, 100, || unreachable!()), "Yesterday");
        assert_eq!(day_label(90, 100, || "Mon 21 Nov".into()), "Mon 21 Nov");
        assert_eq!(local_day(0, -1), -1, "before midnight, the day before");
    }
}

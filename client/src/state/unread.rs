//! What the person has not seen yet: messages that arrived while the chat was not in view
//! (another tab of the side panel, or the browser tab hidden), for the badge and the title.

use super::room::RoomState;
use relaycast_shared::Body;

/// Messages after `seen_seq` from others (ours are seen; deleted ones are gone; an edit is
/// not a new message).
pub fn unread(state: &RoomState, seen_seq: u64) -> usize {
    state
        .messages()
        .filter(|m| m.seq > seen_seq && !state.is_mine(m) && m.body.target().is_none() && m.body != Body::Deleted)
        .count()
}

/// The browser tab's title: the room, with the unread count first when there is one.
pub fn title(room: &str, unread: usize) -> String {
    match unread {
        0 => format!("{room} · Relaycast"),
        n => format!("({n}) {room} · Relaycast"),
    }
}

/// The badge's text: a count, capped so it stays small.
pub fn badge(count: usize) -> Option<String> {
    match count {
        0 => None,
        1..=99 => Some(count.to_string()),
        _ => Some("99+".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::room::Action;
    use relaycast_shared::*;

    fn msg(seq: u64, from: &str, text: &str) -> RoomMessage {
        RoomMessage {
            seq,
            id: ClientMsgId::try_from(format!("{from}.{seq}").as_str()).unwrap(),
            from: PeerId::try_from(from).unwrap(),
            name: DisplayName::try_from(from).unwrap(),
            user: None,
            at: seq * 1000,
            body: Body::Chat { text: ChatText::try_from(text).unwrap() },
        }
    }

    #[test]
    fn counts_others_messages_after_the_last_seen() {
        let mut s = RoomState::new(RoomName::try_from("r").unwrap(), DisplayName::try_from("Ada").unwrap());
        s.client_id = Some("me".into());
        for message in [msg(1, "bob", "a"), msg(2, "bob", "b"), msg(3, "me", "mine"), msg(4, "bob", "c")] {
            s.apply(Action::Server(ServerMsg::Message { room: s.room.clone(), message }));
        }
        assert_eq!(unread(&s, 0), 3, "ours is not unread");
        assert_eq!(unread(&s, 2), 1);
        assert_eq!(unread(&s, 4), 0);
        assert_eq!(title("standup", 2), "(2) standup · Relaycast");
        assert_eq!(title("standup", 0), "standup · Relaycast");
        assert_eq!(badge(0), None);
        assert_eq!(badge(150).as_deref(), Some("99+"));
    }
}

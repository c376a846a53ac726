//! Token mode in the engine: identities from tokens, rights per room, expiry and refresh,
//! removals that hold.

use super::*;
use crate::auth::VerifyKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::json;

const SECRET: &[u8] = b"a test secret of at least thirty-two bytes";
const NOTICE: Millis = 60_000;
const GRACE: Millis = 10_000;

fn token_config() -> EngineConfig {
    let key = VerifyKey { kid: None, algorithm: Algorithm::HS256, key: DecodingKey::from_secret(SECRET).unwrap() };
    let verifier = Verifier::new(vec![key], "relaycast".into(), None, 5_000);
    EngineConfig {
        auth: Auth::Token(TokenAuth { verifier: Arc::new(verifier), expiry_notice_ms: NOTICE, expiry_grace_ms: GRACE }),
        grant: Some(GrantConfig { secret: b"g".to_vec(), ttl_ms: 3_600_000 }),
        ..EngineConfig::default()
    }
}

/// A token for `sub`, issued at `iat` (ms), valid `ttl` ms, with `rooms` (name → rights).
fn token(sub: &str, iat: Millis, ttl: Millis, rooms: serde_json::Value) -> AccessToken {
    let claims = json!({"sub": sub, "name": format!("{sub} (token)"), "aud": "relaycast",
        "iat": iat / 1000, "exp": (iat + ttl) / 1000, "rooms": rooms});
    let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET).unwrap())
        .unwrap();
    AccessToken::try_from(jwt).unwrap()
}

impl Sim {
    fn hello_with(&mut self, conn: ConnId, token: Option<AccessToken>) -> Vec<ServerMsg> {
        self.input(Input::Connected(conn, LOCAL));
        self.input(Input::Message(conn, ClientMsg::Hello { protocol: PROTOCOL_VERSION, token, client: None }));
        self.take(conn)
    }

    fn connect_as(&mut self, conn: ConnId, token: AccessToken) -> PeerId {
        match self.hello_with(conn, Some(token)).as_slice() {
            [ServerMsg::Welcome { peer_id, user: Some(_), .. }] => peer_id.clone(),
            other => panic!("expected welcome with a user, got {other:?}"),
        }
    }

    fn send(&mut self, conn: ConnId, msg: ClientMsg) -> Vec<ServerMsg> {
        self.input(Input::Message(conn, msg));
        self.take(conn)
    }
}

fn joined_rights(msgs: &[ServerMsg]) -> Option<Rights> {
    msgs.iter().find_map(|m| match m {
        ServerMsg::Joined { rights, .. } => Some(*rights),
        _ => None,
    })
}

fn rights(list: &str) -> Rights {
    Rights::parse_list(list).unwrap()
}

#[test]
fn token_mode_needs_a_genuine_unexpired_token_at_hello() {
    let mut sim = Sim::new(token_config());
    let now = sim.now;
    assert_eq!(codes(&sim.hello_with(1, None)), vec![ErrorCode::Unauthorized]);
    let forged = AccessToken::try_from(format!("{}x", token("u1", now, 600_000, json!({})).as_str())).unwrap();
    assert_eq!(codes(&sim.hello_with(2, Some(forged))), vec![ErrorCode::Unauthorized]);
    let expired = token("u1", now - 900_000, 60_000, json!({}));
    assert_eq!(codes(&sim.hello_with(3, Some(expired))), vec![ErrorCode::TokenExpired]);
    assert_eq!(
        sim.closed,
        vec![(1, ErrorCode::Unauthorized), (2, ErrorCode::Unauthorized), (3, ErrorCode::TokenExpired)]
    );
    let welcome = sim.hello_with(4, Some(token("u1", now, 600_000, json!({}))));
    let [ServerMsg::Welcome { user: Some(user), .. }] = welcome.as_slice() else { panic!("{welcome:?}") };
    assert_eq!((user.id.as_str(), user.name.as_str(), user.expires), ("u1", "u1 (token)", now + 600_000));
}

#[test]
fn rights_from_the_token_decide_join_history_publish_and_signal() {
    let mut sim = Sim::new(token_config());
    let now = sim.now;
    let all = json!({"r": ["join", "history", "publish", "signal"]});
    sim.connect_as(1, token("writer", now, 600_000, all));
    sim.join(1, "r", None);
    sim.publish(1, "r", "before");
    sim.persist();
    sim.take(1);

    let reader =
        sim.connect_as(2, token("reader", now, 600_000, json!({"r": ["join"], "team-*": ["join", "history"]})));
    // No right to another room; the name is the token's, whatever the client sends.
    assert_eq!(codes(&sim.join(2, "elsewhere", None)), vec![ErrorCode::Forbidden]);
    let joined = sim.join(2, "r", None);
    assert_eq!(joined_rights(&joined), Some(rights("join")));
    assert!(texts(&joined).is_empty(), "no history without the history right: {joined:?}");
    assert!(
        matches!(joined.last(), Some(ServerMsg::History { done: true, .. })),
        "the client still learns where live begins"
    );
    let seen = sim.take(1);
    let [ServerMsg::PeerJoined { peer, .. }] = seen.as_slice() else { panic!("{seen:?}") };
    assert_eq!(
        (peer.id.clone(), peer.name.as_str(), peer.user.as_ref().map(|u| u.as_str())),
        (reader.clone(), "reader (token)", Some("reader"))
    );

    sim.publish(2, "r", "sneaky");
    assert_eq!(codes(&sim.take(2)), vec![ErrorCode::Forbidden]);
    let signal =
        ClientMsg::Signal { room: room("r"), to: sim.engine.peers[&1].id.clone(), signal: Signal::EndOfCandidates };
    assert_eq!(codes(&sim.send(2, signal)), vec![ErrorCode::Forbidden]);
    sim.persist();
    assert!(sim.take(1).is_empty(), "nothing of the refused reached the room");

    // The writer's live message reaches the reader, with the writer's user id.
    sim.publish(1, "r", "live");
    sim.persist();
    let got = sim.take(2);
    assert_eq!(texts(&got), vec!["2:live"]);
    let ServerMsg::Message { message, .. } = &got[0] else { panic!() };
    assert_eq!(message.user.as_ref().map(|u| u.as_str()), Some("writer"));
    // A prefix pattern grants its rooms.
    assert_eq!(joined_rights(&sim.join(2, "team-blue", None)), Some(rights("join,history")));
}

#[test]
fn stream_keys_go_to_holders_of_the_broadcast_right_not_to_the_first_joiner() {
    let mut sim = Sim::new(token_config());
    let now = sim.now;
    let first = sim.connect_as(1, token("viewer", now, 600_000, json!({"stage": ["join", "watch"]})));
    let host = sim.connect_as(2, token("host", now, 600_000, json!({"stage": ["join", "watch", "broadcast"]})));
    let has_key = |msgs: &[ServerMsg]| msgs.iter().any(|m| matches!(m, ServerMsg::StreamKey { .. }));
    assert!(!has_key(&sim.join(1, "stage", None)), "first in, but no right to go live");
    assert!(has_key(&sim.join(2, "stage", None)));
    assert_eq!(sim.engine.rights_of(&room("stage"), &first), Some(rights("join,watch")));
    assert!(sim.engine.rights_of(&room("stage"), &host).is_some_and(|r| r.has(Right::Broadcast)));
    // The host leaves: no hand-over in token mode, and its rights end with the membership.
    sim.input(Input::Message(2, ClientMsg::Leave { room: room("stage") }));
    assert!(!has_key(&sim.take(1)));
    assert_eq!(sim.engine.rights_of(&room("stage"), &host), None);
}

#[test]
fn an_expiring_token_is_announced_and_refreshed_on_the_open_connection() {
    let mut sim = Sim::new(token_config());
    let start = sim.now;
    sim.connect_as(1, token("u1", start, 120_000, json!({"r": ["join", "history"]})));
    sim.join(1, "r", None);
    sim.now = start + 30_000;
    sim.input(Input::Tick);
    assert!(sim.take(1).is_empty(), "too early for a notice");
    sim.now = start + 61_000;
    sim.input(Input::Tick);
    sim.input(Input::Tick);
    assert_eq!(sim.take(1), vec![ServerMsg::TokenExpiring { expires: start + 120_000 }], "one notice, ahead of exp");

    // A token for someone else does not take over the connection; the old one holds.
    let other = sim.send(1, ClientMsg::Refresh { token: token("u2", sim.now, 600_000, json!({"r": ["join"]})) });
    assert_eq!(codes(&other), vec![ErrorCode::Forbidden]);

    // The new token adds publishing in r: the rights follow, then the acceptance.
    let fresh = token("u1", sim.now, 600_000, json!({"r": ["join", "history", "publish"]}));
    let got = sim.send(1, ClientMsg::Refresh { token: fresh });
    assert_eq!(
        got,
        vec![
            ServerMsg::Rights { room: room("r"), rights: rights("join,history,publish") },
            ServerMsg::TokenAccepted { expires: sim.now + 600_000 }
        ]
    );
    sim.publish(1, "r", "allowed-now");
    sim.persist();
    assert!(matches!(sim.take(1).as_slice(), [ServerMsg::Ack { seq: 1, .. }]));
    // Past the first token's expiry and grace, the connection lives on with the new one.
    sim.now = start + 120_000 + GRACE + 1_000;
    sim.input(Input::Tick);
    assert!(sim.closed.is_empty());

    // A refresh without the room: the member leaves it, told why.
    let narrower = token("u1", sim.now, 600_000, json!({"other": ["join"]}));
    let got = sim.send(1, ClientMsg::Refresh { token: narrower });
    assert!(got.iter().any(|m| matches!(m, ServerMsg::Removed { code: ErrorCode::Forbidden, .. })), "{got:?}");
    assert_eq!(codes(&sim.send(1, ClientMsg::Leave { room: room("r") })), vec![ErrorCode::NotJoined]);
}

#[test]
fn without_a_new_token_the_connection_is_closed_after_the_grace() {
    let mut sim = Sim::new(token_config());
    let start = sim.now;
    sim.connect_as(1, token("u1", start, 120_000, json!({"r": ["join"]})));
    sim.now = start + 120_000 + GRACE - 1_000;
    sim.input(Input::Tick);
    assert!(sim.closed.is_empty(), "still within the grace");
    sim.now = start + 120_000 + GRACE + 1_000;
    sim.input(Input::Tick);
    assert!(codes(&sim.take(1)).contains(&ErrorCode::TokenExpired));
    assert_eq!(sim.closed, vec![(1, ErrorCode::TokenExpired)]);
}

#[test]
fn a_moderator_removes_a_member_who_cannot_return_with_an_old_token() {
    let mut sim = Sim::new(token_config());
    let now = sim.now;
    sim.connect_as(1, token("mod", now, 600_000, json!({"r": ["join", "moderate"]})));
    let old = token("troll", now, 600_000, json!({"r": ["join", "publish"]}));
    let troll = sim.connect_as(2, old.clone());
    let bystander = sim.connect_as(3, token("by", now, 600_000, json!({"r": ["join"]})));
    for c in 1..=3 {
        sim.join(c, "r", None);
    }
    for c in 1..=3 {
        sim.take(c);
    }
    let reason = Reason::try_from("be nice").ok();
    let remove = |peer: &PeerId| ClientMsg::Remove { room: room("r"), peer: peer.clone(), reason: reason.clone() };
    // Only moderators remove.
    assert_eq!(codes(&sim.send(3, remove(&troll))), vec![ErrorCode::Forbidden]);
    sim.now += 1_000;
    sim.send(1, remove(&troll));
    assert_eq!(
        sim.take(2),
        vec![ServerMsg::Removed { room: room("r"), code: ErrorCode::Removed, reason: reason.clone() }]
    );
    assert!(sim.take(3).iter().any(|m| matches!(m, ServerMsg::PeerLeft { peer_id, .. } if *peer_id == troll)));
    // The same token (or a new connection with it) does not let them back in.
    assert_eq!(codes(&sim.join(2, "r", None)), vec![ErrorCode::Removed]);
    sim.connect_as(4, old);
    assert_eq!(codes(&sim.join(4, "r", None)), vec![ErrorCode::Removed]);
    // A token the app issues after the removal does.
    sim.now += 1_000;
    sim.connect_as(5, token("troll", sim.now, 600_000, json!({"r": ["join"]})));
    assert!(joined_rights(&sim.join(5, "r", None)).is_some());
    assert!(sim.engine.rights_of(&room("r"), &bystander).is_some());
}

#[test]
fn open_mode_gives_the_owner_its_rights_and_hands_them_over() {
    let grant = GrantConfig { secret: b"k".to_vec(), ttl_ms: 60_000 };
    let mut sim = Sim::new(EngineConfig { grant: Some(grant), ..EngineConfig::default() });
    let first = sim.connect(1);
    let second = sim.connect(2);
    sim.connect(3);
    let owner = joined_rights(&sim.join(1, "r", None)).unwrap();
    assert!(owner.has(Right::Broadcast) && owner.has(Right::Moderate) && owner.has(Right::Publish));
    let joined = sim.join(2, "r", None);
    assert_eq!(joined_rights(&joined), Some(Rights::member()));
    // Others see who the host is: in the list a joiner gets, and when it joins.
    let peers = joined.iter().find_map(|m| match m {
        ServerMsg::Joined { peers, .. } => Some(peers.clone()),
        _ => None,
    });
    assert_eq!(peers.unwrap().iter().map(|p| (&p.id, p.host)).collect::<Vec<_>>(), vec![(&first, true)]);
    assert!(sim
        .take(1)
        .iter()
        .any(|m| matches!(m, ServerMsg::PeerJoined { peer, .. } if peer.id == second && !peer.host)));
    sim.join(3, "r", None);
    sim.take(1);
    sim.take(2);
    // Tokens are not read in open mode; a refresh says so.
    assert_eq!(
        codes(&sim.send(2, ClientMsg::Refresh { token: AccessToken::try_from("x").unwrap() })),
        vec![ErrorCode::Unauthorized]
    );
    sim.input(Input::Message(1, ClientMsg::Leave { room: room("r") }));
    let got = sim.take(2);
    assert!(
        got.iter().any(|m| matches!(m, ServerMsg::Rights { rights, .. } if rights.has(Right::Broadcast))),
        "{got:?}"
    );
    assert!(got.iter().any(|m| matches!(m, ServerMsg::StreamKey { .. })));
    assert!(
        !got.iter().any(|m| matches!(m, ServerMsg::PeerUpdated { .. })),
        "the new host learns of itself by its rights: {got:?}"
    );
    assert!(sim.engine.rights_of(&room("r"), &second).is_some_and(|r| r.has(Right::Record)));
    let updates: Vec<_> = sim
        .take(3)
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::PeerUpdated { peer, .. } => Some((peer.id, peer.host)),
            _ => None,
        })
        .collect();
    assert_eq!(updates, vec![(second, true)], "the others learn who the host is now");
}

#[test]
fn the_apps_posts_are_sequenced_like_members_and_a_deleted_room_drops_them() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    sim.join(1, "r", None);
    sim.publish(1, "r", "first");
    let name = DisplayName::try_from("Bot").unwrap();
    let body = Body::Chat { text: ChatText::try_from("from the app").unwrap() };
    let seq = sim.engine.post_as_app(room("r"), name.clone(), None, body.clone(), 7, sim.now).unwrap();
    assert_eq!(seq, 2, "after the member's message");
    assert!(sim.posted.is_empty(), "not before it is durable");
    sim.persist();
    assert_eq!(sim.posted, vec![(7, Ok(2))]);
    let got = sim.take(1);
    assert_eq!(texts(&got), vec!["2:from the app"]);
    // Posted, then the room is closed with its history before the store wrote it.
    sim.engine.post_as_app(room("r"), name, None, body, 8, sim.now).unwrap();
    assert_eq!(sim.engine.close_room(&room("r"), None, true, false), Some(1));
    sim.collect();
    sim.persist();
    assert_eq!(sim.posted.last(), Some(&(8, Err(ErrorCode::RoomClosed))));
    assert!(sim.take(1).iter().any(|m| matches!(m, ServerMsg::Removed { code: ErrorCode::RoomClosed, .. })));
    assert!(sim.engine.history_page(&room("r"), 0, 10).is_none());
}

#[test]
fn authors_delete_their_own_messages_and_moderators_anyones() {
    let mut sim = Sim::new(token_config());
    let now = sim.now;
    let member = json!({"r": ["join", "history", "publish"]});
    sim.connect_as(1, token("ada", now, 600_000, member.clone()));
    sim.connect_as(2, token("bo", now, 600_000, member.clone()));
    sim.connect_as(3, token("mod", now, 600_000, json!({"r": ["join", "history", "moderate"]})));
    for c in 1..=3 {
        sim.join(c, "r", None);
    }
    sim.publish(1, "r", "ada-1");
    sim.publish(2, "r", "bo-1");
    sim.persist();
    for c in 1..=3 {
        sim.take(c);
    }
    let delete = |seq| ClientMsg::Delete { room: room("r"), seq };
    assert_eq!(codes(&sim.send(2, delete(1))), vec![ErrorCode::Forbidden], "not Bo's message");
    assert_eq!(codes(&sim.send(1, delete(9))), vec![ErrorCode::UnknownMessage]);
    // Ada deletes hers, from another connection of the same user (a reconnect).
    sim.connect_as(4, token("ada", now, 600_000, member));
    sim.join(4, "r", None);
    assert_eq!(sim.send(4, delete(1)), vec![ServerMsg::Deleted { room: room("r"), seq: 1 }]);
    assert!(sim.take(2).contains(&ServerMsg::Deleted { room: room("r"), seq: 1 }));
    // The moderator deletes Bo's.
    sim.send(3, delete(2));
    assert!(sim.take(2).contains(&ServerMsg::Deleted { room: room("r"), seq: 2 }));
    // What a late joiner sees: the tombstones, in place, without their text.
    sim.connect_as(5, token("late", now, 600_000, json!({"r": ["join", "history"]})));
    let joined = sim.join(5, "r", None);
    let history: Vec<&RoomMessage> = joined
        .iter()
        .flat_map(|m| match m {
            ServerMsg::History { messages, .. } => messages.iter().collect(),
            _ => vec![],
        })
        .collect();
    assert_eq!(
        history.iter().map(|m| (m.seq, &m.body)).collect::<Vec<_>>(),
        vec![(1, &Body::Deleted), (2, &Body::Deleted)]
    );
    assert_eq!(history[0].user.as_ref().map(|u| u.as_str()), Some("ada"), "who and when stay");
    sim.persist();
    assert!(sim.store.iter().any(|op| matches!(op, StoreOp::Replace { seq: 2, json, .. } if json.contains("deleted"))));
    // Each deletion is recorded after it, by whoever deleted: a client that was away when
    // they happened and resumes from where it was learns of them.
    let epoch = joined.iter().find_map(|m| match m {
        ServerMsg::Joined { epoch, .. } => Some(epoch.clone()),
        _ => None,
    });
    sim.connect_as(6, token("away", now, 600_000, json!({"r": ["join", "history"]})));
    let resumed = sim.join(6, "r", Some(ResumeFrom { epoch: epoch.unwrap(), last_seq: 2 }));
    let records: Vec<_> = resumed
        .iter()
        .flat_map(|m| match m {
            ServerMsg::History { messages, .. } => messages.iter().map(|m| (m.seq, &m.body, m.user.clone())).collect(),
            _ => vec![],
        })
        .collect();
    let user = |u: &str| Some(UserId::try_from(u).unwrap());
    assert_eq!(records, vec![(3, &Body::Deletion { of: 1 }, user("ada")), (4, &Body::Deletion { of: 2 }, user("mod"))]);
    // Deleting again records nothing more; a record is not deleted.
    sim.take(4);
    sim.take(3);
    assert_eq!(sim.send(4, delete(1)), vec![ServerMsg::Deleted { room: room("r"), seq: 1 }]);
    assert_eq!(codes(&sim.send(3, delete(3))), vec![ErrorCode::InvalidField]);
    sim.persist();
    assert!(sim.take(6).is_empty(), "no second record");
    // Nobody posts a tombstone or a record.
    for body in [Body::Deleted, Body::Deletion { of: 2 }] {
        let fake = ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from("x").unwrap(), body };
        assert_eq!(codes(&sim.send(4, fake)), vec![ErrorCode::InvalidField]);
    }
}

#[test]
fn authors_edit_their_own_chat_messages_as_sequenced_messages_and_deleting_takes_the_edits_along() {
    let mut sim = Sim::new(token_config());
    let now = sim.now;
    let member = json!({"r": ["join", "history", "publish"]});
    sim.connect_as(1, token("ada", now, 600_000, member.clone()));
    sim.connect_as(2, token("bo", now, 600_000, member.clone()));
    sim.connect_as(3, token("mod", now, 600_000, json!({"r": ["join", "history", "publish", "moderate"]})));
    for c in 1..=3 {
        sim.join(c, "r", None);
    }
    sim.publish(1, "r", "shipping-on-thursday");
    let data = ClientMsg::Publish {
        room: room("r"),
        id: ClientMsgId::try_from("d1").unwrap(),
        body: Body::Data { data: json!({"x": 1}) },
    };
    sim.send(1, data);
    sim.persist();
    for c in 1..=3 {
        sim.take(c);
    }
    let edit = |id: &str, of: u64, text: &str| ClientMsg::Publish {
        room: room("r"),
        id: ClientMsgId::try_from(id).unwrap(),
        body: Body::Edit { of, text: ChatText::try_from(text).unwrap() },
    };
    assert_eq!(codes(&sim.send(2, edit("e0", 1, "mine now"))), vec![ErrorCode::Forbidden], "not Bo's message");
    assert_eq!(
        codes(&sim.send(3, edit("e0", 1, "civil"))),
        vec![ErrorCode::Forbidden],
        "moderators delete, not rewrite"
    );
    assert_eq!(codes(&sim.send(1, edit("e0", 9, "x"))), vec![ErrorCode::UnknownMessage]);
    assert_eq!(codes(&sim.send(1, edit("e0", 2, "x"))), vec![ErrorCode::InvalidField], "only chat text is edited");
    // From another connection of the same user: accepted, sequenced, delivered, acked.
    sim.connect_as(4, token("ada", now, 600_000, member));
    sim.join(4, "r", None);
    sim.send(4, edit("e1", 1, "shipping on friday"));
    sim.persist();
    let got = sim.take(2);
    let edited = got.iter().find_map(|m| match m {
        ServerMsg::Message { message, .. } => Some(message.clone()),
        _ => None,
    });
    let edited = edited.expect("the room gets the edit");
    assert_eq!((edited.seq, edited.body.target()), (3, Some(1)));
    assert!(sim.take(4).iter().any(|m| matches!(m, ServerMsg::Ack { seq: 3, .. })));
    // A late joiner gets the original and the edit, in order.
    sim.connect_as(5, token("late", now, 600_000, json!({"r": ["join", "history"]})));
    let bodies = |sim: &mut Sim, c| -> Vec<(u64, Body)> {
        sim.join(c, "r", None)
            .into_iter()
            .flat_map(|m| match m {
                ServerMsg::History { messages, .. } => messages.into_iter().map(|m| (m.seq, m.body)).collect(),
                _ => vec![],
            })
            .collect()
    };
    let history = bodies(&mut sim, 5);
    assert_eq!(history.len(), 3);
    assert_eq!(history[2].1, Body::Edit { of: 1, text: ChatText::try_from("shipping on friday").unwrap() });
    // Deleting the message deletes its edits: no earlier or later text stays.
    sim.take(1);
    let got = sim.send(1, ClientMsg::Delete { room: room("r"), seq: 1 });
    assert_eq!(
        got,
        vec![ServerMsg::Deleted { room: room("r"), seq: 3 }, ServerMsg::Deleted { room: room("r"), seq: 1 }]
    );
    sim.connect_as(6, token("later", now, 600_000, json!({"r": ["join", "history"]})));
    let history = bodies(&mut sim, 6);
    assert_eq!(history[0].1, Body::Deleted);
    assert_eq!(history[2].1, Body::Deleted);
    assert!(!format!("{history:?}").contains("shipping"));
}

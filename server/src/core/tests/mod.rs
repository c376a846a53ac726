//! Engine scenarios with a fake clock: inputs in, decoded outputs checked per connection.

use super::*;
use std::collections::BTreeMap;

struct Sim {
    engine: Engine,
    now: Millis,
    /// Every frame each connection received, decoded, in order.
    inbox: BTreeMap<ConnId, Vec<ServerMsg>>,
    closed: Vec<(ConnId, ErrorCode)>,
    /// Reading paused (`true`) and resumed (`false`), per connection, in order.
    reading: Vec<(ConnId, bool)>,
    store: Vec<StoreOp>,
    /// The app's posts reported durable: (ticket, seq).
    posted: Vec<(u64, Result<u64, ErrorCode>)>,
}

/// The address every simulated connection comes from, unless a test says otherwise.
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

fn room(s: &str) -> RoomName {
    RoomName::try_from(s).unwrap()
}

impl Sim {
    fn new(config: EngineConfig) -> Self {
        Sim {
            engine: Engine::new(config, 7),
            now: 1_000_000,
            inbox: BTreeMap::new(),
            closed: vec![],
            reading: vec![],
            store: vec![],
            posted: vec![],
        }
    }

    fn input(&mut self, input: Input) {
        self.engine.handle(self.now, input);
        self.collect();
    }

    fn collect(&mut self) {
        let outputs: Vec<Output> = self.engine.drain_outputs().collect();
        for out in outputs {
            match out {
                Output::Deliver { to, frame } => {
                    for conn in to.as_slice() {
                        let msg = decode_server(frame.as_str()).expect("engine frames decode");
                        self.inbox.entry(*conn).or_default().push(msg);
                    }
                }
                Output::Close { conn, reason } => self.closed.push((conn, reason)),
                Output::Posted { ticket, seq, .. } => self.posted.push((ticket, seq)),
                Output::Cluster(op) => panic!("one machine asks no shared log: {op:?}"),
                Output::DeleteFiles { room } => panic!("one machine deletes files itself: {room}"),
                Output::PauseReading { conn } => self.reading.push((conn, true)),
                Output::ResumeReading { conn } => self.reading.push((conn, false)),
            }
        }
    }

    /// The store writes everything staged.
    fn persist(&mut self) {
        while let Some((batch, ops)) = self.engine.take_store_batch() {
            self.store.extend(ops);
            self.input(Input::Persisted(batch));
        }
    }

    fn take(&mut self, conn: ConnId) -> Vec<ServerMsg> {
        std::mem::take(self.inbox.entry(conn).or_default())
    }

    fn connect(&mut self, conn: ConnId) -> PeerId {
        self.input(Input::Connected(conn, LOCAL));
        self.input(Input::Message(conn, ClientMsg::hello()));
        match self.take(conn).as_slice() {
            [ServerMsg::Welcome { peer_id, .. }] => peer_id.clone(),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    fn join(&mut self, conn: ConnId, r: &str, resume: Option<ResumeFrom>) -> Vec<ServerMsg> {
        let name = DisplayName::try_from(format!("user{conn}")).unwrap();
        self.input(Input::Message(conn, ClientMsg::Join { room: room(r), name, token: None, resume }));
        self.take(conn)
    }

    fn publish(&mut self, conn: ConnId, r: &str, text: &str) {
        let body = Body::Chat { text: ChatText::try_from(text).unwrap() };
        let id = ClientMsgId::try_from(format!("m-{text}")).unwrap();
        self.input(Input::Message(conn, ClientMsg::Publish { room: room(r), id, body }));
    }
}

fn texts(msgs: &[ServerMsg]) -> Vec<String> {
    let mut out = vec![];
    for m in msgs {
        let list = match m {
            ServerMsg::History { messages, .. } => messages.iter().collect::<Vec<_>>(),
            ServerMsg::Message { message, .. } => vec![message],
            _ => vec![],
        };
        for m in list {
            if let Body::Chat { text } = &m.body {
                out.push(format!("{}:{}", m.seq, text));
            }
        }
    }
    out
}

fn codes(msgs: &[ServerMsg]) -> Vec<ErrorCode> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn join_presence_broadcast_and_ack() {
    let mut sim = Sim::new(EngineConfig::default());
    let a = sim.connect(1);
    let b = sim.connect(2);
    let joined = sim.join(1, "r", None);
    assert!(matches!(&joined[0], ServerMsg::Joined { peers, last_seq: 0, .. } if peers.is_empty()));
    assert!(matches!(&joined[1], ServerMsg::History { messages, done: true, .. } if messages.is_empty()));
    let joined = sim.join(2, "r", None);
    assert!(matches!(&joined[0], ServerMsg::Joined { peers, .. } if peers.len() == 1 && peers[0].id == a));
    assert!(matches!(&sim.take(1)[..], [ServerMsg::PeerJoined { peer, .. }] if peer.id == b));

    sim.publish(1, "r", "hi");
    assert!(sim.take(2).is_empty(), "nothing is delivered before it is durable");
    assert!(sim.take(1).is_empty(), "nor acked");
    sim.persist();
    assert_eq!(texts(&sim.take(2)), vec!["1:hi"]);
    assert!(matches!(&sim.take(1)[..], [ServerMsg::Ack { seq: 1, id, .. }] if id.as_str() == "m-hi"));
    assert!(sim.store.iter().any(|op| matches!(op, StoreOp::Append { seq: 1, .. })));

    sim.input(Input::Disconnected(2));
    assert!(matches!(&sim.take(1)[..], [ServerMsg::PeerLeft { peer_id, .. }] if *peer_id == b));
}

#[test]
fn signaling_goes_only_to_the_named_peer_in_the_same_room() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    let b = sim.connect(2);
    let c = sim.connect(3);
    sim.join(1, "r", None);
    sim.join(2, "r", None);
    sim.join(3, "other", None);
    sim.take(1);
    let offer = Signal::Offer { sdp: "v=0".into() };
    sim.input(Input::Message(1, ClientMsg::Signal { room: room("r"), to: b.clone(), signal: offer.clone() }));
    assert!(matches!(&sim.take(2)[..], [ServerMsg::Signal { signal, .. }] if *signal == offer));
    // Peer 3 exists but is in another room: refused, nothing leaks across rooms.
    sim.input(Input::Message(1, ClientMsg::Signal { room: room("r"), to: c, signal: offer.clone() }));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::UnknownPeer]);
    assert!(sim.take(3).is_empty());
    // Naming a room one is not in is refused too.
    sim.input(Input::Message(1, ClientMsg::Signal { room: room("other"), to: b, signal: offer }));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::NotJoined]);
}

#[test]
fn sequence_is_gapless_across_senders_and_batches() {
    let mut sim = Sim::new(EngineConfig::default());
    for conn in 1..=3 {
        sim.connect(conn);
        sim.join(conn, "r", None);
    }
    sim.connect(9);
    sim.join(9, "r", None);
    sim.take(1);
    sim.take(2);
    sim.take(3);
    sim.take(9);
    for i in 0..30 {
        sim.publish(1 + i % 3, "r", &format!("t{i}"));
        if i % 7 == 0 {
            sim.persist();
        }
    }
    sim.persist();
    let seqs: Vec<u64> = sim
        .take(9)
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Message { message, .. } => Some(message.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=30).collect::<Vec<_>>());
}

#[test]
fn late_joiner_gets_history_then_live_with_no_gap_or_duplicate() {
    let mut sim = Sim::new(EngineConfig { history_batch: 4, ..EngineConfig::default() });
    sim.connect(1);
    sim.join(1, "r", None);
    for i in 1..=10 {
        sim.publish(1, "r", &format!("t{i}"));
    }
    sim.persist();
    // Two more are accepted but not yet durable when the late joiner arrives.
    sim.publish(1, "r", "t11");
    sim.publish(1, "r", "t12");
    sim.connect(2);
    let joined = sim.join(2, "r", None);
    assert!(matches!(&joined[0], ServerMsg::Joined { last_seq: 10, .. }));
    let batches: Vec<(usize, bool)> = joined
        .iter()
        .filter_map(|m| match m {
            ServerMsg::History { messages, done, .. } => Some((messages.len(), *done)),
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![(4, false), (4, false), (2, true)]);
    sim.persist();
    let mut all = texts(&joined);
    all.extend(texts(&sim.take(2)));
    let expected: Vec<String> = (1..=12).map(|i| format!("{i}:t{i}")).collect();
    assert_eq!(all, expected);
}

#[test]
fn resume_gets_exactly_what_was_missed() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    let joined = sim.join(1, "r", None);
    let ServerMsg::Joined { epoch, .. } = &joined[0] else { panic!() };
    let epoch = epoch.clone();
    for i in 1..=5 {
        sim.publish(1, "r", &format!("t{i}"));
    }
    sim.persist();
    sim.connect(2);
    let msgs = sim.join(2, "r", Some(ResumeFrom { epoch, last_seq: 3 }));
    assert!(!msgs.iter().any(|m| matches!(m, ServerMsg::HistoryTruncated { .. } | ServerMsg::HistoryReset { .. })));
    assert_eq!(texts(&msgs), vec!["4:t4", "5:t5"]);
}

#[test]
fn resume_past_eviction_says_truncated_then_sends_the_rest() {
    let config = EngineConfig {
        history: HistoryLimits { max_messages: 3, ..EngineConfig::default().history },
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.connect(1);
    let ServerMsg::Joined { epoch, .. } = sim.join(1, "r", None).remove(0) else { panic!() };
    for i in 1..=8 {
        sim.publish(1, "r", &format!("t{i}"));
    }
    sim.persist();
    assert!(sim.store.iter().any(|op| matches!(op, StoreOp::Trim { through_seq: 5, .. })));
    sim.connect(2);
    let msgs = sim.join(2, "r", Some(ResumeFrom { epoch, last_seq: 2 }));
    assert!(matches!(msgs[1], ServerMsg::HistoryTruncated { requested_after: 2, oldest_available: 6, .. }));
    assert_eq!(texts(&msgs), vec!["6:t6", "7:t7", "8:t8"]);
}

#[test]
fn resume_with_an_unknown_epoch_is_reset_not_silent() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    sim.join(1, "r", None);
    sim.publish(1, "r", "t1");
    sim.persist();
    sim.connect(2);
    let old = Epoch::try_from("gone").unwrap();
    let msgs = sim.join(2, "r", Some(ResumeFrom { epoch: old, last_seq: 40 }));
    assert!(matches!(&msgs[1], ServerMsg::HistoryReset { .. }));
    assert_eq!(texts(&msgs), vec!["1:t1"]);
}

#[test]
fn restored_history_keeps_epoch_and_sequence() {
    let mut sim = Sim::new(EngineConfig::default());
    let epoch = Epoch::try_from("e1").unwrap();
    let entry = |seq: u64| {
        let m = RoomMessage {
            seq,
            from: PeerId::try_from("p").unwrap(),
            name: DisplayName::try_from("n").unwrap(),
            id: ClientMsgId::try_from("i").unwrap(),
            user: None,
            at: sim.now,
            body: Body::Chat { text: ChatText::try_from(format!("t{seq}")).unwrap() },
        };
        Entry { seq, at: m.at, json: encode_room_message(&m).into(), blob: None }
    };
    let messages = vec![entry(4), entry(5)];
    sim.engine.restore(vec![RestoredRoom { room: room("r"), epoch: epoch.clone(), messages, host: None }], sim.now);
    sim.connect(1);
    let msgs = sim.join(1, "r", Some(ResumeFrom { epoch, last_seq: 4 }));
    assert!(matches!(&msgs[0], ServerMsg::Joined { last_seq: 5, .. }));
    assert_eq!(texts(&msgs), vec!["5:t5"]);
    sim.publish(1, "r", "t6");
    sim.persist();
    assert!(matches!(&sim.take(1)[..], [ServerMsg::Ack { seq: 6, .. }]));
}

#[test]
fn history_expires_by_age_and_empty_rooms_are_dropped() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    sim.join(1, "r", None);
    sim.publish(1, "r", "old");
    sim.persist();
    sim.input(Input::Disconnected(1));
    sim.input(Input::Tick);
    assert_eq!(sim.engine.room_count(), 1, "kept while its history lives");
    sim.now += EngineConfig::default().history.max_age_ms + 1;
    sim.input(Input::Tick);
    sim.persist();
    assert_eq!(sim.engine.room_count(), 0);
    assert!(sim.store.iter().any(|op| matches!(op, StoreOp::DropRoom { .. })));
}

#[test]
fn requests_before_hello_or_join_are_refused_and_the_connection_stays() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.input(Input::Connected(1, LOCAL));
    sim.input(Input::Message(1, ClientMsg::Leave { room: room("r") }));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::HelloRequired]);
    sim.input(Input::Message(1, ClientMsg::hello()));
    sim.take(1);
    sim.input(Input::Message(1, ClientMsg::hello()));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::AlreadyGreeted]);
    sim.publish(1, "r", "x");
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::NotJoined]);
    sim.input(Input::BinaryFrame(1));
    sim.input(Input::BadFrame(1, DecodeError::UnknownType("x".into())));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::BinaryUnsupported, ErrorCode::UnknownType]);
    assert!(sim.closed.is_empty());
}

#[test]
fn wrong_protocol_version_is_refused_and_closed() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.input(Input::Connected(1, LOCAL));
    sim.input(Input::Message(1, ClientMsg::Hello { protocol: 99, token: None, client: None }));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::UnsupportedProtocol]);
    assert_eq!(sim.closed, vec![(1, ErrorCode::UnsupportedProtocol)]);
}

#[test]
fn flood_is_rate_limited_without_losing_the_connection() {
    let config = EngineConfig { messages_per_second: 10, message_burst: 5, ..EngineConfig::default() };
    let mut sim = Sim::new(config);
    sim.connect(1);
    sim.join(1, "r", None);
    for i in 0..20 {
        sim.publish(1, "r", &format!("f{i}"));
    }
    sim.persist();
    let msgs = sim.take(1);
    let acks = msgs.iter().filter(|m| matches!(m, ServerMsg::Ack { .. })).count();
    assert_eq!(acks, 5);
    assert_eq!(codes(&msgs).iter().filter(|c| **c == ErrorCode::RateLimited).count(), 15);
    sim.now += 1000;
    sim.publish(1, "r", "later");
    sim.persist();
    assert!(matches!(&sim.take(1)[..], [ServerMsg::Ack { seq: 6, .. }]));
}

#[test]
fn limits_on_rooms_and_peers() {
    let config = EngineConfig { max_peers_per_room: 1, max_rooms_per_connection: 1, ..EngineConfig::default() };
    let mut sim = Sim::new(config);
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "r", None);
    assert_eq!(codes(&sim.join(2, "r", None)), vec![ErrorCode::RoomFull]);
    assert_eq!(codes(&sim.join(1, "r", None)), vec![ErrorCode::AlreadyJoined]);
    assert_eq!(codes(&sim.join(1, "s", None)), vec![ErrorCode::TooManyRooms]);
}

#[test]
fn overload_refuses_instead_of_queueing_without_bound() {
    let mut sim = Sim::new(EngineConfig { max_unpersisted: 2, ..EngineConfig::default() });
    sim.connect(1);
    sim.join(1, "r", None);
    for i in 0..3 {
        sim.publish(1, "r", &format!("o{i}"));
    }
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::Overloaded]);
    sim.persist();
    assert_eq!(sim.take(1).iter().filter(|m| matches!(m, ServerMsg::Ack { .. })).count(), 2);
}

#[test]
fn a_connection_at_its_own_unpersisted_limit_is_paused_not_refused_and_others_go_on() {
    let config = EngineConfig {
        max_unpersisted: 5,
        max_unpersisted_per_connection: 3,
        messages_per_second: 0,
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "r", None);
    sim.join(2, "r", None);
    for i in 0..3 {
        sim.publish(1, "r", &format!("a{i}"));
    }
    assert_eq!(sim.reading, vec![(1, true)], "paused at its third message waiting for the store");
    // A frame the transport had already read still counts; nothing is refused.
    sim.publish(1, "r", "a3");
    assert_eq!(sim.reading, vec![(1, true)], "paused once");
    // The server-wide limit (5) still has room for another connection.
    sim.publish(2, "r", "b0");
    assert!(codes(&sim.take(1)).is_empty() && codes(&sim.take(2)).is_empty());
    sim.persist();
    assert_eq!(sim.reading, vec![(1, true), (1, false)], "resumed once durable");
    let acks = sim.take(1).iter().filter(|m| matches!(m, ServerMsg::Ack { .. })).count();
    assert_eq!(acks, 4);
    // A connection that leaves while paused is simply forgotten.
    for i in 0..3 {
        sim.publish(2, "r", &format!("b{}", i + 1));
    }
    assert_eq!(sim.reading.last(), Some(&(2, true)));
    sim.input(Input::Disconnected(2));
    sim.persist();
    assert_eq!(sim.reading.last(), Some(&(2, true)), "no resume for a connection that is gone");
}

#[test]
fn slow_consumer_is_closed_and_announced_as_left() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    let slow = sim.connect(2);
    sim.join(1, "r", None);
    sim.join(2, "r", None);
    sim.take(1);
    sim.input(Input::QueueFull(2));
    assert_eq!(sim.closed, vec![(2, ErrorCode::SlowConsumer)]);
    assert!(matches!(&sim.take(1)[..], [ServerMsg::PeerLeft { peer_id, .. }] if *peer_id == slow));
    assert_eq!(sim.engine.stats().dropped_slow_clients, 1);
    // The transport reports the disconnect later: nothing happens twice.
    sim.input(Input::Disconnected(2));
    assert!(sim.take(1).is_empty());
    assert_eq!(sim.engine.connection_count(), 1);
}

#[test]
fn a_message_is_durable_even_if_its_sender_leaves_before_the_commit() {
    let mut sim = Sim::new(EngineConfig::default());
    sim.connect(1);
    sim.connect(2);
    sim.join(1, "r", None);
    sim.join(2, "r", None);
    sim.take(1);
    sim.publish(1, "r", "bye");
    sim.input(Input::Disconnected(1));
    sim.persist();
    assert_eq!(texts(&sim.take(2)), vec!["1:bye"]);
}

#[test]
fn store_batches_are_capped_and_keep_order() {
    let mut sim = Sim::new(EngineConfig { max_unpersisted: 10_000, messages_per_second: 0, ..EngineConfig::default() });
    sim.connect(1);
    sim.join(1, "r", None);
    sim.connect(2);
    sim.join(2, "r", None);
    sim.take(1);
    let n = MAX_BATCH_OPS + 500;
    for i in 0..n {
        sim.publish(1, "r", &format!("b{i}"));
    }
    let (first, ops) = sim.engine.take_store_batch().unwrap();
    assert_eq!(ops.len(), MAX_BATCH_OPS, "capped");
    assert!(matches!(ops[0], StoreOp::CreateRoom { .. }), "the room is created in the first batch");
    sim.input(Input::Persisted(first));
    assert_eq!(sim.take(2).len(), MAX_BATCH_OPS - 1);
    sim.persist();
    let seqs: Vec<u64> = sim
        .take(2)
        .iter()
        .filter_map(|m| if let ServerMsg::Message { message, .. } = m { Some(message.seq) } else { None })
        .collect();
    assert_eq!(seqs, (MAX_BATCH_OPS as u64..=n as u64).collect::<Vec<_>>());
}

#[test]
fn welcome_carries_turn_credentials_minted_for_the_peer() {
    let turn = TurnConfig { urls: vec!["turn:127.0.0.1:3478".into()], secret: "s3cret".into(), ttl_secs: 600 };
    let stun = IceServer { urls: vec!["stun:127.0.0.1:3478".into()], username: None, credential: None };
    let mut sim =
        Sim::new(EngineConfig { turn: Some(turn), ice_servers: vec![stun.clone()], ..EngineConfig::default() });
    sim.input(Input::Connected(1, LOCAL));
    sim.input(Input::Message(1, ClientMsg::hello()));
    let ServerMsg::Welcome { peer_id, ice_servers, .. } = sim.take(1).remove(0) else { panic!() };
    assert_eq!(ice_servers[0], stun);
    let expiry = sim.now / 1000 + 600;
    assert_eq!(ice_servers[1].username, Some(format!("{expiry}:{peer_id}")));
    assert!(ice_servers[1].credential.as_ref().is_some_and(|c| c.len() == 28), "base64 of 20 bytes");
}

#[test]
fn join_is_followed_by_a_grant_for_the_room() {
    let grant = GrantConfig { secret: b"k".to_vec(), ttl_ms: 60_000 };
    let mut sim = Sim::new(EngineConfig { grant: Some(grant.clone()), ..EngineConfig::default() });
    let me = sim.connect(1);
    let msgs = sim.join(1, "r", None);
    let Some(ServerMsg::Grant { token, expires, .. }) = msgs.iter().find(|m| matches!(m, ServerMsg::Grant { .. }))
    else {
        panic!("no grant in {msgs:?}")
    };
    assert_eq!(*expires, sim.now + 60_000);
    assert_eq!(grant.verify(&room("r"), token, sim.now), Ok(me));
}

#[test]
fn file_messages_need_a_stored_blob_which_stays_pinned_while_referenced() {
    let config = EngineConfig {
        history: HistoryLimits { max_messages: 2, ..EngineConfig::default().history },
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config);
    sim.connect(1);
    sim.join(1, "r", None);
    let hash = BlobHash::try_from("a".repeat(64)).unwrap();
    let file = Body::File {
        hash: hash.clone(),
        name: FileName::try_from("a.txt").unwrap(),
        size: 1,
        mime: MediaType::try_from("text/plain").unwrap(),
    };
    let publish =
        |id: &str| ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from(id).unwrap(), body: file.clone() };
    sim.input(Input::Message(1, publish("f1")));
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::UnknownBlob]);
    sim.input(Input::BlobStored(hash.clone()));
    sim.input(Input::Message(1, publish("f2")));
    sim.persist();
    assert!(sim.engine.is_pinned(&hash));
    // Two newer messages push the file message out of the history: the blob is free to go.
    sim.publish(1, "r", "a");
    sim.publish(1, "r", "b");
    sim.persist();
    assert!(!sim.engine.is_pinned(&hash));
}

#[test]
fn a_connection_that_never_says_hello_is_closed_at_the_hello_timeout() {
    let config = EngineConfig { hello_timeout_ms: 5_000, ..EngineConfig::default() };
    let mut sim = Sim::new(config);
    sim.input(Input::Connected(1, LOCAL));
    sim.connect(2);
    sim.now += 4_999;
    sim.input(Input::Tick);
    assert!(sim.closed.is_empty(), "not yet");
    sim.now += 1;
    sim.input(Input::Tick);
    assert_eq!(sim.closed, vec![(1, ErrorCode::HelloTimeout)], "only the silent one");
    assert_eq!(codes(&sim.take(1)), vec![ErrorCode::HelloTimeout]);
    assert_eq!(sim.engine.connection_count(), 1);
    assert_eq!(sim.engine.stats().hello_timeouts, 1);
}

#[test]
fn join_and_leave_churn_is_rate_limited_and_costs_no_store_write() {
    let config = EngineConfig { joins: Rate::per_second(2, 4), ..EngineConfig::default() };
    let mut sim = Sim::new(config);
    sim.connect(1);
    for _ in 0..2 {
        sim.join(1, "churn", None);
        sim.input(Input::Message(1, ClientMsg::Leave { room: room("churn") }));
    }
    assert!(matches!(sim.take(1).as_slice(), [.., ServerMsg::Left { .. }]));
    let refused = sim.join(1, "churn", None);
    assert_eq!(codes(&refused), vec![ErrorCode::RateLimited], "the burst of 4 is spent");
    sim.persist();
    assert!(sim.store.is_empty(), "a room without messages never reaches the store: {:?}", sim.store);
    assert_eq!(sim.engine.room_count(), 0, "an empty room without history is freed at once");
    // Half a second later, one more join.
    sim.now += 500;
    assert!(matches!(sim.join(1, "churn", None).first(), Some(ServerMsg::Joined { .. })));
    // The first message stores the room, then the message.
    sim.publish(1, "churn", "counts");
    sim.persist();
    assert!(matches!(&sim.store[..], [StoreOp::CreateRoom { .. }, StoreOp::Append { seq: 1, .. }]), "{:?}", sim.store);
}

#[test]
fn one_address_cannot_fill_the_servers_rooms() {
    let config = EngineConfig {
        room_creation: Rate::per_minute(3, 3),
        max_rooms_per_addr: 4,
        joins: Rate::per_second(0, 0),
        ..EngineConfig::default()
    };
    let mut sim = Sim::new(config);
    let attacker: IpAddr = "203.0.113.9".parse().unwrap();
    let neighbour: IpAddr = "2001:db8:5:6::1".parse().unwrap();
    let same_network: IpAddr = "2001:db8:5:6::2".parse().unwrap();
    for (conn, addr) in [(1, attacker), (2, LOCAL), (3, neighbour), (4, same_network)] {
        sim.input(Input::Connected(conn, addr));
        sim.input(Input::Message(conn, ClientMsg::hello()));
        sim.take(conn);
    }
    let join_and_keep = |sim: &mut Sim, conn: ConnId, r: &str| {
        let msgs = sim.join(conn, r, None);
        if matches!(msgs.first(), Some(ServerMsg::Joined { .. })) {
            // A message keeps the room alive after its members leave.
            sim.publish(conn, r, "x");
            sim.persist();
            sim.input(Input::Message(conn, ClientMsg::Leave { room: room(r) }));
            sim.take(conn);
            None
        } else {
            codes(&msgs).first().copied()
        }
    };
    for i in 0..3 {
        assert_eq!(join_and_keep(&mut sim, 1, &format!("a{i}")), None);
    }
    assert_eq!(join_and_keep(&mut sim, 1, "a3"), Some(ErrorCode::RateLimited), "3 per minute");
    assert_eq!(join_and_keep(&mut sim, 2, "b0"), None, "another address is not affected");
    sim.now += 20_000;
    assert_eq!(join_and_keep(&mut sim, 1, "a3"), None, "a new room every 20 s");
    sim.now += 60_000;
    assert_eq!(join_and_keep(&mut sim, 1, "a4"), Some(ErrorCode::TooManyRooms), "4 rooms held at most");
    // Joining an existing room is not creating one.
    assert_eq!(join_and_keep(&mut sim, 1, "b0"), None);
    // An IPv6 /64 counts as one address.
    for i in 0..3 {
        assert_eq!(join_and_keep(&mut sim, 3, &format!("v{i}")), None);
    }
    assert_eq!(join_and_keep(&mut sim, 4, "v3"), Some(ErrorCode::RateLimited));
    // When the attacker's rooms expire, its address may make rooms again.
    sim.now += EngineConfig::default().history.max_age_ms + 1;
    sim.input(Input::Tick);
    sim.persist();
    assert_eq!(join_and_keep(&mut sim, 1, "a5"), None);
}

mod auth;
mod cluster;

#[test]
fn in_open_mode_the_same_browser_may_edit_and_delete_its_messages_after_a_reconnect_and_nobody_can_pose_as_it() {
    let mut sim = Sim::new(EngineConfig::default());
    let key = ClientKey::try_from("lasting-browser-key-0001").unwrap();
    let ours = key.client_ref();
    let hello = |client: Option<ClientKey>| ClientMsg::Hello { protocol: PROTOCOL_VERSION, token: None, client };
    let publish =
        |id: String, body: Body| ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from(id).unwrap(), body };
    let chat = |t: &str| Body::Chat { text: ChatText::try_from(t).unwrap() };
    let edit = |of: u64, t: &str| Body::Edit { of, text: ChatText::try_from(t).unwrap() };
    sim.input(Input::Connected(1, LOCAL));
    sim.input(Input::Message(1, hello(Some(key.clone()))));
    sim.join(1, "r", None);
    sim.input(Input::Message(1, publish(format!("{ours}.s1.1"), chat("before the reload"))));
    sim.persist();
    sim.take(1);
    // Another browser cannot post under that ref (it would become that browser's message).
    sim.connect(2);
    sim.join(2, "r", None);
    sim.input(Input::Message(2, publish(format!("{ours}.forged"), chat("mallory"))));
    assert_eq!(codes(&sim.take(2)), vec![ErrorCode::InvalidField]);
    // Nor edit or delete the message.
    sim.input(Input::Message(2, publish("m2".into(), edit(1, "mallory was here"))));
    assert_eq!(codes(&sim.take(2)), vec![ErrorCode::Forbidden]);
    sim.input(Input::Message(2, ClientMsg::Delete { room: room("r"), seq: 1 }));
    assert_eq!(codes(&sim.take(2)), vec![ErrorCode::Forbidden]);
    // The same browser, reconnected with a new peer id: its message is still its own.
    sim.input(Input::Disconnected(1));
    sim.input(Input::Connected(3, LOCAL));
    sim.input(Input::Message(3, hello(Some(key))));
    sim.join(3, "r", None);
    sim.take(3);
    sim.input(Input::Message(3, publish(format!("{ours}.s2.1"), edit(1, "after the reload"))));
    sim.persist();
    assert!(sim.take(3).iter().any(|m| matches!(m, ServerMsg::Ack { seq: 2, .. })), "the edit is accepted");
    sim.input(Input::Message(3, ClientMsg::Delete { room: room("r"), seq: 1 }));
    assert!(sim.take(3).contains(&ServerMsg::Deleted { room: room("r"), seq: 1 }));
}

#[test]
fn typing_is_relayed_to_the_others_at_most_once_a_second_and_never_stored() {
    let mut sim = Sim::new(EngineConfig::default());
    let typing = || ClientMsg::Typing { room: room("r") };
    let ada = sim.connect(1);
    assert_eq!(
        codes(&{
            sim.input(Input::Message(1, typing()));
            sim.take(1)
        }),
        vec![ErrorCode::NotJoined]
    );
    for c in 1..=2 {
        if c == 2 {
            sim.connect(2);
        }
        sim.join(c, "r", None);
    }
    sim.take(1);
    sim.input(Input::Message(1, typing()));
    assert_eq!(sim.take(2), vec![ServerMsg::Typing { room: room("r"), peer_id: ada.clone() }]);
    assert!(sim.take(1).is_empty(), "not echoed");
    // Again within the interval: dropped; after it: relayed.
    sim.now += TYPING_MIN_INTERVAL_MS / 2;
    sim.input(Input::Message(1, typing()));
    assert!(sim.take(2).is_empty());
    sim.now += TYPING_MIN_INTERVAL_MS;
    sim.input(Input::Message(1, typing()));
    assert_eq!(sim.take(2).len(), 1);
    // Nothing of it is in the history or the store.
    sim.persist();
    assert!(sim.store.is_empty(), "typing is never stored: {:?}", sim.store);
    sim.connect(3);
    let joined = sim.join(3, "r", None);
    assert!(!joined.iter().any(|m| matches!(m, ServerMsg::History { messages, .. } if !messages.is_empty())));
}

#[test]
fn in_open_mode_the_rooms_own_browser_owns_it_again_after_a_restart() {
    let mut sim = Sim::new(EngineConfig::default());
    let key = ClientKey::try_from("the-hosts-lasting-key-01").unwrap();
    let hello = |client: Option<ClientKey>| ClientMsg::Hello { protocol: PROTOCOL_VERSION, token: None, client };
    sim.input(Input::Connected(1, LOCAL));
    sim.input(Input::Message(1, hello(Some(key.clone()))));
    let joined = sim.join(1, "r", None);
    assert!(joined.iter().any(|m| matches!(m, ServerMsg::Joined { rights, .. } if rights.has(Right::Broadcast))));
    sim.publish(1, "r", "first");
    sim.persist();
    let host = sim.store.iter().find_map(|op| match op {
        StoreOp::SetHost { room: r, host } if r == &room("r") => Some(host.clone()),
        _ => None,
    });
    assert_eq!(host, Some(key.client_ref()), "the host browser is stored with the room");

    // A restart: the room comes back from the store with its history and its host.
    let messages: Vec<Entry> = sim
        .store
        .iter()
        .filter_map(|op| match op {
            StoreOp::Append { seq, json, .. } => Some(Entry { seq: *seq, at: sim.now, json: json.clone(), blob: None }),
            _ => None,
        })
        .collect();
    let mut sim = Sim::new(EngineConfig::default());
    let epoch = Epoch::try_from("e1").unwrap();
    sim.engine.restore(vec![RestoredRoom { room: room("r"), epoch, messages, host }], sim.now);
    // Another member is back first: it owns the room meanwhile.
    sim.connect(2);
    let joined = sim.join(2, "r", None);
    assert!(joined.iter().any(|m| matches!(m, ServerMsg::Joined { rights, .. } if rights.has(Right::Broadcast))));
    // The host's browser comes back: it owns the room, the stand-in is told it does not.
    sim.input(Input::Connected(3, LOCAL));
    sim.input(Input::Message(3, hello(Some(key))));
    let joined = sim.join(3, "r", None);
    assert!(
        joined.iter().any(|m| matches!(m, ServerMsg::Joined { rights, .. } if rights.has(Right::Broadcast))),
        "{joined:?}"
    );
    let told = sim.take(2);
    assert!(
        told.iter().any(|m| matches!(m, ServerMsg::Rights { rights, .. } if !rights.has(Right::Broadcast))),
        "{told:?}"
    );
    // A browser without the key never becomes host while the host is here.
    sim.connect(4);
    let joined = sim.join(4, "r", None);
    assert!(joined.iter().any(|m| matches!(m, ServerMsg::Joined { rights, .. } if !rights.has(Right::Broadcast))));
}

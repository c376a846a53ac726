//! Cluster mode with a simulated shared log: two engines (nodes) and a log that numbers,
//! keeps and publishes messages the way the Redis scripts do, with every delivery (answers,
//! publications, announcements) taken in an order a test or a property chooses, and
//! publications lost the way a dropped subscription loses them.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One node: its engine, what its connections received, and what waits to reach it.
struct Node {
    engine: Engine,
    inbox: BTreeMap<ConnId, Vec<ServerMsg>>,
    /// Ops the engine asked for, not yet carried out.
    ops: VecDeque<ClusterOp>,
    /// Answers and publications on their way to the engine.
    incoming: VecDeque<ClusterInput>,
    subscribed: BTreeSet<RoomName>,
}

/// The shared log: per room its epoch, top and messages; members per room.
#[derive(Default)]
struct Log {
    rooms: BTreeMap<RoomName, (Epoch, u64, Vec<String>)>,
    members: BTreeMap<RoomName, BTreeMap<String, ClusterMember>>,
}

struct Cluster {
    nodes: Vec<Node>,
    log: Log,
    now: Millis,
}

fn config(node: &str) -> EngineConfig {
    EngineConfig {
        cluster: Some(ClusterConfig { node: node.into(), gap_grace_ms: 100 }),
        grant: Some(GrantConfig { secret: vec![7; 32], ttl_ms: 60_000 }),
        ..EngineConfig::default()
    }
}

impl Cluster {
    fn new() -> Self {
        let node = |name: &str, seed| Node {
            engine: Engine::new(config(name), seed),
            inbox: BTreeMap::new(),
            ops: VecDeque::new(),
            incoming: VecDeque::new(),
            subscribed: BTreeSet::new(),
        };
        Cluster { nodes: vec![node("n0", 1), node("n1", 2)], log: Log::default(), now: 1_000_000 }
    }

    fn input(&mut self, n: usize, input: Input) {
        self.now += 1;
        let node = &mut self.nodes[n];
        node.engine.handle(self.now, input);
        for out in node.engine.drain_outputs().collect::<Vec<_>>() {
            match out {
                Output::Deliver { to, frame } => {
                    for conn in to.as_slice() {
                        let msg = decode_server(frame.as_str()).expect("engine frames decode");
                        node.inbox.entry(*conn).or_default().push(msg);
                    }
                }
                Output::Cluster(op) => node.ops.push_back(op),
                Output::Close { .. }
                | Output::Posted { .. }
                | Output::DeleteFiles { .. }
                | Output::PauseReading { .. }
                | Output::ResumeReading { .. } => {}
            }
        }
    }

    fn connect(&mut self, n: usize, conn: ConnId) -> PeerId {
        self.input(n, Input::Connected(conn, LOCAL));
        self.input(n, Input::Message(conn, ClientMsg::hello()));
        match self.take(n, conn).as_slice() {
            [ServerMsg::Welcome { peer_id, .. }] => peer_id.clone(),
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    fn join(&mut self, n: usize, conn: ConnId, r: &str, resume: Option<ResumeFrom>) {
        let name = DisplayName::try_from(format!("user{conn}")).unwrap();
        self.input(n, Input::Message(conn, ClientMsg::Join { room: room(r), name, token: None, resume }));
    }

    fn publish(&mut self, n: usize, conn: ConnId, r: &str, text: &str) {
        let body = Body::Chat { text: ChatText::try_from(text).unwrap() };
        let id = ClientMsgId::try_from(format!("m-{text}")).unwrap();
        self.input(n, Input::Message(conn, ClientMsg::Publish { room: room(r), id, body }));
    }

    fn take(&mut self, n: usize, conn: ConnId) -> Vec<ServerMsg> {
        std::mem::take(self.nodes[n].inbox.entry(conn).or_default())
    }

    /// Publish `input` to every node subscribed to `room`.
    fn publish_to_subscribers(&mut self, room: &RoomName, input: ClusterInput) {
        for node in &mut self.nodes {
            if node.subscribed.contains(room) {
                node.incoming.push_back(input.clone());
            }
        }
    }

    /// Carry out node `n`'s oldest op against the log.
    fn carry_out(&mut self, n: usize) -> bool {
        let Some(op) = self.nodes[n].ops.pop_front() else { return false };
        match op {
            ClusterOp::Load { room, new_epoch, .. } => {
                self.nodes[n].subscribed.insert(room.clone());
                let log = self.read(&room, 1, &new_epoch);
                let members = self.log.members.get(&room).map(|m| m.values().cloned().collect()).unwrap_or_default();
                self.nodes[n].incoming.push_back(ClusterInput::Loaded { room, log, members, broadcast: None });
            }
            ClusterOp::Unload { room } => {
                self.nodes[n].subscribed.remove(&room);
            }
            ClusterOp::Append { token, room, message, new_epoch } => {
                let entry = self.log.rooms.entry(room.clone()).or_insert_with(|| (new_epoch, 0, vec![]));
                entry.1 += 1;
                let json = encode_room_message(&RoomMessage { seq: entry.1, ..message });
                entry.2.push(json.clone());
                let (epoch, seq) = (entry.0.clone(), entry.1);
                self.nodes[n].incoming.push_back(ClusterInput::Appended {
                    token,
                    epoch: epoch.clone(),
                    seq,
                    json: json.clone(),
                });
                self.publish_to_subscribers(&room, ClusterInput::Publication { room: room.clone(), epoch, json });
            }
            ClusterOp::Refill { room, from, new_epoch } => {
                let log = self.read(&room, from, &new_epoch);
                self.nodes[n].incoming.push_back(ClusterInput::Refilled { room, log });
            }
            ClusterOp::WatchGap { room, from } => {
                self.nodes[n].incoming.push_back(ClusterInput::GapCheck { room, from })
            }
            ClusterOp::Join { room, member } => {
                self.log.members.entry(room.clone()).or_default().insert(member.peer_id.to_string(), member.clone());
                let change = PresenceChange::Joined(member);
                self.publish_to_subscribers(&room, ClusterInput::Presence { room: room.clone(), change });
            }
            ClusterOp::Leave { room, peer } => {
                if self.log.members.entry(room.clone()).or_default().remove(peer.as_str()).is_some() {
                    let change = PresenceChange::Left(peer);
                    self.publish_to_subscribers(&room, ClusterInput::Presence { room: room.clone(), change });
                }
            }
            ClusterOp::Delete { room, epoch, seq, tombstone } => {
                let Some(entry) = self.log.rooms.get_mut(&room).filter(|e| e.0 == epoch) else { return true };
                entry.2[seq as usize - 1] = tombstone.clone();
                self.publish_to_subscribers(&room, ClusterInput::Deleted { room: room.clone(), json: tombstone });
            }
            ClusterOp::DeleteRoom { room, .. } => {
                self.log.rooms.remove(&room);
            }
            ClusterOp::BroadcastState { room, state } => {
                self.publish_to_subscribers(&room, ClusterInput::Broadcast { room: room.clone(), state });
            }
            ClusterOp::Typing { room, peer_id } => {
                self.publish_to_subscribers(&room, ClusterInput::Typing { room: room.clone(), peer_id });
            }
            ClusterOp::Remove(removal) => {
                for node in &mut self.nodes {
                    node.incoming.push_back(ClusterInput::Remove(removal.clone()));
                }
            }
            ClusterOp::Signal { node, signal } => {
                let to = if node == "n0" { 0 } else { 1 };
                self.nodes[to].incoming.push_back(ClusterInput::Signal(signal));
            }
        }
        true
    }

    fn read(&mut self, room: &RoomName, from: u64, new_epoch: &Epoch) -> LogSlice {
        let (epoch, top, messages) =
            self.log.rooms.entry(room.clone()).or_insert_with(|| (new_epoch.clone(), 0, vec![]));
        let messages = messages.iter().skip(from.saturating_sub(1) as usize).cloned().collect();
        LogSlice { epoch: epoch.clone(), top: *top, messages }
    }

    /// Deliver node `n`'s oldest incoming input.
    fn deliver(&mut self, n: usize) -> bool {
        let Some(input) = self.nodes[n].incoming.pop_front() else { return false };
        self.input(n, Input::Cluster(input));
        true
    }

    /// Run everything to quiet, in a fixed order.
    fn settle(&mut self) {
        while (0..self.nodes.len()).any(|n| self.carry_out(n) || self.deliver(n)) {}
    }
}

/// Connection 1 on node 0 and connection 2 on node 1, both in room `r`, their inboxes
/// emptied; their peer ids.
fn two_members(c: &mut Cluster) -> (PeerId, PeerId) {
    let a = c.connect(0, 1);
    let b = c.connect(1, 2);
    c.join(0, 1, "r", None);
    c.settle();
    c.join(1, 2, "r", None);
    c.settle();
    c.take(0, 1);
    c.take(1, 2);
    (a, b)
}

/// Chat texts a connection saw, as `seq:text`, from history and live messages, and the seqs
/// of its acks.
fn seen(msgs: &[ServerMsg]) -> (Vec<String>, Vec<u64>) {
    let acks = msgs
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Ack { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect();
    (texts(msgs), acks)
}

#[test]
fn members_on_two_nodes_share_presence_history_and_order() {
    let mut c = Cluster::new();
    let a = c.connect(0, 1);
    let b = c.connect(1, 2);
    c.join(0, 1, "r", None);
    c.settle();
    c.publish(0, 1, "r", "first");
    c.settle();
    c.join(1, 2, "r", None);
    c.settle();
    let joined = c.take(1, 2);
    match &joined[0] {
        ServerMsg::Joined { peers, last_seq, .. } => {
            assert_eq!(peers.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), vec![a.clone()]);
            assert_eq!(*last_seq, 1);
        }
        other => panic!("expected joined, got {other:?}"),
    }
    assert_eq!(texts(&joined), ["1:first"], "the history came from the log");
    let on_a = c.take(0, 1);
    assert!(on_a.iter().any(|m| matches!(m, ServerMsg::PeerJoined { peer, .. } if peer.id == b)), "{on_a:?}");
    assert_eq!(seen(&on_a).1, [1], "a's message was acked once");
    assert!(texts(&on_a).is_empty(), "its own message is not echoed back");

    c.publish(1, 2, "r", "second");
    c.settle();
    c.publish(0, 1, "r", "third");
    c.settle();
    assert_eq!(seen(&c.take(0, 1)), (vec!["2:second".to_owned()], vec![3]));
    assert_eq!(seen(&c.take(1, 2)), (vec!["3:third".to_owned()], vec![2]));

    // b goes: a hears it from the other node, and the room is forgotten on node 1.
    c.input(1, Input::Disconnected(2));
    c.settle();
    assert!(c.take(0, 1).iter().any(|m| matches!(m, ServerMsg::PeerLeft { peer_id, .. } if *peer_id == b)));
    assert!(!c.nodes[1].subscribed.contains(&room("r")));
    assert_eq!(c.nodes[1].engine.room_count(), 0);
}

#[test]
fn signaling_reaches_a_peer_on_the_other_node_and_nobody_else() {
    let mut c = Cluster::new();
    let (a, b) = two_members(&mut c);
    let signal = Signal::EndOfCandidates;
    c.input(0, Input::Message(1, ClientMsg::Signal { room: room("r"), to: b.clone(), signal: signal.clone() }));
    c.settle();
    assert_eq!(c.take(1, 2), [ServerMsg::Signal { room: room("r"), from: a.clone(), signal }]);
    // A peer of another room is not reachable through this one.
    let stranger = PeerId::try_from("nobody").unwrap();
    c.input(0, Input::Message(1, ClientMsg::Signal { room: room("r"), to: stranger, signal: Signal::EndOfCandidates }));
    assert_eq!(codes(&c.take(0, 1)), [ErrorCode::UnknownPeer]);
}

#[test]
fn a_log_that_lost_the_room_resets_members_on_every_node() {
    let mut c = Cluster::new();
    c.connect(0, 1);
    c.connect(1, 2);
    c.join(0, 1, "r", None);
    c.join(1, 2, "r", None);
    c.settle();
    c.publish(0, 1, "r", "before");
    c.settle();
    c.take(0, 1);
    c.take(1, 2);
    // Redis restarted without persistence: the room is gone; the next append makes a new epoch.
    c.log.rooms.clear();
    c.publish(1, 2, "r", "after");
    c.settle();
    for (n, conn) in [(0, 1), (1, 2)] {
        let got = c.take(n, conn);
        assert!(got.iter().any(|m| matches!(m, ServerMsg::HistoryReset { .. })), "node {n}: {got:?}");
        if n == 0 {
            assert_eq!(texts(&got), ["1:after"]);
        } else {
            assert_eq!(seen(&got).1, [1], "the sender's ack is of the new epoch");
        }
    }
}

#[test]
fn a_resuming_client_on_another_node_gets_exactly_what_it_missed() {
    let mut c = Cluster::new();
    c.connect(0, 1);
    c.join(0, 1, "r", None);
    c.settle();
    for text in ["m1", "m2", "m3"] {
        c.publish(0, 1, "r", text);
    }
    c.settle();
    let epoch = c.log.rooms[&room("r")].0.clone();
    c.connect(1, 5);
    c.join(1, 5, "r", Some(ResumeFrom { epoch, last_seq: 1 }));
    c.settle();
    assert_eq!(texts(&c.take(1, 5)), ["2:m2", "3:m3"]);
}

#[test]
fn a_full_room_counts_members_on_every_node() {
    let mut c = Cluster::new();
    for node in &mut c.nodes {
        node.engine.config.max_peers_per_room = 2;
    }
    c.connect(0, 1);
    c.connect(1, 2);
    c.connect(1, 3);
    c.join(0, 1, "r", None);
    c.settle();
    c.join(1, 2, "r", None);
    c.settle();
    c.join(1, 3, "r", None);
    c.settle();
    assert_eq!(codes(&c.take(1, 3)), [ErrorCode::RoomFull]);
}

#[test]
fn open_mode_ownership_is_the_oldest_member_across_nodes() {
    let mut c = Cluster::new();
    c.connect(0, 1);
    c.connect(1, 2);
    c.join(0, 1, "r", None);
    c.settle();
    c.join(1, 2, "r", None);
    c.settle();
    let joined = c.take(1, 2);
    let rights = |msgs: &[ServerMsg]| {
        msgs.iter().find_map(|m| match m {
            ServerMsg::Joined { rights, .. } | ServerMsg::Rights { rights, .. } => Some(*rights),
            _ => None,
        })
    };
    assert!(!rights(&joined).unwrap().has(Right::Broadcast), "the owner is on the other node");
    c.input(0, Input::Disconnected(1));
    c.settle();
    let handed = c.take(1, 2);
    assert!(rights(&handed).is_some_and(|r| r.has(Right::Broadcast)), "{handed:?}");
    assert!(handed.iter().any(|m| matches!(m, ServerMsg::StreamKey { .. })));
}

#[test]
fn members_see_the_host_on_another_node() {
    let mut c = Cluster::new();
    let host = c.connect(0, 1);
    c.connect(1, 2);
    let third = c.connect(1, 3);
    c.join(0, 1, "r", None);
    c.settle();
    c.join(1, 2, "r", None);
    c.settle();
    let joined = c.take(1, 2);
    let peers = joined.iter().find_map(|m| match m {
        ServerMsg::Joined { peers, .. } => Some(peers.clone()),
        _ => None,
    });
    assert_eq!(peers.unwrap().iter().map(|p| (&p.id, p.host)).collect::<Vec<_>>(), vec![(&host, true)]);
    assert!(
        !joined.iter().any(|m| matches!(m, ServerMsg::PeerUpdated { .. })),
        "the joiner's list said who the host is: no update besides: {joined:?}"
    );
    c.join(1, 3, "r", None);
    c.settle();
    c.take(1, 2);
    c.take(1, 3);
    // The host leaves: the oldest member left (on node 1) is host, and the other member
    // there is told.
    c.input(0, Input::Disconnected(1));
    c.settle();
    let told = c.take(1, 3);
    let updated: Vec<_> = told
        .iter()
        .filter_map(|m| match m {
            ServerMsg::PeerUpdated { peer, .. } => Some(peer.host),
            _ => None,
        })
        .collect();
    assert_eq!(updated, vec![true], "{told:?}");
    assert!(!told.iter().any(|m| matches!(m, ServerMsg::PeerUpdated { peer, .. } if peer.id == third)));
}

proptest! {
    /// Whatever order the log's answers and publications reach the two nodes in, and even
    /// when a node's subscription drops publications (noticed and resynced, or silently, to be
    /// found by the gap the next message shows), every member sees every message exactly
    /// once, in order, and every sender gets one ack per message.
    #[test]
    fn every_member_sees_every_message_once_in_order(
        schedule in prop::collection::vec((0usize..2, 0u8..11), 1..400),
        sends in prop::collection::vec(0usize..2, 1..30),
    ) {
        let mut c = Cluster::new();
        two_members(&mut c);
        let mut sends = sends.into_iter().enumerate();
        let mut sent = [0usize; 2];
        let mut resync = [false; 2];
        for (n, action) in schedule {
            match action {
                0..=2 => {
                    if let Some((i, from)) = sends.next() {
                        c.publish(from, from as ConnId + 1, "r", &format!("t{i}"));
                        sent[from] += 1;
                    }
                }
                3..=5 => { c.carry_out(n); }
                6..=8 => { c.deliver(n); }
                drop => {
                    // The subscription drops what is queued for this node; a rebuild reports
                    // it (9), or nothing does (10).
                    let before = c.nodes[n].incoming.len();
                    c.nodes[n].incoming.retain(|i| !matches!(i, ClusterInput::Publication { .. }));
                    resync[n] |= drop == 9 && c.nodes[n].incoming.len() < before;
                }
            }
        }
        for (i, from) in sends {
            c.publish(from, from as ConnId + 1, "r", &format!("t{i}"));
            sent[from] += 1;
        }
        c.settle();
        for (n, was) in resync.iter().enumerate() {
            if *was {
                c.input(n, Input::Cluster(ClusterInput::Resync));
            }
        }
        c.settle();
        // A silent loss shows as a gap when the next message arrives.
        for (n, count) in sent.iter_mut().enumerate() {
            c.publish(n, n as ConnId + 1, "r", &format!("last{n}"));
            *count += 1;
            c.settle();
        }
        let total = sent[0] + sent[1];
        for (n, conn) in [(0usize, 1 as ConnId), (1, 2)] {
            let got = c.take(n, conn);
            let acks = seen(&got).1;
            // Messages and acks, in the order the connection got them.
            let seqs: Vec<u64> = got
                .iter()
                .flat_map(|m| match m {
                    ServerMsg::Message { message, .. } => vec![message.seq],
                    ServerMsg::History { messages, .. } => messages.iter().map(|m| m.seq).collect(),
                    ServerMsg::Ack { seq, .. } => vec![*seq],
                    _ => vec![],
                })
                .collect();
            let mut sorted = seqs.clone();
            sorted.sort_unstable();
            prop_assert_eq!(&seqs, &sorted, "node {} saw messages out of order", n);
            prop_assert_eq!(sorted, (1..=total as u64).collect::<Vec<_>>(), "node {} saw each once", n);
            prop_assert_eq!(acks.len(), sent[n], "node {}'s sender got one ack per message", n);
        }
    }
}

#[test]
fn typing_reaches_members_on_the_other_node_once() {
    let mut c = Cluster::new();
    let (a, _) = two_members(&mut c);
    c.input(0, Input::Message(1, ClientMsg::Typing { room: room("r") }));
    c.settle();
    assert_eq!(c.take(1, 2), [ServerMsg::Typing { room: room("r"), peer_id: a.clone() }]);
    assert!(c.take(0, 1).is_empty(), "not echoed to the one typing");
    // Within the interval: dropped on its own node, so no other node hears it either.
    c.input(0, Input::Message(1, ClientMsg::Typing { room: room("r") }));
    c.settle();
    assert!(c.take(1, 2).is_empty());
    // Nobody here by that id: a notice naming a stranger is dropped.
    c.input(1, Input::Cluster(ClusterInput::Typing { room: room("r"), peer_id: PeerId::try_from("nobody").unwrap() }));
    assert!(c.take(1, 2).is_empty());
}

#[test]
fn deletions_and_removals_reach_every_node() {
    let mut c = Cluster::new();
    let (_, b) = two_members(&mut c);
    c.publish(1, 2, "r", "oops");
    c.settle();
    c.take(0, 1);
    c.take(1, 2);
    // b deletes its own message: both nodes' members are told, the log keeps the tombstone,
    // and the deletion's record follows in the log.
    c.input(1, Input::Message(2, ClientMsg::Delete { room: room("r"), seq: 1 }));
    c.settle();
    for (n, conn) in [(0, 1), (1, 2)] {
        let got = c.take(n, conn);
        assert_eq!(got[0], ServerMsg::Deleted { room: room("r"), seq: 1 }, "node {n}");
        assert!(
            matches!(&got[1..], [ServerMsg::Message { message, .. }] if message.body == Body::Deletion { of: 1 } && message.from == b),
            "node {n}: {got:?}"
        );
    }
    c.connect(0, 3);
    c.join(0, 3, "r", None);
    c.settle();
    let history = c.take(0, 3);
    let bodies: Vec<Body> = history
        .iter()
        .flat_map(|m| match m {
            ServerMsg::History { messages, .. } => messages.iter().map(|m| m.body.clone()).collect(),
            _ => vec![],
        })
        .collect();
    assert_eq!(bodies, [Body::Deleted, Body::Deletion { of: 1 }], "node 0 holds the tombstone and the record");
    // The owner (open mode: a, in longest) removes b, who is on the other node.
    c.input(0, Input::Message(1, ClientMsg::Remove { room: room("r"), peer: b.clone(), reason: None }));
    c.settle();
    let told = c.take(1, 2);
    assert!(told.iter().any(|m| matches!(m, ServerMsg::Removed { code: ErrorCode::Removed, .. })), "{told:?}");
    assert!(c.take(0, 1).iter().any(|m| matches!(m, ServerMsg::PeerLeft { peer_id, .. } if *peer_id == b)));
}

//! The engine in cluster mode: several nodes serve the same rooms, and a shared log (Redis,
//! driven by `crate::cluster`) sequences, stores and fans out each room's messages.
//!
//! The engine's rules stay the same in both modes (who may do what, limits, history on join,
//! recovery); what changes is where a message's number comes from. On one machine the engine
//! numbers a message and the embedded store makes it durable. Here the engine hands the
//! message to the log ([`ClusterOp::Append`]); the log numbers it, stores it and publishes it
//! to every node with members in the room, this one included. A node commits a room's
//! messages strictly in sequence order as they arrive ([`ClusterInput::Publication`]), acks its
//! own members' messages as they commit (or as the log reports them appended), refills from
//! the log whatever a gap shows it missed, and starts over when the log's epoch changes (the
//! log lost the room: members get `history_reset`).
//!
//! A node holds a room only while it has members there: the first local join loads the
//! room's history and members from the log ([`ClusterOp::Load`]), the last local leave
//! forgets it. Members on other nodes are known from presence announcements on the room's
//! channel, so presence, ownership (open mode) and room limits count every node's members.

use super::*;
use relaycast_shared::media::BroadcastState;
use std::collections::BTreeMap;

/// Epochs a room remembers having left (their late publications are dropped).
const MAX_RETIRED_EPOCHS: usize = 4;

/// This node's place in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The node's id (unique in the cluster; presence and signaling address nodes by it).
    pub node: String,
    /// A gap in a room's sequence waits this long for the missing publications (they travel
    /// on another connection than the append's reply) before the node reads the log.
    pub gap_grace_ms: Millis,
}

/// A member of a room, as every node sees it (announced through the shared log's channel).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterMember {
    pub peer_id: PeerId,
    pub name: DisplayName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// The node its connection is on.
    pub node: String,
    /// When it joined (ms).
    pub since: Millis,
    /// What its token grants in the room (open mode: a member's rights); other nodes check
    /// grants it presents against them.
    #[serde(default)]
    pub rights: Rights,
}

/// A presence change of a room, on any node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceChange {
    Joined(ClusterMember),
    Left(PeerId),
}

/// A slice of a room's log, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSlice {
    pub epoch: Epoch,
    /// The newest message's sequence number (0: none yet).
    pub top: u64,
    /// Messages in order, each a [`RoomMessage`] as JSON.
    pub messages: Vec<String>,
}

/// Signaling for a peer on another node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelayedSignal {
    pub room: RoomName,
    pub from: PeerId,
    pub to: PeerId,
    pub signal: Signal,
}

/// A removal every node applies to its own connections.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterRemoval {
    /// The node it was decided on (which applied it already).
    pub node: String,
    /// The room, or none: the whole server.
    pub room: Option<RoomName>,
    pub who: Removed,
    pub code: ErrorCode,
    pub reason: Option<Reason>,
    pub at: Millis,
}

/// Who a [`ClusterRemoval`] removes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Removed {
    /// Every connection of this user (token mode).
    User(UserId),
    /// This one peer (open mode, where there are no users).
    Peer(PeerId),
    /// Everyone: the room was closed (by the app's backend). With `files`, every node deletes
    /// its copies of the room's files too.
    Everyone { files: bool },
}

/// What the engine asks of the shared log, in order (see [`Output::Cluster`]).
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterOp {
    /// Start listening to `room`, then read its history and members
    /// ([`ClusterInput::Loaded`]). A room the log does not have is made with `new_epoch`, if
    /// `creator` (the address of the member whose join makes it) may still make rooms.
    Load { room: RoomName, new_epoch: Epoch, creator: Option<IpAddr> },
    /// Stop listening to `room`: no member here any more.
    Unload { room: RoomName },
    /// Number, store and publish `message` (its `seq` is the log's to set); answer with
    /// [`ClusterInput::Appended`] or [`ClusterInput::AppendFailed`] quoting `token`.
    Append { token: u64, room: RoomName, message: RoomMessage, new_epoch: Epoch },
    /// Read the log of `room` from `from` on ([`ClusterInput::Refilled`]).
    Refill { room: RoomName, from: u64, new_epoch: Epoch },
    /// Ask again ([`ClusterInput::GapCheck`]) after the gap grace: is `room` still missing `from`?
    WatchGap { room: RoomName, from: u64 },
    /// Announce a member of this node.
    Join { room: RoomName, member: ClusterMember },
    /// Announce that a member of this node left.
    Leave { room: RoomName, peer: PeerId },
    /// Send signaling to the node its recipient is on.
    Signal { node: String, signal: RelayedSignal },
    /// Put `tombstone` in place of message `seq` of `room` (if the room is still of `epoch`),
    /// and tell every node holding the room ([`ClusterInput::Deleted`]).
    Delete { room: RoomName, epoch: Epoch, seq: u64, tombstone: String },
    /// Tell every node to apply a removal.
    Remove(ClusterRemoval),
    /// This node's relay changed the room's broadcast state: keep it and tell every node.
    BroadcastState { room: RoomName, state: BroadcastState },
    /// A member here is typing: tell the nodes holding the room (never stored).
    Typing { room: RoomName, peer_id: PeerId },
    /// The room's history is deleted (the app closed it): its log goes, and its next message
    /// starts a new epoch. With `files`, its file index goes too.
    DeleteRoom { room: RoomName, files: bool },
}

/// What the shared log reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterInput {
    /// A room's log, members and broadcast state, read after its channel was subscribed.
    Loaded { room: RoomName, log: LogSlice, members: Vec<ClusterMember>, broadcast: Option<BroadcastState> },
    /// The room could not be loaded: the log is unreachable (`store_unavailable`), or the room
    /// is new and its creator's address made as many rooms as it may (`rate_limited`).
    LoadFailed { room: RoomName, code: ErrorCode, reason: String },
    /// A message is in the log as `seq` of `epoch`.
    Appended { token: u64, epoch: Epoch, seq: u64, json: String },
    /// A message could not be appended: `store_unavailable`, or `unknown_blob` for a file
    /// message naming a file the room does not hold on any node.
    AppendFailed { token: u64, code: ErrorCode, reason: String },
    /// A message published on a room's channel.
    Publication { room: RoomName, epoch: Epoch, json: String },
    /// What a refill read.
    Refilled { room: RoomName, log: LogSlice },
    /// The refill failed; a later gap or resync tries again.
    RefillFailed { room: RoomName },
    /// The gap grace for `room` from `from` has passed.
    GapCheck { room: RoomName, from: u64 },
    /// A presence change announced on a room's channel.
    Presence { room: RoomName, change: PresenceChange },
    /// Signaling from another node.
    Signal(RelayedSignal),
    /// A message of a room was deleted: its tombstone.
    Deleted { room: RoomName, json: String },
    /// A removal decided on some node.
    Remove(ClusterRemoval),
    /// The room's broadcast state, as its media node announced it.
    Broadcast { room: RoomName, state: BroadcastState },
    /// A member is typing (on any node: this node's own announcements come back too).
    Typing { room: RoomName, peer_id: PeerId },
    /// The node's subscription was rebuilt: publications may have been missed in any room.
    Resync,
}

/// A local join that waits for its room's load.
#[derive(Debug)]
pub(super) struct WaitingJoin {
    conn: ConnId,
    name: DisplayName,
    resume: Option<ResumeFrom>,
}

/// What a node knows of a room beyond its own members and history.
#[derive(Debug, Default)]
pub(super) struct SharedRoom {
    loaded: bool,
    /// Joins that wait for the load.
    joins: Vec<WaitingJoin>,
    /// Messages that arrived past a gap (or during the load), by sequence number.
    ahead: BTreeMap<u64, Arrival>,
    /// A refill is being read.
    refilling: bool,
    /// A gap is being watched ([`ClusterOp::WatchGap`]).
    watching: bool,
    /// Members on other nodes, oldest first.
    pub(super) remote: Vec<ClusterMember>,
    /// Epochs the room was started over from: late publications of theirs are dropped.
    retired: Vec<Epoch>,
    /// This node is the room's media node (a broadcast, viewers or a recording here): the room
    /// is held without local members, so that its members elsewhere and their rights are known.
    media_hold: bool,
}

/// A message from the log, parsed once.
#[derive(Debug, Clone)]
struct Arrival {
    epoch: Epoch,
    seq: u64,
    at: Millis,
    from: PeerId,
    id: ClientMsgId,
    json: Arc<str>,
    blob: Option<BlobHash>,
    /// The server wrote it (a deletion's record), though it is from a member.
    server_written: bool,
}

impl Arrival {
    fn parse(epoch: Epoch, json: &str) -> Option<Arrival> {
        let message: RoomMessage = serde_json::from_str(json).ok()?;
        let blob = match &message.body {
            Body::File { hash, .. } => Some(hash.clone()),
            _ => None,
        };
        Some(Arrival {
            epoch,
            seq: message.seq,
            at: message.at,
            from: message.from,
            id: message.id,
            json: json.into(),
            blob,
            server_written: message.body.is_server_only(),
        })
    }
}

/// A message handed to the log and not yet answered.
#[derive(Debug)]
pub(super) struct Appending {
    room: RoomName,
    sender: Origin,
    id: ClientMsgId,
}

impl Engine {
    pub(super) fn is_clustered(&self) -> bool {
        self.config.cluster.is_some()
    }

    pub(super) fn node(&self) -> &str {
        self.config.cluster.as_ref().map_or("", |c| c.node.as_str())
    }

    pub(super) fn cluster_op(&mut self, op: ClusterOp) {
        self.outputs.push(Output::Cluster(op));
    }

    /// A room this node holds as a copy of the log: created unloaded, with its load asked for.
    pub(super) fn new_shared_room(&mut self, room_name: &RoomName, creator: Option<IpAddr>) -> Room {
        let new_epoch = self.new_epoch();
        self.cluster_op(ClusterOp::Load { room: room_name.clone(), new_epoch: new_epoch.clone(), creator });
        Room { shared: Some(SharedRoom::default()), ..Room::new(new_epoch, creator) }
    }

    /// Cluster mode: a join to a room still loading waits for it; true when it was put aside.
    pub(super) fn defer_join(
        &mut self,
        conn: ConnId,
        room_name: &RoomName,
        name: &DisplayName,
        resume: &Option<ResumeFrom>,
    ) -> bool {
        let Some(shared) = self.rooms.get_mut(room_name).and_then(|r| r.shared.as_mut()) else {
            return false;
        };
        if shared.loaded {
            return false;
        }
        if shared.joins.iter().any(|j| j.conn == conn) {
            self.error(
                conn,
                ErrorCode::AlreadyJoined,
                "already joining this room".into(),
                Some(room_name.clone()),
                None,
            );
            return true;
        }
        shared.joins.push(WaitingJoin { conn, name: name.clone(), resume: resume.clone() });
        true
    }

    /// A leave of a room the connection is still waiting to join; true when it was one.
    pub(super) fn cancel_waiting_join(&mut self, conn: ConnId, room_name: &RoomName) -> bool {
        let Some(shared) = self.rooms.get_mut(room_name).and_then(|r| r.shared.as_mut()) else {
            return false;
        };
        let before = shared.joins.len();
        shared.joins.retain(|j| j.conn != conn);
        let cancelled = shared.joins.len() < before;
        if cancelled {
            self.unload_if_unused(room_name);
        }
        cancelled
    }

    /// Forget a room nobody here is in or waiting for, and whose media is not here.
    pub(super) fn unload_if_unused(&mut self, room_name: &RoomName) {
        let unused = self.rooms.get(room_name).is_some_and(|r| {
            r.members.is_empty() && r.shared.as_ref().is_some_and(|s| s.joins.is_empty() && !s.media_hold)
        });
        if unused {
            self.drop_room(room_name);
        }
    }

    /// This node's members of `room`, as every node sees them.
    fn local_members(&self, room_name: &RoomName) -> Vec<ClusterMember> {
        let node = self.node().to_owned();
        let Some(room) = self.rooms.get(room_name) else { return Vec::new() };
        room.members
            .iter()
            .filter_map(|conn| {
                let peer = self.peers.get(conn)?;
                let m = peer.membership(room_name)?;
                Some(ClusterMember {
                    peer_id: peer.id.clone(),
                    name: m.name.clone(),
                    user: peer.identity.as_ref().map(|i| i.user.clone()),
                    node: node.clone(),
                    since: m.since,
                    rights: m.rights,
                })
            })
            .collect()
    }

    /// The relay here changed a room's broadcast state: every node hears of it through the log
    /// (this one too: members here are told then), and the room is held here while its media is.
    pub(super) fn broadcast_from_relay(&mut self, room_name: RoomName, state: BroadcastState) {
        let busy = state != BroadcastState::default();
        if busy && !self.rooms.contains_key(&room_name) && self.rooms.len() < self.config.max_rooms {
            let room = self.new_shared_room(&room_name, None);
            self.rooms.insert(room_name.clone(), room);
        }
        if let Some(shared) = self.rooms.get_mut(&room_name).and_then(|r| r.shared.as_mut()) {
            shared.media_hold = busy;
        }
        self.cluster_op(ClusterOp::BroadcastState { room: room_name.clone(), state });
        if !busy {
            self.unload_if_unused(&room_name);
        }
    }

    /// A member of another node's rights in `room`, as this node knows them (open mode: the
    /// owner's on top for the member there longest).
    pub(super) fn remote_rights(&self, room_name: &RoomName, peer: &PeerId) -> Option<Rights> {
        let room = self.rooms.get(room_name)?;
        let remote = &room.shared.as_ref()?.remote;
        let member = remote.iter().find(|m| m.peer_id == *peer)?;
        let oldest_here = room.members.first().and_then(|c| {
            let p = self.peers.get(c)?;
            Some((p.membership(room_name)?.since, p.id.clone()))
        });
        let oldest = remote.first().is_some_and(|first| first.peer_id == *peer)
            && oldest_here.is_none_or(|(since, id)| (member.since, &member.peer_id) < (since, &id));
        let owner = matches!(self.config.auth, Auth::Open) && oldest;
        Some(if owner { member.rights.union(owner_rights()) } else { member.rights })
    }

    /// Members of `room` on other nodes, oldest first.
    pub(super) fn remote_members(&self, room_name: &RoomName) -> &[ClusterMember] {
        self.rooms.get(room_name).and_then(|r| r.shared.as_ref()).map_or(&[], |s| s.remote.as_slice())
    }

    /// Hand a message to the log instead of the local store.
    pub(super) fn append_to_log(&mut self, room_name: RoomName, message: RoomMessage, sender: Origin) {
        let token = self.next_append;
        self.next_append += 1;
        let id = message.id.clone();
        self.unpersisted_from(&sender, 1);
        self.appending.insert(token, Appending { room: room_name.clone(), sender, id });
        self.unpersisted += 1;
        self.stats.messages_published += 1;
        let new_epoch = self.new_epoch();
        self.cluster_op(ClusterOp::Append { token, room: room_name, message, new_epoch });
    }

    pub(super) fn cluster_input(&mut self, input: ClusterInput, now: Millis) {
        match input {
            ClusterInput::Loaded { room, log, members, broadcast } => {
                if let Some(state) = broadcast.filter(|s| *s != BroadcastState::default()) {
                    self.broadcasts.insert(room.clone(), state);
                }
                self.loaded(room, log, members, now)
            }
            ClusterInput::Broadcast { room, state } => self.broadcast_changed(room, state),
            ClusterInput::Typing { room, peer_id } => self.remote_typing(room, peer_id),
            ClusterInput::LoadFailed { room, code, reason } => self.load_failed(room, code, reason),
            ClusterInput::Appended { token, epoch, seq, json } => self.appended(token, epoch, seq, json, now),
            ClusterInput::AppendFailed { token, code, reason } => self.append_failed(token, code, reason),
            ClusterInput::Publication { room, epoch, json } => {
                match Arrival::parse(epoch, &json) {
                    Some(arrival) => self.arrive(&room, arrival),
                    None => tracing::warn!(room = %room, "a publication that is not a room message; ignored"),
                }
                self.settle(&room, now);
            }
            ClusterInput::Refilled { room, log } => self.refilled(room, log, now),
            ClusterInput::RefillFailed { room } => {
                if let Some(shared) = self.rooms.get_mut(&room).and_then(|r| r.shared.as_mut()) {
                    shared.refilling = false;
                }
            }
            ClusterInput::GapCheck { room, from } => {
                let Some(r) = self.rooms.get_mut(&room) else { return };
                let Some(shared) = r.shared.as_mut() else { return };
                shared.watching = false;
                if r.last_committed < from && !shared.refilling {
                    shared.refilling = true;
                    let from = r.last_committed + 1;
                    let new_epoch = self.new_epoch();
                    self.cluster_op(ClusterOp::Refill { room, from, new_epoch });
                }
            }
            ClusterInput::Presence { room, change } => self.remote_presence(room, change),
            ClusterInput::Signal(relayed) => self.relayed_signal(relayed),
            ClusterInput::Deleted { room, json } => self.deleted(room, json),
            ClusterInput::Remove(removal) => {
                if removal.node == self.node() {
                    return;
                }
                let ClusterRemoval { room, who, code, reason, at, .. } = removal;
                match who {
                    Removed::User(user) => {
                        self.remove_user_here(room.as_ref(), &user, code, reason, at);
                    }
                    Removed::Peer(peer) => {
                        let Some(&conn) = self.by_peer_id.get(&peer) else { return };
                        match room {
                            Some(room) => self.expel(conn, &room, code, reason),
                            None => self.close(conn, code),
                        }
                    }
                    Removed::Everyone { files } => {
                        let Some(room) = room else { return };
                        let members = self.rooms.get(&room).map(|r| r.members.clone()).unwrap_or_default();
                        for conn in members {
                            self.expel(conn, &room, code, reason.clone());
                        }
                        if files {
                            self.outputs.push(Output::DeleteFiles { room });
                        }
                    }
                }
            }
            ClusterInput::Resync => {
                let mut rooms: Vec<(RoomName, u64)> = self
                    .rooms
                    .iter_mut()
                    .filter_map(|(name, r)| {
                        let shared = r.shared.as_mut().filter(|s| s.loaded && !s.refilling)?;
                        shared.refilling = true;
                        Some((name.clone(), r.last_committed + 1))
                    })
                    .collect();
                rooms.sort();
                for (room, from) in rooms {
                    let new_epoch = self.new_epoch();
                    self.cluster_op(ClusterOp::Refill { room: room.clone(), from, new_epoch });
                    // Presence written while Redis was away (or reaped meanwhile) is made good.
                    for member in self.local_members(&room) {
                        self.cluster_op(ClusterOp::Join { room: room.clone(), member });
                    }
                }
            }
        }
    }

    fn loaded(&mut self, room_name: RoomName, log: LogSlice, members: Vec<ClusterMember>, now: Millis) {
        let node = self.node().to_owned();
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        let Some(shared) = room.shared.as_mut() else {
            return;
        };
        shared.loaded = true;
        shared.remote = members.into_iter().filter(|m| m.node != node).collect();
        shared.remote.sort_by(|a, b| (a.since, &a.peer_id).cmp(&(b.since, &b.peer_id)));
        let joins = std::mem::take(&mut shared.joins);
        let early = std::mem::take(&mut shared.ahead);
        room.epoch = log.epoch.clone();
        let mut last = 0;
        let mut released = Vec::new();
        for json in &log.messages {
            let Some(arrival) = Arrival::parse(log.epoch.clone(), json) else { continue };
            last = arrival.seq;
            if let Some(hash) = &arrival.blob {
                *self.blob_refs.entry(hash.clone()).or_default() += 1;
            }
            released.extend(room.history.push(arrival.into_entry(), &self.config.history, now).blobs);
        }
        room.last_committed = log.top.max(last);
        room.last_assigned = room.last_committed;
        self.unref_blobs(released);
        // Publications that came while loading: the ones past the log's top are live.
        for arrival in early.into_values() {
            self.arrive(&room_name, arrival);
        }
        self.settle(&room_name, now);
        for join in joins {
            if self.peers.contains_key(&join.conn) {
                self.join(join.conn, room_name.clone(), join.name, join.resume, now);
            }
        }
        self.unload_if_unused(&room_name);
    }

    fn load_failed(&mut self, room_name: RoomName, code: ErrorCode, reason: String) {
        let Some(shared) = self.rooms.get_mut(&room_name).and_then(|r| r.shared.as_mut()) else {
            return;
        };
        let joins = std::mem::take(&mut shared.joins);
        if code == ErrorCode::RateLimited {
            self.stats.rate_limited += joins.len() as u64;
        }
        for join in joins {
            let message = match code {
                ErrorCode::StoreUnavailable => {
                    format!("the room's messages cannot be reached right now ({reason}); try again")
                }
                _ => reason.clone(),
            };
            self.error(join.conn, code, message, Some(room_name.clone()), None);
        }
        self.unload_if_unused(&room_name);
    }

    fn appended(&mut self, token: u64, epoch: Epoch, seq: u64, json: String, now: Millis) {
        let Some(appending) = self.appending.remove(&token) else {
            return;
        };
        self.unpersisted = self.unpersisted.saturating_sub(1);
        self.unpersisted_from(&appending.sender, -1);
        if let Origin::App(ticket) = appending.sender {
            self.outputs.push(Output::Posted { ticket, room: appending.room.clone(), seq: Ok(seq) });
        }
        // Durable: commit it here in order (the publication may still be on its way).
        match Arrival::parse(epoch, &json) {
            Some(arrival) => self.arrive(&appending.room, arrival),
            None => tracing::error!(room = %appending.room, "the log returned a message that does not parse"),
        }
        self.settle(&appending.room, now);
    }

    fn append_failed(&mut self, token: u64, code: ErrorCode, reason: String) {
        let Some(appending) = self.appending.remove(&token) else {
            return;
        };
        self.unpersisted = self.unpersisted.saturating_sub(1);
        self.unpersisted_from(&appending.sender, -1);
        match appending.sender {
            Origin::Member(conn) if self.peers.contains_key(&conn) => {
                let message = match code {
                    ErrorCode::UnknownBlob => "no such file in this room: upload it before sharing it".into(),
                    _ => format!("the message store cannot be reached ({reason}); the message was not sent"),
                };
                self.error(conn, code, message, Some(appending.room), Some(appending.id));
            }
            Origin::App(ticket) => self.outputs.push(Output::Posted { ticket, room: appending.room, seq: Err(code) }),
            Origin::Member(_) | Origin::Server => {
                tracing::warn!(room = %appending.room, reason, "a server message could not be stored")
            }
        }
    }

    fn refilled(&mut self, room_name: RoomName, log: LogSlice, now: Millis) {
        let Some(shared) = self.rooms.get_mut(&room_name).and_then(|r| r.shared.as_mut()) else {
            return;
        };
        shared.refilling = false;
        let epoch = log.epoch.clone();
        let first = log.messages.first().and_then(|json| Arrival::parse(epoch.clone(), json));
        let current = self.rooms.get(&room_name).map(|r| (r.epoch.clone(), r.last_committed));
        if current.as_ref().is_some_and(|(e, _)| *e != epoch) {
            return self.reset(&room_name, epoch);
        }
        // Past what the log still keeps: the missed messages are gone; go on after them.
        if let Some((_, last)) = current {
            let resume_at = first.as_ref().map_or(log.top + 1, |first| first.seq);
            if resume_at > last + 1 {
                tracing::warn!(room = %room_name, missed_from = last + 1, resumed_at = resume_at, "messages missed beyond the log's length");
                if let Some(room) = self.rooms.get_mut(&room_name) {
                    room.last_committed = resume_at - 1;
                    room.last_assigned = room.last_committed;
                }
            }
        }
        for json in &log.messages {
            if let Some(arrival) = Arrival::parse(epoch.clone(), json) {
                self.arrive(&room_name, arrival);
            }
        }
        self.settle(&room_name, now);
    }

    /// A message from the log: committed when it is next, kept when it is ahead, dropped when
    /// already held. A new epoch starts the room over.
    fn arrive(&mut self, room_name: &RoomName, arrival: Arrival) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let Some(shared) = room.shared.as_mut() else {
            return;
        };
        if !shared.loaded {
            shared.ahead.insert(arrival.seq, arrival);
            return;
        }
        if shared.retired.contains(&arrival.epoch) {
            return;
        }
        if arrival.epoch != room.epoch {
            let epoch = arrival.epoch.clone();
            self.reset(room_name, epoch);
            if let Some(shared) = self.rooms.get_mut(room_name).and_then(|r| r.shared.as_mut()) {
                shared.ahead.insert(arrival.seq, arrival);
            }
            return;
        }
        if arrival.seq > room.last_committed {
            shared.ahead.insert(arrival.seq, arrival);
        }
    }

    /// Commit what is next in line; a gap left behind is watched, then refilled.
    fn settle(&mut self, room_name: &RoomName, now: Millis) {
        loop {
            let Some(room) = self.rooms.get_mut(room_name) else {
                return;
            };
            let Some(shared) = room.shared.as_mut().filter(|s| s.loaded) else {
                return;
            };
            let epoch = room.epoch.clone();
            // Stale arrivals (older epochs, already held) are dropped on the way.
            let next = room.last_committed + 1;
            shared.ahead.retain(|seq, a| *seq >= next && a.epoch == epoch);
            let Some(arrival) = shared.ahead.remove(&next) else {
                break;
            };
            self.commit_arrival(room_name, arrival, now);
        }
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        let Some(shared) = room.shared.as_mut() else {
            return;
        };
        if !shared.ahead.is_empty() && !shared.watching && !shared.refilling {
            shared.watching = true;
            let from = room.last_committed + 1;
            self.cluster_op(ClusterOp::WatchGap { room: room_name.clone(), from });
        }
    }

    fn commit_arrival(&mut self, room_name: &RoomName, arrival: Arrival, now: Millis) {
        // One of ours: acked to its sender (from here, whichever of the publication and the
        // append's answer comes first), not echoed back to it. What the server wrote for a
        // member goes to everyone, that member too.
        let sender = self
            .by_peer_id
            .get(&arrival.from)
            .copied()
            .filter(|_| !arrival.server_written)
            .filter(|c| self.peers.get(c).is_some_and(|p| p.membership(room_name).is_some()));
        let pending = Pending {
            room: room_name.clone(),
            seq: arrival.seq,
            at: arrival.at,
            sender: sender.map_or(Origin::Server, Origin::Member),
            id: arrival.id,
            json: arrival.json,
            blob: arrival.blob,
        };
        if let Some(room) = self.rooms.get_mut(room_name) {
            room.last_assigned = room.last_assigned.max(pending.seq);
        }
        self.commit(pending, now);
    }

    /// The log started the room over (it lost its data): drop the history held here, tell
    /// the members, and read the new history from its beginning.
    fn reset(&mut self, room_name: &RoomName, epoch: Epoch) {
        let Some(room) = self.rooms.get_mut(room_name) else {
            return;
        };
        tracing::warn!(room = %room_name, old = %room.epoch, new = %epoch, "the shared log started the room over");
        let released = std::mem::take(&mut room.history).into_blobs();
        let old = std::mem::replace(&mut room.epoch, epoch.clone());
        room.last_committed = 0;
        room.last_assigned = 0;
        let members = room.members.clone();
        let mut refill = false;
        if let Some(shared) = room.shared.as_mut() {
            shared.ahead.clear();
            if shared.retired.len() >= MAX_RETIRED_EPOCHS {
                shared.retired.remove(0);
            }
            shared.retired.push(old);
            refill = !shared.refilling;
            shared.refilling = true;
        }
        self.unref_blobs(released);
        if !members.is_empty() {
            let frame = Frame::of(&ServerMsg::HistoryReset { room: room_name.clone(), epoch });
            self.deliver(Recipients::Many(members), frame);
        }
        if refill {
            let new_epoch = self.new_epoch();
            self.cluster_op(ClusterOp::Refill { room: room_name.clone(), from: 1, new_epoch });
        }
    }

    /// A member of another node is typing: the members here are told (the rate was checked
    /// on its node).
    fn remote_typing(&mut self, room_name: RoomName, peer_id: PeerId) {
        if !self.remote_members(&room_name).iter().any(|m| m.peer_id == peer_id) {
            return;
        }
        let members = self.rooms.get(&room_name).map(|r| r.members.clone()).unwrap_or_default();
        if !members.is_empty() {
            self.deliver(Recipients::Many(members), Frame::of(&ServerMsg::Typing { room: room_name, peer_id }));
        }
    }

    fn remote_presence(&mut self, room_name: RoomName, change: PresenceChange) {
        let node = self.node().to_owned();
        // While the room loads, the load (which reads members after subscribing) sees this.
        let loaded = self.rooms.get(&room_name).and_then(|r| r.shared.as_ref()).is_some_and(|s| s.loaded);
        if !loaded {
            return;
        }
        let owner_before = self.owner(&room_name);
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        let Some(shared) = room.shared.as_mut() else {
            return;
        };
        let frame = match change {
            PresenceChange::Joined(member) => {
                if member.node == node || shared.remote.iter().any(|m| m.peer_id == member.peer_id) {
                    return;
                }
                let (peer_id, key) = (member.peer_id.clone(), (member.since, member.peer_id.clone()));
                let at = shared.remote.partition_point(|m| (m.since, m.peer_id.clone()) <= key);
                shared.remote.insert(at, member);
                let Some(peer) = self.peer_info(&room_name, &peer_id) else {
                    return;
                };
                Frame::of(&ServerMsg::PeerJoined { room: room_name.clone(), peer })
            }
            PresenceChange::Left(peer_id) => {
                let Some(at) = shared.remote.iter().position(|m| m.peer_id == peer_id) else {
                    return;
                };
                shared.remote.remove(at);
                Frame::of(&ServerMsg::PeerLeft { room: room_name.clone(), peer_id })
            }
        };
        let Some(room) = self.rooms.get(&room_name) else {
            return;
        };
        if !room.members.is_empty() {
            let members = room.members.clone();
            self.deliver(Recipients::Many(members), frame);
        }
        self.ownership_moved(&room_name, owner_before);
        self.announce_host(&room_name, None);
    }

    /// A deletion from the log: the tombstone takes the message's place here, and the members
    /// here are told.
    fn deleted(&mut self, room_name: RoomName, json: String) {
        let Ok(tombstone) = serde_json::from_str::<RoomMessage>(&json) else {
            return tracing::warn!(room = %room_name, "a deletion that is not a room message; ignored");
        };
        let seq = tombstone.seq;
        let Some(room) = self.rooms.get_mut(&room_name).filter(|r| r.shared.as_ref().is_some_and(|s| s.loaded)) else {
            return;
        };
        if seq > room.last_committed {
            return;
        }
        let old = room.history.replace(seq, json.into(), None);
        let members = room.members.clone();
        self.unref_blobs(old.and_then(|e| e.blob).into_iter().collect());
        self.deliver(Recipients::Many(members), Frame::of(&ServerMsg::Deleted { room: room_name, seq }));
    }

    fn relayed_signal(&mut self, relayed: RelayedSignal) {
        let RelayedSignal { room, from, to, signal } = relayed;
        let Some(&target) = self.by_peer_id.get(&to) else {
            return;
        };
        let sender_here = self.remote_members(&room).iter().any(|m| m.peer_id == from);
        let target_here = self.peers.get(&target).is_some_and(|p| p.membership(&room).is_some());
        if sender_here && target_here {
            self.send(target, &ServerMsg::Signal { room, from, signal });
        }
    }
}

impl Arrival {
    fn into_entry(self) -> Entry {
        Entry { seq: self.seq, at: self.at, json: self.json, blob: self.blob }
    }
}

//! The room engine: sans-IO, single-threaded, deterministic.
//!
//! It owns rooms, peers, sequence numbers, history and recovery, and decides every delivery.
//! It owns no socket, task or clock: the transport feeds it [`Input`]s with the current time
//! and carries out the [`Output`]s it leaves in [`Engine::drain_outputs`]; the store writer
//! takes [`StoreOp`] batches with [`Engine::take_store_batch`] and reports them durable with
//! [`Input::Persisted`].
//!
//! Acked means durable: a published message gets its sequence number at once, but it is
//! committed to the room's history, delivered to the others and acked to its sender only when
//! the store has written the batch holding it. Batches are written in order, so delivery order
//! is sequence order and a crash can never leave a gap or reuse a number that anyone saw.

mod access;
mod admin;
mod cluster;
mod grant;
mod history;
mod rate;
mod turn;

use access::Bar;
pub use access::Removal;
pub use admin::{HistoryPage, MemberInfo, RoomSummary};
pub use cluster::{
    ClusterConfig, ClusterInput, ClusterMember, ClusterOp, ClusterRemoval, LogSlice, PresenceChange, RelayedSignal,
    Removed,
};
pub use grant::{GrantConfig, GrantError, Purpose};
pub use history::{Entry, Evicted, History, HistoryLimits};
pub use rate::{Rate, TokenBucket};
pub use turn::TurnConfig;

use crate::auth::{AuthError, Identity, Verifier};
use bytes::Bytes;
use rand::{rngs::StdRng, Rng, SeedableRng};
use relaycast_shared::codec::{encode_room_message, history_frame, message_frame};
use relaycast_shared::limits::TYPING_MIN_INTERVAL_MS;
use relaycast_shared::media::BroadcastState;
use relaycast_shared::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Store ops in one batch at most.
pub const MAX_BATCH_OPS: usize = 1024;
/// Message bytes in one batch, about (the batch that crosses it ends there).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;

/// Wall-clock time in milliseconds since the Unix epoch, always passed in.
pub type Millis = u64;

/// The transport's handle for one connection.
pub type ConnId = u64;

/// The key that per-address limits count under: the IPv4 address, or the /64 network of an
/// IPv6 address (one subscriber line or host usually gets a whole /64, so counting single
/// IPv6 addresses would let one client take a limit's worth from each of 2^64 addresses).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// An encoded frame (UTF-8 JSON), shared by all its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    fn new(json: String) -> Self {
        Frame(Bytes::from(json))
    }
    fn of(msg: &ServerMsg) -> Self {
        Frame::new(encode(msg))
    }
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
    /// The JSON text. Frames are only ever built from `String`s.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// What happened, as the transport saw it.
#[derive(Debug)]
pub enum Input {
    /// A WebSocket connection is open, from this client address (see [`address_key`]).
    Connected(ConnId, IpAddr),
    /// A decoded message from a connection.
    Message(ConnId, ClientMsg),
    /// A frame that could not be decoded.
    BadFrame(ConnId, DecodeError),
    /// A binary frame (the protocol is text only).
    BinaryFrame(ConnId),
    /// The blob cache now holds this blob (file messages may refer to it).
    BlobStored(BlobHash),
    /// The blob cache dropped this blob.
    BlobRemoved(BlobHash),
    /// The media relay reports a change in a room's live broadcast.
    Broadcast { room: RoomName, state: BroadcastState },
    /// The server itself posts to a room's history (a finished recording, say); members see
    /// it from [`SERVER_PEER`].
    Announce { room: RoomName, body: Body },
    /// The connection is gone.
    Disconnected(ConnId),
    /// The connection's send queue is full: it reads too slowly.
    QueueFull(ConnId),
    /// Nothing came from the connection (not even a pong) within the idle timeout.
    TimedOut(ConnId),
    /// The store has durably written the batch with this number (and all before it).
    Persisted(u64),
    /// Time passes: expire history by age, drop empty rooms.
    Tick,
    /// Cluster mode: what the shared log reports.
    Cluster(ClusterInput),
    /// The server is stopping.
    Shutdown,
}

/// Who a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    One(ConnId),
    Many(Vec<ConnId>),
}

impl Recipients {
    pub fn as_slice(&self) -> &[ConnId] {
        match self {
            Recipients::One(c) => std::slice::from_ref(c),
            Recipients::Many(v) => v,
        }
    }
}

/// What the transport must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Queue `frame` for each recipient. A full queue is reported back as [`Input::QueueFull`].
    Deliver { to: Recipients, frame: Frame },
    /// Close the connection with this reason (after sending what is queued, where possible).
    Close { conn: ConnId, reason: ErrorCode },
    /// A message the app's backend posted ([`Engine::post_as_app`]) is durable as `seq`, or
    /// was not stored: its room was deleted before it was (`room_closed`), or the shared log
    /// could not be reached (`store_unavailable`).
    Posted { ticket: u64, room: RoomName, seq: Result<u64, ErrorCode> },
    /// Cluster mode: something for the shared log to do.
    Cluster(ClusterOp),
    /// Cluster mode: delete this node's copies of the room's files (the app closed the room
    /// with its files, through another node).
    DeleteFiles { room: RoomName },
    /// Stop reading from the connection: it has `max_unpersisted_per_connection` messages
    /// waiting for the store. Its socket's buffers fill and its client waits, with no error.
    PauseReading { conn: ConnId },
    /// Read from the connection again (after [`Output::PauseReading`]).
    ResumeReading { conn: ConnId },
}

/// A change the store must make durable, in order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoreOp {
    /// A room came to be: remember its epoch.
    CreateRoom { room: RoomName, epoch: Epoch },
    /// Open mode: the browser that owns the room (its client ref).
    SetHost { room: RoomName, host: String },
    /// A message: `json` is a [`RoomMessage`].
    Append { room: RoomName, seq: u64, json: Arc<str> },
    /// Message `seq` is now `json` (a deletion's tombstone).
    Replace { room: RoomName, seq: u64, json: Arc<str> },
    /// A removal that must hold across restarts (see [`Removal`]).
    Bar(Removal),
    /// A removal that no longer holds (every token it kept out has expired).
    Unbar { room: Option<RoomName>, user: UserId },
    /// History up to and including `through_seq` was evicted.
    Trim { room: RoomName, through_seq: u64 },
    /// The room is gone (empty and no history left).
    DropRoom { room: RoomName },
}

/// A room as the store gives it back at start: its epoch and its messages in order.
#[derive(Debug, Clone)]
pub struct RestoredRoom {
    pub room: RoomName,
    pub epoch: Epoch,
    pub messages: Vec<Entry>,
    /// Open mode: the room's owner browser ([`ClientKey::client_ref`]).
    pub host: Option<String>,
}

/// Limits and settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub max_frame_bytes: usize,
    pub max_rooms: usize,
    pub max_rooms_per_connection: usize,
    pub max_peers_per_room: usize,
    /// Sustained publish + signal messages per second per connection (0: unlimited).
    pub messages_per_second: u32,
    pub message_burst: u32,
    /// Joins and leaves per connection (each may touch the store and every member).
    pub joins: Rate,
    /// Rooms created from one address (a room comes to be with its first member).
    pub room_creation: Rate,
    /// Rooms created from one address that exist at once, so no address can fill
    /// `max_rooms` for everyone.
    pub max_rooms_per_addr: usize,
    /// A connection that has not said hello this long after it opened is closed.
    pub hello_timeout_ms: Millis,
    pub history: HistoryLimits,
    /// History is sent in frames of at most this many messages (and about `max_frame_bytes`).
    pub history_batch: usize,
    /// Messages accepted but not yet durable, server-wide. Past it publishers get `overloaded`.
    pub max_unpersisted: usize,
    /// Messages one connection may have accepted and not yet durable: reaching it pauses
    /// reading from that connection ([`Output::PauseReading`]) until some are durable, so one
    /// fast publisher waits on its own socket instead of filling `max_unpersisted` for all.
    pub max_unpersisted_per_connection: usize,
    pub ice_servers: Vec<IceServer>,
    /// When set, each welcome carries fresh TURN credentials for the peer.
    pub turn: Option<TurnConfig>,
    /// When set, each join is followed by a grant for the room's files.
    pub grant: Option<GrantConfig>,
    /// Who may connect, and where their rights come from.
    pub auth: Auth,
    /// Cluster mode: rooms are sequenced by a log shared with other nodes (`None`: this
    /// engine numbers messages itself, for the embedded store).
    pub cluster: Option<ClusterConfig>,
}

/// Who may connect and what they may do.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// Anyone may join any room with every member's right ([`Rights::member`]); the member
    /// there longest owns the room and may also go live, record and moderate. For development.
    #[default]
    Open,
    /// Every connection presents a token from the app's backend; rights come from it.
    Token(TokenAuth),
}

/// Token mode's settings.
#[derive(Debug, Clone)]
pub struct TokenAuth {
    pub verifier: Arc<Verifier>,
    /// A connection is told this long before its token expires ([`ServerMsg::TokenExpiring`]).
    pub expiry_notice_ms: Millis,
    /// A connection whose token expired is closed with `token_expired` this long after.
    pub expiry_grace_ms: Millis,
}

/// The rights only a room's owner has in open mode.
fn owner_rights() -> Rights {
    [Right::Broadcast, Right::Record, Right::Moderate].into_iter().collect()
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_rooms: 100_000,
            max_rooms_per_connection: 16,
            max_peers_per_room: 64,
            messages_per_second: 200,
            message_burst: 400,
            joins: Rate::per_second(5, 32),
            room_creation: Rate::per_minute(60, 60),
            max_rooms_per_addr: 1000,
            hello_timeout_ms: 10_000,
            history: HistoryLimits { max_messages: 1000, max_bytes: 1024 * 1024, max_age_ms: 24 * 3600 * 1000 },
            history_batch: 1000,
            max_unpersisted: 100_000,
            max_unpersisted_per_connection: 1_000,
            ice_servers: Vec::new(),
            turn: None,
            grant: None,
            auth: Auth::Open,
            cluster: None,
        }
    }
}

/// Counters and gauges for `/metrics`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub messages_in: u64,
    pub messages_published: u64,
    pub deliveries: u64,
    pub dropped_slow_clients: u64,
    pub errors_sent: u64,
    pub rate_limited: u64,
    pub hello_timeouts: u64,
}

#[derive(Debug)]
struct Membership {
    room: RoomName,
    name: DisplayName,
    /// What the token grants here (open mode: a member's rights; the owner's come on top).
    rights: Rights,
    /// When it joined (ms).
    since: Millis,
    /// When its last typing notice was relayed (ms; 0: never).
    last_typing: Millis,
}

#[derive(Debug)]
struct Peer {
    id: PeerId,
    /// The client's address key ([`address_key`]).
    addr: IpAddr,
    connected_at: Millis,
    greeted: bool,
    /// Token mode: who the connection's newest token says it is.
    identity: Option<Identity>,
    /// Whether it was told its token is about to expire.
    expiry_noticed: bool,
    /// The public name of the browser's lasting key ([`ClientKey::client_ref`]): its
    /// message ids start with it, and it is the same browser after a reload.
    client_ref: Option<String>,
    rooms: Vec<Membership>,
    bucket: TokenBucket,
    joins: TokenBucket,
    /// Its messages accepted and not yet durable (see [`EngineConfig::max_unpersisted_per_connection`]).
    unpersisted: usize,
}

impl Peer {
    fn membership(&self, room: &RoomName) -> Option<&Membership> {
        self.rooms.iter().find(|m| &m.room == room)
    }
}

#[derive(Debug)]
struct Room {
    epoch: Epoch,
    /// Connections in the room, in join order.
    members: Vec<ConnId>,
    history: History,
    /// The last sequence number handed out (committed or not).
    last_assigned: u64,
    /// The last sequence number committed (durable, delivered).
    last_committed: u64,
    /// Whether the store knows the room. A room is stored with its first message, so joins
    /// and leaves of rooms that never had one cost no store write.
    stored: bool,
    /// The address key of the connection that made the room (not known after a restart).
    creator: Option<IpAddr>,
    /// Cluster mode: the room as a copy of the shared log, and its members elsewhere.
    shared: Option<cluster::SharedRoom>,
    /// Open mode: the browser that owns the room ([`ClientKey::client_ref`] of its first
    /// owner), kept with the room so it owns it again when it comes back, after a reload or
    /// a server restart.
    host_ref: Option<String>,
    /// Open mode: the member the members here were last told is the host.
    announced_host: Option<PeerId>,
}

impl Room {
    fn new(epoch: Epoch, creator: Option<IpAddr>) -> Self {
        Room {
            epoch,
            members: Vec::new(),
            history: History::default(),
            last_assigned: 0,
            last_committed: 0,
            stored: false,
            creator,
            shared: None,
            host_ref: None,
            announced_host: None,
        }
    }

    fn is_expired(&self) -> bool {
        self.members.is_empty() && self.history.is_empty() && self.last_assigned == self.last_committed
    }
}

/// Who posted a message, and so who hears of it when it is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A member: acked to it, delivered to the others.
    Member(ConnId),
    /// The app's backend: [`Output::Posted`] with this ticket, delivered to every member.
    App(u64),
    /// The server itself (a finished recording): delivered to every member.
    Server,
}

/// A message that has its sequence number and waits for the store.
#[derive(Debug)]
struct Pending {
    room: RoomName,
    seq: u64,
    at: Millis,
    sender: Origin,
    id: ClientMsgId,
    json: Arc<str>,
    blob: Option<BlobHash>,
}

/// The room engine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    rng: StdRng,
    /// By connection id (server-assigned, so a cheap hash is safe).
    peers: rustc_hash::FxHashMap<ConnId, Peer>,
    by_peer_id: HashMap<PeerId, ConnId>,
    rooms: HashMap<RoomName, Room>,
    /// Store ops not yet taken by the writer, and the messages waiting on them.
    staged_ops: Vec<StoreOp>,
    staged: Vec<Pending>,
    /// Batches taken by the writer and not yet reported durable, oldest first.
    in_flight: VecDeque<(u64, Vec<Pending>)>,
    next_batch: u64,
    unpersisted: usize,
    outputs: Vec<Output>,
    stats: Stats,
    /// Blobs the cache holds.
    known_blobs: HashSet<BlobHash>,
    /// How many history entries refer to each blob: a referenced blob stays cached.
    blob_refs: HashMap<BlobHash, usize>,
    /// Rooms with a broadcast, a recording or viewers waiting, as the media relay reported.
    broadcasts: HashMap<RoomName, BroadcastState>,
    /// The `now` of the latest input, for work that follows from it (an ownership hand-over).
    last_now: Millis,
    /// Per client address: rooms it made that still exist, and its room creation budget.
    addrs: HashMap<IpAddr, AddrUsage>,
    /// Users removed from a room (or, with no room, the server): tokens issued before the
    /// removal do not let them back in (see [`Bar`]).
    bars: HashMap<(Option<RoomName>, UserId), Bar>,
    /// Cluster mode: messages handed to the shared log and not yet answered, by token.
    appending: HashMap<u64, cluster::Appending>,
    next_append: u64,
}

#[derive(Debug)]
struct AddrUsage {
    rooms: usize,
    creations: TokenBucket,
}

impl AddrUsage {
    fn new(config: &EngineConfig, now: Millis) -> Self {
        AddrUsage { rooms: 0, creations: TokenBucket::full(config.room_creation, now) }
    }
}

/// Who the server's own room messages ([`Input::Announce`]) are from.
pub const SERVER_PEER: &str = "relaycast";

impl Engine {
    /// A new engine. `seed` feeds the generator of peer ids and epochs (random in production,
    /// fixed in tests).
    pub fn new(config: EngineConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            peers: Default::default(),
            by_peer_id: HashMap::new(),
            rooms: HashMap::new(),
            staged_ops: Vec::new(),
            staged: Vec::new(),
            in_flight: VecDeque::new(),
            next_batch: 1,
            unpersisted: 0,
            outputs: Vec::new(),
            stats: Stats::default(),
            known_blobs: HashSet::new(),
            blob_refs: HashMap::new(),
            broadcasts: HashMap::new(),
            last_now: 0,
            addrs: HashMap::new(),
            bars: HashMap::new(),
            appending: HashMap::new(),
            next_append: 1,
        }
    }

    /// `peer`'s rights in `room` now, or `None` when it is not a member. Grants and stream
    /// keys hold only as far as this says: a leave, a removal or a disconnect ends them (a
    /// reconnecting client is a new peer with new grants), a refreshed token may change them.
    pub fn rights_of(&self, room: &RoomName, peer: &PeerId) -> Option<Rights> {
        match self.by_peer_id.get(peer) {
            Some(conn) => self.rights(*conn, room),
            // Cluster mode: a member of another node (a broadcast here, its publisher there).
            None => self.remote_rights(room, peer),
        }
    }

    /// A member's rights: its token's for the room, and in open mode the owner's on top for
    /// the member there longest.
    fn rights(&self, conn: ConnId, room_name: &RoomName) -> Option<Rights> {
        let membership = self.peers.get(&conn)?.membership(room_name)?;
        let owner = matches!(self.config.auth, Auth::Open) && self.owner(room_name) == Some(conn);
        Some(if owner { membership.rights.union(owner_rights()) } else { membership.rights })
    }

    /// Whether live history refers to `hash` (the cache must keep it).
    pub fn is_pinned(&self, hash: &BlobHash) -> bool {
        self.blob_refs.contains_key(hash)
    }

    fn unref_blobs(&mut self, blobs: Vec<BlobHash>) {
        for hash in blobs {
            if let Some(n) = self.blob_refs.get_mut(&hash) {
                *n -= 1;
                if *n == 0 {
                    self.blob_refs.remove(&hash);
                }
            }
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Load rooms and their histories from the store, before any connection. History beyond
    /// today's limits is evicted (and the store told).
    pub fn restore(&mut self, rooms: Vec<RestoredRoom>, now: Millis) {
        for restored in rooms {
            let mut history = History::default();
            let mut last = 0;
            for entry in restored.messages {
                last = entry.seq;
                if let Some(hash) = &entry.blob {
                    *self.blob_refs.entry(hash.clone()).or_default() += 1;
                }
                let evicted = history.push(entry, &self.config.history, now);
                self.unref_blobs(evicted.blobs);
            }
            if let Some(first) = history.first_seq() {
                if first > 1 {
                    self.staged_ops.push(StoreOp::Trim { room: restored.room.clone(), through_seq: first - 1 });
                }
            } else if last > 0 {
                self.staged_ops.push(StoreOp::Trim { room: restored.room.clone(), through_seq: last });
            }
            let room = Room {
                history,
                last_assigned: last,
                last_committed: last,
                stored: true,
                host_ref: restored.host,
                ..Room::new(restored.epoch, None)
            };
            if room.is_expired() {
                self.staged_ops.push(StoreOp::DropRoom { room: restored.room });
            } else {
                self.rooms.insert(restored.room, room);
            }
        }
    }

    /// Feed one input. Outputs accumulate until [`Engine::drain_outputs`].
    pub fn handle(&mut self, now: Millis, input: Input) {
        self.last_now = now;
        match input {
            Input::Connected(conn, addr) => self.connected(conn, address_key(addr), now),
            Input::Message(conn, msg) => {
                self.stats.messages_in += 1;
                self.message(conn, msg, now)
            }
            Input::BadFrame(conn, err) => {
                self.stats.messages_in += 1;
                self.error(conn, err.code(), err.to_string(), None, None);
                if err.code() == ErrorCode::FrameTooLarge {
                    self.close(conn, ErrorCode::FrameTooLarge);
                }
            }
            Input::BlobStored(hash) => {
                self.known_blobs.insert(hash);
            }
            Input::BlobRemoved(hash) => {
                self.known_blobs.remove(&hash);
            }
            Input::BinaryFrame(conn) => {
                self.stats.messages_in += 1;
                self.error(
                    conn,
                    ErrorCode::BinaryUnsupported,
                    "the protocol uses text frames with JSON".into(),
                    None,
                    None,
                );
            }
            Input::Broadcast { room, state } if self.is_clustered() => self.broadcast_from_relay(room, state),
            Input::Broadcast { room, state } => self.broadcast_changed(room, state),
            Input::Announce { room, body } => self.announce(room, body, now),
            Input::Disconnected(conn) => self.disconnected(conn),
            Input::QueueFull(conn) => {
                if self.peers.contains_key(&conn) {
                    self.stats.dropped_slow_clients += 1;
                    self.close(conn, ErrorCode::SlowConsumer);
                }
            }
            Input::TimedOut(conn) => {
                if self.peers.contains_key(&conn) {
                    self.close(conn, ErrorCode::IdleTimeout);
                }
            }
            Input::Persisted(batch) => self.persisted(batch, now),
            Input::Tick => self.tick(now),
            Input::Cluster(input) => self.cluster_input(input, now),
            Input::Shutdown => {
                let mut conns: Vec<ConnId> = self.peers.keys().copied().collect();
                conns.sort_unstable();
                for conn in conns {
                    self.outputs.push(Output::Close { conn, reason: ErrorCode::ShuttingDown });
                }
            }
        }
    }

    /// Take the outputs produced so far, in order.
    pub fn drain_outputs(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// Hand the store writer the oldest staged ops as one numbered batch: everything staged,
    /// up to [`MAX_BATCH_OPS`] ops or about [`MAX_BATCH_BYTES`] of messages. The cap bounds the
    /// burst one commit releases toward each connection's queue.
    pub fn take_store_batch(&mut self) -> Option<(u64, Vec<StoreOp>)> {
        if self.staged_ops.is_empty() {
            return None;
        }
        let mut bytes = 0;
        let mut messages = 0;
        let mut cut = self.staged_ops.len();
        for (i, op) in self.staged_ops.iter().enumerate() {
            if i >= MAX_BATCH_OPS || bytes >= MAX_BATCH_BYTES {
                cut = i;
                break;
            }
            if let StoreOp::Append { json, .. } = op {
                bytes += json.len();
                messages += 1;
            }
        }
        let ops: Vec<StoreOp> = self.staged_ops.drain(..cut).collect();
        // Appends and pending messages are staged together, in the same order.
        let pending: Vec<Pending> = self.staged.drain(..messages).collect();
        let batch = self.next_batch;
        self.next_batch += 1;
        self.in_flight.push_back((batch, pending));
        Some((batch, ops))
    }

    /// Whether there are store ops for the writer to take.
    pub fn has_store_work(&self) -> bool {
        !self.staged_ops.is_empty()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn connection_count(&self) -> usize {
        self.peers.len()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Messages and bytes held in all rooms' histories.
    pub fn history_size(&self) -> (usize, usize) {
        self.rooms.values().fold((0, 0), |(n, b), r| (n + r.history.len(), b + r.history.bytes()))
    }

    /// Messages accepted and not yet durable.
    pub fn unpersisted(&self) -> usize {
        self.unpersisted
    }

    // ---- inputs ----

    fn connected(&mut self, conn: ConnId, addr: IpAddr, now: Millis) {
        let id = loop {
            let id = PeerId::try_from(self.random_token(12)).unwrap_or_else(|_| unreachable!());
            if !self.by_peer_id.contains_key(&id) {
                break id;
            }
        };
        self.by_peer_id.insert(id.clone(), conn);
        let bucket = TokenBucket::full(self.message_rate(), now);
        let joins = TokenBucket::full(self.config.joins, now);
        self.peers.insert(
            conn,
            Peer {
                id,
                addr,
                connected_at: now,
                greeted: false,
                client_ref: None,
                identity: None,
                expiry_noticed: false,
                rooms: Vec::new(),
                bucket,
                joins,
                unpersisted: 0,
            },
        );
    }

    fn message(&mut self, conn: ConnId, msg: ClientMsg, now: Millis) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        match msg {
            ClientMsg::Hello { protocol, token, client } => self.hello(conn, protocol, token, client, now),
            _ if !peer.greeted => self.error(conn, ErrorCode::HelloRequired, "send hello first".into(), None, None),
            ClientMsg::Join { room, name, token, resume } => {
                if !self.join_rate_ok(conn, now, &room) {
                    return;
                }
                // A token on a join is the connection's newest token (a per-room one, say).
                if let Some(token) = token {
                    if let Err((code, message)) = self.take_token(conn, &token, now) {
                        return self.error(conn, code, message, Some(room), None);
                    }
                }
                self.join(conn, room, name, resume, now)
            }
            ClientMsg::Refresh { token } => self.refresh(conn, token, now),
            ClientMsg::Delete { room, seq } => {
                // A deletion is recorded in the history like a message: it counts like one.
                if self.rate_ok(conn, now, &room, None) {
                    self.delete_message(conn, room, seq, now)
                }
            }
            ClientMsg::Remove { room, peer, reason } => self.remove(conn, room, peer, reason, now),
            ClientMsg::Leave { room } => {
                if self.join_rate_ok(conn, now, &room) {
                    self.leave(conn, room)
                }
            }
            ClientMsg::Signal { room, to, signal } => {
                if self.rate_ok(conn, now, &room, None) {
                    self.signal(conn, room, to, signal)
                }
            }
            ClientMsg::Publish { room, id, body } => {
                if self.rate_ok(conn, now, &room, Some(&id)) {
                    self.publish(conn, room, id, body, now)
                }
            }
            ClientMsg::Typing { room } => {
                if self.rate_ok(conn, now, &room, None) {
                    self.typing(conn, room, now)
                }
            }
        }
    }

    /// Tell the room's other members that this one is typing: not stored, not sequenced,
    /// and at most once per [`TYPING_MIN_INTERVAL_MS`] per member (closer notices say
    /// nothing new and are dropped). Members on other nodes are told through their nodes
    /// (cluster mode).
    fn typing(&mut self, conn: ConnId, room_name: RoomName, now: Millis) {
        let may_post = self.rights(conn, &room_name).is_some_and(|r| r.has(Right::Publish));
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let peer_id = peer.id.clone();
        let Some(membership) = peer.rooms.iter_mut().find(|m| m.room == room_name) else {
            return self.not_joined(conn, room_name, None);
        };
        if !may_post {
            return self.forbidden(conn, room_name, None, "you may not post in this room");
        }
        if membership.last_typing != 0 && now.saturating_sub(membership.last_typing) < TYPING_MIN_INTERVAL_MS {
            return;
        }
        membership.last_typing = now;
        let (others, shared) = match self.rooms.get(&room_name) {
            Some(room) => {
                (room.members.iter().copied().filter(|c| *c != conn).collect::<Vec<_>>(), room.shared.is_some())
            }
            None => return,
        };
        if shared {
            self.cluster_op(ClusterOp::Typing { room: room_name.clone(), peer_id: peer_id.clone() });
        }
        if !others.is_empty() {
            self.deliver(Recipients::Many(others), Frame::of(&ServerMsg::Typing { room: room_name, peer_id }));
        }
    }

    fn hello(
        &mut self,
        conn: ConnId,
        protocol: u32,
        token: Option<AccessToken>,
        client: Option<ClientKey>,
        now: Millis,
    ) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.greeted {
            return self.error(conn, ErrorCode::AlreadyGreeted, "hello was already sent".into(), None, None);
        }
        if protocol != PROTOCOL_VERSION {
            let message = format!("this server speaks protocol {PROTOCOL_VERSION}; the client speaks {protocol}");
            self.error(conn, ErrorCode::UnsupportedProtocol, message, None, None);
            return self.close(conn, ErrorCode::UnsupportedProtocol);
        }
        if let Auth::Token(_) = self.config.auth {
            let verified = match &token {
                Some(token) => self.take_token(conn, token, now),
                None => Err((ErrorCode::Unauthorized, "this server needs an access token from the app".into())),
            };
            if let Err((code, message)) = verified {
                self.error(conn, code, message, None, None);
                return self.close(conn, code);
            }
        }
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        peer.greeted = true;
        peer.client_ref = client.map(|k| k.client_ref());
        let c = &self.config;
        let welcome = ServerMsg::Welcome {
            protocol: PROTOCOL_VERSION,
            peer_id: peer.id.clone(),
            limits: ServerLimits {
                max_frame_bytes: c.max_frame_bytes as u64,
                max_rooms_per_connection: c.max_rooms_per_connection as u32,
                max_peers_per_room: c.max_peers_per_room as u32,
                messages_per_second: c.messages_per_second,
                history_max_messages: c.history.max_messages as u64,
                history_max_age_secs: c.history.max_age_ms / 1000,
            },
            ice_servers: c
                .ice_servers
                .iter()
                .cloned()
                .chain(c.turn.as_ref().map(|turn| turn.credentials(&peer.id, now)))
                .collect(),
            user: peer.identity.as_ref().map(|identity| UserInfo {
                id: identity.user.clone(),
                name: identity.name.clone(),
                expires: identity.expires,
            }),
        };
        self.send(conn, &welcome);
    }

    fn join(&mut self, conn: ConnId, room_name: RoomName, name: DisplayName, resume: Option<ResumeFrom>, now: Millis) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        // Token mode: the token says who you are here and what you may do.
        let (name, rights, user) = match (&self.config.auth, &peer.identity) {
            (Auth::Token(_), Some(identity)) => {
                let rights = identity.rooms.for_room(&room_name);
                if !rights.has(Right::Join) {
                    let message = format!("your token does not let you join {room_name}");
                    return self.forbidden(conn, room_name, None, &message);
                }
                let key = (Some(room_name.clone()), identity.user.clone());
                if self.bars.get(&key).is_some_and(|bar| bar.holds_for(identity)) {
                    let message = "you were removed from this room".into();
                    return self.error(conn, ErrorCode::Removed, message, Some(room_name), None);
                }
                (identity.name.clone(), rights, Some(identity.user.clone()))
            }
            (Auth::Token(_), None) => {
                return self.error(conn, ErrorCode::Unauthorized, "no token".into(), Some(room_name), None)
            }
            (Auth::Open, _) => (name, Rights::member(), None),
        };
        let addr = peer.addr;
        let room_err = |code, msg: &str| Some((code, msg.to_owned()));
        let refusal = if peer.membership(&room_name).is_some() {
            room_err(ErrorCode::AlreadyJoined, "already in this room")
        } else if peer.rooms.len() >= self.config.max_rooms_per_connection {
            room_err(ErrorCode::TooManyRooms, "this connection is in as many rooms as it may be")
        } else {
            match self.rooms.get(&room_name) {
                Some(room)
                    if room.members.len() + room.shared.as_ref().map_or(0, |s| s.remote.len())
                        >= self.config.max_peers_per_room =>
                {
                    room_err(ErrorCode::RoomFull, "the room is full")
                }
                Some(_) => None,
                None if self.rooms.len() >= self.config.max_rooms => {
                    room_err(ErrorCode::ServerFull, "the server holds as many rooms as it may")
                }
                // Cluster mode: whether a room is new is for the shared log to say, and the
                // creation budget of an address is kept there, for every node at once.
                None if self.is_clustered() => None,
                None => self.may_create_room(addr, now),
            }
        };
        if let Some((code, message)) = refusal {
            if code == ErrorCode::RateLimited {
                self.stats.rate_limited += 1;
            }
            return self.error(conn, code, message, Some(room_name), None);
        }

        if !self.rooms.contains_key(&room_name) {
            let room = if self.is_clustered() {
                self.new_shared_room(&room_name, Some(addr))
            } else {
                Room::new(self.new_epoch(), Some(addr))
            };
            if !self.is_clustered() {
                let config = &self.config;
                self.addrs.entry(addr).or_insert_with(|| AddrUsage::new(config, now)).rooms += 1;
            }
            self.rooms.insert(room_name.clone(), room);
        }
        // Cluster mode: a room is joined once its history and members are here.
        if self.defer_join(conn, &room_name, &name, &resume) {
            return;
        }
        let node = self.config.cluster.as_ref().map(|c| c.node.clone());
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let mut me = PeerInfo { id: peer.id.clone(), name: name.clone(), user, host: false };
        peer.rooms.push(Membership { room: room_name.clone(), name: name.clone(), rights, since: now, last_typing: 0 });

        let others = room.members.clone();
        let owner_before = others.first().copied();
        room.members.push(conn);
        if let Some(node) = node {
            let member =
                ClusterMember { peer_id: me.id.clone(), name, user: me.user.clone(), node, since: now, rights };
            self.outputs.push(Output::Cluster(ClusterOp::Join { room: room_name.clone(), member }));
        }
        // In open mode the room's own browser owns it, else the member there longest.
        self.claim_host(conn, &room_name);
        let Some(room) = self.rooms.get(&room_name) else {
            return;
        };
        let rights = self.rights(conn, &room_name).unwrap_or(rights);
        me.host = rights.has(Right::Broadcast);
        let remote = room.shared.as_ref().map_or(&[][..], |s| s.remote.as_slice());
        let present: Vec<PeerInfo> = others
            .iter()
            .filter_map(|c| self.peers.get(c).map(|p| &p.id))
            .chain(remote.iter().map(|m| &m.peer_id))
            .filter_map(|id| self.peer_info(&room_name, id))
            .collect();

        // The joiner: who is here, then where its history starts, then the history.
        let mut frames = vec![Frame::of(&ServerMsg::Joined {
            room: room_name.clone(),
            epoch: room.epoch.clone(),
            last_seq: room.last_committed,
            peers: present,
            rights,
        })];
        if let Some(grant) = &self.config.grant {
            let (token, expires) = grant.mint(&room_name, &me.id, now);
            frames.push(Frame::of(&ServerMsg::Grant { room: room_name.clone(), token, expires }));
            if rights.has(Right::Broadcast) || rights.has(Right::Record) {
                let (key, _) = grant.mint_for(Purpose::Stream, &room_name, &me.id, now);
                frames.push(Frame::of(&ServerMsg::StreamKey { room: room_name.clone(), key }));
            }
        }
        if let Some(state) = self.broadcasts.get(&room_name) {
            frames.push(Frame::of(&ServerMsg::Broadcast { room: room_name.clone(), state: state.clone() }));
        }
        let after = match resume {
            // Without the right to the history, the joiner sees only what comes from now on.
            _ if !rights.has(Right::History) => room.last_committed,
            None => 0,
            Some(r) if r.epoch == room.epoch && r.last_seq <= room.last_committed => {
                let oldest = room.history.first_seq().unwrap_or(room.last_committed + 1);
                if r.last_seq + 1 < oldest {
                    frames.push(Frame::of(&ServerMsg::HistoryTruncated {
                        room: room_name.clone(),
                        requested_after: r.last_seq,
                        oldest_available: oldest,
                    }));
                }
                r.last_seq
            }
            // Another epoch, or a position this history never reached: the client's view
            // belongs to a history that is gone. Say so and start over.
            Some(_) => {
                frames.push(Frame::of(&ServerMsg::HistoryReset { room: room_name.clone(), epoch: room.epoch.clone() }));
                0
            }
        };
        history_batches(&room_name, &room.history, after, &self.config, &mut frames);
        for frame in frames {
            self.deliver(Recipients::One(conn), frame);
        }

        if !others.is_empty() {
            let frame = Frame::of(&ServerMsg::PeerJoined { room: room_name.clone(), peer: me });
            self.deliver(Recipients::Many(others), frame);
        }
        // The room's own browser came back: the member who stood in hands it over.
        if owner_before.is_some() && self.owner(&room_name) == Some(conn) {
            self.ownership_moved(&room_name, owner_before);
        }
        self.announce_host(&room_name, Some(conn));
    }

    /// How `peer_id` (here or, in cluster mode, on another node) appears to the others in
    /// `room_name`; `None` when it is not a member.
    fn peer_info(&self, room_name: &RoomName, peer_id: &PeerId) -> Option<PeerInfo> {
        let (name, user) = match self.by_peer_id.get(peer_id).and_then(|c| self.peers.get(c)) {
            Some(p) => (p.membership(room_name)?.name.clone(), p.identity.as_ref().map(|i| i.user.clone())),
            None => {
                let m = self.remote_members(room_name).iter().find(|m| &m.peer_id == peer_id)?;
                (m.name.clone(), m.user.clone())
            }
        };
        let host = self.rights_of(room_name, peer_id).is_some_and(|r| r.has(Right::Broadcast));
        Some(PeerInfo { id: peer_id.clone(), name, user, host })
    }

    /// Open mode: the room's host, here or on another node.
    fn host_of(&self, room_name: &RoomName) -> Option<PeerId> {
        match self.owner(room_name) {
            Some(conn) => self.peers.get(&conn).map(|p| p.id.clone()),
            None => self.remote_members(room_name).first().map(|m| m.peer_id.clone()),
        }
    }

    /// Open mode: when the host moved, tell the members here who it was and who it is now
    /// (each learns of itself through [`ServerMsg::Rights`]). After a join, the joiner is not
    /// told (its `joined` listed the host) and nobody is told of the joiner (its `peer_joined`
    /// said whether it is host).
    fn announce_host(&mut self, room_name: &RoomName, joiner: Option<ConnId>) {
        if !matches!(self.config.auth, Auth::Open) {
            return;
        }
        let host = self.host_of(room_name);
        let Some(room) = self.rooms.get_mut(room_name).filter(|r| r.announced_host != host) else {
            return;
        };
        let before = std::mem::replace(&mut room.announced_host, host.clone());
        let members: Vec<ConnId> = room.members.iter().copied().filter(|c| Some(*c) != joiner).collect();
        let joiner_id = joiner.and_then(|c| self.peers.get(&c)).map(|p| p.id.clone());
        let updated: Vec<PeerInfo> = [before, host]
            .into_iter()
            .flatten()
            .filter(|id| Some(id) != joiner_id.as_ref())
            .filter_map(|id| self.peer_info(room_name, &id))
            .collect();
        for peer in updated {
            let others: Vec<ConnId> =
                members.iter().copied().filter(|c| self.peers.get(c).is_some_and(|p| p.id != peer.id)).collect();
            if !others.is_empty() {
                let frame = Frame::of(&ServerMsg::PeerUpdated { room: room_name.clone(), peer });
                self.deliver(Recipients::Many(others), frame);
            }
        }
    }

    /// Open mode: a room's first owner with a lasting key becomes its host browser, kept
    /// with the room.
    fn claim_host(&mut self, conn: ConnId, room_name: &RoomName) {
        if !matches!(self.config.auth, Auth::Open) {
            return;
        }
        let client_ref = self.peers.get(&conn).and_then(|p| p.client_ref.clone());
        let owner = self.owner(room_name);
        let Some(room) = self.rooms.get_mut(room_name).filter(|r| r.shared.is_none() && r.host_ref.is_none()) else {
            return;
        };
        if let (Some(host), true) = (client_ref, owner == Some(conn)) {
            if room.stored {
                self.staged_ops.push(StoreOp::SetHost { room: room_name.clone(), host: host.clone() });
            }
            room.host_ref = Some(host);
        }
    }

    fn leave(&mut self, conn: ConnId, room: RoomName) {
        if !self.remove_member(conn, &room) && !self.cancel_waiting_join(conn, &room) {
            return self.not_joined(conn, room, None);
        }
        self.send(conn, &ServerMsg::Left { room });
    }

    fn signal(&mut self, conn: ConnId, room: RoomName, to: PeerId, signal: Signal) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.membership(&room).is_none() {
            return self.not_joined(conn, room, None);
        }
        if !self.rights(conn, &room).unwrap_or_default().has(Right::Signal) {
            return self.forbidden(conn, room, None, "you may not call or link with others in this room");
        }
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let target = self
            .by_peer_id
            .get(&to)
            .copied()
            .filter(|t| *t != conn && self.peers.get(t).is_some_and(|p| p.membership(&room).is_some()));
        let from = peer.id.clone();
        let Some(target) = target else {
            // Cluster mode: a member on another node gets it through that node.
            if let Some(node) = self.remote_members(&room).iter().find(|m| m.peer_id == to).map(|m| m.node.clone()) {
                let signal = RelayedSignal { room, from, to, signal };
                return self.outputs.push(Output::Cluster(ClusterOp::Signal { node, signal }));
            }
            let message = format!("no peer {to} in this room");
            return self.error(conn, ErrorCode::UnknownPeer, message, Some(room), None);
        };
        self.send(target, &ServerMsg::Signal { room, from, signal });
    }

    fn publish(&mut self, conn: ConnId, room_name: RoomName, id: ClientMsgId, body: Body, now: Millis) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        if peer.membership(&room_name).is_none() {
            return self.not_joined(conn, room_name, Some(id));
        }
        if !self.rights(conn, &room_name).unwrap_or_default().has(Right::Publish) {
            return self.forbidden(conn, room_name, Some(id), "you may not post in this room");
        }
        // Cluster mode: the shared log checks that the room holds the file, on any node.
        if let Body::File { hash, .. } = &body {
            if !self.known_blobs.contains(hash) && !self.is_clustered() {
                let message = "no such file on the server: upload it before sharing it".into();
                return self.error(conn, ErrorCode::UnknownBlob, message, Some(room_name), Some(id));
            }
        }
        if body.is_server_only() {
            let message = "a message cannot be posted deleted: send a delete".into();
            return self.error(conn, ErrorCode::InvalidField, message, Some(room_name), Some(id));
        }
        // A message id's part before a dot is its sender's client ref: only that browser's.
        if let Some((prefix, _)) = id.as_str().split_once('.') {
            if peer.client_ref.as_deref() != Some(prefix) {
                let message = "a message id's part before the first dot must be this client's ref".into();
                return self.error(conn, ErrorCode::InvalidField, message, Some(room_name), Some(id));
            }
        }
        if let Some(of) = body.target() {
            if let Err((code, message)) = self.check_edit(conn, &room_name, of) {
                return self.error(conn, code, message, Some(room_name), Some(id));
            }
        }
        if self.unpersisted >= self.config.max_unpersisted {
            let message = "storage is behind; retry later".into();
            return self.error(conn, ErrorCode::Overloaded, message, Some(room_name), Some(id));
        }
        let Some(author) = self.author(conn, &room_name) else {
            return;
        };
        self.stage_message(room_name, author, id, body, Origin::Member(conn), now);
    }

    /// Who a message `conn` writes in `room_name` is from: its peer id, its name there, its
    /// user (token mode).
    fn author(&self, conn: ConnId, room_name: &RoomName) -> Option<(PeerId, DisplayName, Option<UserId>)> {
        let peer = self.peers.get(&conn)?;
        let name = peer.membership(room_name)?.name.clone();
        Some((peer.id.clone(), name, peer.identity.as_ref().map(|i| i.user.clone())))
    }

    /// Give a message the room's next sequence number and stage it for the store; it is
    /// committed (delivered, acked to `sender`) once durable. A room is stored with its first
    /// message.
    fn stage_message(
        &mut self,
        room_name: RoomName,
        (from, name, user): (PeerId, DisplayName, Option<UserId>),
        id: ClientMsgId,
        body: Body,
        sender: Origin,
        now: Millis,
    ) {
        if self.is_clustered() {
            let (seq, at) = (0, now);
            let message = RoomMessage { seq, from, name, id, user, at, body };
            return self.append_to_log(room_name, message, sender);
        }
        let Some(room) = self.rooms.get_mut(&room_name) else {
            return;
        };
        if !room.stored {
            room.stored = true;
            self.staged_ops.push(StoreOp::CreateRoom { room: room_name.clone(), epoch: room.epoch.clone() });
            if let Some(host) = &room.host_ref {
                self.staged_ops.push(StoreOp::SetHost { room: room_name.clone(), host: host.clone() });
            }
        }
        room.last_assigned += 1;
        let blob = match &body {
            Body::File { hash, .. } => Some(hash.clone()),
            _ => None,
        };
        let message = RoomMessage { seq: room.last_assigned, from, name, id: id.clone(), user, at: now, body };
        let json: Arc<str> = encode_room_message(&message).into();
        self.staged_ops.push(StoreOp::Append { room: room_name.clone(), seq: message.seq, json: json.clone() });
        self.unpersisted_from(&sender, 1);
        self.staged.push(Pending { room: room_name, seq: message.seq, at: now, sender, id, json, blob });
        self.unpersisted += 1;
        self.stats.messages_published += 1;
    }

    fn persisted(&mut self, batch: u64, now: Millis) {
        while self.in_flight.front().is_some_and(|(b, _)| *b <= batch) {
            let Some((_, pending)) = self.in_flight.pop_front() else {
                break;
            };
            for p in pending {
                self.unpersisted -= 1;
                self.unpersisted_from(&p.sender, -1);
                self.commit(p, now);
            }
        }
    }

    /// One more (`+1`) or one fewer (`-1`) of `sender`'s messages waits for the store; a
    /// member's reading is paused at its limit and resumed once it is below.
    fn unpersisted_from(&mut self, sender: &Origin, change: isize) {
        let Origin::Member(conn) = *sender else {
            return;
        };
        let limit = self.config.max_unpersisted_per_connection.max(1);
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        let before = peer.unpersisted;
        peer.unpersisted = before.saturating_add_signed(change);
        if before < limit && peer.unpersisted >= limit {
            self.outputs.push(Output::PauseReading { conn });
        } else if before >= limit && peer.unpersisted < limit {
            self.outputs.push(Output::ResumeReading { conn });
        }
    }

    /// A message is durable: into the history, out to the room, ack to the sender.
    fn commit(&mut self, p: Pending, now: Millis) {
        let Some(room) = self.rooms.get_mut(&p.room) else {
            if let Origin::App(ticket) = p.sender {
                self.outputs.push(Output::Posted { ticket, room: p.room, seq: Err(ErrorCode::RoomClosed) });
            }
            return;
        };
        room.last_committed = p.seq;
        if let Some(hash) = &p.blob {
            *self.blob_refs.entry(hash.clone()).or_default() += 1;
        }
        let entry = Entry { seq: p.seq, at: p.at, json: p.json.clone(), blob: p.blob.clone() };
        let evicted = room.history.push(entry, &self.config.history, now);
        if let Some(through_seq) = evicted.through.filter(|_| room.shared.is_none()) {
            self.staged_ops.push(StoreOp::Trim { room: p.room.clone(), through_seq });
        }
        let unpinned = evicted.blobs;
        let others: Vec<ConnId> = room.members.iter().copied().filter(|c| Origin::Member(*c) != p.sender).collect();
        if !others.is_empty() {
            let frame = Frame::new(message_frame(&p.room, &p.json));
            self.deliver(Recipients::Many(others), frame);
        }
        match p.sender {
            Origin::Member(conn) if self.peers.contains_key(&conn) => {
                self.send(conn, &ServerMsg::Ack { room: p.room, id: p.id, seq: p.seq })
            }
            Origin::App(ticket) => self.outputs.push(Output::Posted { ticket, room: p.room, seq: Ok(p.seq) }),
            Origin::Member(_) | Origin::Server => {}
        }
        self.unref_blobs(unpinned);
    }

    fn disconnected(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.get(&conn) else {
            return;
        };
        let rooms: Vec<RoomName> = peer.rooms.iter().map(|m| m.room.clone()).collect();
        for room in rooms {
            self.remove_member(conn, &room);
        }
        if let Some(peer) = self.peers.remove(&conn) {
            self.by_peer_id.remove(&peer.id);
        }
    }

    fn tick(&mut self, now: Millis) {
        // Connections that never said hello hold a socket and a task each: close them.
        let deadline = now.saturating_sub(self.config.hello_timeout_ms);
        let mut silent: Vec<ConnId> =
            self.peers.iter().filter(|(_, p)| !p.greeted && p.connected_at <= deadline).map(|(c, _)| *c).collect();
        silent.sort_unstable();
        for conn in silent {
            self.stats.hello_timeouts += 1;
            self.error(conn, ErrorCode::HelloTimeout, "no hello in time".into(), None, None);
            self.close(conn, ErrorCode::HelloTimeout);
        }
        self.check_token_expiry(now);
        // Addresses that hold no room and have their whole creation budget back are
        // forgotten, so the table stays as small as the set of active addresses.
        let rate = self.config.room_creation;
        self.addrs.retain(|_, usage| usage.rooms > 0 || !usage.creations.is_full(rate, now));

        let limits = self.config.history;
        let mut expired = Vec::new();
        let mut unpinned = Vec::new();
        for (name, room) in &mut self.rooms {
            let evicted = room.history.evict(&limits, now);
            // Cluster mode: the log is trimmed by length; here only this node's copy is.
            if let Some(through_seq) = evicted.through.filter(|_| room.shared.is_none()) {
                self.staged_ops.push(StoreOp::Trim { room: name.clone(), through_seq });
            }
            unpinned.extend(evicted.blobs);
            // Cluster mode: a room goes with its last member here (`unload_if_unused`).
            if room.shared.is_none() && room.is_expired() {
                expired.push(name.clone());
            }
        }
        for room in expired {
            self.drop_room(&room);
        }
        self.unref_blobs(unpinned);
    }

    /// Open mode: the member in the room longest, when it is on this node. Every node
    /// agrees on it: members are ordered by when they joined, then by peer id.
    fn owner(&self, room_name: &RoomName) -> Option<ConnId> {
        let room = self.rooms.get(room_name)?;
        // The room's own browser, while it is here (one node: cluster mode keeps the rule
        // of the longest present).
        if let Some(host) = room.host_ref.as_deref().filter(|_| room.shared.is_none()) {
            let present =
                room.members.iter().find(|c| self.peers.get(c).is_some_and(|p| p.client_ref.as_deref() == Some(host)));
            if let Some(&conn) = present {
                return Some(conn);
            }
        }
        let &first = room.members.first()?;
        if let Some(remote) = room.shared.as_ref().and_then(|s| s.remote.first()) {
            let peer = self.peers.get(&first)?;
            let since = peer.membership(room_name)?.since;
            if (remote.since, &remote.peer_id) < (since, &peer.id) {
                return None;
            }
        }
        Some(first)
    }

    /// Open mode: when the owner left, the member who has been in the room longest owns it
    /// now, with the owner's rights and a stream key.
    fn ownership_moved(&mut self, room_name: &RoomName, before: Option<ConnId>) {
        if !matches!(self.config.auth, Auth::Open) {
            return;
        }
        let Some(owner) = self.owner(room_name).filter(|o| Some(*o) != before) else {
            return;
        };
        // One who stood in and is still here is back to a member's rights.
        if let Some(rights) = before.and_then(|b| self.rights(b, room_name)) {
            if let Some(before) = before {
                self.send(before, &ServerMsg::Rights { room: room_name.clone(), rights });
            }
        }
        let Some(rights) = self.rights(owner, room_name) else {
            return;
        };
        self.send(owner, &ServerMsg::Rights { room: room_name.clone(), rights });
        self.send_stream_key(owner, room_name, rights, self.last_now);
    }

    fn broadcast_changed(&mut self, room_name: RoomName, state: BroadcastState) {
        if self.broadcasts.get(&room_name) == Some(&state) {
            return;
        }
        if state == BroadcastState::default() {
            self.broadcasts.remove(&room_name);
        } else {
            self.broadcasts.insert(room_name.clone(), state.clone());
        }
        let Some(room) = self.rooms.get(&room_name) else {
            return;
        };
        if !room.members.is_empty() {
            let to = Recipients::Many(room.members.clone());
            self.deliver(to, Frame::of(&ServerMsg::Broadcast { room: room_name, state }));
        }
    }

    /// A message from the server itself into a room's history, stored like any other.
    fn announce(&mut self, room_name: RoomName, body: Body, now: Millis) {
        if let Body::File { hash, .. } = &body {
            self.known_blobs.insert(hash.clone());
        }
        if !self.ensure_room(&room_name) {
            return;
        }
        let id = self.new_message_id();
        let (Ok(from), Ok(name)) = (PeerId::try_from(SERVER_PEER), DisplayName::try_from("Relaycast")) else {
            unreachable!("valid constants")
        };
        self.stage_message(room_name, (from, name, None), id, body, Origin::Server, now);
    }

    // ---- helpers ----

    /// Remove `conn` from `room`, tell the others. False if it was not a member.
    fn remove_member(&mut self, conn: ConnId, room_name: &RoomName) -> bool {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return false;
        };
        let Some(index) = peer.rooms.iter().position(|m| &m.room == room_name) else {
            return false;
        };
        let peer_id = peer.id.clone();
        let owner_before = self.owner(room_name);
        if let Some(peer) = self.peers.get_mut(&conn) {
            peer.rooms.swap_remove(index);
        }
        let Some(room) = self.rooms.get_mut(room_name) else {
            return true;
        };
        room.members.retain(|c| *c != conn);
        if room.shared.is_some() {
            let leave = ClusterOp::Leave { room: room_name.clone(), peer: peer_id.clone() };
            self.outputs.push(Output::Cluster(leave));
        }
        let Some(room) = self.rooms.get(room_name) else {
            return true;
        };
        if !room.members.is_empty() {
            let frame = Frame::of(&ServerMsg::PeerLeft { room: room_name.clone(), peer_id });
            let others = room.members.clone();
            self.deliver(Recipients::Many(others), frame);
            self.ownership_moved(room_name, owner_before);
            self.announce_host(room_name, None);
        } else if room.shared.is_some() {
            self.unload_if_unused(room_name);
        } else if room.is_expired() {
            self.drop_room(room_name);
        }
        true
    }

    /// The room is gone: forget it, tell the store if it knew it, give its creator's
    /// address its room back.
    fn drop_room(&mut self, room_name: &RoomName) {
        let Some(room) = self.rooms.remove(room_name) else {
            return;
        };
        if room.shared.is_some() {
            self.outputs.push(Output::Cluster(ClusterOp::Unload { room: room_name.clone() }));
            self.broadcasts.remove(room_name);
            let released = room.history.into_blobs();
            self.unref_blobs(released);
        } else if room.stored {
            self.staged_ops.push(StoreOp::DropRoom { room: room_name.clone() });
        }
        if let Some(usage) = room.creator.and_then(|addr| self.addrs.get_mut(&addr)) {
            usage.rooms = usage.rooms.saturating_sub(1);
        }
    }

    /// Whether a connection from `addr` may make a new room now; if not, why.
    fn may_create_room(&mut self, addr: IpAddr, now: Millis) -> Option<(ErrorCode, String)> {
        let config = &self.config;
        let usage = self.addrs.entry(addr).or_insert_with(|| AddrUsage::new(config, now));
        if usage.rooms >= config.max_rooms_per_addr {
            let message = format!("your address has made {} rooms that still exist; join one of them", usage.rooms);
            return Some((ErrorCode::TooManyRooms, message));
        }
        if !usage.creations.try_take(config.room_creation, now) {
            let message =
                format!("more than {} new rooms per minute from your address", config.room_creation.per_minute);
            return Some((ErrorCode::RateLimited, message));
        }
        None
    }

    /// The room a message from the server or the app goes into, made when missing (no
    /// address made it); false when the server holds as many rooms as it may.
    fn ensure_room(&mut self, room_name: &RoomName) -> bool {
        // Cluster mode: the shared log holds every room; nothing to make here.
        if self.rooms.contains_key(room_name) || self.is_clustered() {
            return true;
        }
        if self.rooms.len() >= self.config.max_rooms {
            return false;
        }
        let epoch = self.new_epoch();
        self.rooms.insert(room_name.clone(), Room::new(epoch, None));
        true
    }

    /// An id for a message no client named.
    fn new_message_id(&mut self) -> ClientMsgId {
        ClientMsgId::try_from(self.random_token(16)).unwrap_or_else(|_| unreachable!())
    }

    fn new_epoch(&mut self) -> Epoch {
        Epoch::try_from(self.random_token(16)).unwrap_or_else(|_| unreachable!())
    }

    fn message_rate(&self) -> Rate {
        Rate::per_second(self.config.messages_per_second, self.config.message_burst)
    }

    fn rate_ok(&mut self, conn: ConnId, now: Millis, room: &RoomName, id: Option<&ClientMsgId>) -> bool {
        let rate = self.message_rate();
        let Some(peer) = self.peers.get_mut(&conn) else {
            return false;
        };
        if peer.bucket.try_take(rate, now) {
            return true;
        }
        self.stats.rate_limited += 1;
        let per_second = self.config.messages_per_second;
        let message = format!("more than {per_second} messages per second; this one was dropped");
        self.error(conn, ErrorCode::RateLimited, message, Some(room.clone()), id.cloned());
        false
    }

    /// Joins and leaves share one budget per connection.
    fn join_rate_ok(&mut self, conn: ConnId, now: Millis, room: &RoomName) -> bool {
        let rate = self.config.joins;
        let Some(peer) = self.peers.get_mut(&conn) else {
            return false;
        };
        if peer.joins.try_take(rate, now) {
            return true;
        }
        self.stats.rate_limited += 1;
        let message = format!("more than {} joins and leaves per minute; this one was refused", rate.per_minute);
        self.error(conn, ErrorCode::RateLimited, message, Some(room.clone()), None);
        false
    }

    fn error(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: String,
        room: Option<RoomName>,
        id: Option<ClientMsgId>,
    ) {
        self.stats.errors_sent += 1;
        self.send(conn, &ServerMsg::Error { code, message, room, id });
    }

    fn forbidden(&mut self, conn: ConnId, room: RoomName, id: Option<ClientMsgId>, message: &str) {
        self.error(conn, ErrorCode::Forbidden, message.into(), Some(room), id);
    }

    fn not_joined(&mut self, conn: ConnId, room: RoomName, id: Option<ClientMsgId>) {
        self.error(conn, ErrorCode::NotJoined, "not in this room".into(), Some(room), id);
    }

    fn close(&mut self, conn: ConnId, reason: ErrorCode) {
        self.outputs.push(Output::Close { conn, reason });
        self.disconnected(conn);
    }

    fn send(&mut self, conn: ConnId, msg: &ServerMsg) {
        self.deliver(Recipients::One(conn), Frame::of(msg));
    }

    fn deliver(&mut self, to: Recipients, frame: Frame) {
        self.stats.deliveries += to.as_slice().len() as u64;
        self.outputs.push(Output::Deliver { to, frame });
    }

    fn random_token(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len).map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char).collect()
    }
}

/// The history after `after` as frames of bounded size; always at least one, the last with
/// `done: true`, so a client knows where history ends and live messages begin.
fn history_batches(room: &RoomName, history: &History, after: u64, config: &EngineConfig, out: &mut Vec<Frame>) {
    let byte_budget = config.max_frame_bytes.max(4096);
    let mut batch: Vec<&str> = Vec::new();
    let mut bytes = 0;
    let mut entries = history.after(after).peekable();
    while let Some(entry) = entries.next() {
        batch.push(&entry.json);
        bytes += entry.json.len() + 1;
        let full = batch.len() >= config.history_batch.max(1) || bytes >= byte_budget;
        if full && entries.peek().is_some() {
            out.push(Frame::new(history_frame(room, batch.drain(..), false)));
            bytes = 0;
        }
    }
    out.push(Frame::new(history_frame(room, batch, true)));
}

#[cfg(test)]
mod tests;

//! A node of the cluster: carries out what the engine asks of the shared log
//! ([`ClusterOp`]s) against Redis, in order, and feeds back what happens there
//! ([`ClusterInput`]s): appends and reads answered, publications and presence heard on the
//! node's subscription, signaling from other nodes, and resyncs when the subscription was
//! rebuilt. It also keeps the node's heartbeat and reaps the members of nodes that died.
//!
//! Ops are taken in batches (whatever queued while the previous batch was out); consecutive
//! appends in a batch go to Redis as one pipeline, so a busy node pays one round trip for
//! many messages and order is kept.

use super::peers;
use super::presence::Presence;
use super::room_log::{LogError, NewMessage, RoomKeys, RoomLog, ROOM_TTL_SECS};
use super::subscriber::{Event, Subscriber, SubscriberConfig};
use crate::clock::now_millis;
use crate::core::{
    ClusterInput, ClusterOp, ClusterRemoval, HistoryPage, MemberInfo, Millis, RelayedSignal, RoomSummary,
};
use redis::aio::ConnectionManager;
use redis::Script;
use relaycast_shared::media::BroadcastState;
use relaycast_shared::{ErrorCode, RoomName};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Ops carried out in one batch at most.
const MAX_BATCH: usize = 512;
/// How long a load waits for its room's subscription to be confirmed before reading anyway
/// (a subscriber being rebuilt resyncs every room when it is back).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// Where the node's inputs go (the hub, in a live server).
pub type Feed = Arc<dyn Fn(ClusterInput) + Send + Sync>;

/// What the node reports of itself with each heartbeat: its connections and rooms now.
pub type Load = Arc<dyn Fn() -> NodeLoad + Send + Sync>;

/// A node's load, as its heartbeat publishes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeLoad {
    pub connections: u64,
    pub rooms: u64,
}

/// One node as the cluster sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeView {
    pub id: String,
    /// Whether its heartbeat holds.
    pub alive: bool,
    /// When its heartbeat lapses (or lapsed), ms since the Unix epoch.
    pub heartbeat_until: Millis,
    #[serde(flatten)]
    pub load: NodeLoad,
}

/// A stream entry as `XRANGE` gives it: its id and its fields.
type StreamEntry = (String, Vec<(String, String)>);

/// Every room's name (score 0: listed by name), for the backend API.
const ROOMS_KEY: &str = "rc:rooms";

/// Each node's latest [`NodeLoad`], by node id.
const NODES_INFO_KEY: &str = "rc:nodes:info";

/// How a node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub node_id: String,
    /// A node whose heartbeat is older than this is dead: its members are announced as left.
    pub heartbeat_ttl: Duration,
    /// A gap in a room's sequence waits this long before the log is read.
    pub gap_grace: Duration,
    /// Redis answers within this, or the operation fails (`store_unavailable`).
    pub response_timeout: Duration,
    pub subscriber: SubscriberConfig,
    /// Messages each room's log keeps.
    pub history_max_messages: u64,
    /// New rooms one address may make per minute, across the cluster (0: unlimited).
    pub rooms_per_addr_per_minute: u32,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct NodeCounters {
    pub appends: AtomicU64,
    pub append_failures: AtomicU64,
    pub pipelines: AtomicU64,
    pub reads: AtomicU64,
    pub redis_errors: AtomicU64,
}

/// A running node: where the engine's ops go.
#[derive(Debug, Clone)]
pub struct Node {
    ops: mpsc::UnboundedSender<ClusterOp>,
    healthy: Arc<AtomicBool>,
    pub counters: Arc<NodeCounters>,
    node_id: String,
    command: ConnectionManager,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("bad Redis address: {0}")]
    Url(redis::RedisError),
    #[error("cannot set up the Redis connection: {0}")]
    Connection(redis::RedisError),
}

/// What the tasks share.
struct Shared {
    settings: NodeSettings,
    feed: Feed,
    log: RoomLog,
    presence: Presence,
    subscriber: Subscriber,
    healthy: Arc<AtomicBool>,
    counters: Arc<NodeCounters>,
    load: Load,
    /// The rooms this node holds (for reaping).
    rooms: Mutex<BTreeSet<RoomName>>,
}

impl Node {
    /// Join the cluster on `redis_url` as `settings.node_id`; inputs go to `feed`. Redis need
    /// not be up yet: until it is, the node is not ready and publishes fail.
    pub fn start(redis_url: &str, settings: NodeSettings, feed: Feed, load: Load) -> Result<Node, NodeError> {
        let client = redis::Client::open(redis_url).map_err(NodeError::Url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(settings.response_timeout))
            .set_connection_timeout(Some(settings.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let command = ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(NodeError::Connection)?;
        let (subscriber, events) = Subscriber::start(client, &settings.node_id, settings.subscriber);
        let (ops, ops_rx) = mpsc::unbounded_channel();
        let healthy = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(NodeCounters::default());
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            feed,
            log: RoomLog::new(settings.history_max_messages),
            presence: Presence::default(),
            subscriber,
            healthy: healthy.clone(),
            counters: counters.clone(),
            load,
            rooms: Mutex::new(BTreeSet::new()),
        });
        tokio::spawn(carry_out(shared.clone(), command.clone(), ops_rx));
        tokio::spawn(listen(shared.clone(), events));
        tokio::spawn(keep_alive(shared, command.clone()));
        Ok(Node { ops, healthy, counters, node_id: settings.node_id, command })
    }

    /// Hand the node an op from the engine.
    pub fn send(&self, op: ClusterOp) {
        let _ = self.ops.send(op);
    }

    /// Whether Redis answered the latest heartbeat.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's command connection (shared; it reconnects by itself).
    pub fn connection(&self) -> ConnectionManager {
        self.command.clone()
    }

    /// Every node the cluster knows (alive, or dead within the last day), by id.
    pub async fn cluster_view(&self) -> redis::RedisResult<Vec<NodeView>> {
        let mut conn = self.command.clone();
        let beats: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(super::presence::NODES_KEY)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        let loads: std::collections::HashMap<String, String> =
            redis::cmd("HGETALL").arg(NODES_INFO_KEY).query_async(&mut conn).await?;
        let now = now_millis();
        let mut nodes: Vec<NodeView> = beats
            .into_iter()
            .map(|(id, until)| NodeView {
                alive: until >= now as f64,
                heartbeat_until: until as Millis,
                load: loads.get(&id).and_then(|l| serde_json::from_str(l).ok()).unwrap_or_default(),
                id,
            })
            .collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// A page of `room`'s history from the shared log, for the backend API (any node answers
    /// for any room); `None` when Redis has no such room.
    pub async fn history_page(
        &self,
        room: &RoomName,
        after: u64,
        limit: usize,
    ) -> redis::RedisResult<Option<HistoryPage>> {
        let keys = super::room_log::RoomKeys::of(room);
        let mut conn = self.command.clone();
        let (epoch, top, entries, oldest): (Option<String>, Option<u64>, Vec<StreamEntry>, Vec<StreamEntry>) =
            redis::pipe()
                .atomic()
                .cmd("HGET")
                .arg(&keys.meta)
                .arg("e")
                .cmd("HGET")
                .arg(&keys.meta)
                .arg("s")
                .cmd("XRANGE")
                .arg(&keys.log)
                .arg(format!("{}-0", after + 1))
                .arg("+")
                .arg("COUNT")
                .arg(limit + 1)
                .cmd("XRANGE")
                .arg(&keys.log)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await?;
        let Some(epoch) = epoch.and_then(|e| relaycast_shared::Epoch::try_from(e).ok()) else {
            return Ok(None);
        };
        let seq_of = |id: &str| id.split('-').next().and_then(|s| s.parse::<u64>().ok());
        let more = entries.len() > limit;
        let page: Vec<(String, String)> =
            entries.into_iter().take(limit).filter_map(|(id, mut fields)| Some((id, fields.pop()?.1))).collect();
        // Deleted messages: their tombstones in their place.
        let mut page = page;
        if !page.is_empty() {
            let seqs: Vec<&str> = page.iter().map(|(id, _)| id.split('-').next().unwrap_or("0")).collect();
            let tombstones: Vec<Option<String>> =
                redis::cmd("HMGET").arg(&keys.deleted).arg(&seqs).query_async(&mut conn).await?;
            for ((_, json), tombstone) in page.iter_mut().zip(tombstones) {
                if let Some(tombstone) = tombstone {
                    *json = tombstone;
                }
            }
        }
        Ok(Some(HistoryPage {
            epoch,
            last_seq: top.unwrap_or(0),
            oldest_seq: oldest.first().and_then(|(id, _)| seq_of(id)),
            next_after: page.last().filter(|_| more).and_then(|(id, _)| seq_of(id)),
            messages: page.into_iter().map(|(_, json)| json.into()).collect(),
        }))
    }

    /// Rooms in name order after `after`, at most `limit`, from Redis (any node's), for the
    /// backend API; and whether more follow. Rooms Redis no longer has are dropped from the
    /// list on the way.
    pub async fn list_rooms(
        &self,
        after: Option<&RoomName>,
        limit: usize,
    ) -> redis::RedisResult<(Vec<RoomSummary>, bool)> {
        let mut conn = self.command.clone();
        let now = now_millis();
        let alive: std::collections::HashSet<String> =
            super::presence::live_nodes(&mut conn, now).await?.into_iter().collect();
        let mut rooms = Vec::new();
        let mut from = after.map_or("-".to_owned(), |a| format!("({a}"));
        loop {
            let names: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(ROOMS_KEY)
                .arg(&from)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(limit + 1)
                .query_async(&mut conn)
                .await?;
            if names.is_empty() {
                return Ok((rooms, false));
            }
            for name in &names {
                let Ok(room) = RoomName::try_from(name.as_str()) else { continue };
                let keys = super::room_log::RoomKeys::of(&room);
                let (top, len, members): (Option<u64>, u64, Vec<String>) = redis::pipe()
                    .cmd("HGET")
                    .arg(&keys.meta)
                    .arg("s")
                    .cmd("XLEN")
                    .arg(&keys.log)
                    .cmd("HVALS")
                    .arg(super::presence::members_key(&room))
                    .query_async(&mut conn)
                    .await?;
                let Some(top) = top else {
                    let _: () = redis::cmd("ZREM").arg(ROOMS_KEY).arg(name).query_async(&mut conn).await?;
                    continue;
                };
                if rooms.len() == limit {
                    return Ok((rooms, true));
                }
                let members = members
                    .iter()
                    .filter_map(|json| serde_json::from_str::<crate::core::ClusterMember>(json).ok())
                    .filter(|m| alive.contains(&m.node))
                    .count();
                rooms.push(RoomSummary {
                    room,
                    members,
                    history_messages: len as usize,
                    history_bytes: None,
                    last_seq: top,
                });
            }
            from = format!("({}", names.last().map_or("", |n| n.as_str()));
        }
    }

    /// Who is in `room` on every live node, oldest first, for the backend API.
    pub async fn members(&self, room: &RoomName) -> redis::RedisResult<Vec<MemberInfo>> {
        let mut conn = self.command.clone();
        let members = Presence::default().members(&mut conn, room, now_millis()).await?;
        Ok(members
            .into_iter()
            .map(|m| MemberInfo { peer_id: m.peer_id, user: m.user, name: m.name, since: m.since })
            .collect())
    }

    /// Leaving on purpose: the node's heartbeat ends now, so others reap whatever members
    /// it did not get to announce as left.
    pub async fn leave(&self) {
        let mut conn = self.command.clone();
        let _ = Presence::default().node_gone(&mut conn, &self.node_id).await;
    }
}

/// The secret every node signs grants and stream keys with, when none is configured: made by
/// the first node (`SET NX`) and kept in Redis. Waits for Redis up to `wait`.
pub async fn shared_secret(redis_url: &str, wait: Duration) -> Result<Vec<u8>, String> {
    const KEY: &str = "rc:cluster:secret";
    let client = redis::Client::open(redis_url).map_err(|e| format!("bad Redis address: {e}"))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let attempt = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            let mine: String = rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect();
            let _: Option<String> = redis::cmd("SET").arg(KEY).arg(&mine).arg("NX").query_async(&mut conn).await?;
            redis::cmd("GET").arg(KEY).query_async::<String>(&mut conn).await
        };
        match attempt.await {
            Ok(secret) => return Ok(secret.into_bytes()),
            Err(err) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %err, "waiting for redis to agree on the cluster secret");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => return Err(format!("cannot reach redis for the cluster secret: {err}")),
        }
    }
}

fn ms(d: Duration) -> Millis {
    d.as_millis() as Millis
}

/// The ops loop: batches, in order.
async fn carry_out(shared: Arc<Shared>, mut conn: ConnectionManager, mut ops: mpsc::UnboundedReceiver<ClusterOp>) {
    while let Some(first) = ops.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut batch = batch.into_iter().peekable();
        while let Some(op) = batch.next() {
            if let ClusterOp::Append { .. } = op {
                let mut appends = vec![op];
                while let Some(next) = batch.next_if(|op| matches!(op, ClusterOp::Append { .. })) {
                    appends.push(next);
                }
                append(&shared, &mut conn, appends).await;
            } else {
                one(&shared, &mut conn, op).await;
            }
        }
    }
}

/// Consecutive appends, as one pipeline (retried once for messages Redis had no script for:
/// a restarted Redis forgets scripts).
async fn append(shared: &Shared, conn: &mut ConnectionManager, appends: Vec<ClusterOp>) {
    let items: Vec<_> = appends
        .iter()
        .filter_map(|op| match op {
            ClusterOp::Append { token, room, message, new_epoch } => {
                Some((*token, NewMessage { room, message, new_epoch }))
            }
            _ => None,
        })
        .collect();
    let mut todo: Vec<usize> = (0..items.len()).collect();
    let mut load_script = false;
    for _attempt in 0..2 {
        let batch: Vec<NewMessage> = todo.iter().map(|&i| items[i].1.clone()).collect();
        shared.counters.pipelines.fetch_add(1, Ordering::Relaxed);
        let answers = shared.log.append_all(conn, &batch, load_script).await;
        let answers = match answers {
            Ok(answers) => answers,
            Err(err) => {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                for &i in &todo {
                    failed(shared, items[i].0, &err);
                }
                return;
            }
        };
        let mut retry = Vec::new();
        for (&i, answer) in todo.iter().zip(answers) {
            match answer {
                Ok(appended) => {
                    shared.counters.appends.fetch_add(1, Ordering::Relaxed);
                    if appended.seq == 1 {
                        // A room's first message (an app's post may make a room no node holds).
                        let room = items[i].1.room.as_str();
                        let _: redis::RedisResult<()> =
                            redis::cmd("ZADD").arg(ROOMS_KEY).arg(0).arg(room).query_async(conn).await;
                    }
                    (shared.feed)(ClusterInput::Appended {
                        token: items[i].0,
                        epoch: appended.epoch,
                        seq: appended.seq,
                        json: appended.json,
                    });
                }
                Err(err) if err.is_no_script() && !load_script => retry.push(i),
                Err(err) => failed(shared, items[i].0, &err),
            }
        }
        if retry.is_empty() {
            return;
        }
        todo = retry;
        load_script = true;
    }
}

fn failed(shared: &Shared, token: u64, err: &LogError) {
    let code = if err.is_unknown_blob() { ErrorCode::UnknownBlob } else { ErrorCode::StoreUnavailable };
    if code == ErrorCode::StoreUnavailable {
        shared.counters.append_failures.fetch_add(1, Ordering::Relaxed);
    }
    (shared.feed)(ClusterInput::AppendFailed { token, code, reason: err.to_string() });
}

async fn one(shared: &Arc<Shared>, conn: &mut ConnectionManager, op: ClusterOp) {
    let max = shared.settings.history_max_messages as usize;
    match op {
        ClusterOp::Load { room, new_epoch, creator } => {
            shared.rooms.lock().unwrap_or_else(|p| p.into_inner()).insert(room.clone());
            // Listening first: whatever is published from here on reaches this node, so the
            // read and the live channel together miss nothing.
            let _ = tokio::time::timeout(SUBSCRIBE_WAIT, shared.subscriber.subscribed(&room)).await;
            shared.counters.reads.fetch_add(1, Ordering::Relaxed);
            let now = now_millis();
            let loaded = async {
                let log = match shared.log.read_existing(conn, &room, 1, max, None).await? {
                    Some(log) => log,
                    None => {
                        if let Some(addr) = creator.filter(|_| shared.settings.rooms_per_addr_per_minute > 0) {
                            if !may_create_room(conn, addr, shared.settings.rooms_per_addr_per_minute, now).await? {
                                return Ok(None);
                            }
                        }
                        shared.log.read(conn, &room, 1, max, &new_epoch).await?
                    }
                };
                shared.presence.reap(conn, &room, now).await?;
                let members = shared.presence.members(conn, &room, now).await?;
                let broadcast: Option<String> =
                    redis::cmd("GET").arg(super::media::state_key(&room)).query_async(conn).await?;
                Ok::<_, LogError>(Some((log, members, broadcast.and_then(|json| serde_json::from_str(&json).ok()))))
            }
            .await;
            match loaded {
                Ok(Some((log, members, broadcast))) => {
                    // Listed for the backend API's room list (entries of expired rooms are
                    // pruned as the list is read).
                    let _: redis::RedisResult<()> =
                        redis::cmd("ZADD").arg(ROOMS_KEY).arg(0).arg(room.as_str()).query_async(conn).await;
                    (shared.feed)(ClusterInput::Loaded { room, log, members, broadcast })
                }
                Ok(None) => {
                    let per_minute = shared.settings.rooms_per_addr_per_minute;
                    let reason = format!("more than {per_minute} new rooms per minute from your address");
                    (shared.feed)(ClusterInput::LoadFailed { room, code: ErrorCode::RateLimited, reason })
                }
                Err(err) => {
                    shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(room = %room, error = %err, "cannot load a room from redis");
                    let reason = err.to_string();
                    (shared.feed)(ClusterInput::LoadFailed { room, code: ErrorCode::StoreUnavailable, reason })
                }
            }
        }
        ClusterOp::Unload { room } => {
            shared.rooms.lock().unwrap_or_else(|p| p.into_inner()).remove(&room);
            shared.subscriber.unsubscribe(&room);
        }
        ClusterOp::Refill { room, from, new_epoch } => {
            shared.counters.reads.fetch_add(1, Ordering::Relaxed);
            match shared.log.read(conn, &room, from, max, &new_epoch).await {
                Ok(log) => (shared.feed)(ClusterInput::Refilled { room, log }),
                Err(err) => {
                    shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(room = %room, error = %err, "cannot refill a room from redis");
                    (shared.feed)(ClusterInput::RefillFailed { room })
                }
            }
        }
        ClusterOp::WatchGap { room, from } => {
            let feed = shared.feed.clone();
            let grace = shared.settings.gap_grace;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                feed(ClusterInput::GapCheck { room, from });
            });
        }
        ClusterOp::Join { room, member } => {
            if let Err(err) = shared.presence.join(conn, &room, &member).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(room = %room, error = %err, "cannot announce a member");
            }
        }
        ClusterOp::Leave { room, peer } => {
            if let Err(err) = shared.presence.leave(conn, &room, &peer).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(room = %room, error = %err, "cannot announce a member's leave");
            }
        }
        ClusterOp::Signal { node, signal } => {
            let payload = serde_json::to_string(&signal).unwrap_or_default();
            if let Err(err) = peers::send(conn, &node, &payload).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(node, error = %err, "cannot relay signaling to another node");
            }
        }
        ClusterOp::Delete { room, epoch, seq, tombstone } => {
            if let Err(err) = shared.log.delete(conn, &room, &epoch, seq, &tombstone).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(room = %room, seq, error = %err, "cannot delete a message in redis");
            }
        }
        ClusterOp::Remove(removal) => {
            let payload = serde_json::to_string(&removal).unwrap_or_default();
            if let Err(err) = peers::tell_all(conn, &payload).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "cannot tell the other nodes of a removal");
            }
        }
        ClusterOp::BroadcastState { room, state } => {
            let json = serde_json::to_string(&state).unwrap_or_default();
            let mut pipe = redis::pipe();
            if state == BroadcastState::default() {
                pipe.cmd("DEL").arg(super::media::state_key(&room)).ignore();
            } else {
                pipe.cmd("SET").arg(super::media::state_key(&room)).arg(&json).arg("EX").arg(ROOM_TTL_SECS).ignore();
            }
            pipe.cmd("PUBLISH").arg(RoomKeys::of(&room).channel).arg(format!("!b{json}")).ignore();
            if let Err(err) = pipe.query_async::<()>(conn).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(room = %room, error = %err, "cannot announce a broadcast's state");
            }
        }
        ClusterOp::Typing { room, peer_id } => {
            let notice = format!("{}{peer_id}", super::subscriber::TYPING_PREFIX);
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(RoomKeys::of(&room).channel).arg(notice);
            if let Err(err) = publish.query_async::<()>(conn).await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(room = %room, error = %err, "cannot relay a typing notice");
            }
        }
        ClusterOp::DeleteRoom { room, files } => {
            let keys = RoomKeys::of(&room);
            let deleted = async {
                let mut pipe = redis::pipe();
                pipe.cmd("DEL").arg(&keys.meta).arg(&keys.log).arg(&keys.deleted).arg(super::media::state_key(&room));
                if files {
                    let hashes: Vec<String> = redis::cmd("HKEYS").arg(&keys.files).query_async(conn).await?;
                    pipe.cmd("DEL").arg(&keys.files);
                    for hash in hashes.iter().filter_map(|h| relaycast_shared::BlobHash::try_from(h.as_str()).ok()) {
                        pipe.arg(super::files::holders_key(&room, &hash));
                    }
                }
                pipe.query_async::<()>(conn).await
            };
            if let Err(err) = deleted.await {
                shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(room = %room, error = %err, "cannot delete a closed room's history in redis");
            }
        }
        ClusterOp::Append { .. } => {}
    }
}

/// The subscription's events, as engine inputs.
async fn listen(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    while let Some(event) = events.recv().await {
        let input = match event {
            Event::Publication { room, epoch, json } => ClusterInput::Publication { room, epoch, json },
            Event::Presence { room, change } => ClusterInput::Presence { room, change },
            Event::Direct { payload } => match serde_json::from_str::<RelayedSignal>(&payload) {
                Ok(signal) => ClusterInput::Signal(signal),
                Err(err) => {
                    tracing::warn!(error = %err, "a message from another node this one does not understand");
                    continue;
                }
            },
            Event::Deleted { room, json } => ClusterInput::Deleted { room, json },
            Event::Typing { room, peer_id } => ClusterInput::Typing { room, peer_id },
            Event::Broadcast { room, json } => match serde_json::from_str::<BroadcastState>(&json) {
                Ok(state) => ClusterInput::Broadcast { room, state },
                Err(err) => {
                    tracing::warn!(error = %err, "a broadcast state this node does not understand");
                    continue;
                }
            },
            Event::Control { payload } => match serde_json::from_str::<ClusterRemoval>(&payload) {
                Ok(removal) => ClusterInput::Remove(removal),
                Err(err) => {
                    tracing::warn!(error = %err, "a cluster message this node does not understand");
                    continue;
                }
            },
            Event::Resync => ClusterInput::Resync,
        };
        (shared.feed)(input);
    }
}

/// Whether `addr` may make one more room this minute, across the cluster (counted if so).
async fn may_create_room(
    conn: &mut ConnectionManager,
    addr: std::net::IpAddr,
    per_minute: u32,
    now: Millis,
) -> redis::RedisResult<bool> {
    let key = format!("rc:addr:{{{}}}:rooms:{}", crate::core::address_key(addr), now / 60_000);
    let (made,): (u64,) =
        redis::pipe().cmd("INCR").arg(&key).cmd("EXPIRE").arg(&key).arg(120).ignore().query_async(conn).await?;
    Ok(made <= per_minute as u64)
}

/// The room's broadcast state is dropped and announced ended when no live node (ARGV[3..],
/// passed in so that only the room's keys are touched) holds its media lease.
const END_ORPHANED_BROADCAST: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local holder = redis.call('GET', KEYS[2])
for i = 3, #ARGV do
  if holder == ARGV[i] then
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"#;

/// The heartbeat (every third of its TTL), and reaping: when a node's heartbeat lapses, the
/// members it had in the rooms this node holds are announced as left (by whichever node gets
/// there first; the announcement reaches every node in the room).
async fn keep_alive(shared: Arc<Shared>, mut conn: ConnectionManager) {
    let ttl = shared.settings.heartbeat_ttl;
    let mut every = tokio::time::interval((ttl / 3).max(Duration::from_millis(50)));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reaped: BTreeSet<String> = BTreeSet::new();
    loop {
        every.tick().await;
        let now = now_millis();
        let beat = shared.presence.heartbeat(&mut conn, &shared.settings.node_id, now, ms(ttl)).await;
        let load = serde_json::to_string(&(shared.load)()).unwrap_or_default();
        let beat = match beat {
            Ok(()) => {
                redis::cmd("HSET")
                    .arg(NODES_INFO_KEY)
                    .arg(&shared.settings.node_id)
                    .arg(load)
                    .query_async::<()>(&mut conn)
                    .await
            }
            Err(err) => Err(err),
        };
        if let Err(err) = &beat {
            if shared.healthy.swap(false, Ordering::Relaxed) {
                tracing::error!(error = %err, "redis is unreachable: this node is not ready");
            }
            shared.counters.redis_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if !shared.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!(node = %shared.settings.node_id, "connected to redis: this node is ready");
        }
        // Nodes dead for a day are forgotten; the recently dead are reaped once each.
        let forgotten: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(super::presence::NODES_KEY)
            .arg("-inf")
            .arg(now.saturating_sub(24 * 3600 * 1000))
            .query_async(&mut conn)
            .await
            .unwrap_or_default();
        if !forgotten.is_empty() {
            let mut pipe = redis::pipe();
            pipe.cmd("ZREM").arg(super::presence::NODES_KEY).arg(&forgotten).ignore();
            pipe.cmd("HDEL").arg(NODES_INFO_KEY).arg(&forgotten).ignore();
            let _: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        }
        let dead: Vec<String> = match redis::cmd("ZRANGEBYSCORE")
            .arg(super::presence::NODES_KEY)
            .arg("-inf")
            .arg(format!("({now}"))
            .query_async(&mut conn)
            .await
        {
            Ok(dead) => dead,
            Err(_) => continue,
        };
        reaped.retain(|node| dead.contains(node));
        if dead.iter().all(|node| reaped.contains(node)) {
            continue;
        }
        let rooms: Vec<RoomName> = shared.rooms.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect();
        let mut complete = true;
        let ended = format!("!b{}", serde_json::to_string(&BroadcastState::default()).unwrap_or_default());
        let alive = match super::presence::live_nodes(&mut conn, now).await {
            Ok(alive) => alive,
            Err(_) => continue,
        };
        for room in rooms {
            if let Err(err) = shared.presence.reap(&mut conn, &room, now).await {
                tracing::warn!(room = %room, error = %err, "cannot reap the members of dead nodes");
                complete = false;
            }
            // A broadcast whose media node died is over: members are told.
            let ends: redis::RedisResult<i64> = Script::new(END_ORPHANED_BROADCAST)
                .key(super::media::state_key(&room))
                .key(super::media::lease_key(&room))
                .arg(RoomKeys::of(&room).channel)
                .arg(&ended)
                .arg(&alive)
                .invoke_async(&mut conn)
                .await;
            if let Err(err) = ends {
                tracing::warn!(room = %room, error = %err, "cannot end the broadcast of a dead node");
                complete = false;
            }
        }
        if complete {
            reaped.extend(dead);
        }
    }
}

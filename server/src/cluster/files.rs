//! Files across nodes: which room holds which file, and which nodes have its bytes, kept in
//! Redis; a node asked for a room's file it lacks fetches it once from a node that has it
//! (node to node, with a token only nodes can mint, verified against its hash by the cache as
//! any upload is) and then serves it from its own cache, Range and sendfile included.
//!
//! Per room `R` (hash-tagged like the room's log):
//! - `rc:{R}:files`, a hash: file hash → the file's [`BlobInfo`] as JSON (what `GET blobs`
//!   lists through any node);
//! - `rc:{R}:file:<hash>`, a set of the nodes holding the bytes for the room.
//!
//! And `rc:upload:{<id>}`, the node a resumable upload's partial file is on. A chunk that reaches
//! another node is forwarded there (streamed through, not stored): clients behind a load
//! balancer need not reach nodes directly, as a redirect would require, and their protocol
//! does not change.
//! A holder that no longer has the bytes (evicted) answers 404 and is dropped from the set.

use super::room_log::ROOM_TTL_SECS;
use crate::blobs::{BlobCache, Written};
use crate::clock::now_millis;
use crate::core::{ClusterMember, GrantConfig, Purpose};
use http_body_util::BodyExt;
use redis::aio::ConnectionManager;
use relaycast_shared::blobs::{BlobInfo, NewUpload, UploadId};
use relaycast_shared::{BlobHash, PeerId, Rights, RoomName};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::node_http::NodeLink;
/// A node-to-node fetch that sends nothing for this long is given up (the next holder is tried).
const FETCH_IDLE: Duration = Duration::from_secs(30);

fn files_key(room: &RoomName) -> String {
    super::room_log::RoomKeys::of(room).files
}

/// The node a resumable upload's partial file is on.
fn upload_key(id: &UploadId) -> String {
    format!("rc:upload:{{{id}}}")
}

/// How long an upload's node is remembered (an upload idle longer is dropped anyway).
const UPLOAD_TTL_SECS: u64 = 24 * 3600;

pub(crate) fn holders_key(room: &RoomName, hash: &BlobHash) -> String {
    format!("rc:{{{room}}}:file:{hash}")
}

/// Held while one fetch of a file runs.
type Gate = Arc<tokio::sync::Mutex<()>>;

/// Why a file could not be fetched from another node.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("no node has this room's file any more")]
    NoHolder,
    #[error("the blob cache refused it: {0}")]
    Cache(#[from] crate::blobs::CacheError),
}

/// This node's side of the shared file index.
#[derive(Debug)]
pub struct ClusterFiles {
    node_id: String,
    /// The node as the peer of its node tokens.
    node_peer: PeerId,
    /// How nodes reach each other.
    link: Arc<NodeLink>,
    conn: ConnectionManager,
    grants: GrantConfig,
    cache: Arc<BlobCache>,
    /// One fetch per (room, file) at a time; others wait for it.
    fetching: tokio::sync::Mutex<HashMap<(RoomName, BlobHash), Gate>>,
    /// Files fetched from other nodes.
    pub fetches: AtomicU64,
    /// Files this node holds the only copy of for some room: kept whatever the cache's own
    /// eviction rules say (see [`ClusterFiles::refresh`]).
    sole_copies: std::sync::Mutex<HashSet<BlobHash>>,
    /// Whether the last look at the index succeeded; until one does (Redis down), every file
    /// is kept.
    index_known: std::sync::atomic::AtomicBool,
}

impl ClusterFiles {
    pub fn new(
        link: Arc<NodeLink>,
        conn: ConnectionManager,
        grants: GrantConfig,
        cache: Arc<BlobCache>,
    ) -> Result<Self, String> {
        let node_id = link.node_id().to_owned();
        let node_peer = PeerId::try_from(node_id.as_str()).map_err(|e| format!("node id {node_id:?}: {e}"))?;
        Ok(ClusterFiles {
            node_id,
            node_peer,
            link,
            conn,
            grants,
            cache,
            fetching: tokio::sync::Mutex::new(HashMap::new()),
            fetches: AtomicU64::new(0),
            sole_copies: std::sync::Mutex::new(HashSet::new()),
            index_known: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// `room` holds `info`, and this node has its bytes: every node can list and fetch it.
    pub async fn announce(&self, room: &RoomName, info: &BlobInfo) -> redis::RedisResult<()> {
        let json = serde_json::to_string(info).unwrap_or_default();
        let (files, holders) = (files_key(room), holders_key(room, &info.hash));
        let mut conn = self.conn.clone();
        let (count,): (u64,) = redis::pipe()
            .cmd("SADD")
            .arg(self.my_files_key())
            .arg(format!("{room}\n{}", info.hash))
            .ignore()
            .cmd("HSET")
            .arg(&files)
            .arg(info.hash.as_str())
            .arg(json)
            .ignore()
            .cmd("SADD")
            .arg(&holders)
            .arg(&self.node_id)
            .ignore()
            .cmd("EXPIRE")
            .arg(&files)
            .arg(ROOM_TTL_SECS)
            .ignore()
            .cmd("EXPIRE")
            .arg(&holders)
            .arg(ROOM_TTL_SECS)
            .ignore()
            .cmd("SCARD")
            .arg(&holders)
            .query_async(&mut conn)
            .await?;
        if count <= 1 {
            self.lock_sole().insert(info.hash.clone());
        }
        Ok(())
    }

    /// The set of `room\nhash` this node announced holding.
    fn my_files_key(&self) -> String {
        format!("rc:node:{{{}}}:files", self.node_id)
    }

    fn lock_sole(&self) -> std::sync::MutexGuard<'_, HashSet<BlobHash>> {
        self.sole_copies.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this node holds the only copy of `hash` for some room (the cache must keep it).
    pub fn keeps(&self, hash: &BlobHash) -> bool {
        !self.index_known.load(Ordering::Relaxed) || self.lock_sole().contains(hash)
    }

    /// Bring the index in line with the cache: copies the cache no longer has are withdrawn
    /// (so no node counts on them), and the files this node holds the only copy of are kept
    /// from eviction; a copy another node also has goes by the cache's own rules. Run around
    /// every sweep of the cache. (Two nodes sweeping the same shared file in the same moment
    /// could each count on the other's copy; the window is one sweep.)
    pub async fn refresh(&self) -> redis::RedisResult<()> {
        let result = self.refresh_now().await;
        self.index_known.store(result.is_ok(), Ordering::Relaxed);
        result
    }

    async fn refresh_now(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let mine: Vec<String> = redis::cmd("SMEMBERS").arg(self.my_files_key()).query_async(&mut conn).await?;
        let mut sole = HashSet::new();
        for entry in mine {
            let Some((room, hash)) = entry.split_once('\n') else { continue };
            let (Ok(room), Ok(hash)) = (RoomName::try_from(room), BlobHash::try_from(hash)) else { continue };
            let holders = holders_key(&room, &hash);
            if self.cache.stat(&room, &hash).is_err() {
                redis::pipe()
                    .cmd("SREM")
                    .arg(&holders)
                    .arg(&self.node_id)
                    .ignore()
                    .cmd("SREM")
                    .arg(self.my_files_key())
                    .arg(&entry)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await?;
                continue;
            }
            let (listed, count): (bool, u64) = redis::pipe()
                .cmd("HEXISTS")
                .arg(files_key(&room))
                .arg(hash.as_str())
                .cmd("SCARD")
                .arg(&holders)
                .query_async(&mut conn)
                .await?;
            // A file the room no longer lists (deleted with it) is not kept for it.
            if listed && count <= 1 {
                sole.insert(hash);
            }
        }
        *self.lock_sole() = sole;
        Ok(())
    }

    /// The app closed `room` with its files (through another node): this node's copies go.
    pub async fn delete_room_here(&self, room: &RoomName) {
        match self.cache.delete_room(room).await {
            Ok(n) => tracing::info!(room = %room, files = n, "a closed room's files were deleted"),
            Err(err) => tracing::warn!(room = %room, error = %err, "cannot delete a closed room's files"),
        }
    }

    /// A resumable upload's partial file is on this node: chunks reaching other nodes are
    /// forwarded here.
    pub async fn record_upload(&self, id: &UploadId) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .cmd("SET")
            .arg(upload_key(id))
            .arg(&self.node_id)
            .arg("EX")
            .arg(UPLOAD_TTL_SECS)
            .ignore()
            .query_async(&mut conn)
            .await
    }

    /// How this node reaches the others.
    pub fn link(&self) -> &NodeLink {
        &self.link
    }

    /// The node holding upload `id`, when it is another node.
    pub async fn upload_node(&self, id: &UploadId) -> redis::RedisResult<Option<String>> {
        let mut conn = self.conn.clone();
        let node: Option<String> = redis::cmd("GET").arg(upload_key(id)).query_async(&mut conn).await?;
        Ok(node.filter(|n| *n != self.node_id))
    }

    /// The room's files on every node, oldest first.
    pub async fn listing(&self, room: &RoomName) -> redis::RedisResult<Vec<BlobInfo>> {
        let mut conn = self.conn.clone();
        let all: Vec<String> = redis::cmd("HVALS").arg(files_key(room)).query_async(&mut conn).await?;
        let mut files: Vec<BlobInfo> = all.iter().filter_map(|json| serde_json::from_str(json).ok()).collect();
        files.sort_by(|a, b| a.hash.as_str().cmp(b.hash.as_str()));
        Ok(files)
    }

    /// Whether the room holds `hash` on some node.
    pub async fn lookup(&self, room: &RoomName, hash: &BlobHash) -> redis::RedisResult<Option<BlobInfo>> {
        let mut conn = self.conn.clone();
        let json: Option<String> =
            redis::cmd("HGET").arg(files_key(room)).arg(hash.as_str()).query_async(&mut conn).await?;
        Ok(json.and_then(|json| serde_json::from_str(&json).ok()))
    }

    /// A member's rights in `room` as presence in Redis has them (a member of another node
    /// presenting its grant here); `None` when it is not a member on a live node.
    pub async fn member_rights(&self, room: &RoomName, peer: &PeerId) -> redis::RedisResult<Option<Rights>> {
        let mut conn = self.conn.clone();
        let member: Option<String> = redis::cmd("HGET")
            .arg(super::presence::members_key(room))
            .arg(peer.as_str())
            .query_async(&mut conn)
            .await?;
        let Some(member) = member.and_then(|json| serde_json::from_str::<ClusterMember>(&json).ok()) else {
            return Ok(None);
        };
        let alive: Option<f64> =
            redis::cmd("ZSCORE").arg(super::presence::NODES_KEY).arg(&member.node).query_async(&mut conn).await?;
        Ok(alive.filter(|until| *until >= now_millis() as f64).map(|_| member.rights))
    }

    /// Make the room's file `hash` local, fetching it from a node that has it; false when no
    /// room on any node holds it.
    pub async fn fetch(&self, room: &RoomName, hash: &BlobHash) -> Result<bool, FetchError> {
        let gate = {
            let mut fetching = self.fetching.lock().await;
            fetching.entry((room.clone(), hash.clone())).or_default().clone()
        };
        let _one_at_a_time = gate.lock().await;
        let result = self.fetch_now(room, hash).await;
        self.fetching.lock().await.remove(&(room.clone(), hash.clone()));
        result
    }

    async fn fetch_now(&self, room: &RoomName, hash: &BlobHash) -> Result<bool, FetchError> {
        if self.cache.stat(room, hash).is_ok() {
            return Ok(true);
        }
        let Some(info) = self.lookup(room, hash).await? else {
            return Ok(false);
        };
        let mut conn = self.conn.clone();
        let holders: Vec<String> = redis::cmd("SMEMBERS").arg(holders_key(room, hash)).query_async(&mut conn).await?;
        for holder in holders.iter().filter(|h| **h != self.node_id) {
            match self.fetch_from(holder, room, &info).await {
                Ok(true) => {
                    self.fetches.fetch_add(1, Ordering::Relaxed);
                    self.announce(room, &info).await?;
                    return Ok(true);
                }
                Ok(false) => {
                    // It no longer has the bytes.
                    let _: redis::RedisResult<()> =
                        redis::cmd("SREM").arg(holders_key(room, hash)).arg(holder).query_async(&mut conn).await;
                }
                Err(err) => tracing::warn!(holder, room = %room, error = %err, "cannot fetch a file from another node"),
            }
        }
        Err(FetchError::NoHolder)
    }

    /// One fetch from `node`; false when it does not have the file.
    async fn fetch_from(&self, node: &str, room: &RoomName, info: &BlobInfo) -> Result<bool, String> {
        let (token, _) = self.grants.mint_for(Purpose::Node, room, &self.node_peer, now_millis());
        let path = format!("/internal/rooms/{room}/blobs/{}", info.hash);
        let response = self.link.get(node, &path, &token).await?;
        if response.status() == http::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        if !response.status().is_success() {
            return Err(format!("the node answered {}", response.status()));
        }
        let new =
            NewUpload { hash: info.hash.clone(), size: info.size, name: info.name.clone(), mime: info.mime.clone() };
        let mut writer = match self.cache.put(room, None, new).await.map_err(|e| e.to_string())? {
            Ok(writer) => writer,
            // The bytes came meanwhile (another room's upload, say).
            Err(_) => return Ok(true),
        };
        let mut body = response.into_body();
        loop {
            let frame =
                tokio::time::timeout(FETCH_IDLE, body.frame()).await.map_err(|_| "the node stalled".to_owned())?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                writer.write(data).await.map_err(|e| e.to_string())?;
            }
        }
        // The cache checks the length and the hash: a node cannot pass off other bytes.
        match writer.finish().await.map_err(|e| e.to_string())? {
            Written::Complete(_) => Ok(true),
            Written::Progress(_) => Err("the node sent less than the whole file".into()),
        }
    }
}

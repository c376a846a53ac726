//! The blob cache on disk: content-addressed files, their index, uploads in progress.
//!
//! Layout under the cache's directory (every name is a validated hash or upload id, so no
//! user input ever becomes a path):
//! - `store/<first two hex digits>/<sha-256>`: finished blobs, immutable once renamed there;
//! - `uploads/<upload id>`: resumable uploads in progress (the file's length is the offset);
//! - `tmp/`: one-shot uploads in flight, emptied at every start;
//! - `index.redb`: blob metadata, which rooms have which blob, and the uploads in progress.
//!
//! A blob becomes visible in one order: bytes verified against the announced hash and length,
//! fsynced, renamed into `store/`, then recorded in the index (an fsynced redb commit). After
//! `kill -9` at any point, [`BlobCache::open`] removes whatever the index does not account for:
//! nothing partial survives, and nothing acknowledged is lost.

use super::policy::{self, Cached, NoRoom};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use relaycast_shared::blobs::{BlobErrorCode, BlobInfo, NewUpload, UploadId, UploadState};
use relaycast_shared::{BlobHash, FileName, MediaType, PeerId, RoomName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// hash → [`BlobRecord`] JSON.
const BLOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("blobs");
/// (room, hash) → when the room got it (ms).
const ROOM_BLOBS: TableDefinition<(&str, &str), u64> = TableDefinition::new("room_blobs");
/// upload id → [`UploadRecord`] JSON.
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

/// Bytes gathered before one write to disk: large writes, few hops to the blocking pool.
const WRITE_BUFFER: usize = 1 << 20;

/// What the cache needs from the rest of the server: which blobs rooms still refer to, and
/// where to report blobs coming and going (the engine only accepts file messages for blobs
/// the cache holds).
pub trait CacheEvents: Send + Sync + fmt::Debug {
    /// For each hash, whether some room's live history refers to it (one call per eviction
    /// plan, so the engine is locked once, not once per blob).
    fn pinned(&self, hashes: &[&BlobHash]) -> Vec<bool>;
    fn stored(&self, hash: &BlobHash);
    fn removed(&self, hash: &BlobHash);
}

/// The cache's bounds; all configurable (see `Config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// All finished blobs together.
    pub max_total_bytes: u64,
    /// One blob.
    pub max_blob_bytes: u64,
    /// One room's blobs and uploads in progress together.
    pub room_quota_bytes: u64,
    /// A blob unused this long is evicted (unless pinned).
    pub ttl: Duration,
    /// Uploads in progress (resumable and one-shot) across the server.
    pub max_uploads: usize,
    /// Uploads in progress in one room, and by one member of a room.
    pub max_uploads_per_room: usize,
    pub max_uploads_per_member: usize,
    /// A resumable upload that receives nothing for this long is dropped (counted afresh from
    /// a restart: the clock of an upload does not run while the server is down).
    pub upload_idle: Duration,
}

/// Why a cache operation failed; each maps to a stable [`BlobErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("this room has no such file")]
    UnknownBlob,
    #[error("this room has no such upload (finished, abandoned, or expired)")]
    UnknownUpload,
    #[error("the file is {size} bytes; this server takes files up to {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("the room's files would take {would} bytes, over its quota of {quota} bytes")]
    QuotaExceeded { would: u64, quota: u64 },
    #[error(transparent)]
    NoRoom(#[from] NoRoom),
    #[error("too many uploads in progress (at most {0}); try again later")]
    TooManyUploads(usize),
    #[error("this room has as many uploads in progress as it may ({0}); try again later")]
    TooManyRoomUploads(usize),
    #[error("you have as many uploads in progress as you may ({0}); finish or abandon one first")]
    TooManyMemberUploads(usize),
    #[error("the bytes hash to {actual}, not to the announced {expected}; nothing was kept")]
    HashMismatch { expected: BlobHash, actual: String },
    #[error("{received} bytes arrived where {expected} were announced; nothing was kept")]
    LengthMismatch { expected: u64, received: u64 },
    #[error("the chunk runs past the announced length of {size} bytes")]
    PastEnd { size: u64 },
    #[error("the chunk starts at byte {given} but the upload stands at byte {current}")]
    OffsetMismatch { given: u64, current: u64 },
    #[error("another request is writing to this upload")]
    Busy,
    #[error("disk: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob index: {0}")]
    Index(#[from] redb::Error),
}

impl CacheError {
    pub fn code(&self) -> BlobErrorCode {
        match self {
            CacheError::UnknownBlob => BlobErrorCode::UnknownBlob,
            CacheError::UnknownUpload => BlobErrorCode::UnknownUpload,
            CacheError::TooLarge { .. } => BlobErrorCode::BlobTooLarge,
            CacheError::QuotaExceeded { .. } => BlobErrorCode::QuotaExceeded,
            CacheError::NoRoom(NoRoom::LargerThanCache { .. }) => BlobErrorCode::BlobTooLarge,
            CacheError::NoRoom(NoRoom::AllPinned) => BlobErrorCode::CacheFull,
            CacheError::TooManyUploads(_) | CacheError::TooManyRoomUploads(_) | CacheError::TooManyMemberUploads(_) => {
                BlobErrorCode::TooManyUploads
            }
            CacheError::HashMismatch { .. } => BlobErrorCode::HashMismatch,
            CacheError::LengthMismatch { .. } | CacheError::PastEnd { .. } => BlobErrorCode::LengthMismatch,
            CacheError::OffsetMismatch { .. } => BlobErrorCode::OffsetMismatch,
            CacheError::Busy => BlobErrorCode::UploadBusy,
            CacheError::Io(_) | CacheError::Index(_) => BlobErrorCode::StorageFailed,
        }
    }
}

fn index_err(err: impl Into<redb::Error>) -> CacheError {
    CacheError::Index(err.into())
}

/// A finished blob in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct BlobRecord {
    size: u64,
    name: FileName,
    mime: MediaType,
    created: u64,
    last_used: u64,
}

/// A resumable upload in the index (its offset is its file's length).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UploadRecord {
    room: RoomName,
    hash: BlobHash,
    size: u64,
    name: FileName,
    mime: MediaType,
    /// Last time a chunk arrived (ms): idle uploads expire.
    touched: u64,
    /// The member who started it (records from before members were kept have none).
    #[serde(default)]
    member: Option<PeerId>,
}

#[derive(Debug)]
struct LiveUpload {
    record: UploadRecord,
    offset: u64,
    /// SHA-256 of bytes `0..offset`, kept between chunks so finishing needs no second read;
    /// `None` after a restart or a failed write, and then finishing hashes the file again.
    hasher: Option<Sha256>,
    busy: bool,
}

#[derive(Debug, Default)]
struct State {
    blobs: HashMap<BlobHash, BlobRecord>,
    rooms: HashMap<RoomName, HashSet<BlobHash>>,
    uploads: HashMap<UploadId, LiveUpload>,
    /// One-shot uploads in flight (they count against `max_uploads`).
    one_shots: usize,
    /// Bytes of one-shot uploads in flight per room (they count against the quota).
    one_shot_bytes: HashMap<RoomName, u64>,
    /// One-shot uploads in flight per room and uploader (they count against the upload limits).
    one_shot_uploaders: HashMap<(RoomName, Option<PeerId>), usize>,
    total_bytes: u64,
    /// Blobs whose `last_used` changed since the index was last told.
    touched: HashSet<BlobHash>,
}

impl State {
    fn info(&self, hash: &BlobHash) -> Option<BlobInfo> {
        self.blobs.get(hash).map(|r| BlobInfo {
            hash: hash.clone(),
            size: r.size,
            name: r.name.clone(),
            mime: r.mime.clone(),
        })
    }

    fn room_has(&self, room: &RoomName, hash: &BlobHash) -> bool {
        self.rooms.get(room).is_some_and(|set| set.contains(hash))
    }

    /// What the room's files and its uploads in progress take.
    fn room_usage(&self, room: &RoomName) -> u64 {
        let attached: u64 = self
            .rooms
            .get(room)
            .map(|set| set.iter().filter_map(|h| self.blobs.get(h)).map(|r| r.size).sum())
            .unwrap_or(0);
        let uploading: u64 = self.uploads.values().filter(|u| &u.record.room == room).map(|u| u.record.size).sum();
        attached + uploading + self.one_shot_bytes.get(room).copied().unwrap_or(0)
    }

    /// Evicted blobs leave memory (their index rows and files go separately).
    fn forget(&mut self, evicted: &[BlobHash]) {
        for gone in evicted {
            if let Some(r) = self.blobs.remove(gone) {
                self.total_bytes -= r.size;
            }
            for set in self.rooms.values_mut() {
                set.remove(gone);
            }
        }
    }

    fn uploads_in_progress(&self) -> usize {
        self.uploads.len() + self.one_shots
    }

    /// Uploads in progress in `room`, and those of `member` there.
    fn uploads_of(&self, room: &RoomName, member: Option<&PeerId>) -> (usize, usize) {
        let mut in_room = 0;
        let mut by_member = 0;
        let uploaders = self.uploads.values().map(|u| ((&u.record.room, u.record.member.as_ref()), 1));
        let one_shots = self.one_shot_uploaders.iter().map(|((r, m), n)| ((r, m.as_ref()), *n));
        for ((r, m), n) in uploaders.chain(one_shots) {
            if r == room {
                in_room += n;
                if member.is_some() && m == member {
                    by_member += n;
                }
            }
        }
        (in_room, by_member)
    }
}

/// What starting an upload led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// The cache already had these bytes; the room has them now, nothing to send.
    Existing(BlobInfo),
    /// Send the bytes from `offset`.
    New(UploadState),
}

/// What the end of a chunk led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// More bytes are expected; the upload stands at this offset.
    Progress(u64),
    /// The last byte arrived and checked out: the blob is stored.
    Complete(BlobInfo),
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub blobs: usize,
    pub bytes: u64,
    pub uploads: usize,
}

#[derive(Debug)]
pub struct BlobCache {
    dir: PathBuf,
    db: Database,
    limits: CacheLimits,
    events: Arc<dyn CacheEvents>,
    state: Mutex<State>,
    /// Finishing an upload (plan evictions, rename, commit) happens one at a time, so two
    /// uploads never plan with the same free space.
    finishing: tokio::sync::Mutex<()>,
}

fn now_ms() -> u64 {
    crate::clock::now_millis()
}

impl BlobCache {
    /// Open (or create) the cache in `dir`, clean what a crash left behind, and report every
    /// blob it holds to `events`. Blocking: call it off the async runtime.
    pub fn open(dir: &Path, limits: CacheLimits, events: Arc<dyn CacheEvents>) -> Result<Self, CacheError> {
        for sub in ["store", "uploads", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        // One-shot uploads never survive their request.
        for entry in std::fs::read_dir(dir.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        let db = Database::create(dir.join("index.redb")).map_err(index_err)?;
        let txn = db.begin_write().map_err(index_err)?;
        txn.open_table(BLOBS).map_err(index_err)?;
        txn.open_table(ROOM_BLOBS).map_err(index_err)?;
        txn.open_table(UPLOADS).map_err(index_err)?;
        txn.commit().map_err(index_err)?;
        let cache = BlobCache {
            dir: dir.to_owned(),
            db,
            limits,
            events,
            state: Mutex::new(State::default()),
            finishing: tokio::sync::Mutex::new(()),
        };
        cache.recover()?;
        let hashes: Vec<BlobHash> = cache.lock().blobs.keys().cloned().collect();
        for hash in &hashes {
            cache.events.stored(hash);
        }
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn blob_path(&self, hash: &BlobHash) -> PathBuf {
        self.dir.join("store").join(&hash.as_str()[..2]).join(hash.as_str())
    }

    fn upload_path(&self, id: &UploadId) -> PathBuf {
        self.dir.join("uploads").join(id.as_str())
    }

    /// Load the index and make the disk agree with it.
    fn recover(&self) -> Result<(), CacheError> {
        let mut state = State::default();
        let mut stale_blobs = Vec::new();
        let mut stale_uploads = Vec::new();
        {
            let txn = self.db.begin_read().map_err(index_err)?;
            for row in txn.open_table(BLOBS).map_err(index_err)?.iter().map_err(index_err)? {
                let (key, value) = row.map_err(index_err)?;
                let record = serde_json::from_slice::<BlobRecord>(value.value()).ok();
                match (BlobHash::try_from(key.value()), record) {
                    (Ok(hash), Some(record))
                        if std::fs::metadata(self.blob_path(&hash)).is_ok_and(|m| m.len() == record.size) =>
                    {
                        state.total_bytes += record.size;
                        state.blobs.insert(hash, record);
                    }
                    _ => {
                        tracing::warn!(hash = key.value(), "dropping a blob record whose file is missing or wrong");
                        stale_blobs.push(key.value().to_owned());
                    }
                }
            }
            for row in txn.open_table(ROOM_BLOBS).map_err(index_err)?.iter().map_err(index_err)? {
                let (key, _) = row.map_err(index_err)?;
                let (room, hash) = key.value();
                if let (Ok(room), Ok(hash)) = (RoomName::try_from(room), BlobHash::try_from(hash)) {
                    if state.blobs.contains_key(&hash) {
                        state.rooms.entry(room).or_default().insert(hash);
                    }
                }
            }
            for row in txn.open_table(UPLOADS).map_err(index_err)?.iter().map_err(index_err)? {
                let (key, value) = row.map_err(index_err)?;
                let record = serde_json::from_slice::<UploadRecord>(value.value()).ok();
                let id = UploadId::try_from(key.value().to_owned());
                match (id, record) {
                    (Ok(id), Some(record)) => match std::fs::metadata(self.upload_path(&id)) {
                        Ok(meta) if meta.len() <= record.size => {
                            // The idle clock starts again: nobody could send while we were down.
                            let record = UploadRecord { touched: now_ms(), ..record };
                            state
                                .uploads
                                .insert(id, LiveUpload { record, offset: meta.len(), hasher: None, busy: false });
                        }
                        _ => stale_uploads.push(key.value().to_owned()),
                    },
                    _ => stale_uploads.push(key.value().to_owned()),
                }
            }
        }
        if !stale_blobs.is_empty() || !stale_uploads.is_empty() {
            let txn = self.db.begin_write().map_err(index_err)?;
            {
                let mut blobs = txn.open_table(BLOBS).map_err(index_err)?;
                for key in &stale_blobs {
                    blobs.remove(key.as_str()).map_err(index_err)?;
                }
                let mut room_blobs = txn.open_table(ROOM_BLOBS).map_err(index_err)?;
                room_blobs.retain(|(_, hash), _| !stale_blobs.iter().any(|s| s == hash)).map_err(index_err)?;
                let mut uploads = txn.open_table(UPLOADS).map_err(index_err)?;
                for key in &stale_uploads {
                    uploads.remove(key.as_str()).map_err(index_err)?;
                }
            }
            txn.commit().map_err(index_err)?;
        }
        // Files the index does not account for: a crash between rename and commit, or
        // uploads whose record was dropped.
        for shard in std::fs::read_dir(self.dir.join("store"))? {
            let shard = shard?.path();
            if !shard.is_dir() {
                let _ = std::fs::remove_file(&shard);
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let path = file?.path();
                let known = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| BlobHash::try_from(n).ok())
                    .is_some_and(|h| state.blobs.contains_key(&h));
                if !known {
                    tracing::info!(path = %path.display(), "removing a blob file the index does not know");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        for file in std::fs::read_dir(self.dir.join("uploads"))? {
            let path = file?.path();
            let known = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| UploadId::try_from(n.to_owned()).ok())
                .is_some_and(|id| state.uploads.contains_key(&id));
            if !known {
                let _ = std::fs::remove_file(&path);
            }
        }
        *self.lock() = state;
        Ok(())
    }

    /// The cache's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        CacheStats { blobs: state.blobs.len(), bytes: state.total_bytes, uploads: state.uploads_in_progress() }
    }

    /// The blob, if this room has it.
    pub fn stat(&self, room: &RoomName, hash: &BlobHash) -> Result<BlobInfo, CacheError> {
        let state = self.lock();
        if !state.room_has(room, hash) {
            return Err(CacheError::UnknownBlob);
        }
        state.info(hash).ok_or(CacheError::UnknownBlob)
    }

    /// The room's blobs, oldest first.
    pub fn room_blobs(&self, room: &RoomName) -> Vec<BlobInfo> {
        let state = self.lock();
        let mut blobs: Vec<(u64, BlobInfo)> = state
            .rooms
            .get(room)
            .map(|set| set.iter().filter_map(|h| Some((state.blobs.get(h)?.created, state.info(h)?))).collect())
            .unwrap_or_default();
        blobs.sort_by(|a, b| (a.0, &a.1.hash).cmp(&(b.0, &b.1.hash)));
        blobs.into_iter().map(|(_, info)| info).collect()
    }

    /// Open the room's blob for reading; counts as a use for eviction.
    pub async fn open_read(&self, room: &RoomName, hash: &BlobHash) -> Result<(BlobInfo, tokio::fs::File), CacheError> {
        let info = self.stat(room, hash)?;
        // Open before touching: a blob evicted in between is simply unknown.
        let file = tokio::fs::File::open(self.blob_path(hash)).await.map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound => CacheError::UnknownBlob,
            _ => CacheError::Io(err),
        })?;
        let mut state = self.lock();
        if let Some(record) = state.blobs.get_mut(hash) {
            record.last_used = now_ms();
            state.touched.insert(hash.clone());
        }
        Ok((info, file))
    }

    /// Check that `member` may start one more upload of `size` bytes to `room`: blob size,
    /// quota, uploads in progress (server, room, member), cache space.
    fn admit(&self, state: &State, room: &RoomName, member: Option<&PeerId>, size: u64) -> Result<(), CacheError> {
        if size > self.limits.max_blob_bytes {
            return Err(CacheError::TooLarge { size, max: self.limits.max_blob_bytes });
        }
        let would = state.room_usage(room) + size;
        if would > self.limits.room_quota_bytes {
            return Err(CacheError::QuotaExceeded { would, quota: self.limits.room_quota_bytes });
        }
        let (in_room, by_member) = state.uploads_of(room, member);
        if by_member >= self.limits.max_uploads_per_member {
            return Err(CacheError::TooManyMemberUploads(self.limits.max_uploads_per_member));
        }
        if in_room >= self.limits.max_uploads_per_room {
            return Err(CacheError::TooManyRoomUploads(self.limits.max_uploads_per_room));
        }
        if state.uploads_in_progress() >= self.limits.max_uploads {
            return Err(CacheError::TooManyUploads(self.limits.max_uploads));
        }
        self.plan(state, size)?;
        Ok(())
    }

    fn plan(&self, state: &State, incoming: u64) -> Result<Vec<BlobHash>, NoRoom> {
        let hashes: Vec<&BlobHash> = state.blobs.keys().collect();
        let pinned = self.events.pinned(&hashes);
        let cached: Vec<Cached> = state
            .blobs
            .iter()
            .zip(pinned)
            .map(|((hash, r), pinned)| Cached { hash: hash.clone(), size: r.size, last_used: r.last_used, pinned })
            .collect();
        let limits =
            policy::Limits { max_total_bytes: self.limits.max_total_bytes, ttl_ms: self.limits.ttl.as_millis() as u64 };
        policy::plan(&cached, incoming, limits, now_ms())
    }

    /// The blob, if `room` already holds it (then nothing needs sending). A blob the cache
    /// holds for other rooms only is not given away on its hash: knowing a hash proves
    /// nothing, so the bytes must come (they are verified, and stored once).
    fn held_by(&self, room: &RoomName, hash: &BlobHash) -> Option<BlobInfo> {
        let mut state = self.lock();
        let info = state.info(hash).filter(|_| state.room_has(room, hash))?;
        if let Some(record) = state.blobs.get_mut(hash) {
            record.last_used = now_ms();
            state.touched.insert(hash.clone());
        }
        Some(info)
    }

    /// `POST uploads` by `member`: the room already has these bytes, or gets an upload to send
    /// them to.
    pub async fn start_upload(
        &self,
        room: &RoomName,
        member: Option<&PeerId>,
        new: NewUpload,
    ) -> Result<Started, CacheError> {
        if let Some(info) = self.held_by(room, &new.hash) {
            return Ok(Started::Existing(info));
        }
        let id = UploadId::from_bits(rand::random());
        let record = UploadRecord {
            room: room.clone(),
            hash: new.hash,
            size: new.size,
            name: new.name,
            mime: new.mime,
            touched: now_ms(),
            member: member.cloned(),
        };
        {
            let mut state = self.lock();
            self.admit(&state, room, member, record.size)?;
            // Reserve now (quota and upload count); the record is written just below.
            state.uploads.insert(
                id.clone(),
                LiveUpload { record: record.clone(), offset: 0, hasher: Some(Sha256::new()), busy: true },
            );
        }
        let result = self.create_upload_files(&id, &record).await;
        let mut state = self.lock();
        match result {
            Ok(()) => {
                if let Some(upload) = state.uploads.get_mut(&id) {
                    upload.busy = false;
                }
                Ok(Started::New(UploadState { id, offset: 0, size: record.size }))
            }
            Err(err) => {
                state.uploads.remove(&id);
                Err(err)
            }
        }
    }

    async fn create_upload_files(&self, id: &UploadId, record: &UploadRecord) -> Result<(), CacheError> {
        tokio::fs::File::create(self.upload_path(id)).await?;
        let json = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        self.commit(|txn| {
            txn.open_table(UPLOADS)?.insert(id.as_str(), json.as_slice())?;
            Ok(())
        })
    }

    /// Run one index transaction. Synchronously: these are a few small rows once per upload
    /// (never per chunk or per download), and an fsynced redb commit takes about a millisecond.
    fn commit(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>) -> Result<(), CacheError> {
        let txn = self.db.begin_write().map_err(index_err)?;
        f(&txn).map_err(CacheError::Index)?;
        txn.commit().map_err(index_err)
    }

    /// `HEAD uploads/<id>`.
    pub fn upload_state(&self, room: &RoomName, id: &UploadId) -> Result<UploadState, CacheError> {
        let state = self.lock();
        match state.uploads.get(id) {
            Some(upload) if &upload.record.room == room => {
                Ok(UploadState { id: id.clone(), offset: upload.offset, size: upload.record.size })
            }
            _ => Err(CacheError::UnknownUpload),
        }
    }

    /// `PATCH uploads/<id>` at `offset`: a writer for the chunk's bytes.
    pub async fn write_chunk(
        self: &Arc<Self>,
        room: &RoomName,
        id: &UploadId,
        offset: u64,
    ) -> Result<BlobWriter, CacheError> {
        let (size, hasher) = {
            let mut state = self.lock();
            let upload = match state.uploads.get_mut(id) {
                Some(upload) if &upload.record.room == room => upload,
                _ => return Err(CacheError::UnknownUpload),
            };
            if upload.busy {
                return Err(CacheError::Busy);
            }
            if offset != upload.offset {
                return Err(CacheError::OffsetMismatch { given: offset, current: upload.offset });
            }
            upload.busy = true;
            upload.record.touched = now_ms();
            let hasher = upload.hasher.take().or_else(|| (offset == 0).then(Sha256::new));
            (upload.record.size, hasher)
        };
        let file = std::fs::OpenOptions::new().append(true).open(self.upload_path(id));
        let file = match file {
            Ok(file) => file,
            Err(err) => {
                self.release(id, offset, hasher);
                return Err(err.into());
            }
        };
        Ok(BlobWriter {
            cache: self.clone(),
            target: Target::Upload(id.clone()),
            file: Some(file),
            start: (offset, hasher.clone()),
            hasher,
            written: offset,
            size,
            buf: Vec::with_capacity(WRITE_BUFFER.min(size.saturating_sub(offset) as usize)),
            finished: false,
            refused: false,
        })
    }

    /// Give a resumable upload back after a chunk: where it stands and its running hash.
    fn release(&self, id: &UploadId, offset: u64, hasher: Option<Sha256>) {
        let mut state = self.lock();
        if let Some(upload) = state.uploads.get_mut(id) {
            upload.busy = false;
            upload.offset = offset;
            upload.hasher = hasher;
        }
    }

    /// `PUT blobs/<hash>`: a one-shot upload of `size` bytes. `Ok(Err(info))`: the cache had the
    /// bytes already and the room has them now; do not read the body.
    pub async fn put(
        self: &Arc<Self>,
        room: &RoomName,
        member: Option<&PeerId>,
        new: NewUpload,
    ) -> Result<Result<BlobWriter, BlobInfo>, CacheError> {
        if let Some(info) = self.held_by(room, &new.hash) {
            return Ok(Err(info));
        }
        {
            let mut state = self.lock();
            self.admit(&state, room, member, new.size)?;
            state.one_shots += 1;
            *state.one_shot_bytes.entry(room.clone()).or_default() += new.size;
            *state.one_shot_uploaders.entry((room.clone(), member.cloned())).or_default() += 1;
        }
        let path = self.dir.join("tmp").join(UploadId::from_bits(rand::random()).as_str());
        let target =
            Target::OneShot { path: path.clone(), room: room.clone(), member: member.cloned(), new: new.clone() };
        let mut writer = BlobWriter {
            cache: self.clone(),
            target,
            file: None,
            hasher: Some(Sha256::new()),
            written: 0,
            size: new.size,
            buf: Vec::with_capacity(WRITE_BUFFER.min(new.size as usize)),
            finished: false,
            start: (0, None),
            refused: false,
        };
        // The writer's drop undoes the reservation if this fails.
        writer.file = Some(std::fs::File::create(&path)?);
        Ok(Ok(writer))
    }

    /// `DELETE uploads/<id>`.
    pub async fn abandon(&self, room: &RoomName, id: &UploadId) -> Result<(), CacheError> {
        {
            let state = self.lock();
            match state.uploads.get(id) {
                Some(upload) if &upload.record.room == room && upload.busy => return Err(CacheError::Busy),
                Some(upload) if &upload.record.room == room => {}
                _ => return Err(CacheError::UnknownUpload),
            }
        }
        self.drop_upload(id).await
    }

    /// Delete `room`'s files (a room closed with its files): the room's uploads in progress
    /// go, and so do its blobs that no other room holds and no history refers to. Returns how
    /// many files the room had.
    pub async fn delete_room(&self, room: &RoomName) -> Result<usize, CacheError> {
        let _one_at_a_time = self.finishing.lock().await;
        let (held, uploads) = {
            let state = self.lock();
            let held: Vec<BlobHash> =
                state.rooms.get(room).map(|set| set.iter().cloned().collect()).unwrap_or_default();
            let uploads: Vec<UploadId> = state
                .uploads
                .iter()
                .filter(|(_, u)| &u.record.room == room && !u.busy)
                .map(|(id, _)| id.clone())
                .collect();
            (held, uploads)
        };
        for id in &uploads {
            self.drop_upload(id).await?;
        }
        let orphans: Vec<BlobHash> = {
            let state = self.lock();
            let alone: Vec<&BlobHash> = held
                .iter()
                .filter(|h| !state.rooms.iter().any(|(other, set)| other != room && set.contains(*h)))
                .collect();
            let pinned = self.events.pinned(&alone);
            alone.into_iter().zip(pinned).filter(|(_, pinned)| !pinned).map(|(h, _)| h.clone()).collect()
        };
        self.commit(|txn| {
            let mut blobs = txn.open_table(BLOBS)?;
            let mut room_blobs = txn.open_table(ROOM_BLOBS)?;
            room_blobs.retain(|(r, _), _| r != room.as_str())?;
            for gone in &orphans {
                blobs.remove(gone.as_str())?;
            }
            Ok(())
        })?;
        {
            let mut state = self.lock();
            state.rooms.remove(room);
            state.forget(&orphans);
        }
        self.remove_files(&orphans).await;
        tracing::info!(%room, files = held.len(), removed = orphans.len(), "room's files deleted");
        Ok(held.len())
    }

    async fn drop_upload(&self, id: &UploadId) -> Result<(), CacheError> {
        self.commit(|txn| {
            txn.open_table(UPLOADS)?.remove(id.as_str())?;
            Ok(())
        })?;
        self.lock().uploads.remove(id);
        let _ = tokio::fs::remove_file(self.upload_path(id)).await;
        Ok(())
    }

    /// Verify a fully received file and make it a blob of `room`. The file is removed on
    /// every error, with its upload record.
    async fn finish(
        &self,
        file_path: &Path,
        upload: Option<&UploadId>,
        room: &RoomName,
        new: &NewUpload,
        hasher: Option<Sha256>,
    ) -> Result<BlobInfo, CacheError> {
        let result: Result<BlobInfo, CacheError> = async {
            let path = file_path.to_owned();
            let (digest, len) = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
                let file = std::fs::File::open(&path)?;
                let len = file.metadata()?.len();
                let hasher = match hasher {
                    Some(hasher) => hasher,
                    None => hash_file(file.try_clone()?)?,
                };
                // Durable before it is visible under its hash.
                file.sync_all()?;
                Ok((hex::encode(hasher.finalize()), len))
            })
            .await
            .map_err(std::io::Error::other)??;
            if len != new.size {
                return Err(CacheError::LengthMismatch { expected: new.size, received: len });
            }
            if digest != new.hash.as_str() {
                return Err(CacheError::HashMismatch { expected: new.hash.clone(), actual: digest });
            }

            let _one_at_a_time = self.finishing.lock().await;
            let hash = &new.hash;
            let already = self.lock().blobs.contains_key(hash);
            let evict = if already {
                Vec::new()
            } else {
                let state = self.lock();
                // The room's usage already counts this upload's reservation.
                let would = state.room_usage(room);
                if would > self.limits.room_quota_bytes {
                    return Err(CacheError::QuotaExceeded { would, quota: self.limits.room_quota_bytes });
                }
                self.plan(&state, new.size)?
            };
            let final_path = self.blob_path(hash);
            if already {
                tokio::fs::remove_file(file_path).await?;
            } else {
                if let Some(shard) = final_path.parent() {
                    tokio::fs::create_dir_all(shard).await?;
                }
                tokio::fs::rename(file_path, &final_path).await?;
            }
            let now = now_ms();
            let record = BlobRecord {
                size: new.size,
                name: new.name.clone(),
                mime: new.mime.clone(),
                created: now,
                last_used: now,
            };
            let json = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
            self.commit(|txn| {
                let mut blobs = txn.open_table(BLOBS)?;
                let mut room_blobs = txn.open_table(ROOM_BLOBS)?;
                for gone in &evict {
                    blobs.remove(gone.as_str())?;
                    room_blobs.retain(|(_, h), _| h != gone.as_str())?;
                }
                if !already {
                    blobs.insert(hash.as_str(), json.as_slice())?;
                }
                room_blobs.insert((room.as_str(), hash.as_str()), now)?;
                if let Some(id) = upload {
                    txn.open_table(UPLOADS)?.remove(id.as_str())?;
                }
                Ok(())
            })?;
            {
                let mut state = self.lock();
                state.forget(&evict);
                if !already {
                    state.total_bytes += record.size;
                    state.blobs.insert(hash.clone(), record);
                }
                state.rooms.entry(room.clone()).or_default().insert(hash.clone());
                if let Some(id) = upload {
                    state.uploads.remove(id);
                }
            }
            self.remove_files(&evict).await;
            self.events.stored(hash);
            tracing::info!(%hash, size = new.size, %room, evicted = evict.len(), "blob stored");
            self.stat(room, hash)
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(file_path).await;
            if let Some(id) = upload {
                let _ = self.drop_upload(id).await;
            }
        }
        result
    }

    async fn remove_files(&self, hashes: &[BlobHash]) {
        for hash in hashes {
            // Readers holding the file open keep reading it; the name is gone.
            if let Err(err) = tokio::fs::remove_file(self.blob_path(hash)).await {
                tracing::warn!(%hash, error = %err, "could not remove an evicted blob");
            }
            self.events.removed(hash);
        }
    }

    /// Periodic upkeep: evict expired blobs, drop idle uploads, persist use times.
    pub async fn sweep(&self) -> Result<(), CacheError> {
        let _one_at_a_time = self.finishing.lock().await;
        let now = now_ms();
        let idle_after = self.limits.upload_idle.as_millis() as u64;
        let (evict, idle, touched) = {
            let mut state = self.lock();
            let evict = self.plan(&state, 0).unwrap_or_default();
            let idle: Vec<UploadId> = state
                .uploads
                .iter()
                .filter(|(_, u)| !u.busy && now.saturating_sub(u.record.touched) > idle_after)
                .map(|(id, _)| id.clone())
                .collect();
            let touched: Vec<(BlobHash, Vec<u8>)> = std::mem::take(&mut state.touched)
                .into_iter()
                .filter_map(|h| {
                    let json = serde_json::to_vec(state.blobs.get(&h)?).ok()?;
                    Some((h, json))
                })
                .collect();
            (evict, idle, touched)
        };
        if evict.is_empty() && idle.is_empty() && touched.is_empty() {
            return Ok(());
        }
        self.commit(|txn| {
            let mut blobs = txn.open_table(BLOBS)?;
            let mut room_blobs = txn.open_table(ROOM_BLOBS)?;
            for (hash, json) in &touched {
                if !evict.contains(hash) {
                    blobs.insert(hash.as_str(), json.as_slice())?;
                }
            }
            for gone in &evict {
                blobs.remove(gone.as_str())?;
                room_blobs.retain(|(_, h), _| h != gone.as_str())?;
            }
            let mut uploads = txn.open_table(UPLOADS)?;
            for id in &idle {
                uploads.remove(id.as_str())?;
            }
            Ok(())
        })?;
        {
            let mut state = self.lock();
            state.forget(&evict);
            for id in &idle {
                state.uploads.remove(id);
            }
        }
        for id in &idle {
            let _ = tokio::fs::remove_file(self.upload_path(id)).await;
        }
        if !evict.is_empty() {
            tracing::info!(evicted = evict.len(), "expired blobs evicted");
        }
        if !idle.is_empty() {
            tracing::info!(dropped = idle.len(), "idle uploads dropped");
        }
        self.remove_files(&evict).await;
        Ok(())
    }

    /// Forget what a one-shot upload reserved.
    fn end_one_shot(&self, room: &RoomName, member: &Option<PeerId>, size: u64) {
        let mut state = self.lock();
        state.one_shots = state.one_shots.saturating_sub(1);
        let key = (room.clone(), member.clone());
        if let Some(n) = state.one_shot_uploaders.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                state.one_shot_uploaders.remove(&key);
            }
        }
        if let Some(bytes) = state.one_shot_bytes.get_mut(room) {
            *bytes = bytes.saturating_sub(size);
            if *bytes == 0 {
                state.one_shot_bytes.remove(room);
            }
        }
    }
}

fn hash_file(mut file: std::fs::File) -> std::io::Result<Sha256> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; WRITE_BUFFER];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher);
        }
        hasher.update(&buf[..n]);
    }
}

#[derive(Debug)]
enum Target {
    Upload(UploadId),
    OneShot { path: PathBuf, room: RoomName, member: Option<PeerId>, new: NewUpload },
}

/// Takes one request body's bytes to disk, hashing them on the way. Dropping it before
/// [`BlobWriter::finish`] (the client went away) keeps a resumable upload's bytes and
/// removes a one-shot's.
#[derive(Debug)]
pub struct BlobWriter {
    cache: Arc<BlobCache>,
    target: Target,
    file: Option<std::fs::File>,
    hasher: Option<Sha256>,
    /// Bytes on disk.
    written: u64,
    size: u64,
    buf: Vec<u8>,
    finished: bool,
    /// Where a resumable upload stood when this chunk began, with its running hash.
    start: (u64, Option<Sha256>),
    /// The chunk was refused (it ran past the end): on drop, nothing of it is kept.
    refused: bool,
}

impl BlobWriter {
    /// Bytes received so far (on disk or buffered).
    pub fn offset(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), CacheError> {
        if self.offset() + data.len() as u64 > self.size {
            self.refused = true;
            return Err(CacheError::PastEnd { size: self.size });
        }
        while !data.is_empty() {
            let room = WRITE_BUFFER - self.buf.len();
            let take = room.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == WRITE_BUFFER {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CacheError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(mut file) = self.file.take() else {
            return Err(CacheError::Io(std::io::Error::other("the upload's file is closed")));
        };
        let mut hasher = self.hasher.take();
        let buf = std::mem::take(&mut self.buf);
        let (file, hasher, mut buf, result) = tokio::task::spawn_blocking(move || {
            let result = file.write_all(&buf);
            if result.is_ok() {
                if let Some(hasher) = hasher.as_mut() {
                    hasher.update(&buf);
                }
            }
            (file, hasher, buf, result)
        })
        .await
        .map_err(std::io::Error::other)?;
        match result {
            Ok(()) => {
                self.written += buf.len() as u64;
                self.hasher = hasher;
                buf.clear();
                self.buf = buf;
                self.file = Some(file);
                Ok(())
            }
            Err(err) => {
                // Part of the buffer may be on disk: trust the file's length, hash it again later.
                self.written = file.metadata().map(|m| m.len()).unwrap_or(self.written);
                self.file = Some(file);
                Err(err.into())
            }
        }
    }

    /// The body ended: a resumable upload stands at a new offset or is complete; a one-shot
    /// upload is complete or rejected.
    pub async fn finish(mut self) -> Result<Written, CacheError> {
        self.flush().await?;
        self.finished = true;
        let cache = self.cache.clone();
        let hasher = self.hasher.take();
        self.file = None;
        match &self.target {
            Target::Upload(id) => {
                if self.written < self.size {
                    cache.release(id, self.written, hasher);
                    return Ok(Written::Progress(self.written));
                }
                let (room, new) = {
                    let state = cache.lock();
                    let Some(upload) = state.uploads.get(id) else { return Err(CacheError::UnknownUpload) };
                    let r = &upload.record;
                    (
                        r.room.clone(),
                        NewUpload { hash: r.hash.clone(), size: r.size, name: r.name.clone(), mime: r.mime.clone() },
                    )
                };
                let path = cache.upload_path(id);
                cache.finish(&path, Some(id), &room, &new, hasher).await.map(Written::Complete)
            }
            Target::OneShot { path, room, member, new } => {
                let result = if self.written != new.size {
                    let _ = tokio::fs::remove_file(path).await;
                    Err(CacheError::LengthMismatch { expected: new.size, received: self.written })
                } else {
                    cache.finish(path, None, room, new, hasher).await.map(Written::Complete)
                };
                cache.end_one_shot(room, member, new.size);
                result
            }
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        match &self.target {
            Target::Upload(id) if self.refused => {
                // A refused chunk leaves nothing behind: back to where it began.
                let (offset, hasher) = self.start.clone();
                if let Some(file) = self.file.take() {
                    if file.set_len(offset).is_err() {
                        // The file's length is the offset; hash it again when it finishes.
                        let written = file.metadata().map(|m| m.len()).unwrap_or(offset);
                        return self.cache.release(id, written, None);
                    }
                }
                self.cache.release(id, offset, hasher);
            }
            Target::Upload(id) => {
                // Keep what arrived: the client resumes from here. A small synchronous write
                // (at most the buffer).
                let mut hasher = self.hasher.take();
                if let Some(file) = self.file.as_mut() {
                    if !self.buf.is_empty() {
                        match file.write_all(&self.buf) {
                            Ok(()) => {
                                if let Some(h) = hasher.as_mut() {
                                    h.update(&self.buf);
                                }
                                self.written += self.buf.len() as u64;
                            }
                            Err(_) => {
                                hasher = None;
                                self.written = file.metadata().map(|m| m.len()).unwrap_or(self.written);
                            }
                        }
                    }
                }
                self.cache.release(id, self.written, hasher);
            }
            Target::OneShot { path, room, member, new } => {
                let _ = std::fs::remove_file(path);
                self.cache.end_one_shot(room, member, new.size);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what the cache reports; pins what the test says.
    #[derive(Debug, Default)]
    struct Events {
        pinned: Mutex<HashSet<BlobHash>>,
        stored: Mutex<Vec<BlobHash>>,
        removed: Mutex<Vec<BlobHash>>,
    }

    impl CacheEvents for Events {
        fn pinned(&self, hashes: &[&BlobHash]) -> Vec<bool> {
            let pinned = self.pinned.lock().unwrap();
            hashes.iter().map(|h| pinned.contains(*h)).collect()
        }
        fn stored(&self, hash: &BlobHash) {
            self.stored.lock().unwrap().push(hash.clone());
        }
        fn removed(&self, hash: &BlobHash) {
            self.removed.lock().unwrap().push(hash.clone());
        }
    }

    fn limits(ttl: Duration) -> CacheLimits {
        CacheLimits {
            max_total_bytes: 1 << 20,
            max_blob_bytes: 1 << 20,
            room_quota_bytes: 1 << 20,
            ttl,
            max_uploads: 4,
            max_uploads_per_room: 4,
            max_uploads_per_member: 4,
            upload_idle: ttl,
        }
    }

    async fn put(cache: &Arc<BlobCache>, room: &RoomName, bytes: &[u8]) -> BlobHash {
        let hash = BlobHash::try_from(hex::encode(Sha256::digest(bytes))).unwrap();
        let new = NewUpload {
            hash: hash.clone(),
            size: bytes.len() as u64,
            name: FileName::try_from("f").unwrap(),
            mime: MediaType::try_from("a/b").unwrap(),
        };
        let mut writer = cache.put(room, None, new).await.unwrap().unwrap();
        writer.write(bytes).await.unwrap();
        assert!(matches!(writer.finish().await.unwrap(), Written::Complete(_)));
        hash
    }

    #[tokio::test]
    async fn the_sweep_evicts_expired_blobs_but_not_pinned_ones_and_reopening_reports_what_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let events = Arc::new(Events::default());
        let ttl = Duration::from_millis(30);
        let cache = Arc::new(BlobCache::open(dir.path(), limits(ttl), events.clone()).unwrap());
        let room = RoomName::try_from("r").unwrap();
        let expiring = put(&cache, &room, b"old news").await;
        let pinned = put(&cache, &room, b"still in history").await;
        events.pinned.lock().unwrap().insert(pinned.clone());
        assert_eq!(events.stored.lock().unwrap().len(), 2);

        tokio::time::sleep(ttl * 3).await;
        cache.sweep().await.unwrap();
        assert_eq!(*events.removed.lock().unwrap(), vec![expiring.clone()]);
        assert!(matches!(cache.stat(&room, &expiring), Err(CacheError::UnknownBlob)));
        assert!(cache.stat(&room, &pinned).is_ok());
        assert!(!cache.blob_path(&expiring).exists(), "the file is gone too");
        drop(cache);

        let events = Arc::new(Events::default());
        let reopened = BlobCache::open(dir.path(), limits(ttl), events.clone()).unwrap();
        assert_eq!(*events.stored.lock().unwrap(), vec![pinned.clone()], "the engine learns what exists at start");
        assert_eq!(reopened.stats(), CacheStats { blobs: 1, bytes: 16, uploads: 0 });
    }
}

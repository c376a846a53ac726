//! File transfers, as pure state: what each transfer is, how far it got and by which path, when
//! a receiver should give up on a peer and fetch from the server, and the framing of file data
//! on a data channel.
//!
//! A file goes two ways at once: peer to peer to everyone present (over the `files` data
//! channel) and up to the server's blob cache. A receiver takes whichever finishes first; when
//! the peer-to-peer transfer stalls or its sender leaves, it fetches from the server instead.

use relaycast_shared::blobs::{ApiError, BlobErrorCode};
use relaycast_shared::{BlobHash, FileName, MediaType, PeerId};
use std::collections::{BTreeMap, VecDeque};

/// Bytes per data-channel message (well under every browser's message size limit).
pub const P2P_CHUNK: usize = 64 * 1024;
/// Stop queueing on a data channel above this many buffered bytes...
pub const P2P_HIGH_WATER: u32 = 1024 * 1024;
/// ...and go on when it drains below this (`bufferedAmountLowThreshold`).
pub const P2P_LOW_WATER: u32 = 256 * 1024;
/// Bytes per upload request (`PATCH`) to the server.
pub const UPLOAD_CHUNK: u64 = 4 * 1024 * 1024;
/// A peer-to-peer transfer with no progress for this long has stalled.
pub const STALL_MS: u64 = 3000;
/// Files up to this size (and images) are fetched on sight; larger ones on request.
pub const AUTO_FETCH_BYTES: u64 = 32 * 1024 * 1024;

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sending,
    Receiving,
}

/// Where a received file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Peer(PeerId),
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Reading the file to compute its hash (sending only).
    Hashing,
    /// Known from the room, not fetched (large files wait for a click).
    Available,
    Transferring,
    /// All bytes here (received: and the hash checked).
    Done,
    Failed(String),
}

/// Bytes over time, for a speed readout.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Speed {
    samples: VecDeque<(u64, u64)>,
}

impl Speed {
    /// Keep this much history for the average.
    const WINDOW_MS: u64 = 3000;

    /// `total` bytes done at `now` (ms).
    pub fn record(&mut self, now: u64, total: u64) {
        self.samples.push_back((now, total));
        while self.samples.len() > 2
            && self.samples.front().is_some_and(|(t, _)| now.saturating_sub(*t) > Self::WINDOW_MS)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the window.
    pub fn bytes_per_sec(&self) -> u64 {
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => (b1.saturating_sub(*b0)) * 1000 / (t1 - t0),
            _ => 0,
        }
    }
}

/// One file on its way, in either direction.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// Local id (a file being hashed has no hash yet).
    pub id: u64,
    pub hash: Option<BlobHash>,
    pub name: FileName,
    pub size: u64,
    pub mime: MediaType,
    pub direction: Direction,
    pub phase: Phase,
    /// Receiving: where the bytes come from; bytes so far.
    pub source: Option<Source>,
    pub received: u64,
    /// Sending: bytes the server has; bytes each peer was sent.
    pub uploaded: u64,
    pub to_peers: BTreeMap<PeerId, u64>,
    /// The room's message naming this file was seen: the server has it.
    pub on_server: bool,
    /// Who sent it (receiving).
    pub sender: Option<PeerId>,
    pub speed: Speed,
    pub last_progress_ms: u64,
    /// An object URL of the bytes, once here.
    pub url: Option<String>,
    /// The bytes hash to the announced hash.
    pub verified: bool,
}

impl Transfer {
    pub fn new(id: u64, name: FileName, size: u64, mime: MediaType, direction: Direction, now: u64) -> Self {
        Transfer {
            id,
            hash: None,
            name,
            size,
            mime,
            direction,
            phase: if direction == Direction::Sending { Phase::Hashing } else { Phase::Available },
            source: None,
            received: 0,
            uploaded: 0,
            to_peers: BTreeMap::new(),
            on_server: false,
            sender: None,
            speed: Speed::default(),
            last_progress_ms: now,
            url: None,
            verified: false,
        }
    }

    /// Progress of the main path, 0.0..=1.0: the server upload when sending, the download when
    /// receiving.
    pub fn fraction(&self) -> f64 {
        let done = match self.direction {
            Direction::Sending => self.uploaded,
            Direction::Receiving => self.received,
        };
        if self.size == 0 {
            return if self.phase == Phase::Done { 1.0 } else { 0.0 };
        }
        (done as f64 / self.size as f64).clamp(0.0, 1.0)
    }

    /// Record `total` bytes done on the receiving path at `now`.
    pub fn progress(&mut self, total: u64, now: u64) {
        self.received = total;
        self.speed.record(now, total);
        self.last_progress_ms = now;
    }

    pub fn is_image(&self) -> bool {
        self.mime.as_str().starts_with("image/")
    }

    /// Fetch as soon as the room names it (small files and images), or wait for a click.
    pub fn fetch_on_sight(&self) -> bool {
        self.size <= AUTO_FETCH_BYTES || self.is_image()
    }

    /// Should a receiver give up on the peer and fetch from the server now?
    pub fn should_fall_back(&self, now: u64, sender_present: bool) -> bool {
        self.direction == Direction::Receiving
            && self.on_server
            && self.phase == Phase::Transferring
            && matches!(self.source, Some(Source::Peer(_)))
            && (!sender_present || now.saturating_sub(self.last_progress_ms) > STALL_MS)
    }
}

/// A message on the `files` data channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A file is coming: what it is.
    Offer { hash: BlobHash, name: FileName, size: u64, mime: MediaType },
    /// Bytes of a file from `offset`.
    Chunk { hash: BlobHash, offset: u64, data: Vec<u8> },
}

const OFFER: u8 = 1;
const CHUNK: u8 = 2;

/// Why a data-channel message was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty or unknown frame")]
    Unknown,
    #[error("truncated frame")]
    Truncated,
    #[error("bad offer: {0}")]
    BadOffer(String),
}

impl Frame {
    /// Chunk: `2`, 64 hex digits of hash, 8 bytes little-endian offset, data. Offer: `1`, JSON.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Frame::Offer { hash, name, size, mime } => {
                let json = serde_json::json!({ "hash": hash, "name": name, "size": size, "mime": mime });
                let mut out = vec![OFFER];
                out.extend_from_slice(json.to_string().as_bytes());
                out
            }
            Frame::Chunk { hash, offset, data } => {
                let mut out = Vec::with_capacity(1 + 64 + 8 + data.len());
                out.push(CHUNK);
                out.extend_from_slice(hash.as_str().as_bytes());
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(data);
                out
            }
        }
    }

    /// The header of a chunk (everything but its data), to prepend to bytes held elsewhere.
    pub fn chunk_header(hash: &BlobHash, offset: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(73);
        out.push(CHUNK);
        out.extend_from_slice(hash.as_str().as_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        match bytes.first() {
            Some(&OFFER) => {
                #[derive(serde::Deserialize)]
                struct Offer {
                    hash: BlobHash,
                    name: FileName,
                    size: u64,
                    mime: MediaType,
                }
                let o: Offer = serde_json::from_slice(&bytes[1..]).map_err(|e| FrameError::BadOffer(e.to_string()))?;
                Ok(Frame::Offer { hash: o.hash, name: o.name, size: o.size, mime: o.mime })
            }
            Some(&CHUNK) => {
                if bytes.len() < 73 {
                    return Err(FrameError::Truncated);
                }
                let hash = std::str::from_utf8(&bytes[1..65])
                    .ok()
                    .and_then(|h| BlobHash::try_from(h).ok())
                    .ok_or(FrameError::Truncated)?;
                let mut offset = [0u8; 8];
                offset.copy_from_slice(&bytes[65..73]);
                Ok(Frame::Chunk { hash, offset: u64::from_le_bytes(offset), data: bytes[73..].to_vec() })
            }
            _ => Err(FrameError::Unknown),
        }
    }
}

/// "1.5 MB", "340 KB", "12 B".
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        value /= 1000.0;
        unit = u;
        if value < 1000.0 {
            break;
        }
    }
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// What an upload does after the answer to a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkStep {
    /// The file is complete on the server.
    Finished,
    /// Go on from where the server says the upload stands (`Upload-Offset`).
    Resync,
    /// A passing failure (busy, timed out, a grant renewed meanwhile, the server's disk or a
    /// proxy): wait, ask where it stands, try again (a few times).
    Retry,
    /// Trying again cannot help (too large, over quota, wrong bytes, the upload is gone).
    Fail,
}

/// The next step after a chunk's answer: by the server's error code when it sent one (the
/// blob API always does), by the status otherwise (a proxy's page).
pub fn after_chunk(status: u16, error: Option<&ApiError>) -> ChunkStep {
    use BlobErrorCode::*;
    match (status, error.map(|e| e.code)) {
        (201, _) => ChunkStep::Finished,
        (204, _) | (_, Some(OffsetMismatch)) => ChunkStep::Resync,
        (_, Some(UploadBusy | Timeout | TooManyUploads | AccessDenied | GrantRequired | StorageFailed)) => {
            ChunkStep::Retry
        }
        (_, Some(_)) => ChunkStep::Fail,
        (s, None) if s >= 500 || s == 408 || s == 429 || s == 502 || s == 503 => ChunkStep::Retry,
        _ => ChunkStep::Fail,
    }
}

/// The server's error body, if that is what `body` is.
pub fn api_error(body: &str) -> Option<ApiError> {
    serde_json::from_str(body).ok()
}

/// An error answer in words, with its stable code.
pub fn error_text(status: u16, error: Option<&ApiError>) -> String {
    match error {
        Some(e) => format!("{} ({})", e.message, e.code),
        None => format!("the server answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(c: char) -> BlobHash {
        BlobHash::try_from(c.to_string().repeat(64)).unwrap()
    }

    fn transfer(direction: Direction) -> Transfer {
        let name = FileName::try_from("a.png").unwrap();
        let mime = MediaType::try_from("image/png").unwrap();
        Transfer::new(1, name, 1000, mime, direction, 0)
    }

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let offer = Frame::Offer {
            hash: hash('a'),
            name: FileName::try_from("photo 1.png").unwrap(),
            size: 12,
            mime: MediaType::try_from("image/png").unwrap(),
        };
        assert_eq!(Frame::decode(&offer.encode()), Ok(offer));
        let chunk = Frame::Chunk { hash: hash('b'), offset: 1 << 40, data: vec![1, 2, 3] };
        assert_eq!(Frame::decode(&chunk.encode()), Ok(chunk.clone()));
        let mut split = Frame::chunk_header(&hash('b'), 1 << 40);
        split.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Frame::decode(&split), Ok(chunk));
        assert_eq!(Frame::decode(&[]), Err(FrameError::Unknown));
        assert_eq!(Frame::decode(&[9, 9]), Err(FrameError::Unknown));
        assert_eq!(Frame::decode(&[CHUNK, b'a']), Err(FrameError::Truncated));
        assert!(matches!(Frame::decode(b"\x01{\"hash\":\"../x\"}"), Err(FrameError::BadOffer(_))));
    }

    #[test]
    fn a_stalled_or_abandoned_peer_transfer_falls_back_to_the_server() {
        let mut t = transfer(Direction::Receiving);
        t.phase = Phase::Transferring;
        t.source = Some(Source::Peer(PeerId::try_from("p1").unwrap()));
        t.progress(500, 1000);
        assert!(!t.should_fall_back(1000 + STALL_MS + 1, true), "the server does not have it yet");
        t.on_server = true;
        assert!(!t.should_fall_back(1000 + STALL_MS, true), "still moving");
        assert!(t.should_fall_back(1000 + STALL_MS + 1, true), "stalled");
        assert!(t.should_fall_back(1001, false), "the sender left");
        t.source = Some(Source::Server);
        assert!(!t.should_fall_back(1000 + STALL_MS + 1, false), "already from the server");
        let mut sending = transfer(Direction::Sending);
        sending.on_server = true;
        assert!(!sending.should_fall_back(u64::MAX, false));
    }

    #[test]
    fn speed_is_an_average_over_the_last_seconds() {
        let mut s = Speed::default();
        assert_eq!(s.bytes_per_sec(), 0);
        s.record(0, 0);
        s.record(1000, 1_000_000);
        assert_eq!(s.bytes_per_sec(), 1_000_000);
        s.record(5000, 2_000_000);
        s.record(6000, 5_000_000);
        assert_eq!(s.bytes_per_sec(), 3_000_000, "the old samples left the window");
    }

    #[test]
    fn progress_fractions_and_sizes_read_well() {
        let mut t = transfer(Direction::Sending);
        t.uploaded = 250;
        assert_eq!(t.fraction(), 0.25);
        let mut r = transfer(Direction::Receiving);
        r.progress(2000, 1);
        assert_eq!(r.fraction(), 1.0, "clamped");
        assert!(r.fetch_on_sight(), "images are fetched on sight");
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1500), "1.5 KB");
        assert_eq!(human_bytes(340_000), "340 KB");
        assert_eq!(human_bytes(2_500_000_000), "2.5 GB");
    }

    #[test]
    fn chunk_answers_are_judged_by_the_servers_code() {
        let e = |code: BlobErrorCode| ApiError { code, message: "m".into() };
        assert_eq!(after_chunk(201, None), ChunkStep::Finished);
        assert_eq!(after_chunk(204, None), ChunkStep::Resync);
        assert_eq!(after_chunk(409, Some(&e(BlobErrorCode::OffsetMismatch))), ChunkStep::Resync);
        assert_eq!(after_chunk(409, Some(&e(BlobErrorCode::UploadBusy))), ChunkStep::Retry);
        assert_eq!(
            after_chunk(403, Some(&e(BlobErrorCode::AccessDenied))),
            ChunkStep::Retry,
            "an expired grant is renewed"
        );
        assert_eq!(after_chunk(403, Some(&e(BlobErrorCode::Forbidden))), ChunkStep::Fail, "no upload right: final");
        assert_eq!(after_chunk(413, Some(&e(BlobErrorCode::QuotaExceeded))), ChunkStep::Fail);
        assert_eq!(after_chunk(422, Some(&e(BlobErrorCode::HashMismatch))), ChunkStep::Fail);
        assert_eq!(after_chunk(500, Some(&e(BlobErrorCode::StorageFailed))), ChunkStep::Retry);
        assert_eq!(after_chunk(502, None), ChunkStep::Retry, "a proxy between");
        assert_eq!(after_chunk(404, None), ChunkStep::Fail);
        let body = r#"{"code":"quota_exceeded","message":"the room's files would exceed its quota"}"#;
        let parsed = api_error(body);
        assert_eq!(parsed.as_ref().map(|e| e.code), Some(BlobErrorCode::QuotaExceeded));
        assert_eq!(error_text(413, parsed.as_ref()), "the room's files would exceed its quota (quota_exceeded)");
        assert_eq!(error_text(502, api_error("<html>bad gateway</html>").as_ref()), "the server answered 502");
    }
}

//! The media relay: live broadcasts from one publisher to many viewers, over WebRTC.
//!
//! A selective forwarding relay built on str0m (sans-IO WebRTC): no decoding, no transcoding.
//! Every session (a WHIP publisher, a WHEP viewer) is one str0m `Rtc` driven by a task of its
//! own; all of them share one UDP socket, whose receiver task hands each datagram to its
//! session ([`routes`]). A publisher's frames go to each viewer's bounded queue with
//! `try_send`: a viewer that cannot keep up loses its own frames and waits for the next
//! keyframe, and never slows the publisher or the others.
//!
//! - [`offer`]: checking an SDP offer before anything is set up.
//! - [`keyframes`]: the pure rate limiter of keyframe requests toward a publisher, and the
//!   per-viewer gate that holds video back until a keyframe.
//! - [`rooms`]: who publishes, who watches, who records, per room; the broadcast state.
//! - [`session`]: the task that drives one `Rtc`; [`tracks`]: matching tracks across sessions.
//! - [`recorder`]: a broadcast into a WebM file, saved as a room file.
//! - [`client`] and [`source`]: a WHIP/WHEP client and media file readers, for
//!   `relaycast publish`, the tests and the benchmark.

pub mod client;
pub mod keyframes;
pub mod offer;
pub mod quota;
pub mod recorder;
pub mod rooms;
pub mod routes;
pub mod session;
pub mod source;
pub mod tracks;

use crate::auth::api_keys::constant_time_eq;
use crate::blobs::BlobCache;
use crate::clock::now_millis;
use crate::core::{GrantConfig, Purpose};
use relaycast_shared::media::{BroadcastState, MediaErrorCode, RecordingInfo, SessionId};
use relaycast_shared::Right;
use relaycast_shared::{Body, RoomName};
use rooms::Rooms;
use routes::Routes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use str0m::change::SdpOffer;
use str0m::{Candidate, Rtc};
use tokio::net::UdpSocket;

/// Settings of the media relay.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The UDP address every session shares.
    pub bind: SocketAddr,
    /// Addresses advertised as ICE candidates instead of `bind` (a public address behind NAT).
    pub public_addrs: Vec<SocketAddr>,
    /// Stream keys from configuration, per room (besides the one issued to a room's owner).
    pub stream_keys: HashMap<RoomName, String>,
    /// Live sessions on the server (publishers + viewers).
    pub max_sessions: usize,
    pub max_viewers_per_room: usize,
    /// Sessions opened from one client address, and with one member's token.
    pub max_sessions_per_addr: usize,
    pub max_sessions_per_member: usize,
    /// Frames queued toward one viewer before it loses frames.
    pub viewer_queue: usize,
    /// Datagrams queued toward one session before they are dropped.
    pub datagram_queue: usize,
    /// Shortest time between two keyframe requests to a publisher.
    pub keyframe_interval: Duration,
    /// A session that does not connect within this time is closed.
    pub connect_timeout: Duration,
    /// Largest SDP offer read.
    pub max_offer_bytes: usize,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_addrs: Vec::new(),
            stream_keys: HashMap::new(),
            max_sessions: 1000,
            max_viewers_per_room: 500,
            max_sessions_per_addr: 20,
            max_sessions_per_member: 4,
            viewer_queue: 256,
            datagram_queue: 1024,
            keyframe_interval: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(15),
            max_offer_bytes: 64 * 1024,
        }
    }
}

/// Why a media request was refused. Each maps to a [`MediaErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the offer is not valid SDP: {0}")]
    MalformedSdp(String),
    #[error("{0}")]
    NoUsableCodec(String),
    #[error("an Authorization: Bearer token is required (the room's stream key, or a member's grant to watch)")]
    TokenRequired,
    #[error("{0}")]
    AccessDenied(&'static str),
    #[error("this token's holder does not have the {0} right in this room")]
    Forbidden(Right),
    #[error("no such session in this room")]
    UnknownSession,
    #[error("the room already has a publisher; end that broadcast first (DELETE its session)")]
    PublisherBusy,
    #[error("the room is not live")]
    NotLive,
    #[error("the room's broadcast is already being recorded")]
    AlreadyRecording,
    #[error("the room's broadcast is not being recorded")]
    NotRecording,
    #[error("{0}")]
    TooManySessions(String),
    #[error("saving the recording failed: {0}")]
    RecordingFailed(String),
    #[error("the media relay failed: {0}")]
    Internal(String),
}

impl MediaError {
    pub fn code(&self) -> MediaErrorCode {
        match self {
            MediaError::MalformedSdp(_) => MediaErrorCode::MalformedSdp,
            MediaError::NoUsableCodec(_) => MediaErrorCode::NoUsableCodec,
            MediaError::TokenRequired => MediaErrorCode::TokenRequired,
            MediaError::AccessDenied(_) => MediaErrorCode::AccessDenied,
            MediaError::Forbidden(_) => MediaErrorCode::Forbidden,
            MediaError::UnknownSession => MediaErrorCode::UnknownSession,
            MediaError::PublisherBusy => MediaErrorCode::PublisherBusy,
            MediaError::NotLive => MediaErrorCode::NotLive,
            MediaError::AlreadyRecording => MediaErrorCode::AlreadyRecording,
            MediaError::NotRecording => MediaErrorCode::NotRecording,
            MediaError::TooManySessions(_) => MediaErrorCode::TooManySessions,
            MediaError::RecordingFailed(_) => MediaErrorCode::RecordingFailed,
            MediaError::Internal(_) => MediaErrorCode::Unavailable,
        }
    }
}

/// What the rest of the server hears from the relay.
pub trait MediaEvents: crate::auth::Members {
    /// A room's broadcast state changed.
    fn broadcast(&self, room: &RoomName, state: BroadcastState);
    /// A message from the server into a room's history (a saved recording).
    fn announce(&self, room: &RoomName, body: Body);
}

/// Which side of a broadcast a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Publisher,
    Viewer,
}

impl Role {
    /// The right a member needs for a session of this role.
    pub fn right(self) -> Right {
        match self {
            Role::Publisher => Right::Broadcast,
            Role::Viewer => Right::Watch,
        }
    }
}

/// Gauges and counters for `/metrics`.
#[derive(Debug, Default)]
pub struct MediaCounters {
    /// Live sessions (publishers and viewers).
    pub sessions: AtomicUsize,
    /// Running session and recorder tasks.
    pub tasks: AtomicUsize,
    pub sessions_total: AtomicU64,
    /// Frames handed to viewers' queues, and frames a full queue dropped.
    pub frames_forwarded: AtomicU64,
    pub frames_dropped: AtomicU64,
    /// Keyframe requests sent to publishers, and those the rate limit absorbed.
    pub keyframe_requests: AtomicU64,
    pub keyframe_requests_coalesced: AtomicU64,
    /// Datagrams no session claimed (garbage, stale, or scans), and datagrams dropped because a
    /// session's queue was full.
    pub datagrams_unrouted: AtomicU64,
    pub datagrams_dropped: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

/// Counts a running task for as long as it lives.
#[derive(Debug)]
pub(crate) struct TaskGauge(Arc<Relay>);

impl TaskGauge {
    pub(crate) fn new(relay: &Arc<Relay>) -> Self {
        relay.counters.tasks.fetch_add(1, Ordering::Relaxed);
        TaskGauge(relay.clone())
    }
}

impl Drop for TaskGauge {
    fn drop(&mut self) {
        self.0.counters.tasks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The relay: shared by the HTTP handlers and every session task.
#[derive(Debug)]
pub struct Relay {
    pub config: MediaConfig,
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    /// What STUN/DTLS/SRTP packets arrive addressed to: the first advertised address.
    candidate_addrs: Vec<SocketAddr>,
    grants: Option<GrantConfig>,
    pub(crate) rooms: Mutex<Rooms>,
    pub(crate) routes: Mutex<Routes>,
    pub(crate) events: Arc<dyn MediaEvents>,
    pub(crate) cache: Option<Arc<BlobCache>>,
    /// Where recordings are written before they go into the blob cache.
    pub(crate) scratch: std::path::PathBuf,
    /// The running recorders, by room.
    recorders: Mutex<HashMap<RoomName, tokio::task::JoinHandle<Result<recorder::Recorded, String>>>>,
    /// Turned true when the server stops: the receiver task ends, sessions close.
    stopping: tokio::sync::watch::Sender<bool>,
    /// Sessions per client address and per member.
    pub quotas: Arc<quota::Quotas>,
    pub counters: MediaCounters,
}

/// Who asks for a session: the client's address, and the member whose token it presented
/// (none for a configured stream key).
#[derive(Debug, Clone)]
pub struct Caller {
    pub addr: std::net::IpAddr,
    pub member: Option<relaycast_shared::PeerId>,
}

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the media UDP socket {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(
        "the media socket is bound to {0}, which is not an address browsers can reach: \
         set --media-public-addr (the address clients use to reach this port)"
    )]
    Unadvertisable(SocketAddr),
}

impl Relay {
    /// Bind the UDP socket and start receiving. The returned handle is what HTTP handlers use.
    pub async fn start(
        config: MediaConfig,
        grants: Option<GrantConfig>,
        events: Arc<dyn MediaEvents>,
        cache: Option<Arc<BlobCache>>,
        scratch: std::path::PathBuf,
    ) -> Result<Arc<Relay>, StartError> {
        // Recordings cut short by a crash are not worth keeping half-written.
        let _ = std::fs::remove_dir_all(&scratch);
        let socket =
            UdpSocket::bind(config.bind).await.map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let local_addr = socket.local_addr().map_err(|source| StartError::Bind { addr: config.bind, source })?;
        let candidate_addrs = if config.public_addrs.is_empty() {
            if local_addr.ip().is_unspecified() {
                return Err(StartError::Unadvertisable(local_addr));
            }
            vec![local_addr]
        } else {
            config.public_addrs.clone()
        };
        let relay = Arc::new(Relay {
            config,
            socket: Arc::new(socket),
            local_addr,
            candidate_addrs,
            grants,
            rooms: Mutex::new(Rooms::default()),
            routes: Mutex::new(Routes::default()),
            events,
            cache,
            scratch,
            recorders: Mutex::new(HashMap::new()),
            stopping: tokio::sync::watch::channel(false).0,
            quotas: Arc::new(quota::Quotas::default()),
            counters: MediaCounters::default(),
        });
        tokio::spawn(routes::receive_loop(relay.clone()));
        Ok(relay)
    }

    /// Stop: end every session and recording, and the socket's receiver task, so that nothing
    /// of the relay (its socket, the blob cache it holds) outlives the server.
    pub fn shutdown(&self) {
        let _ = self.stopping.send(true);
        let (closers, rooms) = {
            let rooms = self.lock_rooms();
            (rooms.all_closers(), rooms.room_names())
        };
        for close in closers {
            close.notify_one();
        }
        let mut rooms_guard = self.lock_rooms();
        for room in rooms {
            rooms_guard.set_recorder(&room, None);
        }
        drop(rooms_guard);
        self.lock_recorders().clear();
    }

    pub(crate) fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// The UDP address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The addresses sessions advertise as their candidates.
    pub fn candidate_addrs(&self) -> &[SocketAddr] {
        &self.candidate_addrs
    }

    /// Check a bearer token for `need` in `room` (going live, watching, recording): a
    /// configured stream key does all three; a stream key the server handed a member, or to
    /// watch also a member's grant, does what its holder's rights allow now. Returns the member
    /// the token was issued to (none for a configured key).
    pub fn authorize(
        &self,
        room: &RoomName,
        token: Option<&str>,
        need: Right,
    ) -> Result<Option<relaycast_shared::PeerId>, MediaError> {
        let holder = self.verify_token(room, token, need)?;
        match &holder {
            Some(peer) => self.check_rights(need, self.events.rights(room, peer)).map(|_| holder),
            None => Ok(None),
        }
    }

    /// The token half of [`Relay::authorize`]: whose token it is (none for a configured key),
    /// before their rights are looked up (in cluster mode, possibly on another node).
    pub fn verify_token(
        &self,
        room: &RoomName,
        token: Option<&str>,
        need: Right,
    ) -> Result<Option<relaycast_shared::PeerId>, MediaError> {
        let token = token.ok_or(MediaError::TokenRequired)?;
        if let Some(key) = self.config.stream_keys.get(room) {
            if constant_time_eq(key.as_bytes(), token.as_bytes()) {
                return Ok(None);
            }
        }
        let now = now_millis();
        let Some(grants) = &self.grants else {
            return Err(MediaError::AccessDenied("the token is not this room's stream key"));
        };
        let peer = match grants.verify_for(Purpose::Stream, room, token, now) {
            Ok(peer) => peer,
            // Watching and moderating take a member's grant too; going live and recording
            // take a stream key.
            Err(_) if matches!(need, Right::Watch | Right::Moderate) => {
                grants.verify(room, token, now).map_err(|_| {
                    MediaError::AccessDenied(
                        "the token is neither a stream key for this room nor a member's grant for it",
                    )
                })?
            }
            Err(_) => {
                return Err(MediaError::AccessDenied(
                    "the token is not a stream key for this room (it may have expired, or belong to another room)",
                ))
            }
        };
        Ok(Some(peer))
    }

    /// The rights half of [`Relay::authorize`]: a token's holder with `rights` in the room
    /// (`None`: not a member) may do `need`, or why not.
    pub fn check_rights(&self, need: Right, rights: Option<relaycast_shared::Rights>) -> Result<(), MediaError> {
        match rights {
            None => Err(MediaError::AccessDenied("this token's holder is no longer in the room; rejoin for a new one")),
            Some(rights) if !rights.has(need) => Err(MediaError::Forbidden(need)),
            Some(_) => Ok(()),
        }
    }

    /// Answer a WHIP/WHEP offer: check it, set up the session, start its task.
    pub fn open_session(
        self: &Arc<Self>,
        room: &RoomName,
        role: Role,
        sdp: &str,
        caller: &Caller,
    ) -> Result<(SessionId, String), MediaError> {
        let offer: SdpOffer = offer::check(sdp, role)?;
        if self.counters.sessions.load(Ordering::Relaxed) >= self.config.max_sessions {
            return Err(MediaError::TooManySessions(format!(
                "the server has as many media sessions as it may ({})",
                self.config.max_sessions
            )));
        }
        let mut wanted =
            vec![(quota::Owner::Addr(crate::core::address_key(caller.addr)), self.config.max_sessions_per_addr)];
        if let Some(member) = &caller.member {
            wanted.push((quota::Owner::Member(room.clone(), member.clone()), self.config.max_sessions_per_member));
        }
        let places = self.quotas.take(wanted).map_err(|(owner, limit)| {
            MediaError::TooManySessions(match owner {
                quota::Owner::Addr(_) => format!("your address has as many media sessions as it may ({limit})"),
                quota::Owner::Member(..) => format!("your token has as many media sessions as it may ({limit})"),
            })
        })?;
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_h264(true)
            .build(std::time::Instant::now());
        for addr in &self.candidate_addrs {
            let candidate = Candidate::host(*addr, "udp").map_err(|err| MediaError::Internal(err.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|err| MediaError::NoUsableCodec(format!("the offer cannot be answered: {err}")))?;
        let answer = answer.to_sdp_string();
        offer::check_answer(&answer)?;
        let id = SessionId::from_bits(rand::random());
        let session = session::Session::register(self, room, role, id.clone(), rtc, places, caller.member.clone())?;
        tokio::spawn(session.run());
        Ok((id, answer))
    }

    /// End a session (`DELETE` on its `Location`).
    /// Whether [`Relay::close_session`] would find the session here.
    pub fn close_session_would_find(&self, room: &RoomName, role: Role, id: &SessionId) -> bool {
        self.lock_rooms().closer(room, role, id).is_some()
    }

    pub fn close_session(&self, room: &RoomName, role: Role, id: &SessionId) -> Result<(), MediaError> {
        let rooms = self.lock_rooms();
        let closer = rooms.closer(room, role, id).ok_or(MediaError::UnknownSession)?;
        drop(rooms);
        // A stored permit: the session sees it even if it is busy right now.
        closer.notify_one();
        Ok(())
    }

    /// End the room's broadcast, whoever publishes it (a moderator's call): viewers are told
    /// and stay, and the room is free for another publisher.
    pub fn end_broadcast(&self, room: &RoomName) -> Result<(), MediaError> {
        let closer = self.lock_rooms().publisher_closer(room).ok_or(MediaError::NotLive)?;
        closer.notify_one();
        Ok(())
    }

    /// Start recording a room's broadcast.
    pub fn start_recording(self: &Arc<Self>, room: &RoomName) -> Result<(), MediaError> {
        recorder::start(self, room)
    }

    /// Stop recording and save the file as a room file; returns it once saved.
    pub async fn stop_recording(self: &Arc<Self>, room: &RoomName) -> Result<RecordingInfo, MediaError> {
        recorder::stop(self, room).await
    }

    pub fn broadcast_state(&self, room: &RoomName) -> BroadcastState {
        self.lock_rooms().state(room)
    }

    /// Tell the server of a room's (possibly) changed state.
    pub(crate) fn publish_state(&self, room: &RoomName) {
        let state = self.broadcast_state(room);
        self.events.broadcast(room, state);
    }

    pub(crate) fn lock_rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lock_recorders(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<RoomName, tokio::task::JoinHandle<Result<recorder::Recorded, String>>>> {
        self.recorders.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Live route entries (zero when no session is left).
    pub fn route_count(&self) -> usize {
        self.lock_routes().len()
    }

    /// Rooms the relay tracks (zero when no session or recording is left).
    pub fn room_count(&self) -> usize {
        self.lock_rooms().len()
    }

    pub(crate) fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

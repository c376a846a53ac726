//! Configuration: every setting is a CLI flag and an environment variable (`RELAYCAST_*`),
//! with the defaults documented in `relaycast --help` and the README.

use crate::auth::Verifier;
use crate::core::{Auth, EngineConfig, GrantConfig, HistoryLimits, Rate, TokenAuth, TurnConfig};
use clap::Parser;
use relaycast_shared::limits::MAX_FRAME_BYTES;
use relaycast_shared::{IceServer, RoomName};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A gap in a room's sequence (a publication ahead of one still missing) waits this long for
/// the missing one before the node reads the log: publications and the answers to appends
/// travel on different connections, so a short wait saves a read in the common race.
const CLUSTER_GAP_GRACE: Duration = Duration::from_millis(100);

/// A node id: letters, digits, `-`, `_` and `.`, up to 64.
fn parse_node_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(s.to_owned())
    } else {
        Err("a node id is 1 to 64 letters, digits, '-', '_' or '.'".into())
    }
}

#[derive(Debug, Clone, Parser)]
// A flag given twice takes its last value (scripts append overrides to a base command line).
#[command(
    name = "relaycast",
    version,
    about = "Relaycast: rooms, WebRTC signaling and durable message history",
    args_override_self = true
)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "RELAYCAST_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Directory of the durable history store.
    #[arg(long, env = "RELAYCAST_DATA_DIR", default_value = "relaycast-data")]
    pub data_dir: PathBuf,

    /// Keep history in memory only: nothing survives a restart.
    #[arg(long, env = "RELAYCAST_MEMORY")]
    pub memory: bool,

    /// Cluster mode: the Redis (7+, or Valkey) that several nodes share, e.g.
    /// redis://10.0.0.5:6379/0. Rooms are then sequenced, stored and fanned out through it,
    /// and any node serves any room. Without it the server runs alone on its embedded store.
    #[arg(long, env = "RELAYCAST_REDIS")]
    pub redis: Option<String>,

    /// Cluster mode: this node's id, unique in the cluster (default: random at each start).
    #[arg(long, env = "RELAYCAST_NODE_ID", value_parser = parse_node_id)]
    pub node_id: Option<String>,

    /// Cluster mode: a node whose heartbeat is older than this counts as dead, and its
    /// members are announced as left (within this plus a third of it). It beats every third.
    #[arg(long, env = "RELAYCAST_NODE_TTL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub node_ttl: Duration,

    /// Cluster mode: Redis answers within this, or the operation fails (`store_unavailable`).
    #[arg(long, env = "RELAYCAST_REDIS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub redis_timeout: Duration,

    /// Cluster mode: how often the node checks that its subscription still hears Redis (a
    /// probe it publishes to itself); one not back within half of this rebuilds it.
    #[arg(long, env = "RELAYCAST_REDIS_PROBE_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub redis_probe_interval: Duration,

    /// Cluster mode: the URL other nodes reach this one at, for a room's files, forwarded
    /// upload chunks and media requests (default: http:// or, with TLS, https:// and the
    /// address the server listens on, which must then not be 0.0.0.0 or ::).
    #[arg(long, env = "RELAYCAST_ADVERTISE_URL")]
    pub advertise_url: Option<String>,

    /// Cluster mode: a file holding the secret every node signs grants and stream keys with
    /// (at least 32 bytes), so that a grant from one node works on every node. Without it (or
    /// --cluster-secret-env) the first node makes one and keeps it in Redis.
    #[arg(long, env = "RELAYCAST_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,

    /// Cluster mode: an environment variable holding that secret.
    #[arg(long, env = "RELAYCAST_CLUSTER_SECRET_ENV")]
    pub cluster_secret_env: Option<String>,

    /// Directory of the built web app, served at `/`.
    #[arg(long, env = "RELAYCAST_STATIC_DIR", default_value = "dist")]
    pub static_dir: PathBuf,

    /// Messages kept per room.
    #[arg(long, env = "RELAYCAST_HISTORY_MAX_MESSAGES", default_value_t = 1000)]
    pub history_max_messages: usize,

    /// Bytes of history kept per room.
    #[arg(long, env = "RELAYCAST_HISTORY_MAX_BYTES", default_value_t = 1024 * 1024)]
    pub history_max_bytes: usize,

    /// How long a message stays in history (e.g. 24h, 30m).
    #[arg(long, env = "RELAYCAST_HISTORY_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub history_max_age: Duration,

    /// Largest WebSocket frame accepted from a client, in bytes.
    #[arg(long, env = "RELAYCAST_MAX_FRAME_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(256..=MAX_FRAME_BYTES as i64))]
    pub max_frame_bytes: u32,

    /// Frames queued toward one connection before it counts as too slow and is dropped.
    #[arg(long, env = "RELAYCAST_QUEUE_DEPTH", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub queue_depth: u32,

    /// Bytes queued toward one connection before it counts as too slow and is dropped
    /// (at least twice --max-frame-bytes; a join's history burst must fit).
    #[arg(long, env = "RELAYCAST_QUEUE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub queue_bytes: usize,

    /// Rooms the server holds at most.
    #[arg(long, env = "RELAYCAST_MAX_ROOMS", default_value_t = 100_000)]
    pub max_rooms: usize,

    /// Rooms one connection may be in at once.
    #[arg(long, env = "RELAYCAST_MAX_ROOMS_PER_CONNECTION", default_value_t = 16)]
    pub max_rooms_per_connection: usize,

    /// Peers one room may hold.
    #[arg(long, env = "RELAYCAST_MAX_PEERS_PER_ROOM", default_value_t = 64)]
    pub max_peers_per_room: usize,

    /// Sustained messages (publish and signal) per second per connection; 0: unlimited.
    #[arg(long, env = "RELAYCAST_MESSAGES_PER_SECOND", default_value_t = 200)]
    pub messages_per_second: u32,

    /// Burst above the sustained rate.
    #[arg(long, env = "RELAYCAST_MESSAGE_BURST", default_value_t = 400)]
    pub message_burst: u32,

    /// Joins and leaves per second per connection (sustained); 0: unlimited.
    #[arg(long, env = "RELAYCAST_JOINS_PER_SECOND", default_value_t = 5)]
    pub joins_per_second: u32,

    /// Joins and leaves a connection may make at once (a reconnecting client rejoins all its rooms).
    #[arg(long, env = "RELAYCAST_JOIN_BURST", default_value_t = 32)]
    pub join_burst: u32,

    /// New rooms one IP address (an IPv6 /64) may create per minute; 0: unlimited.
    #[arg(long, env = "RELAYCAST_ROOMS_PER_IP_PER_MINUTE", default_value_t = 60)]
    pub rooms_per_ip_per_minute: u32,

    /// Rooms created from one IP address (an IPv6 /64) that exist at once.
    #[arg(long, env = "RELAYCAST_MAX_ROOMS_PER_IP", default_value_t = 1000)]
    pub max_rooms_per_ip: usize,

    /// Open connections on the server (HTTP and WebSocket together); lowered at start to fit
    /// the open-file limit (which the server raises to its hard limit).
    #[arg(long, env = "RELAYCAST_MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Open connections from one IP address (an IPv6 /64).
    #[arg(long, env = "RELAYCAST_MAX_CONNECTIONS_PER_IP", default_value_t = 200)]
    pub max_connections_per_ip: usize,

    /// New connections per second from one IP address (sustained); 0: unlimited.
    #[arg(long, env = "RELAYCAST_CONNECTIONS_PER_IP_PER_SECOND", default_value_t = 20)]
    pub connections_per_ip_per_second: u32,

    /// New connections one IP address may open at once above that rate.
    #[arg(long, env = "RELAYCAST_CONNECTION_BURST_PER_IP", default_value_t = 100)]
    pub connection_burst_per_ip: u32,

    /// Time to send a request head, counted from when the server waits for one: on a new
    /// connection and between the requests of a kept-alive one (also the keep-alive idle timeout).
    #[arg(long, env = "RELAYCAST_HEADER_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// A WebSocket that has not sent hello this long after it opened is closed (`hello_timeout`).
    #[arg(long, env = "RELAYCAST_HELLO_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub hello_timeout: Duration,

    /// A WebSocket whose peer takes no frames for this long (its queued batch unsent) is closed.
    #[arg(long, env = "RELAYCAST_WRITE_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// A web origin (`https://app.example.org`) whose pages may open WebSockets and call the
    /// HTTP APIs (repeat, or comma-separate); `*` for any. The server's own origin is always
    /// allowed; with none given, so are loopback origins (a dev server such as trunk serve).
    #[arg(long = "allowed-origin", env = "RELAYCAST_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// A reverse proxy (address or network, e.g. 10.0.0.0/8; repeat, or comma-separate) whose
    /// X-Forwarded-For is believed: per-address limits then count the client's address, and
    /// the proxy's connections count only against --max-connections.
    #[arg(long = "trusted-proxy", env = "RELAYCAST_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_network)]
    pub trusted_proxies: Vec<crate::transport::proxies::Network>,

    /// Accepted messages not yet durable, server-wide, before publishers are told `overloaded`.
    #[arg(long, env = "RELAYCAST_MAX_UNPERSISTED", default_value_t = 100_000)]
    pub max_unpersisted: usize,

    /// Accepted messages not yet durable from one connection; at this many the server stops
    /// reading from it until some are durable (backpressure, no error).
    #[arg(long, env = "RELAYCAST_MAX_UNPERSISTED_PER_CONNECTION", default_value_t = 1_000)]
    pub max_unpersisted_per_connection: usize,

    /// How often the server pings each connection.
    #[arg(long, env = "RELAYCAST_PING_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub ping_interval: Duration,

    /// A connection silent (no frame, no pong) for this long is closed and its peer announced as left.
    #[arg(long, env = "RELAYCAST_IDLE_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// On SIGINT/SIGTERM, how long to wait for connections to close before exiting anyway.
    #[arg(long, env = "RELAYCAST_SHUTDOWN_GRACE", default_value = "5s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// An ICE server URL handed to clients (repeat, or comma-separate in the env var),
    /// e.g. stun:stun.example.org:3478.
    #[arg(long = "ice-server", env = "RELAYCAST_ICE_SERVERS", value_delimiter = ',')]
    pub ice_servers: Vec<String>,

    /// A coturn URL (repeat, or comma-separate in the env var), e.g. turn:turn.example.org:3478;
    /// with --turn-secret, every client gets its own time-limited credentials for it.
    #[arg(long = "turn-url", env = "RELAYCAST_TURN_URLS", value_delimiter = ',', requires = "turn_secret")]
    pub turn_urls: Vec<String>,

    /// coturn's static-auth-secret (its REST API scheme, use-auth-secret).
    #[arg(long, env = "RELAYCAST_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// How long minted TURN credentials stay valid.
    #[arg(long, env = "RELAYCAST_TURN_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub turn_ttl: Duration,

    /// Who may connect: `token` (every connection presents a token signed by the app's
    /// backend, with its rights per room) or `open` (anyone may join any room: development).
    #[arg(long, env = "RELAYCAST_AUTH", default_value = "token", value_enum)]
    pub auth: AuthMode,

    /// Token mode: an Ed25519 public key (PEM) that verifies EdDSA tokens, as [KID=]FILE; the
    /// KID is the token header's `kid`. Repeat for several keys (rotation).
    #[arg(
        long = "auth-public-key",
        env = "RELAYCAST_AUTH_PUBLIC_KEYS",
        value_delimiter = ',',
        value_name = "[KID=]FILE"
    )]
    pub auth_public_keys: Vec<String>,

    /// Token mode: a file holding an HS256 secret (at least 32 bytes), as [KID=]FILE.
    #[arg(
        long = "auth-secret-file",
        env = "RELAYCAST_AUTH_SECRET_FILES",
        value_delimiter = ',',
        value_name = "[KID=]FILE"
    )]
    pub auth_secret_files: Vec<String>,

    /// Token mode: an environment variable holding an HS256 secret, as [KID=]VAR.
    #[arg(
        long = "auth-secret-env",
        env = "RELAYCAST_AUTH_SECRET_ENVS",
        value_delimiter = ',',
        value_name = "[KID=]VAR"
    )]
    pub auth_secret_envs: Vec<String>,

    /// Token mode: the audience (`aud`) tokens must name.
    #[arg(long, env = "RELAYCAST_AUTH_AUDIENCE", default_value = "relaycast")]
    pub auth_audience: String,

    /// Token mode: the issuer (`iss`) tokens must name; not checked when unset.
    #[arg(long, env = "RELAYCAST_AUTH_ISSUER")]
    pub auth_issuer: Option<String>,

    /// Token mode: how far a token's `exp` and `nbf` may be off (clock skew).
    #[arg(long, env = "RELAYCAST_AUTH_LEEWAY", default_value = "30s", value_parser = humantime::parse_duration)]
    pub auth_leeway: Duration,

    /// Token mode: a connection is told this long before its token expires, to send a new one.
    #[arg(long, env = "RELAYCAST_TOKEN_EXPIRY_NOTICE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub token_expiry_notice: Duration,

    /// Token mode: a connection whose token expired is closed (`token_expired`) this long after.
    #[arg(long, env = "RELAYCAST_TOKEN_EXPIRY_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub token_expiry_grace: Duration,

    /// Token mode: where the web app gets a token for a room (fetched with the page's cookies,
    /// `?room=<room>` added; the answer is the token, as text or as `{"token": ...}`), first and
    /// before the token expires. Without it, the app takes a token from its address
    /// (`#token=...`) and cannot renew it.
    #[arg(long, env = "RELAYCAST_APP_TOKEN_URL")]
    pub app_token_url: Option<String>,

    /// An API key for the app's backend (the backend API, and /metrics on --bind), in a file,
    /// as [NAME=]FILE (at least 24 bytes; the name is for logs). Repeat for several (rotation).
    #[arg(long = "api-key-file", env = "RELAYCAST_API_KEY_FILES", value_delimiter = ',', value_name = "[NAME=]FILE")]
    pub api_key_files: Vec<String>,

    /// An API key in an environment variable, as [NAME=]VAR.
    #[arg(long = "api-key-env", env = "RELAYCAST_API_KEY_ENVS", value_delimiter = ',', value_name = "[NAME=]VAR")]
    pub api_key_envs: Vec<String>,

    /// How long the backend API's post waits for its message to be stored before answering
    /// `timeout`.
    #[arg(long, env = "RELAYCAST_API_POST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub api_post_timeout: Duration,

    /// How long a room grant (the HTTP permission for a room's files) stays valid.
    #[arg(long, env = "RELAYCAST_GRANT_TTL", default_value = "12h", value_parser = humantime::parse_duration)]
    pub grant_ttl: Duration,

    /// Blob cache: all cached files together, e.g. 10GiB; least recently used go first.
    #[arg(long, env = "RELAYCAST_BLOB_MAX_TOTAL", default_value = "10GiB", value_parser = parse_bytes)]
    pub blob_max_total: u64,

    /// Blob cache: the largest file accepted.
    #[arg(long, env = "RELAYCAST_BLOB_MAX_SIZE", default_value = "2GiB", value_parser = parse_bytes)]
    pub blob_max_size: u64,

    /// Blob cache: one room's files (and uploads in progress) together.
    #[arg(long, env = "RELAYCAST_BLOB_ROOM_QUOTA", default_value = "4GiB", value_parser = parse_bytes)]
    pub blob_room_quota: u64,

    /// Blob cache: a file nobody used for this long is evicted, unless a room's history still
    /// refers to it.
    #[arg(long, env = "RELAYCAST_BLOB_TTL", default_value = "7days", value_parser = humantime::parse_duration)]
    pub blob_ttl: Duration,

    /// Blob cache: uploads in progress at once, across all rooms.
    #[arg(long, env = "RELAYCAST_BLOB_MAX_UPLOADS", default_value_t = 64)]
    pub blob_max_uploads: usize,

    /// Blob cache: uploads in progress at once in one room.
    #[arg(long, env = "RELAYCAST_BLOB_MAX_UPLOADS_PER_ROOM", default_value_t = 16)]
    pub blob_max_uploads_per_room: usize,

    /// Blob cache: uploads in progress at once by one member of a room (one grant holder).
    #[arg(long, env = "RELAYCAST_BLOB_MAX_UPLOADS_PER_MEMBER", default_value_t = 4)]
    pub blob_max_uploads_per_member: usize,

    /// Blob cache: a resumable upload that receives no byte for this long is dropped and its
    /// slot freed (also one left over from before a restart).
    #[arg(long, env = "RELAYCAST_BLOB_UPLOAD_IDLE", default_value = "10min", value_parser = humantime::parse_duration)]
    pub blob_upload_idle: Duration,

    /// How long an upload's body may stall before its request ends (a resumable upload keeps
    /// what arrived).
    #[arg(long, env = "RELAYCAST_BLOB_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub blob_body_timeout: Duration,

    /// Media relay (WHIP/WHEP): the UDP address every media session shares. Default: the
    /// same address and port number as --bind, over UDP (one port to open, TCP and UDP).
    #[arg(long, env = "RELAYCAST_MEDIA_BIND")]
    pub media_bind: Option<SocketAddr>,

    /// Media relay: an address clients reach the media port at, advertised as the ICE
    /// candidate (repeat; needed behind NAT or when --media-bind is 0.0.0.0).
    #[arg(long = "media-public-addr", env = "RELAYCAST_MEDIA_PUBLIC_ADDRS", value_delimiter = ',')]
    pub media_public_addrs: Vec<SocketAddr>,

    /// Media relay: a stream key for a room, as ROOM=KEY (repeat, or comma-separate in the env
    /// var). Besides it, each room's owner gets a key of its own over the WebSocket.
    #[arg(long = "stream-key", env = "RELAYCAST_STREAM_KEYS", value_delimiter = ',', hide_env_values = true,
          value_parser = parse_stream_key)]
    pub stream_keys: Vec<(RoomName, String)>,

    /// Media relay: live media sessions (publishers and viewers) on the server.
    #[arg(long, env = "RELAYCAST_MEDIA_MAX_SESSIONS", default_value_t = 1000)]
    pub media_max_sessions: usize,

    /// Media relay: sessions (connected or not) opened from one IP address (an IPv6 /64).
    #[arg(long, env = "RELAYCAST_MEDIA_MAX_SESSIONS_PER_IP", default_value_t = 20)]
    pub media_max_sessions_per_ip: usize,

    /// Media relay: sessions opened with one member's grant (a viewer needs one).
    #[arg(long, env = "RELAYCAST_MEDIA_MAX_SESSIONS_PER_MEMBER", default_value_t = 4)]
    pub media_max_sessions_per_member: usize,

    /// Media relay: viewers of one room's broadcast.
    #[arg(long, env = "RELAYCAST_MEDIA_MAX_VIEWERS", default_value_t = 500)]
    pub media_max_viewers: usize,

    /// Media relay: frames queued toward one viewer; past it the viewer loses frames (and
    /// waits for a keyframe) without slowing anyone else.
    #[arg(long, env = "RELAYCAST_MEDIA_VIEWER_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub media_viewer_queue: u32,

    /// Media relay: shortest time between two keyframe requests to a publisher (requests from
    /// many viewers in between become one).
    #[arg(long, env = "RELAYCAST_MEDIA_KEYFRAME_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub media_keyframe_interval: Duration,

    /// Media relay: a session whose connection is not up within this time is closed.
    #[arg(long, env = "RELAYCAST_MEDIA_CONNECT_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub media_connect_timeout: Duration,

    /// Turn the media relay off (no UDP port, no /whip, /whep).
    #[arg(long, env = "RELAYCAST_NO_MEDIA")]
    pub no_media: bool,

    /// TLS: the certificate chain (PEM) for https and wss on --bind; reloaded when the file
    /// changes or on SIGHUP.
    #[arg(long, env = "RELAYCAST_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS: the certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "RELAYCAST_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// TLS with a self-signed certificate for this machine's names and addresses, kept in
    /// the data directory (its SHA-256 fingerprint is printed at start), for a LAN.
    #[arg(long, env = "RELAYCAST_TLS_SELF_SIGNED", conflicts_with = "tls_cert")]
    pub tls_self_signed: bool,

    /// TLS: another name the self-signed certificate covers (repeat), e.g. relaycast.lan.
    #[arg(long = "tls-name", env = "RELAYCAST_TLS_NAMES", value_delimiter = ',')]
    pub tls_names: Vec<String>,

    /// Serve `/metrics` on this address only (e.g. 127.0.0.1:9090, for the scraper), not on
    /// --bind, where it is public otherwise.
    #[arg(long, env = "RELAYCAST_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Log filter (tracing's EnvFilter syntax), e.g. info or relaycast=debug.
    #[arg(long, env = "RELAYCAST_LOG", default_value = "info")]
    pub log: String,
}

fn parse_network(s: &str) -> Result<crate::transport::proxies::Network, String> {
    s.parse()
}

/// Who may connect (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Anyone may join any room (development; a warning is logged).
    Open,
    /// Every connection presents a token from the app's backend.
    Token,
}

/// `ROOM=KEY`.
fn parse_stream_key(s: &str) -> Result<(RoomName, String), String> {
    let (room, key) = s.split_once('=').ok_or_else(|| format!("{s:?} is not ROOM=KEY"))?;
    let room = RoomName::try_from(room).map_err(|e| format!("bad room in --stream-key: {e}"))?;
    if key.len() < 8 {
        return Err("a stream key must be at least 8 characters".into());
    }
    Ok((room, key.to_owned()))
}

/// A byte count: a number with an optional unit, `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) or
/// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024), e.g. `512MiB`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("{s:?} is not a byte count such as 512MiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)")),
    };
    number.checked_mul(factor).ok_or_else(|| format!("{s:?} is too large"))
}

impl Config {
    /// Defaults, as if started with no flags (for tests and embedding).
    pub fn defaults() -> Self {
        Config::parse_from(["relaycast"])
    }

    pub fn blob_limits(&self) -> crate::blobs::CacheLimits {
        crate::blobs::CacheLimits {
            max_total_bytes: self.blob_max_total,
            max_blob_bytes: self.blob_max_size,
            room_quota_bytes: self.blob_room_quota,
            ttl: self.blob_ttl,
            max_uploads: self.blob_max_uploads.max(1),
            max_uploads_per_room: self.blob_max_uploads_per_room.max(1),
            max_uploads_per_member: self.blob_max_uploads_per_member.max(1),
            upload_idle: self.blob_upload_idle,
        }
    }

    pub fn media(&self) -> crate::media::MediaConfig {
        crate::media::MediaConfig {
            bind: self.media_bind.unwrap_or(self.bind),
            public_addrs: self.media_public_addrs.clone(),
            stream_keys: self.stream_keys.iter().cloned().collect(),
            max_sessions: self.media_max_sessions,
            max_viewers_per_room: self.media_max_viewers,
            max_sessions_per_addr: self.media_max_sessions_per_ip.max(1),
            max_sessions_per_member: self.media_max_sessions_per_member.max(1),
            viewer_queue: self.media_viewer_queue as usize,
            keyframe_interval: self.media_keyframe_interval,
            connect_timeout: self.media_connect_timeout,
            ..crate::media::MediaConfig::default()
        }
    }

    /// Where the TLS certificate comes from, if TLS is on.
    pub fn tls(&self) -> Option<crate::tls::TlsSource> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsSource::Files { cert: cert.clone(), key: key.clone() }),
            _ if self.tls_self_signed => Some(crate::tls::TlsSource::SelfSigned {
                dir: self.data_dir.join("tls"),
                names: crate::tls::machine_names(self.bind.ip(), &self.tls_names),
            }),
            _ => None,
        }
    }

    /// The connection limits, before they are fitted to the open-file limit.
    pub fn connection_limits(&self) -> crate::transport::ConnLimits {
        crate::transport::ConnLimits {
            max_total: self.max_connections.max(1),
            max_per_addr: self.max_connections_per_ip.max(1),
            rate_per_addr: Rate::per_second(self.connections_per_ip_per_second, self.connection_burst_per_ip.max(1)),
        }
    }

    /// Who may connect: in token mode, with the configured keys loaded.
    pub fn auth(&self) -> Result<Auth, String> {
        use crate::auth::keys::{split_kid, KeySource, KeySpec};
        if self.auth == AuthMode::Open {
            return Ok(Auth::Open);
        }
        let public = self.auth_public_keys.iter().map(|v| (v, KeySource::PublicKeyFile as fn(PathBuf) -> KeySource));
        let files = self.auth_secret_files.iter().map(|v| (v, KeySource::SecretFile as fn(PathBuf) -> KeySource));
        let mut specs = Vec::new();
        for (value, source) in public.chain(files).filter(|(v, _)| !v.is_empty()) {
            let (kid, path) = split_kid(value)?;
            specs.push(KeySpec { kid, source: source(path.into()) });
        }
        for value in self.auth_secret_envs.iter().filter(|v| !v.is_empty()) {
            let (kid, var) = split_kid(value)?;
            specs.push(KeySpec { kid, source: KeySource::SecretEnv(var.into()) });
        }
        if specs.is_empty() {
            return Err("--auth token needs a key to verify tokens with: --auth-public-key, --auth-secret-file or \
                        --auth-secret-env (see the README); for development, run with --auth open"
                .into());
        }
        let keys = specs.iter().map(KeySpec::load).collect::<Result<Vec<_>, _>>()?;
        let verifier = Verifier::new(
            keys,
            self.auth_audience.clone(),
            self.auth_issuer.clone(),
            self.auth_leeway.as_millis() as u64,
        );
        Ok(Auth::Token(TokenAuth {
            verifier: Arc::new(verifier),
            expiry_notice_ms: self.token_expiry_notice.as_millis() as u64,
            expiry_grace_ms: self.token_expiry_grace.as_millis() as u64,
        }))
    }

    /// The backend API's keys.
    pub fn api_keys(&self) -> Result<crate::auth::api_keys::ApiKeys, String> {
        crate::auth::api_keys::ApiKeys::load(&self.api_key_files, &self.api_key_envs)
    }

    /// The engine's settings (reads the auth keys).
    pub fn engine(&self) -> Result<EngineConfig, String> {
        Ok(EngineConfig {
            max_frame_bytes: self.max_frame_bytes as usize,
            max_rooms: self.max_rooms,
            max_rooms_per_connection: self.max_rooms_per_connection,
            max_peers_per_room: self.max_peers_per_room,
            messages_per_second: self.messages_per_second,
            message_burst: self.message_burst.max(1),
            joins: Rate::per_second(self.joins_per_second, self.join_burst.max(1)),
            room_creation: Rate::per_minute(self.rooms_per_ip_per_minute, self.rooms_per_ip_per_minute.max(1)),
            max_rooms_per_addr: self.max_rooms_per_ip.max(1),
            hello_timeout_ms: self.hello_timeout.as_millis() as u64,
            history: HistoryLimits {
                max_messages: self.history_max_messages,
                max_bytes: self.history_max_bytes,
                max_age_ms: self.history_max_age.as_millis() as u64,
            },
            history_batch: 1000,
            max_unpersisted: self.max_unpersisted.max(1),
            max_unpersisted_per_connection: self.max_unpersisted_per_connection.max(1),
            ice_servers: self
                .ice_servers
                .iter()
                .filter(|u| !u.is_empty())
                .map(|u| IceServer { urls: vec![u.clone()], username: None, credential: None })
                .collect(),
            // A fresh secret per process: grants end with it, and clients get new ones on rejoin.
            grant: Some(GrantConfig {
                secret: rand::random::<[u8; 32]>().to_vec(),
                ttl_ms: self.grant_ttl.as_millis().max(1000) as u64,
            }),
            turn: match (&self.turn_secret, self.turn_urls.is_empty()) {
                (Some(secret), false) => Some(TurnConfig {
                    urls: self.turn_urls.clone(),
                    secret: secret.clone(),
                    ttl_secs: self.turn_ttl.as_secs().max(60),
                }),
                _ => None,
            },
            auth: self.auth()?,
            cluster: self.redis.as_ref().map(|_| crate::core::ClusterConfig {
                node: self.node_id(),
                gap_grace_ms: CLUSTER_GAP_GRACE.as_millis() as u64,
            }),
        })
    }

    /// This node's id: the one configured, or one made up at start (remembered for the run).
    pub fn node_id(&self) -> String {
        static RANDOM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        self.node_id
            .clone()
            .unwrap_or_else(|| RANDOM.get_or_init(|| format!("node-{:016x}", rand::random::<u64>())).clone())
    }

    /// The cluster secret given in the configuration, if any.
    pub fn cluster_secret(&self) -> Result<Option<Vec<u8>>, String> {
        let secret = match (&self.cluster_secret_file, &self.cluster_secret_env) {
            (Some(file), _) => std::fs::read(file)
                .map_err(|e| format!("--cluster-secret-file {}: {e}", file.display()))?
                .trim_ascii()
                .to_vec(),
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| format!("--cluster-secret-env {var}: no such environment variable"))?
                .into_bytes(),
            (None, None) => return Ok(None),
        };
        if secret.len() < 32 {
            return Err(format!("the cluster secret has {} bytes; it needs at least 32", secret.len()));
        }
        Ok(Some(secret))
    }

    /// Cluster mode's settings, when `--redis` is given.
    pub fn cluster(&self) -> Option<(String, crate::cluster::node::NodeSettings)> {
        let url = self.redis.clone()?;
        let probe = self.redis_probe_interval.max(Duration::from_millis(100));
        Some((
            url,
            crate::cluster::node::NodeSettings {
                node_id: self.node_id(),
                heartbeat_ttl: self.node_ttl.max(Duration::from_millis(300)),
                gap_grace: CLUSTER_GAP_GRACE,
                response_timeout: self.redis_timeout.max(Duration::from_millis(100)),
                subscriber: crate::cluster::subscriber::SubscriberConfig {
                    probe_interval: probe,
                    probe_timeout: probe / 2,
                    max_backoff: Duration::from_secs(2),
                },
                history_max_messages: self.history_max_messages as u64,
                rooms_per_addr_per_minute: self.rooms_per_ip_per_minute,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_flags_override() {
        let c = Config::defaults();
        assert_eq!(c.bind.port(), 8080);
        assert_eq!(c.history_max_age, Duration::from_secs(86400));
        let c =
            Config::try_parse_from(["relaycast", "--memory", "--ping-interval", "250ms", "--ice-server", "stun:a:1"])
                .unwrap();
        assert!(c.memory);
        assert_eq!(c.ping_interval, Duration::from_millis(250));
        assert!(Config::try_parse_from(["relaycast", "--max-frame-bytes", "10"]).is_err());
        let c = Config::try_parse_from(["relaycast", "--max-rooms", "5", "--max-rooms", "7"]).unwrap();
        assert_eq!(c.max_rooms, 7, "the last one wins");
    }

    #[test]
    fn media_settings_default_to_the_http_port_over_udp() {
        let c = Config::defaults();
        assert_eq!(c.media().bind, c.bind);
        let c =
            Config::try_parse_from(["relaycast", "--stream-key", "stage=secret-key-1", "--media-bind", "127.0.0.1:9"])
                .unwrap();
        let media = c.media();
        assert_eq!(media.bind.port(), 9);
        assert_eq!(
            media.stream_keys.get(&RoomName::try_from("stage").unwrap()).map(String::as_str),
            Some("secret-key-1")
        );
        assert!(Config::try_parse_from(["relaycast", "--stream-key", "nokey"]).is_err());
        assert!(Config::try_parse_from(["relaycast", "--stream-key", "stage=short"]).is_err());
    }

    #[test]
    fn token_mode_is_the_default_and_needs_a_key() {
        let c = Config::defaults();
        assert_eq!(c.auth, AuthMode::Token);
        let err = c.engine().unwrap_err();
        assert!(err.contains("--auth open"), "the error says how to develop without keys: {err}");
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = (dir.path().join("s"), dir.path().join("k"));
        std::fs::write(&secret, "x".repeat(40)).unwrap();
        crate::auth::keys::write_key_pair(&public).unwrap();
        let args = ["relaycast", "--auth-secret-file", &format!("hs={}", secret.display())];
        let c =
            Config::try_parse_from(args.iter().chain(&["--auth-public-key", &format!("{}.pub.pem", public.display())]))
                .unwrap();
        assert!(matches!(c.engine().unwrap().auth, Auth::Token(_)));
        let c = Config::try_parse_from(["relaycast", "--auth-public-key", &secret.display().to_string()]).unwrap();
        assert!(c.engine().unwrap_err().contains("not an Ed25519 public key"));
        let c = Config::try_parse_from(["relaycast", "--auth", "open"]).unwrap();
        assert!(matches!(c.engine().unwrap().auth, Auth::Open));
    }

    #[test]
    fn byte_counts_take_units() {
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("2KB"), Ok(2000));
        assert_eq!(parse_bytes("3MiB"), Ok(3 << 20));
        assert_eq!(parse_bytes("10GiB"), Ok(10 << 30));
        assert!(parse_bytes("10 parsecs").is_err());
        assert!(parse_bytes("GiB").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
        let c = Config::try_parse_from(["relaycast", "--blob-max-size", "1MiB"]).unwrap();
        assert_eq!(c.blob_max_size, 1 << 20);
        assert_eq!(c.blob_limits().max_total_bytes, 10 << 30);
    }

    #[test]
    fn turn_needs_a_secret_and_mints_per_peer_credentials() {
        assert!(Config::try_parse_from(["relaycast", "--turn-url", "turn:t:3478"]).is_err(), "no secret");
        let c = Config::try_parse_from(["relaycast", "--turn-url", "turn:t:3478", "--turn-secret", "s"]).unwrap();
        let open = |mut c: Config| {
            c.auth = AuthMode::Open;
            c.engine().unwrap()
        };
        let turn = open(c).turn.expect("turn configured");
        assert_eq!(turn.ttl_secs, 12 * 3600);
        assert!(open(Config::defaults()).turn.is_none());
    }

    #[test]
    fn environment_variables_configure_too() {
        // Only this test sets these variables; no other test reads these fields.
        std::env::set_var("RELAYCAST_HISTORY_MAX_MESSAGES", "7");
        std::env::set_var("RELAYCAST_ICE_SERVERS", "stun:a:1,turn:b:2");
        let c = Config::defaults();
        assert_eq!(c.history_max_messages, 7);
        assert_eq!(c.history_max_messages, 7);
        assert_eq!(c.ice_servers, vec!["stun:a:1".to_owned(), "turn:b:2".to_owned()]);
        // A flag wins over the environment.
        let c = Config::try_parse_from(["relaycast", "--history-max-messages", "9"]).unwrap();
        assert_eq!(c.history_max_messages, 9);
    }
}

//! Helpers for tests against a real server on loopback: start one on port 0, talk to it over
//! real WebSockets, wait for a message (never a fixed sleep).

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use relaycast::Config;
use relaycast_shared::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), relaycast::RunError>>>,
}

/// Config for tests: open mode, memory store, no rate limit, fast ticks; `edit` changes the rest. Every
/// test client comes from 127.0.0.1, so the per-address limits are opened too (the tests of
/// those limits set them back).
pub fn test_config(edit: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::defaults();
    config.auth = relaycast::config::AuthMode::Open;
    config.memory = true;
    config.messages_per_second = 0;
    config.joins_per_second = 0;
    config.rooms_per_ip_per_minute = 0;
    config.connections_per_ip_per_second = 0;
    config.max_connections_per_ip = 100_000;
    config.static_dir = "/nonexistent".into();
    edit(&mut config);
    config
}

pub async fn start(config: Config) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(relaycast::run(listener, config, async move {
        let _ = rx.await;
    }));
    TestServer { addr, shutdown: Some(tx), handle: Some(handle) }
}

pub async fn start_durable(dir: &Path) -> TestServer {
    start(test_config(|c| {
        c.memory = false;
        c.data_dir = dir.to_owned();
    }))
    .await
}

impl TestServer {
    /// A server running in another process.
    pub fn external(addr: SocketAddr) -> TestServer {
        TestServer { addr, shutdown: None, handle: None }
    }

    /// Shut down gracefully and wait until `run` returns.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(WAIT, handle).await.expect("shutdown in time").unwrap().unwrap();
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn metric(&self, name: &str) -> u64 {
        let text = http_get(self.addr, "/metrics").await.1;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no metric {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    }
}

/// A GET: (status, body as text).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = request(addr, "GET", path, &[], b"").await;
    (reply.status, String::from_utf8_lossy(&reply.body).into_owned())
}

/// The real `relaycast` binary, killed (as a crash) when dropped.
pub struct Binary {
    pub child: std::process::Child,
    pub server: TestServer,
    /// Everything it printed after its URL (its log), read as it comes.
    pub output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Binary {
    /// Lines of its output so far that contain `needle`.
    pub fn output_lines(&self, needle: &str) -> usize {
        self.output.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }
}

/// Start the binary on a free port with its store in `dir`, no rate limit; returns once it
/// prints its URL (it does once the stores are open and crash leftovers are cleaned).
pub fn spawn_binary(dir: &Path) -> Binary {
    spawn_binary_with(dir, &["--log", "warn"], None)
}

/// [`spawn_binary`] with more flags, and with its open-file limit set to `nofile` (soft and
/// hard, so it cannot raise it) when given.
pub fn spawn_binary_with(dir: &Path, args: &[&str], nofile: Option<u64>) -> Binary {
    use std::io::{BufRead, BufReader};
    let mut command = match nofile {
        Some(n) => {
            let mut c = std::process::Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\"")]).arg(env!("CARGO_BIN_EXE_relaycast"));
            c
        }
        None => std::process::Command::new(env!("CARGO_BIN_EXE_relaycast")),
    };
    let mut child = command
        .args(["--auth", "open", "--bind", "127.0.0.1:0", "--messages-per-second", "0"])
        .args(["--connections-per-ip-per-second", "0"])
        .args(["--joins-per-second", "0", "--rooms-per-ip-per-minute", "0", "--max-connections-per-ip", "100000"])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--static-dir")
        .arg(dir.join("no-app"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the relaycast binary starts");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // Log lines may come before the URL.
    while !line.contains("Relaycast is running") {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            panic!("the binary exited before it was ready");
        }
    }
    let url = line.trim().rsplit(' ').next().unwrap();
    let url = url.trim_start_matches("http://").trim_start_matches("https://").trim_end_matches('/');
    let addr = url.parse().unwrap_or_else(|_| panic!("an address in {line:?}"));
    // Drain the rest, so that a chatty log never blocks the server on a full pipe.
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = output.clone();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Binary { child, server: TestServer::external(addr), output }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Client {
    pub ws: Ws,
    pub peer_id: PeerId,
}

pub fn room(s: &str) -> RoomName {
    RoomName::try_from(s).unwrap()
}

pub fn chat(text: &str) -> Body {
    Body::Chat { text: ChatText::try_from(text).unwrap() }
}

pub async fn raw_connect(server: &TestServer) -> Ws {
    tokio_tungstenite::connect_async(server.ws_url()).await.unwrap().0
}

impl Client {
    /// Connect and say hello.
    pub async fn connect(server: &TestServer) -> Client {
        let mut ws = raw_connect(server).await;
        send_on(&mut ws, &ClientMsg::hello()).await;
        match recv_on(&mut ws).await {
            ServerMsg::Welcome { peer_id, .. } => Client { ws, peer_id },
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        send_on(&mut self.ws, msg).await
    }

    pub async fn recv(&mut self) -> ServerMsg {
        recv_on(&mut self.ws).await
    }

    /// Receive until `pred` matches; returns everything received, the match last.
    pub async fn recv_until(&mut self, mut pred: impl FnMut(&ServerMsg) -> bool) -> Vec<ServerMsg> {
        let mut seen = Vec::new();
        loop {
            let msg = self.recv().await;
            let done = pred(&msg);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }

    /// Join and collect everything up to the last history batch.
    pub async fn join(&mut self, r: &str, name: &str, resume: Option<ResumeFrom>) -> Vec<ServerMsg> {
        let name = DisplayName::try_from(name).unwrap();
        self.send(&ClientMsg::Join { room: room(r), name, token: None, resume }).await;
        self.recv_until(|m| matches!(m, ServerMsg::History { done: true, .. } | ServerMsg::Error { .. })).await
    }

    pub async fn publish(&mut self, r: &str, id: &str, text: &str) {
        let id = ClientMsgId::try_from(id).unwrap();
        self.send(&ClientMsg::Publish { room: room(r), id, body: chat(text) }).await;
    }

    /// Publish and wait for the ack; returns the seq.
    pub async fn publish_acked(&mut self, r: &str, id: &str, text: &str) -> u64 {
        self.publish(r, id, text).await;
        let want = id.to_owned();
        match self.recv_until(|m| matches!(m, ServerMsg::Ack { id, .. } if id.as_str() == want)).await.pop() {
            Some(ServerMsg::Ack { seq, .. }) => seq,
            other => panic!("{other:?}"),
        }
    }

    /// The next error frame's code (skipping other messages).
    pub async fn next_error(&mut self) -> ErrorCode {
        match self.recv_until(|m| matches!(m, ServerMsg::Error { .. })).await.pop() {
            Some(ServerMsg::Error { code, .. }) => code,
            _ => unreachable!(),
        }
    }
}

pub async fn send_on(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Text(encode(msg).into())).await.unwrap();
}

pub async fn recv_on(ws: &mut Ws) -> ServerMsg {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time");
        match frame {
            Some(Ok(Message::Text(text))) => return decode_server(&text).expect("server frames decode"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// Wait for the server to close the socket; returns the close code and reason.
pub async fn recv_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.expect("close in time");
        match frame {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return (1006, e.to_string()),
        }
    }
}

/// Sequence numbers and texts of the room messages among `msgs` (history and live).
/// The codes of the error frames among `msgs`.
pub fn error_codes(msgs: &[ServerMsg]) -> Vec<ErrorCode> {
    msgs.iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

pub fn seqs(msgs: &[ServerMsg]) -> Vec<u64> {
    let mut out = Vec::new();
    for m in msgs {
        match m {
            ServerMsg::History { messages, .. } => out.extend(messages.iter().map(|m| m.seq)),
            ServerMsg::Message { message, .. } => out.push(message.seq),
            _ => {}
        }
    }
    out
}

pub fn epoch_of(msgs: &[ServerMsg]) -> Epoch {
    msgs.iter()
        .find_map(|m| match m {
            ServerMsg::Joined { epoch, .. } => Some(epoch.clone()),
            _ => None,
        })
        .expect("a joined message")
}

/// An HTTP answer, body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The stable code of a JSON error body.
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("a JSON error body, got {} {:?}", self.status, self.body));
        v["code"].as_str().unwrap().to_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {} {:?}", self.status, self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection, with any body.
pub async fn request_with<B>(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: B) -> Reply
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path).header("host", "test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = tokio::time::timeout(Duration::from_secs(120), sender.send_request(req.body(body).unwrap()))
        .await
        .expect("an answer in time")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(120), body.collect()).await.unwrap().unwrap().to_bytes();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

pub async fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    request_with(addr, method, path, headers, http_body_util::Full::new(bytes::Bytes::copy_from_slice(body))).await
}

/// SHA-256 as the blob API names it.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Join `r` and return the client (still joined) and the room's grant.
pub async fn join_with_grant(server: &TestServer, r: &str) -> (Client, String) {
    let mut client = Client::connect(server).await;
    let joined = client.join(r, "uploader", None).await;
    match joined.into_iter().find(|m| matches!(m, ServerMsg::Grant { .. })) {
        Some(ServerMsg::Grant { token, .. }) => (client, token),
        other => panic!("expected a grant, got {other:?}"),
    }
}

/// A kept-alive HTTP/1.1 connection for several requests in a row.
pub struct Conn(hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>);

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
        tokio::spawn(conn);
        Conn(sender)
    }

    pub async fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        use http_body_util::BodyExt;
        self.0.ready().await.expect("the connection is still open");
        let mut req = http::Request::builder().method(method).uri(path).header("host", "test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = http_body_util::Full::new(bytes::Bytes::copy_from_slice(body));
        let response = tokio::time::timeout(WAIT, self.0.send_request(req.body(body).unwrap())).await.unwrap().unwrap();
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(WAIT, body.collect()).await.unwrap().unwrap().to_bytes();
        Reply { status: parts.status.as_u16(), headers: parts.headers, body }
    }
}

// ---- token mode ----

/// Key files for token mode: an Ed25519 pair `ed` (kid `ed-1` on the server), another pair
/// `other` the server does not know, an HS256 `secret` (kid `hs-1`), and an API key `api`.
pub struct Keys {
    pub dir: tempfile::TempDir,
}

impl Keys {
    pub fn new() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        relaycast::auth::keys::write_key_pair(&dir.path().join("ed")).unwrap();
        relaycast::auth::keys::write_key_pair(&dir.path().join("other")).unwrap();
        std::fs::write(dir.path().join("secret"), "a shared secret of more than thirty-two bytes\n").unwrap();
        std::fs::write(dir.path().join("api"), API_KEY).unwrap();
        Keys { dir }
    }
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// The API key in [`Keys`]' `api` file.
pub const API_KEY: &str = "backend-api-key-0123456789abcdef";

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A token-mode server that knows `keys` (and takes their API key).
pub async fn token_server(keys: &Keys) -> TestServer {
    start(token_config(keys, |_| {})).await
}

/// The config of [`token_server`]; `edit` changes the rest (a durable store, say).
pub fn token_config(keys: &Keys, edit: impl FnOnce(&mut Config)) -> Config {
    let (ed, secret) = (format!("ed-1={}", keys.path("ed.pub.pem")), format!("hs-1={}", keys.path("secret")));
    test_config(|c| {
        c.auth = relaycast::config::AuthMode::Token;
        c.auth_public_keys = vec![ed];
        c.auth_secret_files = vec![secret];
        c.api_key_files = vec![format!("backend={}", keys.path("api"))];
        edit(c);
    })
}

/// Hello with `token`: the welcome, or the error code and the close that follow a refusal.
pub async fn hello(server: &TestServer, token: &str) -> Result<(Ws, ServerMsg), (ErrorCode, u16)> {
    let mut ws = raw_connect(server).await;
    let token = AccessToken::try_from(token).unwrap();
    send_on(&mut ws, &ClientMsg::Hello { protocol: PROTOCOL_VERSION, token: Some(token), client: None }).await;
    match recv_on(&mut ws).await {
        welcome @ ServerMsg::Welcome { .. } => Ok((ws, welcome)),
        ServerMsg::Error { code, .. } => Err((code, recv_close(&mut ws).await.0)),
        other => panic!("expected welcome or error, got {other:?}"),
    }
}

/// Join `r` and read up to the end of its history (or an error).
pub async fn join_on(ws: &mut Ws, r: &str) -> Vec<ServerMsg> {
    let name = DisplayName::try_from("chosen by the client").unwrap();
    send_on(ws, &ClientMsg::Join { room: room(r), name, token: None, resume: None }).await;
    let mut got = vec![];
    loop {
        let msg = recv_on(ws).await;
        let done = matches!(msg, ServerMsg::History { done: true, .. } | ServerMsg::Error { .. });
        got.push(msg);
        if done {
            return got;
        }
    }
}

/// A token from `relaycast token`'s code for `sub` with `rights` in `r`.
pub fn mint_token(keys: &Keys, sub: &str, r: &str, rights: &str) -> String {
    mint_token_issued(keys, sub, r, rights, now_secs())
}

/// [`mint_token`], issued at `iat` (seconds).
pub fn mint_token_issued(keys: &Keys, sub: &str, r: &str, rights: &str, iat: u64) -> String {
    let args = relaycast::auth::mint::TokenArgs {
        key: format!("ed-1={}", keys.path("ed.pem")),
        hs256: false,
        sub: sub.into(),
        name: None,
        rooms: vec![format!("{r}={rights}")],
        ttl: std::time::Duration::from_secs(600),
        audience: "relaycast".into(),
        issuer: None,
    };
    relaycast::auth::mint::mint(&args, iat).unwrap()
}

/// Join with a token made by `relaycast token`'s code; the grant and stream key it got.
pub async fn member(
    server: &TestServer,
    keys: &Keys,
    sub: &str,
    r: &str,
    rights: &str,
) -> (Ws, String, Option<String>) {
    let (mut ws, _) = hello(server, &mint_token(keys, sub, r, rights)).await.unwrap();
    let joined = join_on(&mut ws, r).await;
    let grant = joined.iter().find_map(|m| match m {
        ServerMsg::Grant { token, .. } => Some(token.clone()),
        _ => None,
    });
    let key = joined.iter().find_map(|m| match m {
        ServerMsg::StreamKey { key, .. } => Some(key.clone()),
        _ => None,
    });
    (ws, grant.expect("a grant"), key)
}

// ---- Redis ----

/// A real `redis-server` (Debian's; `scripts/dev setup` installs it) on a free loopback port,
/// its data in a temporary directory, with the append-only file fsynced on every write (so an
/// acked write is durable); killed when dropped.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, dir, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Start (again) on the same port and directory: what it had in its AOF comes back.
    pub fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/dev setup installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `kill -9`: what was not in the AOF is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            // Loading its AOF, Redis takes connections but refuses commands for a moment.
            let ready = async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                let _: Option<String> = redis::cmd("GET").arg("rc:test:ready").query_async(&mut conn).await?;
                Ok::<_, redis::RedisError>(conn)
            };
            match ready.await {
                Ok(conn) => return conn,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(e) => panic!("cannot reach redis: {e}"),
            }
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- Media peers (str0m clients on their own UDP sockets) ----

use relaycast::media::client::{ClientEvent, MediaClient, Synthetic, SyntheticStats};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use str0m::media::MediaKind;

/// Publishes synthetic video (30 fps) and audio (50 fps) until `stop`; answers keyframe
/// requests with a keyframe. Returns how many keyframe requests it got.
pub fn spawn_publisher(mut client: MediaClient, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, MediaClient)> {
    tokio::spawn(async move {
        let spec = Synthetic {
            video_frame_bytes: 1200,
            audio_packet_bytes: 80,
            keyframe_every: None,
            width: 320,
            height: 240,
        };
        let stats = SyntheticStats::default();
        client.publish_synthetic(spec, &stop, &stats).await.expect("publishing");
        (stats.keyframe_requests.load(Ordering::Relaxed), client)
    })
}

#[derive(Debug, Default)]
pub struct Seen {
    pub video: AtomicU64,
    pub audio: AtomicU64,
    /// Whether the first video frame was a keyframe (1) or not (2).
    pub first_video_keyframe: AtomicU64,
    pub first_video_ms: AtomicU64,
}

pub fn spawn_viewer(
    mut client: MediaClient,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
) -> tokio::task::JoinHandle<MediaClient> {
    tokio::spawn(async move {
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let until = Instant::now() + Duration::from_millis(20);
            let result = client
                .pump(until, |e| {
                    if let ClientEvent::Media { kind, keyframe, .. } = e {
                        if kind == MediaKind::Video {
                            if seen.video.fetch_add(1, Ordering::Relaxed) == 0 {
                                seen.first_video_keyframe.store(if keyframe { 1 } else { 2 }, Ordering::Relaxed);
                                seen.first_video_ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                            }
                        } else {
                            seen.audio.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .await;
            if result.is_err() {
                break;
            }
        }
        client
    })
}

/// An offer from a str0m peer with `kinds`, sending or receiving.
pub fn offer(publish: bool, kinds: &[MediaKind]) -> String {
    let mut rtc = str0m::Rtc::builder().build(Instant::now());
    rtc.add_local_candidate(str0m::Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap());
    let dir = if publish { str0m::media::Direction::SendOnly } else { str0m::media::Direction::RecvOnly };
    let mut change = rtc.sdp_api();
    for kind in kinds {
        change.add_media(*kind, dir, None, None, None);
    }
    change.apply().unwrap().0.to_sdp_string()
}

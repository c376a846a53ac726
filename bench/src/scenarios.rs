//! The load scenarios. Each client is a real WebSocket connection speaking the Relaycast
//! protocol, or the protocol of the relay it is compared with ([`Speak`]). All clients live in
//! this one process, so send and receive times share one clock.

use crate::stats::{ms, percentile, CpuWatch};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use relaycast_shared::*;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Tx = SplitSink<Ws, Message>;
type Rx = SplitStream<Ws>;

static START: OnceLock<Instant> = OnceLock::new();

fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// Connect from the loopback address `source` (past one address's ephemeral ports), with a
/// small read buffer (an idle client should not cost the generator 128 KiB); `None`: as the
/// system chooses, with tungstenite's defaults.
async fn connect_from(url: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<Ws> {
    let Some(source) = source else {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
        return Ok(ws);
    };
    let uri: http::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow::anyhow!("no host in {url}"))?;
    let server = std::net::SocketAddr::new(host.parse()?, uri.port_u16().unwrap_or(80));
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(source, 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.read_buffer_size = 1024;
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(stream), Some(config)).await?;
    Ok(ws)
}

async fn send(tx: &mut Tx, msg: &ClientMsg) -> anyhow::Result<()> {
    tx.send(Message::Text(encode(msg).into())).await?;
    Ok(())
}

async fn recv(rx: &mut Rx) -> anyhow::Result<ServerMsg> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(decode_server(&t)?),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("connection closed"),
        }
    }
}

fn room(s: &str) -> RoomName {
    RoomName::try_from(s).expect("bench room names are valid")
}

/// Connect and say hello; returns the halves after the welcome. A server of an older protocol
/// is greeted in its own (`bench/compare.sh` measures two builds; the scenarios use only what
/// both speak).
async fn greet(url: &str) -> anyhow::Result<(Tx, Rx)> {
    greet_from(url, None).await
}

async fn greet_from(url: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<(Tx, Rx)> {
    let mut protocol = PROTOCOL_VERSION;
    loop {
        let (mut tx, mut rx) = connect_from(url, source).await?.split();
        send(&mut tx, &ClientMsg::Hello { protocol, token: None, client: None }).await?;
        match recv(&mut rx).await? {
            ServerMsg::Welcome { .. } => return Ok((tx, rx)),
            ServerMsg::Error { code: ErrorCode::UnsupportedProtocol, message, .. } if protocol == PROTOCOL_VERSION => {
                protocol = server_protocol(&message).ok_or_else(|| anyhow::anyhow!("no welcome: {message}"))?;
            }
            other => anyhow::bail!("no welcome: {other:?}"),
        }
    }
}

/// The version in "this server speaks protocol N; ...".
fn server_protocol(message: &str) -> Option<u32> {
    let rest = message.split("speaks protocol ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Connect, hello, join `r`; returns the halves after the history has arrived.
async fn join(url: &str, r: &str, name: &str) -> anyhow::Result<(Tx, Rx)> {
    join_from(url, r, name, None).await
}

async fn join_from(url: &str, r: &str, name: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<(Tx, Rx)> {
    let (mut tx, mut rx) = greet_from(url, source).await?;
    let name = DisplayName::try_from(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    send(&mut tx, &ClientMsg::Join { room: room(r), name, token: None, resume: None }).await?;
    loop {
        match recv(&mut rx).await? {
            ServerMsg::History { done: true, .. } => return Ok((tx, rx)),
            ServerMsg::Error { code, message, .. } => {
                anyhow::bail!("join refused: {code}: {message}")
            }
            _ => {}
        }
    }
}

/// Connect, hello, join `r`; returns the connection (keep it: the grant lasts while it does
/// not matter, but membership is what a grant stands for) and the room's grant.
pub(crate) async fn join_for_grant(url: &str, r: &str) -> anyhow::Result<((Tx, Rx), String)> {
    let (mut tx, mut rx) = greet(url).await?;
    let name = DisplayName::try_from("bench").map_err(|e| anyhow::anyhow!("{e}"))?;
    send(&mut tx, &ClientMsg::Join { room: room(r), name, token: None, resume: None }).await?;
    loop {
        match recv(&mut rx).await? {
            ServerMsg::Grant { token, .. } => return Ok(((tx, rx), token)),
            ServerMsg::Error { code, message, .. } => anyhow::bail!("join refused: {code}: {message}"),
            _ => {}
        }
    }
}

/// `~<send time µs>~<index>~` then padding to `size` bytes: what subscribers parse.
fn payload(i: u64, size: usize) -> String {
    let mut s = format!("~{}~{}~", now_us(), i);
    while s.len() < size {
        s.push('.');
    }
    s
}

/// The send time in a received frame (JSON or bare), if it carries a payload.
fn sent_at(frame: &str) -> Option<u64> {
    let start = frame.find('~')? + 1;
    let end = start + frame[start..].find('~')?;
    frame[start..end].parse().ok()
}

/// The protocol the clients speak, which is also the kind of server they are pointed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Speak {
    /// Relaycast's protocol: hello, join, publish; acks and messages as JSON.
    Relaycast,
    /// A bare relay's (`relaycast-bench reference`, `bench/node/ws-relay.js`): text frames, the
    /// room is the URL's path, the sender gets `~` as its ack.
    Bare,
    /// socket.io's (`bench/node/socketio-relay.js`): Engine.IO v4 framing over a WebSocket, the
    /// room in the `room` query parameter, `m` events sent with an ack id.
    SocketIo,
}

impl Speak {
    /// The result's `target` when no label is given.
    fn target(self) -> &'static str {
        match self {
            Speak::Relaycast => "relaycast",
            Speak::Bare => "reference",
            Speak::SocketIo => "socket.io",
        }
    }

    /// Connect as `name` into room `r` of the server at `url` (from loopback address `source`,
    /// if given); returns the halves once the server counts the client as a member.
    async fn open(self, url: &str, r: &str, name: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<(Tx, Rx)> {
        let base = url.trim_end_matches('/');
        match self {
            Speak::Relaycast => join_from(url, r, name, source).await,
            Speak::Bare => Ok(connect_from(&format!("{base}/{r}"), source).await?.split()),
            Speak::SocketIo => {
                let url = format!("{base}/socket.io/?EIO=4&transport=websocket&room={r}");
                let (mut tx, mut rx) = connect_from(&url, source).await?.split();
                // Engine.IO's open packet, then the default namespace's connect and its answer.
                let open = next_text(&mut rx).await?;
                anyhow::ensure!(open.starts_with('0'), "no Engine.IO open packet: {open}");
                tx.send(Message::Text("40".into())).await?;
                let connected = next_text(&mut rx).await?;
                anyhow::ensure!(connected.starts_with("40"), "socket.io refused the connection: {connected}");
                Ok((tx, rx))
            }
        }
    }

    /// Message number `i` of `text` into room `r`, as this protocol sends it.
    fn frame(self, r: &RoomName, i: u64, text: String) -> Message {
        match self {
            Speak::Relaycast => Message::Text(encode(&publish(r, i, text)).into()),
            Speak::Bare => Message::Text(text.into()),
            Speak::SocketIo => {
                let text = serde_json::Value::String(text);
                Message::Text(format!("42{i}[\"m\",{text}]").into())
            }
        }
    }

    /// Whether `frame` acknowledges one of this client's messages.
    fn is_ack(self, frame: &str) -> bool {
        match self {
            Speak::Relaycast => frame.contains("\"ack\""),
            Speak::Bare => frame == "~",
            Speak::SocketIo => frame.starts_with("43"),
        }
    }

    /// Whether `frame` is another member's message, told by its type alone (Relaycast's is the
    /// first field of its JSON): the generator shares the server's cores, so it does alike
    /// little per frame for every protocol rather than decode one protocol in full.
    fn is_message(self, frame: &str) -> bool {
        match self {
            Speak::Relaycast => frame.starts_with(r#"{"type":"message""#),
            Speak::Bare => frame != "~",
            Speak::SocketIo => frame.starts_with("42"),
        }
    }
}

/// The next text frame, within 30 s.
async fn next_text(rx: &mut Rx) -> anyhow::Result<tokio_tungstenite::tungstenite::Utf8Bytes> {
    loop {
        match tokio::time::timeout(Duration::from_secs(30), rx.next()).await? {
            Some(Ok(Message::Text(t))) => return Ok(t),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => anyhow::bail!("connection closed"),
        }
    }
}

fn publish(r: &RoomName, i: u64, text: String) -> ClientMsg {
    let id = ClientMsgId::try_from(format!("m{i}")).expect("valid id");
    let text = ChatText::try_from(text).expect("valid text");
    ClientMsg::Publish { room: r.clone(), id, body: Body::Chat { text } }
}

#[derive(Debug, clap::Args)]
pub struct FanoutArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// The protocol to speak (the kind of server at `--url`).
    #[arg(long, value_enum, default_value_t = Speak::Relaycast)]
    speak: Speak,
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    #[arg(long, default_value_t = 20_000)]
    messages: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Messages per second; unset: as fast as the server takes them.
    #[arg(long)]
    rate: Option<u64>,
    /// Messages in flight (sent, not yet acked or echoed) at most.
    #[arg(long, default_value_t = 1000)]
    window: u64,
    /// Where subscribers connect (repeat: spread round-robin, as over several cluster nodes);
    /// default: `--url`, where the publisher connects.
    #[arg(long = "sub-url")]
    sub_urls: Vec<String>,
    /// A name for the setup measured, in the result's `target` (default: what `--speak` names).
    #[arg(long)]
    label: Option<String>,
    /// The server's process id: its CPU (and this generator's) over the run is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The process id of the server's external store (Redis): its CPU is reported too.
    #[arg(long)]
    store_pid: Option<u32>,
}

pub async fn fanout(a: FanoutArgs) -> anyhow::Result<()> {
    let room_name = format!("fanout-{}", std::process::id());
    let r = room(&room_name);
    let mut subscribers = Vec::new();
    let sub_urls = if a.sub_urls.is_empty() { vec![a.url.clone()] } else { a.sub_urls.clone() };
    for i in 0..a.subscribers {
        let url = &sub_urls[i % sub_urls.len()];
        subscribers.push(a.speak.open(url, &room_name, &format!("sub{i}"), None).await?.1);
    }
    let (mut tx, mut prx) = a.speak.open(&a.url, &room_name, "publisher", None).await?;

    // Flow control: the publisher's acks.
    let acked = Arc::new(AtomicU64::new(0));
    let ack_notify = Arc::new(Notify::new());
    let ack_task = {
        let (acked, notify, n, speak) = (acked.clone(), ack_notify.clone(), a.messages, a.speak);
        tokio::spawn(async move {
            // The server's pings (every 15 s by default) pass by; a run that outlasts one
            // must not stop counting acks at it.
            while let Some(Ok(msg)) = prx.next().await {
                let Message::Text(t) = msg else { continue };
                if speak.is_ack(&t) {
                    if acked.fetch_add(1, Ordering::Relaxed) + 1 >= n {
                        notify.notify_waiters();
                        notify.notify_one();
                        break;
                    }
                    notify.notify_one();
                }
            }
        })
    };

    // Every join told every member: let that presence traffic drain before the clock starts
    // (a bare relay has none, and it is not what fan-out measures).
    crate::stats::settle(a.server_pid, Duration::from_secs(20)).await;

    let done = Arc::new(Notify::new());
    let n = a.messages;
    let tasks: Vec<_> = subscribers
        .into_iter()
        .map(|mut rx| {
            let done = done.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(n as usize);
                let mut last = 0;
                loop {
                    let next = tokio::select! {
                        f = rx.next() => f,
                        _ = done.notified() => break,
                    };
                    match next {
                        Some(Ok(Message::Text(t))) => {
                            if let Some(at) = sent_at(&t) {
                                last = now_us();
                                latencies.push(last.saturating_sub(at));
                                if latencies.len() as u64 == n {
                                    break;
                                }
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
                (latencies, last)
            })
        })
        .collect();

    let cpu = CpuWatch::start(a.server_pid, a.store_pid);
    let start = now_us();
    let pace = a.rate.map(|r| Duration::from_secs_f64(1.0 / r as f64));
    let t0 = tokio::time::Instant::now();
    for i in 0..n {
        while i - acked.load(Ordering::Relaxed).min(i) >= a.window {
            ack_notify.notified().await;
        }
        if let Some(pace) = pace {
            tokio::time::sleep_until(t0 + pace * i as u32).await;
        }
        tx.feed(a.speak.frame(&r, i, payload(i, a.size))).await?;
        if pace.is_some() || i % 64 == 63 {
            tx.flush().await?;
        }
    }
    tx.flush().await?;
    // Wait for the subscribers, with a bound: what has not arrived by then is lost.
    let all = futures_util::future::join_all(tasks);
    let results = match tokio::time::timeout(Duration::from_secs(30), all).await {
        Ok(r) => r,
        Err(_) => {
            done.notify_waiters();
            anyhow::bail!("subscribers did not finish within 30 s");
        }
    };
    ack_task.abort();
    let mut latencies = Vec::with_capacity((n as usize) * a.subscribers);
    let mut end = start;
    for r in results {
        let (l, last) = r?;
        latencies.extend(l);
        end = end.max(last);
    }
    let delivered = latencies.len() as u64;
    let expected = n * a.subscribers as u64;
    let seconds = (end - start) as f64 / 1e6;
    let line = json!({
        "scenario": "fanout",
        "target": a.label.as_deref().unwrap_or(a.speak.target()),
        "subscribers": a.subscribers,
        "messages": n,
        "payload_bytes": a.size,
        "paced_rate": a.rate,
        "deliveries": delivered,
        "lost": expected - delivered,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "deliveries_per_sec": (delivered as f64 / seconds).round(),
        "cpu": cpu.report(delivered),
        "latency_ms": {
            "p50": ms(percentile(&mut latencies, 50.0)),
            "p99": ms(percentile(&mut latencies, 99.0)),
            "max": ms(percentile(&mut latencies, 100.0)),
        },
    });
    println!("{line}");
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PairsArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value_t = 500)]
    pairs: usize,
    #[arg(long, default_value_t = 200)]
    rounds: u64,
    /// Where the answering side of each pair connects (default: `--url`; another cluster
    /// node makes every round trip cross nodes).
    #[arg(long)]
    pong_url: Option<String>,
    /// A name for the setup measured, in the result's `target`.
    #[arg(long)]
    label: Option<String>,
    /// The protocol to speak (the kind of server at `--url`).
    #[arg(long, value_enum, default_value_t = Speak::Relaycast)]
    speak: Speak,
    /// The server's process id: its CPU (and this generator's) over the run is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The process id of the server's external store (Redis): its CPU is reported too.
    #[arg(long)]
    store_pid: Option<u32>,
}

/// One side of a pair: its socket, the protocol it speaks and its room.
struct Side {
    tx: Tx,
    rx: Rx,
    speak: Speak,
    room: RoomName,
}

impl Side {
    async fn open(url: &str, r: &str, name: &str, speak: Speak) -> anyhow::Result<Side> {
        let (tx, rx) = speak.open(url, r, name, None).await?;
        Ok(Side { tx, rx, speak, room: room(r) })
    }

    async fn say(&mut self, i: u64, text: &str) -> anyhow::Result<()> {
        Ok(self.tx.send(self.speak.frame(&self.room, i, text.into())).await?)
    }

    /// Wait for the other side's next message (acks and presence pass by).
    async fn hear(&mut self) -> anyhow::Result<()> {
        while !self.speak.is_message(&next_text(&mut self.rx).await?) {}
        Ok(())
    }
}

pub async fn pairs(a: PairsArgs) -> anyhow::Result<()> {
    let mut sides = Vec::new();
    for p in 0..a.pairs {
        let r = format!("pair-{}-{p}", std::process::id());
        let ping = Side::open(&a.url, &r, "ping", a.speak).await?;
        let pong = Side::open(a.pong_url.as_deref().unwrap_or(&a.url), &r, "pong", a.speak).await?;
        sides.push((ping, pong));
    }
    let cpu = CpuWatch::start(a.server_pid, a.store_pid);
    let start = now_us();
    let rounds = a.rounds;
    let tasks: Vec<_> = sides
        .into_iter()
        .map(|(mut ping, mut pong)| {
            // The answering side: every message from the other is answered once.
            let answer = tokio::spawn(async move {
                for i in 0..rounds {
                    pong.hear().await?;
                    pong.say(i, "pong").await?;
                }
                anyhow::Ok(())
            });
            tokio::spawn(async move {
                let mut rtts = Vec::with_capacity(rounds as usize);
                for i in 0..rounds {
                    let t = now_us();
                    ping.say(i, "ping").await?;
                    ping.hear().await?;
                    rtts.push(now_us() - t);
                }
                answer.await??;
                anyhow::Ok(rtts)
            })
        })
        .collect();
    let mut rtts = Vec::new();
    for t in tasks {
        rtts.extend(t.await??);
    }
    let seconds = (now_us() - start) as f64 / 1e6;
    println!(
        "{}",
        json!({
            "scenario": "pairs",
            "target": a.label.as_deref().unwrap_or(a.speak.target()),
            "pairs": a.pairs,
            "rounds": rounds,
            "round_trips": rtts.len(),
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "round_trips_per_sec": (rtts.len() as f64 / seconds).round(),
            // Two deliveries per round trip (ping, pong), acks aside.
            "cpu": cpu.report(2 * rtts.len() as u64),
            "rtt_ms": { "p50": ms(percentile(&mut rtts, 50.0)), "p99": ms(percentile(&mut rtts, 99.0)) },
        })
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 50)]
    per_room: usize,
    /// The server's process id, to read its resident memory.
    #[arg(long)]
    server_pid: u32,
    /// Connect from this many loopback addresses (127.0.0.1, .2, ...), past one address's
    /// ephemeral ports; 0: as the system chooses.
    #[arg(long, default_value_t = 0)]
    sources: u8,
    /// The protocol to speak (the kind of server at `--url`).
    #[arg(long, value_enum, default_value_t = Speak::Relaycast)]
    speak: Speak,
    /// A name for the setup measured, in the result's `target` (default: what `--speak` names).
    #[arg(long)]
    label: Option<String>,
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))
}

pub async fn idle(a: IdleArgs) -> anyhow::Result<()> {
    let before = rss_kib(a.server_pid)?;
    let started = Instant::now();
    let mut held = Vec::with_capacity(a.connections);
    let mut joined = 0;
    while joined < a.connections {
        let chunk = (a.connections - joined).min(200);
        let batch = (joined..joined + chunk).map(|i| {
            let url = a.url.clone();
            let r = format!("idle-{}-{}", std::process::id(), i / a.per_room.max(1));
            let source =
                (a.sources > 0).then(|| std::net::IpAddr::from([127, 0, 0, 1 + (i % a.sources as usize) as u8]));
            async move { a.speak.open(&url, &r, &format!("idle{i}"), source).await }
        });
        for c in futures_util::future::join_all(batch).await {
            held.push(c?);
        }
        joined += chunk;
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let presence traffic drain, then read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(a.server_pid)?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / a.connections as f64;
    println!(
        "{}",
        json!({
            "scenario": "idle",
            "target": a.label.as_deref().unwrap_or(a.speak.target()),
            "connections": a.connections,
            "server_rss_before_kib": before,
            "server_rss_after_kib": after,
            "bytes_per_connection": per.round(),
            "kib_per_connection": (per / 1024.0 * 100.0).round() / 100.0,
            "seconds_to_connect_and_join": (connect_seconds * 100.0).round() / 100.0,
            "sources": a.sources,
        })
    );
    drop(held);
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Joins measured (the median is reported).
    #[arg(long, default_value_t = 5)]
    joins: usize,
}

pub async fn history(a: HistoryArgs) -> anyhow::Result<()> {
    let room_name = format!("history-{}", std::process::id());
    let r = room(&room_name);
    let (mut tx, mut rx) = join(&a.url, &room_name, "seeder").await?;
    let mut acked = 0;
    for i in 0..a.messages {
        tx.feed(Message::Text(encode(&publish(&r, i, payload(i, a.size))).into())).await?;
        if i % 500 == 499 {
            tx.flush().await?;
            // Keep at most ~1000 in flight.
            while acked + 1000 < i {
                if let ServerMsg::Ack { .. } = recv(&mut rx).await? {
                    acked += 1;
                }
            }
        }
    }
    tx.flush().await?;
    while acked < a.messages {
        if let ServerMsg::Ack { .. } = recv(&mut rx).await? {
            acked += 1;
        }
    }
    let mut times = Vec::new();
    for j in 0..a.joins {
        let (mut tx, mut rx) = greet(&a.url).await?;
        let name = DisplayName::try_from(format!("joiner{j}")).map_err(|e| anyhow::anyhow!("{e}"))?;
        let t = now_us();
        send(&mut tx, &ClientMsg::Join { room: r.clone(), name, token: None, resume: None }).await?;
        let mut got = 0u64;
        loop {
            if let ServerMsg::History { messages, done, .. } = recv(&mut rx).await? {
                got += messages.len() as u64;
                if done {
                    break;
                }
            }
        }
        times.push(now_us() - t);
        anyhow::ensure!(got == a.messages, "history held {got} of {} messages", a.messages);
    }
    println!(
        "{}",
        json!({
            "scenario": "history",
            "messages": a.messages,
            "payload_bytes": a.size,
            "joins": a.joins,
            "ms_to_full_history": { "p50": ms(percentile(&mut times, 50.0)), "max": ms(percentile(&mut times, 100.0)) },
        })
    );
    Ok(())
}

//! What one client cannot do to the others: keep dropped sockets open, hold connections with
//! silence or a request head sent a byte at a time, or run the server out of descriptors.
//! The real binary where descriptors and sockets are counted (its own, not the test's).

mod common;

use common::*;
use relaycast_shared::*;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Sockets among a process's open descriptors.
fn sockets_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// TCP connections in state ESTABLISHED whose local port is `port` (the server's side).
fn established_on(port: u16) -> usize {
    let mut n = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port =
                fields.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && fields.get(3) == Some(&"01") {
                n += 1;
            }
        }
    }
    n
}

async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP connection from `from` (any 127.x address works on loopback).
async fn tcp_from(from: IpAddr, to: SocketAddr, recv_buffer: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        // A small, fixed receive buffer: a reader that stops reading stalls the server fast.
        socket.set_recv_buffer_size(size)?;
    }
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(to).await
}

/// A WebSocket client that joins `r` and then never reads again.
async fn stalled_member(server: &TestServer, r: &str, name: &str) -> Ws {
    let tcp = tcp_from([127, 0, 0, 1].into(), server.addr, Some(4096)).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(server.ws_url(), tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await.unwrap();
    send_on(&mut ws, &ClientMsg::hello()).await;
    let name = DisplayName::try_from(name).unwrap();
    send_on(&mut ws, &ClientMsg::Join { room: room(r), name, token: None, resume: None }).await;
    loop {
        if let ServerMsg::History { done: true, .. } = recv_on(&mut ws).await {
            return ws;
        }
    }
}

/// Whether the server ends `tcp` (EOF or reset) within `within`; bytes it sends meanwhile
/// are read and dropped.
async fn closed_by_server(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn connections_the_server_drops_are_closed_for_real_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn_binary_with(dir.path(), &["--memory", "--log", "info", "--queue-bytes", "131072"], None);
    let (pid, port) = (bin.child.id(), bin.server.addr.port());
    let mut publisher = Client::connect(&bin.server).await;
    publisher.join("r", "pub", None).await;
    let baseline = sockets_of(pid);
    const STALLED: usize = 60;
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        stalled.push(stalled_member(&bin.server, "r", &format!("s{i}")).await);
    }
    assert_eq!(sockets_of(pid), baseline + STALLED);
    // Publish until every stalled member is judged too slow (bounded).
    let big = "x".repeat(8000);
    let mut sent = 0;
    while bin.server.metric("relaycast_dropped_slow_clients_total").await < STALLED as u64 {
        assert!(sent < 5000, "the stalled members were not dropped");
        for _ in 0..50 {
            sent += 1;
            publisher.publish("r", &format!("m{sent}"), &big).await;
        }
        publisher.recv_until(|m| matches!(m, ServerMsg::Ack { seq, .. } if *seq == sent)).await;
    }
    // Their sockets, tasks and queues are gone within the write timeout's close grace, while
    // the stalled clients still hold their ends open and read nothing.
    eventually("the dropped sockets are closed", Duration::from_secs(10), || sockets_of(pid) <= baseline).await;
    eventually("nothing dropped is still established", Duration::from_secs(5), || established_on(port) <= 2).await;
    assert_eq!(publisher.publish_acked("r", "after", "still here").await, sent + 1);
    assert_eq!(bin.server.metric("relaycast_connections").await, 1);
    assert_eq!(bin.output_lines("dropping a connection that reads too slowly"), STALLED, "each drop is logged once");
    drop(stalled);
}

#[tokio::test]
async fn silence_and_request_heads_sent_a_byte_at_a_time_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn_binary_with(dir.path(), &["--memory", "--header-timeout", "1s", "--hello-timeout", "1s"], None);
    let addr = bin.server.addr;
    let local: IpAddr = [127, 0, 0, 1].into();
    let started = Instant::now();
    // 1. A connection that sends nothing.
    let mut silent = tcp_from(local, addr, None).await.unwrap();
    // 2. A request head that trickles in and never ends (hyper's path).
    let mut trickle = tcp_from(local, addr, None).await.unwrap();
    // 3. The same on the sendfile path: the request line of a blob download, then a trickle.
    let mut blob_trickle = tcp_from(local, addr, None).await.unwrap();
    blob_trickle.write_all(format!("GET /api/rooms/r/blobs/{} HTTP/1.1\r\n", "a".repeat(64)).as_bytes()).await.unwrap();
    // 4. A kept-alive connection, idle after one answer.
    let mut kept = tcp_from(local, addr, None).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 256];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
    // 5. A WebSocket that never says hello.
    let mut mute = raw_connect(&bin.server).await;

    let dribble = tokio::spawn(async move {
        for byte in b"GET /healthz HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter().cycle().take(40) {
            if trickle.write_all(&[*byte]).await.is_err() || blob_trickle.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (trickle, blob_trickle)
    });
    assert!(closed_by_server(&mut silent, Duration::from_secs(5)).await, "silent connection");
    assert!(closed_by_server(&mut kept, Duration::from_secs(5)).await, "idle keep-alive connection");
    assert_eq!(recv_close(&mut mute).await, (1008, "hello_timeout".to_owned()));
    let (mut trickle, mut blob_trickle) = dribble.await.unwrap();
    assert!(closed_by_server(&mut trickle, Duration::from_secs(1)).await, "trickled head");
    assert!(closed_by_server(&mut blob_trickle, Duration::from_secs(1)).await, "trickled blob download head");
    // Everything was cut off at about the timeouts, not after the trickle ran out (4 s).
    assert!(started.elapsed() < Duration::from_secs(4), "took {:?}", started.elapsed());
    assert_eq!(bin.server.metric("relaycast_connections").await, 0);
    assert_eq!(bin.server.metric("relaycast_hello_timeouts_total").await, 1);
    // Soon only the metrics request itself is open (the server sees earlier ones close).
    let deadline = Instant::now() + Duration::from_secs(3);
    while bin.server.metric("relaycast_tcp_connections").await != 1 {
        assert!(Instant::now() < deadline, "connections were left open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_server_never_runs_out_of_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    // 512 open files (soft and hard): the server keeps 7/8 less 64 for connections (384).
    let bin = spawn_binary_with(dir.path(), &["--memory"], Some(512));
    let mut member = Client::connect(&bin.server).await;
    member.join("r", "member", None).await;
    // 600 idle connections from four addresses (150 each, under the per-address limit).
    let mut opened = Vec::new();
    for i in 0..600u32 {
        let from: IpAddr = [127, 0, 0, 10 + (i % 4) as u8].into();
        opened.push(tcp_from(from, bin.server.addr, None).await.unwrap());
    }
    // A refused connection is answered and closed; an admitted one waits for a request.
    let answers = futures_util::future::join_all(opened.into_iter().map(|mut tcp| async move {
        let mut buf = vec![0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
            Ok(Ok(n)) => Err(String::from_utf8_lossy(&buf[..n]).into_owned()),
            // Reset: refused without a word.
            Ok(Err(_)) => Err(String::new()),
            Err(_) => Ok(tcp),
        }
    }))
    .await;
    let (idle, refused): (Vec<_>, Vec<_>) = answers.into_iter().partition(Result::is_ok);
    let idle: Vec<TcpStream> = idle.into_iter().filter_map(Result::ok).collect();
    let refused: Vec<String> = refused.into_iter().filter_map(Result::err).filter(|a| !a.is_empty()).collect();
    assert_eq!(idle.len(), 383, "384 connections: the member's and 383 idle ones");
    assert_eq!(refused.len(), 217, "every refused connection is told why");
    for answer in &refused {
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains(r#""code":"too_many_connections""#), "{answer}");
    }
    // The connected member is served as before.
    assert_eq!(member.publish_acked("r", "m1", "still served").await, 1);
    // Once the idle ones go, new connections are taken again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http_get(bin.server.addr, "/healthz").await.0, 200);
    assert_eq!(bin.server.metric("relaycast_connections_refused_total").await, 217);
}

#[tokio::test]
async fn ten_thousand_idle_sockets_leave_health_checks_and_members_working() {
    // The test holds its ends of the sockets too: take what the hard limit allows.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let target = 10_000usize.min((hard as usize).saturating_sub(1_000));
    assert!(target >= 5_000, "the open-file hard limit ({hard}) is too low for this test");
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn_binary_with(
        dir.path(),
        &["--memory", "--max-connections-per-ip", "1000", "--header-timeout", "120s"],
        None,
    );
    let started = Instant::now();
    let mut idle = Vec::with_capacity(target);
    for i in 0..target {
        let from: IpAddr = [127, 0, 1, 1 + (i / 1000) as u8].into();
        idle.push(tcp_from(from, bin.server.addr, None).await.unwrap());
    }
    println!("{} idle connections opened in {:?}", idle.len(), started.elapsed());
    // The member comes after them: on a loaded machine opening them can outlast its own idle
    // timeout, which is not what this test is about.
    let mut member = Client::connect(&bin.server).await;
    member.join("r", "member", None).await;
    let (status, body) = http_get(bin.server.addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    assert_eq!(member.publish_acked("r", "m1", "hello over ten thousand idle sockets").await, 1);
    assert!(sockets_of(bin.child.id()) > target, "the server holds them all");
    drop(idle);
}

#[tokio::test]
async fn per_address_connection_limits_answer_with_a_reason() {
    let server = start(test_config(|c| {
        c.max_connections_per_ip = 3;
        c.connections_per_ip_per_second = 1;
        c.connection_burst_per_ip = 5;
    }))
    .await;
    let local: IpAddr = [127, 0, 0, 1].into();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tcp_from(local, server.addr, None).await.unwrap());
    }
    let mut fourth = tcp_from(local, server.addr, None).await.unwrap();
    let mut answer = String::new();
    fourth.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("too_many_connections_from_address"), "{answer}");
    // Another address is not affected.
    let other = tcp_from([127, 0, 0, 7].into(), server.addr, None).await.unwrap();
    drop(open);
    drop(other);
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Slots are back, but the address may open only five connections in a moment.
    let _fourth = tcp_from(local, server.addr, None).await.unwrap();
    let _fifth = tcp_from(local, server.addr, None).await.unwrap();
    let mut sixth = tcp_from(local, server.addr, None).await.unwrap();
    let mut answer = String::new();
    sixth.read_to_string(&mut answer).await.unwrap();
    assert!(answer.contains("connection_rate_limited"), "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn websocket_upgrades_from_other_origins_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = start(test_config(|c| c.allowed_origins = vec!["https://app.example.org".into()])).await;
    let upgrade = |origin: Option<String>| {
        let url = server.ws_url();
        async move {
            let mut request = url.into_client_request().unwrap();
            if let Some(origin) = origin {
                request.headers_mut().insert("origin", origin.parse().unwrap());
            }
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
                Err(other) => panic!("{other}"),
            }
        }
    };
    assert_eq!(upgrade(None).await, 101, "programs send no Origin");
    assert_eq!(upgrade(Some("https://app.example.org".into())).await, 101);
    assert_eq!(upgrade(Some("https://evil.example".into())).await, 403);
    assert_eq!(upgrade(Some("http://localhost:8081".into())).await, 403, "loopback only when no list is given");
    assert_eq!(upgrade(Some(format!("http://{}", server.addr))).await, 101, "the server's own origin");
    server.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_count_the_forwarded_client() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = start(test_config(|c| {
        c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.max_connections_per_ip = 2;
        c.rooms_per_ip_per_minute = 2;
    }))
    .await;
    // The proxy's connections are many clients': not limited per address.
    let mut through_proxy = Vec::new();
    for _ in 0..5 {
        through_proxy.push(tcp_from([127, 0, 0, 1].into(), server.addr, None).await.unwrap());
    }
    assert_eq!(http_get(server.addr, "/healthz").await.0, 200);
    // Per-address rules apply to the address the proxy reports, not to the proxy.
    let member = |forwarded: &'static str| {
        let url = server.ws_url();
        async move {
            let mut request = url.into_client_request().unwrap();
            // A client-supplied entry first: only the proxy's own (rightmost) one counts.
            request.headers_mut().insert("x-forwarded-for", format!("10.9.9.9, {forwarded}").parse().unwrap());
            let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
            send_on(&mut ws, &ClientMsg::hello()).await;
            recv_on(&mut ws).await;
            Client { ws, peer_id: PeerId::try_from("unused").unwrap() }
        }
    };
    let mut a = member("203.0.113.5").await;
    for r in ["a1", "a2"] {
        assert!(matches!(a.join(r, "a", None).await.first(), Some(ServerMsg::Joined { .. })));
    }
    let mut a_again = member("203.0.113.5").await;
    assert_eq!(error_codes(&a_again.join("a3", "a", None).await), vec![ErrorCode::RateLimited], "2 rooms a minute");
    let mut b = member("203.0.113.6").await;
    assert!(matches!(b.join("b1", "b", None).await.first(), Some(ServerMsg::Joined { .. })), "another client");
    drop(through_proxy);
    server.stop().await;
}

#[tokio::test]
async fn one_front_door_answers_every_error_in_one_format() {
    let server = start(test_config(|c| c.no_media = true)).await;
    let (_member, grant) = join_with_grant(&server, "r").await;
    let auth = format!("Bearer {grant}");
    let evil = [("origin", "https://evil.example")];
    let cases: Vec<(Reply, u16, &str)> = vec![
        (request(server.addr, "GET", "/api/nothing", &[], b"").await, 404, "not_found"),
        (
            request(server.addr, "GET", "/api/rooms/r/blobs/nope", &[("authorization", &auth)], b"").await,
            400,
            "bad_request",
        ),
        (request(server.addr, "GET", "/api/rooms/r/blobs", &[], b"").await, 401, "grant_required"),
        (request(server.addr, "GET", "/api/rooms/../blobs", &[], b"").await, 400, "bad_request"),
        (request(server.addr, "POST", "/whip/stage", &[], b"").await, 503, "unavailable"),
        (request(server.addr, "GET", "/api/rooms/r/recording", &[], b"").await, 503, "unavailable"),
        (request(server.addr, "GET", "/ws", &[], b"").await, 426, "upgrade_required"),
        (request(server.addr, "GET", "/api/rooms/r/blobs", &evil, b"").await, 403, "origin_not_allowed"),
        (request(server.addr, "GET", "/healthz", &evil, b"").await, 403, "origin_not_allowed"),
    ];
    for (i, (reply, status, code)) in cases.iter().enumerate() {
        assert_eq!(reply.status, *status, "case {i}: {}", reply.text());
        assert_eq!(reply.header("content-type"), "application/json", "case {i}");
        assert_eq!(reply.header("relaycast-error"), *code, "case {i}");
        let body: serde_json::Value = reply.json();
        assert_eq!(body["code"], *code, "case {i}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "case {i} explains itself");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_peer_that_takes_no_frames_is_closed_at_the_write_timeout() {
    // Queues far larger than what is sent: only the write timeout can end this connection.
    let server = start(test_config(|c| {
        c.write_timeout = Duration::from_millis(1000);
        c.queue_bytes = 64 << 20;
    }))
    .await;
    let mut publisher = Client::connect(&server).await;
    publisher.join("r", "pub", None).await;
    let stalled = stalled_member(&server, "r", "stalled").await;
    publisher.recv_until(|m| matches!(m, ServerMsg::PeerJoined { .. })).await;
    // About 4 MB: more than the sockets between them hold, far less than the queue.
    let big = "x".repeat(8000);
    for i in 1..=500u64 {
        publisher.publish("r", &format!("m{i}"), &big).await;
    }
    publisher.recv_until(|m| matches!(m, ServerMsg::Ack { seq: 500, .. })).await;
    let left =
        tokio::time::timeout(Duration::from_secs(5), publisher.recv_until(|m| matches!(m, ServerMsg::PeerLeft { .. })))
            .await;
    assert!(left.is_ok(), "the stalled peer was not closed");
    assert_eq!(server.metric("relaycast_dropped_slow_clients_total").await, 0, "not judged by its queue");
    assert_eq!(server.metric("relaycast_connections").await, 1);
    eventually("its socket is closed", Duration::from_secs(3), || established_on(server.addr.port()) <= 2).await;
    drop(stalled);
    server.stop().await;
}

#[tokio::test]
async fn metrics_can_live_on_an_address_of_their_own() {
    let metrics_addr = {
        // A free port for the metrics listener (the server binds it itself).
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let server = start(test_config(|c| c.metrics_bind = Some(metrics_addr))).await;
    let mut member = Client::connect(&server).await;
    member.join("r", "m", None).await;
    let public = request(server.addr, "GET", "/metrics", &[], b"").await;
    assert_eq!((public.status, public.code()), (404, "not_found".to_owned()), "not on the public port");
    let private = request(metrics_addr, "GET", "/metrics", &[], b"").await;
    assert_eq!(private.status, 200);
    assert!(private.text().lines().any(|l| l == "relaycast_connections 1"), "{}", private.text());
    assert_eq!(request(metrics_addr, "GET", "/ws", &[], b"").await.status, 404, "metrics only");
    server.stop().await;
}

/// A client that publishes faster than the store makes messages durable waits on its own
/// socket (the server stops reading it at its own limit) instead of filling the server-wide
/// limit and being refused; another client's messages still go through.
#[tokio::test]
async fn a_fast_publisher_is_slowed_on_its_own_socket_not_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(test_config(|c| {
        c.memory = false;
        c.data_dir = dir.path().to_owned();
        c.max_unpersisted = 4;
        c.max_unpersisted_per_connection = 2;
    }))
    .await;
    let mut fast = Client::connect(&server).await;
    fast.join("r", "fast", None).await;
    let mut other = Client::connect(&server).await;
    other.join("r", "other", None).await;
    // 200 publishes written at once, none waiting for its ack: with every fdatasync a batch,
    // many more than 4 would wait for the store together if the server kept reading.
    use futures_util::SinkExt;
    for i in 0..200 {
        let msg = ClientMsg::Publish {
            room: room("r"),
            id: ClientMsgId::try_from(format!("f{i}")).unwrap(),
            body: chat("x"),
        };
        fast.ws.feed(tokio_tungstenite::tungstenite::Message::Text(encode(&msg).into())).await.unwrap();
    }
    fast.ws.flush().await.unwrap();
    let seq = other.publish_acked("r", "o1", "meanwhile").await;
    assert!(seq >= 1);
    let mut acks = 0;
    while acks < 200 {
        match fast.recv().await {
            ServerMsg::Ack { .. } => acks += 1,
            ServerMsg::Error { code, message, .. } => panic!("the fast publisher was refused: {code}: {message}"),
            _ => {}
        }
    }
    assert_eq!(server.metric("relaycast_connections").await, 2, "nobody was cut off");
    server.stop().await;
}

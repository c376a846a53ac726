//! The relay over real WebSockets on loopback: presence, signaling, ordering, history,
//! recovery, truncation, liveness, slow clients, HTTP endpoints and graceful shutdown.

mod common;

use common::*;
use relaycast_shared::*;

#[tokio::test]
async fn join_and_presence() {
    let server = start(test_config(|_| {})).await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let joined = a.join("room", "Ada", None).await;
    assert!(matches!(&joined[0], ServerMsg::Joined { peers, .. } if peers.is_empty()));
    let joined = b.join("room", "Grace", None).await;
    match &joined[0] {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(peers.len(), 1);
            assert_eq!(peers[0].id, a.peer_id);
            assert_eq!(peers[0].name.as_str(), "Ada");
        }
        other => panic!("{other:?}"),
    }
    match a.recv().await {
        ServerMsg::PeerJoined { peer, .. } => {
            assert_eq!((peer.id, peer.name.as_str()), (b.peer_id.clone(), "Grace"))
        }
        other => panic!("{other:?}"),
    }
    b.send(&ClientMsg::Leave { room: room("room") }).await;
    assert!(matches!(b.recv().await, ServerMsg::Left { .. }));
    assert!(matches!(a.recv().await, ServerMsg::PeerLeft { peer_id, .. } if peer_id == b.peer_id));
    drop(b);
    assert_eq!(server.metric("relaycast_rooms").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn signaling_is_isolated_between_rooms() {
    let server = start(test_config(|_| {})).await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let mut c = Client::connect(&server).await;
    a.join("one", "a", None).await;
    b.join("one", "b", None).await;
    c.join("two", "c", None).await;
    a.recv().await; // b joined
    let offer = Signal::Offer { sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n".into() };
    a.send(&ClientMsg::Signal { room: room("one"), to: b.peer_id.clone(), signal: offer.clone() }).await;
    match b.recv().await {
        ServerMsg::Signal { from, signal, room: r } => {
            assert_eq!((from, signal, r), (a.peer_id.clone(), offer.clone(), room("one")))
        }
        other => panic!("{other:?}"),
    }
    // c is a real peer, but in another room: refused, and c gets nothing.
    a.send(&ClientMsg::Signal { room: room("one"), to: c.peer_id.clone(), signal: offer.clone() }).await;
    assert_eq!(a.next_error().await, ErrorCode::UnknownPeer);
    // ...not even by naming c's room, which a is not in.
    a.send(&ClientMsg::Signal { room: room("two"), to: c.peer_id.clone(), signal: offer }).await;
    assert_eq!(a.next_error().await, ErrorCode::NotJoined);
    // c's next message is the one we send it now, proving nothing else arrived before.
    c.publish("two", "probe", "probe").await;
    assert!(matches!(c.recv().await, ServerMsg::Ack { .. }));
    server.stop().await;
}

#[tokio::test]
async fn broadcast_order_with_concurrent_senders() {
    let server = start(test_config(|_| {})).await;
    let mut observer = Client::connect(&server).await;
    observer.join("r", "observer", None).await;
    const SENDERS: usize = 4;
    const EACH: usize = 150;
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let mut c = Client::connect(&server).await;
        c.join("r", &format!("s{s}"), None).await;
        tasks.push(c);
    }
    let handles: Vec<_> = tasks
        .into_iter()
        .enumerate()
        .map(|(s, mut c)| {
            tokio::spawn(async move {
                for i in 0..EACH {
                    c.publish("r", &format!("{s}-{i}"), &format!("{s}-{i}")).await;
                }
                let mut acks = Vec::new();
                while acks.len() < EACH {
                    if let ServerMsg::Ack { seq, id, .. } = c.recv().await {
                        acks.push((id.to_string(), seq));
                    }
                }
                acks
            })
        })
        .collect();
    let mut received = Vec::new();
    while received.len() < SENDERS * EACH {
        if let ServerMsg::Message { message, .. } = observer.recv().await {
            received.push(message);
        }
    }
    // One total order, no gaps, no duplicates...
    let seqs: Vec<u64> = received.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=(SENDERS * EACH) as u64).collect::<Vec<_>>());
    // ...in which each sender's messages keep the order it sent them...
    for s in 0..SENDERS {
        let mine: Vec<String> =
            received.iter().filter(|m| m.id.as_str().starts_with(&format!("{s}-"))).map(|m| m.id.to_string()).collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{s}-{i}")).collect();
        assert_eq!(mine, expected);
    }
    // ...and each ack names the seq the others saw.
    for handle in handles {
        for (id, seq) in handle.await.unwrap() {
            assert_eq!(received[(seq - 1) as usize].id.as_str(), id);
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn late_joiner_gets_history_with_a_clean_seam() {
    let server = start(test_config(|c| c.history_max_messages = 10_000)).await;
    let mut publisher = Client::connect(&server).await;
    publisher.join("r", "pub", None).await;
    // Publish continuously while the late joiner arrives, so the seam falls mid-stream.
    let task = tokio::spawn(async move {
        for i in 0..600 {
            publisher.publish("r", &format!("m{i}"), &format!("m{i}")).await;
            if i == 300 {
                tokio::task::yield_now().await;
            }
        }
        publisher
    });
    let mut late = Client::connect(&server).await;
    let mut got = late.join("r", "late", None).await;
    let mut publisher = task.await.unwrap();
    // Make sure the last one is committed before counting.
    publisher.publish_acked("r", "last", "last").await;
    while seqs(&got).last().copied().unwrap_or(0) < 601 {
        got.push(late.recv().await);
    }
    assert_eq!(seqs(&got), (1..=601).collect::<Vec<_>>(), "no gap or duplicate at the seam");
    server.stop().await;
}

#[tokio::test]
async fn reconnect_recovers_exactly_what_was_missed() {
    let server = start(test_config(|_| {})).await;
    let mut a = Client::connect(&server).await;
    let mut b = Client::connect(&server).await;
    let epoch = epoch_of(&a.join("r", "a", None).await);
    b.join("r", "b", None).await;
    for i in 1..=5 {
        b.publish_acked("r", &format!("x{i}"), "before").await;
    }
    let seen = a.recv_until(|m| matches!(m, ServerMsg::Message { message, .. } if message.seq == 5)).await;
    assert_eq!(seqs(&seen), vec![1, 2, 3, 4, 5]);
    drop(a); // network loss
    for i in 6..=9 {
        b.publish_acked("r", &format!("x{i}"), "while away").await;
    }
    let mut a = Client::connect(&server).await;
    let got = a.join("r", "a", Some(ResumeFrom { epoch, last_seq: 5 })).await;
    assert!(!got.iter().any(|m| matches!(m, ServerMsg::HistoryTruncated { .. } | ServerMsg::HistoryReset { .. })));
    assert_eq!(seqs(&got), vec![6, 7, 8, 9]);
    b.publish_acked("r", "x10", "after").await;
    assert_eq!(seqs(&[a.recv().await]), vec![10]);
    server.stop().await;
}

#[tokio::test]
async fn truncated_history_is_announced() {
    let server = start(test_config(|c| c.history_max_messages = 5)).await;
    let mut a = Client::connect(&server).await;
    let epoch = epoch_of(&a.join("r", "a", None).await);
    for i in 1..=12 {
        a.publish_acked("r", &format!("t{i}"), "t").await;
    }
    let mut b = Client::connect(&server).await;
    let got = b.join("r", "b", Some(ResumeFrom { epoch, last_seq: 3 })).await;
    let truncated =
        |m: &ServerMsg| matches!(m, ServerMsg::HistoryTruncated { requested_after: 3, oldest_available: 8, .. });
    assert!(got.iter().any(truncated), "{got:?}");
    assert_eq!(seqs(&got), vec![8, 9, 10, 11, 12]);
    // A resume with an epoch this server never issued is reset, not silently served.
    let mut c = Client::connect(&server).await;
    let got = c.join("r", "c", Some(ResumeFrom { epoch: Epoch::try_from("other").unwrap(), last_seq: 3 })).await;
    assert!(got.iter().any(|m| matches!(m, ServerMsg::HistoryReset { .. })), "{got:?}");
    assert_eq!(seqs(&got), vec![8, 9, 10, 11, 12]);
    server.stop().await;
}

#[tokio::test]
async fn a_client_s_ping_is_answered_in_order_and_its_close_is_answered() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let server = start(test_config(|_| {})).await;
    let mut client = Client::connect(&server).await;
    client.join("r", "pinger", None).await;
    // A ping among messages is answered with its payload (the answer goes through the same
    // outbox as the messages).
    send_on(
        &mut client.ws,
        &ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from("m1").unwrap(), body: chat("hi") },
    )
    .await;
    client.ws.send(Message::Ping(bytes::Bytes::from_static(b"are you there"))).await.unwrap();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("an answer in time") {
            Some(Ok(Message::Pong(payload))) => {
                assert_eq!(&payload[..], b"are you there");
                break;
            }
            Some(Ok(Message::Text(text))) => seen.push(decode_server(&text).unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    if !seen.iter().any(|m| matches!(m, ServerMsg::Ack { .. })) {
        client.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;
    }
    // The client closes; the server answers with a close frame and ends the connection.
    client.ws.send(Message::Close(None)).await.unwrap();
    loop {
        match tokio::time::timeout(WAIT, client.ws.next()).await.expect("the close in time") {
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("the close was not answered: {err}"),
        }
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.metric("relaycast_connections").await != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the connection was never let go");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn dead_peers_are_found_by_ping_and_announced_as_left() {
    let server = start(test_config(|c| {
        c.ping_interval = std::time::Duration::from_millis(100);
        c.idle_timeout = std::time::Duration::from_millis(300);
    }))
    .await;
    let mut alive = Client::connect(&server).await;
    alive.join("r", "alive", None).await;
    let mut dead = Client::connect(&server).await;
    dead.join("r", "dead", None).await;
    // `dead` stops reading: it never answers pings again. `alive` keeps reading, so its
    // client library answers them.
    let gone = alive.recv_until(|m| matches!(m, ServerMsg::PeerLeft { .. })).await;
    assert!(matches!(gone.last(), Some(ServerMsg::PeerLeft { peer_id, .. }) if *peer_id == dead.peer_id));
    assert_eq!(server.metric("relaycast_connections").await, 1);
    server.stop().await;
}

#[tokio::test]
async fn http_endpoints() {
    let server = start(test_config(|_| {})).await;
    assert_eq!(http_get(server.addr, "/healthz").await, (200, "ok\n".into()));
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http_get(server.addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "relaycast_connections",
        "relaycast_rooms",
        "relaycast_messages_in_total",
        "relaycast_messages_out_total",
        "relaycast_history_messages",
        "relaycast_dropped_slow_clients_total",
    ] {
        assert!(body.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    // Not a WebSocket handshake: a clear refusal with a stable code.
    let (status, body) = http_get(server.addr, "/ws").await;
    assert_eq!(status, 426);
    assert!(body.contains("\"code\":\"upgrade_required\""), "{body}");
    let (status, body) = http_get(server.addr, "/nope").await;
    assert_eq!(status, 404);
    assert!(body.contains("not_found"));
    server.stop().await;
}

#[tokio::test]
async fn serves_the_web_app_with_deep_links() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<html>relaycast app</html>").unwrap();
    std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
    let server = start(test_config(|c| c.static_dir = dir.path().to_owned())).await;
    assert_eq!(http_get(server.addr, "/").await, (200, "<html>relaycast app</html>".into()));
    assert_eq!(http_get(server.addr, "/app.js").await, (200, "console.log(1)".into()));
    assert_eq!(http_get(server.addr, "/r/standup").await, (200, "<html>relaycast app</html>".into()));
    server.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_closes_clients_and_keeps_acked_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;
    let mut a = Client::connect(&server).await;
    let epoch = epoch_of(&a.join("r", "a", None).await);
    for i in 1..=20 {
        a.publish("r", &format!("g{i}"), "kept").await;
    }
    a.recv_until(|m| matches!(m, ServerMsg::Ack { seq: 20, .. })).await;
    let mut other = Client::connect(&server).await;
    other.join("r", "b", None).await;
    let stopping = tokio::spawn(server.stop());
    let (code, reason) = recv_close(&mut other.ws).await;
    assert_eq!((code, reason.as_str()), (1001, "shutting_down"));
    stopping.await.unwrap();

    let server = start_durable(dir.path()).await;
    let mut b = Client::connect(&server).await;
    let got = b.join("r", "b", Some(ResumeFrom { epoch, last_seq: 10 })).await;
    assert_eq!(seqs(&got), (11..=20).collect::<Vec<_>>(), "same epoch, nothing lost");
    server.stop().await;
}

#[tokio::test]
async fn memory_mode_restart_is_reported_as_a_reset() {
    let server = start(test_config(|_| {})).await;
    let mut a = Client::connect(&server).await;
    let epoch = epoch_of(&a.join("r", "a", None).await);
    a.publish_acked("r", "m1", "gone after restart").await;
    server.stop().await;
    let server = start(test_config(|_| {})).await;
    let mut a = Client::connect(&server).await;
    let got = a.join("r", "a", Some(ResumeFrom { epoch, last_seq: 1 })).await;
    assert!(got.iter().any(|m| matches!(m, ServerMsg::HistoryReset { .. })), "{got:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_app_is_served_on_its_paths_and_a_missing_file_is_not_the_page() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<!doctype html><title>Relaycast</title>").unwrap();
    std::fs::write(dir.path().join("favicon.svg"), "<svg xmlns=\"http://www.w3.org/2000/svg\"/>").unwrap();
    let static_dir = dir.path().to_owned();
    let server = start(test_config(move |c| c.static_dir = static_dir)).await;
    for path in ["/", "/r/standup", "/r/team.standup"] {
        let page = request(server.addr, "GET", path, &[], b"").await;
        assert_eq!(page.status, 200, "{path}");
        assert!(page.text().contains("<title>Relaycast</title>"), "{path}");
    }
    let icon = request(server.addr, "GET", "/favicon.svg", &[], b"").await;
    assert_eq!((icon.status, icon.header("content-type")), (200, "image/svg+xml"));
    for path in ["/favicon.ico", "/missing.js", "/assets/app.css"] {
        let missing = request(server.addr, "GET", path, &[], b"").await;
        assert_eq!(missing.status, 404, "{path}");
        assert!(!missing.text().contains("<title>"), "{path}: not the page");
    }
}

//! Several real `relaycast` nodes sharing rooms through a real `redis-server` (AOF fsynced on
//! every write): one room across nodes, order under concurrent senders, resume elsewhere
//! after `kill -9`, Redis restarted (nothing lost) and flushed (`history_reset`), a cut
//! subscription refilled, Redis down (`store_unavailable`, not ready) and back.

mod common;

use common::*;
use relaycast_shared::*;
use std::time::Duration;

/// A node on `redis`, its store in memory, without media; its heartbeat lapses after 2 s.
fn node(redis: &RedisServer, id: &str, dir: &std::path::Path, extra: &[&str]) -> Binary {
    let url = redis.url();
    let mut args =
        vec!["--log", "warn", "--redis", &url, "--node-id", id, "--memory", "--no-media", "--node-ttl", "2s"];
    args.extend_from_slice(extra);
    spawn_binary_with(&dir.join(id), &args, None)
}

/// Wait until the node says it is ready (its heartbeat reached Redis).
async fn ready(bin: &Binary) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while http_get(bin.server.addr, "/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "the node did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Nodes a and b on `redis` with `extra` flags, once both are ready.
async fn two_nodes(redis: &RedisServer, dir: &std::path::Path, extra: &[&str]) -> (Binary, Binary) {
    let (a, b) = (node(redis, "a", dir, extra), node(redis, "b", dir, extra));
    ready(&a).await;
    ready(&b).await;
    (a, b)
}

/// The backend API's key on the nodes [`backend_nodes`] starts.
const KEY: &str = "cluster-backend-key-0123456789";

/// Nodes a and b on `redis`, ready, taking the backend API key [`KEY`].
async fn backend_nodes(redis: &RedisServer, dir: &std::path::Path) -> (Binary, Binary) {
    std::fs::write(dir.join("api.key"), KEY).unwrap();
    let key_file = dir.join("api.key").to_string_lossy().into_owned();
    let extra = ["--api-key-file", key_file.as_str()];
    two_nodes(redis, dir, &extra).await
}

fn dirs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for id in ["a", "b", "c"] {
        std::fs::create_dir_all(dir.path().join(id)).unwrap();
    }
    dir
}

/// The sequence numbers a sender sees, acks and others' messages together, in arrival order.
fn stream_seqs(msgs: &[ServerMsg]) -> Vec<u64> {
    msgs.iter()
        .flat_map(|m| match m {
            ServerMsg::Ack { seq, .. } => vec![*seq],
            ServerMsg::Message { message, .. } => vec![message.seq],
            ServerMsg::History { messages, .. } => messages.iter().map(|m| m.seq).collect(),
            _ => vec![],
        })
        .collect()
}

/// Publish `count` messages as fast as the socket takes them, while reading; returns
/// everything received until this sender has its acks and has seen `total` numbers.
async fn chatter(mut client: Client, tag: &'static str, count: usize, total: u64) -> (Client, Vec<ServerMsg>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut got = Vec::new();
    let mut sent = 0;
    loop {
        if sent < count {
            let id = ClientMsgId::try_from(format!("{tag}-{sent}")).unwrap();
            let msg = ClientMsg::Publish { room: room("r"), id, body: chat(&format!("{tag} {sent}")) };
            client.ws.send(Message::Text(encode(&msg).into())).await.unwrap();
            sent += 1;
        }
        // Read whatever is there (everything, once all is sent).
        let wait = if sent < count { Duration::from_millis(1) } else { Duration::from_secs(10) };
        while let Ok(frame) = tokio::time::timeout(wait, client.ws.next()).await {
            let Some(Ok(Message::Text(text))) = frame else { continue };
            got.push(decode_server(&text).unwrap());
            if stream_seqs(&got).len() as u64 >= total {
                return (client, got);
            }
        }
        assert!(sent < count, "{tag}: only {} of {total} arrived", stream_seqs(&got).len());
    }
}

#[tokio::test]
async fn members_on_two_nodes_see_one_room_in_one_order() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let mut ann = Client::connect(&a.server).await;
    let mut bob = Client::connect(&b.server).await;
    ann.join("r", "Ann", None).await;
    let joined = bob.join("r", "Bob", None).await;
    // Presence: each sees the other, across nodes.
    match &joined[0] {
        ServerMsg::Joined { peers, .. } => {
            assert_eq!(peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["Ann"])
        }
        other => panic!("expected joined, got {other:?}"),
    }
    let heard = ann.recv_until(|m| matches!(m, ServerMsg::PeerJoined { .. })).await;
    assert!(matches!(heard.last(), Some(ServerMsg::PeerJoined { peer, .. }) if peer.name.as_str() == "Bob"));

    // Signaling across nodes arrives, in order.
    for i in 0..3 {
        let signal = Signal::Candidate { candidate: format!("c{i}"), sdp_mid: None, sdp_m_line_index: None };
        ann.send(&ClientMsg::Signal { room: room("r"), to: bob.peer_id.clone(), signal }).await;
    }
    for i in 0..3 {
        match bob.recv().await {
            ServerMsg::Signal { from, signal: Signal::Candidate { candidate, .. }, .. } => {
                assert_eq!((from, candidate), (ann.peer_id.clone(), format!("c{i}")))
            }
            other => panic!("expected signaling, got {other:?}"),
        }
    }

    // Concurrent senders on both nodes: one sequence, gapless, the same order everywhere.
    let (ann_peer, bob_peer) = (ann.peer_id.clone(), bob.peer_id.clone());
    let (on_a, on_b) =
        tokio::join!(tokio::spawn(chatter(ann, "ann", 150, 300)), tokio::spawn(chatter(bob, "bob", 150, 300)));
    let ((_ann, on_a), (_bob, on_b)) = (on_a.unwrap(), on_b.unwrap());
    for (got, me) in [(&on_a, &ann_peer), (&on_b, &bob_peer)] {
        assert_eq!(stream_seqs(got), (1..=300).collect::<Vec<_>>(), "each number once, in order");
        let acks = got.iter().filter(|m| matches!(m, ServerMsg::Ack { .. })).count();
        assert_eq!(acks, 150, "one ack per message sent");
        let echoed = got.iter().any(|m| matches!(m, ServerMsg::Message { message, .. } if message.from == *me));
        assert!(!echoed, "nobody gets its own messages back");
    }

    // A latecomer on a third node gets the same history, in the same order, from the log.
    let c = node(&redis, "c", dir.path(), &[]);
    ready(&c).await;
    let mut cy = Client::connect(&c.server).await;
    let history = cy.join("r", "Cy", None).await;
    assert_eq!(seqs(&history), (1..=300).collect::<Vec<_>>());
    let texts_of = |msgs: &[ServerMsg]| -> Vec<String> {
        msgs.iter()
            .flat_map(|m| match m {
                ServerMsg::History { messages, .. } => messages.clone(),
                _ => vec![],
            })
            .map(|m| format!("{}:{}", m.seq, m.name))
            .collect()
    };
    assert_eq!(texts_of(&history).len(), 300);
    match &history[0] {
        ServerMsg::Joined { peers, .. } => assert_eq!(peers.len(), 2, "Ann and Bob, on other nodes"),
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn a_client_resumes_on_another_node_after_its_node_is_killed() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let mut ann = Client::connect(&a.server).await;
    let joined = ann.join("r", "Ann", None).await;
    let epoch = epoch_of(&joined);
    let mut bob = Client::connect(&b.server).await;
    bob.join("r", "Bob", None).await;
    for i in 1..=5 {
        assert_eq!(ann.publish_acked("r", &format!("a{i}"), "hi").await, i);
    }
    // kill -9 mid-conversation.
    let started = std::time::Instant::now();
    drop(a);
    for i in 6..=8 {
        assert_eq!(bob.publish_acked("r", &format!("b{i}"), "still here").await, i);
    }
    // Ann's presence goes with her node's heartbeat (2 s, reaped within a third of it more).
    let left = bob.recv_until(|m| matches!(m, ServerMsg::PeerLeft { .. })).await;
    assert!(matches!(left.last(), Some(ServerMsg::PeerLeft { peer_id, .. }) if *peer_id == ann.peer_id));
    assert!(started.elapsed() < Duration::from_secs(4), "announced after {:?}", started.elapsed());
    // Ann reconnects through another node and gets exactly what she missed, once.
    let mut ann = Client::connect(&b.server).await;
    let resumed = ann.join("r", "Ann", Some(ResumeFrom { epoch: epoch.clone(), last_seq: 5 })).await;
    assert_eq!(epoch_of(&resumed), epoch);
    assert_eq!(seqs(&resumed), [6, 7, 8]);
}

#[tokio::test]
async fn redis_restarted_keeps_every_ack_and_a_flushed_redis_resets_the_room() {
    let mut redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let mut ann = Client::connect(&a.server).await;
    let epoch = epoch_of(&ann.join("r", "Ann", None).await);
    let mut bob = Client::connect(&b.server).await;
    bob.join("r", "Bob", None).await;
    for i in 1..=5 {
        assert_eq!(ann.publish_acked("r", &format!("a{i}"), "before").await, i);
    }
    assert_eq!(
        seqs(&bob.recv_until(|m| matches!(m, ServerMsg::Message { message, .. } if message.seq == 5)).await).last(),
        Some(&5)
    );

    // Redis goes down: publishing fails with a clear code, the nodes are not ready, and
    // nothing crashes.
    redis.kill();
    ann.publish("r", "down", "while redis is down").await;
    assert_eq!(ann.next_error().await, ErrorCode::StoreUnavailable);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while http_get(a.server.addr, "/readyz").await.0 == 200 {
        assert!(tokio::time::Instant::now() < deadline, "node a still says it is ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(http_get(a.server.addr, "/healthz").await.0, 200, "alive, though not ready");
    // A room the node does not hold cannot be loaded: the joiner is told why.
    let mut late = Client::connect(&a.server).await;
    assert_eq!(error_codes(&late.join("elsewhere", "Late", None).await), [ErrorCode::StoreUnavailable]);
    // The room it holds still serves what it has: a member joining there gets its history.
    assert_eq!(seqs(&late.join("r", "Late", None).await), [1, 2, 3, 4, 5]);

    // Back with its AOF: the same history goes on, on both nodes.
    redis.restart();
    ready(&a).await;
    ready(&b).await;
    let seq = loop {
        ann.publish("r", "again", "after the restart").await;
        let answer = ann.recv_until(|m| matches!(m, ServerMsg::Ack { .. } | ServerMsg::Error { .. })).await;
        match answer.last() {
            Some(ServerMsg::Ack { seq, .. }) => break *seq,
            // The node's connection may still be coming back.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(seq, 6, "nothing acked was lost");
    // Presence a node wrote while Redis was away, or that was reaped meanwhile, is made good
    // when its subscription comes back: here the entry is dropped, and the subscription cut.
    let mut conn = redis.connection().await;
    let _: i64 =
        redis::cmd("HDEL").arg("rc:{r}:members").arg(late.peer_id.as_str()).query_async(&mut conn).await.unwrap();
    let _: redis::Value =
        redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let here: bool = redis::cmd("HEXISTS")
            .arg("rc:{r}:members")
            .arg(late.peer_id.as_str())
            .query_async(&mut conn)
            .await
            .unwrap();
        if here {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the member was never announced again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = bob.recv_until(|m| matches!(m, ServerMsg::Message { message, .. } if message.seq == 6)).await;
    assert!(!got.iter().any(|m| matches!(m, ServerMsg::HistoryReset { .. })));

    // Redis loses everything (a flush stands for a restart without persistence): the room
    // starts over under a new epoch, and members on both nodes are told.
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert_eq!(ann.publish_acked("r", "fresh", "a new start").await, 1);
    let told = bob.recv_until(|m| matches!(m, ServerMsg::Message { .. })).await;
    let reset = told.iter().find_map(|m| match m {
        ServerMsg::HistoryReset { epoch, .. } => Some(epoch.clone()),
        _ => None,
    });
    assert!(reset.is_some_and(|e| e != epoch), "bob was told the history started over: {told:?}");
    assert_eq!(seqs(&told), [1]);
}

#[tokio::test]
async fn a_cut_subscription_is_rebuilt_and_what_it_missed_is_refilled() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let mut ann = Client::connect(&a.server).await;
    ann.join("r", "Ann", None).await;
    let mut bob = Client::connect(&b.server).await;
    bob.join("r", "Bob", None).await;
    let mut conn = redis.connection().await;
    for i in 1..=40u64 {
        if i % 10 == 5 {
            // Cut every node's subscription; command connections stay up.
            let _: redis::Value =
                redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap();
        }
        assert_eq!(ann.publish_acked("r", &format!("m{i}"), "through the cuts").await, i);
    }
    let got = bob.recv_until(|m| matches!(m, ServerMsg::Message { message, .. } if message.seq == 40)).await;
    assert_eq!(seqs(&got), (1..=40).collect::<Vec<_>>(), "every message once, in order");
    assert!(b.output_lines("redis subscription lost") >= 1, "the node noticed the cut");
    assert!(b.server.metric("relaycast_cluster_reads_total").await >= 2, "the load and at least one refill");
    assert_eq!(a.server.metric("relaycast_cluster_appends_total").await, 40);
}

#[tokio::test]
async fn a_draining_node_answers_what_it_took_and_its_clients_resume_elsewhere() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let mut ann = Client::connect(&a.server).await;
    let epoch = epoch_of(&ann.join("r", "Ann", None).await);
    // Messages in flight when SIGTERM comes.
    for i in 1..=30 {
        let msg = ClientMsg::Publish {
            room: room("r"),
            id: ClientMsgId::try_from(format!("m{i}")).unwrap(),
            body: chat("hi"),
        };
        ann.ws.send(Message::Text(encode(&msg).into())).await.unwrap();
    }
    let term = std::process::Command::new("kill").args(["-TERM", &a.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let mut acked = Vec::new();
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), ann.ws.next()).await.expect("closed in time") {
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerMsg::Ack { seq, .. }) = decode_server(&text) {
                    acked.push(seq);
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|f| (u16::from(f.code), f.reason.to_string())),
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(close, Some((1001, "shutting_down".to_owned())), "told to reconnect");
    assert_eq!(acked, (1..=acked.len() as u64).collect::<Vec<_>>());
    // Through another node: the room holds exactly what Ann was told is stored.
    let mut ann = Client::connect(&b.server).await;
    let resumed = ann.join("r", "Ann", Some(ResumeFrom { epoch, last_seq: 0 })).await;
    assert_eq!(seqs(&resumed), acked, "nothing stored unacked, nothing acked lost");
    assert!(!acked.is_empty());
}

#[tokio::test]
async fn the_backend_api_of_any_node_sees_the_cluster_its_rooms_and_posts_into_them() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = backend_nodes(&redis, dir.path()).await;
    let mut ann = Client::connect(&a.server).await;
    ann.join("r", "Ann", None).await;
    for i in 1..=3 {
        ann.publish_acked("r", &format!("m{i}"), "hello").await;
    }
    let auth = format!("Bearer {KEY}");
    let headers = [("authorization", auth.as_str())];
    // Node b holds nobody in the room: its answers come from the shared log and presence.
    let page = request(b.server.addr, "GET", "/api/rooms/r/messages?after=1&limit=1", &headers, b"").await;
    assert_eq!(page.status, 200, "{}", page.text());
    let page: serde_json::Value = page.json();
    assert_eq!(
        (page["last_seq"].as_u64(), page["oldest_seq"].as_u64(), page["next_after"].as_u64()),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(page["messages"][0]["seq"], 2);
    let members: serde_json::Value = request(b.server.addr, "GET", "/api/rooms/r/members", &headers, b"").await.json();
    assert_eq!(members["members"][0]["name"], "Ann");
    // The room list comes from Redis too, with every node's members.
    let rooms: serde_json::Value = request(b.server.addr, "GET", "/api/rooms", &headers, b"").await.json();
    assert_eq!(rooms["rooms"][0]["room"], "r", "{rooms}");
    assert_eq!((rooms["rooms"][0]["members"].as_u64(), rooms["rooms"][0]["last_seq"].as_u64()), (Some(1), Some(3)));
    // A post through node b reaches Ann on node a, numbered after hers.
    let post = br#"{"body":{"kind":"chat","text":"from the backend"},"name":"Bot"}"#;
    let post_headers = [("authorization", auth.as_str()), ("content-type", "application/json")];
    let posted = request(b.server.addr, "POST", "/api/rooms/r/messages", &post_headers, post).await;
    assert_eq!(posted.status, 201, "{}", posted.text());
    assert_eq!(posted.json::<serde_json::Value>()["seq"], 4);
    let got = ann.recv_until(|m| matches!(m, ServerMsg::Message { .. })).await;
    assert_eq!(seqs(&got), [4]);
    // The cluster: both nodes alive, with their connections.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let view: serde_json::Value = request(a.server.addr, "GET", "/api/cluster", &headers, b"").await.json();
        let nodes = view["nodes"].as_array().unwrap().clone();
        let ids: Vec<&str> = nodes.iter().map(|n| n["id"].as_str().unwrap()).collect();
        assert_eq!(
            (view["mode"].as_str(), view["this_node"].as_str(), ids),
            (Some("redis"), Some("a"), vec!["a", "b"])
        );
        assert!(nodes.iter().all(|n| n["alive"] == true));
        // Heartbeats carry the load every third of the TTL.
        if nodes[0]["connections"] == 1 && nodes[0]["rooms"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node a's load never showed: {view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Without the key: refused.
    assert_eq!(request(a.server.addr, "GET", "/api/cluster", &[], b"").await.status, 401);
}

#[tokio::test]
async fn deletions_and_removals_hold_on_every_node() {
    let redis = RedisServer::start();
    let dir = dirs();
    let keys = Keys::new();
    let (ed, api) = (format!("ed-1={}", keys.path("ed.pub.pem")), format!("backend={}", keys.path("api")));
    let token_mode = ["--auth", "token", "--auth-public-key", ed.as_str(), "--api-key-file", api.as_str()];
    let (a, b) = two_nodes(&redis, dir.path(), &token_mode).await;
    let member = "join,history,publish";
    let (mut moderator, _, _) = common::member(&a.server, &keys, "mod", "r", "join,history,publish,moderate").await;
    // The same user on both nodes, and a bystander on b.
    let (mut troll_a, _, _) = common::member(&a.server, &keys, "troll", "r", member).await;
    let (mut troll_b, _, _) = common::member(&b.server, &keys, "troll", "r", member).await;
    let (mut bystander, _, _) = common::member(&b.server, &keys, "ok", "r", member).await;
    let publish = ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from("t1").unwrap(), body: chat("spam") };
    send_on(&mut troll_b, &publish).await;
    loop {
        if let ServerMsg::Ack { seq, .. } = recv_on(&mut troll_b).await {
            assert_eq!(seq, 1);
            break;
        }
    }
    // Typing on node a reaches the member on node b (through Redis, never stored).
    send_on(&mut troll_a, &ClientMsg::Typing { room: room("r") }).await;
    loop {
        match recv_on(&mut bystander).await {
            ServerMsg::Typing { room: r, .. } => break assert_eq!(r, room("r")),
            ServerMsg::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    // The moderator on node a deletes it: members on both nodes are told.
    send_on(&mut moderator, &ClientMsg::Delete { room: room("r"), seq: 1 }).await;
    for ws in [&mut bystander, &mut troll_a] {
        loop {
            match recv_on(ws).await {
                ServerMsg::Deleted { seq, .. } => break assert_eq!(seq, 1),
                ServerMsg::Error { code, message, .. } => panic!("{code}: {message}"),
                _ => {}
            }
        }
    }
    // The history, through any node, holds the tombstone.
    let auth = format!("Bearer {API_KEY}");
    let page: serde_json::Value =
        request(b.server.addr, "GET", "/api/rooms/r/messages", &[("authorization", auth.as_str())], b"").await.json();
    assert_eq!(page["messages"][0]["body"]["kind"], "deleted", "{page}");
    // The backend removes the user through node b: both of their connections go.
    let removed =
        request(b.server.addr, "DELETE", "/api/rooms/r/members/troll", &[("authorization", auth.as_str())], b"").await;
    assert_eq!(removed.status, 200, "{}", removed.text());
    for ws in [&mut troll_a, &mut troll_b] {
        loop {
            if let ServerMsg::Removed { code, .. } = recv_on(ws).await {
                break assert_eq!(code, ErrorCode::Removed);
            }
        }
    }
    // And the removal holds on the other node: the old token does not get back in.
    let (mut again, _) =
        hello(&a.server, &mint_token_issued(&keys, "troll", "r", member, now_secs() - 5)).await.unwrap();
    assert_eq!(error_codes(&join_on(&mut again, "r").await), [ErrorCode::Removed]);
}

#[tokio::test]
async fn a_file_uploaded_through_one_node_is_listed_shared_and_downloaded_through_another() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let (_ann, grant_a) = join_with_grant(&a.server, "r").await;
    let (mut bob, grant_b) = join_with_grant(&b.server, "r").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let hash = sha256_hex(&data);
    let bearer = |grant: &str| format!("Bearer {grant}");
    let (auth_a, auth_b) = (bearer(&grant_a), bearer(&grant_b));
    let put = request(
        a.server.addr,
        "PUT",
        &format!("/api/rooms/r/blobs/{hash}?name=notes.bin"),
        &[("authorization", &auth_a)],
        &data,
    )
    .await;
    assert_eq!(put.status, 201, "{}", put.text());

    // Node b lists it, and a member there may share it in a message at once.
    let listed: serde_json::Value =
        request(b.server.addr, "GET", "/api/rooms/r/blobs", &[("authorization", &auth_b)], b"").await.json();
    assert_eq!(listed[0]["hash"], hash.as_str(), "{listed}");
    let file = Body::File {
        hash: BlobHash::try_from(hash.as_str()).unwrap(),
        name: FileName::try_from("notes.bin").unwrap(),
        size: data.len() as u64,
        mime: MediaType::try_from("application/octet-stream").unwrap(),
    };
    bob.send(&ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from("f1").unwrap(), body: file }).await;
    assert!(matches!(
        bob.recv_until(|m| matches!(m, ServerMsg::Ack { .. } | ServerMsg::Error { .. })).await.pop(),
        Some(ServerMsg::Ack { .. })
    ));
    // A file no node has is refused, with the code a single server gives.
    let unknown = Body::File {
        hash: BlobHash::try_from(sha256_hex(b"nothing").as_str()).unwrap(),
        name: FileName::try_from("x").unwrap(),
        size: 7,
        mime: MediaType::try_from("text/plain").unwrap(),
    };
    bob.send(&ClientMsg::Publish { room: room("r"), id: ClientMsgId::try_from("f2").unwrap(), body: unknown }).await;
    assert_eq!(bob.next_error().await, ErrorCode::UnknownBlob);

    // Node b fetches the bytes once from node a, then serves them itself, ranges included.
    let path = format!("/api/rooms/r/blobs/{hash}");
    let got = request(b.server.addr, "GET", &path, &[("authorization", &auth_b)], b"").await;
    assert_eq!(got.status, 200);
    assert!(got.body == data, "the same bytes");
    let range =
        request(b.server.addr, "GET", &path, &[("authorization", &auth_b), ("range", "bytes=1000-1999")], b"").await;
    assert_eq!((range.status, range.body.len()), (206, 1000));
    assert!(range.body[..] == data[1000..2000]);
    let mut conn = redis.connection().await;
    let mut holders: Vec<String> =
        redis::cmd("SMEMBERS").arg(format!("rc:{{r}}:file:{hash}")).query_async(&mut conn).await.unwrap();
    holders.sort();
    assert_eq!(holders, ["a", "b"], "node b holds it now too");

    // Only nodes may use the node-to-node path: a member's grant does not open it.
    let internal = format!("/internal/rooms/r/blobs/{hash}");
    assert_eq!(request(a.server.addr, "GET", &internal, &[("authorization", &auth_a)], b"").await.status, 403);
    assert_eq!(request(a.server.addr, "GET", &internal, &[], b"").await.status, 403);
}

#[tokio::test]
async fn a_resumable_upload_whose_chunks_alternate_between_nodes_completes() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = two_nodes(&redis, dir.path(), &[]).await;
    let (_ann, grant_a) = join_with_grant(&a.server, "r").await;
    let (_bob, grant_b) = join_with_grant(&b.server, "r").await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 253) as u8).collect();
    let hash = sha256_hex(&data);
    let auth = |grant: &str| format!("Bearer {grant}");
    let new =
        format!(r#"{{"hash":"{hash}","size":{},"name":"big.bin","mime":"application/octet-stream"}}"#, data.len());
    let headers = [("authorization", auth(&grant_a)), ("content-type", "application/json".to_owned())];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let created = request(a.server.addr, "POST", "/api/rooms/r/uploads", &headers, new.as_bytes()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let location = created.header("location").to_owned();
    // Three chunks: through b, a, b (each node with its own member's grant).
    let chunk = 1_000_000;
    for (i, (server, grant)) in [(&b, &grant_b), (&a, &grant_a), (&b, &grant_b)].into_iter().enumerate() {
        let offset = (i * chunk).to_string();
        let auth = auth(grant);
        let headers = [("authorization", auth.as_str()), ("upload-offset", offset.as_str())];
        let sent = request(server.server.addr, "PATCH", &location, &headers, &data[i * chunk..(i + 1) * chunk]).await;
        let expected = if i == 2 { 201 } else { 204 };
        assert_eq!(sent.status, expected, "chunk {i}: {}", sent.text());
        if i < 2 {
            assert_eq!(sent.header("upload-offset"), ((i + 1) * chunk).to_string());
        }
    }
    // Asking about it through either node gives the same answer; the file is whole.
    let state = request(b.server.addr, "HEAD", &location, &[("authorization", auth(&grant_b).as_str())], b"").await;
    assert_eq!(state.status, 404, "a finished upload is gone, whichever node is asked");
    let got = request(
        b.server.addr,
        "GET",
        &format!("/api/rooms/r/blobs/{hash}"),
        &[("authorization", auth(&grant_b).as_str())],
        b"",
    )
    .await;
    assert_eq!(got.status, 200);
    assert!(got.body == data);
}

#[tokio::test]
async fn a_node_keeps_the_only_copy_of_a_rooms_file_and_lets_a_shared_one_go() {
    let redis = RedisServer::start();
    let dir = dirs();
    // Files expire after a second, and the caches are swept every half second.
    let short = ["--blob-ttl", "1s", "--blob-upload-idle", "1s"];
    let (a, b) = (node(&redis, "a", dir.path(), &short), node(&redis, "b", dir.path(), &[]));
    ready(&a).await;
    ready(&b).await;
    let (_ann, grant_a) = join_with_grant(&a.server, "r").await;
    let (_bob, grant_b) = join_with_grant(&b.server, "r").await;
    let data = b"the only copy, for now".to_vec();
    let hash = sha256_hex(&data);
    let (auth_a, auth_b) = (format!("Bearer {grant_a}"), format!("Bearer {grant_b}"));
    let path = format!("/api/rooms/r/blobs/{hash}");
    assert_eq!(request(a.server.addr, "PUT", &path, &[("authorization", &auth_a)], &data).await.status, 201);
    let mut conn = redis.connection().await;
    let holders = |mut conn: redis::aio::MultiplexedConnection| {
        let key = format!("rc:{{r}}:file:{hash}");
        async move {
            let mut h: Vec<String> = redis::cmd("SMEMBERS").arg(key).query_async(&mut conn).await.unwrap();
            h.sort();
            h
        }
    };
    // Past its TTL, node a keeps it: nobody else has it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(holders(conn.clone()).await, ["a"]);
    assert_eq!(request(a.server.addr, "HEAD", &path, &[("authorization", &auth_a)], b"").await.status, 200);
    // Once node b has it too, node a's copy goes by its TTL, and the index says so.
    assert_eq!(request(b.server.addr, "GET", &path, &[("authorization", &auth_b)], b"").await.status, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while holders(conn.clone()).await != ["b"] {
        assert!(tokio::time::Instant::now() < deadline, "node a never let its shared copy go");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And node a gets it back from node b when asked.
    let again = request(a.server.addr, "GET", &path, &[("authorization", &auth_a)], b"").await;
    assert_eq!((again.status, again.body.to_vec()), (200, data));
    let _: () = redis::cmd("PING").query_async(&mut conn).await.unwrap();
}

/// The next broadcast state a member is told of that `pred` accepts.
async fn state_where(
    member: &mut Client,
    pred: impl Fn(&relaycast_shared::media::BroadcastState) -> bool,
) -> relaycast_shared::media::BroadcastState {
    loop {
        if let ServerMsg::Broadcast { state, .. } = member.recv().await {
            if pred(&state) {
                return state;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_lives_on_one_node_and_is_watched_through_any() {
    use relaycast::media::client::MediaClient;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use str0m::media::MediaKind;
    const KEY: &str = "stage-secret-key-for-the-cluster";
    let redis = RedisServer::start();
    let dir = dirs();
    let media = ["--stream-key", "stage=stage-secret-key-for-the-cluster", "--media-keyframe-interval", "300ms"];
    let url = redis.url();
    let args = |id: &'static str| {
        let mut args = vec!["--log", "warn", "--redis", url.as_str(), "--node-id", id, "--memory", "--node-ttl", "2s"];
        args.extend_from_slice(&media);
        args
    };
    let a = spawn_binary_with(&dir.path().join("a"), &args("a"), None);
    let b = spawn_binary_with(&dir.path().join("b"), &args("b"), None);
    ready(&a).await;
    ready(&b).await;
    let (base_a, base_b) = (format!("http://{}", a.server.addr), format!("http://{}", b.server.addr));
    // A member on node b follows the broadcast's state.
    let mut watcher = Client::connect(&b.server).await;
    let joined = watcher.join("stage", "watcher", None).await;
    let grant = joined
        .iter()
        .find_map(|m| match m {
            ServerMsg::Grant { token, .. } => Some(format!("Bearer {token}")),
            _ => None,
        })
        .expect("a grant");

    // Live through node a; viewers through a and through b (forwarded to a).
    let kinds = [MediaKind::Audio, MediaKind::Video];
    let publisher = MediaClient::start(&format!("{base_a}/whip/stage"), Some(KEY), true, &kinds).await.expect("WHIP");
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = spawn_publisher(publisher, stop.clone());
    assert!(state_where(&mut watcher, |s| s.live).await.since.is_some(), "node b's member sees it live");
    let mut seens = Vec::new();
    let mut viewers = Vec::new();
    for base in [&base_a, &base_b] {
        let viewer = MediaClient::start(&format!("{base}/whep/stage"), Some(KEY), false, &kinds).await.expect("WHEP");
        let seen = Arc::new(Seen::default());
        viewers.push(spawn_viewer(viewer, stop.clone(), seen.clone()));
        seens.push(seen);
    }
    state_where(&mut watcher, |s| s.viewers == 2).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !seens.iter().all(|s| s.video.load(Ordering::Relaxed) >= 20) {
        assert!(std::time::Instant::now() < deadline, "every viewer decodes video");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Recorded through node b: the recording runs where the broadcast is, and becomes a file
    // of the room that node b lists and serves.
    let key = format!("Bearer {KEY}");
    let started = request(b.server.addr, "POST", "/api/rooms/stage/recording", &[("authorization", &key)], b"").await;
    assert_eq!(started.status, 201, "{}", started.text());
    state_where(&mut watcher, |s| s.recording).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stopped = request(b.server.addr, "DELETE", "/api/rooms/stage/recording", &[("authorization", &key)], b"").await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let recording: relaycast_shared::media::RecordingInfo = stopped.json();
    assert!(recording.duration_ms >= 1000, "{recording:?}");
    let saved = watcher.recv_until(|m| matches!(m, ServerMsg::Message { .. })).await;
    assert!(saved.iter().any(|m| matches!(m, ServerMsg::Message { message, .. }
        if matches!(&message.body, Body::File { hash, .. } if *hash == recording.hash))));
    let file = request(
        b.server.addr,
        "GET",
        &format!("/api/rooms/stage/blobs/{}", recording.hash),
        &[("authorization", &grant)],
        b"",
    )
    .await;
    assert_eq!((file.status, file.body.len() as u64), (200, recording.size));

    // The viewer that came through node b ends through node b: its Location works anywhere.
    stop.store(true, Ordering::Relaxed);
    let mut clients = Vec::new();
    for viewer in viewers {
        clients.push(viewer.await.unwrap());
    }
    let through_b = clients.pop().unwrap();
    let path = through_b.session.path.clone();
    assert_eq!(request(b.server.addr, "DELETE", &path, &[], b"").await.status, 200, "closed through b");
    state_where(&mut watcher, |s| s.viewers == 1).await;

    // Node a dies with the broadcast: node b's member is told it ended, and a new publisher
    // may go live through node b.
    let (_, _publisher) = publishing.await.unwrap();
    drop(a);
    let killed = std::time::Instant::now();
    let over = state_where(&mut watcher, |s| !s.live).await;
    assert_eq!(over, Default::default(), "nothing left of it");
    // Within the node TTL (2 s) and a third of it, with room for a loaded machine.
    assert!(killed.elapsed() < Duration::from_secs(5), "told after {:?}", killed.elapsed());
    let again = MediaClient::start(&format!("{base_b}/whip/stage"), Some(KEY), true, &kinds).await.expect("WHIP on b");
    assert!(again.session.path.starts_with("/whip/stage/"));
    assert!(state_where(&mut watcher, |s| s.live).await.live);
}

#[tokio::test]
async fn an_address_makes_rooms_within_one_budget_across_nodes() {
    let redis = RedisServer::start();
    let dir = dirs();
    let limit = ["--rooms-per-ip-per-minute", "3"];
    let (a, b) = two_nodes(&redis, dir.path(), &limit).await;
    // The budget is counted per minute: keep the test inside one.
    let into_minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 60_000;
    if into_minute > 55_000 {
        tokio::time::sleep(Duration::from_millis((60_000 - into_minute) as u64 + 100)).await;
    }
    let (mut on_a, mut on_b) = (Client::connect(&a.server).await, Client::connect(&b.server).await);
    for r in ["r1", "r2"] {
        assert!(error_codes(&on_a.join(r, "Ann", None).await).is_empty());
    }
    assert!(error_codes(&on_b.join("r3", "Ann", None).await).is_empty());
    // A fourth new room in the same minute is refused, whichever node is asked...
    let refused = on_b.join("r4", "Ann", None).await;
    assert_eq!(error_codes(&refused), [ErrorCode::RateLimited]);
    // ...but joining a room that exists is not making one.
    assert!(error_codes(&on_b.join("r1", "Ann", None).await).is_empty());
}

#[tokio::test]
async fn closing_a_room_through_one_node_closes_it_on_every_node() {
    let redis = RedisServer::start();
    let dir = dirs();
    let (a, b) = backend_nodes(&redis, dir.path()).await;
    let (mut ann, grant_a) = join_with_grant(&a.server, "r").await;
    let (mut bob, grant_b) = join_with_grant(&b.server, "r").await;
    let epoch = epoch_of(&Client::connect(&b.server).await.join("r", "peek", None).await);
    assert_eq!(ann.publish_acked("r", "m1", "before").await, 1);
    // A file both nodes have.
    let data = b"meeting notes".to_vec();
    let hash = sha256_hex(&data);
    let path = format!("/api/rooms/r/blobs/{hash}");
    let (auth_a, auth_b) = (format!("Bearer {grant_a}"), format!("Bearer {grant_b}"));
    assert_eq!(request(a.server.addr, "PUT", &path, &[("authorization", &auth_a)], &data).await.status, 201);
    assert_eq!(request(b.server.addr, "GET", &path, &[("authorization", &auth_b)], b"").await.status, 200);

    let api = format!("Bearer {KEY}");
    let closed = request(
        a.server.addr,
        "DELETE",
        "/api/rooms/r?reason=over&history=delete&files=delete",
        &[("authorization", &api)],
        b"",
    )
    .await;
    assert_eq!(closed.status, 200, "{}", closed.text());
    for member in [&mut ann, &mut bob] {
        let told = member.recv_until(|m| matches!(m, ServerMsg::Removed { .. })).await;
        assert!(matches!(told.last(), Some(ServerMsg::Removed { code: ErrorCode::RoomClosed, .. })));
    }
    // Through node b: the history is gone (a new epoch), and so is the file.
    let mut again = Client::connect(&b.server).await;
    let fresh = again.join("r", "again", None).await;
    assert!(seqs(&fresh).is_empty());
    assert_ne!(epoch_of(&fresh), epoch);
    let grant = fresh.iter().find_map(|m| match m {
        ServerMsg::Grant { token, .. } => Some(format!("Bearer {token}")),
        _ => None,
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = request(b.server.addr, "GET", &path, &[("authorization", grant.as_deref().unwrap())], b"").await;
        if got.status == 404 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "node b still serves the closed room's file");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTPS request to `addr`, trusting exactly the certificate `fingerprint`: (status, body).
async fn https(
    addr: std::net::SocketAddr,
    fingerprint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use http_body_util::BodyExt;
    let trust = relaycast::tls::ClientTrust::Fingerprint(fingerprint.to_owned());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(relaycast::tls::client_config(&trust).unwrap())
        .connect(name, tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path).header("host", "localhost");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = sender
        .send_request(req.body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body))).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, String::from_utf8_lossy(&res.into_body().collect().await.unwrap().to_bytes()).into_owned())
}

#[tokio::test]
async fn nodes_serving_tls_themselves_reach_each_other_by_their_registered_certificates() {
    use str0m::media::MediaKind;
    let redis = RedisServer::start();
    let dir = dirs();
    let url = redis.url();
    let args = |id: &'static str| {
        vec!["--log", "warn", "--redis", url.as_str(), "--node-id", id, "--memory", "--tls-self-signed"]
            .into_iter()
            .chain(["--stream-key", "stage=stage-secret-key-over-tls"])
            .collect::<Vec<_>>()
    };
    let (a, b) = (
        spawn_binary_with(&dir.path().join("a"), &args("a"), None),
        spawn_binary_with(&dir.path().join("b"), &args("b"), None),
    );
    // Each node registers its address and certificate; a client may pin them from there too.
    let mut conn = redis.connection().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (fp_a, fp_b) = loop {
        let certs: std::collections::HashMap<String, String> =
            redis::cmd("HGETALL").arg("rc:nodes:cert").query_async(&mut conn).await.unwrap();
        if let (Some(fa), Some(fb)) = (certs.get("a"), certs.get("b")) {
            break (fa.clone(), fb.clone());
        }
        assert!(tokio::time::Instant::now() < deadline, "the nodes never registered their certificates");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_ne!(fp_a, fp_b, "each node its own self-signed certificate");
    let urls: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("rc:nodes:url").query_async(&mut conn).await.unwrap();
    assert!(urls["a"].starts_with("https://"), "{urls:?}");
    // A viewer's session opened on node a, closed through node b: b forwards over https.
    let auth = "Bearer stage-secret-key-over-tls";
    let sdp = offer(false, &[MediaKind::Video]);
    let headers = [("authorization", auth), ("content-type", "application/sdp")];
    let (status, body) = https(a.server.addr, &fp_a, "POST", "/whep/stage", &headers, sdp.as_bytes()).await;
    assert_eq!(status, 201, "{body}");
    // The Location, through node b (the session lives on node a).
    let mut conn2 = redis.connection().await;
    let session: Vec<String> = redis::cmd("KEYS").arg("rc:session:*").query_async(&mut conn2).await.unwrap();
    let id = session[0].trim_start_matches("rc:session:{").trim_end_matches('}').to_owned();
    let (status, body) = https(b.server.addr, &fp_b, "DELETE", &format!("/whep/stage/{id}"), &[], b"").await;
    assert_eq!(status, 200, "closed on node a through node b: {body}");
    let (status, _) = https(a.server.addr, &fp_a, "DELETE", &format!("/whep/stage/{id}"), &[], b"").await;
    assert_eq!(status, 404, "it is gone");
}

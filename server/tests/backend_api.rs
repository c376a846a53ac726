//! The backend API over real HTTP, as the app's backend would call it with curl: API keys,
//! posting as the app, history pages, presence, room lists, removals and closing rooms.

mod common;

use common::*;
use relaycast_shared::*;
use serde_json::{json, Value};

async fn api(server: &TestServer, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let reply = request(server.addr, method, path, &headers, body.as_bytes()).await;
    let json = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status >= 400 {
        assert_eq!(reply.header("relaycast-error"), json["code"].as_str().unwrap(), "the code is in the header too");
    }
    (reply.status, json)
}

async fn open_server(keys: &Keys) -> TestServer {
    let key = format!("backend={}", keys.path("api"));
    start(test_config(|c| c.api_key_files = vec![key])).await
}

#[tokio::test]
async fn the_backend_posts_pages_history_and_sees_rooms_and_presence() {
    let keys = Keys::new();
    let server = open_server(&keys).await;
    let key = Some(API_KEY);
    let mut member = Client::connect(&server).await;
    member.join("r", "Ada", None).await;

    // Without a key, with a wrong one: 401 unauthorized, and the same for /metrics.
    assert_eq!(api(&server, "GET", "/api/rooms", None, None).await.1["code"], "unauthorized");
    let (status, body) = api(&server, "GET", "/api/rooms", Some("backend-api-key-0123456789abcdeX"), None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    assert_eq!(http_get(server.addr, "/metrics").await.0, 401, "metrics need the key once keys are configured");
    let metrics =
        request(server.addr, "GET", "/metrics", &[("authorization", &format!("Bearer {API_KEY}"))], b"").await;
    assert_eq!(metrics.status, 200);

    // A post as the app: sequenced, stored, delivered like a member's message.
    let post = json!({"body": {"kind": "chat", "text": "Welcome, everyone"}, "name": "Support"});
    let (status, body) = api(&server, "POST", "/api/rooms/r/messages", key, Some(post)).await;
    assert_eq!((status, body["seq"].as_u64()), (201, Some(1)), "{body}");
    let ServerMsg::Message { message, .. } = member.recv().await else { panic!("the member gets the post") };
    assert_eq!((message.seq, message.from.as_str(), message.name.as_str()), (1, "app", "Support"));
    for i in 2..=4 {
        member.publish_acked("r", &format!("m{i}"), &format!("message {i}")).await;
    }

    // History, paged by sequence number.
    let (status, page) = api(&server, "GET", "/api/rooms/r/messages?after=0&limit=2", key, None).await;
    assert_eq!(status, 200);
    let seqs = |page: &Value| {
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!((seqs(&page), page["next_after"].as_u64(), page["last_seq"].as_u64()), (vec![1, 2], Some(2), Some(4)));
    let (_, page) = api(&server, "GET", "/api/rooms/r/messages?after=2&limit=2", key, None).await;
    assert_eq!((seqs(&page), page["next_after"].clone()), (vec![3, 4], Value::Null));
    assert_eq!(page["messages"][1]["body"]["text"], "message 4");

    // Presence and the list of rooms.
    let (_, members) = api(&server, "GET", "/api/rooms/r/members", key, None).await;
    let list = members["members"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["name"].as_str(), list[0]["peer_id"].as_str()), (Some("Ada"), Some(member.peer_id.as_str())));
    assert!(list[0]["since"].as_u64().unwrap() > 1_700_000_000_000);
    let mut other = Client::connect(&server).await;
    other.join("s", "Bo", None).await;
    let (_, rooms) = api(&server, "GET", "/api/rooms?limit=1", key, None).await;
    assert_eq!(rooms["rooms"][0]["room"], "r");
    assert_eq!(
        (rooms["rooms"][0]["members"].as_u64(), rooms["rooms"][0]["history_messages"].as_u64()),
        (Some(1), Some(4))
    );
    assert_eq!(rooms["next_after"], "r");
    let (_, rest) = api(&server, "GET", "/api/rooms?after=r", key, None).await;
    assert_eq!((rest["rooms"][0]["room"].as_str(), rest["next_after"].clone()), (Some("s"), Value::Null));

    // Bad input gets stable codes.
    let cases = [
        ("GET", "/api/rooms/nowhere/messages", None, 404, "unknown_room"),
        ("GET", "/api/rooms/nowhere/members", None, 404, "unknown_room"),
        ("GET", "/api/rooms?limit=5000", None, 400, "bad_request"),
        ("GET", "/api/rooms/r/messages?after=x", None, 400, "bad_request"),
        ("POST", "/api/rooms/r/messages", Some(json!({"body": {"kind": "shout"}})), 400, "bad_request"),
        ("POST", "/api/rooms/r/messages", Some(json!({"text": "no body"})), 400, "bad_request"),
        (
            "POST",
            "/api/rooms/r/messages",
            Some(json!({"body": {"kind": "chat", "text": "x"}, "name": ""})),
            400,
            "bad_request",
        ),
        ("PUT", "/api/rooms/r/members", None, 405, "method_not_allowed"),
        ("DELETE", "/api/rooms/r/members/a%20b", None, 400, "bad_request"),
    ];
    for (method, path, body, want_status, want_code) in cases {
        let (status, body) = api(&server, method, path, key, body).await;
        assert_eq!((status, body["code"].as_str()), (want_status, Some(want_code)), "{method} {path}");
    }
    let file = json!({"body": {"kind": "file", "hash": "a".repeat(64), "name": "x.bin", "size": 1, "mime": "application/octet-stream"}});
    assert_eq!(api(&server, "POST", "/api/rooms/r/messages", key, Some(file)).await.1["code"], "unknown_blob");
    server.stop().await;
}

#[tokio::test]
async fn removals_and_closing_reach_members_with_the_reason() {
    let keys = Keys::new();
    let server = token_server(&keys).await;
    let key = Some(API_KEY);
    let (mut ada, ada_grant, _) = member(&server, &keys, "ada", "r", "join,history,publish,upload,download").await;
    let (mut bo, _, _) = member(&server, &keys, "bo", "r", "join,history").await;
    recv_on(&mut ada).await; // bo joined

    // Remove bo from the room: told why; the old token does not get back in.
    let (status, body) = api(&server, "DELETE", "/api/rooms/r/members/bo?reason=Off%20topic", key, None).await;
    assert_eq!((status, body["connections_removed"].as_u64()), (200, Some(1)));
    let removed = recv_on(&mut bo).await;
    assert_eq!(
        removed,
        ServerMsg::Removed { room: room("r"), code: ErrorCode::Removed, reason: Reason::try_from("Off topic").ok() }
    );
    assert!(matches!(recv_on(&mut ada).await, ServerMsg::PeerLeft { .. }));
    assert_eq!(error_codes(&join_on(&mut bo, "r").await), vec![ErrorCode::Removed]);

    // Remove bo from the server: the connection is told and closed.
    let (status, _) = api(&server, "DELETE", "/api/users/bo?reason=Banned", key, None).await;
    assert_eq!(status, 200);
    let ServerMsg::Error { code, message, .. } = recv_on(&mut bo).await else { panic!() };
    assert_eq!((code, message.as_str()), (ErrorCode::Removed, "Banned"));
    assert_eq!(recv_close(&mut bo).await, (1008, "removed".into()));
    // Tokens issued before the removal are refused (iat has whole seconds: the same second
    // counts as before); one the app issues after it is a new start.
    let before = mint_token_issued(&keys, "bo", "r", "join", now_secs() - 60);
    assert_eq!(hello(&server, &before).await.err(), Some((ErrorCode::Removed, 1008)));
    let after = mint_token_issued(&keys, "bo", "r", "join", now_secs() + 1);
    assert!(hello(&server, &after).await.is_ok(), "a token issued after the removal is a new start");

    // Close the room with its history and files.
    let bytes = b"a file the room shared";
    let path = format!("/api/rooms/r/blobs/{}?name=a.txt", sha256_hex(bytes));
    let auth = format!("Bearer {ada_grant}");
    assert_eq!(request(server.addr, "PUT", &path, &[("authorization", &auth)], bytes).await.status, 201);
    let post = json!({"body": {"kind": "chat", "text": "closing soon"}});
    assert_eq!(api(&server, "POST", "/api/rooms/r/messages", key, Some(post)).await.0, 201);
    recv_on(&mut ada).await;
    let (status, body) =
        api(&server, "DELETE", "/api/rooms/r?reason=Meeting%20over&history=delete&files=delete", key, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["members_told"].as_u64(), body["files_deleted"].as_u64()), (Some(1), Some(1)));
    assert_eq!(
        recv_on(&mut ada).await,
        ServerMsg::Removed {
            room: room("r"),
            code: ErrorCode::RoomClosed,
            reason: Reason::try_from("Meeting over").ok()
        }
    );
    assert_eq!(api(&server, "GET", "/api/rooms/r/messages", key, None).await.1["code"], "unknown_room");
    assert_eq!(api(&server, "DELETE", "/api/rooms/r", key, None).await.1["code"], "unknown_room");
    // A new member of a new room r finds nothing of the old one.
    let (mut again, grant, _) = member(&server, &keys, "cy", "r", "join,history,download").await;
    let auth = format!("Bearer {grant}");
    assert_eq!(request(server.addr, "GET", &path, &[("authorization", &auth)], b"").await.status, 404);
    drop(again.close(None).await);
    server.stop().await;
}

#[tokio::test]
async fn a_removal_holds_across_a_restart() {
    let keys = Keys::new();
    let dir = tempfile::tempdir().unwrap();
    let durable = |c: &mut relaycast::Config| {
        c.memory = false;
        c.data_dir = dir.path().to_owned();
    };
    let server = start(token_config(&keys, durable)).await;
    let old = mint_token_issued(&keys, "eve", "r", "join", now_secs() - 60);
    let (mut eve, _) = hello(&server, &old).await.unwrap();
    join_on(&mut eve, "r").await;
    let (status, _) = api(&server, "DELETE", "/api/users/eve?reason=Banned", Some(API_KEY), None).await;
    assert_eq!(status, 200);
    server.stop().await;

    let server = start(token_config(&keys, durable)).await;
    assert_eq!(hello(&server, &old).await.err(), Some((ErrorCode::Removed, 1008)), "the restart forgot nothing");
    let after = mint_token_issued(&keys, "eve", "r", "join", now_secs() + 1);
    assert!(hello(&server, &after).await.is_ok(), "a token issued since is a new start");
    server.stop().await;
}

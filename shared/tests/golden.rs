//! Golden fixtures: the exact JSON of each message kind is checked in under
//! `tests/fixtures/`, so any change to the wire format shows up as a diff in review.
//! `RELAYCAST_BLESS=1 cargo test -p relaycast-shared --test golden` rewrites them.

#![cfg(not(target_arch = "wasm32"))]

use relaycast_shared::*;
use serde_json::json;
use std::path::PathBuf;

fn r(s: &str) -> RoomName {
    RoomName::try_from(s).unwrap()
}
fn p(s: &str) -> PeerId {
    PeerId::try_from(s).unwrap()
}
fn n(s: &str) -> DisplayName {
    DisplayName::try_from(s).unwrap()
}
fn id(s: &str) -> ClientMsgId {
    ClientMsgId::try_from(s).unwrap()
}

fn sample_message() -> RoomMessage {
    RoomMessage {
        seq: 42,
        from: p("k3x9Qa"),
        name: n("Ada"),
        id: id("c-17"),
        user: Some(UserId::try_from("user-7f3a").unwrap()),
        at: 1_795_000_000_000,
        body: Body::Chat { text: ChatText::try_from("hello, room").unwrap() },
    }
}

fn client_cases() -> Vec<(&'static str, ClientMsg)> {
    vec![
        ("hello", ClientMsg::Hello { protocol: PROTOCOL_VERSION, token: None, client: None }),
        (
            "hello_token",
            ClientMsg::Hello {
                protocol: PROTOCOL_VERSION,
                token: Some(AccessToken::try_from("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2ln").unwrap()),
                client: None,
            },
        ),
        (
            "hello_client",
            ClientMsg::Hello {
                protocol: PROTOCOL_VERSION,
                token: None,
                client: Some(ClientKey::try_from("q3Vd8x-T0pL9mZ2wYk4sRb").unwrap()),
            },
        ),
        (
            "refresh",
            ClientMsg::Refresh { token: AccessToken::try_from("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.bmV3").unwrap() },
        ),
        ("delete", ClientMsg::Delete { room: r("standup"), seq: 42 }),
        ("typing", ClientMsg::Typing { room: r("standup") }),
        (
            "remove",
            ClientMsg::Remove {
                room: r("standup"),
                peer: p("Zz81"),
                reason: Some(Reason::try_from("please keep it civil").unwrap()),
            },
        ),
        (
            "join_resume",
            ClientMsg::Join {
                room: r("standup"),
                name: n("Ada"),
                token: None,
                resume: Some(ResumeFrom { epoch: Epoch::try_from("e5f0a1").unwrap(), last_seq: 41 }),
            },
        ),
        ("join", ClientMsg::Join { room: r("standup"), name: n("Ada"), token: None, resume: None }),
        ("leave", ClientMsg::Leave { room: r("standup") }),
        (
            "signal_offer",
            ClientMsg::Signal { room: r("standup"), to: p("Zz81"), signal: Signal::Offer { sdp: "v=0\r\n".into() } },
        ),
        (
            "signal_candidate",
            ClientMsg::Signal {
                room: r("standup"),
                to: p("Zz81"),
                signal: Signal::Candidate {
                    candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_m_line_index: Some(0),
                },
            },
        ),
        ("signal_end", ClientMsg::Signal { room: r("standup"), to: p("Zz81"), signal: Signal::EndOfCandidates }),
        (
            "publish_chat",
            ClientMsg::Publish {
                room: r("standup"),
                id: id("c-17"),
                body: Body::Chat { text: ChatText::try_from("hello, room").unwrap() },
            },
        ),
        (
            "publish_file",
            ClientMsg::Publish {
                room: r("standup"),
                id: id("c-19"),
                body: Body::File {
                    hash: BlobHash::try_from("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
                        .unwrap(),
                    name: FileName::try_from("notes.txt").unwrap(),
                    size: 4,
                    mime: MediaType::try_from("text/plain").unwrap(),
                },
            },
        ),
        (
            "publish_edit",
            ClientMsg::Publish {
                room: r("standup"),
                id: id("c-19"),
                body: Body::Edit { of: 42, text: ChatText::try_from("Shipping the relay on Friday").unwrap() },
            },
        ),
        (
            "publish_data",
            ClientMsg::Publish {
                room: r("standup"),
                id: id("c-18"),
                body: Body::Data { data: json!({"cursor": [10, 20]}) },
            },
        ),
    ]
}

fn server_cases() -> Vec<(&'static str, ServerMsg)> {
    vec![
        (
            "welcome",
            ServerMsg::Welcome {
                protocol: PROTOCOL_VERSION,
                peer_id: p("k3x9Qa"),
                limits: ServerLimits {
                    max_frame_bytes: 65536,
                    max_rooms_per_connection: 16,
                    max_peers_per_room: 64,
                    messages_per_second: 200,
                    history_max_messages: 1000,
                    history_max_age_secs: 86400,
                },
                ice_servers: vec![IceServer {
                    urls: vec!["stun:stun.example.org:3478".into()],
                    username: None,
                    credential: None,
                }],
                user: Some(UserInfo {
                    id: UserId::try_from("user-7f3a").unwrap(),
                    name: n("Ada"),
                    expires: 1_795_003_600_000,
                }),
            },
        ),
        (
            "joined",
            ServerMsg::Joined {
                room: r("standup"),
                epoch: Epoch::try_from("e5f0a1").unwrap(),
                last_seq: 42,
                peers: vec![PeerInfo { id: p("Zz81"), name: n("Grace"), user: None, host: true }],
                rights: [Right::Join, Right::History, Right::Publish, Right::Signal].into_iter().collect(),
            },
        ),
        ("history", ServerMsg::History { room: r("standup"), messages: vec![sample_message()], done: true }),
        (
            "history_truncated",
            ServerMsg::HistoryTruncated { room: r("standup"), requested_after: 3, oldest_available: 10 },
        ),
        ("history_reset", ServerMsg::HistoryReset { room: r("standup"), epoch: Epoch::try_from("b7").unwrap() }),
        (
            "peer_joined",
            ServerMsg::PeerJoined {
                room: r("standup"),
                peer: PeerInfo {
                    id: p("Zz81"),
                    name: n("Grace"),
                    user: Some(UserId::try_from("user-22").unwrap()),
                    host: false,
                },
            },
        ),
        (
            "peer_updated",
            ServerMsg::PeerUpdated {
                room: r("standup"),
                peer: PeerInfo { id: p("Zz81"), name: n("Grace"), user: None, host: true },
            },
        ),
        ("peer_left", ServerMsg::PeerLeft { room: r("standup"), peer_id: p("Zz81") }),
        ("left", ServerMsg::Left { room: r("standup") }),
        (
            "signal_answer",
            ServerMsg::Signal { room: r("standup"), from: p("Zz81"), signal: Signal::Answer { sdp: "v=0\r\n".into() } },
        ),
        ("message", ServerMsg::Message { room: r("standup"), message: sample_message() }),
        ("ack", ServerMsg::Ack { room: r("standup"), id: id("c-17"), seq: 42 }),
        (
            "rights",
            ServerMsg::Rights {
                room: r("standup"),
                rights: [Right::Join, Right::Publish, Right::Broadcast].into_iter().collect(),
            },
        ),
        ("deleted", ServerMsg::Deleted { room: r("standup"), seq: 42 }),
        ("typing", ServerMsg::Typing { room: r("standup"), peer_id: p("Zz81") }),
        (
            "message_deleted",
            ServerMsg::Message { room: r("standup"), message: RoomMessage { body: Body::Deleted, ..sample_message() } },
        ),
        (
            "message_deletion",
            ServerMsg::Message {
                room: r("standup"),
                message: RoomMessage { seq: 43, body: Body::Deletion { of: 42 }, ..sample_message() },
            },
        ),
        (
            "message_edit",
            ServerMsg::Message {
                room: r("standup"),
                message: RoomMessage {
                    seq: 43,
                    body: Body::Edit { of: 42, text: ChatText::try_from("Shipping the relay on Friday").unwrap() },
                    ..sample_message()
                },
            },
        ),
        ("token_expiring", ServerMsg::TokenExpiring { expires: 1_795_003_600_000 }),
        ("token_accepted", ServerMsg::TokenAccepted { expires: 1_795_007_200_000 }),
        (
            "removed",
            ServerMsg::Removed {
                room: r("standup"),
                code: ErrorCode::Removed,
                reason: Some(Reason::try_from("please keep it civil").unwrap()),
            },
        ),
        ("room_closed", ServerMsg::Removed { room: r("standup"), code: ErrorCode::RoomClosed, reason: None }),
        ("stream_key", ServerMsg::StreamKey { room: r("standup"), key: "1795003600000.k3x9Qa.c2lnbmF0dXJl".into() }),
        (
            "broadcast",
            ServerMsg::Broadcast {
                room: r("standup"),
                state: media::BroadcastState {
                    live: true,
                    since: Some(1_795_000_000_000),
                    viewers: 3,
                    recording: true,
                    publisher: Some(p("Zz81")),
                },
            },
        ),
        (
            "grant",
            ServerMsg::Grant {
                room: r("standup"),
                token: "1795003600.k3x9Qa.c2lnbmF0dXJl".into(),
                expires: 1_795_003_600_000,
            },
        ),
        (
            "error",
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                message: "too many messages".into(),
                room: Some(r("standup")),
                id: Some(id("c-19")),
            },
        ),
    ]
}

fn check(dir: &str, name: &str, actual: &serde_json::Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(format!("{name}.json"));
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("RELAYCAST_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &pretty).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing fixture {}: run with RELAYCAST_BLESS=1", path.display()));
    assert_eq!(expected, pretty, "wire format of {dir}/{name} changed");
}

#[test]
fn a_client_key_has_a_stable_public_ref_and_must_be_long_enough() {
    let key = ClientKey::try_from("q3Vd8x-T0pL9mZ2wYk4sRb").unwrap();
    assert_eq!(key.client_ref().len(), 16);
    assert_eq!(key.client_ref(), ClientKey::try_from("q3Vd8x-T0pL9mZ2wYk4sRb").unwrap().client_ref());
    assert_ne!(key.client_ref(), ClientKey::try_from("q3Vd8x-T0pL9mZ2wYk4sRc").unwrap().client_ref());
    assert!(!key.client_ref().contains("q3Vd8x"), "the ref does not reveal the key");
    assert!(ClientKey::try_from("short").is_err());
    assert!(ClientKey::try_from("has a space in it ok").is_err());
}

#[test]
fn client_messages_match_fixtures() {
    for (name, msg) in client_cases() {
        let text = encode(&msg);
        check("client", name, &serde_json::from_str(&text).unwrap());
        assert_eq!(decode_client(&text, usize::MAX).unwrap(), msg);
    }
}

#[test]
fn server_messages_match_fixtures() {
    for (name, msg) in server_cases() {
        let text = encode(&msg);
        check("server", name, &serde_json::from_str(&text).unwrap());
        assert_eq!(decode_server(&text).unwrap(), msg);
    }
}

#[test]
fn every_client_type_has_a_fixture() {
    let covered: Vec<String> = client_cases()
        .iter()
        .map(|(_, m)| serde_json::to_value(m).unwrap()["type"].as_str().unwrap().to_owned())
        .collect();
    for t in ClientMsg::TYPES {
        assert!(covered.iter().any(|c| c == t), "no fixture for client type {t}");
    }
}

#[test]
fn every_server_type_has_a_fixture_and_every_tag_is_listed() {
    let cases = server_cases();
    for (_, msg) in &cases {
        let tag = serde_json::to_value(msg).unwrap()["type"].as_str().unwrap().to_owned();
        assert_eq!(tag, msg.kind(), "kind() names the serde tag");
    }
    for t in ServerMsg::TYPES {
        assert!(cases.iter().any(|(_, m)| m.kind() == *t), "no fixture for server type {t}");
    }
    // kind()'s match is exhaustive, so every variant's tag is listed in TYPES.
    for (_, msg) in &cases {
        assert!(ServerMsg::TYPES.contains(&msg.kind()), "{} missing from ServerMsg::TYPES", msg.kind());
    }
    for (_, msg) in client_cases() {
        assert_eq!(serde_json::to_value(&msg).unwrap()["type"], msg.kind());
        assert!(ClientMsg::TYPES.contains(&msg.kind()));
    }
    // A type the decoder knows is told apart from an unknown one.
    let err = decode_server(r#"{"type":"broadcast","room":"r"}"#).unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidField, "{err}");
}

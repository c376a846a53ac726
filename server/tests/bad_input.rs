//! Hostile and broken input over a real WebSocket: each gets an error frame with a stable
//! code and the connection stays usable, or it is closed with the right close code.

mod common;

use common::*;
use futures_util::SinkExt;
use relaycast_shared::*;
use tokio_tungstenite::tungstenite::Message;

async fn greeted(server: &TestServer) -> Client {
    let mut c = Client::connect(server).await;
    c.join("r", "tester", None).await;
    c
}

/// After an error, the same connection still works: a publish is acked.
async fn still_usable(c: &mut Client) {
    let seq = c.publish_acked("r", "after-error", "still here").await;
    assert!(seq >= 1);
}

async fn send_text(c: &mut Client, text: &str) {
    c.ws.send(Message::Text(text.into())).await.unwrap();
}

#[tokio::test]
async fn malformed_unknown_and_invalid_frames_get_codes_and_the_connection_stays() {
    let server = start(test_config(|_| {})).await;
    let mut c = greeted(&server).await;
    let cases = [
        ("{not json", ErrorCode::Malformed),
        ("[]", ErrorCode::Malformed),
        (r#"{"room":"r"}"#, ErrorCode::Malformed),
        (r#"{"type":"teleport","room":"r"}"#, ErrorCode::UnknownType),
        (r#"{"type":"join","room":"bad room!","name":"x"}"#, ErrorCode::InvalidField),
        (r#"{"type":"join","room":"r","name":""}"#, ErrorCode::InvalidField),
        // Rooms a URL normalizer would rewrite, and names that are not one visible line.
        (r#"{"type":"join","room":".","name":"x"}"#, ErrorCode::InvalidField),
        (r#"{"type":"join","room":"..","name":"x"}"#, ErrorCode::InvalidField),
        (r#"{"type":"join","room":"a%2f","name":"x"}"#, ErrorCode::InvalidField),
        (r#"{"type":"join","room":"r2","name":"two\nlines"}"#, ErrorCode::InvalidField),
        (r#"{"type":"join","room":"r2","name":"tab\there"}"#, ErrorCode::InvalidField),
        (r#"{"type":"join","room":"r2","name":"\u200b\u200b"}"#, ErrorCode::InvalidField),
        (
            r#"{"type":"publish","room":"r","id":"has space","body":{"kind":"chat","text":"x"}}"#,
            ErrorCode::InvalidField,
        ),
        (r#"{"type":"publish","room":"r","id":"1","body":{"kind":"chat","text":"   "}}"#, ErrorCode::InvalidField),
        (r#"{"type":"signal","room":"r","to":"../etc","signal":{"kind":"offer","sdp":""}}"#, ErrorCode::InvalidField),
    ];
    for (frame, code) in cases {
        send_text(&mut c, frame).await;
        assert_eq!(c.next_error().await, code, "for {frame}");
    }
    still_usable(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn binary_frames_are_refused_and_the_connection_stays() {
    let server = start(test_config(|_| {})).await;
    let mut c = greeted(&server).await;
    c.ws.send(Message::Binary(vec![0, 159, 146, 150].into())).await.unwrap();
    assert_eq!(c.next_error().await, ErrorCode::BinaryUnsupported);
    still_usable(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let server = start(test_config(|c| c.max_frame_bytes = 1024)).await;
    let mut c = greeted(&server).await;
    let mut bystander = greeted(&server).await;
    c.recv().await; // bystander joined
    let _ = c.ws.send(Message::Text("x".repeat(4096).into())).await;
    let mut code = None;
    // The error frame, then the close frame.
    loop {
        match tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut c.ws)).await.unwrap() {
            Some(Ok(Message::Text(t))) => {
                if let Ok(ServerMsg::Error { code: e, .. }) = decode_server(&t) {
                    assert_eq!(e, ErrorCode::FrameTooLarge);
                }
            }
            Some(Ok(Message::Close(Some(f)))) => {
                code = Some(u16::from(f.code));
                break;
            }
            _ => break,
        }
    }
    assert_eq!(code, Some(1009));
    // The server is fine and tells the others.
    assert!(matches!(bystander.recv().await, ServerMsg::PeerLeft { .. }));
    still_usable(&mut bystander).await;
    server.stop().await;
}

#[tokio::test]
async fn messages_before_hello_and_before_join() {
    let server = start(test_config(|_| {})).await;
    let mut ws = raw_connect(&server).await;
    send_on(&mut ws, &ClientMsg::Leave { room: room("r") }).await;
    assert!(matches!(recv_on(&mut ws).await, ServerMsg::Error { code: ErrorCode::HelloRequired, .. }));
    send_on(&mut ws, &ClientMsg::hello()).await;
    assert!(matches!(recv_on(&mut ws).await, ServerMsg::Welcome { .. }));
    let mut c = Client::connect(&server).await;
    c.publish("nowhere", "p1", "hello?").await;
    assert_eq!(c.next_error().await, ErrorCode::NotJoined);
    c.send(&ClientMsg::Leave { room: room("nowhere") }).await;
    assert_eq!(c.next_error().await, ErrorCode::NotJoined);
    c.join("r", "late", None).await;
    still_usable(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn signaling_an_unknown_peer() {
    let server = start(test_config(|_| {})).await;
    let mut c = greeted(&server).await;
    let to = PeerId::try_from("nobody").unwrap();
    c.send(&ClientMsg::Signal { room: room("r"), to, signal: Signal::EndOfCandidates }).await;
    assert_eq!(c.next_error().await, ErrorCode::UnknownPeer);
    // Signaling oneself is refused the same way.
    let me = c.peer_id.clone();
    c.send(&ClientMsg::Signal { room: room("r"), to: me, signal: Signal::EndOfCandidates }).await;
    assert_eq!(c.next_error().await, ErrorCode::UnknownPeer);
    still_usable(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn wrong_protocol_version_is_refused_with_a_close() {
    let server = start(test_config(|_| {})).await;
    let mut ws = raw_connect(&server).await;
    send_on(&mut ws, &ClientMsg::Hello { protocol: PROTOCOL_VERSION + 1, token: None, client: None }).await;
    match recv_on(&mut ws).await {
        ServerMsg::Error { code, message, .. } => {
            assert_eq!(code, ErrorCode::UnsupportedProtocol);
            assert!(message.contains(&PROTOCOL_VERSION.to_string()), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(recv_close(&mut ws).await, (1008, "unsupported_protocol".into()));
    server.stop().await;
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_others_are_unaffected() {
    let server = start(test_config(|c| {
        c.messages_per_second = 50;
        c.message_burst = 20;
    }))
    .await;
    let mut flooder = greeted(&server).await;
    let mut other = greeted(&server).await;
    flooder.recv().await; // other joined
    for i in 0..500 {
        flooder.publish("r", &format!("f{i}"), "spam").await;
    }
    let mut acked = 0;
    let mut limited = 0;
    while acked + limited < 500 {
        match flooder.recv().await {
            ServerMsg::Ack { .. } => acked += 1,
            ServerMsg::Error { code: ErrorCode::RateLimited, id: Some(_), .. } => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!((20..=40).contains(&acked), "burst plus refill, got {acked}");
    assert_eq!(acked + limited, 500, "every message answered, none lost silently");
    // The other peer got exactly the accepted ones, and can still talk.
    let got =
        other.recv_until(|m| matches!(m, ServerMsg::Message { message, .. } if message.seq == acked as u64)).await;
    assert_eq!(seqs(&got), (1..=acked as u64).collect::<Vec<_>>());
    still_usable(&mut other).await;
    assert!(server.metric("relaycast_rate_limited_total").await >= limited as u64);
    server.stop().await;
}

#[tokio::test]
async fn garbage_bytes_on_the_socket_do_not_hurt_the_server() {
    use tokio::io::AsyncWriteExt;
    let server = start(test_config(|_| {})).await;
    // Not HTTP at all, then a broken WebSocket frame after a real handshake.
    let mut raw = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    raw.write_all(&[0xff; 4096]).await.unwrap();
    drop(raw);
    let mut c = greeted(&server).await;
    let mut ws = raw_connect(&server).await;
    ws.get_mut().get_mut_ref_tcp().write_all(&[0x81, 0xff, 0, 0, 0, 0, 0, 0, 0, 1]).await.ok();
    drop(ws);
    still_usable(&mut c).await;
    server.stop().await;
}

trait TcpRef {
    fn get_mut_ref_tcp(&mut self) -> &mut tokio::net::TcpStream;
}
impl TcpRef for tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream> {
    fn get_mut_ref_tcp(&mut self) -> &mut tokio::net::TcpStream {
        match self {
            tokio_tungstenite::MaybeTlsStream::Plain(s) => s,
            _ => unreachable!("tests use plain TCP"),
        }
    }
}

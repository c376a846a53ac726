//! The media relay against real WebRTC peers (str0m clients on their own UDP sockets):
//! forwarding, keyframe requests, broadcast state, the publisher leaving and coming back,
//! bad input, and no leaks.

mod common;

use common::*;
use relaycast::media::client::{ClientEvent, MediaClient};
use relaycast_shared::media::BroadcastState;
use relaycast_shared::ServerMsg;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

const KEY: &str = "stage-secret-key";

async fn media_server() -> TestServer {
    start(test_config(|c| {
        c.stream_keys = vec![(room("stage"), KEY.to_owned())];
        c.media_keyframe_interval = Duration::from_millis(300);
    }))
    .await
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_metric(server: &TestServer, name: &str, value: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = server.metric(name).await;
        if now == value {
            return;
        }
        assert!(Instant::now() < deadline, "{name} stayed {now}, expected {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next broadcast state the member is told of.
async fn next_state(member: &mut Client) -> BroadcastState {
    loop {
        if let ServerMsg::Broadcast { state, .. } = member.recv().await {
            return state;
        }
    }
}

async fn state_where(member: &mut Client, pred: impl Fn(&BroadcastState) -> bool) -> BroadcastState {
    loop {
        let state = next_state(member).await;
        if pred(&state) {
            return state;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_reaches_every_viewer_who_start_at_a_keyframe() {
    let server = media_server().await;
    let base = format!("http://{}", server.addr);
    let mut member = Client::connect(&server).await;
    member.join("stage", "watcher", None).await;

    let stop = Arc::new(AtomicBool::new(false));
    let publisher =
        MediaClient::start(&format!("{base}/whip/stage"), Some(KEY), true, &[MediaKind::Audio, MediaKind::Video])
            .await
            .expect("WHIP publish");
    assert!(publisher.session.path.starts_with("/whip/stage/"), "Location: {}", publisher.session.path);
    let live = state_where(&mut member, |s| s.live).await;
    assert!(live.since.is_some());
    let publishing = spawn_publisher(publisher, stop.clone());

    // Viewers join mid-broadcast, one with the stream key, others with a member's grant.
    let (_member2, grant) = join_with_grant(&server, "stage").await;
    let mut viewers = Vec::new();
    let mut seens = Vec::new();
    for i in 0..3 {
        let token = if i == 0 { KEY.to_owned() } else { grant.clone() };
        let client = MediaClient::start(
            &format!("{base}/whep/stage"),
            Some(&token),
            false,
            &[MediaKind::Audio, MediaKind::Video],
        )
        .await
        .expect("WHEP view");
        let seen = Arc::new(Seen::default());
        viewers.push(spawn_viewer(client, stop.clone(), seen.clone()));
        seens.push(seen);
    }
    state_where(&mut member, |s| s.viewers == 3).await;
    wait_for("every viewer to get 30 video frames and 30 audio frames", || {
        seens.iter().all(|s| s.video.load(Ordering::Relaxed) >= 30 && s.audio.load(Ordering::Relaxed) >= 30)
    })
    .await;
    for seen in &seens {
        assert_eq!(seen.first_video_keyframe.load(Ordering::Relaxed), 1, "a viewer's video starts at a keyframe");
        assert!(seen.first_video_ms.load(Ordering::Relaxed) < 3000, "first frame within 3 s");
    }
    // Three viewers joining at once asked for keyframes; the relay sent the publisher few.
    let sent = server.metric("relaycast_media_keyframe_requests_total").await;
    assert!((1..=3).contains(&sent), "keyframe requests to the publisher: {sent}");

    // The publisher leaves: viewers are told, and stay.
    stop.store(true, Ordering::Relaxed);
    let (requests, publisher) = publishing.await.unwrap();
    assert!(requests >= 1, "the publisher was asked for a keyframe");
    let viewer_clients: Vec<MediaClient> =
        futures_util::future::join_all(viewers).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(publisher.close().await.unwrap(), 200);
    let ended = state_where(&mut member, |s| !s.live).await;
    assert_eq!(ended.viewers, 3, "viewers stay for the next broadcast");

    // It comes back: the same viewers see it again, from a keyframe.
    let stop = Arc::new(AtomicBool::new(false));
    let seens: Vec<Arc<Seen>> = (0..3).map(|_| Arc::new(Seen::default())).collect();
    let viewers: Vec<_> =
        viewer_clients.into_iter().zip(&seens).map(|(c, seen)| spawn_viewer(c, stop.clone(), seen.clone())).collect();
    let publisher =
        MediaClient::start(&format!("{base}/whip/stage"), Some(KEY), true, &[MediaKind::Audio, MediaKind::Video])
            .await
            .expect("publish again");
    state_where(&mut member, |s| s.live).await;
    let publishing = spawn_publisher(publisher, stop.clone());
    wait_for("the returning broadcast to reach every viewer", || {
        seens.iter().all(|s| s.video.load(Ordering::Relaxed) >= 10)
    })
    .await;
    assert!(seens.iter().all(|s| s.first_video_keyframe.load(Ordering::Relaxed) == 1));
    stop.store(true, Ordering::Relaxed);
    let (_, publisher) = publishing.await.unwrap();
    publisher.close().await.unwrap();
    for viewer in viewers {
        assert_eq!(viewer.await.unwrap().close().await.unwrap(), 200);
    }

    // Nothing is left: sessions, their tasks, routes, rooms.
    for name in ["relaycast_media_sessions", "relaycast_media_tasks", "relaycast_media_routes", "relaycast_media_rooms"]
    {
        wait_metric(&server, name, 0).await;
    }
    assert!(server.metric("relaycast_media_frames_forwarded_total").await > 200);
    let idle = state_where(&mut member, |s| *s == BroadcastState::default()).await;
    assert_eq!(idle.viewers, 0);
    server.stop().await;
}

async fn post(server: &TestServer, path: &str, token: Option<&str>, content_type: &str, body: &str) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", content_type)];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    request(server.addr, "POST", path, &headers, body.as_bytes()).await
}

#[tokio::test]
async fn bad_offers_tokens_and_sessions_get_plain_errors() {
    let server = media_server().await;
    let sdp = "application/sdp";
    let good = offer(true, &[MediaKind::Video]);
    let cases: Vec<(Reply, u16, &str)> = vec![
        (post(&server, "/whip/stage", Some(KEY), sdp, "hello").await, 400, "malformed_sdp"),
        (post(&server, "/whip/stage", Some(KEY), sdp, "v=0\r\nm=video x\r\n").await, 400, "malformed_sdp"),
        (
            post(
                &server,
                "/whip/stage",
                Some(KEY),
                sdp,
                &good.replace("VP8/90000", "AV1/90000").replace("H264/90000", "AV1/90000"),
            )
            .await,
            400,
            "no_usable_codec",
        ),
        (
            post(&server, "/whip/stage", Some(KEY), sdp, &offer(false, &[MediaKind::Video])).await,
            400,
            "no_usable_codec",
        ),
        (post(&server, "/whip/stage", None, sdp, &good).await, 401, "token_required"),
        (post(&server, "/whip/stage", Some("wrong-key-123"), sdp, &good).await, 403, "access_denied"),
        (post(&server, "/whip/other", Some(KEY), sdp, &good).await, 403, "access_denied"),
        (post(&server, "/whip/stage", Some(KEY), "application/json", &good).await, 415, "unsupported_media_type"),
        (post(&server, "/whip/stage", Some(KEY), "application/sdpx", &good).await, 415, "unsupported_media_type"),
        (
            request(server.addr, "DELETE", &format!("/whip/stage/{}", "0".repeat(32)), &[], b"").await,
            404,
            "unknown_session",
        ),
        (request(server.addr, "DELETE", "/whep/stage/../../etc", &[], b"").await, 404, "not_found"),
        (request(server.addr, "GET", "/whip/stage", &[], b"").await, 405, "method_not_allowed"),
        (post(&server, "/api/rooms/stage/recording", Some(KEY), "application/json", "").await, 409, "not_live"),
    ];
    for (i, (reply, status, code)) in cases.iter().enumerate() {
        assert_eq!((reply.status, reply.header("relaycast-error")), (*status, *code), "case {i}: {:?}", reply.text());
        assert_eq!(reply.header("content-type"), "application/json", "case {i}");
        assert_eq!(reply.json::<serde_json::Value>()["code"], *code, "case {i}: one error format");
        assert!(!reply.text().trim().is_empty(), "case {i} explains itself");
    }
    let unsupported = &cases[2].0;
    assert!(unsupported.text().contains("av1"), "names what was offered: {}", unsupported.text());

    // A second publisher on a busy room.
    let first = post(&server, "/whip/stage", Some(KEY), sdp, &good).await;
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.header("content-type"), "application/sdp");
    let second = post(&server, "/whip/stage", Some(KEY), sdp, &offer(true, &[MediaKind::Video])).await;
    assert_eq!((second.status, second.header("relaycast-error")), (409, "publisher_busy"));

    // Garbage at the media port: counted, dropped, and the relay still works.
    let answer = first.text();
    let port: u16 = answer
        .lines()
        .find(|l| l.starts_with("a=candidate"))
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|p| p.parse().ok())
        .expect("a candidate in the answer");
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut junk: Vec<Vec<u8>> = vec![vec![], vec![0], vec![0xff; 1500], vec![0x80; 12], vec![0x16, 0xfe, 0xfd, 0, 0]];
    let mut stun = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[1; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x04, b'n', b'o', b'p', b'e']);
    junk.push(stun);
    for _ in 0..50 {
        for j in &junk {
            udp.send_to(j, ("127.0.0.1", port)).await.unwrap();
        }
        // Paced, so the socket's receive buffer is not what drops them.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deadline = Instant::now() + WAIT;
    while server.metric("relaycast_media_datagrams_unrouted_total").await < 250 {
        assert!(Instant::now() < deadline, "garbage was not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let location = first.header("location").to_owned();
    assert_eq!(request(server.addr, "DELETE", &location, &[], b"").await.status, 200);
    assert_eq!(request(server.addr, "DELETE", &location, &[], b"").await.status, 404, "deleted once");

    // The relay is fine: a real publisher connects.
    let mut publisher =
        MediaClient::start(&format!("http://{}/whip/stage", server.addr), Some(KEY), true, &[MediaKind::Video])
            .await
            .unwrap();
    publisher.wait_connected(WAIT).await.unwrap();
    publisher.close().await.unwrap();
    for name in ["relaycast_media_sessions", "relaycast_media_tasks", "relaycast_media_routes", "relaycast_media_rooms"]
    {
        wait_metric(&server, name, 0).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_session_that_never_connects_is_closed() {
    let server = start(test_config(|c| {
        c.stream_keys = vec![(room("stage"), KEY.to_owned())];
        c.media_connect_timeout = Duration::from_millis(500);
    }))
    .await;
    let reply = post(&server, "/whep/stage", Some(KEY), "application/sdp", &offer(false, &[MediaKind::Video])).await;
    assert_eq!(reply.status, 201);
    assert_eq!(server.metric("relaycast_media_sessions").await, 1);
    wait_metric(&server, "relaycast_media_sessions", 0).await;
    wait_metric(&server, "relaycast_media_tasks", 0).await;
    wait_metric(&server, "relaycast_media_routes", 0).await;
    server.stop().await;
}

#[tokio::test]
async fn the_first_member_owns_the_room_and_its_stream_key_which_ends_with_ownership() {
    let server = start(test_config(|_| {})).await;
    let mut owner = Client::connect(&server).await;
    let joined = owner.join("hall", "owner", None).await;
    let key = joined
        .iter()
        .find_map(|m| match m {
            ServerMsg::StreamKey { key, .. } => Some(key.clone()),
            _ => None,
        })
        .expect("the first member gets the stream key");
    let (mut guest, grant) = join_with_grant(&server, "hall").await;
    let good = offer(true, &[MediaKind::Video]);
    let reply = post(&server, "/whip/hall", Some(&grant), "application/sdp", &good).await;
    assert_eq!(
        (reply.status, reply.header("relaycast-error")),
        (403, "access_denied"),
        "a member's grant does not publish"
    );
    let reply = post(&server, "/whip/hall", Some(&key), "application/sdp", &good).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    request(server.addr, "DELETE", reply.header("location"), &[], b"").await;

    // The owner leaves: the guest owns the room now, with a key of its own.
    drop(owner);
    let new_key = loop {
        if let ServerMsg::StreamKey { key, .. } = guest.recv().await {
            break key;
        }
    };
    let reply = post(&server, "/whip/hall", Some(&new_key), "application/sdp", &offer(true, &[MediaKind::Video])).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    request(server.addr, "DELETE", reply.header("location"), &[], b"").await;
    // The old owner's key died with its ownership: it neither goes live nor records.
    let stale = post(&server, "/whip/hall", Some(&key), "application/sdp", &offer(true, &[MediaKind::Video])).await;
    assert_eq!((stale.status, stale.header("relaycast-error")), (403, "access_denied"), "{}", stale.text());
    assert!(stale.text().contains("no longer in the room"), "{}", stale.text());
    let record = post(&server, "/api/rooms/hall/recording", Some(&key), "application/json", "").await;
    assert_eq!(record.status, 403);
    // A member's grant watches while it is a member, and not after.
    let (member, watch_grant) = join_with_grant(&server, "hall").await;
    let watch = || offer(false, &[MediaKind::Video]);
    let reply = post(&server, "/whep/hall", Some(&watch_grant), "application/sdp", &watch()).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    request(server.addr, "DELETE", reply.header("location"), &[], b"").await;
    drop(member);
    let deadline = Instant::now() + WAIT;
    loop {
        let reply = post(&server, "/whep/hall", Some(&watch_grant), "application/sdp", &watch()).await;
        if reply.status == 403 {
            assert!(reply.text().contains("no longer in the room"), "{}", reply.text());
            break;
        }
        assert!(Instant::now() < deadline, "the grant still watches after its holder left");
        request(server.addr, "DELETE", reply.header("location"), &[], b"").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

/// A synthetic H.264 access unit (Annex B): SPS, PPS and an IDR slice for a keyframe, one
/// non-IDR slice otherwise.
fn h264_frame(n: u32, keyframe: bool) -> Vec<u8> {
    let mut frame = Vec::new();
    if keyframe {
        frame.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8]);
        frame.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80]);
    }
    frame.extend_from_slice(&[0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]);
    frame.extend_from_slice(&n.to_be_bytes().map(|b| b | 0x80));
    frame.resize(frame.len() + 900, 0x5a);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_is_forwarded_to_viewers_that_offer_it() {
    use str0m::format::Codec;
    let server = media_server().await;
    let base = format!("http://{}", server.addr);
    let kinds = [MediaKind::Audio, MediaKind::Video];
    let mut publisher =
        MediaClient::start_with_codecs(&format!("{base}/whip/stage"), Some(KEY), true, &kinds, &[Codec::H264])
            .await
            .expect("an H.264-only publisher is accepted");
    publisher.wait_connected(WAIT).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let both = Arc::new(Seen::default());
    let vp8_only = Arc::new(Seen::default());
    let viewer = MediaClient::start_with_codecs(
        &format!("{base}/whep/stage"),
        Some(KEY),
        false,
        &kinds,
        &[Codec::Vp8, Codec::H264],
    )
    .await
    .unwrap();
    let other = MediaClient::start(&format!("{base}/whep/stage"), Some(KEY), false, &kinds).await.unwrap();
    let viewers =
        [spawn_viewer(viewer, stop.clone(), both.clone()), spawn_viewer(other, stop.clone(), vp8_only.clone())];

    let start = Instant::now();
    let mut n = 0u32;
    let mut keyframe = true;
    while both.video.load(Ordering::Relaxed) < 20 || vp8_only.audio.load(Ordering::Relaxed) < 20 {
        assert!(start.elapsed() < WAIT, "H.264 frames never reached the viewer that offered H.264");
        let due = start + Duration::from_millis(u64::from(n) * 33);
        let mut asked = false;
        publisher.pump(due, |e| asked |= matches!(e, ClientEvent::KeyframeRequest { .. })).await.unwrap();
        keyframe |= asked;
        let time = str0m::media::MediaTime::new(u64::from(n) * 3000, str0m::media::Frequency::NINETY_KHZ);
        publisher.write(MediaKind::Video, 0, time, &h264_frame(n, keyframe)).unwrap();
        let audio = str0m::media::MediaTime::new(u64::from(n) * 1440, str0m::media::Frequency::FORTY_EIGHT_KHZ);
        publisher.write(MediaKind::Audio, 0, audio, &[0xfc; 80]).unwrap();
        keyframe = false;
        n += 1;
    }
    assert_eq!(both.first_video_keyframe.load(Ordering::Relaxed), 1, "starts at an IDR frame");
    // A viewer that offered only VP8 gets the audio, and no video it could not decode.
    assert_eq!(vp8_only.video.load(Ordering::Relaxed), 0);
    stop.store(true, Ordering::Relaxed);
    for v in viewers {
        v.await.unwrap().close().await.unwrap();
    }
    publisher.close().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn media_sessions_are_limited_per_address_and_per_member_and_never_connected_ones_expire() {
    let server = start(test_config(|c| {
        c.stream_keys = vec![(room("stage"), KEY.to_owned())];
        c.media_max_sessions_per_ip = 3;
        c.media_max_sessions_per_member = 2;
        c.media_connect_timeout = Duration::from_millis(1000);
    }))
    .await;
    let (_member, grant) = join_with_grant(&server, "stage").await;
    let watch = || offer(false, &[MediaKind::Video]);
    let sdp = "application/sdp";
    let code = |r: &Reply| (r.status, r.header("relaycast-error").to_owned());
    assert_eq!(post(&server, "/whep/stage", Some(&grant), sdp, &watch()).await.status, 201);
    assert_eq!(post(&server, "/whep/stage", Some(&grant), sdp, &watch()).await.status, 201);
    let third = post(&server, "/whep/stage", Some(&grant), sdp, &watch()).await;
    assert_eq!(code(&third), (503, "too_many_sessions".to_owned()), "2 per member");
    assert!(third.text().contains("your token"), "{}", third.text());
    // The configured key belongs to no member, but the address has one place left. The
    // scheme of Authorization is case-insensitive.
    let lower = format!("bearer {KEY}");
    let by_key = request(
        server.addr,
        "POST",
        "/whep/stage",
        &[("content-type", sdp), ("authorization", &lower)],
        watch().as_bytes(),
    )
    .await;
    assert_eq!(by_key.status, 201, "{}", by_key.text());
    let fourth = post(&server, "/whep/stage", Some(KEY), sdp, &watch()).await;
    assert_eq!(code(&fourth), (503, "too_many_sessions".to_owned()), "3 per address");
    assert!(fourth.text().contains("your address"), "{}", fourth.text());
    // Another address still gets in.
    let body = watch();
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.9:0".parse().unwrap()).unwrap();
    let mut other = other.connect(server.addr).await.unwrap();
    let head = format!(
        "POST /whep/stage HTTP/1.1\r\nhost: x\r\ncontent-type: {sdp}\r\nauthorization: Bearer {KEY}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    tokio::io::AsyncWriteExt::write_all(&mut other, (head + &body).as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut other, &mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // None of them connects: at the connect timeout they end and give their places back.
    wait_metric(&server, "relaycast_media_sessions", 0).await;
    assert_eq!(post(&server, "/whep/stage", Some(&grant), sdp, &watch()).await.status, 201);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_ends_when_its_keys_holder_no_longer_owns_the_room() {
    let server = start(test_config(|_| {})).await;
    let mut owner = Client::connect(&server).await;
    let key = owner
        .join("hall", "owner", None)
        .await
        .into_iter()
        .find_map(|m| match m {
            ServerMsg::StreamKey { key, .. } => Some(key),
            _ => None,
        })
        .expect("the owner's key");
    let (mut guest, _) = join_with_grant(&server, "hall").await;
    let publisher =
        MediaClient::start(&format!("http://{}/whip/hall", server.addr), Some(&key), true, &[MediaKind::Video])
            .await
            .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = spawn_publisher(publisher, stop.clone());
    state_where(&mut guest, |s| s.live).await;
    // The owner leaves while live: the guest owns the room now, and the old key's broadcast
    // ends (viewers would be told) instead of holding the room against its new owner.
    drop(owner);
    let (mut new_key, mut ended) = (None, false);
    tokio::time::timeout(WAIT, async {
        while new_key.is_none() || !ended {
            match guest.recv().await {
                ServerMsg::StreamKey { key, .. } => new_key = Some(key),
                ServerMsg::Broadcast { state, .. } if !state.live => ended = true,
                _ => {}
            }
        }
    })
    .await
    .expect("the broadcast ended and the key moved on");
    stop.store(true, Ordering::Relaxed);
    let _ = publishing.await;
    let reply =
        post(&server, "/whip/hall", new_key.as_deref(), "application/sdp", &offer(true, &[MediaKind::Video])).await;
    assert_eq!(reply.status, 201, "the new owner goes live: {}", reply.text());
    request(server.addr, "DELETE", reply.header("location"), &[], b"").await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_ends_a_broadcast_and_others_may_not() {
    let server = start(test_config(|_| {})).await;
    let mut owner = Client::connect(&server).await;
    let joined = owner.join("hall", "owner", None).await;
    let key = joined.iter().find_map(|m| match m {
        ServerMsg::StreamKey { key, .. } => Some(key.clone()),
        _ => None,
    });
    let owner_grant = joined.iter().find_map(|m| match m {
        ServerMsg::Grant { token, .. } => Some(token.clone()),
        _ => None,
    });
    let (mut guest, guest_grant) = join_with_grant(&server, "hall").await;
    let publisher =
        MediaClient::start(&format!("http://{}/whip/hall", server.addr), key.as_deref(), true, &[MediaKind::Video])
            .await
            .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = spawn_publisher(publisher, stop.clone());
    state_where(&mut guest, |s| s.live).await;
    let end = |grant: String| {
        let auth = format!("Bearer {grant}");
        let addr = server.addr;
        async move { request(addr, "DELETE", "/api/rooms/hall/broadcast", &[("authorization", &auth)], b"").await }
    };
    // A member without the moderate right may not; the owner (open mode) may.
    let refused = end(guest_grant).await;
    assert_eq!((refused.status, refused.header("relaycast-error")), (403, "forbidden"));
    let ended = end(owner_grant.clone().unwrap()).await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    state_where(&mut guest, |s| !s.live).await;
    let again = end(owner_grant.unwrap()).await;
    assert_eq!((again.status, again.header("relaycast-error")), (409, "not_live"));
    stop.store(true, Ordering::Relaxed);
    let _ = publishing.await;
    server.stop().await;
}

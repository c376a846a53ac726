//! The blob cache over real HTTP on loopback: uploads (one-shot and resumable), downloads with
//! every range form and conditional request, deduplication, corrupt uploads, limits, eviction,
//! restart recovery, and access control by room grant.

mod common;

use common::*;
use relaycast_shared::blobs::{BlobInfo, UploadState};
use relaycast_shared::*;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Deterministic bytes that differ by `seed`.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[1] ^ seed).collect()
}

fn blob_url(r: &str, hash: &str) -> String {
    format!("/api/rooms/{r}/blobs/{hash}")
}

/// One-shot PUT of `bytes` as `name` into room `r`.
async fn put(addr: SocketAddr, grant: &str, r: &str, name: &str, bytes: &[u8]) -> Reply {
    let auth = format!("Bearer {grant}");
    let path = format!("{}?name={name}", blob_url(r, &sha256_hex(bytes)));
    request(addr, "PUT", &path, &[("authorization", &auth), ("content-type", "image/png")], bytes).await
}

async fn get(addr: SocketAddr, grant: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {grant}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    request(addr, "GET", path, &all, b"").await
}

async fn create_upload(addr: SocketAddr, grant: &str, r: &str, bytes: &[u8], hash: &str) -> Reply {
    let auth = format!("Bearer {grant}");
    let body =
        serde_json::json!({ "hash": hash, "size": bytes.len(), "name": "big.bin", "mime": "application/octet-stream" });
    request(addr, "POST", &format!("/api/rooms/{r}/uploads"), &[("authorization", &auth)], body.to_string().as_bytes())
        .await
}

async fn patch(addr: SocketAddr, grant: &str, location: &str, offset: u64, chunk: &[u8]) -> Reply {
    let auth = format!("Bearer {grant}");
    let offset = offset.to_string();
    request(addr, "PATCH", location, &[("authorization", &auth), ("upload-offset", &offset)], chunk).await
}

async fn upload_offset(addr: SocketAddr, grant: &str, location: &str) -> u64 {
    let auth = format!("Bearer {grant}");
    let reply = request(addr, "HEAD", location, &[("authorization", &auth)], b"").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.header("upload-offset").parse().unwrap()
}

#[tokio::test]
async fn one_shot_upload_then_every_range_form_and_conditional_request() {
    let server = start(test_config(|_| {})).await;
    let (_member, grant) = join_with_grant(&server, "files").await;
    let bytes = data(1, 1000);
    let hash = sha256_hex(&bytes);
    let url = blob_url("files", &hash);

    let created = put(server.addr, &grant, "files", "cat%20photo.png", &bytes).await;
    assert_eq!(created.status, 201, "{created:?}");
    let info: BlobInfo = created.json();
    assert_eq!(
        (info.hash.as_str(), info.size, info.name.as_str(), info.mime.as_str()),
        (hash.as_str(), 1000, "cat photo.png", "image/png")
    );
    assert_eq!(created.header("location"), url);

    // Downloads take two paths: a connection that opens with one is served by sendfile; on a
    // connection that began with anything else, hyper serves them. Both must answer the same.
    let auth = format!("Bearer {grant}");
    let mut fast = Conn::open(server.addr).await;
    let mut hyper_path = Conn::open(server.addr).await;
    assert_eq!(hyper_path.send("GET", "/healthz", &[], b"").await.status, 200);
    for conn in [&mut fast, &mut hyper_path] {
        check_ranges_and_conditions(conn, &auth, &url, &bytes).await;
    }
    // The sendfile path hands a request of another kind to hyper on the same connection.
    let small = data(1, 10);
    let put_path = format!("{}?name=small.bin", blob_url("files", &sha256_hex(&small)));
    assert_eq!(fast.send("PUT", &put_path, &[("authorization", &auth)], &small).await.status, 201);
    assert_eq!(fast.send("GET", &url, &[("authorization", &auth)], b"").await.body.len(), 1000);
    let listed: Vec<BlobInfo> = get(server.addr, &grant, "/api/rooms/files/blobs", &[]).await.json();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], info);
    server.stop().await;
}

async fn check_ranges_and_conditions(conn: &mut Conn, auth: &str, url: &str, bytes: &[u8]) {
    let hash = sha256_hex(bytes);
    let full = conn.send("GET", url, &[("authorization", auth)], b"").await;
    assert_eq!((full.status, &full.body[..]), (200, bytes));
    assert_eq!(full.header("etag"), format!("\"{hash}\""));
    assert_eq!(full.header("accept-ranges"), "bytes");
    assert_eq!(full.header("content-type"), "image/png");
    assert_eq!(full.header("content-length"), "1000");
    assert!(full.header("content-disposition").starts_with("inline; filename=\"cat photo.png\""), "{full:?}");
    let download = conn.send("GET", &format!("{url}?download&name=other.png"), &[("authorization", auth)], b"").await;
    assert!(download.header("content-disposition").starts_with("attachment; filename=\"other.png\""));
    let cases: [(&str, u16, std::ops::Range<usize>, &str); 5] = [
        ("bytes=0-9", 206, 0..10, "bytes 0-9/1000"),
        ("bytes=990-", 206, 990..1000, "bytes 990-999/1000"),
        ("bytes=-10", 206, 990..1000, "bytes 990-999/1000"),
        ("bytes=500-5000", 206, 500..1000, "bytes 500-999/1000"),
        ("bytes=0-1,5-6", 200, 0..1000, ""),
    ];
    for (range, status, want, content_range) in cases {
        let reply = conn.send("GET", url, &[("authorization", auth), ("range", range)], b"").await;
        assert_eq!(reply.status, status, "{range}");
        assert_eq!(&reply.body[..], &bytes[want], "{range}");
        assert_eq!(reply.header("content-range"), content_range, "{range}");
    }
    for range in ["bytes=1000-", "bytes=5000-6000", "bytes=-0"] {
        let reply = conn.send("GET", url, &[("authorization", auth), ("range", range)], b"").await;
        assert_eq!(reply.status, 416, "{range}");
        assert_eq!(reply.code(), "range_not_satisfiable");
        assert_eq!(reply.header("content-range"), "bytes */1000");
    }

    let etag = format!("\"{hash}\"");
    let cached = conn.send("GET", url, &[("authorization", auth), ("if-none-match", &etag)], b"").await;
    assert_eq!((cached.status, cached.body.len()), (304, 0));
    let other = conn.send("GET", url, &[("authorization", auth), ("if-none-match", "\"other\"")], b"").await;
    assert_eq!(other.status, 200);
    let resumed =
        conn.send("GET", url, &[("authorization", auth), ("range", "bytes=100-"), ("if-range", &etag)], b"").await;
    assert_eq!((resumed.status, &resumed.body[..]), (206, &bytes[100..]));
    let changed = conn
        .send("GET", url, &[("authorization", auth), ("range", "bytes=100-"), ("if-range", "\"other\"")], b"")
        .await;
    assert_eq!((changed.status, changed.body.len()), (200, 1000), "another entity: the whole blob");

    let head = conn.send("HEAD", url, &[("authorization", auth)], b"").await;
    assert_eq!((head.status, head.body.len(), head.header("content-length")), (200, 0, "1000"));
    let missing = conn.send("GET", &blob_url("files", &"0".repeat(64)), &[("authorization", auth)], b"").await;
    assert_eq!((missing.status, missing.code()), (404, "unknown_blob".to_owned()));
    let denied = conn.send("GET", url, &[("authorization", "Bearer nope")], b"").await;
    assert_eq!((denied.status, denied.code()), (403, "access_denied".to_owned()));
}

#[tokio::test]
async fn resumable_upload_interrupted_then_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;
    let (_member, grant) = join_with_grant(&server, "big").await;
    let bytes = data(2, 3 << 20);
    let hash = sha256_hex(&bytes);

    let created = create_upload(server.addr, &grant, "big", &bytes, &hash).await;
    assert_eq!(created.status, 201, "{created:?}");
    let state: UploadState = created.json();
    assert_eq!((state.offset, state.size), (0, bytes.len() as u64));
    let location = created.header("location").to_owned();

    // A chunk announced as 2 MiB whose sender dies after 1.5 MiB.
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nhost: test\r\nauthorization: Bearer {grant}\r\nupload-offset: 0\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&bytes[..3 << 19]).await.unwrap();
    tcp.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(tcp);
    let mut offset = 0;
    for _ in 0..200 {
        offset = upload_offset(server.addr, &grant, &location).await;
        if offset == 3 << 19 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(offset, 3 << 19, "what arrived before the interruption is kept");

    let wrong = patch(server.addr, &grant, &location, 0, &bytes[..10]).await;
    assert_eq!((wrong.status, wrong.code()), (409, "offset_mismatch".to_owned()));
    assert_eq!(wrong.header("upload-offset"), offset.to_string());

    let middle = patch(server.addr, &grant, &location, offset, &bytes[offset as usize..2 << 20]).await;
    assert_eq!(middle.status, 204, "{middle:?}");
    assert_eq!(middle.header("upload-offset"), (2 << 20).to_string());
    let past_end = patch(server.addr, &grant, &location, 2 << 20, &data(9, (1 << 20) + 1)).await;
    assert_eq!((past_end.status, past_end.code()), (422, "length_mismatch".to_owned()));
    assert_eq!(upload_offset(server.addr, &grant, &location).await, 2 << 20, "nothing of it was written");
    let last = patch(server.addr, &grant, &location, 2 << 20, &bytes[2 << 20..]).await;
    assert_eq!(last.status, 201, "{last:?}");
    assert_eq!(last.json::<BlobInfo>().hash.as_str(), hash);

    let down = get(server.addr, &grant, &blob_url("big", &hash), &[]).await;
    assert_eq!(sha256_hex(&down.body), hash);
    let gone = request(server.addr, "HEAD", &location, &[("authorization", &format!("Bearer {grant}"))], b"").await;
    assert_eq!(gone.status, 404, "a finished upload is gone");
    assert_eq!(std::fs::read_dir(dir.path().join("blobs/uploads")).unwrap().count(), 0);
    server.stop().await;
}

#[tokio::test]
async fn same_content_is_stored_once_and_a_hash_alone_opens_nothing() {
    let server = start(test_config(|_| {})).await;
    let (_a, grant_a) = join_with_grant(&server, "room-a").await;
    let (_b, grant_b) = join_with_grant(&server, "room-b").await;
    let bytes = data(3, 1 << 20);
    let hash = sha256_hex(&bytes);
    // Two uploads of the same bytes at once.
    let (one, two) = tokio::join!(
        put(server.addr, &grant_a, "room-a", "one.bin", &bytes),
        put(server.addr, &grant_a, "room-a", "two.bin", &bytes)
    );
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert!(statuses == [201, 201] || statuses == [200, 201], "{statuses:?}");
    assert_eq!(server.metric("relaycast_blobs").await, 1);
    assert_eq!(server.metric("relaycast_blob_bytes").await, 1 << 20);

    // The same room announcing it again sends nothing.
    let again = create_upload(server.addr, &grant_a, "room-a", &bytes, &hash).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.json::<BlobInfo>().size, 1 << 20);

    // Knowing the hash is not having the file: another room that claims it with one byte is
    // refused and learns nothing, and cannot download room-a's file.
    let auth_b = format!("Bearer {grant_b}");
    let before = request(server.addr, "HEAD", &blob_url("room-b", &hash), &[("authorization", &auth_b)], b"").await;
    assert_eq!(before.status, 404, "room-b does not have it");
    let claimed = request(server.addr, "PUT", &blob_url("room-b", &hash), &[("authorization", &auth_b)], b"x").await;
    assert_eq!((claimed.status, claimed.code()), (422, "hash_mismatch".to_owned()), "{claimed:?}");
    let stolen = get(server.addr, &grant_b, &blob_url("room-b", &hash), &[]).await;
    assert_eq!((stolen.status, stolen.code()), (404, "unknown_blob".to_owned()));
    let announced = create_upload(server.addr, &grant_b, "room-b", &bytes, &hash).await;
    assert_eq!(announced.status, 201, "an upload to send the bytes to: {announced:?}");

    // With the real bytes, room-b gets the file; the cache still holds it once.
    assert_eq!(put(server.addr, &grant_b, "room-b", "mine.bin", &bytes).await.status, 201);
    let after = request(server.addr, "HEAD", &blob_url("room-b", &hash), &[("authorization", &auth_b)], b"").await;
    assert_eq!(after.status, 200);
    assert_eq!(server.metric("relaycast_blobs").await, 1);
    assert_eq!(server.metric("relaycast_blob_bytes").await, 1 << 20);
    server.stop().await;
}

#[tokio::test]
async fn corrupt_uploads_are_rejected_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;
    let (_member, grant) = join_with_grant(&server, "files").await;
    let auth = format!("Bearer {grant}");
    let bytes = data(4, 100_000);
    let claimed = sha256_hex(b"something else");

    let one_shot = request(server.addr, "PUT", &blob_url("files", &claimed), &[("authorization", &auth)], &bytes).await;
    assert_eq!((one_shot.status, one_shot.code()), (422, "hash_mismatch".to_owned()));
    let head = request(server.addr, "HEAD", &blob_url("files", &claimed), &[("authorization", &auth)], b"").await;
    assert_eq!(head.status, 404);

    let created = create_upload(server.addr, &grant, "files", &bytes, &claimed).await;
    let location = created.header("location").to_owned();
    let finished = patch(server.addr, &grant, &location, 0, &bytes).await;
    assert_eq!((finished.status, finished.code()), (422, "hash_mismatch".to_owned()));
    let gone = request(server.addr, "HEAD", &location, &[("authorization", &auth)], b"").await;
    assert_eq!(gone.status, 404, "the upload is gone");

    for sub in ["uploads", "tmp"] {
        assert_eq!(std::fs::read_dir(dir.path().join("blobs").join(sub)).unwrap().count(), 0, "{sub} is empty");
    }
    assert_eq!(server.metric("relaycast_blobs").await, 0);
    assert_eq!(server.metric("relaycast_blob_uploads").await, 0);
    server.stop().await;
}

#[tokio::test]
async fn only_members_with_a_grant_for_the_room_get_in() {
    let server = start(test_config(|_| {})).await;
    let (_member, grant) = join_with_grant(&server, "private").await;
    let (_other, other_grant) = join_with_grant(&server, "elsewhere").await;
    let bytes = data(5, 64);
    assert_eq!(put(server.addr, &grant, "private", "a.png", &bytes).await.status, 201);
    let url = blob_url("private", &sha256_hex(&bytes));

    let none = request(server.addr, "GET", &url, &[], b"").await;
    assert_eq!((none.status, none.code()), (401, "grant_required".to_owned()));
    for bad in [other_grant.as_str(), "garbage", "1.x.y"] {
        let reply = get(server.addr, bad, &url, &[]).await;
        assert_eq!((reply.status, reply.code()), (403, "access_denied".to_owned()), "{bad}");
    }
    let forged = put(server.addr, &other_grant, "private", "b.png", &data(6, 64)).await;
    assert_eq!(forged.status, 403);
    // The other room's own grant does not reach this room's blob through its own path either.
    let elsewhere = get(server.addr, &other_grant, &blob_url("elsewhere", &sha256_hex(&bytes)), &[]).await;
    assert_eq!((elsewhere.status, elsewhere.code()), (404, "unknown_blob".to_owned()));
    // For links and <img src>: the grant in the query.
    let link = request(server.addr, "GET", &format!("{url}?grant={grant}"), &[], b"").await;
    assert_eq!((link.status, &link.body[..]), (200, &bytes[..]));
    server.stop().await;
}

#[tokio::test]
async fn size_quota_and_request_errors_have_stable_codes() {
    let server = start(test_config(|c| {
        c.blob_max_size = 1000;
        c.blob_room_quota = 1500;
        c.blob_body_timeout = Duration::from_millis(300);
    }))
    .await;
    let (_member, grant) = join_with_grant(&server, "small").await;
    let auth = format!("Bearer {grant}");

    let too_big = put(server.addr, &grant, "small", "big.bin", &data(7, 1001)).await;
    assert_eq!((too_big.status, too_big.code()), (413, "blob_too_large".to_owned()));
    assert_eq!(put(server.addr, &grant, "small", "a.bin", &data(7, 800)).await.status, 201);
    let over = put(server.addr, &grant, "small", "b.bin", &data(8, 800)).await;
    assert_eq!((over.status, over.code()), (413, "quota_exceeded".to_owned()));
    let announced = create_upload(server.addr, &grant, "small", &data(8, 800), &sha256_hex(&data(8, 800))).await;
    assert_eq!(announced.code(), "quota_exceeded");
    let (_other, other_grant) = join_with_grant(&server, "other").await;
    assert_eq!(put(server.addr, &other_grant, "other", "b.bin", &data(8, 800)).await.status, 201, "quota is per room");

    let a = [("authorization", auth.as_str())];
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a [u8], u16, &'a str);
    let cases: Vec<Case> = vec![
        ("GET", "/api/rooms/small/blobs/not-a-hash".into(), a.to_vec(), b"", 400, "bad_request"),
        ("GET", "/api/rooms/small/blobs/../../etc/passwd".into(), a.to_vec(), b"", 404, "not_found"),
        ("GET", "/api/rooms/small/nothing".into(), a.to_vec(), b"", 404, "not_found"),
        ("DELETE", blob_url("small", &"a".repeat(64)), a.to_vec(), b"", 405, "method_not_allowed"),
        ("POST", "/api/rooms/small/uploads".into(), a.to_vec(), b"{not json", 400, "bad_request"),
        ("POST", "/api/rooms/small/uploads".into(), a.to_vec(), &[b'x'; 5000], 400, "bad_request"),
        ("HEAD", format!("/api/rooms/small/uploads/{}", "0".repeat(32)), a.to_vec(), b"", 404, "unknown_upload"),
        ("PATCH", format!("/api/rooms/small/uploads/{}", "0".repeat(32)), a.to_vec(), b"x", 400, "bad_request"),
        ("DELETE", format!("/api/rooms/small/uploads/{}", "0".repeat(32)), a.to_vec(), b"", 404, "unknown_upload"),
    ];
    for (method, path, headers, body, status, code) in cases {
        let reply = request(server.addr, method, &path, &headers, body).await;
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
        if method != "HEAD" {
            assert_eq!(reply.code(), code, "{method} {path}");
        }
    }

    // A chunked one-shot upload (no length) and a stalled body.
    let chunked = request_with(
        server.addr,
        "PUT",
        &blob_url("other", &sha256_hex(b"x")),
        &[("authorization", &format!("Bearer {other_grant}"))],
        http_body_util::StreamBody::new(futures_util::stream::iter([Ok::<_, std::io::Error>(
            hyper::body::Frame::data(bytes::Bytes::from_static(b"x")),
        )])),
    )
    .await;
    assert_eq!((chunked.status, chunked.code()), (411, "length_required".to_owned()));
    let stalled = data(9, 100);
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {other_grant}\r\ncontent-length: 100\r\n\r\n",
        blob_url("other", &sha256_hex(&stalled))
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(&stalled[..10]).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut tcp, &mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("\"timeout\""), "{answer}");
    assert_eq!(server.metric("relaycast_blob_uploads").await, 0, "the stalled upload let go of its slot");
    server.stop().await;
}

/// A file message in room "evict" naming `bytes`.
fn file_message(id: &str, bytes: &[u8]) -> ClientMsg {
    let body = Body::File {
        hash: BlobHash::try_from(sha256_hex(bytes)).unwrap(),
        name: FileName::try_from(format!("{id}.bin")).unwrap(),
        size: bytes.len() as u64,
        mime: MediaType::try_from("application/octet-stream").unwrap(),
    };
    ClientMsg::Publish { room: room("evict"), id: ClientMsgId::try_from(id).unwrap(), body }
}

#[tokio::test]
async fn eviction_takes_the_least_recently_used_and_keeps_what_history_refers_to() {
    let server = start(test_config(|c| {
        c.blob_max_total = 3000;
    }))
    .await;
    let (mut member, grant) = join_with_grant(&server, "evict").await;
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| data(10 + i, 1000)).collect();
    for (i, bytes) in blobs[..3].iter().enumerate() {
        assert_eq!(put(server.addr, &grant, "evict", &format!("{i}.bin"), bytes).await.status, 201);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Blob 0 is in the room's history (pinned); blob 1 was just downloaded (recently used).
    let file = Body::File {
        hash: BlobHash::try_from(sha256_hex(&blobs[0])).unwrap(),
        name: FileName::try_from("0.bin").unwrap(),
        size: 1000,
        mime: MediaType::try_from("application/octet-stream").unwrap(),
    };
    member
        .send(&ClientMsg::Publish { room: room("evict"), id: ClientMsgId::try_from("f0").unwrap(), body: file })
        .await;
    member.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;
    assert_eq!(get(server.addr, &grant, &blob_url("evict", &sha256_hex(&blobs[1])), &[]).await.status, 200);
    tokio::time::sleep(Duration::from_millis(5)).await;

    assert_eq!(put(server.addr, &grant, "evict", "3.bin", &blobs[3]).await.status, 201);
    let status = |i: usize| {
        let url = blob_url("evict", &sha256_hex(&blobs[i]));
        let grant = grant.clone();
        let addr = server.addr;
        async move { get(addr, &grant, &url, &[]).await.status }
    };
    assert_eq!([status(0).await, status(1).await, status(2).await, status(3).await], [200, 200, 404, 200]);

    // The engine was told: a file message naming the evicted blob is refused.
    let gone = Body::File {
        hash: BlobHash::try_from(sha256_hex(&blobs[2])).unwrap(),
        name: FileName::try_from("2.bin").unwrap(),
        size: 1000,
        mime: MediaType::try_from("application/octet-stream").unwrap(),
    };
    member
        .send(&ClientMsg::Publish { room: room("evict"), id: ClientMsgId::try_from("f2").unwrap(), body: gone })
        .await;
    assert_eq!(member.next_error().await, ErrorCode::UnknownBlob);

    // Everything pinned: a new blob is refused rather than evicting what rooms refer to.
    for (id, bytes) in [("p1", &blobs[1]), ("p3", &blobs[3])] {
        member.send(&file_message(id, bytes)).await;
        member.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;
    }
    let full = put(server.addr, &grant, "evict", "5.bin", &data(20, 1000)).await;
    assert_eq!((full.status, full.code()), (507, "cache_full".to_owned()));
    server.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_blobs_and_uploads_and_cleans_strays() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;
    let (_member, grant) = join_with_grant(&server, "keep").await;
    let kept = data(30, 5000);
    assert_eq!(put(server.addr, &grant, "keep", "kept.bin", &kept).await.status, 201);
    let partial = data(31, 4000);
    let created = create_upload(server.addr, &grant, "keep", &partial, &sha256_hex(&partial)).await;
    let location = created.header("location").to_owned();
    assert_eq!(patch(server.addr, &grant, &location, 0, &partial[..1500]).await.status, 204);
    server.stop().await;

    // What a crash could leave: a one-shot in flight, a renamed blob never committed.
    let blobs = dir.path().join("blobs");
    std::fs::write(blobs.join("tmp/0123456789abcdef0123456789abcdef"), b"half").unwrap();
    let stray = sha256_hex(b"stray");
    std::fs::create_dir_all(blobs.join("store").join(&stray[..2])).unwrap();
    std::fs::write(blobs.join("store").join(&stray[..2]).join(&stray), b"stray").unwrap();

    let server = start_durable(dir.path()).await;
    let (_member, grant) = join_with_grant(&server, "keep").await;
    let down = get(server.addr, &grant, &blob_url("keep", &sha256_hex(&kept)), &[]).await;
    assert_eq!((down.status, &down.body[..]), (200, &kept[..]));
    assert_eq!(upload_offset(server.addr, &grant, &location).await, 1500);
    // After a restart the running hash is gone: finishing hashes the file again.
    let done = patch(server.addr, &grant, &location, 1500, &partial[1500..]).await;
    assert_eq!(done.status, 201, "{done:?}");
    assert_eq!(std::fs::read_dir(blobs.join("tmp")).unwrap().count(), 0);
    assert!(!blobs.join("store").join(&stray[..2]).join(&stray).exists());
    assert_eq!(server.metric("relaycast_blobs").await, 2);
    server.stop().await;
}

#[tokio::test]
async fn uploads_in_progress_are_limited_per_member_and_room_and_idle_ones_go_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let limited = |c: &mut relaycast::Config| {
        c.memory = false;
        c.data_dir = dir.path().to_owned();
        c.blob_max_uploads_per_member = 2;
        c.blob_max_uploads_per_room = 3;
    };
    let server = start(test_config(limited)).await;
    let (_a, grant_a) = join_with_grant(&server, "up").await;
    let (_b, grant_b) = join_with_grant(&server, "up").await;
    let (_c, grant_c) = join_with_grant(&server, "elsewhere").await;
    // Uploads announced and never sent a byte.
    let announce = |server: &TestServer, grant: String, r: &'static str, seed: u8| {
        let addr = server.addr;
        async move {
            let bytes = data(seed, 1000);
            create_upload(addr, &grant, r, &bytes, &sha256_hex(&bytes)).await
        }
    };
    let first = announce(&server, grant_a.clone(), "up", 40).await;
    assert_eq!(first.status, 201);
    assert_eq!(announce(&server, grant_a.clone(), "up", 41).await.status, 201);
    let third = announce(&server, grant_a.clone(), "up", 42).await;
    assert_eq!((third.status, third.code()), (429, "too_many_uploads".to_owned()), "2 per member");
    assert!(third.text().contains("you have as many uploads"), "{}", third.text());
    assert_eq!(announce(&server, grant_b.clone(), "up", 43).await.status, 201);
    let fourth = announce(&server, grant_b.clone(), "up", 44).await;
    assert_eq!((fourth.status, fourth.code()), (429, "too_many_uploads".to_owned()), "3 per room");
    assert!(fourth.text().contains("this room has"), "{}", fourth.text());
    assert_eq!(announce(&server, grant_c, "elsewhere", 45).await.status, 201, "other rooms are not affected");
    // The scheme of `Authorization` is case-insensitive here as everywhere.
    let lower =
        request(server.addr, "GET", "/api/rooms/up/blobs", &[("authorization", &format!("bearer {grant_a}"))], b"")
            .await;
    assert_eq!(lower.status, 200, "{lower:?}");
    server.stop().await;

    // After a restart the uploads are still there (resumable), each with a fresh idle time;
    // nobody sends to them, so they are dropped and their slots come back.
    let server = start(test_config(|c| {
        limited(c);
        c.blob_upload_idle = Duration::from_secs(1);
    }))
    .await;
    let (_a, grant_a) = join_with_grant(&server, "up").await;
    let location = first.header("location").to_owned();
    assert_eq!(upload_offset(server.addr, &grant_a, &location).await, 0, "kept across the restart");
    let auth = format!("Bearer {grant_a}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while request(server.addr, "HEAD", &location, &[("authorization", &auth)], b"").await.status != 404 {
        assert!(std::time::Instant::now() < deadline, "the idle upload was not dropped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(server.metric("relaycast_blob_uploads").await, 0);
    assert_eq!(std::fs::read_dir(dir.path().join("blobs/uploads")).unwrap().count(), 0, "its file is gone");
    assert_eq!(announce(&server, grant_a, "up", 46).await.status, 201);
    server.stop().await;
}

#[tokio::test]
async fn a_refused_chunk_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_durable(dir.path()).await;
    let (_member, grant) = join_with_grant(&server, "files").await;
    let bytes = data(50, 100_000);
    let created = create_upload(server.addr, &grant, "files", &bytes, &sha256_hex(&bytes)).await;
    let location = created.header("location").to_owned();
    assert_eq!(patch(server.addr, &grant, &location, 0, &bytes[..40_000]).await.status, 204);
    // A chunked body (no length announced) that runs past the end: refused as it arrives.
    let too_much: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> =
        (0..8).map(|i| Ok(hyper::body::Frame::data(bytes::Bytes::from(data(60 + i, 10_000))))).collect();
    let refused = request_with(
        server.addr,
        "PATCH",
        &location,
        &[("authorization", &format!("Bearer {grant}")), ("upload-offset", "40000")],
        http_body_util::StreamBody::new(futures_util::stream::iter(too_much)),
    )
    .await;
    assert_eq!((refused.status, refused.code()), (422, "length_mismatch".to_owned()), "{refused:?}");
    assert_eq!(upload_offset(server.addr, &grant, &location).await, 40_000, "none of the refused chunk counts");
    let id = location.rsplit('/').next().unwrap();
    let on_disk = std::fs::metadata(dir.path().join("blobs/uploads").join(id)).unwrap().len();
    assert_eq!(on_disk, 40_000, "none of it stayed on disk");
    // The upload goes on from where it stood, and its hash checks out.
    let done = patch(server.addr, &grant, &location, 40_000, &bytes[40_000..]).await;
    assert_eq!(done.status, 201, "{done:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_grant_ends_with_its_holders_membership() {
    let server = start(test_config(|_| {})).await;
    let (mut member, grant) = join_with_grant(&server, "room").await;
    let bytes = data(70, 4096);
    assert_eq!(put(server.addr, &grant, "room", "a.bin", &bytes).await.status, 201);
    let url = blob_url("room", &sha256_hex(&bytes));
    assert_eq!(get(server.addr, &grant, &url, &[]).await.status, 200);
    // It leaves: the grant no longer opens the room's files, on either download path.
    member.send(&ClientMsg::Leave { room: room("room") }).await;
    member.recv_until(|m| matches!(m, ServerMsg::Left { .. })).await;
    let after = get(server.addr, &grant, &url, &[]).await;
    assert_eq!((after.status, after.code()), (403, "access_denied".to_owned()));
    assert!(after.text().contains("no longer in the room"), "{}", after.text());
    let mut conn = Conn::open(server.addr).await;
    let auth = format!("Bearer {grant}");
    let upload = conn.send("PUT", &blob_url("room", &sha256_hex(b"more")), &[("authorization", &auth)], b"more").await;
    assert_eq!(upload.status, 403, "nor uploads");
    // Rejoining gives a new grant that works; disconnecting ends it too.
    let (other, fresh) = join_with_grant(&server, "room").await;
    assert_eq!(get(server.addr, &fresh, &url, &[]).await.status, 200);
    drop(other);
    let deadline = std::time::Instant::now() + WAIT;
    while get(server.addr, &fresh, &url, &[]).await.status != 403 {
        assert!(std::time::Instant::now() < deadline, "the grant outlived its holder's connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

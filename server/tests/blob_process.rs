//! The blob cache in the real `relaycast` binary: what it acknowledged survives `kill -9` and
//! what it did not leaves nothing behind; a 1 GiB file goes up and comes back down with the
//! server's resident memory growing by less than 64 MiB.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use relaycast_shared::blobs::UploadState;
use relaycast_shared::*;
use sha2::Digest;
use tokio::io::AsyncWriteExt;

/// A kibibyte-scale field of `/proc/<pid>/status`, in bytes.
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("{field} in {status}"));
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn file_message(id: &str, hash: &str, size: u64) -> ClientMsg {
    let body = Body::File {
        hash: BlobHash::try_from(hash).unwrap(),
        name: FileName::try_from("kept.bin").unwrap(),
        size,
        mime: MediaType::try_from("application/octet-stream").unwrap(),
    };
    ClientMsg::Publish { room: room("crash"), id: ClientMsgId::try_from(id).unwrap(), body }
}

#[tokio::test]
async fn kill_9_keeps_acknowledged_blobs_and_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn_binary(dir.path());
    let addr = bin.server.addr;
    let (mut member, grant) = join_with_grant(&bin.server, "crash").await;
    let auth = format!("Bearer {grant}");
    let kept: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let kept_hash = sha256_hex(&kept);
    let kept_url = format!("/api/rooms/crash/blobs/{kept_hash}");
    assert_eq!(request(addr, "PUT", &kept_url, &[("authorization", &auth)], &kept).await.status, 201);
    member.send(&file_message("m1", &kept_hash, kept.len() as u64)).await;
    member.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;

    // A resumable upload with part of its bytes, and a one-shot upload cut off mid-body.
    let partial = vec![7u8; 50_000];
    let body = serde_json::json!({"hash": sha256_hex(&partial), "size": 50_000, "name": "p.bin", "mime": "a/b"});
    let created =
        request(addr, "POST", "/api/rooms/crash/uploads", &[("authorization", &auth)], body.to_string().as_bytes())
            .await;
    let upload: UploadState = created.json();
    let location = created.header("location").to_owned();
    let headers = [("authorization", auth.as_str()), ("upload-offset", "0")];
    assert_eq!(request(addr, "PATCH", &location, &headers, &partial[..20_000]).await.status, 204);
    let mut cut = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT /api/rooms/crash/blobs/{} HTTP/1.1\r\nhost: t\r\nauthorization: {auth}\r\ncontent-length: 3000000\r\n\r\n",
        "e".repeat(64)
    );
    cut.write_all(head.as_bytes()).await.unwrap();
    cut.write_all(&vec![1u8; 1_500_000]).await.unwrap();
    let tmp = dir.path().join("blobs/tmp");
    for _ in 0..500 {
        if std::fs::read_dir(&tmp).unwrap().count() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 1, "the cut upload is in flight");
    drop(bin); // SIGKILL

    let bin = spawn_binary(dir.path());
    let addr = bin.server.addr;
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "no partial one-shot file survives");
    let (mut member, grant) = join_with_grant(&bin.server, "crash").await;
    let auth = format!("Bearer {grant}");
    let down =
        request(addr, "GET", &format!("/api/rooms/crash/blobs/{kept_hash}"), &[("authorization", &auth)], b"").await;
    assert_eq!((down.status, sha256_hex(&down.body)), (200, kept_hash.clone()));
    let state = request(addr, "HEAD", &location, &[("authorization", &auth)], b"").await;
    assert_eq!(state.header("upload-offset"), "20000", "the resumable upload resumes where it was");
    assert_eq!(upload.size, 50_000);
    // The engine learned at start which blobs exist: file messages may name them again.
    member.send(&file_message("m2", &kept_hash, kept.len() as u64)).await;
    let answer = member.recv_until(|m| matches!(m, ServerMsg::Ack { .. } | ServerMsg::Error { .. })).await;
    assert!(matches!(answer.last(), Some(ServerMsg::Ack { .. })), "{answer:?}");
}

/// Chunk `i` of the 1 GiB file: a mebibyte of pseudo-random bytes stamped with its index.
fn gib_chunk(base: &[u8], i: u64) -> Bytes {
    let mut chunk = base.to_vec();
    chunk[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(chunk)
}

#[tokio::test]
async fn a_gibibyte_up_and_down_in_bounded_memory() {
    const CHUNKS: u64 = 1024;
    let dir = tempfile::tempdir().unwrap();
    let bin = spawn_binary(dir.path());
    let addr = bin.server.addr;
    let pid = bin.child.id();
    let (_member, grant) = join_with_grant(&bin.server, "huge").await;
    let auth = format!("Bearer {grant}");

    let base: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let mut hasher = sha2::Sha256::new();
    for i in 0..CHUNKS {
        hasher.update(gib_chunk(&base, i));
    }
    let hash = hex::encode(hasher.finalize());
    let url = format!("/api/rooms/huge/blobs/{hash}");

    // Warm up the paths once with a small file, then take the baseline.
    let small = vec![3u8; 4 << 20];
    let small_url = format!("/api/rooms/huge/blobs/{}", sha256_hex(&small));
    assert_eq!(request(addr, "PUT", &small_url, &[("authorization", &auth)], &small).await.status, 201);
    assert_eq!(request(addr, "GET", &small_url, &[("authorization", &auth)], b"").await.body.len(), 4 << 20);
    let baseline = proc_status(pid, "VmRSS:");

    let stream = futures_util::stream::iter(
        (0..CHUNKS).map(move |i| Ok::<_, std::io::Error>(hyper::body::Frame::data(gib_chunk(&base, i)))),
    );
    let length = (CHUNKS << 20).to_string();
    let headers = [("authorization", auth.as_str()), ("content-length", length.as_str())];
    let up = request_with(addr, "PUT", &url, &headers, http_body_util::StreamBody::new(stream)).await;
    assert_eq!(up.status, 201, "{up:?}");

    // Download, hashing as it streams.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(&url).header("host", "t").header("authorization", &auth);
    let response = sender.send_request(req.body(http_body_util::Empty::<Bytes>::new()).unwrap()).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let (mut hasher, mut received) = (sha2::Sha256::new(), 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            received += data.len() as u64;
            hasher.update(&data);
        }
    }
    assert_eq!(received, CHUNKS << 20);
    assert_eq!(hex::encode(hasher.finalize()), hash, "the same bytes came back");

    let peak = proc_status(pid, "VmHWM:");
    let growth = peak.saturating_sub(baseline);
    eprintln!("server RSS: baseline {} MiB, peak {} MiB, growth {} MiB", baseline >> 20, peak >> 20, growth >> 20);
    assert!(growth < 64 << 20, "resident memory grew by {} MiB", growth >> 20);
}

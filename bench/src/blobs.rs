//! Blob cache throughput over loopback: uploads through the resumable API, and downloads of
//! one file from Relaycast and from nginx (serving the same bytes from its own root), the two
//! measured alternately by the same client so that machine noise falls on both.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use sha2::Digest;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct BlobArgs {
    /// Relaycast's address (HTTP and WebSocket).
    #[arg(long)]
    relaycast: SocketAddr,
    /// nginx's address; it serves `--file` as `/<file name>`.
    #[arg(long)]
    nginx: SocketAddr,
    /// Where to write the test file (inside nginx's root).
    #[arg(long)]
    file: PathBuf,
    /// File size in MiB.
    #[arg(long, default_value_t = 256)]
    size_mib: u64,
    /// Parallel downloads per measurement.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Whole-file downloads per connection per measurement.
    #[arg(long, default_value_t = 4)]
    repeats: usize,
    /// Measurements per server (alternating), and uploads.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bytes per upload chunk (PATCH), in MiB.
    #[arg(long, default_value_t = 16)]
    chunk_mib: u64,
    /// Downloads only, over https: both servers speak TLS with the certificate of this
    /// SHA-256 fingerprint (the client trusts exactly it), and already hold the file of an
    /// earlier plain run (Relaycast restarted on the same data directory, with --tls-cert).
    #[arg(long)]
    tls_fingerprint: Option<String>,
}

/// Deterministic content for round `seed`.
fn content(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        // xorshift64: cheap bytes that do not compress.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size);
    out
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type Tls = Option<std::sync::Arc<rustls::ClientConfig>>;

async fn connect(addr: SocketAddr, tls: &Tls) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let Some(config) = tls else {
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        return Ok(sender);
    };
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One request on a kept-alive connection; the body is read and dropped. Returns (status,
/// headers, bytes received).
async fn send(
    sender: &mut Sender,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> anyhow::Result<(u16, http::HeaderMap, u64)> {
    sender.ready().await?;
    let mut req = http::Request::builder().method(method).uri(path).header("host", "bench");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = sender.send_request(req.body(Full::new(body))?).await?;
    let (parts, mut body) = response.into_parts();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len() as u64;
        }
    }
    Ok((parts.status.as_u16(), parts.headers, received))
}

/// `connections` clients each download `path` `repeats` times; bytes per second overall.
async fn download(addr: SocketAddr, tls: &Tls, path: &str, auth: &str, size: u64, a: &BlobArgs) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.connections {
        let (path, auth, repeats, tls) = (path.to_owned(), auth.to_owned(), a.repeats, tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(addr, &tls).await?;
            let mut total = 0u64;
            for _ in 0..repeats {
                let headers: Vec<(&str, &str)> =
                    if auth.is_empty() { vec![] } else { vec![("authorization", auth.as_str())] };
                let (status, _, got) = send(&mut sender, "GET", &path, &headers, Bytes::new()).await?;
                anyhow::ensure!(status == 200 && got == size, "download got {status}, {got} of {size} bytes");
                total += got;
            }
            anyhow::Ok(total)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += tokio::time::timeout(Duration::from_secs(300), task).await???;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// A member of room `r` over wss, and its room grant. A grant is good only while its holder
/// is in the room: keep the member until the downloads are done.
async fn grant_over_tls(
    addr: SocketAddr,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    r: &str,
) -> anyhow::Result<(impl Sized, String)> {
    use futures_util::{SinkExt, StreamExt};
    use relaycast_shared::{decode_server, encode, ClientMsg, DisplayName, RoomName, ServerMsg};
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost")?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", addr.port()), stream).await?;
    let join = ClientMsg::Join {
        room: RoomName::try_from(r).map_err(|e| anyhow::anyhow!("{e}"))?,
        name: DisplayName::try_from("bench").map_err(|e| anyhow::anyhow!("{e}"))?,
        token: None,
        resume: None,
    };
    for msg in [ClientMsg::hello(), join] {
        ws.send(tokio_tungstenite::tungstenite::Message::Text(encode(&msg).into())).await?;
    }
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
        if let Ok(ServerMsg::Grant { token, .. }) = decode_server(frame?.to_text()?) {
            return Ok((ws, token));
        }
    }
    anyhow::bail!("no grant over wss")
}

pub async fn run(a: BlobArgs) -> anyhow::Result<()> {
    let size = (a.size_mib << 20) as usize;
    if let Some(fingerprint) = &a.tls_fingerprint {
        let trust = relaycast::tls::ClientTrust::Fingerprint(fingerprint.clone());
        let tls = relaycast::tls::client_config(&trust)?;
        let (_member, grant) = grant_over_tls(a.relaycast, &tls, "bench-blobs").await?;
        let hash = hex::encode(sha2::Sha256::digest(content(size, 1)));
        return downloads(&a, &Some(tls), &hash, &format!("Bearer {grant}"), "blob_download_tls").await;
    }
    let ws = format!("ws://{}/ws", a.relaycast);
    let (_member, grant) = crate::scenarios::join_for_grant(&ws, "bench-blobs").await?;
    let auth = format!("Bearer {grant}");
    let mib = |bytes_per_sec: f64| (bytes_per_sec / (1u64 << 20) as f64 * 10.0).round() / 10.0;

    // Uploads: new content each round (the same bytes twice would be deduplicated).
    let mut served = Vec::new();
    for round in 0..a.rounds {
        let bytes = Bytes::from(content(size, round as u64 + 1));
        let hash = hex::encode(sha2::Sha256::digest(&bytes));
        let mut sender = connect(a.relaycast, &None).await?;
        let started = Instant::now();
        let announce = json!({"hash": hash, "size": size, "name": "bench.bin", "mime": "application/octet-stream"});
        let (status, headers, _) = send(
            &mut sender,
            "POST",
            "/api/rooms/bench-blobs/uploads",
            &[("authorization", &auth)],
            Bytes::from(announce.to_string()),
        )
        .await?;
        anyhow::ensure!(status == 201, "creating the upload answered {status}");
        let location = headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let chunk = (a.chunk_mib << 20) as usize;
        let mut offset = 0;
        while offset < size {
            let end = (offset + chunk).min(size);
            let off = offset.to_string();
            let headers = [("authorization", auth.as_str()), ("upload-offset", off.as_str())];
            let (status, _, _) = send(&mut sender, "PATCH", &location, &headers, bytes.slice(offset..end)).await?;
            anyhow::ensure!(status == 204 || (status == 201 && end == size), "chunk at {offset} answered {status}");
            offset = end;
        }
        let rate = size as f64 / started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"scenario": "blob_upload", "target": "relaycast", "size_mib": a.size_mib, "chunk_mib": a.chunk_mib,
                   "mib_per_sec": mib(rate), "verified": "sha256"})
        );
        served.push((hash, bytes));
    }

    // Downloads: the first uploaded file, also written where nginx serves it.
    let (hash, bytes) = served.into_iter().next().ok_or_else(|| anyhow::anyhow!("--rounds must be at least 1"))?;
    std::fs::write(&a.file, &bytes)?;
    downloads(&a, &None, &hash, &auth, "blob_download").await
}

/// Downloads of the file from Relaycast and from nginx, alternating, after one warm-up each
/// (page cache, connections).
async fn downloads(a: &BlobArgs, tls: &Tls, hash: &str, auth: &str, scenario: &str) -> anyhow::Result<()> {
    let size = a.size_mib << 20;
    let mib = |bytes_per_sec: f64| (bytes_per_sec / (1u64 << 20) as f64 * 10.0).round() / 10.0;
    let name = a.file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
    let rc_path = format!("/api/rooms/bench-blobs/blobs/{hash}");
    let nginx_path = format!("/{name}");
    download(a.relaycast, tls, &rc_path, auth, size, a).await?;
    download(a.nginx, tls, &nginx_path, "", size, a).await?;
    for _ in 0..a.rounds {
        for (target, addr, path, auth) in
            [("relaycast", a.relaycast, &rc_path, auth), ("nginx", a.nginx, &nginx_path, "")]
        {
            let rate = download(addr, tls, path, auth, size, a).await?;
            println!(
                "{}",
                json!({"scenario": scenario, "target": target, "size_mib": a.size_mib,
                       "connections": a.connections, "repeats": a.repeats, "mib_per_sec": mib(rate)})
            );
        }
    }
    Ok(())
}

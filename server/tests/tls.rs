//! TLS on the server's port: https, wss, the blob API and WHIP over TLS with a self-signed
//! certificate pinned by its fingerprint; certificate files reloaded without a restart.

mod common;

use common::*;
use http_body_util::BodyExt;
use relaycast::media::client::{Endpoint, MediaClient};
use relaycast::tls::{client_config, Certificates, ClientTrust, TlsSource};
use relaycast_shared::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use str0m::media::MediaKind;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const KEY: &str = "tls-stream-key";

async fn tls_connect(addr: SocketAddr, trust: &ClientTrust) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(client_config(trust).unwrap()).connect(name, tcp).await
}

/// One HTTPS request: (status, body).
async fn https(
    addr: SocketAddr,
    trust: &ClientTrust,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<u8>) {
    let tls = tls_connect(addr, trust).await.expect("TLS handshake");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder().method(method).uri(path).header("host", "localhost");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body))).unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    (status, res.into_body().collect().await.unwrap().to_bytes().to_vec())
}

fn fingerprint_of(dir: &Path, names: Vec<String>) -> String {
    // The server keeps its certificate in the data directory: the same files give the same one.
    Certificates::load(TlsSource::SelfSigned { dir: dir.join("tls"), names }).unwrap().fingerprint()
}

#[tokio::test]
async fn https_wss_files_and_whip_over_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(|c| {
        c.tls_self_signed = true;
        c.data_dir = dir.path().to_owned();
        c.tls_names = vec!["relaycast.test".into()];
        c.stream_keys = vec![(room("stage"), KEY.to_owned())];
    });
    let names = relaycast::tls::machine_names(config.bind.ip(), &config.tls_names);
    let server = start(config).await;
    // Wait until it serves, then learn the fingerprint it prints.
    let pinned = loop {
        if dir.path().join("tls/self-signed.names").exists() {
            break ClientTrust::Fingerprint(fingerprint_of(dir.path(), names.clone()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (status, body) = https(server.addr, &pinned, "GET", "/healthz", &[], b"").await;
    assert_eq!((status, String::from_utf8_lossy(&body).trim()), (200, "ok"));

    // Another certificate is not this server's; nor is a system root behind a self-signed one.
    let wrong = ClientTrust::Fingerprint("00".repeat(32));
    assert!(tls_connect(server.addr, &wrong).await.is_err());
    assert!(tls_connect(server.addr, &ClientTrust::System).await.is_err());
    // Plain HTTP on the TLS port gets no answer, only a closed connection.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut plain, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read_to_end(&mut plain, &mut answer)).await.unwrap();
    assert!(read.is_err() || !answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));

    // wss: hello, join, publish, ack.
    let tls = tls_connect(server.addr, &pinned).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", server.addr.port()), tls).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    let send = |msg: &ClientMsg| tokio_tungstenite::tungstenite::Message::Text(encode(msg).into());
    ws.send(send(&ClientMsg::hello())).await.unwrap();
    let name = DisplayName::try_from("secure").unwrap();
    ws.send(send(&ClientMsg::Join { room: room("stage"), name, token: None, resume: None })).await.unwrap();
    let id = ClientMsgId::try_from("m1").unwrap();
    ws.send(send(&ClientMsg::Publish { room: room("stage"), id, body: chat("over TLS") })).await.unwrap();
    let mut grant = None;
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        match decode_server(frame.to_text().unwrap()).unwrap() {
            ServerMsg::Grant { token, .. } => grant = Some(token),
            ServerMsg::Ack { seq, .. } => break assert_eq!(seq, 1),
            _ => {}
        }
    }
    let grant = grant.expect("a grant on join");

    // The blob API over https: up, then down with a range (hyper's path: no sendfile on TLS).
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let hash = sha256_hex(&bytes);
    let auth = format!("Bearer {grant}");
    let url = format!("/api/rooms/stage/blobs/{hash}?name=data.bin");
    let (status, _) = https(server.addr, &pinned, "PUT", &url, &[("authorization", &auth)], &bytes).await;
    assert_eq!(status, 201);
    let (status, body) =
        https(server.addr, &pinned, "GET", &url, &[("authorization", &auth), ("range", "bytes=1000-1999")], b"").await;
    assert_eq!((status, &body[..]), (206, &bytes[1000..2000]));

    // WHIP over https: the same offer and answer, then media over the UDP port.
    let endpoint =
        Endpoint::parse_with(&format!("https://localhost:{}/whip/stage", server.addr.port()), &pinned).unwrap();
    let mut publisher =
        MediaClient::start_at(endpoint, Some(KEY), true, &[MediaKind::Video], &[str0m::format::Codec::Vp8])
            .await
            .unwrap();
    publisher.wait_connected(WAIT).await.unwrap();
    assert_eq!(publisher.close().await.unwrap(), 200);
    drop(ws);
    server.stop().await;
}

#[tokio::test]
async fn certificate_files_are_reloaded_without_a_restart_and_a_bad_pair_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let make = |name: &str| rcgen::generate_simple_self_signed(vec![name.to_owned(), "localhost".to_owned()]).unwrap();
    let write = |made: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        std::fs::write(&cert, made.cert.pem()).unwrap();
    };
    let fingerprint = |made: &rcgen::CertifiedKey<rcgen::KeyPair>| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(made.cert.der().as_ref());
        ClientTrust::Fingerprint(hex::encode(digest))
    };
    let (first, second) = (make("one.example"), make("two.example"));
    write(&first);
    let server = start(test_config(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    }))
    .await;
    let mut tries = 0;
    while tls_connect(server.addr, &fingerprint(&first)).await.is_err() {
        tries += 1;
        assert!(tries < 200, "the server never served the first certificate");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A key that does not fit is refused: the first certificate stays in use.
    std::fs::write(&key, second.signing_key.serialize_pem()).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(tls_connect(server.addr, &fingerprint(&first)).await.is_ok(), "still the first");
    // The whole new pair is taken within the watch interval.
    write(&second);
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while tls_connect(server.addr, &fingerprint(&second)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the new certificate was not taken");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(tls_connect(server.addr, &fingerprint(&first)).await.is_err(), "the old one is gone");
    server.stop().await;
}

//! Media files: `relaycast publish` of a file ffmpeg makes here, and the server's recording of
//! that broadcast, read back by ffprobe (Debian's ffmpeg, installed by `scripts/dev`).

mod common;

use common::*;
use relaycast::publish::{publish, PublishArgs, PublishError};
use relaycast_shared::media::RecordingInfo;
use relaycast_shared::{Body, ServerMsg};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const KEY: &str = "files-stream-key";

fn make_test_file(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let path = dir.join("test.webm");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440",
        ])
        .args(["-t", &seconds.to_string(), "-c:v", "libvpx", "-g", "15", "-b:v", "400k", "-c:a", "libopus"])
        .arg(&path)
        .status()
        .expect("ffmpeg is installed (scripts/dev setup installs it)");
    assert!(status.success());
    path
}

fn args(file: &Path, server: &TestServer, repeat: bool) -> PublishArgs {
    PublishArgs {
        file: file.to_owned(),
        room: room("rec"),
        server: format!("http://{}", server.addr),
        token: Some(KEY.to_owned()),
        whip_url: None,
        repeat,
        connect_timeout: Duration::from_secs(10),
        tls_fingerprint: None,
        ca_cert: None,
    }
}

/// `ffprobe`'s view of a file: (format duration in seconds, codec names).
fn probe(path: &Path) -> (f64, Vec<String>) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "default=nw=1"])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let duration = text.lines().find_map(|l| l.strip_prefix("duration=")).and_then(|d| d.parse().ok()).unwrap_or(0.0);
    let codecs = text.lines().filter_map(|l| l.strip_prefix("codec_name=")).map(str::to_owned).collect();
    (duration, codecs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_file_is_recorded_by_the_server_into_a_webm_that_ffprobe_reads() {
    let dir = tempfile::tempdir().unwrap();
    let file = make_test_file(dir.path(), 3);
    let server = start(test_config(|c| c.stream_keys = vec![(room("rec"), KEY.to_owned())])).await;
    let (mut member, grant) = join_with_grant(&server, "rec").await;

    // Publish the file over and over until told to stop.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let publishing = {
        let args = args(&file, &server, true);
        tokio::spawn(async move {
            publish(&args, async {
                let _ = stop_rx.await;
            })
            .await
        })
    };
    loop {
        if let ServerMsg::Broadcast { state, .. } = member.recv().await {
            if state.live {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let auth = format!("Bearer {KEY}");
    let path = "/api/rooms/rec/recording";
    let started = request(server.addr, "POST", path, &[("authorization", &auth)], b"").await;
    assert_eq!(started.status, 201, "{}", started.text());
    let again = request(server.addr, "POST", path, &[("authorization", &auth)], b"").await;
    assert_eq!((again.status, again.header("relaycast-error")), (409, "already_recording"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stopped = request(server.addr, "DELETE", path, &[("authorization", &auth)], b"").await;
    assert_eq!(stopped.status, 200, "{}", stopped.text());
    let info: RecordingInfo = stopped.json();
    assert!((3000..5000).contains(&info.duration_ms), "recorded {} ms", info.duration_ms);

    // The room is told of the file, from the server, and it downloads like any room file.
    let announced = member
        .recv_until(|m| matches!(m, ServerMsg::Message { message, .. } if matches!(message.body, Body::File { .. })))
        .await;
    let Some(ServerMsg::Message { message, .. }) = announced.last() else { panic!("no file message") };
    assert_eq!(message.from.as_str(), "relaycast");
    let blob =
        request(server.addr, "GET", &format!("/api/rooms/rec/blobs/{}?grant={grant}", info.hash), &[], b"").await;
    assert_eq!(blob.status, 200);
    assert_eq!(blob.body.len() as u64, info.size);
    assert_eq!(blob.header("content-type"), "video/webm");
    let saved = dir.path().join("recording.webm");
    std::fs::write(&saved, &blob.body).unwrap();
    let (duration, codecs) = probe(&saved);
    assert!(codecs.contains(&"vp8".to_owned()) && codecs.contains(&"opus".to_owned()), "codecs: {codecs:?}");
    assert!((3.0..5.5).contains(&duration), "ffprobe duration {duration} s");
    // Every frame decodes.
    let frames = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames"])
        .args(["-of", "csv=p=0"])
        .arg(&saved)
        .output()
        .unwrap();
    let frames: u32 = String::from_utf8_lossy(&frames.stdout).trim().parse().unwrap_or(0);
    assert!(frames >= 80, "{frames} decodable video frames in about 4 s at 30 fps");

    stop_tx.send(()).unwrap();
    let sent = publishing.await.unwrap().expect("publish ends cleanly");
    assert!(sent > 100, "{sent} frames sent");
    server.stop().await;
}

#[tokio::test]
async fn publish_refuses_what_it_cannot_send_and_reports_a_refusing_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(test_config(|c| c.stream_keys = vec![(room("rec"), KEY.to_owned())])).await;
    // An MP4 file.
    let mp4 = dir.path().join("clip.mp4");
    std::fs::write(&mp4, b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom").unwrap();
    let err = publish(&args(&mp4, &server, false), std::future::pending()).await.unwrap_err();
    assert!(matches!(err, PublishError::Source(_)));
    assert!(err.to_string().contains("WebM/Matroska (VP8 video, Opus audio)"), "{err}");
    // A good file with the wrong key: the server's reason comes through.
    let file = make_test_file(dir.path(), 1);
    let mut bad = args(&file, &server, false);
    bad.token = Some("not-the-key".into());
    let err = publish(&bad, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("403") && err.to_string().contains("stream key"), "{err}");
    // And the right key plays the whole file.
    let sent = publish(&args(&file, &server, false), std::future::pending()).await.unwrap();
    assert!(sent >= 30, "{sent} frames");
    server.stop().await;
}

#[tokio::test]
async fn publish_speaks_https_to_a_self_signed_server_it_pins() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(|c| {
        c.stream_keys = vec![(room("rec"), KEY.to_owned())];
        c.tls_self_signed = true;
        c.data_dir = dir.path().join("data");
    });
    let names = relaycast::tls::machine_names(config.bind.ip(), &config.tls_names);
    let server = start(config).await;
    let file = make_test_file(dir.path(), 1);
    let mut https = args(&file, &server, false);
    https.server = format!("https://localhost:{}", server.addr.port());
    // Without a way to trust it, a self-signed server is refused, with the reason.
    let err = publish(&https, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
    // Pinned by the fingerprint it printed, it is.
    let kept = relaycast::tls::TlsSource::SelfSigned { dir: dir.path().join("data/tls"), names };
    https.tls_fingerprint = Some(relaycast::tls::Certificates::load(kept).unwrap().fingerprint());
    let sent = publish(&https, std::future::pending()).await.unwrap();
    assert!(sent >= 30, "{sent} frames");
    server.stop().await;
}

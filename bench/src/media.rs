//! Media relay: one synthetic publisher (about 1 Mbit/s of VP8-shaped video at 30 fps and
//! 64 kbit/s of Opus-sized audio at 50 fps) and N viewers, all real WebRTC peers (str0m) in this
//! process, against a running server. For each N: forwarded packets per second, bitrate out,
//! server CPU per 100 Mbit/s, frame loss at the viewers, and time to first frame.
//!
//! Every frame carries its number, so a viewer knows exactly which frames of the measured
//! window it missed. The load generator shares the machine with the server: at the largest N
//! the viewers' own decryption competes for the same two cores.

use crate::stats::percentile;
use relaycast::media::client::{synthetic_vp8_number, ClientEvent, MediaClient, Synthetic, SyntheticStats};
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

#[derive(Debug, clap::Args)]
pub struct MediaArgs {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    /// A stream key for the room (the server's --stream-key).
    #[arg(long)]
    key: String,
    #[arg(long, default_value = "bench")]
    room: String,
    /// Viewer counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,300")]
    viewers: Vec<usize>,
    /// Length of each measured window.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1000)]
    video_kbps: u64,
}

/// Frame numbers a viewer got (video), and its first-frame time.
#[derive(Debug, Default)]
struct ViewerLog {
    frames: Vec<u32>,
    first_frame: Option<Duration>,
}

/// CPU seconds the process has used (user + system).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn metric(server: &str, name: &str) -> f64 {
    let endpoint = relaycast::media::client::Endpoint::parse(&format!("{server}/metrics")).ok();
    let Some(endpoint) = endpoint else { return 0.0 };
    let Ok(reply) = relaycast::media::client::http_request(&endpoint, "GET", None, None, bytes::Bytes::new()).await
    else {
        return 0.0;
    };
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

pub async fn run(args: MediaArgs) -> anyhow::Result<()> {
    for &n in &args.viewers {
        measure(&args, n).await?;
        // Let the sessions of this round end before the next.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}

async fn measure(args: &MediaArgs, viewers: usize) -> anyhow::Result<()> {
    let whip = format!("{}/whip/{}", args.server, args.room);
    let whep = format!("{}/whep/{}", args.server, args.room);
    let stop = Arc::new(AtomicBool::new(false));

    // The publisher: keyframe every 2 s, and when asked.
    let mut publisher = MediaClient::start(&whip, Some(&args.key), true, &[MediaKind::Audio, MediaKind::Video]).await?;
    publisher.wait_connected(Duration::from_secs(10)).await?;
    let frame_bytes = (args.video_kbps * 1000 / 8 / 30) as usize;
    let stats = Arc::new(SyntheticStats::default());
    let publishing = {
        let (stop, stats) = (stop.clone(), stats.clone());
        let spec = Synthetic {
            video_frame_bytes: frame_bytes,
            audio_packet_bytes: 160,
            keyframe_every: Some(60),
            width: 640,
            height: 480,
        };
        tokio::spawn(async move {
            if let Err(err) = publisher.publish_synthetic(spec, &stop, &stats).await {
                eprintln!("the publisher failed: {err}");
            }
            publisher
        })
    };

    // The viewers, joining over about a second.
    let logs: Vec<Arc<Mutex<ViewerLog>>> = (0..viewers).map(|_| Arc::new(Mutex::new(ViewerLog::default()))).collect();
    let mut tasks = Vec::new();
    for log in &logs {
        let (whep, key, stop, log) = (whep.clone(), args.key.clone(), stop.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            let asked_at = Instant::now();
            let mut client =
                match MediaClient::start(&whep, Some(&key), false, &[MediaKind::Audio, MediaKind::Video]).await {
                    Ok(c) => c,
                    Err(err) => {
                        eprintln!("viewer failed to start: {err}");
                        return None;
                    }
                };
            while !stop.load(Ordering::Relaxed) {
                let until = Instant::now() + Duration::from_millis(50);
                let result = client
                    .pump(until, |e| {
                        if let ClientEvent::Media { kind: MediaKind::Video, data, .. } = e {
                            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                            if log.first_frame.is_none() {
                                log.first_frame = Some(asked_at.elapsed());
                            }
                            if let Some(n) = synthetic_vp8_number(&data) {
                                log.frames.push(n);
                            }
                        }
                    })
                    .await;
                if result.is_err() {
                    break;
                }
            }
            Some(client)
        }));
        tokio::time::sleep(Duration::from_millis(1000 / viewers.max(1) as u64)).await;
    }
    // Everyone watching, then the measured window.
    let deadline = Instant::now() + Duration::from_secs(20);
    while logs.iter().any(|l| l.lock().map(|l| l.first_frame.is_none()).unwrap_or(true)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (out0, bytes0, cpu0) = (
        metric(&args.server, "relaycast_media_datagrams_out_total").await,
        metric(&args.server, "relaycast_media_bytes_out_total").await,
        args.server_pid.and_then(cpu_seconds),
    );
    let first = stats.video_frames.load(Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let last = stats.video_frames.load(Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();
    let (out1, bytes1, cpu1) = (
        metric(&args.server, "relaycast_media_datagrams_out_total").await,
        metric(&args.server, "relaycast_media_bytes_out_total").await,
        args.server_pid.and_then(cpu_seconds),
    );
    // Give the window's last frames time to arrive, then stop everyone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let publisher = publishing.await?;
    let _ = publisher.close().await;
    for task in tasks {
        if let Ok(Some(client)) = task.await {
            let _ = client.close().await;
        }
    }

    let expected = (last - first) as u64 * viewers as u64;
    let mut received = 0u64;
    let mut ttff: Vec<u64> = Vec::new();
    let mut watching = 0;
    for log in &logs {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        let mut got: Vec<u32> = log.frames.iter().copied().filter(|n| (first..last).contains(n)).collect();
        got.sort_unstable();
        got.dedup();
        received += got.len() as u64;
        if let Some(t) = log.first_frame {
            watching += 1;
            ttff.push(t.as_millis() as u64);
        }
    }
    let loss = if expected == 0 { 1.0 } else { 1.0 - received as f64 / expected as f64 };
    let mbps = (bytes1 - bytes0) * 8.0 / elapsed / 1e6;
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some((b - a) / elapsed),
        _ => None,
    };
    let line = json!({
        "scenario": "media_fanout",
        "viewers": viewers,
        "watching": watching,
        "seconds": elapsed,
        "forwarded_packets_per_sec": ((out1 - out0) / elapsed).round(),
        "mbit_per_sec_out": (mbps * 10.0).round() / 10.0,
        "server_cpu_cores": cpu.map(|c| (c * 100.0).round() / 100.0),
        "server_cpu_seconds_per_100_mbit": cpu.filter(|_| mbps > 0.0).map(|c| ((c / mbps * 100.0) * 1000.0).round() / 1000.0),
        "video_frames_expected": expected,
        "video_frames_received": received,
        "loss_percent": (loss * 10000.0).round() / 100.0,
        "ttff_ms_p50": percentile(&mut ttff, 50.0),
        "ttff_ms_p95": percentile(&mut ttff, 95.0),
    });
    println!("{line}");
    Ok(())
}

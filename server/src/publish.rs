//! `relaycast publish <file> --room <room> --server <url>`: stream a media file into a room as
//! a live broadcast, at real-time pace, over WHIP (so any WHIP server takes it, with
//! `--whip-url`). The file's containers and codecs are listed in [`crate::media::source`].

use crate::media::client::{ClientEvent, Endpoint, MediaClient};
use crate::media::source::{MediaFile, SourceFrame};
use crate::tls::ClientTrust;
use clap::Parser;
use relaycast_shared::RoomName;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use str0m::format::Codec;
use str0m::media::{Frequency, MediaKind, MediaTime};

#[derive(Debug, Clone, Parser)]
#[command(
    name = "relaycast publish",
    about = "Stream a media file into a room as a live broadcast (WHIP)",
    after_help = "Files: WebM/Matroska with VP8 video and/or Opus audio, IVF with VP8, Ogg with Opus.\n\
                  Make one with ffmpeg: ffmpeg -i in.mp4 -c:v libvpx -g 30 -c:a libopus out.webm\n\
                  (a keyframe every second or so lets viewers who join mid-stream start quickly)."
)]
pub struct PublishArgs {
    /// The media file.
    pub file: PathBuf,
    /// The room to broadcast into.
    #[arg(long, value_parser = |s: &str| RoomName::try_from(s).map_err(|e| e.to_string()))]
    pub room: RoomName,
    /// The Relaycast server, e.g. `http://127.0.0.1:8080` or `https://rc.example.org`.
    #[arg(long, env = "RELAYCAST_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The room's stream key (from --stream-key on the server, or the room owner's).
    #[arg(long, env = "RELAYCAST_STREAM_KEY", hide_env_values = true)]
    pub token: Option<String>,
    /// Post to this WHIP endpoint instead of SERVER/whip/ROOM (another WHIP server).
    #[arg(long)]
    pub whip_url: Option<String>,
    /// Start over at the end of the file, until interrupted.
    #[arg(long = "loop")]
    pub repeat: bool,
    /// Over https, trust exactly the server certificate with this SHA-256 fingerprint (a
    /// self-signed Relaycast prints it at start), instead of the system's trusted roots.
    #[arg(long, env = "RELAYCAST_TLS_FINGERPRINT", conflicts_with = "ca_cert")]
    pub tls_fingerprint: Option<String>,
    /// Over https, also trust the CA certificate(s) in this PEM file.
    #[arg(long, env = "RELAYCAST_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// How long to wait for the media connection.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
}

/// Why publishing stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Source(#[from] crate::media::source::SourceError),
    #[error(transparent)]
    Client(#[from] crate::media::client::ClientError),
}

/// RTP time of a frame at `time_us`, in its codec's clock.
fn rtp_time(kind: MediaKind, time_us: u64) -> MediaTime {
    match kind {
        MediaKind::Video => MediaTime::new(time_us * 9 / 100, Frequency::NINETY_KHZ),
        MediaKind::Audio => MediaTime::new(time_us * 48 / 1000, Frequency::FORTY_EIGHT_KHZ),
    }
}

/// Stream the file until its end (or forever with `--loop`, or until `stop` resolves), then
/// end the broadcast with `DELETE`. Returns the frames sent.
pub async fn publish(args: &PublishArgs, stop: impl std::future::Future<Output = ()>) -> Result<u64, PublishError> {
    let media = MediaFile::open(&args.file)?;
    for codec in &media.skipped {
        eprintln!("warning: skipping a {codec} track (relaycast publish sends VP8 video and Opus audio)");
    }
    let mut kinds = Vec::new();
    if media.tracks.audio {
        kinds.push(MediaKind::Audio);
    }
    if media.tracks.video {
        kinds.push(MediaKind::Video);
    }
    let url =
        args.whip_url.clone().unwrap_or_else(|| format!("{}/whip/{}", args.server.trim_end_matches('/'), args.room));
    let trust = match (&args.tls_fingerprint, &args.ca_cert) {
        (Some(fingerprint), _) => ClientTrust::Fingerprint(fingerprint.clone()),
        (None, Some(ca)) => ClientTrust::CaFile(ca.clone()),
        (None, None) => ClientTrust::System,
    };
    let endpoint = Endpoint::parse_with(&url, &trust)?;
    let mut client = MediaClient::start_at(endpoint, args.token.as_deref(), true, &kinds, &[Codec::Vp8]).await?;
    client.wait_connected(args.connect_timeout).await?;
    eprintln!(
        "publishing {} into room {} ({} frames, {:.1} s{})",
        args.file.display(),
        args.room,
        media.frames.len(),
        media.duration_us as f64 / 1e6,
        if args.repeat { ", looping" } else { "" }
    );
    let mut stop = std::pin::pin!(stop);
    let mut sent = 0u64;
    let result = tokio::select! {
        result = send_frames(&mut client, &media, args.repeat, &mut sent) => result,
        _ = &mut stop => Ok(()),
    };
    let status = client.close().await;
    result?;
    if let Ok(status) = status {
        if status >= 300 {
            eprintln!("warning: ending the session answered {status}");
        }
    }
    Ok(sent)
}

async fn send_frames(
    client: &mut MediaClient,
    media: &MediaFile,
    repeat: bool,
    sent: &mut u64,
) -> Result<(), PublishError> {
    let start = Instant::now();
    let mut round = 0u64;
    loop {
        let base_us = round * media.duration_us;
        for SourceFrame { kind, time_us, data, .. } in &media.frames {
            let at_us = base_us + time_us;
            let due = start + Duration::from_micros(at_us);
            // Keyframe requests cannot be honoured from a file: the next one comes in its time.
            client.pump(due, |_: ClientEvent| {}).await?;
            client.write(*kind, 0, rtp_time(*kind, at_us), data)?;
            *sent += 1;
        }
        round += 1;
        if !repeat {
            // Let the last packets leave before the session is deleted.
            client.pump(Instant::now() + Duration::from_millis(200), |_| {}).await?;
            return Ok(());
        }
    }
}

//! Recording a broadcast into a WebM file (VP8 + Opus, libwebm's muxer), saved into the blob
//! cache as one of the room's files and announced in the room's history.
//!
//! The recorder is one more queue in the room's fan-out, so a slow disk costs the recording
//! frames (it then waits for a keyframe), never the viewers. It runs on a blocking thread:
//! the muxer writes synchronously. The file starts at the first VP8 keyframe (its header gives
//! the picture size); H.264 video cannot go in WebM and is left out. The file is written in
//! "file" mode: at the end the muxer seeks back to write the duration and the seek index.

use super::rooms::{Forward, FrameQueue};
use super::{MediaError, Relay};
use crate::clock::now_millis;
use relaycast_shared::blobs::NewUpload;
use relaycast_shared::media::RecordingInfo;
use relaycast_shared::{BlobHash, Body, FileName, MediaType, RoomName};
use sha2::{Digest, Sha256};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use str0m::format::Codec;
use str0m::media::MediaKind;
use tokio::sync::mpsc;
use webm::mux::{AudioCodecId, SegmentBuilder, SegmentMode, VideoCodecId, Writer};

/// Frames queued toward the recorder (a few seconds of a broadcast).
const RECORDER_QUEUE: usize = 2048;

/// A finished recording file, before it goes into the cache.
#[derive(Debug)]
pub struct Recorded {
    pub path: PathBuf,
    pub duration_ms: u64,
}

/// The width and height of a VP8 keyframe, from its header (RFC 6386, 9.1).
pub fn vp8_dimensions(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    (width > 0 && height > 0).then_some((width, height))
}

/// The Opus identification header WebM carries as the audio track's codec private data
/// (RFC 7845, 5.1): stereo, 48 kHz, no pre-skip, mapping family 0.
fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(2); // channels
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family
    head
}

/// Where each track's timestamps start, so that both run from zero in step.
#[derive(Debug, Default)]
struct Clock {
    start: Option<Instant>,
    /// Per track: (first RTP time in µs, its offset from `start` in ns).
    tracks: std::collections::HashMap<(bool, usize), (u64, u64)>,
    last_ns: u64,
}

impl Clock {
    fn ns(&mut self, frame: &Forward) -> u64 {
        let start = *self.start.get_or_insert(frame.network_time);
        let key = (frame.kind == MediaKind::Video, frame.index);
        let rtp_us = frame.time.as_micros();
        let (first_us, offset_ns) = *self
            .tracks
            .entry(key)
            .or_insert_with(|| (rtp_us, frame.network_time.saturating_duration_since(start).as_nanos() as u64));
        let ns = offset_ns + rtp_us.saturating_sub(first_us) * 1000;
        // The muxer needs time to move forward across all tracks.
        self.last_ns = self.last_ns.max(ns);
        self.last_ns
    }
}

/// The recording loop: frames in, a WebM file out. Runs on a blocking thread.
fn record(
    mut frames: mpsc::Receiver<Arc<Forward>>,
    lagging: Arc<std::sync::atomic::AtomicBool>,
    path: &Path,
) -> Result<Recorded, String> {
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut pending = Some(Writer::new(BufWriter::new(file)));
    let mut segment = None;
    let mut video_track = None;
    let mut audio_track = None;
    let mut clock = Clock::default();
    let mut waiting_keyframe = true;
    let mut first_ns = None;
    while let Some(frame) = frames.blocking_recv() {
        if lagging.swap(false, Ordering::Relaxed) {
            waiting_keyframe = true;
        }
        let video = frame.kind == MediaKind::Video;
        // One video track (the first) and one audio track go into the file.
        if frame.index != 0 || (video && frame.params.spec().codec != Codec::Vp8) {
            continue;
        }
        if video && frame.keyframe {
            waiting_keyframe = false;
        }
        if waiting_keyframe {
            continue;
        }
        if segment.is_none() {
            let Some((width, height)) = video.then(|| vp8_dimensions(&frame.data)).flatten() else {
                continue;
            };
            let writer = pending.take().ok_or("the muxer was set up twice")?;
            let builder = SegmentBuilder::new(writer).map_err(|e| format!("muxer: {e:?}"))?;
            let builder = builder.set_mode(SegmentMode::File).map_err(|e| format!("muxer: {e:?}"))?;
            let builder = builder.set_writing_app("Relaycast").map_err(|e| format!("muxer: {e:?}"))?;
            let (builder, v) =
                builder.add_video_track(width, height, VideoCodecId::VP8, None).map_err(|e| format!("muxer: {e:?}"))?;
            let (builder, a) =
                builder.add_audio_track(48_000, 2, AudioCodecId::Opus, None).map_err(|e| format!("muxer: {e:?}"))?;
            let builder = builder.set_codec_private(a, &opus_head()).map_err(|e| format!("muxer: {e:?}"))?;
            segment = Some(builder.build());
            video_track = Some(v);
            audio_track = Some(a);
        }
        let (Some(seg), Some(v), Some(a)) = (segment.as_mut(), video_track, audio_track) else {
            continue;
        };
        let ns = clock.ns(&frame);
        first_ns.get_or_insert(ns);
        let result = if video {
            seg.add_frame(v, &frame.data, ns, frame.keyframe)
        } else {
            seg.add_frame(a, &frame.data, ns, true)
        };
        result.map_err(|e| format!("writing a frame failed: {e:?}"))?;
    }
    let Some(seg) = segment else {
        return Err("nothing was recorded: no VP8 keyframe arrived while recording".into());
    };
    let duration_ns = clock.last_ns - first_ns.unwrap_or(0);
    let writer = seg.finalize(None).map_err(|_| "finishing the WebM file failed".to_owned())?;
    let mut out = writer.into_inner();
    out.flush().map_err(|e| format!("writing the recording failed: {e}"))?;
    out.get_ref().sync_all().map_err(|e| format!("writing the recording failed: {e}"))?;
    Ok(Recorded { path: path.to_owned(), duration_ms: duration_ns / 1_000_000 })
}

/// Start recording `room`'s broadcast.
pub fn start(relay: &Arc<Relay>, room: &RoomName) -> Result<(), MediaError> {
    let (queue, rx) = FrameQueue::new(RECORDER_QUEUE);
    let lagging = queue.lagging.clone();
    {
        let mut rooms = relay.lock_rooms();
        if !rooms.has_publisher(room) {
            return Err(MediaError::NotLive);
        }
        if !rooms.set_recorder(room, Some(queue)) {
            return Err(MediaError::AlreadyRecording);
        }
        // The file starts at a keyframe: ask for one now rather than wait.
        rooms.want_keyframe(room, 0);
    }
    std::fs::create_dir_all(&relay.scratch).map_err(|e| MediaError::RecordingFailed(e.to_string()))?;
    let path = relay.scratch.join(format!("recording-{:032x}.webm", rand::random::<u128>()));
    let gauge = super::TaskGauge::new(relay);
    let task = tokio::task::spawn_blocking(move || {
        let _gauge = gauge;
        let result = record(rx, lagging, &path);
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    });
    relay.lock_recorders().insert(room.clone(), task);
    relay.publish_state(room);
    Ok(())
}

/// Stop recording `room`, save the file as a room file, announce it; the saved file's info.
pub async fn stop(relay: &Arc<Relay>, room: &RoomName) -> Result<RecordingInfo, MediaError> {
    // Dropping the queue ends the recorder once it has written what is queued.
    let task = {
        let mut rooms = relay.lock_rooms();
        if !rooms.set_recorder(room, None) {
            return Err(MediaError::NotRecording);
        }
        relay.lock_recorders().remove(room)
    };
    relay.publish_state(room);
    let task = task.ok_or(MediaError::NotRecording)?;
    let recorded =
        task.await.map_err(|e| MediaError::RecordingFailed(e.to_string()))?.map_err(MediaError::RecordingFailed)?;
    let saved = save(relay, room, &recorded).await;
    let _ = tokio::fs::remove_file(&recorded.path).await;
    let info = saved?;
    relay.events.announce(
        room,
        Body::File { hash: info.hash.clone(), name: info.name.clone(), size: info.size, mime: webm_type()? },
    );
    Ok(info)
}

fn webm_type() -> Result<MediaType, MediaError> {
    MediaType::try_from("video/webm").map_err(|e| MediaError::Internal(e.to_string()))
}

/// Hash the file, then copy it into the blob cache as `room`'s (the cache takes the hash
/// first, so the file is read twice; it is fresh in the page cache).
async fn save(relay: &Arc<Relay>, room: &RoomName, recorded: &Recorded) -> Result<RecordingInfo, MediaError> {
    let cache =
        relay.cache.as_ref().ok_or_else(|| MediaError::RecordingFailed("no blob cache to keep it in".into()))?;
    let failed = |e: std::io::Error| MediaError::RecordingFailed(e.to_string());
    let path = recorded.path.clone();
    let (hash, size) = tokio::task::spawn_blocking(move || -> std::io::Result<(String, u64)> {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok((hex::encode(hasher.finalize()), size))
    })
    .await
    .map_err(|e| MediaError::RecordingFailed(e.to_string()))?
    .map_err(failed)?;
    let hash = BlobHash::try_from(hash).map_err(|e| MediaError::Internal(e.to_string()))?;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "-");
    let name = FileName::try_from(format!("recording {room} {stamp}.webm"))
        .map_err(|e| MediaError::Internal(e.to_string()))?;
    let new = NewUpload { hash: hash.clone(), size, name: name.clone(), mime: webm_type()? };
    let store_failed = |e: crate::blobs::CacheError| MediaError::RecordingFailed(e.to_string());
    match cache.put(room, None, new).await.map_err(store_failed)? {
        Err(_already) => {}
        Ok(mut writer) => {
            let mut file = tokio::fs::File::open(&recorded.path).await.map_err(failed)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await.map_err(failed)?;
                if n == 0 {
                    break;
                }
                writer.write(&buf[..n]).await.map_err(store_failed)?;
            }
            writer.finish().await.map_err(store_failed)?;
        }
    }
    tracing::info!(%room, %hash, size, duration_ms = recorded.duration_ms, at = now_millis(), "recording saved");
    Ok(RecordingInfo { hash, name, size, duration_ms: recorded.duration_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframe_headers_give_the_picture_size() {
        // Frame tag (keyframe bit clear), start code, 320x240.
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a];
        frame.extend_from_slice(&320u16.to_le_bytes());
        frame.extend_from_slice(&240u16.to_le_bytes());
        assert_eq!(vp8_dimensions(&frame), Some((320, 240)));
        let mut inter = frame.clone();
        inter[0] |= 1;
        assert_eq!(vp8_dimensions(&inter), None, "an inter frame has no size");
        assert_eq!(vp8_dimensions(&frame[..8]), None, "too short");
    }

    #[test]
    fn opus_head_is_the_19_byte_identification_header() {
        let head = opus_head();
        assert_eq!(head.len(), 19);
        assert_eq!(&head[..8], b"OpusHead");
        assert_eq!(u32::from_le_bytes([head[12], head[13], head[14], head[15]]), 48_000);
    }
}

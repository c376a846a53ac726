//! Media files `relaycast publish` streams: their frames, in time order.
//!
//! | container | tracks used |
//! |---|---|
//! | WebM / Matroska (`.webm`, `.mkv`) | the first VP8 video track (`V_VP8`), the first Opus audio track (`A_OPUS`) |
//! | IVF (`.ivf`) | VP8 video (`VP80`) |
//! | Ogg (`.ogg`, `.opus`) | Opus audio |
//!
//! The container is told by its first bytes, not its name. Other codecs in a WebM file are
//! skipped with a warning; a file with nothing to send is refused with the reason.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use str0m::media::MediaKind;

/// One frame of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFrame {
    pub kind: MediaKind,
    /// Presentation time from the start of the file.
    pub time_us: u64,
    pub keyframe: bool,
    pub data: Vec<u8>,
}

/// Why a file cannot be streamed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(
        "{0}: unsupported file; relaycast publish takes WebM/Matroska (VP8 video, Opus audio), \
         IVF (VP8) or Ogg (Opus)"
    )]
    UnknownContainer(String),
    #[error("{path}: nothing to send: {why}; relaycast publish sends VP8 video and Opus audio")]
    NoUsableTrack { path: String, why: String },
    #[error("{path}: the file is damaged: {why}")]
    Damaged { path: String, why: String },
}

/// Which tracks a file has, for the offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracks {
    pub video: bool,
    pub audio: bool,
}

/// A file's frames, all read up front (test media and prepared clips are small; a long file
/// costs its size in memory).
#[derive(Debug)]
pub struct MediaFile {
    pub tracks: Tracks,
    pub frames: Vec<SourceFrame>,
    /// Time of the last frame plus one frame's length: when a loop starts over.
    pub duration_us: u64,
    /// Tracks of the file left out (a codec the relay does not send), for a warning.
    pub skipped: Vec<String>,
}

impl MediaFile {
    pub fn open(path: &Path) -> Result<MediaFile, SourceError> {
        let name = path.display().to_string();
        let io = |source| SourceError::Io { path: name.clone(), source };
        let mut file = File::open(path).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut media = match &magic[..n] {
            b"DKIF" => read_ivf(file, &name)?,
            [0x1a, 0x45, 0xdf, 0xa3] => read_matroska(file, &name)?,
            b"OggS" => read_ogg(file, &name)?,
            _ => return Err(SourceError::UnknownContainer(name)),
        };
        if media.frames.is_empty() {
            return Err(SourceError::NoUsableTrack { path: name, why: "the file has no frames".into() });
        }
        media.frames.sort_by_key(|f| f.time_us);
        let last = media.frames.last().map_or(0, |f| f.time_us);
        // One video frame's length at 30 fps, a little past the last frame.
        media.duration_us = last + 33_333;
        Ok(media)
    }
}

fn read_ivf(file: File, name: &str) -> Result<MediaFile, SourceError> {
    let damaged = |why: &str| SourceError::Damaged { path: name.to_owned(), why: why.to_owned() };
    let mut reader = BufReader::new(file);
    let mut header = [0u8; 32];
    reader.read_exact(&mut header).map_err(|_| damaged("shorter than the IVF header"))?;
    let fourcc = &header[8..12];
    if fourcc != b"VP80" {
        return Err(SourceError::NoUsableTrack {
            path: name.to_owned(),
            why: format!("the IVF file holds {}", String::from_utf8_lossy(fourcc)),
        });
    }
    let header_len = u16::from_le_bytes([header[6], header[7]]) as u64;
    let rate = u32::from_le_bytes([header[16], header[17], header[18], header[19]]) as u64;
    let scale = u32::from_le_bytes([header[20], header[21], header[22], header[23]]) as u64;
    if rate == 0 || scale == 0 {
        return Err(damaged("the IVF time base is zero"));
    }
    reader.seek(SeekFrom::Start(header_len)).map_err(|_| damaged("the IVF header length is wrong"))?;
    let mut frames = Vec::new();
    loop {
        let mut frame_header = [0u8; 12];
        match reader.read_exact(&mut frame_header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(SourceError::Io { path: name.to_owned(), source: e }),
        }
        let size = u32::from_le_bytes([frame_header[0], frame_header[1], frame_header[2], frame_header[3]]) as usize;
        if size > 16 * 1024 * 1024 {
            return Err(damaged("a frame claims more than 16 MiB"));
        }
        let pts = u64::from_le_bytes(frame_header[4..12].try_into().unwrap_or([0; 8]));
        let mut data = vec![0u8; size];
        reader.read_exact(&mut data).map_err(|_| damaged("the last frame is cut short"))?;
        let keyframe = data.first().is_some_and(|b| b & 1 == 0);
        frames.push(SourceFrame { kind: MediaKind::Video, time_us: pts * scale * 1_000_000 / rate, keyframe, data });
    }
    Ok(MediaFile { tracks: Tracks { video: true, audio: false }, frames, duration_us: 0, skipped: Vec::new() })
}

fn read_matroska(file: File, name: &str) -> Result<MediaFile, SourceError> {
    use matroska_demuxer::{Frame, MatroskaFile, TrackType};
    let damaged = |why: String| SourceError::Damaged { path: name.to_owned(), why };
    let mut mkv = MatroskaFile::open(BufReader::new(file)).map_err(|e| damaged(e.to_string()))?;
    let scale_ns = mkv.info().timestamp_scale().get();
    let mut video = None;
    let mut audio = None;
    let mut skipped = Vec::new();
    for track in mkv.tracks() {
        let number = track.track_number().get();
        match (track.track_type(), track.codec_id()) {
            (TrackType::Video, "V_VP8") if video.is_none() => video = Some(number),
            (TrackType::Audio, "A_OPUS") if audio.is_none() => audio = Some(number),
            (_, codec) => skipped.push(codec.to_owned()),
        }
    }
    if video.is_none() && audio.is_none() {
        let why =
            if skipped.is_empty() { "no tracks".to_owned() } else { format!("its tracks are {}", skipped.join(", ")) };
        return Err(SourceError::NoUsableTrack { path: name.to_owned(), why });
    }
    let mut frames = Vec::new();
    let mut frame = Frame::default();
    while mkv.next_frame(&mut frame).map_err(|e| damaged(e.to_string()))? {
        let kind = if Some(frame.track) == video {
            MediaKind::Video
        } else if Some(frame.track) == audio {
            MediaKind::Audio
        } else {
            continue;
        };
        let keyframe = match kind {
            MediaKind::Video => frame.is_keyframe.unwrap_or_else(|| frame.data.first().is_some_and(|b| b & 1 == 0)),
            MediaKind::Audio => true,
        };
        frames.push(SourceFrame {
            kind,
            time_us: frame.timestamp.saturating_mul(scale_ns) / 1000,
            keyframe,
            data: std::mem::take(&mut frame.data),
        });
    }
    Ok(MediaFile { tracks: Tracks { video: video.is_some(), audio: audio.is_some() }, frames, duration_us: 0, skipped })
}

/// Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716, 3.1).
pub fn opus_packet_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let frame_samples: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize],
        12..=15 => [480, 960][(config % 2) as usize],
        _ => [120, 240, 480, 960][(config % 4) as usize],
    };
    let frames = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3f),
    };
    Some(frame_samples * frames)
}

fn read_ogg(file: File, name: &str) -> Result<MediaFile, SourceError> {
    let damaged = |why: String| SourceError::Damaged { path: name.to_owned(), why };
    let mut reader = ogg::PacketReader::new(BufReader::new(file));
    let mut frames = Vec::new();
    let mut samples = 0u64;
    let mut saw_head = false;
    while let Some(packet) = reader.read_packet().map_err(|e| damaged(e.to_string()))? {
        let data = packet.data;
        if data.starts_with(b"OpusHead") {
            saw_head = true;
            continue;
        }
        if data.starts_with(b"OpusTags") {
            continue;
        }
        if !saw_head {
            return Err(SourceError::NoUsableTrack {
                path: name.to_owned(),
                why: "the Ogg stream is not Opus (Vorbis, say)".into(),
            });
        }
        let Some(n) = opus_packet_samples(&data) else {
            continue;
        };
        frames.push(SourceFrame {
            kind: MediaKind::Audio,
            time_us: samples * 1_000_000 / 48_000,
            keyframe: true,
            data,
        });
        samples += n;
    }
    Ok(MediaFile { tracks: Tracks { video: false, audio: true }, frames, duration_us: 0, skipped: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_toc_gives_the_packet_length() {
        // config 31 (CELT FB 20 ms), one frame.
        assert_eq!(opus_packet_samples(&[31 << 3]), Some(960));
        // Two frames.
        assert_eq!(opus_packet_samples(&[(31 << 3) | 1]), Some(1920));
        // Code 3: the count is in the second byte.
        assert_eq!(opus_packet_samples(&[(31 << 3) | 3, 3]), Some(2880));
        assert_eq!(opus_packet_samples(&[]), None);
    }

    #[test]
    fn ivf_frames_are_read_with_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.ivf");
        let mut bytes = b"DKIF".to_vec();
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&32u16.to_le_bytes());
        bytes.extend_from_slice(b"VP80");
        bytes.extend_from_slice(&320u16.to_le_bytes());
        bytes.extend_from_slice(&240u16.to_le_bytes());
        bytes.extend_from_slice(&30u32.to_le_bytes()); // rate
        bytes.extend_from_slice(&1u32.to_le_bytes()); // scale
        bytes.extend_from_slice(&2u32.to_le_bytes()); // frames
        bytes.extend_from_slice(&0u32.to_le_bytes());
        for (pts, first) in [(0u64, 0x10u8), (1, 0x11)] {
            bytes.extend_from_slice(&3u32.to_le_bytes());
            bytes.extend_from_slice(&pts.to_le_bytes());
            bytes.extend_from_slice(&[first, 2, 3]);
        }
        std::fs::write(&path, &bytes).unwrap();
        let media = MediaFile::open(&path).unwrap();
        assert_eq!(media.tracks, Tracks { video: true, audio: false });
        assert_eq!(media.frames.len(), 2);
        assert!(media.frames[0].keyframe && !media.frames[1].keyframe);
        assert_eq!(media.frames[1].time_us, 33_333);

        // Cut in the middle of the last frame: damaged, not a panic.
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(MediaFile::open(&path), Err(SourceError::Damaged { .. })));
    }

    #[test]
    fn other_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.mp4");
        std::fs::write(&path, b"\0\0\0\x18ftypmp42").unwrap();
        let err = MediaFile::open(&path).unwrap_err();
        assert!(err.to_string().contains("unsupported file"), "{err}");
        assert!(matches!(MediaFile::open(&dir.path().join("missing")), Err(SourceError::Io { .. })));
    }
}

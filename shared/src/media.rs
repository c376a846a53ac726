//! Live broadcasts: the WHIP/WHEP paths, the broadcast state members see, recordings, and the
//! stable error codes of the media endpoints.
//!
//! | request | answer |
//! |---|---|
//! | `POST /whip/<room>` (`application/sdp` offer, `Authorization: Bearer <stream key>`) | 201, the SDP answer, `Location` of the session |
//! | `DELETE /whip/<room>/<session>` | 200: the broadcast ends |
//! | `POST /whep/<room>` (offer, `Authorization: Bearer <grant or stream key>`) | 201, answer, `Location` |
//! | `DELETE /whep/<room>/<session>` | 200: the viewer leaves |
//! | `POST /api/rooms/<room>/recording` (stream key) | 201: recording starts |
//! | `DELETE /api/rooms/<room>/recording` (stream key) | 200 [`RecordingInfo`]: stopped, saved as a room file |
//!
//! Errors are `text/plain` explanations with the code in the [`ERROR_HEADER`] header.

use crate::ids::RoomName;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Header that carries a [`MediaErrorCode`] on every media error answer.
pub const ERROR_HEADER: &str = "relaycast-error";

/// Where a room's publisher posts its offer (WHIP).
pub fn whip_path(room: &RoomName) -> String {
    format!("/whip/{room}")
}

/// Where a room's viewers post their offers (WHEP).
pub fn whep_path(room: &RoomName) -> String {
    format!("/whep/{room}")
}

/// Where the room's owner starts and stops recording.
pub fn recording_path(room: &RoomName) -> String {
    format!("/api/rooms/{room}/recording")
}

crate::ids::random_hex_id!(
    /// A media session's id: 32 lowercase hex digits chosen by the server, the last segment of
    /// the session's `Location`.
    SessionId,
    "session id"
);

/// A room's broadcast as its members see it ([`crate::ServerMsg::Broadcast`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastState {
    /// A publisher is sending.
    pub live: bool,
    /// When the current broadcast started (ms since the Unix epoch), while live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Viewers connected to the room's broadcast (they stay when the publisher leaves, and
    /// see it again when a publisher comes back).
    pub viewers: u32,
    /// The server is recording the broadcast.
    #[serde(default)]
    pub recording: bool,
    /// The member who is live, when it went live with its own stream key (absent for a
    /// publisher with the server's configured key, e.g. OBS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publisher: Option<crate::PeerId>,
}

/// A finished recording: a WebM file in the room's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingInfo {
    pub hash: crate::BlobHash,
    pub name: crate::FileName,
    pub size: u64,
    /// Length of the recorded media, in milliseconds.
    pub duration_ms: u64,
}

/// Stable codes of the media endpoints' errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaErrorCode {
    /// The path, a header or the body is not what the endpoint takes (400).
    BadRequest,
    /// The body is not an SDP offer that can be parsed (400).
    MalformedSdp,
    /// The offer has no audio or video in a codec the relay forwards (Opus, VP8, H.264) (400).
    NoUsableCodec,
    /// No bearer token (401).
    TokenRequired,
    /// The token is not this room's stream key or a valid grant (403).
    AccessDenied,
    /// The grant's holder is in the room but lacks the right this needs (upload, download,
    /// broadcast, watch, record) (403).
    Forbidden,
    /// No such session in this room (404).
    UnknownSession,
    /// No such route (404) or method (405).
    NotFound,
    MethodNotAllowed,
    /// The body is not `application/sdp` (415).
    UnsupportedMediaType,
    /// The room already has a publisher (409).
    PublisherBusy,
    /// The room is not live, or is already (not) recording (409).
    NotLive,
    AlreadyRecording,
    NotRecording,
    /// Too many media sessions on the server, or viewers in the room (503).
    TooManySessions,
    /// Saving a recording failed (500).
    RecordingFailed,
    /// The media relay is not running (503).
    Unavailable,
}

impl MediaErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaErrorCode::BadRequest => "bad_request",
            MediaErrorCode::MalformedSdp => "malformed_sdp",
            MediaErrorCode::NoUsableCodec => "no_usable_codec",
            MediaErrorCode::TokenRequired => "token_required",
            MediaErrorCode::AccessDenied => "access_denied",
            MediaErrorCode::Forbidden => "forbidden",
            MediaErrorCode::UnknownSession => "unknown_session",
            MediaErrorCode::NotFound => "not_found",
            MediaErrorCode::MethodNotAllowed => "method_not_allowed",
            MediaErrorCode::UnsupportedMediaType => "unsupported_media_type",
            MediaErrorCode::PublisherBusy => "publisher_busy",
            MediaErrorCode::NotLive => "not_live",
            MediaErrorCode::AlreadyRecording => "already_recording",
            MediaErrorCode::NotRecording => "not_recording",
            MediaErrorCode::TooManySessions => "too_many_sessions",
            MediaErrorCode::RecordingFailed => "recording_failed",
            MediaErrorCode::Unavailable => "unavailable",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            MediaErrorCode::BadRequest | MediaErrorCode::MalformedSdp | MediaErrorCode::NoUsableCodec => 400,
            MediaErrorCode::TokenRequired => 401,
            MediaErrorCode::AccessDenied | MediaErrorCode::Forbidden => 403,
            MediaErrorCode::UnknownSession | MediaErrorCode::NotFound => 404,
            MediaErrorCode::MethodNotAllowed => 405,
            MediaErrorCode::PublisherBusy
            | MediaErrorCode::NotLive
            | MediaErrorCode::AlreadyRecording
            | MediaErrorCode::NotRecording => 409,
            MediaErrorCode::UnsupportedMediaType => 415,
            MediaErrorCode::RecordingFailed => 500,
            MediaErrorCode::TooManySessions | MediaErrorCode::Unavailable => 503,
        }
    }

    /// Every code, for tests and docs.
    pub const ALL: &'static [MediaErrorCode] = &[
        MediaErrorCode::BadRequest,
        MediaErrorCode::MalformedSdp,
        MediaErrorCode::NoUsableCodec,
        MediaErrorCode::TokenRequired,
        MediaErrorCode::AccessDenied,
        MediaErrorCode::Forbidden,
        MediaErrorCode::UnknownSession,
        MediaErrorCode::NotFound,
        MediaErrorCode::MethodNotAllowed,
        MediaErrorCode::UnsupportedMediaType,
        MediaErrorCode::PublisherBusy,
        MediaErrorCode::NotLive,
        MediaErrorCode::AlreadyRecording,
        MediaErrorCode::NotRecording,
        MediaErrorCode::TooManySessions,
        MediaErrorCode::RecordingFailed,
        MediaErrorCode::Unavailable,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for MediaErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_client_errors_where_the_client_is_at_fault() {
        for code in MediaErrorCode::ALL {
            assert_eq!(MediaErrorCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(MediaErrorCode::MalformedSdp.status(), 400);
        assert_eq!(MediaErrorCode::PublisherBusy.status(), 409);
        assert_eq!(MediaErrorCode::parse("nope"), None);
    }

    #[test]
    fn session_ids_are_32_hex_digits() {
        let id = SessionId::from_bits(0xabc);
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(SessionId::try_from(id.as_str()), Ok(id));
        assert!(SessionId::try_from("../etc").is_err());
        assert!(SessionId::try_from("A".repeat(32)).is_err());
    }

    #[test]
    fn broadcast_state_leaves_out_what_is_empty() {
        let idle = serde_json::to_value(BroadcastState::default()).unwrap();
        assert_eq!(idle, serde_json::json!({"live": false, "viewers": 0, "recording": false}));
        let back: BroadcastState = serde_json::from_str(r#"{"live":true,"since":5,"viewers":2}"#).unwrap();
        assert_eq!(back, BroadcastState { live: true, since: Some(5), viewers: 2, ..BroadcastState::default() });
    }
}

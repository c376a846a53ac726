//! Stable error codes and WebSocket close codes.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A machine-readable error code. The JSON form (snake_case) is stable: clients may match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON, or not a JSON object with a string `"type"`.
    Malformed,
    /// The `"type"` is not one this server knows.
    UnknownType,
    /// A field is missing, of the wrong type, or fails validation (ids, names, sizes).
    InvalidField,
    /// The frame is larger than the server's `max_frame_bytes`.
    FrameTooLarge,
    /// Binary frames are not part of the protocol.
    BinaryUnsupported,
    /// The client's protocol version is not one the server speaks.
    UnsupportedProtocol,
    /// The first message must be `hello`.
    HelloRequired,
    /// `hello` was already sent on this connection.
    AlreadyGreeted,
    /// No access token, or one that is not genuine (bad signature, wrong audience, unknown
    /// key, malformed). Get a new one from the app.
    Unauthorized,
    /// The token is genuine but does not grant this (no right to join this room, to publish,
    /// to go live, ...).
    Forbidden,
    /// The token has expired (or expired on an open connection without a refresh in time).
    TokenExpired,
    /// You were removed from the room (or the server) by a moderator or the app.
    Removed,
    /// The room was closed by the app.
    RoomClosed,
    /// The action needs membership of a room the connection has not joined.
    NotJoined,
    /// The connection is already in that room.
    AlreadyJoined,
    /// The connection is in as many rooms as it may be.
    TooManyRooms,
    /// The room has as many peers as it may have.
    RoomFull,
    /// The server holds as many rooms as it may.
    ServerFull,
    /// Signaling addressed to a peer that is not in the room.
    UnknownPeer,
    /// A file message names a blob the server does not have (upload it first).
    UnknownBlob,
    /// No message with that sequence number in the room's history (never, or evicted).
    UnknownMessage,
    /// Too many messages; this one was dropped.
    RateLimited,
    /// The server cannot take more messages right now (storage is behind); retry later.
    Overloaded,
    /// The shared message store of a multi-node deployment (Redis) cannot be reached; the
    /// message was not taken (or, when the connection broke mid-write, may have been). Retry.
    StoreUnavailable,
    /// The connection did not read its messages fast enough and was closed.
    SlowConsumer,
    /// No sign of life (pong) within the idle timeout.
    IdleTimeout,
    /// No `hello` within the hello timeout after the WebSocket opened.
    HelloTimeout,
    /// The server is shutting down; reconnect and resume.
    ShuttingDown,
    /// A fault on the server's side.
    Internal,
}

impl ErrorCode {
    /// The wire form, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BinaryUnsupported => "binary_unsupported",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::AlreadyGreeted => "already_greeted",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TokenExpired => "token_expired",
            ErrorCode::Removed => "removed",
            ErrorCode::RoomClosed => "room_closed",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::UnknownBlob => "unknown_blob",
            ErrorCode::UnknownMessage => "unknown_message",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::HelloTimeout => "hello_timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection is closed by the server. The WebSocket close frame carries the code
/// ([`CloseCode::code`]) and the [`ErrorCode`] as its reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1001: the server is going away (shutdown).
    GoingAway,
    /// 1003: the peer sent data the protocol does not accept on this connection.
    UnsupportedData,
    /// 1008: protocol or policy violation (version mismatch, slow consumer, idle).
    PolicyViolation,
    /// 1009: a frame over the size limit.
    MessageTooBig,
    /// 1011: a server fault.
    InternalError,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::GoingAway => 1001,
            CloseCode::UnsupportedData => 1003,
            CloseCode::PolicyViolation => 1008,
            CloseCode::MessageTooBig => 1009,
            CloseCode::InternalError => 1011,
        }
    }

    /// The close code that goes with an error that ends a connection.
    pub fn for_error(code: ErrorCode) -> CloseCode {
        match code {
            ErrorCode::ShuttingDown => CloseCode::GoingAway,
            ErrorCode::FrameTooLarge => CloseCode::MessageTooBig,
            ErrorCode::BinaryUnsupported => CloseCode::UnsupportedData,
            ErrorCode::Internal => CloseCode::InternalError,
            _ => CloseCode::PolicyViolation,
        }
    }
}

/// Why an incoming frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {size} bytes is over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("not a JSON object with a string \"type\": {0}")]
    Malformed(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("invalid field: {0}")]
    InvalidField(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::Malformed(_) => ErrorCode::Malformed,
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
            DecodeError::InvalidField(_) => ErrorCode::InvalidField,
        }
    }
}

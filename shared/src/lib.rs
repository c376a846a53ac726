//! The Relaycast wire protocol, shared by the server and the browser app.
//!
//! Messages travel as JSON in WebSocket text frames, one message per frame, tagged by `"type"`.
//! Every connection starts with [`ClientMsg::Hello`] carrying [`PROTOCOL_VERSION`]; the server
//! answers [`ServerMsg::Welcome`] or an [`ErrorCode::UnsupportedProtocol`] error.
//!
//! # Layout
//! - [`ids`]: validated newtypes (room names, peer ids, display names, ...). Invalid values are
//!   rejected while decoding, so code holding one never re-checks it.
//! - [`msg`]: [`ClientMsg`] (browser → server) and [`ServerMsg`] (server → browser).
//! - [`error`]: [`ErrorCode`], the stable machine-readable codes, and [`DecodeError`].
//! - [`codec`]: decoding with size limits and precise error codes; the encode-once frame builders
//!   the server uses to fan out one serialization to many recipients.
//! - [`limits`]: protocol-wide hard limits.
//! - [`auth`]: rights ([`Right`], [`Rights`]) a member has in a room.
//! - [`blobs`]: the blob cache's HTTP API (paths, bodies, error codes).
//! - [`media`]: live broadcasts (WHIP/WHEP paths, broadcast state, recordings, error codes).
//!
//! This crate has no IO and no async runtime: it builds for native and `wasm32-unknown-unknown`.

// Nothing from the network or the disk is unwrapped; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod auth;
pub mod blobs;
pub mod codec;
pub mod error;
pub mod ids;
pub mod limits;
pub mod media;
pub mod msg;

pub use auth::{Right, Rights};
pub use codec::{decode_client, decode_server, encode};
pub use error::{CloseCode, DecodeError, ErrorCode};
pub use ids::{
    AccessToken, BlobHash, ChatText, ClientKey, ClientMsgId, DisplayName, Epoch, FileName, IdError, MediaType, PeerId,
    Reason, RoomName, UserId,
};
pub use limits::PROTOCOL_VERSION;
pub use msg::{
    Body, ClientMsg, IceServer, PeerInfo, ResumeFrom, RoomMessage, ServerLimits, ServerMsg, Signal, UserInfo,
};

//! The network side of the app: the room session over WebSocket and its reconnect policy, the
//! call (WebRTC mesh), file transfers (peer to peer and through the server's blob cache), and
//! live broadcasts through the server's media relay (WHIP/WHEP).

pub mod backoff;
pub mod broadcast;
pub mod call;
pub mod devices;
pub mod files;
pub mod http;
pub mod session;
pub mod token;

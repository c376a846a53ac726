//! The network side of the app: the room session over WebSocket and its reconnect policy, the
//! call (WebRTC mesh), and file transfers (peer to peer and through the server's blob cache).

pub mod backoff;
pub mod call;
pub mod files;
pub mod session;

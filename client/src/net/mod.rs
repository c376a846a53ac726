//! The network side of the app: the room session over WebSocket and its reconnect policy, the
//! peer links (WebRTC mesh) that the call (media, direct messages) and file transfers (peer to
//! peer, and through the server's blob cache) share, and live broadcasts through the server's
//! media relay (WHIP/WHEP).

pub mod backoff;
pub mod broadcast;
pub mod call;
pub mod devices;
pub mod files;
pub mod http;
pub mod peer;
pub mod session;
pub mod token;

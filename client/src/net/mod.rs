//! The network side of the app: the room session over WebSocket and its reconnect policy.

pub mod backoff;
pub mod call;
pub mod session;

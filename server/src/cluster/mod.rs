//! Cluster mode: several nodes serving the same rooms through Redis (`--redis`).
//!
//! The room engine stays the same pure state machine in both modes (its cluster side is
//! `core::cluster`: commit in order, refill gaps, reset on a new epoch, members elsewhere);
//! what differs is who sequences, stores and fans out a room's messages: the engine with the
//! embedded store (redb) on one machine, or Redis for many. This module is the Redis side:
//! - [`node`]: carries out the engine's ops against Redis and feeds back what happens there;
//!   keeps the node's heartbeat and reaps members of dead nodes;
//! - [`room_log`]: a room's sequence numbers, history and publication in one atomic step;
//! - [`presence`]: members across nodes, node heartbeats, members of a dead node announced
//!   as left;
//! - [`files`]: which room holds which file and which nodes have its bytes; fetching a
//!   room's file from another node;
//! - [`media`]: which node a room's live media is on (a lease), so WHIP and WHEP work through
//!   any node;
//! - [`node_http`]: forwarding a request to another node;
//! - [`peers`]: a channel per node, for signaling to a peer on another node, and one for all;
//! - [`subscriber`]: the node's one subscription (the rooms it has members in, its inbox),
//!   probed and rebuilt when it drops or goes deaf.

pub mod files;
pub mod media;
pub mod node;
pub mod node_http;
pub mod peers;
pub mod presence;
pub mod room_log;
pub mod subscriber;

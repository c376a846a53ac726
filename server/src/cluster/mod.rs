//! Cluster mode, in the making: several nodes serving the same rooms through Redis.
//!
//! The room engine stays the same pure state machine in both modes; what differs is who
//! sequences, stores and fans out a room's messages: the engine with the embedded store
//! (redb) on one machine, or Redis for many. This module holds the Redis side, piece by
//! piece: the room log ([`room_log`]: sequence numbers, history and publication in one atomic
//! step, shared by every node), what a node does with each publication ([`feed`]: commit,
//! drop a duplicate, refill a gap, reset on a new epoch), presence across nodes ([`presence`]: members, node heartbeats,
//! members of a dead node reaped and announced), where each peer is ([`peers`]: a registry and
//! a channel per node, for signaling across nodes) and the node's subscription
//! ([`subscriber`]: the rooms it has members in and its inbox, rebuilt when it drops or goes
//! deaf).

pub mod feed;
pub mod peers;
pub mod presence;
pub mod room_log;
pub mod subscriber;

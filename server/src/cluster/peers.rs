//! A channel per node, so that signaling for a peer on another node gets there in order and
//! once; and one channel every node listens on ([`CONTROL`]), for what all of them must apply
//! (removals).
//!
//! Which node a peer is on is known from presence (every member is announced with its node).
//! Each node listens on `rc:node:{<node>}:inbox`; what one node publishes there over its one
//! command connection arrives in the order sent (Redis keeps a connection's order) and at most
//! once (pub/sub: a node that is down misses it, and its peers are gone with it).

use redis::aio::ConnectionLike;

/// The channel every node listens on.
pub const CONTROL: &str = "rc:control";

/// Tell every node (this one included) `payload`.
pub async fn tell_all<C: ConnectionLike>(conn: &mut C, payload: &str) -> redis::RedisResult<()> {
    redis::cmd("PUBLISH").arg(CONTROL).arg(payload).query_async(conn).await
}

/// A node's inbox channel.
pub fn inbox(node: &str) -> String {
    format!("rc:node:{{{node}}}:inbox")
}

/// Send `payload` to `node`'s inbox; whether a node was listening.
pub async fn send<C: ConnectionLike>(conn: &mut C, node: &str, payload: &str) -> redis::RedisResult<bool> {
    let listeners: i64 = redis::cmd("PUBLISH").arg(inbox(node)).arg(payload).query_async(conn).await?;
    Ok(listeners > 0)
}

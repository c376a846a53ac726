//! Which node a peer is connected to, and a channel per node, so that signaling to a peer on
//! another node arrives there, in order and once.
//!
//! `rc:peer:{<peer>}` holds the node of a connected peer (set on connect, deleted on
//! disconnect, with a day's expiry as a backstop). A peer counts as reachable only while its
//! node's heartbeat ([`super::presence::NODES_KEY`]) holds, so a dead node's peers stop being
//! found without anyone cleaning up after it. Each node listens on `rc:node:{<node>}:inbox`;
//! what one node publishes there over its one command connection arrives in the order sent
//! (Redis keeps a connection's order) and at most once (pub/sub: a node that is down misses
//! it, and its peers are gone with it).

use super::presence::NODES_KEY;
use crate::core::Millis;
use redis::aio::ConnectionLike;
use relaycast_shared::PeerId;

/// A backstop for entries whose node died before deleting them.
const PEER_TTL_SECS: u64 = 24 * 3600;

fn peer_key(peer: &PeerId) -> String {
    format!("rc:peer:{{{peer}}}")
}

/// A node's inbox channel.
pub fn inbox(node: &str) -> String {
    format!("rc:node:{{{node}}}:inbox")
}

/// `peer` is connected to `node`.
pub async fn register<C: ConnectionLike>(conn: &mut C, peer: &PeerId, node: &str) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(peer_key(peer)).arg(node).arg("EX").arg(PEER_TTL_SECS).query_async(conn).await
}

/// `peer` is gone.
pub async fn forget<C: ConnectionLike>(conn: &mut C, peer: &PeerId) -> redis::RedisResult<()> {
    redis::cmd("DEL").arg(peer_key(peer)).query_async(conn).await
}

/// The node `peer` is connected to, if it is and that node is alive at `now`.
pub async fn locate<C: ConnectionLike>(conn: &mut C, peer: &PeerId, now: Millis) -> redis::RedisResult<Option<String>> {
    let node: Option<String> = redis::cmd("GET").arg(peer_key(peer)).query_async(conn).await?;
    let Some(node) = node else { return Ok(None) };
    let alive: Option<f64> = redis::cmd("ZSCORE").arg(NODES_KEY).arg(&node).query_async(conn).await?;
    Ok(alive.filter(|expires| *expires >= now as f64).map(|_| node))
}

/// Send `payload` to `node`'s inbox; whether a node was listening.
pub async fn send<C: ConnectionLike>(conn: &mut C, node: &str, payload: &str) -> redis::RedisResult<bool> {
    let listeners: i64 = redis::cmd("PUBLISH").arg(inbox(node)).arg(payload).query_async(conn).await?;
    Ok(listeners > 0)
}

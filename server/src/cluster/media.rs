//! Live media across nodes: a room's media lives on one node at a time (as in LiveKit: a
//! broadcast, its viewers and its recording must meet in one relay). The first WHIP or WHEP
//! session of a room takes a lease on the room for its node (`rc:{R}:media`, renewed while the
//! node's relay has anything in the room); a WHIP or WHEP offer posted to any other node is
//! forwarded to the lease holder, whose answer (with its media address: media then flows
//! straight to it) goes back to the client. A session's `Location` works through any node:
//! sessions are registered (`rc:session:{<id>}`), and a `DELETE` reaching another node is
//! forwarded too. If the holder dies, its lease lapses within the lease time, and the next
//! publisher may go live on any node; the room's broadcast state, kept in Redis and announced
//! on the room's channel, is ended by the nodes that reap the dead node's members.

use super::node_http::NodeLink;
use super::presence::{members_key, NODES_KEY};
use crate::clock::now_millis;
use crate::core::ClusterMember;
use redis::aio::ConnectionManager;
use redis::Script;
use relaycast_shared::media::SessionId;
use relaycast_shared::{PeerId, Right, Rights, RoomName};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A lease lasts this long unless renewed (every third of it).
pub const LEASE: Duration = Duration::from_secs(10);
/// How long a session's node is remembered (sessions end long before, or are closed).
const SESSION_TTL_SECS: u64 = 24 * 3600;

/// The lease holder's key of a room.
pub fn lease_key(room: &RoomName) -> String {
    format!("rc:{{{room}}}:media")
}

/// The room's broadcast state as its media node last told it.
pub fn state_key(room: &RoomName) -> String {
    format!("rc:{{{room}}}:broadcast")
}

fn session_key(id: &SessionId) -> String {
    format!("rc:session:{{{id}}}")
}

/// Take the room's lease for this node unless another node holds it, or still holds the dead
/// node seen holding it (ARGV[3]: the caller checked its heartbeat, so that the script touches
/// only the room's key); the holder.
const CLAIM: &str = r#"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and holder ~= ARGV[3] then
  return holder
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"#;

/// Renew the lease if this node holds it; whether it does.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Who holds a room's media, as a node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This node: serve here.
    Here,
    /// Another node (its id).
    There(String),
}

/// This node's side of the media leases.
#[derive(Debug)]
pub struct ClusterMedia {
    node_id: String,
    link: Arc<NodeLink>,
    conn: ConnectionManager,
    claim: Script,
    renew: Script,
    /// Rooms whose lease this node holds.
    leased: Mutex<BTreeSet<RoomName>>,
    /// Open mode: the oldest member of a room also has the owner's rights.
    open_mode: bool,
}

impl ClusterMedia {
    pub fn new(link: Arc<NodeLink>, conn: ConnectionManager, open_mode: bool) -> Self {
        ClusterMedia {
            node_id: link.node_id().to_owned(),
            link,
            conn,
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            leased: Mutex::new(BTreeSet::new()),
            open_mode,
        }
    }

    fn lock_leased(&self) -> std::sync::MutexGuard<'_, BTreeSet<RoomName>> {
        self.leased.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `room`'s media is served: here (the lease is this node's now), or on the live
    /// node that holds it.
    pub async fn claim(&self, room: &RoomName) -> redis::RedisResult<Holder> {
        let mut conn = self.conn.clone();
        // A holder whose heartbeat lapsed may be replaced (and only that one).
        let seen: Option<String> = redis::cmd("GET").arg(lease_key(room)).query_async(&mut conn).await?;
        let dead = match seen.filter(|h| *h != self.node_id) {
            Some(holder) => {
                let alive: Option<f64> =
                    redis::cmd("ZSCORE").arg(NODES_KEY).arg(&holder).query_async(&mut conn).await?;
                if alive.is_some_and(|until| until >= now_millis() as f64) {
                    String::new()
                } else {
                    holder
                }
            }
            None => String::new(),
        };
        let holder: String = self
            .claim
            .key(lease_key(room))
            .arg(&self.node_id)
            .arg(LEASE.as_millis() as u64)
            .arg(dead)
            .invoke_async(&mut conn)
            .await?;
        if holder == self.node_id {
            self.lock_leased().insert(room.clone());
            return Ok(Holder::Here);
        }
        Ok(Holder::There(holder))
    }

    /// How this node reaches the others.
    pub fn link(&self) -> &NodeLink {
        &self.link
    }

    /// The live node holding `room`'s lease (its id), when it is another node.
    pub async fn holder_elsewhere(&self, room: &RoomName) -> redis::RedisResult<Option<String>> {
        let mut conn = self.conn.clone();
        let holder: Option<String> = redis::cmd("GET").arg(lease_key(room)).query_async(&mut conn).await?;
        let Some(holder) = holder.filter(|h| *h != self.node_id) else { return Ok(None) };
        let alive: Option<f64> = redis::cmd("ZSCORE").arg(NODES_KEY).arg(&holder).query_async(&mut conn).await?;
        Ok(alive.is_some_and(|until| until >= now_millis() as f64).then_some(holder))
    }

    /// Keep the leases of the rooms `busy` says still have media here; let the others go.
    pub async fn renew(&self, busy: impl Fn(&RoomName) -> bool) {
        let rooms: Vec<RoomName> = self.lock_leased().iter().cloned().collect();
        let mut conn = self.conn.clone();
        for room in rooms {
            let keep = busy(&room);
            let result: redis::RedisResult<i64> = if keep {
                self.renew
                    .key(lease_key(&room))
                    .arg(&self.node_id)
                    .arg(LEASE.as_millis() as u64)
                    .invoke_async(&mut conn)
                    .await
            } else {
                self.release(&mut conn, &room).await.map(|_| 0)
            };
            match result {
                Ok(1) => {}
                Ok(_) => {
                    self.lock_leased().remove(&room);
                }
                Err(err) => tracing::warn!(room = %room, error = %err, "cannot renew a media lease"),
            }
        }
    }

    async fn release(&self, conn: &mut ConnectionManager, room: &RoomName) -> redis::RedisResult<()> {
        let script =
            Script::new("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end return 0");
        let _: i64 = script.key(lease_key(room)).arg(&self.node_id).invoke_async(conn).await?;
        Ok(())
    }

    /// A session of this node: its `Location` works through any node.
    pub async fn record_session(&self, id: &SessionId) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(session_key(id))
            .arg(&self.node_id)
            .arg("EX")
            .arg(SESSION_TTL_SECS)
            .query_async(&mut conn)
            .await
    }

    /// The node serving session `id`, when it is another node.
    pub async fn session_node(&self, id: &SessionId) -> redis::RedisResult<Option<String>> {
        let mut conn = self.conn.clone();
        let node: Option<String> = redis::cmd("GET").arg(session_key(id)).query_async(&mut conn).await?;
        Ok(node.filter(|n| *n != self.node_id))
    }

    /// A member's rights in `room` as presence in Redis has them (a member of another node,
    /// presenting its grant or stream key here); open mode adds the owner's to the member
    /// there longest. `None`: not a member on a live node.
    pub async fn member_rights(&self, room: &RoomName, peer: &PeerId) -> redis::RedisResult<Option<Rights>> {
        let mut conn = self.conn.clone();
        let all: Vec<String> = redis::cmd("HVALS").arg(members_key(room)).query_async(&mut conn).await?;
        let now = now_millis();
        let mut members: Vec<ClusterMember> = Vec::new();
        for member in all.iter().filter_map(|json| serde_json::from_str::<ClusterMember>(json).ok()) {
            let alive: Option<f64> =
                redis::cmd("ZSCORE").arg(NODES_KEY).arg(&member.node).query_async(&mut conn).await?;
            if alive.is_some_and(|until| until >= now as f64) {
                members.push(member);
            }
        }
        let oldest =
            members.iter().min_by(|a, b| (a.since, &a.peer_id).cmp(&(b.since, &b.peer_id))).map(|m| m.peer_id.clone());
        let Some(member) = members.into_iter().find(|m| m.peer_id == *peer) else { return Ok(None) };
        let owner: Rights = [Right::Broadcast, Right::Record, Right::Moderate].into_iter().collect();
        Ok(Some(if self.open_mode && oldest.as_ref() == Some(peer) {
            member.rights.union(owner)
        } else {
            member.rights
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::room_log::RoomKeys;

    /// The hash tag Redis Cluster places a key by: the first `{...}` with something inside.
    fn tag(key: &str) -> &str {
        let open = key.find('{').expect("a hash tag");
        let close = key[open..].find('}').expect("a closed hash tag") + open;
        &key[open + 1..close]
    }

    #[test]
    fn every_key_a_script_touches_for_a_room_is_in_the_rooms_slot() {
        let room = RoomName::try_from("team-1").unwrap();
        let keys = RoomKeys::of(&room);
        let hash = relaycast_shared::BlobHash::try_from("a".repeat(64)).unwrap();
        let all = [
            keys.meta,
            keys.log,
            keys.channel,
            keys.deleted,
            keys.files,
            members_key(&room),
            lease_key(&room),
            state_key(&room),
            crate::cluster::files::holders_key(&room, &hash),
        ];
        for key in &all {
            assert_eq!(tag(key), "team-1", "{key}");
        }
    }
}

//! Who is in a room across nodes, in Redis, and how members of a node that died leave.
//!
//! Per room `R`: `rc:{R}:members`, a hash of peer id → the member as JSON (peer, name, user,
//! node, since). Nodes say they are alive in `rc:nodes`, a sorted set of node id → the time
//! (ms) their heartbeat expires; a node renews it every third of the TTL. A member whose node's
//! heartbeat has expired is not listed, and [`Presence::reap`] (run by every node with members
//! in the room, every so often) removes it and announces it as left, so members of a node
//! that died are announced within the TTL plus one reap interval.
//!
//! Joins and leaves are announced on the room's channel (`rc:{R}:pub`) next to its messages,
//! in order with them: `!+<member json>` and `!-<peer id>` (a message's payload starts with
//! its epoch, which never contains `!`).

use super::room_log::RoomKeys;
use crate::core::Millis;
use redis::aio::ConnectionLike;
use redis::Script;
use relaycast_shared::{PeerId, RoomName};

/// The sorted set of live nodes.
pub const NODES_KEY: &str = "rc:nodes";

pub use crate::core::{ClusterMember as Member, PresenceChange as Change};

/// A presence change as announced on the room's channel.
pub fn announcement(change: &Change) -> String {
    match change {
        Change::Joined(member) => format!("!+{}", serde_json::to_string(member).unwrap_or_default()),
        Change::Left(peer) => format!("!-{peer}"),
    }
}

/// The change a payload announces, if it is an announcement (a message's payload starts with
/// its epoch instead).
pub fn parse_announcement(payload: &str) -> Option<Change> {
    if let Some(json) = payload.strip_prefix("!+") {
        return serde_json::from_str(json).ok().map(Change::Joined);
    }
    PeerId::try_from(payload.strip_prefix("!-")?).ok().map(Change::Left)
}

/// The hash of a room's members.
pub fn members_key(room: &RoomName) -> String {
    format!("rc:{{{room}}}:members")
}

const JOIN: &str = r#"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#;

const LEAVE: &str = r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"#;

/// Remove the members whose node is not among the live ones (ARGV[2..]), announcing each. The
/// live nodes are passed in (read from `rc:nodes` first), so that the script touches only the
/// room's keys: one hash slot, as Redis Cluster requires.
const REAP: &str = r#"
local alive = {}
for i = 2, #ARGV do
  alive[ARGV[i]] = true
end
local all = redis.call('HGETALL', KEYS[1])
local gone = {}
for i = 1, #all, 2 do
  local member = cjson.decode(all[i + 1])
  if not alive[member['node']] then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('PUBLISH', ARGV[1], '!-' .. all[i])
    table.insert(gone, all[i])
  end
end
return gone
"#;

/// The nodes whose heartbeat holds at `now`.
pub async fn live_nodes<C: ConnectionLike>(conn: &mut C, now: Millis) -> redis::RedisResult<Vec<String>> {
    redis::cmd("ZRANGEBYSCORE").arg(NODES_KEY).arg(now).arg("+inf").query_async(conn).await
}

/// The presence scripts.
#[derive(Debug, Clone)]
pub struct Presence {
    join: Script,
    leave: Script,
    reap: Script,
}

impl Default for Presence {
    fn default() -> Self {
        Presence { join: Script::new(JOIN), leave: Script::new(LEAVE), reap: Script::new(REAP) }
    }
}

impl Presence {
    /// `member` is in `room` now; the room is told.
    pub async fn join<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        member: &Member,
    ) -> redis::RedisResult<()> {
        let json = serde_json::to_string(member).unwrap_or_default();
        let _: i64 = self
            .join
            .key(members_key(room))
            .arg(member.peer_id.as_str())
            .arg(json)
            .arg(RoomKeys::of(room).channel)
            .arg(announcement(&Change::Joined(member.clone())))
            .invoke_async(conn)
            .await?;
        Ok(())
    }

    /// `peer` left `room`; the room is told (once, whoever removes it).
    pub async fn leave<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        peer: &PeerId,
    ) -> redis::RedisResult<bool> {
        let removed: i64 = self
            .leave
            .key(members_key(room))
            .arg(peer.as_str())
            .arg(RoomKeys::of(room).channel)
            .arg(announcement(&Change::Left(peer.clone())))
            .invoke_async(conn)
            .await?;
        Ok(removed == 1)
    }

    /// This node is alive until `now + ttl`.
    pub async fn heartbeat<C: ConnectionLike>(
        &self,
        conn: &mut C,
        node: &str,
        now: Millis,
        ttl: Millis,
    ) -> redis::RedisResult<()> {
        redis::cmd("ZADD").arg(NODES_KEY).arg(now + ttl).arg(node).query_async(conn).await
    }

    /// A node that stops: its heartbeat lapses at once, so the other nodes reap its members at
    /// their next pass (it stays listed as dead, which is what starts a pass).
    pub async fn node_gone<C: ConnectionLike>(&self, conn: &mut C, node: &str) -> redis::RedisResult<()> {
        redis::cmd("ZADD").arg(NODES_KEY).arg(0).arg(node).query_async(conn).await
    }

    /// The room's members on live nodes, oldest first.
    pub async fn members<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        now: Millis,
    ) -> redis::RedisResult<Vec<Member>> {
        let all: Vec<String> = redis::cmd("HVALS").arg(members_key(room)).query_async(conn).await?;
        let mut members: Vec<Member> = all.iter().filter_map(|json| serde_json::from_str(json).ok()).collect();
        let mut alive = Vec::with_capacity(members.len());
        for member in members.drain(..) {
            let expires: Option<f64> = redis::cmd("ZSCORE").arg(NODES_KEY).arg(&member.node).query_async(conn).await?;
            if expires.is_some_and(|e| e >= now as f64) {
                alive.push(member);
            }
        }
        alive.sort_by(|a, b| (a.since, a.peer_id.as_str()).cmp(&(b.since, b.peer_id.as_str())));
        Ok(alive)
    }

    /// Remove and announce the members of nodes whose heartbeat expired; their peer ids.
    pub async fn reap<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        now: Millis,
    ) -> redis::RedisResult<Vec<PeerId>> {
        let alive = live_nodes(conn, now).await?;
        let gone: Vec<String> =
            self.reap.key(members_key(room)).arg(RoomKeys::of(room).channel).arg(alive).invoke_async(conn).await?;
        Ok(gone.into_iter().filter_map(|p| PeerId::try_from(p).ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaycast_shared::DisplayName;

    #[test]
    fn announcements_are_told_from_messages() {
        let member = Member {
            peer_id: PeerId::try_from("p1").unwrap(),
            name: DisplayName::try_from("Ada").unwrap(),
            user: None,
            node: "n1".into(),
            since: 5,
            rights: relaycast_shared::Rights::member(),
        };
        let joined = Change::Joined(member.clone());
        assert_eq!(parse_announcement(&announcement(&joined)), Some(joined));
        assert_eq!(parse_announcement("!-p1"), Some(Change::Left(member.peer_id)));
        // A message's payload starts with its epoch: never an announcement.
        assert_eq!(parse_announcement("e-1\n{\"seq\":1}"), None);
        assert_eq!(parse_announcement("!-bad peer"), None);
    }
}

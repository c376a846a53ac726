//! A room's message log in Redis: the one place several nodes agree on a room's sequence
//! numbers, its history and its epoch.
//!
//! Per room `R`, every key carries the hash tag `{R}` (Redis Cluster and sharded pub/sub then
//! stay a configuration change):
//! - `rc:{R}:meta`, a hash: `e` the epoch, `s` the top sequence number;
//! - `rc:{R}:log`, a stream whose entry ids are the sequence numbers (`<seq>-0`), each with the
//!   message's JSON in field `m`, trimmed to the history's length;
//! - `rc:{R}:pub`, the channel every node with members in `R` listens on: `<epoch>\n<json>`
//!   for a message, `!x<json>` for a deletion (presence has `!+` and `!-`);
//! - `rc:{R}:deleted`, a hash of sequence number → the tombstone that replaces that message
//!   (a stream's entries cannot be rewritten; reads put the tombstones in their place).
//!
//! Appending is one Lua script, so numbering, history and fan-out never disagree: it takes
//! the room's epoch (or makes the one passed in, when the meta is gone: a Redis that lost the
//! room starts a new history, and its old stream must not mix in), increments the top
//! sequence number, writes the message with that number into the log and publishes it. Reads
//! are one script too, so the epoch, the top and the entries come from one moment; a read of
//! a room Redis does not know gives it its epoch, so a room that lost its data is noticed by
//! the first node to look (its epoch changes) rather than by the first to write.
//!
//! Appends are sent in pipelines ([`RoomLog::append_all`]): one round trip for every message
//! that waited while the previous one was out, in the order they were handed over.

use crate::core::LogSlice;
use redis::aio::ConnectionLike;
use redis::Script;
use relaycast_shared::codec::encode_room_message;
use relaycast_shared::{Epoch, RoomMessage, RoomName};

/// How long an idle room's keys live in Redis (refreshed by every append).
pub const ROOM_TTL_SECS: u64 = 30 * 24 * 3600;

const APPEND: &str = r#"
local meta, log = KEYS[1], KEYS[2]
if ARGV[6] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[6]) == 0 then
  return redis.error_reply('UNKNOWN_BLOB the room has no such file on any node')
end
local epoch = redis.call('HGET', meta, 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', meta, 'e', epoch)
  redis.call('DEL', log)
end
local seq = redis.call('HINCRBY', meta, 's', 1)
local json = '{"seq":' .. seq .. ARGV[2]
redis.call('XADD', log, 'MAXLEN', ARGV[3], seq .. '-0', 'm', json)
redis.call('EXPIRE', meta, ARGV[4])
redis.call('EXPIRE', log, ARGV[4])
redis.call('PUBLISH', ARGV[5], epoch .. '\n' .. json)
return {epoch, seq}
"#;

const READ: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch and ARGV[3] == '' then
  return {}
end
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('DEL', KEYS[2])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
local top = redis.call('HGET', KEYS[1], 's')
local entries = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
local out = {epoch, top}
local tombstones = redis.call('EXISTS', KEYS[3]) == 1
for _, entry in ipairs(entries) do
  local json = entry[2][2]
  if tombstones then
    json = redis.call('HGET', KEYS[3], string.match(entry[1], '^%d+')) or json
  end
  table.insert(out, json)
end
return out
"#;

const DELETE: &str = r#"
if redis.call('HGET', KEYS[1], 'e') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], '!x' .. ARGV[3])
return 1
"#;

/// Why Redis could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis answered something this server does not understand: {0}")]
    Unexpected(String),
}

/// The file a message names (`""`: none), which the room must hold for the append to be taken.
fn file_of(message: &RoomMessage) -> &str {
    match &message.body {
        relaycast_shared::Body::File { hash, .. } => hash.as_str(),
        _ => "",
    }
}

impl LogError {
    /// The message names a file the room does not hold on any node.
    pub fn is_unknown_blob(&self) -> bool {
        matches!(self, LogError::Redis(err) if err.code() == Some("UNKNOWN_BLOB"))
    }

    /// Redis did not know the script (it restarted, or its scripts were flushed).
    pub fn is_no_script(&self) -> bool {
        matches!(self, LogError::Redis(err) if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))
    }
}

/// The keys of one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomKeys {
    pub meta: String,
    pub log: String,
    pub channel: String,
    pub deleted: String,
    /// The room's files (see `super::files`): a file message must name one of them.
    pub files: String,
}

impl RoomKeys {
    pub fn of(room: &RoomName) -> Self {
        RoomKeys {
            meta: format!("rc:{{{room}}}:meta"),
            log: format!("rc:{{{room}}}:log"),
            channel: format!("rc:{{{room}}}:pub"),
            deleted: format!("rc:{{{room}}}:deleted"),
            files: format!("rc:{{{room}}}:files"),
        }
    }
}

/// A message as stored: its JSON with the sequence number left for the script to put first.
/// Serde writes `seq` first, so `{"seq":<n>` + this tail is exactly what serde would write for
/// the message numbered `n` (tested).
pub fn tail_of(message: &RoomMessage) -> String {
    let json = encode_room_message(&RoomMessage { seq: 0, ..message.clone() });
    json.strip_prefix(r#"{"seq":0"#).map(str::to_owned).unwrap_or(json)
}

/// What an append was given: the room's epoch and the message's sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub epoch: Epoch,
    pub seq: u64,
    /// The message's JSON as stored (with its sequence number).
    pub json: String,
}

/// A message to append: its room, the message (its `seq` is the log's to set) and the epoch
/// to start the room with if Redis has none.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub room: &'a RoomName,
    pub message: &'a RoomMessage,
    pub new_epoch: &'a Epoch,
}

/// The scripts, loaded once (redis-rs sends `EVALSHA` and falls back to `EVAL` when a Redis
/// restart forgot them).
#[derive(Debug, Clone)]
pub struct RoomLog {
    append: Script,
    read: Script,
    delete: Script,
    /// Messages each room's log keeps.
    max_messages: u64,
}

impl RoomLog {
    pub fn new(max_messages: u64) -> Self {
        RoomLog {
            append: Script::new(APPEND),
            read: Script::new(READ),
            delete: Script::new(DELETE),
            max_messages: max_messages.max(1),
        }
    }

    /// Append each message to its room's log and publish it, in one pipeline, in order; the
    /// answer for each. `load_script` sends the script first (after a reconnect, Redis may
    /// have restarted and forgotten it).
    pub async fn append_all<C: ConnectionLike>(
        &self,
        conn: &mut C,
        batch: &[NewMessage<'_>],
        load_script: bool,
    ) -> Result<Vec<Result<Appended, LogError>>, LogError> {
        let mut pipe = redis::pipe();
        if load_script {
            pipe.cmd("SCRIPT").arg("LOAD").arg(APPEND).ignore();
        }
        let tails: Vec<String> = batch.iter().map(|m| tail_of(m.message)).collect();
        for (m, tail) in batch.iter().zip(&tails) {
            let keys = RoomKeys::of(m.room);
            pipe.cmd("EVALSHA")
                .arg(self.append.get_hash())
                .arg(3)
                .arg(&keys.meta)
                .arg(&keys.log)
                .arg(&keys.files)
                .arg(m.new_epoch.as_str())
                .arg(tail)
                .arg(self.max_messages)
                .arg(ROOM_TTL_SECS)
                .arg(&keys.channel)
                .arg(file_of(m.message));
        }
        let answers: Vec<redis::RedisResult<(String, u64)>> = pipe.ignore_errors().query_async(conn).await?;
        if answers.len() != batch.len() {
            return Err(LogError::Unexpected(format!("{} answers to {} appends", answers.len(), batch.len())));
        }
        Ok(answers
            .into_iter()
            .zip(tails)
            .map(|(answer, tail)| {
                let (epoch, seq) = answer?;
                let epoch = Epoch::try_from(epoch).map_err(|e| LogError::Unexpected(format!("epoch: {e}")))?;
                Ok(Appended { epoch, seq, json: format!(r#"{{"seq":{seq}{tail}"#) })
            })
            .collect())
    }

    /// Append one message: [`RoomLog::append_all`] for one (the script sent along, so a
    /// restarted Redis is no matter).
    pub async fn append<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        message: &RoomMessage,
        new_epoch: &Epoch,
    ) -> Result<Appended, LogError> {
        let one = [NewMessage { room, message, new_epoch }];
        self.append_all(conn, &one, true).await?.pop().unwrap_or_else(|| Err(LogError::Unexpected("no answer".into())))
    }

    /// Up to `limit` messages of `room` from sequence number `from` on (or from the oldest
    /// kept, when that one is gone), with the room's epoch and top. A room Redis does not know
    /// (never written, expired, or lost) gets `new_epoch` and no messages.
    pub async fn read<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        from: u64,
        limit: usize,
        new_epoch: &Epoch,
    ) -> Result<LogSlice, LogError> {
        self.read_existing(conn, room, from, limit, Some(new_epoch))
            .await?
            .ok_or_else(|| LogError::Unexpected("a read that made no room".into()))
    }

    /// [`RoomLog::read`]; with no `new_epoch`, a room Redis does not know stays unknown
    /// (`None`).
    pub async fn read_existing<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        from: u64,
        limit: usize,
        new_epoch: Option<&Epoch>,
    ) -> Result<Option<LogSlice>, LogError> {
        let keys = RoomKeys::of(room);
        let reply: Vec<String> = self
            .read
            .key(&keys.meta)
            .key(&keys.log)
            .key(&keys.deleted)
            .arg(from.max(1))
            .arg(limit.max(1))
            .arg(new_epoch.map_or("", |e| e.as_str()))
            .arg(ROOM_TTL_SECS)
            .invoke_async(conn)
            .await?;
        let mut parts = reply.into_iter();
        let (Some(epoch), Some(top)) = (parts.next(), parts.next()) else {
            return Ok(None);
        };
        let epoch = Epoch::try_from(epoch).map_err(|e| LogError::Unexpected(format!("epoch: {e}")))?;
        let top = top.parse().map_err(|_| LogError::Unexpected(format!("top sequence {top:?}")))?;
        Ok(Some(LogSlice { epoch, top, messages: parts.collect() }))
    }
}

impl RoomLog {
    /// Put `tombstone` (a [`RoomMessage`] with [`relaycast_shared::Body::Deleted`]) in place of
    /// message `seq` of `room` under `epoch`, and tell the nodes; false when the room's epoch
    /// is another (the message is gone with its history).
    pub async fn delete<C: ConnectionLike>(
        &self,
        conn: &mut C,
        room: &RoomName,
        epoch: &Epoch,
        seq: u64,
        tombstone: &str,
    ) -> Result<bool, LogError> {
        let keys = RoomKeys::of(room);
        let done: i64 = self
            .delete
            .key(&keys.meta)
            .key(&keys.deleted)
            .arg(epoch.as_str())
            .arg(seq)
            .arg(tombstone)
            .arg(ROOM_TTL_SECS)
            .arg(&keys.channel)
            .invoke_async(conn)
            .await?;
        Ok(done == 1)
    }
}

/// A deletion on a room's channel: the tombstone's JSON.
pub fn parse_deletion(payload: &str) -> Option<&str> {
    payload.strip_prefix("!x")
}

/// A publication on a room's channel: its epoch and the message JSON.
pub fn parse_publication(payload: &str) -> Option<(Epoch, &str)> {
    let (epoch, json) = payload.split_once('\n')?;
    Some((Epoch::try_from(epoch).ok()?, json))
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaycast_shared::{Body, ChatText, ClientMsgId, DisplayName, PeerId};

    #[test]
    fn the_stored_tail_and_a_sequence_number_make_exactly_serdes_json() {
        let message = RoomMessage {
            seq: 77,
            from: PeerId::try_from("p1").unwrap(),
            name: DisplayName::try_from("Ada \"the\" first").unwrap(),
            id: ClientMsgId::try_from("c-1").unwrap(),
            user: None,
            at: 5,
            body: Body::Chat { text: ChatText::try_from("hi {\"seq\":0}").unwrap() },
        };
        let spliced = format!(r#"{{"seq":77{}"#, tail_of(&message));
        assert_eq!(spliced, encode_room_message(&message));
        assert_eq!(RoomKeys::of(&RoomName::try_from("team-1").unwrap()).log, "rc:{team-1}:log");
        assert_eq!(parse_publication("e1\n{}").map(|(e, j)| (e.to_string(), j)), Some(("e1".into(), "{}")));
        assert!(parse_publication("no newline").is_none());
    }
}

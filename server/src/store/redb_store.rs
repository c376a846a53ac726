//! The durable store on redb: a pure-Rust, embedded, ACID key-value store. A commit with
//! immediate durability is fsynced, so a batch that `apply` returned survives `kill -9` and
//! power loss; a torn write is rolled back by redb on open.

use super::{Store, StoreError};
use crate::core::{Entry, Removal, RestoredRoom, StoreOp};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use relaycast_shared::{Epoch, RoomMessage, RoomName, UserId};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// room → epoch.
const ROOMS: TableDefinition<&str, &str> = TableDefinition::new("rooms");
/// (room, seq) → RoomMessage JSON.
const MESSAGES: TableDefinition<(&str, u64), &str> = TableDefinition::new("messages");
/// room → the client ref of its owner browser (open mode).
const HOSTS: TableDefinition<&str, &str> = TableDefinition::new("hosts");
/// (room, or "" for the whole server; user) → (removed at, holds until), in ms.
const REMOVALS: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("removals");

/// Insert a run of message writes in key order (stable: of two writes to one key, the later
/// wins, as in arrival order), and empty it.
fn write_messages(
    messages: &mut redb::Table<(&'static str, u64), &'static str>,
    run: &mut Vec<(&str, u64, &str)>,
) -> Result<(), redb::Error> {
    run.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (room, seq, json) in run.drain(..) {
        messages.insert((room, seq), json)?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct RedbStore {
    db: Database,
}

impl RedbStore {
    /// Open (or create) `history.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| StoreError::DataDir { path: dir.display().to_string(), source })?;
        let db = Database::create(dir.join("history.redb")).map_err(redb::Error::from)?;
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(ROOMS).map_err(redb::Error::from)?;
        txn.open_table(MESSAGES).map_err(redb::Error::from)?;
        txn.open_table(REMOVALS).map_err(redb::Error::from)?;
        txn.open_table(HOSTS).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self { db })
    }

    fn apply_inner(&self, ops: &[StoreOp]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut rooms = txn.open_table(ROOMS)?;
            let mut messages = txn.open_table(MESSAGES)?;
            let mut removals = txn.open_table(REMOVALS)?;
            let mut hosts = txn.open_table(HOSTS)?;
            // Message writes are put in key order a run at a time: a batch interleaves many
            // rooms, and a B-tree takes inserts in order for much less than in arrival order
            // (neighbouring keys share a leaf). The sort is stable and a run ends at any other
            // op, so the result is the same as applying the ops one by one.
            let mut run: Vec<(&str, u64, &str)> = Vec::new();
            for op in ops {
                if let StoreOp::Append { room, seq, json } | StoreOp::Replace { room, seq, json } = op {
                    run.push((room.as_str(), *seq, json));
                    continue;
                }
                write_messages(&mut messages, &mut run)?;
                match op {
                    StoreOp::CreateRoom { room, epoch } => {
                        rooms.insert(room.as_str(), epoch.as_str())?;
                    }
                    StoreOp::SetHost { room, host } => {
                        hosts.insert(room.as_str(), host.as_str())?;
                    }
                    StoreOp::Append { .. } | StoreOp::Replace { .. } => unreachable!("taken into the run above"),
                    StoreOp::Bar(r) => {
                        let room = r.room.as_ref().map_or("", |room| room.as_str());
                        removals.insert((room, r.user.as_str()), (r.at, r.until))?;
                    }
                    StoreOp::Unbar { room, user } => {
                        removals.remove((room.as_ref().map_or("", |r| r.as_str()), user.as_str()))?;
                    }
                    StoreOp::Trim { room, through_seq } => {
                        let r = room.as_str();
                        messages.retain_in((r, 0u64)..=(r, *through_seq), |_, _| false)?;
                    }
                    StoreOp::DropRoom { room } => {
                        let r = room.as_str();
                        messages.retain_in((r, 0u64)..=(r, u64::MAX), |_, _| false)?;
                        rooms.remove(r)?;
                        hosts.remove(r)?;
                    }
                }
            }
            write_messages(&mut messages, &mut run)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn load_inner(&self) -> Result<Vec<RestoredRoom>, redb::Error> {
        let txn = self.db.begin_read()?;
        let rooms_table = txn.open_table(ROOMS)?;
        let messages = txn.open_table(MESSAGES)?;
        let hosts = txn.open_table(HOSTS)?;
        let mut rooms: BTreeMap<String, RestoredRoom> = BTreeMap::new();
        for row in rooms_table.iter()? {
            let (room, epoch) = row?;
            match (RoomName::try_from(room.value()), Epoch::try_from(epoch.value())) {
                (Ok(room), Ok(epoch)) => {
                    // A host that is not a client ref (16 hex digits) is not one.
                    let host = hosts
                        .get(room.as_str())?
                        .map(|h| h.value().to_owned())
                        .filter(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()));
                    rooms.insert(room.to_string(), RestoredRoom { room, epoch, messages: Vec::new(), host });
                }
                _ => tracing::warn!(room = room.value(), "skipping a room record that does not validate"),
            }
        }
        for row in messages.iter()? {
            let (key, json) = row?;
            let (room, seq) = key.value();
            let Some(restored) = rooms.get_mut(room) else {
                tracing::warn!(room, seq, "skipping a message of an unknown room");
                continue;
            };
            match serde_json::from_str::<RoomMessage>(json.value()) {
                Ok(m) if m.seq == seq => {
                    // History must be contiguous; after a gap only the newer run is kept.
                    if restored.messages.last().is_some_and(|last| last.seq + 1 != seq) {
                        tracing::warn!(room, seq, "gap in stored history; keeping the newer run");
                        restored.messages.clear();
                    }
                    let blob = match m.body {
                        relaycast_shared::Body::File { hash, .. } => Some(hash),
                        _ => None,
                    };
                    restored.messages.push(Entry { seq, at: m.at, json: Arc::from(json.value()), blob });
                }
                _ => tracing::warn!(room, seq, "skipping a stored message that does not validate"),
            }
        }
        Ok(rooms.into_values().collect())
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Vec<RestoredRoom>, StoreError> {
        Ok(self.load_inner()?)
    }

    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError> {
        Ok(self.apply_inner(ops)?)
    }

    fn load_removals(&self) -> Result<Vec<Removal>, StoreError> {
        let load = || -> Result<Vec<Removal>, redb::Error> {
            let txn = self.db.begin_read()?;
            let table = txn.open_table(REMOVALS)?;
            let mut out = Vec::new();
            for row in table.iter()? {
                let (key, value) = row?;
                let ((room, user), (at, until)) = (key.value(), value.value());
                let parsed_room = if room.is_empty() { Ok(None) } else { RoomName::try_from(room).map(Some) };
                match (parsed_room, UserId::try_from(user)) {
                    (Ok(parsed_room), Ok(user)) => out.push(Removal { room: parsed_room, user, at, until }),
                    _ => tracing::warn!(room, user, "skipping a removal record that does not validate"),
                }
            }
            Ok(out)
        };
        Ok(load()?)
    }

    fn kind(&self) -> &'static str {
        "redb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaycast_shared::codec::encode_room_message;
    use relaycast_shared::*;

    fn room(s: &str) -> RoomName {
        RoomName::try_from(s).unwrap()
    }

    fn json(seq: u64) -> Arc<str> {
        super::super::chat_json(seq, "t")
    }

    /// Message `seq`'s tombstone.
    fn deleted(seq: u64) -> Arc<str> {
        let message: RoomMessage = serde_json::from_str(&json(seq)).unwrap();
        encode_room_message(&RoomMessage { body: Body::Deleted, ..message }).into()
    }

    fn any_op() -> impl proptest::strategy::Strategy<Value = StoreOp> {
        use proptest::prelude::*;
        let name = prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(room);
        prop_oneof![
            1 => name.clone().prop_map(|room| StoreOp::CreateRoom { room, epoch: Epoch::try_from("e1").unwrap() }),
            4 => (name.clone(), 1u64..8).prop_map(|(room, seq)| StoreOp::Append { room, seq, json: json(seq) }),
            1 => (name.clone(), 1u64..8).prop_map(|(room, seq)| StoreOp::Replace { room, seq, json: deleted(seq) }),
            1 => (name.clone(), 0u64..8).prop_map(|(room, through_seq)| StoreOp::Trim { room, through_seq }),
            1 => name.prop_map(|room| StoreOp::DropRoom { room }),
        ]
    }

    /// A room's name, epoch and messages (seq, JSON), as the store gives them back.
    type Contents = Vec<(String, String, Vec<(u64, String)>)>;

    fn contents(store: &RedbStore) -> Contents {
        let mut rooms: Vec<_> = store
            .load()
            .unwrap()
            .into_iter()
            .map(|r| {
                let messages = r.messages.iter().map(|e| (e.seq, e.json.to_string())).collect();
                (r.room.to_string(), r.epoch.to_string(), messages)
            })
            .collect();
        rooms.sort();
        rooms
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Message writes are reordered within a batch (by key, for the B-tree): the outcome
        /// is still that of the ops applied one by one, in order.
        #[test]
        fn a_batch_leaves_what_its_ops_one_by_one_leave(ops in proptest::collection::vec(any_op(), 1..60)) {
            let (one_dir, each_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let (at_once, one_by_one) = (RedbStore::open(one_dir.path()).unwrap(), RedbStore::open(each_dir.path()).unwrap());
            at_once.apply(&ops).unwrap();
            for op in &ops {
                one_by_one.apply(std::slice::from_ref(op)).unwrap();
            }
            proptest::prop_assert_eq!(contents(&at_once), contents(&one_by_one));
        }
    }

    #[test]
    fn ops_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = RedbStore::open(dir.path()).unwrap();
            let mut ops = vec![
                StoreOp::CreateRoom { room: room("a"), epoch: Epoch::try_from("ea").unwrap() },
                StoreOp::CreateRoom { room: room("b"), epoch: Epoch::try_from("eb").unwrap() },
            ];
            ops.extend((1..=5).map(|seq| StoreOp::Append { room: room("a"), seq, json: json(seq) }));
            ops.push(StoreOp::Append { room: room("b"), seq: 1, json: json(1) });
            store.apply(&ops).unwrap();
            store
                .apply(&[StoreOp::Trim { room: room("a"), through_seq: 2 }, StoreOp::DropRoom { room: room("b") }])
                .unwrap();
            store.apply(&[StoreOp::Replace { room: room("a"), seq: 4, json: deleted(4) }]).unwrap();
            let host = |room, host: &str| StoreOp::SetHost { room, host: host.into() };
            store.apply(&[host(room("a"), "0123456789abcdef"), host(room("b"), "fedcba9876543210")]).unwrap();
        }
        let store = RedbStore::open(dir.path()).unwrap();
        let rooms = store.load().unwrap();
        assert_eq!(rooms.len(), 1);
        assert_eq!(rooms[0].room, room("a"));
        assert_eq!(rooms[0].epoch.as_str(), "ea");
        assert_eq!(rooms[0].messages.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(rooms[0].messages[1].json, deleted(4), "a replaced message (a deletion) stays replaced");
        assert_eq!(rooms[0].host.as_deref(), Some("0123456789abcdef"), "the room's host browser is kept");
    }

    #[test]
    fn removals_are_kept_and_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let user = |s: &str| UserId::try_from(s).unwrap();
        let bar = |of: Option<&str>, who: &str| Removal { room: of.map(room), user: user(who), at: 1, until: 9 };
        {
            let store = RedbStore::open(dir.path()).unwrap();
            store
                .apply(&[
                    StoreOp::Bar(bar(Some("a"), "eve")),
                    StoreOp::Bar(bar(None, "eve")),
                    StoreOp::Bar(bar(Some("b"), "bo")),
                    StoreOp::Unbar { room: Some(room("b")), user: user("bo") },
                ])
                .unwrap();
        }
        let mut kept = RedbStore::open(dir.path()).unwrap().load_removals().unwrap();
        kept.sort_by_key(|r| r.room.as_ref().map(|r| r.to_string()));
        assert_eq!(kept, vec![bar(None, "eve"), bar(Some("a"), "eve")]);
    }

    #[test]
    fn invalid_records_are_skipped_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let ops = vec![
            StoreOp::CreateRoom { room: room("a"), epoch: Epoch::try_from("ea").unwrap() },
            StoreOp::Append { room: room("a"), seq: 1, json: json(1) },
            StoreOp::Append { room: room("a"), seq: 2, json: "{not json".into() },
            StoreOp::Append { room: room("a"), seq: 3, json: json(3) },
            StoreOp::Append { room: room("a"), seq: 4, json: json(99) },
            StoreOp::SetHost { room: room("a"), host: "not a client ref".into() },
        ];
        store.apply(&ops).unwrap();
        let rooms = store.load().unwrap();
        // 2 is garbage and 4 claims another seq: only 3 survives after the gap.
        assert_eq!(rooms[0].messages.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3]);
        assert_eq!(rooms[0].host, None, "a host that is not a client ref is none");
    }
}

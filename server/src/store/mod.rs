//! History persistence behind a small trait.
//!
//! The engine hands the store ordered [`StoreOp`] batches; [`Store::apply`] returns once the
//! batch is durable, and only then does the engine ack and deliver what it holds. At start,
//! [`Store::load`] gives every room back. Two engines today: [`JournaledStore`] (embedded,
//! durable, the default: [`RedbStore`] with a write-ahead journal as its commit path) and
//! [`MemoryStore`] (nothing survives a restart; `--memory`).

mod journal;
mod memory;
mod redb_store;

pub use journal::{JournaledStore, FOLD_AT_BYTES};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

use crate::core::{Removal, RestoredRoom, StoreOp};

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Redb(#[from] redb::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error("journal {path}: {source}")]
    Journal { path: String, source: std::io::Error },
}

/// A history store. Implementations are called from one writer at a time, off the async
/// runtime (they may block on disk).
pub trait Store: std::fmt::Debug + Send + Sync + 'static {
    /// Every room with its epoch and its messages in sequence order. Records that fail
    /// validation are skipped (and logged), never trusted.
    fn load(&self) -> Result<Vec<RestoredRoom>, StoreError>;
    /// Every removal it keeps (a store that keeps nothing has none).
    fn load_removals(&self) -> Result<Vec<Removal>, StoreError> {
        Ok(Vec::new())
    }
    /// Make the batch durable, all or nothing.
    fn apply(&self, ops: &[StoreOp]) -> Result<(), StoreError>;
    /// Whether [`Store::apply`] returns at once and never fails (it keeps nothing): the hub
    /// then commits a batch where it was staged, without a hop to the writer task.
    fn is_instant(&self) -> bool {
        false
    }
    /// A short name for logs.
    fn kind(&self) -> &'static str;
}

/// A stored chat message `seq` saying `text`, as the engine writes it (for the stores' tests).
#[cfg(test)]
fn chat_json(seq: u64, text: &str) -> std::sync::Arc<str> {
    use relaycast_shared::*;
    codec::encode_room_message(&RoomMessage {
        seq,
        from: PeerId::try_from("p").unwrap(),
        name: DisplayName::try_from("n").unwrap(),
        id: ClientMsgId::try_from("i").unwrap(),
        user: None,
        at: 5,
        body: Body::Chat { text: ChatText::try_from(text).unwrap() },
    })
    .into()
}

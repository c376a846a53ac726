use super::{Store, StoreError};
use crate::core::{RestoredRoom, StoreOp};

/// Keeps nothing: the engine's own cache is the whole history, and a restart starts over
/// (with new epochs, so resuming clients are told).
#[derive(Debug, Default)]
pub struct MemoryStore;

impl Store for MemoryStore {
    fn load(&self) -> Result<Vec<RestoredRoom>, StoreError> {
        Ok(Vec::new())
    }

    fn apply(&self, _ops: &[StoreOp]) -> Result<(), StoreError> {
        Ok(())
    }

    fn is_instant(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

//! Application state, pure and natively tested.

pub mod prefs;
pub mod room;

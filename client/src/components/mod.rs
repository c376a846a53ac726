//! The app's components.

pub mod chat;
pub mod lobby;
pub mod room;
pub mod status;

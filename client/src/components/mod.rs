//! The app's components.

pub mod broadcast;
pub mod call;
pub mod chat;
pub mod files;
pub mod lobby;
pub mod room;
pub mod status;

//! Application state, pure and natively tested.

pub mod call;
pub mod devices;
pub mod files;
pub mod prefs;
pub mod room;
pub mod text;
pub mod timeline;
pub mod token;
pub mod unread;

//! The app's components.

pub mod broadcast;
pub mod chat;
pub mod controls;
pub mod devices;
pub mod files;
pub mod icons;
pub mod invite;
pub mod lobby;
pub mod people;
pub mod prejoin;
pub mod room;
pub mod side;
pub mod sound;
pub mod stage;
pub mod status;
pub mod theme;
pub mod tile;

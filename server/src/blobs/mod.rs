//! The blob cache: content-addressed files uploaded once and served to a room's members.
//!
//! Pure decisions live here first (byte ranges, eviction); the disk store and the HTTP API
//! build on them.

pub mod policy;
pub mod range;

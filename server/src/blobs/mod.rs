//! The blob cache: content-addressed files uploaded once and served to a room's members.
//!
//! - [`range`] and [`policy`]: pure decisions (byte ranges, what to evict), tested without disk.
//! - [`cache`]: the files on disk, their redb index, uploads in progress, crash recovery.
//!
//! The HTTP API over it is in `transport::blob_api`.

pub mod cache;
pub mod policy;
pub mod range;

pub use cache::{BlobCache, BlobWriter, CacheError, CacheEvents, CacheLimits, CacheStats, Started, Written};

//! The wall clock, read in one place. The room engine never reads it (time is passed in);
//! everything around it that needs "now" (the hub, the blob cache, the media relay, the HTTP
//! APIs) asks here, so none of them has to reach into another for the time.

use crate::core::Millis;
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

//! Which blobs to evict: pure decisions over the cache's index, so they are tested without disk.
//!
//! Expired blobs (unused for longer than the TTL) go first, then the least recently used until the
//! incoming blob fits. A blob pinned by a room's live history is never evicted; if the cache cannot
//! make room without evicting pinned blobs, the upload is refused instead.

use relaycast_shared::BlobHash;

/// What the policy needs to know of one cached blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    pub hash: BlobHash,
    pub size: u64,
    /// Last download or upload, ms since the Unix epoch.
    pub last_used: u64,
    pub pinned: bool,
}

/// The cache's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_total_bytes: u64,
    pub ttl_ms: u64,
}

/// Why there is no room for a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoRoom {
    #[error("the blob ({size} bytes) is larger than the whole cache ({max} bytes)")]
    LargerThanCache { size: u64, max: u64 },
    #[error("the cache is full of files that rooms still refer to")]
    AllPinned,
}

/// The blobs to evict, in order, so that `incoming` more bytes fit at `now`. Expired unpinned
/// blobs are always in the plan, even when there is room.
pub fn plan(cached: &[Cached], incoming: u64, limits: Limits, now: u64) -> Result<Vec<BlobHash>, NoRoom> {
    if incoming > limits.max_total_bytes {
        return Err(NoRoom::LargerThanCache { size: incoming, max: limits.max_total_bytes });
    }
    let mut total: u64 = cached.iter().map(|c| c.size).sum();
    let mut candidates: Vec<&Cached> = cached.iter().filter(|c| !c.pinned).collect();
    candidates.sort_by_key(|c| (c.last_used, c.hash.clone()));
    let mut evict = Vec::new();
    let (expired, fresh): (Vec<&Cached>, Vec<&Cached>) =
        candidates.into_iter().partition(|c| now.saturating_sub(c.last_used) > limits.ttl_ms);
    for c in expired {
        total -= c.size;
        evict.push(c.hash.clone());
    }
    for c in fresh {
        if total + incoming <= limits.max_total_bytes {
            break;
        }
        total -= c.size;
        evict.push(c.hash.clone());
    }
    if total + incoming > limits.max_total_bytes {
        return Err(NoRoom::AllPinned);
    }
    Ok(evict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: u8, size: u64, last_used: u64, pinned: bool) -> Cached {
        Cached { hash: BlobHash::try_from(format!("{n:02x}").repeat(32)).unwrap(), size, last_used, pinned }
    }
    const LIMITS: Limits = Limits { max_total_bytes: 100, ttl_ms: 1000 };

    #[test]
    fn least_recently_used_first_until_it_fits() {
        let cached = [blob(1, 40, 30, false), blob(2, 40, 10, false), blob(3, 20, 20, false)];
        assert_eq!(plan(&cached, 0, LIMITS, 50), Ok(vec![]));
        let evicted = plan(&cached, 30, LIMITS, 50).unwrap();
        assert_eq!(evicted, vec![cached[1].hash.clone()], "the oldest use goes first");
        let evicted = plan(&cached, 50, LIMITS, 50).unwrap();
        assert_eq!(evicted, vec![cached[1].hash.clone(), cached[2].hash.clone()]);
    }

    #[test]
    fn expired_go_even_with_room_and_pinned_never_go() {
        let cached = [blob(1, 10, 0, false), blob(2, 10, 0, true), blob(3, 10, 5000, false)];
        assert_eq!(plan(&cached, 0, LIMITS, 5000), Ok(vec![cached[0].hash.clone()]));
        let full = [blob(1, 60, 0, true), blob(2, 40, 4000, true)];
        assert_eq!(plan(&full, 10, LIMITS, 5000), Err(NoRoom::AllPinned));
        assert_eq!(plan(&full, 101, LIMITS, 5000), Err(NoRoom::LargerThanCache { size: 101, max: 100 }));
    }
}

//! A room's cached history: the newest messages, bounded by count, bytes and age.

use super::Millis;
use relaycast_shared::BlobHash;
use std::collections::VecDeque;
use std::sync::Arc;

/// Bounds on one room's history. Whichever is hit first evicts the oldest messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub max_age_ms: u64,
}

/// One committed message: its sequence number, when it was accepted, and its JSON
/// ([`relaycast_shared::RoomMessage`]), encoded once and shared by every frame that carries it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub at: Millis,
    pub json: Arc<str>,
    /// The blob a file message refers to: kept in the cache while this entry lives.
    pub blob: Option<BlobHash>,
}

/// What an eviction removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Evicted {
    /// The highest evicted sequence number, if any.
    pub through: Option<u64>,
    /// Blobs referred to by evicted entries (one per entry).
    pub blobs: Vec<BlobHash>,
}

#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl History {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The blobs its entries refer to (one per entry), as it goes.
    pub fn into_blobs(self) -> Vec<BlobHash> {
        self.entries.into_iter().filter_map(|e| e.blob).collect()
    }

    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// Append (sequence numbers must grow; the engine guarantees it) and evict what the limits
    /// no longer allow.
    pub fn push(&mut self, entry: Entry, limits: &HistoryLimits, now: Millis) -> Evicted {
        debug_assert!(self.entries.back().is_none_or(|last| last.seq < entry.seq));
        self.bytes += entry.json.len();
        self.entries.push_back(entry);
        self.evict(limits, now)
    }

    /// Evict what is over the limits or older than `max_age_ms` at `now`.
    pub fn evict(&mut self, limits: &HistoryLimits, now: Millis) -> Evicted {
        let mut evicted = Evicted::default();
        while let Some(front) = self.entries.front() {
            let too_many = self.entries.len() > limits.max_messages;
            let too_big = self.bytes > limits.max_bytes;
            let too_old = now.saturating_sub(front.at) > limits.max_age_ms;
            if !(too_many || too_big || too_old) {
                break;
            }
            evicted.through = Some(front.seq);
            self.bytes -= front.json.len();
            if let Some(gone) = self.entries.pop_front() {
                evicted.blobs.extend(gone.blob);
            }
        }
        evicted
    }

    /// Put `json` (and its blob) in place of message `seq`'s; the old entry, if there was one.
    pub fn replace(&mut self, seq: u64, json: Arc<str>, blob: Option<BlobHash>) -> Option<Entry> {
        let first = self.entries.front()?.seq;
        let entry = self.entries.get_mut(seq.checked_sub(first)? as usize)?;
        let old = std::mem::replace(entry, Entry { seq, at: entry.at, json, blob });
        self.bytes = self.bytes - old.json.len() + entry.json.len();
        Some(old)
    }

    /// The entry of message `seq`, if the history holds it.
    pub fn get(&self, seq: u64) -> Option<&Entry> {
        self.after(seq.checked_sub(1)?).next().filter(|e| e.seq == seq)
    }

    /// Entries with a sequence number above `after`, oldest first.
    pub fn after(&self, after: u64) -> impl Iterator<Item = &Entry> {
        // Sequence numbers are contiguous, so the start index is arithmetic.
        let skip = match self.entries.front() {
            Some(first) if after >= first.seq => (after - first.seq + 1) as usize,
            _ => 0,
        };
        self.entries.iter().skip(skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, at: Millis, len: usize) -> Entry {
        Entry { seq, at, json: "x".repeat(len).into(), blob: None }
    }

    const LIMITS: HistoryLimits = HistoryLimits { max_messages: 3, max_bytes: 100, max_age_ms: 1000 };

    #[test]
    fn evicts_by_count_bytes_and_age() {
        let mut h = History::default();
        for seq in 1..=3 {
            assert_eq!(h.push(entry(seq, 0, 10), &LIMITS, 0).through, None);
        }
        assert_eq!(h.push(entry(4, 0, 10), &LIMITS, 0).through, Some(1), "count");
        assert_eq!(h.push(entry(5, 0, 90), &LIMITS, 0).through, Some(3), "bytes: 10+10+90 > 100");
        assert_eq!(h.first_seq(), Some(4));
        assert_eq!(h.evict(&LIMITS, 1001).through, Some(5), "age");
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn an_entry_is_replaced_in_place_and_the_bytes_follow() {
        let mut h = History::default();
        for seq in 5..=7 {
            h.push(entry(seq, 0, 10), &LIMITS, 0);
        }
        let old = h.replace(6, "y".into(), None).unwrap();
        assert_eq!((old.seq, old.json.len()), (6, 10));
        assert_eq!(h.bytes(), 21);
        assert_eq!(h.get(6).unwrap().json.as_ref(), "y");
        assert!(h.replace(4, "z".into(), None).is_none());
        assert!(h.replace(8, "z".into(), None).is_none());
        assert!(h.get(0).is_none() && h.get(8).is_none());
    }

    #[test]
    fn after_skips_what_was_seen() {
        let mut h = History::default();
        for seq in 10..=12 {
            h.push(entry(seq, 0, 1), &LIMITS, 0);
        }
        let seqs = |after| h.after(after).map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(0), vec![10, 11, 12]);
        assert_eq!(seqs(10), vec![11, 12]);
        assert_eq!(seqs(12), Vec::<u64>::new());
        assert_eq!(seqs(99), Vec::<u64>::new());
    }
}

//! Each connection's outbox: what the hub has queued for the connection's writer and the
//! writer has not taken yet.
//!
//! It is bounded by counts the hub checks on every push (frames and bytes, see
//! [`QueueLimits`]), so a burst (one commit batch of many small frames) is judged by its size
//! and a stalled reader by what it has left unread. A quiet connection, the common case, costs
//! a few words here (a channel would keep a block of slots per connection): its writer lets a
//! burst's room go once the connection has been quiet a while ([`Outbox::release`]).

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;

/// What a connection's writer sends.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A text frame's payload (UTF-8, checked by the hub), shared by every recipient.
    Frame(Bytes),
    /// A keep-alive ping of our own.
    Ping,
    /// The answer to the peer's ping, with its payload.
    Pong(Bytes),
}

impl Outbound {
    /// Bytes this item counts for in its connection's outbox.
    pub fn queued_bytes(&self) -> usize {
        match self {
            Outbound::Frame(payload) | Outbound::Pong(payload) => payload.len(),
            Outbound::Ping => 0,
        }
    }
}

/// Bounds of each connection's outbox.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

/// What became of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued by [`Outbox::push_unwoken`] into an empty outbox: its writer may be waiting and
    /// must be woken ([`Outbox::wake`]) once the pusher is done.
    QueuedUnwoken,
    /// At its bounds: the reader is too slow.
    Full,
    /// The connection is ending; its disconnect is on the way.
    Closed,
}

#[derive(Debug, Default)]
struct Queued {
    items: VecDeque<Outbound>,
    bytes: usize,
    /// No more pushes: the writer ends once it has taken what is queued.
    closed: bool,
}

/// A capacity past which a quiet outbox lets its memory go (a burst's worth would stay with
/// the connection otherwise).
const KEEP_CAPACITY: usize = 16;

#[derive(Debug, Default)]
pub struct Outbox {
    queued: Mutex<Queued>,
    /// Wakes the writer; a push while it is busy leaves a permit, so no wake-up is lost.
    ready: Notify,
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Queued> {
        // Nothing here panics while holding the lock; a poisoned queue is still consistent.
        self.queued.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queue `out` unless the outbox is at `limits` (pings and pongs count too: a peer that
    /// pings without reading fills it like one that is sent messages without reading).
    pub fn push(&self, out: Outbound, limits: QueueLimits) -> Pushed {
        match self.push_unwoken(out, limits) {
            Pushed::QueuedUnwoken => {
                self.wake();
                Pushed::Queued
            }
            pushed => pushed,
        }
    }

    /// [`Outbox::push`] without waking the writer: a caller queueing many frames to many
    /// connections wakes each writer once, when it is done, rather than once per frame (a
    /// writer woken early takes one frame per write and waits for the next).
    pub fn push_unwoken(&self, out: Outbound, limits: QueueLimits) -> Pushed {
        let len = out.queued_bytes();
        let mut queued = self.lock();
        if queued.closed {
            return Pushed::Closed;
        }
        if queued.items.len() >= limits.max_frames || queued.bytes + len > limits.max_bytes {
            return Pushed::Full;
        }
        let was_empty = queued.items.is_empty();
        queued.items.push_back(out);
        queued.bytes += len;
        // A writer that found the outbox non-empty takes this push with what it takes next.
        if was_empty {
            Pushed::QueuedUnwoken
        } else {
            Pushed::Queued
        }
    }

    /// Wake the writer (a permit is left if it is busy, so no wake-up is lost).
    pub fn wake(&self) {
        self.ready.notify_one();
    }

    /// No more pushes; the writer ends after what is queued.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Frames and bytes queued now.
    #[cfg(test)]
    fn len(&self) -> (usize, usize) {
        let queued = self.lock();
        (queued.items.len(), queued.bytes)
    }

    /// Move queued items into `batch` (empty on entry), oldest first, up to `max_items` and
    /// about `max_bytes` (at least one item). Waits while the outbox is empty; `false` once it
    /// is closed and empty.
    pub async fn next_batch(&self, batch: &mut Vec<Outbound>, max_items: usize, max_bytes: usize) -> bool {
        loop {
            match self.try_batch(batch, max_items, max_bytes) {
                Some(more) => return more,
                None => self.ready.notified().await,
            }
        }
    }

    /// [`Outbox::next_batch`] without waiting: `None` when there is nothing yet.
    pub fn try_batch(&self, batch: &mut Vec<Outbound>, max_items: usize, max_bytes: usize) -> Option<bool> {
        let mut queued = self.lock();
        if queued.items.is_empty() {
            return if queued.closed { Some(false) } else { None };
        }
        let mut bytes = 0;
        while let Some(next) = queued.items.front() {
            if !batch.is_empty() && (batch.len() >= max_items || bytes >= max_bytes) {
                break;
            }
            bytes += next.queued_bytes();
            batch.extend(queued.items.pop_front());
        }
        queued.bytes -= bytes;
        Some(true)
    }

    /// Whether the outbox keeps more room than a quiet connection needs (tests: the writer
    /// lets it go through [`Outbox::release`]).
    #[cfg(test)]
    pub fn holds_memory(&self) -> bool {
        self.lock().items.capacity() > KEEP_CAPACITY
    }

    /// Let a burst's room go if the outbox is empty (its writer calls this once it has
    /// written everything, before it waits for more).
    pub fn release(&self) {
        let mut queued = self.lock();
        if queued.items.is_empty() && queued.items.capacity() > KEEP_CAPACITY {
            queued.items = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: QueueLimits = QueueLimits { max_frames: 3, max_bytes: 10 };

    fn frame(text: &'static str) -> Outbound {
        Outbound::Frame(Bytes::from_static(text.as_bytes()))
    }

    fn texts(batch: &[Outbound]) -> Vec<String> {
        batch
            .iter()
            .map(|o| match o {
                Outbound::Frame(p) => String::from_utf8_lossy(p).into_owned(),
                Outbound::Ping => "ping".into(),
                Outbound::Pong(_) => "pong".into(),
            })
            .collect()
    }

    #[test]
    fn bounded_by_frames_and_bytes() {
        let outbox = Outbox::default();
        assert_eq!(outbox.push(frame("aaaa"), LIMITS), Pushed::Queued);
        assert_eq!(outbox.push(frame("bbbb"), LIMITS), Pushed::Queued);
        assert_eq!(outbox.push(frame("ccc"), LIMITS), Pushed::Full, "11 bytes > 10");
        assert_eq!(outbox.push(Outbound::Ping, LIMITS), Pushed::Queued);
        assert_eq!(outbox.push(frame("d"), LIMITS), Pushed::Full, "3 frames already");
        assert_eq!(outbox.push(Outbound::Pong(Bytes::new()), LIMITS), Pushed::Full, "control frames count");
        assert_eq!(outbox.len(), (3, 8));
        let mut batch = Vec::new();
        assert_eq!(outbox.try_batch(&mut batch, 100, 100), Some(true));
        assert_eq!(texts(&batch), ["aaaa", "bbbb", "ping"]);
        assert_eq!(outbox.len(), (0, 0), "taking frees the bounds");
        assert_eq!(outbox.push(frame("eeeeeeeeee"), LIMITS), Pushed::Queued);
    }

    #[test]
    fn batches_are_cut_by_count_and_bytes_in_order() {
        let outbox = Outbox::default();
        for t in ["a", "bb", "ccc", "dddd", "e"] {
            outbox.push(frame(t), QueueLimits { max_frames: 100, max_bytes: 100 });
        }
        let mut batch = Vec::new();
        outbox.try_batch(&mut batch, 2, 100);
        assert_eq!(texts(&batch), ["a", "bb"]);
        batch.clear();
        outbox.try_batch(&mut batch, 100, 3);
        assert_eq!(texts(&batch), ["ccc"], "3 bytes reach the byte cut");
        batch.clear();
        outbox.try_batch(&mut batch, 100, 1);
        assert_eq!(texts(&batch), ["dddd"], "one item at least, even over the cut");
        batch.clear();
        outbox.try_batch(&mut batch, 100, 100);
        assert_eq!(texts(&batch), ["e"]);
        assert_eq!(outbox.len(), (0, 0));
    }

    #[test]
    fn closing_ends_the_writer_after_what_is_queued_and_refuses_more() {
        let outbox = Outbox::default();
        outbox.push(frame("last"), LIMITS);
        outbox.close();
        assert_eq!(outbox.push(frame("late"), LIMITS), Pushed::Closed);
        let mut batch = Vec::new();
        assert_eq!(outbox.try_batch(&mut batch, 10, 10), Some(true));
        assert_eq!(texts(&batch), ["last"]);
        assert_eq!(outbox.try_batch(&mut batch, 10, 10), Some(false));
    }

    #[test]
    fn an_emptied_outbox_lets_a_burst_s_memory_go() {
        let outbox = Outbox::default();
        let limits = QueueLimits { max_frames: 1000, max_bytes: 1 << 20 };
        for _ in 0..500 {
            outbox.push(frame("x"), limits);
        }
        let mut batch = Vec::new();
        while outbox.try_batch(&mut batch, 64, 1 << 20) == Some(true) {
            batch.clear();
        }
        assert!(outbox.holds_memory(), "emptying alone keeps the room: its writer lets it go");
        outbox.release();
        assert_eq!(outbox.lock().items.capacity(), 0);
        assert!(!outbox.holds_memory());
        outbox.push(frame("y"), limits);
        outbox.release();
        assert_eq!(outbox.len(), (1, 1), "a release leaves what is queued");
    }

    #[tokio::test]
    async fn a_waiting_writer_is_woken_by_a_push_and_by_the_close() {
        let outbox = std::sync::Arc::new(Outbox::default());
        let writer = {
            let outbox = outbox.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut batch = Vec::new();
                while outbox.next_batch(&mut batch, 10, 100).await {
                    got.extend(texts(&batch));
                    batch.clear();
                }
                got
            })
        };
        tokio::task::yield_now().await;
        outbox.push(frame("one"), LIMITS);
        tokio::task::yield_now().await;
        outbox.push(frame("two"), LIMITS);
        outbox.close();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await.unwrap().unwrap();
        assert_eq!(got, ["one", "two"]);
    }
}

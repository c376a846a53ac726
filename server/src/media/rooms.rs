//! Who publishes, who watches and who records in each room, and the fan-out of a publisher's
//! frames to their queues.
//!
//! Behind the relay's one mutex; every call is short and never waits (queue sends are
//! `try_send`), so a full viewer queue costs that viewer its frame and nobody else anything.

use relaycast_shared::media::{BroadcastState, SessionId};
use relaycast_shared::{PeerId, RoomName};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, MediaTime};
use tokio::sync::{mpsc, Notify};

use super::Role;

/// One frame of a publisher's track, on its way to viewers and the recorder.
#[derive(Debug)]
pub struct Forward {
    pub kind: MediaKind,
    /// The track's position among the publisher's tracks of its kind: viewers map it to their
    /// own track of that kind at the same position.
    pub index: usize,
    pub keyframe: bool,
    /// The codec and its parameters, matched against each viewer's payload types.
    pub params: PayloadParams,
    /// The frame's RTP time, and when its first packet arrived.
    pub time: MediaTime,
    pub network_time: Instant,
    pub data: Arc<[u8]>,
    /// Which publisher session sent it (a new one starts a new RTP clock).
    pub origin: u64,
}

/// What one session is told by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// (To a publisher) a viewer wants a keyframe on this video track.
    WantKeyframe(usize),
}

/// A bounded queue of frames toward a viewer or the recorder. When it is full the frame is
/// dropped and `lagging` set: the receiver then waits for a keyframe.
#[derive(Debug, Clone)]
pub struct FrameQueue {
    pub tx: mpsc::Sender<Arc<Forward>>,
    pub lagging: Arc<AtomicBool>,
}

impl FrameQueue {
    pub fn new(capacity: usize) -> (FrameQueue, mpsc::Receiver<Arc<Forward>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (FrameQueue { tx, lagging: Arc::new(AtomicBool::new(false)) }, rx)
    }

    /// True if queued, false if dropped.
    fn offer(&self, frame: &Arc<Forward>) -> bool {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(_) => {
                self.lagging.store(true, Ordering::Relaxed);
                false
            }
        }
    }
}

/// How others reach a session: its close switch and its signal queue.
#[derive(Debug, Clone)]
pub struct SessionLink {
    pub close: Arc<Notify>,
    pub signals: mpsc::Sender<Signal>,
}

#[derive(Debug)]
struct Publisher {
    id: SessionId,
    link: SessionLink,
    since: u64,
    /// The member whose stream key it used.
    member: Option<PeerId>,
}

#[derive(Debug)]
struct Viewer {
    link: SessionLink,
    frames: FrameQueue,
    connected: bool,
}

#[derive(Debug, Default)]
struct RoomMedia {
    publisher: Option<Publisher>,
    viewers: HashMap<SessionId, Viewer>,
    recorder: Option<FrameQueue>,
}

impl RoomMedia {
    fn is_empty(&self) -> bool {
        self.publisher.is_none() && self.viewers.is_empty() && self.recorder.is_none()
    }
}

/// Every room with a broadcast, a viewer or a recording.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<RoomName, RoomMedia>,
}

/// Frames handed to queues and frames dropped by full ones, in one fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    pub queued: u64,
    pub dropped: u64,
}

impl Rooms {
    pub fn state(&self, room: &RoomName) -> BroadcastState {
        let Some(media) = self.rooms.get(room) else {
            return BroadcastState::default();
        };
        BroadcastState {
            live: media.publisher.is_some(),
            since: media.publisher.as_ref().map(|p| p.since),
            viewers: media.viewers.values().filter(|v| v.connected).count() as u32,
            recording: media.recorder.is_some(),
            publisher: media.publisher.as_ref().and_then(|p| p.member.clone()),
        }
    }

    /// The close switch of a session, if `id` is one of `room`'s sessions of `role`.
    pub fn closer(&self, room: &RoomName, role: Role, id: &SessionId) -> Option<Arc<Notify>> {
        let media = self.rooms.get(room)?;
        match role {
            Role::Publisher => media.publisher.as_ref().filter(|p| &p.id == id).map(|p| p.link.close.clone()),
            Role::Viewer => media.viewers.get(id).map(|v| v.link.close.clone()),
        }
    }

    /// The close switch of the room's publisher, if it has one.
    pub fn publisher_closer(&self, room: &RoomName) -> Option<Arc<Notify>> {
        self.rooms.get(room)?.publisher.as_ref().map(|p| p.link.close.clone())
    }

    /// Take the publisher's place (for `member`, when it used its own stream key); false if
    /// the room has a publisher.
    pub fn add_publisher(
        &mut self,
        room: &RoomName,
        id: SessionId,
        link: SessionLink,
        member: Option<PeerId>,
        now_ms: u64,
    ) -> bool {
        let media = self.rooms.entry(room.clone()).or_default();
        if media.publisher.is_some() {
            return false;
        }
        media.publisher = Some(Publisher { id, link, since: now_ms, member });
        true
    }

    /// Join as a viewer; false if the room has `max` viewers.
    pub fn add_viewer(
        &mut self,
        room: &RoomName,
        id: SessionId,
        link: SessionLink,
        frames: FrameQueue,
        max: usize,
    ) -> bool {
        let media = self.rooms.entry(room.clone()).or_default();
        if media.viewers.len() >= max {
            if media.is_empty() {
                self.rooms.remove(room);
            }
            return false;
        }
        media.viewers.insert(id, Viewer { link, frames, connected: false });
        true
    }

    /// A viewer's connection is up: it counts, and it needs a keyframe.
    pub fn viewer_connected(&mut self, room: &RoomName, id: &SessionId) {
        if let Some(v) = self.rooms.get_mut(room).and_then(|m| m.viewers.get_mut(id)) {
            v.connected = true;
        }
    }

    pub fn remove(&mut self, room: &RoomName, role: Role, id: &SessionId) {
        let Some(media) = self.rooms.get_mut(room) else {
            return;
        };
        match role {
            Role::Publisher => {
                if media.publisher.as_ref().is_some_and(|p| &p.id == id) {
                    media.publisher = None;
                }
            }
            Role::Viewer => {
                media.viewers.remove(id);
            }
        }
        if media.is_empty() {
            self.rooms.remove(room);
        }
    }

    pub fn has_publisher(&self, room: &RoomName) -> bool {
        self.rooms.get(room).is_some_and(|m| m.publisher.is_some())
    }

    /// Set or clear the room's recorder queue; false if setting one where there is one.
    pub fn set_recorder(&mut self, room: &RoomName, recorder: Option<FrameQueue>) -> bool {
        match recorder {
            Some(queue) => {
                let media = self.rooms.entry(room.clone()).or_default();
                if media.recorder.is_some() {
                    return false;
                }
                media.recorder = Some(queue);
                true
            }
            None => {
                let Some(media) = self.rooms.get_mut(room) else {
                    return false;
                };
                let had = media.recorder.take().is_some();
                if media.is_empty() {
                    self.rooms.remove(room);
                }
                had
            }
        }
    }

    pub fn is_recording(&self, room: &RoomName) -> bool {
        self.rooms.get(room).is_some_and(|m| m.recorder.is_some())
    }

    /// A publisher's frame to every viewer's queue and the recorder's.
    pub fn fan_out(&self, room: &RoomName, frame: &Arc<Forward>) -> Fanout {
        let mut result = Fanout::default();
        let Some(media) = self.rooms.get(room) else {
            return result;
        };
        let queues = media.viewers.values().map(|v| &v.frames).chain(media.recorder.iter());
        for queue in queues {
            if queue.offer(frame) {
                result.queued += 1;
            } else {
                result.dropped += 1;
            }
        }
        result
    }

    /// Tell the room's publisher that a viewer wants a keyframe. False if there is none (or
    /// its signal queue is full: it has requests enough to act on).
    pub fn want_keyframe(&self, room: &RoomName, index: usize) -> bool {
        self.rooms
            .get(room)
            .and_then(|m| m.publisher.as_ref())
            .is_some_and(|p| p.link.signals.try_send(Signal::WantKeyframe(index)).is_ok())
    }

    /// Every session's close switch (at shutdown).
    pub fn all_closers(&self) -> Vec<Arc<Notify>> {
        let mut out = Vec::new();
        for media in self.rooms.values() {
            out.extend(media.publisher.iter().map(|p| p.link.close.clone()));
            out.extend(media.viewers.values().map(|v| v.link.close.clone()));
        }
        out
    }

    pub fn room_names(&self) -> Vec<RoomName> {
        self.rooms.keys().cloned().collect()
    }

    /// Number of rooms tracked (for the leak checks).
    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link() -> (SessionLink, mpsc::Receiver<Signal>) {
        let (signals, rx) = mpsc::channel(4);
        (SessionLink { close: Arc::new(Notify::new()), signals }, rx)
    }

    fn room() -> RoomName {
        RoomName::try_from("stage").unwrap()
    }

    #[test]
    fn one_publisher_many_viewers_and_the_state_they_make() {
        let mut rooms = Rooms::default();
        let (p, _prx) = link();
        let host = PeerId::try_from("p-host").unwrap();
        assert!(rooms.add_publisher(&room(), SessionId::from_bits(1), p.clone(), Some(host.clone()), 1000));
        assert!(!rooms.add_publisher(&room(), SessionId::from_bits(2), p, None, 1000), "a second publisher is refused");
        for i in 10..13 {
            let (l, _) = link();
            let (q, _rx) = FrameQueue::new(4);
            assert!(rooms.add_viewer(&room(), SessionId::from_bits(i), l, q, 3));
        }
        let (l, _) = link();
        let (q, _rx) = FrameQueue::new(4);
        assert!(!rooms.add_viewer(&room(), SessionId::from_bits(99), l, q, 3), "viewer limit");
        rooms.viewer_connected(&room(), &SessionId::from_bits(10));
        let state = rooms.state(&room());
        let expected =
            BroadcastState { live: true, since: Some(1000), viewers: 1, recording: false, publisher: Some(host) };
        assert_eq!(state, expected, "members see who is live");
        rooms.remove(&room(), Role::Publisher, &SessionId::from_bits(1));
        assert!(!rooms.state(&room()).live);
        for i in 10..13 {
            rooms.remove(&room(), Role::Viewer, &SessionId::from_bits(i));
        }
        assert!(rooms.is_empty(), "nothing left behind");
    }

    #[test]
    fn a_full_queue_drops_only_its_own_frame_and_marks_its_viewer() {
        let mut rooms = Rooms::default();
        let (slow_q, _slow_rx) = FrameQueue::new(1);
        let (fast_q, mut fast_rx) = FrameQueue::new(8);
        let slow_flag = slow_q.lagging.clone();
        let (l1, _) = link();
        let (l2, _) = link();
        rooms.add_viewer(&room(), SessionId::from_bits(1), l1, slow_q, 10);
        rooms.add_viewer(&room(), SessionId::from_bits(2), l2, fast_q, 10);
        let frame = Arc::new(opus_frame());
        assert_eq!(rooms.fan_out(&room(), &frame), Fanout { queued: 2, dropped: 0 });
        assert_eq!(rooms.fan_out(&room(), &frame), Fanout { queued: 1, dropped: 1 });
        assert!(slow_flag.load(Ordering::Relaxed));
        assert!(fast_rx.try_recv().is_ok() && fast_rx.try_recv().is_ok(), "the fast viewer got both");
    }

    pub(crate) fn opus_frame() -> Forward {
        use str0m::format::{Codec, CodecSpec, FormatParams};
        use str0m::media::{Frequency, Pt};
        let spec = CodecSpec {
            codec: Codec::Opus,
            clock_rate: Frequency::FORTY_EIGHT_KHZ,
            channels: Some(2),
            format: FormatParams::default(),
        };
        Forward {
            kind: MediaKind::Audio,
            index: 0,
            keyframe: false,
            params: PayloadParams::new(Pt::new_with_value(111), None, spec),
            time: MediaTime::new(960, Frequency::FORTY_EIGHT_KHZ),
            network_time: Instant::now(),
            data: Arc::from(&b"opus"[..]),
            origin: 1,
        }
    }
}

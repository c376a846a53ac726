//! One media session: a str0m `Rtc` and the task that drives it.
//!
//! The task waits on four things: datagrams routed to it, frames from the room's publisher
//! (viewers), signals from viewers (publishers: "a keyframe, please"), and str0m's next
//! timeout. It ends when the peer leaves (ICE disconnects), its session is deleted, or it never
//! connects; dropping the [`Session`] takes it out of the routes and the room.

use super::keyframes::{Decision, KeyframeGate, VideoGate};
use super::rooms::{Forward, FrameQueue, SessionLink, Signal};
use super::routes::Datagram;
use super::tracks::{index_of, mid_of, Track};
use super::{MediaError, Relay, Role, TaskGauge};
use crate::clock::now_millis;
use relaycast_shared::media::SessionId;
use relaycast_shared::RoomName;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{mpsc, Notify};

/// Signals queued toward one publisher (keyframe wishes; more would be redundant).
const SIGNAL_QUEUE: usize = 64;

/// A registered session, ready to run.
#[derive(Debug)]
pub struct Session {
    relay: Arc<Relay>,
    room: RoomName,
    role: Role,
    id: SessionId,
    /// This session's key in the routes, and as a publisher, the origin of its frames.
    key: u64,
    rtc: Rtc,
    datagrams: mpsc::Receiver<Datagram>,
    signals: mpsc::Receiver<Signal>,
    close: Arc<Notify>,
    /// A viewer's frame queue and its "frames were dropped" flag.
    frames: Option<(mpsc::Receiver<Arc<Forward>>, Arc<AtomicBool>)>,
    /// (Viewer) when it last asked for a keyframe, per video track.
    asked_keyframe_at: HashMap<usize, Instant>,
    /// Its places in the per-address and per-member session limits.
    _places: super::quota::Places,
    /// The member whose token opened it, if one did: a publisher's session lasts while that
    /// member owns the room, a viewer's while it is in the room.
    holder: Option<relaycast_shared::PeerId>,
}

/// How often a session opened with a member's token checks that the member still holds it.
const HOLDER_CHECK: Duration = Duration::from_secs(1);

/// Keeps a viewer's RTP time running straight when the publisher changes: the new
/// publisher's clock starts anywhere, and a jump backwards would stall the viewer's player.
#[derive(Debug, Default, Clone, Copy)]
struct Timeline {
    last: Option<(u64, u64, u64, Instant)>, // origin, time in, time out, arrival
}

impl Timeline {
    fn map(&mut self, origin: u64, time: MediaTime, arrived: Instant) -> MediaTime {
        let hz = time.frequency();
        let rate = u64::from(time.denom());
        let input = time.numer();
        let out = match self.last {
            Some((o, last_in, last_out, _)) if o == origin => last_out.wrapping_add(input.wrapping_sub(last_in)),
            Some((_, _, last_out, last_at)) => {
                let elapsed = arrived.saturating_duration_since(last_at).as_micros() as u64;
                last_out + (elapsed * rate / 1_000_000).max(1)
            }
            None => input,
        };
        self.last = Some((origin, input, out, arrived));
        MediaTime::new(out, hz)
    }
}

static NEXT_KEY: AtomicU64 = AtomicU64::new(1);

impl Session {
    /// Take a place in the room and the routes. Fails if the room has a publisher (for a
    /// publisher) or is full of viewers.
    pub fn register(
        relay: &Arc<Relay>,
        room: &RoomName,
        role: Role,
        id: SessionId,
        mut rtc: Rtc,
        places: super::quota::Places,
        holder: Option<relaycast_shared::PeerId>,
    ) -> Result<Session, MediaError> {
        let (datagram_tx, datagrams) = mpsc::channel(relay.config.datagram_queue.max(1));
        let (signal_tx, signals) = mpsc::channel(SIGNAL_QUEUE);
        let close = Arc::new(Notify::new());
        let link = SessionLink { close: close.clone(), signals: signal_tx };
        let mut frames = None;
        {
            let mut rooms = relay.lock_rooms();
            match role {
                Role::Publisher => {
                    if !rooms.add_publisher(room, id.clone(), link, holder.clone(), now_millis()) {
                        return Err(MediaError::PublisherBusy);
                    }
                }
                Role::Viewer => {
                    let (queue, rx) = FrameQueue::new(relay.config.viewer_queue);
                    let lagging = queue.lagging.clone();
                    if !rooms.add_viewer(room, id.clone(), link, queue, relay.config.max_viewers_per_room) {
                        return Err(MediaError::TooManySessions(format!(
                            "the room has as many viewers as it may ({})",
                            relay.config.max_viewers_per_room
                        )));
                    }
                    frames = Some((rx, lagging));
                }
            }
        }
        let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        relay.lock_routes().add(key, ufrag, datagram_tx);
        relay.counters.sessions.fetch_add(1, Ordering::Relaxed);
        relay.counters.sessions_total.fetch_add(1, Ordering::Relaxed);
        let session = Session {
            relay: relay.clone(),
            room: room.clone(),
            role,
            id,
            key,
            rtc,
            datagrams,
            signals,
            close,
            frames,
            asked_keyframe_at: HashMap::new(),
            _places: places,
            holder,
        };
        if role == Role::Publisher {
            relay.publish_state(room);
        }
        Ok(session)
    }

    /// Drive the session until it ends.
    pub async fn run(mut self) {
        let _task = TaskGauge::new(&self.relay);
        let why = self.drive().await;
        tracing::debug!(room = %self.room, session = %self.id, role = ?self.role, why, "media session ended");
    }

    async fn drive(&mut self) -> &'static str {
        let relay = self.relay.clone();
        let destination = relay.candidate_addrs.first().copied().unwrap_or(relay.local_addr);
        let connect_by = tokio::time::Instant::now() + relay.config.connect_timeout;
        let mut connected = false;
        let mut tracks: Vec<Track> = Vec::new();
        // Publisher: one rate limiter per video track. Viewer: one gate and one timeline per
        // track it receives.
        let mut keyframe_gates: HashMap<usize, KeyframeGate> = HashMap::new();
        let mut video_gates: HashMap<usize, VideoGate> = HashMap::new();
        let mut timelines: HashMap<(bool, usize), Timeline> = HashMap::new();
        let (mut frames, lagging) = match self.frames.take() {
            Some((rx, lagging)) => (Some(rx), Some(lagging)),
            None => (None, None),
        };
        let mut holder_check = tokio::time::Instant::now() + HOLDER_CHECK;
        loop {
            if self.holder.is_some() && tokio::time::Instant::now() >= holder_check {
                holder_check = tokio::time::Instant::now() + HOLDER_CHECK;
                if !self.holder_still_holds() {
                    self.rtc.disconnect();
                    return "its token's holder left";
                }
            }
            // Everything str0m has to say, up to its next timeout.
            let timeout = loop {
                if !self.rtc.is_alive() {
                    return "closed";
                }
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(at)) => break at,
                    Ok(Output::Transmit(t)) => {
                        relay.counters.datagrams_out.fetch_add(1, Ordering::Relaxed);
                        relay.counters.bytes_out.fetch_add(t.contents.len() as u64, Ordering::Relaxed);
                        if let Err(err) = relay.socket.send_to(&t.contents, t.destination).await {
                            tracing::debug!(error = %err, to = %t.destination, "media send failed");
                        }
                    }
                    Ok(Output::Event(event)) => match event {
                        Event::Connected => {
                            connected = true;
                            if self.role == Role::Viewer {
                                relay.lock_rooms().viewer_connected(&self.room, &self.id);
                                relay.publish_state(&self.room);
                                self.want_keyframes(&tracks);
                            }
                        }
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => return "disconnected",
                        Event::MediaAdded(added) => {
                            tracks.push(Track { mid: added.mid, kind: added.kind });
                            // str0m may tell of the tracks after the connection is up.
                            if connected && self.role == Role::Viewer && added.kind == MediaKind::Video {
                                self.want_keyframes(&tracks);
                            }
                        }
                        Event::MediaData(data) if self.role == Role::Publisher => {
                            self.forward(&tracks, &mut keyframe_gates, data);
                        }
                        Event::KeyframeRequest(request) if self.role == Role::Viewer => {
                            if let Some((MediaKind::Video, index)) = index_of(&tracks, request.mid) {
                                relay.lock_rooms().want_keyframe(&self.room, index);
                            }
                        }
                        _ => {}
                    },
                    Err(err) => {
                        tracing::debug!(error = %err, session = %self.id, "media session failed");
                        return "failed";
                    }
                }
            };
            if !connected && tokio::time::Instant::now() >= connect_by {
                return "never connected";
            }
            let mut wake = tokio::time::Instant::from_std(timeout);
            if !connected {
                wake = wake.min(connect_by);
            }
            if self.holder.is_some() {
                wake = wake.min(holder_check);
            }
            for gate in keyframe_gates.values() {
                if let Some(due) = gate.deadline() {
                    wake = wake.min(tokio::time::Instant::from_std(due));
                }
            }

            tokio::select! {
                datagram = self.datagrams.recv() => {
                    let Some(d) = datagram else { return "unrouted" };
                    let Ok(contents) = d.data.as_slice().try_into() else { continue };
                    let input = Input::Receive(d.at, Receive { proto: Protocol::Udp, source: d.source, destination, contents });
                    if let Err(err) = self.rtc.handle_input(input) {
                        tracing::debug!(error = %err, session = %self.id, "media input refused");
                        return "failed";
                    }
                }
                frame = recv_frame(&mut frames) => {
                    let Some(frame) = frame else { return "room gone" };
                    if connected {
                        if lagging.as_ref().is_some_and(|l| l.swap(false, Ordering::Relaxed)) {
                            // Frames toward this viewer were dropped: its decoder needs a keyframe.
                            video_gates.values_mut().for_each(VideoGate::lost);
                            self.want_keyframes(&tracks);
                        }
                        self.write(&tracks, &mut video_gates, &mut timelines, &frame);
                    }
                }
                signal = self.signals.recv() => {
                    if let Some(Signal::WantKeyframe(index)) = signal {
                        let gate = keyframe_gates
                            .entry(index)
                            .or_insert_with(|| KeyframeGate::new(relay.config.keyframe_interval));
                        match gate.request(Instant::now()) {
                            Decision::Send => self.request_keyframe(&tracks, index),
                            Decision::Coalesced => {
                                relay.counters.keyframe_requests_coalesced.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                _ = self.close.notified() => {
                    self.rtc.disconnect();
                    return "deleted";
                }
                _ = tokio::time::sleep_until(wake) => {
                    let now = Instant::now();
                    if let Err(err) = self.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(error = %err, session = %self.id, "media timeout failed");
                        return "failed";
                    }
                    let due: Vec<usize> = keyframe_gates.iter_mut().filter_map(|(i, g)| g.poll(now).then_some(*i)).collect();
                    for index in due {
                        self.request_keyframe(&tracks, index);
                    }
                }
            }
        }
    }

    /// (Viewer) ask the room's publisher for a keyframe on each video track we receive.
    fn want_keyframes(&mut self, tracks: &[Track]) {
        let videos = tracks.iter().filter(|t| t.kind == MediaKind::Video).count();
        let now = Instant::now();
        let rooms = self.relay.lock_rooms();
        for index in 0..videos {
            self.asked_keyframe_at.insert(index, now);
            rooms.want_keyframe(&self.room, index);
        }
    }

    /// (Publisher) send a PLI for the `index`th video track.
    fn request_keyframe(&mut self, tracks: &[Track], index: usize) {
        let Some(mid) = mid_of(tracks, MediaKind::Video, index) else {
            return;
        };
        if let Some(mut writer) = self.rtc.writer(mid) {
            match writer.request_keyframe(None, KeyframeRequestKind::Pli) {
                Ok(()) => {
                    self.relay.counters.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => tracing::debug!(error = %err, "keyframe request failed"),
            }
        }
    }

    /// (Publisher) a frame arrived: to every viewer's queue.
    fn forward(&mut self, tracks: &[Track], gates: &mut HashMap<usize, KeyframeGate>, data: MediaData) {
        let Some((kind, index)) = index_of(tracks, data.mid) else {
            return;
        };
        let keyframe = kind == MediaKind::Video && data.is_keyframe();
        if kind == MediaKind::Video {
            let now = Instant::now();
            let gate = gates.entry(index).or_insert_with(|| KeyframeGate::new(self.relay.config.keyframe_interval));
            if keyframe {
                gate.keyframe_arrived(now);
            } else if !data.contiguous && gate.request(now) == Decision::Send {
                // Packets from the publisher were lost: everyone needs a fresh start.
                self.request_keyframe(tracks, index);
            }
        }
        let frame = Arc::new(Forward {
            kind,
            index,
            keyframe,
            params: data.params,
            time: data.time,
            network_time: data.network_time,
            data: data.data,
            origin: self.key,
        });
        let fanout = self.relay.lock_rooms().fan_out(&self.room, &frame);
        self.relay.counters.frames_forwarded.fetch_add(fanout.queued, Ordering::Relaxed);
        self.relay.counters.frames_dropped.fetch_add(fanout.dropped, Ordering::Relaxed);
    }

    /// (Viewer) write a publisher's frame on the matching track.
    fn write(
        &mut self,
        tracks: &[Track],
        video_gates: &mut HashMap<usize, VideoGate>,
        timelines: &mut HashMap<(bool, usize), Timeline>,
        frame: &Forward,
    ) {
        let Some(mid) = mid_of(tracks, frame.kind, frame.index) else {
            return;
        };
        let video = frame.kind == MediaKind::Video;
        if video && !video_gates.entry(frame.index).or_default().admit(frame.keyframe) {
            // Still waiting for a keyframe: ask again now and then, in case a request was
            // lost (the publisher's gate folds repeats into one).
            let now = Instant::now();
            let last = self.asked_keyframe_at.get(&frame.index).copied();
            if last.is_none_or(|t| now.saturating_duration_since(t) >= self.relay.config.keyframe_interval) {
                self.asked_keyframe_at.insert(frame.index, now);
                self.relay.lock_rooms().want_keyframe(&self.room, frame.index);
            }
            return;
        }
        let time = timelines.entry((video, frame.index)).or_default().map(frame.origin, frame.time, frame.network_time);
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let Some(pt) = writer.match_params(frame.params) else {
            // The viewer did not offer this codec (H.264 to a VP8-only viewer, say).
            return;
        };
        if let Err(err) = writer.write(pt, frame.network_time, time, frame.data.clone()) {
            tracing::debug!(error = %err, session = %self.id, "media write failed");
        }
    }
}

impl Session {
    /// Whether the member whose token opened this session still has the right to it.
    fn holder_still_holds(&self) -> bool {
        let Some(holder) = &self.holder else { return true };
        self.relay.events.rights(&self.room, holder).is_some_and(|rights| rights.has(self.role.right()))
    }
}

async fn recv_frame(frames: &mut Option<mpsc::Receiver<Arc<Forward>>>) -> Option<Arc<Forward>> {
    match frames {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.lock_routes().remove(self.key);
        let recording = {
            let mut rooms = self.relay.lock_rooms();
            rooms.remove(&self.room, self.role, &self.id);
            rooms.is_recording(&self.room)
        };
        self.relay.counters.sessions.fetch_sub(1, Ordering::Relaxed);
        if self.role == Role::Publisher && recording {
            // The broadcast ended: so does its recording, which is saved.
            let (relay, room) = (self.relay.clone(), self.room.clone());
            tokio::spawn(async move {
                if let Err(err) = relay.stop_recording(&room).await {
                    tracing::warn!(error = %err, %room, "saving the recording at the end of the broadcast failed");
                }
            });
        }
        self.relay.publish_state(&self.room);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::media::Frequency;

    #[test]
    fn the_timeline_runs_on_when_the_publisher_changes() {
        let t0 = Instant::now();
        let mut line = Timeline::default();
        let hz = Frequency::NINETY_KHZ;
        assert_eq!(line.map(1, MediaTime::new(1000, hz), t0).numer(), 1000);
        assert_eq!(line.map(1, MediaTime::new(4000, hz), t0).numer(), 4000);
        // A new publisher starts its clock far behind: the viewer's time still moves forward,
        // by the wall-clock time between the two frames.
        let later = t0 + std::time::Duration::from_millis(100);
        let out = line.map(2, MediaTime::new(5, hz), later).numer();
        assert_eq!(out, 4000 + 9000);
        assert_eq!(line.map(2, MediaTime::new(3005, hz), later).numer(), 4000 + 9000 + 3000);
    }
}

//! Live broadcasts through the server's media relay: going live (WHIP) with the camera, the
//! screen or both, and watching (WHEP), from the browser's own `RTCPeerConnection`.
//!
//! Both sides post a complete offer (the browser's candidates gathered first: the relay takes
//! no trickle ICE) and apply the answer; ending is a `DELETE` on the session's `Location`. A
//! viewer samples `getStats()` every second for the frames decoded and a latency estimate
//! (jitter buffer delay plus half the round trip).

use js_sys::{Array, Function, Object, Reflect};
use relaycast_shared::media::{recording_path, whep_path, whip_path, MediaErrorCode, ERROR_HEADER};
use relaycast_shared::RoomName;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MediaStreamConstraints, MediaStreamTrack, RtcConfiguration, RtcPeerConnection, RtcTrackEvent,
};
use yew::Callback;

use super::http::{js_message, request, text};

/// What to send when going live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveSource {
    Camera,
    Screen,
    /// The screen and the camera, as two video tracks (and the microphone).
    Both,
}

/// What the broadcast panel renders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BroadcastView {
    /// What we are sending, while live.
    pub live: Option<MediaStream>,
    /// One stream per video track the broadcast is sending now (with the audio on the first),
    /// while watching: a track that carries nothing (a camera-only broadcast leaves the second
    /// one empty) or stops (the broadcast ended) has no tile.
    pub watching: Vec<MediaStream>,
    /// A watch session is open (its place stays, with the ended notice, while nothing is live).
    pub session: bool,
    pub busy: bool,
    pub problem: Option<String>,
    pub frames_decoded: u32,
    pub audio_packets: u32,
    pub latency_ms: Option<u32>,
    /// From "Watch" to the first decoded frame.
    pub first_frame_ms: Option<u32>,
}

impl BroadcastView {
    /// We are live.
    pub fn publishing(&self) -> bool {
        self.live.is_some()
    }

    /// A watch session is open or being opened.
    pub fn watching(&self) -> bool {
        self.session || !self.watching.is_empty() || (self.busy && !self.publishing())
    }
}

/// Received tracks' event handlers, kept alive with their session.
type TrackEvents = Rc<RefCell<Vec<Closure<dyn FnMut()>>>>;

struct Session {
    pc: RtcPeerConnection,
    location: Option<String>,
    stream: Option<MediaStream>,
    _ontrack: Option<Closure<dyn FnMut(RtcTrackEvent)>>,
    /// The received tracks' mute and unmute handlers, kept as long as the session.
    _track_events: TrackEvents,
}

impl Session {
    fn close(&self) {
        if let Some(stream) = &self.stream {
            for track in stream.get_tracks().iter() {
                if let Ok(track) = track.dyn_into::<MediaStreamTrack>() {
                    track.stop();
                }
            }
        }
        self.pc.close();
        if let Some(location) = self.location.clone() {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = fetch("DELETE", &location, None, None).await;
            });
        }
    }
}

struct Inner {
    view: BroadcastView,
    publishing: Option<Session>,
    watching: Option<Session>,
    /// Bumped on every start/stop, so a late async step of an old session does nothing.
    generation: u64,
    on_view: Callback<BroadcastView>,
}

/// The broadcast service of one room page.
#[derive(Clone)]
pub struct Broadcast {
    inner: Rc<RefCell<Inner>>,
}

impl PartialEq for Broadcast {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl std::fmt::Debug for Broadcast {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast").field("view", &self.inner.borrow().view).finish()
    }
}

fn notify(inner: &Rc<RefCell<Inner>>) {
    let (cb, view) = {
        let i = inner.borrow();
        (i.on_view.clone(), i.view.clone())
    };
    cb.emit(view);
}

/// What a media endpoint answered: status, body text, error code header, `Location`.
struct Answer {
    status: u16,
    text: String,
    code: Option<String>,
    location: Option<String>,
}

/// A request to a media endpoint with an optional bearer token and SDP body.
async fn fetch(method: &str, url: &str, token: Option<&str>, sdp: Option<&str>) -> Result<Answer, String> {
    let mut headers = Vec::new();
    if let Some(token) = token {
        headers.push(("authorization", format!("Bearer {token}")));
    }
    if sdp.is_some() {
        headers.push(("content-type", "application/sdp".to_owned()));
    }
    let body = sdp.map(JsValue::from_str);
    let response = request(method, url, &headers, body.as_ref()).await?;
    let header = |name: &str| response.headers().get(name).ok().flatten();
    Ok(Answer {
        status: response.status(),
        code: header(ERROR_HEADER),
        location: header("location"),
        text: text(&response).await,
    })
}

/// A plain explanation of a refused request.
fn refusal(answer: &Answer) -> String {
    match answer.code.as_deref().and_then(MediaErrorCode::parse) {
        Some(MediaErrorCode::PublisherBusy) => "Someone else is live in this room.".into(),
        Some(MediaErrorCode::AccessDenied) => "Only the room's owner can go live.".into(),
        _ => super::http::error_message(&answer.text)
            .unwrap_or_else(|| format!("The server answered {}.", answer.status)),
    }
}

async fn sleep_ms(ms: u64) {
    yew::platform::time::sleep(Duration::from_millis(ms)).await;
}

/// Wait until the connection has gathered its candidates: the offer must carry them, since
/// the relay takes no trickle ICE. Gathering "complete" can lag well behind the first host
/// candidate, which is all a direct connection to the relay needs; so once one is there, wait
/// only a little more for the others (at most 2 s in all).
async fn gathered(pc: &RtcPeerConnection) {
    let mut since_first = None;
    for step in 0..100 {
        let state = Reflect::get(pc, &"iceGatheringState".into()).ok().and_then(|v| v.as_string());
        if state.as_deref() == Some("complete") {
            return;
        }
        let has_candidate = pc.local_description().is_some_and(|d| d.sdp().contains("a=candidate"));
        if has_candidate && *since_first.get_or_insert(step) + 5 <= step {
            return;
        }
        sleep_ms(20).await;
    }
}

/// Offer, post, apply the answer; the session's `Location`.
async fn negotiate(pc: &RtcPeerConnection, url: &str, token: &str) -> Result<String, String> {
    let offer = JsFuture::from(pc.create_offer()).await.map_err(|e| js_message(&e))?;
    let init: web_sys::RtcSessionDescriptionInit = offer.unchecked_into();
    JsFuture::from(pc.set_local_description(&init)).await.map_err(|e| js_message(&e))?;
    gathered(pc).await;
    let sdp = pc.local_description().map(|d| d.sdp()).ok_or("no local description")?;
    let answer = fetch("POST", url, Some(token), Some(&sdp)).await?;
    if answer.status != 201 {
        return Err(refusal(&answer));
    }
    let description = web_sys::RtcSessionDescriptionInit::new(web_sys::RtcSdpType::Answer);
    description.set_sdp(&answer.text);
    JsFuture::from(pc.set_remote_description(&description)).await.map_err(|e| js_message(&e))?;
    answer.location.ok_or_else(|| "the server gave no Location".to_owned())
}

fn peer_connection() -> Result<RtcPeerConnection, String> {
    // The relay is reachable at the candidate it answers with: no STUN or TURN needed.
    let config = RtcConfiguration::new();
    config.set_ice_servers(&Array::new());
    RtcPeerConnection::new_with_configuration(&config).map_err(|e| js_message(&e))
}

async fn capture(source: LiveSource) -> Result<MediaStream, String> {
    let devices = crate::browser::media_devices()?;
    let out = MediaStream::new().map_err(|e| js_message(&e))?;
    if matches!(source, LiveSource::Screen | LiveSource::Both) {
        let get = Reflect::get(&devices, &"getDisplayMedia".into()).map_err(|e| js_message(&e))?;
        let get: Function = get.dyn_into().map_err(|_| "this browser cannot share the screen".to_owned())?;
        let constraints = Object::new();
        Reflect::set(&constraints, &"video".into(), &true.into()).map_err(|e| js_message(&e))?;
        let promise = get.call1(&devices, &constraints).map_err(|e| js_message(&e))?;
        let screen: MediaStream =
            JsFuture::from(js_sys::Promise::from(promise)).await.map_err(|e| js_message(&e))?.unchecked_into();
        for track in screen.get_video_tracks().iter() {
            out.add_track(&track.unchecked_into());
        }
    }
    let constraints = MediaStreamConstraints::new();
    constraints.set_audio(&true.into());
    constraints.set_video(&matches!(source, LiveSource::Camera | LiveSource::Both).into());
    let promise = devices.get_user_media_with_constraints(&constraints).map_err(|e| js_message(&e))?;
    let camera: MediaStream = JsFuture::from(promise).await.map_err(|e| js_message(&e))?.unchecked_into();
    for track in camera.get_tracks().iter() {
        out.add_track(&track.unchecked_into());
    }
    Ok(out)
}

impl Broadcast {
    pub fn new(on_view: Callback<BroadcastView>) -> Self {
        Broadcast {
            inner: Rc::new(RefCell::new(Inner {
                view: BroadcastView::default(),
                publishing: None,
                watching: None,
                generation: 0,
                on_view,
            })),
        }
    }

    fn set(&self, f: impl FnOnce(&mut BroadcastView)) {
        f(&mut self.inner.borrow_mut().view);
        notify(&self.inner);
    }

    /// Go live in `room` with the owner's stream `key`.
    pub fn go_live(&self, room: RoomName, key: String, source: LiveSource) {
        self.stop_live();
        let generation = self.inner.borrow().generation;
        self.set(|v| {
            v.busy = true;
            v.problem = None;
        });
        let weak = Rc::downgrade(&self.inner);
        wasm_bindgen_futures::spawn_local(async move {
            let result = start_live(&weak, generation, &room, &key, source).await;
            if let (Some(inner), Err(problem)) = (weak.upgrade(), result) {
                if let Some(session) = inner.borrow_mut().publishing.take() {
                    session.close();
                }
                inner.borrow_mut().view.live = None;
                inner.borrow_mut().view.problem = Some(problem);
            }
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().view.busy = false;
                notify(&inner);
            }
        });
    }

    pub fn stop_live(&self) {
        let session = {
            let mut inner = self.inner.borrow_mut();
            inner.generation += 1;
            inner.view.live = None;
            inner.publishing.take()
        };
        if let Some(session) = session {
            session.close();
        }
        notify(&self.inner);
    }

    /// Watch `room`'s broadcast with a member's grant (or the stream key).
    pub fn watch(&self, room: RoomName, token: String) {
        self.stop_watching();
        let generation = self.inner.borrow().generation;
        self.set(|v| {
            v.busy = true;
            v.problem = None;
        });
        let weak = Rc::downgrade(&self.inner);
        let started = js_sys::Date::now();
        wasm_bindgen_futures::spawn_local(async move {
            let result = start_watching(&weak, generation, &room, &token).await;
            if let (Some(inner), Err(problem)) = (weak.upgrade(), result) {
                if let Some(session) = inner.borrow_mut().watching.take() {
                    session.close();
                }
                inner.borrow_mut().view.watching.clear();
                inner.borrow_mut().view.session = false;
                inner.borrow_mut().view.problem = Some(problem);
            }
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().view.busy = false;
                notify(&inner);
            }
            stats_loop(weak, generation, started).await;
        });
    }

    pub fn stop_watching(&self) {
        let session = {
            let mut inner = self.inner.borrow_mut();
            inner.generation += 1;
            inner.view.watching.clear();
            inner.view.session = false;
            inner.view.frames_decoded = 0;
            inner.view.audio_packets = 0;
            inner.view.latency_ms = None;
            inner.view.first_frame_ms = None;
            inner.watching.take()
        };
        if let Some(session) = session {
            session.close();
        }
        notify(&self.inner);
    }

    /// Start or stop recording the room's broadcast (the owner's stream key).
    pub fn record(&self, room: RoomName, key: String, on: bool) {
        let weak = Rc::downgrade(&self.inner);
        wasm_bindgen_futures::spawn_local(async move {
            let url = recording_path(&room);
            let result = fetch(if on { "POST" } else { "DELETE" }, &url, Some(&key), None).await;
            let problem = match result {
                Ok(answer) if matches!(answer.status, 200 | 201) => None,
                Ok(answer) => Some(refusal(&answer)),
                Err(e) => Some(e),
            };
            if let Some(inner) = weak.upgrade() {
                inner.borrow_mut().view.problem = problem;
                notify(&inner);
            }
        });
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for session in [self.publishing.take(), self.watching.take()].into_iter().flatten() {
            session.close();
        }
    }
}

async fn start_live(
    weak: &Weak<RefCell<Inner>>,
    generation: u64,
    room: &RoomName,
    key: &str,
    source: LiveSource,
) -> Result<(), String> {
    let stream = capture(source).await?;
    let pc = peer_connection()?;
    for track in stream.get_tracks().iter() {
        let track: MediaStreamTrack = track.unchecked_into();
        pc.add_track_0(&track, &stream);
    }
    let inner = weak.upgrade().ok_or("gone")?;
    if inner.borrow().generation != generation {
        return Ok(());
    }
    inner.borrow_mut().publishing = Some(Session {
        pc: pc.clone(),
        location: None,
        stream: Some(stream.clone()),
        _ontrack: None,
        _track_events: Rc::default(),
    });
    inner.borrow_mut().view.live = Some(stream);
    notify(&inner);
    drop(inner);
    let location = negotiate(&pc, &whip_path(room), key).await?;
    let inner = weak.upgrade().ok_or("gone")?;
    if let Some(session) = inner.borrow_mut().publishing.as_mut().filter(|_| true) {
        session.location = Some(location.clone());
    }
    if inner.borrow().generation != generation {
        // Stopped while the offer was out: end the session the server just made.
        wasm_bindgen_futures::spawn_local(async move {
            let _ = fetch("DELETE", &location, None, None).await;
        });
    }
    Ok(())
}

async fn start_watching(
    weak: &Weak<RefCell<Inner>>,
    generation: u64,
    room: &RoomName,
    token: &str,
) -> Result<(), String> {
    let pc = peer_connection()?;
    // Room for the camera-and-screen case: two video tracks, one audio.
    let add = Reflect::get(&pc, &"addTransceiver".into()).map_err(|e| js_message(&e))?;
    let add: Function = add.dyn_into().map_err(|_| "no addTransceiver".to_owned())?;
    for kind in ["audio", "video", "video"] {
        let init = Object::new();
        Reflect::set(&init, &"direction".into(), &"recvonly".into()).map_err(|e| js_message(&e))?;
        add.call2(&pc, &kind.into(), &init).map_err(|e| js_message(&e))?;
    }
    let audio: Rc<RefCell<Option<MediaStreamTrack>>> = Rc::default();
    let track_events: TrackEvents = Rc::default();
    let ontrack = {
        let (weak, track_events) = (weak.clone(), track_events.clone());
        Closure::<dyn FnMut(RtcTrackEvent)>::new(move |e: RtcTrackEvent| {
            let Some(inner) = weak.upgrade() else { return };
            let track = e.track();
            if track.kind() == "audio" {
                *audio.borrow_mut() = Some(track.clone());
                if let Some(first) = inner.borrow().view.watching.first() {
                    first.add_track(&track);
                }
                return;
            }
            // A video track gets a tile while media flows on it: a remote track is muted until
            // its first packet, and again when its sender stops.
            let shown = {
                let (weak, track, audio) = (weak.clone(), track.clone(), audio.clone());
                Closure::<dyn FnMut()>::new(move || {
                    let Some(inner) = weak.upgrade() else { return };
                    show_track(&inner, &track, audio.borrow().as_ref());
                })
            };
            let hidden = {
                let (weak, track) = (weak.clone(), track.clone());
                Closure::<dyn FnMut()>::new(move || {
                    let Some(inner) = weak.upgrade() else { return };
                    hide_track(&inner, &track);
                })
            };
            track.set_onunmute(Some(shown.as_ref().unchecked_ref()));
            track.set_onmute(Some(hidden.as_ref().unchecked_ref()));
            track_events.borrow_mut().extend([shown, hidden]);
            if !track.muted() {
                show_track(&inner, &track, audio.borrow().as_ref());
            }
        })
    };
    pc.set_ontrack(Some(ontrack.as_ref().unchecked_ref()));
    {
        let inner = weak.upgrade().ok_or("gone")?;
        if inner.borrow().generation != generation {
            return Ok(());
        }
        inner.borrow_mut().watching = Some(Session {
            pc: pc.clone(),
            location: None,
            stream: None,
            _ontrack: Some(ontrack),
            _track_events: track_events,
        });
        inner.borrow_mut().view.session = true;
    }
    let location = negotiate(&pc, &whep_path(room), token).await?;
    let inner = weak.upgrade().ok_or("gone")?;
    if inner.borrow().generation != generation {
        wasm_bindgen_futures::spawn_local(async move {
            let _ = fetch("DELETE", &location, None, None).await;
        });
        return Ok(());
    }
    if let Some(session) = inner.borrow_mut().watching.as_mut() {
        session.location = Some(location);
    }
    Ok(())
}

/// A received video track carries media: give it a tile (the first tile carries the audio).
fn show_track(inner: &Rc<RefCell<Inner>>, track: &MediaStreamTrack, audio: Option<&MediaStreamTrack>) {
    let shown = inner.borrow().view.watching.iter().any(|s| s.get_track_by_id(&track.id()).is_some());
    if shown {
        return;
    }
    let Ok(stream) = MediaStream::new() else { return };
    stream.add_track(track);
    if inner.borrow().view.watching.is_empty() {
        if let Some(audio) = audio {
            stream.add_track(audio);
        }
    }
    inner.borrow_mut().view.watching.push(stream);
    notify(inner);
}

/// A received video track stopped carrying media: its tile goes (the audio moves to the next
/// tile, if any).
fn hide_track(inner: &Rc<RefCell<Inner>>, track: &MediaStreamTrack) {
    let removed = {
        let mut inner = inner.borrow_mut();
        let Some(at) = inner.view.watching.iter().position(|s| s.get_track_by_id(&track.id()).is_some()) else {
            return;
        };
        inner.view.watching.remove(at)
    };
    if let Some(next) = inner.borrow().view.watching.first() {
        for audio in removed.get_audio_tracks().iter() {
            next.add_track(&audio.unchecked_into());
        }
    }
    notify(inner);
}

/// While watching: frames decoded, audio packets, latency estimate; every 100 ms until the
/// first frame (to time it), then every second.
async fn stats_loop(weak: Weak<RefCell<Inner>>, generation: u64, started: f64) {
    loop {
        let first_seen = weak.upgrade().is_some_and(|i| i.borrow().view.first_frame_ms.is_some());
        sleep_ms(if first_seen { 1000 } else { 100 }).await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.borrow().generation != generation {
            return;
        }
        let Some(pc) = inner.borrow().watching.as_ref().map(|s| s.pc.clone()) else { return };
        drop(inner);
        let Ok(report) = JsFuture::from(pc.get_stats()).await else { continue };
        let (mut frames, mut audio, mut jitter_delay, mut emitted, mut rtt) = (0.0, 0.0, 0.0, 0.0, None);
        if let Ok(Some(iter)) = js_sys::try_iter(&report) {
            for entry in iter.flatten() {
                let Ok(stat) = Reflect::get(&entry, &1.into()) else { continue };
                let text =
                    |k: &str| Reflect::get(&stat, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
                let num = |k: &str| Reflect::get(&stat, &k.into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
                match (text("type").as_str(), text("kind").as_str()) {
                    ("inbound-rtp", "video") => {
                        frames += num("framesDecoded");
                        jitter_delay += num("jitterBufferDelay");
                        emitted += num("jitterBufferEmittedCount");
                    }
                    ("inbound-rtp", "audio") => audio += num("packetsReceived"),
                    ("candidate-pair", _) if text("state") == "succeeded" => rtt = Some(num("currentRoundTripTime")),
                    _ => {}
                }
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut i = inner.borrow_mut();
            i.view.frames_decoded = frames as u32;
            if frames > 0.0 && i.view.first_frame_ms.is_none() {
                i.view.first_frame_ms = Some((js_sys::Date::now() - started) as u32);
            }
            i.view.audio_packets = audio as u32;
            i.view.latency_ms =
                (emitted > 0.0).then(|| ((jitter_delay / emitted + rtt.unwrap_or(0.0) / 2.0) * 1000.0).round() as u32);
        }
        notify(&inner);
    }
}

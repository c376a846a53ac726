//! The call: camera and microphone to everyone in the room, over the peer links
//! ([`crate::net::peer`]); direct messages and each peer's microphone/camera state as
//! [`PeerMsg`]s on the links' `direct` channels.
//!
//! Joining the call sends our camera and microphone to everyone in the room; a peer that has
//! not joined receives (and sees who is in the call) until it joins too.
//!
//! The UI gets a [`CallView`] after every change.

use crate::net::devices;
use crate::net::devices::media_error;
use crate::net::peer::{LinkEvent, Links};
use crate::state::call::{may_join, PeerMsg, Sample, Series, Voice, MAX_IN_CALL, VOICE_POLL_MS};
use crate::state::devices::{Choice, DeviceList};
use js_sys::Reflect;
use relaycast_shared::PeerId;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{MediaStream, MediaStreamTrack, RtcPeerConnection, RtcRtpReceiver, RtcRtpSender};
use yew::Callback;

/// One remote peer as the call panel shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub stream: MediaStream,
    pub series: Series,
    /// `RTCPeerConnection.connectionState`, e.g. "connected".
    pub state: String,
    /// Live tracks in `stream`: 0 when the peer sends nothing (not in the call).
    pub tracks: u32,
    /// Its microphone and camera, as it last said (`None`: not said yet).
    pub mic_on: Option<bool>,
    pub camera_on: Option<bool>,
    /// It shares its screen.
    pub screen: bool,
    /// Its voice is heard now ([`Voice`]).
    pub speaking: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DirectMessage {
    pub peer: PeerId,
    pub text: String,
    pub mine: bool,
}

/// Everything the call panel renders.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallView {
    pub joined: bool,
    pub local: Option<MediaStream>,
    pub remotes: BTreeMap<PeerId, Remote>,
    pub messages: Vec<DirectMessage>,
    pub problem: Option<String>,
    pub mic_on: bool,
    pub camera_on: bool,
    pub sharing: bool,
    /// The devices to choose from, and the ones in use (`None`: the browser's default).
    pub devices: DeviceList,
    pub camera: Option<String>,
    pub mic: Option<String>,
    /// Where the call's sound plays (`None`: the default speaker).
    pub speaker: Option<String>,
}

struct Inner {
    links: Links,
    view: CallView,
    on_view: Callback<CallView>,
}

/// The call handle; clones share one call.
#[derive(Clone)]
pub struct Call {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").finish_non_exhaustive()
    }
}

impl PartialEq for Call {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Our microphone and camera state, while in the call.
fn media_state(view: &CallView) -> Option<PeerMsg> {
    view.joined.then_some(PeerMsg::Media { mic: view.mic_on, camera: view.camera_on, screen: view.sharing })
}

/// Tell every open channel whether our microphone and camera are on.
fn send_media_state(inner: &Rc<RefCell<Inner>>) {
    let (links, state) = {
        let i = inner.borrow();
        (i.links.clone(), media_state(&i.view))
    };
    if let Some(state) = state {
        links.send_direct(None, &state.encode());
    }
}

fn notify(inner: &Rc<RefCell<Inner>>) {
    let (cb, view) = {
        let i = inner.borrow();
        (i.on_view.clone(), i.view.clone())
    };
    cb.emit(view);
}

/// What the links tell: remote peers appear, change and go; their messages arrive.
fn on_link_event(inner: &Rc<RefCell<Inner>>, event: LinkEvent) {
    let mut i = inner.borrow_mut();
    match event {
        LinkEvent::Opened(peer) => {
            // Replaced by the browser's stream for this peer when its first track arrives.
            let Ok(placeholder) = MediaStream::new() else { return };
            let remote = Remote {
                stream: placeholder,
                series: Series::default(),
                state: "new".into(),
                tracks: 0,
                mic_on: None,
                camera_on: None,
                screen: false,
                speaking: false,
            };
            i.view.remotes.insert(peer, remote);
        }
        LinkEvent::Closed(peer) => {
            i.view.remotes.remove(&peer);
        }
        LinkEvent::State(peer, state) => {
            if let Some(r) = i.view.remotes.get_mut(&peer) {
                r.state = state;
            }
        }
        LinkEvent::Tracks(peer, stream) => {
            if let Some(r) = i.view.remotes.get_mut(&peer) {
                r.tracks = stream.get_tracks().length();
                r.stream = stream;
            }
        }
        LinkEvent::DirectOpen(peer) => {
            // A new channel learns at once whether our microphone and camera are on.
            if let Some(state) = media_state(&i.view) {
                let links = i.links.clone();
                drop(i);
                links.send_direct(Some(&peer), &state.encode());
                return;
            }
        }
        LinkEvent::Direct(peer, text) => match PeerMsg::decode(&text) {
            Some(PeerMsg::Text { text }) => i.view.messages.push(DirectMessage { peer, text, mine: false }),
            Some(PeerMsg::Media { mic, camera, screen }) => {
                if let Some(r) = i.view.remotes.get_mut(&peer) {
                    (r.mic_on, r.camera_on, r.screen) = (Some(mic), Some(camera), screen);
                }
            }
            None => return,
        },
        LinkEvent::Problem(problem) => i.view.problem = Some(problem),
        LinkEvent::File(..) => return,
    }
    drop(i);
    notify(inner);
}

impl Call {
    pub fn new(links: Links, on_view: Callback<CallView>) -> Call {
        let inner = Rc::new(RefCell::new(Inner {
            links: links.clone(),
            view: CallView { mic_on: true, camera_on: true, ..CallView::default() },
            on_view,
        }));
        let weak = Rc::downgrade(&inner);
        links.subscribe(Callback::from(move |event| {
            if let Some(inner) = weak.upgrade() {
                on_link_event(&inner, event);
            }
        }));
        yew::platform::spawn_local(stats_loop(Rc::downgrade(&inner)));
        yew::platform::spawn_local(voice_loop(Rc::downgrade(&inner)));
        Call { inner }
    }

    /// Join the call with camera and microphone.
    /// Join the call with what the pre-join screen opened (`None`: no camera or microphone
    /// could be had, or none was wanted: join to watch and listen), each device on or off
    /// as chosen.
    pub async fn join_with(&self, stream: Option<MediaStream>, choice: Choice) {
        let others = self.inner.borrow().view.remotes.values().filter(|r| r.tracks > 0).count();
        if !may_join(others) {
            if let Some(stream) = &stream {
                devices::stop(stream);
            }
            self.inner.borrow_mut().view.problem =
                Some(format!("This call is full: calls hold up to {MAX_IN_CALL} people."));
            return notify(&self.inner);
        }
        let stream = stream.or_else(|| MediaStream::new().ok());
        {
            let mut i = self.inner.borrow_mut();
            i.view.joined = true;
            i.view.problem = None;
            i.view.mic_on = !choice.mic_off;
            i.view.camera_on = !choice.camera_off;
            if let Some(stream) = &stream {
                for t in stream.get_tracks().iter() {
                    let t: MediaStreamTrack = t.unchecked_into();
                    t.set_enabled(if t.kind() == "video" { !choice.camera_off } else { !choice.mic_off });
                }
            }
            i.view.local = stream.clone();
            i.view.camera = choice.camera;
            i.view.mic = choice.mic;
            i.view.speaker = choice.speaker;
        }
        let links = self.links();
        links.send_media(stream);
        links.connect_all();
        send_media_state(&self.inner);
        self.inner.borrow_mut().view.devices = devices::list().await;
        notify(&self.inner);
    }

    fn links(&self) -> Links {
        self.inner.borrow().links.clone()
    }

    /// Leave the call: stop our tracks and stop sending (the links stay, for direct messages
    /// and for receiving).
    pub fn leave(&self) {
        {
            let mut i = self.inner.borrow_mut();
            if let Some(local) = i.view.local.take() {
                for t in local.get_tracks().iter() {
                    t.unchecked_into::<MediaStreamTrack>().stop();
                }
            }
            i.view.joined = false;
            i.view.sharing = false;
        }
        self.links().send_media(None);
        notify(&self.inner);
    }

    pub fn toggle_mic(&self) {
        self.toggle("audio", |v| {
            v.mic_on = !v.mic_on;
            v.mic_on
        });
    }

    pub fn toggle_camera(&self) {
        self.toggle("video", |v| {
            v.camera_on = !v.camera_on;
            v.camera_on
        });
    }

    fn toggle(&self, kind: &str, flip: impl FnOnce(&mut CallView) -> bool) {
        {
            let mut i = self.inner.borrow_mut();
            let on = flip(&mut i.view);
            if let Some(local) = &i.view.local {
                for t in local.get_tracks().iter() {
                    let t: MediaStreamTrack = t.unchecked_into();
                    if t.kind() == kind {
                        t.set_enabled(on);
                    }
                }
            }
            // Joined without this device: turning it on opens it.
            let missing =
                i.view.local.as_ref().is_some_and(|l| {
                    l.get_tracks().iter().all(|t| t.unchecked_into::<MediaStreamTrack>().kind() != kind)
                });
            if on && missing {
                let (me, kind, camera, mic) =
                    (self.clone(), kind.to_owned(), i.view.camera.clone(), i.view.mic.clone());
                yew::platform::spawn_local(async move {
                    if kind == "video" {
                        me.use_camera(camera).await
                    } else {
                        me.use_microphone(mic).await
                    }
                });
            }
        }
        send_media_state(&self.inner);
        notify(&self.inner);
    }

    /// Switch to another camera (or, with `None`, back to the default one); also how a
    /// camera comes in when the call was joined without one.
    pub async fn use_camera(&self, device_id: Option<String>) {
        match devices::open(Some(&device_id), None).await {
            Ok(stream) => match stream.get_video_tracks().get(0).dyn_into::<MediaStreamTrack>() {
                Ok(track) => {
                    self.replace_track(track, false).await;
                    self.inner.borrow_mut().view.camera = device_id;
                }
                Err(_) => self.inner.borrow_mut().view.problem = Some("That camera gave no video.".into()),
            },
            Err(e) => self.inner.borrow_mut().view.problem = Some(media_error(&e)),
        }
        notify(&self.inner);
    }

    /// Switch to another microphone (or to the default one).
    pub async fn use_microphone(&self, device_id: Option<String>) {
        match devices::open(None, Some(&device_id)).await {
            Ok(stream) => match stream.get_audio_tracks().get(0).dyn_into::<MediaStreamTrack>() {
                Ok(track) => {
                    track.set_enabled(self.inner.borrow().view.mic_on);
                    self.replace_track(track, false).await;
                    self.inner.borrow_mut().view.mic = device_id;
                }
                Err(_) => self.inner.borrow_mut().view.problem = Some("That microphone gave no sound.".into()),
            },
            Err(e) => self.inner.borrow_mut().view.problem = Some(media_error(&e)),
        }
        notify(&self.inner);
    }

    /// Play the call on another speaker (where the browser can choose).
    pub fn use_speaker(&self, device_id: Option<String>) {
        self.inner.borrow_mut().view.speaker = device_id;
        notify(&self.inner);
    }

    /// Share the screen instead of the camera; back to the camera when sharing ends.
    pub async fn share_screen(&self) {
        let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else { return };
        let shared = match devices.get_display_media() {
            Ok(p) => JsFuture::from(p).await,
            Err(e) => Err(e),
        };
        match shared.map(|s| s.unchecked_into::<MediaStream>()) {
            Ok(stream) => {
                if let Ok(track) = stream.get_video_tracks().get(0).dyn_into::<MediaStreamTrack>() {
                    let me = self.clone();
                    let ended = Closure::<dyn FnMut(JsValue)>::new(move |_| {
                        let me = me.clone();
                        yew::platform::spawn_local(async move { me.use_camera(None).await });
                    });
                    track.set_onended(Some(ended.as_ref().unchecked_ref()));
                    ended.forget(); // lives as long as the track, which ends once
                    self.replace_track(track, true).await;
                }
            }
            Err(e) => {
                self.inner.borrow_mut().view.problem = Some(format!("Screen sharing failed: {}", media_error(&e)))
            }
        }
        notify(&self.inner);
    }

    /// Send `track` instead of the one of its kind (camera, screen or microphone), to every
    /// peer and in our preview; added where there was none (the call was joined without).
    async fn replace_track(&self, track: MediaStreamTrack, sharing: bool) {
        let kind = track.kind();
        let (pcs, local) = {
            let i = self.inner.borrow();
            (i.links.connections(), i.view.local.clone())
        };
        if let Some(local) = &local {
            for old in local.get_tracks().iter() {
                let old: MediaStreamTrack = old.unchecked_into();
                if old.kind() == kind {
                    old.stop();
                    local.remove_track(&old);
                }
            }
            local.add_track(&track);
        }
        for (_, pc) in pcs {
            let sender = pc
                .get_senders()
                .iter()
                .map(|s| s.unchecked_into::<RtcRtpSender>())
                .find(|s| s.track().is_some_and(|t| t.kind() == kind));
            match (sender, &local) {
                (Some(s), _) => {
                    let _ = JsFuture::from(s.replace_track(Some(&track))).await;
                }
                // A new kind of track: negotiation (already wired) tells the peer.
                (None, Some(local)) => {
                    pc.add_track_0(&track, local);
                }
                (None, None) => {}
            }
        }
        {
            let mut i = self.inner.borrow_mut();
            if kind == "video" {
                i.view.sharing = sharing;
                i.view.camera_on = true;
            }
        }
        send_media_state(&self.inner);
    }

    /// Send a direct message over every open `direct` channel.
    pub fn send_direct(&self, text: &str) {
        let sent = self.links().send_direct(None, &PeerMsg::Text { text: text.to_owned() }.encode());
        {
            let mut i = self.inner.borrow_mut();
            for peer in sent {
                i.view.messages.push(DirectMessage { peer, text: text.to_owned(), mine: true });
            }
        }
        notify(&self.inner);
    }
}

/// Once a second, read each connection's counters for the quality panel.
async fn stats_loop(weak: Weak<RefCell<Inner>>) {
    loop {
        yew::platform::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = weak.upgrade() else { return };
        let pcs = inner.borrow().links.connections();
        drop(inner);
        let mut samples = Vec::new();
        for (peer, pc) in pcs {
            if let Some(s) = sample(&pc).await {
                samples.push((peer, s));
            }
        }
        let Some(inner) = weak.upgrade() else { return };
        {
            let mut i = inner.borrow_mut();
            for (peer, s) in samples {
                if let Some(r) = i.view.remotes.get_mut(&peer) {
                    r.series.push(s);
                }
            }
        }
        notify(&inner);
    }
}

/// Several times a second, read how loud each peer's audio is (the receivers' newest
/// `audioLevel`, no statistics round trip) and light its speaking ring; the view is sent
/// only when a ring changes.
async fn voice_loop(weak: Weak<RefCell<Inner>>) {
    let mut voices: BTreeMap<PeerId, Voice> = BTreeMap::new();
    loop {
        yew::platform::time::sleep(Duration::from_millis(VOICE_POLL_MS)).await;
        let Some(inner) = weak.upgrade() else { return };
        let now = js_sys::Date::now();
        let pcs = inner.borrow().links.connections();
        voices.retain(|peer, _| pcs.iter().any(|(p, _)| p == peer));
        let mut changed = false;
        {
            let mut i = inner.borrow_mut();
            for (peer, pc) in &pcs {
                let voice = voices.entry(peer.clone()).or_default();
                voice.hear(audio_level(pc), now);
                if let Some(r) = i.view.remotes.get_mut(peer) {
                    let speaking = voice.speaking(now);
                    changed |= r.speaking != speaking;
                    r.speaking = speaking;
                }
            }
        }
        if changed {
            notify(&inner);
        }
    }
}

/// The loudest level (0 to 1) among the audio `pc` receives now.
fn audio_level(pc: &RtcPeerConnection) -> f64 {
    let mut level: f64 = 0.0;
    for receiver in pc.get_receivers().iter() {
        let receiver: RtcRtpReceiver = receiver.unchecked_into();
        if receiver.track().kind() != "audio" {
            continue;
        }
        for source in receiver.get_synchronization_sources().iter() {
            let heard = Reflect::get(&source, &"audioLevel".into()).ok().and_then(|v| v.as_f64());
            level = level.max(heard.unwrap_or(0.0));
        }
    }
    level
}

async fn sample(pc: &RtcPeerConnection) -> Option<Sample> {
    let report = JsFuture::from(pc.get_stats()).await.ok()?;
    let mut s = Sample { at_ms: js_sys::Date::now(), ..Sample::default() };
    for entry in js_sys::try_iter(&report).ok()??.flatten() {
        let stat = Reflect::get(&entry, &1.into()).ok()?;
        let text = |k: &str| Reflect::get(&stat, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
        let num = |k: &str| Reflect::get(&stat, &k.into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0);
        match text("type").as_str() {
            "inbound-rtp" => {
                s.bytes_received += num("bytesReceived");
                s.packets_received += num("packetsReceived");
                s.packets_lost += num("packetsLost");
                match text("kind").as_str() {
                    "video" => s.frames_decoded += num("framesDecoded"),
                    "audio" => s.audio_packets_received += num("packetsReceived"),
                    _ => {}
                }
            }
            "outbound-rtp" => s.bytes_sent += num("bytesSent"),
            "candidate-pair" => {
                let nominated =
                    Reflect::get(&stat, &"nominated".into()).ok().and_then(|v| v.as_bool()).unwrap_or(false);
                if nominated && text("state") == "succeeded" {
                    s.rtt = Some(num("currentRoundTripTime"));
                }
            }
            _ => {}
        }
    }
    Some(s)
}

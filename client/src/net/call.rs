//! The call: a WebRTC mesh with every other peer of the room, signaled through the server.
//!
//! - Perfect negotiation: both sides may offer at any time (adding a track, a data channel);
//!   glare is settled by [`Negotiation`] (the impolite side ignores a colliding offer, the
//!   polite side's browser rolls its own back).
//! - Each remote peer's signals are applied one at a time, in order, by a task of its own, so
//!   a candidate never reaches the connection before the description it belongs to.
//! - One negotiated data channel (id 0) per peer carries direct messages; another (id 1,
//!   binary) carries files (see `net::files`). Sending a file opens data-only links to everyone
//!   present, without joining the call.
//! - Joining the call sends our camera and microphone to everyone in the room; a peer that
//!   has not joined receives (and sees who is in the call) until it joins too.
//!
//! The UI gets a [`CallView`] after every change.

use crate::net::devices;
use crate::state::call::{
    is_polite, may_join, Negotiation, OnDescription, PeerMsg, Sample, Series, MAX_IN_CALL, POLITE_FIRST_OFFER_DELAY_MS,
};
use crate::state::devices::{Choice, DeviceList};
use futures_channel::mpsc;
use futures_util::StreamExt;
use js_sys::{Array, Reflect};
use relaycast_shared::{IceServer, PeerId, Signal};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MediaStreamTrack, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit,
    RtcDataChannelState, RtcIceCandidateInit, RtcIceServer, RtcIceTransportPolicy, RtcPeerConnection,
    RtcPeerConnectionIceEvent, RtcRtpSender, RtcSdpType, RtcSessionDescriptionInit, RtcSignalingState, RtcTrackEvent,
};
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

struct Link {
    pc: RtcPeerConnection,
    dc: RtcDataChannel,
    files: RtcDataChannel,
    signals: mpsc::UnboundedSender<Signal>,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.pc.set_onnegotiationneeded(None);
        self.pc.set_onicecandidate(None);
        self.pc.set_ontrack(None);
        self.pc.set_onconnectionstatechange(None);
        self.dc.set_onmessage(None);
        self.dc.set_onopen(None);
        self.files.set_onmessage(None);
        self.pc.close();
    }
}

struct Inner {
    me: Option<PeerId>,
    ice: Vec<IceServer>,
    relay_only: bool,
    peers: Vec<PeerId>,
    links: HashMap<PeerId, Link>,
    view: CallView,
    /// Signals that came before we knew our own peer id (it arrives through the UI's state),
    /// replayed once we do.
    early: Vec<(PeerId, Signal)>,
    send_signal: Callback<(PeerId, Signal)>,
    on_view: Callback<CallView>,
    /// Where messages of the `files` channels go.
    on_file_frame: Option<Callback<(PeerId, Vec<u8>)>>,
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
    let i = inner.borrow();
    let Some(state) = media_state(&i.view) else { return };
    let text = state.encode();
    for link in i.links.values() {
        if link.dc.ready_state() == RtcDataChannelState::Open {
            let _ = link.dc.send_with_str(&text);
        }
    }
}

fn notify(inner: &Rc<RefCell<Inner>>) {
    let (cb, view) = {
        let i = inner.borrow();
        (i.on_view.clone(), i.view.clone())
    };
    cb.emit(view);
}

fn signal(inner: &Weak<RefCell<Inner>>, to: &PeerId, s: Signal) {
    if !matches!(s, Signal::Candidate { .. }) {
        trace(&format!("send {} to {to}", kind(&s)));
    }
    if let Some(inner) = inner.upgrade() {
        let cb = inner.borrow().send_signal.clone();
        cb.emit((to.clone(), s));
    }
}

fn js_error(e: &JsValue) -> String {
    let name = Reflect::get(e, &"name".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" => {
            "Camera and microphone permission was denied. Allow them in the browser to join the call.".into()
        }
        "NotFoundError" | "OverconstrainedError" => "No camera or microphone was found.".into(),
        "NotReadableError" => "The camera or microphone is in use by another program.".into(),
        _ => Reflect::get(e, &"message".into()).ok().and_then(|v| v.as_string()).unwrap_or_else(|| format!("{e:?}")),
    }
}

impl Call {
    pub fn new(send_signal: Callback<(PeerId, Signal)>, on_view: Callback<CallView>) -> Call {
        let inner = Rc::new(RefCell::new(Inner {
            me: None,
            ice: Vec::new(),
            relay_only: false,
            peers: Vec::new(),
            links: HashMap::new(),
            view: CallView { mic_on: true, camera_on: true, ..CallView::default() },
            early: Vec::new(),
            send_signal,
            on_view,
            on_file_frame: None,
        }));
        yew::platform::spawn_local(stats_loop(Rc::downgrade(&inner)));
        Call { inner }
    }

    /// Who we are and who is in the room. A new peer id (after a reconnect) starts every link
    /// over; peers who left are dropped; while in the call, everyone present gets our media.
    pub fn sync(&self, me: Option<PeerId>, ice: Vec<IceServer>, relay_only: bool, peers: Vec<PeerId>) {
        {
            let mut i = self.inner.borrow_mut();
            if i.me != me {
                trace(&format!("our id is now {me:?}: dropping {} links", i.links.len()));
                i.links.clear();
                i.view.remotes.clear();
            }
            i.me = me;
            i.ice = ice;
            i.relay_only = relay_only;
            i.links.retain(|p, _| {
                let keep = peers.contains(p);
                if !keep {
                    trace(&format!("{p} left the room: dropping its link"));
                }
                keep
            });
            let present = peers.clone();
            i.view.remotes.retain(|p, _| present.contains(p));
            i.peers = peers;
        }
        if self.inner.borrow().view.joined {
            self.connect_all();
        }
        let early =
            if self.inner.borrow().me.is_some() { std::mem::take(&mut self.inner.borrow_mut().early) } else { vec![] };
        for (from, s) in early {
            self.handle_signal(from, s);
        }
        notify(&self.inner);
    }

    fn connect_all(&self) {
        let peers = self.inner.borrow().peers.clone();
        for p in peers {
            self.link(&p);
        }
    }

    /// The link to `peer`, made if missing.
    fn link(&self, peer: &PeerId) -> Option<mpsc::UnboundedSender<Signal>> {
        if let Some(l) = self.inner.borrow().links.get(peer) {
            return Some(l.signals.clone());
        }
        match create_link(&self.inner, peer) {
            Ok(link) => {
                let tx = link.signals.clone();
                self.inner.borrow_mut().links.insert(peer.clone(), link);
                Some(tx)
            }
            Err(e) => {
                self.inner.borrow_mut().view.problem = Some(format!("Cannot start a connection: {}", js_error(&e)));
                None
            }
        }
    }

    /// Signaling from `from`, relayed by the server.
    pub fn handle_signal(&self, from: PeerId, s: Signal) {
        if self.inner.borrow().me.is_none() {
            self.inner.borrow_mut().early.push((from, s));
            return;
        }
        if let Some(tx) = self.link(&from) {
            let _ = tx.unbounded_send(s);
        }
        notify(&self.inner);
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
                for link in i.links.values() {
                    add_tracks(&link.pc, stream);
                }
            }
            i.view.local = stream;
            i.view.camera = choice.camera;
            i.view.mic = choice.mic;
            i.view.speaker = choice.speaker;
        }
        self.connect_all();
        send_media_state(&self.inner);
        self.inner.borrow_mut().view.devices = devices::list().await;
        notify(&self.inner);
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
            for link in i.links.values() {
                for s in link.pc.get_senders().iter() {
                    link.pc.remove_track(&s.unchecked_into::<RtcRtpSender>());
                }
            }
            i.view.joined = false;
            i.view.sharing = false;
        }
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
            Err(e) => self.inner.borrow_mut().view.problem = Some(js_error(&e)),
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
            Err(e) => self.inner.borrow_mut().view.problem = Some(js_error(&e)),
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
            Err(e) => self.inner.borrow_mut().view.problem = Some(format!("Screen sharing failed: {}", js_error(&e))),
        }
        notify(&self.inner);
    }

    /// Send `track` instead of the one of its kind (camera, screen or microphone), to every
    /// peer and in our preview; added where there was none (the call was joined without).
    async fn replace_track(&self, track: MediaStreamTrack, sharing: bool) {
        let kind = track.kind();
        let (pcs, local) = {
            let i = self.inner.borrow();
            (i.links.values().map(|l| l.pc.clone()).collect::<Vec<_>>(), i.view.local.clone())
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
        for pc in pcs {
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

    /// Where to deliver what peers send on the `files` channels.
    pub fn on_file_frame(&self, cb: Callback<(PeerId, Vec<u8>)>) {
        self.inner.borrow_mut().on_file_frame = Some(cb);
    }

    /// Connect to everyone in the room for data (no media unless in the call).
    pub fn open_data_links(&self) {
        self.connect_all();
        notify(&self.inner);
    }

    /// The `files` channels that are open now.
    pub fn open_file_channels(&self) -> Vec<(PeerId, RtcDataChannel)> {
        let i = self.inner.borrow();
        i.links
            .iter()
            .filter(|(_, l)| l.files.ready_state() == RtcDataChannelState::Open)
            .map(|(p, l)| (p.clone(), l.files.clone()))
            .collect()
    }

    /// Send a direct message over every open data channel.
    pub fn send_direct(&self, text: &str) {
        {
            let mut i = self.inner.borrow_mut();
            let mut sent = Vec::new();
            for (peer, link) in &i.links {
                let msg = PeerMsg::Text { text: text.to_owned() }.encode();
                if link.dc.ready_state() == RtcDataChannelState::Open && link.dc.send_with_str(&msg).is_ok() {
                    sent.push(peer.clone());
                }
            }
            for peer in sent {
                i.view.messages.push(DirectMessage { peer, text: text.to_owned(), mine: true });
            }
        }
        notify(&self.inner);
    }
}

fn add_tracks(pc: &RtcPeerConnection, stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        pc.add_track_0(&t.unchecked_into(), stream);
    }
}

fn create_link(inner_rc: &Rc<RefCell<Inner>>, peer: &PeerId) -> Result<Link, JsValue> {
    let weak = Rc::downgrade(inner_rc);
    let mut inner = inner_rc.borrow_mut();
    let me = inner.me.clone().ok_or_else(|| JsValue::from_str("not connected"))?;

    let config = RtcConfiguration::new();
    let servers = Array::new();
    for s in &inner.ice {
        let server = RtcIceServer::new();
        server.set_urls(&s.urls.iter().map(|u| JsValue::from_str(u)).collect::<Array>());
        if let Some(u) = &s.username {
            server.set_username(u);
        }
        if let Some(c) = &s.credential {
            server.set_credential(c);
        }
        servers.push(&server);
    }
    config.set_ice_servers(&servers);
    if inner.relay_only {
        config.set_ice_transport_policy(RtcIceTransportPolicy::Relay);
    }
    let pc = RtcPeerConnection::new_with_configuration(&config)?;
    trace(&format!(
        "link to {peer}: {} ICE servers, relay only: {}, sending: {}",
        inner.ice.len(),
        inner.relay_only,
        inner.view.local.is_some()
    ));
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(0);
    let dc = pc.create_data_channel_with_data_channel_dict("direct", &init);
    let files_init = RtcDataChannelInit::new();
    files_init.set_negotiated(true);
    files_init.set_id(1);
    let files = pc.create_data_channel_with_data_channel_dict("files", &files_init);
    files.set_binary_type(web_sys::RtcDataChannelType::Arraybuffer);
    let negotiation = Rc::new(RefCell::new(Negotiation::new(is_polite(&me, peer))));
    // Replaced by the browser's stream for this peer when its first track arrives.
    let placeholder = MediaStream::new()?;
    inner.view.remotes.insert(
        peer.clone(),
        Remote {
            stream: placeholder,
            series: Series::default(),
            state: "new".into(),
            tracks: 0,
            mic_on: None,
            camera_on: None,
            screen: false,
        },
    );

    let mut handlers: Vec<Closure<dyn FnMut(JsValue)>> = Vec::new();
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        handlers.push(Closure::new(move |e: JsValue| {
            let e: RtcPeerConnectionIceEvent = e.unchecked_into();
            if let Some(c) = e.candidate() {
                let typ =
                    c.candidate().split(" typ ").nth(1).and_then(|t| t.split(' ').next()).unwrap_or("?").to_owned();
                trace(&format!("gathered a {typ} candidate for {peer}"));
            }
            let s = match e.candidate() {
                Some(c) if !c.candidate().is_empty() => Signal::Candidate {
                    candidate: c.candidate(),
                    sdp_mid: c.sdp_mid(),
                    sdp_m_line_index: c.sdp_m_line_index(),
                },
                _ => Signal::EndOfCandidates,
            };
            signal(&weak, &peer, s);
        }));
        pc.set_onicecandidate(Some(handlers[0].as_ref().unchecked_ref()));
    }
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        let on_track = Closure::new(move |e: JsValue| {
            let e: RtcTrackEvent = e.unchecked_into();
            // The browser's stream for the peer's tracks: it drops a track (removetrack) when
            // the peer stops sending it, which is how a peer leaving the call shows up here.
            let stream = e.streams().get(0).dyn_into::<MediaStream>().ok();
            let Some(inner) = weak.upgrade() else { return };
            if let (Some(stream), Some(r)) = (stream, inner.borrow_mut().view.remotes.get_mut(&peer)) {
                if r.stream != stream {
                    let (weak, peer) = (weak.clone(), peer.clone());
                    let on_remove = Closure::<dyn FnMut(JsValue)>::new(move |_| refresh_tracks(&weak, &peer));
                    stream.set_onremovetrack(Some(on_remove.as_ref().unchecked_ref()));
                    on_remove.forget(); // one per remote stream, which lives as long as the peer's link
                    r.stream = stream;
                }
            }
            drop(inner);
            refresh_tracks(&weak, &peer);
        });
        pc.set_ontrack(Some(on_track.as_ref().unchecked_ref()));
        handlers.push(on_track);
    }
    {
        let (weak, peer, pc2, negotiation) = (weak.clone(), peer.clone(), pc.clone(), negotiation.clone());
        let on_needed = Closure::new(move |_: JsValue| {
            let (weak, peer, pc, negotiation) = (weak.clone(), peer.clone(), pc2.clone(), negotiation.clone());
            yew::platform::spawn_local(async move {
                if negotiation.borrow().defer_first_offer() {
                    let delay = Duration::from_millis(u64::from(POLITE_FIRST_OFFER_DELAY_MS));
                    yew::platform::time::sleep(delay).await;
                    // The other side led: answering it carried our tracks. If anything is still
                    // missing, the browser asks again once the state is stable.
                    if pc.signaling_state() != RtcSignalingState::Stable || pc.remote_description().is_some() {
                        trace(&format!("{peer} offered first; ours is not needed"));
                        return;
                    }
                }
                negotiation.borrow_mut().making_offer = true;
                let described = local_description(&pc).await;
                negotiation.borrow_mut().making_offer = false;
                match described {
                    Ok(Some(s)) => signal(&weak, &peer, s),
                    Ok(None) => {}
                    Err(e) => tracing_warn(&format!("offer to {peer} failed: {}", js_error(&e))),
                }
            });
        });
        pc.set_onnegotiationneeded(Some(on_needed.as_ref().unchecked_ref()));
        handlers.push(on_needed);
    }
    {
        let (weak, peer, pc2) = (weak.clone(), peer.clone(), pc.clone());
        let on_state = Closure::new(move |_: JsValue| {
            if let Some(inner) = weak.upgrade() {
                let state = format!("{:?}", pc2.connection_state()).to_lowercase();
                trace(&format!("{peer}: connection {state}"));
                // The standard recovery for a path that stopped working.
                if pc2.connection_state() == web_sys::RtcPeerConnectionState::Failed {
                    restart_ice(&pc2);
                }
                if let Some(r) = inner.borrow_mut().view.remotes.get_mut(&peer) {
                    r.state = state;
                }
                notify(&inner);
            }
        });
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        handlers.push(on_state);
    }
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        let on_message = Closure::new(move |e: JsValue| {
            let e: MessageEvent = e.unchecked_into();
            let (Some(data), Some(inner)) = (e.data().as_string(), weak.upgrade()) else { return };
            match PeerMsg::decode(&data) {
                Some(PeerMsg::Text { text }) => {
                    inner.borrow_mut().view.messages.push(DirectMessage { peer: peer.clone(), text, mine: false })
                }
                Some(PeerMsg::Media { mic, camera, screen }) => {
                    if let Some(r) = inner.borrow_mut().view.remotes.get_mut(&peer) {
                        (r.mic_on, r.camera_on, r.screen) = (Some(mic), Some(camera), screen);
                    }
                }
                None => return,
            }
            notify(&inner);
        });
        dc.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        handlers.push(on_message);
    }
    {
        // A new channel learns at once whether our microphone and camera are on.
        let (weak, dc2) = (weak.clone(), dc.clone());
        let on_open = Closure::new(move |_: JsValue| {
            if let Some(state) = weak.upgrade().and_then(|inner| media_state(&inner.borrow().view)) {
                let _ = dc2.send_with_str(&state.encode());
            }
        });
        dc.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        handlers.push(on_open);
    }
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        let on_file = Closure::new(move |e: JsValue| {
            let e: MessageEvent = e.unchecked_into();
            let Some(inner) = weak.upgrade() else { return };
            let Some(cb) = inner.borrow().on_file_frame.clone() else { return };
            if let Ok(buf) = e.data().dyn_into::<js_sys::ArrayBuffer>() {
                cb.emit((peer.clone(), js_sys::Uint8Array::new(&buf).to_vec()));
            }
        });
        files.set_onmessage(Some(on_file.as_ref().unchecked_ref()));
        handlers.push(on_file);
    }
    if let Some(local) = &inner.view.local {
        add_tracks(&pc, local);
    }

    let (signals, queue) = mpsc::unbounded();
    yew::platform::spawn_local(apply_signals(weak, peer.clone(), pc.clone(), negotiation, queue));
    Ok(Link { pc, dc, files, signals, _handlers: handlers })
}

fn refresh_tracks(weak: &Weak<RefCell<Inner>>, peer: &PeerId) {
    if let Some(inner) = weak.upgrade() {
        if let Some(r) = inner.borrow_mut().view.remotes.get_mut(peer) {
            r.tracks = r.stream.get_tracks().length();
        }
        notify(&inner);
    }
}

fn tracing_warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(message));
}

/// Negotiation steps at debug level (hidden by default in the browser's console), so a call that
/// does not connect can be read back step by step.
fn trace(message: &str) {
    web_sys::console::debug_1(&JsValue::from_str(&format!("[call] {message}")));
}

fn kind(s: &Signal) -> &'static str {
    match s {
        Signal::Offer { .. } => "offer",
        Signal::Answer { .. } => "answer",
        Signal::Candidate { .. } => "candidate",
        Signal::EndOfCandidates => "end-of-candidates",
    }
}

/// `restartIce()` (not bound by web-sys): renegotiate with new ICE credentials and gather anew.
fn restart_ice(pc: &RtcPeerConnection) {
    trace("restarting ICE");
    let restart = Reflect::get(pc, &"restartIce".into()).and_then(|f| f.dyn_into::<js_sys::Function>());
    if let Ok(restart) = restart {
        let _ = restart.call0(pc);
    }
}

/// Set our local description (offer or answer, as the state calls for) and return it as the
/// signal to send.
///
/// It calls `setLocalDescription()` without arguments (web-sys binds only the form with a
/// description): the browser then creates the offer or answer that fits the signaling state at
/// that moment, so a remote offer applied in between cannot make our change invalid. The
/// perfect-negotiation pattern relies on this.
async fn local_description(pc: &RtcPeerConnection) -> Result<Option<Signal>, JsValue> {
    let set: js_sys::Function = Reflect::get(pc, &"setLocalDescription".into())?.dyn_into()?;
    JsFuture::from(set.call0(pc)?.dyn_into::<js_sys::Promise>()?).await?;
    let Some(desc) = pc.local_description() else { return Ok(None) };
    let sdp = desc.sdp();
    Ok(match desc.type_() {
        RtcSdpType::Offer => Some(Signal::Offer { sdp }),
        RtcSdpType::Answer => Some(Signal::Answer { sdp }),
        _ => None,
    })
}

/// Apply one peer's signals strictly in order.
async fn apply_signals(
    weak: Weak<RefCell<Inner>>,
    peer: PeerId,
    pc: RtcPeerConnection,
    negotiation: Rc<RefCell<Negotiation>>,
    mut queue: mpsc::UnboundedReceiver<Signal>,
) {
    while let Some(s) = queue.next().await {
        if !matches!(s, Signal::Candidate { .. }) {
            trace(&format!("apply {} from {peer} in state {:?}", kind(&s), pc.signaling_state()));
        }
        let outcome: Result<(), JsValue> = async {
            match s {
                Signal::Offer { sdp } => describe(&weak, &peer, &pc, &negotiation, RtcSdpType::Offer, &sdp).await?,
                Signal::Answer { sdp } => describe(&weak, &peer, &pc, &negotiation, RtcSdpType::Answer, &sdp).await?,
                Signal::Candidate { candidate, sdp_mid, sdp_m_line_index } => {
                    let init = RtcIceCandidateInit::new(&candidate);
                    init.set_sdp_mid(sdp_mid.as_deref());
                    init.set_sdp_m_line_index(sdp_m_line_index);
                    let added = JsFuture::from(pc.add_ice_candidate_with_opt_rtc_ice_candidate_init(Some(&init))).await;
                    if added.is_err() && negotiation.borrow().candidate_error_matters() {
                        added?;
                    }
                }
                Signal::EndOfCandidates => {}
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            tracing_warn(&format!("signal from {peer}: {}", js_error(&e)));
        }
        if weak.strong_count() == 0 {
            break;
        }
    }
}

/// A remote description: applied or ignored as perfect negotiation says; an offer is answered.
async fn describe(
    weak: &Weak<RefCell<Inner>>,
    peer: &PeerId,
    pc: &RtcPeerConnection,
    negotiation: &Rc<RefCell<Negotiation>>,
    kind: RtcSdpType,
    sdp: &str,
) -> Result<(), JsValue> {
    let is_offer = kind == RtcSdpType::Offer;
    let stable = pc.signaling_state() == RtcSignalingState::Stable;
    let decision = negotiation.borrow_mut().on_description(is_offer, stable);
    trace(&format!("{peer}: {decision:?} (polite: {})", negotiation.borrow().polite));
    if let OnDescription::Apply { answer: reply } = decision {
        let init = RtcSessionDescriptionInit::new(kind);
        init.set_sdp(sdp);
        // For the polite side in a glare, this rolls our own offer back first.
        JsFuture::from(pc.set_remote_description(&init)).await?;
        if reply {
            if let Some(s) = local_description(pc).await? {
                signal(weak, peer, s);
            }
        }
    }
    Ok(())
}

/// Once a second, read each connection's counters for the quality panel.
async fn stats_loop(weak: Weak<RefCell<Inner>>) {
    loop {
        yew::platform::time::sleep(Duration::from_secs(1)).await;
        let Some(inner) = weak.upgrade() else { return };
        let pcs: Vec<(PeerId, RtcPeerConnection)> =
            inner.borrow().links.iter().map(|(p, l)| (p.clone(), l.pc.clone())).collect();
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
                    "audio" => {
                        s.audio_packets_received += num("packetsReceived");
                        s.audio_level = s.audio_level.max(num("audioLevel"));
                    }
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

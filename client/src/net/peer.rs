//! Peer links: one `RTCPeerConnection` to every other peer we talk to directly, signaled
//! through the server. The call (media and direct messages) and file transfers both use them.
//!
//! - Perfect negotiation: both sides may offer at any time (adding a track, a data channel);
//!   glare is settled by [`Negotiation`] (the impolite side ignores a colliding offer, the
//!   polite side's browser rolls its own back).
//! - Each remote peer's signals are applied one at a time, in order, by a task of its own, so
//!   a candidate never reaches the connection before the description it belongs to.
//! - Two negotiated data channels per link: `direct` (id 0, text: [`PeerMsg`]s) and `files`
//!   (id 1, binary frames of `net::files`).
//! - While we send media (in the call), every link carries it, and every peer present gets a
//!   link; otherwise links are made on demand (a signal from a peer, a file to send).
//!
//! What happens on a link reaches its users as [`LinkEvent`]s.
//!
//! [`PeerMsg`]: crate::state::call::PeerMsg

use crate::net::http::js_message;
use crate::state::call::{is_polite, Negotiation, OnDescription, POLITE_FIRST_OFFER_DELAY_MS};
use futures_channel::mpsc;
use futures_util::StreamExt;
use js_sys::{Array, Reflect};
use relaycast_shared::{IceServer, PeerId, Signal};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    MediaStream, MessageEvent, RtcConfiguration, RtcDataChannel, RtcDataChannelInit, RtcDataChannelState,
    RtcIceCandidateInit, RtcIceServer, RtcIceTransportPolicy, RtcPeerConnection, RtcPeerConnectionIceEvent,
    RtcRtpSender, RtcSdpType, RtcSessionDescriptionInit, RtcSignalingState, RtcTrackEvent,
};
use yew::Callback;

/// What happened on the links.
#[derive(Debug, Clone)]
pub enum LinkEvent {
    /// A link to the peer was made.
    Opened(PeerId),
    /// The link to the peer is gone (it left the room, or our own id changed).
    Closed(PeerId),
    /// `RTCPeerConnection.connectionState`, e.g. "connected".
    State(PeerId, String),
    /// The peer's media stream gained or lost a track: the stream as it is now.
    Tracks(PeerId, MediaStream),
    /// Its `direct` channel opened.
    DirectOpen(PeerId),
    /// Text on its `direct` channel.
    Direct(PeerId, String),
    /// A frame on its `files` channel.
    File(PeerId, Vec<u8>),
    /// A link could not be made.
    Problem(String),
}

struct Link {
    pc: RtcPeerConnection,
    direct: RtcDataChannel,
    files: RtcDataChannel,
    /// The browser's stream for the peer's tracks, once the first one came.
    stream: Option<MediaStream>,
    signals: mpsc::UnboundedSender<Signal>,
    _handlers: Vec<Closure<dyn FnMut(JsValue)>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.pc.set_onnegotiationneeded(None);
        self.pc.set_onicecandidate(None);
        self.pc.set_ontrack(None);
        self.pc.set_onconnectionstatechange(None);
        self.direct.set_onmessage(None);
        self.direct.set_onopen(None);
        self.files.set_onmessage(None);
        if let Some(stream) = &self.stream {
            stream.set_onremovetrack(None);
        }
        self.pc.close();
    }
}

struct Inner {
    me: Option<PeerId>,
    ice: Vec<IceServer>,
    relay_only: bool,
    peers: Vec<PeerId>,
    links: HashMap<PeerId, Link>,
    /// What every link sends (our camera and microphone), while in the call.
    local: Option<MediaStream>,
    /// Signals that came before we knew our own peer id (it arrives through the UI's state),
    /// replayed once we do.
    early: Vec<(PeerId, Signal)>,
    send_signal: Callback<(PeerId, Signal)>,
    subscribers: Vec<Callback<LinkEvent>>,
}

/// The links of one room; clones share them.
#[derive(Clone)]
pub struct Links {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Links").finish_non_exhaustive()
    }
}

impl PartialEq for Links {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Tell every subscriber, with no borrow held (a subscriber may call back into the links).
fn emit(inner: &Rc<RefCell<Inner>>, events: Vec<LinkEvent>) {
    if events.is_empty() {
        return;
    }
    let subscribers = inner.borrow().subscribers.clone();
    for event in events {
        for s in &subscribers {
            s.emit(event.clone());
        }
    }
}

fn emit_weak(weak: &Weak<RefCell<Inner>>, event: LinkEvent) {
    if let Some(inner) = weak.upgrade() {
        emit(&inner, vec![event]);
    }
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

impl Links {
    pub fn new(send_signal: Callback<(PeerId, Signal)>) -> Links {
        Links {
            inner: Rc::new(RefCell::new(Inner {
                me: None,
                ice: Vec::new(),
                relay_only: false,
                peers: Vec::new(),
                links: HashMap::new(),
                local: None,
                early: Vec::new(),
                send_signal,
                subscribers: Vec::new(),
            })),
        }
    }

    /// Where to tell what happens on the links.
    pub fn subscribe(&self, cb: Callback<LinkEvent>) {
        self.inner.borrow_mut().subscribers.push(cb);
    }

    /// Who we are and who is in the room. A new peer id (after a reconnect) starts every link
    /// over; peers who left are dropped; while we send media, everyone present gets a link.
    pub fn sync(&self, me: Option<PeerId>, ice: Vec<IceServer>, relay_only: bool, peers: Vec<PeerId>) {
        let closed = {
            let mut i = self.inner.borrow_mut();
            let mut gone = Vec::new();
            if i.me != me {
                trace(&format!("our id is now {me:?}: dropping {} links", i.links.len()));
                gone.extend(i.links.drain().map(|(p, _)| p));
            }
            i.me = me;
            i.ice = ice;
            i.relay_only = relay_only;
            let left: Vec<PeerId> = i.links.keys().filter(|p| !peers.contains(p)).cloned().collect();
            for p in left {
                trace(&format!("{p} left the room: dropping its link"));
                i.links.remove(&p);
                gone.push(p);
            }
            i.peers = peers;
            gone
        };
        emit(&self.inner, closed.into_iter().map(LinkEvent::Closed).collect());
        if self.inner.borrow().local.is_some() {
            self.connect_all();
        }
        let early =
            if self.inner.borrow().me.is_some() { std::mem::take(&mut self.inner.borrow_mut().early) } else { vec![] };
        for (from, s) in early {
            self.handle_signal(from, s);
        }
    }

    /// Connect to everyone present.
    pub fn connect_all(&self) {
        let peers = self.inner.borrow().peers.clone();
        for p in peers {
            self.link(&p);
        }
    }

    /// The link to `peer`, made if missing: its signal queue.
    fn link(&self, peer: &PeerId) -> Option<mpsc::UnboundedSender<Signal>> {
        if let Some(l) = self.inner.borrow().links.get(peer) {
            return Some(l.signals.clone());
        }
        let made = create_link(&self.inner, peer);
        match made {
            Ok(link) => {
                let tx = link.signals.clone();
                self.inner.borrow_mut().links.insert(peer.clone(), link);
                emit(&self.inner, vec![LinkEvent::Opened(peer.clone())]);
                Some(tx)
            }
            Err(e) => {
                emit(&self.inner, vec![LinkEvent::Problem(format!("Cannot start a connection: {}", js_message(&e)))]);
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
    }

    /// Send `stream`'s tracks on every link, and on every link made from now on (`None`: stop
    /// sending; the links stay, for data and for receiving).
    pub fn send_media(&self, stream: Option<MediaStream>) {
        let mut i = self.inner.borrow_mut();
        for link in i.links.values() {
            match &stream {
                Some(stream) => add_tracks(&link.pc, stream),
                None => {
                    for s in link.pc.get_senders().iter() {
                        link.pc.remove_track(&s.unchecked_into::<RtcRtpSender>());
                    }
                }
            }
        }
        i.local = stream;
    }

    /// Every connection, for statistics and for replacing a track in place.
    pub fn connections(&self) -> Vec<(PeerId, RtcPeerConnection)> {
        self.inner.borrow().links.iter().map(|(p, l)| (p.clone(), l.pc.clone())).collect()
    }

    /// Send `text` on the `direct` channel of `to` (everyone with an open one if `None`):
    /// the peers it went to.
    pub fn send_direct(&self, to: Option<&PeerId>, text: &str) -> Vec<PeerId> {
        let i = self.inner.borrow();
        i.links
            .iter()
            .filter(|(p, _)| to.is_none_or(|to| to == *p))
            .filter(|(_, l)| {
                l.direct.ready_state() == RtcDataChannelState::Open && l.direct.send_with_str(text).is_ok()
            })
            .map(|(p, _)| p.clone())
            .collect()
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
}

fn add_tracks(pc: &RtcPeerConnection, stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        pc.add_track_0(&t.unchecked_into(), stream);
    }
}

fn negotiated_channel(pc: &RtcPeerConnection, label: &str, id: u16) -> RtcDataChannel {
    let init = RtcDataChannelInit::new();
    init.set_negotiated(true);
    init.set_id(id);
    pc.create_data_channel_with_data_channel_dict(label, &init)
}

fn create_link(inner_rc: &Rc<RefCell<Inner>>, peer: &PeerId) -> Result<Link, JsValue> {
    let weak = Rc::downgrade(inner_rc);
    let inner = inner_rc.borrow();
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
        inner.local.is_some()
    ));
    let direct = negotiated_channel(&pc, "direct", 0);
    let files = negotiated_channel(&pc, "files", 1);
    files.set_binary_type(web_sys::RtcDataChannelType::Arraybuffer);
    let negotiation = Rc::new(RefCell::new(Negotiation::new(is_polite(&me, peer))));

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
            let current = {
                let mut i = inner.borrow_mut();
                let Some(link) = i.links.get_mut(&peer) else { return };
                if let Some(stream) = stream.filter(|s| link.stream.as_ref() != Some(s)) {
                    let (weak, peer) = (weak.clone(), peer.clone());
                    let on_remove = Closure::<dyn FnMut(JsValue)>::new(move |_| tracks_changed(&weak, &peer));
                    stream.set_onremovetrack(Some(on_remove.as_ref().unchecked_ref()));
                    on_remove.forget(); // one per remote stream, which lives as long as the peer's link
                    link.stream = Some(stream);
                }
                link.stream.clone()
            };
            if let Some(stream) = current {
                emit(&inner, vec![LinkEvent::Tracks(peer.clone(), stream)]);
            }
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
                    Err(e) => warn(&format!("offer to {peer} failed: {}", js_message(&e))),
                }
            });
        });
        pc.set_onnegotiationneeded(Some(on_needed.as_ref().unchecked_ref()));
        handlers.push(on_needed);
    }
    {
        let (weak, peer, pc2) = (weak.clone(), peer.clone(), pc.clone());
        let on_state = Closure::new(move |_: JsValue| {
            let state = format!("{:?}", pc2.connection_state()).to_lowercase();
            trace(&format!("{peer}: connection {state}"));
            // The standard recovery for a path that stopped working.
            if pc2.connection_state() == web_sys::RtcPeerConnectionState::Failed {
                restart_ice(&pc2);
            }
            emit_weak(&weak, LinkEvent::State(peer.clone(), state));
        });
        pc.set_onconnectionstatechange(Some(on_state.as_ref().unchecked_ref()));
        handlers.push(on_state);
    }
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        let on_message = Closure::new(move |e: JsValue| {
            if let Some(text) = e.unchecked_into::<MessageEvent>().data().as_string() {
                emit_weak(&weak, LinkEvent::Direct(peer.clone(), text));
            }
        });
        direct.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        handlers.push(on_message);
    }
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        let on_open = Closure::new(move |_: JsValue| emit_weak(&weak, LinkEvent::DirectOpen(peer.clone())));
        direct.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        handlers.push(on_open);
    }
    {
        let (weak, peer) = (weak.clone(), peer.clone());
        let on_file = Closure::new(move |e: JsValue| {
            if let Ok(buf) = e.unchecked_into::<MessageEvent>().data().dyn_into::<js_sys::ArrayBuffer>() {
                emit_weak(&weak, LinkEvent::File(peer.clone(), js_sys::Uint8Array::new(&buf).to_vec()));
            }
        });
        files.set_onmessage(Some(on_file.as_ref().unchecked_ref()));
        handlers.push(on_file);
    }
    if let Some(local) = &inner.local {
        add_tracks(&pc, local);
    }

    let (signals, queue) = mpsc::unbounded();
    yew::platform::spawn_local(apply_signals(weak, peer.clone(), pc.clone(), negotiation, queue));
    Ok(Link { pc, direct, files, stream: None, signals, _handlers: handlers })
}

/// A track left the peer's stream.
fn tracks_changed(weak: &Weak<RefCell<Inner>>, peer: &PeerId) {
    let Some(inner) = weak.upgrade() else { return };
    let stream = inner.borrow().links.get(peer).and_then(|l| l.stream.clone());
    if let Some(stream) = stream {
        emit(&inner, vec![LinkEvent::Tracks(peer.clone(), stream)]);
    }
}

fn warn(message: &str) {
    web_sys::console::warn_1(&JsValue::from_str(message));
}

/// Negotiation steps at debug level (hidden by default in the browser's console), so a call that
/// does not connect can be read back step by step.
pub(crate) fn trace(message: &str) {
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
            warn(&format!("signal from {peer}: {}", js_message(&e)));
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

//! The stage: what is live in the room. The call's tiles in a grid that stays near square
//! (any tile can be pinned large, the others then in a strip), the broadcast player while
//! watching, the host's own live preview, and when nothing is live an invitation to start.

use super::broadcast::BroadcastBar;
use super::icons::{icon, Icon};
use super::prejoin::PreJoin;
use super::tile::{Quality, VideoTile};
use crate::net::broadcast::BroadcastView;
use crate::net::call::CallView;
use crate::state::call::{grid_columns, pin_clicked, rating, staged, PinChoice};
use crate::state::devices::Choice;
use relaycast_shared::media::BroadcastState;
use relaycast_shared::PeerId;
use web_sys::MediaStream;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct StageProps {
    pub call: CallView,
    /// Display names of the room's peers.
    pub names: Vec<(PeerId, String)>,
    /// Show each peer's quality charts.
    #[prop_or_default]
    pub charts: bool,
    pub broadcast: BroadcastState,
    pub broadcast_view: BroadcastView,
    /// We may go live (shown in the invitation; the button is in the control bar).
    #[prop_or_default]
    pub can_go_live: bool,
    #[prop_or_default]
    pub can_watch: bool,
    /// We may call.
    #[prop_or_default]
    pub can_call: bool,
    pub now: u64,
    /// The pre-join screen is open (it takes the stage until joining or cancelling).
    #[prop_or_default]
    pub prejoin: bool,
    pub onprejoin: Callback<(Option<MediaStream>, Choice)>,
    pub oncancelprejoin: Callback<()>,
    pub onstartcall: Callback<()>,
    pub onwatch: Callback<()>,
    pub onstopwatching: Callback<()>,
}

/// A tile's key for pinning: "you", or the peer's id.
const YOU: &str = "you";

#[function_component(Stage)]
pub fn stage(p: &StageProps) -> Html {
    let choice = use_state(PinChoice::default);
    let v = &p.call;
    let name_of =
        |id: &PeerId| p.names.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone()).unwrap_or_else(|| id.to_string());
    // What is large: the tile pinned, else a screen a peer shares.
    let present: Vec<String> = v
        .local
        .iter()
        .map(|_| YOU.to_owned())
        .chain(v.remotes.iter().filter(|(_, r)| r.tracks > 0).map(|(p, _)| p.to_string()))
        .collect();
    let sharing = v.remotes.iter().find(|(_, r)| r.tracks > 0 && r.screen).map(|(p, _)| p.to_string());
    let large = staged(&choice, &present, sharing.as_deref());
    let pin = |key: String| {
        let (choice, large) = (choice.clone(), large.clone());
        Some(Callback::from(move |_| choice.set(pin_clicked(large.as_deref(), &key))))
    };

    // The call's tiles, ours first.
    let mut tiles: Vec<(String, Html)> = Vec::new();
    if let Some(local) = &v.local {
        let key = YOU.to_owned();
        let is_pinned = large.as_deref() == Some(YOU);
        tiles.push((
            key.clone(),
            html! {
                <VideoTile stream={local.clone()} label={if v.sharing { "You (screen)" } else { "You" }} local=true
                    mirror={!v.sharing} mic_off={!v.mic_on}
                    camera_off={!v.camera_on || local.get_video_tracks().length() == 0}
                    pinned={is_pinned} onpin={pin(key)} />
            },
        ));
    }
    for (peer, remote) in v.remotes.iter().filter(|(_, r)| r.tracks > 0) {
        let key = peer.to_string();
        let is_pinned = large.as_deref() == Some(key.as_str());
        tiles.push((
            key.clone(),
            html! {
                <VideoTile stream={remote.stream.clone()} label={if remote.screen { format!("{} (screen)", name_of(peer)) } else { name_of(peer) }} peer={key.clone()}
                    speaking={remote.speaking && remote.mic_on != Some(false)}
                    mic_off={remote.mic_on == Some(false)} camera_off={remote.camera_on == Some(false)}
                    rating={Some(rating(&remote.series.points))}
                    pinned={is_pinned} onpin={pin(key)}>
                    <Quality remote={remote.clone()} shown={p.charts} />
                </VideoTile>
            },
        ));
    }
    let pinned_tile = large.as_ref().and_then(|k| tiles.iter().position(|(key, _)| key == k));
    let b = &p.broadcast_view;
    let (publishing, watching) = (b.publishing(), b.watching());
    let empty = tiles.is_empty() && !watching && !publishing && !p.prejoin;

    html! {
        <section class="stage" id="stage" aria-label="Stage">
            <BroadcastBar state={p.broadcast.clone()} view={b.clone()} can_watch={p.can_watch} can_go_live={p.can_go_live} now={p.now}
                onwatch={p.onwatch.clone()} onstopwatching={p.onstopwatching.clone()} />
            if let Some(problem) = &v.problem {
                <p class="problem call-problem" role="alert">{ problem }</p>
            }
            if p.prejoin {
                <PreJoin onjoin={p.onprejoin.clone()} oncancel={p.oncancelprejoin.clone()} />
            }
            if empty {
                <div class="stage-empty">
                    <p class="stage-title">{ "Nobody is on stage yet" }</p>
                    if p.can_call {
                        <p>{ "Start a call and everyone here can join you, camera or not." }</p>
                        <button type="button" id="stage-call" class="primary" onclick={p.onstartcall.reform(|_: MouseEvent| ())}>
                            { icon(Icon::Phone) }<span>{ "Start a call" }</span>
                        </button>
                    } else {
                        <p id="no-call">{ "Calls are not open to you in this room: the chat and files are." }</p>
                    }
                    if p.can_go_live {
                        <p class="hint">{ "Or go live to the whole room with the Go live button below." }</p>
                    }
                </div>
            }
            if let Some(stream) = &b.live {
                <div class="live-preview">
                    <VideoTile stream={stream.clone()} label={"You are live".to_owned()} local=true />
                </div>
            }
            if watching {
                <div id="watching" class="player" data-frames={b.frames_decoded.to_string()} data-audio={b.audio_packets.to_string()}
                     data-first-frame-ms={b.first_frame_ms.map(|ms| ms.to_string())}>
                    // Once the broadcast ended its player gives way to the notice; it comes
                    // back in place when the publisher does.
                    if p.broadcast.live {
                        { for b.watching.iter().enumerate().map(|(i, s)| html! {
                            <VideoTile stream={s.clone()} label={if i == 0 { "Live".to_owned() } else { "Live (camera)".to_owned() }} />
                        }) }
                    } else {
                        <p id="ended" class="ended">{ "The broadcast ended. It resumes here if it comes back." }</p>
                    }
                </div>
            }
            if !tiles.is_empty() {
                if let Some(i) = pinned_tile {
                    <div class="call-grid has-pin">
                        <div class="pinned-slot">{ tiles[i].1.clone() }</div>
                        <div class="strip">
                            { for tiles.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, (_, t))| t.clone()) }
                        </div>
                    </div>
                } else {
                    <div class="call-grid" style={format!("--cols: {}", grid_columns(tiles.len()))}>
                        { for tiles.iter().map(|(_, t)| t.clone()) }
                    </div>
                }
            }
        </section>
    }
}

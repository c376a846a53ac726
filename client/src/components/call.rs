//! The call panel: join and leave, mute, camera off, camera choice, screen share, the video
//! of everyone in the call, direct messages over the data channels, and live quality charts.

use crate::net::call::{Call, CallView, Remote};
use crate::state::call::{sparkline, Point};
use relaycast_shared::PeerId;
use web_sys::{HtmlMediaElement, MediaStream};
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct TileProps {
    pub stream: MediaStream,
    pub label: String,
    /// Our own preview: muted, so we do not hear ourselves.
    #[prop_or_default]
    pub local: bool,
    #[prop_or_default]
    pub peer: Option<String>,
    #[prop_or_default]
    pub children: Html,
}

#[function_component(VideoTile)]
pub fn video_tile(props: &TileProps) -> Html {
    let video = use_node_ref();
    {
        let (video, local) = (video.clone(), props.local);
        use_effect_with(props.stream.clone(), move |stream| {
            if let Some(el) = video.cast::<HtmlMediaElement>() {
                el.set_muted(local);
                el.set_src_object(Some(stream));
                if let Ok(p) = el.play() {
                    // An autoplay refusal is not worth surfacing: the next click plays.
                    yew::platform::spawn_local(async move {
                        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
                    });
                }
            }
        });
    }
    html! {
        <figure class={classes!("tile", props.local.then_some("local"))} data-peer={props.peer.clone()}>
            <video ref={video} autoplay=true playsinline=true />
            <figcaption>{ &props.label }</figcaption>
            { props.children.clone() }
        </figure>
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct QualityProps {
    pub remote: Remote,
}

/// Bitrate, round-trip time and loss for one peer, as small live charts.
#[function_component(Quality)]
pub fn quality(props: &QualityProps) -> Html {
    let points: Vec<Point> = props.remote.series.points.iter().copied().collect();
    let last = points.last().copied().unwrap_or_default();
    let chart = |name: &str, unit: &str, values: Vec<f64>, now: f64, class: &'static str| {
        html! {
            <div class={classes!("chart", class)}>
                <svg viewBox="0 0 120 28" preserveAspectRatio="none" aria-hidden="true">
                    <polyline points={sparkline(&values, 120.0, 28.0)} />
                </svg>
                <span>{ format!("{name} {now:.0} {unit}") }</span>
            </div>
        }
    };
    let last_sample = props.remote.series.last.unwrap_or_default();
    html! {
        <div class="quality" data-frames-decoded={last_sample.frames_decoded.to_string()}
            data-audio-packets={last_sample.audio_packets_received.to_string()} data-state={props.remote.state.clone()}>
            { chart("in", "kbit/s", points.iter().map(|p| p.kbps_in).collect(), last.kbps_in, "bitrate") }
            { chart("rtt", "ms", points.iter().map(|p| p.rtt_ms).collect(), last.rtt_ms, "rtt") }
            { chart("loss", "%", points.iter().map(|p| p.loss_pct).collect(), last.loss_pct, "loss") }
        </div>
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct CallProps {
    pub call: Call,
    pub view: CallView,
    /// Display names of the room's peers.
    pub names: Vec<(PeerId, String)>,
    /// May call (the `signal` right): without it there is no call button.
    #[prop_or(true)]
    pub can_call: bool,
}

#[function_component(CallPanel)]
pub fn call_panel(props: &CallProps) -> Html {
    let draft = use_state(String::new);
    let v = &props.view;
    let name_of = |p: &PeerId| {
        props.names.iter().find(|(id, _)| id == p).map(|(_, n)| n.clone()).unwrap_or_else(|| p.to_string())
    };
    let call = props.call.clone();
    let join = {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| {
            let call = call.clone();
            yew::platform::spawn_local(async move { call.join().await });
        })
    };
    let leave = {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| call.leave())
    };
    let mute = {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| call.toggle_mic())
    };
    let camera = {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| call.toggle_camera())
    };
    let share = {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| {
            let call = call.clone();
            yew::platform::spawn_local(async move { call.share_screen().await });
        })
    };
    let choose = {
        let call = call.clone();
        Callback::from(move |e: Event| {
            let id = e.target_unchecked_into::<web_sys::HtmlSelectElement>().value();
            let call = call.clone();
            yew::platform::spawn_local(async move { call.use_camera(Some(id)).await });
        })
    };
    let send = {
        let (call, draft) = (call.clone(), draft.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if !draft.trim().is_empty() {
                call.send_direct(draft.trim());
                draft.set(String::new());
            }
        })
    };
    let in_call: Vec<(&PeerId, &Remote)> = v.remotes.iter().filter(|(_, r)| r.tracks > 0).collect();
    html! {
        <section class="call" aria-label="Call">
            <div class="controls" role="toolbar" aria-label="Call controls">
                if !v.joined && props.can_call {
                    <button id="call-join" onclick={join}>{ if in_call.is_empty() { "Start call" } else { "Join call" } }</button>
                } else if !v.joined {
                    <p class="hint" id="no-call">{ "Calls are not open to you in this room." }</p>
                } else {
                    <button id="call-leave" class="danger" onclick={leave}>{ "Leave call" }</button>
                    <button id="mute" aria-pressed={(!v.mic_on).to_string()} onclick={mute}>{ if v.mic_on { "Mute" } else { "Unmute" } }</button>
                    <button id="camera" aria-pressed={(!v.camera_on).to_string()} onclick={camera}>{ if v.camera_on { "Camera off" } else { "Camera on" } }</button>
                    <button id="share" disabled={v.sharing} onclick={share}>{ if v.sharing { "Sharing screen" } else { "Share screen" } }</button>
                    if v.cameras.len() > 1 {
                        <select id="camera-select" aria-label="Camera" onchange={choose}>
                            { for v.cameras.iter().map(|(id, label)| html! { <option value={id.clone()}>{ label }</option> }) }
                        </select>
                    }
                }
                if !in_call.is_empty() {
                    <span class="in-call">{ format!("In the call: {}", in_call.iter().map(|(p, _)| name_of(p)).collect::<Vec<_>>().join(", ")) }</span>
                }
            </div>
            if let Some(problem) = &v.problem { <p class="problem" role="alert">{ problem }</p> }
            <div class="tiles">
                if let Some(local) = &v.local {
                    <VideoTile stream={local.clone()} label="You" local=true />
                }
                { for in_call.iter().map(|(peer, remote)| html! {
                    <VideoTile stream={remote.stream.clone()} label={name_of(peer)} peer={peer.to_string()}>
                        <Quality remote={(*remote).clone()} />
                    </VideoTile>
                }) }
            </div>
            if !v.remotes.is_empty() {
                <div class="direct">
                    <ol id="dms">
                        { for v.messages.iter().map(|m| html! {
                            <li class={classes!(m.mine.then_some("mine"))}>
                                <b>{ if m.mine { format!("you → {}", name_of(&m.peer)) } else { name_of(&m.peer) } }</b>{ ": " }{ &m.text }
                            </li>
                        }) }
                    </ol>
                    <form id="dm-form" onsubmit={send}>
                        <input id="dm-input" value={(*draft).clone()} placeholder="Direct message (peer to peer)" aria-label="Direct message"
                            oninput={ let draft = draft.clone(); Callback::from(move |e: InputEvent| draft.set(e.target_unchecked_into::<web_sys::HtmlInputElement>().value())) } />
                        <button id="dm-send" type="submit">{ "Send direct" }</button>
                    </form>
                </div>
            }
        </section>
    }
}

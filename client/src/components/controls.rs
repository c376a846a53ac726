//! The control bar under the stage: microphone, camera, camera choice, screen share and
//! leaving the call; "Go live" (camera, screen or both), "Record" and a red "End broadcast"
//! for who has those rights; the quality charts' toggle. Ctrl+D mutes and Ctrl+E turns the
//! camera off and on, as in other meeting apps (the tooltips say so).

use super::devices::DevicePickers;
use super::icons::{icon, Icon};
use crate::net::broadcast::LiveSource;
use crate::net::call::{Call, CallView};
use crate::net::devices;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct ControlProps {
    pub call: Call,
    pub view: CallView,
    /// May call (the `signal` right).
    #[prop_or(true)]
    pub can_call: bool,
    /// The browser can share a screen.
    #[prop_or(true)]
    pub can_share: bool,
    /// The quality charts are shown.
    #[prop_or_default]
    pub charts: bool,
    pub ontogglecharts: Callback<()>,
    /// "Start call" / "Join call": opens the pre-join screen.
    pub onstartcall: Callback<()>,
    /// May go live (the `broadcast` right and a stream key).
    #[prop_or_default]
    pub can_go_live: bool,
    /// May record (the `record` right and a stream key).
    #[prop_or_default]
    pub can_record: bool,
    /// The room's broadcast is live, and recorded.
    #[prop_or_default]
    pub live: bool,
    #[prop_or_default]
    pub recording: bool,
    /// We are the one live, and a go-live or watch is under way.
    #[prop_or_default]
    pub publishing: bool,
    #[prop_or_default]
    pub busy: bool,
    pub ongolive: Callback<LiveSource>,
    pub onstoplive: Callback<()>,
    pub onrecord: Callback<bool>,
}

/// What a key press does in the room (`Ctrl`/`Cmd` + key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    ToggleMic,
    ToggleCamera,
}

/// The shortcut for `key` pressed with Ctrl (or Cmd on a Mac), if any.
pub fn shortcut(key: &str, ctrl_or_meta: bool) -> Option<Shortcut> {
    match (ctrl_or_meta, key.to_ascii_lowercase().as_str()) {
        (true, "d") => Some(Shortcut::ToggleMic),
        (true, "e") => Some(Shortcut::ToggleCamera),
        _ => None,
    }
}

#[function_component(ControlBar)]
pub fn control_bar(p: &ControlProps) -> Html {
    let menu = use_state(|| false);
    let v = &p.view;
    let call = p.call.clone();
    // The shortcuts work anywhere on the page while in the call.
    {
        let call = call.clone();
        use_effect_with(v.joined, move |joined| {
            let listener = joined.then(|| {
                gloo_events::EventListener::new(&gloo_utils::window(), "keydown", move |e| {
                    let Some(e) = wasm_bindgen::JsCast::dyn_ref::<web_sys::KeyboardEvent>(e) else { return };
                    match shortcut(&e.key(), e.ctrl_key() || e.meta_key()) {
                        Some(Shortcut::ToggleMic) => call.toggle_mic(),
                        Some(Shortcut::ToggleCamera) => call.toggle_camera(),
                        None => return,
                    }
                    e.prevent_default();
                })
            });
            move || drop(listener)
        });
    }
    let join = p.onstartcall.reform(|_: MouseEvent| ());
    let settings = use_state(|| false);
    let act = |f: fn(&Call)| {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| f(&call))
    };
    let share = {
        let call = call.clone();
        Callback::from(move |_: MouseEvent| {
            let call = call.clone();
            yew::platform::spawn_local(async move { call.share_screen().await });
        })
    };
    let pick = |f: fn(Call, Option<String>)| {
        let call = call.clone();
        Callback::from(move |id: Option<String>| f(call.clone(), id))
    };
    let go = |source: LiveSource| {
        let (cb, menu) = (p.ongolive.clone(), menu.clone());
        Callback::from(move |_: MouseEvent| {
            menu.set(false);
            cb.emit(source)
        })
    };
    let in_call = v.remotes.values().any(|r| r.tracks > 0);
    html! {
        <div class="control-bar" role="toolbar" aria-label="Call and broadcast controls">
            <div class="group">
                if !v.joined && p.can_call {
                    <button type="button" id="call-join" class="primary" onclick={join}>
                        { icon(Icon::Phone) }<span>{ if in_call { "Join call" } else { "Start call" } }</span>
                    </button>
                } else if v.joined {
                    <button type="button" id="mute" class={classes!("round", (!v.mic_on).then_some("off"))}
                            aria-pressed={(!v.mic_on).to_string()} aria-keyshortcuts="Control+D"
                            title={if v.mic_on { "Mute (Ctrl+D)" } else { "Unmute (Ctrl+D)" }} onclick={act(Call::toggle_mic)}>
                        { icon(if v.mic_on { Icon::Mic } else { Icon::MicOff }) }<span>{ if v.mic_on { "Mute" } else { "Unmute" } }</span>
                    </button>
                    <button type="button" id="camera" class={classes!("round", (!v.camera_on).then_some("off"))}
                            aria-pressed={(!v.camera_on).to_string()} aria-keyshortcuts="Control+E"
                            title={if v.camera_on { "Turn the camera off (Ctrl+E)" } else { "Turn the camera on (Ctrl+E)" }}
                            onclick={act(Call::toggle_camera)}>
                        { icon(if v.camera_on { Icon::Camera } else { Icon::CameraOff }) }<span>{ if v.camera_on { "Camera off" } else { "Camera on" } }</span>
                    </button>
                    <div class="menu-anchor">
                        <button type="button" id="devices" class="round quiet" aria-expanded={settings.to_string()}
                                aria-controls="device-settings" title="Camera, microphone and speaker"
                                onclick={{ let settings = settings.clone(); Callback::from(move |_: MouseEvent| settings.set(!*settings)) }}>
                            { icon(Icon::Settings) }<span class="sr-only">{ "Devices" }</span>
                        </button>
                        if *settings {
                            <div id="device-settings" class="popover up" role="dialog" aria-label="Devices">
                                <DevicePickers devices={v.devices.clone()} camera={v.camera.clone()} mic={v.mic.clone()}
                                    speaker={v.speaker.clone()} can_choose_speaker={devices::can_choose_speaker()}
                                    oncamera={pick(|c, id| yew::platform::spawn_local(async move { c.use_camera(id).await }))}
                                    onmic={pick(|c, id| yew::platform::spawn_local(async move { c.use_microphone(id).await }))}
                                    onspeaker={pick(|c, id| c.use_speaker(id))} />
                            </div>
                        }
                    </div>
                    if p.can_share {
                        <button type="button" id="share" class="round" disabled={v.sharing} title="Share your screen" onclick={share}>
                            { icon(Icon::Screen) }<span>{ if v.sharing { "Sharing" } else { "Share screen" } }</span>
                        </button>
                    }
                    <button type="button" id="call-leave" class="danger" title="Leave the call (you stay in the room)" onclick={act(Call::leave)}>
                        { icon(Icon::Hangup) }<span>{ "Leave call" }</span>
                    </button>
                }
                if in_call || v.joined {
                    <button type="button" id="show-stats" class="round quiet" aria-pressed={p.charts.to_string()}
                            title="Connection charts for each person" onclick={p.ontogglecharts.reform(|_: MouseEvent| ())}>
                        { icon(Icon::Chart) }<span class="sr-only">{ "Connection charts" }</span>
                    </button>
                }
            </div>
            <div class="group">
                if p.can_go_live && !p.publishing {
                    <div class="menu-anchor">
                        <button type="button" id="go-live" aria-haspopup="menu" aria-expanded={menu.to_string()}
                                disabled={p.busy || p.live} onclick={{ let menu = menu.clone(); Callback::from(move |_: MouseEvent| menu.set(!*menu)) }}>
                            { icon(Icon::Live) }<span>{ "Go live" }</span>
                        </button>
                        if *menu && !p.busy && !p.live {
                            <div class="menu" role="menu" aria-label="Go live with">
                                <button type="button" role="menuitem" id="go-live-camera" onclick={go(LiveSource::Camera)}>{ "Camera" }</button>
                                if p.can_share {
                                    <button type="button" role="menuitem" id="go-live-screen" onclick={go(LiveSource::Screen)}>{ "Screen" }</button>
                                    <button type="button" role="menuitem" id="go-live-both" onclick={go(LiveSource::Both)}>{ "Screen and camera" }</button>
                                }
                            </div>
                        }
                    </div>
                }
                if p.can_record && p.live {
                    <button type="button" id="record" class={classes!(p.recording.then_some("recording"))} aria-pressed={p.recording.to_string()}
                            onclick={{ let on = !p.recording; p.onrecord.reform(move |_| on) }}>
                        { icon(Icon::Record) }<span>{ if p.recording { "Stop recording" } else { "Record" } }</span>
                    </button>
                }
                if p.publishing {
                    <button type="button" id="stop-live" class="danger" onclick={p.onstoplive.reform(|_| ())}>
                        { icon(Icon::Live) }<span>{ "End broadcast" }</span>
                    </button>
                }
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_need_ctrl_or_cmd() {
        assert_eq!(shortcut("d", true), Some(Shortcut::ToggleMic));
        assert_eq!(shortcut("E", true), Some(Shortcut::ToggleCamera));
        assert_eq!(shortcut("d", false), None, "typing a d in the chat does nothing");
        assert_eq!(shortcut("x", true), None);
    }
}

//! Before joining the call: a camera preview, camera / microphone / speaker pickers, a
//! microphone level meter, and joining with the camera or the microphone off. A camera that
//! is denied, missing or busy is explained, and joining without it is offered: never a dead
//! end.

use super::devices::DevicePickers;
use super::icons::{icon, Icon};
use crate::net::devices::{self, LevelMeter};
use crate::state::devices::{Choice, DeviceList};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;
use web_sys::{HtmlMediaElement, MediaStream};
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct PreJoinProps {
    /// Join with this stream (none: no device could be had) and these choices.
    pub onjoin: Callback<(Option<MediaStream>, Choice)>,
    pub oncancel: Callback<()>,
}

/// What opening the devices gave.
#[derive(Debug, Clone, PartialEq)]
struct Opened {
    stream: Option<MediaStream>,
    has_camera: bool,
    has_mic: bool,
    problem: Option<String>,
}

#[function_component(PreJoin)]
pub fn prejoin(p: &PreJoinProps) -> Html {
    let choice = use_state(Choice::default);
    let opened = use_state(|| None::<Opened>);
    let devices_found = use_state(DeviceList::default);
    let level = use_state(|| 0.0_f64);
    let video = use_node_ref();
    // The stream is ours to stop unless it was handed to the call.
    let owned = use_mut_ref(|| None::<MediaStream>);

    // (Re)open the devices when the chosen ones change.
    {
        let (opened, devices_found, owned) = (opened.clone(), devices_found.clone(), owned.clone());
        use_effect_with((choice.camera.clone(), choice.mic.clone()), move |(camera, mic)| {
            let want = Choice { camera: camera.clone(), mic: mic.clone(), ..Choice::default() };
            yew::platform::spawn_local(async move {
                if let Some(old) = owned.borrow_mut().take() {
                    devices::stop(&old);
                }
                let (stream, camera_error) = devices::open_choice(&want).await;
                let has = |kind: &str| {
                    stream.as_ref().is_some_and(|s| {
                        if kind == "video" {
                            s.get_video_tracks().length() > 0
                        } else {
                            s.get_audio_tracks().length() > 0
                        }
                    })
                };
                let (has_camera, has_mic) = (has("video"), has("audio"));
                let problem = match (&camera_error, has_mic) {
                    (None, _) => None,
                    (Some(e), true) => Some(devices::explain_error(e, "camera")),
                    (Some(e), false) => Some(devices::explain_error(e, "camera and microphone")),
                };
                owned.borrow_mut().clone_from(&stream);
                opened.set(Some(Opened { stream, has_camera, has_mic, problem }));
                devices_found.set(devices::list().await);
            });
            || ()
        });
    }
    // Stop what is still ours when the screen goes away without joining.
    {
        let owned = owned.clone();
        use_effect_with((), move |_| {
            move || {
                if let Some(s) = owned.borrow_mut().take() {
                    devices::stop(&s);
                }
            }
        });
    }
    // The preview and the level meter follow the stream.
    let stream = opened.as_ref().and_then(|o| o.stream.clone());
    {
        let (video, level) = (video.clone(), level.clone());
        use_effect_with(stream.clone(), move |stream| {
            if let (Some(el), Some(s)) = (video.cast::<HtmlMediaElement>(), stream) {
                el.set_muted(true);
                el.set_src_object(Some(s));
                if let Ok(p) = el.play() {
                    yew::platform::spawn_local(async move {
                        let _ = wasm_bindgen_futures::JsFuture::from(p).await;
                    });
                }
            }
            let alive = Rc::new(Cell::new(true));
            if let Some(meter) = stream.as_ref().and_then(LevelMeter::new) {
                let (running, meter) = (alive.clone(), RefCell::new(meter));
                yew::platform::spawn_local(async move {
                    while running.get() {
                        level.set(meter.borrow_mut().level());
                        yew::platform::time::sleep(Duration::from_millis(100)).await;
                    }
                });
            }
            move || alive.set(false)
        });
    }

    let set = |f: fn(&mut Choice, Option<String>)| {
        let choice = choice.clone();
        Callback::from(move |v: Option<String>| {
            let mut c = (*choice).clone();
            f(&mut c, v);
            choice.set(c);
        })
    };
    let flip = |f: fn(&mut Choice)| {
        let choice = choice.clone();
        Callback::from(move |_: MouseEvent| {
            let mut c = (*choice).clone();
            f(&mut c);
            choice.set(c);
        })
    };
    let (has_camera, has_mic, problem, ready) = match &*opened {
        Some(o) => (o.has_camera, o.has_mic, o.problem.clone(), true),
        None => (false, false, None, false),
    };
    let camera_off = choice.camera_off || !has_camera;
    let mic_off = choice.mic_off || !has_mic;
    let join = {
        let (onjoin, choice, owned) = (p.onjoin.clone(), choice.clone(), owned.clone());
        Callback::from(move |_: MouseEvent| {
            // A device that could not be had starts off (turning it on in the call retries).
            let chosen = Choice { camera_off, mic_off, ..(*choice).clone() };
            onjoin.emit((owned.borrow_mut().take(), chosen))
        })
    };
    let join_label = match (has_camera, has_mic) {
        _ if !ready => "Join call",
        (true, _) if !camera_off => "Join call",
        (_, true) if !mic_off => "Join without camera",
        _ => "Join to watch and listen",
    };
    html! {
        <section id="prejoin" class="prejoin" aria-label="Join the call">
            <div class="preview">
                <video ref={video} autoplay=true playsinline=true muted=true class={classes!(camera_off.then_some("off"))} />
                if camera_off {
                    <p class="preview-off">{ if has_camera { "Camera off" } else if ready { "No camera" } else { "Starting the camera…" } }</p>
                }
                <div class="level" role="meter" aria-label="Microphone level" aria-valuemin="0" aria-valuemax="100"
                     aria-valuenow={((*level * 100.0).round() as u32).to_string()} data-level={format!("{:.3}", *level)}>
                    <span style={format!("width: {:.0}%", if mic_off { 0.0 } else { *level * 100.0 })} />
                </div>
            </div>
            <div class="prejoin-side">
                <h2>{ "Ready to join?" }</h2>
                if let Some(problem) = &problem {
                    <p id="prejoin-problem" class="problem" role="alert">{ problem }</p>
                }
                <DevicePickers devices={(*devices_found).clone()} camera={choice.camera.clone()} mic={choice.mic.clone()}
                    speaker={choice.speaker.clone()} can_choose_speaker={devices::can_choose_speaker()}
                    oncamera={set(|c, v| c.camera = v)} onmic={set(|c, v| c.mic = v)} onspeaker={set(|c, v| c.speaker = v)} />
                <div class="row">
                    <button type="button" id="prejoin-mic" class={classes!("round", mic_off.then_some("off"))} disabled={!has_mic}
                            aria-pressed={mic_off.to_string()} onclick={flip(|c| c.mic_off = !c.mic_off)}>
                        { icon(if mic_off { Icon::MicOff } else { Icon::Mic }) }<span>{ if mic_off { "Microphone off" } else { "Microphone on" } }</span>
                    </button>
                    <button type="button" id="prejoin-camera" class={classes!("round", camera_off.then_some("off"))} disabled={!has_camera}
                            aria-pressed={camera_off.to_string()} onclick={flip(|c| c.camera_off = !c.camera_off)}>
                        { icon(if camera_off { Icon::CameraOff } else { Icon::Camera }) }<span>{ if camera_off { "Camera off" } else { "Camera on" } }</span>
                    </button>
                </div>
                <div class="row">
                    <button type="button" id="prejoin-join" class="primary" disabled={!ready} onclick={join}>{ join_label }</button>
                    <button type="button" id="prejoin-cancel" onclick={p.oncancel.reform(|_: MouseEvent| ())}>{ "Cancel" }</button>
                </div>
            </div>
        </section>
    }
}

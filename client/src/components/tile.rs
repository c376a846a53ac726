//! One video on the stage: the picture (never cropped), the name, a muted-microphone icon,
//! a ring while the person speaks, the connection's quality as bars with the live charts
//! behind them, and a pin.

use super::icons::{icon, Icon};
use crate::net::call::Remote;
use crate::state::call::{sparkline, Point, Rating};
use web_sys::{HtmlMediaElement, MediaStream};
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct TileProps {
    pub stream: MediaStream,
    pub label: String,
    /// Our own preview: its sound is muted so we do not hear ourselves.
    #[prop_or_default]
    pub local: bool,
    /// Shown mirrored, as a camera preview reads naturally (never a shared screen).
    #[prop_or_default]
    pub mirror: bool,
    #[prop_or_default]
    pub peer: Option<String>,
    #[prop_or_default]
    pub mic_off: bool,
    /// The camera is off: the person's initial instead of a black picture.
    #[prop_or_default]
    pub camera_off: bool,
    #[prop_or_default]
    pub speaking: bool,
    #[prop_or_default]
    pub rating: Option<Rating>,
    #[prop_or_default]
    pub pinned: bool,
    /// The speaker to play this tile's sound on (`None`: the default).
    #[prop_or_default]
    pub speaker: Option<String>,
    /// Pin (or unpin) this tile to the stage; no pin button without it.
    #[prop_or_default]
    pub onpin: Option<Callback<()>>,
    /// Shown under the picture (the quality charts).
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
    {
        let video = video.clone();
        use_effect_with(props.speaker.clone(), move |speaker| {
            if let (Some(el), Some(id)) = (video.cast::<HtmlMediaElement>(), speaker) {
                crate::net::devices::set_speaker(&el, Some(id));
            }
        });
    }
    let classes = classes!(
        "tile",
        props.local.then_some("local"),
        props.mirror.then_some("mirror"),
        props.speaking.then_some("speaking"),
        props.pinned.then_some("pinned"),
        props.camera_off.then_some("camera-off")
    );
    html! {
        <figure class={classes} data-peer={props.peer.clone()} data-speaking={props.speaking.to_string()}>
            <video ref={video} autoplay=true playsinline=true />
            if props.camera_off {
                <div class="tile-avatar" aria-hidden="true"><span>{ super::people::initial(&props.label) }</span></div>
            }
            <figcaption>
                if props.mic_off {
                    <span class="mic-off" role="img" aria-label="microphone off">{ icon(Icon::MicOff) }</span>
                }
                <span class="name">{ &props.label }</span>
                if let Some(r) = props.rating {
                    <span class={classes!("bars", r.class())} role="img" aria-label={r.label()} title={r.label()}>
                        { for (1..=3u8).map(|i| html! { <i class={classes!((i <= r.bars()).then_some("on"))} /> }) }
                    </span>
                }
            </figcaption>
            if let Some(onpin) = &props.onpin {
                <button type="button" class="pin" aria-pressed={props.pinned.to_string()}
                        aria-label={format!("{} {}", if props.pinned { "Unpin" } else { "Pin" }, props.label)}
                        title={if props.pinned { "Unpin" } else { "Pin to the stage" }}
                        onclick={onpin.reform(|_: MouseEvent| ())}>{ icon(Icon::Pin) }</button>
            }
            { props.children.clone() }
        </figure>
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct QualityProps {
    pub remote: Remote,
    /// The charts are shown (they are measured and kept either way).
    #[prop_or_default]
    pub shown: bool,
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
        <div class="quality" hidden={!props.shown} data-frames-decoded={last_sample.frames_decoded.to_string()}
            data-audio-packets={last_sample.audio_packets_received.to_string()} data-state={props.remote.state.clone()}>
            { chart("in", "kbit/s", points.iter().map(|p| p.kbps_in).collect(), last.kbps_in, "bitrate") }
            { chart("rtt", "ms", points.iter().map(|p| p.rtt_ms).collect(), last.rtt_ms, "rtt") }
            { chart("loss", "%", points.iter().map(|p| p.loss_pct).collect(), last.loss_pct, "loss") }
        </div>
    }
}

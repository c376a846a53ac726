//! The room's live broadcast: "Go live" (camera, screen or both) for who may, "Watch"
//! for everyone, with the viewer count, how long it has been live, frames decoded and a
//! latency estimate; and "Record" for the owner.

use super::call::VideoTile;
use crate::net::broadcast::{BroadcastView, LiveSource};
use relaycast_shared::media::BroadcastState;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct BroadcastProps {
    pub state: BroadcastState,
    pub view: BroadcastView,
    /// May go live (the `broadcast` right and a stream key).
    pub owner: bool,
    /// May record (the `record` right and a stream key).
    pub can_record: bool,
    /// May watch (the `watch` right).
    pub can_watch: bool,
    /// Now, ms since the Unix epoch (for the live duration).
    pub now: u64,
    pub ongolive: Callback<LiveSource>,
    pub onstoplive: Callback<()>,
    pub onwatch: Callback<()>,
    pub onstopwatching: Callback<()>,
    pub onrecord: Callback<bool>,
}

/// `h:mm:ss` or `m:ss`.
pub fn duration_label(ms: u64) -> String {
    let s = ms / 1000;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

#[function_component(BroadcastPanel)]
pub fn broadcast_panel(p: &BroadcastProps) -> Html {
    let live = p.state.live;
    let publishing = p.view.live.is_some();
    let watching = p.view.session || !p.view.watching.is_empty() || (p.view.busy && !publishing);
    let status = if live {
        let since = p.state.since.map(|s| duration_label(p.now.saturating_sub(s))).unwrap_or_default();
        format!("Live · {since} · {} watching", p.state.viewers)
    } else if p.state.viewers > 0 {
        format!("Not live · {} waiting", p.state.viewers)
    } else {
        "Not live".to_owned()
    };
    let go = |source: LiveSource| {
        let cb = p.ongolive.clone();
        Callback::from(move |_: MouseEvent| cb.emit(source))
    };
    html! {
        <section id="broadcast" class="broadcast" aria-label="Live broadcast"
                 data-live={live.to_string()} data-viewers={p.state.viewers.to_string()}
                 data-recording={p.state.recording.to_string()}>
            <h2>{ "Broadcast" }</h2>
            <p id="broadcast-status" class={classes!("status", live.then_some("live"))}>{ status }
                if p.state.recording { <span class="rec">{ " · ● recording" }</span> }
            </p>
            <div class="controls">
                if p.owner && !publishing {
                    <button type="button" id="go-live-camera" disabled={p.view.busy || live} onclick={go(LiveSource::Camera)}>{ "Go live: camera" }</button>
                    <button type="button" id="go-live-screen" disabled={p.view.busy || live} onclick={go(LiveSource::Screen)}>{ "Go live: screen" }</button>
                    <button type="button" id="go-live-both" disabled={p.view.busy || live} onclick={go(LiveSource::Both)}>{ "Go live: both" }</button>
                }
                if publishing {
                    <button type="button" id="stop-live" onclick={p.onstoplive.reform(|_| ())}>{ "End broadcast" }</button>
                }
                if p.can_record && live {
                    <button type="button" id="record" aria-pressed={p.state.recording.to_string()}
                            onclick={{ let on = !p.state.recording; p.onrecord.reform(move |_| on) }}>
                        { if p.state.recording { "Stop recording" } else { "Record" } }
                    </button>
                }
                if p.can_watch && !publishing && !watching {
                    <button type="button" id="watch" disabled={!live} onclick={p.onwatch.reform(|_| ())}>{ "Watch" }</button>
                }
                if watching {
                    <button type="button" id="stop-watching" onclick={p.onstopwatching.reform(|_| ())}>{ "Stop watching" }</button>
                }
            </div>
            if let Some(problem) = &p.view.problem {
                <p id="broadcast-problem" class="problem" role="alert">{ problem }</p>
            }
            if let Some(stream) = &p.view.live {
                <VideoTile stream={stream.clone()} label={"You are live".to_owned()} local=true />
            }
            if watching {
                <div id="watching" data-frames={p.view.frames_decoded.to_string()} data-audio={p.view.audio_packets.to_string()}
                     data-first-frame-ms={p.view.first_frame_ms.map(|ms| ms.to_string())}>
                    // Once the broadcast ended its player gives way to the notice below; it
                    // comes back in place when the publisher does.
                    if live {
                        { for p.view.watching.iter().enumerate().map(|(i, s)| html! {
                            <VideoTile stream={s.clone()} label={if i == 0 { "Live".to_owned() } else { "Live (camera)".to_owned() }} />
                        }) }
                    }
                    <p class="meta">
                        <span id="frames">{ format!("{} frames", p.view.frames_decoded) }</span>
                        if let Some(ms) = p.view.first_frame_ms {
                            <span id="first-frame">{ format!(" · first frame after {ms} ms") }</span>
                        }
                        if let Some(ms) = p.view.latency_ms {
                            <span id="latency">{ format!(" · ≈{ms} ms behind") }</span>
                        }
                        if !live { <span id="ended">{ " · the broadcast ended; it resumes here if it comes back" }</span> }
                    </p>
                </div>
            }
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_clock_time() {
        assert_eq!(duration_label(0), "0:00");
        assert_eq!(duration_label(61_000), "1:01");
        assert_eq!(duration_label(3_600_000 + 5_000), "1:00:05");
    }
}

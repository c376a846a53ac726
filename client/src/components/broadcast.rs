//! The room's live broadcast at a glance, at the top of the stage: a red live badge with how
//! long it has been live and how many watch, the recording state, and "Watch" for who may;
//! while watching, frames decoded, the first frame's delay and a latency estimate. Going
//! live, recording and ending are in the control bar.

use crate::net::broadcast::BroadcastView;
use relaycast_shared::media::BroadcastState;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct BroadcastProps {
    pub state: BroadcastState,
    pub view: BroadcastView,
    /// May watch (the `watch` right).
    pub can_watch: bool,
    /// May go live: the bar then shows even while nothing is live.
    #[prop_or_default]
    pub can_go_live: bool,
    /// Now, ms since the Unix epoch (for the live duration).
    pub now: u64,
    pub onwatch: Callback<()>,
    pub onstopwatching: Callback<()>,
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

#[function_component(BroadcastBar)]
pub fn broadcast_bar(p: &BroadcastProps) -> Html {
    let live = p.state.live;
    let (publishing, watching) = (p.view.publishing(), p.view.watching());
    let status = if live {
        let since = p.state.since.map(|s| duration_label(p.now.saturating_sub(s))).unwrap_or_default();
        format!("{since} · {} watching", p.state.viewers)
    } else if p.state.viewers > 0 {
        format!("Not live · {} waiting", p.state.viewers)
    } else {
        "Not live".to_owned()
    };
    // Nothing to tell someone who cannot go live while nothing is live or waited for.
    let quiet = !live && !watching && !publishing && p.state.viewers == 0 && !p.can_go_live && p.view.problem.is_none();
    html! {
        <section id="broadcast" class={classes!("broadcast-bar", live.then_some("is-live"))} aria-label="Live broadcast" hidden={quiet}
                 data-live={live.to_string()} data-viewers={p.state.viewers.to_string()}
                 data-recording={p.state.recording.to_string()}>
            <p id="broadcast-status" role="status">
                if live { <span class="live-badge">{ "Live" }</span> }
                <span>{ status }</span>
                if p.state.recording { <span class="rec-badge">{ "Recording" }</span> }
            </p>
            if p.can_watch && !publishing && !watching && live {
                <button type="button" id="watch" class="primary" onclick={p.onwatch.reform(|_| ())}>{ "Watch" }</button>
            }
            if watching {
                <button type="button" id="stop-watching" onclick={p.onstopwatching.reform(|_| ())}>{ "Stop watching" }</button>
                <p class="meta">
                    <span id="frames">{ format!("{} frames", p.view.frames_decoded) }</span>
                    if let Some(ms) = p.view.first_frame_ms {
                        <span id="first-frame">{ format!(" · first frame after {ms} ms") }</span>
                    }
                    if let Some(ms) = p.view.latency_ms {
                        <span id="latency">{ format!(" · ≈{ms} ms behind") }</span>
                    }
                </p>
            }
            if let Some(problem) = &p.view.problem {
                <p id="broadcast-problem" class="problem" role="alert">{ problem }</p>
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

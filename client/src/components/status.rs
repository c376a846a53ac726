//! The connection status, always visible: connecting, online, reconnecting in N s, offline.

use crate::state::room::Status;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct StatusProps {
    pub status: Status,
    /// The current time, ms since the Unix epoch (ticks once a second while reconnecting).
    pub now: u64,
}

/// The label for a status at `now`.
pub fn label(status: &Status, now: u64) -> (String, &'static str) {
    match status {
        Status::Connecting => ("connecting…".into(), "connecting"),
        Status::Online => ("online".into(), "online"),
        Status::Reconnecting { retry_at, .. } => {
            let secs = retry_at.saturating_sub(now).div_ceil(1000);
            (format!("reconnecting in {secs} s"), "reconnecting")
        }
        Status::Offline => ("offline".into(), "offline"),
    }
}

#[function_component(StatusBadge)]
pub fn status_badge(props: &StatusProps) -> Html {
    let (text, class) = label(&props.status, props.now);
    html! { <span id="status" class={classes!("status", class)} role="status" aria-live="polite">{ text }</span> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_counts_down_in_whole_seconds() {
        let s = Status::Reconnecting { attempt: 1, retry_at: 10_500 };
        assert_eq!(label(&s, 8_000).0, "reconnecting in 3 s");
        assert_eq!(label(&s, 10_000).0, "reconnecting in 1 s");
        assert_eq!(label(&s, 11_000).0, "reconnecting in 0 s");
        assert_eq!(label(&Status::Online, 0).1, "online");
    }
}

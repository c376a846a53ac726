//! The chime for new messages while the page is hidden: off until the person turns it on
//! (remembered in this browser).

use super::icons::{icon, Icon};
use yew::prelude::*;

/// Where the choice is kept.
pub const SOUND_KEY: &str = "relaycast.sound";

/// The remembered choice.
pub fn remembered() -> bool {
    crate::browser::load(SOUND_KEY).as_deref() == Some("on")
}

#[derive(Debug, Properties, PartialEq)]
pub struct SoundProps {
    pub on: bool,
    pub ontoggle: Callback<bool>,
    /// How many times it chimed (for the curious, and for tests).
    #[prop_or_default]
    pub chimes: u32,
}

#[function_component(SoundToggle)]
pub fn sound_toggle(p: &SoundProps) -> Html {
    let onclick = {
        let (on, ontoggle) = (p.on, p.ontoggle.clone());
        Callback::from(move |_: MouseEvent| {
            crate::browser::save(SOUND_KEY, if on { "off" } else { "on" });
            ontoggle.emit(!on)
        })
    };
    html! {
        <button type="button" id="sound" class="round quiet" aria-pressed={p.on.to_string()}
                aria-label="Sound for new messages while this tab is hidden" data-chimes={p.chimes.to_string()}
                title={if p.on { "Sound on for new messages while this tab is hidden" } else { "No sound for new messages" }} {onclick}>
            { icon(if p.on { Icon::Bell } else { Icon::BellOff }) }
        </button>
    }
}

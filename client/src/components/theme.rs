//! The light/dark switch. The page follows the system's preference until the person picks
//! one; the pick is remembered in this browser.

use super::icons::{icon, Icon};
use crate::browser;
use crate::state::prefs::Theme;
use yew::prelude::*;

const THEME_KEY: &str = "relaycast.theme";

/// The theme in effect: the remembered pick, else the system's.
pub fn current() -> Theme {
    browser::load(THEME_KEY).and_then(|t| Theme::parse(&t)).unwrap_or_else(|| {
        if browser::prefers_dark() {
            Theme::Dark
        } else {
            Theme::Light
        }
    })
}

/// Put `theme` on the page (`<html data-theme=...>`, which the stylesheet reads).
pub fn apply(theme: Theme) {
    browser::set_root_attribute("data-theme", theme.as_str());
}

#[function_component(ThemeToggle)]
pub fn theme_toggle() -> Html {
    let theme = use_state(current);
    let onclick = {
        let theme = theme.clone();
        Callback::from(move |_: MouseEvent| {
            let next = theme.other();
            browser::save(THEME_KEY, next.as_str());
            apply(next);
            theme.set(next);
        })
    };
    let dark = *theme == Theme::Dark;
    html! {
        <button type="button" id="theme" class="round quiet" aria-pressed={dark.to_string()} aria-label="Dark theme"
                title={if dark { "Switch to the light theme" } else { "Switch to the dark theme" }} {onclick}>
            { icon(if dark { Icon::Moon } else { Icon::Sun }) }
        </button>
    }
}

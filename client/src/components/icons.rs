//! The app's icons: small inline SVGs drawn on a 24-unit grid with the text colour, so they
//! follow the theme and need no icon font or CDN. Each is decorative (`aria-hidden`): the
//! control that holds it carries the label.

use yew::prelude::*;

/// The icons the app draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Icon {
    Mic,
    MicOff,
    Camera,
    CameraOff,
    Screen,
    Hangup,
    Phone,
    Live,
    Record,
    Chat,
    People,
    File,
    Link,
    Pin,
    Sun,
    Moon,
    Chart,
    Settings,
    Edit,
    Bell,
    BellOff,
}

impl Icon {
    /// The shapes, in SVG path syntax (stroked, not filled).
    fn paths(self) -> &'static [&'static str] {
        match self {
            Icon::Mic => &["M9 5a3 3 0 0 1 6 0v6a3 3 0 0 1-6 0z", "M5 11a7 7 0 0 0 14 0", "M12 18v3"],
            Icon::MicOff => &["M9 5a3 3 0 0 1 6 0v6a3 3 0 0 1-6 0z", "M5 11a7 7 0 0 0 14 0", "M12 18v3", "M3 3l18 18"],
            Icon::Camera => &["M3 7h12v10H3z", "M15 10l6-3v10l-6-3"],
            Icon::CameraOff => &["M3 7h12v10H3z", "M15 10l6-3v10l-6-3", "M2 3l19 18"],
            Icon::Screen => &["M3 4h18v12H3z", "M8 20h8", "M12 16v4", "M12 13V7", "M9 10l3-3 3 3"],
            Icon::Hangup => &["M3 14c5-5 13-5 18 0l-2 3-4-1v-3c-2-1-4-1-6 0v3l-4 1z"],
            Icon::Phone => &["M5 3h4l2 5-3 2c1 3 3 5 6 6l2-3 5 2v4c0 1-1 2-2 2C10 21 3 14 3 5c0-1 1-2 2-2z"],
            Icon::Live => &[
                "M12 12h.01",
                "M8.5 8.5a5 5 0 0 0 0 7",
                "M15.5 8.5a5 5 0 0 1 0 7",
                "M5.5 5.5a9 9 0 0 0 0 13",
                "M18.5 5.5a9 9 0 0 1 0 13",
            ],
            Icon::Record => &["M12 5a7 7 0 1 0 0 14a7 7 0 1 0 0-14z", "M12 10a2 2 0 1 0 0 4a2 2 0 1 0 0-4z"],
            Icon::Chat => &["M4 5h16v11H9l-5 4z"],
            Icon::People => &[
                "M9 7a3 3 0 1 0 0 6a3 3 0 1 0 0-6z",
                "M3 20c0-3 3-5 6-5s6 2 6 5",
                "M16 6a3 3 0 0 1 0 6",
                "M18 15c2 1 3 3 3 5",
            ],
            Icon::File => &["M6 3h8l4 4v14H6z", "M14 3v4h4"],
            Icon::Link => {
                &["M10 14a4 4 0 0 0 6 0l3-3a4 4 0 0 0-6-6l-1 1", "M14 10a4 4 0 0 0-6 0l-3 3a4 4 0 0 0 6 6l1-1"]
            }
            Icon::Pin => &["M9 3h6l-1 6 4 4H6l4-4z", "M12 13v8"],
            Icon::Sun => &[
                "M12 8a4 4 0 1 0 0 8a4 4 0 1 0 0-8z",
                "M12 2v2",
                "M12 20v2",
                "M2 12h2",
                "M20 12h2",
                "M5 5l1.5 1.5",
                "M17.5 17.5L19 19",
                "M5 19l1.5-1.5",
                "M17.5 6.5L19 5",
            ],
            Icon::Moon => &["M20 14A8 8 0 1 1 10 4a6 6 0 0 0 10 10z"],
            Icon::Chart => &["M4 20V4", "M4 20h16", "M7 15l4-4 3 3 5-6"],
            Icon::Bell => &["M6 16V11a6 6 0 0 1 12 0v5l2 2H4z", "M10 21h4"],
            Icon::BellOff => &["M6 16V11a6 6 0 0 1 12 0v5l2 2H4z", "M10 21h4", "M3 3l18 18"],
            Icon::Edit => &["M4 20h4L19 9l-4-4L4 16z", "M13 7l4 4"],
            Icon::Settings => &["M4 7h10", "M18 7h2", "M4 17h4", "M12 17h8", "M16 5v4", "M10 15v4"],
        }
    }
}

#[derive(Debug, Properties, PartialEq)]
pub struct IconProps {
    pub icon: Icon,
}

#[function_component(Svg)]
pub fn svg(props: &IconProps) -> Html {
    html! {
        <svg class="icon" viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor"
             stroke-width="2" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true" focusable="false">
            { for props.icon.paths().iter().map(|d| html! { <path d={*d} /> }) }
        </svg>
    }
}

/// An icon as `Html`.
pub fn icon(icon: Icon) -> Html {
    html! { <Svg {icon} /> }
}

//! The Relaycast web app: Yew compiled to wasm, talking to the server over WebSocket with the
//! `relaycast_shared` types (no JSON is built by hand).
//!
//! # Layout
//! - [`state`]: the room's state machine and the lobby's memory (pure, tested natively).
//! - [`net`]: the room session (WebSocket, reconnect with backoff, recovery) and its policy.
//! - [`components`]: lobby, room, chat, status.
//! - [`browser`]: time, randomness, local storage and the address bar.
//!
//! Routes: `/` is the lobby; `/r/<room>` opens a room directly (a shareable link). In token
//! mode the app that links here puts the person's token in the fragment: `/r/<room>#token=...`
//! (see [`net::token`]).

// Nothing from the network or the disk is unwrapped; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod browser;
pub mod components;
pub mod net;
pub mod state;

use components::lobby::Lobby;
use components::room::RoomPage;
use relaycast_shared::{DisplayName, RoomName};
use yew::prelude::*;

const NAME_KEY: &str = "relaycast.name";
const RECENT_KEY: &str = "relaycast.recent";

/// The room named by a path like `/r/<room>`.
pub fn room_from_path(path: &str) -> Option<RoomName> {
    RoomName::try_from(path.strip_prefix("/r/")?.trim_end_matches('/')).ok()
}

fn recent_rooms() -> Vec<String> {
    browser::load(RECENT_KEY)
        .map(|s| s.split('\n').filter(|r| !r.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

#[function_component(App)]
pub fn app() -> Html {
    let route = use_state(|| room_from_path(&browser::path()));
    let name = use_state(|| browser::load(NAME_KEY).unwrap_or_default());
    let recent = use_state(recent_rooms);
    // Token mode: a token in the address (`#token=`) names the person; no name to type.
    let token_name = use_state(|| {
        net::token::take_from_address();
        net::token::stored_name()
    });

    // Back and forward buttons.
    {
        let route = route.clone();
        use_effect_with((), move |_| {
            let listener = gloo_events::EventListener::new(&gloo_utils::window(), "popstate", move |_| {
                route.set(room_from_path(&browser::path()));
            });
            move || drop(listener)
        });
    }

    {
        let in_lobby = route.is_none();
        use_effect_with(in_lobby, |in_lobby| {
            if *in_lobby {
                browser::set_title("Relaycast");
            }
        });
    }

    let onjoin = {
        let (route, name, recent) = (route.clone(), name.clone(), recent.clone());
        Callback::from(move |(room, display): (RoomName, DisplayName)| {
            browser::save(NAME_KEY, display.as_str());
            let list = state::prefs::remember(&recent, room.as_str());
            browser::save(RECENT_KEY, &list.join("\n"));
            recent.set(list);
            name.set(display.to_string());
            browser::push_path(&format!("/r/{room}"));
            route.set(Some(room));
        })
    };
    let onleave = {
        let route = route.clone();
        Callback::from(move |_| {
            browser::push_path("/");
            route.set(None);
        })
    };

    let display = match &*token_name {
        Some(name) => Ok(name.clone()),
        None => DisplayName::try_from(name.as_str()),
    };
    html! {
        <main class="app">
            { match (&*route, display) {
                (Some(room), Ok(display)) => html! { <RoomPage room={room.clone()} name={display} {onleave} /> },
                (room, _) => html! {
                    <div class="lobby-page">
                        <header class="topbar">
                            <span class="brand">{ components::room::logo() }{ "Relaycast" }</span>
                            <span class="spacer" />
                            <components::theme::ThemeToggle />
                        </header>
                        <div class="hero">
                            <h1>{ "Meet, chat and share files in a room of your own" }</h1>
                            <p>{ "Calls go peer to peer, chat is kept and caught up after a lost connection, big files and live broadcasts go through your own server." }</p>
                        </div>
                        <Lobby name={(*name).clone()} room={room.as_ref().map(|r| r.to_string()).unwrap_or_default()}
                            recent={(*recent).clone()} {onjoin} />
                    </div>
                },
            } }
        </main>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_links_name_a_room() {
        assert_eq!(room_from_path("/r/standup").map(|r| r.to_string()), Some("standup".into()));
        assert_eq!(room_from_path("/r/standup/").map(|r| r.to_string()), Some("standup".into()));
        assert_eq!(room_from_path("/"), None);
        assert_eq!(room_from_path("/r/bad room"), None);
    }
}

//! The lobby: a room name (typed, or a readable new one) and a display name (both
//! remembered), recent rooms that join in one click, join.

use crate::state::prefs::readable_room;
use relaycast_shared::{DisplayName, RoomName};
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct LobbyProps {
    pub name: String,
    pub room: String,
    pub recent: Vec<String>,
    /// Join `room` as `name` (both valid).
    pub onjoin: Callback<(RoomName, DisplayName)>,
}

fn value(e: &InputEvent) -> String {
    e.target_unchecked_into::<web_sys::HtmlInputElement>().value()
}

#[function_component(Lobby)]
pub fn lobby(props: &LobbyProps) -> Html {
    let room = use_state(|| props.room.clone());
    let name = use_state(|| props.name.clone());
    let room_check = RoomName::try_from(room.as_str());
    let name_check = DisplayName::try_from(name.as_str());
    let onsubmit = {
        let (room, name, onjoin) = (room.clone(), name.clone(), props.onjoin.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let (Ok(r), Ok(n)) = (RoomName::try_from(room.as_str()), DisplayName::try_from(name.as_str())) {
                onjoin.emit((r, n));
            }
        })
    };
    let problem = match (&room_check, &name_check) {
        (Err(e), _) if !room.is_empty() => Some(format!("Room: {e} (letters, digits, . _ - only)")),
        (_, Err(e)) if !name.is_empty() => Some(format!("Name: {e}")),
        _ => None,
    };
    html! {
        <section class="lobby">
            <form id="lobby" {onsubmit}>
                <label for="room">{ "Room" }</label>
                <div class="row">
                    <input id="room" value={(*room).clone()} autocomplete="off" placeholder="team-standup"
                        oninput={ let room = room.clone(); Callback::from(move |e| room.set(value(&e))) } />
                    <button type="button" id="new-room" title="A new room with a random name"
                        onclick={ let room = room.clone(); Callback::from(move |_: MouseEvent| room.set(readable_room(crate::browser::random))) }>
                        { "New room" }
                    </button>
                </div>
                <label for="name">{ "Your name" }</label>
                <input id="name" value={(*name).clone()} maxlength="32" placeholder="Ada"
                    oninput={ let name = name.clone(); Callback::from(move |e| name.set(value(&e))) } />
                <button id="join" type="submit" class="primary" disabled={room_check.is_err() || name_check.is_err()}>{ "Join" }</button>
                if let Some(p) = problem { <p class="field-error" role="alert">{ p }</p> }
            </form>
            if !props.recent.is_empty() {
                <nav class="recent" aria-label="Recent rooms">
                    <h2>{ "Recent rooms" }</h2>
                    <ul>
                        { for props.recent.iter().map(|r| {
                            // With a name given, a recent room is one click away; without, it
                            // fills the room field and the name is asked for.
                            let onclick = {
                                let (room, name, onjoin, r) = (room.clone(), name.clone(), props.onjoin.clone(), r.clone());
                                Callback::from(move |_| match (RoomName::try_from(r.as_str()), DisplayName::try_from(name.as_str())) {
                                    (Ok(rn), Ok(n)) => onjoin.emit((rn, n)),
                                    _ => room.set(r.clone()),
                                })
                            };
                            html! { <li><button type="button" class="link" {onclick}>{ r }</button></li> }
                        }) }
                    </ul>
                </nav>
            }
        </section>
    }
}

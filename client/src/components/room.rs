//! A room: status, share link, participants and chat, over one [`Session`].

use super::broadcast::BroadcastPanel;
use super::call::CallPanel;
use super::chat::Chat;
use super::files::{drop_handlers, FilesPanel};
use super::status::StatusBadge;
use crate::browser;
use crate::net::broadcast::{Broadcast, BroadcastView, LiveSource};
use crate::net::call::{Call, CallView};
use crate::net::files::Files;
use crate::net::session::{Command, Session};
use crate::state::files::Transfer;
use crate::state::room::RoomState;
use relaycast_shared::{Body, DisplayName, Right, RoomName};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct RoomProps {
    pub room: RoomName,
    pub name: DisplayName,
    pub onleave: Callback<()>,
}

#[function_component(RoomPage)]
pub fn room_page(props: &RoomProps) -> Html {
    let state = use_state(|| Rc::new(RoomState::new(props.room.clone(), props.name.clone())));
    let session = use_state(|| None::<Session>);
    let now = use_state(browser::now_ms);
    let call_view = use_state(CallView::default);
    // The call signals through whichever session is current.
    let signaling = use_mut_ref(|| None::<Session>);
    let call = {
        let (signaling, call_view) = (signaling.clone(), call_view.setter());
        use_state(move || {
            let send = Callback::from(move |(to, signal)| {
                if let Some(s) = signaling.borrow().as_ref() {
                    s.send(Command::Signal { to, signal });
                }
            });
            Call::new(send, Callback::from(move |v| call_view.set(v)))
        })
    };

    // The room's live broadcast: going live, watching, recording.
    let broadcast_view = use_state(BroadcastView::default);
    let broadcast = {
        let view = broadcast_view.setter();
        use_state(move || Broadcast::new(Callback::from(move |v| view.set(v))))
    };

    // File transfers publish through whichever session is current, and use the call's links.
    let transfers = use_state(Vec::<Transfer>::new);
    let files = {
        let (signaling, transfers, call, room) =
            (signaling.clone(), transfers.setter(), (*call).clone(), props.room.clone());
        use_state(move || {
            let publish = Callback::from(move |body| {
                if let Some(s) = signaling.borrow().as_ref() {
                    s.send(Command::Publish(body));
                }
            });
            Files::new(room, call, publish, Callback::from(move |v| transfers.set(v)))
        })
    };
    {
        let files = (*files).clone();
        let peers: Vec<_> = state.peers.iter().map(|p| p.id.clone()).collect();
        use_effect_with((state.me.clone(), state.grant.clone(), peers), move |(me, grant, peers)| {
            files.sync(me.clone(), grant.clone(), peers.clone());
        });
    }
    {
        let files = (*files).clone();
        let listed: Vec<_> = state
            .messages()
            .filter_map(|m| match &m.body {
                Body::File { hash, name, size, mime } => {
                    Some((hash.clone(), name.clone(), *size, mime.clone(), m.from.clone()))
                }
                _ => None,
            })
            .collect();
        use_effect_with(listed, move |listed| files.room_files(listed.clone()));
    }

    // One session per room; dropping the handle closes it.
    {
        let (state, session, signaling, call) = (state.clone(), session.clone(), signaling.clone(), (*call).clone());
        use_effect_with((props.room.clone(), props.name.clone()), move |(room, name)| {
            let on_state = Callback::from(move |s: Rc<RoomState>| state.set(s));
            let on_signal = Callback::from(move |(from, signal)| call.handle_signal(from, signal));
            let started = Session::start(room.clone(), name.clone(), on_state, on_signal);
            *signaling.borrow_mut() = Some(started.clone());
            session.set(Some(started));
            move || {
                signaling.borrow_mut().take();
                session.set(None)
            }
        });
    }
    // The call follows who we are and who is in the room.
    {
        let call = (*call).clone();
        let peers: Vec<_> = state.peers.iter().map(|p| p.id.clone()).collect();
        use_effect_with((state.me.clone(), state.ice_servers.clone(), peers), move |(me, ice, peers)| {
            call.sync(me.clone(), ice.clone(), browser::relay_only(), peers.clone());
        });
    }
    // A clock for the "reconnecting in N s" countdown.
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let alive = Rc::new(Cell::new(true));
            let running = alive.clone();
            yew::platform::spawn_local(async move {
                while running.get() {
                    now.set(browser::now_ms());
                    yew::platform::time::sleep(Duration::from_secs(1)).await;
                }
            });
            move || alive.set(false)
        });
    }

    let onsend = {
        let session = session.clone();
        Callback::from(move |text| {
            if let Some(s) = session.as_ref() {
                s.send(Command::Publish(Body::Chat { text }));
            }
        })
    };
    let ondelete = {
        let session = session.clone();
        Callback::from(move |seq| {
            if let Some(s) = session.as_ref() {
                s.send(Command::Delete(seq));
            }
        })
    };
    let share = browser::url_of(&format!("/r/{}", props.room));
    let s = (*state).clone();
    let names: Vec<_> = s.peers.iter().map(|p| (p.id.clone(), p.name.to_string())).collect();
    let onleave = props.onleave.reform(|_: MouseEvent| ());
    let onpick = {
        let files = (*files).clone();
        Callback::from(move |file| files.send(file))
    };
    let onfetch = {
        let files = (*files).clone();
        Callback::from(move |hash| files.fetch(&hash))
    };
    let (ondragover, ondrop) = drop_handlers(onpick.clone());
    let ongolive = {
        let (b, room, key) = ((*broadcast).clone(), props.room.clone(), s.stream_key.clone());
        Callback::from(move |source: LiveSource| {
            if let Some(key) = key.clone() {
                b.go_live(room.clone(), key, source);
            }
        })
    };
    let onstoplive = {
        let b = (*broadcast).clone();
        Callback::from(move |_| b.stop_live())
    };
    let onwatch = {
        let (b, room, token) = ((*broadcast).clone(), props.room.clone(), s.grant.clone().or(s.stream_key.clone()));
        Callback::from(move |_| {
            if let Some(token) = token.clone() {
                b.watch(room.clone(), token);
            }
        })
    };
    let onstopwatching = {
        let b = (*broadcast).clone();
        Callback::from(move |_| b.stop_watching())
    };
    let onrecord = {
        let (b, room, key) = ((*broadcast).clone(), props.room.clone(), s.stream_key.clone());
        Callback::from(move |on: bool| {
            if let Some(key) = key.clone() {
                b.record(room.clone(), key, on);
            }
        })
    };
    html! {
        <div class="room" {ondragover} {ondrop}>
            <header class="bar">
                <h1><a href="/" class="home">{ "Relaycast" }</a>{ " · " }<span id="room-name">{ props.room.as_str() }</span></h1>
                <StatusBadge status={s.status.clone()} now={*now} />
                <input class="share" readonly=true value={share} aria-label="Link to this room" />
                <button type="button" id="leave" onclick={onleave}>{ "Leave" }</button>
            </header>
            if let Some(problem) = &s.problem {
                <p id="problem" class="problem" role="alert">{ problem.text() }</p>
            } else if let Some(expires) = s.token_expiring {
                <p id="access-ending" class="problem" role="status">
                    { format!("Your access to this room ends at {}: open it again from the app that invited you.", browser::clock(expires)) }
                </p>
            }
            <div class="layout" inert={s.locked_out()}>
                <aside id="peers" aria-label="Participants">
                    <h2>{ format!("Here ({})", s.peers.len() + 1) }</h2>
                    <ul>
                        <li class="me">{ format!("{} (you)", s.name) }</li>
                        { for s.peers.iter().map(|p| html! { <li data-peer={p.id.to_string()}>{ p.name.as_str() }</li> }) }
                    </ul>
                </aside>
                <div class="main">
                    <BroadcastPanel state={s.broadcast.clone()} view={(*broadcast_view).clone()}
                        owner={s.stream_key.is_some() && s.rights.has(Right::Broadcast)}
                        can_record={s.stream_key.is_some() && s.rights.has(Right::Record)}
                        can_watch={s.rights.has(Right::Watch)}
                        now={*now} {ongolive} {onstoplive} {onwatch} {onstopwatching} {onrecord} />
                    <CallPanel call={(*call).clone()} view={(*call_view).clone()} {names} can_call={s.rights.has(Right::Signal)} />
                    <Chat state={s.clone()} {onsend} {ondelete} />
                    <FilesPanel transfers={(*transfers).clone()} {onpick} {onfetch} can_send={s.rights.has(Right::Upload)} />
                </div>
            </div>
        </div>
    }
}

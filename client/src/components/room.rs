//! A room, over one [`Session`]: a header (room, connection, invite, theme, leave), the
//! stage with its control bar, and the side panel (chat, people, files).

use super::chat::Chat;
use super::controls::ControlBar;
use super::files::{drop_handlers, FilesPanel};
use super::invite::Invite;
use super::people::People;
use super::side::{SidePanel, Tab};
use super::sound::SoundToggle;
use super::stage::Stage;
use super::status::StatusBadge;
use super::theme::ThemeToggle;
use crate::browser;
use crate::net::broadcast::{Broadcast, BroadcastView, LiveSource};
use crate::net::call::{Call, CallView};
use crate::net::files::Files;
use crate::net::peer::Links;
use crate::net::session::{Command, Session};
use crate::state::files::{Direction, Transfer};
use crate::state::room::RoomState;
use crate::state::unread;
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
    let tab = use_state(|| Tab::Chat);
    let charts = use_state(|| false);
    let prejoin = use_state(|| false);
    // The newest message seen (None until the join's history came: it is not news), the
    // incoming files seen, and whether the page is hidden.
    let seen_seq = use_state(|| None::<u64>);
    let seen_files = use_state(|| 0usize);
    let hidden = use_state(browser::page_hidden);
    let sound_on = use_state(super::sound::remembered);
    let chimes = use_state(|| 0u32);
    let heard = use_mut_ref(|| 0usize);
    // The peer links signal through whichever session is current.
    let signaling = use_mut_ref(|| None::<Session>);
    let links = {
        let signaling = signaling.clone();
        use_state(move || {
            Links::new(Callback::from(move |(to, signal)| {
                if let Some(s) = signaling.borrow().as_ref() {
                    s.send(Command::Signal { to, signal });
                }
            }))
        })
    };
    let call_view = use_state(CallView::default);
    let call = {
        let (links, call_view) = ((*links).clone(), call_view.setter());
        use_state(move || Call::new(links, Callback::from(move |v| call_view.set(v))))
    };

    // The room's live broadcast: going live, watching, recording.
    let broadcast_view = use_state(BroadcastView::default);
    let broadcast = {
        let view = broadcast_view.setter();
        use_state(move || Broadcast::new(Callback::from(move |v| view.set(v))))
    };

    // File transfers publish through whichever session is current, and share the call's links.
    let transfers = use_state(Vec::<Transfer>::new);
    let files = {
        let (signaling, transfers, links, room) =
            (signaling.clone(), transfers.setter(), (*links).clone(), props.room.clone());
        use_state(move || {
            let publish = Callback::from(move |body| {
                if let Some(s) = signaling.borrow().as_ref() {
                    s.send(Command::Publish(body));
                }
            });
            Files::new(room, links, publish, Callback::from(move |v| transfers.set(v)))
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
        let (state, session, signaling, links) = (state.clone(), session.clone(), signaling.clone(), (*links).clone());
        use_effect_with((props.room.clone(), props.name.clone()), move |(room, name)| {
            let on_state = Callback::from(move |s: Rc<RoomState>| state.set(s));
            let on_signal = Callback::from(move |(from, signal)| links.handle_signal(from, signal));
            let started = Session::start(room.clone(), name.clone(), on_state, on_signal);
            *signaling.borrow_mut() = Some(started.clone());
            session.set(Some(started));
            move || {
                signaling.borrow_mut().take();
                session.set(None)
            }
        });
    }
    // The links follow who we are and who is in the room.
    {
        let links = (*links).clone();
        let peers: Vec<_> = state.peers.iter().map(|p| p.id.clone()).collect();
        use_effect_with((state.me.clone(), state.ice_servers.clone(), peers), move |(me, ice, peers)| {
            links.sync(me.clone(), ice.clone(), browser::relay_only(), peers.clone());
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

    // Unread messages: in the chat tab's badge and the browser tab's title.
    {
        let hidden = hidden.clone();
        use_effect_with((), move |_| {
            let listener = gloo_events::EventListener::new(&gloo_utils::document(), "visibilitychange", move |_| {
                hidden.set(browser::page_hidden())
            });
            move || drop(listener)
        });
    }
    let chat_in_view = *tab == Tab::Chat && !*hidden;
    {
        let seen_seq = seen_seq.clone();
        let (synced, last) = (state.synced, state.last_seq);
        use_effect_with((synced, last, chat_in_view), move |&(synced, last, in_view)| {
            if synced && (in_view || seen_seq.is_none()) && *seen_seq != Some(last) {
                seen_seq.set(Some(last));
            }
        });
    }
    let unread_now = seen_seq.map(|seen| unread::unread(&state, seen)).unwrap_or(0);
    {
        let room = props.room.to_string();
        use_effect_with(unread_now, move |n| browser::set_title(&unread::title(&room, *n)));
    }
    // A chime for each new unread message while the page is hidden, if wanted.
    {
        let (heard, chimes, on) = (heard.clone(), chimes.clone(), *sound_on);
        use_effect_with(unread_now, move |n| {
            if *n > *heard.borrow() && on && browser::page_hidden() && browser::chime() {
                chimes.set(*chimes + 1);
            }
            *heard.borrow_mut() = *n;
        });
    }
    {
        let seen_files = seen_files.clone();
        let incoming = transfers.iter().filter(|t| t.direction != Direction::Sending).count();
        use_effect_with((incoming, *tab == Tab::Files), move |&(incoming, open)| {
            if open && *seen_files != incoming {
                seen_files.set(incoming);
            }
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
    let ontyping = {
        let session = session.clone();
        Callback::from(move |_| {
            if let Some(s) = session.as_ref() {
                s.send(Command::Typing);
            }
        })
    };
    let onedit = {
        let session = session.clone();
        Callback::from(move |(of, text)| {
            if let Some(s) = session.as_ref() {
                s.send(Command::Publish(Body::Edit { of, text }));
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
    let onstartcall = {
        let prejoin = prejoin.clone();
        Callback::from(move |_| prejoin.set(true))
    };
    let onprejoin = {
        let (call, prejoin) = ((*call).clone(), prejoin.clone());
        Callback::from(move |(stream, choice)| {
            prejoin.set(false);
            let call = call.clone();
            yew::platform::spawn_local(async move { call.join_with(stream, choice).await });
        })
    };
    let oncancelprejoin = {
        let prejoin = prejoin.clone();
        Callback::from(move |_| prejoin.set(false))
    };
    let ontogglecharts = {
        let charts = charts.clone();
        Callback::from(move |_| charts.set(!*charts))
    };
    let ontab = {
        let tab = tab.clone();
        Callback::from(move |t| tab.set(t))
    };
    let host = s.stream_key.is_some() && s.rights.has(Right::Broadcast);
    let incoming = transfers.iter().filter(|t| t.direction != Direction::Sending).count();
    let chat_badge = if *tab == Tab::Chat { None } else { unread::badge(unread_now) };
    let files_badge = if *tab == Tab::Files { None } else { unread::badge(incoming.saturating_sub(*seen_files)) };
    let chat = html! { <Chat state={s.clone()} {onsend} {ondelete} {onedit} {ontyping} now={*now} /> };
    let people = html! {
        <People me={s.name.to_string()} peers={s.peers.clone()} call={(*call).clone()} view={(*call_view).clone()}
            {host} live={broadcast_view.publishing()} live_peer={s.broadcast.publisher.clone().filter(|_| s.broadcast.live)} />
    };
    let files_panel = html! {
        <FilesPanel transfers={(*transfers).clone()} {onpick} {onfetch} can_send={s.rights.has(Right::Upload)} />
    };
    html! {
        <div class="room" {ondragover} {ondrop}>
            <header class="topbar">
                <a href="/" class="brand" aria-label="Relaycast home">{ logo() }</a>
                <h1 id="room-name">{ props.room.as_str() }</h1>
                <StatusBadge status={s.status.clone()} now={*now} />
                <span class="spacer" />
                <SoundToggle on={*sound_on} chimes={*chimes} ontoggle={{ let s = sound_on.clone(); Callback::from(move |on| s.set(on)) }} />
                <ThemeToggle />
                <Invite link={share} />
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
                <div class="stage-column">
                    <Stage call={(*call_view).clone()} names={names} charts={*charts}
                        broadcast={s.broadcast.clone()} broadcast_view={(*broadcast_view).clone()}
                        can_go_live={host} can_watch={s.rights.has(Right::Watch)} can_call={s.rights.has(Right::Signal)}
                        now={*now} prejoin={*prejoin && !call_view.joined} {onprejoin} {oncancelprejoin}
                        onstartcall={onstartcall.clone()} {onwatch} {onstopwatching} />
                    <ControlBar call={(*call).clone()} view={(*call_view).clone()} can_call={s.rights.has(Right::Signal) && !*prejoin}
                        can_share={browser::can_share_screen()} charts={*charts} {ontogglecharts} {onstartcall}
                        can_go_live={host} can_record={s.stream_key.is_some() && s.rights.has(Right::Record)}
                        live={s.broadcast.live} recording={s.broadcast.recording}
                        publishing={broadcast_view.publishing()} busy={broadcast_view.busy}
                        {ongolive} {onstoplive} {onrecord} />
                </div>
                <SidePanel tab={*tab} {ontab} {chat_badge} {files_badge} people={s.peers.len() + 1}
                    {chat} people_panel={people} files={files_panel} />
            </div>
        </div>
    }
}

/// The app's mark: a relay tower sending to both sides.
pub fn logo() -> Html {
    html! {
        <svg class="logo" viewBox="0 0 32 32" width="28" height="28" aria-hidden="true" focusable="false">
            <rect width="32" height="32" rx="8" fill="var(--accent)" />
            <circle cx="16" cy="16" r="3" fill="#fff" />
            <path d="M10.5 10.5a8 8 0 0 0 0 11M21.5 10.5a8 8 0 0 1 0 11" stroke="#fff" stroke-width="2.4" fill="none" stroke-linecap="round" />
        </svg>
    }
}

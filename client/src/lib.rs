//! The Relaycast web app. This first version is a single room chat: it connects to the
//! server's `/ws`, says hello, joins a room, shows its history and live messages, and sends
//! chat. Every message is a `relaycast_shared` type; no JSON is built by hand.
//!
//! # Layout
//! - [`state`]: the room view's state and reducer (pure, tested natively).
//! - `App` (here): the component and the WebSocket task that feeds the reducer.

// Nothing from the network or the disk is unwrapped; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod state;

use futures_util::{SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message};
use relaycast_shared::*;
use state::{Action, RoomState, Status};
use std::rc::Rc;
use yew::prelude::*;

impl Reducible for RoomState {
    type Action = Action;
    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        next.apply(action);
        Rc::new(next)
    }
}

/// The server's WebSocket URL, next to the page (works behind `trunk serve`'s proxy too).
fn ws_url() -> String {
    let location = web_sys::window().map(|w| w.location());
    let host = location.as_ref().and_then(|l| l.host().ok()).unwrap_or_else(|| "127.0.0.1:8080".into());
    let secure = location.and_then(|l| l.protocol().ok()).is_some_and(|p| p == "https:");
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

type Outbox = futures_channel::mpsc::UnboundedSender<ClientMsg>;

#[function_component(App)]
pub fn app() -> Html {
    let state = use_reducer(RoomState::default);
    let outbox = use_mut_ref(|| None::<Outbox>);
    let room = use_state(|| "lobby".to_owned());
    let name = use_state(|| "guest".to_owned());
    let draft = use_state(String::new);
    let joined = use_state(|| false);
    let counter = use_mut_ref(|| 0u64);

    // Open the socket once; a task pumps frames into the reducer and the outbox into it.
    {
        let state = state.clone();
        let outbox = outbox.clone();
        use_effect_with((), move |_| match WebSocket::open(&ws_url()) {
            Ok(ws) => {
                let (mut sink, mut stream) = ws.split();
                let (tx, mut rx) = futures_channel::mpsc::unbounded::<ClientMsg>();
                let _ = tx.unbounded_send(ClientMsg::hello());
                *outbox.borrow_mut() = Some(tx);
                wasm_bindgen_futures::spawn_local(async move {
                    while let Some(msg) = rx.next().await {
                        if sink.send(Message::Text(encode(&msg))).await.is_err() {
                            break;
                        }
                    }
                });
                wasm_bindgen_futures::spawn_local(async move {
                    while let Some(Ok(Message::Text(text))) = stream.next().await {
                        if let Ok(msg) = decode_server(&text) {
                            state.dispatch(Action::Server(msg));
                        }
                    }
                    state.dispatch(Action::Disconnected);
                });
            }
            Err(_) => state.dispatch(Action::Disconnected),
        });
    }

    let send = {
        let outbox = outbox.clone();
        move |msg: ClientMsg| {
            if let Some(tx) = outbox.borrow().as_ref() {
                let _ = tx.unbounded_send(msg);
            }
        }
    };

    let on_join = {
        let (room, name, joined, send) = (room.clone(), name.clone(), joined.clone(), send.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let (Ok(r), Ok(n)) = (RoomName::try_from(room.as_str()), DisplayName::try_from(name.as_str())) {
                send(ClientMsg::Join { room: r, name: n, token: None, resume: None });
                joined.set(true);
            }
        })
    };

    let on_send = {
        let (room, draft, counter, send) = (room.clone(), draft.clone(), counter.clone(), send.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Ok(text) = ChatText::try_from(draft.as_str()) else {
                return;
            };
            let Ok(r) = RoomName::try_from(room.as_str()) else {
                return;
            };
            *counter.borrow_mut() += 1;
            let Ok(id) = ClientMsgId::try_from(format!("c{}", counter.borrow())) else {
                return;
            };
            send(ClientMsg::Publish { room: r, id, body: Body::Chat { text } });
            draft.set(String::new());
        })
    };

    let input = |handle: UseStateHandle<String>| {
        Callback::from(move |e: InputEvent| {
            let target: web_sys::HtmlInputElement = e.target_unchecked_into();
            handle.set(target.value());
        })
    };

    let status = match state.status {
        Status::Connecting => "connecting",
        Status::Online => "online",
        Status::Offline => "offline",
    };

    html! {
        <main class="app">
            <header>
                <h1>{ "Relaycast" }</h1>
                <span id="status" class={classes!("status", status)}>{ status }</span>
            </header>
            if !*joined {
                <form id="lobby" onsubmit={on_join}>
                    <label>{ "Room " }<input id="room" value={(*room).clone()} oninput={input(room.clone())} /></label>
                    <label>{ "Name " }<input id="name" value={(*name).clone()} oninput={input(name.clone())} /></label>
                    <button type="submit">{ "Join" }</button>
                </form>
            } else {
                <section class="room">
                    <aside id="peers">
                        <h2>{ "Here" }</h2>
                        <ul>{ for state.peers.iter().map(|p| html! { <li>{ p.name.as_str() }</li> }) }</ul>
                    </aside>
                    <ol id="messages">
                        { for state.messages.iter().map(|m| {
                            let text = match &m.body { Body::Chat { text } => text.to_string(), Body::Data { data } => data.to_string() };
                            let mine = state.me.as_ref() == Some(&m.from);
                            html! { <li class={classes!(mine.then_some("mine"))}><b>{ m.name.as_str() }</b>{ ": " }{ text }</li> }
                        }) }
                    </ol>
                    <form id="compose" onsubmit={on_send}>
                        <input id="draft" value={(*draft).clone()} oninput={input(draft.clone())} placeholder="Message" />
                        <button type="submit">{ "Send" }</button>
                    </form>
                </section>
            }
            if let Some(err) = &state.error { <p class="error">{ err }</p> }
        </main>
    }
}

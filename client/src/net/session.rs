//! A room session over the server's WebSocket: it owns the room's state machine, reconnects
//! with backoff and jitter, resumes from the last sequence it saw, and resends what is still
//! pending once it knows what the server already has. The UI gets a snapshot after every
//! change and sends commands through the [`Session`] handle.

use super::{backoff, token};
use crate::browser;
use crate::state::room::{Action, Pending, RoomState, Status};
use futures_channel::mpsc;
use futures_util::{future, stream, SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message};
use relaycast_shared::*;
use std::rc::Rc;
use std::time::Duration;
use yew::Callback;

/// What the UI asks of the session.
#[derive(Debug)]
pub enum Command {
    Publish(Body),
    Signal {
        to: PeerId,
        signal: Signal,
    },
    /// Delete message `seq` of the room.
    Delete(u64),
    /// We are typing (the chat sends it at most every few seconds).
    Typing,
}

/// The UI's handle. Dropping every clone ends the session (the socket is closed).
#[derive(Debug, Clone)]
pub struct Session {
    commands: mpsc::UnboundedSender<Command>,
}

impl PartialEq for Session {
    fn eq(&self, other: &Self) -> bool {
        self.commands.same_receiver(&other.commands)
    }
}

impl Session {
    /// Start a session for `room`; `on_state` gets every new state, `on_signal` every
    /// signaling message for us.
    pub fn start(
        room: RoomName,
        name: DisplayName,
        on_state: Callback<Rc<RoomState>>,
        on_signal: Callback<(PeerId, Signal)>,
    ) -> Session {
        let (commands, rx) = mpsc::unbounded();
        yew::platform::spawn_local(run(browser::ws_url(), RoomState::new(room, name), rx, on_state, on_signal));
        Session { commands }
    }

    pub fn send(&self, command: Command) {
        let _ = self.commands.unbounded_send(command);
    }
}

enum Event {
    Frame(Message),
    Closed,
    Command(Option<Command>),
}

fn text(msg: &ClientMsg) -> Message {
    Message::Text(encode(msg))
}

/// Where this browser keeps its lasting key (a secret: only its ref is ever shown).
const CLIENT_KEY: &str = "relaycast.client-key";

/// This browser's lasting key, made on first use.
fn client_key() -> Option<ClientKey> {
    browser::load(CLIENT_KEY).and_then(|k| ClientKey::try_from(k).ok()).or_else(|| {
        let key = ClientKey::try_from(browser::random_token(32)).ok()?;
        browser::save(CLIENT_KEY, key.as_str());
        Some(key)
    })
}

async fn run(
    url: String,
    mut state: RoomState,
    mut commands: mpsc::UnboundedReceiver<Command>,
    on_state: Callback<Rc<RoomState>>,
    on_signal: Callback<(PeerId, Signal)>,
) {
    // Message ids unique beyond this session, so recovered history can be matched to ours:
    // this browser's lasting ref (ours after a reload too, which the server checks), then
    // this session's.
    let key = client_key();
    state.client_id = key.as_ref().map(ClientKey::client_ref);
    let prefix = match &state.client_id {
        Some(client_ref) => format!("{client_ref}.{}", browser::random_token(8)),
        None => browser::random_token(12),
    };
    let mut counter = 0u64;
    let mut attempt = 0u32;
    let emit = |s: &RoomState| on_state.emit(Rc::new(s.clone()));
    loop {
        state.apply(Action::Connecting);
        emit(&state);
        // Token mode: the tab's token, or a fresh one from the deployment's token URL.
        let token_mode = token::config().await.token_mode;
        let access = if token_mode { token::for_connect(&state.room).await } else { None };
        if let Ok(ws) = WebSocket::open(&url) {
            let (mut sink, frames) = ws.split();
            let frames = frames
                .take_while(|f| future::ready(f.is_ok()))
                .filter_map(|f| future::ready(f.ok().map(Event::Frame)))
                .chain(stream::once(future::ready(Event::Closed)));
            let cmds = (&mut commands)
                .map(|c| Event::Command(Some(c)))
                .chain(stream::once(future::ready(Event::Command(None))));
            let mut events = stream::select(frames, cmds);
            let _ = sink
                .send(text(&ClientMsg::Hello { protocol: PROTOCOL_VERSION, token: access, client: key.clone() }))
                .await;
            while let Some(event) = events.next().await {
                match event {
                    Event::Frame(Message::Text(t)) => {
                        let Ok(msg) = decode_server(&t) else { continue };
                        let mut out = Vec::new();
                        match &msg {
                            ServerMsg::Joined { .. } => attempt = 0,
                            // Renew ahead of expiry, on this socket; without a token URL
                            // the room says when access ends.
                            ServerMsg::TokenExpiring { .. } => {
                                if let Some(fresh) = renew_in_time(&state.room).await {
                                    out.push(ClientMsg::Refresh { token: fresh });
                                }
                            }
                            ServerMsg::Signal { from, signal, .. } => on_signal.emit((from.clone(), signal.clone())),
                            ServerMsg::Typing { peer_id, .. } => state.typing_seen(peer_id.clone(), browser::now_ms()),
                            _ => {}
                        }
                        // The state's own replies (join after welcome, pending after history).
                        out.extend(state.update(Action::Server(msg)));
                        emit(&state);
                        for m in out {
                            let _ = sink.send(text(&m)).await;
                        }
                        if state.status == Status::Offline {
                            return;
                        }
                    }
                    Event::Frame(_) => {}
                    Event::Closed => break,
                    Event::Command(None) => {
                        let _ = sink.close().await;
                        return;
                    }
                    Event::Command(Some(c)) => {
                        if let Some(m) = command(&mut state, c, &prefix, &mut counter) {
                            emit(&state);
                            if state.synced {
                                let _ = sink.send(text(&m)).await;
                            }
                        }
                    }
                }
            }
        }
        if state.status == Status::Offline {
            return;
        }
        let delay = backoff::delay_ms(attempt, browser::random());
        state.apply(Action::Lost { attempt, retry_at: browser::now_ms() + delay });
        emit(&state);
        attempt = attempt.saturating_add(1);
        // Wait, still taking commands (messages written offline stay pending).
        let mut sleep = Box::pin(yew::platform::time::sleep(Duration::from_millis(delay)));
        loop {
            match future::select(sleep, commands.next()).await {
                future::Either::Left(_) => break,
                future::Either::Right((None, _)) => return,
                future::Either::Right((Some(c), rest)) => {
                    if command(&mut state, c, &prefix, &mut counter).is_some() {
                        emit(&state);
                    }
                    sleep = rest;
                }
            }
        }
    }
}

/// A new token from the token URL, if one comes within a few seconds.
async fn renew_in_time(room: &RoomName) -> Option<AccessToken> {
    let renew = Box::pin(token::renew(room));
    let timeout = Box::pin(yew::platform::time::sleep(Duration::from_secs(5)));
    match future::select(renew, timeout).await {
        future::Either::Left((Ok(token), _)) => Some(token),
        _ => None,
    }
}

/// Apply a UI command to the state; the message to send, if any.
fn command(state: &mut RoomState, c: Command, prefix: &str, counter: &mut u64) -> Option<ClientMsg> {
    match c {
        Command::Publish(body) => {
            *counter += 1;
            let id = ClientMsgId::try_from(format!("{prefix}-{counter}")).ok()?;
            let pending = Pending { id, body, at: browser::now_ms() };
            let msg = state.publish_msg(&pending);
            state.apply(Action::Publish(pending));
            Some(msg)
        }
        Command::Signal { to, signal } => Some(ClientMsg::Signal { room: state.room.clone(), to, signal }),
        Command::Delete(seq) => Some(ClientMsg::Delete { room: state.room.clone(), seq }),
        Command::Typing => Some(ClientMsg::Typing { room: state.room.clone() }),
    }
}

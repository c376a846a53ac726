//! Who is here: everyone in the room, with who is in the call and who is live or may go
//! live (the host), and direct messages to the people you have a peer-to-peer link with.

use crate::net::call::{Call, CallView};
use relaycast_shared::{PeerId, PeerInfo};
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct PeopleProps {
    pub me: String,
    pub peers: Vec<PeerInfo>,
    pub call: Call,
    pub view: CallView,
    /// We are the room's host (we may go live).
    #[prop_or_default]
    pub host: bool,
    /// We are live.
    #[prop_or_default]
    pub live: bool,
    /// Who is live, when a member of the room is.
    #[prop_or_default]
    pub live_peer: Option<PeerId>,
}

fn tags(tags: &[(bool, &'static str, &'static str)]) -> Html {
    tags.iter()
        .filter(|(on, ..)| *on)
        .map(|(_, class, text)| html! { <span class={classes!("tag", *class)}>{ *text }</span> })
        .collect()
}

#[function_component(People)]
pub fn people(p: &PeopleProps) -> Html {
    let draft = use_state(String::new);
    let v = &p.view;
    let name_of = |id: &PeerId| {
        p.peers.iter().find(|i| &i.id == id).map(|i| i.name.to_string()).unwrap_or_else(|| id.to_string())
    };
    let in_call = |id: &PeerId| v.remotes.get(id).is_some_and(|r| r.tracks > 0);
    let send = {
        let (call, draft) = (p.call.clone(), draft.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if !draft.trim().is_empty() {
                call.send_direct(draft.trim());
                draft.set(String::new());
            }
        })
    };
    html! {
        <div class="people">
            <h2 class="sr-only">{ format!("Here ({})", p.peers.len() + 1) }</h2>
            <ul id="peers" aria-label="People in the room">
                <li class="me">
                    <span class="avatar" aria-hidden="true">{ initial(&p.me) }</span>
                    <span class="who">{ format!("{} (you)", p.me) }</span>
                    { tags(&[(p.host, "host", "host"), (v.joined, "in-call", "in call"), (p.live, "live", "live")]) }
                </li>
                { for p.peers.iter().map(|peer| html! {
                    <li data-peer={peer.id.to_string()}>
                        <span class="avatar" aria-hidden="true">{ initial(peer.name.as_str()) }</span>
                        <span class="who">{ peer.name.as_str() }</span>
                        { tags(&[
                            (peer.host, "host", "host"),
                            (in_call(&peer.id), "in-call", "in call"),
                            (p.live_peer.as_ref() == Some(&peer.id), "live", "live"),
                        ]) }
                    </li>
                }) }
            </ul>
            if !v.remotes.is_empty() {
                <section class="direct" aria-label="Direct messages">
                    <h3>{ "Direct messages" }</h3>
                    <p class="hint">{ "Peer to peer: they never touch the server and are not kept." }</p>
                    <ol id="dms">
                        { for v.messages.iter().map(|m| html! {
                            <li class={classes!(m.mine.then_some("mine"))}>
                                <b>{ if m.mine { format!("you → {}", name_of(&m.peer)) } else { name_of(&m.peer) } }</b>{ ": " }{ &m.text }
                            </li>
                        }) }
                    </ol>
                    <form id="dm-form" onsubmit={send}>
                        <input id="dm-input" value={(*draft).clone()} placeholder="Direct message" aria-label="Direct message"
                            oninput={ let draft = draft.clone(); Callback::from(move |e: InputEvent| draft.set(e.target_unchecked_into::<web_sys::HtmlInputElement>().value())) } />
                        <button id="dm-send" type="submit">{ "Send" }</button>
                    </form>
                </section>
            }
        </div>
    }
}

/// The first letter of a name, for its avatar.
pub fn initial(name: &str) -> String {
    name.chars().find(|c| c.is_alphanumeric()).map(|c| c.to_uppercase().collect()).unwrap_or_else(|| "?".into())
}

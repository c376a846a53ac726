//! The chat: history and live messages with times, ours marked, ours pending until acked,
//! notices where history was truncated or reset, and the compose box.

use crate::browser;
use crate::state::room::{Line, Notice, RoomState, Status};
use relaycast_shared::{Body, ChatText, Right};
use std::rc::Rc;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct ChatProps {
    pub state: Rc<RoomState>,
    pub onsend: Callback<ChatText>,
    /// Delete message `seq` (ours, or anyone's with the `moderate` right).
    #[prop_or_default]
    pub ondelete: Callback<u64>,
}

fn body_text(body: &Body) -> String {
    match body {
        Body::Chat { text } => text.to_string(),
        Body::Data { data } => data.to_string(),
        Body::File { name, size, .. } => format!("📎 {name} ({})", crate::state::files::human_bytes(*size)),
        Body::Deleted => "message deleted".to_owned(),
    }
}

#[function_component(Chat)]
pub fn chat(props: &ChatProps) -> Html {
    let draft = use_state(String::new);
    let list = use_node_ref();
    // Keep the newest line in view.
    {
        let list = list.clone();
        let count = props.state.lines.len() + props.state.pending.len();
        use_effect_with(count, move |_| {
            if let Some(el) = list.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }
    let onsubmit = {
        let (draft, onsend) = (draft.clone(), props.onsend.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Ok(text) = ChatText::try_from(draft.as_str()) {
                onsend.emit(text);
                draft.set(String::new());
            }
        })
    };
    let oninput = {
        let draft = draft.clone();
        Callback::from(move |e: InputEvent| draft.set(e.target_unchecked_into::<web_sys::HtmlInputElement>().value()))
    };
    let s = &props.state;
    html! {
        <section class="chat" aria-label="Chat">
            <ol id="messages" ref={list} aria-live="polite">
                { for s.lines.iter().map(|line| match line {
                    Line::Message(m) => {
                        let deleted = m.body == Body::Deleted;
                        let may_delete = !deleted && (s.is_mine(m) || s.rights.has(Right::Moderate));
                        let seq = m.seq;
                        html! {
                            <li class={classes!("msg", s.is_mine(m).then_some("mine"), deleted.then_some("deleted"))} data-seq={m.seq.to_string()}>
                                <time>{ browser::clock(m.at) }</time>
                                <b class="who">{ m.name.as_str() }</b>
                                <span class="text">{ body_text(&m.body) }</span>
                                if may_delete {
                                    <button type="button" class="delete" aria-label="Delete this message"
                                            onclick={props.ondelete.reform(move |_: MouseEvent| seq)}>{ "×" }</button>
                                }
                            </li>
                        }
                    },
                    Line::Notice(Notice::Truncated { oldest }) => html! {
                        <li class="notice truncated">{ format!("Earlier messages are no longer available (history starts at #{oldest}).") }</li>
                    },
                    Line::Notice(Notice::Reset) => html! {
                        <li class="notice reset">{ "The server's history was reset; showing what it has now." }</li>
                    },
                }) }
                { for s.pending.iter().map(|p| html! {
                    <li class="msg mine pending" title="sending…">
                        <time>{ browser::clock(p.at) }</time>
                        <b class="who">{ s.name.as_str() }</b>
                        <span class="text">{ body_text(&p.body) }</span>
                        <span class="sending">{ " (sending…)" }</span>
                    </li>
                }) }
            </ol>
            if s.status != Status::Online || s.rights.has(Right::Publish) || s.rights.is_empty() {
                <form id="compose" {onsubmit}>
                    <input id="draft" value={(*draft).clone()} {oninput} placeholder="Message" aria-label="Message" maxlength="8000" />
                    <button type="submit">{ "Send" }</button>
                </form>
            } else {
                <p id="read-only" class="hint">{ "You can read this room but not post in it." }</p>
            }
        </section>
    }
}

//! The chat: history and live messages grouped by sender with a separator for each day,
//! ours marked, ours pending until acked, notices where history was truncated or reset, and
//! the compose box.

use super::icons::{icon, Icon};
use crate::browser;
use crate::state::room::{Line, Notice, RoomState, Status};
use crate::state::text::{file_url, linkify, Piece};
use crate::state::timeline::{day_label, local_day, rows, Row};
use relaycast_shared::limits::TYPING_SEND_EVERY_MS;
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
    /// Give our message `seq` a new text.
    #[prop_or_default]
    pub onedit: Callback<(u64, ChatText)>,
    /// We are typing (called at most every [`TYPING_SEND_EVERY_MS`]).
    #[prop_or_default]
    pub ontyping: Callback<()>,
    /// Now (ms since the Unix epoch), for who is still typing.
    #[prop_or_default]
    pub now: u64,
}

fn body_text(body: &Body) -> String {
    match body {
        Body::Chat { text } => text.to_string(),
        Body::Data { data } => data.to_string(),
        Body::File { name, size, .. } => format!("{name} ({})", crate::state::files::human_bytes(*size)),
        Body::Deleted => "message deleted".to_owned(),
        Body::Edit { text, .. } => text.to_string(),
        Body::Deletion { of } => format!("message {of} deleted"),
    }
}

/// Chat text with its web links clickable (opened apart from the room, with no way back
/// to it).
fn chat_text(text: &ChatText) -> Html {
    linkify(text.as_str())
        .into_iter()
        .map(|piece| match piece {
            Piece::Text(t) => html! { { t } },
            Piece::Link(url) => html! {
                <a href={url.to_owned()} target="_blank" rel="noopener noreferrer">{ url }</a>
            },
        })
        .collect()
}

/// A message's body: chat text with its web links clickable (opened apart from the room, with
/// no way back to it), a file as an attachment to open or save (an image also shown small).
fn body_html(body: &Body, state: &RoomState, newer: Option<&ChatText>) -> Html {
    match (body, &state.grant) {
        (Body::Chat { text }, _) => html! {
            <span class="text">
                { chat_text(newer.unwrap_or(text)) }
            </span>
        },
        (Body::File { hash, name, mime, .. }, Some(grant)) => {
            let open = file_url(&state.room, hash, name.as_str(), grant, false);
            let save = file_url(&state.room, hash, name.as_str(), grant, true);
            html! {
                <span class="text attachment">
                    if mime.as_str().starts_with("image/") {
                        <a href={open.clone()} target="_blank" rel="noopener noreferrer">
                            <img class="attachment-preview" src={open} alt={name.to_string()} loading="lazy" />
                        </a>
                    }
                    <a class="attachment-link" href={save} download={name.to_string()}>{ icon(Icon::File) }{ body_text(body) }</a>
                </span>
            }
        }
        _ => html! { <span class="text">{ body_text(body) }</span> },
    }
}

#[function_component(Chat)]
pub fn chat(props: &ChatProps) -> Html {
    let draft = use_state(String::new);
    // The message being edited, and its text so far.
    let editing = use_state(|| None::<(u64, String)>);
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
    let last_typing = use_mut_ref(|| 0u64);
    let oninput = {
        let (draft, ontyping) = (draft.clone(), props.ontyping.clone());
        Callback::from(move |e: InputEvent| {
            let text = e.target_unchecked_into::<web_sys::HtmlInputElement>().value();
            let now = browser::now_ms();
            if !text.trim().is_empty() && now.saturating_sub(*last_typing.borrow()) >= TYPING_SEND_EVERY_MS {
                *last_typing.borrow_mut() = now;
                ontyping.emit(());
            }
            draft.set(text)
        })
    };
    let s = &props.state;
    let (edits, pending_edits) = (s.edits(), s.pending_edits());
    let edit_input = {
        let editing = editing.clone();
        Callback::from(move |e: InputEvent| {
            let text = e.target_unchecked_into::<web_sys::HtmlInputElement>().value();
            if let Some((seq, _)) = *editing {
                editing.set(Some((seq, text)));
            }
        })
    };
    let save_edit = {
        let (editing, onedit) = (editing.clone(), props.onedit.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Some((seq, text)) = &*editing {
                if let Ok(text) = ChatText::try_from(text.trim()) {
                    onedit.emit((*seq, text));
                    editing.set(None);
                }
            }
        })
    };
    let cancel_edit = {
        let editing = editing.clone();
        Callback::from(move |_: MouseEvent| editing.set(None))
    };
    let cancel_on_escape = {
        let editing = editing.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Escape" {
                editing.set(None);
            }
        })
    };
    let offset = browser::utc_offset_ms();
    let today = local_day(browser::now_ms(), offset);
    html! {
        <section class="chat" aria-label="Chat">
            <ol id="messages" ref={list} aria-live="polite">
                { for rows(&s.lines, offset).into_iter().map(|row| match row {
                    Row::Day(day) => html! {
                        <li class="day"><span>{ day_label(day, today, || browser::day_date(day)) }</span></li>
                    },
                    Row::Line { index, continues } => match &s.lines[index] {
                        Line::Message(m) => {
                            let deleted = m.body == Body::Deleted;
                            let mine = s.is_mine(m);
                            let may_delete = !deleted && (mine || s.rights.has(Right::Moderate));
                            let may_edit = mine && matches!(m.body, Body::Chat { .. }) && s.rights.has(Right::Publish);
                            let seq = m.seq;
                            let (saving, newer) = match (pending_edits.get(&seq), edits.get(&seq)) {
                                (Some(t), _) => (true, Some(*t)),
                                (None, t) => (false, t.copied()),
                            };
                            let editing_this = editing.as_ref().is_some_and(|(e, _)| *e == seq);
                            html! {
                                <li class={classes!("msg", mine.then_some("mine"), deleted.then_some("deleted"), continues.then_some("cont"))}
                                    data-seq={m.seq.to_string()}>
                                    <time>{ browser::clock(m.at) }</time>
                                    <b class="who">{ m.name.as_str() }</b>
                                    if editing_this {
                                        <form class="edit-form" onsubmit={save_edit.clone()} onkeydown={cancel_on_escape.clone()}>
                                            <input id="edit-input" aria-label="Edit your message" maxlength="8000" autofocus=true
                                                value={editing.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()} oninput={edit_input.clone()} />
                                            <button type="submit" class="primary">{ "Save" }</button>
                                            <button type="button" onclick={cancel_edit.clone()}>{ "Cancel" }</button>
                                        </form>
                                    } else {
                                        { body_html(&m.body, s, newer) }
                                        if saving {
                                            <span class="sending">{ " (saving…)" }</span>
                                        } else if newer.is_some() {
                                            <span class="edited">{ " (edited)" }</span>
                                        }
                                    }
                                    if may_edit && !editing_this {
                                        <button type="button" class="msg-action edit" aria-label="Edit this message"
                                                onclick={{
                                                    let (editing, text) = (editing.clone(), newer.map(|t| t.to_string()).unwrap_or_else(|| body_text(&m.body)));
                                                    Callback::from(move |_: MouseEvent| editing.set(Some((seq, text.clone()))))
                                                }}>{ icon(Icon::Edit) }</button>
                                    }
                                    if may_delete && !editing_this {
                                        <button type="button" class="msg-action delete" aria-label="Delete this message"
                                                onclick={props.ondelete.reform(move |_: MouseEvent| seq)}>{ "×" }</button>
                                    }
                                </li>
                            }
                        }
                        Line::Notice(Notice::Truncated { oldest }) => html! {
                            <li class="notice truncated">{ format!("Earlier messages are no longer available (history starts at #{oldest}).") }</li>
                        },
                        Line::Notice(Notice::Reset) => html! {
                            <li class="notice reset">{ "The server's history was reset; showing what it has now." }</li>
                        },
                    },
                }) }
                { for s.pending.iter().filter(|p| p.body.target().is_none()).map(|p| html! {
                    <li class="msg mine pending" title="sending…">
                        <time>{ browser::clock(p.at) }</time>
                        <b class="who">{ s.name.as_str() }</b>
                        <span class="text">{ body_text(&p.body) }</span>
                        <span class="sending">{ " (sending…)" }</span>
                    </li>
                }) }
            </ol>
            <p id="typing" class="typing" aria-live="polite">{ s.typing_label(props.now.max(browser::now_ms())).unwrap_or_default() }</p>
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

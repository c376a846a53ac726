//! The room's files: a button and drag-and-drop to send, and every transfer with its progress,
//! path (peer or server), speed, a preview for images and a link to save it.

use crate::state::files::{human_bytes, Direction, Phase, Source, Transfer};
use relaycast_shared::BlobHash;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct FilesProps {
    pub transfers: Vec<Transfer>,
    pub onpick: Callback<web_sys::File>,
    pub onfetch: Callback<BlobHash>,
    /// May send files (the `upload` right): without it the button is not shown.
    #[prop_or(true)]
    pub can_send: bool,
}

/// Every file of a `FileList` (an input's or a drop's).
pub fn each_file(list: Option<web_sys::FileList>, onpick: &Callback<web_sys::File>) {
    let Some(list) = list else { return };
    for i in 0..list.length() {
        if let Some(file) = list.item(i) {
            onpick.emit(file);
        }
    }
}

fn status(t: &Transfer) -> String {
    match (&t.phase, t.direction) {
        (Phase::Hashing, _) => "reading…".into(),
        (Phase::Available, _) => "on the server".into(),
        (Phase::Failed(why), _) => why.clone(),
        (Phase::Transferring, Direction::Sending) => {
            let peers = if t.to_peers.is_empty() {
                String::new()
            } else {
                let done = t.to_peers.values().filter(|sent| **sent >= t.size).count();
                format!(" · to peers {done}/{}", t.to_peers.len())
            };
            format!("uploading {}%{peers}", (t.fraction() * 100.0).round())
        }
        (Phase::Done, Direction::Sending) => {
            let peers = t.to_peers.values().filter(|sent| **sent >= t.size).count();
            if peers > 0 {
                format!("sent · on the server · to {peers} peer{}", if peers == 1 { "" } else { "s" })
            } else {
                "sent · on the server".into()
            }
        }
        (Phase::Transferring, Direction::Receiving) => format!("receiving {}%", (t.fraction() * 100.0).round()),
        (Phase::Done, Direction::Receiving) => {
            if t.verified {
                "received · verified".into()
            } else {
                "received".into()
            }
        }
    }
}

fn via(t: &Transfer) -> &'static str {
    match (&t.source, t.direction) {
        (_, Direction::Sending) => "sending",
        (Some(Source::Peer(_)), _) => "peer",
        (Some(Source::Server), _) => "server",
        (None, _) => "",
    }
}

#[function_component(FilesPanel)]
pub fn files_panel(props: &FilesProps) -> Html {
    let onchange = {
        let onpick = props.onpick.clone();
        Callback::from(move |e: Event| {
            let input: web_sys::HtmlInputElement = e.target_unchecked_into();
            each_file(input.files(), &onpick);
            input.set_value("");
        })
    };
    html! {
        <section id="files" class="files" aria-label="Files">
            <div class="files-head">
                <h2>{ "Files" }</h2>
                if props.can_send {
                    <label class="file-button">
                        { "Send a file" }
                        <input id="file-input" type="file" multiple=true {onchange} />
                    </label>
                    <span class="hint">{ "or drop files on the room" }</span>
                }
            </div>
            <ul id="transfers">
                { for props.transfers.iter().rev().map(|t| {
                    let hash = t.hash.as_ref().map(|h| h.to_string()).unwrap_or_default();
                    let phase = match &t.phase {
                        Phase::Hashing => "hashing",
                        Phase::Available => "available",
                        Phase::Transferring => "transferring",
                        Phase::Done => "done",
                        Phase::Failed(_) => "failed",
                    };
                    let fetch = t.hash.clone().map(|h| props.onfetch.reform(move |_: MouseEvent| h.clone()));
                    let speed = t.speed.bytes_per_sec();
                    html! {
                        <li class={classes!("transfer", phase)} id={format!("file-{hash}")} data-hash={hash.clone()}
                            data-phase={phase} data-via={via(t)} data-verified={t.verified.to_string()}>
                            if let (true, Some(url)) = (t.is_image(), &t.url) {
                                <img class="preview" src={url.clone()} alt={t.name.to_string()} />
                            }
                            <div class="file-info">
                                <span class="file-name">{ t.name.as_str() }</span>
                                <span class="file-size">{ human_bytes(t.size) }</span>
                                <progress max="1" value={t.fraction().to_string()} aria-label={format!("{} progress", t.name)} />
                                <span class="file-status">{ status(t) }</span>
                                if !via(t).is_empty() && t.direction == Direction::Receiving {
                                    <span class="file-via">{ format!("via {}", via(t)) }</span>
                                }
                                if t.phase == Phase::Transferring && speed > 0 {
                                    <span class="file-speed">{ format!("{}/s", human_bytes(speed)) }</span>
                                }
                            </div>
                            if t.phase == Phase::Available {
                                if let Some(onclick) = fetch {
                                    <button type="button" class="fetch" {onclick}>{ "Download" }</button>
                                }
                            }
                            if let (Phase::Done, Some(url)) = (&t.phase, &t.url) {
                                <a class="save" href={url.clone()} download={t.name.to_string()}>{ "Save" }</a>
                            }
                        </li>
                    }
                }) }
            </ul>
        </section>
    }
}

/// Handlers for an element that takes dropped files: (dragover, drop).
pub fn drop_handlers(onpick: Callback<web_sys::File>) -> (Callback<DragEvent>, Callback<DragEvent>) {
    let ondragover = Callback::from(|e: DragEvent| e.prevent_default());
    let ondrop = Callback::from(move |e: DragEvent| {
        e.prevent_default();
        let files = e.data_transfer().and_then(|d| d.files());
        each_file(files, &onpick);
    });
    (ondragover, ondrop)
}

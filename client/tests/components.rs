//! Components rendered in headless Chromium (wasm-bindgen-test): what a person sees and can do.

#![cfg(target_arch = "wasm32")]

use relaycast_client::components::chat::{Chat, ChatProps};
use relaycast_client::components::lobby::{Lobby, LobbyProps};
use relaycast_client::components::status::{StatusBadge, StatusProps};
use relaycast_client::state::room::{Action, Pending, RoomState, Status};
use relaycast_shared::*;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web_sys::{Element, HtmlButtonElement, HtmlElement};
use yew::Callback;

wasm_bindgen_test_configure!(run_in_browser);

fn root() -> Element {
    let doc = gloo_utils::document();
    let el = doc.create_element("div").unwrap();
    doc.body().unwrap().append_child(&el).unwrap();
    el
}

fn find<T: JsCast>(root: &Element, selector: &str) -> T {
    root.query_selector(selector).unwrap().unwrap_or_else(|| panic!("no {selector}")).dyn_into().unwrap()
}

fn text(root: &Element, selector: &str) -> String {
    find::<HtmlElement>(root, selector).inner_text()
}

/// A chat over `state` whose callbacks do nothing.
fn chat_props(state: RoomState) -> ChatProps {
    ChatProps {
        state: Rc::new(state),
        onsend: Callback::noop(),
        ondelete: Callback::noop(),
        onedit: Callback::noop(),
        ontyping: Callback::noop(),
        now: 0,
    }
}

#[wasm_bindgen_test]
async fn lobby_refuses_bad_room_names_and_joins_a_recent_room() {
    let root = root();
    let joined = Rc::new(RefCell::new(None));
    let got = joined.clone();
    let props = LobbyProps {
        name: "Ada".into(),
        room: "bad room!".into(),
        recent: vec!["standup".into()],
        onjoin: Callback::from(move |j: (RoomName, DisplayName)| *got.borrow_mut() = Some(j)),
    };
    yew::Renderer::<Lobby>::with_root_and_props(root.clone(), props).render();
    yew::scheduler::flush().await;
    assert!(find::<HtmlButtonElement>(&root, "#join").disabled(), "an invalid room cannot be joined");
    assert!(text(&root, ".field-error").contains("Room"), "and the reason is shown");

    // With a name given, a recent room joins in one click.
    find::<HtmlButtonElement>(&root, ".recent button").click();
    yew::scheduler::flush().await;
    let (room, name) = joined.borrow().clone().expect("joined");
    assert_eq!((room.as_str(), name.as_str()), ("standup", "Ada"));
}

#[wasm_bindgen_test]
async fn status_badge_counts_down_while_reconnecting() {
    let root = root();
    let props = StatusProps { status: Status::Reconnecting { attempt: 1, retry_at: 5_000 }, now: 2_100 };
    yew::Renderer::<StatusBadge>::with_root_and_props(root.clone(), props).render();
    yew::scheduler::flush().await;
    assert_eq!(text(&root, "#status"), "reconnecting in 3 s");
    assert!(find::<Element>(&root, "#status").class_name().contains("reconnecting"));
}

#[wasm_bindgen_test]
async fn chat_marks_ours_shows_pending_and_truncation() {
    let room = RoomName::try_from("r").unwrap();
    let mut state = RoomState::new(room.clone(), DisplayName::try_from("Ada").unwrap());
    let msg = |seq: u64, from: &str, text: &str| RoomMessage {
        seq,
        from: PeerId::try_from(from).unwrap(),
        name: DisplayName::try_from(from).unwrap(),
        id: ClientMsgId::try_from(format!("x{seq}")).unwrap(),
        user: None,
        at: 0,
        body: Body::Chat { text: ChatText::try_from(text).unwrap() },
    };
    state.apply(Action::Server(ServerMsg::HistoryTruncated {
        room: room.clone(),
        requested_after: 1,
        oldest_available: 7,
    }));
    state.apply(Action::Server(ServerMsg::History {
        room: room.clone(),
        messages: vec![msg(7, "Grace", "hi")],
        done: true,
    }));
    state.apply(Action::Publish(Pending {
        id: ClientMsgId::try_from("p1").unwrap(),
        body: Body::Chat { text: ChatText::try_from("on its way").unwrap() },
        at: 0,
    }));
    let root = root();
    yew::Renderer::<Chat>::with_root_and_props(root.clone(), chat_props(state)).render();
    yew::scheduler::flush().await;
    assert!(text(&root, ".notice.truncated").contains("#7"));
    assert_eq!(text(&root, "li.msg[data-seq='7'] .text"), "hi");
    assert!(text(&root, "li.pending").contains("on its way"));
    assert!(text(&root, "li.pending").contains("sending"));
}

#[wasm_bindgen_test]
async fn files_panel_shows_progress_path_and_offers_large_files_for_download() {
    use relaycast_client::components::files::{FilesPanel, FilesProps};
    use relaycast_client::state::files::{Direction, Phase, Source, Transfer};
    let root = root();
    let fetched = Rc::new(RefCell::new(None));
    let got = fetched.clone();
    let hash = |c: char| BlobHash::try_from(c.to_string().repeat(64)).unwrap();
    let mime = MediaType::try_from("application/octet-stream").unwrap();
    let mut incoming =
        Transfer::new(1, FileName::try_from("log.txt").unwrap(), 2_000_000, mime.clone(), Direction::Receiving, 0);
    incoming.hash = Some(hash('a'));
    incoming.phase = Phase::Transferring;
    incoming.source = Some(Source::Peer(PeerId::try_from("p1").unwrap()));
    incoming.progress(500_000, 1000);
    let mut large =
        Transfer::new(2, FileName::try_from("movie.mkv").unwrap(), 900_000_000, mime, Direction::Receiving, 0);
    large.hash = Some(hash('b'));
    large.on_server = true;
    let props = FilesProps {
        transfers: vec![incoming, large],
        onpick: Callback::from(|_| {}),
        onfetch: Callback::from(move |h: BlobHash| *got.borrow_mut() = Some(h)),
        can_send: true,
    };
    yew::Renderer::<FilesPanel>::with_root_and_props(root.clone(), props).render();
    yew::scheduler::flush().await;
    let row = format!("#file-{}", hash('a'));
    assert!(text(&root, &format!("{row} .file-status")).contains("receiving 25%"));
    assert_eq!(text(&root, &format!("{row} .file-via")), "via peer");
    assert_eq!(find::<Element>(&root, &row).get_attribute("data-phase").as_deref(), Some("transferring"));
    assert!(text(&root, &format!("#file-{} .file-size", hash('b'))).contains("900 MB"));
    find::<HtmlButtonElement>(&root, &format!("#file-{} button.fetch", hash('b'))).click();
    yew::scheduler::flush().await;
    assert_eq!(fetched.borrow().clone(), Some(hash('b')), "Download asks for the server's copy");
}

#[wasm_bindgen_test]
async fn without_the_rights_there_is_no_compose_box_and_no_file_button() {
    use relaycast_client::components::files::{FilesPanel, FilesProps};
    let room = RoomName::try_from("r").unwrap();
    let mut state = RoomState::new(room.clone(), DisplayName::try_from("Bo").unwrap());
    state.apply(Action::Server(ServerMsg::Joined {
        room,
        epoch: Epoch::try_from("e1").unwrap(),
        last_seq: 0,
        peers: vec![],
        rights: Rights::parse_list("join,history").unwrap(),
    }));
    let chat = root();
    yew::Renderer::<Chat>::with_root_and_props(chat.clone(), chat_props(state)).render();
    let files = root();
    let props = FilesProps { transfers: vec![], onpick: Callback::noop(), onfetch: Callback::noop(), can_send: false };
    yew::Renderer::<FilesPanel>::with_root_and_props(files.clone(), props).render();
    yew::scheduler::flush().await;
    assert!(text(&chat, "#read-only").contains("not post"));
    assert!(chat.query_selector("#draft").unwrap().is_none());
    assert!(files.query_selector("#file-input").unwrap().is_none());
}

#[wasm_bindgen_test]
async fn side_panel_shows_one_tab_with_badges_on_the_others_and_arrows_move() {
    use relaycast_client::components::side::{SidePanel, SideProps, Tab};
    use yew::html;
    let root = root();
    let picked = Rc::new(RefCell::new(Vec::new()));
    let got = picked.clone();
    let props = SideProps {
        tab: Tab::People,
        ontab: Callback::from(move |t: Tab| got.borrow_mut().push(t)),
        chat_badge: Some("3".into()),
        files_badge: None,
        people: 2,
        chat: html! { <p id="chat-content">{ "chat" }</p> },
        people_panel: html! { <p id="people-content">{ "people" }</p> },
        files: html! { <p id="files-content">{ "files" }</p> },
    };
    yew::Renderer::<SidePanel>::with_root_and_props(root.clone(), props).render();
    yew::scheduler::flush().await;
    let panel_hidden =
        |id: &str| find::<HtmlElement>(&root, id).closest("[role=tabpanel]").unwrap().unwrap().has_attribute("hidden");
    assert!(!panel_hidden("#people-content"), "the open tab is shown");
    assert!(panel_hidden("#chat-content") && panel_hidden("#files-content"), "the others are hidden");
    assert_eq!(find::<Element>(&root, "#tab-people").get_attribute("aria-selected").as_deref(), Some("true"));
    assert_eq!(text(&root, "#tab-chat .badge"), "3", "unread messages on the closed chat tab");
    assert!(root.query_selector("#tab-files .badge").unwrap().is_none(), "nothing new in files");
    assert_eq!(text(&root, "#tab-people .count"), "2");
    find::<HtmlButtonElement>(&root, "#tab-chat").click();
    let right = web_sys::KeyboardEvent::new_with_keyboard_event_init_dict("keydown", &{
        let init = web_sys::KeyboardEventInit::new();
        init.set_key("ArrowRight");
        init.set_bubbles(true);
        init
    })
    .unwrap();
    find::<Element>(&root, "#tab-people").dispatch_event(&right).unwrap();
    yew::scheduler::flush().await;
    assert_eq!(*picked.borrow(), vec![Tab::Chat, Tab::Files], "a click opens a tab; the right arrow moves to the next");
}

#[wasm_bindgen_test]
async fn invite_copies_the_link_and_shows_a_qr_code() {
    use relaycast_client::components::invite::{Invite, InviteProps};
    let root = root();
    let props = InviteProps { link: "http://127.0.0.1:8080/r/standup".into() };
    yew::Renderer::<Invite>::with_root_and_props(root.clone(), props).render();
    yew::scheduler::flush().await;
    assert!(root.query_selector("#invite-panel").unwrap().is_none(), "closed at first");
    find::<HtmlButtonElement>(&root, "#invite").click();
    yew::scheduler::flush().await;
    assert_eq!(find::<web_sys::HtmlInputElement>(&root, "#invite-link").value(), "http://127.0.0.1:8080/r/standup");
    let qr = find::<Element>(&root, "#invite-qr svg");
    assert!(qr.inner_html().contains("path"), "the QR code is drawn");
}

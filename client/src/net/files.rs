//! File transfers: a file picked here goes peer to peer to everyone present (the peer links'
//! `files` data channels, [`crate::net::peer`], paced by `bufferedAmountLowThreshold`) and up to the server's blob cache
//! (resumable upload) at the same time; once the server has it, a file message tells the room.
//! A receiver keeps the peer-to-peer copy if it completes, and fetches from the server when the
//! peer stalls or leaves, or when the file was sent before it joined; an interrupted download
//! resumes with `Range`. Every received file is checked against its SHA-256 before it is shown.
//!
//! The decisions (stall, fall back, framing, speed) are pure, in [`crate::state::files`].

use crate::browser;
use crate::net::http::{js_message, request, text};
use crate::net::peer::{LinkEvent, Links};
use crate::state::files::{self, *};
use js_sys::{Array, Promise, Uint8Array};
use relaycast_shared::blobs::{blob_path, uploads_path, ApiError, NewUpload, UPLOAD_OFFSET};
use relaycast_shared::{BlobHash, Body, FileName, MediaType, PeerId, RoomName};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::{Rc, Weak};
use std::time::Duration;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{RtcDataChannel, RtcDataChannelState};
use yew::Callback;

/// Bytes read from a local file per step (hashing, and peer-to-peer sending).
const READ_STEP: u64 = 1024 * 1024;
/// Attempts of one upload chunk or one download before the transfer fails.
const ATTEMPTS: u32 = 6;

/// A file arriving peer to peer.
struct Incoming {
    from: PeerId,
    parts: Array,
    hasher: Sha256,
    next: u64,
}

struct Inner {
    room: RoomName,
    me: Option<PeerId>,
    grant: Option<String>,
    peers: Vec<PeerId>,
    transfers: Vec<Transfer>,
    next_id: u64,
    incoming: HashMap<BlobHash, Incoming>,
    downloading: HashSet<BlobHash>,
    links: Links,
    publish: Callback<Body>,
    on_view: Callback<Vec<Transfer>>,
}

/// The transfers of one room; clones share them.
#[derive(Clone)]
pub struct Files {
    inner: Rc<RefCell<Inner>>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files").finish_non_exhaustive()
    }
}

impl PartialEq for Files {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

fn notify(inner: &Rc<RefCell<Inner>>) {
    let (cb, view) = {
        let i = inner.borrow();
        (i.on_view.clone(), i.transfers.clone())
    };
    cb.emit(view);
}

/// Change the transfer `id` (if it still exists) and tell the UI.
fn update(weak: &Weak<RefCell<Inner>>, id: u64, f: impl FnOnce(&mut Transfer)) {
    let Some(inner) = weak.upgrade() else { return };
    if let Some(t) = inner.borrow_mut().transfers.iter_mut().find(|t| t.id == id) {
        f(t);
    }
    notify(&inner);
}

fn trace(message: &str) {
    web_sys::console::debug_1(&JsValue::from_str(&format!("[files] {message}")));
}

impl Files {
    pub fn new(room: RoomName, links: Links, publish: Callback<Body>, on_view: Callback<Vec<Transfer>>) -> Files {
        let inner = Rc::new(RefCell::new(Inner {
            room,
            me: None,
            grant: None,
            peers: Vec::new(),
            transfers: Vec::new(),
            next_id: 1,
            incoming: HashMap::new(),
            downloading: HashSet::new(),
            links: links.clone(),
            publish,
            on_view,
        }));
        let weak = Rc::downgrade(&inner);
        links.subscribe(Callback::from(move |event| {
            if let (LinkEvent::File(from, bytes), Some(inner)) = (event, weak.upgrade()) {
                on_frame(&inner, from, &bytes);
            }
        }));
        yew::platform::spawn_local(watchdog(Rc::downgrade(&inner)));
        Files { inner }
    }

    /// Who we are, the room's grant, who is present.
    pub fn sync(&self, me: Option<PeerId>, grant: Option<String>, peers: Vec<PeerId>) {
        let mut i = self.inner.borrow_mut();
        i.me = me;
        i.grant = grant;
        i.peers = peers;
    }

    /// The room's file messages (history and live): (hash, name, size, type, sender).
    pub fn room_files(&self, files: Vec<(BlobHash, FileName, u64, MediaType, PeerId)>) {
        let mut fetch = Vec::new();
        {
            let mut i = self.inner.borrow_mut();
            let now = browser::now_ms();
            for (hash, name, size, mime, sender) in files {
                match i.transfers.iter_mut().find(|t| t.hash.as_ref() == Some(&hash)) {
                    Some(t) => {
                        t.on_server = true;
                        if t.phase == Phase::Available && t.fetch_on_sight() {
                            fetch.push(hash);
                        }
                    }
                    None => {
                        let id = i.next_id;
                        i.next_id += 1;
                        let mut t = Transfer::new(id, name, size, mime, Direction::Receiving, now);
                        t.hash = Some(hash.clone());
                        t.on_server = true;
                        t.sender = Some(sender);
                        if t.fetch_on_sight() {
                            fetch.push(hash);
                        }
                        i.transfers.push(t);
                    }
                }
            }
        }
        for hash in fetch {
            self.fetch(&hash);
        }
        notify(&self.inner);
    }

    /// Fetch a file from the server (a click on a large one, or on sight).
    pub fn fetch(&self, hash: &BlobHash) {
        if !self.inner.borrow_mut().downloading.insert(hash.clone()) {
            return;
        }
        yew::platform::spawn_local(download(Rc::downgrade(&self.inner), hash.clone()));
    }

    /// Send a file: hash it, then peer to peer and to the server at once.
    pub fn send(&self, file: web_sys::File) {
        let now = browser::now_ms();
        let name = FileName::try_from(file.name())
            .unwrap_or_else(|_| FileName::try_from("file").unwrap_or_else(|_| unreachable!()));
        let mime = MediaType::try_from(file.type_())
            .unwrap_or_else(|_| MediaType::try_from("application/octet-stream").unwrap_or_else(|_| unreachable!()));
        let size = file.size() as u64;
        let id = {
            let mut i = self.inner.borrow_mut();
            let id = i.next_id;
            i.next_id += 1;
            let mut t = Transfer::new(id, name, size, mime, Direction::Sending, now);
            t.url = web_sys::Url::create_object_url_with_blob(&file).ok();
            i.transfers.push(t);
            id
        };
        notify(&self.inner);
        yew::platform::spawn_local(send_file(Rc::downgrade(&self.inner), id, file));
    }
}

async fn sleep_ms(ms: u64) {
    yew::platform::time::sleep(Duration::from_millis(ms)).await;
}

async fn read_slice(blob: &web_sys::Blob, start: u64, end: u64) -> Result<Uint8Array, String> {
    let slice = blob.slice_with_f64_and_f64(start as f64, end as f64).map_err(|e| js_message(&e))?;
    let buf = JsFuture::from(slice.array_buffer()).await.map_err(|e| js_message(&e))?;
    Ok(Uint8Array::new(&buf))
}

async fn hash_blob(blob: &web_sys::Blob, size: u64) -> Result<BlobHash, String> {
    let mut hasher = Sha256::new();
    let mut at = 0;
    while at < size {
        let end = (at + READ_STEP * 4).min(size);
        hasher.update(read_slice(blob, at, end).await?.to_vec());
        at = end;
    }
    BlobHash::try_from(hex::encode(hasher.finalize())).map_err(|e| e.to_string())
}

async fn send_file(weak: Weak<RefCell<Inner>>, id: u64, file: web_sys::File) {
    let size = file.size() as u64;
    let hash = match hash_blob(&file, size).await {
        Ok(hash) => hash,
        Err(e) => return update(&weak, id, |t| t.phase = Phase::Failed(format!("cannot read the file: {e}"))),
    };
    let Some(inner) = weak.upgrade() else { return };
    let (meta, links) = {
        let mut i = inner.borrow_mut();
        // The same bytes picked twice: one transfer.
        if i.transfers.iter().any(|t| t.id != id && t.hash.as_ref() == Some(&hash)) {
            i.transfers.retain(|t| t.id != id);
            drop(i);
            return notify(&inner);
        }
        let Some(t) = i.transfers.iter_mut().find(|t| t.id == id) else { return };
        t.hash = Some(hash.clone());
        t.phase = Phase::Transferring;
        ((hash.clone(), t.name.clone(), size, t.mime.clone()), i.links.clone())
    };
    notify(&inner);
    drop(inner);
    trace(&format!("sending {} ({size} bytes) as {hash}", meta.1));
    let p2p = send_to_peers(weak.clone(), id, file.clone(), meta.clone(), links);
    let server = upload(weak.clone(), id, file, meta.clone());
    let ((), uploaded) = futures_util::join!(p2p, server);
    match uploaded {
        Ok(()) => {
            let Some(inner) = weak.upgrade() else { return };
            let publish = inner.borrow().publish.clone();
            let (hash, name, size, mime) = meta;
            publish.emit(Body::File { hash, name, size, mime });
            update(&weak, id, |t| {
                t.phase = Phase::Done;
                t.uploaded = t.size;
            });
        }
        Err(e) => update(&weak, id, |t| t.phase = Phase::Failed(e)),
    }
}

type Meta = (BlobHash, FileName, u64, MediaType);

/// Open data links to everyone present, wait (a little) for their `files` channels, and send
/// to each that opened.
async fn send_to_peers(weak: Weak<RefCell<Inner>>, id: u64, file: web_sys::File, meta: Meta, links: Links) {
    let present = weak.upgrade().map(|i| i.borrow().peers.len()).unwrap_or(0);
    if present == 0 {
        return;
    }
    links.connect_all();
    let mut channels = Vec::new();
    for _ in 0..50 {
        channels = links.open_file_channels();
        if channels.len() >= present {
            break;
        }
        sleep_ms(100).await;
    }
    trace(&format!("{} of {present} peers reachable directly", channels.len()));
    let sends =
        channels.into_iter().map(|(peer, dc)| send_to_peer(weak.clone(), id, file.clone(), meta.clone(), peer, dc));
    futures_util::future::join_all(sends).await;
}

/// Resolves when `dc` drains below its low-water mark (or closes).
async fn drained(dc: &RtcDataChannel) {
    let promise = Promise::new(&mut |resolve, _| {
        dc.set_onbufferedamountlow(Some(&resolve));
        dc.set_onclose(Some(&resolve));
    });
    let _ = JsFuture::from(promise).await;
    dc.set_onbufferedamountlow(None);
    dc.set_onclose(None);
}

async fn send_to_peer(
    weak: Weak<RefCell<Inner>>,
    id: u64,
    file: web_sys::File,
    meta: Meta,
    peer: PeerId,
    dc: RtcDataChannel,
) {
    let (hash, name, size, mime) = meta;
    dc.set_buffered_amount_low_threshold(P2P_LOW_WATER);
    let offer = Frame::Offer { hash: hash.clone(), name, size, mime }.encode();
    if dc.send_with_u8_array(&offer).is_err() {
        return;
    }
    let mut at = 0;
    while at < size {
        let end = (at + READ_STEP).min(size);
        let Ok(block) = read_slice(&file, at, end).await else { return };
        let block = block.to_vec();
        for (i, piece) in block.chunks(P2P_CHUNK).enumerate() {
            while dc.buffered_amount() > P2P_HIGH_WATER && dc.ready_state() == RtcDataChannelState::Open {
                drained(&dc).await;
            }
            if dc.ready_state() != RtcDataChannelState::Open {
                trace(&format!("{peer} went away at byte {at}"));
                return;
            }
            let offset = at + (i * P2P_CHUNK) as u64;
            let mut frame = Frame::chunk_header(&hash, offset);
            frame.extend_from_slice(piece);
            if dc.send_with_u8_array(&frame).is_err() {
                return;
            }
        }
        at = end;
        let sent = at;
        update(&weak, id, |t| {
            t.to_peers.insert(peer.clone(), sent);
        });
    }
    trace(&format!("sent {hash} to {peer}"));
}

/// The server's error of a failed answer (its `{code, message}` body), if it sent one.
async fn api_error_of(response: &web_sys::Response) -> Option<ApiError> {
    files::api_error(&text(response).await)
}

/// A failed answer in words, with the server's code.
async fn api_error(response: &web_sys::Response) -> String {
    files::error_text(response.status(), api_error_of(response).await.as_ref())
}

fn header_u64(response: &web_sys::Response, name: &str) -> Option<u64> {
    response.headers().get(name).ok().flatten().and_then(|v| v.parse().ok())
}

/// The room's grant, waiting for it after a (re)join; and the room.
async fn grant(weak: &Weak<RefCell<Inner>>) -> Result<(String, RoomName), String> {
    for _ in 0..100 {
        let found = {
            let inner = weak.upgrade().ok_or("left the room")?;
            let i = inner.borrow();
            i.grant.as_ref().map(|g| (format!("Bearer {g}"), i.room.clone()))
        };
        if let Some(found) = found {
            return Ok(found);
        }
        sleep_ms(100).await;
    }
    Err("no permission for the room's files (not joined)".into())
}

/// Resumable upload to the server's blob cache.
async fn upload(weak: Weak<RefCell<Inner>>, id: u64, file: web_sys::File, meta: Meta) -> Result<(), String> {
    let (hash, name, size, mime) = meta;
    let (auth, room) = grant(&weak).await?;
    let announce =
        serde_json::to_string(&NewUpload { hash: hash.clone(), size, name, mime }).map_err(|e| e.to_string())?;
    let created = request(
        "POST",
        &uploads_path(&room),
        &[("authorization", auth), ("content-type", "application/json".into())],
        Some(&JsValue::from_str(&announce)),
    )
    .await?;
    match created.status() {
        // The server had these bytes already.
        200 => return Ok(()),
        201 => {}
        _ => return Err(api_error(&created).await),
    }
    let location = created.headers().get("location").ok().flatten().ok_or("no upload location")?;
    let mut offset = 0u64;
    let mut failures = 0;
    while offset < size {
        let end = (offset + UPLOAD_CHUNK).min(size);
        let (auth, _) = grant(&weak).await?;
        let chunk = file.slice_with_f64_and_f64(offset as f64, end as f64).map_err(|e| js_message(&e))?;
        let headers = [("authorization", auth.clone()), (UPLOAD_OFFSET, offset.to_string())];
        let answer = match request("PATCH", &location, &headers, Some(&chunk)).await {
            Ok(r) => {
                let error = if r.ok() { None } else { api_error_of(&r).await };
                Ok((files::after_chunk(r.status(), error.as_ref()), r, error))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((ChunkStep::Finished, ..)) => offset = size,
            Ok((ChunkStep::Resync, r, _)) => {
                offset = header_u64(&r, UPLOAD_OFFSET).unwrap_or(offset);
                failures = 0;
            }
            Ok((ChunkStep::Fail, r, error)) => return Err(files::error_text(r.status(), error.as_ref())),
            other => {
                failures += 1;
                if failures >= ATTEMPTS {
                    return Err(match other {
                        Ok((_, r, error)) => files::error_text(r.status(), error.as_ref()),
                        Err(e) => format!("upload failed: {e}"),
                    });
                }
                sleep_ms(500 << failures).await;
                // Where does it stand? (Part of the chunk may have arrived.)
                if let Ok(r) = request("HEAD", &location, &[("authorization", auth)], None).await {
                    offset = header_u64(&r, UPLOAD_OFFSET).unwrap_or(offset);
                }
            }
        }
        let uploaded = offset;
        update(&weak, id, |t| {
            t.uploaded = uploaded;
            t.speed.record(browser::now_ms(), uploaded);
        });
    }
    Ok(())
}

/// A message on a `files` channel.
fn on_frame(inner: &Rc<RefCell<Inner>>, from: PeerId, bytes: &[u8]) {
    let frame = match Frame::decode(bytes) {
        Ok(frame) => frame,
        Err(e) => return trace(&format!("ignoring a bad frame from {from}: {e}")),
    };
    let now = browser::now_ms();
    let mut done = None;
    {
        let mut i = inner.borrow_mut();
        match frame {
            Frame::Offer { hash, name, size, mime } => {
                let existing = i.transfers.iter().position(|t| t.hash.as_ref() == Some(&hash));
                let busy = existing.is_some_and(|at| {
                    let t = &i.transfers[at];
                    t.phase == Phase::Done || t.direction == Direction::Sending || t.source == Some(Source::Server)
                });
                if busy {
                    return;
                }
                trace(&format!("{from} offers {name} ({size} bytes)"));
                let at = match existing {
                    Some(at) => at,
                    None => {
                        let id = i.next_id;
                        i.next_id += 1;
                        let mut t = Transfer::new(id, name, size, mime, Direction::Receiving, now);
                        t.hash = Some(hash.clone());
                        i.transfers.push(t);
                        i.transfers.len() - 1
                    }
                };
                let t = &mut i.transfers[at];
                t.phase = Phase::Transferring;
                t.source = Some(Source::Peer(from.clone()));
                t.sender = Some(from.clone());
                t.progress(0, now);
                i.incoming.insert(hash, Incoming { from, parts: Array::new(), hasher: Sha256::new(), next: 0 });
                if size == 0 {
                    done = i.transfers[at].hash.clone();
                }
            }
            Frame::Chunk { hash, offset, data } => {
                let Some(incoming) = i.incoming.get_mut(&hash) else { return };
                if incoming.from != from || incoming.next != offset {
                    return;
                }
                incoming.parts.push(&Uint8Array::from(&data[..]));
                incoming.hasher.update(&data);
                incoming.next += data.len() as u64;
                let next = incoming.next;
                if let Some(t) = i.transfers.iter_mut().find(|t| t.hash.as_ref() == Some(&hash)) {
                    t.progress(next, now);
                    if next >= t.size {
                        done = Some(hash);
                    }
                }
            }
        }
    }
    if let Some(hash) = done {
        let incoming = inner.borrow_mut().incoming.remove(&hash);
        if let Some(incoming) = incoming {
            let digest = hex::encode(incoming.hasher.finalize());
            finish(inner, &hash, incoming.parts, digest, Source::Peer(incoming.from));
        }
    }
    notify(inner);
}

/// All bytes of `hash` are here: check them, make them a URL.
fn finish(inner: &Rc<RefCell<Inner>>, hash: &BlobHash, parts: Array, digest: String, source: Source) {
    let mut i = inner.borrow_mut();
    let Some(t) = i.transfers.iter_mut().find(|t| t.hash.as_ref() == Some(hash)) else { return };
    if digest != hash.as_str() {
        trace(&format!("{hash} arrived corrupt from {source:?}"));
        t.phase = Phase::Failed("the bytes do not match the file's hash".into());
        // A corrupt peer copy: the server's may still be good.
        if matches!(source, Source::Peer(_)) && t.on_server {
            t.phase = Phase::Available;
            t.source = None;
        }
        return;
    }
    let props = web_sys::BlobPropertyBag::new();
    props.set_type(t.mime.as_str());
    match web_sys::Blob::new_with_u8_array_sequence_and_options(&parts, &props) {
        Ok(blob) => {
            t.url = web_sys::Url::create_object_url_with_blob(&blob).ok();
            t.phase = Phase::Done;
            t.verified = true;
            t.received = t.size;
            t.source = Some(source.clone());
            trace(&format!("{} complete via {source:?}, verified", t.name));
        }
        Err(e) => t.phase = Phase::Failed(js_message(&e)),
    }
}

/// Download `hash` from the server, resuming with `Range` after an interruption.
async fn download(weak: Weak<RefCell<Inner>>, hash: BlobHash) {
    let result = download_inner(&weak, &hash).await;
    let Some(inner) = weak.upgrade() else { return };
    inner.borrow_mut().downloading.remove(&hash);
    match result {
        Ok((parts, digest)) => finish(&inner, &hash, parts, digest, Source::Server),
        Err(e) => {
            if let Some(t) = inner.borrow_mut().transfers.iter_mut().find(|t| t.hash.as_ref() == Some(&hash)) {
                t.phase = Phase::Failed(e);
            }
        }
    }
    notify(&inner);
}

async fn download_inner(weak: &Weak<RefCell<Inner>>, hash: &BlobHash) -> Result<(Array, String), String> {
    let size = {
        let inner = weak.upgrade().ok_or("left the room")?;
        let mut i = inner.borrow_mut();
        // The server's copy replaces a peer-to-peer transfer still under way.
        i.incoming.remove(hash);
        let t = i.transfers.iter_mut().find(|t| t.hash.as_ref() == Some(hash)).ok_or("unknown file")?;
        t.phase = Phase::Transferring;
        t.source = Some(Source::Server);
        t.progress(0, browser::now_ms());
        t.size
    };
    let (mut parts, mut hasher, mut got, mut failures) = (Array::new(), Sha256::new(), 0u64, 0u32);
    let etag = format!("\"{hash}\"");
    while got < size {
        let (auth, room) = grant(weak).await?;
        let mut headers = vec![("authorization", auth)];
        if got > 0 {
            headers.push(("range", format!("bytes={got}-")));
            headers.push(("if-range", etag.clone()));
            trace(&format!("resuming {hash} from byte {got}"));
        }
        let outcome = match request("GET", &blob_path(&room, hash), &headers, None).await {
            Ok(r) if r.status() == 200 || r.status() == 206 => {
                if r.status() == 200 && got > 0 {
                    // Not a continuation: start over.
                    (parts, hasher, got) = (Array::new(), Sha256::new(), 0);
                }
                read_body(weak, hash, &r, &parts, &mut hasher, &mut got).await
            }
            Ok(r) if r.status() == 403 || r.status() >= 500 => Err(api_error(&r).await),
            Ok(r) => return Err(api_error(&r).await),
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            failures += 1;
            trace(&format!("download of {hash} interrupted at byte {got}: {e}"));
            if failures >= ATTEMPTS {
                return Err(format!("download failed: {e}"));
            }
            sleep_ms(250 << failures).await;
        }
    }
    Ok((parts, hex::encode(hasher.finalize())))
}

/// Read a response body to its end, appending to `parts`.
async fn read_body(
    weak: &Weak<RefCell<Inner>>,
    hash: &BlobHash,
    response: &web_sys::Response,
    parts: &Array,
    hasher: &mut Sha256,
    got: &mut u64,
) -> Result<(), String> {
    let body = response.body().ok_or("no body")?;
    let reader: web_sys::ReadableStreamDefaultReader =
        body.get_reader().dyn_into().map_err(|_| "no stream reader".to_owned())?;
    loop {
        let step = JsFuture::from(reader.read()).await.map_err(|e| js_message(&e))?;
        let done = js_sys::Reflect::get(&step, &"done".into()).map(|d| d.is_truthy()).unwrap_or(true);
        if done {
            return Ok(());
        }
        let value: Uint8Array = js_sys::Reflect::get(&step, &"value".into())
            .map_err(|e| js_message(&e))?
            .dyn_into()
            .map_err(|_| "not bytes".to_owned())?;
        hasher.update(value.to_vec());
        parts.push(&value);
        *got += value.length() as u64;
        let (total, now) = (*got, browser::now_ms());
        if let Some(inner) = weak.upgrade() {
            if let Some(t) = inner.borrow_mut().transfers.iter_mut().find(|t| t.hash.as_ref() == Some(hash)) {
                t.progress(total, now);
            }
            notify(&inner);
        }
    }
}

/// Every second: peer-to-peer transfers that stalled or lost their sender go to the server.
async fn watchdog(weak: Weak<RefCell<Inner>>) {
    loop {
        sleep_ms(1000).await;
        let Some(inner) = weak.upgrade() else { return };
        let now = browser::now_ms();
        let fall_back: Vec<BlobHash> = {
            let i = inner.borrow();
            i.transfers
                .iter()
                .filter(|t| {
                    let present = t.sender.as_ref().is_some_and(|s| i.peers.contains(s));
                    t.should_fall_back(now, present)
                })
                .filter_map(|t| t.hash.clone())
                .collect()
        };
        for hash in fall_back {
            trace(&format!("{hash}: the peer stalled or left; fetching from the server"));
            Files { inner: inner.clone() }.fetch(&hash);
        }
    }
}

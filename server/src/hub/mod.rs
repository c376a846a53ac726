//! The hub runs the engine for a live server: it is the only place the engine is locked, it
//! carries out the engine's outputs onto the connections' bounded outboxes, and it runs the
//! store writer and the clock.
//!
//! The engine sits behind a `std::sync::Mutex`: every call into it is short and synchronous
//! (no await while locked; an outbox push never waits), so an async mutex would only add cost.

use crate::core::{ConnId, Engine, Input, Millis, Output};
use crate::store::Store;
use relaycast_shared::{ClientMsg, DecodeError, ErrorCode};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{oneshot, watch, Notify};

mod outbox;
pub use outbox::{Outbound, Outbox, Pushed, QueueLimits};

/// Whether a connection's reader may read on. The engine pauses a connection that has too
/// many messages waiting for the store; its socket's buffers then fill and its client waits.
#[derive(Debug, Default)]
pub struct ReadGate {
    paused: AtomicBool,
    resumed: Notify,
}

impl ReadGate {
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Release);
        if !paused {
            // Leaves a permit if the reader is not waiting yet: no resume is lost.
            self.resumed.notify_one();
        }
    }

    /// Returns once the connection may be read again.
    pub async fn resumed(&self) {
        while self.is_paused() {
            self.resumed.notified().await;
        }
    }
}

/// The hub's end of one connection.
#[derive(Debug)]
struct ConnHandle {
    outbox: Arc<Outbox>,
    gate: Arc<ReadGate>,
    /// Set once, with the reason, when the engine closes the connection.
    close: watch::Sender<Option<ErrorCode>>,
}

impl Drop for ConnHandle {
    /// The hub forgets the connection: its writer sends what is queued and ends.
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// What a connection task gets when it registers.
#[derive(Debug)]
pub struct Registration {
    pub conn: ConnId,
    pub outbox: Arc<Outbox>,
    pub gate: Arc<ReadGate>,
    pub close: watch::Receiver<Option<ErrorCode>>,
}

#[derive(Debug)]
struct State {
    engine: Engine,
    conns: rustc_hash::FxHashMap<ConnId, ConnHandle>,
    /// The app's posts waiting to be durable, by ticket.
    posts: HashMap<u64, oneshot::Sender<Result<u64, ErrorCode>>>,
    next_ticket: u64,
}

/// Counters kept outside the engine.
#[derive(Debug, Default)]
pub struct HubCounters {
    pub connections_total: AtomicU64,
    pub frames_queued: AtomicU64,
    pub store_batches: AtomicU64,
    pub store_errors: AtomicU64,
}

#[derive(Debug)]
pub struct Hub {
    state: Mutex<State>,
    store: Arc<dyn Store>,
    store_work: Notify,
    next_conn: AtomicU64,
    queue_limits: QueueLimits,
    store_healthy: AtomicBool,
    shutting_down: AtomicBool,
    pub counters: HubCounters,
    /// Cluster mode: the node that carries the engine's ops to the shared log.
    cluster: std::sync::OnceLock<crate::cluster::node::Node>,
    /// Cluster mode: the shared file index (which files this node must keep).
    files: std::sync::OnceLock<Arc<crate::cluster::files::ClusterFiles>>,
    /// The hub itself, for work it hands to a task.
    me: std::sync::Weak<Hub>,
}

use crate::clock::now_millis;

impl Hub {
    pub fn new(engine: Engine, store: Arc<dyn Store>, queue_limits: QueueLimits) -> Arc<Self> {
        let hub = Arc::new_cyclic(|me| Hub {
            me: me.clone(),
            state: Mutex::new(State { engine, conns: Default::default(), posts: HashMap::new(), next_ticket: 1 }),
            store,
            store_work: Notify::new(),
            next_conn: AtomicU64::new(1),
            queue_limits,
            store_healthy: AtomicBool::new(true),
            shutting_down: AtomicBool::new(false),
            counters: HubCounters::default(),
            cluster: std::sync::OnceLock::new(),
            files: std::sync::OnceLock::new(),
        });
        // Work staged by `Engine::restore` (trims of history that outlived its limits).
        hub.store_work.notify_one();
        hub
    }

    /// Cluster mode: hand the engine's ops to `node` from now on (set once, before serving).
    pub fn attach_cluster(&self, node: crate::cluster::node::Node) {
        let _ = self.cluster.set(node);
    }

    /// Cluster mode: keep the files `files` says this node holds the only copy of.
    pub fn attach_files(&self, files: Arc<crate::cluster::files::ClusterFiles>) {
        let _ = self.files.set(files);
    }

    pub fn cluster(&self) -> Option<&crate::cluster::node::Node> {
        self.cluster.get()
    }

    /// Cluster mode: what the shared log reports.
    pub fn cluster_input(&self, input: crate::core::ClusterInput) {
        self.input(Input::Cluster(input));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the engine; keep serving rather
        // than poisoning every later call.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new connection from `addr`: its id, its outbox, its read gate and its close signal.
    pub fn connect(&self, addr: std::net::IpAddr) -> Registration {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::new(Outbox::default());
        let gate = Arc::new(ReadGate::default());
        let (close_tx, close) = watch::channel(None);
        self.counters.connections_total.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        state.conns.insert(conn, ConnHandle { outbox: outbox.clone(), gate: gate.clone(), close: close_tx });
        self.run(&mut state, Input::Connected(conn, addr));
        if self.shutting_down.load(Ordering::SeqCst) {
            self.run(&mut state, Input::Shutdown);
        }
        Registration { conn, outbox, gate, close }
    }

    pub fn message(&self, conn: ConnId, msg: ClientMsg) {
        self.input(Input::Message(conn, msg));
    }

    pub fn bad_frame(&self, conn: ConnId, err: DecodeError) {
        self.input(Input::BadFrame(conn, err));
    }

    pub fn binary_frame(&self, conn: ConnId) {
        self.input(Input::BinaryFrame(conn));
    }

    pub fn timed_out(&self, conn: ConnId) {
        self.input(Input::TimedOut(conn));
    }

    pub fn disconnected(&self, conn: ConnId) {
        let mut state = self.lock();
        state.conns.remove(&conn);
        self.run(&mut state, Input::Disconnected(conn));
    }

    /// Queue a ping; a full queue means the peer is already too slow, which the next frame
    /// will report.
    pub fn ping(&self, conn: ConnId) {
        let state = self.lock();
        if let Some(handle) = state.conns.get(&conn) {
            self.enqueue(handle, Outbound::Ping);
        }
    }

    /// Answer the peer's ping. A peer that pings without reading the answers fills its
    /// outbox and is judged too slow, like one that does not read its messages.
    pub fn pong(&self, conn: ConnId, payload: bytes::Bytes) {
        let mut state = self.lock();
        let full = state.conns.get(&conn).is_some_and(|handle| !self.enqueue(handle, Outbound::Pong(payload)));
        if full {
            self.run(&mut state, Input::QueueFull(conn));
        }
    }

    pub fn tick(&self) {
        self.input(Input::Tick);
    }

    fn input(&self, input: Input) {
        let mut state = self.lock();
        self.run(&mut state, input);
    }

    /// Feed one input and carry out everything it leads to.
    fn run(&self, state: &mut State, input: Input) {
        let now = now_millis();
        state.engine.handle(now, input);
        self.carry_out(state, now);
    }

    /// Run `f` on the engine for the app's backend (queries, posts, removals) and carry out
    /// what it leads to.
    pub fn backend<T>(&self, f: impl FnOnce(&mut Engine, Millis) -> T) -> T {
        let now = now_millis();
        let mut state = self.lock();
        let result = f(&mut state.engine, now);
        self.carry_out(&mut state, now);
        result
    }

    /// Post a message into a room as the app; resolves with its sequence number once it is
    /// durable (and delivered), like a member's ack.
    pub async fn post_as_app(
        &self,
        room: relaycast_shared::RoomName,
        name: relaycast_shared::DisplayName,
        id: Option<relaycast_shared::ClientMsgId>,
        body: relaycast_shared::Body,
    ) -> Result<u64, (ErrorCode, String)> {
        let (tx, rx) = oneshot::channel();
        {
            let now = now_millis();
            let mut state = self.lock();
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.engine.post_as_app(room, name, id, body, ticket, now)?;
            state.posts.insert(ticket, tx);
            self.carry_out(&mut state, now);
        }
        match rx.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(ErrorCode::StoreUnavailable)) => {
                Err((ErrorCode::StoreUnavailable, "the shared message store (Redis) cannot be reached".into()))
            }
            // The room was deleted before the post was durable (or the server is stopping).
            _ => Err((ErrorCode::RoomClosed, "the room was deleted before the message was stored".into())),
        }
    }

    fn carry_out(&self, state: &mut State, now: Millis) {
        loop {
            self.deliver_outputs(state, now);
            if !state.engine.has_store_work() {
                return;
            }
            if !self.store.is_instant() {
                self.store_work.notify_one();
                return;
            }
            // A store that keeps nothing (`--memory`) makes a batch "durable" at once: commit it
            // here, in this lock section, rather than waking the writer task to do nothing.
            while let Some((batch, _ops)) = state.engine.take_store_batch() {
                self.counters.store_batches.fetch_add(1, Ordering::Relaxed);
                state.engine.handle(now, Input::Persisted(batch));
            }
        }
    }

    /// Carry out what the engine asked for: frames onto the connections' outboxes, closes,
    /// answers to the app's posts, work for the cluster node.
    fn deliver_outputs(&self, state: &mut State, now: Millis) {
        let mut to_wake = Vec::new();
        loop {
            let mut too_slow = Vec::new();
            let State { engine, conns, posts, .. } = &mut *state;
            for output in engine.drain_outputs() {
                match output {
                    Output::Deliver { to, frame } => {
                        let mut queued = 0;
                        for conn in to.as_slice() {
                            let Some(handle) = conns.get(conn) else {
                                continue;
                            };
                            // One shared payload for every recipient (the engine's frames are
                            // JSON text, UTF-8 by construction). Writers are woken once all
                            // the outputs are queued, so that a commit batch of many messages
                            // to a room leaves each member's writer with all of them at once.
                            match handle.outbox.push_unwoken(Outbound::Frame(frame.bytes().clone()), self.queue_limits)
                            {
                                Pushed::Full => too_slow.push(*conn),
                                pushed => {
                                    queued += 1;
                                    if pushed == Pushed::QueuedUnwoken {
                                        to_wake.push(handle.outbox.clone());
                                    }
                                }
                            }
                        }
                        // Once per frame, not per recipient: a shared counter is not free.
                        self.counters.frames_queued.fetch_add(queued, Ordering::Relaxed);
                    }
                    Output::Close { conn, reason } => {
                        if let Some(handle) = conns.remove(&conn) {
                            if reason == ErrorCode::SlowConsumer {
                                tracing::info!(conn, "dropping a connection that reads too slowly");
                            }
                            tracing::debug!(conn, reason = %reason, "closing connection");
                            let _ = handle.close.send(Some(reason));
                        }
                    }
                    Output::Posted { ticket, seq, .. } => {
                        if let Some(waiter) = posts.remove(&ticket) {
                            let _ = waiter.send(seq);
                        }
                    }
                    Output::DeleteFiles { room } => {
                        if let Some(files) = self.files.get() {
                            let files = files.clone();
                            tokio::spawn(async move { files.delete_room_here(&room).await });
                        }
                    }
                    Output::PauseReading { conn } | Output::ResumeReading { conn } => {
                        if let Some(handle) = conns.get(&conn) {
                            handle.gate.set_paused(matches!(output, Output::PauseReading { .. }));
                        }
                    }
                    Output::Cluster(op) => match self.cluster.get() {
                        Some(node) => node.send(op),
                        None => tracing::error!(?op, "the engine asked the shared log without a cluster node"),
                    },
                }
            }
            for outbox in to_wake.drain(..) {
                outbox.wake();
            }
            if too_slow.is_empty() {
                break;
            }
            // One burst reaches a slow connection many times over, and frames may still be
            // addressed to one whose close is further down the outputs: the engine judges
            // each once (and the close is logged once, above).
            too_slow.sort_unstable();
            too_slow.dedup();
            for conn in too_slow {
                engine.handle(now, Input::QueueFull(conn));
            }
        }
    }

    /// Queue `out` unless the connection's outbox is at its bounds. False: too slow (an
    /// ending connection takes nothing more; its disconnect is on the way).
    fn enqueue(&self, handle: &ConnHandle, out: Outbound) -> bool {
        handle.outbox.push(out, self.queue_limits) != Pushed::Full
    }

    /// The first step of a drain: not ready any more (a load balancer stops sending new
    /// clients), while connections stay open for their messages in flight to be answered.
    pub fn begin_drain(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Messages accepted and not yet answered (durable, or refused by the shared log).
    pub fn in_flight(&self) -> usize {
        self.lock().engine.unpersisted()
    }

    /// Tell every connection the server is going away.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.input(Input::Shutdown);
        self.store_work.notify_one();
    }

    pub fn is_ready(&self) -> bool {
        self.store_healthy.load(Ordering::Relaxed)
            && !self.shutting_down.load(Ordering::Relaxed)
            && self.cluster.get().is_none_or(|node| node.is_healthy())
    }

    pub fn connection_count(&self) -> usize {
        self.lock().engine.connection_count()
    }

    /// Run `f` on the engine (for metrics).
    pub fn with_engine<T>(&self, f: impl FnOnce(&Engine) -> T) -> T {
        f(&self.lock().engine)
    }

    /// The store writer: takes batches in order, makes each durable off the runtime's
    /// threads, and reports it back. A failing store is retried with backoff (the engine
    /// refuses new messages with `overloaded` once too many wait); nothing is dropped.
    /// Returns when shutdown was requested and everything staged is written.
    pub async fn run_store_writer(self: Arc<Self>) {
        loop {
            let batch = self.lock().engine.take_store_batch();
            let Some((batch, ops)) = batch else {
                if self.shutting_down.load(Ordering::SeqCst) {
                    return;
                }
                self.store_work.notified().await;
                continue;
            };
            let ops = Arc::new(ops);
            let mut backoff = Duration::from_millis(50);
            loop {
                let store = self.store.clone();
                let job = ops.clone();
                let result = tokio::task::spawn_blocking(move || store.apply(&job)).await;
                match result {
                    Ok(Ok(())) => break,
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, batch, "store write failed; retrying")
                    }
                    Err(err) => {
                        tracing::error!(error = %err, batch, "store writer task failed; retrying")
                    }
                }
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                self.store_healthy.store(false, Ordering::Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            self.store_healthy.store(true, Ordering::Relaxed);
            self.counters.store_batches.fetch_add(1, Ordering::Relaxed);
            self.input(Input::Persisted(batch));
        }
    }
}

/// The blob cache asks the engine which blobs rooms still refer to, and tells it which blobs
/// exist (file messages may only name those).
impl crate::blobs::CacheEvents for Hub {
    fn pinned(&self, hashes: &[&relaycast_shared::BlobHash]) -> Vec<bool> {
        let state = self.lock();
        let files = self.files.get();
        hashes.iter().map(|h| state.engine.is_pinned(h) || files.is_some_and(|f| f.keeps(h))).collect()
    }

    fn stored(&self, hash: &relaycast_shared::BlobHash) {
        self.input(Input::BlobStored(hash.clone()));
    }

    fn removed(&self, hash: &relaycast_shared::BlobHash) {
        self.input(Input::BlobRemoved(hash.clone()));
    }
}

impl crate::auth::Members for Hub {
    fn rights(
        &self,
        room: &relaycast_shared::RoomName,
        peer: &relaycast_shared::PeerId,
    ) -> Option<relaycast_shared::Rights> {
        self.lock().engine.rights_of(room, peer)
    }
}

impl crate::media::MediaEvents for Hub {
    fn broadcast(&self, room: &relaycast_shared::RoomName, state: relaycast_shared::media::BroadcastState) {
        self.input(Input::Broadcast { room: room.clone(), state });
    }

    fn announce(&self, room: &relaycast_shared::RoomName, body: relaycast_shared::Body) {
        // Cluster mode: a file (a recording) goes into the shared index first, so that the
        // message naming it is taken and the file can be fetched through any node.
        if let (Some(files), relaycast_shared::Body::File { hash, name, size, mime }) = (self.files.get(), &body) {
            let info = relaycast_shared::blobs::BlobInfo {
                hash: hash.clone(),
                size: *size,
                name: name.clone(),
                mime: mime.clone(),
            };
            let (files, hub, room) = (files.clone(), self.me.clone(), room.clone());
            tokio::spawn(async move {
                if let Err(err) = files.announce(&room, &info).await {
                    tracing::warn!(room = %room, error = %err, "a recording could not be added to the shared file index");
                }
                if let Some(hub) = hub.upgrade() {
                    hub.input(Input::Announce { room, body });
                }
            });
            return;
        }
        // Stored like any other message: carrying out the input wakes the writer (or, for a
        // store that keeps nothing, commits it at once).
        self.input(Input::Announce { room: room.clone(), body });
    }
}

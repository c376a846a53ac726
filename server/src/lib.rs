//! Relaycast server: rooms, WebRTC signaling relay and durable message history.
//!
//! # Layout
//! - [`core`]: the sans-IO room engine (rooms, presence, sequence numbers, history, recovery,
//!   fan-out and limits). Inputs with the time in, outputs out; no sockets, no clock.
//! - [`store`]: history persistence behind the [`store::Store`] trait: redb (default) or memory.
//! - [`hub`]: runs the engine in a live server: one lock, bounded per-connection queues, the
//!   store writer (group commit) and the clock.
//! - [`transport`]: everything between a socket and the rest: the accept loop (connection
//!   limits, timeouts, TLS), the front door (routes, origins, trusted proxies, credentials, the
//!   one error format), `/ws`, the blob and media APIs, and warp for health, metrics and the
//!   web app's static files.
//! - [`tls`]: certificates (files reloaded on change, or self-signed for a LAN) and the client
//!   side `relaycast publish` uses over https.
//! - [`blobs`]: the blob cache: content-addressed files on disk with a redb index, resumable
//!   uploads, eviction; its HTTP API is `transport::blob_api`.
//! - [`media`]: the media relay (WHIP in, WHEP out, recording) on str0m; its HTTP side is
//!   `transport::media_api`.
//! - [`publish`]: `relaycast publish`, a WHIP client streaming a media file.
//! - [`config`]: flags and environment variables.
//!
//! [`run`] serves on a bound listener until a shutdown future completes, so tests bind
//! `127.0.0.1:0` and call it; `main.rs` only parses flags, sets up logging and waits for
//! SIGINT/SIGTERM.

// Nothing from the network or the disk is unwrapped; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod auth;
pub mod blobs;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod core;
pub mod hub;
pub mod media;
pub mod publish;
pub mod store;
pub mod tls;
pub mod transport;

use crate::clock::now_millis;
use crate::core::Engine;
use crate::hub::Hub;
use crate::store::{JournaledStore, MemoryStore, Store, StoreError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use config::Config;

/// How often the blob cache evicts expired files, drops idle uploads and saves use times.
const BLOB_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot open the history store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot open the blob cache: {0}")]
    Blobs(#[from] blobs::CacheError),
    #[error("cannot make a temporary directory for the blob cache: {0}")]
    TempDir(std::io::Error),
    #[error("cannot start the media relay: {0}")]
    Media(#[from] media::StartError),
    #[error("a startup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// What [`run_with_ready`] tells its caller once it serves.
#[derive(Debug, Clone)]
pub struct Ready {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The TLS certificate's SHA-256 fingerprint, when TLS is on.
    pub fingerprint: Option<String>,
}

/// Serve on `listener` until `shutdown` completes, then close every connection with
/// "going away", flush the store, and return.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    run_with_ready(listener, config, shutdown, |_| {}).await
}

/// [`run`], calling `ready` once the stores are open, crash leftovers are cleaned, and
/// requests are served.
pub async fn run_with_ready(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(&Ready) + Send,
) -> Result<(), RunError> {
    // Everything that can fail for a bad setting fails before anything starts.
    let metrics_listener = match config.metrics_bind {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|err| RunError::Config(format!("cannot listen on --metrics-bind {addr}: {err}")))?,
        ),
        None => None,
    };
    let certificates = match config.tls() {
        Some(source) => Some(tokio::task::spawn_blocking(move || tls::Certificates::load(source)).await??),
        None => None,
    };
    let origins = Arc::new(transport::Origins::from_config(&config.allowed_origins).map_err(RunError::Config)?);
    // Sockets are what an attacker exhausts first: take every descriptor the system allows,
    // and refuse connections (with an answer) well before they run out.
    let fd_limit = transport::limits::raise_fd_limit();
    let mut conn_limits = config.connection_limits();
    conn_limits.max_total = transport::limits::connections_for_fd_limit(conn_limits.max_total, fd_limit);
    if conn_limits.max_total < config.max_connections {
        tracing::warn!(
            open_files = fd_limit.unwrap_or(0),
            max_connections = conn_limits.max_total,
            "the open-file limit allows fewer connections than --max-connections; raise it (ulimit -n) for more"
        );
    }
    let admission = transport::Admission::new(conn_limits);
    let store: Arc<dyn Store> = if config.memory {
        Arc::new(MemoryStore)
    } else {
        let dir = config.data_dir.clone();
        Arc::new(tokio::task::spawn_blocking(move || JournaledStore::open(&dir)).await??)
    };
    let restored = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load()).await??
    };
    let restored_rooms = restored.len();
    let mut engine_config = config.engine().map_err(RunError::Config)?;
    // Cluster mode: every node signs grants and stream keys with one secret, so that what one
    // node hands out works on all of them.
    if let Some((url, _)) = config.cluster() {
        let secret = match config.cluster_secret().map_err(RunError::Config)? {
            Some(secret) => secret,
            None => cluster::node::shared_secret(&url, Duration::from_secs(30)).await.map_err(RunError::Config)?,
        };
        if let Some(grant) = engine_config.grant.as_mut() {
            grant.secret = secret;
        }
    }
    let scheme = if certificates.is_some() { "https" } else { "http" };
    let advertise_url = match (&config.advertise_url, listener.local_addr()) {
        (Some(url), _) => Some(url.clone()),
        (None, Ok(addr)) if !addr.ip().is_unspecified() => Some(format!("{scheme}://{addr}")),
        _ => None,
    };
    if config.redis.is_some() && advertise_url.is_none() {
        return Err(RunError::Config(
            "with --redis and a wildcard --bind, give --advertise-url: the URL other nodes reach this one at".into(),
        ));
    }
    let api_keys = Arc::new(config.api_keys().map_err(RunError::Config)?);
    match &engine_config.auth {
        core::Auth::Open if config.bind.ip().is_loopback() => tracing::warn!(
            "--auth open: anyone who reaches this server may join any room; use --auth token with keys before deploying"
        ),
        core::Auth::Open => tracing::error!(
            bind = %config.bind,
            "--auth open on an address other machines can reach: ANYONE may join any room, read its history and files, \
             and go live. Use --auth token with the app's keys (see the README)"
        ),
        core::Auth::Token(_) => {
            tracing::info!(audience = %config.auth_audience, "token mode: connections need a token from the app")
        }
    }
    let mut engine = Engine::new(engine_config, rand::random());
    engine.restore(restored, now_millis());
    let removals = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || store.load_removals()).await??
    };
    engine.restore_removals(removals, now_millis());
    let queue_limits = hub::QueueLimits {
        max_frames: config.queue_depth as usize,
        max_bytes: config.queue_bytes.max(2 * config.max_frame_bytes as usize),
    };
    let grants = engine.config().grant.clone();
    let hub = Hub::new(engine, store.clone(), queue_limits);
    let node = match config.cluster() {
        Some((url, settings)) => {
            let feed: cluster::node::Feed = {
                let hub = Arc::downgrade(&hub);
                Arc::new(move |input| {
                    if let Some(hub) = hub.upgrade() {
                        hub.cluster_input(input)
                    }
                })
            };
            tracing::info!(node = %settings.node_id, "cluster mode: rooms are shared through redis");
            let load: cluster::node::Load = {
                let hub = Arc::downgrade(&hub);
                Arc::new(move || {
                    hub.upgrade().map_or_else(Default::default, |hub| {
                        hub.with_engine(|e| cluster::node::NodeLoad {
                            connections: e.connection_count() as u64,
                            rooms: e.room_count() as u64,
                        })
                    })
                })
            };
            let node =
                cluster::node::Node::start(&url, settings, feed, load).map_err(|e| RunError::Config(e.to_string()))?;
            hub.attach_cluster(node.clone());
            Some(node)
        }
        None => None,
    };
    // Cluster mode: how nodes reach each other (said again now and then: a renewed
    // certificate has a new fingerprint).
    let link = match (&node, &advertise_url) {
        (Some(node), Some(url)) => {
            let link = Arc::new(cluster::node_http::NodeLink::new(
                node.node_id(),
                url,
                certificates.clone(),
                node.connection(),
            ));
            let registering = link.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(10));
                loop {
                    every.tick().await;
                    if let Err(err) = registering.register().await {
                        tracing::warn!(error = %err, "cannot tell the cluster where this node is");
                    }
                }
            });
            Some(link)
        }
        _ => None,
    };

    // The blob cache lives beside the history; with --memory, in a temporary directory removed
    // at exit (nothing survives a restart, as with the history).
    let (blob_dir, _temp_dir) = if config.memory {
        let temp = tempfile::Builder::new().prefix("relaycast-blobs-").tempdir().map_err(RunError::TempDir)?;
        (temp.path().to_owned(), Some(temp))
    } else {
        (config.data_dir.join("blobs"), None)
    };
    let cache = {
        let (limits, events): (_, Arc<dyn blobs::CacheEvents>) = (config.blob_limits(), hub.clone());
        Arc::new(tokio::task::spawn_blocking(move || blobs::BlobCache::open(&blob_dir, limits, events)).await??)
    };
    let media_api = if config.no_media {
        None
    } else {
        let mut media = config.media();
        // With an ephemeral HTTP port (tests), the media port is ephemeral too.
        if config.media_bind.is_none() && listener.local_addr().is_ok_and(|a| a.port() != config.bind.port()) {
            media.bind = std::net::SocketAddr::new(config.bind.ip(), 0);
        }
        let events: Arc<dyn media::MediaEvents> = hub.clone();
        let scratch = blob_dir_for_recordings(&cache);
        let relay = media::Relay::start(media, grants.clone(), events, Some(cache.clone()), scratch).await?;
        tracing::info!(udp = %relay.local_addr(), candidates = ?relay.candidate_addrs(), "media relay listening");
        // Cluster mode: each room's media on one node at a time, leases renewed while busy.
        let cluster = match (&node, &link) {
            (Some(node), Some(link)) => {
                let open_mode = config.auth == config::AuthMode::Open;
                let media = Arc::new(cluster::media::ClusterMedia::new(link.clone(), node.connection(), open_mode));
                let (leases, relay) = (media.clone(), relay.clone());
                tokio::spawn(async move {
                    let mut every = tokio::time::interval(cluster::media::LEASE / 3);
                    loop {
                        every.tick().await;
                        leases.renew(|room| relay.broadcast_state(room) != Default::default()).await;
                    }
                });
                Some(media)
            }
            _ => None,
        };
        Some(Arc::new(transport::MediaApi { relay, cluster }))
    };
    let relay = media_api.as_ref().map(|api| api.relay.clone());
    let blob_api = grants
        .map(|grants| {
            let members: Arc<dyn auth::Members> = hub.clone();
            let cluster = match (&node, &link) {
                (Some(node), Some(link)) => {
                    let files = cluster::files::ClusterFiles::new(
                        link.clone(),
                        node.connection(),
                        grants.clone(),
                        cache.clone(),
                    );
                    let files = Arc::new(files.map_err(RunError::Config)?);
                    hub.attach_files(files.clone());
                    Some(files)
                }
                _ => None,
            };
            Ok::<_, RunError>(Arc::new(transport::BlobApi {
                cache: cache.clone(),
                grants,
                members,
                body_timeout: config.blob_body_timeout,
                cluster,
            }))
        })
        .transpose()?;
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        store = store.kind(),
        restored_rooms,
        blobs = cache.stats().blobs,
        "relaycast listening"
    );

    let writer = tokio::spawn(hub.clone().run_store_writer());
    let ticker = tokio::spawn({
        let hub = hub.clone();
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                hub.tick();
            }
        }
    });
    // Often enough that an idle upload goes within about its idle time.
    let sweep_every = BLOB_SWEEP_INTERVAL.min(config.blob_upload_idle / 2).max(Duration::from_millis(100));
    let sweeper = tokio::spawn({
        let cache = cache.clone();
        let files = blob_api.as_ref().and_then(|api| api.cluster.clone());
        async move {
            let mut every = tokio::time::interval(sweep_every);
            loop {
                every.tick().await;
                // Cluster mode: what this node alone has is kept; what it no longer has is
                // withdrawn from the index at once.
                let refresh = || async {
                    if let Some(files) = &files {
                        if let Err(err) = files.refresh().await {
                            tracing::warn!(error = %err, "cannot check the shared file index");
                        }
                    }
                };
                refresh().await;
                if let Err(err) = cache.sweep().await {
                    tracing::error!(error = %err, "blob cache upkeep failed");
                }
                refresh().await;
            }
        }
    });
    let backend_api = Some(Arc::new(transport::BackendApi {
        hub: hub.clone(),
        cache: cache.clone(),
        keys: api_keys.clone(),
        max_body_bytes: config.max_frame_bytes as usize,
        post_timeout: config.api_post_timeout,
    }));
    let app_config = transport::app_config(config.auth == config::AuthMode::Token, config.app_token_url.as_deref());
    let settings = transport::HttpSettings {
        ws: transport::WsSettings {
            max_frame_bytes: config.max_frame_bytes as usize,
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            write_timeout: config.write_timeout,
        },
        static_dir: config.static_dir.clone(),
        header_timeout: config.header_timeout,
        admission,
        origins,
        proxies: Arc::new(transport::Proxies::new(config.trusted_proxies.clone())),
        tls: certificates.as_ref().map(|c| c.server_config()),
        app_config,
        metrics: if config.metrics_bind.is_some() {
            transport::MetricsAccess::Elsewhere
        } else if api_keys.is_empty() && config.auth == config::AuthMode::Open {
            transport::MetricsAccess::Public
        } else {
            transport::MetricsAccess::ApiKey(api_keys.clone())
        },
    };
    let tls_watcher = certificates.clone().map(|c| tokio::spawn(c.watch()));
    let (stop_accepting, stop) = tokio::sync::watch::channel(false);
    let metrics_server = metrics_listener.map(|listener| {
        tokio::spawn(transport::serve_metrics(
            listener,
            hub.clone(),
            settings.admission.clone(),
            Some(cache.clone()),
            relay.clone(),
            stop.clone(),
        ))
    });
    let server = tokio::spawn(transport::serve(
        listener,
        hub.clone(),
        settings,
        transport::Apis { blob_api, cache: Some(cache.clone()), media_api, backend_api },
        stop,
    ));
    ready(&Ready {
        scheme: if certificates.is_some() { "https" } else { "http" },
        fingerprint: certificates.as_ref().map(|c| c.fingerprint()),
    });

    shutdown.await;
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    // Drain: not ready from now on; messages already taken get their acks (in cluster mode
    // they are in Redis within a round trip) before the clients are told to reconnect, so a
    // client that resumes elsewhere neither misses nor resends anything.
    hub.begin_drain();
    let acks_by = tokio::time::Instant::now() + (config.shutdown_grace / 2);
    while hub.in_flight() > 0 && tokio::time::Instant::now() < acks_by {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tracing::info!("shutting down: closing connections");
    hub.shutdown();
    while hub.connection_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = stop_accepting.send(true);
    let _ = tokio::time::timeout_at(deadline, server).await;
    ticker.abort();
    sweeper.abort();
    if let Some(watcher) = tls_watcher {
        watcher.abort();
    }
    if let Some(metrics_server) = metrics_server {
        metrics_server.abort();
    }
    if let Some(relay) = relay {
        relay.shutdown();
        // Sessions end at once when told; wait for them (briefly) so that the relay lets go of
        // the blob cache before `run` returns.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while relay.counters.tasks.load(std::sync::atomic::Ordering::Relaxed) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The writer returns once everything accepted is durable.
    writer.await?;
    if let Some(node) = node {
        node.leave().await;
    }
    tracing::info!("store flushed; bye");
    Ok(())
}

/// Recordings are written beside the blob cache's files (same disk), then moved in.
fn blob_dir_for_recordings(cache: &blobs::BlobCache) -> std::path::PathBuf {
    cache.dir().join("recordings")
}

//! Everything between a socket and the server's parts. The accept loop ([`serve`]) admits
//! each connection (`limits`), bounds every wait on it, and adds TLS; the front door
//! (`door`) takes each request: its route (`route`), origin (`origins`), client address
//! (`proxies`) and credentials (`reply`), and hands it to the WebSocket (`ws`), the blob API
//! (`blob_api`, with the `sendfile` path in `fast_download`), the media API (`media_api`), or
//! warp for health, metrics and the static app. warp is known here only.

pub mod backend_api;
pub mod blob_api;
mod door;
mod fast_download;
pub mod limits;
pub mod media_api;
mod metrics;
pub mod origins;
pub mod proxies;
pub mod reply;
pub mod route;
pub mod ws;
pub mod ws_write;

use crate::blobs::BlobCache;
use crate::clock::now_millis;
use crate::hub::Hub;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use warp::http::{header, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

pub use backend_api::BackendApi;
pub use blob_api::BlobApi;
pub use limits::{Admission, ConnLimits, Refusal};
pub use media_api::MediaApi;
pub use origins::Origins;
pub use proxies::Proxies;
pub use ws::WsSettings;

use self::door::FrontDoor;
use self::reply::ResBody;

/// The HTTP handlers beside warp's routes, each present when its part of the server runs.
#[derive(Debug, Default)]
pub struct Apis {
    pub blob_api: Option<Arc<BlobApi>>,
    pub cache: Option<Arc<BlobCache>>,
    pub media_api: Option<Arc<MediaApi>>,
    pub backend_api: Option<Arc<BackendApi>>,
}

/// Who may read `/metrics` on the public listener.
#[derive(Debug, Clone)]
pub enum MetricsAccess {
    /// Anyone (open mode without API keys: development).
    Public,
    /// Holders of an API key.
    ApiKey(Arc<crate::auth::api_keys::ApiKeys>),
    /// Nobody: they are on the `--metrics-bind` address.
    Elsewhere,
}

/// How the listener treats connections.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub ws: WsSettings,
    pub static_dir: PathBuf,
    /// Time to send a request head, counted from when the server starts waiting for one: on
    /// a new connection and between the requests of a kept-alive one (so it is also the
    /// keep-alive idle timeout).
    pub header_timeout: Duration,
    pub admission: Arc<Admission>,
    pub origins: Arc<Origins>,
    pub proxies: Arc<Proxies>,
    /// TLS on every connection, when set (https, wss).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Who may read `/metrics` on this listener.
    pub metrics: MetricsAccess,
    /// The body of `/app-config.json` (see [`app_config`]).
    pub app_config: Arc<str>,
}

/// What the web app reads at start: whether the server wants tokens, and the URL the app
/// fetches them from (with the page's credentials), when the deployment set one.
pub fn app_config(token_mode: bool, token_url: Option<&str>) -> Arc<str> {
    serde_json::json!({ "auth": if token_mode { "token" } else { "open" }, "token_url": token_url }).to_string().into()
}

/// The client of a request (a request extension): its address (the connection's peer, or
/// what a trusted proxy reported), and the connection's admission slot, so that an upgraded
/// WebSocket holds the slot for as long as it lives.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: IpAddr,
    _slot: Arc<limits::Slot>,
}

/// Refusals written at once; past this many in flight, a refused socket is just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;

/// Accept connections on `listener` and serve every route over HTTP/1.1 until `stop` turns
/// true; then stop accepting and let open HTTP connections finish their current request.
///
/// This is warp's `serve` loop done by hand: every accepted socket gets `TCP_NODELAY` (the
/// writer coalesces frames and flushes once per burst, so Nagle's algorithm would only add
/// delay: with delayed ACKs, up to 40 ms on a small frame), and passes the connection limits
/// (`limits`) before anything is read from it; every wait on the client is bounded (request
/// heads, keep-alive idle, bodies, WebSocket hello and writes). Each request then goes through
/// the front door (`door`); a plain connection that opens with a blob download is served with
/// `sendfile` first (see `fast_download`).
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    settings: HttpSettings,
    apis: Apis,
    mut stop: watch::Receiver<bool>,
) {
    let Apis { blob_api, cache, media_api, backend_api } = apis;
    let relay = media_api.as_ref().map(|api| api.relay.clone());
    let routes = routes(hub, settings.ws, settings.static_dir.clone(), settings.admission.clone(), cache, relay);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(error = %err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let from_proxy = settings.proxies.trusts(peer.ip());
        let admitted = if from_proxy {
            settings.admission.admit_proxy()
        } else {
            settings.admission.admit(peer.ip(), now_millis())
        };
        let client = match admitted {
            Ok(slot) => Client { addr: peer.ip(), _slot: Arc::new(slot) },
            Err(refusal) => {
                tracing::debug!(peer = %peer, code = refusal.code(), "connection refused");
                // A fresh socket's send buffer is empty, so the short answer is written here,
                // without waiting and without a task per refusal: every refused client learns
                // why, however many arrive at once. Only if that fails is a task spawned (and
                // past MAX_REFUSALS_IN_FLIGHT of those, the socket is just closed).
                let answer = refusal_answer(&refusal);
                match tcp.try_write(answer.as_bytes()) {
                    Ok(written) if written == answer.len() => {}
                    Ok(written) => {
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            tokio::spawn(async move {
                                finish_refusal(tcp, answer, written).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        if let Ok(permit) = refusals.clone().try_acquire_owned() {
                            tokio::spawn(async move {
                                finish_refusal(tcp, answer, 0).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(_) => {}
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let door = FrontDoor {
            warp: hyper_util::service::TowerToHyperService::new(warp::service(routes.clone())),
            blob_api: blob_api.clone(),
            media_api: media_api.clone(),
            backend_api: backend_api.clone(),
            origins: settings.origins.clone(),
            proxies: settings.proxies.clone(),
            client: client.clone(),
            from_proxy,
            peer: peer.ip(),
            metrics: settings.metrics.clone(),
            app_config: settings.app_config.clone(),
        };
        let fast_api = blob_api.clone();
        let service = hyper::service::service_fn(move |req| {
            let response = door.answer(req);
            async move { Ok::<_, std::convert::Infallible>(response.await) }
        });
        let mut stop = stop.clone();
        let header_timeout = settings.header_timeout;
        let tls = settings.tls.clone();
        tokio::spawn(async move {
            // The connection's slot is held until it is done (an upgraded WebSocket holds a
            // clone of its own).
            let _client = client;
            if let Some(config) = tls {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                // The handshake counts toward the request head's time. Downloads over TLS
                // take hyper's path: sendfile cannot encrypt.
                let tls = tokio::select! {
                    accepted = tokio::time::timeout(header_timeout, acceptor.accept(tcp)) => match accepted {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(err)) => return tracing::debug!(error = %err, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    },
                    _ = stopped(&mut stop) => return,
                };
                return serve_http(TokioIo::new(tls), service, header_timeout, stop).await;
            }
            // A connection that opens with a blob download is served by sendfile first.
            let (tcp, prefix) = match fast_api {
                Some(api) => {
                    let mut peek = [0u8; 512];
                    let opens_with_download = tokio::select! {
                        peeked = tokio::time::timeout(header_timeout, tcp.peek(&mut peek)) => match peeked {
                            Ok(peeked) => peeked.is_ok_and(|n| fast_download::is_blob_download(&peek[..n])),
                            // Not a byte of a request in time.
                            Err(_) => return,
                        },
                        _ = stopped(&mut stop) => return,
                    };
                    if opens_with_download {
                        let served = tokio::select! {
                            handed = fast_download::serve(tcp, api, header_timeout) => handed,
                            _ = stopped(&mut stop) => None,
                        };
                        match served {
                            Some(handed) => handed,
                            None => return,
                        }
                    } else {
                        (tcp, bytes::BytesMut::new())
                    }
                }
                None => (tcp, bytes::BytesMut::new()),
            };
            serve_http(TokioIo::new(fast_download::Prefixed::new(tcp, prefix)), service, header_timeout, stop).await
        });
    }
}

/// Serve HTTP/1.1 (with upgrades) on one connection until it ends or the server stops; on
/// stop, the request in progress is finished first.
async fn serve_http<I, S>(io: I, service: S, header_timeout: Duration, mut stop: watch::Receiver<bool>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = ResBody> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(error = %err, "http connection ended with an error");
    }
}

/// Turn a connection away with a plain HTTP answer saying why (the request is not read:
/// browsers and HTTP clients read a response sent early), then close it.
/// The HTTP answer to a refused connection: its status, a stable code and when to retry.
fn refusal_answer(refusal: &Refusal) -> String {
    let body = serde_json::json!({ "code": refusal.code(), "message": refusal.to_string() }).to_string();
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 5\r\nconnection: close\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
}

/// Writes the rest of a refusal that did not fit at once, within two seconds, then closes.
async fn finish_refusal(mut tcp: TcpStream, answer: String, written: usize) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(&answer.as_bytes()[written..]).await?;
        tcp.shutdown().await
    })
    .await;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Every route of the server.
pub fn routes(
    hub: Arc<Hub>,
    settings: WsSettings,
    static_dir: PathBuf,
    admission: Arc<Admission>,
    cache: Option<Arc<BlobCache>>,
    media: Option<Arc<crate::media::Relay>>,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    ws::route(hub.clone(), settings)
        .or(healthz())
        .or(readyz(hub.clone()))
        .or(metrics(hub, admission, cache, media))
        .or(static_files(static_dir))
        .recover(handle_rejection)
}

/// GET /healthz: the process is up.
fn healthz() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("healthz").and(warp::path::end()).and(warp::get()).map(|| "ok\n")
}

/// GET /readyz: the server takes traffic (its store writes, it is not shutting down).
fn readyz(hub: Arc<Hub>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("readyz").and(warp::path::end()).and(warp::get()).map(move || {
        if hub.is_ready() {
            json_error(StatusCode::OK, "ready", "ready")
        } else {
            json_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "store failing or shutting down")
        }
    })
}

/// Serve `GET /metrics` alone on `listener` (`--metrics-bind`: an address only the operator's
/// scraper reaches), until `stop` turns true.
pub async fn serve_metrics(
    listener: TcpListener,
    hub: Arc<Hub>,
    admission: Arc<Admission>,
    cache: Option<Arc<BlobCache>>,
    media: Option<Arc<crate::media::Relay>>,
    mut stop: watch::Receiver<bool>,
) {
    use self::reply::{full, DoorCode, HttpError};
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let (hub, admission, cache, media) = (hub.clone(), admission.clone(), cache.clone(), media.clone());
        let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let response = if req.uri().path() == "/metrics" && req.method() == http::Method::GET {
                let text = metrics::render(&hub, &admission, cache.as_deref(), media.as_deref());
                let mut response = http::Response::new(full(text));
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; version=0.0.4"));
                response
            } else {
                HttpError::new(DoorCode::NotFound, "this address serves GET /metrics only").into_response()
            };
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(serve_http(TokioIo::new(tcp), service, Duration::from_secs(10), stop.clone()));
    }
}

/// GET /metrics: Prometheus text format.
fn metrics(
    hub: Arc<Hub>,
    admission: Arc<Admission>,
    cache: Option<Arc<BlobCache>>,
    media: Option<Arc<crate::media::Relay>>,
) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("metrics").and(warp::path::end()).and(warp::get()).map(move || {
        warp::reply::with_header(
            metrics::render(&hub, &admission, cache.as_deref(), media.as_deref()),
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )
    })
}

/// GET /*: the built web app; any other GET path gets `index.html`, so deep links such as
/// `/r/<room>` load the app, which routes them. A missing file (outside `/r/`, a last path
/// segment with an extension, such as `/favicon.ico`) is a 404, not the page.
fn static_files(dir: PathBuf) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let index = dir.join("index.html");
    let missing = warp::get().and(warp::path::full()).and_then(move |path: warp::path::FullPath| {
        let index = index.clone();
        async move {
            // Rooms may have dots in their names: `/r/team.standup` is the app's.
            let last = path.as_str().rsplit('/').next().unwrap_or("");
            if last.contains('.') && !path.as_str().starts_with("/r/") {
                return Err(warp::reject::not_found());
            }
            match tokio::fs::read_to_string(&index).await {
                Ok(html) => Ok(warp::reply::html(html)),
                Err(_) => Err(warp::reject::not_found()),
            }
        }
    });
    warp::get().and(warp::fs::dir(dir)).map(Reply::into_response).or(missing.map(Reply::into_response)).unify()
}

/// The front door's one error format (see [`reply::HttpError`]) for warp's routes: a JSON
/// body `{code, message}` and the code in the `relaycast-error` header.
pub(crate) fn json_error(status: StatusCode, code: &'static str, message: &str) -> Response<String> {
    let error = reply::HttpError { status: status.as_u16(), code, message: message.into(), headers: Vec::new() };
    let (parts, _) = error.into_response().into_parts();
    Response::from_parts(parts, reply::error_body(code, message))
}

async fn handle_rejection(rejection: Rejection) -> Result<Response<String>, std::convert::Infallible> {
    let (status, code, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "not_found", "no such path (is the web app built? see README)")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed")
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        (StatusCode::BAD_REQUEST, "bad_request", "bad request")
    };
    Ok(json_error(status, code, message))
}

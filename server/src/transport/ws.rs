//! `GET /ws`: the WebSocket upgrade and the reading half of each connection.
//!
//! The upgrade is done here rather than with `warp::ws()` because warp's `Ws` builder cannot
//! set tungstenite's read buffer, which defaults to 128 KiB per connection (zero-filled on
//! first read); idle connections would cost ~137 KiB each instead of a few KiB. The handshake
//! itself is small: check the headers, answer 101 with the accept key, then split hyper's
//! upgraded stream: tungstenite reads frames from one half with our config, and the writer
//! (`ws_write`) frames what the hub queues onto the other.

use super::ws_write::write_loop;
use crate::hub::{Hub, Registration};
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use relaycast_shared::decode_client;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use warp::http::{header, HeaderMap, Response, StatusCode};
use warp::Filter;

/// Settings of the WebSocket layer.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    pub max_frame_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    /// A batch of frames the peer does not take within this time ends the connection.
    pub write_timeout: Duration,
}

impl WsSettings {
    fn tungstenite(&self) -> WebSocketConfig {
        let mut config = WebSocketConfig::default();
        // Small read buffer: most frames are small, and an idle connection holds it all the
        // time it waits (a larger frame reserves its own length). 4 KiB was the largest single
        // cost of an idle connection (bench/RESULTS.md); 1 KiB still reads several chat
        // frames per read.
        config.read_buffer_size = 1024;
        // tungstenite only reads here (see `ReadSide`); the writer frames what it sends.
        // One frame over the limit fails the read instead of buffering it whole.
        config.max_message_size = Some(self.max_frame_bytes);
        config.max_frame_size = Some(self.max_frame_bytes);
        config
    }
}

/// `GET /ws` → 101 Switching Protocols, then the connection is served by `hub`.
pub fn route(
    hub: Arc<Hub>,
    settings: WsSettings,
) -> impl Filter<Extract = (Response<String>,), Error = warp::Rejection> + Clone {
    warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::ext::optional::<super::Client>())
        .map(move |headers: HeaderMap, on_upgrade: Option<OnUpgrade>, client: Option<super::Client>| {
            // The front door has checked the origin.
            upgrade(headers, on_upgrade, client, hub.clone(), settings)
        })
}

fn upgrade(
    headers: HeaderMap,
    on_upgrade: Option<OnUpgrade>,
    client: Option<super::Client>,
    hub: Arc<Hub>,
    settings: WsSettings,
) -> Response<String> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let key = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes()));
    let (Some(accept), true, true, true, Some(on_upgrade)) = (
        key,
        has(header::CONNECTION, "upgrade"),
        has(header::UPGRADE, "websocket"),
        has(header::SEC_WEBSOCKET_VERSION, "13"),
        on_upgrade,
    ) else {
        return super::json_error(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint speaks WebSocket (version 13) only",
        );
    };
    let Some(client) = client else {
        return super::json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "no client address");
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => return tracing::debug!(error = %err, "websocket upgrade failed"),
        };
        // TCP_NODELAY was set on the socket when it was accepted (see `transport::serve`).
        // The connection's slot (see `transport::limits`) is held until the socket is gone.
        serve(TokioIo::new(upgraded), hub, settings, client.addr).await;
        drop(client);
    });
    let mut response = Response::new(String::new());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    if let Ok(value) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Serve one connection: this task reads; a second one writes what the hub queues (see
/// [`super::ws_write`]).
#[tracing::instrument(level = "debug", skip_all, fields(conn))]
pub async fn serve<S>(io: S, hub: Arc<Hub>, settings: WsSettings, addr: std::net::IpAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let config = Some(settings.tungstenite());
    let mut stream = WebSocketStream::from_raw_socket(ReadSide(read), Role::Server, config).await;
    let Registration { conn, outbox, gate, mut close } = hub.connect(addr);
    tracing::Span::current().record("conn", conn);
    let mut writer = tokio::spawn(write_loop(write, outbox, close.clone(), settings.write_timeout));

    let mut last_seen = Instant::now();
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + settings.ping_interval, settings.ping_interval);
    loop {
        tokio::select! {
            _ = close.changed() => break,
            // The writer gave up (the peer stopped taking frames, or the socket failed).
            _ = &mut writer => {
                hub.disconnected(conn);
                return;
            }
            // Paused by the engine (too many of its messages wait for the store): nothing is
            // read, and the silence is ours, not the peer's.
            _ = gate.resumed(), if gate.is_paused() => last_seen = Instant::now(),
            _ = ping.tick() => {
                if last_seen.elapsed() > settings.idle_timeout && !gate.is_paused() {
                    tracing::debug!(conn, "idle timeout");
                    hub.timed_out(conn);
                    break;
                }
                hub.ping(conn);
            }
            frame = stream.next(), if !gate.is_paused() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match decode_client(&text, settings.max_frame_bytes) {
                        Ok(msg) => hub.message(conn, msg),
                        Err(err) => hub.bad_frame(conn, err),
                    },
                    Some(Ok(Message::Binary(_))) => hub.binary_frame(conn),
                    Some(Ok(Message::Ping(payload))) => hub.pong(conn, payload),
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(WsError::Capacity(err))) => {
                        // tungstenite refused to buffer the frame; the stream cannot continue.
                        tracing::debug!(conn, error = %err, "frame over the limit");
                        let size = settings.max_frame_bytes;
                        hub.bad_frame(conn, relaycast_shared::DecodeError::TooLarge { size: size + 1, max: size });
                        break;
                    }
                    Some(Err(err)) => {
                        tracing::debug!(conn, error = %err, "read failed");
                        break;
                    }
                }
            }
        }
    }
    hub.disconnected(conn);
    // The writer ends by itself, within its bounded close: on the close signal, or when the
    // hub lets go of the outbox. Then both halves of the socket are dropped and it is closed.
    let _ = writer.await;
}

/// The read half of a connection as tungstenite sees it. tungstenite answers a ping or a
/// close by writing; those writes go nowhere here, because the answers go through the
/// connection's outbox like every other frame toward the peer (one writer, one order).
struct ReadSide<R>(R);

impl<R: AsyncRead + Unpin> AsyncRead for ReadSide<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<R: Unpin> AsyncWrite for ReadSide<R> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

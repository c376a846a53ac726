//! `GET /ws`: the WebSocket upgrade and the two tasks of each connection.
//!
//! The upgrade is done here rather than with `warp::ws()` because warp's `Ws` builder cannot
//! set tungstenite's read buffer, which defaults to 128 KiB per connection (zero-filled on
//! first read); idle connections would cost ~137 KiB each instead of a few KiB. The handshake
//! itself is small: check the headers, answer 101 with the accept key, and wrap hyper's
//! upgraded stream in a tungstenite `WebSocketStream` with our config.

use crate::hub::{Hub, Outbound, QueueGauge, Registration};
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use relaycast_shared::{decode_client, CloseCode, ErrorCode};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
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
        // Frames are flushed explicitly after each queued batch; this only caps coalescing.
        config.write_buffer_size = 16 * 1024;
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
        let config = Some(settings.tungstenite());
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, config).await;
        // The connection's slot (see `transport::limits`) is held until the socket is gone.
        serve(socket, hub, settings, client.addr).await;
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

/// Serve one connection: this task reads; a second one writes from the bounded queue.
#[tracing::instrument(level = "debug", skip_all, fields(conn))]
pub async fn serve<S>(socket: WebSocketStream<S>, hub: Arc<Hub>, settings: WsSettings, addr: std::net::IpAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Registration { conn, queue, gauge, mut close } = hub.connect(addr);
    tracing::Span::current().record("conn", conn);
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_loop(sink, queue, gauge, close.clone(), settings.write_timeout));

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
            _ = ping.tick() => {
                if last_seen.elapsed() > settings.idle_timeout {
                    tracing::debug!(conn, "idle timeout");
                    hub.timed_out(conn);
                    break;
                }
                hub.ping(conn);
            }
            frame = stream.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => match decode_client(&text, settings.max_frame_bytes) {
                        Ok(msg) => hub.message(conn, msg),
                        Err(err) => hub.bad_frame(conn, err),
                    },
                    Some(Ok(Message::Binary(_))) => hub.binary_frame(conn),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
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
    // The writer ends by itself, within its bounded close (see `write_loop`): on the close
    // signal, or when the queue's sender is gone. Then both halves of the socket are dropped
    // and it is closed.
    let _ = writer.await;
}

type Sink<S> = futures_util::stream::SplitSink<WebSocketStream<S>, Message>;

/// How long the close of a connection may take: what was queued before the close (an error
/// frame, say), then the close frame. A peer that does not take them in time is cut off.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Send queued frames, coalescing whatever is already queued into one flush (one syscall
/// for a burst), until the queue ends, the engine closes the connection, or a batch is not
/// taken within `write_timeout`. Every wait here is bounded, so a peer that stops reading
/// cannot keep the socket, this task or its queued frames alive.
async fn write_loop<S>(
    mut sink: Sink<S>,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<Outbound>,
    gauge: Arc<QueueGauge>,
    mut close: tokio::sync::watch::Receiver<Option<ErrorCode>>,
    write_timeout: Duration,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // Bounds what sits in tungstenite's write buffer before a flush.
    const MAX_BATCH_BYTES: usize = 64 * 1024;
    let take = |out: Outbound| {
        gauge.taken(out.queued_bytes());
        to_message(out)
    };
    let reason = loop {
        let first = tokio::select! {
            biased;
            _ = close.changed() => break *close.borrow(),
            first = queue.recv() => first,
        };
        let Some(first) = first else { break None };
        let batch = async {
            let mut batch_bytes = first.queued_bytes();
            sink.feed(take(first)).await?;
            while batch_bytes < MAX_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(next) => {
                        batch_bytes += next.queued_bytes();
                        sink.feed(take(next)).await?
                    }
                    Err(_) => break,
                }
            }
            sink.flush().await
        };
        // Most batches go out at once (the socket has room): polled once, they finish without
        // a timer. One that cannot races the close signal (a peer that stopped reading blocks
        // the flush, and the engine's verdict, slow consumer or idle, must still end it) and
        // the write timeout.
        let mut batch = std::pin::pin!(batch);
        let sent = match std::future::poll_fn(|cx| Poll::Ready(batch.as_mut().poll(cx))).await {
            Poll::Ready(sent) => Ok(sent),
            Poll::Pending => tokio::select! {
                biased;
                _ = close.changed() => break *close.borrow(),
                sent = tokio::time::timeout(write_timeout, batch) => sent,
            },
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break None,
            Err(_) => {
                tracing::debug!("write timed out: the peer takes no frames");
                break None;
            }
        }
    };
    if let Some(reason) = reason {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Ok(next) = queue.try_recv() {
                sink.feed(take(next)).await?;
            }
            let frame = CloseFrame {
                code: WsCloseCode::from(CloseCode::for_error(reason).code()),
                reason: reason.as_str().into(),
            };
            sink.send(Message::Close(Some(frame))).await
        })
        .await;
    }
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    // Frames still queued are dropped with the receiver; the gauge is the hub's, which
    // forgot this connection.
}

fn to_message(out: Outbound) -> Message {
    match out {
        Outbound::Frame(text) => Message::Text(text),
        Outbound::Ping => Message::Ping(Default::default()),
    }
}

//! The reference: a bare tokio-tungstenite relay with rooms, the ceiling Relaycast is reported
//! against. A connection's room is its URL path (`/` for the fan-out, `/pair-7` for a pair).
//! Each text frame goes to every other connection in the room, and the sender gets a one-byte
//! ack (`~`), as Relaycast acks a publish; the load generator uses it for flow control. It
//! does what a minimal relay must do and nothing else: no JSON, no storage, no limits. One
//! shared frame per message (reference-counted bytes), a queue and a writer per connection
//! that coalesces queued frames into one flush, as Relaycast's does.

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

type Outbox = mpsc::UnboundedSender<Utf8Bytes>;

/// Every room's members: their connection number and queue.
#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, Vec<(u64, Outbox)>>>,
}

impl Rooms {
    fn join(&self, room: &str, id: u64, outbox: Outbox) {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).entry(room.to_owned()).or_default().push((id, outbox));
    }

    fn leave(&self, room: &str, id: u64) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(members) = rooms.get_mut(room) {
            members.retain(|(m, _)| *m != id);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// `frame` to everyone in `room` but `from`; `from` gets the ack.
    fn relay(&self, room: &str, from: u64, frame: Utf8Bytes, ack: &Utf8Bytes) {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        for (id, outbox) in rooms.get(room).into_iter().flatten() {
            let _ = outbox.send(if *id == from { ack.clone() } else { frame.clone() });
        }
    }
}

pub async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("reference listening on {}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    let next_id = AtomicU64::new(1);
    let ack = Utf8Bytes::from_static("~");
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (rooms, ack, id) = (rooms.clone(), ack.clone(), next_id.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(async move {
            let mut config = WebSocketConfig::default();
            config.read_buffer_size = 4096;
            let mut room = String::new();
            // tungstenite's handshake callback type fixes the (large) error type.
            #[allow(clippy::result_large_err)]
            let path = |request: &Request, response: Response| {
                room = request.uri().path().to_owned();
                Ok(response)
            };
            let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, path, Some(config)).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let (outbox, mut queue) = mpsc::unbounded_channel();
            rooms.join(&room, id, outbox);
            let writer = tokio::spawn(async move {
                while let Some(first) = queue.recv().await {
                    if sink.feed(Message::Text(first)).await.is_err() {
                        return;
                    }
                    while let Ok(next) = queue.try_recv() {
                        if sink.feed(Message::Text(next)).await.is_err() {
                            return;
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(text) = msg {
                    rooms.relay(&room, id, text, &ack);
                }
            }
            rooms.leave(&room, id);
            writer.abort();
        });
    }
}

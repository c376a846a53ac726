//! The reference: a bare tokio-tungstenite broadcast server. Each text frame from any
//! connection goes to every connection (the sender too, which the load generator uses as
//! its flow-control signal). It does what a minimal fan-out must do and nothing else: one
//! shared frame, a broadcast channel, and a writer per connection that coalesces queued
//! frames into one flush, as Relaycast's does.

use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

pub async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    println!("reference listening on {}", listener.local_addr()?);
    let (tx, _) = broadcast::channel::<Utf8Bytes>(65536);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut config = WebSocketConfig::default();
            config.read_buffer_size = 4096;
            let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
                return;
            };
            let (mut sink, mut stream) = ws.split();
            let mut rx = tx.subscribe();
            let writer = tokio::spawn(async move {
                while let Ok(first) = rx.recv().await {
                    if sink.feed(Message::Text(first)).await.is_err() {
                        return;
                    }
                    while let Ok(next) = rx.try_recv() {
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
                    let _ = tx.send(text);
                }
            }
            writer.abort();
        });
    }
}

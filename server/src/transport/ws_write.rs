//! The writing half of a WebSocket connection: frames what its outbox holds and writes it.
//!
//! Frames toward a client are simple (unmasked: a two-to-ten-byte header, then the payload),
//! so the writer frames them itself into a buffer it owns. That buffer holds a batch while it
//! is written and a burst's is let go as soon as nothing more waits, so an idle connection
//! keeps no write buffer (tungstenite's keeps the capacity of the largest batch it ever sent).
//! Under steady load that frees and allocates a buffer per burst; the server's allocator
//! (jemalloc) keeps freed pages for the next one, so this costs no page faults. Every frame
//! toward the peer goes through here, in the order the hub queued it: messages, pings, pongs
//! and the close frame.

use crate::hub::{Outbound, Outbox};
use relaycast_shared::{CloseCode, ErrorCode};
use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

/// How long the close of a connection may take: what was queued before the close (an error
/// frame, say), then the close frame. A peer that does not take them in time is cut off.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Frames taken from the outbox into one write, and about how many bytes (one frame may be
/// larger): a burst goes out in few syscalls, and a huge one in steps.
const MAX_BATCH_FRAMES: usize = 1024;
const MAX_BATCH_BYTES: usize = 64 * 1024;

/// Write buffer kept while the connection is quiet; a larger one (a burst's) is let go.
const KEEP_BUFFER_BYTES: usize = 1024;

mod opcode {
    pub const TEXT: u8 = 0x1;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Append one final (unfragmented), unmasked frame to `buf` (RFC 6455, section 5.2).
fn frame_into(buf: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    buf.push(0x80 | opcode);
    match payload.len() {
        len @ 0..=125 => buf.push(len as u8),
        len @ 126..=0xFFFF => {
            buf.push(126);
            buf.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            buf.push(127);
            buf.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    buf.extend_from_slice(payload);
}

fn outbound_into(buf: &mut Vec<u8>, out: &Outbound) {
    match out {
        Outbound::Frame(payload) => frame_into(buf, opcode::TEXT, payload),
        Outbound::Ping => frame_into(buf, opcode::PING, &[]),
        Outbound::Pong(payload) => frame_into(buf, opcode::PONG, payload),
    }
}

/// A close frame: the code, then the reason (an error code's name, well under the 123 bytes
/// a close reason may have); no payload for a plain close.
fn close_into(buf: &mut Vec<u8>, reason: Option<ErrorCode>) {
    let Some(reason) = reason else {
        return frame_into(buf, opcode::CLOSE, &[]);
    };
    let mut payload = CloseCode::for_error(reason).code().to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_str().as_bytes()[..reason.as_str().len().min(123)]);
    frame_into(buf, opcode::CLOSE, &payload);
}

/// Framed bytes not yet written. Writing resumes where it stopped, so a batch cut short (by
/// the engine's close) still reaches the peer whole before the close frame.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    written: usize,
}

impl Pending {
    async fn write_to<W: AsyncWrite + Unpin>(&mut self, io: &mut W) -> std::io::Result<()> {
        while self.written < self.buf.len() {
            // `write` is cancel-safe: dropped while pending, it wrote nothing.
            let n = io.write(&self.buf[self.written..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.written += n;
        }
        io.flush().await?;
        self.buf.clear();
        self.written = 0;
        Ok(())
    }

    /// Whether the buffer holds more than a quiet connection keeps.
    fn holds_memory(&self) -> bool {
        self.buf.capacity() > KEEP_BUFFER_BYTES
    }

    /// Nothing waits to be written: keep a small buffer, let a burst's go.
    fn release(&mut self) {
        if self.buf.is_empty() && self.holds_memory() {
            self.buf = Vec::new();
        }
    }
}

/// How the writer stopped.
enum End {
    /// The outbox was closed (the connection is ending) or the engine closed the connection
    /// with a reason: the peer gets a close frame.
    Close(Option<ErrorCode>),
    /// The socket failed or the peer took nothing within the write timeout.
    Failed,
}

/// Send what the outbox holds, in batches (one write and flush for a burst), until it is
/// closed, the engine closes the connection, or a batch is not taken within `write_timeout`.
/// Every wait here is bounded, so a peer that stops reading cannot keep the socket, this task
/// or its queued frames alive.
pub async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    outbox: Arc<Outbox>,
    mut close: watch::Receiver<Option<ErrorCode>>,
    write_timeout: Duration,
) {
    let mut batch = Vec::new();
    let mut pending = Pending::default();
    let end = 'send: loop {
        if outbox.try_batch(&mut batch, MAX_BATCH_FRAMES, MAX_BATCH_BYTES).is_none() {
            // All written and nothing waits: the connection may stay idle for hours, so a
            // burst's memory goes now (thousands of idle connections each keeping the room of
            // their last burst would add it up).
            pending.release();
            outbox.release();
            let more = tokio::select! {
                biased;
                _ = close.changed() => break 'send End::Close(*close.borrow()),
                more = outbox.next_batch(&mut batch, MAX_BATCH_FRAMES, MAX_BATCH_BYTES) => more,
            };
            if !more {
                break End::Close(*close.borrow());
            }
        } else if batch.is_empty() {
            // Closed and empty; the engine's reason, if it closed the connection, was set
            // before the hub let go of the outbox.
            break End::Close(*close.borrow());
        }
        // One allocation for the batch's bytes (headers are at most 10 bytes), not a series of
        // doublings and copies as frames are appended.
        pending.buf.reserve(batch.iter().map(|out| out.queued_bytes() + 10).sum());
        for out in batch.drain(..) {
            outbound_into(&mut pending.buf, &out);
        }
        // Most batches go out at once (the socket has room): polled once, they finish without
        // a timer. One that cannot races the close signal (a peer that stopped reading blocks
        // the write, and the engine's verdict, slow consumer or idle, must still end it) and
        // the write timeout.
        let sent = {
            let mut write = std::pin::pin!(pending.write_to(&mut io));
            match std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
                Poll::Ready(sent) => Ok(sent),
                Poll::Pending => tokio::select! {
                    biased;
                    _ = close.changed() => break End::Close(*close.borrow()),
                    sent = tokio::time::timeout(write_timeout, write) => sent,
                },
            }
        };
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "write failed");
                break End::Failed;
            }
            Err(_) => {
                tracing::debug!("write timed out: the peer takes no frames");
                break End::Failed;
            }
        }
    };
    if let End::Close(reason) = end {
        // What was queued before the close (an error frame, say), then the close frame.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while outbox.try_batch(&mut batch, MAX_BATCH_FRAMES, MAX_BATCH_BYTES) == Some(true) {
                for out in batch.drain(..) {
                    outbound_into(&mut pending.buf, &out);
                }
            }
            close_into(&mut pending.buf, reason);
            pending.write_to(&mut io).await?;
            io.shutdown().await
        })
        .await;
    }
    // Frames still queued are dropped with the outbox.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::QueueLimits;
    use bytes::Bytes;
    use futures_util::StreamExt;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    const ROOMY: QueueLimits = QueueLimits { max_frames: 10_000, max_bytes: 64 << 20 };

    /// A client reading what the writer sends over an in-memory pipe, with tungstenite.
    async fn client_reads(outbox: Arc<Outbox>, close: watch::Receiver<Option<ErrorCode>>) -> Vec<Message> {
        let (server, client) = tokio::io::duplex(1 << 20);
        // The server's read half stays open, as the connection's reader keeps it: the client
        // answers the ping into it.
        let (_server_reads, server_writes) = tokio::io::split(server);
        let writer = tokio::spawn(write_loop(server_writes, outbox, close, Duration::from_secs(5)));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Client, None).await;
        let mut got = Vec::new();
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), client.next()).await {
            got.push(msg);
        }
        writer.await.unwrap();
        got
    }

    #[tokio::test]
    async fn frames_of_every_length_class_reach_a_websocket_client_in_order_then_a_close() {
        let outbox = Arc::new(Outbox::default());
        let texts = ["".to_string(), "x".repeat(125), "y".repeat(126), "z".repeat(65_535), "w".repeat(70_000)];
        for t in &texts {
            outbox.push(Outbound::Frame(Bytes::from(t.clone())), ROOMY);
        }
        outbox.push(Outbound::Ping, ROOMY);
        outbox.push(Outbound::Pong(Bytes::from_static(b"hi")), ROOMY);
        outbox.close();
        let (_tx, rx) = watch::channel(None);
        let got = client_reads(outbox, rx).await;
        let expected: Vec<Message> = texts
            .iter()
            .map(|t| Message::Text(t.as_str().into()))
            .chain([Message::Ping(Bytes::new()), Message::Pong(Bytes::from_static(b"hi")), Message::Close(None)])
            .collect();
        assert_eq!(got, expected);
    }

    #[tokio::test]
    async fn the_engine_s_close_sends_what_was_queued_then_its_code_and_reason() {
        let outbox = Arc::new(Outbox::default());
        outbox.push(Outbound::Frame(Bytes::from_static(b"{\"type\":\"error\"}")), ROOMY);
        let (tx, rx) = watch::channel(None);
        tx.send(Some(ErrorCode::SlowConsumer)).unwrap();
        let got = client_reads(outbox, rx).await;
        let Some(Message::Close(Some(frame))) = got.last() else { panic!("no close frame: {got:?}") };
        assert_eq!(u16::from(frame.code), CloseCode::for_error(ErrorCode::SlowConsumer).code());
        assert_eq!(frame.reason.as_str(), ErrorCode::SlowConsumer.as_str());
        assert_eq!(got[0], Message::Text("{\"type\":\"error\"}".into()));
    }

    #[tokio::test]
    async fn a_quiet_connection_lets_a_burst_s_buffer_go() {
        let mut pending = Pending::default();
        for _ in 0..100 {
            outbound_into(&mut pending.buf, &Outbound::Frame(Bytes::from_static(&[b'a'; 100])));
        }
        let mut sink = tokio::io::sink();
        pending.write_to(&mut sink).await.unwrap();
        assert!(pending.holds_memory());
        pending.release();
        assert_eq!(pending.buf.capacity(), 0);
        outbound_into(&mut pending.buf, &Outbound::Ping);
        pending.write_to(&mut sink).await.unwrap();
        pending.release();
        assert!(pending.buf.capacity() > 0, "a small buffer is kept");
    }

    #[tokio::test]
    async fn the_writer_lets_a_burst_s_room_go_once_it_is_written() {
        let outbox = Arc::new(Outbox::default());
        let (server, mut client) = tokio::io::duplex(1 << 20);
        let (_server_reads, server_writes) = tokio::io::split(server);
        let (_tx, close) = watch::channel(None);
        // The burst waits in the outbox before the writer starts.
        for _ in 0..500 {
            outbox.push(Outbound::Frame(Bytes::from_static(b"burst")), ROOMY);
        }
        assert!(outbox.holds_memory());
        let writer = tokio::spawn(write_loop(server_writes, outbox.clone(), close, Duration::from_secs(5)));
        let mut got = vec![0u8; 500 * 7];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..7], b"\x81\x05burst", "a text frame of five bytes");
        // The writer is waiting for more: it let the room go before it began to wait.
        tokio::time::timeout(Duration::from_secs(5), async {
            while outbox.holds_memory() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("an emptied outbox lets its room go");
        outbox.close();
        writer.await.unwrap();
    }
}

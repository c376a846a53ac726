//! Blob downloads with `sendfile(2)`: the kernel moves the file's pages to the socket, and the
//! bytes never pass through this process.
//!
//! Through hyper, every byte of a download is copied twice here (disk cache → buffer → socket);
//! with `sendfile` it is not copied by us at all, which is what lets a download keep up with
//! nginx. hyper owns the sockets it serves, so this path takes a connection *before* hyper does:
//! when the first request on a new connection is a `GET`/`HEAD` of a blob, this module answers it
//! and any further blob downloads on the same keep-alive connection. The first request of any
//! other kind hands the connection, with the bytes already read, to hyper, which carries on as if
//! it had read them itself. Both paths share [`BlobApi::prepare_download`], so they answer the
//! same headers and errors.

use super::blob_api::{self, BlobApi, Route};
use bytes::{Buf, BytesMut};
use http::{HeaderMap, StatusCode};
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Largest request head this path reads; anything larger goes to hyper (which refuses it).
const MAX_HEAD: usize = 16 * 1024;
/// Bytes per `sendfile` call: large enough to be few calls, small enough to interleave.
const SENDFILE_STEP: usize = 8 << 20;

/// Does `head` (the first bytes of a connection) start a blob download?
pub fn is_blob_download(head: &[u8]) -> bool {
    let line = head.split(|b| *b == b'\r').next().unwrap_or(head);
    let line = std::str::from_utf8(line).unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else { return false };
    let path = target.split('?').next().unwrap_or(target);
    matches!(method, "GET" | "HEAD") && super::route::Route::parse(path).is_ok_and(|r| r.is_blob())
}

/// What [`serve`] leaves: a connection for hyper, with bytes it already read, or nothing (the
/// connection ended here).
pub type HandOver = Option<(TcpStream, BytesMut)>;

/// Answer blob downloads on `tcp` until it closes or a request of another kind arrives. A
/// request head must arrive within `header_timeout` (also the keep-alive idle time between
/// requests); a download whose reader stalls for the blob API's body timeout ends.
pub async fn serve(mut tcp: TcpStream, api: Arc<BlobApi>, header_timeout: Duration) -> HandOver {
    let head_deadline = || tokio::time::Instant::now() + header_timeout;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // Read one request head, whole, by the deadline (a head sent a byte at a time must
        // not hold the connection forever).
        let deadline = head_deadline();
        let (request, head_len) = loop {
            match parse_head(&buf) {
                Parsed::Complete(request, len) => break (request, len),
                Parsed::Other => return Some((tcp, buf)),
                Parsed::Partial if buf.len() >= MAX_HEAD => return Some((tcp, buf)),
                Parsed::Partial => {}
            }
            match tokio::time::timeout_at(deadline, tcp.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                // Closed, failed or idle between requests: done.
                _ => return None,
            }
        };
        let Some(request) = request else { return Some((tcp, buf)) };
        buf.advance(head_len);
        if answer(&mut tcp, &api, &request, api.body_timeout).await.is_err() || request.close {
            let _ = tcp.shutdown().await;
            return None;
        }
    }
}

/// A request this path answers.
#[derive(Debug)]
struct Download {
    head: bool,
    uri: http::Uri,
    headers: HeaderMap,
    /// The client asked to close after this answer.
    close: bool,
}

enum Parsed {
    /// A whole head: the request if this path answers it (else hyper does), and its length.
    Complete(Option<Download>, usize),
    Partial,
    /// Not a request this path can even parse: hyper will say why.
    Other,
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(path), Some(1)) = (req.method, req.path, req.version) else {
        return Parsed::Complete(None, len);
    };
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(h.name.as_bytes()), http::HeaderValue::from_bytes(h.value))
        else {
            return Parsed::Complete(None, len);
        };
        map.append(name, value);
    }
    let has_body = map.contains_key(http::header::TRANSFER_ENCODING)
        || map.get(http::header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0");
    let upgrade = map.contains_key(http::header::UPGRADE);
    let Ok(uri) = path.parse::<http::Uri>() else { return Parsed::Complete(None, len) };
    let is_blob = super::route::Route::parse(uri.path()).is_ok_and(|r| r.is_blob());
    if !matches!(method, "GET" | "HEAD") || !is_blob || has_body || upgrade {
        return Parsed::Complete(None, len);
    }
    let close = map
        .get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
    Parsed::Complete(Some(Download { head: method == "HEAD", uri, headers: map, close }), len)
}

/// Write the answer to one download. An error means the connection is unusable.
async fn answer(tcp: &mut TcpStream, api: &BlobApi, req: &Download, idle: Duration) -> io::Result<()> {
    let Ok(Route::Blob(room, hash)) = blob_api::route(req.uri.path()) else {
        return Err(io::Error::other("not a blob route"));
    };
    let query = super::reply::query(&req.uri);
    let credentials = super::reply::Credentials::of(&req.headers, &req.uri);
    let prepared = match api.authorize(&room, &credentials, relaycast_shared::Right::Download).await {
        Ok(_) => api.prepare_download(&room, &hash, &req.headers, &query, !req.head).await,
        Err(fail) => Err(fail),
    };
    let (status, headers, body, file) = match prepared {
        Ok(p) => (p.status, p.headers, Vec::new(), p.file),
        Err(fail) => {
            let response = fail.into_response();
            let (parts, body) = response.into_parts();
            let body = http_body_util::BodyExt::collect(body).await.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
            (parts.status, parts.headers, body, None)
        }
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    for (name, value) in &headers {
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(value.to_str().unwrap_or(""));
        head.push_str("\r\n");
    }
    if !headers.contains_key(http::header::CONTENT_LENGTH) && status != StatusCode::NOT_MODIFIED {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if req.close {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !req.head {
        out.extend_from_slice(&body);
    }
    tokio::time::timeout(idle, tcp.write_all(&out)).await.map_err(|_| io::ErrorKind::TimedOut)??;
    if let (Some((file, start, len)), false) = (file, req.head) {
        send_file(tcp, &file, start, len, idle).await?;
    }
    Ok(())
}

/// `len` bytes of `file` from `start` to the socket, by `sendfile(2)`. A reader that takes no
/// bytes for `idle` ends the connection.
async fn send_file(tcp: &TcpStream, file: &std::fs::File, start: u64, len: u64, idle: Duration) -> io::Result<()> {
    let end = start + len;
    let mut offset = start as nix::libc::off_t;
    while (offset as u64) < end {
        let count = ((end - offset as u64) as usize).min(SENDFILE_STEP);
        let sent = tokio::time::timeout(
            idle,
            tcp.async_io(Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(tcp.as_fd(), file.as_fd(), Some(&mut offset), count)
                    .map_err(io::Error::from)
            }),
        )
        .await
        .map_err(|_| io::ErrorKind::TimedOut)??;
        if sent == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "blob file shorter than its record"));
        }
    }
    Ok(())
}

/// A connection handed to hyper with the bytes this path already read in front.
#[derive(Debug)]
pub struct Prefixed {
    prefix: BytesMut,
    tcp: TcpStream,
}

impl Prefixed {
    pub fn new(tcp: TcpStream, prefix: BytesMut) -> Self {
        Prefixed { prefix, tcp }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.tcp).poll_read(cx, out)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blob_downloads_take_this_path() {
        let hash = "ab".repeat(32);
        let get = format!("GET /api/rooms/r/blobs/{hash}?grant=x HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(is_blob_download(get.as_bytes()));
        assert!(matches!(parse_head(get.as_bytes()), Parsed::Complete(Some(_), n) if n == get.len()));
        assert!(matches!(parse_head(&get.as_bytes()[..20]), Parsed::Partial));
        for other in [
            format!("PUT /api/rooms/r/blobs/{hash} HTTP/1.1\r\ncontent-length: 1\r\n\r\nx"),
            "GET /ws HTTP/1.1\r\nupgrade: websocket\r\n\r\n".to_owned(),
            "GET /api/rooms/r/blobs HTTP/1.1\r\n\r\n".to_owned(),
            format!("GET /api/rooms/r/blobs/{hash} HTTP/1.0\r\n\r\n"),
            format!("GET /api/rooms/r/blobs/{hash} HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello"),
        ] {
            assert!(matches!(parse_head(other.as_bytes()), Parsed::Complete(None, _)), "{other}");
        }
        assert!(matches!(parse_head(b"\x00\x01garbage\r\n\r\n"), Parsed::Other));
        assert!(!is_blob_download(b"GET / HTTP/1.1\r\n\r\n"));
        let close = format!("HEAD /api/rooms/r/blobs/{hash} HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(matches!(
            parse_head(close.as_bytes()),
            Parsed::Complete(Some(Download { close: true, head: true, .. }), _)
        ));
    }
}

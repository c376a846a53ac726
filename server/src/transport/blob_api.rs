//! The blob cache over HTTP (`/api/rooms/<room>/...`; the routes are listed in
//! `relaycast_shared::blobs`).
//!
//! This is a plain hyper handler beside warp's routes, reached through the front door
//! ([`super::route`]): uploads and downloads stream their bodies (a download is read from disk a
//! chunk ahead of the socket, an upload is written a megabyte at a time), and warp 0.4 keeps its
//! streaming response body to itself.

use crate::blobs::range::{self, RangeReply};
use crate::blobs::{BlobCache, BlobWriter, CacheError, Started, Written};
use crate::clock::now_millis;
use crate::core::GrantConfig;
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use relaycast_shared::blobs::{
    BlobErrorCode, BlobInfo, NewUpload, UploadId, UploadState, UPLOAD_LENGTH, UPLOAD_OFFSET,
};

use super::reply::{empty, header_str, json_response, param, query, BoxError, Credentials, HttpError, ResBody};
use relaycast_shared::{BlobHash, FileName, MediaType, PeerId, Right, RoomName};
use std::sync::Arc;
use std::time::Duration;

/// Bytes read from disk per step of a download; one step is read ahead of the socket.
const READ_CHUNK: usize = 1024 * 1024;
/// Largest JSON body the API reads (`POST uploads`).
const MAX_JSON_BODY: usize = 4096;

#[derive(Debug)]
pub struct BlobApi {
    pub cache: Arc<BlobCache>,
    pub grants: GrantConfig,
    /// Grants hold only while their holder is in the room.
    pub members: Arc<dyn crate::auth::Members>,
    /// How long a request body may stall before the request ends with `timeout`.
    pub body_timeout: Duration,
    /// Cluster mode: the shared file index (a room's files through any node).
    pub cluster: Option<Arc<crate::cluster::files::ClusterFiles>>,
}

impl From<CacheError> for HttpError {
    fn from(err: CacheError) -> Self {
        let fail = HttpError::new(err.code(), err.to_string());
        if matches!(err, CacheError::Io(_) | CacheError::Index(_)) {
            tracing::error!(error = %err, "blob cache storage failed");
        }
        match err {
            CacheError::OffsetMismatch { current, .. } => {
                fail.with_header(header::HeaderName::from_static(UPLOAD_OFFSET), HeaderValue::from(current))
            }
            _ => fail,
        }
    }
}

/// A download ready to send.
#[derive(Debug)]
pub(super) struct PreparedDownload {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The file, the first byte and the byte count to send.
    pub file: Option<(std::fs::File, u64, u64)>,
}

/// The parts of a blob route's path.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Blobs(RoomName),
    Blob(RoomName, BlobHash),
    Uploads(RoomName),
    Upload(RoomName, UploadId),
    /// Cluster mode: another node fetching a room's file (`/internal/rooms/<room>/blobs/<hash>`).
    NodeBlob(RoomName, BlobHash),
}

pub fn route(path: &str) -> Result<Route, HttpError> {
    let not_found = || HttpError::new(BlobErrorCode::NotFound, format!("no such path: {path}"));
    if let Some(rest) = path.strip_prefix("/internal/rooms/") {
        return match route(&format!("/api/rooms/{rest}"))? {
            Route::Blob(room, hash) => Ok(Route::NodeBlob(room, hash)),
            _ => Err(not_found()),
        };
    }
    let rest = path.strip_prefix("/api/rooms/").ok_or_else(not_found)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let room = |s: &str| {
        RoomName::try_from(s).map_err(|err| HttpError::new(BlobErrorCode::BadRequest, format!("bad room name: {err}")))
    };
    match parts.as_slice() {
        [r, "blobs"] => Ok(Route::Blobs(room(r)?)),
        [r, "blobs", hash] => {
            let hash = BlobHash::try_from(*hash).map_err(|err| {
                HttpError::new(
                    BlobErrorCode::BadRequest,
                    format!("bad blob hash (64 lowercase hex digits of SHA-256): {err}"),
                )
            })?;
            Ok(Route::Blob(room(r)?, hash))
        }
        [r, "uploads"] => Ok(Route::Uploads(room(r)?)),
        [r, "uploads", id] => {
            let id = UploadId::try_from((*id).to_owned())
                .map_err(|err| HttpError::new(BlobErrorCode::BadRequest, format!("bad upload id: {err}")))?;
            Ok(Route::Upload(room(r)?, id))
        }
        _ => Err(not_found()),
    }
}

impl BlobApi {
    /// Answer a request the front door routed here, with the credentials it read.
    pub async fn handle(
        self: Arc<Self>,
        route: Route,
        credentials: Credentials,
        req: Request<Incoming>,
    ) -> Response<ResBody> {
        let method = req.method().clone();
        super::reply::answer(self.dispatch(route, &credentials, req).await, "blob", &method)
    }

    async fn dispatch(
        &self,
        route: Route,
        credentials: &Credentials,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let query = query(req.uri());
        if let Route::NodeBlob(room, hash) = &route {
            return self.node_download(room, hash, credentials, &req, &query).await;
        }
        let room = match &route {
            Route::Blobs(room)
            | Route::Blob(room, _)
            | Route::Uploads(room)
            | Route::Upload(room, _)
            | Route::NodeBlob(room, _) => room.clone(),
        };
        let method = req.method().clone();
        // Reading the room's files is downloading; everything else (uploads) is uploading.
        let need = match (&route, &method) {
            (Route::Blobs(_) | Route::Blob(..), &Method::GET | &Method::HEAD) => Right::Download,
            _ => Right::Upload,
        };
        let member = self.authorize(&room, credentials, need).await?;
        // Cluster mode: an upload whose partial file is on another node is answered there.
        if let (Route::Upload(room, id), Some(files)) = (&route, &self.cluster) {
            if let Err(CacheError::UnknownUpload) = self.cache.upload_state(room, id) {
                let node = files.upload_node(id).await.map_err(|err| {
                    HttpError::new(BlobErrorCode::StorageFailed, format!("the shared upload index (Redis): {err}"))
                })?;
                if let Some(node) = node {
                    let answer = files.link().forward(&node, req).await.map_err(|err| {
                        HttpError::new(BlobErrorCode::StorageFailed, format!("the node holding this upload: {err}"))
                    })?;
                    return Ok(answer.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()));
                }
            }
        }
        match (route, method) {
            (Route::Blobs(room), Method::GET) => match &self.cluster {
                // Cluster mode: the room's files on every node.
                Some(files) => {
                    let listing = files.listing(&room).await.map_err(|err| {
                        HttpError::new(BlobErrorCode::StorageFailed, format!("the shared file index (Redis): {err}"))
                    })?;
                    Ok(json_response(StatusCode::OK, &listing))
                }
                None => Ok(json_response(StatusCode::OK, &self.cache.room_blobs(&room))),
            },
            (Route::Blob(room, hash), Method::GET) => self.download(&room, &hash, &req, &query, true).await,
            (Route::Blob(room, hash), Method::HEAD) => self.download(&room, &hash, &req, &query, false).await,
            (Route::Blob(room, hash), Method::PUT) => self.put(&room, &member, hash, req, &query).await,
            (Route::Uploads(room), Method::POST) => self.create_upload(&room, &member, req).await,
            (Route::Upload(room, id), Method::HEAD | Method::GET) => {
                let state = self.cache.upload_state(&room, &id)?;
                let mut response = json_response(StatusCode::OK, &state);
                response.headers_mut().insert(UPLOAD_OFFSET, HeaderValue::from(state.offset));
                response.headers_mut().insert(UPLOAD_LENGTH, HeaderValue::from(state.size));
                Ok(response)
            }
            (Route::Upload(room, id), Method::PATCH) => self.patch(&room, &id, req).await,
            (Route::Upload(room, id), Method::DELETE) => {
                self.cache.abandon(&room, &id).await?;
                Ok(status_only(StatusCode::NO_CONTENT))
            }
            (_, method) => {
                Err(HttpError::new(BlobErrorCode::MethodNotAllowed, format!("{method} is not allowed here")))
            }
        }
    }

    /// The room's grant, from `Authorization: Bearer` or `?grant=`, for `need` (upload or
    /// download): the member it was issued to, while it is in the room with that right (in
    /// cluster mode, on any node).
    pub(super) async fn authorize(
        &self,
        room: &RoomName,
        credentials: &Credentials,
        need: Right,
    ) -> Result<PeerId, HttpError> {
        let Some(token) = credentials.grant() else {
            return Err(HttpError::new(
                BlobErrorCode::GrantRequired,
                "send the room's grant (handed out on join) as `Authorization: Bearer <grant>` or `?grant=`",
            ));
        };
        let peer = self
            .grants
            .verify(room, token, now_millis())
            .map_err(|err| HttpError::new(BlobErrorCode::AccessDenied, err.to_string()))?;
        let mut rights = self.members.rights(room, &peer);
        if let (None, Some(files)) = (rights, &self.cluster) {
            rights = files.member_rights(room, &peer).await.map_err(|err| {
                HttpError::new(BlobErrorCode::StorageFailed, format!("the shared presence (Redis): {err}"))
            })?;
        }
        match rights {
            None => Err(HttpError::new(
                BlobErrorCode::AccessDenied,
                "this grant's holder is no longer in the room; rejoin for a new grant",
            )),
            Some(rights) if !rights.has(need) => Err(HttpError::new(
                BlobErrorCode::Forbidden,
                format!("this grant's holder does not have the {need} right in this room"),
            )),
            Some(_) => Ok(peer),
        }
    }

    async fn download(
        &self,
        room: &RoomName,
        hash: &BlobHash,
        req: &Request<Incoming>,
        query: &[(String, String)],
        with_body: bool,
    ) -> Result<Response<ResBody>, HttpError> {
        let prepared = self.prepare_download(room, hash, req.headers(), query, with_body).await?;
        let body = match prepared.file {
            Some((file, start, len)) => file_body(file, start, len),
            None => empty(),
        };
        let mut response = Response::new(body);
        *response.status_mut() = prepared.status;
        *response.headers_mut() = prepared.headers;
        Ok(response)
    }

    /// Everything about a download but the sending: status, headers, and the open file with
    /// the byte range to send (none for HEAD and 304). Shared by the hyper path and the
    /// sendfile path.
    pub(super) async fn prepare_download(
        &self,
        room: &RoomName,
        hash: &BlobHash,
        headers: &HeaderMap,
        query: &[(String, String)],
        with_body: bool,
    ) -> Result<PreparedDownload, HttpError> {
        let etag = format!("\"{hash}\"");
        let mut h = HeaderMap::new();
        // Cluster mode: a file of the room this node lacks comes from a node that has it.
        if let (Err(CacheError::UnknownBlob), Some(files)) = (self.cache.stat(room, hash), &self.cluster) {
            match files.fetch(room, hash).await {
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(room = %room, hash = %hash, error = %err, "cannot fetch a file from another node")
                }
            }
        }
        let (info, file) = if with_body {
            let (info, file) = self.cache.open_read(room, hash).await?;
            (info, Some(file))
        } else {
            (self.cache.stat(room, hash)?, None)
        };
        if let Some(tags) = header_str(headers, header::IF_NONE_MATCH) {
            // The bytes behind a hash never change: a match is always still valid.
            if tags.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t == etag) {
                blob_headers(&mut h, &etag);
                return Ok(PreparedDownload { status: StatusCode::NOT_MODIFIED, headers: h, file: None });
            }
        }
        let reply =
            range::resolve(header_str(headers, header::RANGE), header_str(headers, header::IF_RANGE), &etag, info.size);
        let (status, start, len) = match reply {
            RangeReply::Full => (StatusCode::OK, 0, info.size),
            RangeReply::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
            RangeReply::Unsatisfiable => {
                let mut fail = HttpError::new(
                    BlobErrorCode::RangeNotSatisfiable,
                    format!("the range is outside the file's {} bytes", info.size),
                );
                fail.headers.push((header::CONTENT_RANGE, header_value(&format!("bytes */{}", info.size))));
                return Err(fail);
            }
        };
        blob_headers(&mut h, &etag);
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        if status == StatusCode::PARTIAL_CONTENT {
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {}-{}/{}", start, start + len - 1, info.size)),
            );
        }
        h.insert(header::CONTENT_TYPE, header_value(info.mime.as_str()));
        let name = param(query, "name").and_then(|n| FileName::try_from(n).ok()).unwrap_or(info.name.clone());
        let inline = param(query, "download").is_none() && is_safe_inline(&info.mime);
        h.insert(header::CONTENT_DISPOSITION, content_disposition(&name, inline));
        let file = match file {
            Some(file) => Some((file.into_std().await, start, len)),
            None => None,
        };
        Ok(PreparedDownload { status, headers: h, file })
    }

    async fn put(
        &self,
        room: &RoomName,
        member: &PeerId,
        hash: BlobHash,
        req: Request<Incoming>,
        query: &[(String, String)],
    ) -> Result<Response<ResBody>, HttpError> {
        let size = header_str(req.headers(), header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| HttpError::new(BlobErrorCode::LengthRequired, "a one-shot upload needs Content-Length"))?;
        let name = match param(query, "name") {
            Some(name) => FileName::try_from(name)
                .map_err(|err| HttpError::new(BlobErrorCode::BadRequest, format!("bad file name: {err}")))?,
            None => default_name(&hash),
        };
        let mime = media_type(header_str(req.headers(), header::CONTENT_TYPE));
        let new = NewUpload { hash, size, name, mime };
        match self.cache.put(room, Some(member), new).await? {
            // The body is not read: hyper closes the connection rather than drain it.
            Err(info) => {
                self.announce(room, &info).await?;
                Ok(json_response(StatusCode::OK, &info))
            }
            Ok(mut writer) => {
                self.pump(req.into_body(), &mut writer).await?;
                match writer.finish().await? {
                    Written::Complete(info) => {
                        self.announce(room, &info).await?;
                        Ok(created(room, &info))
                    }
                    Written::Progress(_) => {
                        Err(HttpError::new(BlobErrorCode::StorageFailed, "upload did not complete"))
                    }
                }
            }
        }
    }

    async fn create_upload(
        &self,
        room: &RoomName,
        member: &PeerId,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let body = http_body_util::Limited::new(req.into_body(), MAX_JSON_BODY);
        let bytes = match tokio::time::timeout(self.body_timeout, body.collect()).await {
            Err(_) => return Err(HttpError::new(BlobErrorCode::Timeout, "the request body stalled")),
            Ok(Err(err)) => {
                return Err(HttpError::new(BlobErrorCode::BadRequest, format!("cannot read the body: {err}")))
            }
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let new: NewUpload = serde_json::from_slice(&bytes).map_err(|err| {
            HttpError::new(BlobErrorCode::BadRequest, format!("expected {{hash, size, name, mime}}: {err}"))
        })?;
        match self.cache.start_upload(room, Some(member), new).await? {
            Started::Existing(info) => {
                self.announce(room, &info).await?;
                Ok(json_response(StatusCode::OK, &info))
            }
            Started::New(state) => {
                if let Some(files) = &self.cluster {
                    files.record_upload(&state.id).await.map_err(|err| {
                        HttpError::new(BlobErrorCode::StorageFailed, format!("the shared upload index (Redis): {err}"))
                    })?;
                }
                Ok(upload_created(room, &state))
            }
        }
    }

    async fn patch(
        &self,
        room: &RoomName,
        id: &UploadId,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let offset = header_str(req.headers(), UPLOAD_OFFSET)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| HttpError::new(BlobErrorCode::BadRequest, "a chunk needs an Upload-Offset header"))?;
        // A chunk announced past the end is refused before any of it is written.
        let state = self.cache.upload_state(room, id)?;
        let announced = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = announced.filter(|len| offset.saturating_add(*len) > state.size) {
            return Err(HttpError::new(
                BlobErrorCode::LengthMismatch,
                format!("a chunk of {len} bytes at {offset} runs past the upload's {} bytes", state.size),
            ));
        }
        let mut writer = self.cache.write_chunk(room, id, offset).await?;
        self.pump(req.into_body(), &mut writer).await?;
        match writer.finish().await? {
            Written::Progress(offset) => {
                let mut response = status_only(StatusCode::NO_CONTENT);
                response.headers_mut().insert(UPLOAD_OFFSET, HeaderValue::from(offset));
                Ok(response)
            }
            Written::Complete(info) => {
                self.announce(room, &info).await?;
                Ok(created(room, &info))
            }
        }
    }

    /// Cluster mode: the room holds `info` now, and this node has its bytes; tell every node
    /// (the upload is answered once the index has it, so a file message may name it at once).
    async fn announce(&self, room: &RoomName, info: &BlobInfo) -> Result<(), HttpError> {
        let Some(files) = &self.cluster else { return Ok(()) };
        files.announce(room, info).await.map_err(|err| {
            HttpError::new(
                BlobErrorCode::StorageFailed,
                format!("the file is stored, but the shared index (Redis) did not take it: {err}"),
            )
        })
    }

    /// Cluster mode: another node fetches a room's file, with a token only nodes can mint.
    async fn node_download(
        &self,
        room: &RoomName,
        hash: &BlobHash,
        credentials: &Credentials,
        req: &Request<Incoming>,
        query: &[(String, String)],
    ) -> Result<Response<ResBody>, HttpError> {
        let denied = || HttpError::new(BlobErrorCode::AccessDenied, "only the cluster's nodes may fetch files here");
        if self.cluster.is_none() {
            return Err(HttpError::new(BlobErrorCode::NotFound, "this server is not part of a cluster"));
        }
        let token = credentials.grant().ok_or_else(denied)?;
        self.grants.verify_for(crate::core::Purpose::Node, room, token, now_millis()).map_err(|_| denied())?;
        // Only what this node has: never a fetch on behalf of another node.
        self.cache.stat(room, hash)?;
        self.download(room, hash, req, query, true).await
    }

    /// Stream a request body into `writer`. On any error the writer is dropped by the caller:
    /// a resumable upload keeps what arrived, a one-shot keeps nothing.
    async fn pump(&self, mut body: Incoming, writer: &mut BlobWriter) -> Result<(), HttpError> {
        loop {
            let frame = match tokio::time::timeout(self.body_timeout, body.frame()).await {
                Err(_) => {
                    return Err(HttpError::new(
                        BlobErrorCode::Timeout,
                        format!("no bytes for {:?}; the upload stands at {}", self.body_timeout, writer.offset()),
                    ))
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(err))) => {
                    return Err(HttpError::new(
                        BlobErrorCode::BadRequest,
                        format!("the body ended early ({err}); the upload stands at {}", writer.offset()),
                    ))
                }
                Ok(Some(Ok(frame))) => frame,
            };
            if let Ok(data) = frame.into_data() {
                writer.write(&data).await?;
            }
        }
    }
}

fn status_only(status: StatusCode) -> Response<ResBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    response
}

fn created(room: &RoomName, info: &BlobInfo) -> Response<ResBody> {
    let mut response = json_response(StatusCode::CREATED, info);
    response
        .headers_mut()
        .insert(header::LOCATION, header_value(&relaycast_shared::blobs::blob_path(room, &info.hash)));
    response
}

fn upload_created(room: &RoomName, state: &UploadState) -> Response<ResBody> {
    let mut response = json_response(StatusCode::CREATED, state);
    let h = response.headers_mut();
    h.insert(header::LOCATION, header_value(&relaycast_shared::blobs::upload_path(room, &state.id)));
    h.insert(UPLOAD_OFFSET, HeaderValue::from(state.offset));
    h.insert(UPLOAD_LENGTH, HeaderValue::from(state.size));
    response
}

/// Headers every answer about a blob carries.
fn blob_headers(h: &mut HeaderMap, etag: &str) {
    h.insert(header::ETAG, header_value(etag));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // Content-addressed: the bytes at this URL never change. Private: it needed a grant.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    // Uploaded files are served from the app's origin: never let one run as a page.
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'",
        ),
    );
}

fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Types a browser shows without running anything: shown inline; the rest is downloaded.
fn is_safe_inline(mime: &MediaType) -> bool {
    let m = mime.as_str();
    matches!(
        m,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/avif" | "text/plain" | "application/pdf"
    ) || m.starts_with("video/")
        || m.starts_with("audio/")
}

/// `inline` or `attachment`, with the name as ASCII (`filename`) and as UTF-8 (`filename*`).
fn content_disposition(name: &FileName, inline: bool) -> HeaderValue {
    let ascii: String = name
        .as_str()
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let utf8 = percent_encoding::utf8_percent_encode(name.as_str(), percent_encoding::NON_ALPHANUMERIC);
    let kind = if inline { "inline" } else { "attachment" };
    header_value(&format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{utf8}"))
}

fn default_name(hash: &BlobHash) -> FileName {
    FileName::try_from(format!("file-{}", &hash.as_str()[..12])).unwrap_or_else(|_| unreachable!("hex is a valid name"))
}

/// The request's `Content-Type` without parameters, or `application/octet-stream`.
fn media_type(content_type: Option<&str>) -> MediaType {
    content_type
        .and_then(|v| v.split(';').next())
        .and_then(|v| MediaType::try_from(v.trim().to_ascii_lowercase()).ok())
        .unwrap_or_else(|| MediaType::try_from("application/octet-stream").unwrap_or_else(|_| unreachable!()))
}

/// `len` bytes of `file` from `start`, read on the blocking pool one chunk ahead of the socket.
fn file_body(file: std::fs::File, start: u64, len: u64) -> ResBody {
    use std::os::unix::fs::FileExt;
    type Read = tokio::task::JoinHandle<std::io::Result<Bytes>>;
    let file = Arc::new(file);
    let read = move |file: Arc<std::fs::File>, pos: u64, n: usize| -> Read {
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; n];
            let mut filled = 0;
            while filled < n {
                match file.read_at(&mut buf[filled..], pos + filled as u64)? {
                    0 => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "blob file shorter than its record",
                        ))
                    }
                    k => filled += k,
                }
            }
            Ok(Bytes::from(buf))
        })
    };
    let end = start + len;
    let first = (len > 0).then(|| read(file.clone(), start, (len as usize).min(READ_CHUNK)));
    let stream = futures_util::stream::unfold((first, start), move |(pending, pos)| {
        let file = file.clone();
        async move {
            let chunk = match pending?.await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(err)) => return Some((Err(BoxError::from(err)), (None, end))),
                Err(err) => return Some((Err(BoxError::from(err)), (None, end))),
            };
            let next = pos + chunk.len() as u64;
            let ahead = (next < end).then(|| read(file, next, ((end - next) as usize).min(READ_CHUNK)));
            Some((Ok(Frame::data(chunk)), (ahead, next)))
        }
    });
    BodyExt::boxed_unsync(StreamBody::new(stream.boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_take_only_validated_ids() {
        let hash = "ab".repeat(32);
        assert!(matches!(route(&format!("/api/rooms/r1/blobs/{hash}")), Ok(Route::Blob(..))));
        assert!(matches!(route("/api/rooms/r1/uploads"), Ok(Route::Uploads(_))));
        assert!(matches!(route("/api/rooms/r1/blobs"), Ok(Route::Blobs(_))));
        let bad = |p: &str| route(p).err().map(|f| f.code);
        assert_eq!(bad("/api/rooms/r1/blobs/..%2F..%2Fetc"), Some("bad_request"));
        assert_eq!(bad("/api/rooms/r1/uploads/../../x"), Some("not_found"));
        assert_eq!(bad("/api/rooms/r1/uploads/ZZ"), Some("bad_request"));
        assert_eq!(bad("/api/rooms/bad room/blobs"), Some("bad_request"));
        assert_eq!(bad("/api/other"), Some("not_found"));
    }

    #[test]
    fn disposition_keeps_the_name_and_never_breaks_the_header() {
        let name = FileName::try_from("résumé \"final\".pdf").unwrap();
        let v = content_disposition(&name, false);
        let v = v.to_str().unwrap();
        assert!(v.starts_with("attachment; filename=\"r_sum_ _final_.pdf\""), "{v}");
        assert!(v.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%2Epdf"), "{v}");
        assert!(is_safe_inline(&MediaType::try_from("image/png").unwrap()));
        assert!(!is_safe_inline(&MediaType::try_from("text/html").unwrap()));
        assert!(!is_safe_inline(&MediaType::try_from("image/svg+xml").unwrap()));
        assert_eq!(media_type(Some("Text/Plain; charset=utf-8")).as_str(), "text/plain");
        assert_eq!(media_type(Some("garbage")).as_str(), "application/octet-stream");
    }
}

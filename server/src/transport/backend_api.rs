//! The backend API: how the app's backend, server to server, posts into rooms, reads their
//! history, sees who is there, removes people and closes rooms. Every call takes one of the
//! configured API keys as `Authorization: Bearer <key>`; answers and errors are JSON in the
//! front door's one format. The calls (with curl examples in the README):
//!
//! - `GET /api/rooms?after=&limit=`: rooms with member counts and history sizes, by name.
//! - `DELETE /api/rooms/<room>?reason=&history=delete&files=delete`: close a room.
//! - `GET /api/rooms/<room>/messages?after=&limit=`: a page of the history.
//! - `POST /api/rooms/<room>/messages`: post as the app (`{"body": ..., "name": ...}`).
//! - `GET /api/rooms/<room>/members`: presence.
//! - `DELETE /api/rooms/<room>/members/<user>?reason=`: remove a user from a room.
//! - `DELETE /api/users/<user>?reason=`: remove a user from the server.
//! - `GET /api/cluster`: the nodes (cluster mode: every node on the shared Redis, alive or
//!   recently dead, with its connections and rooms; alone: this one).

use super::reply::{json_response, param, query, BoxError, Credentials, HttpError, ResBody, StableCode};
use crate::auth::api_keys::ApiKeys;
use crate::blobs::BlobCache;
use crate::hub::Hub;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use relaycast_shared::{Body, ClientMsgId, DisplayName, ErrorCode, Reason, RoomName, UserId};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Largest page of rooms or messages.
pub const MAX_PAGE: usize = 1000;
/// A page's size when the call names none.
pub const DEFAULT_PAGE: usize = 100;

/// The backend API's routes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Rooms,
    Room(RoomName),
    Messages(RoomName),
    Members(RoomName),
    Member(RoomName, UserId),
    User(UserId),
    Cluster,
}

/// The backend API's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendCode {
    /// No API key, or not one of the configured ones (401).
    Unauthorized,
    BadRequest,
    /// No such room (404).
    UnknownRoom,
    NotFound,
    MethodNotAllowed,
    /// The message names a file the server does not have (422).
    UnknownBlob,
    /// The room was deleted before the message was stored (409).
    RoomClosed,
    /// Storage is behind, or the server holds as many rooms as it may (503).
    Overloaded,
    /// The message was not stored in time (504); it may still be.
    Timeout,
    /// Cluster mode: Redis cannot be reached (503).
    StoreUnavailable,
}

impl StableCode for BackendCode {
    fn as_str(self) -> &'static str {
        match self {
            BackendCode::Unauthorized => "unauthorized",
            BackendCode::BadRequest => "bad_request",
            BackendCode::UnknownRoom => "unknown_room",
            BackendCode::NotFound => "not_found",
            BackendCode::MethodNotAllowed => "method_not_allowed",
            BackendCode::UnknownBlob => "unknown_blob",
            BackendCode::RoomClosed => "room_closed",
            BackendCode::Overloaded => "overloaded",
            BackendCode::Timeout => "timeout",
            BackendCode::StoreUnavailable => "store_unavailable",
        }
    }
    fn status(self) -> u16 {
        match self {
            BackendCode::Unauthorized => 401,
            BackendCode::BadRequest => 400,
            BackendCode::UnknownRoom | BackendCode::NotFound => 404,
            BackendCode::MethodNotAllowed => 405,
            BackendCode::RoomClosed => 409,
            BackendCode::UnknownBlob => 422,
            BackendCode::Overloaded | BackendCode::StoreUnavailable => 503,
            BackendCode::Timeout => 504,
        }
    }
}

fn bad(message: impl Into<String>) -> HttpError {
    HttpError::new(BackendCode::BadRequest, message)
}

/// A path segment, percent-decoded (user ids may hold `@`, `|`, ...).
fn segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

pub fn route(path: &str) -> Result<Route, HttpError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let room = |s: &str| RoomName::try_from(segment(s)).map_err(|e| bad(format!("bad room name: {e}")));
    let user = |s: &str| UserId::try_from(segment(s)).map_err(|e| bad(format!("bad user id: {e}")));
    match parts.as_slice() {
        ["api", "rooms"] => Ok(Route::Rooms),
        ["api", "rooms", r] => Ok(Route::Room(room(r)?)),
        ["api", "rooms", r, "messages"] => Ok(Route::Messages(room(r)?)),
        ["api", "rooms", r, "members"] => Ok(Route::Members(room(r)?)),
        ["api", "rooms", r, "members", u] => Ok(Route::Member(room(r)?, user(u)?)),
        ["api", "users", u] => Ok(Route::User(user(u)?)),
        ["api", "cluster"] => Ok(Route::Cluster),
        _ => Err(HttpError::new(BackendCode::NotFound, format!("no such path: {path}"))),
    }
}

/// A post as the app.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Post {
    body: Body,
    /// The name members see (default `App`).
    #[serde(default)]
    name: Option<DisplayName>,
    /// An id of the app's for the message (default: one the server makes).
    #[serde(default)]
    id: Option<ClientMsgId>,
}

#[derive(Debug)]
pub struct BackendApi {
    pub hub: Arc<Hub>,
    pub cache: Arc<BlobCache>,
    pub keys: Arc<ApiKeys>,
    /// Largest post body (the WebSocket's frame limit).
    pub max_body_bytes: usize,
    /// How long a post may wait to be durable.
    pub post_timeout: Duration,
}

impl BackendApi {
    pub async fn handle(
        self: Arc<Self>,
        route: Route,
        credentials: Credentials,
        req: Request<Incoming>,
    ) -> Response<ResBody> {
        let method = req.method().clone();
        super::reply::answer(self.dispatch(route, &credentials, req).await, "backend", &method)
    }

    async fn dispatch(
        &self,
        route: Route,
        credentials: &Credentials,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        check_key(&self.keys, credentials)?;
        let query = query(req.uri());
        let reason = match param(&query, "reason") {
            Some(r) => Some(Reason::try_from(r).map_err(|e| bad(format!("bad reason: {e}")))?),
            None => None,
        };
        let method = req.method().clone();
        match (route, method) {
            (Route::Rooms, Method::GET) => {
                let after = match param(&query, "after") {
                    Some(a) => Some(RoomName::try_from(a).map_err(|e| bad(format!("bad after: {e}")))?),
                    None => None,
                };
                let limit = page_size(&query)?;
                let (rooms, more) = match self.hub.cluster() {
                    // Cluster mode: every room in Redis, whichever node holds it.
                    Some(node) => node.list_rooms(after.as_ref(), limit).await.map_err(redis_down)?,
                    None => self.hub.backend(|engine, _| engine.list_rooms(after.as_ref(), limit)),
                };
                let next_after = more.then(|| rooms.last().map(|r| r.room.clone())).flatten();
                Ok(json_response(StatusCode::OK, &json!({ "rooms": rooms, "next_after": next_after })))
            }
            (Route::Room(room), Method::DELETE) => {
                let delete_history = yes(&query, "history")?;
                let delete_files = yes(&query, "files")?;
                let told = self.hub.backend(|engine, _| engine.close_room(&room, reason, delete_history, delete_files));
                let Some(told) = told else {
                    return Err(HttpError::new(BackendCode::UnknownRoom, format!("no room {room}")));
                };
                let files = if delete_files { self.cache.delete_room(&room).await? } else { 0 };
                let body = json!({ "room": room, "members_told": told, "history_deleted": delete_history, "files_deleted": files });
                Ok(json_response(StatusCode::OK, &body))
            }
            (Route::Messages(room), Method::GET) => {
                let after = match param(&query, "after") {
                    Some(a) => a.parse::<u64>().map_err(|_| bad("after must be a sequence number"))?,
                    None => 0,
                };
                let limit = page_size(&query)?;
                let page = match self.hub.cluster() {
                    // Cluster mode: the shared log has every room, whichever node holds it.
                    Some(node) => node.history_page(&room, after, limit).await.map_err(redis_down)?,
                    None => self.hub.backend(|engine, _| engine.history_page(&room, after, limit)),
                };
                let Some(page) = page else {
                    return Err(HttpError::new(BackendCode::UnknownRoom, format!("no room {room}")));
                };
                // The messages are spliced in as stored (each is a RoomMessage's JSON already).
                let head = json!({
                    "room": room, "epoch": page.epoch, "last_seq": page.last_seq, "oldest_seq": page.oldest_seq,
                    "next_after": page.next_after,
                })
                .to_string();
                let messages: Vec<&str> = page.messages.iter().map(|m| &**m).collect();
                let body = format!("{},\"messages\":[{}]}}", head.trim_end_matches('}'), messages.join(","));
                let mut response = http::Response::new(super::reply::full(body));
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                Ok(response)
            }
            (Route::Messages(room), Method::POST) => {
                let body = read_json(req, self.max_body_bytes).await?;
                let post: Post = serde_json::from_slice(&body).map_err(|e| bad(format!("not a post: {e}")))?;
                let name = post.name.unwrap_or_else(|| DisplayName::try_from("App").unwrap_or_else(|_| unreachable!()));
                let posted = self.hub.post_as_app(room.clone(), name, post.id, post.body);
                let seq = tokio::time::timeout(self.post_timeout, posted)
                    .await
                    .map_err(|_| {
                        HttpError::new(BackendCode::Timeout, "the message was not stored in time; it may still be")
                    })?
                    .map_err(|(code, message)| HttpError::new(engine_code(code), message))?;
                Ok(json_response(StatusCode::CREATED, &json!({ "room": room, "seq": seq })))
            }
            (Route::Members(room), Method::GET) if self.hub.cluster().is_some() => {
                let node = self.hub.cluster().ok_or_else(|| bad("no cluster"))?;
                let members = node.members(&room).await.map_err(redis_down)?;
                Ok(json_response(StatusCode::OK, &json!({ "room": room, "members": members })))
            }
            (Route::Members(room), Method::GET) => match self.hub.backend(|engine, _| engine.room_members(&room)) {
                Some(members) => Ok(json_response(StatusCode::OK, &json!({ "room": room, "members": members }))),
                None => Err(HttpError::new(BackendCode::UnknownRoom, format!("no room {room}"))),
            },
            (Route::Member(room, user), Method::DELETE) => {
                let removed = self
                    .hub
                    .backend(|engine, now| engine.remove_user(Some(&room), &user, ErrorCode::Removed, reason, now));
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "room": room, "user": user, "connections_removed": removed }),
                ))
            }
            (Route::User(user), Method::DELETE) => {
                let removed =
                    self.hub.backend(|engine, now| engine.remove_user(None, &user, ErrorCode::Removed, reason, now));
                Ok(json_response(StatusCode::OK, &json!({ "user": user, "connections_removed": removed })))
            }
            (Route::Cluster, Method::GET) => {
                let Some(node) = self.hub.cluster() else {
                    let (connections, rooms) = self.hub.with_engine(|e| (e.connection_count(), e.room_count()));
                    let me = json!({ "id": "local", "alive": true, "connections": connections, "rooms": rooms });
                    return Ok(json_response(StatusCode::OK, &json!({ "mode": "embedded", "nodes": [me] })));
                };
                match node.cluster_view().await {
                    Ok(nodes) => Ok(json_response(
                        StatusCode::OK,
                        &json!({ "mode": "redis", "this_node": node.node_id(), "nodes": nodes }),
                    )),
                    Err(err) => Err(HttpError::new(BackendCode::StoreUnavailable, format!("redis: {err}"))),
                }
            }
            (_, method) => Err(HttpError::new(BackendCode::MethodNotAllowed, format!("{method} is not allowed here"))),
        }
    }
}

/// The request's API key must be one of `keys`.
pub fn check_key(keys: &ApiKeys, credentials: &Credentials) -> Result<(), HttpError> {
    let Some(presented) = credentials.bearer.as_deref() else {
        return Err(HttpError::new(BackendCode::Unauthorized, "send an API key as `Authorization: Bearer <key>`"));
    };
    match keys.check(presented) {
        Some(_) => Ok(()),
        None if keys.is_empty() => Err(HttpError::new(
            BackendCode::Unauthorized,
            "this server has no API key configured (--api-key-file or --api-key-env)",
        )),
        None => Err(HttpError::new(BackendCode::Unauthorized, "that is not one of this server's API keys")),
    }
}

/// Cluster mode: Redis did not answer.
fn redis_down(err: redis::RedisError) -> HttpError {
    HttpError::new(BackendCode::StoreUnavailable, format!("the shared store (Redis) cannot be reached: {err}"))
}

fn page_size(query: &[(String, String)]) -> Result<usize, HttpError> {
    match param(query, "limit") {
        None => Ok(DEFAULT_PAGE),
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=MAX_PAGE) => Ok(n),
            _ => Err(bad(format!("limit must be 1 to {MAX_PAGE}"))),
        },
    }
}

/// `name=delete` deletes; `keep` or nothing keeps.
fn yes(query: &[(String, String)], name: &str) -> Result<bool, HttpError> {
    match param(query, name) {
        None | Some("keep") => Ok(false),
        Some("delete") => Ok(true),
        Some(other) => Err(bad(format!("{name} must be delete or keep, not {other:?}"))),
    }
}

fn engine_code(code: ErrorCode) -> BackendCode {
    match code {
        ErrorCode::UnknownBlob => BackendCode::UnknownBlob,
        ErrorCode::RoomClosed => BackendCode::RoomClosed,
        ErrorCode::StoreUnavailable => BackendCode::StoreUnavailable,
        ErrorCode::InvalidField => BackendCode::BadRequest,
        _ => BackendCode::Overloaded,
    }
}

async fn read_json(req: Request<Incoming>, max: usize) -> Result<bytes::Bytes, HttpError> {
    let content_type = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(bad(format!("send JSON with Content-Type: application/json (got {content_type:?})")));
    }
    tokio::time::timeout(Duration::from_secs(10), Limited::new(req.into_body(), max).collect())
        .await
        .map_err(|_| bad("the body did not arrive in time"))?
        .map_err(|e: BoxError| bad(format!("cannot read the body (at most {max} bytes): {e}")))
        .map(|collected| collected.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_told_apart_and_user_ids_are_decoded() {
        assert_eq!(route("/api/rooms").unwrap(), Route::Rooms);
        assert!(matches!(route("/api/rooms/r/messages").unwrap(), Route::Messages(_)));
        let Route::Member(_, user) = route("/api/rooms/r/members/auth0%7C42").unwrap() else { panic!() };
        assert_eq!(user.as_str(), "auth0|42");
        assert!(matches!(route("/api/users/ada@example.org").unwrap(), Route::User(_)));
        assert_eq!(route("/api/users/a%20b").unwrap_err().code, "bad_request");
        assert_eq!(route("/api/rooms/r/nothing").unwrap_err().code, "not_found");
    }
}

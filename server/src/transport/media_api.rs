//! WHIP, WHEP and recording over HTTP: a hyper handler beside the blob API.
//!
//! `POST /whip/<room>` and `POST /whep/<room>` take an `application/sdp` offer and answer 201
//! with the SDP answer and the session's `Location`; `DELETE` there ends the session. The
//! session's URL is a capability (128 random bits), so `DELETE` needs no token, as in most
//! WHIP servers. Trickle ICE (`PATCH`) is not offered: the relay is ICE-lite and its one
//! candidate is in the answer. Errors are the front door's JSON, with the stable code in the
//! `relaycast-error` header as well.

use super::reply::{full, BoxError, Credentials, HttpError, ResBody};
use crate::media::{MediaError, Relay, Role};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use relaycast_shared::media::{MediaErrorCode, SessionId};
use relaycast_shared::RoomName;
use std::sync::Arc;
use std::time::Duration;

/// How long reading an offer may take.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// The parts of a media route's path.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Endpoint(Role, RoomName),
    Session(Role, RoomName, SessionId),
    Recording(RoomName),
    /// `/api/rooms/<room>/broadcast`: a moderator ends the room's broadcast.
    Broadcast(RoomName),
}

impl From<MediaError> for HttpError {
    fn from(err: MediaError) -> Self {
        HttpError::new(err.code(), err.to_string())
    }
}

pub fn route(path: &str) -> Result<Route, HttpError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let room = |s: &str| {
        RoomName::try_from(s).map_err(|e| HttpError::new(MediaErrorCode::BadRequest, format!("bad room name: {e}")))
    };
    let role = |s: &str| if s == "whip" { Role::Publisher } else { Role::Viewer };
    match parts.as_slice() {
        [kind @ ("whip" | "whep"), r] => Ok(Route::Endpoint(role(kind), room(r)?)),
        [kind @ ("whip" | "whep"), r, id] => {
            let id = SessionId::try_from(*id)
                .map_err(|_| HttpError::new(MediaErrorCode::UnknownSession, "no such session in this room"))?;
            Ok(Route::Session(role(kind), room(r)?, id))
        }
        ["api", "rooms", r, "recording"] => Ok(Route::Recording(room(r)?)),
        ["api", "rooms", r, "broadcast"] => Ok(Route::Broadcast(room(r)?)),
        _ => Err(HttpError::new(MediaErrorCode::NotFound, format!("no such path: {path}"))),
    }
}

/// Headers that let a WHIP/WHEP client on an allowed other origin talk to us.
fn cors(response: &mut Response<ResBody>, origin: Option<HeaderValue>) {
    let h = response.headers_mut();
    let Some(origin) = origin else { return };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("location, relaycast-error"));
}

/// The media routes' handler.
#[derive(Debug)]
pub struct MediaApi {
    pub relay: Arc<Relay>,
    /// Cluster mode: which node each room's media is on.
    pub cluster: Option<Arc<crate::cluster::media::ClusterMedia>>,
}

/// A Redis failure on the media path.
fn redis_failed(err: redis::RedisError) -> HttpError {
    HttpError::new(MediaErrorCode::Unavailable, format!("the shared media index (Redis): {err}"))
}

/// A forwarding failure.
fn node_failed(err: String) -> HttpError {
    HttpError::new(MediaErrorCode::Unavailable, format!("the room's media node: {err}"))
}

impl MediaApi {
    /// Answer a request the front door routed here, with the credentials it read. The front
    /// door has refused origins that are not allowed, so an `Origin` here is one to answer
    /// with CORS headers (a WHIP client in a page of another allowed origin).
    pub async fn handle(
        self: Arc<Self>,
        route: Route,
        credentials: Credentials,
        req: Request<Incoming>,
    ) -> Response<ResBody> {
        let method = req.method().clone();
        let origin = req.headers().get(header::ORIGIN).cloned();
        let mut response = super::reply::answer(self.dispatch(route, &credentials, req).await, "media", &method);
        cors(&mut response, origin);
        response
    }

    async fn dispatch(
        &self,
        route: Route,
        credentials: &Credentials,
        req: Request<Incoming>,
    ) -> Result<Response<ResBody>, HttpError> {
        let method = req.method().clone();
        if method == Method::OPTIONS {
            let mut response = Response::new(full(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response.headers_mut().insert("accept-post", HeaderValue::from_static("application/sdp"));
            return Ok(response);
        }
        // Cluster mode: what concerns a room whose media is on another node is answered there.
        if let Some(media) = &self.cluster {
            let elsewhere = match &route {
                Route::Endpoint(_, room) => match media.claim(room).await.map_err(redis_failed)? {
                    crate::cluster::media::Holder::Here => None,
                    crate::cluster::media::Holder::There(url) => Some(url),
                },
                Route::Session(role, room, id) if self.relay.close_session_would_find(room, *role, id) => None,
                Route::Session(_, _, id) => media.session_node(id).await.map_err(redis_failed)?,
                Route::Recording(room) | Route::Broadcast(room) => {
                    media.holder_elsewhere(room).await.map_err(redis_failed)?
                }
            };
            if let Some(node) = elsewhere {
                let answer = media.link().forward(&node, req).await.map_err(node_failed)?;
                return Ok(answer.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()));
            }
        }
        match (route, method) {
            (Route::Endpoint(role, room), Method::POST) => self.offer(req, credentials, role, &room).await,
            (Route::Session(role, room, id), Method::DELETE) => {
                self.relay.close_session(&room, role, &id)?;
                Ok(Response::new(full(Bytes::new())))
            }
            (Route::Session(..), Method::PATCH) => Err(HttpError::new(
                MediaErrorCode::MethodNotAllowed,
                "trickle ICE is not supported: the answer carries the server's candidate; send yours in the offer",
            )),
            (Route::Recording(room), m @ (Method::POST | Method::DELETE)) => {
                self.authorize(&room, credentials, relaycast_shared::Right::Record).await?;
                if m == Method::POST {
                    self.relay.start_recording(&room)?;
                    let mut response =
                        Response::new(full(serde_json::to_vec(&self.relay.broadcast_state(&room)).unwrap_or_default()));
                    *response.status_mut() = StatusCode::CREATED;
                    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok(response)
                } else {
                    let info = self.relay.stop_recording(&room).await?;
                    let mut response = Response::new(full(serde_json::to_vec(&info).unwrap_or_default()));
                    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    Ok(response)
                }
            }
            (Route::Broadcast(room), Method::DELETE) => {
                self.authorize(&room, credentials, relaycast_shared::Right::Moderate).await?;
                self.relay.end_broadcast(&room)?;
                Ok(Response::new(full(Bytes::new())))
            }
            (_, method) => {
                Err(HttpError::new(MediaErrorCode::MethodNotAllowed, format!("{method} is not allowed here")))
            }
        }
    }

    async fn offer(
        &self,
        req: Request<Incoming>,
        credentials: &Credentials,
        role: Role,
        room: &RoomName,
    ) -> Result<Response<ResBody>, HttpError> {
        let member = self.authorize(room, credentials, role.right()).await?;
        let addr = req.extensions().get::<super::Client>().map(|c| c.addr).unwrap_or([127, 0, 0, 1].into());
        let caller = crate::media::Caller { addr, member };
        let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_sdp(content_type) {
            return Err(HttpError::new(
                MediaErrorCode::UnsupportedMediaType,
                format!("the offer must be sent as Content-Type: application/sdp (got {content_type:?})"),
            ));
        }
        let max = self.relay.config.max_offer_bytes;
        let body = tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), max).collect())
            .await
            .map_err(|_| HttpError::new(MediaErrorCode::BadRequest, "the offer did not arrive in time"))?
            .map_err(|e: BoxError| {
                HttpError::new(MediaErrorCode::BadRequest, format!("cannot read the offer (at most {max} bytes): {e}"))
            })?
            .to_bytes();
        let sdp = std::str::from_utf8(&body)
            .map_err(|_| HttpError::new(MediaErrorCode::MalformedSdp, "the offer is not UTF-8 text"))?;
        let (id, answer) = self.relay.open_session(room, role, sdp, &caller)?;
        if let Some(media) = &self.cluster {
            media.record_session(&id).await.map_err(redis_failed)?;
        }
        let kind = if role == Role::Publisher { "whip" } else { "whep" };
        let mut response = Response::new(full(answer));
        *response.status_mut() = StatusCode::CREATED;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
        let location = format!("/{kind}/{room}/{id}");
        h.insert(
            header::LOCATION,
            HeaderValue::from_str(&location).map_err(|e| HttpError::new(MediaErrorCode::Unavailable, e.to_string()))?,
        );
        Ok(response)
    }
}

impl MediaApi {
    /// [`Relay::authorize`], with the rights of a member of another node looked up in Redis
    /// (cluster mode).
    async fn authorize(
        &self,
        room: &RoomName,
        credentials: &Credentials,
        need: relaycast_shared::Right,
    ) -> Result<Option<relaycast_shared::PeerId>, HttpError> {
        let holder = self.relay.verify_token(room, credentials.bearer.as_deref(), need)?;
        let Some(peer) = &holder else { return Ok(None) };
        let mut rights = self.relay.events.rights(room, peer);
        if let (None, Some(media)) = (rights, &self.cluster) {
            rights = media.member_rights(room, peer).await.map_err(redis_failed)?;
        }
        self.relay.check_rights(need, rights)?;
        Ok(holder)
    }
}

/// `application/sdp`, with parameters or not, in any case; nothing else (not `application/sdpx`).
fn is_sdp(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/sdp")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sdp_is_sdp() {
        assert!(is_sdp("application/sdp"));
        assert!(is_sdp("Application/SDP; charset=utf-8"));
        assert!(!is_sdp("application/sdpx"));
        assert!(!is_sdp("application/sdp-extra; x=1"));
        assert!(!is_sdp(""));
    }

    #[test]
    fn routes_are_told_apart() {
        assert!(matches!(route("/whip/stage"), Ok(Route::Endpoint(Role::Publisher, _))));
        assert!(matches!(route("/whep/stage"), Ok(Route::Endpoint(Role::Viewer, _))));
        let id = SessionId::from_bits(5);
        assert!(matches!(route(&format!("/whep/stage/{id}")), Ok(Route::Session(Role::Viewer, _, _))));
        assert!(matches!(route("/api/rooms/stage/recording"), Ok(Route::Recording(_))));
        assert_eq!(route("/whip/stage/nope").unwrap_err().code, "unknown_session");
        assert_eq!(route("/whip/a/b/c").unwrap_err().code, "not_found");
        assert_eq!(route("/whip/bad%20room").unwrap_err().code, "bad_request");
    }
}

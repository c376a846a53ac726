//! The front door's routing: every request's path is parsed once, here, into the part of the
//! server that answers it. Rooms' resources live under `/api/rooms/<room>/` (files, uploads,
//! recording) and at `/whip/<room>`, `/whep/<room>`; the rest is the WebSocket, health,
//! metrics and the web app.

use super::reply::{DoorCode, HttpError};
use super::{backend_api, blob_api, media_api};

/// Who answers a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /ws`.
    Ws,
    /// `/app-config.json`: what the web app needs to know of the deployment (token mode, where
    /// the app gets tokens).
    AppConfig,
    /// `/healthz`, `/readyz`, `/metrics`.
    Health,
    Ready,
    Metrics,
    /// `/api/rooms/<room>/blobs...` and `/uploads...`.
    Blob(blob_api::Route),
    /// `/whip/<room>...`, `/whep/<room>...`, `/api/rooms/<room>/recording`.
    Media(media_api::Route),
    /// The app's backend: `/api/rooms`, `/api/rooms/<room>`, its `messages` and `members`,
    /// `/api/users/<user>`.
    Backend(backend_api::Route),
    /// Anything else: the web app's files (and its `index.html` for deep links).
    App,
}

impl Route {
    pub fn parse(path: &str) -> Result<Route, HttpError> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match segments.as_slice() {
            ["ws"] => Ok(Route::Ws),
            ["healthz"] => Ok(Route::Health),
            ["readyz"] => Ok(Route::Ready),
            ["metrics"] => Ok(Route::Metrics),
            ["app-config.json"] => Ok(Route::AppConfig),
            ["whip" | "whep", ..] | ["api", "rooms", _, "recording" | "broadcast"] => {
                media_api::route(path).map(Route::Media)
            }
            ["api", "rooms", _, "blobs" | "uploads", ..] | ["internal", "rooms", _, "blobs", _] => {
                blob_api::route(path).map(Route::Blob)
            }
            ["api", "rooms"]
            | ["api", "rooms", _]
            | ["api", "rooms", _, "messages" | "members"]
            | ["api", "rooms", _, "members", _]
            | ["api", "users", _]
            | ["api", "cluster"] => backend_api::route(path).map(Route::Backend),
            ["api", ..] => Err(HttpError::new(DoorCode::NotFound, format!("no such path: {path}"))),
            _ => Ok(Route::App),
        }
    }

    /// Whether this is a blob download's route (the sendfile path takes those).
    pub fn is_blob(&self) -> bool {
        matches!(self, Route::Blob(blob_api::Route::Blob(..)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relaycast_shared::media::SessionId;

    #[test]
    fn each_path_has_one_route() {
        let hash = "a".repeat(64);
        assert_eq!(Route::parse("/ws").unwrap(), Route::Ws);
        assert_eq!(Route::parse("/healthz").unwrap(), Route::Health);
        assert!(Route::parse(&format!("/api/rooms/r/blobs/{hash}")).unwrap().is_blob());
        assert!(matches!(Route::parse("/api/rooms/r/uploads").unwrap(), Route::Blob(blob_api::Route::Uploads(_))));
        assert!(matches!(Route::parse("/api/rooms/r/recording").unwrap(), Route::Media(_)));
        assert!(matches!(Route::parse("/whip/stage").unwrap(), Route::Media(_)));
        assert!(matches!(Route::parse("/api/rooms").unwrap(), Route::Backend(_)));
        assert!(matches!(Route::parse("/api/rooms/r/messages").unwrap(), Route::Backend(_)));
        assert!(matches!(Route::parse("/api/users/u1").unwrap(), Route::Backend(_)));
        assert!(matches!(Route::parse("/api/cluster").unwrap(), Route::Backend(_)));
        let id = SessionId::from_bits(9);
        assert!(matches!(Route::parse(&format!("/whep/stage/{id}")).unwrap(), Route::Media(_)));
        assert_eq!(Route::parse("/r/standup").unwrap(), Route::App);
        assert_eq!(Route::parse("/").unwrap(), Route::App);
        assert_eq!(Route::parse("/index.html").unwrap(), Route::App);
        // Errors are the front door's, in its one format.
        assert_eq!(Route::parse("/api/nothing").unwrap_err().code, "not_found");
        assert_eq!(Route::parse("/api/rooms/r/other").unwrap_err().code, "not_found");
        assert_eq!(Route::parse("/api/rooms/bad%20room/blobs").unwrap_err().code, "bad_request");
        assert_eq!(Route::parse("/whip/..").unwrap_err().code, "bad_request");
    }
}

//! What every HTTP handler shares: the body type, small response builders, the credentials a
//! request carries, and the one error answer: JSON `{code, message}` with the stable code in
//! the `relaycast-error` header too (WHIP clients read headers, browsers read JSON).

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use relaycast_shared::blobs::BlobErrorCode;
use relaycast_shared::media::{MediaErrorCode, ERROR_HEADER};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ResBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn empty() -> ResBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> ResBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// `value` as JSON, never cached.
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<ResBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case, as RFC 9110
/// says of auth schemes).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The query's parameters, percent-decoded.
pub fn query(uri: &http::Uri) -> Vec<(String, String)> {
    uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

pub fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// What a request presents to prove it may reach a room's resources, read in one place:
/// `Authorization: Bearer`, or for links and `<img src>`, `?grant=` (the blob API only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub bearer: Option<String>,
    pub query_grant: Option<String>,
}

impl Credentials {
    pub fn of(headers: &HeaderMap, uri: &http::Uri) -> Self {
        Credentials {
            bearer: bearer(headers).map(str::to_owned),
            query_grant: param(&query(uri), "grant").map(str::to_owned),
        }
    }

    /// The bearer token, else the query's grant.
    pub fn grant(&self) -> Option<&str> {
        self.bearer.as_deref().or(self.query_grant.as_deref())
    }
}

/// An API's answer: its response, or its refusal in the one error format (logged, with the
/// API's name and the request's method, at debug level).
pub fn answer(
    result: Result<Response<ResBody>, HttpError>,
    api: &'static str,
    method: &http::Method,
) -> Response<ResBody> {
    result.unwrap_or_else(|fail| {
        tracing::debug!(code = %fail.code, message = %fail.message, %method, api, "request refused");
        fail.into_response()
    })
}

/// The one error body: `{"code": ..., "message": ...}`.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "code": code, "message": message }).to_string()
}

/// A stable error code with its HTTP status.
pub trait StableCode: Copy + std::fmt::Debug {
    fn as_str(self) -> &'static str;
    fn status(self) -> u16;
}

impl StableCode for BlobErrorCode {
    fn as_str(self) -> &'static str {
        BlobErrorCode::as_str(self)
    }
    fn status(self) -> u16 {
        BlobErrorCode::status(self)
    }
}

impl StableCode for MediaErrorCode {
    fn as_str(self) -> &'static str {
        MediaErrorCode::as_str(self)
    }
    fn status(self) -> u16 {
        MediaErrorCode::status(self)
    }
}

/// Codes of the front door itself (before a request reaches an API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorCode {
    NotFound,
    BadRequest,
    OriginNotAllowed,
    /// A part of the server that is turned off (`--no-media`).
    Unavailable,
}

impl StableCode for DoorCode {
    fn as_str(self) -> &'static str {
        match self {
            DoorCode::NotFound => "not_found",
            DoorCode::BadRequest => "bad_request",
            DoorCode::OriginNotAllowed => "origin_not_allowed",
            DoorCode::Unavailable => "unavailable",
        }
    }
    fn status(self) -> u16 {
        match self {
            DoorCode::NotFound => 404,
            DoorCode::BadRequest => 400,
            DoorCode::OriginNotAllowed => 403,
            DoorCode::Unavailable => 503,
        }
    }
}

/// An error answer: the status and code, a plain message, and headers that go with it.
#[derive(Debug)]
pub struct HttpError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpError {
    pub fn new(code: impl StableCode, message: impl Into<String>) -> Self {
        HttpError { status: code.status(), code: code.as_str(), message: message.into(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn into_response(self) -> Response<ResBody> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(full(error_body(self.code, &self.message)));
        *response.status_mut() = status;
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let h = response.headers_mut();
        h.insert(HeaderName::from_static(ERROR_HEADER), HeaderValue::from_static(self.code));
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_error_format_for_every_api() {
        let response = HttpError::new(MediaErrorCode::PublisherBusy, "someone is live").into_response();
        assert_eq!(response.status(), 409);
        assert_eq!(response.headers()[ERROR_HEADER], "publisher_busy");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let response = HttpError::new(DoorCode::OriginNotAllowed, "no").into_response();
        assert_eq!(response.status(), 403);
        assert_eq!(response.headers()[ERROR_HEADER], "origin_not_allowed");
    }

    #[test]
    fn credentials_are_read_once_and_the_scheme_in_any_case() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bEaReR  tok-1 ".parse().unwrap());
        let uri: http::Uri = "/api/rooms/r/blobs?grant=from%20query".parse().unwrap();
        let creds = Credentials::of(&headers, &uri);
        assert_eq!(creds.bearer.as_deref(), Some("tok-1"));
        assert_eq!(creds.grant(), Some("tok-1"), "the header wins");
        let creds = Credentials::of(&HeaderMap::new(), &uri);
        assert_eq!(creds.grant(), Some("from query"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }
}

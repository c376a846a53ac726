//! The only code that knows warp: routes, the WebSocket upgrade, static files, rejections.

mod metrics;
pub mod ws;

use crate::hub::Hub;
use std::path::PathBuf;
use std::sync::Arc;
use warp::http::{header, Response, StatusCode};
use warp::{Filter, Rejection, Reply};

pub use ws::WsSettings;

/// Every route of the server.
pub fn routes(
    hub: Arc<Hub>,
    settings: WsSettings,
    static_dir: PathBuf,
) -> impl Filter<Extract = (impl Reply,), Error = std::convert::Infallible> + Clone {
    ws::route(hub.clone(), settings)
        .or(healthz())
        .or(readyz(hub.clone()))
        .or(metrics(hub))
        .or(static_files(static_dir))
        .recover(handle_rejection)
}

/// GET /healthz: the process is up.
fn healthz() -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("healthz")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| "ok\n")
}

/// GET /readyz: the server takes traffic (its store writes, it is not shutting down).
fn readyz(hub: Arc<Hub>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("readyz")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            if hub.is_ready() {
                json_error(StatusCode::OK, "ready", "ready")
            } else {
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "store failing or shutting down",
                )
            }
        })
}

/// GET /metrics: Prometheus text format.
fn metrics(hub: Arc<Hub>) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    warp::path("metrics")
        .and(warp::path::end())
        .and(warp::get())
        .map(move || {
            warp::reply::with_header(
                metrics::render(&hub),
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )
        })
}

/// GET /*: the built web app; any other GET path gets `index.html`, so deep links such as
/// `/r/<room>` load the app, which routes them.
fn static_files(dir: PathBuf) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    let index = dir.join("index.html");
    let missing = warp::get().and_then(move || {
        let index = index.clone();
        async move {
            match tokio::fs::read_to_string(&index).await {
                Ok(html) => Ok(warp::reply::html(html)),
                Err(_) => Err(warp::reject::not_found()),
            }
        }
    });
    warp::get()
        .and(warp::fs::dir(dir))
        .map(Reply::into_response)
        .or(missing.map(Reply::into_response))
        .unify()
}

/// A JSON error body `{code, message}` with a stable code.
pub(crate) fn json_error(status: StatusCode, code: &str, message: &str) -> Response<String> {
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle_rejection(
    rejection: Rejection,
) -> Result<Response<String>, std::convert::Infallible> {
    let (status, code, message) = if rejection.is_not_found() {
        (
            StatusCode::NOT_FOUND,
            "not_found",
            "no such path (is the web app built? see README)",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed",
        )
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        (StatusCode::BAD_REQUEST, "bad_request", "bad request")
    };
    Ok(json_error(status, code, message))
}

//! The front door: one place every request passes, whatever it asks for.

use super::reply::{BoxError, Credentials, DoorCode, HttpError, ResBody};
use super::route::Route;
use super::{BackendApi, BlobApi, Client, MediaApi, MetricsAccess, Origins, Proxies};
use http_body_util::BodyExt;
use std::net::IpAddr;
use std::sync::Arc;

/// Every request of a connection comes in here, is parsed once into its [`Route`], checked
/// once (its origin; its client's address, from a trusted proxy's word; its credentials,
/// read once), and goes to the part of the server that answers it. Errors found here are
/// answered in the one JSON format, like those of the APIs behind.
pub(super) struct FrontDoor<W> {
    pub warp: W,
    pub blob_api: Option<Arc<BlobApi>>,
    pub media_api: Option<Arc<MediaApi>>,
    pub backend_api: Option<Arc<BackendApi>>,
    pub origins: Arc<Origins>,
    pub proxies: Arc<Proxies>,
    pub client: Client,
    /// The connection comes from a trusted proxy: each request's client is the one it names.
    pub from_proxy: bool,
    pub peer: IpAddr,
    /// Who may read `/metrics` here.
    pub metrics: MetricsAccess,
    /// The body of `/app-config.json`.
    pub app_config: Arc<str>,
}

impl<W, B> FrontDoor<W>
where
    W: hyper::service::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<B>,
        Error = std::convert::Infallible,
    >,
    W::Future: Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    pub fn answer(
        &self,
        mut req: http::Request<hyper::body::Incoming>,
    ) -> futures_util::future::BoxFuture<'static, http::Response<ResBody>> {
        use futures_util::future::FutureExt;
        let refused = |err: HttpError| futures_util::future::ready(err.into_response()).boxed();
        let mut client = self.client.clone();
        if self.from_proxy {
            client.addr = self.proxies.client_addr(self.peer, req.headers());
        }
        req.extensions_mut().insert(client);
        if !self.origins.allows(req.headers()) {
            let message = "pages of this origin may not use this server (see --allowed-origin)";
            return refused(HttpError::new(DoorCode::OriginNotAllowed, message));
        }
        let route = match Route::parse(req.uri().path()) {
            Ok(route) => route,
            Err(err) => return refused(err),
        };
        let credentials = || Credentials::of(req.headers(), req.uri());
        if route == Route::Metrics {
            match &self.metrics {
                MetricsAccess::Public => {}
                MetricsAccess::ApiKey(keys) => {
                    if let Err(err) = super::backend_api::check_key(keys, &credentials()) {
                        return refused(err);
                    }
                }
                MetricsAccess::Elsewhere => {
                    let message = "metrics are served on the --metrics-bind address";
                    return refused(HttpError::new(DoorCode::NotFound, message));
                }
            }
        }
        if route == Route::AppConfig {
            let mut response = http::Response::new(super::reply::full(bytes::Bytes::from(self.app_config.to_string())));
            let headers = response.headers_mut();
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            headers.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-cache"));
            return futures_util::future::ready(response).boxed();
        }
        if let Route::Backend(route) = route {
            return match &self.backend_api {
                Some(api) => api.clone().handle(route, credentials(), req).boxed(),
                None => refused(HttpError::new(DoorCode::Unavailable, "the backend API is off on this server")),
            };
        }
        match (route, &self.blob_api, &self.media_api) {
            (Route::Backend(_) | Route::AppConfig, _, _) => unreachable!("answered above"),
            (Route::Blob(route), Some(api), _) => api.clone().handle(route, credentials(), req).boxed(),
            (Route::Media(route), _, Some(api)) => api.clone().handle(route, credentials(), req).boxed(),
            (Route::Media(_), _, None) => {
                refused(HttpError::new(DoorCode::Unavailable, "the media relay is off on this server (--no-media)"))
            }
            (Route::Blob(_), None, _) => refused(HttpError::new(DoorCode::Unavailable, "no blob cache on this server")),
            (Route::Ws | Route::Health | Route::Ready | Route::Metrics | Route::App, _, _) => {
                hyper::service::Service::call(&self.warp, req)
                    .map(|result| match result {
                        Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
                        Err(never) => match never {},
                    })
                    .boxed()
            }
        }
    }
}

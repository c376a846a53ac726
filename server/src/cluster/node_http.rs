//! Talking HTTP to another node of the cluster: a request forwarded as it came (an upload's
//! chunk to the node holding the partial file, a WHIP/WHEP offer to the room's media node), or
//! a file fetched from a node that has it.
//!
//! Each node registers where it is reached (`rc:nodes:url`: its `--advertise-url`) and, when
//! it serves TLS itself, its certificate's SHA-256 fingerprint (`rc:nodes:cert`). A node
//! talking to another over https pins that fingerprint: self-signed certificates work between
//! nodes, and nothing but the node registered in Redis is trusted.

use crate::tls::{client_config, Certificates, ClientTrust};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use redis::aio::ConnectionManager;
use std::sync::Arc;

/// Node id → the URL other nodes reach it at.
pub const NODE_URLS: &str = "rc:nodes:url";
/// Node id → the SHA-256 fingerprint of the certificate it serves (nodes serving TLS).
pub const NODE_CERTS: &str = "rc:nodes:cert";

/// How this node reaches the others, and tells them how to reach it.
#[derive(Debug)]
pub struct NodeLink {
    node_id: String,
    url: String,
    certificates: Option<Arc<Certificates>>,
    conn: ConnectionManager,
}

impl NodeLink {
    pub fn new(node_id: &str, url: &str, certificates: Option<Arc<Certificates>>, conn: ConnectionManager) -> Self {
        NodeLink { node_id: node_id.to_owned(), url: url.trim_end_matches('/').to_owned(), certificates, conn }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Say where this node is reached (and by which certificate); repeated, so that a new
    /// certificate is known as it is loaded.
    pub async fn register(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET").arg(NODE_URLS).arg(&self.node_id).arg(&self.url).ignore();
        match &self.certificates {
            Some(certificates) => {
                pipe.cmd("HSET").arg(NODE_CERTS).arg(&self.node_id).arg(certificates.fingerprint()).ignore()
            }
            None => pipe.cmd("HDEL").arg(NODE_CERTS).arg(&self.node_id).ignore(),
        };
        pipe.query_async(&mut conn).await
    }

    /// Forward `req` to `node` and give back its answer: the client's request and answer are
    /// the same whichever node it reached. The body streams through, not stored here.
    pub async fn forward(&self, node: &str, req: http::Request<Incoming>) -> Result<http::Response<Incoming>, String> {
        let (mut parts, body) = req.into_parts();
        // Hop-by-hop headers stay on this hop.
        for name in ["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"] {
            parts.headers.remove(name);
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        parts.uri = path.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
        self.send(node, http::Request::from_parts(parts, body)).await
    }

    /// `GET path` on `node` with a bearer token.
    pub async fn get(&self, node: &str, path: &str, bearer: &str) -> Result<http::Response<Incoming>, String> {
        let request = http::Request::get(path)
            .header("authorization", format!("Bearer {bearer}"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        self.send(node, request).await
    }

    async fn send<B>(&self, node: &str, mut req: http::Request<B>) -> Result<http::Response<Incoming>, String>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut conn = self.conn.clone();
        let (url, fingerprint): (Option<String>, Option<String>) = redis::pipe()
            .cmd("HGET")
            .arg(NODE_URLS)
            .arg(node)
            .cmd("HGET")
            .arg(NODE_CERTS)
            .arg(node)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("redis: {e}"))?;
        let url = url.ok_or_else(|| format!("node {node} has not said where it is reached"))?;
        let (tls, authority) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            _ => return Err(format!("node {node}'s URL is neither http:// nor https://: {url}")),
        };
        let authority = authority.split('/').next().unwrap_or(authority).to_owned();
        req.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_str(&authority).map_err(|e| e.to_string())?);
        let tcp = tokio::net::TcpStream::connect(&authority).await.map_err(|e| format!("connect {authority}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            return sender.send_request(req).await.map_err(|e| e.to_string());
        }
        // The node's own certificate, as it registered it; without one, the system's roots.
        let trust = fingerprint.map_or(ClientTrust::System, ClientTrust::Fingerprint);
        let config = client_config(&trust).map_err(|e| e.to_string())?;
        let host = authority.rsplit_once(':').map_or(authority.as_str(), |(host, _)| host);
        let name =
            rustls_pki_types::ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
                .map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {node}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        sender.send_request(req).await.map_err(|e| e.to_string())
    }
}

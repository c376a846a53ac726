//! Talking HTTP to another node of the cluster: a request forwarded as it came (an upload's
//! chunk to the node holding the partial file, a WHIP/WHEP offer to the room's media node).
//! Nodes reach each other at their `--advertise-url` (plain http).

use hyper_util::rt::TokioIo;

/// Forward `req` to the node at `url` and give back its answer: the client's request and
/// answer are the same whichever node it reached. The body streams through, not stored here.
pub async fn forward(
    url: &str,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let authority = url.strip_prefix("http://").ok_or_else(|| format!("not an http:// node URL: {url}"))?;
    let tcp = tokio::net::TcpStream::connect(authority).await.map_err(|e| format!("connect {authority}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let (mut parts, body) = req.into_parts();
    // Hop-by-hop headers stay on this hop.
    for name in ["connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"] {
        parts.headers.remove(name);
    }
    parts.headers.insert(http::header::HOST, http::HeaderValue::from_str(authority).map_err(|e| e.to_string())?);
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    parts.uri = path.parse().map_err(|e: http::uri::InvalidUri| e.to_string())?;
    sender.send_request(http::Request::from_parts(parts, body)).await.map_err(|e| e.to_string())
}

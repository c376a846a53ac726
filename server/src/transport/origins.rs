//! Which web origins may open a WebSocket or call the HTTP APIs from a browser (CORS).
//!
//! A browser sends `Origin` with every WebSocket upgrade and cross-origin request, and any
//! page may try: without a check, a page on another site could open a WebSocket to a
//! Relaycast it can reach and act as the visitor (cross-site WebSocket hijacking). Requests
//! without `Origin` come from programs, not from a page, and are not judged here.

use http::HeaderMap;

/// The allow-list. The app's own origin (the `Host` it was reached at) is always allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// Any origin (`--allowed-origin '*'`).
    Any,
    /// The app's own origin, the listed ones (`scheme://host[:port]`, compared without case),
    /// and, when `loopback` is set, any `http(s)://localhost`, `127.0.0.1` or `[::1]` origin
    /// (a dev server such as `trunk serve`).
    List { allowed: Vec<String>, loopback: bool },
}

impl Origins {
    /// From `--allowed-origin` values: none means the app's own origin and loopback ones.
    pub fn from_config(values: &[String]) -> Result<Self, String> {
        if values.iter().any(|v| v.trim() == "*") {
            return Ok(Origins::Any);
        }
        let mut allowed = Vec::new();
        for value in values.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
            let origin = value.trim_end_matches('/').to_ascii_lowercase();
            let Some((scheme, host)) = origin.split_once("://") else {
                return Err(format!("{value:?} is not an origin such as https://app.example.org"));
            };
            if !matches!(scheme, "http" | "https") || host.is_empty() || host.contains('/') {
                return Err(format!("{value:?} is not an origin such as https://app.example.org"));
            }
            allowed.push(origin);
        }
        let loopback = allowed.is_empty();
        Ok(Origins::List { allowed, loopback })
    }

    /// Whether a request with these headers may proceed.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(http::header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        match self {
            Origins::Any => true,
            Origins::List { allowed, loopback } => {
                let origin = origin.to_ascii_lowercase();
                let Some((_, origin_host)) = origin.split_once("://") else {
                    return false;
                };
                let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
                origin_host.eq_ignore_ascii_case(host)
                    || allowed.contains(&origin)
                    || (*loopback && is_loopback_host(origin_host))
            }
        }
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host_port: &str) -> bool {
    let host = if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            h.insert(http::header::ORIGIN, origin.parse().unwrap());
        }
        h
    }

    #[test]
    fn by_default_the_apps_own_origin_and_loopback_dev_servers() {
        let o = Origins::from_config(&[]).unwrap();
        assert!(o.allows(&headers(None, "rc.example.org")), "programs send no Origin");
        assert!(o.allows(&headers(Some("https://rc.example.org"), "rc.example.org")));
        assert!(o.allows(&headers(Some("http://127.0.0.1:8081"), "127.0.0.1:8080")), "trunk serve");
        assert!(o.allows(&headers(Some("http://localhost:8081"), "rc.example.org")));
        assert!(o.allows(&headers(Some("http://[::1]:3000"), "rc.example.org")));
        assert!(!o.allows(&headers(Some("https://evil.example"), "rc.example.org")));
        assert!(!o.allows(&headers(Some("https://rc.example.org.evil.example"), "rc.example.org")));
        assert!(!o.allows(&headers(Some("null"), "rc.example.org")));
    }

    #[test]
    fn a_list_names_exactly_who_else_may() {
        let o = Origins::from_config(&["https://App.example.org/".into()]).unwrap();
        assert!(o.allows(&headers(Some("https://app.example.org"), "rc.example.org")));
        assert!(!o.allows(&headers(Some("http://app.example.org"), "rc.example.org")), "scheme counts");
        assert!(!o.allows(&headers(Some("http://localhost:8081"), "rc.example.org")), "no loopback once listed");
        assert!(o.allows(&headers(Some("https://rc.example.org"), "rc.example.org")), "own origin");
        assert_eq!(Origins::from_config(&["*".into()]).unwrap(), Origins::Any);
        assert!(Origins::Any.allows(&headers(Some("https://anyone.example"), "x")));
        assert!(Origins::from_config(&["app.example.org".into()]).is_err());
        assert!(Origins::from_config(&["ftp://x".into()]).is_err());
        assert!(Origins::from_config(&["https://x/path".into()]).is_err());
    }
}

//! Time-limited TURN credentials in coturn's REST scheme (`use-auth-secret`): the username is
//! `<unix expiry>:<peer id>` and the password is base64(HMAC-SHA1(shared secret, username)).
//! coturn recomputes the same HMAC, so no password is ever stored or shared with clients for
//! longer than the TTL.

use super::Millis;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use relaycast_shared::{IceServer, PeerId};

/// A TURN deployment the server hands credentials for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs of the coturn server(s).
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// How long minted credentials stay valid.
    pub ttl_secs: u64,
}

impl TurnConfig {
    /// Credentials for `peer`, valid for the TTL from `now`.
    pub fn credentials(&self, peer: &PeerId, now: Millis) -> IceServer {
        let expiry = now / 1000 + self.ttl_secs;
        let username = format!("{expiry}:{peer}");
        IceServer {
            urls: self.urls.clone(),
            credential: Some(password(&self.secret, &username)),
            username: Some(username),
        }
    }
}

fn password(secret: &str, username: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match hmac::Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_coturns_rest_scheme() {
        let turn =
            TurnConfig { urls: vec!["turn:127.0.0.1:3478".into()], secret: "relaycast-secret".into(), ttl_secs: 3600 };
        let peer = PeerId::try_from("k3x9Qa").unwrap();
        let ice = turn.credentials(&peer, 1_795_000_000_123);
        assert_eq!(ice.username.as_deref(), Some("1795003600:k3x9Qa"));
        // Reference value from Python's hmac module:
        // base64(hmac.new(b"relaycast-secret", b"1795003600:k3x9Qa", sha1).digest())
        assert_eq!(ice.credential.as_deref(), Some("ooO8VuW8Va0+o6YH5gqPhz9SmIE="));
        assert_eq!(ice.urls, vec!["turn:127.0.0.1:3478".to_owned()]);
    }
}

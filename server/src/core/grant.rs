//! Room grants: bearer tokens that let a room's members use the room's files over HTTP.
//!
//! A grant is `<expires ms>.<peer id>.<signature>`, the signature being base64url(HMAC-SHA256
//! (server secret, room, peer, expiry)). The WebSocket session hands one out on join; the
//! HTTP layer checks it without any state. The secret is the server's own (random at start), so
//! grants end with the process, and clients get new ones when they rejoin.

use super::Millis;
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use relaycast_shared::{PeerId, RoomName};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Why a grant was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("the grant is not of the form <expiry>.<peer>.<signature>")]
    Malformed,
    #[error("the grant has expired; rejoin the room for a new one")]
    Expired,
    #[error("the grant is not valid for this room")]
    BadSignature,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantConfig {
    pub secret: Vec<u8>,
    pub ttl_ms: u64,
}

/// What a token lets its holder do; part of what is signed, so one kind never passes for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A member's grant: the room's files, watching its broadcast.
    Member,
    /// The room owner's stream key: going live, recording.
    Stream,
    /// Cluster mode: one node fetching a room's file from another (the peer is the node).
    Node,
}

fn mac(secret: &[u8], purpose: Purpose, room: &RoomName, peer: &str, expires: u64) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    let tag = match purpose {
        Purpose::Member => "relaycast-grant",
        Purpose::Stream => "relaycast-stream-key",
        Purpose::Node => "relaycast-node",
    };
    mac.update(format!("{tag}\n{room}\n{peer}\n{expires}").as_bytes());
    mac
}

impl GrantConfig {
    /// A grant for `peer` in `room`, valid for the TTL from `now`; returns it and its expiry.
    pub fn mint(&self, room: &RoomName, peer: &PeerId, now: Millis) -> (String, u64) {
        self.mint_for(Purpose::Member, room, peer, now)
    }

    /// A token of `purpose` for `peer` in `room`, valid for the TTL from `now`.
    pub fn mint_for(&self, purpose: Purpose, room: &RoomName, peer: &PeerId, now: Millis) -> (String, u64) {
        let expires = now + self.ttl_ms;
        let sig = mac(&self.secret, purpose, room, peer.as_str(), expires).finalize().into_bytes();
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        (format!("{expires}.{peer}.{sig}"), expires)
    }

    /// The peer a grant was minted for, if it is genuine, for `room`, and not expired at `now`.
    pub fn verify(&self, room: &RoomName, token: &str, now: Millis) -> Result<PeerId, GrantError> {
        self.verify_for(Purpose::Member, room, token, now)
    }

    /// Like [`GrantConfig::verify`], for a token of `purpose`.
    pub fn verify_for(
        &self,
        purpose: Purpose,
        room: &RoomName,
        token: &str,
        now: Millis,
    ) -> Result<PeerId, GrantError> {
        let mut parts = token.splitn(3, '.');
        let (Some(expires), Some(peer), Some(sig)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(GrantError::Malformed);
        };
        let expires: u64 = expires.parse().map_err(|_| GrantError::Malformed)?;
        let peer = PeerId::try_from(peer).map_err(|_| GrantError::Malformed)?;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).map_err(|_| GrantError::Malformed)?;
        // Constant-time comparison.
        mac(&self.secret, purpose, room, peer.as_str(), expires)
            .verify_slice(&sig)
            .map_err(|_| GrantError::BadSignature)?;
        if now > expires {
            return Err(GrantError::Expired);
        }
        Ok(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_verify_only_for_their_room_and_until_expiry() {
        let g = GrantConfig { secret: b"k".to_vec(), ttl_ms: 1000 };
        let room = RoomName::try_from("r").unwrap();
        let peer = PeerId::try_from("p1").unwrap();
        let (token, expires) = g.mint(&room, &peer, 5000);
        assert_eq!(expires, 6000);
        assert_eq!(g.verify(&room, &token, 5999), Ok(peer.clone()));
        assert_eq!(g.verify(&room, &token, 6001), Err(GrantError::Expired));
        // A member's grant is not a stream key, and the other way round.
        assert_eq!(g.verify_for(Purpose::Stream, &room, &token, 5000), Err(GrantError::BadSignature));
        let (key, _) = g.mint_for(Purpose::Stream, &room, &peer, 5000);
        assert_eq!(g.verify_for(Purpose::Stream, &room, &key, 5000), Ok(peer.clone()));
        assert_eq!(g.verify(&room, &key, 5000), Err(GrantError::BadSignature));
        assert_eq!(g.verify(&RoomName::try_from("other").unwrap(), &token, 5000), Err(GrantError::BadSignature));
        let other_key = GrantConfig { secret: b"x".to_vec(), ttl_ms: 1000 };
        assert_eq!(other_key.verify(&room, &token, 5000), Err(GrantError::BadSignature));
        let forged = token.replacen("p1", "p2", 1);
        assert_eq!(g.verify(&room, &forged, 5000), Err(GrantError::BadSignature));
        assert_eq!(g.verify(&room, "garbage", 5000), Err(GrantError::Malformed));
        assert_eq!(g.verify(&room, "1.p.!!!", 0), Err(GrantError::Malformed));
    }
}

//! Access tokens: who a connection is and what it may do, as the app's backend says.
//!
//! In token mode every connection presents a JWT that the embedding app's backend signed
//! (EdDSA with an Ed25519 key, or HS256 with a shared secret). Relaycast only verifies: the
//! signature with the configured key the token's `kid` names, `aud`, `iss` when configured,
//! and `exp`/`nbf` against the time passed in (so the engine stays deterministic), with a
//! small leeway for clocks that disagree. The claims:
//!
//! ```json
//! { "sub": "user-42", "name": "Ada", "aud": "relaycast", "exp": 1795003600,
//!   "rooms": { "standup": ["join", "history", "publish"], "team-*": ["join", "watch"] } }
//! ```
//!
//! `rooms` maps a room name, or a prefix pattern ending in `*`, to rights
//! ([`relaycast_shared::Right`]). For a room, an exact entry wins over patterns and a longer
//! pattern over a shorter one, so a backend can grant `team-*` and narrow `team-lobby`.
//! Verification is pure: keys are loaded by [`keys`], tokens minted by [`mint`].

pub mod api_keys;
pub mod keys;
pub mod mint;

use crate::core::Millis;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use relaycast_shared::{DisplayName, ErrorCode, Rights, RoomName, UserId};
use serde::Deserialize;
use std::collections::HashMap;

/// Why a token was refused. `code` is the stable code the client sees: `unauthorized` (not
/// genuine, malformed) or `token_expired`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AuthError {
    pub code: ErrorCode,
    pub message: String,
}

impl AuthError {
    fn unauthorized(message: impl Into<String>) -> Self {
        AuthError { code: ErrorCode::Unauthorized, message: message.into() }
    }
}

/// One key tokens may be signed with.
#[derive(Clone)]
pub struct VerifyKey {
    /// The `kid` tokens name it by; a key without one verifies tokens without a `kid`.
    pub kid: Option<String>,
    /// EdDSA for an Ed25519 public key, HS256 for a secret: a token must use exactly this.
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

/// Checks tokens against the configured keys and claims.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<VerifyKey>,
    audience: String,
    issuer: Option<String>,
    leeway_ms: Millis,
}

/// Who a verified token says the bearer is, and what it may do where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    pub name: DisplayName,
    pub rooms: RoomRights,
    /// `exp`, in milliseconds.
    pub expires: Millis,
    /// `iat`, in milliseconds, when the token has one.
    pub issued: Option<Millis>,
}

/// Rights per room name or prefix pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomRights {
    exact: HashMap<String, Rights>,
    /// (prefix, rights), longest prefix first.
    prefixes: Vec<(String, Rights)>,
}

impl RoomRights {
    /// From the `rooms` claim's entries. A key is a room name, or a room-name prefix followed
    /// by one `*` at the end (`*` alone matches every room).
    pub fn new(entries: impl IntoIterator<Item = (String, Rights)>) -> Result<Self, String> {
        let mut rights = RoomRights::default();
        for (key, granted) in entries {
            match key.strip_suffix('*') {
                Some(prefix) if !prefix.contains('*') => {
                    if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
                        return Err(format!("{key:?} is not a room name or a prefix pattern such as team-*"));
                    }
                    rights.prefixes.push((prefix.to_owned(), granted));
                }
                None => {
                    RoomName::try_from(key.as_str())
                        .map_err(|e| format!("{key:?} is not a room name or a prefix pattern such as team-*: {e}"))?;
                    rights.exact.insert(key, granted);
                }
                Some(_) => return Err(format!("{key:?}: a pattern has one `*`, at the end")),
            }
        }
        rights.prefixes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        Ok(rights)
    }

    /// The rights in `room`: its exact entry, else its longest matching pattern, else none.
    pub fn for_room(&self, room: &RoomName) -> Rights {
        if let Some(rights) = self.exact.get(room.as_str()) {
            return *rights;
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| room.as_str().starts_with(prefix.as_str()))
            .map_or(Rights::NONE, |(_, r)| *r)
    }
}

/// The claims Relaycast reads; others are ignored.
#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    rooms: HashMap<String, Rights>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iat: Option<u64>,
}

impl Verifier {
    /// `leeway_ms` is how far `exp` and `nbf` may be off (clocks disagree a little).
    pub fn new(keys: Vec<VerifyKey>, audience: String, issuer: Option<String>, leeway_ms: Millis) -> Self {
        Verifier { keys, audience, issuer, leeway_ms }
    }

    /// How far `exp` and `nbf` may be off.
    pub fn leeway_ms(&self) -> Millis {
        self.leeway_ms
    }

    /// Verify `token` at `now`.
    pub fn verify(&self, token: &str, now: Millis) -> Result<Identity, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::unauthorized(format!("the token is not a signed JWT ({e})")))?;
        let candidates: Vec<&VerifyKey> = self.keys.iter().filter(|k| k.kid == header.kid).collect();
        if candidates.is_empty() {
            return Err(AuthError::unauthorized(match &header.kid {
                Some(kid) => format!("no key with id {kid:?} is configured"),
                None => "the token names no key id (kid) and no key without one is configured".to_owned(),
            }));
        }
        let mut last = AuthError::unauthorized("no configured key verifies this token");
        for key in candidates {
            if key.algorithm != header.alg {
                last = AuthError::unauthorized(format!(
                    "the token is signed with {:?}, but its key is for {:?}",
                    header.alg, key.algorithm
                ));
                continue;
            }
            match self.verify_with(token, key, now) {
                Ok(identity) => return Ok(identity),
                Err(err) if err.code != ErrorCode::Unauthorized || err.message != "bad signature" => return Err(err),
                Err(err) => last = err,
            }
        }
        Err(last)
    }

    fn verify_with(&self, token: &str, key: &VerifyKey, now: Millis) -> Result<Identity, AuthError> {
        let mut validation = Validation::new(key.algorithm);
        // Time is checked below against the `now` passed in.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.set_audience(&[&self.audience]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            AuthError::unauthorized(match e.kind() {
                ErrorKind::InvalidSignature => "bad signature".to_owned(),
                ErrorKind::InvalidAudience => {
                    format!("the token is not for this server (aud must be {:?})", self.audience)
                }
                ErrorKind::InvalidIssuer => "the token's issuer (iss) is not the configured one".to_owned(),
                ErrorKind::MissingRequiredClaim(claim) => format!("the token has no {claim:?} claim"),
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not its key's".to_owned(),
                ErrorKind::Json(err) => format!("the token's claims are not valid: {err}"),
                _ => format!("the token is not valid: {e}"),
            })
        })?;
        let claims = data.claims;
        let expires = claims.exp.saturating_mul(1000);
        if now > expires.saturating_add(self.leeway_ms) {
            return Err(AuthError { code: ErrorCode::TokenExpired, message: "the token has expired".into() });
        }
        if let Some(nbf) = claims.nbf {
            if nbf.saturating_mul(1000) > now.saturating_add(self.leeway_ms) {
                return Err(AuthError::unauthorized("the token is not valid yet (nbf is in the future)"));
            }
        }
        let user = UserId::try_from(claims.sub).map_err(|e| AuthError::unauthorized(format!("bad sub claim: {e}")))?;
        let name = match claims.name {
            Some(name) => {
                DisplayName::try_from(name).map_err(|e| AuthError::unauthorized(format!("bad name claim: {e}")))?
            }
            // Without a name, people see the user id (shortened to a display name's length).
            None => DisplayName::try_from(
                user.as_str().chars().take(relaycast_shared::limits::MAX_DISPLAY_NAME_CHARS).collect::<String>(),
            )
            .map_err(|e| AuthError::unauthorized(format!("no name claim, and sub is no display name: {e}")))?,
        };
        let rooms =
            RoomRights::new(claims.rooms).map_err(|e| AuthError::unauthorized(format!("bad rooms claim: {e}")))?;
        Ok(Identity { user, name, rooms, expires, issued: claims.iat.map(|s| s.saturating_mul(1000)) })
    }
}

/// Who is in a room now and with which rights, for the HTTP side: grants and stream keys hold
/// only while their holder is a member, and only for what its rights allow now.
pub trait Members: Send + Sync + std::fmt::Debug {
    /// `peer`'s rights in `room`, or `None` when it is not a member.
    fn rights(
        &self,
        room: &relaycast_shared::RoomName,
        peer: &relaycast_shared::PeerId,
    ) -> Option<relaycast_shared::Rights>;
}

#[cfg(test)]
mod tests;

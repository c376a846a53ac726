//! `relaycast token`: mint a token for development and tests, as an app's backend would with
//! any JWT library (see the README for PyJWT and `jose`).

use super::keys::{split_kid, MIN_SECRET_BYTES};
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use relaycast_shared::{DisplayName, Rights, UserId};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Duration;

/// Mint an access token (prints it on standard output).
#[derive(Debug, Clone, Parser)]
#[command(name = "relaycast token", about = "Mint a Relaycast access token for development and tests")]
pub struct TokenArgs {
    /// The signing key, `[KID=]FILE`: an Ed25519 private key in PEM (from `relaycast keygen`)
    /// for EdDSA, or, with --hs256, a file holding the shared secret.
    #[arg(long)]
    pub key: String,

    /// The key is a shared secret (HS256), not an Ed25519 private key.
    #[arg(long)]
    pub hs256: bool,

    /// The user's stable id.
    #[arg(long)]
    pub sub: String,

    /// The display name others see (default: the user id).
    #[arg(long)]
    pub name: Option<String>,

    /// `ROOM=RIGHTS`, rights separated by commas (`standup=join,history,publish`); ROOM may be a
    /// prefix pattern (`team-*`). Repeat for more rooms.
    #[arg(long = "room", value_name = "ROOM=RIGHTS")]
    pub rooms: Vec<String>,

    /// How long the token is valid (e.g. 1h, 15m).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,

    /// The audience the server expects (its --auth-audience).
    #[arg(long, default_value = "relaycast")]
    pub audience: String,

    /// The issuer, when the server checks one.
    #[arg(long)]
    pub issuer: Option<String>,
}

/// The claims of a token for `args`, issued at `now_secs`.
pub fn claims(args: &TokenArgs, now_secs: u64) -> Result<Value, String> {
    UserId::try_from(args.sub.as_str()).map_err(|e| format!("--sub: {e}"))?;
    if let Some(name) = &args.name {
        DisplayName::try_from(name.as_str()).map_err(|e| format!("--name: {e}"))?;
    }
    let mut rooms = Map::new();
    for spec in &args.rooms {
        let (room, rights) = spec.split_once('=').ok_or_else(|| format!("--room {spec:?} is not ROOM=RIGHTS"))?;
        let rights = Rights::parse_list(rights).map_err(|e| format!("--room {spec:?}: {e}"))?;
        super::RoomRights::new([(room.to_owned(), rights)]).map_err(|e| format!("--room: {e}"))?;
        rooms.insert(room.to_owned(), serde_json::to_value(rights).map_err(|e| e.to_string())?);
    }
    let mut claims = json!({
        "sub": args.sub,
        "aud": args.audience,
        "iat": now_secs,
        "exp": now_secs + args.ttl.as_secs().max(1),
        "rooms": rooms,
    });
    if let Some(name) = &args.name {
        claims["name"] = json!(name);
    }
    if let Some(issuer) = &args.issuer {
        claims["iss"] = json!(issuer);
    }
    Ok(claims)
}

/// The signed token for `args`.
pub fn mint(args: &TokenArgs, now_secs: u64) -> Result<String, String> {
    let claims = claims(args, now_secs)?;
    let (kid, path) = split_kid(&args.key)?;
    let bytes = std::fs::read(PathBuf::from(path)).map_err(|e| format!("cannot read {path}: {e}"))?;
    let (algorithm, key) = if args.hs256 {
        let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!("the secret in {path} is shorter than {MIN_SECRET_BYTES} bytes"));
        }
        (Algorithm::HS256, EncodingKey::from_secret(secret).map_err(|e| format!("the secret in {path}: {e}"))?)
    } else {
        let key = EncodingKey::from_ed_pem(&bytes)
            .map_err(|e| format!("{path} is not an Ed25519 private key in PEM (BEGIN PRIVATE KEY): {e}"))?;
        (Algorithm::EdDSA, key)
    };
    let header = Header { kid, ..Header::new(algorithm) };
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| format!("cannot sign: {e}"))
}

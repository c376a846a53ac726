use super::keys::{generate_ed25519, KeySource, KeySpec};
use super::mint::{mint, TokenArgs};
use super::*;
use base64::Engine as _;
use relaycast_shared::Right;

const NOW_SECS: u64 = 1_800_000_000;
const NOW: Millis = NOW_SECS * 1000;

struct Keys {
    _dir: tempfile::TempDir,
    private: PathBuf,
    public: PathBuf,
    secret: PathBuf,
}
use std::path::PathBuf;

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) = generate_ed25519().unwrap();
    let private = dir.path().join("k.pem");
    let public = dir.path().join("k.pub.pem");
    let secret = dir.path().join("secret");
    std::fs::write(&private, private_pem).unwrap();
    std::fs::write(&public, public_pem).unwrap();
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-secret\n").unwrap();
    Keys { _dir: dir, private, public, secret }
}

fn args(key: String) -> TokenArgs {
    TokenArgs {
        key,
        hs256: false,
        sub: "user-1".into(),
        name: Some("Ada".into()),
        rooms: vec!["standup=join,history,publish".into(), "team-*=join,watch".into()],
        ttl: std::time::Duration::from_secs(600),
        audience: "relaycast".into(),
        issuer: None,
    }
}

fn verifier(specs: Vec<KeySpec>) -> Verifier {
    Verifier::new(specs.iter().map(|s| s.load().unwrap()).collect(), "relaycast".into(), None, 30_000)
}

fn ed(kid: Option<&str>, k: &Keys) -> KeySpec {
    KeySpec { kid: kid.map(Into::into), source: KeySource::PublicKeyFile(k.public.clone()) }
}

fn room(s: &str) -> RoomName {
    RoomName::try_from(s).unwrap()
}

#[test]
fn a_minted_token_verifies_with_its_rights_per_room_and_pattern() {
    let k = keys();
    let token = mint(&args(k.private.display().to_string()), NOW_SECS).unwrap();
    let id = verifier(vec![ed(None, &k)]).verify(&token, NOW).unwrap();
    assert_eq!(id.user.as_str(), "user-1");
    assert_eq!(id.name.as_str(), "Ada");
    assert_eq!(id.expires, NOW + 600_000);
    assert_eq!(id.issued, Some(NOW));
    let standup = id.rooms.for_room(&room("standup"));
    assert!(standup.has(Right::Publish) && standup.has(Right::History) && !standup.has(Right::Broadcast));
    let team = id.rooms.for_room(&room("team-red"));
    assert!(team.has(Right::Watch) && !team.has(Right::Publish));
    assert!(id.rooms.for_room(&room("elsewhere")).is_empty());
    assert!(id.rooms.for_room(&room("team")).is_empty(), "a prefix pattern needs its whole prefix");
}

#[test]
fn exact_entries_win_over_patterns_and_longer_patterns_over_shorter() {
    let r = |s: &str| Rights::parse_list(s).unwrap();
    let rights = RoomRights::new([
        ("*".to_owned(), r("join")),
        ("team-*".to_owned(), r("join,publish")),
        ("team-lobby".to_owned(), r("join,history")),
    ])
    .unwrap();
    assert_eq!(rights.for_room(&room("team-lobby")), r("join,history"));
    assert_eq!(rights.for_room(&room("team-x")), r("join,publish"));
    assert_eq!(rights.for_room(&room("other")), r("join"));
    assert!(RoomRights::new([("te*m-*".to_owned(), r("join"))]).is_err());
    assert!(RoomRights::new([("bad room".to_owned(), r("join"))]).is_err());
}

#[test]
fn expired_early_wrong_audience_and_tampered_tokens_are_refused() {
    let k = keys();
    let v = verifier(vec![ed(None, &k)]);
    let token = mint(&args(k.private.display().to_string()), NOW_SECS).unwrap();
    // Within the leeway after exp: still fine; past it: token_expired.
    assert!(v.verify(&token, NOW + 600_000 + 29_000).is_ok());
    let err = v.verify(&token, NOW + 600_000 + 31_000).unwrap_err();
    assert_eq!(err.code, ErrorCode::TokenExpired);

    let mut a = args(k.private.display().to_string());
    a.audience = "another-service".into();
    let err = v.verify(&mint(&a, NOW_SECS).unwrap(), NOW).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(err.message.contains("aud"), "{err}");

    // Claims changed after signing (a room added): the signature no longer holds.
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["rooms"]["admin-room"] = serde_json::json!(["join", "moderate"]);
    let forged = format!("{}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let err = v.verify(&forged, NOW).unwrap_err();
    assert_eq!((err.code, err.message.as_str()), (ErrorCode::Unauthorized, "bad signature"));

    // Another key pair: refused.
    let other = keys();
    let err = verifier(vec![ed(None, &other)]).verify(&token, NOW).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert!(v.verify("not.a.jwt", NOW).is_err());
    assert!(v.verify("", NOW).is_err());
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    let k = keys();
    let v = verifier(vec![ed(None, &k)]);
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = serde_json::json!({"sub": "u", "aud": "relaycast", "exp": NOW_SECS + 600, "rooms": {"r": ["join"]}});
    let unsigned = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims.to_string()));
    assert_eq!(v.verify(&unsigned, NOW).unwrap_err().code, ErrorCode::Unauthorized);
    // HS256 "signed" with the public key's PEM as the secret (the classic confusion attack).
    let public_pem = std::fs::read(&k.public).unwrap();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem).unwrap(),
    )
    .unwrap();
    let err = v.verify(&confused, NOW).unwrap_err();
    assert!(err.message.contains("HS256"), "{err}");
    // A secret key does not take an EdDSA token.
    let token = mint(&args(k.private.display().to_string()), NOW_SECS).unwrap();
    let hs = verifier(vec![KeySpec { kid: None, source: KeySource::SecretFile(k.secret.clone()) }]);
    assert!(hs.verify(&token, NOW).is_err());
}

#[test]
fn keys_are_chosen_by_kid_so_they_can_be_rotated() {
    let (old, new) = (keys(), keys());
    let v = verifier(vec![
        ed(Some("2026-11"), &old),
        ed(Some("2026-12"), &new),
        KeySpec { kid: Some("shared".into()), source: KeySource::SecretFile(old.secret.clone()) },
    ]);
    let by_old = mint(&args(format!("2026-11={}", old.private.display())), NOW_SECS).unwrap();
    let by_new = mint(&args(format!("2026-12={}", new.private.display())), NOW_SECS).unwrap();
    assert!(v.verify(&by_old, NOW).is_ok());
    assert!(v.verify(&by_new, NOW).is_ok());
    let mut hs = args(format!("shared={}", old.secret.display()));
    hs.hs256 = true;
    assert!(v.verify(&mint(&hs, NOW_SECS).unwrap(), NOW).is_ok());
    // A kid that is not configured, a token without kid, and a kid naming the wrong key.
    let unknown = mint(&args(format!("2025-01={}", old.private.display())), NOW_SECS).unwrap();
    assert!(v.verify(&unknown, NOW).unwrap_err().message.contains("2025-01"));
    let no_kid = mint(&args(old.private.display().to_string()), NOW_SECS).unwrap();
    assert!(v.verify(&no_kid, NOW).is_err());
    let swapped = mint(&args(format!("2026-12={}", old.private.display())), NOW_SECS).unwrap();
    assert_eq!(v.verify(&swapped, NOW).unwrap_err().message, "bad signature");
}

#[test]
fn an_unknown_right_or_a_missing_claim_is_an_error_not_ignored() {
    let k = keys();
    let v = verifier(vec![KeySpec { kid: None, source: KeySource::SecretFile(k.secret.clone()) }]);
    let secret = std::fs::read(&k.secret).unwrap();
    let key = jsonwebtoken::EncodingKey::from_secret(secret.strip_suffix(b"\n").unwrap()).unwrap();
    let sign =
        |claims: serde_json::Value| jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let err = v
        .verify(&sign(serde_json::json!({"sub": "u", "aud": "relaycast", "exp": NOW_SECS + 60, "rooms": {"r": ["join", "admin"]}})), NOW)
        .unwrap_err();
    assert!(err.message.contains("unknown right \"admin\""), "{err}");
    let err = v.verify(&sign(serde_json::json!({"sub": "u", "exp": NOW_SECS + 60})), NOW).unwrap_err();
    assert!(err.message.contains("aud"), "{err}");
    let err = v.verify(&sign(serde_json::json!({"aud": "relaycast", "sub": "u"})), NOW).unwrap_err();
    assert!(err.message.contains("exp"), "{err}");
    let err = v
        .verify(
            &sign(serde_json::json!({"sub": "u", "aud": "relaycast", "exp": NOW_SECS + 60, "nbf": NOW_SECS + 300})),
            NOW,
        )
        .unwrap_err();
    assert!(err.message.contains("nbf"), "{err}");
    // No name: people see the user id.
    let id = v.verify(&sign(serde_json::json!({"sub": "u-9", "aud": "relaycast", "exp": NOW_SECS + 60})), NOW).unwrap();
    assert_eq!(id.name.as_str(), "u-9");
}

#[test]
fn key_files_of_the_wrong_kind_and_short_secrets_are_refused_at_start() {
    let k = keys();
    let load = |source| KeySpec { kid: None, source }.load();
    assert!(load(KeySource::PublicKeyFile(k.private.clone())).is_err(), "a private key is no public key");
    assert!(load(KeySource::PublicKeyFile(k.secret.clone())).is_err());
    std::fs::write(&k.secret, "short").unwrap();
    assert!(load(KeySource::SecretFile(k.secret.clone())).unwrap_err().contains("at least 32"));
    assert!(load(KeySource::SecretEnv("RELAYCAST_TEST_UNSET_SECRET".into())).unwrap_err().contains("not set"));
    assert_eq!(super::keys::split_kid("a=b").unwrap(), (Some("a".into()), "b"));
    assert_eq!(super::keys::split_kid("/x/y.pem").unwrap(), (None, "/x/y.pem"));
    assert!(super::keys::split_kid("bad kid=x").is_err());
}

#[test]
fn the_issuer_is_checked_when_configured() {
    let k = keys();
    let load = |issuer: Option<&str>| {
        let key = ed(None, &k).load().unwrap();
        Verifier::new(vec![key], "relaycast".into(), issuer.map(Into::into), 30_000)
    };
    let mut a = args(k.private.display().to_string());
    let unnamed = mint(&a, NOW_SECS).unwrap();
    a.issuer = Some("https://app.example.org".into());
    let named = mint(&a, NOW_SECS).unwrap();
    a.issuer = Some("https://evil.example.org".into());
    let other = mint(&a, NOW_SECS).unwrap();
    let checked = load(Some("https://app.example.org"));
    assert!(checked.verify(&named, NOW).is_ok());
    assert!(checked.verify(&other, NOW).unwrap_err().message.contains("iss"));
    assert!(checked.verify(&unnamed, NOW).unwrap_err().message.contains("iss"), "required once configured");
    assert!(load(None).verify(&other, NOW).is_ok(), "not checked when not configured");
}

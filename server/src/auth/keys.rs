//! Where verification keys come from: Ed25519 public keys in PEM files, shared secrets in
//! files or environment variables, each under an optional key id (`kid`) so that several can
//! be in force at once while keys are rotated. Also `relaycast keygen`'s key pair.

use super::VerifyKey;
use jsonwebtoken::{Algorithm, DecodingKey};
use std::path::{Path, PathBuf};

/// A shared secret shorter than this is refused: HS256 with a short secret can be brute-forced
/// offline from any one token.
pub const MIN_SECRET_BYTES: usize = 32;

/// A key as configured: `[KID=]SOURCE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub kid: Option<String>,
    pub source: KeySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// An Ed25519 public key (`-----BEGIN PUBLIC KEY-----`): EdDSA tokens.
    PublicKeyFile(PathBuf),
    /// A secret in a file (a trailing line break is not part of it): HS256 tokens.
    SecretFile(PathBuf),
    /// A secret in an environment variable: HS256 tokens.
    SecretEnv(String),
}

/// Split `[KID=]VALUE` (a key id is 1..=64 characters of `[A-Za-z0-9_.-]`).
pub fn split_kid(s: &str) -> Result<(Option<String>, &str), String> {
    match s.split_once('=') {
        Some((kid, value)) if !kid.contains('/') => {
            if kid.is_empty() || kid.len() > 64 || !kid.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(format!("{kid:?} is not a key id (1 to 64 of A-Z a-z 0-9 _ . -)"));
            }
            if value.is_empty() {
                return Err(format!("nothing after {kid}="));
            }
            Ok((Some(kid.to_owned()), value))
        }
        _ if s.is_empty() => Err("empty key".into()),
        _ => Ok((None, s)),
    }
}

impl KeySpec {
    /// Read the key. Errors say which flag's key failed and why.
    pub fn load(&self) -> Result<VerifyKey, String> {
        let (algorithm, key) = match &self.source {
            KeySource::PublicKeyFile(path) => {
                let pem = read(path)?;
                let key = DecodingKey::from_ed_pem(&pem).map_err(|e| {
                    format!("{} is not an Ed25519 public key in PEM (BEGIN PUBLIC KEY): {e}", path.display())
                })?;
                (Algorithm::EdDSA, key)
            }
            KeySource::SecretFile(path) => {
                let mut secret = read(path)?;
                while secret.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    secret.pop();
                }
                (Algorithm::HS256, secret_key(&secret, &path.display().to_string())?)
            }
            KeySource::SecretEnv(var) => {
                let secret = std::env::var(var).map_err(|_| format!("environment variable {var} is not set"))?;
                (Algorithm::HS256, secret_key(secret.as_bytes(), &format!("${var}"))?)
            }
        };
        Ok(VerifyKey { kid: self.kid.clone(), algorithm, key })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn secret_key(secret: &[u8], from: &str) -> Result<DecodingKey, String> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "the secret in {from} has {} bytes; an HS256 secret needs at least {MIN_SECRET_BYTES} (try: openssl rand -base64 32)",
            secret.len()
        ));
    }
    DecodingKey::from_secret(secret).map_err(|e| format!("the secret in {from}: {e}"))
}

/// A new Ed25519 key pair as PEM: (private key, PKCS#8 v1 as RFC 8410 shows it; public key,
/// SubjectPublicKeyInfo). The private key is written as v1 (the seed alone), which every JWT
/// library and OpenSSL read; the generator's v2 form (seed and public key) is not.
pub fn generate_ed25519() -> Result<(String, String), String> {
    // PKCS#8 v2 for Ed25519: SEQUENCE { 1, { id-Ed25519 }, OCTET STRING { OCTET STRING seed }, [1] pub }.
    const V2_PREFIX: &[u8] =
        &[0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    // The same with version 0 and no public key.
    const V1_PREFIX: &[u8] =
        &[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(|e| e.to_string())?;
    let der = pair.serialize_der();
    let seed = der
        .strip_prefix(V2_PREFIX)
        .and_then(|rest| rest.get(..32))
        .ok_or("the key generator's Ed25519 key has an unexpected form")?;
    let v1 = [V1_PREFIX, seed].concat();
    Ok((pem("PRIVATE KEY", &v1), pair.public_key_pem()))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// Write a new key pair to `<stem>.pem` (private, readable by the owner only) and
/// `<stem>.pub.pem`; refuses to overwrite. Returns both paths.
pub fn write_key_pair(stem: &Path) -> Result<(PathBuf, PathBuf), String> {
    let private = PathBuf::from(format!("{}.pem", stem.display()));
    let public = PathBuf::from(format!("{}.pub.pem", stem.display()));
    for path in [&private, &public] {
        if path.exists() {
            return Err(format!("{} exists; not overwriting a key", path.display()));
        }
    }
    let (private_pem, public_pem) = generate_ed25519()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = |options: &std::fs::OpenOptions, path: &Path, text: &str| {
        use std::io::Write;
        options
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&options, &private, &private_pem)?;
    let mut public_options = std::fs::OpenOptions::new();
    public_options.write(true).create_new(true);
    write(&public_options, &public, &public_pem)?;
    Ok((private, public))
}

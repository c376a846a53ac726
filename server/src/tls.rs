//! TLS on the server's port (https and wss; WHIP and WHEP too), with rustls.
//!
//! Browsers give the camera and microphone only to secure contexts: https, or localhost. So a
//! Relaycast reached over a LAN or the internet needs TLS, from one of two sources:
//! - PEM files (`--tls-cert`, `--tls-key`), for example from Let's Encrypt. They are watched
//!   and reloaded when they change, or on SIGHUP, without a restart; a bad new pair is
//!   reported and the old one kept.
//! - A self-signed certificate (`--tls-self-signed`) for the machine's names and addresses,
//!   kept in the data directory, so its fingerprint stays the same across restarts; people
//!   check that fingerprint once in their browser.
//!
//! The certificate in use sits behind a lock that handshakes read ([`ResolvesServerCert`]), so
//! a reload affects new connections only.

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the certificate files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    NoKey { path: PathBuf, reason: String },
    #[error("the private key does not fit: {0}")]
    BadKey(String),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
    #[error("cannot keep the self-signed certificate in {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    BadFingerprint(String),
}

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Self-signed for these names and addresses, kept in `dir`.
    SelfSigned {
        dir: PathBuf,
        names: Vec<String>,
    },
}

/// The certificate in use, swapped on reload.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    source: TlsSource,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Certificates {
    /// Load (or make) the certificate.
    pub fn load(source: TlsSource) -> Result<Arc<Self>, TlsError> {
        let key = match &source {
            TlsSource::Files { cert, key } => load_pem(cert, key)?,
            TlsSource::SelfSigned { dir, names } => self_signed(dir, names)?,
        };
        Ok(Arc::new(Certificates { current: RwLock::new(Arc::new(key)), source }))
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// SHA-256 of the leaf certificate, as browsers show it (`AB:CD:...`).
    pub fn fingerprint(&self) -> String {
        let current = self.current();
        let digest = current.cert.first().map(|c| Sha256::digest(c.as_ref()).to_vec()).unwrap_or_default();
        digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
    }

    /// Load the files again (for [`TlsSource::Files`]); keep the old pair if the new one is bad.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let TlsSource::Files { cert, key } = &self.source else {
            return Ok(false);
        };
        let fresh = load_pem(cert, key)?;
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(fresh);
        Ok(true)
    }

    /// The TLS settings of the server's port: TLS 1.3 and 1.2, HTTP/1.1.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map(|builder| builder.with_no_client_auth().with_cert_resolver(self.clone()));
        let mut config = match config {
            Ok(config) => config,
            // aws-lc-rs supports the default versions; this cannot fail.
            Err(err) => unreachable!("TLS defaults: {err}"),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Reload the files when they change or on SIGHUP, until the server stops.
    pub async fn watch(self: Arc<Self>) {
        let TlsSource::Files { cert, key } = &self.source else {
            return;
        };
        let stamp = || (modified(cert), modified(key));
        let mut seen = stamp();
        let mut every = tokio::time::interval(WATCH_INTERVAL);
        #[cfg(unix)]
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let sighup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let sighup = std::future::pending::<Option<()>>();
            let forced = tokio::select! {
                _ = every.tick() => false,
                _ = sighup => true,
            };
            let now = stamp();
            if !forced && now == seen {
                continue;
            }
            seen = now;
            match self.reload() {
                Ok(_) => tracing::info!(fingerprint = %self.fingerprint(), "TLS certificate reloaded"),
                Err(err) => tracing::error!(error = %err, "TLS certificate not reloaded; keeping the one in use"),
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// A certificate chain and its key from PEM files, checked to belong together.
pub fn load_pem(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source });
    let cert_pem = read(cert_path)?;
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.to_owned() });
    }
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|err| TlsError::NoKey { path: key_path.to_owned(), reason: err.to_string() })?;
    let certified = CertifiedKey::from_der(certs, key, &provider()).map_err(|err| TlsError::BadKey(err.to_string()))?;
    Ok(certified)
}

/// The self-signed certificate for `names`, made once and kept in `dir` (made again when the
/// names change).
fn self_signed(dir: &Path, names: &[String]) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path, names_path) =
        (dir.join("self-signed.crt"), dir.join("self-signed.key"), dir.join("self-signed.names"));
    let wanted = names.join("\n");
    if std::fs::read_to_string(&names_path).is_ok_and(|kept| kept == wanted) {
        if let Ok(key) = load_pem(&cert_path, &key_path) {
            return Ok(key);
        }
    }
    let made = rcgen::generate_simple_self_signed(names.to_vec()).map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(dir)
            .and_then(|()| write_private(path, text))
            .map_err(|source| TlsError::Write { path: path.to_owned(), source })
    };
    write(&key_path, &made.signing_key.serialize_pem())?;
    write(&cert_path, &made.cert.pem())?;
    write(&names_path, &wanted)?;
    tracing::info!(dir = %dir.display(), names = ?names, "made a self-signed TLS certificate");
    load_pem(&cert_path, &key_path)
}

/// Write a file readable by its owner only (it may hold a private key).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path)?.write_all(text.as_bytes())
}

/// The names a self-signed certificate for this machine covers: `localhost`, the host name
/// (and `<host>.local`, for mDNS), `extra`, the address bound to, or every address of the
/// machine when bound to all of them.
pub fn machine_names(bind: std::net::IpAddr, extra: &[String]) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    if let Ok(host) = nix::unistd::gethostname() {
        if let Some(host) = host.to_str().filter(|h| !h.is_empty() && *h != "localhost") {
            names.push(host.to_owned());
            if !host.contains('.') {
                names.push(format!("{host}.local"));
            }
        }
    }
    names.extend(extra.iter().cloned());
    let mut addrs: Vec<std::net::IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    if bind.is_unspecified() {
        if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
            for interface in interfaces {
                let addr = interface.address.as_ref();
                if let Some(v4) = addr.and_then(|a| a.as_sockaddr_in()) {
                    addrs.push(v4.ip().into());
                } else if let Some(v6) = addr.and_then(|a| a.as_sockaddr_in6()) {
                    // Link-local addresses need a zone, which certificates cannot name.
                    if v6.ip().segments()[0] & 0xffc0 != 0xfe80 {
                        addrs.push(v6.ip().into());
                    }
                }
            }
        }
    } else {
        addrs.push(bind);
    }
    for addr in addrs {
        let name = addr.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Which servers a client (`relaycast publish`) trusts over https.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientTrust {
    /// The system's trusted roots.
    #[default]
    System,
    /// The system's roots and the CA certificates in this PEM file.
    CaFile(PathBuf),
    /// Exactly the server certificate with this SHA-256 fingerprint (hex, colons optional),
    /// as a self-signed Relaycast prints it at start; nothing else.
    Fingerprint(String),
}

/// The rustls settings of a client trusting `trust`.
pub fn client_config(trust: &ClientTrust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|err| unreachable!("TLS defaults: {err}"));
    let mut config = match trust {
        ClientTrust::Fingerprint(hex) => {
            let pinned = parse_fingerprint(hex)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedCertificate { pinned, provider: provider() }))
                .with_no_client_auth()
        }
        ClientTrust::System | ClientTrust::CaFile(_) => {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if let ClientTrust::CaFile(path) = trust {
                let pem = std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source })?;
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(TlsError::NoCertificate { path: path.clone() });
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let hex_digits: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(hex_digits.to_ascii_lowercase()).map_err(|_| TlsError::BadFingerprint(text.to_owned()))?;
    bytes.try_into().map_err(|_| TlsError::BadFingerprint(text.to_owned()))
}

/// Accepts exactly one certificate (by its SHA-256), and checks that the server holds its key.
#[derive(Debug)]
struct PinnedCertificate {
    pinned: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.pinned {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_certificate_is_kept_and_made_again_when_the_names_change() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let first = Certificates::load(TlsSource::SelfSigned { dir: dir.path().into(), names: names.clone() }).unwrap();
        let again = Certificates::load(TlsSource::SelfSigned { dir: dir.path().into(), names }).unwrap();
        assert_eq!(first.fingerprint(), again.fingerprint(), "kept across restarts");
        assert_eq!(first.fingerprint().len(), 32 * 3 - 1);
        let other =
            Certificates::load(TlsSource::SelfSigned { dir: dir.path().into(), names: vec!["other.lan".into()] })
                .unwrap();
        assert_ne!(first.fingerprint(), other.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("self-signed.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private");
        }
    }

    #[test]
    fn files_are_checked_and_a_bad_reload_keeps_the_pair_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let a = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.example".to_owned()]).unwrap();
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, a.signing_key.serialize_pem()).unwrap();
        let certs = Certificates::load(TlsSource::Files { cert: cert.clone(), key: key.clone() }).unwrap();
        let before = certs.fingerprint();
        // A certificate with another's key is refused, and the pair in use stays.
        std::fs::write(&key, b.signing_key.serialize_pem()).unwrap();
        assert!(matches!(certs.reload(), Err(TlsError::BadKey(_))));
        assert_eq!(certs.fingerprint(), before);
        std::fs::write(&cert, b.cert.pem()).unwrap();
        assert!(certs.reload().unwrap());
        assert_ne!(certs.fingerprint(), before);
        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(matches!(load_pem(&cert, &key), Err(TlsError::NoCertificate { .. })));
        assert!(matches!(load_pem(&dir.path().join("missing"), &key), Err(TlsError::Read { .. })));
    }

    #[test]
    fn the_machines_names_include_localhost_loopback_and_the_bound_address() {
        let names = machine_names("192.0.2.10".parse().unwrap(), &["relaycast.test".to_owned()]);
        for want in ["localhost", "relaycast.test", "127.0.0.1", "::1", "192.0.2.10"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
    }
}

//! API keys: how the app's backend authenticates to the backend API (server to server).
//! Keys come from files or environment variables (never the command line, which other users
//! of the machine can read), each under a name for the logs; they are compared in constant
//! time.

use super::keys::split_kid;
use std::path::Path;

/// A key shorter than this is refused at start.
pub const MIN_API_KEY_BYTES: usize = 24;

#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys.iter().map(|(name, _)| name)).finish()
    }
}

impl ApiKeys {
    /// From `[NAME=]FILE` and `[NAME=]VAR` specs.
    pub fn load(files: &[String], envs: &[String]) -> Result<ApiKeys, String> {
        let mut keys = Vec::new();
        for spec in files.iter().filter(|s| !s.is_empty()) {
            let (name, path) = split_kid(spec)?;
            let mut key =
                std::fs::read(Path::new(path)).map_err(|e| format!("cannot read the API key file {path}: {e}"))?;
            while key.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                key.pop();
            }
            keys.push((name.unwrap_or_else(|| path.to_owned()), key));
        }
        for spec in envs.iter().filter(|s| !s.is_empty()) {
            let (name, var) = split_kid(spec)?;
            let key = std::env::var(var).map_err(|_| format!("environment variable {var} (an API key) is not set"))?;
            keys.push((name.unwrap_or_else(|| format!("${var}")), key.into_bytes()));
        }
        for (name, key) in &keys {
            if key.len() < MIN_API_KEY_BYTES {
                return Err(format!(
                    "the API key {name} has {} bytes; it needs at least {MIN_API_KEY_BYTES} (try: openssl rand -hex 32)",
                    key.len()
                ));
            }
        }
        Ok(ApiKeys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key `presented` is, if it is one. Every key is compared, in constant
    /// time, whatever matches.
    pub fn check(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (name, key) in &self.keys {
            if constant_time_eq(key, presented.as_bytes()) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// Equal, in a time that depends on the lengths only.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_by_name_and_only_exact_keys_pass() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, "0123456789abcdef0123456789abcdef\n").unwrap();
        let keys = ApiKeys::load(&[format!("backend={}", file.display())], &[]).unwrap();
        assert_eq!(keys.check("0123456789abcdef0123456789abcdef"), Some("backend"));
        assert_eq!(keys.check("0123456789abcdef0123456789abcdeX"), None);
        assert_eq!(keys.check("0123456789abcdef"), None);
        assert_eq!(keys.check(""), None);
        std::fs::write(&file, "short").unwrap();
        assert!(ApiKeys::load(&[file.display().to_string()], &[]).unwrap_err().contains("at least"));
        assert!(ApiKeys::load(&[], &["RELAYCAST_TEST_NO_SUCH_VAR".into()]).is_err());
        assert!(ApiKeys::default().is_empty());
    }
}

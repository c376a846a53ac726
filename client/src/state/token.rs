//! Access tokens as the app handles them (token mode): found in the page's address fragment
//! (`#token=...`, which browsers never send in a request), or answered by the deployment's
//! token URL. The app reads the token's claims only to show the name before the server
//! confirms it; the server is the one that verifies.

use base64::Engine as _;
use relaycast_shared::{AccessToken, DisplayName};

/// The token in an address fragment such as `#token=eyJ...&other=1`.
pub fn from_fragment(hash: &str) -> Option<AccessToken> {
    let fragment = hash.strip_prefix('#').unwrap_or(hash);
    fragment.split('&').find_map(|pair| pair.strip_prefix("token=")).and_then(|token| AccessToken::try_from(token).ok())
}

/// The fragment without its `token=` part (what the address bar keeps).
pub fn fragment_without_token(hash: &str) -> String {
    let fragment = hash.strip_prefix('#').unwrap_or(hash);
    let rest: Vec<&str> = fragment.split('&').filter(|p| !p.is_empty() && !p.starts_with("token=")).collect();
    if rest.is_empty() {
        String::new()
    } else {
        format!("#{}", rest.join("&"))
    }
}

/// The token in a token URL's answer: `{"token": "..."}`, or the token as plain text.
pub fn from_answer(body: &str) -> Option<AccessToken> {
    let body = body.trim();
    let token = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => value.get("token")?.as_str()?.to_owned(),
        Err(_) => body.to_owned(),
    };
    AccessToken::try_from(token).ok()
}

fn claims(token: &AccessToken) -> Option<serde_json::Value> {
    let payload = token.as_str().split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// When a token expires (ms), read without verifying: a stale one is renewed before use.
pub fn expires_at(token: &AccessToken) -> Option<u64> {
    claims(token)?.get("exp")?.as_u64().map(|s| s.saturating_mul(1000))
}

/// The display name a token carries (`name`, else `sub`), read without verifying, to show
/// before the server's welcome confirms it.
pub fn display_name(token: &AccessToken) -> Option<DisplayName> {
    let claims = claims(token)?;
    let name = claims.get("name").or_else(|| claims.get("sub"))?.as_str()?;
    DisplayName::try_from(name.chars().take(relaycast_shared::limits::MAX_DISPLAY_NAME_CHARS).collect::<String>()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // {"sub":"u-1","name":"Ada"}
    const TOKEN: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1LTEiLCJuYW1lIjoiQWRhIn0.c2ln";

    #[test]
    fn the_token_comes_from_the_fragment_and_leaves_it() {
        assert_eq!(from_fragment(&format!("#token={TOKEN}")).unwrap().as_str(), TOKEN);
        assert_eq!(from_fragment(&format!("#a=1&token={TOKEN}")).unwrap().as_str(), TOKEN);
        assert_eq!(from_fragment("#a=1"), None);
        assert_eq!(from_fragment(""), None);
        assert_eq!(fragment_without_token(&format!("#token={TOKEN}")), "");
        assert_eq!(fragment_without_token(&format!("#a=1&token={TOKEN}")), "#a=1");
    }

    #[test]
    fn token_url_answers_may_be_json_or_text() {
        assert_eq!(from_answer(&format!("{{\"token\":\"{TOKEN}\"}}")).unwrap().as_str(), TOKEN);
        assert_eq!(from_answer(&format!("{TOKEN}\n")).unwrap().as_str(), TOKEN);
        assert_eq!(from_answer("{\"error\":\"no\"}"), None);
        assert_eq!(from_answer(""), None);
    }

    #[test]
    fn the_name_is_read_from_the_claims() {
        assert_eq!(display_name(&AccessToken::try_from(TOKEN).unwrap()).unwrap().as_str(), "Ada");
        assert_eq!(display_name(&AccessToken::try_from("not-a-jwt").unwrap()), None);
        // {"sub":"u","exp":1800000000}
        let t = AccessToken::try_from("e30.eyJzdWIiOiJ1IiwiZXhwIjoxODAwMDAwMDAwfQ.c2ln").unwrap();
        assert_eq!(expires_at(&t), Some(1_800_000_000_000));
    }
}

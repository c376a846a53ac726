//! Where the app gets its access token in token mode, and a new one before it expires:
//!
//! 1. the page's address fragment, `#token=...`, as the app that embeds or links to Relaycast
//!    puts it there (fragments never reach a server; the app takes it out of the address bar
//!    and keeps it for the tab, so a reload still has it);
//! 2. the deployment's token URL (`--app-token-url`, announced in `/app-config.json`), fetched
//!    with the page's credentials and `?room=<room>`, first when there is no token and
//!    whenever the server says the token is about to expire.
//!
//! In open mode (or against a server that announces nothing) there is no token.

use super::http::{js_message, text};
use crate::state::token::{display_name, expires_at, fragment_without_token, from_answer, from_fragment};
use relaycast_shared::{AccessToken, DisplayName, RoomName};
use std::cell::RefCell;
use wasm_bindgen_futures::JsFuture;

const SESSION_KEY: &str = "relaycast.token";

thread_local! {
    /// The deployment's settings, once fetched.
    static CONFIG: RefCell<Option<AppConfig>> = const { RefCell::new(None) };
}

/// `/app-config.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppConfig {
    pub token_mode: bool,
    pub token_url: Option<String>,
}

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

/// Take a token out of the address fragment, if there is one (and keep it for the tab).
pub fn take_from_address() {
    let Some(window) = web_sys::window() else { return };
    let hash = window.location().hash().unwrap_or_default();
    let Some(token) = from_fragment(&hash) else { return };
    remember(&token);
    let location = window.location();
    let rest = format!(
        "{}{}{}",
        location.pathname().unwrap_or_default(),
        location.search().unwrap_or_default(),
        fragment_without_token(&hash)
    );
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&rest));
    }
}

/// The tab's current token, if it has one.
pub fn stored() -> Option<AccessToken> {
    session_storage()?.get_item(SESSION_KEY).ok()?.and_then(|t| AccessToken::try_from(t).ok())
}

fn remember(token: &AccessToken) {
    if let Some(storage) = session_storage() {
        let _ = storage.set_item(SESSION_KEY, token.as_str());
    }
}

/// The name the tab's token carries, to show before the server confirms it.
pub fn stored_name() -> Option<DisplayName> {
    display_name(&stored()?)
}

/// The deployment's settings (fetched once; nothing announced means open mode).
pub async fn config() -> AppConfig {
    if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
        return config;
    }
    let config = match super::http::request("GET", "/app-config.json", &[], None).await {
        Ok(response) if response.ok() => {
            let body: serde_json::Value = serde_json::from_str(&text(&response).await).unwrap_or_default();
            AppConfig {
                token_mode: body.get("auth").and_then(|a| a.as_str()) == Some("token"),
                token_url: body.get("token_url").and_then(|u| u.as_str()).map(str::to_owned),
            }
        }
        _ => AppConfig::default(),
    };
    CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
    config
}

/// The token to connect with: the tab's while it is valid, else one from the token URL (else
/// the stale one, for the server to say it expired).
pub async fn for_connect(room: &RoomName) -> Option<AccessToken> {
    let current = stored();
    let fresh = current.as_ref().and_then(expires_at).is_none_or(|exp| exp > crate::browser::now_ms() + 5_000);
    match current {
        Some(token) if fresh => Some(token),
        current => renew(room).await.ok().or(current),
    }
}

/// A new token from the deployment's token URL (kept for the tab).
pub async fn renew(room: &RoomName) -> Result<AccessToken, String> {
    let config = config().await;
    let url = config.token_url.ok_or("this deployment has no token URL to renew the token from")?;
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}room={room}");
    let init = web_sys::RequestInit::new();
    init.set_method("GET");
    init.set_credentials(web_sys::RequestCredentials::Include);
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str_and_init(&url, &init)).await.map_err(|e| js_message(&e))?;
    let response: web_sys::Response = wasm_bindgen::JsCast::dyn_into(response).map_err(|_| "not a response")?;
    if !response.ok() {
        return Err(format!("the token URL answered {}", response.status()));
    }
    let token = from_answer(&text(&response).await).ok_or("the token URL's answer holds no token")?;
    remember(&token);
    Ok(token)
}

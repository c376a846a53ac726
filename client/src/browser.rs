//! The few browser APIs the app uses besides WebSocket and WebRTC: time, randomness, local
//! storage, the address bar and the media devices. Failures (storage disabled, say) degrade
//! to defaults.

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

/// A uniform random number in `[0, 1)`.
pub fn random() -> f64 {
    js_sys::Math::random()
}

/// `len` random characters from `[a-z0-9]`.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[(random() * ALPHABET.len() as f64) as usize % ALPHABET.len()] as char).collect()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

pub fn load(key: &str) -> Option<String> {
    storage()?.get_item(key).ok()?
}

pub fn save(key: &str, value: &str) {
    if let Some(s) = storage() {
        let _ = s.set_item(key, value);
    }
}

/// The page's path, e.g. `/r/standup`.
pub fn path() -> String {
    web_sys::window().and_then(|w| w.location().pathname().ok()).unwrap_or_else(|| "/".into())
}

/// Go to `path` without reloading (the server serves the app on every path). The query
/// string (options such as `?ice=relay`) is kept.
pub fn push_path(path: &str) {
    let Some(window) = web_sys::window() else { return };
    let query = window.location().search().unwrap_or_default();
    if let Ok(history) = window.history() {
        let _ = history.push_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&format!("{path}{query}")));
    }
}

/// The absolute URL of `path` on this site, for sharing.
pub fn url_of(path: &str) -> String {
    let origin = web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default();
    format!("{origin}{path}")
}

/// The server's WebSocket, next to the page (also through `trunk serve`'s proxy).
pub fn ws_url() -> String {
    let location = web_sys::window().map(|w| w.location());
    let host = location.as_ref().and_then(|l| l.host().ok()).unwrap_or_else(|| "127.0.0.1:8080".into());
    let secure = location.and_then(|l| l.protocol().ok()).is_some_and(|p| p == "https:");
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

/// What people are told when the page is not a secure context.
pub const INSECURE_CONTEXT: &str = "The camera and microphone need a secure connection: open Relaycast over https:// \
     (or on this machine, at localhost).";

/// The browser's camera and microphone access, or the plain reason there is none: outside a
/// secure context (https, or localhost) browsers hide it.
pub fn media_devices() -> Result<web_sys::MediaDevices, String> {
    let window = web_sys::window().ok_or("no window")?;
    if !window.is_secure_context() {
        return Err(INSECURE_CONTEXT.to_owned());
    }
    window.navigator().media_devices().map_err(|e| crate::net::http::js_message(&e))
}

/// `HH:MM` local time of a timestamp in ms.
pub fn clock(at_ms: u64) -> String {
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
    format!("{:02}:{:02}", d.get_hours(), d.get_minutes())
}

/// `?ice=relay` in the address forces TURN-only connections (to check a TURN deployment).
pub fn relay_only() -> bool {
    web_sys::window().and_then(|w| w.location().search().ok()).is_some_and(|q| q.contains("ice=relay"))
}

/// The browser can share a screen (`getDisplayMedia`): phones' browsers cannot, so they get
/// no "Share screen" button.
pub fn can_share_screen() -> bool {
    let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else { return false };
    js_sys::Reflect::get(&devices, &"getDisplayMedia".into()).is_ok_and(|f| f.is_function())
}

/// The page is hidden (another tab, minimised).
pub fn page_hidden() -> bool {
    gloo_utils::document().hidden()
}

/// Set the tab's title.
pub fn set_title(title: &str) {
    gloo_utils::document().set_title(title);
}

/// Put `text` on the clipboard; false where the browser refuses (no secure context, no
/// permission).
pub async fn copy_text(text: &str) -> bool {
    let Some(window) = web_sys::window() else { return false };
    let clipboard = window.navigator().clipboard();
    wasm_bindgen_futures::JsFuture::from(clipboard.write_text(text)).await.is_ok()
}

/// The system asks for dark colours (`prefers-color-scheme: dark`).
pub fn prefers_dark() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
        .is_some_and(|m| m.matches())
}

/// Set an attribute on `<html>`.
pub fn set_root_attribute(name: &str, value: &str) {
    if let Some(root) = gloo_utils::document().document_element() {
        let _ = root.set_attribute(name, value);
    }
}

/// How far local time is ahead of UTC now, in ms (for day boundaries).
pub fn utc_offset_ms() -> i64 {
    -(js_sys::Date::new_0().get_timezone_offset() * 60_000.0) as i64
}

/// A local day (days since the Unix epoch) as a short date: "Mon 30 Nov".
pub fn day_date(day: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    // Noon of that day, read back in local time.
    let local_noon = day as f64 * 86_400_000.0 + 43_200_000.0 - utc_offset_ms() as f64;
    let d = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(local_noon));
    format!("{} {} {}", DAYS[d.get_day() as usize % 7], d.get_date(), MONTHS[d.get_month() as usize % 12])
}

/// A short, soft two-note chime (no sound file to load); false where the browser would not
/// play it.
pub fn chime() -> bool {
    let play = || -> Result<(), wasm_bindgen::JsValue> {
        let ctx = web_sys::AudioContext::new()?;
        let gain = ctx.create_gain()?;
        gain.gain().set_value(0.08);
        gain.connect_with_audio_node(&ctx.destination())?;
        let now = ctx.current_time();
        for (i, hz) in [880.0_f32, 1320.0].into_iter().enumerate() {
            let osc = ctx.create_oscillator()?;
            osc.frequency().set_value(hz);
            osc.connect_with_audio_node(&gain)?;
            let start = now + i as f64 * 0.12;
            osc.start_with_when(start)?;
            osc.stop_with_when(start + 0.1)?;
        }
        // The context closes itself once the notes are over.
        let closing = ctx.clone();
        yew::platform::spawn_local(async move {
            yew::platform::time::sleep(std::time::Duration::from_millis(400)).await;
            let _ = closing.close();
        });
        Ok(())
    };
    play().is_ok()
}

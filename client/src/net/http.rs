//! `fetch` for the app's HTTP calls (the blob API, WHIP/WHEP), and readable JS errors.

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The `message` of a JS error, or its debug form.
pub fn js_message(e: &JsValue) -> String {
    js_sys::Reflect::get(e, &"message".into()).ok().and_then(|v| v.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

/// One request with these headers and body; the response whatever its status.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<&JsValue>,
) -> Result<web_sys::Response, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(body) = body {
        init.set_body(body);
    }
    let request = web_sys::Request::new_with_str_and_init(url, &init).map_err(|e| js_message(&e))?;
    for (k, v) in headers {
        request.headers().set(k, v).map_err(|e| js_message(&e))?;
    }
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_request(&request)).await.map_err(|e| js_message(&e))?;
    response.dyn_into::<web_sys::Response>().map_err(|_| "not a response".to_owned())
}

/// The message of the server's error answer (JSON `{code, message}`, from every API alike).
pub fn error_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value.get("message")?.as_str().map(str::to_owned)
}

/// The body of a response as text (empty if it cannot be read).
pub async fn text(response: &web_sys::Response) -> String {
    match response.text() {
        Ok(p) => JsFuture::from(p).await.ok().and_then(|t| t.as_string()).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

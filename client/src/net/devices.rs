//! The camera, microphone and speaker: opening them with a person's choices, listing them,
//! and measuring the microphone's level for the meter. Used by the call's pre-join screen
//! and its device settings during the call.

use crate::state::devices::{rms_level, Choice, DeviceList};
use js_sys::{Array, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AnalyserNode, AudioContext, MediaStream, MediaStreamConstraints, MediaStreamTrack};

/// `{ deviceId: { exact: id } }`, or `true` for the default device.
fn device(id: &Option<String>) -> Result<JsValue, JsValue> {
    let Some(id) = id else { return Ok(JsValue::TRUE) };
    let exact = js_sys::Object::new();
    Reflect::set(&exact, &"exact".into(), &id.into())?;
    let constraint = js_sys::Object::new();
    Reflect::set(&constraint, &"deviceId".into(), &exact)?;
    Ok(constraint.into())
}

/// Open the camera and/or microphone chosen (each only if asked for).
pub async fn open(camera: Option<&Option<String>>, mic: Option<&Option<String>>) -> Result<MediaStream, JsValue> {
    // A plain reason (an insecure page, say) goes out as the error's message.
    let devices = crate::browser::media_devices().map_err(|reason| JsValue::from(js_sys::Error::new(&reason)))?;
    let constraints = MediaStreamConstraints::new();
    constraints.set_video(&match camera {
        Some(id) => device(id)?,
        None => JsValue::FALSE,
    });
    constraints.set_audio(&match mic {
        Some(id) => device(id)?,
        None => JsValue::FALSE,
    });
    let stream = JsFuture::from(devices.get_user_media_with_constraints(&constraints)?).await?;
    Ok(stream.unchecked_into())
}

/// Why `device` could not be opened, in the person's words.
pub fn explain_error(e: &JsValue, device: &str) -> String {
    let field = |k: &str| Reflect::get(e, &k.into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    crate::state::devices::explain(&field("name"), &field("message"), device)
}

/// Open what `choice` asks for; if the camera cannot be had (denied, missing, busy), the
/// microphone alone. Returns the stream (if any) and the camera's error (if it failed).
pub async fn open_choice(choice: &Choice) -> (Option<MediaStream>, Option<JsValue>) {
    match open(Some(&choice.camera), Some(&choice.mic)).await {
        Ok(stream) => (Some(stream), None),
        Err(camera_error) => match open(None, Some(&choice.mic)).await {
            Ok(stream) => (Some(stream), Some(camera_error)),
            Err(_) => (None, Some(camera_error)),
        },
    }
}

/// Every camera, microphone and speaker (labels appear once a device was allowed).
pub async fn list() -> DeviceList {
    let mut out = DeviceList::default();
    let Some(devices) = web_sys::window().and_then(|w| w.navigator().media_devices().ok()) else { return out };
    let Ok(promise) = devices.enumerate_devices() else { return out };
    let Ok(list) = JsFuture::from(promise).await else { return out };
    for d in Array::from(&list).iter() {
        let Ok(d) = d.dyn_into::<web_sys::MediaDeviceInfo>() else { continue };
        let entry = (d.device_id(), d.label());
        match d.kind() {
            web_sys::MediaDeviceKind::Videoinput => out.cameras.push(entry),
            web_sys::MediaDeviceKind::Audioinput => out.mics.push(entry),
            web_sys::MediaDeviceKind::Audiooutput => out.speakers.push(entry),
            _ => {}
        }
    }
    out.name_unlabelled();
    out
}

/// The browser can send a page's sound to a chosen speaker (`setSinkId`).
pub fn can_choose_speaker() -> bool {
    let Some(window) = web_sys::window() else { return false };
    let Ok(ctor) = Reflect::get(&window, &"HTMLMediaElement".into()) else { return false };
    let Ok(proto) = Reflect::get(&ctor, &"prototype".into()) else { return false };
    Reflect::has(&proto, &"setSinkId".into()).unwrap_or(false)
}

/// Play `element`'s sound on speaker `id` (the default with `None`), where the browser can.
pub fn set_speaker(element: &web_sys::HtmlMediaElement, id: Option<&str>) {
    let Ok(f) = Reflect::get(element, &"setSinkId".into()) else { return };
    if let Ok(f) = f.dyn_into::<js_sys::Function>() {
        // A refusal (the device went away) leaves the sound where it was.
        if let Ok(p) = f.call1(element, &id.unwrap_or("").into()) {
            if let Ok(p) = p.dyn_into::<js_sys::Promise>() {
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = JsFuture::from(p).await;
                });
            }
        }
    }
}

/// Stop every track of `stream` (the camera light goes off).
pub fn stop(stream: &MediaStream) {
    for t in stream.get_tracks().iter() {
        t.unchecked_into::<MediaStreamTrack>().stop();
    }
}

/// The microphone level of a stream, for a meter: an analyser on its audio.
#[derive(Debug)]
pub struct LevelMeter {
    context: AudioContext,
    analyser: AnalyserNode,
    buffer: Vec<f32>,
}

impl LevelMeter {
    pub fn new(stream: &MediaStream) -> Option<LevelMeter> {
        if stream.get_audio_tracks().length() == 0 {
            return None;
        }
        let context = AudioContext::new().ok()?;
        let source = context.create_media_stream_source(stream).ok()?;
        let analyser = context.create_analyser().ok()?;
        analyser.set_fft_size(1024);
        source.connect_with_audio_node(&analyser).ok()?;
        Some(LevelMeter { context, analyser, buffer: vec![0.0; 1024] })
    }

    /// The level now, 0 to 1.
    pub fn level(&mut self) -> f64 {
        self.analyser.get_float_time_domain_data(&mut self.buffer);
        rms_level(&self.buffer)
    }
}

impl Drop for LevelMeter {
    fn drop(&mut self) {
        let _ = self.context.close();
    }
}

/// A readable message for a failed camera, microphone or screen request: the errors people
/// meet explained, others by their `message`.
pub fn media_error(e: &JsValue) -> String {
    let name = Reflect::get(e, &"name".into()).ok().and_then(|v| v.as_string()).unwrap_or_default();
    match name.as_str() {
        "NotAllowedError" => {
            "Camera and microphone permission was denied. Allow them in the browser to join the call.".into()
        }
        "NotFoundError" | "OverconstrainedError" => "No camera or microphone was found.".into(),
        "NotReadableError" => "The camera or microphone is in use by another program.".into(),
        _ => crate::net::http::js_message(e),
    }
}

//! Camera, microphone and speaker pickers: on the pre-join screen and, during the call, in
//! the control bar's device settings.

use crate::state::devices::DeviceList;
use yew::prelude::*;

#[derive(Debug, Properties, PartialEq)]
pub struct PickerProps {
    pub devices: DeviceList,
    pub camera: Option<String>,
    pub mic: Option<String>,
    pub speaker: Option<String>,
    /// The browser can play sound on a chosen speaker.
    pub can_choose_speaker: bool,
    pub oncamera: Callback<Option<String>>,
    pub onmic: Callback<Option<String>>,
    pub onspeaker: Callback<Option<String>>,
}

fn picker(
    id: &'static str,
    label: &'static str,
    list: &[(String, String)],
    current: &Option<String>,
    on: &Callback<Option<String>>,
) -> Html {
    let onchange = on.reform(|e: Event| {
        let v = e.target_unchecked_into::<web_sys::HtmlSelectElement>().value();
        (!v.is_empty()).then_some(v)
    });
    html! {
        <div class="picker">
            <label for={id}>{ label }</label>
            <select {id} {onchange} disabled={list.is_empty()}>
                <option value="" selected={current.is_none()}>{ if list.is_empty() { "None found" } else { "Default" } }</option>
                { for list.iter().map(|(value, text)| html! {
                    <option value={value.clone()} selected={current.as_deref() == Some(value.as_str())}>{ text }</option>
                }) }
            </select>
        </div>
    }
}

#[function_component(DevicePickers)]
pub fn device_pickers(p: &PickerProps) -> Html {
    html! {
        <div class="pickers">
            { picker("pick-camera", "Camera", &p.devices.cameras, &p.camera, &p.oncamera) }
            { picker("pick-mic", "Microphone", &p.devices.mics, &p.mic, &p.onmic) }
            if p.can_choose_speaker {
                { picker("pick-speaker", "Speaker", &p.devices.speakers, &p.speaker, &p.onspeaker) }
            }
        </div>
    }
}

//! The call's devices as a person picks them, and what to say when one cannot be had. Pure.

/// What to join the call with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// Device ids; `None` is the browser's default.
    pub camera: Option<String>,
    pub mic: Option<String>,
    pub speaker: Option<String>,
    /// Start with the camera and the microphone off (they can be turned on in the call).
    pub camera_off: bool,
    pub mic_off: bool,
}

/// The devices the browser lists: (id, label) for each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    pub cameras: Vec<(String, String)>,
    pub mics: Vec<(String, String)>,
    pub speakers: Vec<(String, String)>,
}

impl DeviceList {
    /// Before any permission browsers list devices without labels: number them.
    pub fn name_unlabelled(&mut self) {
        for (list, kind) in
            [(&mut self.cameras, "Camera"), (&mut self.mics, "Microphone"), (&mut self.speakers, "Speaker")]
        {
            for (i, (_, label)) in list.iter_mut().enumerate() {
                if label.is_empty() {
                    *label = format!("{kind} {}", i + 1);
                }
            }
        }
    }
}

/// Why a device could not be opened, in the person's words, from the browser's error name
/// (or, for an error of the app's own such as an insecure page, its message).
pub fn explain(error_name: &str, message: &str, device: &str) -> String {
    match error_name {
        "NotAllowedError" | "SecurityError" => {
            format!("The {device} permission was denied. Allow it in the browser's address bar, or join without it.")
        }
        "NotFoundError" | "OverconstrainedError" => format!("No {device} was found. You can join without it."),
        "NotReadableError" | "AbortError" => {
            format!("The {device} is in use by another program. Close it, or join without it.")
        }
        _ if !message.is_empty() => format!("{message} You can join without the {device}."),
        _ => format!("The {device} could not be started. You can join without it."),
    }
}

/// A meter's level from audio samples (-1 to 1): the RMS, scaled so speech at a normal
/// distance fills most of it, capped at 1.
pub fn rms_level(samples: &[f32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|s| (*s as f64) * (*s as f64)).sum();
    ((sum / samples.len() as f64).sqrt() * 4.0).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_follows_loudness_and_stays_in_range() {
        assert_eq!(rms_level(&[]), 0.0);
        assert_eq!(rms_level(&[0.0; 64]), 0.0);
        let quiet = rms_level(&[0.01, -0.01, 0.01, -0.01]);
        let loud = rms_level(&[0.2, -0.2, 0.2, -0.2]);
        assert!(quiet < loud && quiet > 0.0);
        assert_eq!(rms_level(&[1.0, -1.0]), 1.0, "capped");
    }

    #[test]
    fn a_missing_or_denied_device_leaves_a_way_in() {
        assert!(explain("NotAllowedError", "", "camera").contains("permission was denied"));
        assert!(explain("NotFoundError", "", "camera").contains("No camera was found"));
        for name in ["NotAllowedError", "NotFoundError", "NotReadableError", "Whatever"] {
            assert!(explain(name, "", "camera").contains("without it"), "{name}");
        }
        let insecure = explain("Error", "The camera needs a secure connection.", "camera");
        assert!(insecure.starts_with("The camera needs a secure connection.") && insecure.contains("join without"));
    }

    #[test]
    fn unlabelled_devices_get_numbered() {
        let mut d = DeviceList {
            cameras: vec![("a".into(), String::new()), ("b".into(), "Front".into())],
            ..Default::default()
        };
        d.name_unlabelled();
        assert_eq!(d.cameras, vec![("a".into(), "Camera 1".into()), ("b".into(), "Front".into())]);
    }
}

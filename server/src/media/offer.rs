//! Checking WHIP/WHEP offers before a session is set up, so each kind of bad offer gets its
//! own plain answer: not SDP at all, no audio or video, media in the wrong direction, or no
//! codec the relay forwards.

use super::{MediaError, Role};
use str0m::change::SdpOffer;

/// Codecs the relay forwards, by `a=rtpmap` name (lowercase).
const AUDIO_CODECS: &[&str] = &["opus"];
const VIDEO_CODECS: &[&str] = &["vp8", "h264"];

/// One `m=` section, as far as the checks need it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    pub port: u16,
    pub direction: Option<String>,
    /// `a=rtpmap` codec names, lowercase.
    pub codecs: Vec<String>,
}

/// The media sections of an SDP text.
pub fn sections(sdp: &str) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            out.push(Section { kind, port, ..Section::default() });
        } else if let Some(current) = out.last_mut() {
            if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
                // a=rtpmap:<pt> <name>/<clock>[/<channels>]
                if let Some(name) = rtpmap.split_whitespace().nth(1).and_then(|e| e.split('/').next()) {
                    current.codecs.push(name.to_ascii_lowercase());
                }
            } else if let Some(dir) =
                ["sendrecv", "sendonly", "recvonly", "inactive"].iter().find(|d| line.strip_prefix("a=") == Some(**d))
            {
                current.direction = Some((*dir).to_owned());
            }
        }
    }
    out
}

/// Parse and check an offer for `role`.
pub fn check(sdp: &str, role: Role) -> Result<SdpOffer, MediaError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(MediaError::MalformedSdp("an SDP offer starts with \"v=0\"".into()));
    }
    let offer = SdpOffer::from_sdp_string(sdp).map_err(|err| MediaError::MalformedSdp(err.to_string()))?;
    let media: Vec<Section> = sections(sdp).into_iter().filter(|s| s.kind == "audio" || s.kind == "video").collect();
    if media.is_empty() {
        return Err(MediaError::NoUsableCodec("the offer has no audio or video section".into()));
    }
    // The offerer's direction: a publisher sends, a viewer receives.
    let wanted = match role {
        Role::Publisher => ["sendonly", "sendrecv"],
        Role::Viewer => ["recvonly", "sendrecv"],
    };
    let usable: Vec<&Section> =
        media.iter().filter(|s| s.direction.as_deref().is_none_or(|d| wanted.contains(&d))).collect();
    if usable.is_empty() {
        let what = match role {
            Role::Publisher => "a WHIP offer must send media (sendonly): every section of this one only receives",
            Role::Viewer => "a WHEP offer must receive media (recvonly): every section of this one only sends",
        };
        return Err(MediaError::NoUsableCodec(what.into()));
    }
    let forwardable = |s: &&Section| {
        let known = if s.kind == "audio" { AUDIO_CODECS } else { VIDEO_CODECS };
        s.codecs.iter().any(|c| known.contains(&c.as_str()))
    };
    if !usable.iter().any(forwardable) {
        let mut offered: Vec<&str> = usable.iter().flat_map(|s| s.codecs.iter().map(String::as_str)).collect();
        offered.sort_unstable();
        offered.dedup();
        return Err(MediaError::NoUsableCodec(format!(
            "no codec the relay forwards: it takes Opus audio and VP8 or H.264 video; the offer has {}",
            if offered.is_empty() { "none".to_owned() } else { offered.join(", ") }
        )));
    }
    Ok(offer)
}

/// After answering: at least one audio or video section must have been accepted.
pub fn check_answer(sdp: &str) -> Result<(), MediaError> {
    let accepted = sections(sdp).iter().any(|s| (s.kind == "audio" || s.kind == "video") && s.port != 0);
    if accepted {
        Ok(())
    } else {
        Err(MediaError::NoUsableCodec(
            "none of the offer's media could be accepted (Opus audio, VP8 or H.264 video)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(kind: &str, dir: &str, codecs: &[(&str, u8)]) -> String {
        let pts: Vec<String> = codecs.iter().map(|(_, pt)| pt.to_string()).collect();
        let mut sdp = format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n\
             m={kind} 9 UDP/TLS/RTP/SAVPF {}\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\n\
             a=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 {}\r\na=setup:actpass\r\na={dir}\r\na=rtcp-mux\r\n",
            pts.join(" "),
            ["AA"; 32].join(":"),
        );
        for (name, pt) in codecs {
            let clock = if kind == "audio" { "48000/2" } else { "90000" };
            sdp.push_str(&format!("a=rtpmap:{pt} {name}/{clock}\r\n"));
        }
        sdp
    }

    #[test]
    fn a_plain_publisher_offer_passes() {
        let sdp = offer("video", "sendonly", &[("VP8", 96)]);
        assert!(check(&sdp, Role::Publisher).is_ok(), "{:?}", check(&sdp, Role::Publisher).err());
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in ["", "hello", "v=0\r\nm=video nonsense", "{\"sdp\":1}"] {
            let err = check(bad, Role::Publisher).unwrap_err();
            assert!(matches!(err, MediaError::MalformedSdp(_) | MediaError::NoUsableCodec(_)), "{bad:?} gave {err:?}");
        }
        assert!(matches!(check("hello", Role::Viewer), Err(MediaError::MalformedSdp(_))));
    }

    #[test]
    fn unsupported_codecs_are_named() {
        let sdp = offer("video", "sendonly", &[("AV1", 45), ("VP9", 98)]);
        let err = check(&sdp, Role::Publisher).unwrap_err();
        assert!(matches!(err, MediaError::NoUsableCodec(_)));
        let text = err.to_string();
        assert!(text.contains("av1") && text.contains("vp9"), "{text}");
    }

    #[test]
    fn direction_must_fit_the_role() {
        let sdp = offer("video", "recvonly", &[("VP8", 96)]);
        assert!(matches!(check(&sdp, Role::Publisher), Err(MediaError::NoUsableCodec(_))));
        assert!(check(&sdp, Role::Viewer).is_ok());
    }

    #[test]
    fn sections_are_read_with_their_codecs() {
        let sdp = offer("audio", "sendrecv", &[("opus", 111), ("PCMU", 0)]);
        let s = sections(&sdp);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].codecs, ["opus", "pcmu"]);
        assert_eq!(s[0].direction.as_deref(), Some("sendrecv"));
        assert_eq!(s[0].port, 9);
    }
}

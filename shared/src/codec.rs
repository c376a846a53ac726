//! Decoding with limits and precise error codes, and the encode-once frame builders.
//!
//! The server serializes each [`RoomMessage`] once. A live delivery and a history batch are
//! then spliced from those bytes ([`message_frame`], [`history_frame`]) instead of serializing
//! a [`ServerMsg`] per recipient; tests check that the splice equals what serde would write.

use crate::error::DecodeError;
use crate::ids::RoomName;
use crate::msg::{ClientMsg, RoomMessage, ServerMsg};
use serde::Serialize;

/// Decode one client frame, refusing frames over `max_bytes`.
pub fn decode_client(text: &str, max_bytes: usize) -> Result<ClientMsg, DecodeError> {
    if text.len() > max_bytes {
        return Err(DecodeError::TooLarge { size: text.len(), max: max_bytes });
    }
    serde_json::from_str(text).map_err(|err| classify(text, err, ClientMsg::TYPES))
}

/// Decode one server frame (used by clients and tests).
pub fn decode_server(text: &str) -> Result<ServerMsg, DecodeError> {
    serde_json::from_str(text).map_err(|err| classify(text, err, ServerMsg::TYPES))
}

/// Tell a frame that is not a typed JSON object from an unknown type and from a bad field.
/// Runs on the error path only, so parsing twice costs nothing on good frames.
fn classify(text: &str, err: serde_json::Error, types: &[&str]) -> DecodeError {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(_) => return DecodeError::Malformed(err.to_string()),
    };
    match value.get("type").and_then(|t| t.as_str()) {
        None => DecodeError::Malformed("missing string field \"type\"".into()),
        Some(t) if !types.contains(&t) => DecodeError::UnknownType(truncate(t, 64)),
        Some(_) => DecodeError::InvalidField(err.to_string()),
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Serialize any protocol message. Serializing these types cannot fail (string keys, no
/// non-finite floats can be built from JSON), so this returns the text directly.
pub fn encode<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).unwrap_or_else(|err| {
        // Unreachable for protocol types; keep the connection alive with an error frame.
        format!(r#"{{"type":"error","code":"internal","message":"encode failed: {err}"}}"#)
    })
}

/// The JSON of one room message, as cached and stored.
pub fn encode_room_message(msg: &RoomMessage) -> String {
    encode(msg)
}

/// A [`ServerMsg::Message`] frame around an already-encoded [`RoomMessage`].
pub fn message_frame(room: &RoomName, message_json: &str) -> String {
    let mut out = String::with_capacity(message_json.len() + room.as_str().len() + 40);
    out.push_str(r#"{"type":"message","room":"#);
    push_json_str(&mut out, room.as_str());
    out.push_str(r#","message":"#);
    out.push_str(message_json);
    out.push('}');
    out
}

/// A [`ServerMsg::History`] frame around already-encoded [`RoomMessage`]s.
pub fn history_frame<'a>(room: &RoomName, messages_json: impl IntoIterator<Item = &'a str>, done: bool) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(r#"{"type":"history","room":"#);
    push_json_str(&mut out, room.as_str());
    out.push_str(r#","messages":["#);
    for (i, m) in messages_json.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m);
    }
    out.push_str(if done { r#"],"done":true}"# } else { r#"],"done":false}"# });
    out
}

fn push_json_str(out: &mut String, s: &str) {
    out.push_str(&encode(&s));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn errors_are_classified() {
        let max = 1024;
        let code = |s: &str| decode_client(s, max).unwrap_err().code();
        assert_eq!(code("not json"), ErrorCode::Malformed);
        assert_eq!(code("[1,2]"), ErrorCode::Malformed);
        assert_eq!(code(r#"{"no_type":1}"#), ErrorCode::Malformed);
        assert_eq!(code(r#"{"type":7}"#), ErrorCode::Malformed);
        assert_eq!(code(r#"{"type":"teleport"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"type":"leave"}"#), ErrorCode::InvalidField);
        assert_eq!(code(r#"{"type":"leave","room":"a b"}"#), ErrorCode::InvalidField);
        assert_eq!(code(&"x".repeat(2000)), ErrorCode::FrameTooLarge);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"type":"publish","room":"r","id":"1","body":{{"kind":"data","data":{}{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(decode_client(&deep, usize::MAX).unwrap_err().code(), ErrorCode::Malformed);
    }
}

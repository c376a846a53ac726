//! Validated identifiers and names.
//!
//! Each newtype checks its value once, when it is made ([`TryFrom<String>`], also used by serde),
//! so a value that reached the engine is known to be well formed. The rules are in
//! [`crate::limits`].

use crate::limits::*;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// Why a value is not a valid identifier or name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max}")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed: {found:?}")]
    BadChar { kind: &'static str, found: char },
    #[error("{kind} is shorter than {min}")]
    TooShort { kind: &'static str, min: usize },
}

fn check_ascii(kind: &'static str, s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    match s.chars().find(|c| !allowed(*c)) {
        Some(found) => Err(IdError::BadChar { kind, found }),
        None => Ok(()),
    }
}

/// Free text (chat): not blank, bounded, no control characters but line breaks and tabs.
fn check_text(kind: &'static str, s: &str, max_chars: usize) -> Result<(), IdError> {
    check_chars(kind, s, max_chars, |c| c.is_control() && c != '\n' && c != '\t')
}

/// A name (of a person or a file): one line of visible text. No control characters at all,
/// no bidirectional overrides (which make `txt.exe` read as `exe.txt`), and not made only of
/// spaces and invisible characters (a name that looks blank is as good as none).
fn check_name(kind: &'static str, s: &str, max_chars: usize) -> Result<(), IdError> {
    check_chars(kind, s, max_chars, |c| c.is_control() || is_bidi_control(c))
}

fn check_chars(kind: &'static str, s: &str, max_chars: usize, bad: impl Fn(char) -> bool) -> Result<(), IdError> {
    if s.chars().all(looks_blank) {
        return Err(IdError::Empty { kind });
    }
    if s.chars().count() > max_chars {
        return Err(IdError::TooLong { kind, max: max_chars });
    }
    match s.chars().find(|c| bad(*c)) {
        Some(found) => Err(IdError::BadChar { kind, found }),
        None => Ok(()),
    }
}

/// Whitespace, and the format characters that render as nothing (zero-width space and
/// joiners, word joiner, byte order mark, soft hyphen, Hangul fillers, ...).
fn looks_blank(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'..='\u{2064}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
        )
        || is_bidi_control(c)
}

/// Bidirectional embeddings, overrides and isolates.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

macro_rules! validated_string {
    ($(#[$doc:meta])* $name:ident, $kind:literal, |$s:ident| $check:expr) => {
        $(#[$doc])*
        ///
        /// The value is shared, not copied, when cloned: a message's ids go into its stored
        /// form, its frames and its ack, and each copy would be an allocation.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The validated value.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            fn check($s: &str) -> Result<(), IdError> {
                $check
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, IdError> {
                Self::check(s)?;
                Ok(Self(Arc::from(s)))
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::try_from(s.as_str())
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0.as_ref().to_owned()
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(ValidatedVisitor::<$name>::new($kind))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Reads a validated string straight from the input's text: one allocation (the shared
/// value), none for a `String` in between.
struct ValidatedVisitor<T> {
    kind: &'static str,
    made: PhantomData<T>,
}

impl<T> ValidatedVisitor<T> {
    fn new(kind: &'static str) -> Self {
        Self { kind, made: PhantomData }
    }
}

impl<T: for<'a> TryFrom<&'a str, Error = IdError>> Visitor<'_> for ValidatedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {}", self.kind)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::try_from(v).map_err(E::custom)
    }
}

fn room_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}
fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-')
}
fn client_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

validated_string!(
    /// A room's name: what people type and share, and the room's key on the server.
    /// Not `.` or `..`: URL normalizers (browsers, HTTP clients) would resolve those away in
    /// `/api/rooms/<room>/...` and `/whip/<room>`.
    RoomName, "room name",
    |s| {
        check_ascii("room name", s, MAX_ROOM_NAME_LEN, room_char)?;
        if s == "." || s == ".." { Err(IdError::BadChar { kind: "room name", found: '.' }) } else { Ok(()) }
    }
);
validated_string!(
    /// A peer's id, made by the server for each connection; signaling is addressed by it.
    PeerId, "peer id",
    |s| check_ascii("peer id", s, MAX_PEER_ID_LEN, token_char)
);
validated_string!(
    /// The history stream's identity for one room. A client resuming with another epoch is
    /// told that the history it knew is gone (for example after the server lost its store).
    Epoch, "epoch",
    |s| check_ascii("epoch", s, MAX_PEER_ID_LEN, token_char)
);
validated_string!(
    /// A browser's lasting secret (open mode, kept in its local storage): it shows a server
    /// that a new connection is the same browser as before, after a reload or a reconnect,
    /// so that person may still edit and delete their messages. Never shown to others: what
    /// others see is its [`ClientKey::client_ref`].
    ClientKey, "client key",
    |s| {
        check_ascii("client key", s, 64, token_char)?;
        if s.len() < 16 { Err(IdError::TooShort { kind: "client key", min: 16 }) } else { Ok(()) }
    }
);

impl ClientKey {
    /// The key's public name: the first 16 hex digits of its SHA-256. Message ids of a
    /// connection that gave a key start with it and a dot (`<ref>.`), which the server
    /// checks, so they mark the browser's messages without revealing the key.
    pub fn client_ref(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0.as_bytes());
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

validated_string!(
    /// An id the client picks for each message it publishes; the server's ack carries it back.
    /// Before a first dot it holds the sender's [`ClientKey::client_ref`] (or it has no dot).
    ClientMsgId, "message id",
    |s| check_ascii("message id", s, MAX_CLIENT_MSG_ID_LEN, client_id_char)
);
validated_string!(
    /// The name a person shows in a room.
    DisplayName, "display name",
    |s| check_name("display name", s, MAX_DISPLAY_NAME_CHARS)
);
validated_string!(
    /// Chat text.
    ChatText, "chat text",
    |s| check_text("chat text", s, MAX_CHAT_CHARS)
);
validated_string!(
    /// An access token: in token mode, a JWT the app's backend signed (see the README).
    AccessToken, "access token",
    |s| check_ascii("access token", s, MAX_ACCESS_TOKEN_LEN, |c| c.is_ascii_graphic())
);

fn hex_lower(c: char) -> bool {
    c.is_ascii_digit() || ('a'..='f').contains(&c)
}

validated_string!(
    /// A blob's id: the SHA-256 of its bytes, as 64 lowercase hex digits. Being a hash, it is
    /// safe to use as a file name on the server.
    BlobHash, "blob hash",
    |s| {
        check_ascii("blob hash", s, 64, hex_lower)?;
        if s.len() != 64 { Err(IdError::TooLong { kind: "blob hash", max: 64 }) } else { Ok(()) }
    }
);
validated_string!(
    /// A user's stable id, the `sub` of their token: shown with presence and on messages, and
    /// what rights and removals attach to. 1..=128 printable ASCII characters, no spaces.
    UserId, "user id",
    |s| check_ascii("user id", s, crate::limits::MAX_USER_ID_LEN, |c| c.is_ascii_graphic())
);
validated_string!(
    /// Why a member was removed or a room closed, as the people affected see it.
    Reason, "reason",
    |s| check_text("reason", s, crate::limits::MAX_REASON_CHARS)
);
validated_string!(
    /// A file's name as shown and offered for download: no path separators, no control
    /// characters, at most 255 characters.
    FileName, "file name",
    |s| {
        check_name("file name", s, crate::limits::MAX_FILE_NAME_CHARS)?;
        match s.chars().find(|c| matches!(c, '/' | '\\')) {
            Some(found) => Err(IdError::BadChar { kind: "file name", found }),
            None => Ok(()),
        }
    }
);
validated_string!(
    /// A media type such as `image/png`: `type/subtype` in printable ASCII, at most 127 bytes.
    MediaType, "media type",
    |s| {
        check_ascii("media type", s, 127, |c| c.is_ascii_graphic())?;
        if s.split_once('/').is_some_and(|(t, st)| !t.is_empty() && !st.is_empty()) {
            Ok(())
        } else {
            Err(IdError::BadChar { kind: "media type", found: '?' })
        }
    }
);

/// An id the server makes from 128 random bits: 32 lowercase hex digits, checked on the way in
/// (it is the last segment of a URL the client sends back).
macro_rules! random_hex_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id of 128 random bits.
            pub fn from_bits(bits: u128) -> Self {
                $name(format!("{bits:032x}"))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::ids::IdError;
            fn try_from(s: String) -> Result<Self, $crate::ids::IdError> {
                use $crate::ids::IdError;
                let kind = $kind;
                if s.len() != 32 {
                    return Err(if s.is_empty() { IdError::Empty { kind } } else { IdError::TooLong { kind, max: 32 } });
                }
                match s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
                    Some(found) => Err(IdError::BadChar { kind, found }),
                    None => Ok($name(s)),
                }
            }
        }

        impl TryFrom<&str> for $name {
            type Error = $crate::ids::IdError;
            fn try_from(s: &str) -> Result<Self, $crate::ids::IdError> {
                $name::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
pub(crate) use random_hex_id;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked() {
        assert!(RoomName::try_from("team-42.daily_sync").is_ok());
        assert_eq!(RoomName::try_from(""), Err(IdError::Empty { kind: "room name" }));
        assert!(matches!(RoomName::try_from("a/b"), Err(IdError::BadChar { found: '/', .. })));
        assert!(matches!(RoomName::try_from("a".repeat(65)), Err(IdError::TooLong { .. })));
        assert!(RoomName::try_from("a".repeat(64)).is_ok());
        // What a URL normalizer would rewrite is not a room name.
        for bad in [".", "..", "a%2e", "a/..", "%2e%2e"] {
            assert!(RoomName::try_from(bad).is_err(), "{bad:?}");
        }
        assert!(RoomName::try_from("...").is_ok());
        assert!(RoomName::try_from(".hidden").is_ok());
    }

    #[test]
    fn display_names_allow_unicode_but_not_control_or_blank() {
        assert!(DisplayName::try_from("Zoë 🚀").is_ok());
        assert!(DisplayName::try_from("   ").is_err());
        assert!(DisplayName::try_from("a\u{7}b").is_err());
        assert!(DisplayName::try_from("é".repeat(32)).is_ok());
        assert!(DisplayName::try_from("é".repeat(33)).is_err());
        for bad in ["a\nb", "tab\there", "\u{200B}", "\u{200B}\u{FEFF} \u{2060}", "\u{3164}", "x\u{202E}y"] {
            assert!(DisplayName::try_from(bad).is_err(), "{bad:?}");
            assert!(FileName::try_from(bad).is_err(), "{bad:?}");
        }
        assert!(DisplayName::try_from("a\u{200D}b").is_ok(), "a joiner between visible characters is fine");
        // Chat keeps its line breaks and tabs, and is still refused when blank.
        assert!(ChatText::try_from("line 1\n\tline 2").is_ok());
        assert!(ChatText::try_from("\u{200B}\n").is_err());
    }

    #[test]
    fn blob_hashes_file_names_and_media_types() {
        assert!(BlobHash::try_from("a".repeat(64)).is_ok());
        assert!(BlobHash::try_from("A".repeat(64)).is_err(), "lowercase only");
        assert!(BlobHash::try_from("a".repeat(63)).is_err());
        assert!(BlobHash::try_from("../etc/passwd").is_err());
        assert!(FileName::try_from("report 2026 (final).pdf").is_ok());
        assert!(FileName::try_from("../x").is_err());
        assert!(FileName::try_from("a\\b").is_err());
        assert!(MediaType::try_from("image/png").is_ok());
        assert!(MediaType::try_from("png").is_err());
        assert!(MediaType::try_from("text/html; charset=utf-8").is_err(), "no spaces");
    }

    #[test]
    fn serde_rejects_invalid_values() {
        let err = serde_json::from_str::<RoomName>("\"no spaces\"").unwrap_err();
        assert!(err.to_string().contains("not allowed"), "{err}");
        let ok: PeerId = serde_json::from_str("\"p-1\"").unwrap();
        assert_eq!(ok.as_str(), "p-1");
        // Not a string at all: the error names what was expected.
        let err = serde_json::from_str::<RoomName>("42").unwrap_err();
        assert!(err.to_string().contains("a room name"), "{err}");
        // Escaped text (read through serde_json's scratch buffer), an owned string (from a
        // `Value`), and the way back out.
        let name: DisplayName = serde_json::from_str("\"Zo\\u00eb \\ud83d\\ude80\"").unwrap();
        assert_eq!(name.as_str(), "Zoë 🚀");
        let from_value: DisplayName = serde_json::from_value(serde_json::json!("Zoë 🚀")).unwrap();
        assert_eq!(from_value, name);
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"Zoë 🚀\"");
        assert!(serde_json::from_value::<DisplayName>(serde_json::json!("a\u{7}b")).is_err());
    }

    #[test]
    fn a_clone_shares_the_value() {
        let room = RoomName::try_from("team-42").unwrap();
        let copy = room.clone();
        assert!(std::ptr::eq(room.as_str(), copy.as_str()), "a clone must not copy the text");
        assert_eq!(String::from(copy), "team-42");
    }
}

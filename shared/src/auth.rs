//! Rights: what a member may do in a room.
//!
//! In token mode the app's backend grants them, per room or room pattern, in the signed token
//! it gives each user; the server tells each member its rights in a room on join (and again
//! when they change), so the app shows only the controls that will work. On the wire a set of
//! rights is a JSON array of their names; an unknown name is an error, never ignored, so a
//! typo in a backend's token cannot silently grant less (or more) than meant.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One thing a member may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// Enter the room (without it no other right counts).
    Join,
    /// Receive the room's history on join (and what was missed on resume).
    History,
    /// Post room messages (chat, data, files).
    Publish,
    /// Signal other members: calls and peer-to-peer file links.
    Signal,
    /// Upload files to the room's blob cache.
    Upload,
    /// Download the room's files.
    Download,
    /// Go live (WHIP).
    Broadcast,
    /// Watch the room's broadcast (WHEP).
    Watch,
    /// Record the room's broadcast.
    Record,
    /// Remove members, end the broadcast.
    Moderate,
}

impl Right {
    pub const ALL: [Right; 10] = [
        Right::Join,
        Right::History,
        Right::Publish,
        Right::Signal,
        Right::Upload,
        Right::Download,
        Right::Broadcast,
        Right::Watch,
        Right::Record,
        Right::Moderate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Right::Join => "join",
            Right::History => "history",
            Right::Publish => "publish",
            Right::Signal => "signal",
            Right::Upload => "upload",
            Right::Download => "download",
            Right::Broadcast => "broadcast",
            Right::Watch => "watch",
            Right::Record => "record",
            Right::Moderate => "moderate",
        }
    }

    pub fn parse(name: &str) -> Option<Right> {
        Right::ALL.into_iter().find(|r| r.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of [`Right`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(u16);

impl Rights {
    pub const NONE: Rights = Rights(0);

    /// Every right.
    pub fn all() -> Rights {
        Right::ALL.into_iter().collect()
    }

    /// What every member of a room has in open mode: all but going live, recording and
    /// moderating, which belong to the room's owner there.
    pub fn member() -> Rights {
        [Right::Join, Right::History, Right::Publish, Right::Signal, Right::Upload, Right::Download, Right::Watch]
            .into_iter()
            .collect()
    }

    pub fn has(self, right: Right) -> bool {
        self.0 & right.bit() != 0
    }

    pub fn with(self, right: Right) -> Rights {
        Rights(self.0 | right.bit())
    }

    pub fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Right> {
        Right::ALL.into_iter().filter(move |r| self.has(*r))
    }

    /// Parse `join,publish,...` (the command line's form). An unknown name is an error.
    pub fn parse_list(list: &str) -> Result<Rights, UnknownRight> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Right::parse(s).ok_or_else(|| UnknownRight(s.into())))
            .collect()
    }
}

impl FromIterator<Right> for Rights {
    fn from_iter<I: IntoIterator<Item = Right>>(iter: I) -> Self {
        Rights(iter.into_iter().fold(0, |bits, r| bits | r.bit()))
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Right::as_str)).finish()
    }
}

impl fmt::Display for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Right::as_str).collect();
        f.write_str(&names.join(","))
    }
}

/// A right's name that is not one of [`Right::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown right {0:?} (rights: join, history, publish, signal, upload, download, broadcast, watch, record, moderate)")]
pub struct UnknownRight(pub String);

impl Serialize for Rights {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter().map(Right::as_str))
    }
}

impl<'de> Deserialize<'de> for Rights {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let names: Vec<std::borrow::Cow<'de, str>> = Vec::deserialize(d)?;
        names
            .iter()
            .map(|name| Right::parse(name).ok_or_else(|| serde::de::Error::custom(UnknownRight(name.to_string()))))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_round_trip_as_names_and_unknown_names_are_errors() {
        let rights: Rights = [Right::Join, Right::Moderate].into_iter().collect();
        assert_eq!(serde_json::to_string(&rights).unwrap(), r#"["join","moderate"]"#);
        assert_eq!(serde_json::from_str::<Rights>(r#"["moderate","join"]"#).unwrap(), rights);
        let err = serde_json::from_str::<Rights>(r#"["join","admin"]"#).unwrap_err().to_string();
        assert!(err.contains("unknown right \"admin\""), "{err}");
        assert_eq!(Rights::parse_list("join, publish").unwrap(), Rights::NONE.with(Right::Join).with(Right::Publish));
        assert_eq!(Rights::parse_list("join,pubilsh"), Err(UnknownRight("pubilsh".into())));
        assert_eq!(Rights::all().iter().count(), Right::ALL.len());
        assert!(!Rights::member().has(Right::Broadcast) && Rights::member().has(Right::Watch));
        for r in Right::ALL {
            assert_eq!(Right::parse(r.as_str()), Some(r));
        }
    }
}

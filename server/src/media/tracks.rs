//! A session's tracks, matched across sessions by kind and position: the second video track of
//! a publisher goes to the second video track of each viewer, whatever their mids.

use str0m::media::{MediaKind, Mid};

/// A track of a session, in the order its SDP lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    pub mid: Mid,
    pub kind: MediaKind,
}

/// The kind of `mid` and its position among the tracks of that kind.
pub fn index_of(tracks: &[Track], mid: Mid) -> Option<(MediaKind, usize)> {
    let kind = tracks.iter().find(|t| t.mid == mid)?.kind;
    let index = tracks.iter().filter(|t| t.kind == kind).position(|t| t.mid == mid)?;
    Some((kind, index))
}

/// The mid of the `index`th track of `kind`.
pub fn mid_of(tracks: &[Track], kind: MediaKind, index: usize) -> Option<Mid> {
    tracks.iter().filter(|t| t.kind == kind).nth(index).map(|t| t.mid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_map_by_kind_and_position() {
        let tracks = [
            Track { mid: Mid::from("a0"), kind: MediaKind::Audio },
            Track { mid: Mid::from("v0"), kind: MediaKind::Video },
            Track { mid: Mid::from("v1"), kind: MediaKind::Video },
        ];
        assert_eq!(index_of(&tracks, Mid::from("v1")), Some((MediaKind::Video, 1)));
        assert_eq!(index_of(&tracks, Mid::from("a0")), Some((MediaKind::Audio, 0)));
        assert_eq!(mid_of(&tracks, MediaKind::Video, 0), Some(Mid::from("v0")));
        assert_eq!(mid_of(&tracks, MediaKind::Audio, 1), None);
    }
}

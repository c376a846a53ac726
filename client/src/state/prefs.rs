//! What the lobby remembers: the display name and recent rooms. Pure list logic here; the
//! browser's local storage is read and written by `crate::browser`.

/// Rooms remembered at most.
pub const MAX_RECENT: usize = 8;

/// `room` first, then the others, without duplicates, at most [`MAX_RECENT`].
pub fn remember(recent: &[String], room: &str) -> Vec<String> {
    std::iter::once(room.to_owned()).chain(recent.iter().filter(|r| *r != room).cloned()).take(MAX_RECENT).collect()
}

const ADJECTIVES: [&str; 16] = [
    "amber", "brisk", "calm", "clever", "cosy", "bright", "gentle", "golden", "lively", "lucky", "mellow", "nimble",
    "quiet", "sunny", "swift", "witty",
];
const NOUNS: [&str; 16] = [
    "badger", "comet", "delta", "falcon", "fjord", "harbor", "lantern", "maple", "meadow", "otter", "pebble", "puffin",
    "river", "summit", "willow", "zephyr",
];

/// A room name people can read out and type: `adjective-noun-NN`, from `random` (uniform in
/// `[0, 1)`). About 25,600 names: enough not to collide by accident, not a secret (tokens are).
pub fn readable_room(mut random: impl FnMut() -> f64) -> String {
    let mut pick = |n: usize| ((random() * n as f64) as usize).min(n - 1);
    let (a, b, n) = (ADJECTIVES[pick(16)], NOUNS[pick(16)], 10 + pick(90));
    format!("{a}-{b}-{n}")
}

/// The page's colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
}

impl Theme {
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }

    /// A remembered value; anything else (an old or edited entry) is no pick.
    pub fn parse(s: &str) -> Option<Theme> {
        match s {
            "light" => Some(Theme::Light),
            "dark" => Some(Theme::Dark),
            _ => None,
        }
    }

    pub fn other(self) -> Theme {
        match self {
            Theme::Light => Theme::Dark,
            Theme::Dark => Theme::Light,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_rooms_are_valid_room_names() {
        let mut x = 0.0;
        for _ in 0..200 {
            let name = readable_room(|| {
                x = (x + 0.137) % 1.0;
                x
            });
            assert!(relaycast_shared::RoomName::try_from(name.as_str()).is_ok(), "{name}");
            assert_eq!(name.split('-').count(), 3);
        }
        assert_eq!(readable_room(|| 0.0), "amber-badger-10");
        assert_eq!(readable_room(|| 0.999_999), "witty-zephyr-99", "the top of the range stays in bounds");
    }

    #[test]
    fn themes_round_trip_and_toggle() {
        for t in [Theme::Light, Theme::Dark] {
            assert_eq!(Theme::parse(t.as_str()), Some(t));
            assert_eq!(t.other().other(), t);
        }
        assert_eq!(Theme::parse("purple"), None);
    }

    #[test]
    fn most_recent_first_without_duplicates_and_bounded() {
        let r = remember(&["a".into(), "b".into()], "b");
        assert_eq!(r, vec!["b", "a"]);
        let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(remember(&many, "x").len(), MAX_RECENT);
    }
}

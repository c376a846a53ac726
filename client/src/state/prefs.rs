//! What the lobby remembers: the display name and recent rooms. Pure list logic here; the
//! browser's local storage is read and written by `crate::browser`.

/// Rooms remembered at most.
pub const MAX_RECENT: usize = 8;

/// `room` first, then the others, without duplicates, at most [`MAX_RECENT`].
pub fn remember(recent: &[String], room: &str) -> Vec<String> {
    std::iter::once(room.to_owned()).chain(recent.iter().filter(|r| *r != room).cloned()).take(MAX_RECENT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_recent_first_without_duplicates_and_bounded() {
        let r = remember(&["a".into(), "b".into()], "b");
        assert_eq!(r, vec!["b", "a"]);
        let many: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(remember(&many, "x").len(), MAX_RECENT);
    }
}

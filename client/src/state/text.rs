//! Chat text as the app shows it: plain text with its web links picked out, so that links can
//! be made clickable and nothing else can (only `http://` and `https://`; never `javascript:`,
//! `data:` or a bare word that merely looks like a domain).

/// A run of a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    /// An `http://` or `https://` URL, without trailing punctuation that ends the sentence.
    Link(&'a str),
}

/// Characters a URL may end the sentence with but does not include.
const TRAILING: &[char] = &['.', ',', ';', ':', '!', '?', '\'', '"', '>', ']', '}'];

/// Split `text` into text and links, in order; joined again they are `text`.
pub fn linkify(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = find_scheme(rest) {
        let (before, from) = rest.split_at(start);
        let len = from.find(char::is_whitespace).unwrap_or(from.len());
        let url = trim_url(&from[..len]);
        // "https://" alone is not a link.
        if url.len() <= scheme_len(url) {
            pieces.push(Piece::Text(&rest[..start + len]));
            rest = &rest[start + len..];
            continue;
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before));
        }
        pieces.push(Piece::Link(url));
        rest = &from[url.len()..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    // Adjacent text runs (from skipped bare schemes) read as one.
    let mut merged: Vec<Piece<'_>> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match (merged.last_mut(), piece) {
            (Some(Piece::Text(prev)), Piece::Text(next)) => {
                let start = prev.as_ptr() as usize - text.as_ptr() as usize;
                *prev = &text[start..start + prev.len() + next.len()];
            }
            (_, piece) => merged.push(piece),
        }
    }
    merged
}

/// Where the next `http://` or `https://` starts (case-insensitive), at a word's start.
fn find_scheme(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("http") {
        let at = from + found;
        let rest = &lower[at..];
        let at_word_start = at == 0 || !s[..at].ends_with(|c: char| c.is_alphanumeric());
        if at_word_start && (rest.starts_with("http://") || rest.starts_with("https://")) {
            return Some(at);
        }
        from = at + 4;
    }
    None
}

fn scheme_len(url: &str) -> usize {
    if url.len() >= 8 && url[..8].eq_ignore_ascii_case("https://") {
        8
    } else {
        7
    }
}

/// Drop what ends the sentence rather than the URL: trailing punctuation, and a closing
/// parenthesis without its opening one inside the URL.
fn trim_url(url: &str) -> &str {
    let mut url = url;
    loop {
        let trimmed = url.trim_end_matches(TRAILING);
        let trimmed = match trimmed.strip_suffix(')') {
            Some(inner) if inner.matches('(').count() < inner.matches(')').count() + 1 => inner,
            _ => trimmed,
        };
        if trimmed.len() == url.len() {
            return url;
        }
        url = trimmed;
    }
}

/// Where a room's file is read with the room's grant: shown inline, or (`download`) saved
/// under its name.
pub fn file_url(
    room: &relaycast_shared::RoomName,
    hash: &relaycast_shared::BlobHash,
    name: &str,
    grant: &str,
    download: bool,
) -> String {
    let path = relaycast_shared::blobs::blob_path(room, hash);
    let query = format!("grant={}&name={}", percent_encode(grant), percent_encode(name));
    if download {
        format!("{path}?{query}&download=1")
    } else {
        format!("{path}?{query}")
    }
}

/// Percent-encoding for a query value: everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Piece::*;

    #[test]
    fn file_urls_carry_the_grant_and_an_encoded_name() {
        let room = relaycast_shared::RoomName::try_from("team").unwrap();
        let hash = relaycast_shared::BlobHash::try_from("a".repeat(64)).unwrap();
        let url = file_url(&room, &hash, "notes & plans ü.pdf", "123.p1.sig-_", true);
        assert_eq!(
            url,
            format!(
                "/api/rooms/team/blobs/{}?grant=123.p1.sig-_&name=notes%20%26%20plans%20%C3%BC.pdf&download=1",
                "a".repeat(64)
            )
        );
        assert!(!file_url(&room, &hash, "x", "g", false).contains("download"));
    }

    #[test]
    fn links_are_picked_out_of_text_and_nothing_else() {
        assert_eq!(
            linkify("see https://example.org/a?b=1 now"),
            [Text("see "), Link("https://example.org/a?b=1"), Text(" now")]
        );
        assert_eq!(linkify("http://x.test."), [Link("http://x.test"), Text(".")]);
        assert_eq!(
            linkify("(see https://en.wikipedia.org/wiki/Rust_(language))"),
            [Text("(see "), Link("https://en.wikipedia.org/wiki/Rust_(language)"), Text(")")]
        );
        assert_eq!(
            linkify("HTTPS://A.test and http://b.test"),
            [Link("HTTPS://A.test"), Text(" and "), Link("http://b.test")]
        );
        // Not links: other schemes, a bare scheme, a scheme inside a word, a bare domain.
        for text in
            ["javascript:alert(1)", "data:text/html,x", "https://", "xhttp://a.test", "example.org", "ftp://a.test"]
        {
            assert_eq!(linkify(text), [Text(text)], "{text}");
        }
        assert_eq!(linkify(""), []);
    }

    #[test]
    fn the_pieces_join_back_to_the_text() {
        for text in ["a https://x.test, b http://y.test!", "https:// https://z.test", "ü https://ü.test/ü. ü"] {
            let joined: String = linkify(text)
                .iter()
                .map(|p| match p {
                    Text(s) | Link(s) => *s,
                })
                .collect();
            assert_eq!(joined, text);
        }
    }
}

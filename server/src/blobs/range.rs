//! HTTP byte ranges (RFC 9110 §14): what part of a blob a GET asks for.
//!
//! One range is served as 206; a range that cannot be satisfied gets 416 with the size; anything
//! this server does not do (several ranges, other units, a garbled header) falls back to the whole
//! blob with 200, which RFC 9110 allows. `If-Range` with an entity tag that is not the blob's makes
//! the request a plain GET, so a client resuming a download never splices two different files.

/// The answer to a request's `Range` (and `If-Range`) for a blob of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeReply {
    /// 200: the whole blob.
    Full,
    /// 206: bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416: nothing of the blob matches.
    Unsatisfiable,
}

/// Resolve `range` (the header's value) against a blob of `size` bytes whose entity tag is
/// `etag`; `if_range` is the request's `If-Range` value.
pub fn resolve(range: Option<&str>, if_range: Option<&str>, etag: &str, size: u64) -> RangeReply {
    let Some(range) = range else { return RangeReply::Full };
    if if_range.is_some_and(|tag| tag.trim() != etag) {
        return RangeReply::Full;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else { return RangeReply::Full };
    if spec.contains(',') {
        return RangeReply::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return RangeReply::Full };
    let (first, last) = (first.trim(), last.trim());
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => RangeReply::Unsatisfiable,
            Ok(_) if size == 0 => RangeReply::Unsatisfiable,
            Ok(n) => RangeReply::Partial { start: size.saturating_sub(n), end: size - 1 },
            Err(_) => RangeReply::Full,
        },
        // bytes=A- : from A to the end.
        (false, true) => match first.parse::<u64>() {
            Ok(start) if start < size => RangeReply::Partial { start, end: size - 1 },
            Ok(_) => RangeReply::Unsatisfiable,
            Err(_) => RangeReply::Full,
        },
        // bytes=A-B
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(start), Ok(end)) if start <= end => {
                if start < size {
                    RangeReply::Partial { start, end: end.min(size - 1) }
                } else {
                    RangeReply::Unsatisfiable
                }
            }
            _ => RangeReply::Full,
        },
        (true, true) => RangeReply::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TAG: &str = "\"abc\"";

    fn r(range: &str, size: u64) -> RangeReply {
        resolve(Some(range), None, TAG, size)
    }

    #[test]
    fn every_range_form() {
        use RangeReply::*;
        assert_eq!(resolve(None, None, TAG, 10), Full);
        assert_eq!(r("bytes=0-3", 10), Partial { start: 0, end: 3 });
        assert_eq!(r("bytes=4-", 10), Partial { start: 4, end: 9 });
        assert_eq!(r("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(r("bytes=-30", 10), Partial { start: 0, end: 9 }, "a suffix longer than the blob is all of it");
        assert_eq!(r("bytes=5-100", 10), Partial { start: 5, end: 9 }, "the end is clamped");
        assert_eq!(r("bytes=10-", 10), Unsatisfiable);
        assert_eq!(r("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(r("bytes=-0", 10), Unsatisfiable);
        assert_eq!(r("bytes=-5", 0), Unsatisfiable);
        assert_eq!(r("bytes=0-", 0), Unsatisfiable);
        assert_eq!(r("bytes=5-2", 10), Full, "invalid: ignored");
        assert_eq!(r("bytes=0-1,4-5", 10), Full, "several ranges: the whole blob");
        assert_eq!(r("items=0-1", 10), Full);
        assert_eq!(r("bytes=x-y", 10), Full);
        assert_eq!(r("bytes=-", 10), Full);
    }

    #[test]
    fn if_range_with_another_tag_means_the_whole_blob() {
        assert_eq!(resolve(Some("bytes=4-"), Some(TAG), TAG, 10), RangeReply::Partial { start: 4, end: 9 });
        assert_eq!(resolve(Some("bytes=4-"), Some("\"other\""), TAG, 10), RangeReply::Full);
    }

    proptest! {
        #[test]
        fn partial_ranges_are_always_inside_the_blob(header in "\\\\PC{0,30}", size in 0u64..10_000) {
            if let RangeReply::Partial { start, end } = resolve(Some(&header), None, TAG, size) {
                prop_assert!(start <= end && end < size);
            }
        }

        #[test]
        fn well_formed_ranges_round_trip(size in 1u64..10_000, a in 0u64..10_000, len in 0u64..10_000) {
            let end = a + len;
            let reply = r(&format!("bytes={a}-{end}"), size);
            if a < size {
                prop_assert_eq!(reply, RangeReply::Partial { start: a, end: end.min(size - 1) });
            } else {
                prop_assert_eq!(reply, RangeReply::Unsatisfiable);
            }
        }
    }
}

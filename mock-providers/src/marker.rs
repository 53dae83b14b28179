//! The correlation-id marker a drill embeds in prompt text, and its parser.
//!
//! Format: `[drill:rid=<ID>]` anywhere inside any message text, where `<ID>`
//! is 1 to 64 characters of `A-Z a-z 0-9 . _ -`. The first well-formed marker
//! (in message order) wins; malformed ones are skipped.

/// What a marker starts with.
pub const MARKER_PREFIX: &str = "[drill:rid=";

/// What a marker ends with.
pub const MARKER_SUFFIX: char = ']';

/// Longest correlation id accepted.
pub const MAX_CORRELATION_ID_LEN: usize = 64;

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Returns the correlation id of the first well-formed marker in `text`.
///
/// ```
/// use mock_providers::extract_correlation_id;
/// assert_eq!(extract_correlation_id("hi [drill:rid=run7.req-42] there"), Some("run7.req-42"));
/// assert_eq!(extract_correlation_id("[drill:rid=] [drill:rid=ok]"), Some("ok"));
/// assert_eq!(extract_correlation_id("no marker"), None);
/// ```
pub fn extract_correlation_id(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(pos) = rest.find(MARKER_PREFIX) {
        let after = &rest[pos + MARKER_PREFIX.len()..];
        let len = after.bytes().take_while(|b| is_id_byte(*b)).count();
        if (1..=MAX_CORRELATION_ID_LEN).contains(&len)
            && after.as_bytes().get(len) == Some(&(MARKER_SUFFIX as u8))
        {
            return Some(&after[..len]);
        }
        rest = after;
    }
    None
}

/// Builds the marker text for `id` (the inverse of
/// [`extract_correlation_id`]); `None` when `id` is not a valid id.
pub fn marker(id: &str) -> Option<String> {
    let valid = (1..=MAX_CORRELATION_ID_LEN).contains(&id.len()) && id.bytes().all(is_id_byte);
    valid.then(|| format!("{MARKER_PREFIX}{id}{MARKER_SUFFIX}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_marker_anywhere() {
        assert_eq!(extract_correlation_id("[drill:rid=a]"), Some("a"));
        assert_eq!(
            extract_correlation_id("x\n[drill:rid=A_b.c-9]\ny"),
            Some("A_b.c-9")
        );
    }

    #[test]
    fn rejects_malformed_markers() {
        assert_eq!(extract_correlation_id("[drill:rid=]"), None);
        assert_eq!(extract_correlation_id("[drill:rid=a b]"), None);
        assert_eq!(extract_correlation_id("[drill:rid=abc"), None);
        assert_eq!(extract_correlation_id("[drill:rid=é]"), None);
        let long = "x".repeat(65);
        assert_eq!(extract_correlation_id(&format!("[drill:rid={long}]")), None);
        let max = "x".repeat(64);
        assert_eq!(
            extract_correlation_id(&format!("[drill:rid={max}]")),
            Some(max.as_str())
        );
    }

    #[test]
    fn first_valid_marker_wins() {
        assert_eq!(
            extract_correlation_id("[drill:rid=bad id] [drill:rid=one] [drill:rid=two]"),
            Some("one")
        );
    }

    #[test]
    fn marker_round_trips() {
        let m = marker("run-1.7").unwrap();
        assert_eq!(extract_correlation_id(&m), Some("run-1.7"));
        assert_eq!(marker(""), None);
        assert_eq!(marker("a]b"), None);
    }
}

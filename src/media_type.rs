//! The media type of a `Content-Type` value, read the way Go's
//! `mime.ParseMediaType` reads it (the registry and most clients are Go):
//! the part before the first `;`, trimmed, lower-cased. A value that is not
//! printable ASCII has no media type we could vouch for.

/// The bodies Go's `Request.FormValue` parses; a registry request carrying
/// one could hide parameters (a mount's `from`) from anything that reads
/// only the URI.
pub const FORM_MEDIA_TYPES: [&str; 2] =
    ["application/x-www-form-urlencoded", "multipart/form-data"];

/// The lower-cased media type of a `Content-Type` value, or `None` when the
/// value holds anything but printable ASCII, spaces and tabs (Go would
/// lower-case Unicode too, so such a value cannot be judged byte-wise).
pub fn media_type(value: &[u8]) -> Option<String> {
    let printable = value
        .iter()
        .all(|byte| byte.is_ascii_graphic() || *byte == b' ' || *byte == b'\t');
    if !printable {
        return None;
    }
    let text = std::str::from_utf8(value).ok()?;
    let base = text.split(';').next().unwrap_or_default();
    Some(base.trim().to_ascii_lowercase())
}

/// Whether a `Content-Type` value is exactly the media type `wanted`
/// (parameters such as `; charset=utf-8` ignored).
pub fn matches(value: &[u8], wanted: &str) -> bool {
    media_type(value).is_some_and(|found| found == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_go() {
        assert_eq!(
            media_type(b" Application/X-WWW-Form-URLEncoded ; charset=utf-8").as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(media_type(b"").as_deref(), Some(""));
        assert_eq!(media_type(b"application/json; charset=\xe9"), None);
        assert_eq!(media_type(b"text/plain\x00"), None);
        assert!(matches(
            b"application/x-www-form-urlencoded; charset=utf-8",
            FORM_MEDIA_TYPES[0]
        ));
        assert!(!matches(b"application/json", FORM_MEDIA_TYPES[0]));
    }
}

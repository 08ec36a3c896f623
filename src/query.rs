//! Query strings and form bodies (`application/x-www-form-urlencoded`), read
//! so that no parser a registry or a client may use can read them differently.
//!
//! Parsers agree on `a=b&c=d` with valid `%XX` escapes and `+` for space,
//! decoding to UTF-8. They disagree elsewhere, and each disagreement can hide
//! a parameter from a check that reads the query one way while the registry
//! reads it another (a `from=` blob-mount source, above all):
//!
//! - `;`: Go up to 1.16 (the official `registry:2.7` and `2.8.1` images) and
//!   Python before 3.9.2 (older Pulp/Django) split pairs on it; Go 1.17 and
//!   later drop the whole pair; the WHATWG parser keeps it as data.
//! - an invalid escape (`%zz`, `%4`): Go drops the pair; Python and the
//!   WHATWG parser keep it literally.
//! - bytes that are not UTF-8 once decoded: Go keeps them, Python and Rust
//!   replace them with U+FFFD, so different inputs read alike.
//!
//! All three are refused here. What is left is the common ground, decoded
//! exactly once. Repeated keys (Go reads the first value, Django the last)
//! and control characters are for the caller to judge per key:
//! [`Pairs::refuse_repeated`], [`Pairs::refuse_control_characters`].

use std::borrow::Cow;

use crate::scope::excerpt;

/// Why a query or form is refused. The messages say which parsers differ.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A raw `;`, which some parsers take as a pair separator.
    #[error("';' separates parameters for some parsers (Go up to 1.16, Python before 3.9.2) and not for others (newer Go drops the pair); encode it as %3B")]
    Semicolon,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding {found:?}: Go drops such a parameter, other parsers keep it as text")]
    InvalidEscape {
        /// The `%` and what follows it (at most two characters).
        found: String,
    },
    /// A key or value that does not decode to UTF-8.
    #[error("parameter {key:?} does not decode to UTF-8: parsers keep or replace such bytes differently")]
    NotUtf8 {
        /// The key, lossily decoded and shortened.
        key: String,
    },
    /// A control character (or DEL) in a decoded key or value.
    #[error("parameter {key:?} contains a control character once decoded")]
    ControlCharacter {
        /// The key, shortened (control characters escaped by `{:?}`).
        key: String,
    },
    /// A key that must appear at most once appears again.
    #[error(
        "parameter {key:?} is given more than once: Go reads the first value, Django the last"
    )]
    Repeated {
        /// The repeated key.
        key: String,
    },
}

/// The decoded `(key, value)` pairs of a query or form, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(Vec<(String, String)>);

impl Pairs {
    /// Decodes `input` strictly: `&` separates pairs, the first `=` splits
    /// key from value, `+` is a space, `%XX` a byte, and the result must be
    /// UTF-8. Empty pairs (`a=1&&b=2`, a trailing `&`) are skipped, as every
    /// parser skips them.
    pub fn parse(input: &[u8]) -> Result<Pairs, QueryError> {
        if input.contains(&b';') {
            return Err(QueryError::Semicolon);
        }
        check_escapes(input)?;
        let mut pairs = Vec::new();
        for pair in input.split(|byte| *byte == b'&').filter(|p| !p.is_empty()) {
            let mut halves = pair.splitn(2, |byte| *byte == b'=');
            let key = halves.next().unwrap_or_default();
            let value = halves.next().unwrap_or_default();
            let key_text = decode(key).map_err(|_| QueryError::NotUtf8 {
                key: excerpt(&String::from_utf8_lossy(key)),
            })?;
            let value_text = decode(value).map_err(|_| QueryError::NotUtf8 {
                key: excerpt(&key_text),
            })?;
            pairs.push((key_text, value_text));
        }
        Ok(Pairs(pairs))
    }

    /// Every pair, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> {
        self.iter()
            .filter(move |(found, _)| *found == key)
            .map(|(_, value)| value)
    }

    /// Refuses a second occurrence of any of `keys`, whatever its value:
    /// parsers disagree about which occurrence counts.
    pub fn refuse_repeated(&self, keys: &[&str]) -> Result<(), QueryError> {
        for key in keys {
            if self.all(key).nth(1).is_some() {
                return Err(QueryError::Repeated {
                    key: (*key).to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Refuses control characters (and DEL) in every key, and in the values
    /// of every key but `opaque` (secrets such as a password, which are
    /// compared as given and never shown).
    pub fn refuse_control_characters(&self, opaque: &[&str]) -> Result<(), QueryError> {
        let control = |text: &str| text.chars().any(char::is_control);
        for (key, value) in self.iter() {
            if control(key) || (!opaque.contains(&key) && control(value)) {
                return Err(QueryError::ControlCharacter { key: excerpt(key) });
            }
        }
        Ok(())
    }
}

/// Every `%` must start `%XX` with two hex digits.
fn check_escapes(input: &[u8]) -> Result<(), QueryError> {
    for (at, _) in input.iter().enumerate().filter(|(_, byte)| **byte == b'%') {
        let escape = input.get(at + 1..at + 3);
        if !escape.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
            let end = input.len().min(at + 3);
            return Err(QueryError::InvalidEscape {
                found: String::from_utf8_lossy(input.get(at..end).unwrap_or_default()).into_owned(),
            });
        }
    }
    Ok(())
}

/// `+` → space, then `%XX` → byte; the bytes must be UTF-8.
fn decode(raw: &[u8]) -> Result<String, std::string::FromUtf8Error> {
    let spaced: Cow<[u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|byte| if *byte == b'+' { b' ' } else { *byte })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    let bytes: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
    String::from_utf8(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(input: &str) -> Vec<(String, String)> {
        Pairs::parse(input.as_bytes())
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn pair(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn the_common_ground_decodes_like_every_parser() {
        assert_eq!(
            pairs("a=1&b=x+y%2Bz&%66rom=a%2Fb&flag&=v&&c=d=e&"),
            vec![
                pair("a", "1"),
                pair("b", "x y+z"),
                pair("from", "a/b"),
                pair("flag", ""),
                pair("", "v"),
                pair("c", "d=e"),
            ]
        );
        assert_eq!(pairs(""), vec![]);
        assert_eq!(pairs("x=%C3%A9"), vec![pair("x", "é")]);
        assert_eq!(
            pairs("x=%3B"),
            vec![pair("x", ";")],
            "an encoded ';' is data"
        );
    }

    #[test]
    fn semicolons_are_refused() {
        for input in ["mount=x;from=alice/private", "a=1;", ";", "a;b=c"] {
            assert_eq!(
                Pairs::parse(input.as_bytes()),
                Err(QueryError::Semicolon),
                "{input}"
            );
        }
    }

    #[test]
    fn invalid_escapes_are_refused() {
        for (input, found) in [
            ("from=%zzalice", "%zz"),
            ("from=alice%", "%"),
            ("from=alice%4", "%4"),
            ("%g0=x", "%g0"),
            ("x=%%41", "%%4"),
        ] {
            assert_eq!(
                Pairs::parse(input.as_bytes()),
                Err(QueryError::InvalidEscape {
                    found: found.to_owned()
                }),
                "{input}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused() {
        for input in ["from=%FF", "%C3=x", "x=%C3%28", "x=\u{e9}%80"] {
            assert!(
                matches!(
                    Pairs::parse(input.as_bytes()),
                    Err(QueryError::NotUtf8 { .. })
                ),
                "{input}"
            );
        }
        assert!(matches!(
            Pairs::parse(b"x=\xff"),
            Err(QueryError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn repeats_and_control_characters_are_the_callers_call() {
        let parsed = Pairs::parse(b"from=a&x=1&x=2&password=p%00w").unwrap();
        assert_eq!(parsed.refuse_repeated(&["from"]), Ok(()));
        assert_eq!(
            parsed.refuse_repeated(&["from", "x"]),
            Err(QueryError::Repeated { key: "x".into() })
        );
        assert_eq!(parsed.refuse_control_characters(&["password"]), Ok(()));
        assert_eq!(
            parsed.refuse_control_characters(&[]),
            Err(QueryError::ControlCharacter {
                key: "password".into()
            })
        );
        let key = Pairs::parse(b"fr%0Aom=a").unwrap();
        assert!(key.refuse_control_characters(&["fr\nom"]).is_err());
        assert_eq!(
            Pairs::parse(b"x=%7F")
                .unwrap()
                .refuse_control_characters(&[]),
            Err(QueryError::ControlCharacter { key: "x".into() })
        );
    }
}

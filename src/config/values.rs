//! Typed config values that check themselves while they are deserialized:
//! a duration or count within its bounds, a header name. Once a [`super::Config`]
//! exists, every such value in it is usable as it stands; nothing downstream
//! converts or re-checks it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A whole number of seconds between `MIN` and `MAX`, written in the config
/// as an integer (fields named `*_secs`). `MAX` fits an `i64`, so adding it
/// to a Unix time cannot overflow the way an unchecked `u64` could.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seconds<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Seconds<MIN, MAX> {
    /// Rejected at compile time for impossible bounds.
    const BOUNDS_HOLD: () = assert!(MIN <= MAX && MAX <= i64::MAX as u64);

    /// A compile-time value, for defaults: out-of-bounds values do not build.
    pub const fn from_secs_const(secs: u64) -> Self {
        let () = Self::BOUNDS_HOLD;
        assert!(MIN <= secs && secs <= MAX, "default out of its bounds");
        Seconds(secs)
    }

    /// The value, if it is within the bounds; else what is wrong with it.
    pub fn new(secs: u64) -> Result<Self, String> {
        let () = Self::BOUNDS_HOLD;
        check_bounds(secs, MIN, MAX, describe_secs).map(Seconds)
    }

    /// As a `Duration`, for timers and caches.
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }

    /// As whole seconds, for JSON answers and logs.
    pub fn secs(self) -> u64 {
        self.0
    }

    /// As whole seconds, for arithmetic on Unix times (always exact: the
    /// bound fits an `i64`).
    pub fn as_i64(self) -> i64 {
        self.0 as i64
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Seconds<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Seconds::new(u64::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

impl<const MIN: u64, const MAX: u64> fmt::Display for Seconds<MIN, MAX> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// A count (connections, cache entries, backlog) between `MIN` and `MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Count<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Count<MIN, MAX> {
    /// Rejected at compile time for impossible bounds; `MAX` fits a `u32`,
    /// so every conversion below is exact.
    const BOUNDS_HOLD: () = assert!(MIN <= MAX && MAX <= u32::MAX as u64);

    /// A compile-time value, for defaults.
    pub const fn from_const(count: u64) -> Self {
        let () = Self::BOUNDS_HOLD;
        assert!(MIN <= count && count <= MAX, "default out of its bounds");
        Count(count)
    }

    /// The value, if it is within the bounds; else what is wrong with it.
    pub fn new(count: u64) -> Result<Self, String> {
        let () = Self::BOUNDS_HOLD;
        check_bounds(count, MIN, MAX, |_| None).map(Count)
    }

    /// The count.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The count as a `usize` (exact: it fits a `u32`).
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }

    /// The count as an `i32` where it is at most `i32::MAX` (a listen
    /// backlog), else `i32::MAX`.
    pub fn as_c_int(self) -> i32 {
        i32::try_from(self.0).unwrap_or(i32::MAX)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Count<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Count::new(u64::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

fn check_bounds(
    value: u64,
    min: u64,
    max: u64,
    in_words: impl Fn(u64) -> Option<&'static str>,
) -> Result<u64, String> {
    let with_words = |bound: u64| match in_words(bound) {
        Some(words) => format!("{bound} ({words})"),
        None => bound.to_string(),
    };
    if value < min {
        return Err(format!("must be at least {}", with_words(min)));
    }
    if value > max {
        return Err(format!("must be at most {}", with_words(max)));
    }
    Ok(value)
}

/// One minute, in seconds.
pub const ONE_MINUTE: u64 = 60;
/// One hour, in seconds.
pub const ONE_HOUR: u64 = 3600;
/// One day, in seconds.
pub const ONE_DAY: u64 = 24 * ONE_HOUR;
/// Ten years, in seconds.
pub const TEN_YEARS: u64 = 10 * 365 * ONE_DAY;

fn describe_secs(secs: u64) -> Option<&'static str> {
    match secs {
        ONE_MINUTE => Some("one minute"),
        ONE_HOUR => Some("one hour"),
        ONE_DAY => Some("one day"),
        TEN_YEARS => Some("ten years"),
        _ => None,
    }
}

/// A header name from the config: parsed once for lookups, and kept as
/// the operator wrote it for messages and logs (`X-Original-URI`, not the
/// normalised `x-original-uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    name: http::HeaderName,
    written: Box<str>,
}

impl HeaderField {
    /// A header name known at compile time, for defaults.
    pub fn from_static(written: &'static str) -> HeaderField {
        HeaderField {
            name: http::HeaderName::from_bytes(written.as_bytes())
                .unwrap_or_else(|_| panic!("`{written}` is not a header name")),
            written: written.into(),
        }
    }

    /// The parsed name, for `HeaderMap` lookups and inserts.
    pub fn name(&self) -> &http::HeaderName {
        &self.name
    }

    /// The name as written in the config.
    pub fn as_str(&self) -> &str {
        &self.written
    }
}

impl FromStr for HeaderField {
    type Err = String;

    fn from_str(text: &str) -> Result<HeaderField, String> {
        match http::HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Ok(HeaderField {
                name,
                written: text.into(),
            }),
            Err(_) => Err(format!("`{text}` is not a valid header name")),
        }
    }
}

impl fmt::Display for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for HeaderField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_parsed(deserializer)
    }
}

/// Reads a value the config writes as a string through its one parser,
/// its [`FromStr`]; the parser's message becomes the load error.
pub(super) fn deserialize_parsed<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    String::deserialize(deserializer)?
        .parse()
        .map_err(D::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_name_their_bounds_in_words() {
        type Lifetime = Seconds<ONE_MINUTE, ONE_DAY>;
        assert_eq!(
            Lifetime::new(60).unwrap().duration(),
            Duration::from_secs(60)
        );
        assert_eq!(
            Lifetime::new(59).unwrap_err(),
            "must be at least 60 (one minute)"
        );
        assert_eq!(
            Lifetime::new(u64::MAX).unwrap_err(),
            "must be at most 86400 (one day)"
        );
        assert_eq!(Seconds::<0, 7>::new(8).unwrap_err(), "must be at most 7");
    }

    #[test]
    fn counts_and_header_names_are_checked_as_they_are_read() {
        let count: Result<Count<1, 10>, _> = serde_json::from_str("0");
        assert!(count
            .unwrap_err()
            .to_string()
            .contains("must be at least 1"));
        assert_eq!(Count::<1, 10>::new(10).unwrap().as_usize(), 10);

        let named: HeaderField = serde_json::from_str(r#""X-Original-URI""#).unwrap();
        assert_eq!(named.name(), "x-original-uri");
        assert_eq!(named.to_string(), "X-Original-URI");
        let bad = serde_json::from_str::<HeaderField>(r#""X Original""#);
        assert!(bad
            .err()
            .unwrap()
            .to_string()
            .contains("not a valid header name"));
    }
}

//! Verified access tokens, so `/auth` checks a token's signature once and
//! not on every one of the many requests a pull makes. A hit still checks
//! time and access; an entry never outlives its token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::metrics::Handles;
use crate::verified_token::VerifiedToken;

/// `regauth_token_cache_total` by result: counted on every cached `/auth`
/// request, so through handles registered once.
static LOOKUPS: Handles<&str, metrics::Counter, 2> = Handles::new();

/// A verified token and how long it may stay.
#[derive(Clone)]
struct Entry {
    token: Arc<VerifiedToken>,
    time_to_live: Duration,
}

/// One unit per started 512 bytes of the kept token: an ordinary token (a
/// few resources, a few groups) weighs 1.
fn weight(token: &VerifiedToken) -> u32 {
    u32::try_from(1 + token.size_bytes() / 512).unwrap_or(u32::MAX)
}

/// Lets each entry expire when its token does. Measured with 100,000
/// entries, per-entry expiry costs moka 48 bytes an entry over no expiry
/// (16 over a cache-wide `time_to_live`), of about 630 an entry in all: kept,
/// since it gives an expired token's memory back when the token expires
/// rather than at a deadline sized for the longest-lived token.
struct ExpireWithToken;

impl moka::Expiry<[u8; 32], Entry> for ExpireWithToken {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        entry: &Entry,
        _now: Instant,
    ) -> Option<Duration> {
        Some(entry.time_to_live)
    }
}

/// Bounded cache of verified tokens, keyed by a SHA-256 of the token (the
/// token text itself is a credential and is not kept as a key).
pub struct TokenCache {
    entries: moka::future::Cache<[u8; 32], Entry>,
}

impl TokenCache {
    /// A cache of at most `capacity` ordinary tokens. A token naming many
    /// resources counts as several, so that the bound holds in bytes too,
    /// whatever tokens callers present.
    pub fn new(capacity: u64) -> TokenCache {
        TokenCache {
            entries: moka::future::Cache::builder()
                .max_capacity(capacity)
                .weigher(|_key, entry: &Entry| weight(&entry.token))
                .expire_after(ExpireWithToken)
                .build(),
        }
    }

    /// The cache key of a token verified under snapshot `generation`,
    /// whose signing key puts `signing_header` in every token it signs: a
    /// SHA-256 of both. That header segment is most of such a token (its
    /// `x5c` certificate), so a token that starts with it is hashed without
    /// it, and marked apart from tokens hashed whole: within a generation
    /// the header is fixed, so distinct tokens still get distinct keys.
    pub fn key(generation: u64, signing_header: &str, token: &str) -> [u8; 32] {
        const WHOLE: u8 = 0;
        const AFTER_SIGNING_HEADER: u8 = 1;
        let mut digest = Sha256::new();
        digest.update(generation.to_be_bytes());
        match token
            .strip_prefix(signing_header)
            .and_then(|rest| rest.strip_prefix('.'))
        {
            Some(rest) => {
                digest.update([AFTER_SIGNING_HEADER]);
                digest.update(rest.as_bytes());
            }
            None => {
                digest.update([WHOLE]);
                digest.update(token.as_bytes());
            }
        }
        digest.finalize().into()
    }

    /// A token verified earlier, if still cached. It may have expired since:
    /// the caller checks ([`VerifiedToken::expired_at`]).
    pub async fn get(&self, key: &[u8; 32]) -> Option<Arc<VerifiedToken>> {
        let hit = self.entries.get(key).await.map(|entry| entry.token);
        let result = if hit.is_some() { "hit" } else { "miss" };
        LOOKUPS.record(
            result,
            || metrics::counter!("regauth_token_cache_total", "result" => result),
            |counter| counter.increment(1),
        );
        hit
    }

    /// Remembers a verified token until `expires_at` (unix seconds, leeway
    /// included). `now` is the current unix time.
    pub async fn insert(
        &self,
        key: [u8; 32],
        token: Arc<VerifiedToken>,
        expires_at: i64,
        now: i64,
    ) {
        let Ok(seconds) = u64::try_from(expires_at.saturating_sub(now)) else {
            return;
        };
        if seconds == 0 {
            return;
        }
        let entry = Entry {
            token,
            time_to_live: Duration::from_secs(seconds),
        };
        self.entries.insert(key, entry).await;
    }

    /// Drops every entry (keys changed).
    pub fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{AccessClaims, AccessEntry};

    fn token(resources: usize, groups: usize) -> VerifiedToken {
        VerifiedToken::from(AccessClaims {
            iss: "i".into(),
            sub: "alice".into(),
            aud: "s".into(),
            exp: 0,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            groups: (0..groups).map(|i| format!("group-{i}")).collect(),
            access: (0..resources)
                .map(|i| AccessEntry {
                    resource_type: "repository".into(),
                    class: None,
                    name: format!("team/app-{i}"),
                    actions: vec!["pull".into(), "push".into()],
                })
                .collect(),
        })
    }

    #[test]
    fn distinct_tokens_get_distinct_keys_with_or_without_our_header() {
        const OURS: &str = "eyJhbGciOiJFUzI1NiJ9";
        fn key(generation: u64, token: &str) -> [u8; 32] {
            TokenCache::key(generation, OURS, token)
        }
        let signed = format!("{OURS}.eyJzdWIiOiJhIn0.c2ln");
        assert_eq!(key(1, &signed), key(1, &signed));
        // The same claims and signature under another header.
        assert_ne!(
            key(1, &signed),
            key(1, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln")
        );
        // The rest after our header, presented alone, is another token.
        assert_ne!(key(1, &signed), key(1, "eyJzdWIiOiJhIn0.c2ln"));
        assert_ne!(
            key(1, &signed),
            key(1, &format!("{OURS}eyJzdWIiOiJhIn0.c2ln"))
        );
        assert_ne!(key(1, &signed), key(2, &signed));
        assert_ne!(
            key(1, &signed),
            key(1, &format!("{OURS}.eyJzdWIiOiJiIn0.c2ln"))
        );
    }

    #[test]
    fn ordinary_tokens_weigh_one_and_big_ones_more() {
        assert_eq!(weight(&token(0, 0)), 1);
        assert_eq!(weight(&token(3, 2)), 1);
        assert!(weight(&token(128, 0)) >= 10, "{}", weight(&token(128, 0)));
        assert!(
            weight(&token(0, 200)) >= 5,
            "groups weigh too: {}",
            weight(&token(0, 200))
        );
    }
}

//! The login limiter in front of every source that checks a secret: an
//! attempt the [`LoginLimiter`] refuses is answered 429 before any source
//! runs (no bcrypt, no directory bind), and each checked attempt's outcome
//! goes back to the limiter. The decisions are the limiter's (pure, clock
//! passed in); this module reads the clock, counts, and maps.

use std::future::Future;
use std::time::{Duration, Instant};

use super::{Credentials, Identity, IdentityError};
use crate::config::LoginLimits;
use crate::limiter::{Attempt, LoginLimiter};
use crate::metrics::Handles;

/// `regauth_login_limiter_entries` by table.
static TABLE_SIZES: Handles<&str, metrics::Gauge, 2> = Handles::new();

/// A limiter sized by the config in force at start (table capacity and
/// entry lifetimes need a restart; the thresholds follow reloads).
pub fn limiter_for(limits: &LoginLimits) -> LoginLimiter {
    let thresholds = &limits.thresholds;
    // A period of zero would make moka drop entries at once; nothing can
    // be known for less than a second anyway.
    let known_for = thresholds.known_address_for.max(Duration::from_secs(1));
    LoginLimiter::new(limits.table_capacity, thresholds.window, known_for)
}

/// Runs `check` (every source that checks a secret) unless the limiter
/// refuses the attempt, and reports the outcome to the limiter.
pub async fn behind_limiter<F>(
    limiter: &LoginLimiter,
    limits: &LoginLimits,
    credentials: &Credentials<'_>,
    check: F,
) -> Result<Identity, IdentityError>
where
    F: Future<Output = Result<Identity, IdentityError>>,
{
    let attempt = match limits.failures() {
        None => None,
        Some(thresholds) => {
            let began = limiter.begin(
                thresholds,
                credentials.user,
                credentials.client,
                Instant::now(),
            );
            Some(began.map_err(|limited| {
                refused(limited.counter.label());
                IdentityError::Limited {
                    retry_after: limited.retry_after,
                }
            })?)
        }
    };
    let outcome = check.await;
    if let Some(attempt) = attempt {
        settle(attempt, &outcome, Instant::now());
    }
    outcome
}

/// Sets `regauth_login_limiter_entries` from the tables as they are now:
/// called when `/metrics` is read, so no login pays for it and none is
/// missed.
pub fn record_table_sizes(limiter: &LoginLimiter) {
    let sizes = limiter.table_sizes();
    for (table, entries) in [
        ("counters", sizes.counters),
        ("known_addresses", sizes.known_addresses),
    ] {
        TABLE_SIZES.record(
            table,
            || metrics::gauge!("regauth_login_limiter_entries", "table" => table),
            |gauge| gauge.set(entries as f64),
        );
    }
}

/// Whether a login whose secret is already known to be right (remembered)
/// is let through without a check: the limiter's answer, read only, and
/// the success recorded (see [`LoginLimiter::admit_remembered`]).
pub fn admit_remembered(
    limiter: &LoginLimiter,
    limits: &LoginLimits,
    credentials: &Credentials<'_>,
) -> bool {
    limits.failures().is_none_or(|thresholds| {
        limiter.admit_remembered(
            thresholds,
            credentials.user,
            credentials.client,
            Instant::now(),
        )
    })
}

/// A wrong secret keeps its charge; a right one clears the way; a check
/// that never ran (full queue, source down, our own error) costs nothing.
fn settle(attempt: Attempt<'_>, outcome: &Result<Identity, IdentityError>, now: Instant) {
    match outcome {
        Ok(_) => attempt.succeeded(now),
        Err(IdentityError::WrongCredential { .. }) => drop(attempt),
        Err(
            IdentityError::Limited { .. }
            | IdentityError::Unavailable { .. }
            | IdentityError::Internal(_),
        ) => attempt.not_checked(now),
    }
}

/// Counts a login refused before its secret was checked, by `reason`: the
/// limiter's counter, or the password-check queue's bound.
pub fn refused(reason: &'static str) {
    metrics::counter!("regauth_login_refused_total", "reason" => reason).increment(1);
}

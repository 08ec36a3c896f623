//! The `login_limits` section: the failed-login limiter's thresholds and
//! the bounds of the password-check queue. Read as plain numbers, checked,
//! and turned into typed values once, at load.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use serde::Deserialize;

use crate::limiter::Thresholds;

/// Login limiting, as the rest of the program sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "LoginLimitsSpec")]
pub struct LoginLimits {
    /// Whether failed logins are counted and limited at all.
    pub enabled: bool,
    /// The failed-login counters' thresholds.
    pub thresholds: Thresholds,
    /// Most entries in each of the limiter's tables.
    pub table_capacity: u64,
    /// The password-check queue (always on: it is a bound, not a policy).
    pub queue: QueueLimits,
}

/// Bounds of the queue in front of bcrypt (and any other costly secret
/// check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// Checks running at once.
    pub workers: NonZeroUsize,
    /// Checks waiting for a worker, all clients together.
    pub waiting: usize,
    /// Checks running or waiting for one client address (IPv6: one /64).
    pub per_address: NonZeroUsize,
}

impl LoginLimits {
    /// The thresholds in force, or `None` when limiting is off.
    pub fn failures(&self) -> Option<&Thresholds> {
        self.enabled.then_some(&self.thresholds)
    }
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimitsSpec::default()
            .try_into()
            .expect("the defaults are valid")
    }
}

/// The section as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct LoginLimitsSpec {
    enabled: bool,
    window_secs: u64,
    failures_per_account_and_address: u32,
    failures_per_address: u32,
    failures_per_account: u32,
    known_address_secs: u64,
    table_capacity: u64,
    bcrypt_workers: usize,
    bcrypt_queue: usize,
    bcrypt_queue_per_address: usize,
}

impl Default for LoginLimitsSpec {
    fn default() -> Self {
        LoginLimitsSpec {
            enabled: true,
            window_secs: 600,
            failures_per_account_and_address: 10,
            failures_per_address: 30,
            failures_per_account: 100,
            known_address_secs: 30 * 24 * 3600,
            table_capacity: 100_000,
            bcrypt_workers: 0,
            bcrypt_queue: 64,
            bcrypt_queue_per_address: 8,
        }
    }
}

/// Largest failure threshold: beyond it a counter is pointless, and the
/// window / limit arithmetic stays exact.
const MAX_FAILURES: u32 = 10_000;
const MAX_WINDOW_SECS: u64 = 24 * 3600;
const MAX_KNOWN_ADDRESS_SECS: u64 = 365 * 24 * 3600;
const MAX_TABLE_CAPACITY: u64 = 10_000_000;
const MAX_QUEUE: usize = 100_000;

impl TryFrom<LoginLimitsSpec> for LoginLimits {
    type Error = String;

    fn try_from(spec: LoginLimitsSpec) -> Result<Self, String> {
        let within = |field: &str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(format!(
                    "login_limits.{field} must be between {low} and {high}, not {value}"
                ))
            }
        };
        let threshold = |field: &str, value: u32| {
            within(field, value.into(), 0, MAX_FAILURES.into())
                .map(|_| NonZeroU32::new(value))
                .map_err(|reason| format!("{reason} (0 turns the counter off)"))
        };
        let window = within("window_secs", spec.window_secs, 1, MAX_WINDOW_SECS)?;
        let known = within(
            "known_address_secs",
            spec.known_address_secs,
            0,
            MAX_KNOWN_ADDRESS_SECS,
        )?;
        let thresholds = Thresholds {
            window: Duration::from_secs(window),
            per_account_and_address: threshold(
                "failures_per_account_and_address",
                spec.failures_per_account_and_address,
            )?,
            per_address: threshold("failures_per_address", spec.failures_per_address)?,
            per_account: threshold("failures_per_account", spec.failures_per_account)?,
            known_address_for: Duration::from_secs(known),
        };
        let size = |field: &str, value: usize, low: usize| {
            within(field, value as u64, low as u64, MAX_QUEUE as u64).map(|_| value)
        };
        let workers = match size("bcrypt_workers", spec.bcrypt_workers, 0)? {
            // bcrypt is pure CPU: more workers than cores only adds waiting.
            0 => std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            n => NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN),
        };
        let per_address = size("bcrypt_queue_per_address", spec.bcrypt_queue_per_address, 1)?;
        Ok(LoginLimits {
            enabled: spec.enabled,
            thresholds,
            table_capacity: within(
                "table_capacity",
                spec.table_capacity,
                1_000,
                MAX_TABLE_CAPACITY,
            )?,
            queue: QueueLimits {
                workers,
                waiting: size("bcrypt_queue", spec.bcrypt_queue, 0)?,
                per_address: NonZeroUsize::new(per_address).unwrap_or(NonZeroUsize::MIN),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LoginLimits, String> {
        serde_json::from_str(json).map_err(|error| error.to_string())
    }

    #[test]
    fn defaults_stop_a_forty_guess_burst_and_keep_every_table_bounded() {
        let limits = parse("{}").unwrap();
        assert_eq!(limits, LoginLimits::default());
        let failures = limits.failures().unwrap();
        assert_eq!(failures.per_account_and_address, NonZeroU32::new(10));
        assert_eq!(failures.per_address, NonZeroU32::new(30));
        assert_eq!(failures.window, Duration::from_secs(600));
        assert_eq!(limits.table_capacity, 100_000);
        assert_eq!(limits.queue.waiting, 64);
    }

    #[test]
    fn counters_turn_off_one_by_one_or_all_at_once() {
        let limits = parse(r#"{"failures_per_account": 0}"#).unwrap();
        assert_eq!(limits.failures().unwrap().per_account, None);
        assert_eq!(parse(r#"{"enabled": false}"#).unwrap().failures(), None);
    }

    #[test]
    fn out_of_range_values_are_refused_by_name() {
        for (json, field) in [
            (r#"{"window_secs": 0}"#, "login_limits.window_secs"),
            (
                r#"{"failures_per_address": 20000}"#,
                "login_limits.failures_per_address",
            ),
            (r#"{"table_capacity": 5}"#, "login_limits.table_capacity"),
            (
                r#"{"bcrypt_queue_per_address": 0}"#,
                "login_limits.bcrypt_queue_per_address",
            ),
        ] {
            let message = parse(json).unwrap_err();
            assert!(message.contains(field), "{json}: {message}");
        }
        assert!(parse(r#"{"windw_secs": 5}"#)
            .unwrap_err()
            .contains("windw_secs"));
    }
}

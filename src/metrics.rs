//! Prometheus metrics. Code records through the `metrics` facade macros
//! where things happen; this module installs the recorder, names and
//! describes every series, and renders them for `/metrics`.
//!
//! Series:
//! - `regauth_http_requests_total{endpoint,status}`, `regauth_http_request_seconds{endpoint}`
//! - `regauth_token_requests_total{outcome}`: issued, bad_credentials,
//!   bad_refresh_token; limited, unavailable, error (identity seam refusals)
//! - `regauth_auth_decisions_total{outcome}`: allow, challenge, deny;
//!   limited, unavailable, error (identity seam refusals)
//! - `regauth_token_cache_total{result}`, `regauth_credential_cache_total{result}`: hit, miss
//! - `regauth_bcrypt_seconds`
//! - `regauth_login_refused_total{reason}`: logins refused before any secret
//!   was checked: account_address, address, account (limiter counters),
//!   queue_full, queue_address_share (password-check queue)
//! - `regauth_login_limiter_entries{table}`: counters, known_addresses
//! - `regauth_check_queue_running{queue}`, `regauth_check_queue_waiting{queue}`
//! - `regauth_reloads_total{result}`: ok, failed; `regauth_config_generation`
//! - `regauth_api_token_logins_total{token_id,outcome}`: ok, unknown,
//!   wrong_account, expired, account_gone (`token_id` is `unknown` when no
//!   token has the secret; never the secret)
//! - `regauth_federation_logins_total{issuer,outcome}`: ok or the failure
//!   mode (`issuer` is `unknown` for issuers not configured);
//!   `regauth_federation_key_fetches_total{result}`: ok, failed
//! - `regauth_log_lines_dropped_total`: log lines dropped because the log
//!   writer could not keep up (see `logging`); updated every second

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for request latency: sub-millisecond cache hits up to bcrypt.
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the process-wide recorder. Call once, inside the runtime.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()?;
    RECORDER_INSTALLED.store(true, Ordering::Release);
    describe();
    let upkeep = handle.clone();
    // Histograms are kept in buckets that need periodic upkeep; the log
    // writer keeps its own count of dropped lines, copied here.
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        for tick in 0u64.. {
            interval.tick().await;
            metrics::counter!("regauth_log_lines_dropped_total")
                .absolute(crate::logging::dropped_lines());
            if tick % 5 == 0 {
                upkeep.run_upkeep();
            }
        }
    });
    Ok(handle)
}

/// Set once the process-wide recorder is in place: handles registered
/// before that would record nowhere for ever.
static RECORDER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// The handles of one series for up to `N` label values, each registered
/// the first time it is recorded. The facade's macros find a series by name
/// and labels on every call (a hash, a lock, an allocation for an owned
/// label), which on the hottest paths costs more than the decision being
/// counted; a static `Handles` pays that once per label value.
///
/// A value takes the first free slot (a concurrent first use of the same
/// slot waits for its registration); afterwards recording scans at most `N`
/// slots and takes no lock. A value that finds every slot taken by others
/// is recorded through the registry, as before.
pub struct Handles<K, H, const N: usize> {
    slots: [OnceLock<(K, H)>; N],
}

impl<K: Copy + Eq, H, const N: usize> Default for Handles<K, H, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Copy + Eq, H, const N: usize> Handles<K, H, N> {
    /// No handle registered yet.
    pub const fn new() -> Self {
        Handles {
            slots: [const { OnceLock::new() }; N],
        }
    }

    /// Records into the handle for `key`, which `register` makes (through
    /// the facade's macros) the first time.
    pub fn record(&self, key: K, register: impl Fn() -> H, record: impl FnOnce(&H)) {
        let cached = if RECORDER_INSTALLED.load(Ordering::Acquire) {
            self.cached(key, &register)
        } else {
            None
        };
        match cached {
            Some(handle) => record(handle),
            None => record(&register()),
        }
    }

    /// The handle kept for `key`, registered now if a slot is free.
    fn cached(&self, key: K, register: &impl Fn() -> H) -> Option<&H> {
        self.slots.iter().find_map(|slot| {
            let (taken_by, handle) = slot.get_or_init(|| (key, register()));
            (*taken_by == key).then_some(handle)
        })
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "regauth_http_requests_total",
        "HTTP requests by endpoint and status"
    );
    describe_histogram!(
        "regauth_http_request_seconds",
        Unit::Seconds,
        "HTTP request latency by endpoint"
    );
    describe_counter!("regauth_token_requests_total", "Token endpoint outcomes");
    describe_counter!(
        "regauth_auth_decisions_total",
        "auth_request decisions by outcome"
    );
    describe_counter!(
        "regauth_token_cache_total",
        "Verified-token cache lookups by result"
    );
    describe_counter!(
        "regauth_credential_cache_total",
        "Password-check cache lookups by result"
    );
    describe_histogram!(
        "regauth_bcrypt_seconds",
        Unit::Seconds,
        "Time spent in bcrypt verification"
    );
    describe_counter!(
        "regauth_login_refused_total",
        "Logins refused before any secret was checked, by reason"
    );
    describe_gauge!(
        "regauth_login_limiter_entries",
        "Entries in the login limiter's tables"
    );
    describe_gauge!(
        "regauth_check_queue_running",
        "Password checks running, by queue"
    );
    describe_gauge!(
        "regauth_check_queue_waiting",
        "Password checks waiting for a worker, by queue"
    );
    describe_counter!("regauth_reloads_total", "Configuration reloads by result");
    describe_counter!(
        "regauth_api_token_logins_total",
        "API token logins by token id and outcome"
    );
    describe_counter!(
        "regauth_federation_logins_total",
        "OIDC federation logins by issuer and outcome"
    );
    describe_counter!(
        "regauth_federation_key_fetches_total",
        "Fetches of federated issuers' keys by result"
    );
    describe_gauge!(
        "regauth_config_generation",
        "Generation of the configuration in force"
    );
    describe_counter!(
        "regauth_log_lines_dropped_total",
        "Log lines dropped because the log writer could not keep up"
    );
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn each_value_is_registered_once_and_values_beyond_the_slots_are_not_kept() {
        let registered = Cell::new(0);
        let register = || {
            registered.set(registered.get() + 1);
            registered.get()
        };
        let handles: Handles<&str, usize, 2> = Handles::new();
        assert_eq!(handles.cached("allow", &register), Some(&1));
        assert_eq!(handles.cached("deny", &register), Some(&2));
        assert_eq!(handles.cached("allow", &register), Some(&1));
        assert_eq!(handles.cached("deny", &register), Some(&2));
        assert_eq!(registered.get(), 2);
        // Both slots are taken: a third value goes through the registry
        // each time.
        assert_eq!(handles.cached("challenge", &register), None);
        assert_eq!(registered.get(), 2);
    }
}

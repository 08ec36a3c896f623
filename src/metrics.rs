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
//! - `regauth_reloads_total{result}`: ok, failed; `regauth_config_generation`
//! - `regauth_api_token_logins_total{token_id,outcome}`: ok, unknown,
//!   wrong_account, expired, account_gone (`token_id` is `unknown` when no
//!   token has the secret; never the secret)
//! - `regauth_federation_logins_total{issuer,outcome}`: ok or the failure
//!   mode (`issuer` is `unknown` for issuers not configured);
//!   `regauth_federation_key_fetches_total{result}`: ok, failed
//! - `regauth_log_lines_dropped_total`: log lines dropped because the log
//!   writer could not keep up (see `logging`); updated every second

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

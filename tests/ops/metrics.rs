//! `/metrics`: strict Prometheus text whose counters move exactly as requests are made.

use crate::common::*;
use crate::support::*;

#[test]
fn metrics_are_prometheus_text_and_counters_move() {
    let mut h = Harness::new("ops-metrics");
    let (ep, _, _) = serve_inline(&mut h, &[ALICE]);
    let response = get(&ep, "/metrics", &[]);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.headers
    );
    let before = scrape(&ep);
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200); // bcrypt, cache miss
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200); // cache hit
    assert_eq!(token_status(&ep, ALICE.0, "wrong"), 401); // bcrypt, miss
    let challenge = get(
        &ep,
        "/auth",
        &[("X-Original-URI", "/v2/"), ("X-Original-Method", "GET")],
    );
    assert_eq!(challenge.status, 401);
    let after = scrape(&ep);

    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let requests = "regauth_http_requests_total";
    for (labels, expected) in [
        (&[("endpoint", "token"), ("status", "200")][..], 2.0),
        (&[("endpoint", "token"), ("status", "401")], 1.0),
        (&[("endpoint", "auth"), ("status", "401")], 1.0),
        // The first scrape is counted once it has been answered.
        (&[("endpoint", "metrics"), ("status", "200")], 1.0),
    ] {
        assert_eq!(delta(requests, labels), expected, "{requests}{labels:?}");
    }
    assert_eq!(
        delta("regauth_token_requests_total", &[("outcome", "issued")]),
        2.0
    );
    assert_eq!(
        delta(
            "regauth_token_requests_total",
            &[("outcome", "bad_credentials")]
        ),
        1.0
    );
    assert_eq!(
        delta("regauth_credential_cache_total", &[("result", "hit")]),
        1.0
    );
    assert_eq!(
        delta("regauth_credential_cache_total", &[("result", "miss")]),
        2.0
    );
    assert_eq!(
        delta("regauth_auth_decisions_total", &[("outcome", "challenge")]),
        1.0
    );
    assert_eq!(delta("regauth_bcrypt_seconds_count", &[]), 2.0);
    assert_eq!(
        delta(
            "regauth_http_request_seconds_count",
            &[("endpoint", "token")]
        ),
        3.0
    );
    assert_eq!(after.value("regauth_config_generation", &[]), 1.0);
    for (family, kind) in [
        ("regauth_http_requests_total", "counter"),
        ("regauth_http_request_seconds", "histogram"),
        ("regauth_bcrypt_seconds", "histogram"),
        ("regauth_config_generation", "gauge"),
    ] {
        assert_eq!(
            after.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
        assert!(after.help.contains_key(family), "no HELP for {family}");
    }
}

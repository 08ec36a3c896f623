//! Settings checked before serving: a trusted TCP listener is accepted with a warning
//! (`check-config` prints it, `serve` logs it at WARN), and values past their upper bound
//! are refused by both with the field named, instead of a panic once serving.

use serde_json::json;

use crate::common::*;
use crate::support::*;

#[test]
fn a_trusted_tcp_listener_is_accepted_with_a_warning() {
    let mut h = Harness::new("ops-trusted-tcp");
    let key = signing_key(&h);
    let addr = reserve_tcp();
    let mut doc = config(
        json!([{ "address": addr, "trusted": true }]),
        &key,
        &[ALICE],
    );
    doc["auth"] = json!({ "trusted_user_header": "X-Proxy-User" });
    let path = h.write("regauth.json", to_bytes(&doc));

    let out = check_config(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warning = format!("{addr} is trusted: anyone who can reach this TCP port may name any account in X-Proxy-User");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("warning:") && line.contains(&warning)),
        "{stdout}"
    );

    let ep = Endpoint::Tcp(addr);
    start(&mut h, &path, &ep);
    let line = h.wait_for_log_line(REGAUTH_CHILD, &warning);
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200);
}

#[test]
fn values_past_their_bounds_are_refused_before_serving() {
    let mut h = Harness::new("ops-bounds");
    let key = signing_key(&h);
    let addr = reserve_tcp();
    let mut doc = config(json!([addr]), &key, &[]);
    // This one used to pass check-config and make `serve` panic in the cache.
    doc["credential_cache_secs"] = json!(100_000_000_000_u64);
    let path = h.write("regauth.json", to_bytes(&doc));
    let message = "field `credential_cache_secs`: must be at most 86400 (one day)";

    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "check-config: {stderr}");
    assert!(stderr.contains(message), "check-config: {stderr}");

    h.spawn(REGAUTH_CHILD, serve_command(&path));
    assert!(
        wait_exited(h.pid(REGAUTH_CHILD), START_DEADLINE),
        "serve started anyway"
    );
    assert_eq!(h.stop(REGAUTH_CHILD).code(), Some(1));
    let log = h.log(REGAUTH_CHILD);
    assert!(log.contains(message) && !log.contains("panicked"), "{log}");
}

//! The login limiter and the bounded bcrypt queue on the real binary, and
//! through the shipped nginx files: which address counts, what a limited
//! client is told, and that no bcrypt runs for it (counted in `/metrics`).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const TOKEN_URL: &str = "/token?service=registry.test&scope=repository:alice/app:pull";

/// regauth with alice, on a trusted unix socket (as nginx's upstream) and an
/// untrusted TCP listener.
struct Server {
    h: Harness,
    trusted: Endpoint,
    direct: Endpoint,
}

fn start(label: &str, users: Value, login_limits: Value) -> Server {
    let mut h = Harness::new(label);
    keygen(&h, "ES256", "token");
    let socket = h.file("regauth.sock");
    let tcp = reserve_tcp();
    let config = json!({
        "service": SERVICE,
        "issuer": "regauth-it",
        "realm": format!("http://{tcp}/token"),
        "listen": [tcp, { "address": format!("unix:{}", socket.display()), "trusted": true }],
        "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
        "users": users,
        "acl": [{ "account": "*", "name": "${account}/**", "actions": ["pull"] }],
        "login_limits": login_limits,
    });
    let direct = Endpoint::Tcp(tcp);
    start_regauth(&mut h, &config, &direct);
    Server {
        h,
        trusted: Endpoint::Unix(socket),
        direct,
    }
}

/// `GET /token` as `user:password`, with an `X-Forwarded-For` header when given.
fn login(ep: &Endpoint, user: &str, password: &str, forwarded_for: Option<&str>) -> Response {
    let basic = basic_auth(user, password);
    let mut headers = vec![("Authorization", basic.as_str())];
    headers.extend(forwarded_for.map(|value| ("X-Forwarded-For", value)));
    http(ep, "GET", TOKEN_URL, &headers, b"").expect("GET /token")
}

/// The value of a Prometheus series (its full name with labels), 0 when absent.
fn metric(ep: &Endpoint, series: &str) -> f64 {
    let text = get(ep, "/metrics", &[]).text();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().expect("a number"))
}

fn assert_limited(r: &Response, what: &str) {
    assert_eq!(r.status, 429, "{what}: {} {}", r.status, r.text());
    let retry_after: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: 429 without Retry-After"))
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{what}: Retry-After {retry_after}");
}

#[test]
fn forty_guesses_run_ten_bcrypts_and_the_user_still_logs_in_from_elsewhere() {
    let s = start(
        "limiter-burst",
        json!({ "alice": { "password": hash_password("alice-pw") } }),
        json!({}),
    );
    for i in 1..=40 {
        // The client writes what it likes in front; nginx appends what it saw.
        let forwarded = format!("10.0.0.{i}, 192.0.2.66");
        let r = login(&s.trusted, "alice", "guess", Some(&forwarded));
        if i <= 10 {
            assert_eq!(r.status, 401, "guess {i}: {}", r.text());
        } else {
            assert_limited(&r, &format!("guess {i}"));
        }
    }
    // The right password from there is refused too: the limiter is not an
    // oracle that answers right guesses.
    let r = login(&s.trusted, "alice", "alice-pw", Some("192.0.2.66"));
    assert_limited(&r, "the right password from the guessing address");
    assert_eq!(metric(&s.direct, "regauth_bcrypt_seconds_count"), 10.0);
    let refused = r#"regauth_login_refused_total{reason="account_address"}"#;
    assert_eq!(metric(&s.direct, refused), 31.0);

    // alice, from another address, is not locked out.
    let r = login(&s.trusted, "alice", "alice-pw", Some("198.51.100.7"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metric(&s.direct, "regauth_bcrypt_seconds_count"), 11.0);
    // Read when /metrics is: the guesses left three counters (alice from
    // there, that address, alice from unknown addresses); the success
    // cleared its own and left one known address.
    let counters = r#"regauth_login_limiter_entries{table="counters"}"#;
    assert_eq!(metric(&s.direct, counters), 3.0);
    let known = r#"regauth_login_limiter_entries{table="known_addresses"}"#;
    assert_eq!(metric(&s.direct, known), 1.0);
    let log = s.h.log("regauth");
    assert!(
        log.contains("address=192.0.2.66") && !log.contains("address=10.0.0."),
        "the log names the address nginx appended:\n{log}"
    );
}

#[test]
fn untrusted_listeners_count_the_peer_whatever_the_header_says() {
    let s = start(
        "limiter-untrusted",
        json!({ "alice": { "password": hash_password("alice-pw") } }),
        json!({ "failures_per_account_and_address": 3 }),
    );
    for i in 1..=3 {
        let forwarded = format!("192.0.2.{i}");
        let r = login(&s.direct, "alice", "guess", Some(&forwarded));
        assert_eq!(r.status, 401, "guess {i}");
    }
    let r = login(&s.direct, "alice", "guess", Some("192.0.2.99"));
    assert_limited(&r, "a fourth guess from the same peer");
}

#[test]
fn limiting_can_be_turned_off() {
    let s = start(
        "limiter-off",
        json!({ "alice": { "password": hash_password("alice-pw") } }),
        json!({ "enabled": false }),
    );
    for i in 1..=15 {
        assert_eq!(
            login(&s.direct, "alice", "guess", None).status,
            401,
            "guess {i}"
        );
    }
    assert_eq!(login(&s.direct, "alice", "alice-pw", None).status, 200);
}

/// A bcrypt hash slow enough (cost 13) that a check is surely still running
/// when the next request arrives.
fn slow_hash(password: &str) -> String {
    let hash = regauth_cmd(&["hash-password", "--cost", "13"], &format!("{password}\n"));
    hash.trim().to_owned()
}

/// Sends a wrong-password login in the background and waits until its
/// bcrypt is running.
fn occupy_a_worker(s: &mut Server, forwarded_for: &'static str) -> std::thread::JoinHandle<u16> {
    let ep = s.trusted.clone();
    let running =
        std::thread::spawn(move || login(&ep, "slow", "guess", Some(forwarded_for)).status);
    let (direct, series) = (
        s.direct.clone(),
        r#"regauth_check_queue_running{queue="bcrypt"}"#,
    );
    s.h.wait_until(
        "regauth",
        "a bcrypt running",
        Duration::from_secs(30),
        || metric(&direct, series) >= 1.0,
    );
    running
}

#[test]
fn a_full_bcrypt_queue_answers_429_with_retry_after_at_once() {
    let mut s = start(
        "limiter-queue",
        json!({ "slow": { "password": slow_hash("slow-pw") } }),
        json!({ "bcrypt_workers": 1, "bcrypt_queue": 0 }),
    );
    let running = occupy_a_worker(&mut s, "192.0.2.1");
    // Another guess: an identical login would wait for the running check
    // instead of asking for a worker (identity::turns).
    let r = login(&s.trusted, "slow", "guess-2", Some("192.0.2.2"));
    assert_limited(&r, "a second check while the only worker is busy");
    assert_eq!(running.join().unwrap(), 401);
    let full = r#"regauth_login_refused_total{reason="queue_full"}"#;
    assert_eq!(metric(&s.direct, full), 1.0);
    // The refused attempt was not counted as a failure: it never ran.
    let r = login(&s.trusted, "slow", "slow-pw", Some("192.0.2.2"));
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn an_identical_login_waits_for_the_running_check_instead_of_a_worker() {
    let mut s = start(
        "limiter-turns",
        json!({ "slow": { "password": slow_hash("slow-pw") } }),
        json!({ "bcrypt_workers": 1, "bcrypt_queue": 0 }),
    );
    let running = occupy_a_worker(&mut s, "192.0.2.1");
    // The same wrong guess while its twin's bcrypt runs: no worker is free,
    // yet it is not refused; it waits, then is checked and refused itself.
    let r = login(&s.trusted, "slow", "guess", Some("192.0.2.1"));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(running.join().unwrap(), 401);
    let full = r#"regauth_login_refused_total{reason="queue_full"}"#;
    assert_eq!(metric(&s.direct, full), 0.0);
    assert_eq!(metric(&s.direct, "regauth_bcrypt_seconds_count"), 2.0);
}

#[test]
fn one_address_cannot_take_every_bcrypt_worker() {
    let mut s = start(
        "limiter-share",
        json!({ "slow": { "password": slow_hash("slow-pw") } }),
        json!({ "bcrypt_workers": 2, "bcrypt_queue": 10, "bcrypt_queue_per_address": 1 }),
    );
    let running = occupy_a_worker(&mut s, "192.0.2.1");
    // Another guess: an identical login would wait for the running check.
    let r = login(&s.trusted, "slow", "guess-2", Some("192.0.2.1"));
    assert_limited(&r, "a second check from the same address");
    // Another address gets the free worker.
    let r = login(&s.trusted, "slow", "slow-pw", Some("198.51.100.7"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(running.join().unwrap(), 401);
    let share = r#"regauth_login_refused_total{reason="queue_address_share"}"#;
    assert_eq!(metric(&s.direct, share), 1.0);
}

#[test]
fn through_nginx_the_client_is_the_address_nginx_appended() {
    let s = NginxSite::start("limiter-nginx", |realm, listen| {
        json!({
            "service": SERVICE,
            "issuer": "regauth-it",
            "realm": realm,
            "listen": listen,
            "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
            "users": { "alice": { "password": hash_password("alice-pw") } },
            "acl": [{ "account": "*", "name": "${account}/**", "actions": ["pull"] }],
            "login_limits": { "failures_per_account_and_address": 3 },
        })
    });
    let basic = basic_auth("alice", "guess");
    // Each request forges a different first entry; nginx appends 127.0.0.1.
    for i in 1..=4 {
        let forged = format!("203.0.113.{i}");
        let headers = [
            ("Authorization", basic.as_str()),
            ("X-Forwarded-For", &forged),
        ];
        let r = s.request("GET", TOKEN_URL, &headers);
        if i <= 3 {
            assert_eq!(r.status, 401, "guess {i}: {}", r.text());
        } else {
            assert_limited(&r, "the fourth guess through nginx");
        }
    }
    // The audit line of an /auth decision names the same address.
    let headers = [("X-Forwarded-For", "203.0.113.50")];
    let r = s.request("GET", "/v2/alice/app/manifests/latest", &headers);
    assert_eq!(r.status, 401);
    let line = s.h.wait_for_log_line("regauth", "auth decision");
    assert!(line.contains("address=127.0.0.1"), "{line}");
    assert!(!line.contains("203.0.113.50"), "{line}");
}

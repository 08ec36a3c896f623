//! End to end: Caddy 2.6 `forward_auth` (the shipped `caddy/Caddyfile`, settings from the
//! environment) asks regauth about every request to a docker-registry 2.8 with no auth of
//! its own; skopeo pushes and pulls through it. A second Caddy with the same file in front
//! of a recording upstream shows what reaches the registry: never a client's own
//! `Remote-User`/`Remote-Groups`, never Caddy 2.6's literal placeholder text.
//! Needs the peers `tests/run.sh` installs (caddy among them).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::json;
use support::*;

const SERVICE: &str = "registry.test";
const ALICE: (&str, &str) = ("alice", "alice-Secret-1");
const ADMIN: (&str, &str) = ("admin", "admin-Secret-4");
const REFUSED: &[&str] = &["unauthorized", "denied"];

/// The shipped Caddyfile, bound to loopback only (the one edit: the site otherwise binds
/// every interface).
fn caddyfile(h: &Harness) -> PathBuf {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/caddy/Caddyfile"))
        .expect("read caddy/Caddyfile");
    let site = "{$REGISTRY_SITE:registry.example.com} {\n";
    assert!(shipped.contains(site), "the site line moved");
    h.write(
        "Caddyfile",
        shipped.replace(site, &format!("{site}\tbind 127.0.0.1\n")),
    )
}

/// Starts `caddy run` on the shipped file as the child `name`, serving `http://127.0.0.1:port`,
/// asking regauth on `socket`, in front of `upstream`; waits until `/v2/` answers.
fn start_caddy(h: &mut Harness, name: &str, port: u16, socket: &Path, upstream: &str) {
    let config = caddyfile(h);
    let data = h.mkdir(&format!("{name}-data"));
    let mut cmd = Command::new(require("caddy"));
    cmd.args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&config)
        .env("REGISTRY_SITE", format!("http://127.0.0.1:{port}"))
        .env("REGAUTH", format!("unix/{}", socket.display()))
        .env("REGISTRY_UPSTREAM", upstream)
        .env("CADDY_ADMIN", "off")
        .env("XDG_DATA_HOME", &data)
        .env("XDG_CONFIG_HOME", &data)
        .env("HOME", &data);
    h.spawn(name, cmd);
    let ep = Endpoint::Tcp(format!("127.0.0.1:{port}"));
    h.wait_until(name, "GET /v2/", Duration::from_secs(30), || {
        http(&ep, "GET", "/v2/", &[], b"").is_ok_and(|r| r.status == 401)
    });
}

/// A plain upstream that answers every request 200 and keeps each request head.
fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("addr").to_string();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            seen.lock().expect("lock").push(head);
            let _ = (&stream)
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, heads)
}

/// The values of header `name` in a recorded head.
fn header_values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(field, _)| field.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
        .collect()
}

#[test]
fn caddy_forward_auth_guards_the_registry_and_the_identity_headers() {
    let mut h = Harness::new("caddy");
    let (key, cert) = keygen(&h, "ES256", "token");
    let socket = h.file("caddy.sock");
    let [site_port, echo_port] = free_ports::<2>();
    let realm = format!("http://127.0.0.1:{site_port}/token");
    let config = json!({
        "service": SERVICE,
        "issuer": "regauth-caddy",
        "realm": realm,
        "listen": [{ "address": format!("unix:{}", socket.display()), "front": "caddy", "mode": "0666" }],
        "token": { "algorithm": "ES256", "private_key": key, "certificate": cert },
        "users": {
            "alice": { "password": hash_password(ALICE.1) },
            "admin": { "password": hash_password(ADMIN.1) },
        },
        "acl": [
            { "account": "admin", "name": "**", "actions": ["*"] },
            { "account": "*", "name": "${account}/**", "actions": ["pull", "push"] },
            { "name": "public/**", "actions": ["pull"] },
        ],
    });
    let registry = start_registry(&mut h, None);
    start_regauth(&mut h, &config, &Endpoint::Unix(socket.clone()));
    start_caddy(&mut h, "caddy", site_port, &socket, &registry);
    let site = |repo: &str| format!("127.0.0.1:{site_port}/{repo}");

    // Real clients: the ACL holds through Caddy.
    let sk = Skopeo::new(&h);
    let app = make_image(&h, "caddy-app");
    sk.push(&app, &site("alice/app:v1"), Creds::User(ALICE.0, ALICE.1))
        .assert_ok();
    sk.pull(&site("alice/app:v1"), Creds::User(ALICE.0, ALICE.1))
        .assert_pulled(&app);
    sk.push(&app, &site("public/app:v1"), Creds::User(ALICE.0, ALICE.1))
        .assert_failed(REFUSED);
    let base = make_image(&h, "caddy-base");
    sk.push(&base, &site("public/base:1"), Creds::User(ADMIN.0, ADMIN.1))
        .assert_ok();
    sk.pull(&site("public/base:1"), Creds::Anonymous)
        .assert_pulled(&base);
    sk.pull(&site("alice/app:v1"), Creds::Anonymous)
        .assert_failed(REFUSED);
    sk.pull(&site("alice/app:v1"), Creds::User(ALICE.0, "wrong"))
        .assert_failed(&["invalid username/password"]);

    // nginx's headers mean nothing on Caddy's listener: a client cannot describe its
    // request as another one.
    let plain = Endpoint::Tcp(format!("127.0.0.1:{site_port}"));
    let disguised = http(
        &plain,
        "GET",
        "/v2/alice/app/manifests/v1",
        &[
            ("X-Original-URI", "/v2/public/base/manifests/1"),
            ("X-Original-Method", "GET"),
        ],
        b"",
    )
    .expect("GET through caddy");
    assert_eq!(disguised.status, 401, "{}", disguised.text());
    let challenge = disguised.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains("repository:alice/app:pull"),
        "{challenge}"
    );

    // What reaches the upstream.
    let (echo, heads) = recording_upstream();
    start_caddy(&mut h, "caddy-echo", echo_port, &socket, &echo);
    let echo_ep = Endpoint::Tcp(format!("127.0.0.1:{echo_port}"));
    let forged = [("Remote-User", "admin"), ("Remote-Groups", "admins")];
    // An anonymous pull (a token with no subject): regauth's answer names nobody.
    let anonymous_token = fetch_token(
        &plain,
        "/token",
        SERVICE,
        None,
        &["repository:public/base:pull"],
    );
    let anonymous_bearer = format!("Bearer {anonymous_token}");
    let mut with_anonymous_token = forged.to_vec();
    with_anonymous_token.push(("Authorization", &anonymous_bearer));
    let anonymous = http(
        &echo_ep,
        "GET",
        "/v2/public/base/manifests/1",
        &with_anonymous_token,
        b"",
    )
    .expect("anonymous GET");
    assert_eq!(anonymous.status, 200, "{}", anonymous.text());
    let token = fetch_token(
        &plain,
        "/token",
        SERVICE,
        Some(ALICE),
        &["repository:alice/app:pull"],
    );
    let bearer = format!("Bearer {token}");
    let mut with_token = forged.to_vec();
    with_token.push(("Authorization", &bearer));
    let signed_in = http(
        &echo_ep,
        "GET",
        "/v2/alice/app/manifests/v1",
        &with_token,
        b"",
    )
    .expect("GET with token");
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());

    let heads = heads.lock().expect("lock").clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    for head in &heads {
        assert!(
            !head.contains("{http."),
            "a placeholder reached the upstream:\n{head}"
        );
        assert!(header_values(head, "Remote-Groups").is_empty(), "{head}");
    }
    assert!(
        header_values(&heads[0], "Remote-User").is_empty(),
        "{}",
        heads[0]
    );
    assert_eq!(
        header_values(&heads[1], "Remote-User"),
        ["alice"],
        "{}",
        heads[1]
    );
}

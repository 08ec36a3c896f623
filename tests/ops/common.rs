//! Helpers for the operations suite (`tests/ops.rs`) on top of the shared harness in
//! `tests/support`: the test users, a started regauth with inline users, writing configs,
//! starting `regauth serve` at a chosen config path (with the test's own sockets, or
//! systemd-style ones the test chooses), signals, waiting for exits, token requests and
//! `/metrics` scrapes.

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::prometheus;
use crate::support::{
    basic_auth, get, hash_password, http, keygen, regauth_serve, reserve_tcp, socket_activated_for,
    urlencode, Endpoint, Harness, Response,
};

/// The registry service name in every config here.
pub const SERVICE: &str = "registry.test";
/// The child name every test gives its regauth.
pub const REGAUTH_CHILD: &str = "regauth";
/// How long a reload may take to show (debounce 250 ms + load), with slack for a busy CI.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(3);
/// How long a start may take.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// A signing key pair in the temp dir; returns the key path.
pub fn signing_key(h: &Harness) -> PathBuf {
    keygen(h, "ES256", "token").0
}

/// A config document: `listen`, the key, inline users `(name, password)` (hashed here),
/// `alice`..-style ACL: every signed-in user may pull `<self>/**`.
pub fn config(listen: Value, key: &Path, users: &[(&str, &str)]) -> Value {
    let users: serde_json::Map<String, Value> = users
        .iter()
        .map(|(name, password)| {
            (
                (*name).to_owned(),
                json!({ "password": hash_password(password) }),
            )
        })
        .collect();
    json!({
        "service": SERVICE,
        "issuer": "regauth-ops",
        "realm": "http://127.0.0.1:1/token",
        "listen": listen,
        "token": { "algorithm": "ES256", "private_key": key },
        "users": users,
        "acl": [ { "account": "*", "name": "${account}/**", "actions": ["pull"] } ],
    })
}

/// Pretty JSON bytes of a config.
pub fn to_bytes(config: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(config).expect("config to JSON")
}

/// The `regauth serve --config <config>` command, logging at debug unless `RUST_LOG` says
/// otherwise; TCP listeners (from [`reserve_tcp`]) and unix sockets handed over as
/// [`regauth_serve`] does, read from the config file as it is now.
pub fn serve_command(config: &Path) -> Command {
    let text = fs::read(config).unwrap_or_else(|e| panic!("read {}: {e}", config.display()));
    let doc: Value = serde_json::from_slice(&text).expect("the config is JSON");
    regauth_serve(config, &doc)
}

/// Starts `regauth serve` on `config` and waits until `/healthz` answers on `probe`.
pub fn start(h: &mut Harness, config: &Path, probe: &Endpoint) {
    h.spawn(REGAUTH_CHILD, serve_command(config));
    wait_healthy(h, probe);
}

/// Waits until `GET /healthz` on `probe` answers 200.
pub fn wait_healthy(h: &mut Harness, probe: &Endpoint) {
    h.wait_until(REGAUTH_CHILD, "GET /healthz", START_DEADLINE, || {
        http(probe, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
}

/// Starts `regauth serve` the way systemd would with `sockets` inherited at fd 3, 4, ...:
/// `LISTEN_FDS` = their number and `LISTEN_PID` = the server's own PID (the shell sets it
/// to `$$` and `exec`s, keeping the PID).
pub fn start_socket_activated(
    h: &mut Harness,
    config: &Path,
    sockets: &[RawFd],
    listen_pid: Option<&str>,
) {
    let owned = sockets
        .iter()
        .map(|fd| {
            // SAFETY: the caller's sockets stay open for this call; the clone is ours.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(*fd) }
                .try_clone_to_owned()
                .expect("dup socket")
        })
        .collect();
    let mut cmd = socket_activated_for(config, owned, listen_pid);
    cmd.env("RUST_LOG", "info,regauth=debug");
    h.spawn(REGAUTH_CHILD, cmd);
}

/// A listening TCP socket on a random loopback port, as systemd would pass it.
pub fn tcp_socket() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    (listener, addr)
}

/// The raw descriptor of anything that has one.
pub fn fd(socket: &impl AsRawFd) -> RawFd {
    socket.as_raw_fd()
}

/// Sends `signal` (`HUP`, `TERM`, ...) to `pid` (the shell's `kill` builtin, so nothing
/// beyond `sh` is needed).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {pid}"))
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits until `pid` (our unreaped child) has exited, i.e. is a zombie or gone.
pub fn wait_exited(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let state = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().to_owned())
            });
        match state {
            None => return true,
            Some(rest) if rest.starts_with('Z') => return true,
            Some(_) if Instant::now() > deadline => return false,
            Some(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Replaces `path` the way editors and config managers do: write a sibling, rename over.
pub fn write_by_rename(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp~");
    fs::write(&tmp, contents).expect("write temp file");
    fs::rename(&tmp, path).expect("rename over");
}

/// `GET /token` for `user:<user>/x:pull` with Basic credentials.
pub fn token_get(ep: &Endpoint, user: &str, password: &str) -> Response {
    let target = format!(
        "/token?service={SERVICE}&scope={}",
        urlencode(&format!("repository:{user}/x:pull"))
    );
    get(
        ep,
        &target,
        &[("Authorization", &basic_auth(user, password))],
    )
}

/// Status of [`token_get`].
pub fn token_status(ep: &Endpoint, user: &str, password: &str) -> u16 {
    token_get(ep, user, password).status
}

/// `POST /token` with `grant_type=refresh_token`; returns the status.
pub fn redeem(ep: &Endpoint, refresh_token: &str) -> u16 {
    let body = format!(
        "grant_type=refresh_token&refresh_token={}&service={SERVICE}&client_id=x",
        urlencode(refresh_token)
    );
    http(
        ep,
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .expect("POST /token")
    .status
}

/// The `config_generation` `/healthz` reports.
pub fn generation(ep: &Endpoint) -> u64 {
    let body = get(ep, "/healthz", &[]).json();
    body["config_generation"]
        .as_u64()
        .expect("config_generation")
}

/// `GET /metrics`, checked strictly as Prometheus text.
pub fn scrape(ep: &Endpoint) -> prometheus::Exposition {
    let response = get(ep, "/metrics", &[]);
    assert_eq!(response.status, 200, "/metrics: {}", response.text());
    let text = response.text();
    prometheus::parse(&text)
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{text}"))
}

/// `regauth_reloads_total{result}` right now.
pub fn reloads(ep: &Endpoint, result: &str) -> f64 {
    scrape(ep).value("regauth_reloads_total", &[("result", result)])
}

/// Polls `probe` every 20 ms until true; returns how long it took, or panics (with the
/// child's log, through the harness) after `timeout` or if regauth exits.
pub fn poll(
    h: &mut Harness,
    what: &str,
    timeout: Duration,
    probe: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    h.wait_until(REGAUTH_CHILD, what, timeout, probe);
    started.elapsed()
}

pub const ALICE: (&str, &str) = ("alice", "alice-pw-1");
pub const BOB: (&str, &str) = ("bob", "bob-pw-2");
pub const CAROL: (&str, &str) = ("carol", "carol-pw-3");

/// A started regauth on TCP with `users` inline; returns its endpoint and config path.
pub fn serve_inline(
    h: &mut Harness,
    users: &[(&str, &str)],
) -> (Endpoint, std::path::PathBuf, Value) {
    let key = signing_key(h);
    let addr = reserve_tcp();
    let doc = config(json!([addr]), &key, users);
    let path = h.write("regauth.json", to_bytes(&doc));
    let ep = Endpoint::Tcp(addr);
    start(h, &path, &ep);
    (ep, path, doc)
}

/// Replaces the inline users of `doc` (hashing the passwords).
pub fn with_users(doc: &Value, users: &[(&str, &str)]) -> Value {
    let mut doc = doc.clone();
    let key = Path::new(doc["token"]["private_key"].as_str().expect("key path")).to_owned();
    doc["users"] = config(json!([]), &key, users)["users"].clone();
    doc
}

/// Asserts the swap from `ALICE` only to `BOB` only took effect: bob in, alice out.
pub fn assert_swapped_to_bob(h: &mut Harness, ep: &Endpoint, how: &str) {
    let took = poll(
        h,
        &format!("bob accepted after {how}"),
        RELOAD_DEADLINE,
        || token_status(ep, BOB.0, BOB.1) == 200,
    );
    eprintln!("{how}: new user accepted {took:?} after the write");
    assert_eq!(
        token_status(ep, ALICE.0, ALICE.1),
        401,
        "alice was removed by the {how}"
    );
    assert_eq!(generation(ep), 2);
}

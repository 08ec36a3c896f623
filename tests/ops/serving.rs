//! Serving: sockets inherited from systemd (`LISTEN_FDS`/`LISTEN_PID`), the SIGTERM drain,
//! unix socket files (stale ones replaced, live ones and other files left alone, mode and
//! group applied) and the private-key permission check.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;
use crate::support::*;

#[test]
fn socket_activation_serves_through_inherited_sockets() {
    let mut h = Harness::new("ops-activation");
    let key = signing_key(&h);
    // The configured address is not bound when systemd passes sockets. Its port is held
    // without listening: a regauth that bound `listen` anyway would fail to start.
    let configured = RefusingPort::bind();
    let path = h.write(
        "regauth.json",
        to_bytes(&config(json!([configured.addr()]), &key, &[ALICE])),
    );
    let (tcp, tcp_addr) = tcp_socket();
    let unix_path = h.file("activated.sock");
    let unix = UnixListener::bind(&unix_path).expect("bind unix socket");
    start_socket_activated(&mut h, &path, &[fd(&tcp), fd(&unix)], None);
    // Only the child holds them now.
    drop((tcp, unix));
    let tcp_ep = Endpoint::Tcp(tcp_addr);
    wait_healthy(&mut h, &tcp_ep);
    assert_eq!(
        token_status(&Endpoint::Unix(unix_path.clone()), ALICE.0, ALICE.1),
        200
    );
    assert_eq!(token_status(&tcp_ep, ALICE.0, ALICE.1), 200);
    assert!(
        TcpStream::connect(configured.addr()).is_err(),
        "`listen` was bound too"
    );
    let log = h.log(REGAUTH_CHILD);
    assert!(log.contains("using sockets from systemd"), "{log}");
    assert!(log.contains("systemd fd 4 (unix:"), "{log}");
    // An inherited socket file is systemd's: regauth must not remove it on exit.
    assert!(h.stop(REGAUTH_CHILD).success());
    assert!(unix_path.exists(), "regauth removed systemd's socket file");
}

#[test]
fn sockets_for_another_process_are_not_taken() {
    let mut h = Harness::new("ops-activation-pid");
    let key = signing_key(&h);
    // regauth itself must bind this configured address, so it can only be a number that
    // was free a moment ago (a bound socket cannot be handed over here: that is the point).
    let addr = format!("127.0.0.1:{}", free_port());
    let path = h.write("regauth.json", to_bytes(&config(json!([addr]), &key, &[])));
    let (tcp, _) = tcp_socket();
    // LISTEN_PID names PID 1: the descriptors are not ours, `listen` is bound instead.
    start_socket_activated(&mut h, &path, &[fd(&tcp)], Some("1"));
    wait_healthy(&mut h, &Endpoint::Tcp(addr));
    assert!(!h.log(REGAUTH_CHILD).contains("using sockets from systemd"));
}

#[test]
fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_0() {
    let mut h = Harness::new("ops-drain");
    let (ep, _, _) = serve_inline(&mut h, &[ALICE]);
    let Endpoint::Tcp(addr) = ep.clone() else {
        unreachable!()
    };
    let timeout = Some(Duration::from_secs(10));

    // An idle keep-alive connection: closed at shutdown, not waited for.
    let mut idle = TcpStream::connect(&addr).expect("connect idle");
    idle.set_read_timeout(timeout).expect("timeout");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = [0; 4096];
    let n = idle.read(&mut buf).expect("read healthz");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // A token POST whose body is held back. `Expect: 100-continue` makes the server say
    // when the handler is waiting for the body, so the request is truly in flight.
    let body = format!(
        "grant_type=password&username={}&password={}&service={SERVICE}&client_id=x",
        ALICE.0, ALICE.1
    );
    let mut busy = TcpStream::connect(&addr).expect("connect");
    busy.set_read_timeout(timeout).expect("timeout");
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    busy.write_all(head.as_bytes()).expect("write head");
    let n = busy.read(&mut buf).expect("read 100 Continue");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    let pid = h.pid(REGAUTH_CHILD);
    let term = Instant::now();
    send_signal(pid, "TERM");
    poll(
        &mut h,
        "new connections refused",
        Duration::from_secs(5),
        || matches!(TcpStream::connect(&addr), Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
    );
    assert_eq!(
        idle.read(&mut buf).expect("read idle"),
        0,
        "idle connection not closed"
    );

    busy.write_all(body.as_bytes()).expect("write body");
    let mut raw = Vec::new();
    busy.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request: {text}"
    );
    assert!(text.contains("\"access_token\""), "{text}");

    assert!(
        wait_exited(pid, Duration::from_secs(5)),
        "still running after the drain"
    );
    eprintln!("SIGTERM to exit: {:?}", term.elapsed());
    let status = h.stop(REGAUTH_CHILD);
    assert_eq!(status.code(), Some(0), "exit status {status}");
    assert!(h.log(REGAUTH_CHILD).contains("SIGTERM received"));
}

#[test]
fn a_private_key_readable_by_group_is_refused_with_the_fix() {
    let mut h = Harness::new("ops-keymode");
    let key = signing_key(&h);
    let addr = reserve_tcp();
    let path = h.write("regauth.json", to_bytes(&config(json!([addr]), &key, &[])));
    fs::set_permissions(&key, fs::Permissions::from_mode(0o640)).expect("chmod 640");
    let hint = format!("run `chmod 600 {}`", key.display());

    let out = check_config(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "check-config: {stderr}");
    assert!(
        stderr.contains("accessible by group or others (mode 0640)") && stderr.contains(&hint),
        "{stderr}"
    );

    h.spawn(REGAUTH_CHILD, serve_command(&path));
    assert!(
        wait_exited(h.pid(REGAUTH_CHILD), START_DEADLINE),
        "serve started anyway"
    );
    assert_eq!(h.stop(REGAUTH_CHILD).code(), Some(1));
    assert!(
        h.log(REGAUTH_CHILD).contains(&hint),
        "{}",
        h.log(REGAUTH_CHILD)
    );
}

#[test]
fn a_stale_socket_file_is_replaced_but_a_live_one_is_not() {
    let mut h = Harness::new("ops-stale");
    let key = signing_key(&h);
    // Giving the socket to nginx's group needs root (or membership); skip that part otherwise.
    let www_data = nix::unistd::Group::from_name("www-data")
        .ok()
        .flatten()
        .filter(|_| nix::unistd::geteuid().is_root());
    let unix_config = |socket: &Path| {
        let mut listener =
            json!({ "address": format!("unix:{}", socket.display()), "mode": "0660" });
        if www_data.is_some() {
            listener["group"] = json!("www-data");
        }
        to_bytes(&config(json!([listener]), &key, &[ALICE]))
    };

    // Stale: a socket file nobody listens on, as a crash leaves it.
    let stale = h.file("stale.sock");
    drop(UnixListener::bind(&stale).expect("bind"));
    let path = h.write("stale.json", unix_config(&stale));
    let ep = Endpoint::Unix(stale.clone());
    start(&mut h, &path, &ep);
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200);
    let meta = fs::metadata(&stale).expect("socket file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    if let Some(group) = &www_data {
        assert_eq!(meta.gid(), group.gid.as_raw(), "socket group");
    }
    assert!(h.stop(REGAUTH_CHILD).success());
    assert!(!stale.exists(), "regauth left its socket file behind");

    // Live: another process listens there; regauth must refuse to start, not steal it.
    let live = h.file("live.sock");
    let owner = UnixListener::bind(&live).expect("bind");
    let path = h.write("live.json", unix_config(&live));
    h.spawn("regauth-live", serve_command(&path));
    assert!(
        wait_exited(h.pid("regauth-live"), START_DEADLINE),
        "started on a live socket"
    );
    assert!(!h.stop("regauth-live").success());
    assert!(
        h.log("regauth-live")
            .contains("is in use by another process"),
        "{}",
        h.log("regauth-live")
    );
    let _client = std::os::unix::net::UnixStream::connect(&live).expect("live socket still works");
    owner
        .accept()
        .expect("the owner still gets its connections");

    // Not a socket at all: never deleted.
    let regular = h.write("regular.sock", "data");
    let path = h.write("regular.json", unix_config(&regular));
    h.spawn("regauth-file", serve_command(&path));
    assert!(wait_exited(h.pid("regauth-file"), START_DEADLINE));
    assert!(
        h.log("regauth-file").contains("is not a socket"),
        "{}",
        h.log("regauth-file")
    );
    assert_eq!(fs::read_to_string(&regular).expect("file kept"), "data");
}

/// hyper buffers at most 128 KiB of a request head per connection: a long `/token` URL
/// with the most scopes a token takes, plus big headers, still fits; a bigger head is
/// refused (431, or the connection closed before the answer was read) and the server goes
/// on serving.
#[test]
fn request_heads_up_to_128_kib_are_served_and_bigger_ones_refused() {
    let mut h = Harness::new("ops-head-size");
    let (ep, _, _) = serve_inline(&mut h, &[ALICE]);
    let scopes: String = (0..128)
        .map(|i| {
            let scope = format!("repository:alice/r{i:03}{}:pull", "a".repeat(230));
            format!("&scope={}", urlencode(&scope))
        })
        .collect();
    let target = format!("/token?service={SERVICE}{scopes}");
    assert!(target.len() > 32 * 1024, "{}", target.len());
    let authorization = basic_auth(ALICE.0, ALICE.1);
    let padding = "p".repeat(60 * 1024);
    let headers = [
        ("Authorization", authorization.as_str()),
        ("X-Padding", padding.as_str()),
    ];
    let response = http(&ep, "GET", &target, &headers, b"").expect("GET /token");
    assert_eq!(response.status, 200, "{}", response.text());
    let claims = jwt_claims(response.json()["token"].as_str().expect("token"));
    assert_eq!(claims["access"].as_array().map(Vec::len), Some(128));

    let too_big = "p".repeat(140 * 1024);
    match http(&ep, "GET", "/healthz", &[("X-Padding", &too_big)], b"") {
        Ok(response) => assert_eq!(response.status, 431, "{}", response.text()),
        Err(error) => eprintln!("140 KiB head: connection closed first ({error})"),
    }
    assert_eq!(get(&ep, "/healthz", &[]).status, 200);
}

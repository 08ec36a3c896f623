//! Connection budgets: each listener has its own, so that clients filling one (idle
//! keep-alive connections on the public TCP port) never starve another (nginx's trusted
//! unix socket); and a connection is closed after `limits.max_requests_per_connection`
//! answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use serde_json::json;

use crate::common::*;
use crate::support::*;

/// Sends `GET /healthz` on a keep-alive connection and reads the whole answer; returns
/// its head (status line and headers).
fn healthz_on(stream: &mut (impl Read + Write)) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write request");
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read answer");
        if line == "\r\n" || line.is_empty() {
            break;
        }
        head.push_str(&line);
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .expect("content-length");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("read body");
    head
}

#[test]
fn a_full_tcp_listener_does_not_starve_the_trusted_unix_socket() {
    const BUDGET: usize = 20;
    let mut h = Harness::new("ops-budgets");
    let key = signing_key(&h);
    // Bound here and passed on, systemd-style: no port is picked and released.
    let (tcp, tcp_addr) = tcp_socket();
    let unix_path = h.file("nginx.sock");
    let unix = UnixListener::bind(&unix_path).expect("bind unix socket");
    let mut doc = config(
        json!([tcp_addr, { "address": format!("unix:{}", unix_path.display()), "trusted": true }]),
        &key,
        &[ALICE],
    );
    // Idle connections must not time out while the test holds them.
    doc["limits"] = json!({ "max_connections": BUDGET, "header_read_timeout_secs": 120 });
    let path = h.write("regauth.json", to_bytes(&doc));
    start_socket_activated(&mut h, &path, &[fd(&tcp), fd(&unix)], None);
    drop((tcp, unix));
    let tcp_ep = Endpoint::Tcp(tcp_addr.clone());
    wait_healthy(&mut h, &tcp_ep);

    // A hostile client holds the whole TCP budget with live keep-alive connections.
    let mut holders: Vec<TcpStream> = (0..BUDGET)
        .map(|_| {
            let mut stream = TcpStream::connect(&tcp_addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            assert!(healthz_on(&mut stream).starts_with("HTTP/1.1 200"));
            stream
        })
        .collect();
    // The budget is full: one more TCP connection is accepted by the kernel only.
    let mut waiting = TcpStream::connect(&tcp_addr).expect("connect");
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut byte = [0; 1];
    assert!(
        waiting.read(&mut byte).is_err(),
        "a connection past the budget was served"
    );

    // nginx's socket is untouched by all that: its own budget is free.
    let unix_ep = Endpoint::Unix(unix_path);
    assert_eq!(token_status(&unix_ep, ALICE.0, ALICE.1), 200);
    let mut nginx = UnixStream::connect(match &unix_ep {
        Endpoint::Unix(path) => path,
        Endpoint::Tcp(_) => unreachable!(),
    })
    .expect("connect unix");
    assert!(healthz_on(&mut nginx).starts_with("HTTP/1.1 200"));

    // Once a holder leaves, the waiting connection gets its slot and its answer.
    holders.pop();
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    assert!(healthz_on(&mut waiting).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_connection_is_closed_after_its_request_budget() {
    let mut h = Harness::new("ops-requests-per-connection");
    let key = signing_key(&h);
    let (tcp, tcp_addr) = tcp_socket();
    let mut doc = config(json!([tcp_addr]), &key, &[]);
    doc["limits"] = json!({ "max_requests_per_connection": 3 });
    let path = h.write("regauth.json", to_bytes(&doc));
    start_socket_activated(&mut h, &path, &[fd(&tcp)], None);
    drop(tcp);
    wait_healthy(&mut h, &Endpoint::Tcp(tcp_addr.clone()));

    let mut stream = TcpStream::connect(&tcp_addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for _ in 0..2 {
        let head = healthz_on(&mut stream);
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
    }
    let third = healthz_on(&mut stream);
    assert!(
        third.starts_with("HTTP/1.1 200")
            && third.to_ascii_lowercase().contains("connection: close"),
        "{third}"
    );
    let mut rest = Vec::new();
    assert_eq!(
        stream.read_to_end(&mut rest).expect("read to EOF"),
        0,
        "still open"
    );
}

//! Starting the peers as children of a [`Harness`]: docker-registry 2.8, the regauth
//! binary under test (and its short subcommands), and nginx 1.22.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{free_port, http, random_hex, require, Endpoint, Harness, READY_TIMEOUT, REGAUTH};

/// The registry's `auth: token` section.
pub struct TokenAuth<'a> {
    pub realm: &'a str,
    pub service: &'a str,
    pub issuer: &'a str,
    /// PEM certificate(s) of the token signer.
    pub rootcertbundle: &'a Path,
}

/// Starts `docker-registry serve` as the child `registry` on a random port, with
/// filesystem storage in the temp dir and deletes enabled; waits until `/v2/` answers.
/// Returns `127.0.0.1:PORT`.
pub fn start_registry(h: &mut Harness, auth: Option<TokenAuth<'_>>) -> String {
    let bin = require("docker-registry");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let q = |s: &str| serde_json::to_string(s).expect("quote"); // JSON strings are YAML.
    let storage = h.mkdir("registry-data");
    let mut yml = format!(
        "version: 0.1\n\
         log:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {}\n  secret: {}\n",
        q(&storage.to_string_lossy()),
        q(&addr),
        q(&random_hex(16)),
    );
    if let Some(a) = auth {
        let _ = write!(
            yml,
            "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
            q(a.realm),
            q(a.service),
            q(a.issuer),
            q(&a.rootcertbundle.to_string_lossy()),
        );
    }
    let config = h.write("registry.yml", yml);
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg(&config);
    // The registry turns every REGISTRY_* variable into a config override; a stray
    // REGISTRY_AUTH_FILE (read by skopeo) breaks its start-up.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(key);
        }
    }
    h.spawn("registry", cmd);
    let ep = Endpoint::Tcp(addr.clone());
    h.wait_until("registry", "GET /v2/", READY_TIMEOUT, || {
        http(&ep, "GET", "/v2/", &[], b"").is_ok()
    });
    addr
}

// ---------------------------------------------------------------------------------------
// regauth
// ---------------------------------------------------------------------------------------

/// Runs a short `regauth` subcommand and returns its stdout; panics with stderr on failure.
pub fn regauth_cmd(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(REGAUTH)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run regauth {args:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write regauth stdin");
    let out = child.wait_with_output().expect("wait for regauth");
    assert!(
        out.status.success(),
        "regauth {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("regauth stdout is UTF-8")
}

/// `regauth check-config PATH`, whatever its outcome: tests assert on the exit status and
/// on what it printed.
pub fn check_config(path: &Path) -> std::process::Output {
    Command::new(REGAUTH)
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run regauth check-config")
}

/// `regauth keygen`: writes `<stem>.key` and `<stem>.crt` into the temp dir.
pub fn keygen(h: &Harness, algorithm: &str, stem: &str) -> (PathBuf, PathBuf) {
    let key = h.file(&format!("{stem}.key"));
    let cert = h.file(&format!("{stem}.crt"));
    regauth_cmd(
        &[
            "keygen",
            "--algorithm",
            algorithm,
            "--key",
            key.to_str().expect("UTF-8 path"),
            "--cert",
            cert.to_str().expect("UTF-8 path"),
            "--cn",
            "regauth-e2e",
        ],
        "",
    );
    let mode = fs::metadata(&key)
        .expect("key written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode, 0o600,
        "regauth keygen wrote the private key with mode {mode:o}"
    );
    let pem = fs::read_to_string(&cert).expect("certificate written");
    assert!(
        pem.contains("-----BEGIN CERTIFICATE-----"),
        "not a PEM certificate: {pem}"
    );
    (key, cert)
}

/// `regauth hash-password --cost 4` (bcrypt).
pub fn hash_password(password: &str) -> String {
    let hash = regauth_cmd(&["hash-password", "--cost", "4"], &format!("{password}\n"));
    let hash = hash.trim().to_owned();
    assert!(hash.starts_with("$2"), "not a bcrypt hash: {hash:?}");
    hash
}

/// An htpasswd line made by the real `htpasswd` (bcrypt, cost 4).
pub fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new(require("htpasswd"))
        .args(["-nbB", "-C", "4", user, password])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd failed: {out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned()
        + "\n"
}

/// Writes `config` to `<tempdir>/regauth.json`, starts `regauth serve` as the child
/// `regauth` (see [`regauth_serve`] for its sockets), and waits until `GET /healthz` on
/// `probe` answers 200.
pub fn start_regauth(h: &mut Harness, config: &serde_json::Value, probe: &Endpoint) {
    let path = h.write(
        "regauth.json",
        serde_json::to_vec_pretty(config).expect("config to JSON"),
    );
    h.spawn("regauth", regauth_serve(&path, config));
    h.wait_until("regauth", "GET /healthz", READY_TIMEOUT, || {
        http(probe, "GET", "/healthz", &[], b"").is_ok_and(|r| r.status == 200)
    });
}

/// `regauth serve --config <config_path>` (logging at debug unless `RUST_LOG` says
/// otherwise), where `config` is the document at that path.
///
/// When `config` listens on TCP, every listener is bound here and handed over the way
/// systemd does ([`socket_activated`]): each TCP address must come from [`reserve_tcp`]
/// (already bound, so no port race), each unix socket is bound now; an inherited socket
/// takes the options (trusted, front, ...) of the configured listener at its address.
/// All of them, since inherited sockets replace `listen` whole. A config with only unix
/// sockets is left to regauth to bind: a path in the test's temp dir cannot be raced for,
/// and regauth's socket file handling (modes, stale files) stays under test.
pub fn regauth_serve(config_path: &Path, config: &serde_json::Value) -> Command {
    let mut cmd = match bound_sockets(config) {
        Some(sockets) => socket_activated(config_path, sockets),
        None => {
            let mut cmd = Command::new(REGAUTH);
            cmd.arg("serve").arg("--config").arg(config_path);
            cmd
        }
    };
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info,regauth=debug");
    }
    cmd
}

/// Rewrites `<tempdir>/regauth.json` (as [`start_regauth`] wrote it) in place and waits
/// until the running regauth has reloaded it: `/healthz` shows a newer config generation.
pub fn reconfigure_regauth(h: &mut Harness, config: &serde_json::Value, probe: &Endpoint) {
    let generation = || {
        let r = http(probe, "GET", "/healthz", &[], b"").expect("GET /healthz");
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("healthz JSON");
        body["config_generation"]
            .as_u64()
            .expect("config_generation")
    };
    let before = generation();
    h.write(
        "regauth.json",
        serde_json::to_vec_pretty(config).expect("config to JSON"),
    );
    h.wait_until("regauth", "config reload", READY_TIMEOUT, || {
        generation() > before
    });
}

// ---------------------------------------------------------------------------------------
// nginx 1.22
// ---------------------------------------------------------------------------------------

/// Writes `<tempdir>/nginx/<stem>.conf`: a main config around `http_body` (the contents of
/// `http {}`) with private pid, temp and log paths under `<tempdir>/nginx/` and
/// `<tempdir>/logs/`, then checks it with `nginx -t` (panicking with nginx's message).
pub fn write_nginx_conf(h: &Harness, stem: &str, http_body: &str) -> PathBuf {
    let prefix = h.mkdir("nginx");
    let p = |rel: &str| prefix.join(rel).to_string_lossy().into_owned();
    // Run as root, nginx's workers would be `nobody`; keep them root so they can reach the
    // sockets and files in the temp dir.
    let user = if is_root(h) { "user root root;\n" } else { "" };
    let conf = format!(
        "{user}worker_processes 1;\n\
         pid {pid};\n\
         error_log {err} info;\n\
         events {{ worker_connections 512; }}\n\
         http {{\n\
         default_type application/octet-stream;\n\
         client_body_temp_path {body};\n\
         proxy_temp_path {proxy};\n\
         fastcgi_temp_path {fastcgi};\n\
         uwsgi_temp_path {uwsgi};\n\
         scgi_temp_path {scgi};\n\
         access_log {access};\n\
         {http_body}\n\
         }}\n",
        pid = p(&format!("{stem}.pid")),
        err = h.log_path(&format!("{stem}-error")).display(),
        body = p("client_body_temp"),
        proxy = p("proxy_temp"),
        fastcgi = p("fastcgi_temp"),
        uwsgi = p("uwsgi_temp"),
        scgi = p("scgi_temp"),
        access = h.log_path(&format!("{stem}-access")).display(),
    );
    let conf_path = h.write(&format!("nginx/{stem}.conf"), conf);
    let out = nginx_command(h, stem, &conf_path)
        .arg("-t")
        .output()
        .expect("run nginx -t");
    assert!(
        out.status.success(),
        "nginx -t refused {}:\n{}",
        conf_path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    conf_path
}

fn nginx_command(h: &Harness, stem: &str, conf: &Path) -> Command {
    let mut cmd = Command::new(require("nginx"));
    cmd.arg("-p")
        .arg(h.file("nginx"))
        .arg("-c")
        .arg(conf)
        // The error log used before the config is read (Debian's is stderr anyway).
        .arg("-e")
        .arg(h.log_path(&format!("{stem}-error")));
    cmd
}

/// Starts nginx (`daemon off`) as the child `nginx` with the config made by
/// [`write_nginx_conf`] around `http_body`, and waits until every port in `ports` accepts
/// connections. Logs: `logs/nginx.log` (stderr), `logs/nginx-error.log`,
/// `logs/nginx-access.log`.
pub fn start_nginx(h: &mut Harness, http_body: &str, ports: &[u16]) {
    let conf = write_nginx_conf(h, "nginx", http_body);
    let mut cmd = nginx_command(h, "nginx", &conf);
    cmd.arg("-g").arg("daemon off;");
    h.spawn("nginx", cmd);
    for port in ports {
        let addr = format!("127.0.0.1:{port}");
        h.wait_until("nginx", &format!("port {port}"), READY_TIMEOUT, || {
            TcpStream::connect(&addr).is_ok()
        });
    }
}

/// Whether we run as root (the temp dir we created is owned by our effective user).
fn is_root(h: &Harness) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(h.path()).is_ok_and(|m| m.uid() == 0)
}

/// The sockets of `config`'s listeners, bound by the test, when one of them is TCP;
/// `None` when they are all unix sockets (see [`regauth_serve`]).
fn bound_sockets(config: &serde_json::Value) -> Option<Vec<std::os::fd::OwnedFd>> {
    let addresses: Vec<&str> = config["listen"]
        .as_array()?
        .iter()
        .map(|entry| {
            entry
                .as_str()
                .or_else(|| entry["address"].as_str())
                .unwrap_or_else(|| panic!("a listener without an address: {entry}"))
        })
        .collect();
    if addresses.iter().all(|address| address.starts_with("unix:")) {
        return None;
    }
    let sockets = addresses
        .iter()
        .map(|address| match address.strip_prefix("unix:") {
            Some(path) => std::os::unix::net::UnixListener::bind(path)
                .unwrap_or_else(|e| panic!("bind unix socket {path}: {e}"))
                .into(),
            None => super::take_reserved(address)
                .unwrap_or_else(|| {
                    panic!(
                        "regauth's listener {address} does not come from reserve_tcp(): \
                     a port passed on by number can be taken by a parallel test first"
                    )
                })
                .into(),
        });
    Some(sockets.collect())
}

/// `regauth serve --config <config>` started the way systemd starts a socket-activated
/// service: `sockets` at fd 3, 4, ..., `LISTEN_FDS` their number, `LISTEN_PID` the server's
/// own PID (the shell sets it to `$$` and `exec`s, keeping the PID). The descriptors are
/// closed in this process once the command has been spawned.
pub fn socket_activated(config: &Path, sockets: Vec<std::os::fd::OwnedFd>) -> Command {
    socket_activated_for(config, sockets, None)
}

/// [`socket_activated`] with `LISTEN_PID` set to `listen_pid` instead (another process).
pub fn socket_activated_for(
    config: &Path,
    sockets: Vec<std::os::fd::OwnedFd>,
    listen_pid: Option<&str>,
) -> Command {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    let pid = listen_pid.unwrap_or("$$");
    cmd.arg("-c")
        .arg(format!(r#"LISTEN_PID={pid} exec "$0" serve --config "$1""#))
        .arg(REGAUTH)
        .arg(config)
        .env("LISTEN_FDS", sockets.len().to_string());
    // SAFETY: runs in the forked child before exec; it only calls fcntl and dup2, which
    // are async-signal-safe, and allocates nothing (the closure owns the descriptors).
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (above fd 100), so that a socket already sitting at
            // fd 3 or 4 is not overwritten before it is moved.
            let mut high = [0; 8];
            for (slot, fd) in high.iter_mut().zip(&sockets) {
                *slot = nix::libc::fcntl(fd.as_raw_fd(), nix::libc::F_DUPFD_CLOEXEC, 100);
                if *slot < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (target, fd) in (3..).zip(&high[..sockets.len()]) {
                // dup2 leaves the new descriptor without FD_CLOEXEC: it survives exec.
                if nix::libc::dup2(*fd, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd
}

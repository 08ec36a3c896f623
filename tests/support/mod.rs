//! End-to-end harness shared by the e2e suites (`tests/e2e_*.rs`).
//!
//! It starts the real peers — `docker-registry` 2.8, `nginx` 1.22 and the `regauth` binary
//! under test — as child processes on random loopback ports, inside one private temp dir
//! per [`Harness`], and drives them with `skopeo` and a tiny blocking HTTP/1.1 client.
//!
//! Habits (from `shared/real-peers.md`):
//! - every child is stopped by its PID (SIGTERM, then SIGKILL after a grace period) when the
//!   [`Harness`] drops: on success, failure and panic alike;
//! - every child writes to `<tempdir>/logs/<name>.log`; when a test panics, the tails of
//!   all logs are printed and the temp dir is kept (also kept with `REGAUTH_E2E_KEEP=1`);
//! - readiness is polled with a deadline, never waited for with a fixed sleep;
//! - images pushed by tests carry random layer content, because skopeo's blob cache in
//!   `/var/lib/containers/cache` would otherwise make runs influence each other.
//!
//! Layout: this file owns the [`Harness`] (temp dir + children) and small utilities;
//! `http` is a tiny HTTP/1.1 client, `peers` starts docker-registry / regauth / nginx,
//! `image` builds OCI layouts and runs skopeo; `site` runs the two deployments (registry
//! token auth, the shipped nginx example site);
//! `slapd` runs an OpenLDAP directory seeded by the test; `tokens` signs tokens in the test.
#![allow(dead_code)] // Each suite uses its own subset of the helpers.

mod clients;
mod http;
mod image;
mod oidc;
mod peers;
mod site;
mod slapd;
mod tokens;

// Not every suite uses every part.
#[allow(unused_imports)]
pub use self::clients::*;
#[allow(unused_imports)]
pub use self::http::*;
#[allow(unused_imports)]
pub use self::image::*;
#[allow(unused_imports)]
pub use self::oidc::*;
#[allow(unused_imports)]
pub use self::peers::*;
#[allow(unused_imports)]
pub use self::site::*;
#[allow(unused_imports)]
pub use self::slapd::*;
#[allow(unused_imports)]
pub use self::tokens::*;

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The binary under test, built by cargo for the integration tests.
pub const REGAUTH: &str = env!("CARGO_BIN_EXE_regauth");

/// How long a child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a freshly started child gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// One test's private world: a temp dir and the children started in it.
pub struct Harness {
    /// The temp dir; `None` only while dropping.
    dir: Option<tempfile::TempDir>,
    /// Children in start order; stopped in reverse order.
    procs: Vec<Proc>,
}

/// A running child and where its output goes.
struct Proc {
    /// Short unique name, also the log file's stem.
    name: String,
    /// The process itself (its PID is what we signal).
    child: Child,
    /// Combined stdout + stderr.
    log: PathBuf,
}

impl Harness {
    /// Creates the temp dir `regauth-e2e-<label>-XXXXXX` (mode 0755, so that nginx workers
    /// that do not run as root could still reach sockets inside it).
    pub fn new(label: &str) -> Harness {
        let dir = tempfile::Builder::new()
            .prefix(&format!("regauth-e2e-{label}-"))
            .tempdir()
            .expect("create temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp");
        fs::create_dir(dir.path().join("logs")).expect("create logs dir");
        Harness {
            dir: Some(dir),
            procs: Vec::new(),
        }
    }

    /// The temp dir.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("harness alive").path()
    }

    /// A path inside the temp dir (not created).
    pub fn file(&self, rel: &str) -> PathBuf {
        self.path().join(rel)
    }

    /// Creates (if needed) and returns a directory inside the temp dir.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.file(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        p
    }

    /// Writes a file inside the temp dir and returns its path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.file(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dir");
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }

    /// The log file of the child called `name`.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.path().join("logs").join(format!("{name}.log"))
    }

    /// The whole log of the child called `name` so far.
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Starts `cmd` as the child `name`, stdin closed, stdout and stderr into its log.
    pub fn spawn(&mut self, name: &str, mut cmd: Command) {
        assert!(
            self.procs.iter().all(|p| p.name != name),
            "two children called {name}"
        );
        let log = self.log_path(name);
        let out = fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
    }

    /// The PID of the child `name`.
    pub fn pid(&self, name: &str) -> u32 {
        self.proc_ref(name).child.id()
    }

    fn proc_ref(&self, name: &str) -> &Proc {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no child called {name}"))
    }

    /// Panics (with the log tail) if the child `name` has exited.
    pub fn assert_running(&mut self, name: &str) {
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no child called {name}"));
        if let Some(status) = p.child.try_wait().expect("try_wait") {
            panic!(
                "{name} exited early ({status}); its log:\n{}",
                tail(&p.log, LOG_TAIL_LINES)
            );
        }
    }

    /// Polls `probe` every 50 ms until it returns true; panics if the child `name` exits
    /// first or `timeout` passes.
    pub fn wait_until(
        &mut self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if probe() {
                return;
            }
            self.assert_running(name);
            if Instant::now() > deadline {
                panic!("{name}: {what} not ready after {timeout:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to five seconds for a line of the log `name` that contains `needle` (a log
    /// line may be written just after the response it describes was sent), and returns it.
    pub fn wait_for_log_line(&self, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(line) = self.log(name).lines().find(|l| l.contains(needle)) {
                return line.to_owned();
            }
            if Instant::now() > deadline {
                panic!(
                    "no line with {needle:?} in log {name}:\n{}",
                    tail(&self.log_path(name), LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the child `name` now (SIGTERM, then SIGKILL) and returns how it ended.
    pub fn stop(&mut self, name: &str) -> ExitStatus {
        let i = self
            .procs
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("no child called {name}"));
        stop_child(&mut self.procs[i].child)
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            stop_child(&mut p.child);
        }
        let failed = thread::panicking();
        if failed {
            for p in &self.procs {
                eprintln!(
                    "\n----- log of {} ({}), last {LOG_TAIL_LINES} lines -----\n{}",
                    p.name,
                    p.log.display(),
                    tail(&p.log, LOG_TAIL_LINES)
                );
            }
        }
        let dir = self.dir.take().expect("harness alive");
        if failed || std::env::var_os("REGAUTH_E2E_KEEP").is_some() {
            let kept = dir.keep();
            eprintln!("----- e2e temp dir kept: {} -----", kept.display());
        }
    }
}

/// SIGTERM by PID, up to [`STOP_GRACE`] to exit, then SIGKILL. Never panics.
fn stop_child(child: &mut Child) -> ExitStatus {
    if let Ok(Some(status)) = child.try_wait() {
        return status;
    }
    // std only sends SIGKILL; `kill` is a shell builtin, so `sh` is all we need.
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", child.id()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap_or_else(|_| {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus::from_raw(9) // the wait status of "killed by SIGKILL"
    })
}

/// The last `n` lines of a file (or a note that it is missing).
fn tail(path: &Path, n: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("(cannot read: {e})"),
    }
}

/// Loopback listeners bound for a regauth and not yet handed to it.
static RESERVED: std::sync::Mutex<Vec<TcpListener>> = std::sync::Mutex::new(Vec::new());

/// A loopback address (`127.0.0.1:PORT`) for a regauth listener, bound now and held until
/// [`start_regauth`] (or [`regauth_serve`]) hands the socket itself to regauth
/// (systemd-style, `LISTEN_FDS`): no other test can take the port in between, as it could
/// with [`free_port`]'s number.
pub fn reserve_tcp() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    RESERVED.lock().expect("reserved ports").push(listener);
    addr
}

/// The listener [`reserve_tcp`] bound for `addr`, if it is still held.
pub fn take_reserved(addr: &str) -> Option<TcpListener> {
    let mut reserved = RESERVED.lock().expect("reserved ports");
    let index = reserved.iter().position(|listener| {
        listener
            .local_addr()
            .is_ok_and(|bound| bound.to_string() == addr)
    })?;
    Some(reserved.swap_remove(index))
}

/// A loopback address where nothing listens, and nothing can while this value lives: its
/// port is held by a socket that is bound but never listens (and is not `SO_REUSEADDR`),
/// so connections are refused and any other bind of it fails. For "nobody answers here"
/// (a directory that is down) and "this address must not be bound" (`listen` ignored
/// under socket activation: a regauth that tried would fail to start).
pub struct RefusingPort {
    /// Holds the port; never listens.
    _socket: socket2::Socket,
    addr: String,
}

impl RefusingPort {
    /// Binds a fresh loopback port without listening on it.
    pub fn bind() -> RefusingPort {
        use socket2::{Domain, SockAddr, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("loopback");
        socket.bind(&SockAddr::from(any)).expect("bind 127.0.0.1:0");
        let addr = socket
            .local_addr()
            .ok()
            .and_then(|bound| bound.as_socket())
            .expect("bound address")
            .to_string();
        RefusingPort {
            _socket: socket,
            addr,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

/// A loopback port that was free a moment ago (bound, closed, its number passed on).
///
/// Only for peers that bind their own sockets and cannot be handed one — nginx, the
/// registry, Caddy, slapd, the OIDC issuer — and for the one regauth test that must see
/// regauth bind a configured TCP address itself. Another test may take the port in the
/// gap before the peer binds it; the peer then fails to start and the test fails loudly
/// (it cannot pass wrongly). Every address regauth serves on comes from [`reserve_tcp`].
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `n` distinct loopback ports that were free a moment ago (all held open while choosing,
/// so the kernel cannot hand out one of them twice); the same caveat as [`free_port`],
/// for the same peers.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("local addr").port())
}

/// The path of a peer program, or a panic that says how to install it.
pub fn require(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]);
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!("`{program}` is not installed: run `bash tests/run.sh` (it installs the e2e peers)");
}

/// Random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

/// A random lower-case hex string of `2 * n` characters.
pub fn random_hex(n: usize) -> String {
    hex(&random_bytes(n))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

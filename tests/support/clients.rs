//! The real container clients of `tests/e2e_clients.rs`: containerd 1.6 driven by `ctr`,
//! podman 4.3, and dockerd 20.10 driven by the docker CLI. Each runs as root with every
//! directory, socket and config file private to the [`Harness`]'s temp dir, the daemons as
//! its children (stopped by PID like every other child).
//!
//! Facts these helpers rely on (checked on Debian 12 with `containerd` 1.6.20, `podman`
//! 4.3.1, `docker.io` 20.10.24):
//! - test images are the harness's OCI layouts turned into a docker-archive by skopeo, which
//!   keeps the config blob, so every client's image ID is the layout's config digest;
//! - `ctr` talks plain HTTP to any `127.0.0.1` host unless a `hosts.toml` names https;
//!   `--user u:p` cannot express an empty user name, `--refresh TOKEN` sends a refresh token;
//! - containerd's content store is per namespace: a pull into a fresh namespace really
//!   fetches every blob;
//! - dockerd treats `127.0.0.0/8` registries as insecure (TLS without verification, then
//!   plain HTTP); it needs neither iptables nor a bridge for pull and push, and writes
//!   `/etc/docker/key.json` on first start (hence one start at a time);
//! - podman keeps its blob cache in `/var/lib/containers/cache` whatever `--root` says (like
//!   skopeo: images carry random content) and refuses to run without its auth file.

use std::fs;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::{http, random_hex, require, Endpoint, Harness, OciImage, Outcome, READY_TIMEOUT};

/// Longest a single client command may take before the test fails.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// dockerd creates `/etc/docker/key.json` on first start; two starting at once could race.
static DOCKERD_START: Mutex<()> = Mutex::new(());

/// Runs a client command to completion (killing it after [`CLIENT_TIMEOUT`]), with stdout
/// and stderr in files of the temp dir, and `stdin` (if any) written to it.
pub fn run_client(h: &Harness, what: String, mut cmd: Command, stdin: Option<&[u8]>) -> Outcome {
    let runs = h.mkdir("client-runs");
    let stem = random_hex(6);
    let out_path = runs.join(format!("{stem}.out"));
    let err_path = runs.join(format!("{stem}.err"));
    let out = fs::File::create(&out_path).expect("create stdout file");
    let err = fs::File::create(&err_path).expect("create stderr file");
    cmd.stdout(out).stderr(err);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {what}: {e}"));
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(bytes).expect("write client stdin");
    }
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish in {CLIENT_TIMEOUT:?}; stderr so far:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    // Captured by the test harness: shown for a failing test (or with --nocapture).
    eprintln!("$ {what}\n  -> {status}\n{}", stderr.trim_end());
    Outcome {
        what,
        status,
        stdout,
        stderr,
        pulled: None,
    }
}

/// Writes `image` as a docker-archive tagged `reference` (skopeo; the config blob and so the
/// image ID stay the layout's), for `ctr images import`, `podman load` and `docker load`.
pub fn docker_archive(h: &Harness, image: &OciImage, reference: &str) -> PathBuf {
    let policy = h.write(
        "clients/policy.json",
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    );
    let tmp = h.mkdir("clients/skopeo-tmp");
    let archive = h.file(&format!("clients/archive-{}.tar", random_hex(6)));
    let mut cmd = Command::new(require("skopeo"));
    cmd.arg("--policy")
        .arg(&policy)
        .arg("--tmpdir")
        .arg(&tmp)
        .args(["copy", "--quiet"])
        .arg(image.reference())
        .arg(format!("docker-archive:{}:{reference}", archive.display()))
        .env("HOME", &tmp)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("DOCKER_CONFIG");
    run_client(
        h,
        format!("skopeo copy to docker-archive {reference}"),
        cmd,
        None,
    )
    .assert_ok();
    archive
}

/// The image ID every client reports for `image` (its config digest).
pub fn image_id(image: &OciImage) -> &str {
    &image.config_digest
}

/// A refresh token from regauth's GET endpoint, asked for exactly as `docker login` asks
/// (`account`, `client_id=docker`, `offline_token=true`, no scope).
pub fn refresh_token(ep: &Endpoint, service: &str, (user, password): (&str, &str)) -> String {
    let target = format!(
        "/token?account={}&client_id=docker&offline_token=true&service={}",
        super::urlencode(user),
        super::urlencode(service)
    );
    let auth = super::basic_auth(user, password);
    let r = http(ep, "GET", &target, &[("Authorization", &auth)], b"")
        .unwrap_or_else(|e| panic!("GET {target}: {e}"));
    assert_eq!(r.status, 200, "refresh token for {user}: {}", r.text());
    r.json()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no refresh_token: {}", r.text()))
        .to_owned()
}

/// Where a log stands now, to look only at what is written after.
pub fn log_mark(h: &Harness, name: &str) -> usize {
    h.log(name).len()
}

/// The log `name` from `mark` on. Waits briefly for lines written just after a response.
pub fn log_since(h: &Harness, name: &str, mark: usize) -> String {
    thread::sleep(Duration::from_millis(100));
    h.log(name).get(mark..).unwrap_or_default().to_owned()
}

/// The lines of `log` that contain every one of `needles`.
pub fn lines_with<'a>(log: &'a str, needles: &[&str]) -> Vec<&'a str> {
    log.lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .collect()
}

/// Panics unless some line of `log` contains every one of `needles`.
pub fn assert_logged(log: &str, needles: &[&str], what: &str) {
    assert!(
        !lines_with(log, needles).is_empty(),
        "{what}: no log line with all of {needles:?}; the log:\n{log}"
    );
}

// ---------------------------------------------------------------------------------------
// containerd + ctr
// ---------------------------------------------------------------------------------------

/// How `ctr` authenticates.
#[derive(Clone, Copy, Debug)]
pub enum CtrAuth<'a> {
    Anonymous,
    /// `--user user:password` (the OAuth2 password grant, then GET with Basic).
    User(&'a str, &'a str),
    /// `--refresh TOKEN` (the refresh_token grant, then GET with Basic `:TOKEN`).
    Refresh(&'a str),
}

/// A running containerd (child `containerd`) and its `ctr`.
pub struct Containerd {
    pub socket: PathBuf,
    ctr: PathBuf,
    hosts_dir: PathBuf,
}

/// Starts containerd with its root, state, sockets and config in the temp dir, every
/// plugin that pull and push do not need disabled (CRI, cgroups, runtimes).
pub fn start_containerd(h: &mut Harness) -> Containerd {
    let bin = require("containerd");
    let dir = h.mkdir("containerd");
    let socket = dir.join("containerd.sock");
    let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).expect("quote"); // TOML too
    let config = format!(
        "version = 2\n\
         root = {root}\n\
         state = {state}\n\
         disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.monitor.v1.cgroups\", \
         \"io.containerd.runtime.v1.linux\", \"io.containerd.runtime.v2.task\", \
         \"io.containerd.internal.v1.tracing\", \"io.containerd.snapshotter.v1.btrfs\", \
         \"io.containerd.snapshotter.v1.zfs\", \"io.containerd.snapshotter.v1.devmapper\", \
         \"io.containerd.snapshotter.v1.aufs\"]\n\
         [grpc]\n  address = {socket}\n\
         [ttrpc]\n  address = {ttrpc}\n\
         [debug]\n  address = \"\"\n\
         [metrics]\n  address = \"\"\n",
        root = q(&dir.join("root")),
        state = q(&dir.join("state")),
        socket = q(&socket),
        ttrpc = q(&dir.join("containerd.sock.ttrpc")),
    );
    let config = h.write("containerd/config.toml", config);
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(&config);
    h.spawn("containerd", cmd);
    h.wait_until("containerd", "its socket", READY_TIMEOUT, || {
        UnixStream::connect(&socket).is_ok()
    });
    Containerd {
        socket,
        ctr: require("ctr"),
        hosts_dir: h.mkdir("containerd/hosts"),
    }
}

impl Containerd {
    fn ctr(&self, namespace: &str) -> Command {
        let mut cmd = Command::new(&self.ctr);
        cmd.arg("--address")
            .arg(&self.socket)
            .arg("--namespace")
            .arg(namespace);
        cmd
    }

    /// Makes `ctr` use https without certificate checks for `host` (otherwise it speaks
    /// plain HTTP to any 127.0.0.1 address).
    pub fn trust_tls(&self, host: &str) {
        let dir = self.hosts_dir.join(host);
        fs::create_dir_all(&dir).expect("create hosts.d dir");
        fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"https://{host}\"\n\
                 [host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  \
                 skip_verify = true\n"
            ),
        )
        .expect("write hosts.toml");
    }

    /// `ctr images import` of `image` as `reference` into the namespace `push`.
    pub fn import(&self, h: &Harness, image: &OciImage, reference: &str) {
        let archive = docker_archive(h, image, reference);
        let mut cmd = self.ctr("push");
        cmd.args(["images", "import", "--no-unpack"]).arg(&archive);
        run_client(h, format!("ctr images import {reference}"), cmd, None).assert_ok();
    }

    fn remote(&self, op: &str, namespace: &str, reference: &str, auth: CtrAuth<'_>) -> Command {
        let mut cmd = self.ctr(namespace);
        cmd.args(["images", op, "--hosts-dir"]).arg(&self.hosts_dir);
        let host = reference.split('/').next().unwrap_or_default();
        if !self.hosts_dir.join(host).exists() {
            cmd.arg("--plain-http");
        }
        match auth {
            CtrAuth::Anonymous => {}
            CtrAuth::User(user, password) => {
                cmd.arg("--user").arg(format!("{user}:{password}"));
            }
            CtrAuth::Refresh(token) => {
                cmd.arg("--refresh").arg(token);
            }
        }
        cmd.arg(reference);
        cmd
    }

    /// `ctr images push REFERENCE` of an image imported before.
    pub fn push(&self, h: &Harness, reference: &str, auth: CtrAuth<'_>) -> Outcome {
        let cmd = self.remote("push", "push", reference, auth);
        run_client(
            h,
            format!("ctr images push {reference} ({auth:?})"),
            cmd,
            None,
        )
    }

    /// `ctr images pull REFERENCE` into a fresh namespace (so every blob is fetched); on
    /// success, checks that `expect`'s config blob arrived.
    pub fn pull(
        &self,
        h: &Harness,
        reference: &str,
        auth: CtrAuth<'_>,
        expect: &OciImage,
    ) -> Outcome {
        let namespace = format!("pull-{}", random_hex(4));
        let cmd = self.remote("pull", &namespace, reference, auth);
        let outcome = run_client(
            h,
            format!("ctr images pull {reference} ({auth:?})"),
            cmd,
            None,
        );
        if outcome.status.success() {
            let mut get = self.ctr(&namespace);
            get.args(["content", "get", image_id(expect)]);
            let config = run_client(
                h,
                format!("ctr content get {}", image_id(expect)),
                get,
                None,
            );
            assert!(
                config.status.success() && config.stdout.contains("diff_ids"),
                "{reference} was pulled, but not the config blob {}: {}",
                image_id(expect),
                config.stderr
            );
        }
        outcome
    }
}

// ---------------------------------------------------------------------------------------
// podman and the docker CLI alike
// ---------------------------------------------------------------------------------------

/// A CLI with its own image store and a login, podman or docker: the commands the two run
/// the same way (up to [`ImageCli::REMOTE_FLAGS`] and [`ImageCli::ID_PREFIX`]).
pub trait ImageCli {
    /// The program, first word of every command shown.
    const NAME: &'static str;
    /// Given right after the subcommand of every command that talks to a registry.
    const REMOTE_FLAGS: &'static [&'static str];
    /// Put before what `image inspect --format {{.Id}}` prints, it makes the image ID
    /// (`sha256:<hex>`).
    const ID_PREFIX: &'static str;

    /// The command `NAME ARGS` with the private dirs and environment.
    fn command(&self, args: &[&str]) -> Command;

    /// Forgets the login for `host`, asserted.
    fn logout(&self, h: &Harness, host: &str);

    /// Runs `NAME ARGS` to completion ([`run_client`]).
    fn run(&self, h: &Harness, args: &[&str], stdin: Option<&[u8]>) -> Outcome {
        run_client(
            h,
            format!("{} {}", Self::NAME, args.join(" ")),
            self.command(args),
            stdin,
        )
    }

    /// `load` of `image` tagged `reference`.
    fn load(&self, h: &Harness, image: &OciImage, reference: &str) {
        let archive = docker_archive(h, image, reference);
        self.run(h, &["load", "-q", "-i", &archive.to_string_lossy()], None)
            .assert_ok();
    }

    /// `login --password-stdin`.
    fn login(&self, h: &Harness, host: &str, (user, password): (&str, &str)) -> Outcome {
        let args = [
            &["login"][..],
            Self::REMOTE_FLAGS,
            &["-u", user, "--password-stdin", host],
        ]
        .concat();
        self.run(h, &args, Some(format!("{password}\n").as_bytes()))
    }

    fn tag(&self, h: &Harness, from: &str, to: &str) {
        self.run(h, &["tag", from, to], None).assert_ok();
    }

    fn push(&self, h: &Harness, reference: &str) -> Outcome {
        let args = [&["push"][..], Self::REMOTE_FLAGS, &[reference]].concat();
        self.run(h, &args, None)
    }

    /// Removes the local `reference` (if present), then `pull`s it; on success, checks
    /// that the pulled image is `expect`.
    fn pull(&self, h: &Harness, reference: &str, expect: &OciImage) -> Outcome {
        let _ = self.run(h, &["rmi", "--force", reference], None);
        let args = [&["pull"][..], Self::REMOTE_FLAGS, &[reference]].concat();
        let outcome = self.run(h, &args, None);
        if outcome.status.success() {
            let id = self
                .run(
                    h,
                    &["image", "inspect", "--format", "{{.Id}}", reference],
                    None,
                )
                .assert_ok()
                .stdout
                .trim()
                .to_owned();
            assert_eq!(
                format!("{}{id}", Self::ID_PREFIX),
                image_id(expect),
                "{} pulled another image than {} for {reference}",
                Self::NAME,
                expect.dir.display()
            );
        }
        outcome
    }
}

// ---------------------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------------------

/// podman as root with private storage (vfs), run dir, configs and auth file.
pub struct Podman {
    bin: PathBuf,
    dir: PathBuf,
    /// The auth file (`REGISTRY_AUTH_FILE`); podman refuses to run if it is missing.
    pub authfile: PathBuf,
}

impl Podman {
    pub fn new(h: &Harness) -> Podman {
        let dir = h.mkdir("podman");
        let authfile = h.write("podman/auth.json", r#"{"auths":{}}"#);
        h.write(
            "podman/registries.conf",
            "unqualified-search-registries = []\n",
        );
        h.write("podman/containers.conf", "");
        h.write(
            "podman/storage.conf",
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = {}\ngraphroot = {}\n",
                serde_json::to_string(&dir.join("run").to_string_lossy()).expect("quote"),
                serde_json::to_string(&dir.join("root").to_string_lossy()).expect("quote"),
            ),
        );
        h.mkdir("podman/home");
        h.mkdir("podman/tmp");
        Podman {
            bin: require("podman"),
            dir,
            authfile,
        }
    }

    /// Makes the auth file hold what `docker login` stores for a token server that hands
    /// out refresh tokens: the user name without password, and the identity token.
    pub fn use_identity_token(&self, host: &str, user: &str, token: &str) {
        let auth = data_encoding::BASE64.encode(format!("{user}:").as_bytes());
        let file = serde_json::json!({
            "auths": { host: { "auth": auth, "identitytoken": token } }
        });
        fs::write(&self.authfile, file.to_string()).expect("write podman auth file");
    }
}

impl ImageCli for Podman {
    const NAME: &'static str = "podman";
    const REMOTE_FLAGS: &'static [&'static str] = &["--tls-verify=false"];
    // `{{.Id}}` is the bare hex digest.
    const ID_PREFIX: &'static str = "sha256:";

    fn command(&self, args: &[&str]) -> Command {
        let d = |rel: &str| self.dir.join(rel);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root")
            .arg(d("root"))
            .arg("--runroot")
            .arg(d("run"))
            .arg("--tmpdir")
            .arg(d("tmp"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args)
            .env("HOME", d("home"))
            .env("XDG_CONFIG_HOME", d("home/.config"))
            .env("REGISTRY_AUTH_FILE", &self.authfile)
            .env("CONTAINERS_REGISTRIES_CONF", d("registries.conf"))
            .env("CONTAINERS_CONF", d("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", d("storage.conf"))
            .env("TMPDIR", d("tmp"))
            .env_remove("DOCKER_CONFIG");
        cmd
    }

    /// `podman logout --all` (so from `host` too), asserted.
    fn logout(&self, h: &Harness, _host: &str) {
        self.run(h, &["logout", "--all"], None).assert_ok();
    }
}

// ---------------------------------------------------------------------------------------
// dockerd + docker CLI
// ---------------------------------------------------------------------------------------

/// A running dockerd (child `dockerd`) and a docker CLI with a private config dir.
pub struct Docker {
    bin: PathBuf,
    socket: PathBuf,
    /// The CLI's config dir (`config.json` holds what `docker login` stored).
    pub config: PathBuf,
}

/// Starts dockerd on a unix socket in the temp dir, on top of `containerd` (its own
/// namespaces), with vfs storage and no networking of its own: no iptables, no bridge, no
/// IP forwarding or masquerading.
pub fn start_dockerd(h: &mut Harness, containerd: &Containerd) -> Docker {
    let bin = require("dockerd");
    let dir = h.mkdir("dockerd");
    let socket = dir.join("docker.sock");
    let daemon_json = h.write("dockerd/daemon.json", "{}");
    let mut cmd = Command::new(bin);
    cmd.args([
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--bridge=none",
        "--storage-driver=vfs",
        "--containerd-namespace=regauth-e2e",
        "--containerd-plugins-namespace=regauth-e2e-plugins",
    ])
    .arg("--config-file")
    .arg(&daemon_json)
    .arg("--containerd")
    .arg(&containerd.socket)
    .arg("--data-root")
    .arg(dir.join("data"))
    .arg("--exec-root")
    .arg(dir.join("exec"))
    .arg("--pidfile")
    .arg(dir.join("dockerd.pid"))
    .arg("-H")
    .arg(format!("unix://{}", socket.display()))
    .env_remove("DOCKER_HOST");
    {
        let _one_at_a_time = DOCKERD_START.lock().unwrap_or_else(|e| e.into_inner());
        h.spawn("dockerd", cmd);
        let ep = Endpoint::Unix(socket.clone());
        h.wait_until("dockerd", "GET /_ping", READY_TIMEOUT, || {
            http(&ep, "GET", "/_ping", &[], b"").is_ok_and(|r| r.status == 200)
        });
    }
    Docker {
        bin: require("docker"),
        socket,
        config: h.mkdir("docker-config"),
    }
}

impl Docker {
    /// What `docker login` stored for `host` in `config.json` (its `auths` entry).
    pub fn stored_login(&self, host: &str) -> serde_json::Value {
        let text = fs::read_to_string(self.config.join("config.json")).unwrap_or_default();
        let config: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        config["auths"][host].clone()
    }
}

impl ImageCli for Docker {
    const NAME: &'static str = "docker";
    // dockerd treats 127.0.0.0/8 registries as insecure by itself.
    const REMOTE_FLAGS: &'static [&'static str] = &[];
    // `{{.Id}}` is `sha256:<hex>` already.
    const ID_PREFIX: &'static str = "";

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONFIG")
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    /// `docker logout HOST`, asserted.
    fn logout(&self, h: &Harness, host: &str) {
        self.run(h, &["logout", host], None).assert_ok();
    }
}

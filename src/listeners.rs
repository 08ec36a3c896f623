//! Listening sockets: TCP and unix sockets bound from the config (a stale
//! socket file replaced only when nothing answers on it; the file created
//! owner-only, then given its group and mode), or inherited from systemd
//! socket activation; and accepting connections on them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::config::{parse_listen_address, parse_socket_mode, ListenAddress, ListenSpec};

/// A bound listening socket and what requests on it may be trusted with.
pub struct BoundListener {
    socket: ListenerSocket,
    /// Whether a front proxy's user header is honoured on this socket.
    pub(crate) trusted: bool,
    /// For logs.
    label: String,
    /// A unix socket file we created and remove again on exit.
    owned_path: Option<PathBuf>,
}

enum ListenerSocket {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl BoundListener {
    /// Where it listens, for logs.
    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Drop for BoundListener {
    fn drop(&mut self) {
        if let Some(path) = &self.owned_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Binds every configured listener. Must run inside the tokio runtime.
pub fn bind_all(specs: &[ListenSpec], backlog: u32) -> anyhow::Result<Vec<BoundListener>> {
    specs.iter().map(|spec| bind_one(spec, backlog)).collect()
}

fn bind_one(spec: &ListenSpec, backlog: u32) -> anyhow::Result<BoundListener> {
    let address = parse_listen_address(spec.address()).map_err(anyhow::Error::msg)?;
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    let label = address.to_string();
    let (socket, owned_path) = match &address {
        ListenAddress::Tcp(socket_address) => {
            let socket = Socket::new(Domain::for_address(*socket_address), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            socket
                .bind(&SockAddr::from(*socket_address))
                .and_then(|()| socket.listen(backlog))
                .with_context(|| format!("failed to bind {label}"))?;
            let listener = TcpListener::from_std(std::net::TcpListener::from(socket))?;
            (ListenerSocket::Tcp(listener), None)
        }
        ListenAddress::Unix(path) => {
            remove_stale_socket(path)?;
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.set_nonblocking(true)?;
            let address =
                SockAddr::unix(path).with_context(|| format!("failed to bind {label}"))?;
            // bind() creates the file with the mode the umask leaves, and it
            // takes connections from listen() on; the configured mode and
            // group come after. Created owner-only, it lets nobody else in
            // meanwhile (a trusted socket's clients may name any account).
            // The umask is process-wide: this runs at start-up, before the
            // reloader and before any request, so no other thread creates
            // files while it is narrowed.
            with_umask(OWNER_ONLY_UMASK, || socket.bind(&address))
                .and_then(|()| socket.listen(backlog))
                .with_context(|| format!("failed to bind {label}"))?;
            let (mode, group) = match spec {
                ListenSpec::Detailed(options) => {
                    (options.mode.as_deref(), options.group.as_deref())
                }
                ListenSpec::Address(_) => (None, None),
            };
            if let Err(error) = apply_socket_options(path, mode, group, spec.trusted()) {
                // Ours and unusable: do not leave it for the next start.
                let _ = std::fs::remove_file(path);
                return Err(error);
            }
            let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))?;
            (ListenerSocket::Unix(listener), Some(path.clone()))
        }
    };
    Ok(BoundListener {
        socket,
        trusted: spec.trusted(),
        label,
        owned_path,
    })
}

/// A socket file left by a crashed run is removed, but only when nothing
/// answers on it: a second instance must not steal the first one's socket.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    let Ok(metadata) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !metadata.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!("{} is in use by another process", path.display()),
        Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing stale socket file");
            std::fs::remove_file(path)
                .with_context(|| format!("failed to remove stale socket {}", path.display()))
        }
        Err(error) => Err(error).with_context(|| format!("cannot check socket {}", path.display())),
    }
}

/// Mode of a unix socket without an explicit `mode`: nginx's workers run as
/// another user and must be able to connect, and such a socket is exactly as
/// reachable as a loopback TCP port.
const DEFAULT_SOCKET_MODE: u32 = 0o666;
/// Mode of a trusted unix socket without an explicit `mode`: its clients may
/// name the user, so only its owner and `group` (nginx's) may connect.
const DEFAULT_TRUSTED_SOCKET_MODE: u32 = 0o660;

/// The umask a unix socket file is created with: `srw-------`, until
/// [`apply_socket_options`] sets its real mode.
const OWNER_ONLY_UMASK: u32 = 0o177;

/// Runs `create` with the process umask set to `mask`, then restores it.
fn with_umask<T>(mask: u32, create: impl FnOnce() -> T) -> T {
    let mask = nix::sys::stat::Mode::from_bits_truncate(mask);
    let previous = nix::sys::stat::umask(mask);
    let result = create();
    nix::sys::stat::umask(previous);
    result
}

/// Gives the socket file its group, then its mode: the configured one, or
/// the default for a trusted or an ordinary socket.
fn apply_socket_options(
    path: &Path,
    mode: Option<&str>,
    group: Option<&str>,
    trusted: bool,
) -> anyhow::Result<()> {
    if let Some(group) = group {
        let gid = nix::unistd::Group::from_name(group)
            .with_context(|| format!("cannot look up group {group}"))?
            .with_context(|| format!("no such group: {group}"))?
            .gid;
        std::os::unix::fs::chown(path, None, Some(gid.as_raw()))
            .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
    }
    let mode = match mode {
        Some(mode) => parse_socket_mode(mode).map_err(anyhow::Error::msg)?,
        None if trusted => DEFAULT_TRUSTED_SOCKET_MODE,
        None => DEFAULT_SOCKET_MODE,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode of {}", path.display()))?;
    Ok(())
}

/// Takes the sockets passed by systemd socket activation (`LISTEN_FDS`),
/// if this process is their addressee, and clears the variables so that
/// children do not claim them too. It edits the environment, so call it
/// before any other thread runs (before the tokio runtime starts).
pub fn take_inherited_sockets() -> anyhow::Result<Vec<Socket>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count: RawFd = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Still single-threaded here, so nobody reads the environment while
    // it changes.
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    if !for_us || count <= 0 {
        return Ok(Vec::new());
    }
    const SD_LISTEN_FDS_START: RawFd = 3;
    let mut sockets = Vec::new();
    for fd in SD_LISTEN_FDS_START..SD_LISTEN_FDS_START.saturating_add(count) {
        // SAFETY: systemd's protocol hands us these descriptors, open and
        // owned by nobody else in this process; LISTEN_PID confirmed that
        // they are meant for this process, and the variables are gone now,
        // so they are taken exactly once.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        socket
            .set_cloexec(true)
            .with_context(|| format!("inherited descriptor {fd} is not usable"))?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Turns sockets from [`take_inherited_sockets`] into listeners. Must run
/// inside the tokio runtime. Inherited unix sockets are marked trusted
/// when `trust_unix` is set (the shipped `regauth.socket` is nginx's).
pub fn inherited_listeners(
    sockets: Vec<Socket>,
    trust_unix: bool,
) -> anyhow::Result<Vec<BoundListener>> {
    let mut listeners = Vec::new();
    for socket in sockets {
        let fd = socket.as_raw_fd();
        let local = socket
            .local_addr()
            .with_context(|| format!("inherited descriptor {fd} is not a socket"))?;
        // A datagram socket, or one nobody called listen() on, would make
        // every accept fail: refuse it at start instead.
        if socket.r#type().ok() != Some(Type::STREAM) {
            bail!("inherited socket {fd} is not a stream socket; use ListenStream= in the .socket unit");
        }
        #[cfg(target_os = "linux")]
        if !socket.is_listener().unwrap_or(true) {
            bail!("inherited socket {fd} is not listening; use ListenStream= (not Accept=yes) in the .socket unit");
        }
        socket.set_nonblocking(true)?;
        let listener = if local.is_unix() {
            let label = match local.as_pathname() {
                Some(path) => format!("systemd fd {fd} (unix:{})", path.display()),
                None => format!("systemd fd {fd} (unix)"),
            };
            let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))?;
            BoundListener {
                socket: ListenerSocket::Unix(listener),
                trusted: trust_unix,
                label,
                owned_path: None,
            }
        } else {
            let listener = TcpListener::from_std(std::net::TcpListener::from(socket))?;
            let label = format!("systemd fd {fd} ({})", listener_addr(&listener));
            BoundListener {
                socket: ListenerSocket::Tcp(listener),
                trusted: false,
                label,
                owned_path: None,
            }
        };
        listeners.push(listener);
    }
    Ok(listeners)
}

fn listener_addr(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "tcp".to_owned(), |address| address.to_string())
}

/// An accepted connection.
pub(crate) enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl BoundListener {
    /// Waits for the next connection; returns it with the peer for logs.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, String)> {
        match &self.socket {
            ListenerSocket::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok((Stream::Tcp(stream), peer.to_string()))
            }
            ListenerSocket::Unix(listener) => {
                let (stream, _) = listener.accept().await?;
                Ok((Stream::Unix(stream), "unix".to_owned()))
            }
        }
    }
}

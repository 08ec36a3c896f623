//! Listening sockets: TCP and unix sockets bound from the config (a stale
//! socket file replaced only when nothing answers on it; the file created
//! owner-only, then given its group and mode), or inherited from systemd
//! socket activation; and accepting connections on them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use socket2::{Domain, SockAddr, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use crate::config::{Backlog, ListenAddress, Listener};

/// A bound listening socket and the configured listener it serves, whose
/// options (trusted or not, ...) apply to every connection on it.
pub struct BoundListener {
    socket: ListenerSocket,
    options: Listener,
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
    fn new(socket: ListenerSocket, options: Listener, label: String) -> BoundListener {
        BoundListener {
            socket,
            options,
            label,
            owned_path: None,
        }
    }

    /// Serves a TCP socket the caller bound (tests bind `127.0.0.1:0` and
    /// know the port before the server runs), with the options of
    /// `options` (its address is replaced by the socket's). Must run inside
    /// the tokio runtime.
    pub fn from_tcp(socket: std::net::TcpListener, options: Listener) -> io::Result<BoundListener> {
        socket.set_nonblocking(true)?;
        let address = socket.local_addr()?;
        let options = Listener {
            address: ListenAddress::Tcp(address),
            ..options
        };
        let listener = TcpListener::from_std(socket)?;
        Ok(BoundListener::new(
            ListenerSocket::Tcp(listener),
            options,
            address.to_string(),
        ))
    }

    /// Serves a unix socket the caller bound; as [`BoundListener::from_tcp`].
    /// The socket file stays the caller's.
    pub fn from_unix(
        socket: std::os::unix::net::UnixListener,
        options: Listener,
    ) -> io::Result<BoundListener> {
        socket.set_nonblocking(true)?;
        let label = match socket.local_addr()?.as_pathname() {
            Some(path) => format!("unix:{}", path.display()),
            None => "unix".to_owned(),
        };
        let listener = UnixListener::from_std(socket)?;
        Ok(BoundListener::new(
            ListenerSocket::Unix(listener),
            options,
            label,
        ))
    }

    /// Where it listens, for logs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The options of the configured listener this socket serves.
    pub fn options(&self) -> &Listener {
        &self.options
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
pub fn bind_all(listeners: &[Listener], backlog: Backlog) -> anyhow::Result<Vec<BoundListener>> {
    listeners
        .iter()
        .map(|listener| bind_one(listener, backlog))
        .collect()
}

fn bind_one(listener: &Listener, backlog: Backlog) -> anyhow::Result<BoundListener> {
    let backlog = backlog.as_c_int();
    let label = listener.address.to_string();
    let (socket, owned_path) = match &listener.address {
        &ListenAddress::Tcp(socket_address) => {
            let socket = Socket::new(Domain::for_address(socket_address), Type::STREAM, None)?;
            socket.set_reuse_address(true)?;
            socket.set_nonblocking(true)?;
            socket
                .bind(&SockAddr::from(socket_address))
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
            if let Err(error) = apply_socket_options(path, listener) {
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
        options: listener.clone(),
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
fn apply_socket_options(path: &Path, listener: &Listener) -> anyhow::Result<()> {
    if let Some(group) = &listener.group {
        let gid = nix::unistd::Group::from_name(group)
            .with_context(|| format!("cannot look up group {group}"))?
            .with_context(|| format!("no such group: {group}"))?
            .gid;
        std::os::unix::fs::chown(path, None, Some(gid.as_raw()))
            .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
    }
    let mode = match listener.mode {
        Some(mode) => mode.bits(),
        None if listener.trusted => DEFAULT_TRUSTED_SOCKET_MODE,
        None => DEFAULT_SOCKET_MODE,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode of {}", path.display()))?;
    Ok(())
}

/// A socket passed by systemd socket activation, with the name its unit
/// gave it (`FileDescriptorName=`, "unknown" without one).
pub struct InheritedSocket {
    socket: Socket,
    name: String,
}

/// Takes the sockets passed by systemd socket activation (`LISTEN_FDS`),
/// if this process is their addressee, and clears the variables so that
/// children do not claim them too. It edits the environment, so call it
/// before any other thread runs (before the tokio runtime starts).
pub fn take_inherited_sockets() -> anyhow::Result<Vec<InheritedSocket>> {
    // sd_notify checks LISTEN_PID, counts, marks the descriptors
    // close-on-exec and clears LISTEN_PID/LISTEN_FDS. The names are read
    // here: its own name handling refuses a LISTEN_FDNAMES left over for
    // another process, which must not stop this one from starting.
    let names = std::env::var("LISTEN_FDNAMES").ok();
    std::env::remove_var("LISTEN_FDNAMES");
    let descriptors: Vec<_> = sd_notify::listen_fds()
        .context("cannot take the sockets systemd passed (LISTEN_FDS)")?
        .collect();
    let names: Vec<String> = match names {
        Some(names) if names.split(':').count() == descriptors.len() => {
            names.split(':').map(str::to_owned).collect()
        }
        _ => vec!["unknown".to_owned(); descriptors.len()],
    };
    Ok(descriptors
        .into_iter()
        .zip(names)
        .map(|(fd, name)| InheritedSocket {
            // SAFETY: systemd's protocol hands us these descriptors, open
            // and owned by nobody else in this process; sd_notify checked
            // LISTEN_PID and cleared the variables, so they are taken
            // exactly once.
            socket: unsafe { Socket::from_raw_fd(fd) },
            name,
        })
        .collect())
}

/// Turns sockets from [`take_inherited_sockets`] into listeners. Must run
/// inside the tokio runtime. An inherited socket bound to the address of a
/// configured listener gets that listener's options (trusted, budget, ...);
/// any other unix socket is trusted when a configured unix listener is
/// (the shipped `regauth.socket` is nginx's and its path may differ).
pub fn inherited_listeners(
    sockets: Vec<InheritedSocket>,
    configured: &[Listener],
) -> anyhow::Result<Vec<BoundListener>> {
    let trust_unix = configured
        .iter()
        .any(|listener| listener.trusted && listener.is_unix());
    let mut listeners = Vec::new();
    for InheritedSocket { socket, name } in sockets {
        let fd = socket.as_raw_fd();
        let local = socket
            .local_addr()
            .with_context(|| format!("inherited descriptor {fd} ({name}) is not a socket"))?;
        // A datagram socket, or one nobody called listen() on, would make
        // every accept fail: refuse it at start instead.
        if socket.r#type().ok() != Some(Type::STREAM) {
            bail!("inherited socket {fd} ({name}) is not a stream socket; use ListenStream= in the .socket unit");
        }
        #[cfg(target_os = "linux")]
        if !socket.is_listener().unwrap_or(true) {
            bail!("inherited socket {fd} ({name}) is not listening; use ListenStream= (not Accept=yes) in the .socket unit");
        }
        socket.set_nonblocking(true)?;
        let address = match (local.as_socket(), local.as_pathname()) {
            (Some(address), _) => Some(ListenAddress::Tcp(address)),
            (None, Some(path)) => Some(ListenAddress::Unix(path.to_owned())),
            (None, None) => None,
        };
        let options = configured
            .iter()
            .find(|listener| Some(&listener.address) == address.as_ref())
            .cloned();
        let shown = address
            .as_ref()
            .map_or_else(|| "unix".to_owned(), ToString::to_string);
        let label = match name.as_str() {
            "unknown" => format!("systemd fd {fd} ({shown})"),
            name => format!("systemd fd {fd} ({shown}, named {name})"),
        };
        let listener = if local.is_unix() {
            let options = options.unwrap_or_else(|| Listener {
                trusted: trust_unix,
                ..Listener::at(address.unwrap_or(ListenAddress::Unix(PathBuf::new())))
            });
            let listener = UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))?;
            BoundListener::new(ListenerSocket::Unix(listener), options, label)
        } else {
            let listener = std::net::TcpListener::from(socket);
            let options = match options {
                Some(options) => options,
                None => Listener::at(ListenAddress::Tcp(listener.local_addr()?)),
            };
            let listener = TcpListener::from_std(listener)?;
            BoundListener::new(ListenerSocket::Tcp(listener), options, label)
        };
        listeners.push(listener);
    }
    Ok(listeners)
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

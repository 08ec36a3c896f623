//! Listener addresses: `"host:port"`, `"unix:/path"`, or an object with
//! options (trusted, socket mode and group).

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

/// One listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ListenSpec {
    /// `"127.0.0.1:5001"`, `"[::1]:5001"` or `"unix:/run/regauth/regauth.sock"`.
    Address(String),
    /// The same address with options.
    Detailed(ListenOptions),
}

/// A listener with options.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenOptions {
    /// As in [`ListenSpec::Address`].
    pub address: String,
    /// Whether requests on this listener may carry a front proxy's user
    /// header (`auth.trusted_user_header`). Only mark listeners that nothing
    /// but the proxy can reach, such as a unix socket.
    #[serde(default)]
    pub trusted: bool,
    /// Unix socket file mode, octal string such as `"0660"`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Unix socket group, so that nginx's user can connect.
    #[serde(default)]
    pub group: Option<String>,
}

impl ListenSpec {
    /// The address text, whichever form was used.
    pub fn address(&self) -> &str {
        match self {
            ListenSpec::Address(address) => address,
            ListenSpec::Detailed(options) => &options.address,
        }
    }

    /// Whether the listener is trusted to carry a front proxy's user header.
    pub fn trusted(&self) -> bool {
        matches!(self, ListenSpec::Detailed(options) if options.trusted)
    }
}

/// Where one listener binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddress {
    /// A TCP socket address.
    Tcp(std::net::SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddress::Tcp(address) => write!(f, "{address}"),
            ListenAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Parses a listener address: `unix:/path` or a TCP socket address.
pub fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err("`unix:` needs a socket path".into());
        }
        return Ok(ListenAddress::Unix(PathBuf::from(path)));
    }
    text.parse()
        .map(ListenAddress::Tcp)
        .map_err(|_| format!("`{text}` is neither `host:port` (an IP address) nor `unix:/path`"))
}

/// Parses an octal file mode such as `"0660"`.
pub fn parse_socket_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| format!("`{text}` is not an octal file mode such as \"0660\""))
}

//! The config's sections: token signing, inline users, the auth_request
//! endpoint, logging and connection limits, each with its defaults.

use std::path::PathBuf;

use serde::Deserialize;

use crate::keys::{Algorithm, KidFormat};

/// Token signing settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// ES256, RS256 or PS256.
    pub algorithm: Algorithm,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// PEM certificate of the signing key; sent as `x5c` and given to the
    /// registry as `rootcertbundle`.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// Access token lifetime in seconds (at least 60).
    #[serde(default = "default_expiration_secs")]
    pub expiration_secs: u64,
    /// Refresh token lifetime in seconds.
    #[serde(default = "default_refresh_expiration_secs")]
    pub refresh_expiration_secs: u64,
    /// `libtrust` (registry 2.x) or `thumbprint` (RFC 7638, registry 3.x).
    #[serde(default = "default_kid")]
    pub kid: KidFormat,
    /// Further certificates or public keys whose tokens `/auth` and the
    /// refresh grant still accept (key rotation).
    #[serde(default)]
    pub trusted_certificates: Vec<PathBuf>,
    /// Create a key pair and certificate when both files are missing. Meant
    /// for first runs and demos: a typo in a production path must not
    /// silently produce a fresh key, so this is off unless asked for.
    #[serde(default)]
    pub generate_if_missing: bool,
}

/// A user defined inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// bcrypt hash (`$2a$`, `$2b$` or `$2y$`), e.g. from `regauth hash-password`.
    pub password: String,
    /// Groups the ACL can match on.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only API tokens log in as this user; the password is refused (so a
    /// CI system never holds a human's password).
    #[serde(default)]
    pub tokens_only: bool,
}

/// How `/auth` decides.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Bearer tokens issued by this server, as a registry with `auth: token` would check them.
    #[default]
    Token,
    /// Basic credentials checked against the users and the ACL.
    Basic,
}

/// Settings of the nginx `auth_request` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `token` or `basic`.
    pub mode: AuthMode,
    /// Path nginx's subrequest is sent to.
    pub path: String,
    /// Request header carrying the original URI (`$request_uri`).
    pub uri_header: String,
    /// Request header carrying the original method (`$request_method`).
    pub method_header: String,
    /// Response header naming the user, for `auth_request_set`.
    pub user_header: String,
    /// Name sent in `user_header` for anonymous requests; none when unset.
    pub anonymous_user: Option<String>,
    /// Request header set by a front proxy that authenticated the user
    /// itself; honoured only on listeners marked `trusted`.
    pub trusted_user_header: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Most verified tokens kept in memory.
    pub cache_capacity: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Token,
            path: "/auth".into(),
            uri_header: "X-Original-URI".into(),
            method_header: "X-Original-Method".into(),
            user_header: "Remote-User".into(),
            anonymous_user: None,
            trusted_user_header: None,
            leeway_secs: 0,
            cache_capacity: 10_000,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Log settings. `RUST_LOG` overrides `level`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter such as `info` or `regauth=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most connections served at once; further ones wait in the backlog.
    pub max_connections: usize,
    /// Time a client has to send its request headers, in seconds.
    pub header_read_timeout_secs: u64,
    /// Time in-flight requests get to finish on shutdown, in seconds.
    pub shutdown_grace_secs: u64,
    /// Listen backlog of every socket regauth binds.
    pub backlog: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout_secs: 10,
            shutdown_grace_secs: 10,
            backlog: 1024,
        }
    }
}

fn default_expiration_secs() -> u64 {
    300
}
fn default_refresh_expiration_secs() -> u64 {
    90 * 24 * 3600
}
fn default_kid() -> KidFormat {
    KidFormat::Libtrust
}

//! The config's sections: token signing, inline users, the auth_request
//! endpoint, logging and connection limits, each with its defaults.

use std::path::PathBuf;

use serde::Deserialize;

use super::values::{Count, HeaderField, Seconds};
use super::values::{ONE_DAY, ONE_HOUR, ONE_MINUTE, TEN_YEARS};
use crate::keys::{Algorithm, KidFormat};

/// Lifetime of an access token: clients treat anything shorter than a
/// minute as a minute, and fetch new tokens themselves, so a day is plenty.
pub type TokenLifetime = Seconds<ONE_MINUTE, ONE_DAY>;
/// Lifetime of a refresh token.
pub type RefreshLifetime = Seconds<ONE_MINUTE, TEN_YEARS>;
/// Clock-skew allowance on `exp`/`nbf`.
pub type Leeway = Seconds<0, ONE_HOUR>;
/// How many verified tokens `/auth` keeps.
pub type CacheCapacity = Count<1, 10_000_000>;
/// A timeout or grace period of the server: hyper adds it to the clock of
/// every new connection, and a sum past the clock's range would panic.
pub type ServerTimeout = Seconds<1, ONE_HOUR>;
/// Time in-flight requests get on shutdown (none is allowed).
pub type Grace = Seconds<0, ONE_HOUR>;
/// Most concurrent connections of one listener (each holds a task and
/// its buffers).
pub type ConnectionBudget = Count<1, 1_000_000>;
/// Requests served on one connection.
pub type RequestsPerConnection = Count<1, 1_000_000>;
/// A listen backlog (the kernel caps it at `net.core.somaxconn`).
pub type Backlog = Count<1, 65_535>;

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
    /// Access token lifetime (`expiration_secs`, 60 to 86400).
    #[serde(rename = "expiration_secs", default = "default_expiration")]
    pub expiration: TokenLifetime,
    /// Refresh token lifetime (`refresh_expiration_secs`), not shorter than
    /// `expiration`.
    #[serde(
        rename = "refresh_expiration_secs",
        default = "default_refresh_expiration"
    )]
    pub refresh_expiration: RefreshLifetime,
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
    pub uri_header: HeaderField,
    /// Request header carrying the original method (`$request_method`).
    pub method_header: HeaderField,
    /// Response header naming the user, for `auth_request_set`.
    pub user_header: HeaderField,
    /// Name sent in `user_header` for anonymous requests; none when unset.
    pub anonymous_user: Option<String>,
    /// Request header set by a front proxy that authenticated the user
    /// itself; honoured only on listeners marked `trusted`.
    pub trusted_user_header: Option<HeaderField>,
    /// Clock skew allowed on `exp`/`nbf` (`leeway_secs`).
    #[serde(rename = "leeway_secs")]
    pub leeway: Leeway,
    /// Most verified tokens kept in memory.
    pub cache_capacity: CacheCapacity,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            mode: AuthMode::Token,
            path: "/auth".into(),
            uri_header: HeaderField::from_static("X-Original-URI"),
            method_header: HeaderField::from_static("X-Original-Method"),
            user_header: HeaderField::from_static("Remote-User"),
            anonymous_user: None,
            trusted_user_header: None,
            leeway: Leeway::from_secs_const(0),
            cache_capacity: CacheCapacity::from_const(10_000),
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
    pub level: LogFilter,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: LogFilter("info".into()),
        }
    }
}

/// A `tracing` filter directive that parses (`info`, `regauth=debug`).
/// Kept as text: the filter itself is built where logging starts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LogFilter(String);

impl TryFrom<String> for LogFilter {
    type Error = String;

    fn try_from(text: String) -> Result<LogFilter, String> {
        match tracing_subscriber::EnvFilter::try_new(&text) {
            Ok(_) => Ok(LogFilter(text)),
            Err(error) => Err(format!(
                "not a tracing filter such as `info` or `regauth=debug`: {error}"
            )),
        }
    }
}

impl AsRef<str> for LogFilter {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most connections served at once by each listener (a listener's own
    /// `max_connections` overrides it); further ones wait in the backlog.
    pub max_connections: ConnectionBudget,
    /// Requests served on one connection before it is closed (the answer
    /// says `Connection: close`; clients and nginx open a new one), so no
    /// client holds one connection for ever.
    pub max_requests_per_connection: RequestsPerConnection,
    /// Time a client has to send its request headers
    /// (`header_read_timeout_secs`).
    #[serde(rename = "header_read_timeout_secs")]
    pub header_read_timeout: ServerTimeout,
    /// Time in-flight requests get to finish on shutdown
    /// (`shutdown_grace_secs`).
    #[serde(rename = "shutdown_grace_secs")]
    pub shutdown_grace: Grace,
    /// Listen backlog of every socket regauth binds.
    pub backlog: Backlog,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: ConnectionBudget::from_const(1024),
            max_requests_per_connection: RequestsPerConnection::from_const(1000),
            header_read_timeout: ServerTimeout::from_secs_const(10),
            shutdown_grace: Grace::from_secs_const(10),
            backlog: Backlog::from_const(1024),
        }
    }
}

fn default_expiration() -> TokenLifetime {
    TokenLifetime::from_secs_const(300)
}
fn default_refresh_expiration() -> RefreshLifetime {
    RefreshLifetime::from_secs_const(90 * ONE_DAY)
}
fn default_kid() -> KidFormat {
    KidFormat::Libtrust
}

//! The configuration file: JSON → validated [`Config`].
//!
//! This module only parses and checks the document itself. Files the config
//! points at (keys, htpasswd) are read by [`crate::snapshot`], which turns a
//! `Config` into everything a request needs. Relative paths are resolved
//! against the config file's directory here, so nothing later depends on the
//! process's working directory.
//!
//! The top-level document and its validation live here; the sections have
//! their own files: [`listen`] (listener addresses) and [`sections`]
//! (`token`, `users`, `auth`, `log`, `limits`).

mod listen;
mod sections;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::acl::RuleSpec;

pub use listen::{
    parse_listen_address, parse_socket_mode, ListenAddress, ListenOptions, ListenSpec,
};
pub use sections::{
    AuthMode, AuthSettings, Limits, LogFormat, LogSettings, TokenSettings, UserSpec,
};

/// Why a configuration document was refused. Messages name the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The JSON itself is broken or does not have the expected shape;
    /// serde_json's message carries the line and column.
    #[error("{0}")]
    Syntax(#[from] serde_json::Error),
    /// The JSON is well-formed but a value is not acceptable.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// Dotted path of the offending field, e.g. `token.expiration_secs`.
        field: String,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Free text for the operator; ignored. JSON has no comments, so the
    /// shipped examples explain themselves here.
    #[serde(default)]
    pub comment: Option<String>,
    /// The registry's service name: the token audience (`aud`) and the
    /// `service` of every challenge.
    pub service: String,
    /// The token issuer (`iss`); the registry's `auth.token.issuer`.
    pub issuer: String,
    /// The token endpoint URL clients are sent to (the registry's `realm`).
    pub realm: String,
    /// Where to listen: `"host:port"`, `"unix:/path"`, or an object with options.
    #[serde(default = "default_listen")]
    pub listen: Vec<ListenSpec>,
    /// Path of the token endpoint.
    #[serde(default = "default_token_path")]
    pub token_path: String,
    /// Signing key and token lifetime.
    pub token: TokenSettings,
    /// Users defined inline, by name.
    #[serde(default)]
    pub users: BTreeMap<String, UserSpec>,
    /// An htpasswd file (bcrypt lines only) whose users are added to `users`.
    #[serde(default)]
    pub htpasswd: Option<PathBuf>,
    /// Ordered access rules; the first match decides.
    #[serde(default)]
    pub acl: Vec<RuleSpec>,
    /// The nginx `auth_request` endpoint.
    #[serde(default)]
    pub auth: AuthSettings,
    /// How long a successful password check is remembered, in seconds.
    #[serde(default = "default_credential_cache_secs")]
    pub credential_cache_secs: u64,
    /// Log output settings.
    #[serde(default)]
    pub log: LogSettings,
    /// Connection limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
}

fn default_listen() -> Vec<ListenSpec> {
    vec![ListenSpec::Address("127.0.0.1:5001".into())]
}
fn default_token_path() -> String {
    "/token".into()
}
fn default_credential_cache_secs() -> u64 {
    120
}

impl Config {
    /// Parses and validates a configuration document. `base_dir` is the
    /// directory relative paths are resolved against.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = serde_json::from_str(text)?;
        config.validate()?;
        config.resolve_paths(base_dir);
        Ok(config)
    }

    fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        };
        resolve(&mut self.token.private_key);
        if let Some(path) = self.token.certificate.as_mut() {
            resolve(path);
        }
        self.token.trusted_certificates.iter_mut().for_each(resolve);
        if let Some(path) = self.htpasswd.as_mut() {
            resolve(path);
        }
        for spec in &mut self.listen {
            let address = match spec {
                ListenSpec::Address(address) => address,
                ListenSpec::Detailed(options) => &mut options.address,
            };
            if let Some(path) = address.strip_prefix("unix:") {
                if Path::new(path).is_relative() {
                    *address = format!("unix:{}", base_dir.join(path).display());
                }
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_challenge_value("service", &self.service)?;
        check_challenge_value("issuer", &self.issuer)?;
        check_challenge_value("realm", &self.realm)?;
        if !(self.realm.starts_with("http://") || self.realm.starts_with("https://")) {
            return Err(invalid("realm", "must be an http:// or https:// URL"));
        }
        if self.token.expiration_secs < 60 {
            return Err(invalid(
                "token.expiration_secs",
                "must be at least 60: clients treat shorter lifetimes as 60 seconds",
            ));
        }
        if self.token.refresh_expiration_secs < self.token.expiration_secs {
            return Err(invalid(
                "token.refresh_expiration_secs",
                "must not be shorter than token.expiration_secs",
            ));
        }
        check_path("token_path", &self.token_path)?;
        check_path("auth.path", &self.auth.path)?;
        if self.auth.path == self.token_path {
            return Err(invalid("auth.path", "must differ from token_path"));
        }
        for (field, name) in [
            ("auth.uri_header", Some(&self.auth.uri_header)),
            ("auth.method_header", Some(&self.auth.method_header)),
            ("auth.user_header", Some(&self.auth.user_header)),
            (
                "auth.trusted_user_header",
                self.auth.trusted_user_header.as_ref(),
            ),
        ] {
            if let Some(name) = name {
                http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| invalid(field, format!("`{name}` is not a valid header name")))?;
            }
        }
        if let Some(name) = &self.auth.anonymous_user {
            http::HeaderValue::from_str(name)
                .map_err(|_| invalid("auth.anonymous_user", "must be printable ASCII"))?;
        }
        if self.auth.cache_capacity == 0 {
            return Err(invalid("auth.cache_capacity", "must be at least 1"));
        }
        if self.listen.is_empty() {
            return Err(invalid("listen", "needs at least one address"));
        }
        for (index, spec) in self.listen.iter().enumerate() {
            let field = format!("listen[{index}]");
            let address = parse_listen_address(spec.address()).map_err(|e| invalid(&field, e))?;
            if let ListenSpec::Detailed(options) = spec {
                let is_unix = matches!(address, ListenAddress::Unix(_));
                if (options.mode.is_some() || options.group.is_some()) && !is_unix {
                    return Err(invalid(
                        field,
                        "`mode` and `group` apply to unix sockets only",
                    ));
                }
                if let Some(mode) = &options.mode {
                    parse_socket_mode(mode).map_err(|e| invalid(format!("{field}.mode"), e))?;
                }
            }
        }
        for (name, user) in &self.users {
            check_user_name(name).map_err(|e| invalid(format!("users.{name}"), e))?;
            if !is_bcrypt_hash(&user.password) {
                return Err(invalid(
                    format!("users.{name}.password"),
                    "must be a bcrypt hash ($2a$, $2b$ or $2y$); make one with `regauth hash-password`",
                ));
            }
        }
        if self.limits.max_connections == 0 {
            return Err(invalid("limits.max_connections", "must be at least 1"));
        }
        if self.limits.header_read_timeout_secs == 0 {
            return Err(invalid(
                "limits.header_read_timeout_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Whether `hash` looks like a bcrypt hash. The bcrypt crate checks it fully
/// when verifying; this catches other hash kinds at load time, where an
/// error can still name the field or line.
pub fn is_bcrypt_hash(hash: &str) -> bool {
    let known_prefix = ["$2a$", "$2b$", "$2y$"]
        .iter()
        .any(|prefix| hash.starts_with(prefix));
    known_prefix && hash.len() == 60 && hash.parse::<bcrypt::HashParts>().is_ok()
}

/// A user name must be usable in Basic credentials and in an HTTP header.
pub fn check_user_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a user name cannot be empty (empty means anonymous)".into());
    }
    if name.contains(':') {
        return Err("a user name cannot contain `:` (Basic credentials split on it)".into());
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a user name must be printable ASCII without spaces".into());
    }
    Ok(())
}

/// Challenge parameters are quoted strings: keep them plain.
fn check_challenge_value(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(invalid(
            field,
            "must be printable ASCII without spaces, quotes or backslashes (it is quoted in WWW-Authenticate)",
        ));
    }
    Ok(())
}

fn check_path(field: &str, path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') || path.len() < 2 || path.contains(['?', '#', ' ']) {
        return Err(invalid(field, "must be an absolute path such as /token"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KidFormat;

    const MINIMAL: &str = r#"{
        "service": "registry.test",
        "issuer": "regauth",
        "realm": "https://registry.test/token",
        "token": { "algorithm": "ES256", "private_key": "keys/token.key" }
    }"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/regauth"))
    }

    #[test]
    fn minimal_config_gets_defaults_and_absolute_paths() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.token.expiration_secs, 300);
        assert_eq!(config.token.kid, KidFormat::Libtrust);
        assert_eq!(config.token_path, "/token");
        assert_eq!(config.auth.path, "/auth");
        assert_eq!(config.auth.mode, AuthMode::Token);
        assert_eq!(
            config.token.private_key,
            PathBuf::from("/etc/regauth/keys/token.key")
        );
        assert_eq!(config.listen, default_listen());
    }

    #[test]
    fn unknown_field_is_named_with_its_position() {
        let text = MINIMAL.replace("\"issuer\"", "\"isuer\"");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("isuer"), "{message}");
        assert!(message.contains("line 3"), "{message}");
    }

    #[test]
    fn short_expiration_is_refused() {
        let text = MINIMAL.replace(
            "\"private_key\": \"keys/token.key\"",
            "\"private_key\": \"k\", \"expiration_secs\": 30",
        );
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("token.expiration_secs"), "{message}");
    }

    #[test]
    fn non_bcrypt_password_is_refused_with_the_user_named() {
        let text = MINIMAL.replace(
            "\"token\"",
            "\"users\": {\"bob\": {\"password\": \"$apr1$abc$def\"}}, \"token\"",
        );
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("users.bob.password"), "{message}");
    }

    #[test]
    fn listen_forms_and_relative_unix_paths() {
        let text = MINIMAL.replace(
            "\"token\"",
            r#""listen": ["[::1]:5001", {"address": "unix:run/r.sock", "trusted": true, "mode": "0660"}], "token""#,
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.listen[1].address(), "unix:/etc/regauth/run/r.sock");
        assert!(config.listen[1].trusted());
        assert!(!config.listen[0].trusted());
        let bad = MINIMAL.replace("\"token\"", r#""listen": ["localhost:80"], "token""#);
        assert!(parse(&bad).unwrap_err().to_string().contains("listen[0]"));
        let tcp_mode = MINIMAL.replace(
            "\"token\"",
            r#""listen": [{"address": "127.0.0.1:1", "mode": "0660"}], "token""#,
        );
        assert!(parse(&tcp_mode).is_err());
    }

    #[test]
    fn realm_must_be_plain_and_a_url() {
        let quoted = MINIMAL.replace("https://registry.test/token", "https://r/\\\"x");
        assert!(parse(&quoted).unwrap_err().to_string().contains("realm"));
        let relative = MINIMAL.replace("https://registry.test/token", "/token");
        assert!(parse(&relative).unwrap_err().to_string().contains("realm"));
    }

    #[test]
    fn bcrypt_detection() {
        assert!(is_bcrypt_hash(
            "$2y$10$iRxq4as0aXEICViLH46Uhu.TuA/9/2EEWcq.d5vwRDBJMy3xv1gFq"
        ));
        assert!(!is_bcrypt_hash("$2y$10$short"));
        assert!(!is_bcrypt_hash("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g="));
    }
}

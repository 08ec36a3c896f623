//! The configuration file: JSON → validated [`Config`].
//!
//! This module only parses and checks the document itself. Files the config
//! points at (keys, htpasswd) are read by [`crate::snapshot`], which turns a
//! `Config` into everything a request needs. Relative paths are resolved
//! against the config file's directory here, so nothing later depends on the
//! process's working directory.
//!
//! Parse, don't validate: every value is deserialized straight into the
//! type that is used (a [`ListenAddress`], an `http::HeaderName`, a bounded
//! [`Seconds`]), which refuses what it cannot hold with a message that names
//! the field; what remains for [`validate`] are the rules that relate
//! several fields, or text that is kept as text.
//!
//! The top-level document lives here; the sections have their own files:
//! [`listen`] (listeners, their front proxy, and what `check-config` warns
//! about their trust), [`sections`] (`token`, `users`, `auth`, `log`,
//! `limits`, one type per section), [`ldap`] (the directory),
//! [`federation`] (trusted OIDC issuers), [`login_limits`], [`registry`]
//! (what verifies the tokens, for warnings), [`values`] (the self-checking
//! value types). A new feature adds its section type and one field below.

mod federation;
mod ldap;
mod listen;
mod login_limits;
mod registry;
mod sections;
mod validate;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::acl::RuleSpec;

pub use federation::FederationSpec;
pub use ldap::{AttributeName, FilterTemplate, GroupSearch, LdapSettings, LdapUrl, Precedence};
pub use listen::{Front, ListenAddress, Listener, SocketMode};
pub use login_limits::{LoginLimits, QueueLimits};
pub use registry::{registry_warnings, RegistryKeys, RegistrySettings, RegistryVersion, Signing};
pub use sections::{
    AuthMode, AuthSettings, Backlog, CacheCapacity, ConnectionBudget, Grace, Leeway, Limits,
    LogFilter, LogFormat, LogSettings, RefreshLifetime, RequestsPerConnection, ServerTimeout,
    TokenLifetime, TokenSettings, UserSpec,
};
pub use validate::{check_user_name, is_bcrypt_hash};
pub use values::{Count, HeaderField, Seconds, ONE_DAY};

/// Why a configuration document was refused. Messages name the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The JSON itself is broken or does not have the expected shape at
    /// the top; serde_json's message carries the line and column.
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
    pub listen: Vec<Listener>,
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
    /// The API token file (`regauth token create|list|revoke` edit it);
    /// none: API tokens are off.
    #[serde(default)]
    pub api_tokens: Option<PathBuf>,
    /// OIDC issuers whose ID tokens log in (keyless CI).
    #[serde(default)]
    pub federation: Vec<FederationSpec>,
    /// The nginx `auth_request` endpoint.
    #[serde(default)]
    pub auth: AuthSettings,
    /// A directory whose users may sign in, their groups feeding the ACL.
    #[serde(default)]
    pub ldap: Option<LdapSettings>,
    /// How long a successful password check is remembered
    /// (`credential_cache_secs`, at most a day).
    #[serde(rename = "credential_cache_secs", default = "default_credential_cache")]
    pub credential_cache: Seconds<0, ONE_DAY>,
    /// Log output settings.
    #[serde(default)]
    pub log: LogSettings,
    /// Connection limits and timeouts.
    #[serde(default)]
    pub limits: Limits,
    /// Failed-login limiter and password-check queue.
    #[serde(default)]
    pub login_limits: LoginLimits,
    /// The registry that verifies tokens, if known: only for `check-config`'s warnings.
    #[serde(default)]
    pub registry: Option<RegistrySettings>,
}

fn default_listen() -> Vec<Listener> {
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 5001));
    vec![Listener::at(ListenAddress::Tcp(loopback))]
}
fn default_token_path() -> String {
    "/token".into()
}
fn default_credential_cache() -> Seconds<0, ONE_DAY> {
    Seconds::from_secs_const(120)
}

impl Config {
    /// Parses and validates a configuration document. `base_dir` is the
    /// directory relative paths are resolved against.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let document = &mut serde_json::Deserializer::from_str(text);
        let mut config: Config = serde_path_to_error::deserialize(document).map_err(|error| {
            let field = error.path().to_string();
            let cause = error.into_inner();
            // A value refused by its type names its field; a broken
            // document, or a top-level problem, has only a position.
            if cause.is_data() && field != "." {
                let message = cause.to_string();
                let position = format!(" at line {} column {}", cause.line(), cause.column());
                let reason = message.strip_suffix(&position).unwrap_or(&message);
                invalid(
                    field,
                    format!(
                        "{reason} (line {}, column {})",
                        cause.line(),
                        cause.column()
                    ),
                )
            } else {
                ConfigError::Syntax(cause)
            }
        })?;
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
        if let Some(path) = self.api_tokens.as_mut() {
            resolve(path);
        }
        for entry in &mut self.federation {
            if let Some(path) = entry.ca_file.as_mut() {
                resolve(path);
            }
        }
        if let Some(ldap) = self.ldap.as_mut() {
            resolve(&mut ldap.bind_password_file);
            if let Some(path) = ldap.ca_file.as_mut() {
                resolve(path);
            }
        }
        for listener in &mut self.listen {
            if let ListenAddress::Unix(path) = &mut listener.address {
                resolve(path);
            }
        }
    }

    /// Every file this config is built from, `config_path` first: what a
    /// snapshot reads and what the reloader watches. Only lists them, so it
    /// works for a config whose files are missing or broken too.
    pub fn source_files(&self, config_path: &Path) -> Vec<PathBuf> {
        let mut files = vec![config_path.to_owned()];
        files.extend(self.htpasswd.clone());
        files.push(self.token.private_key.clone());
        files.extend(self.token.certificate.clone());
        files.extend(self.token.trusted_certificates.iter().cloned());
        files.extend(self.api_tokens.clone());
        files.extend(
            self.federation
                .iter()
                .filter_map(|entry| entry.ca_file.clone()),
        );
        if let Some(ldap) = &self.ldap {
            files.push(ldap.bind_password_file.clone());
            files.extend(ldap.ca_file.clone());
        }
        files
    }

    /// The settings that are used once, at start, and so cannot change on a
    /// reload, whose values differ between `self` and `other`; by field name.
    pub fn restart_only_differences(&self, other: &Config) -> Vec<&'static str> {
        let (a, b) = (self, other);
        [
            ("listen", a.listen != b.listen),
            (
                "credential_cache_secs",
                a.credential_cache != b.credential_cache,
            ),
            (
                "auth.cache_capacity",
                a.auth.cache_capacity != b.auth.cache_capacity,
            ),
            (
                "limits.max_connections",
                a.limits.max_connections != b.limits.max_connections,
            ),
            ("limits.backlog", a.limits.backlog != b.limits.backlog),
            (
                "login_limits.table_capacity",
                a.login_limits.table_capacity != b.login_limits.table_capacity,
            ),
            (
                "login_limits.bcrypt_*",
                a.login_limits.queue != b.login_limits.queue,
            ),
            ("log.format", a.log.format != b.log.format),
            ("log.level", a.log.level != b.log.level),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect()
    }
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
        assert_eq!(config.token.expiration.secs(), 300);
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
        assert_eq!(
            config.listen[1].address,
            ListenAddress::Unix("/etc/regauth/run/r.sock".into())
        );
        assert!(config.listen[1].trusted);
        assert!(!config.listen[0].trusted);
        for (listen, field) in [
            (
                r#"["localhost:80"]"#,
                "field `listen[0]`: `localhost:80` is neither",
            ),
            (
                r#"["[::1]:1", {"address": "127.0.0.1:1", "mode": "0660"}]"#,
                "field `listen[1]`: `mode` and `group` apply to unix sockets only",
            ),
            (
                r#"[{"address": "unix:/r", "mode": "0999"}]"#,
                "field `listen[0].mode`: `0999` is not an octal file mode",
            ),
        ] {
            let bad = MINIMAL.replace("\"token\"", &format!(r#""listen": {listen}, "token""#));
            let message = parse(&bad).unwrap_err().to_string();
            assert!(message.starts_with(field), "{message}");
        }
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

    #[test]
    fn source_files_are_listed_without_being_read() {
        let text = MINIMAL.replace(
            "\"token\": { \"algorithm\": \"ES256\", \"private_key\": \"keys/token.key\" }",
            r#""htpasswd": "more.htpasswd",
               "token": { "algorithm": "ES256", "private_key": "keys/token.key",
                          "certificate": "/pki/token.crt", "trusted_certificates": ["old.crt"] }"#,
        );
        let config = parse(&text).unwrap();
        let files = config.source_files(Path::new("/etc/regauth/regauth.json"));
        let expected = [
            "/etc/regauth/regauth.json",
            "/etc/regauth/more.htpasswd",
            "/etc/regauth/keys/token.key",
            "/pki/token.crt",
            "/etc/regauth/old.crt",
        ];
        assert_eq!(files, expected.map(PathBuf::from));
        let minimal = parse(MINIMAL).unwrap().source_files(Path::new("c.json"));
        assert_eq!(
            minimal,
            [
                PathBuf::from("c.json"),
                "/etc/regauth/keys/token.key".into()
            ]
        );
    }

    #[test]
    fn restart_only_differences_name_each_changed_field() {
        let old = parse(MINIMAL).unwrap();
        assert!(old.restart_only_differences(&old).is_empty());
        let text = MINIMAL.replace(
            "\"token\"",
            r#""credential_cache_secs": 60, "log": {"level": "debug"},
               "limits": {"max_connections": 10}, "acl": [{"actions": ["pull"]}], "token""#,
        );
        let new = parse(&text).unwrap();
        // The ACL reloads; the others wait for a restart.
        assert_eq!(
            old.restart_only_differences(&new),
            [
                "credential_cache_secs",
                "limits.max_connections",
                "log.level"
            ]
        );
    }
}

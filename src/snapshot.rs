//! One immutable [`Snapshot`]: the config plus everything derived from the
//! files it names (users, compiled ACL, keys). Requests load one snapshot
//! and use only it; hot reload builds a new one and swaps it in whole, so a
//! request never sees half of an old config and half of a new one.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::acl::{Acl, AclError};
use crate::config::{registry_warnings, AuthMode, Config, ConfigError, Signing};
use crate::identity::api_tokens::{ApiTokens, TokenFileError};
use crate::identity::federation::{Federation, FederationLoadError};
use crate::identity::ldap::{Directory, DirectoryLoadError};
use crate::keys::{self, KeyError, SigningKey, VerifyingKey};
use crate::users::{parse_htpasswd, UserError, Users};

/// Why a configuration could not be loaded. Every message names the file.
/// The cause is part of the message, not a `source()`, so that printing the
/// error chain (`{:#}`) does not say it twice.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read (or written, for a generated key).
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// The config document is invalid.
    #[error("{}: {cause}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong in it.
        cause: ConfigError,
    },
    /// The htpasswd file or the user table is invalid.
    #[error("{}: {cause}", path.display())]
    Users {
        /// The file with the problem.
        path: PathBuf,
        /// What is wrong.
        cause: UserError,
    },
    /// The ACL does not compile.
    #[error("{}: {cause}", path.display())]
    Acl {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        cause: AclError,
    },
    /// A key or certificate is unusable.
    #[error("{}: {cause}", path.display())]
    Key {
        /// The key or certificate file.
        path: PathBuf,
        /// What is wrong.
        cause: KeyError,
    },
    /// The API token file is unusable.
    #[error(transparent)]
    ApiTokens(#[from] TokenFileError),
    /// The `federation` section or a `ca_file` it names is unusable.
    #[error("{}: {cause}", path.display())]
    Federation {
        /// The config file.
        path: PathBuf,
        /// What is wrong.
        cause: FederationLoadError,
    },
    /// A file of the `ldap` section is unusable (the message names it).
    #[error("{0}")]
    Directory(#[from] DirectoryLoadError),
    /// The private key is readable by other users.
    #[error(
        "{}: private key is accessible by group or others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Everything a request needs, derived from one version of the config.
pub struct Snapshot {
    /// The validated config, paths made absolute.
    pub config: Config,
    /// Inline and htpasswd users.
    pub users: Users,
    /// The compiled access rules.
    pub acl: Acl,
    /// The key tokens are signed with.
    pub signing_key: SigningKey,
    /// Keys whose tokens are accepted: the signing key first, then the
    /// rotation set.
    pub verifying_keys: Vec<VerifyingKey>,
    /// Scoped API tokens from the `api_tokens` file (empty without one).
    pub api_tokens: ApiTokens,
    /// Trusted OIDC issuers (keyless CI).
    pub federation: Federation,
    /// The LDAP directory client, when the config has an `ldap` section.
    pub directory: Option<Arc<Directory>>,
    /// Files this snapshot was built from; the reloader watches them.
    pub source_files: Vec<PathBuf>,
    /// Which config this is: 1 for the one loaded at start, then one more
    /// per successful reload. Set by [`crate::state::State`]; part of the
    /// token cache key, so a verification made under an older snapshot can
    /// never be found under a newer one.
    pub generation: u64,
}

fn read(path: &Path) -> Result<String, LoadError> {
    fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        cause: source,
    })
}

/// What loading does about key files missing under `token.generate_if_missing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingKeys {
    /// Create them (`serve` and reloads).
    Create,
    /// Make a throwaway pair in memory and write nothing (`check-config`,
    /// which must not change the files it checks).
    Preview,
}

/// Reads and validates the config file alone, not the files it names: for
/// a reload that failed, this still tells which files to watch.
pub fn read_config(config_path: &Path) -> Result<Config, LoadError> {
    let text = read(config_path)?;
    let base_dir = config_path.parent().unwrap_or(Path::new("."));
    Config::parse(&text, base_dir).map_err(|source| LoadError::Config {
        path: config_path.to_owned(),
        cause: source,
    })
}

impl Snapshot {
    /// Reads and validates the config file and every file it names,
    /// creating missing keys where the config asks for that.
    /// Blocking: call it from a blocking thread once the runtime runs.
    pub fn load(config_path: &Path) -> Result<Snapshot, LoadError> {
        Snapshot::load_with(config_path, MissingKeys::Create)
    }

    /// [`Snapshot::load`], choosing what happens to missing keys.
    pub fn load_with(config_path: &Path, missing_keys: MissingKeys) -> Result<Snapshot, LoadError> {
        let config = read_config(config_path)?;
        let source_files = config.source_files(config_path);

        let htpasswd_entries = match &config.htpasswd {
            Some(path) => parse_htpasswd(&read(path)?).map_err(|source| LoadError::Users {
                path: path.clone(),
                cause: source,
            })?,
            None => Vec::new(),
        };
        let users =
            Users::build(&config.users, htpasswd_entries).map_err(|source| LoadError::Users {
                path: config
                    .htpasswd
                    .clone()
                    .unwrap_or_else(|| config_path.to_owned()),
                cause: source,
            })?;
        let acl = Acl::compile(&config.acl).map_err(|source| LoadError::Acl {
            path: config_path.to_owned(),
            cause: source,
        })?;

        let api_tokens = match &config.api_tokens {
            Some(path) => ApiTokens::load(path)?,
            None => ApiTokens::default(),
        };
        let federation =
            Federation::load(&config.federation).map_err(|cause| LoadError::Federation {
                path: config_path.to_owned(),
                cause,
            })?;

        let signing_key = load_signing_key(&config, missing_keys)?;
        let mut verifying_keys = vec![signing_key.verifying.clone()];
        for path in &config.token.trusted_certificates {
            let keys = VerifyingKey::from_pem(&read(path)?).map_err(|source| LoadError::Key {
                path: path.clone(),
                cause: source,
            })?;
            verifying_keys.extend(keys);
        }

        let directory = match &config.ldap {
            Some(settings) => Some(Arc::new(Directory::load(settings)?)),
            None => None,
        };

        Ok(Snapshot {
            config,
            users,
            acl,
            signing_key,
            verifying_keys,
            api_tokens,
            federation,
            directory,
            source_files,
            generation: 0,
        })
    }

    /// A one-screen description for `check-config` and the start-up log.
    pub fn summary(&self) -> String {
        let config = &self.config;
        let mut out = String::new();
        let _ = writeln!(out, "service:   {}", config.service);
        let _ = writeln!(out, "issuer:    {}", config.issuer);
        let _ = writeln!(out, "realm:     {}", config.realm);
        for listener in &config.listen {
            let trusted = if listener.trusted { " (trusted)" } else { "" };
            let _ = writeln!(out, "listen:    {}{trusted}", listener.address);
            for warning in listener.trust_warnings(&config.auth) {
                let _ = writeln!(out, "warning:   {warning}");
            }
        }
        let _ = writeln!(
            out,
            "token:     {} {}, kid {}, expires in {}s, endpoint {}",
            self.signing_key.algorithm,
            config.token.private_key.display(),
            self.signing_key.kid,
            config.token.expiration.secs(),
            config.token_path
        );
        let signing = Signing {
            sends_x5c: self.signing_key.x5c.is_some(),
            kid: config.token.kid,
            algorithm: self.signing_key.algorithm,
        };
        for warning in registry_warnings(config.registry.as_ref(), signing) {
            let _ = writeln!(out, "warning:   {warning}");
        }
        let _ = writeln!(
            out,
            "verify:    {} key(s) accepted by {}",
            self.verifying_keys.len(),
            config.auth.path
        );
        let mode = match config.auth.mode {
            AuthMode::Token => "token",
            AuthMode::Basic => "basic",
        };
        let _ = writeln!(out, "auth mode: {mode}");
        let _ = writeln!(out, "users:     {}", self.users.len());
        let costs = self.users.bcrypt_costs();
        if costs.len() > 1 {
            let listed: Vec<String> = costs.keys().map(u32::to_string).collect();
            let _ = writeln!(
                out,
                "warning:   users' bcrypt costs differ ({}): response times can tell them apart; \
                 hash every password at one cost",
                listed.join(", ")
            );
        }
        if let Some(ldap) = &config.ldap {
            let _ = writeln!(out, "{}", ldap_summary(ldap));
            if !ldap.uses_tls() {
                let _ = writeln!(
                    out,
                    "warning:   ldap.url is plain ldap:// without starttls: passwords cross the \
                     network in clear text"
                );
            }
        }
        let _ = writeln!(out, "acl:       {} rule(s)", self.acl.len());
        if self.acl.has_reference_rules() {
            let _ = writeln!(
                out,
                "warning:   ACL rules with \"tags\" or \"digests\" are enforced only by {} (nginx \
                 auth_request in front of the registry): a token names no tag, so a registry that \
                 verifies regauth's tokens itself lets any token with push write any tag",
                config.auth.path
            );
        }
        if let Some(path) = &config.api_tokens {
            let _ = writeln!(
                out,
                "tokens:    {} API token(s) in {}",
                self.api_tokens.len(),
                path.display()
            );
        }
        for issuer in self.federation.issuers() {
            let _ = writeln!(out, "federated: {issuer}");
        }
        out
    }
}

fn ldap_summary(ldap: &crate::config::LdapSettings) -> String {
    let transport = match (ldap.url.is_ldaps(), ldap.starttls) {
        (true, _) => "LDAPS",
        (false, true) => "StartTLS",
        (false, false) => "plain",
    };
    let groups = match &ldap.group_search {
        Some(search) => format!("groups searched under {}", search.base),
        None => format!("groups from {}", ldap.group_attribute.as_str()),
    };
    let precedence = match ldap.precedence {
        crate::config::Precedence::Files => "file users first",
        crate::config::Precedence::Ldap => "directory users first",
    };
    format!(
        "ldap:      {} ({transport}), users under {}, {groups}, {precedence}, timeout {}s, \
         at most {} connection(s)",
        ldap.url, ldap.user_base, ldap.timeout_secs, ldap.max_connections
    )
}

fn load_signing_key(config: &Config, missing_keys: MissingKeys) -> Result<SigningKey, LoadError> {
    let settings = &config.token;
    let key_path = &settings.private_key;
    if settings.generate_if_missing && !key_path.exists() {
        match missing_keys {
            MissingKeys::Create => generate_key_files(config)?,
            MissingKeys::Preview => return preview_signing_key(config),
        }
    }
    check_key_permissions(key_path)?;
    let key_pem = read(key_path)?;
    let certificate_pem = match &settings.certificate {
        Some(path) => Some(read(path)?),
        None => None,
    };
    SigningKey::from_pem(
        &key_pem,
        certificate_pem.as_deref(),
        settings.algorithm,
        settings.kid,
    )
    .map_err(|source| LoadError::Key {
        path: key_path.clone(),
        cause: source,
    })
}

/// A throwaway key of the configured kind, so that everything else can be
/// checked before the first `serve` creates the real one.
fn preview_signing_key(config: &Config) -> Result<SigningKey, LoadError> {
    let settings = &config.token;
    let key_error = |source| LoadError::Key {
        path: settings.private_key.clone(),
        cause: source,
    };
    let (key_pem, certificate_pem) =
        keys::generate(settings.algorithm, &config.service).map_err(key_error)?;
    let certificate_pem = settings
        .certificate
        .as_ref()
        .map(|_| certificate_pem.as_str());
    SigningKey::from_pem(&key_pem, certificate_pem, settings.algorithm, settings.kid)
        .map_err(key_error)
}

/// Creates a development key pair next to the config, refusing to touch a
/// certificate that exists without its key (that would be a mismatch).
fn generate_key_files(config: &Config) -> Result<(), LoadError> {
    let settings = &config.token;
    let key_path = &settings.private_key;
    let key_error = |cause| LoadError::Key {
        path: key_path.clone(),
        cause,
    };
    let certificate_path = settings.certificate.as_ref();
    if let Some(cert_path) = certificate_path.filter(|path| path.exists()) {
        return Err(key_error(KeyError::CertificateWithoutKey {
            certificate: cert_path.clone(),
        }));
    }
    let (key_pem, certificate_pem) =
        keys::generate(settings.algorithm, &config.service).map_err(key_error)?;
    if let Some(cert_path) = certificate_path {
        write_new_file(cert_path, &certificate_pem, 0o644)?;
    }
    write_new_file(key_path, &key_pem, 0o600)?;
    tracing::warn!(
        key = %key_path.display(),
        "generated a new signing key because token.generate_if_missing is set; \
         give the registry the certificate and use real keys in production"
    );
    Ok(())
}

/// Writes a file that must not exist yet, with the given mode from the start
/// (a private key must never be readable by others, not even briefly).
pub fn write_new_file(path: &Path, contents: &str, mode: u32) -> Result<(), LoadError> {
    use std::io::Write;
    let io_error = |source| LoadError::Io {
        path: path.to_owned(),
        cause: source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.write_all(contents.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

fn check_key_permissions(path: &Path) -> Result<(), LoadError> {
    let metadata = fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        cause: source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LoadError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config in a fresh directory whose key is previewed, not written.
    fn preview(listen: serde_json::Value) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({
            "service": "registry.test",
            "issuer": "regauth",
            "realm": "https://registry.test/token",
            "listen": listen,
            "token": { "algorithm": "ES256", "private_key": "token.key", "generate_if_missing": true },
            "auth": { "trusted_user_header": "X-Proxy-User" },
        });
        let path = dir.path().join("regauth.json");
        fs::write(&path, config.to_string()).unwrap();
        Snapshot::load_with(&path, MissingKeys::Preview).unwrap()
    }

    #[test]
    fn a_trusted_tcp_listener_gets_a_warning_line() {
        let snapshot = preview(serde_json::json!([
            "127.0.0.1:5001",
            { "address": "127.0.0.1:5002", "trusted": true },
            { "address": "unix:/run/regauth.sock", "trusted": true },
        ]));
        let summary = snapshot.summary();
        let warnings: Vec<&str> = summary
            .lines()
            .filter(|line| line.starts_with("warning:"))
            .collect();
        assert_eq!(warnings.len(), 1, "{summary}");
        assert!(
            warnings[0].contains("127.0.0.1:5002 is trusted")
                && warnings[0].contains("X-Proxy-User"),
            "{summary}"
        );
    }

    #[test]
    fn untrusted_tcp_and_trusted_unix_listeners_get_no_warning() {
        let snapshot = preview(serde_json::json!([
            "127.0.0.1:5001",
            { "address": "unix:/run/regauth.sock", "trusted": true },
        ]));
        assert!(
            !snapshot.summary().contains("warning:"),
            "{}",
            snapshot.summary()
        );
        assert_eq!(snapshot.source_files.len(), 2);
    }

    /// A certificate without its key: generating would make a mismatched
    /// pair. The refusal says so (it used to be reported as "not found").
    #[test]
    fn generate_if_missing_refuses_beside_an_orphan_certificate_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("token.crt"),
            "certificate the registry trusts",
        )
        .unwrap();
        let config = serde_json::json!({
            "service": "registry.test",
            "issuer": "regauth",
            "realm": "https://registry.test/token",
            "listen": ["127.0.0.1:5001"],
            "token": { "algorithm": "ES256", "private_key": "token.key",
                       "certificate": "token.crt", "generate_if_missing": true },
        });
        let path = dir.path().join("regauth.json");
        fs::write(&path, config.to_string()).unwrap();
        let Err(err) = Snapshot::load_with(&path, MissingKeys::Create) else {
            panic!("a key was generated beside an orphan certificate");
        };
        assert!(
            matches!(
                &err,
                LoadError::Key {
                    cause: KeyError::CertificateWithoutKey { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("token.crt exists"), "{message}");
        assert!(!message.to_lowercase().contains("not found"), "{message}");
        assert!(!dir.path().join("token.key").exists());
    }
}

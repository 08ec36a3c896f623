//! A directory (OpenLDAP, Active Directory, …) as a source of users and
//! groups, through the `ldap3` client (tokio, rustls).
//!
//! A login is: bind as the service account, search the user (the presented
//! name escaped per RFC 4515), read its groups (the `memberOf` values, or a
//! group search), then bind as the user's DN with the presented password.
//! The account regauth uses from then on is the directory's spelling of the
//! name (`uid` / `sAMAccountName`), since the directory compares names
//! case-insensitively: `Alice` and `alice` are one person and one account.
//!
//! Bounds: at most `max_connections` connections at once (a semaphore in
//! front of a small pool of open connections), and one whole login —
//! waiting for a connection included — within `timeout_secs`; past it the
//! directory counts as unavailable (503 with `Retry-After`, never 401, so
//! clients do not think the password is wrong). An empty password never
//! reaches a bind: most directories take it as an anonymous bind and
//! answer "success".
//!
//! Caching successful logins, the order against file users and the login
//! limiter belong to the identity entry point ([`crate::identity`]).

use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::files::CredentialChecker;
use super::{Identity, IdentityError, Source};
use crate::config::LdapSettings;

/// Most groups kept for one user; a directory listing more is cut here,
/// with a warning, so one entry cannot grow every header and token.
pub const MAX_GROUPS: usize = 256;

/// LDAP result codes (RFC 4511, appendix A) that regauth tells apart.
mod rc {
    pub const SUCCESS: u32 = 0;
    pub const TIME_LIMIT_EXCEEDED: u32 = 3;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const BUSY: u32 = 51;
    pub const UNAVAILABLE: u32 = 52;
    pub const ADMIN_LIMIT_EXCEEDED: u32 = 11;
    pub const OTHER: u32 = 80;
}

/// Why the directory files named in the config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryLoadError {
    /// A file could not be read.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        cause: std::io::Error,
    },
    /// A file was read but is not usable.
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file (or the config, for the system roots).
        path: PathBuf,
        /// What is wrong; never the secret itself.
        reason: String,
    },
}

/// Why a directory login did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The user filter matched no entry.
    #[error("no such user in the directory")]
    UnknownUser,
    /// The user's bind was refused with invalidCredentials.
    #[error("wrong password for the directory user")]
    WrongPassword,
    /// The directory knows the user but the login cannot go on: an
    /// ambiguous filter, a disabled account, an unusable account name.
    #[error("directory login refused: {0}")]
    Refused(String),
    /// The directory could not be asked: down, slow, misconfigured
    /// service account. Not the client's fault.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

impl DirectoryError {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            DirectoryError::UnknownUser => "unknown_user",
            DirectoryError::WrongPassword => "wrong_password",
            DirectoryError::Refused(_) => "refused",
            DirectoryError::Unavailable(_) => "unavailable",
        }
    }
}

/// A user the directory vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The account name in the directory's spelling.
    pub account: String,
    /// The user's entry.
    pub dn: String,
    /// Group names, in the directory's spelling, sorted, without duplicates.
    pub groups: Vec<String>,
}

/// The directory client of one config version: settings, the service
/// account's password, TLS roots, and its bounded pool of connections.
pub struct Directory {
    settings: LdapSettings,
    bind_password: Zeroizing<String>,
    /// Present when the connection is encrypted (LDAPS or StartTLS).
    tls: Option<Arc<ClientConfig>>,
    /// One permit per connection that may be open at once.
    slots: Semaphore,
    /// Open connections between logins; never more than `max_connections`.
    idle: Mutex<Vec<Ldap>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.settings.url.as_str())
            .field("bind_dn", &self.settings.bind_dn)
            .finish_non_exhaustive()
    }
}

/// How one attempt on one connection failed.
enum Failure {
    /// The connection broke (or never was): a reused connection may just
    /// have been closed by the server, so one fresh try is worth it.
    Connection(String),
    /// A definite answer.
    Outcome(DirectoryError),
}

impl From<DirectoryError> for Failure {
    fn from(error: DirectoryError) -> Failure {
        Failure::Outcome(error)
    }
}

impl Directory {
    /// Reads the files the settings name (the service password, the CA
    /// certificates) and builds the client. Blocking; opens no connection.
    pub fn load(settings: &LdapSettings) -> Result<Directory, DirectoryLoadError> {
        let path = &settings.bind_password_file;
        let text = fs::read_to_string(path).map_err(|cause| DirectoryLoadError::Io {
            path: path.clone(),
            cause,
        })?;
        let text = Zeroizing::new(text);
        let password = text.strip_suffix('\n').unwrap_or(&text);
        let password = password.strip_suffix('\r').unwrap_or(password);
        if password.is_empty() || password.contains('\n') {
            return Err(DirectoryLoadError::Invalid {
                path: path.clone(),
                reason: "must hold the service account's password on one non-empty line \
                         (an empty password would bind anonymously)"
                    .into(),
            });
        }
        let tls = match settings.uses_tls() {
            true => Some(tls_config(settings.ca_file.as_deref())?),
            false => None,
        };
        Ok(Directory::new(
            settings.clone(),
            Zeroizing::new(password.to_owned()),
            tls,
        ))
    }

    /// A client from parts already loaded.
    pub fn new(
        settings: LdapSettings,
        bind_password: Zeroizing<String>,
        tls: Option<Arc<ClientConfig>>,
    ) -> Directory {
        let slots = Semaphore::new(settings.max_connections);
        Directory {
            settings,
            bind_password,
            tls,
            slots,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// The settings this client was built from.
    pub fn settings(&self) -> &LdapSettings {
        &self.settings
    }

    /// Logs `name` in with `password`: the user's entry, account name and
    /// groups, or why not. Bounded by `timeout_secs` as a whole.
    pub async fn login(&self, name: &str, password: &str) -> Result<DirectoryUser, DirectoryError> {
        // Never bind with an empty password (an anonymous bind "succeeds"),
        // and never search for an empty name.
        if password.is_empty() {
            return Err(DirectoryError::WrongPassword);
        }
        if name.is_empty() {
            return Err(DirectoryError::UnknownUser);
        }
        let started = Instant::now();
        let timeout = self.settings.timeout();
        let outcome = tokio::time::timeout(timeout, self.login_pooled(name, password))
            .await
            .unwrap_or_else(|_| {
                Err(DirectoryError::Unavailable(format!(
                    "no answer within {}s (ldap.timeout_secs)",
                    timeout.as_secs()
                )))
            });
        let label = match &outcome {
            Ok(_) => "ok",
            Err(error) => error.label(),
        };
        metrics::counter!("regauth_ldap_logins_total", "result" => label).increment(1);
        metrics::histogram!("regauth_ldap_login_seconds").record(started.elapsed().as_secs_f64());
        if let Err(DirectoryError::Unavailable(reason)) = &outcome {
            tracing::warn!(url = %self.settings.url, reason, "LDAP directory unavailable");
        }
        outcome
    }

    async fn login_pooled(
        &self,
        name: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| DirectoryError::Unavailable("connection pool closed".into()))?;
        if let Some(mut ldap) = self.take_idle() {
            match self.login_on(&mut ldap, name, password).await {
                Err(Failure::Connection(reason)) => {
                    tracing::debug!(reason, "a pooled LDAP connection failed; opening a new one");
                }
                other => return self.settle(ldap, other),
            }
        }
        let mut ldap = self.connect().await.map_err(DirectoryError::Unavailable)?;
        let outcome = self.login_on(&mut ldap, name, password).await;
        self.settle(ldap, outcome)
    }

    /// Keeps a connection that ended a login cleanly; drops a broken one.
    fn settle(
        &self,
        ldap: Ldap,
        outcome: Result<DirectoryUser, Failure>,
    ) -> Result<DirectoryUser, DirectoryError> {
        match outcome {
            Ok(user) => {
                self.give_back(ldap);
                Ok(user)
            }
            Err(Failure::Outcome(error)) => {
                if !matches!(error, DirectoryError::Unavailable(_)) {
                    self.give_back(ldap);
                }
                Err(error)
            }
            Err(Failure::Connection(reason)) => Err(DirectoryError::Unavailable(reason)),
        }
    }

    fn take_idle(&self) -> Option<Ldap> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        while let Some(mut ldap) = idle.pop() {
            if !ldap.is_closed() {
                return Some(ldap);
            }
        }
        None
    }

    fn give_back(&self, ldap: Ldap) {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if idle.len() < self.settings.max_connections {
            idle.push(ldap);
        }
    }

    async fn connect(&self) -> Result<Ldap, String> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout())
            .set_starttls(self.settings.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let (connection, ldap) = LdapConnAsync::with_settings(settings, self.settings.url.as_str())
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.settings.url))?;
        metrics::counter!("regauth_ldap_connections_opened_total").increment(1);
        // The connection's I/O runs in its own task; it ends when the
        // server closes the socket or the last `Ldap` handle is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.drive().await {
                tracing::debug!(%error, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// One login on one connection: service bind, user search, group
    /// search, user bind.
    async fn login_on(
        &self,
        ldap: &mut Ldap,
        name: &str,
        password: &str,
    ) -> Result<DirectoryUser, Failure> {
        let settings = &self.settings;
        let service = ldap
            .simple_bind(&settings.bind_dn, &self.bind_password)
            .await
            .map_err(connection_failure)?;
        if service.rc != rc::SUCCESS {
            return Err(DirectoryError::Unavailable(format!(
                "the service account's bind was refused (rc {}: {}); check ldap.bind_dn and \
                 ldap.bind_password_file",
                service.rc,
                printable(&service.text)
            ))
            .into());
        }

        let filter = settings.user_filter.fill(&[("username", name)]);
        let attributes = [
            settings.username_attribute.as_str(),
            settings.group_attribute.as_str(),
        ];
        let entries = self
            .search(ldap, &settings.user_base, &filter, &attributes, 2)
            .await?;
        let entry = match <[SearchEntry; 1]>::try_from(entries) {
            Ok([entry]) => entry,
            Err(entries) if entries.is_empty() => return Err(DirectoryError::UnknownUser.into()),
            Err(_) => {
                return Err(DirectoryError::Refused(
                    "ldap.user_filter matches more than one entry for this name".into(),
                )
                .into())
            }
        };
        let account = account_name(&entry, settings.username_attribute.as_str(), name)?;
        let mut groups = match &settings.group_search {
            Some(search) => {
                let filter = search
                    .filter
                    .fill(&[("dn", &entry.dn), ("username", &account)]);
                let name_attribute = settings.group_name_attribute.as_str();
                self.search(ldap, &search.base, &filter, &[name_attribute], 0)
                    .await?
                    .iter()
                    .filter_map(|group| first_value(group, name_attribute).map(str::to_owned))
                    .collect()
            }
            None => values(&entry, settings.group_attribute.as_str())
                .iter()
                .filter_map(|dn| first_rdn_value(dn, settings.group_name_attribute.as_str()))
                .collect::<Vec<_>>(),
        };
        groups.sort();
        groups.dedup();
        if groups.len() > MAX_GROUPS {
            tracing::warn!(
                account,
                groups = groups.len(),
                kept = MAX_GROUPS,
                "directory user is in more groups than regauth keeps"
            );
            groups.truncate(MAX_GROUPS);
        }

        let bind = ldap
            .simple_bind(&entry.dn, password)
            .await
            .map_err(connection_failure)?;
        match bind.rc {
            rc::SUCCESS => Ok(DirectoryUser {
                account,
                dn: entry.dn,
                groups,
            }),
            rc::INVALID_CREDENTIALS => Err(DirectoryError::WrongPassword.into()),
            rc::BUSY | rc::UNAVAILABLE | rc::OTHER | rc::ADMIN_LIMIT_EXCEEDED => {
                Err(DirectoryError::Unavailable(format!(
                    "the user's bind failed (rc {}: {})",
                    bind.rc,
                    printable(&bind.text)
                ))
                .into())
            }
            // Account disabled, password expired, policy: the directory
            // said no to this user; the text says why (for the log).
            code => Err(DirectoryError::Refused(format!(
                "the directory refused the user's bind (rc {code}: {})",
                printable(&bind.text)
            ))
            .into()),
        }
    }

    /// A subtree search as the service account; `size_limit` 0 means the
    /// server's limit.
    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attributes: &[&str],
        size_limit: i32,
    ) -> Result<Vec<SearchEntry>, Failure> {
        let ldap3::SearchResult(entries, result) = ldap
            .with_search_options(SearchOptions::new().sizelimit(size_limit))
            .search(base, Scope::Subtree, filter, attributes.to_vec())
            .await
            .map_err(connection_failure)?;
        match result.rc {
            rc::SUCCESS => {}
            // More entries than asked for: the caller sees two and refuses.
            rc::SIZE_LIMIT_EXCEEDED if size_limit > 0 => {}
            rc::TIME_LIMIT_EXCEEDED | rc::BUSY | rc::UNAVAILABLE | rc::ADMIN_LIMIT_EXCEEDED => {
                return Err(DirectoryError::Unavailable(format!(
                    "search under {base} failed (rc {}: {})",
                    result.rc,
                    printable(&result.text)
                ))
                .into())
            }
            // noSuchObject (a wrong base), insufficientAccessRights, …:
            // a configuration problem, not the client's.
            code => {
                return Err(DirectoryError::Unavailable(format!(
                    "search under {base} was refused (rc {code}: {}); check the ldap section",
                    printable(&result.text)
                ))
                .into())
            }
        }
        let mut found = Vec::new();
        for entry in entries {
            if entry.is_ref() || entry.is_intermediate() {
                continue;
            }
            // ldap3 panics on an entry it cannot decode; a broken answer
            // from the directory must not take a request down with it.
            let entry =
                std::panic::catch_unwind(AssertUnwindSafe(|| SearchEntry::construct(entry)))
                    .map_err(|_| {
                        DirectoryError::Unavailable(
                            "the directory sent an undecodable entry".into(),
                        )
                    })?;
            found.push(entry);
        }
        Ok(found)
    }
}

fn connection_failure(error: ldap3::LdapError) -> Failure {
    Failure::Connection(format!("LDAP connection failed: {error}"))
}

/// Text from the directory, made safe for a log line: control characters
/// escaped, length capped.
fn printable(text: &str) -> String {
    crate::scope::excerpt(&text.escape_debug().to_string())
}

/// The values of an attribute, its name compared case-insensitively (the
/// server may answer `memberof` for `memberOf`).
fn values<'e>(entry: &'e SearchEntry, attribute: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map_or(&[], |(_, values)| values.as_slice())
}

fn first_value<'e>(entry: &'e SearchEntry, attribute: &str) -> Option<&'e str> {
    values(entry, attribute).first().map(String::as_str)
}

/// The account name in the directory's spelling: the value of the
/// username attribute that equals the presented name ignoring case (the
/// directory matched it that way), else its only value. It must be an
/// [`crate::acl::AccountName`] (one repository path component), since ACL
/// rules put `${account}` in names.
fn account_name(entry: &SearchEntry, attribute: &str, presented: &str) -> Result<String, Failure> {
    let all = values(entry, attribute);
    let account = all
        .iter()
        .find(|value| value.to_lowercase() == presented.to_lowercase())
        .or(if all.len() == 1 { all.first() } else { None })
        .ok_or_else(|| {
            DirectoryError::Refused(format!(
                "the entry has no single `{attribute}` value to use as the account name"
            ))
        })?;
    crate::acl::AccountName::parse(account).map_err(|error| {
        DirectoryError::Refused(format!("the directory's account name is unusable: {error}"))
    })?;
    Ok(account.clone())
}

/// The value of `attribute` in the first RDN of `dn` (RFC 4514), unescaped:
/// `cn` of `cn=Ops\, EU+ou=x,ou=groups,dc=example` is `Ops, EU`. `None` when
/// the first RDN has no such attribute, or the DN is malformed or holds a
/// BER-encoded (`#…`) value.
pub fn first_rdn_value(dn: &str, attribute: &str) -> Option<String> {
    let mut rest = dn.as_bytes();
    loop {
        // One attribute=value pair of the first RDN.
        let equals = rest.iter().position(|&b| b == b'=')?;
        let name = std::str::from_utf8(&rest[..equals]).ok()?.trim();
        rest = &rest[equals + 1..];
        let mut value = Vec::new();
        let mut end_of_rdn = true;
        let mut i = 0;
        if rest.first() == Some(&b'#') {
            return None;
        }
        while i < rest.len() {
            match rest[i] {
                b'\\' => {
                    let hex = rest
                        .get(i + 1..i + 3)
                        .and_then(|pair| std::str::from_utf8(pair).ok())
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok());
                    match hex {
                        Some(byte) => {
                            value.push(byte);
                            i += 3;
                        }
                        None => {
                            value.push(*rest.get(i + 1)?);
                            i += 2;
                        }
                    }
                }
                b',' | b';' => break,
                b'+' => {
                    end_of_rdn = false;
                    break;
                }
                byte => {
                    value.push(byte);
                    i += 1;
                }
            }
        }
        if name.eq_ignore_ascii_case(attribute) {
            let value = String::from_utf8(value).ok()?;
            let value = value.trim();
            return (!value.is_empty()).then(|| value.to_owned());
        }
        if end_of_rdn {
            return None;
        }
        rest = &rest[i + 1..];
    }
}

/// The rustls configuration: the CA file's certificates, or the system's.
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, DirectoryLoadError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = fs::read(path).map_err(|cause| DirectoryLoadError::Io {
                path: path.to_owned(),
                cause,
            })?;
            let invalid = |reason: String| DirectoryLoadError::Invalid {
                path: path.to_owned(),
                reason,
            };
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate =
                    certificate.map_err(|e| invalid(format!("not a PEM certificate: {e}")))?;
                roots
                    .add(certificate)
                    .map_err(|e| invalid(format!("unusable CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(invalid("holds no PEM certificate".into()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            let (added, _ignored) = roots.add_parsable_certificates(native.certs);
            if added == 0 {
                return Err(DirectoryLoadError::Invalid {
                    path: PathBuf::from("ldap.ca_file"),
                    reason: "unset, and the system has no CA certificates: set it".into(),
                });
            }
        }
    }
    // The provider is named, not taken from the process default, so that a
    // second rustls backend elsewhere in the build cannot make this fail.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DirectoryLoadError::Invalid {
            path: PathBuf::from("ldap"),
            reason: format!("TLS setup failed: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What the client is told for every refused directory login: unknown
/// user, wrong password and a refused account look alike from outside.
const REFUSED: &str = "invalid username or password";

/// A directory login through the credential cache: successes are
/// remembered with bcrypt's (same cache, same lifetime, cleared on
/// reload), so a burst of token requests costs one bind. Failures are
/// never remembered.
pub async fn login_cached(
    checker: &CredentialChecker,
    directory: &Directory,
    name: &str,
    password: &str,
) -> Result<Arc<DirectoryUser>, DirectoryError> {
    if let Some(user) = checker.remembered_directory_login(name, password).await {
        return Ok(user);
    }
    let user = Arc::new(directory.login(name, password).await?);
    checker
        .remember_directory_login(name, password, Arc::clone(&user))
        .await;
    Ok(user)
}

/// The identity of a user the directory vouched for. No refresh token is
/// issued to it (`refresh_binding` is `None`): nothing regauth holds could
/// tell later that the directory password changed, so clients keep the
/// password and every token request asks the directory (or the cache).
pub fn identity(user: &DirectoryUser) -> Identity {
    Identity {
        account: user.account.clone(),
        groups: user.groups.clone(),
        source: Source::Ldap,
        refresh_binding: None,
        scope_limit: None,
    }
}

/// The refusal the client gets for a failed directory login.
pub fn refusal(error: DirectoryError, settings: &LdapSettings) -> IdentityError {
    match error {
        DirectoryError::Unavailable(detail) => IdentityError::Unavailable {
            origin: Source::Ldap.label(),
            detail,
            retry_after: retry_after(settings),
        },
        other => IdentityError::WrongCredential {
            reason: REFUSED,
            detail: other.to_string(),
        },
    }
}

/// How long a client should wait after the directory was unavailable.
pub fn retry_after(settings: &LdapSettings) -> Duration {
    // Long enough for a restart or failover, short enough that a client
    // retrying once does not give up on a brief blip.
    settings.timeout().max(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn group_names_come_from_the_first_rdn() {
        let cn = |dn: &str| first_rdn_value(dn, "cn");
        assert_eq!(
            cn("cn=devs,ou=groups,dc=example,dc=org").as_deref(),
            Some("devs")
        );
        // Active Directory spells attribute types in upper case.
        assert_eq!(
            cn("CN=Domain Admins,CN=Users,DC=corp,DC=example").as_deref(),
            Some("Domain Admins")
        );
        assert_eq!(cn("cn=Ops\\, EU,ou=g,dc=x").as_deref(), Some("Ops, EU"));
        assert_eq!(cn("cn=caf\\C3\\A9,ou=g").as_deref(), Some("café"));
        assert_eq!(cn("cn=a\\2Bb,ou=g").as_deref(), Some("a+b"));
        // Multi-valued RDN: either order.
        assert_eq!(cn("ou=x+cn=pair,dc=y").as_deref(), Some("pair"));
        assert_eq!(cn("cn=pair+ou=x,dc=y").as_deref(), Some("pair"));
        // Not in the first RDN, BER values, broken DNs.
        assert_eq!(cn("ou=people,cn=admins,dc=x"), None);
        assert_eq!(cn("cn=#04024869,dc=x"), None);
        assert_eq!(cn("cn=trailing\\"), None);
        assert_eq!(cn("no-equals-sign"), None);
        assert_eq!(cn("cn=,dc=x"), None);
        assert_eq!(cn(""), None);
        assert_eq!(first_rdn_value("uid=x,dc=y", "UID").as_deref(), Some("x"));
    }

    fn entry(attrs: &[(&str, &[&str])]) -> SearchEntry {
        SearchEntry {
            dn: "uid=alice,ou=people,dc=example,dc=org".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect::<HashMap<_, _>>(),
            bin_attrs: HashMap::new(),
        }
    }

    #[test]
    fn the_account_is_the_directory_spelling() {
        let e = entry(&[("uid", &["alice"])]);
        assert_eq!(account_name(&e, "uid", "ALICE").ok(), Some("alice".into()));
        // Attribute names are compared ignoring case.
        assert_eq!(account_name(&e, "UID", "alice").ok(), Some("alice".into()));
        // Several values: the one the directory matched.
        let multi = entry(&[("uid", &["alice", "asmith"])]);
        assert_eq!(
            account_name(&multi, "uid", "ASmith").ok(),
            Some("asmith".into())
        );
        assert!(account_name(&multi, "uid", "al").is_err());
        // The filter matched on something else (mail): the single uid.
        let mail = entry(&[("uid", &["alice"])]);
        assert_eq!(
            account_name(&mail, "uid", "alice@example.org").ok(),
            Some("alice".into())
        );
        // Names that cannot be a repository path component are refused.
        for bad in ["Alice", "a/b", "a b", "-a", ""] {
            let e = entry(&[("sAMAccountName", &[bad])]);
            assert!(account_name(&e, "sAMAccountName", bad).is_err(), "{bad:?}");
        }
        assert!(account_name(&entry(&[]), "uid", "alice").is_err());
    }

    #[test]
    fn attribute_values_are_found_ignoring_case() {
        let e = entry(&[("memberof", &["cn=a,dc=x", "cn=b,dc=x"])]);
        assert_eq!(values(&e, "memberOf").len(), 2);
        assert!(values(&e, "member").is_empty());
    }
}

//! Who is asking: presented credentials in, an [`Identity`] or a typed
//! [`IdentityError`] out. The ACL never learns which source spoke.
//!
//! # The seam
//!
//! - [`authenticate`] is the one entry point for Basic credentials (a user
//!   name and a password) with the client's address and the request's one
//!   reading of the clock (no source reads the wall clock itself): `GET
//!   /token` with Basic, the OAuth2 password grant and `/auth` in Basic
//!   mode all go through it. Each source that checks a secret is tried there, behind the
//!   login limiter, chosen by the password's shape: [`api_tokens`] (scoped
//!   API tokens, `rgt_…`), [`federation`] (OIDC ID tokens of trusted
//!   issuers, whose keys [`jwks`] fetches and caches), else [`files`]
//!   (inline users and htpasswd). New sources (LDAP) live in
//!   `identity/<source>.rs` and add a [`Source`] variant.
//! - [`refresh::redeem`] turns a refresh token back into an [`Identity`]
//!   while the credential it was bound to still holds.
//! - [`trusted_proxy`] names the user a trusted front proxy vouches for.
//! - Anonymous callers have no [`Identity`].
//!
//! Failures are [`IdentityError`]s; the HTTP edge maps them once
//! (`crate::http::ApiError::from_identity`): a wrong credential is a 401
//! with the challenge, a limited caller a 429 and an unavailable source a
//! 503, both with `Retry-After`.

pub mod api_tokens;
pub mod federation;
pub mod files;
pub mod jwks;
pub mod ldap;
pub mod login_limits;
pub mod refresh;
pub mod secret_key;
pub mod turns;

use std::sync::Arc;
use std::time::Duration;

use crate::acl::{Acl, Subject};
use crate::client_address::ClientAddress;
use crate::config::Precedence;
use crate::snapshot::Snapshot;
use crate::state::State;
use ldap::DirectoryError;

/// Who the caller is, once a source vouched for them.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The account name: the token's `sub`, the ACL's `account`, the
    /// `Remote-User` answer. Never empty.
    pub account: String,
    /// Groups the ACL can match on.
    pub groups: Vec<String>,
    /// Which source vouched, for audit logs and metrics.
    pub source: Source,
    /// What a refresh token issued to this identity is bound to; the token
    /// is redeemed only while the binding still holds. For file users, a
    /// fingerprint of the stored password hash, so a password change
    /// revokes it. `None`: no refresh token can be issued.
    pub refresh_binding: Option<String>,
    /// An extra bound on what may be granted (an API token's scopes, as
    /// subject-free rules in the ACL syntax): the grant is requested ∩ ACL
    /// ∩ this. `None`: the ACL alone decides.
    pub scope_limit: Option<Arc<Acl>>,
}

impl Identity {
    /// The identity as the ACL sees it.
    pub fn subject(&self) -> Subject<'_> {
        Subject {
            account: Some(&self.account),
            groups: &self.groups,
        }
    }
}

/// Where an [`Identity`] came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An inline user or an htpasswd entry, by password.
    File,
    /// A refresh token regauth issued earlier.
    RefreshToken,
    /// The user header of a trusted front proxy.
    TrustedProxy,
    /// A scoped API token, by id (never the secret).
    ApiToken {
        /// The token's id.
        id: String,
    },
    /// An OIDC ID token of a federated issuer.
    Federation {
        /// The issuer.
        issuer: String,
        /// The token's `sub` (the workload, e.g.
        /// `repo:acme/app:ref:refs/heads/main`), shortened.
        subject: String,
    },
    /// An LDAP directory, by search and bind.
    Ldap,
}

impl std::fmt::Display for Source {
    /// The source for audit lines, with the credential that vouched: an API
    /// token's id (never the secret), a federated issuer and the workload.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::ApiToken { id } => write!(f, "api_token {id}"),
            // The subject comes from the client's token: quoted, escaped.
            Source::Federation { issuer, subject } => {
                write!(f, "federation {issuer} sub={subject:?}")
            }
            other => f.write_str(other.label()),
        }
    }
}

impl Source {
    /// The source's name in audit logs and metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Source::File => "file",
            Source::RefreshToken => "refresh_token",
            Source::TrustedProxy => "trusted_proxy",
            Source::Ldap => "ldap",
            Source::ApiToken { .. } => "api_token",
            Source::Federation { .. } => "federation",
        }
    }
}

/// Why no [`Identity`] came out. Messages are safe for the client; details
/// for the operator are in [`IdentityError::detail`].
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Unknown user, wrong password, a refresh token that no longer holds:
    /// deliberately not told apart for the client. Answered with 401 and
    /// the challenge.
    #[error("{reason}")]
    WrongCredential {
        /// What the client is told, e.g. "invalid username or password".
        reason: &'static str,
        /// Why, for the log only (e.g. "password changed since the token
        /// was issued"); empty when `reason` says it all.
        detail: String,
    },
    /// A source that must answer could not (a directory or an issuer is
    /// down). Answered with 503 and `Retry-After`.
    #[error("{origin} is unavailable")]
    Unavailable {
        /// The source that failed, as [`Source::label`] names it.
        origin: &'static str,
        /// Why, for the log only.
        detail: String,
        /// When the client may try again.
        retry_after: Duration,
    },
    /// Too many attempts (login limiter, full password-check queue).
    /// Answered with 429 and `Retry-After`.
    #[error("too many login attempts")]
    Limited {
        /// When the client may try again.
        retry_after: Duration,
    },
    /// Our fault (a password check that crashed, a stored hash that cannot
    /// be read); never the client's. Answered with 500.
    #[error("credential check failed: {0}")]
    Internal(String),
}

impl IdentityError {
    /// A wrong credential whose message says it all.
    pub fn wrong(reason: &'static str) -> IdentityError {
        IdentityError::WrongCredential {
            reason,
            detail: String::new(),
        }
    }

    /// The full story for the operator's log: the client's message and,
    /// where there is one, the cause behind it.
    pub fn detail(&self) -> String {
        match self {
            IdentityError::WrongCredential { detail, .. }
            | IdentityError::Unavailable { detail, .. }
                if !detail.is_empty() =>
            {
                format!("{self}: {detail}")
            }
            other => other.to_string(),
        }
    }

    /// The `outcome` label of metrics for this refusal.
    pub fn outcome(&self) -> &'static str {
        match self {
            IdentityError::WrongCredential { .. } => "bad_credentials",
            IdentityError::Unavailable { .. } => "unavailable",
            IdentityError::Limited { .. } => "limited",
            IdentityError::Internal(_) => "error",
        }
    }
}

/// Basic credentials as presented, and who presented them.
pub struct Credentials<'a> {
    /// The user name, never empty (an empty one carries a refresh token).
    pub user: &'a str,
    /// The password; the caller wipes it.
    pub password: &'a str,
    /// The client's address, for the login limiter and the password-check
    /// queue: the peer's, or on a trusted listener the one the front proxy
    /// appended to `X-Forwarded-For`.
    pub client: ClientAddress,
}

/// The one entry point for Basic credentials. The password's shape picks
/// the source: an API token secret (`rgt_…`), an OIDC ID token (a JWT, when
/// federation is configured), else a password, checked by the file
/// users or the directory ([`password_login`]). A password of
/// one shape is never tried as another, so a revoked token cannot fall
/// through to a bcrypt check, nor a password to a token lookup. Every
/// source runs behind the login limiter ([`login_limits`]).
///
/// `now` (unix seconds) is the request's one reading of the clock, against
/// which API token expiry and ID token validity are checked.
pub async fn authenticate(
    state: &State,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
    now: i64,
) -> Result<Identity, IdentityError> {
    if let Some(identity) = remembered_login(state, snapshot, credentials) {
        return Ok(identity);
    }
    let limits = &snapshot.config.login_limits;
    // Behind an identical login in flight, if any: once it succeeds this one
    // is remembered, checked without bcrypt and never limited (see turns).
    let _turn = state
        .login_turns
        .wait(credentials.user, credentials.password)
        .await;
    let sources = check_secret(state, snapshot, credentials, now);
    login_limits::behind_limiter(&state.login_limiter, limits, credentials, sources).await
}

/// A file user's password that verified within the credential cache's
/// lifetime, let through on the limiter's read-only check
/// ([`LoginLimiter::admit_remembered`](crate::limiter::LoginLimiter::admit_remembered))
/// instead of its charge and refund, which cost such a login more than
/// everything else it does. Anything else (`None`) takes the checked way,
/// where a client the limiter refuses is refused before any check.
fn remembered_login(
    state: &State,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
) -> Option<Identity> {
    if secret_kind(snapshot, credentials.password) != SecretKind::Password
        || !files_own(snapshot, credentials.user)
    {
        return None;
    }
    let identity =
        state
            .credentials
            .remembered(&snapshot.users, credentials.user, credentials.password)?;
    let limits = &snapshot.config.login_limits;
    login_limits::admit_remembered(&state.login_limiter, limits, credentials).then_some(identity)
}

/// Which source a secret is for, by its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretKind {
    /// A scoped API token (`rgt_…`).
    ApiToken,
    /// An OIDC ID token, when issuers are trusted.
    Federated,
    /// Anything else.
    Password,
}

fn secret_kind(snapshot: &Snapshot, secret: &str) -> SecretKind {
    if api_tokens::looks_like_secret(secret) {
        SecretKind::ApiToken
    } else if !snapshot.federation.is_empty() && federation::looks_like_jwt(secret) {
        SecretKind::Federated
    } else {
        SecretKind::Password
    }
}

/// Every source that checks a secret, behind [`authenticate`]'s limiter.
async fn check_secret(
    state: &State,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
    now: i64,
) -> Result<Identity, IdentityError> {
    match secret_kind(snapshot, credentials.password) {
        SecretKind::ApiToken => api_tokens::authenticate(snapshot, credentials, now),
        SecretKind::Federated => {
            federation::authenticate(&state.federation_keys, snapshot, credentials, now).await
        }
        SecretKind::Password => password_login(state, snapshot, credentials).await,
    }
}

/// Whether a password login as `name` is the file users' to check (see
/// [`password_login`]), not the directory's.
fn files_own(snapshot: &Snapshot, name: &str) -> bool {
    snapshot.directory.as_ref().is_none_or(|directory| {
        directory.settings().precedence == Precedence::Files && snapshot.users.get(name).is_some()
    })
}

/// A password, checked by the file users or the directory.
///
/// File users and directory users share one name space. A name is owned by
/// one source, chosen by `ldap.precedence`, and only the owner checks the
/// password (a password refused by one source is never tried on another):
/// - `files` (the default): a file user's name never reaches the
///   directory; other names are the directory's, and a directory account
///   whose name (in the directory's spelling) is a file user's is refused.
/// - `ldap`: the directory is asked first; names it does not know are the
///   files'.
async fn password_login(
    state: &State,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
) -> Result<Identity, IdentityError> {
    let (name, password) = (credentials.user, credentials.password);
    let files = || async {
        if snapshot
            .users
            .get(name)
            .is_some_and(|user| user.tokens_only)
        {
            return Err(IdentityError::WrongCredential {
                reason: "invalid username or password",
                detail: "the account is tokens_only: its password is refused".into(),
            });
        }
        state
            .credentials
            .authenticate(&snapshot.users, credentials)
            .await
    };
    let directory = match &snapshot.directory {
        Some(directory) if !files_own(snapshot, name) => directory,
        _ => return files().await,
    };
    let settings = directory.settings();
    match ldap::login_cached(&state.credentials, directory, name, password).await {
        Ok(user)
            if settings.precedence == Precedence::Files
                && snapshot.users.get(&user.account).is_some() =>
        {
            Err(ldap::refusal(
                DirectoryError::Refused(format!(
                    "the directory's account `{}` is also a file user, and file users come \
                     first (ldap.precedence)",
                    user.account
                )),
                settings,
            ))
        }
        Ok(user) => Ok(ldap::identity(&user)),
        Err(DirectoryError::UnknownUser) if settings.precedence == Precedence::Ldap => {
            files().await
        }
        Err(error) => Err(ldap::refusal(error, settings)),
    }
}

/// The user a trusted front proxy names. `groups` is the proxy's group
/// list (`auth.trusted_groups_header`) when it sent one: the proxy vouches
/// for those. Without it, the groups of the file user of the same name.
pub fn trusted_proxy(snapshot: &Snapshot, account: &str, groups: Option<&str>) -> Identity {
    let groups = match groups {
        Some(list) => parse_group_list(list),
        None => snapshot
            .users
            .get(account)
            .map(|user| user.groups.clone())
            .unwrap_or_default(),
    };
    Identity {
        account: account.to_owned(),
        groups,
        source: Source::TrustedProxy,
        refresh_binding: None,
        scope_limit: None,
    }
}

/// A comma-separated group list as a front proxy sends it (Authelia's
/// `Remote-Groups`): names trimmed, empty ones dropped, sorted, without
/// duplicates, at most [`ldap::MAX_GROUPS`].
pub fn parse_group_list(list: &str) -> Vec<String> {
    let mut groups: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect();
    groups.sort();
    groups.dedup();
    groups.truncate(ldap::MAX_GROUPS);
    groups
}

/// The groups header's value: the names joined by `,`. A name that the
/// list could not carry unambiguously (one with a comma, a control
/// character, or space at either end) is left out. `None` when no name is
/// left.
pub fn group_list(groups: &[String]) -> Option<String> {
    let listed: Vec<&str> = groups
        .iter()
        .map(String::as_str)
        .filter(|name| {
            !name.is_empty()
                && name.trim() == *name
                && !name.contains(',')
                && !name.chars().any(char::is_control)
        })
        .collect();
    (!listed.is_empty()).then(|| listed.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::MissingKeys;
    use api_tokens::{write_token_file, TokenFile, TokenRecord};
    use time::OffsetDateTime;

    /// A server whose one API token, for `ci`, expires at `expires`; its
    /// secret; the directory holding the files.
    fn state_with_a_token_expiring_at(
        expires: i64,
    ) -> (State, zeroize::Zeroizing<String>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let secret = api_tokens::new_secret();
        let tokens = TokenFile {
            tokens: vec![TokenRecord {
                id: "tok_1".into(),
                account: "ci".into(),
                scopes: vec!["repository:ci/**:pull".into()],
                expires: Some(OffsetDateTime::from_unix_timestamp(expires).unwrap()),
                description: String::new(),
                created: OffsetDateTime::from_unix_timestamp(expires - 1000).unwrap(),
                secret_sha256: secret.sha256_hex.clone(),
            }],
            ..TokenFile::default()
        };
        write_token_file(&dir.path().join("tokens.json"), &tokens).unwrap();
        let config = serde_json::json!({
            "service": "registry.test",
            "issuer": "regauth",
            "realm": "https://registry.test/token",
            "token": { "algorithm": "ES256", "private_key": "token.key", "generate_if_missing": true },
            "users": { "ci": { "password": "$2b$04$abcdefghijklmnopqrstuu5Ev2cDSNrKbKSexGgQ3MdRGchr5Qjha", "tokens_only": true } },
            "api_tokens": "tokens.json",
        });
        let path = dir.path().join("regauth.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let snapshot = Snapshot::load_with(&path, MissingKeys::Preview).unwrap();
        let state = State::new(snapshot, path, None);
        (state, secret.secret, dir)
    }

    /// The token expired in 2001: only the caller's clock reading, never
    /// the wall clock, can find it still valid.
    #[tokio::test]
    async fn sources_judge_expiry_by_the_callers_clock_reading() {
        const EXPIRES: i64 = 1_000_000_000;
        let (state, secret, _dir) = state_with_a_token_expiring_at(EXPIRES);
        let snapshot = state.snapshot();
        let credentials = Credentials {
            user: "ci",
            password: &secret,
            client: ClientAddress::Local,
        };
        let before = authenticate(&state, &snapshot, &credentials, EXPIRES - 1).await;
        assert_eq!(before.unwrap().source.to_string(), "api_token tok_1");
        let at = authenticate(&state, &snapshot, &credentials, EXPIRES).await;
        assert!(
            matches!(at, Err(IdentityError::WrongCredential { .. })),
            "{at:?}"
        );
    }

    /// Many logins with the right password for one account from one
    /// address at once, none of them remembered yet (the start of a CI
    /// farm's run, or the credential cache's entry just expired): every
    /// one succeeds, although more of them than the limiter's
    /// per-account-and-address threshold (10) arrive together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_right_passwords_from_one_address_is_not_limited() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(one_robot(dir.path()));
        let logins: Vec<_> = (0..24)
            .map(|_| {
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let snapshot = state.snapshot();
                    let credentials = Credentials {
                        user: "robot",
                        password: "right-password",
                        client: ClientAddress::Local,
                    };
                    authenticate(&state, &snapshot, &credentials, 0).await
                })
            })
            .collect();
        for login in logins {
            let outcome = login.await.unwrap();
            assert!(outcome.is_ok(), "{outcome:?}");
        }
    }

    /// The state of a config with one file user, `robot`, whose password
    /// is `right-password` (bcrypt at its lowest cost: the tests are about
    /// the limiter, not the hash).
    fn one_robot(dir: &std::path::Path) -> State {
        let hash = bcrypt::hash("right-password", 4).unwrap();
        let config = serde_json::json!({
            "service": "registry.test",
            "issuer": "regauth",
            "realm": "https://registry.test/token",
            "token": { "algorithm": "ES256", "private_key": "token.key", "generate_if_missing": true },
            "users": { "robot": { "password": hash } },
        });
        let path = dir.join("regauth.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let snapshot = Snapshot::load_with(&path, MissingKeys::Preview).unwrap();
        State::new(snapshot, path, None)
    }

    /// A remembered password skips the limiter's charge, never its
    /// refusal: while the client is limited, the right password (already
    /// in the credential cache) is refused like any guess, so the answer
    /// tells a guesser nothing.
    #[tokio::test]
    async fn a_remembered_password_is_refused_while_its_client_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        let state = one_robot(dir.path());
        let snapshot = state.snapshot();
        let login = |password: &'static str, address: &'static str| {
            let credentials = Credentials {
                user: "robot",
                password,
                client: ClientAddress::ip(address.parse().unwrap()),
            };
            let (state, snapshot) = (&state, &snapshot);
            async move { authenticate(state, snapshot, &credentials, 0).await }
        };
        assert!(login("right-password", "192.0.2.1").await.is_ok());
        for _ in 0..10 {
            let wrong = login("guess", "192.0.2.1").await;
            assert!(
                matches!(wrong, Err(IdentityError::WrongCredential { .. })),
                "{wrong:?}"
            );
        }
        let limited = login("right-password", "192.0.2.1").await;
        assert!(
            matches!(limited, Err(IdentityError::Limited { .. })),
            "{limited:?}"
        );
        // Elsewhere the same remembered password still gets in.
        assert!(login("right-password", "198.51.100.2").await.is_ok());
    }

    #[test]
    fn group_lists_round_trip_what_a_list_can_carry() {
        assert_eq!(parse_group_list(" ops, devs,,devs ,"), ["devs", "ops"]);
        assert!(parse_group_list("").is_empty());
        assert!(parse_group_list(" , ").is_empty());
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            group_list(&names(&["devs", "Domain Users", "ops"])).as_deref(),
            Some("devs,Domain Users,ops")
        );
        // A comma or a control character would change the list: left out.
        assert_eq!(
            group_list(&names(&["a,b", "c\r\nX-Evil: 1", " pad", "ok"])).as_deref(),
            Some("ok")
        );
        assert_eq!(group_list(&[]), None);
        assert_eq!(group_list(&names(&["a,b"])), None);
        let many: Vec<String> = (0..1000).map(|i| format!("g{i}")).collect();
        assert_eq!(parse_group_list(&many.join(",")).len(), ldap::MAX_GROUPS);
    }

    /// The `source` field of both endpoints' audit lines, byte for byte:
    /// the credential that vouched, never a secret; the client's own text
    /// (a federated subject) quoted and escaped.
    #[test]
    fn audit_lines_name_the_source_and_its_credential() {
        let named = |source: Source| source.to_string();
        assert_eq!(named(Source::File), "file");
        assert_eq!(named(Source::Ldap), "ldap");
        assert_eq!(named(Source::RefreshToken), "refresh_token");
        assert_eq!(named(Source::TrustedProxy), "trusted_proxy");
        assert_eq!(
            named(Source::ApiToken { id: "tok_1".into() }),
            "api_token tok_1"
        );
        assert_eq!(
            named(Source::Federation {
                issuer: "https://issuer.test".into(),
                subject: "repo:acme/app\n\"x=1".into(),
            }),
            r#"federation https://issuer.test sub="repo:acme/app\n\"x=1""#
        );
    }

    #[test]
    fn the_log_hears_the_cause_the_client_does_not() {
        let wrong = IdentityError::WrongCredential {
            reason: "invalid or revoked refresh token",
            detail: "token expired".into(),
        };
        assert_eq!(wrong.to_string(), "invalid or revoked refresh token");
        assert_eq!(
            wrong.detail(),
            "invalid or revoked refresh token: token expired"
        );
        let plain = IdentityError::wrong("invalid username or password");
        assert_eq!(plain.detail(), "invalid username or password");
        let down = IdentityError::Unavailable {
            origin: "ldap",
            detail: "connection refused".into(),
            retry_after: Duration::from_secs(5),
        };
        assert_eq!(down.to_string(), "ldap is unavailable");
        assert_eq!(down.detail(), "ldap is unavailable: connection refused");
        assert_eq!(down.outcome(), "unavailable");
    }
}

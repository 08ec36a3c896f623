//! Who is asking: presented credentials in, an [`Identity`] or a typed
//! [`IdentityError`] out. The ACL never learns which source spoke.
//!
//! # The seam
//!
//! - [`authenticate`] is the one entry point for Basic credentials (a user
//!   name and a password) with the client's address: `GET /token` with
//!   Basic, the OAuth2 password grant and `/auth` in Basic mode all go
//!   through it. Each source that checks a secret is tried there, behind the
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
pub mod refresh;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::acl::{Acl, Subject};
use crate::snapshot::Snapshot;
use crate::state::State;

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
    /// The client's address, for the login limiter: the peer's, or on a
    /// trusted listener the one the front proxy names. `None` for a unix
    /// socket peer that names nobody.
    pub client: Option<IpAddr>,
}

/// The one entry point for Basic credentials. The password's shape picks
/// the source: an API token secret (`rgt_…`), an OIDC ID token (a JWT, when
/// federation is configured), else a file user's password. A password of
/// one shape is never tried as another, so a revoked token cannot fall
/// through to a bcrypt check, nor a password to a token lookup.
pub async fn authenticate(
    state: &State,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
) -> Result<Identity, IdentityError> {
    let now = unix_now();
    if api_tokens::looks_like_secret(credentials.password) {
        return api_tokens::authenticate(snapshot, credentials, now);
    }
    if !snapshot.federation.is_empty() && federation::looks_like_jwt(credentials.password) {
        return federation::authenticate(&state.federation_keys, snapshot, credentials, now).await;
    }
    if snapshot
        .users
        .get(credentials.user)
        .is_some_and(|user| user.tokens_only)
    {
        return Err(IdentityError::WrongCredential {
            reason: "invalid username or password",
            detail: "the account is tokens_only: its password is refused".into(),
        });
    }
    state
        .credentials
        .authenticate(&snapshot.users, credentials.user, credentials.password)
        .await
}

/// The current unix time in seconds, for the sources' pure checks.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// The user a trusted front proxy names. Its groups are those of the file
/// user of the same name, if any: the proxy vouches for the name only.
pub fn trusted_proxy(snapshot: &Snapshot, account: &str) -> Identity {
    let user = snapshot.users.get(account);
    Identity {
        account: account.to_owned(),
        groups: user.map(|user| user.groups.clone()).unwrap_or_default(),
        source: Source::TrustedProxy,
        refresh_binding: None,
        scope_limit: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! OIDC workload federation: a CI job logs in with the ID token its platform
//! issued (GitHub Actions, GitLab CI `id_tokens`, Kubernetes service-account
//! tokens, any OIDC issuer) as the Basic password, and holds no secret.
//!
//! - [`jwt`]: what can be read from a token before it is verified (its
//!   issuer and key id, to find the entry and the key), and the issuers'
//!   keys as verifiers ([`IssuerKey`]).
//! - [`rules`]: the config's entries compiled, and the pure check of a token
//!   against its entry with the issuer's key and the time passed in
//!   ([`FederationRule::verify`]): the signature (an asymmetric algorithm
//!   that fits the key; never `none` or HMAC), `aud` (a string, or an array
//!   containing the audience), `exp` (required), `nbf` and `iat` (each with
//!   [`CLOCK_SKEW_SECS`] of skew), every claim condition, and the account
//!   the template makes, which must be one valid repository path component.
//! - This file: the refusals ([`FederationError`]) and the identity source
//!   ([`authenticate`]), which gets the key from [`super::jwks`]'s cache.

mod jwt;
mod rules;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub use jwt::{looks_like_jwt, peek, IssuerKey, Unverified};
pub use rules::{FederatedIdentity, FederationRule, FederationRules};

use super::jwks::{tls_config, KeyCache, KeySource};
use super::{Credentials, Identity, IdentityError, Source};
use crate::config::{ConfigError, FederationSpec};
use crate::snapshot::Snapshot;

/// Clock skew allowed between the issuer and us on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// Longest claim value or issuer echoed in a message.
const ECHO_MAX: usize = 128;

/// Why a federated login was refused. Every variant is a 401 for the
/// client; messages are safe to log and to show (no token, values quoted
/// and shortened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FederationError {
    /// Not a compact JWS with JSON header and claims.
    #[error("malformed identity token: {0}")]
    Malformed(String),
    /// No `federation` entry has the token's `iss`.
    #[error("identity token issuer {0} is not trusted")]
    UnknownIssuer(String),
    /// The issuer's keys could not be fetched, and none are cached.
    #[error("identity token issuer {issuer} is unreachable: {cause}")]
    IssuerUnreachable {
        /// The issuer.
        issuer: String,
        /// Why the keys could not be had.
        cause: String,
    },
    /// The issuer has no key with the token's `kid`.
    #[error("issuer {issuer} has no key {kid}")]
    UnknownKey {
        /// The issuer.
        issuer: String,
        /// The header's `kid` (quoted), or "(none)".
        kid: String,
    },
    /// `alg` is not an asymmetric algorithm that fits the key.
    #[error("identity token algorithm {0} is not accepted for this key")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("identity token signature is invalid")]
    BadSignature,
    /// `aud` does not name the configured audience.
    #[error("identity token audience {found} does not include {expected:?}")]
    WrongAudience {
        /// What the token said.
        found: String,
        /// The configured audience.
        expected: String,
    },
    /// `exp` is past (beyond the skew).
    #[error("identity token expired at {exp} (now {now})")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// Our time.
        now: i64,
    },
    /// `nbf` or `iat` is in the future (beyond the skew).
    #[error("identity token not valid yet: {claim} is {at} (now {now})")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// Its value.
        at: i64,
        /// Our time.
        now: i64,
    },
    /// A required claim is absent or has the wrong type.
    #[error("identity token claim {0:?} is missing or not usable")]
    MissingClaim(String),
    /// A claim condition does not hold.
    #[error("identity token claim {claim:?} is {found}, which does not match {expected:?}")]
    ConditionFailed {
        /// The claim.
        claim: String,
        /// Its value (quoted, shortened).
        found: String,
        /// The condition.
        expected: String,
    },
    /// The template made an account name that is not one repository path
    /// component; the reason names it.
    #[error("mapped {0}")]
    BadAccount(String),
}

impl FederationError {
    /// A short label for metrics and audit lines.
    pub fn label(&self) -> &'static str {
        match self {
            FederationError::Malformed(_) => "malformed",
            FederationError::UnknownIssuer(_) => "unknown_issuer",
            FederationError::IssuerUnreachable { .. } => "issuer_unreachable",
            FederationError::UnknownKey { .. } => "unknown_key",
            FederationError::Algorithm(_) => "algorithm",
            FederationError::BadSignature => "bad_signature",
            FederationError::WrongAudience { .. } => "wrong_audience",
            FederationError::Expired { .. } => "expired",
            FederationError::NotYetValid { .. } => "not_yet_valid",
            FederationError::MissingClaim(_) => "missing_claim",
            FederationError::ConditionFailed { .. } => "condition_failed",
            FederationError::BadAccount(_) => "bad_account",
        }
    }

    /// What the client is told: the failure mode, no detail.
    pub fn client_message(&self) -> &'static str {
        match self {
            FederationError::Malformed(_) => "malformed identity token",
            FederationError::UnknownIssuer(_) => "identity token issuer is not trusted",
            FederationError::IssuerUnreachable { .. } => "identity token issuer is unreachable",
            FederationError::UnknownKey { .. } => "identity token signed by an unknown key",
            FederationError::Algorithm(_) => "identity token algorithm is not accepted",
            FederationError::BadSignature => "identity token signature is invalid",
            FederationError::WrongAudience { .. } => "identity token audience is wrong",
            FederationError::Expired { .. } => "identity token expired",
            FederationError::NotYetValid { .. } => "identity token is not valid yet",
            FederationError::MissingClaim(_) => "identity token lacks a required claim",
            FederationError::ConditionFailed { .. } => "identity token fails a claim condition",
            FederationError::BadAccount(_) => "identity token maps to an invalid account name",
        }
    }
}

/// Quotes and shortens untrusted text for a message.
fn echo(text: &str) -> String {
    let short: String = text.chars().take(ECHO_MAX).collect();
    if short.len() < text.len() {
        format!("{short:?}...")
    } else {
        format!("{short:?}")
    }
}

/// The federation identity source: the compiled entries and where each
/// issuer's keys come from. Part of a snapshot.
#[derive(Debug, Clone, Default)]
pub struct Federation {
    /// The compiled entries.
    pub rules: FederationRules,
    sources: HashMap<String, KeySource>,
}

/// Why the `federation` section could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum FederationLoadError {
    /// An entry is invalid; the error names the field.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An entry's `ca_file` is unusable.
    #[error("{}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Federation {
    /// Compiles the entries and builds each issuer's TLS settings (system
    /// roots plus `ca_file`). Blocking: reads the trust store.
    pub fn load(specs: &[FederationSpec]) -> Result<Federation, FederationLoadError> {
        let rules = FederationRules::compile(specs)?;
        let mut sources = HashMap::new();
        for spec in specs {
            let tls = tls_config(spec.ca_file.as_deref()).map_err(|reason| {
                FederationLoadError::CaFile {
                    path: spec.ca_file.clone().unwrap_or_default(),
                    reason,
                }
            })?;
            // Checked by `FederationRules::compile` above.
            let jwks_uri = spec.jwks_uri.as_deref().and_then(|uri| uri.parse().ok());
            let source = KeySource {
                issuer: spec.issuer.clone(),
                jwks_uri,
                tls,
            };
            sources.insert(spec.issuer.clone(), source);
        }
        Ok(Federation { rules, sources })
    }

    /// Whether any issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Verifies an ID token presented as a password: finds the entry by
    /// `iss`, gets the key (cached or fetched), verifies and maps. Also
    /// returns the configured issuer the token named, when there is one
    /// (for metrics and the audit line).
    pub async fn login(
        &self,
        keys: &Arc<KeyCache>,
        token: &str,
        now: i64,
    ) -> (Option<&str>, Result<FederatedIdentity, FederationError>) {
        let unverified = match peek(token) {
            Ok(unverified) => unverified,
            Err(error) => return (None, Err(error)),
        };
        let (Some(rule), Some(source)) = (
            self.rules.for_issuer(&unverified.issuer),
            self.sources.get(&unverified.issuer),
        ) else {
            return (
                None,
                Err(FederationError::UnknownIssuer(echo(&unverified.issuer))),
            );
        };
        let verified = match keys
            .key(source, unverified.kid.as_deref(), Instant::now())
            .await
        {
            Ok(key) => rule.verify(token, &key, now),
            Err(error) => Err(error),
        };
        (Some(rule.issuer.as_str()), verified)
    }

    /// The configured issuers.
    pub fn issuers(&self) -> Vec<&str> {
        self.rules.iter().map(|rule| rule.issuer.as_str()).collect()
    }
}

/// The federation source: an OIDC ID token presented as the password
/// (the user name is free). Every failure is a 401 whose message names the
/// failure mode; the log gets the details.
pub async fn authenticate(
    keys: &Arc<KeyCache>,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
    now: i64,
) -> Result<Identity, IdentityError> {
    let (issuer, outcome) = snapshot
        .federation
        .login(keys, credentials.password, now)
        .await;
    let label = match &outcome {
        Ok(_) => "ok",
        Err(error) => error.label(),
    };
    metrics::counter!(
        "regauth_federation_logins_total",
        "issuer" => issuer.unwrap_or("unknown").to_owned(),
        "outcome" => label
    )
    .increment(1);
    let identity = outcome.map_err(|error| IdentityError::WrongCredential {
        reason: error.client_message(),
        detail: match issuer {
            Some(issuer) => format!("{error} (issuer {issuer})"),
            None => error.to_string(),
        },
    })?;
    Ok(Identity {
        account: identity.account,
        groups: identity.groups,
        source: Source::Federation {
            issuer: issuer.unwrap_or_default().to_owned(),
            subject: identity.subject,
        },
        // The ID token lives minutes; a refresh token must not outlive it.
        refresh_binding: None,
        scope_limit: None,
    })
}

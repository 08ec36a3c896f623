//! Scoped API tokens: long random secrets that log in as one account, limited
//! to some scopes, until they expire or are revoked.
//!
//! The token file (config `api_tokens`; format and atomic writes in
//! [`file`]) holds per token its id, account, scope patterns, expiry,
//! description, creation time and the SHA-256 of the secret, never the
//! secret itself. A secret is 32 random bytes, so a fast hash is as good as
//! a slow one: nobody can guess their way back from the hash, and a login
//! costs one SHA-256 instead of a bcrypt run. A login hashes the presented
//! secret and looks the hash up; the lookup can only tell an attacker which
//! hash prefixes exist, which helps them find no secret.
//!
//! This module owns the secret format, the compiled [`ApiTokens`] table,
//! the pure checks (the clock is passed in) and the identity source
//! ([`authenticate`], and [`redeem`] for refresh tokens bound to a token).
//! The `regauth token` commands that edit the file live in
//! [`crate::token_commands`].

mod file;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use file::{read_token_file, write_token_file, TokenFile, TokenFileError, TokenRecord};

use super::{Credentials, Identity, IdentityError, Source};
use crate::acl::{Acl, RuleSpec};
use crate::snapshot::Snapshot;

/// Every secret starts with this, so that a secret is recognisable in a
/// password field (and by secret scanners in a leaked log or repository).
pub const SECRET_PREFIX: &str = "rgt_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// Length of a secret: the prefix and 43 base64url characters.
const SECRET_LEN: usize = SECRET_PREFIX.len() + 43;
/// The binding a refresh token from an API-token login carries, before the id.
const REFRESH_BINDING_PREFIX: &str = "api-token:";

/// A freshly made secret: shown once, never stored.
pub struct NewSecret {
    /// The secret text (`rgt_…`); wiped from memory when dropped.
    pub secret: Zeroizing<String>,
    /// What the token file stores.
    pub sha256_hex: String,
}

/// Makes a new random secret and its hash.
pub fn new_secret() -> NewSecret {
    let bytes = Zeroizing::new(rand::random::<[u8; SECRET_BYTES]>());
    let secret = Zeroizing::new(format!(
        "{SECRET_PREFIX}{}",
        BASE64URL_NOPAD.encode(bytes.as_ref())
    ));
    let sha256_hex = data_encoding::HEXLOWER.encode(&secret_hash(&secret));
    NewSecret { secret, sha256_hex }
}

/// A new token id: `tok_` and 12 hex digits (48 random bits; the caller
/// makes sure it is not taken).
pub fn new_id() -> String {
    format!(
        "tok_{}",
        data_encoding::HEXLOWER.encode(&rand::random::<[u8; 6]>())
    )
}

/// Whether a password has the shape of an API token secret. Such passwords
/// are only ever checked as API tokens: a human password of exactly this
/// shape is not a thing that happens.
pub fn looks_like_secret(password: &str) -> bool {
    password.len() == SECRET_LEN
        && password.starts_with(SECRET_PREFIX)
        && password[SECRET_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Parses a scope pattern `type:name-pattern:actions` (the ACL's syntax:
/// `*`, `**`, `${account}` in the name; `pull`, `push`, `delete`, `*`) into
/// a subject-free ACL rule. The type is the text before the first `:`, the
/// actions the text after the last, as in the scope grammar.
pub fn parse_scope_pattern(text: &str) -> Result<RuleSpec, String> {
    let malformed = || {
        format!(
            "scope {text:?} is not `type:name-pattern:actions`, e.g. `repository:ci/**:pull,push`"
        )
    };
    let (resource_type, rest) = text.split_once(':').ok_or_else(malformed)?;
    let (name, actions) = rest.rsplit_once(':').ok_or_else(malformed)?;
    let actions: Vec<String> = actions
        .split(',')
        .filter(|action| !action.is_empty())
        .map(str::to_owned)
        .collect();
    if actions.is_empty() {
        return Err(format!("scope {text:?} names no actions"));
    }
    let spec = RuleSpec {
        account: None,
        group: None,
        resource_type: resource_type.to_owned(),
        name: name.to_owned(),
        actions,
        tags: None,
        digests: None,
        comment: None,
    };
    // Compiling checks the type, the pattern and the actions.
    Acl::compile(std::slice::from_ref(&spec)).map_err(|error| {
        // The ACL's message says "ACL rule 1"; here it is a scope.
        let detail = error.to_string();
        let detail = detail.strip_prefix("ACL rule 1: ").unwrap_or(&detail);
        format!("scope {text:?}: {detail}")
    })?;
    Ok(spec)
}

/// Compiles scope patterns into the ACL that limits what a token grants.
pub fn compile_scopes(scopes: &[String]) -> Result<Acl, String> {
    if scopes.is_empty() {
        return Err("a token needs at least one scope".into());
    }
    let specs = scopes
        .iter()
        .map(|scope| parse_scope_pattern(scope))
        .collect::<Result<Vec<_>, _>>()?;
    Acl::compile(&specs).map_err(|error| error.to_string())
}

/// One usable token, compiled.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// The token's id.
    pub id: String,
    /// The account it logs in as.
    pub account: String,
    /// What it may be granted at most: its scopes as subject-free rules.
    pub scope_limit: Arc<Acl>,
    /// Its scopes as written, for logs.
    pub scopes: Vec<String>,
    /// Expiry, unix seconds; `None`: never.
    pub expires: Option<i64>,
}

/// Why an API token was refused. Safe to log and to show: it names at most
/// the token id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiTokenRefusal {
    /// No token has this secret (never issued, or revoked).
    #[error("unknown or revoked API token")]
    Unknown,
    /// The Basic user name is not the token's account.
    #[error("API token {id} does not belong to this account")]
    WrongAccount {
        /// The token's id.
        id: String,
    },
    /// The token has expired.
    #[error("API token {id} expired")]
    Expired {
        /// The token's id.
        id: String,
    },
    /// The token's account is no longer a user.
    #[error("the account of API token {id} no longer exists")]
    AccountGone {
        /// The token's id.
        id: String,
    },
}

impl ApiTokenRefusal {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ApiTokenRefusal::Unknown => "unknown",
            ApiTokenRefusal::WrongAccount { .. } => "wrong_account",
            ApiTokenRefusal::Expired { .. } => "expired",
            ApiTokenRefusal::AccountGone { .. } => "account_gone",
        }
    }

    /// What the client is told.
    pub fn client_message(&self) -> &'static str {
        match self {
            ApiTokenRefusal::Unknown => "unknown or revoked API token",
            ApiTokenRefusal::WrongAccount { .. } => "the API token belongs to another account",
            ApiTokenRefusal::Expired { .. } => "the API token has expired",
            ApiTokenRefusal::AccountGone { .. } => "unknown or revoked API token",
        }
    }

    /// The token id, when the refusal knows it.
    pub fn token_id(&self) -> Option<&str> {
        match self {
            ApiTokenRefusal::Unknown => None,
            ApiTokenRefusal::WrongAccount { id }
            | ApiTokenRefusal::Expired { id }
            | ApiTokenRefusal::AccountGone { id } => Some(id),
        }
    }
}

/// Every usable token of one token file, by the hash of its secret.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    by_hash: HashMap<[u8; 32], ApiToken>,
    /// Id → hash, for refresh tokens, which name the id.
    by_id: HashMap<String, [u8; 32]>,
}

impl ApiTokens {
    /// Compiles a token file's records. `path` is for messages only.
    pub fn compile(file: &TokenFile, path: &Path) -> Result<ApiTokens, TokenFileError> {
        let mut tokens = ApiTokens::default();
        for record in &file.tokens {
            let entry_error = |reason: String| TokenFileError::Entry {
                path: path.to_owned(),
                id: record.id.clone(),
                reason,
            };
            crate::config::check_user_name(&record.account).map_err(entry_error)?;
            let scope_limit = compile_scopes(&record.scopes).map_err(entry_error)?;
            let hash: [u8; 32] = data_encoding::HEXLOWER
                .decode(record.secret_sha256.as_bytes())
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| {
                    entry_error("secret_sha256 is not 64 lower-case hex digits".into())
                })?;
            if tokens.by_id.contains_key(&record.id) {
                return Err(entry_error("the id is used twice".into()));
            }
            if tokens.by_hash.contains_key(&hash) {
                return Err(entry_error("the secret hash is used twice".into()));
            }
            tokens.by_id.insert(record.id.clone(), hash);
            tokens.by_hash.insert(
                hash,
                ApiToken {
                    id: record.id.clone(),
                    account: record.account.clone(),
                    scope_limit: Arc::new(scope_limit),
                    scopes: record.scopes.clone(),
                    expires: record.expires.map(OffsetDateTime::unix_timestamp),
                },
            );
        }
        Ok(tokens)
    }

    /// Reads and compiles a token file; a missing file is an empty table
    /// (no token has been made yet). Blocking.
    pub fn load(path: &Path) -> Result<ApiTokens, TokenFileError> {
        let file = read_token_file(path)?;
        ApiTokens::compile(&file, path)
    }

    /// Checks a presented secret for `user` at `now` (unix seconds).
    pub fn authenticate(
        &self,
        user: &str,
        secret: &str,
        now: i64,
    ) -> Result<&ApiToken, ApiTokenRefusal> {
        let token = self
            .by_hash
            .get(&secret_hash(secret))
            .ok_or(ApiTokenRefusal::Unknown)?;
        check_token(token, user, now)
    }

    /// Checks a refresh token's binding (from [`refresh_binding`]) for the
    /// account it was issued to: it holds while the token exists (not
    /// revoked) and has not expired.
    pub fn redeem(
        &self,
        binding: &str,
        account: &str,
        now: i64,
    ) -> Result<&ApiToken, ApiTokenRefusal> {
        let id = binding
            .strip_prefix(REFRESH_BINDING_PREFIX)
            .ok_or(ApiTokenRefusal::Unknown)?;
        let token = self
            .by_id
            .get(id)
            .and_then(|hash| self.by_hash.get(hash))
            .ok_or(ApiTokenRefusal::Unknown)?;
        check_token(token, account, now)
    }

    /// How many tokens there are (expired ones included).
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The API token source: a secret presented as the password of its
/// account. Counts every attempt by token id (never the secret).
pub fn authenticate(
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
    now: i64,
) -> Result<Identity, IdentityError> {
    let outcome = snapshot
        .api_tokens
        .authenticate(credentials.user, credentials.password, now)
        .and_then(|token| Ok((token.id.as_str(), identity_of(snapshot, token)?)));
    let (token_id, label) = match &outcome {
        Ok((id, _)) => (*id, "ok"),
        Err(refusal) => (refusal.token_id().unwrap_or("unknown"), refusal.label()),
    };
    metrics::counter!(
        "regauth_api_token_logins_total",
        "token_id" => token_id.to_owned(),
        "outcome" => label
    )
    .increment(1);
    outcome
        .map(|(_, identity)| identity)
        .map_err(|refusal| IdentityError::WrongCredential {
            reason: refusal.client_message(),
            detail: refusal.to_string(),
        })
}

/// The identity a refresh token bound to an API token stands for, while
/// that token still holds.
pub fn redeem(
    snapshot: &Snapshot,
    binding: &str,
    account: &str,
    now: i64,
) -> Result<Identity, ApiTokenRefusal> {
    let token = snapshot.api_tokens.redeem(binding, account, now)?;
    identity_of(snapshot, token)
}

/// A token's identity: its account, with the groups the account has now.
fn identity_of(snapshot: &Snapshot, token: &ApiToken) -> Result<Identity, ApiTokenRefusal> {
    let user = snapshot
        .users
        .get(&token.account)
        .ok_or_else(|| ApiTokenRefusal::AccountGone {
            id: token.id.clone(),
        })?;
    Ok(Identity {
        account: token.account.clone(),
        groups: user.groups.clone(),
        source: Source::ApiToken {
            id: token.id.clone(),
        },
        refresh_binding: Some(refresh_binding(token)),
        scope_limit: Some(Arc::clone(&token.scope_limit)),
    })
}

/// What a refresh token from a login with `token` is bound to.
pub fn refresh_binding(token: &ApiToken) -> String {
    format!("{REFRESH_BINDING_PREFIX}{}", token.id)
}

/// Whether a refresh token binding names an API token.
pub fn is_refresh_binding(binding: &str) -> bool {
    binding.starts_with(REFRESH_BINDING_PREFIX)
}

fn check_token<'t>(
    token: &'t ApiToken,
    user: &str,
    now: i64,
) -> Result<&'t ApiToken, ApiTokenRefusal> {
    if token.account != user {
        return Err(ApiTokenRefusal::WrongAccount {
            id: token.id.clone(),
        });
    }
    if token.expires.is_some_and(|expires| now >= expires) {
        return Err(ApiTokenRefusal::Expired {
            id: token.id.clone(),
        });
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Subject;
    use crate::scope::parse_scopes;

    fn record(
        id: &str,
        account: &str,
        scopes: &[&str],
        expires: Option<i64>,
        secret_hex: &str,
    ) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            account: account.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires: expires.map(|t| OffsetDateTime::from_unix_timestamp(t).unwrap()),
            description: "test".into(),
            created: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            secret_sha256: secret_hex.into(),
        }
    }

    fn table(records: Vec<TokenRecord>) -> Result<ApiTokens, TokenFileError> {
        ApiTokens::compile(
            &TokenFile {
                version: 1,
                tokens: records,
            },
            Path::new("tokens.json"),
        )
    }

    #[test]
    fn secrets_have_the_documented_shape_and_differ() {
        let a = new_secret();
        let b = new_secret();
        assert!(a.secret.starts_with("rgt_"));
        assert_eq!(a.secret.len(), SECRET_LEN);
        assert!(looks_like_secret(&a.secret));
        assert_ne!(*a.secret, *b.secret);
        assert_eq!(a.sha256_hex.len(), 64);
        assert!(!looks_like_secret("rgt_short"));
        assert!(!looks_like_secret(&a.secret.replace("rgt_", "rgx_")));
        assert!(!looks_like_secret(&format!(
            "{}!",
            &a.secret[..SECRET_LEN - 1]
        )));
        assert!(new_id().starts_with("tok_") && new_id().len() == 16);
    }

    #[test]
    fn login_checks_secret_account_and_expiry() {
        let secret = new_secret();
        let tokens = table(vec![record(
            "tok_1",
            "ci",
            &["repository:ci/**:pull,push"],
            Some(2_000),
            &secret.sha256_hex,
        )])
        .unwrap();
        let token = tokens.authenticate("ci", &secret.secret, 1_999).unwrap();
        assert_eq!(token.id, "tok_1");
        assert_eq!(
            tokens
                .authenticate("alice", &secret.secret, 1_000)
                .unwrap_err(),
            ApiTokenRefusal::WrongAccount { id: "tok_1".into() }
        );
        assert_eq!(
            tokens
                .authenticate("ci", &secret.secret, 2_000)
                .unwrap_err(),
            ApiTokenRefusal::Expired { id: "tok_1".into() }
        );
        let other = new_secret();
        assert_eq!(
            tokens.authenticate("ci", &other.secret, 1_000).unwrap_err(),
            ApiTokenRefusal::Unknown
        );
    }

    #[test]
    fn refresh_bindings_die_with_the_token() {
        let secret = new_secret();
        let tokens = table(vec![record(
            "tok_1",
            "ci",
            &["repository:**:pull"],
            Some(2_000),
            &secret.sha256_hex,
        )])
        .unwrap();
        let token = tokens.authenticate("ci", &secret.secret, 0).unwrap();
        let binding = refresh_binding(token);
        assert!(is_refresh_binding(&binding));
        assert!(tokens.redeem(&binding, "ci", 1_000).is_ok());
        assert!(matches!(
            tokens.redeem(&binding, "ci", 2_000),
            Err(ApiTokenRefusal::Expired { .. })
        ));
        assert!(matches!(
            tokens.redeem(&binding, "bob", 1_000),
            Err(ApiTokenRefusal::WrongAccount { .. })
        ));
        // Revoked: the same table without the record.
        let after = table(vec![]).unwrap();
        assert_eq!(
            after.redeem(&binding, "ci", 1_000).unwrap_err(),
            ApiTokenRefusal::Unknown
        );
        assert_eq!(
            tokens.redeem("fingerprint", "ci", 1_000).unwrap_err(),
            ApiTokenRefusal::Unknown
        );
    }

    #[test]
    fn scope_limit_intersects_like_the_acl() {
        let limit = compile_scopes(&[
            "repository:ci/**:pull,push".into(),
            "repository:base/*:pull".into(),
        ])
        .unwrap();
        let subject = Subject {
            account: Some("ci"),
            groups: &[],
        };
        let requested = parse_scopes([
            "repository:ci/app:pull,push,delete",
            "repository:base/debian:pull,push",
            "repository:other:pull",
            "repository:ci/x:*",
        ])
        .unwrap();
        let granted: Vec<String> = limit
            .grant(&subject, &requested)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            granted,
            [
                "repository:base/debian:pull",
                "repository:ci/app:pull,push",
                "repository:ci/x:pull,push"
            ]
        );
    }

    #[test]
    fn an_api_token_login_grants_requested_and_acl_and_scopes() {
        use crate::decide::token::{grant, RefreshAsked};
        let secret = new_secret();
        let tokens = table(vec![record(
            "tok_1",
            "ci",
            &["repository:${account}/**:pull,push"],
            None,
            &secret.sha256_hex,
        )])
        .unwrap();
        let token = tokens.authenticate("ci", &secret.secret, 0).unwrap();
        let identity = Identity {
            account: "ci".into(),
            groups: vec![],
            source: Source::ApiToken {
                id: token.id.clone(),
            },
            refresh_binding: Some(refresh_binding(token)),
            scope_limit: Some(Arc::clone(&token.scope_limit)),
        };
        let acl: Vec<RuleSpec> = serde_json::from_value(serde_json::json!([
            { "account": "ci", "name": "**", "actions": ["*"] }
        ]))
        .unwrap();
        let acl = Acl::compile(&acl).unwrap();
        let requested = parse_scopes([
            "repository:ci/app:*",
            "repository:other/app:pull",
            "registry:catalog:*",
        ])
        .unwrap();
        let granted = grant(Some(&identity), &requested, RefreshAsked::New, &acl);
        let granted: Vec<String> = granted.access.iter().map(ToString::to_string).collect();
        assert_eq!(granted, ["repository:ci/app:pull,push"]);
    }

    #[test]
    fn bad_scope_patterns_are_explained() {
        for (scope, needle) in [
            ("repository:ci/**:", "no actions"),
            ("repository:ci/**", "type:name-pattern:actions"),
            ("ci/**", "type:name-pattern:actions"),
            ("repository:ci/**:pull,fly", "unknown action"),
            ("repository:ci/[a]:pull", "not supported"),
            ("Repo:x:pull", "resource type"),
        ] {
            let message = parse_scope_pattern(scope).unwrap_err();
            assert!(message.contains(needle), "{scope}: {message}");
            assert!(!message.contains("ACL rule"), "{message}");
        }
        assert!(compile_scopes(&[]).is_err());
        let spec = parse_scope_pattern("registry:catalog:*").unwrap();
        assert_eq!(spec.resource_type, "registry");
        assert_eq!(spec.actions, ["*"]);
    }

    #[test]
    fn bad_entries_name_the_token() {
        let secret = new_secret();
        let bad_hash = table(vec![record(
            "tok_1",
            "ci",
            &["repository:**:pull"],
            None,
            "abc",
        )]);
        assert!(bad_hash
            .unwrap_err()
            .to_string()
            .contains("token tok_1: secret_sha256"));
        let twice = table(vec![
            record(
                "tok_1",
                "ci",
                &["repository:**:pull"],
                None,
                &secret.sha256_hex,
            ),
            record(
                "tok_1",
                "ci",
                &["repository:**:pull"],
                None,
                &new_secret().sha256_hex,
            ),
        ]);
        assert!(twice.unwrap_err().to_string().contains("used twice"));
        let bad_account = table(vec![record(
            "tok_2",
            "a:b",
            &["repository:**:pull"],
            None,
            &secret.sha256_hex,
        )]);
        assert!(bad_account.unwrap_err().to_string().contains("tok_2"));
    }

    #[test]
    fn a_missing_token_file_is_an_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ApiTokens::load(&dir.path().join("tokens.json"))
            .unwrap()
            .is_empty());
    }
}

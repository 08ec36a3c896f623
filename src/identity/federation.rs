//! OIDC workload federation: a CI job logs in with the ID token its platform
//! issued (GitHub Actions, GitLab CI `id_tokens`, Kubernetes service-account
//! tokens, any OIDC issuer) as the Basic password, and holds no secret.
//!
//! This module is the pure part: compiling the config's `federation` entries
//! ([`FederationRules`]), reading a presented token's unverified header and
//! issuer to find the entry and the key ([`peek`]), and, given the issuer's
//! key and the time, verifying the signature and the claims and mapping them
//! to an account ([`FederationRule::verify`]). Fetching and caching the
//! issuers' keys is [`super::jwks`]'s business.
//!
//! Checks, in order: the signature (an asymmetric algorithm that fits the
//! key; never `none` or HMAC), `aud` (a string, or an array containing the
//! audience), `exp` (required), `nbf` and `iat` (each with [`CLOCK_SKEW_SECS`]
//! of skew), every claim condition, and the account the template makes,
//! which must be one valid repository path component.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{ConfigError, FederationSpec};
use crate::pattern::NamePattern;

use super::jwks::{tls_config, KeyCache, KeySource};
use super::{Credentials, Identity, IdentityError, Source};
use crate::snapshot::Snapshot;

/// Clock skew allowed between the issuer and us on `exp`, `nbf` and `iat`.
pub const CLOCK_SKEW_SECS: i64 = 60;
/// Longest token looked at; ID tokens are a few KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;
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
    /// The template made an account name that is not one repository path component.
    #[error("mapped account {0} is not a valid repository path component (lower-case letters and digits, separated by '.', '_', '__' or '-')")]
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

/// What can be read from a token before its signature is checked: enough
/// to pick the entry and the key, nothing to decide on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The header's `alg`.
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The claims' `iss`.
    pub issuer: String,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Whether a password has the shape of a JWT (three base64url segments, a
/// JSON header): the cheap test that routes it to federation.
pub fn looks_like_jwt(password: &str) -> bool {
    password.len() <= MAX_TOKEN_LEN
        && password.split('.').count() == 3
        && password.starts_with("eyJ")
        && password
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads a token's header and issuer without verifying anything.
pub fn peek(token: &str) -> Result<Unverified, FederationError> {
    let (header, claims, _) = split(token)?;
    let header: RawHeader = decode_json(header, "header")?;
    if header.crit.is_some() {
        return Err(FederationError::Malformed(
            "the header has a crit parameter".into(),
        ));
    }
    let claims: Map<String, Value> = decode_json(claims, "claims")?;
    let issuer = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| FederationError::MissingClaim("iss".into()))?;
    Ok(Unverified {
        alg: header.alg,
        kid: header.kid,
        issuer: issuer.to_owned(),
    })
}

fn split(token: &str) -> Result<(&str, &str, &str), FederationError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(FederationError::Malformed("longer than 16 KiB".into()));
    }
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(header), Some(claims), Some(signature), None) => Ok((header, claims, signature)),
        _ => Err(FederationError::Malformed(
            "expected 3 dot-separated segments".into(),
        )),
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(
    segment: &str,
    what: &str,
) -> Result<T, FederationError> {
    let bytes = BASE64URL_NOPAD
        .decode(segment.as_bytes())
        .map_err(|_| FederationError::Malformed(format!("the {what} is not base64url")))?;
    serde_json::from_slice(&bytes)
        .map_err(|_| FederationError::Malformed(format!("the {what} is not a JSON object")))
}

/// One issuer's public key, from its JWKS, ready to verify with.
#[derive(Clone)]
pub struct IssuerKey {
    /// The key's `kid`, if it has one.
    pub kid: Option<String>,
    /// The key's `alg`, if the JWKS names one: then only that algorithm.
    alg: Option<Algorithm>,
    /// Which algorithms the key's type allows.
    family: KeyFamily,
    key: DecodingKey,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyFamily {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl IssuerKey {
    /// A key from a JWK; `None` for keys we never verify with (symmetric,
    /// unknown types and curves, encryption-only keys).
    pub fn from_jwk(jwk: &Jwk) -> Option<IssuerKey> {
        use jsonwebtoken::jwk::PublicKeyUse;
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            return None;
        }
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => KeyFamily::P256,
                EllipticCurve::P384 => KeyFamily::P384,
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                KeyFamily::Ed25519
            }
            _ => return None,
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(named) => Some(named.to_string().parse::<Algorithm>().ok()?),
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        let key = IssuerKey {
            kid: jwk.common.key_id.clone(),
            alg,
            family,
            key,
        };
        // A JWK naming an algorithm its key cannot do is unusable.
        match alg {
            Some(alg) if !key.family_allows(alg) => None,
            _ => Some(key),
        }
    }

    fn family_allows(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self.family {
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::P256 => alg == ES256,
            KeyFamily::P384 => alg == ES384,
            KeyFamily::Ed25519 => alg == EdDSA,
        }
    }

    /// Whether the key may verify a token whose header says `alg`.
    fn allows(&self, alg: Algorithm) -> bool {
        self.family_allows(alg) && self.alg.is_none_or(|named| named == alg)
    }
}

/// The compiled `federation` section.
#[derive(Debug, Clone, Default)]
pub struct FederationRules {
    rules: Vec<FederationRule>,
}

impl FederationRules {
    /// Compiles the config's entries; errors name `federation[i].field`.
    pub fn compile(specs: &[FederationSpec]) -> Result<FederationRules, ConfigError> {
        let mut rules: Vec<FederationRule> = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let rule = FederationRule::compile(index, spec)?;
            if rules.iter().any(|other| other.issuer == rule.issuer) {
                return Err(invalid(
                    index,
                    "issuer",
                    "another entry has this issuer already; one entry per issuer",
                ));
            }
            rules.push(rule);
        }
        Ok(FederationRules { rules })
    }

    /// The entry for an issuer.
    pub fn for_issuer(&self, issuer: &str) -> Option<&FederationRule> {
        self.rules.iter().find(|rule| rule.issuer == issuer)
    }

    /// Whether federation is configured at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The entries, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &FederationRule> {
        self.rules.iter()
    }
}

fn invalid(index: usize, field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: format!("federation[{index}].{field}"),
        reason: reason.into(),
    }
}

/// One trusted issuer, compiled.
#[derive(Debug, Clone)]
pub struct FederationRule {
    /// The issuer URL, exactly as tokens carry it.
    pub issuer: String,
    /// The audience tokens must carry.
    pub audience: String,
    /// Groups every identity of this issuer gets.
    pub groups: Vec<String>,
    account: AccountTemplate,
    conditions: Vec<(String, Condition)>,
}

impl FederationRule {
    fn compile(index: usize, spec: &FederationSpec) -> Result<FederationRule, ConfigError> {
        let issuer_uri: http::Uri = spec
            .issuer
            .parse()
            .map_err(|_| invalid(index, "issuer", "is not a URL"))?;
        if issuer_uri.scheme_str() != Some("https") || issuer_uri.host().is_none() {
            return Err(invalid(
                index,
                "issuer",
                "must be an https:// URL (keys are fetched from it)",
            ));
        }
        if issuer_uri.query().is_some() {
            return Err(invalid(index, "issuer", "must not have a query"));
        }
        if let Some(jwks) = &spec.jwks_uri {
            let uri: http::Uri = jwks
                .parse()
                .map_err(|_| invalid(index, "jwks_uri", "is not a URL"))?;
            if uri.scheme_str() != Some("https") || uri.host().is_none() {
                return Err(invalid(index, "jwks_uri", "must be an https:// URL"));
            }
        }
        if spec.audience.is_empty() {
            return Err(invalid(index, "audience", "must not be empty"));
        }
        let account = AccountTemplate::parse(&spec.account)
            .map_err(|reason| invalid(index, "account", reason))?;
        if spec.groups.iter().any(String::is_empty) {
            return Err(invalid(index, "groups", "a group name cannot be empty"));
        }
        let conditions = spec
            .claims
            .iter()
            .map(|(claim, expected)| {
                Condition::compile(expected)
                    .map(|condition| (claim.clone(), condition))
                    .map_err(|reason| invalid(index, &format!("claims.{claim}"), reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FederationRule {
            issuer: spec.issuer.clone(),
            audience: spec.audience.clone(),
            groups: spec.groups.clone(),
            account,
            conditions,
        })
    }

    /// Verifies `token` (whose [`peek`] named this issuer) with the issuer's
    /// `key` at `now` (unix seconds), and maps it to an account.
    pub fn verify(
        &self,
        token: &str,
        key: &IssuerKey,
        now: i64,
    ) -> Result<FederatedIdentity, FederationError> {
        let (header_b64, claims_b64, signature) = split(token)?;
        let header: RawHeader = decode_json(header_b64, "header")?;
        let alg: Algorithm = header
            .alg
            .parse()
            .ok()
            .filter(|alg| key.allows(*alg))
            .ok_or_else(|| FederationError::Algorithm(echo(&header.alg)))?;
        let message_len = header_b64.len() + 1 + claims_b64.len();
        let message = &token.as_bytes()[..message_len];
        match jsonwebtoken::crypto::verify(signature, message, &key.key, alg) {
            Ok(true) => {}
            _ => return Err(FederationError::BadSignature),
        }
        let claims: Map<String, Value> = decode_json(claims_b64, "claims")?;
        self.check_claims(&claims, now)?;
        let account = self.account.render(&claims)?;
        if !is_one_path_component(&account) {
            return Err(FederationError::BadAccount(echo(&account)));
        }
        Ok(FederatedIdentity {
            account,
            groups: self.groups.clone(),
            subject: claims
                .get("sub")
                .and_then(Value::as_str)
                .map(crate::scope::excerpt)
                .unwrap_or_default(),
        })
    }

    /// The checks after the signature: issuer, audience, times, conditions.
    fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<(), FederationError> {
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(FederationError::MissingClaim("iss".into()));
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == self.audience,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(&self.audience)),
            _ => return Err(FederationError::MissingClaim("aud".into())),
        };
        if !audience_ok {
            return Err(FederationError::WrongAudience {
                found: match &claims["aud"] {
                    Value::String(aud) => echo(aud),
                    other => echo(&other.to_string()),
                },
                expected: self.audience.clone(),
            });
        }
        let time = |name: &str| -> Result<Option<i64>, FederationError> {
            match claims.get(name) {
                None => Ok(None),
                Some(value) => value
                    .as_f64()
                    .filter(|t| t.is_finite())
                    // Saturating: a NumericDate far out of range stays far.
                    .map(|t| Some(t.floor() as i64))
                    .ok_or_else(|| FederationError::MissingClaim(name.to_owned())),
            }
        };
        let exp = time("exp")?.ok_or_else(|| FederationError::MissingClaim("exp".into()))?;
        if now >= exp.saturating_add(CLOCK_SKEW_SECS) {
            return Err(FederationError::Expired { exp, now });
        }
        for claim in ["nbf", "iat"] {
            if let Some(at) = time(claim)? {
                if at > now.saturating_add(CLOCK_SKEW_SECS) {
                    return Err(FederationError::NotYetValid { claim, at, now });
                }
            }
        }
        for (claim, condition) in &self.conditions {
            let value = claims.get(claim).and_then(claim_text);
            let Some(value) = value else {
                return Err(FederationError::ConditionFailed {
                    claim: claim.clone(),
                    found: "missing".into(),
                    expected: condition.text().to_owned(),
                });
            };
            if !condition.matches(&value) {
                return Err(FederationError::ConditionFailed {
                    claim: claim.clone(),
                    found: echo(&value),
                    expected: condition.text().to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Who a verified identity token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedIdentity {
    /// The mapped account.
    pub account: String,
    /// The entry's groups.
    pub groups: Vec<String>,
    /// The token's `sub` (shortened), for the audit log.
    pub subject: String,
}

/// A claim as text: strings as they are, numbers and booleans as JSON
/// writes them; arrays, objects and null are not comparable.
fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// A claim condition: exact text, or a glob.
#[derive(Debug, Clone)]
enum Condition {
    Exact(String),
    Glob { text: String, pattern: NamePattern },
}

impl Condition {
    fn compile(text: &str) -> Result<Condition, String> {
        if !text.contains('*') {
            return Ok(Condition::Exact(text.to_owned()));
        }
        let pattern = NamePattern::compile(text).map_err(|problem| {
            format!(
                "glob {text:?} is invalid: {problem} (globs are printable ASCII without spaces)"
            )
        })?;
        if pattern.uses_account() {
            return Err("${account} has no meaning in a claim condition".into());
        }
        Ok(Condition::Glob {
            text: text.to_owned(),
            pattern,
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Condition::Exact(expected) => expected == value,
            Condition::Glob { pattern, .. } => pattern.matches(value, None),
        }
    }

    fn text(&self) -> &str {
        match self {
            Condition::Exact(text) | Condition::Glob { text, .. } => text,
        }
    }
}

/// The account template: literal text and `{claim}` or `{claim|lower}`.
#[derive(Debug, Clone)]
struct AccountTemplate {
    pieces: Vec<TemplatePiece>,
}

#[derive(Debug, Clone)]
enum TemplatePiece {
    Literal(String),
    Claim { name: String, lower: bool },
}

impl AccountTemplate {
    fn parse(text: &str) -> Result<AccountTemplate, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                Some(0) if rest.starts_with('{') => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("{text:?} has a `{{` without its `}}`"))?;
                    let inner = &rest[1..end];
                    let (name, lower) = match inner.split_once('|') {
                        None => (inner, false),
                        Some((name, "lower")) => (name, true),
                        Some((_, filter)) => {
                            return Err(format!(
                                "unknown filter {filter:?} in {text:?}; the only filter is `lower`"
                            ))
                        }
                    };
                    if name.is_empty()
                        || !name.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':')
                        })
                    {
                        return Err(format!("{{{inner}}} in {text:?} does not name a claim"));
                    }
                    pieces.push(TemplatePiece::Claim {
                        name: name.to_owned(),
                        lower,
                    });
                    rest = &rest[end + 1..];
                }
                Some(0) => return Err(format!("{text:?} has a `}}` without its `{{`")),
                Some(at) => {
                    pieces.push(TemplatePiece::Literal(rest[..at].to_owned()));
                    rest = &rest[at..];
                }
                None => {
                    pieces.push(TemplatePiece::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        if pieces.is_empty() {
            return Err("the account template is empty".into());
        }
        Ok(AccountTemplate { pieces })
    }

    fn render(&self, claims: &Map<String, Value>) -> Result<String, FederationError> {
        let mut account = String::new();
        for piece in &self.pieces {
            match piece {
                TemplatePiece::Literal(text) => account.push_str(text),
                TemplatePiece::Claim { name, lower } => {
                    let value = claims
                        .get(name)
                        .and_then(claim_text)
                        .ok_or_else(|| FederationError::MissingClaim(name.clone()))?;
                    if *lower {
                        account.push_str(&value.to_lowercase());
                    } else {
                        account.push_str(&value);
                    }
                }
            }
        }
        Ok(account)
    }
}

/// Whether `name` is exactly one repository path component: `[a-z0-9]+`
/// joined by `.`, `_`, `__` or dashes, as Distribution's grammar says.
fn is_one_path_component(name: &str) -> bool {
    !name.contains('/') && crate::scope::validate_repository_name(name).is_ok()
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
    tracing::debug!(account = %identity.account, subject = %identity.subject, "identity token verified");
    Ok(Identity {
        account: identity.account,
        groups: identity.groups,
        source: Source::Federation {
            issuer: issuer.unwrap_or_default().to_owned(),
        },
        // The ID token lives minutes; a refresh token must not outlive it.
        refresh_binding: None,
        scope_limit: None,
    })
}

/// Claims of a test token, by name (for the tests of this module and of
/// the identity source).
#[cfg(test)]
pub(crate) fn claims_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Config entries by issuer, for tests.
#[cfg(test)]
pub(crate) fn spec(issuer: &str, account: &str, claims: &[(&str, &str)]) -> FederationSpec {
    FederationSpec {
        issuer: issuer.into(),
        audience: "registry.test".into(),
        account: account.into(),
        groups: vec!["ci".into()],
        claims: claims
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::BTreeMap<_, _>>(),
        jwks_uri: None,
        ca_file: None,
        comment: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISSUER: &str = "https://token.actions.githubusercontent.com";
    const NOW: i64 = 1_700_000_000;

    /// An RSA-2048 key pair made with AWS-LC (the crypto stack; it refuses
    /// smaller RSA keys), as a JWK for verifying and a key for signing.
    fn rsa_pair(kid: &str) -> (Jwk, jsonwebtoken::EncodingKey) {
        use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let private = KeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = private.public_key();
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
            "n": BASE64URL_NOPAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": BASE64URL_NOPAD.encode(public.exponent().big_endian_without_leading_zero()),
        }))
        .unwrap();
        let pkcs8: Pkcs8V1Der<'_> = private.as_der().unwrap();
        // jsonwebtoken signs with a PKCS#1 key: the payload of the PKCS#8 one.
        let pkcs1 = pkcs8::PrivateKeyInfo::try_from(pkcs8.as_ref())
            .unwrap()
            .private_key;
        (jwk, jsonwebtoken::EncodingKey::from_rsa_der(pkcs1))
    }

    fn mint(key: &jsonwebtoken::EncodingKey, kid: &str, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    fn github_claims() -> Value {
        json!({
            "iss": ISSUER, "aud": "registry.test", "sub": "repo:Acme/app:ref:refs/heads/main",
            "repository_owner": "Acme", "repository": "Acme/app", "ref": "refs/heads/main",
            "run_number": 42, "exp": NOW + 300, "iat": NOW - 10, "nbf": NOW - 10,
        })
    }

    fn rule(account: &str, claims: &[(&str, &str)]) -> FederationRule {
        let rules = FederationRules::compile(&[spec(ISSUER, account, claims)]).unwrap();
        rules.for_issuer(ISSUER).unwrap().clone()
    }

    struct Fixture {
        jwk: Jwk,
        signer: jsonwebtoken::EncodingKey,
    }

    fn fixture() -> &'static Fixture {
        static FIXTURE: std::sync::OnceLock<Fixture> = std::sync::OnceLock::new();
        FIXTURE.get_or_init(|| {
            let (jwk, signer) = rsa_pair("k1");
            Fixture { jwk, signer }
        })
    }

    fn verify_with(
        rule: &FederationRule,
        claims: &Value,
    ) -> Result<FederatedIdentity, FederationError> {
        let f = fixture();
        let token = mint(&f.signer, "k1", claims);
        let key = IssuerKey::from_jwk(&f.jwk).unwrap();
        rule.verify(&token, &key, NOW)
    }

    #[test]
    fn a_good_token_maps_to_the_templated_account() {
        let rule = rule(
            "ci-{repository_owner|lower}",
            &[("repository_owner", "Acme"), ("ref", "refs/heads/*")],
        );
        let identity = verify_with(&rule, &github_claims()).unwrap();
        assert_eq!(identity.account, "ci-acme");
        assert_eq!(identity.groups, ["ci"]);
        assert_eq!(identity.subject, "repo:Acme/app:ref:refs/heads/main");
        let token = mint(&fixture().signer, "k1", &github_claims());
        let peeked = peek(&token).unwrap();
        assert_eq!(
            (
                peeked.issuer.as_str(),
                peeked.kid.as_deref(),
                peeked.alg.as_str()
            ),
            (ISSUER, Some("k1"), "RS256")
        );
        assert!(looks_like_jwt(&token));
        assert!(!looks_like_jwt("hunter2"));
    }

    #[test]
    fn audience_may_be_an_array() {
        let rule = rule("ci", &[]);
        let mut claims = github_claims();
        claims["aud"] = json!(["https://kubernetes.default.svc", "registry.test"]);
        assert!(verify_with(&rule, &claims).is_ok());
        claims["aud"] = json!(["https://kubernetes.default.svc"]);
        assert!(matches!(
            verify_with(&rule, &claims),
            Err(FederationError::WrongAudience { .. })
        ));
        claims["aud"] = json!("https://github.com/acme");
        let error = verify_with(&rule, &claims).unwrap_err();
        assert_eq!(error.label(), "wrong_audience");
        claims.as_object_mut().unwrap().remove("aud");
        assert_eq!(
            verify_with(&rule, &claims).unwrap_err(),
            FederationError::MissingClaim("aud".into())
        );
    }

    #[test]
    fn times_are_checked_with_bounded_skew() {
        let rule = rule("ci", &[]);
        let mut claims = github_claims();
        claims["exp"] = json!(NOW - CLOCK_SKEW_SECS + 1);
        assert!(verify_with(&rule, &claims).is_ok(), "within the skew");
        claims["exp"] = json!(NOW - CLOCK_SKEW_SECS);
        assert!(matches!(
            verify_with(&rule, &claims),
            Err(FederationError::Expired { .. })
        ));
        claims["exp"] = json!(NOW + 300);
        claims["nbf"] = json!(NOW + CLOCK_SKEW_SECS + 1);
        assert!(matches!(
            verify_with(&rule, &claims),
            Err(FederationError::NotYetValid { claim: "nbf", .. })
        ));
        claims["nbf"] = json!(NOW);
        claims["iat"] = json!(NOW + 3600);
        assert!(matches!(
            verify_with(&rule, &claims),
            Err(FederationError::NotYetValid { claim: "iat", .. })
        ));
        claims["iat"] = json!("yesterday");
        assert_eq!(
            verify_with(&rule, &claims).unwrap_err(),
            FederationError::MissingClaim("iat".into())
        );
        let mut no_exp = github_claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            verify_with(&rule, &no_exp).unwrap_err(),
            FederationError::MissingClaim("exp".into())
        );
    }

    #[test]
    fn conditions_are_exact_or_glob_and_all_must_hold() {
        let rule = rule(
            "ci",
            &[("repository_owner", "acme"), ("ref", "refs/heads/*")],
        );
        let error = verify_with(&rule, &github_claims()).unwrap_err();
        assert_eq!(error.label(), "condition_failed");
        assert!(error.to_string().contains("repository_owner"), "{error}");
        let rule = self::rule("ci", &[("ref", "refs/heads/*"), ("run_number", "42")]);
        assert!(
            verify_with(&rule, &github_claims()).is_ok(),
            "numbers compare as text"
        );
        let mut claims = github_claims();
        claims["ref"] = json!("refs/heads/feature/x");
        assert!(
            verify_with(&rule, &claims).is_err(),
            "* stays within a segment"
        );
        let deep = self::rule("ci", &[("ref", "refs/heads/**")]);
        assert!(verify_with(&deep, &claims).is_ok());
        let missing = self::rule("ci", &[("environment", "prod")]);
        let error = verify_with(&missing, &github_claims()).unwrap_err();
        assert!(error.to_string().contains("missing"), "{error}");
    }

    #[test]
    fn a_mapped_account_must_be_one_path_component() {
        for template in ["ci-{repository_owner}", "{repository}", "x{unknown}"] {
            let error = verify_with(&rule(template, &[]), &github_claims()).unwrap_err();
            assert!(
                matches!(
                    error,
                    FederationError::BadAccount(_) | FederationError::MissingClaim(_)
                ),
                "{template}: {error}"
            );
        }
        let mut claims = github_claims();
        claims["repository_owner"] = json!("acme/../x");
        assert!(matches!(
            verify_with(&rule("{repository_owner}", &[]), &claims),
            Err(FederationError::BadAccount(_))
        ));
    }

    #[test]
    fn signatures_keys_and_algorithms_are_enforced() {
        let rule = rule("ci", &[]);
        let f = fixture();
        let key = IssuerKey::from_jwk(&f.jwk).unwrap();
        let token = mint(&f.signer, "k1", &github_claims());
        // Claims edited after signing.
        let (header, _, signature) = split(&token).unwrap();
        let mut edited = github_claims();
        edited["repository_owner"] = json!("evil");
        let forged = format!(
            "{header}.{}.{signature}",
            BASE64URL_NOPAD.encode(edited.to_string().as_bytes())
        );
        assert_eq!(
            rule.verify(&forged, &key, NOW).unwrap_err(),
            FederationError::BadSignature
        );
        // alg none and HS256 never verify.
        for alg in ["none", "HS256", "ES256"] {
            let header =
                BASE64URL_NOPAD.encode(json!({"alg": alg, "kid": "k1"}).to_string().as_bytes());
            let claims = BASE64URL_NOPAD.encode(github_claims().to_string().as_bytes());
            let token = format!("{header}.{claims}.{signature}");
            assert_eq!(
                rule.verify(&token, &key, NOW).unwrap_err().label(),
                "algorithm",
                "{alg}"
            );
        }
        // A key signed by someone else.
        let (_, other_signer) = rsa_pair("k1");
        let other = mint(&other_signer, "k1", &github_claims());
        assert_eq!(
            rule.verify(&other, &key, NOW).unwrap_err(),
            FederationError::BadSignature
        );
        // Symmetric keys in a JWKS are never used.
        let hmac: Jwk =
            serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"})).unwrap();
        assert!(IssuerKey::from_jwk(&hmac).is_none());
        let enc: Jwk =
            serde_json::from_value(json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"}))
                .unwrap();
        assert!(IssuerKey::from_jwk(&enc).is_none());
    }

    #[test]
    fn config_errors_name_the_field() {
        let cases: [(FederationSpec, &str); 6] = [
            (
                spec("http://issuer.test", "ci", &[]),
                "federation[0].issuer",
            ),
            (spec(ISSUER, "ci-{owner", &[]), "federation[0].account"),
            (
                spec(ISSUER, "ci-{owner|upper}", &[]),
                "federation[0].account",
            ),
            (spec(ISSUER, "", &[]), "federation[0].account"),
            (
                spec(ISSUER, "ci", &[("ref", "refs/[a]/*")]),
                "federation[0].claims.ref",
            ),
            (
                FederationSpec {
                    jwks_uri: Some("http://x/jwks".into()),
                    ..spec(ISSUER, "ci", &[])
                },
                "federation[0].jwks_uri",
            ),
        ];
        for (spec, field) in cases {
            let message = FederationRules::compile(&[spec]).unwrap_err().to_string();
            assert!(message.contains(field), "{field}: {message}");
        }
        let twice = FederationRules::compile(&[spec(ISSUER, "a", &[]), spec(ISSUER, "b", &[])]);
        assert!(twice
            .unwrap_err()
            .to_string()
            .contains("federation[1].issuer"));
    }

    #[test]
    fn peek_refuses_garbage_without_panicking() {
        for token in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.x",
            "e30.e30.x",
            "eyJhbGciOiJSUzI1NiJ9.bm90anNvbg.x",
        ] {
            assert!(peek(token).is_err(), "{token}");
        }
        let _ = claims_map(json!({}));
    }
}

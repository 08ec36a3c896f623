//! The config's `federation` entries compiled, and the pure check of an ID
//! token against its entry: signature with the issuer's key, audience,
//! times (clock passed in), claim conditions, and the account mapping.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::jwt::{decode_json, split, IssuerKey, RawHeader};
use super::{echo, FederationError, CLOCK_SKEW_SECS};
use crate::acl::AccountName;
use crate::config::{ConfigError, FederationSpec};
use crate::pattern::NamePattern;

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

    /// Verifies `token` (whose [`super::peek`] named this issuer) with the issuer's
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
        let message = token
            .get(..header_b64.len() + 1 + claims_b64.len())
            .ok_or_else(|| FederationError::Malformed("truncated".into()))?;
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, alg) {
            Ok(true) => {}
            _ => return Err(FederationError::BadSignature),
        }
        let claims: Map<String, Value> = decode_json(claims_b64, "claims")?;
        self.check_claims(&claims, now)?;
        let account = self.account.render(&claims)?;
        // The security check every account name passes (one repository
        // path component), so `${account}` rules stay inside the namespace.
        AccountName::parse(&account)
            .map_err(|error| FederationError::BadAccount(error.to_string()))?;
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
        let (audience_ok, found) = match claims.get("aud") {
            Some(Value::String(aud)) => (*aud == self.audience, echo(aud)),
            Some(auds @ Value::Array(list)) => (
                list.iter().any(|aud| aud.as_str() == Some(&self.audience)),
                echo(&auds.to_string()),
            ),
            _ => return Err(FederationError::MissingClaim("aud".into())),
        };
        if !audience_ok {
            return Err(FederationError::WrongAudience {
                found,
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
    use data_encoding::BASE64URL_NOPAD;
    use jsonwebtoken::jwk::Jwk;
    use serde_json::json;

    use super::super::{looks_like_jwt, peek};
    use super::*;

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
}

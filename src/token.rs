//! Registry access tokens and regauth refresh tokens as signed JWTs.
//!
//! This module owns the claim sets, signing (header `typ`, `alg`, `kid`, and
//! `x5c` when a certificate is configured; protocol.md §6.4) and verification
//! of tokens that regauth issued itself: the auth_request sidecar checks
//! access tokens, the token endpoint checks refresh tokens.
//!
//! Verification is strict and cheap to reject: the `alg` header must be one
//! of ES256/RS256/PS256 and fit the selected trusted key *before* any crypto
//! runs (so `none` and HS* key-confusion tokens never reach a verifier). The
//! signature is checked by the selected key (AWS-LC, key parsed at load);
//! issuer, audience and times are checked here against an injected `now`, so
//! nothing in here reads a clock.
//!
//! Signing assembles the compact JWS itself: the header segment is encoded
//! once per key, the claims are JSON-encoded, and the key signs (AWS-LC).
//! Only the encoding is ours; the cryptography is the library's.

use data_encoding::{BASE64, BASE64URL_NOPAD};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::keys::{self, Algorithm, SigningKey, VerifyingKey};
use crate::scope::ResourceScope;

/// Longest token we look at. Ours are a few KiB at most (one `x5c`
/// certificate plus merged access entries); anything bigger is not ours and
/// would only cost decoding time.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Value of the `typ` claim of refresh tokens.
pub const REFRESH_TYP: &str = "refresh";

/// One entry of the `access` claim.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// Bare resource type, e.g. `repository` or `registry` (never with a class).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Resource class, e.g. `plugin` from `repository(plugin)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Resource name, e.g. `team/app` or `catalog`.
    pub name: String,
    /// Granted actions, e.g. `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

/// Claims of a registry access token (registry 2.8: aud a plain string;
/// exp/nbf/iat JSON integers).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer; must equal the registry's `auth.token.issuer`.
    pub iss: String,
    /// Subject: the account name, `""` for anonymous.
    pub sub: String,
    /// Audience: the registry's `auth.token.service`.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Not before, unix seconds.
    pub nbf: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Unique token ID, see [`new_jti`].
    pub jti: String,
    /// Granted access; may be empty (login needs only a valid token).
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// The account's groups when the token was issued: a private claim
    /// (the name RFC 9068 uses) that registries ignore and `/auth` hands
    /// upstream in its groups header. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl From<&ResourceScope> for AccessEntry {
    /// The `access` entry granting a scope, class and all.
    fn from(scope: &ResourceScope) -> AccessEntry {
        AccessEntry {
            resource_type: scope.resource_type.clone(),
            class: scope.class.clone(),
            name: scope.name.clone(),
            actions: scope.actions.iter().cloned().collect(),
        }
    }
}

/// Claims of a refresh token: bound to subject and service, and to a
/// fingerprint of the user's current credential so that a password change or
/// removal revokes it.
///
/// Two things keep it from ever working as an access token: the `typ` claim
/// is `"refresh"` (checked by [`verify_access`] and [`verify_refresh`]), and
/// `aud` is `regauth-refresh:<service>` rather than `<service>`, so the
/// registry, which compares `aud` byte-exact with its service and knows
/// nothing of `typ`, rejects it too. It also carries no `access` claim.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct RefreshClaims {
    /// Issuer, as for access tokens.
    pub iss: String,
    /// The account the token was issued to.
    pub sub: String,
    /// [`refresh_audience`] of the service the token is for.
    pub aud: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Unique token ID.
    pub jti: String,
    /// Always [`REFRESH_TYP`].
    pub typ: String,
    /// Fingerprint of the credential the user authenticated with, computed
    /// by the caller; a mismatch later means the credential changed.
    pub credential: String,
}

impl RefreshClaims {
    /// Claims for a refresh token valid `ttl_secs` from `now` for `service`.
    pub fn new(
        issuer: &str,
        subject: &str,
        service: &str,
        credential: &str,
        now: i64,
        ttl_secs: i64,
    ) -> RefreshClaims {
        RefreshClaims {
            iss: issuer.to_owned(),
            sub: subject.to_owned(),
            aud: refresh_audience(service),
            exp: now.saturating_add(ttl_secs),
            iat: now,
            jti: new_jti(),
            typ: REFRESH_TYP.to_owned(),
            credential: credential.to_owned(),
        }
    }
}

/// The `aud` of refresh tokens for `service`; distinct from `service` itself
/// so that the registry never accepts a refresh token.
pub fn refresh_audience(service: &str) -> String {
    format!("regauth-refresh:{service}")
}

/// Why a token could not be made or was rejected. Messages suit a log line
/// and never contain the token; values taken from an unverified header are
/// shortened and quoted.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS with JSON header and claims.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The `alg` header is not ES256, RS256 or PS256 (e.g. `none`, `HS256`).
    #[error("unsupported token algorithm {0}; only ES256, RS256 and PS256 are accepted")]
    UnsupportedAlgorithm(String),
    /// The `alg` header is supported but not by the selected key.
    #[error("token algorithm {alg} does not fit key {kid}")]
    AlgorithmMismatch {
        /// The header's algorithm.
        alg: Algorithm,
        /// libtrust ID of the selected key.
        kid: String,
    },
    /// No trusted key matches the header's `kid` or `x5c`.
    #[error("token signed by an untrusted key: {0}")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `now > exp + leeway`.
    #[error("token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// The verifier's time.
        now: i64,
        /// Allowed clock skew in seconds.
        leeway: u64,
    },
    /// `now < nbf - leeway` (or `iat` for refresh tokens).
    #[error("token not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// The `nbf` (or `iat`) claim.
        nbf: i64,
        /// The verifier's time.
        now: i64,
        /// Allowed clock skew in seconds.
        leeway: u64,
    },
    /// `iss` is not the expected issuer.
    #[error("token issuer {found:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// The token's `iss`.
        found: String,
        /// The configured issuer.
        expected: String,
    },
    /// `aud` is not the expected audience.
    #[error("token audience {found:?} is not the expected {expected:?}")]
    WrongAudience {
        /// The token's `aud`.
        found: String,
        /// The expected audience.
        expected: String,
    },
    /// A refresh token where an access token was expected, or vice versa.
    #[error("expected {expected} token, got {found}")]
    WrongTokenType {
        /// "an access" or "a refresh".
        expected: &'static str,
        /// What the `typ` claim said.
        found: String,
    },
    /// Signing failed (a key/algorithm mismatch that `keys` should prevent).
    #[error("could not sign token: {0}")]
    Signing(String),
}

/// Signs `claims` with `key`. Header: `typ` "JWT", `alg`, `kid`, and `x5c`
/// when the key has a certificate. Segments are unpadded base64url and ES256
/// signatures are raw r‖s (64 bytes), as registries require.
pub fn sign<C: Serialize>(key: &SigningKey, claims: &C) -> Result<String, TokenError> {
    let header = key.jws_header();
    let claims = serde_json::to_vec(claims).map_err(|e| TokenError::Signing(e.to_string()))?;
    let mut token =
        String::with_capacity(header.len() + 2 + BASE64URL_NOPAD.encode_len(claims.len()) + 352);
    token.push_str(header);
    token.push('.');
    BASE64URL_NOPAD.encode_append(&claims, &mut token);
    let signature = key
        .sign(token.as_bytes())
        .map_err(|e| TokenError::Signing(e.to_string()))?;
    token.push('.');
    BASE64URL_NOPAD.encode_append(&signature, &mut token);
    Ok(token)
}

/// What a verifier demands; `now` injected (unix seconds).
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    /// Required `iss`.
    pub issuer: &'a str,
    /// Required `aud` for access tokens; the service for refresh tokens.
    pub audience: &'a str,
    /// Allowed clock skew for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Current time, unix seconds.
    pub now: i64,
}

/// Verifies an access token: `alg` must be one the selected key allows
/// (never `none`/HS*: rejected before any crypto); the key is chosen by `kid`
/// (libtrust ID or thumbprint) or, without `kid`, by the public key of the
/// `x5c` leaf; then the signature, `iss`, `aud`, `exp` (required) and `nbf`.
pub fn verify_access(
    keys: &[VerifyingKey],
    token: &str,
    expect: &Expectations<'_>,
) -> Result<AccessClaims, TokenError> {
    let payload = verify_signature(keys, token)?;
    if let Some(typ) = parse_claims::<TypClaim>(&payload)?.typ {
        return Err(TokenError::WrongTokenType {
            expected: "an access",
            found: shorten(&typ),
        });
    }
    let claims: AccessClaims = parse_claims(&payload)?;
    check_issuer(&claims.iss, expect)?;
    check_audience(&claims.aud, expect.audience)?;
    check_times(claims.exp, claims.nbf, expect)?;
    Ok(claims)
}

/// Verifies a refresh token like [`verify_access`], except that `typ` must be
/// "refresh" and `aud` must be [`refresh_audience`]`(expect.audience)`; `iat`
/// stands in for `nbf`. The caller still compares `credential` and `sub`.
pub fn verify_refresh(
    keys: &[VerifyingKey],
    token: &str,
    expect: &Expectations<'_>,
) -> Result<RefreshClaims, TokenError> {
    let payload = verify_signature(keys, token)?;
    let typ = parse_claims::<TypClaim>(&payload)?.typ;
    if typ.as_deref() != Some(REFRESH_TYP) {
        return Err(TokenError::WrongTokenType {
            expected: "a refresh",
            found: typ.map_or_else(
                || "an access token (no typ claim)".to_owned(),
                |t| shorten(&t),
            ),
        });
    }
    let claims: RefreshClaims = parse_claims(&payload)?;
    check_issuer(&claims.iss, expect)?;
    check_audience(&claims.aud, &refresh_audience(expect.audience))?;
    check_times(claims.exp, claims.iat, expect)?;
    Ok(claims)
}

/// A fresh token ID: 128 random bits, unpadded base64url (22 characters).
pub fn new_jti() -> String {
    BASE64URL_NOPAD.encode(&rand::random::<[u8; 16]>())
}

/// The only claim we peek at before choosing the claim type.
#[derive(Deserialize)]
struct TypClaim {
    #[serde(default)]
    typ: Option<String>,
}

/// The header fields we act on; others are ignored.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x5c: Option<Vec<String>>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// Checks structure, algorithm, key and signature; returns the decoded
/// claims JSON. Nothing here can panic on any input.
fn verify_signature(keys: &[VerifyingKey], token: &str) -> Result<Vec<u8>, TokenError> {
    let malformed = |why: &str| TokenError::Malformed(why.to_owned());
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("longer than 64 KiB"));
    }
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| malformed("expected 3 dot-separated segments"))?;
    let (header_b64, payload_b64) = message
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or_else(|| malformed("expected 3 dot-separated segments"))?;
    let header_json = BASE64URL_NOPAD
        .decode(header_b64.as_bytes())
        .map_err(|_| malformed("header is not unpadded base64url"))?;
    let header: RawHeader = serde_json::from_slice(&header_json)
        .map_err(|e| TokenError::Malformed(format!("header: {}", shorten(&e.to_string()))))?;
    let alg = Algorithm::from_jws_name(&header.alg)
        .ok_or_else(|| TokenError::UnsupportedAlgorithm(format!("{:?}", shorten(&header.alg))))?;
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: we understand no extensions, so must reject.
        return Err(malformed("header has a crit parameter"));
    }
    let key = select_key(keys, &header)?;
    if !key.allows(alg) {
        return Err(TokenError::AlgorithmMismatch {
            alg,
            kid: key.libtrust_kid.clone(),
        });
    }
    if signature.is_empty() {
        return Err(malformed("empty signature"));
    }
    let signature = BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .map_err(|_| malformed("signature is not unpadded base64url"))?;
    // An ES256 signature that is not exactly 64 raw bytes (e.g. DER) fails.
    if !key.verify(alg, message.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }
    BASE64URL_NOPAD
        .decode(payload_b64.as_bytes())
        .map_err(|_| malformed("claims are not unpadded base64url"))
}

/// Picks the trusted key named by `kid`, else by the `x5c` leaf's key.
fn select_key<'k>(
    keys: &'k [VerifyingKey],
    header: &RawHeader,
) -> Result<&'k VerifyingKey, TokenError> {
    if let Some(kid) = &header.kid {
        return keys
            .iter()
            .find(|k| k.matches_kid(kid))
            .ok_or_else(|| TokenError::UnknownKey(format!("kid {:?}", shorten(kid))));
    }
    let Some(chain) = &header.x5c else {
        return Err(TokenError::UnknownKey(
            "token has neither kid nor x5c header".into(),
        ));
    };
    let leaf = chain
        .first()
        .ok_or_else(|| TokenError::Malformed("empty x5c header".into()))?;
    let der = BASE64
        .decode(leaf.as_bytes())
        .map_err(|_| TokenError::Malformed("x5c certificate is not base64".into()))?;
    let spki = keys::certificate_spki_der(&der, 1)
        .map_err(|e| TokenError::Malformed(format!("x5c: {}", shorten(&e.to_string()))))?;
    keys.iter().find(|k| k.spki_der() == spki).ok_or_else(|| {
        TokenError::UnknownKey(format!("x5c certificate key {}", keys::libtrust_kid(&spki)))
    })
}

fn parse_claims<T: DeserializeOwned>(json: &[u8]) -> Result<T, TokenError> {
    serde_json::from_slice(json)
        .map_err(|e| TokenError::Malformed(format!("claims: {}", shorten(&e.to_string()))))
}

fn check_issuer(iss: &str, expect: &Expectations<'_>) -> Result<(), TokenError> {
    if iss == expect.issuer {
        return Ok(());
    }
    Err(TokenError::WrongIssuer {
        found: shorten(iss),
        expected: expect.issuer.to_owned(),
    })
}

fn check_audience(aud: &str, expected: &str) -> Result<(), TokenError> {
    if aud == expected {
        return Ok(());
    }
    Err(TokenError::WrongAudience {
        found: shorten(aud),
        expected: expected.to_owned(),
    })
}

/// Registry semantics (protocol.md §6.1): reject if `now > exp + leeway` or
/// `now < nbf - leeway`. Saturating, since the claims are attacker-chosen
/// numbers until proven otherwise.
fn check_times(exp: i64, nbf: i64, expect: &Expectations<'_>) -> Result<(), TokenError> {
    let (now, leeway) = (expect.now, expect.leeway_secs);
    let skew = i64::try_from(leeway).unwrap_or(i64::MAX);
    if now > exp.saturating_add(skew) {
        return Err(TokenError::Expired { exp, now, leeway });
    }
    if now < nbf.saturating_sub(skew) {
        return Err(TokenError::NotYetValid { nbf, now, leeway });
    }
    Ok(())
}

/// Bounds a token-derived string for error messages (at most 64 chars).
fn shorten(s: &str) -> String {
    const MAX_CHARS: usize = 64;
    if s.chars().count() <= MAX_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_CHARS).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{EC_CERT_PEM, EC_PKCS8_PEM, EC_SEC1_PEM, RSA_CERT_PEM, RSA_PKCS1_PEM};
    use crate::keys::{KidFormat, PublicComponents};

    const NOW: i64 = 1_700_000_000;
    const ISSUER: &str = "regauth";
    const SERVICE: &str = "registry.example.com";

    fn ec_key(kid_format: KidFormat, cert: bool) -> SigningKey {
        let cert = cert.then_some(EC_CERT_PEM);
        SigningKey::from_pem(EC_SEC1_PEM, cert, Algorithm::Es256, kid_format).expect("EC key")
    }

    fn rsa_key(alg: Algorithm) -> SigningKey {
        SigningKey::from_pem(RSA_PKCS1_PEM, Some(RSA_CERT_PEM), alg, KidFormat::Libtrust)
            .expect("RSA key")
    }

    fn expect() -> Expectations<'static> {
        Expectations {
            issuer: ISSUER,
            audience: SERVICE,
            leeway_secs: 60,
            now: NOW,
        }
    }

    fn access_claims() -> AccessClaims {
        AccessClaims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: SERVICE.into(),
            exp: NOW + 300,
            nbf: NOW,
            iat: NOW,
            jti: new_jti(),
            groups: vec![],
            access: vec![
                AccessEntry {
                    resource_type: "repository".into(),
                    class: None,
                    name: "localhost:5000/team/app".into(),
                    actions: vec!["pull".into(), "push".into()],
                },
                AccessEntry {
                    resource_type: "repository".into(),
                    class: Some("plugin".into()),
                    name: "p/x".into(),
                    actions: vec!["pull".into()],
                },
            ],
        }
    }

    fn segments(token: &str) -> Vec<Vec<u8>> {
        token
            .split('.')
            .map(|s| {
                BASE64URL_NOPAD
                    .decode(s.as_bytes())
                    .expect("unpadded base64url")
            })
            .collect()
    }

    fn header_json(token: &str) -> serde_json::Value {
        serde_json::from_slice(&segments(token)[0]).expect("header JSON")
    }

    fn b64(json: &str) -> String {
        BASE64URL_NOPAD.encode(json.as_bytes())
    }

    /// A token with this header, signed by `key` whatever the header says.
    fn hand_signed(key: &SigningKey, header: &str) -> String {
        let claims = serde_json::to_string(&access_claims()).expect("json");
        let message = format!("{}.{}", b64(header), b64(&claims));
        let signature = key.sign(message.as_bytes()).expect("sign");
        format!("{message}.{}", BASE64URL_NOPAD.encode(&signature))
    }

    /// jsonwebtoken, an independent implementation, accepts what we sign.
    #[test]
    fn jsonwebtoken_verifies_our_tokens() {
        for key in [
            ec_key(KidFormat::Libtrust, true),
            rsa_key(Algorithm::Rs256),
            rsa_key(Algorithm::Ps256),
        ] {
            let token = sign(&key, &access_claims()).expect("sign");
            let decoding = match key.verifying.public_components() {
                PublicComponents::P256 { x, y } => {
                    let mut point = vec![4u8];
                    point.extend_from_slice(x);
                    point.extend_from_slice(y);
                    jsonwebtoken::DecodingKey::from_ec_der(&point)
                }
                PublicComponents::Rsa { n, e } => {
                    jsonwebtoken::DecodingKey::from_rsa_raw_components(n, e)
                }
            };
            let alg = match key.algorithm {
                Algorithm::Es256 => jsonwebtoken::Algorithm::ES256,
                Algorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
                Algorithm::Ps256 => jsonwebtoken::Algorithm::PS256,
            };
            let mut validation = jsonwebtoken::Validation::new(alg);
            validation.set_audience(&[SERVICE]);
            validation.set_issuer(&[ISSUER]);
            validation.validate_exp = false;
            let got = jsonwebtoken::decode::<AccessClaims>(&token, &decoding, &validation)
                .expect("jsonwebtoken accepts our token");
            assert_eq!(got.claims.sub, "alice");
            assert_eq!(got.header.kid.as_deref(), Some(key.kid.as_str()));
            assert_eq!(got.header.x5c, key.x5c);
        }
    }

    #[test]
    fn round_trip_es256_rs256_ps256() {
        for key in [
            ec_key(KidFormat::Libtrust, false),
            rsa_key(Algorithm::Rs256),
            rsa_key(Algorithm::Ps256),
        ] {
            let claims = access_claims();
            let token = sign(&key, &claims).expect("sign");
            let got = verify_access(std::slice::from_ref(&key.verifying), &token, &expect());
            assert_eq!(got.expect("verifies"), claims, "{}", key.algorithm);
            assert_eq!(header_json(&token)["alg"], key.algorithm.as_str());
        }
    }

    #[test]
    fn header_carries_kid_in_chosen_format_and_x5c() {
        let key = ec_key(KidFormat::Libtrust, false);
        let header = header_json(&sign(&key, &access_claims()).expect("sign"));
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["kid"], crate::keys::tests::EC_SEC1_KID);
        assert!(header.get("x5c").is_none());

        let key = ec_key(KidFormat::Thumbprint, true);
        let header = header_json(&sign(&key, &access_claims()).expect("sign"));
        assert_eq!(header["kid"], crate::keys::tests::EC_SEC1_THUMBPRINT);
        let x5c = header["x5c"].as_array().expect("x5c array");
        assert_eq!(x5c.len(), 1);
        let der = BASE64
            .decode(x5c[0].as_str().expect("string").as_bytes())
            .expect("standard base64");
        let spki = keys::certificate_spki_der(&der, 1).expect("certificate");
        assert_eq!(spki, key.verifying.spki_der());
    }

    #[test]
    fn signatures_are_raw_and_unpadded() {
        let es = sign(&ec_key(KidFormat::Libtrust, false), &access_claims()).expect("sign");
        assert!(!es.contains('='));
        assert_eq!(segments(&es)[2].len(), 64, "ES256 must be raw r||s");
        let rs = sign(&rsa_key(Algorithm::Rs256), &access_claims()).expect("sign");
        assert_eq!(segments(&rs)[2].len(), 256);
    }

    #[test]
    fn der_encoded_es256_signature_is_rejected() {
        let key = ec_key(KidFormat::Libtrust, false);
        let token = sign(&key, &access_claims()).expect("sign");
        let (message, _) = token.rsplit_once('.').expect("dots");
        // A valid signature by the same key, but DER-encoded as X.509 does.
        let sec1 = crate::keys::tests::EC_SEC1_PEM
            .split("-----BEGIN EC PRIVATE KEY-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END").next())
            .map(|body| body.split_whitespace().collect::<String>())
            .expect("SEC1 body");
        let sec1 = BASE64.decode(sec1.as_bytes()).expect("base64");
        let asn1 = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &sec1,
        )
        .expect("same key, DER signatures");
        let der = asn1
            .sign(&aws_lc_rs::rand::SystemRandom::new(), message.as_bytes())
            .expect("sign");
        let der_token = format!("{message}.{}", BASE64URL_NOPAD.encode(der.as_ref()));
        let err = verify_access(&[key.verifying], &der_token, &expect()).expect_err("DER sig");
        assert!(matches!(err, TokenError::BadSignature), "{err}");
    }

    #[test]
    fn time_checks_honour_leeway() {
        let key = ec_key(KidFormat::Libtrust, false);
        let token = sign(&key, &access_claims()).expect("sign");
        let keys = [key.verifying];
        let at = |now: i64, leeway_secs: u64| {
            verify_access(
                &keys,
                &token,
                &Expectations {
                    now,
                    leeway_secs,
                    ..expect()
                },
            )
        };
        let exp = NOW + 300;
        assert!(at(exp + 60, 60).is_ok());
        assert!(matches!(at(exp + 61, 60), Err(TokenError::Expired { .. })));
        assert!(at(exp, 0).is_ok());
        assert!(matches!(at(exp + 1, 0), Err(TokenError::Expired { .. })));
        assert!(at(NOW - 60, 60).is_ok());
        assert!(matches!(
            at(NOW - 61, 60),
            Err(TokenError::NotYetValid { .. })
        ));
        assert!(matches!(
            at(NOW - 1, 0),
            Err(TokenError::NotYetValid { .. })
        ));
        // Extreme values saturate instead of overflowing.
        assert!(at(i64::MAX, u64::MAX).is_ok());
        assert!(matches!(
            at(i64::MIN, u64::MAX),
            Err(TokenError::NotYetValid { .. })
        ));
    }

    #[test]
    fn wrong_issuer_and_audience() {
        let key = ec_key(KidFormat::Libtrust, false);
        let token = sign(&key, &access_claims()).expect("sign");
        let keys = [key.verifying];
        let err = verify_access(
            &keys,
            &token,
            &Expectations {
                issuer: "other",
                ..expect()
            },
        );
        assert!(matches!(err, Err(TokenError::WrongIssuer { .. })));
        let err = verify_access(
            &keys,
            &token,
            &Expectations {
                audience: "other",
                ..expect()
            },
        );
        assert!(matches!(err, Err(TokenError::WrongAudience { .. })));
        // Byte-exact, as the registry compares (protocol.md §9.21).
        let err = verify_access(
            &keys,
            &token,
            &Expectations {
                issuer: "regauth/",
                ..expect()
            },
        );
        assert!(matches!(err, Err(TokenError::WrongIssuer { .. })));
    }

    #[test]
    fn unknown_kid_and_missing_key_ids() {
        let key = ec_key(KidFormat::Libtrust, true);
        let token = sign(&key, &access_claims()).expect("sign");
        let other = SigningKey::from_pem(EC_PKCS8_PEM, None, Algorithm::Es256, KidFormat::Libtrust)
            .expect("other key");
        let err = verify_access(std::slice::from_ref(&other.verifying), &token, &expect())
            .expect_err("unknown");
        assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
        assert!(verify_access(&[], &token, &expect()).is_err());

        // No kid and no x5c: nothing to choose a key by.
        let bare = hand_signed(&key, r#"{"alg":"ES256"}"#);
        let err = verify_access(std::slice::from_ref(&key.verifying), &bare, &expect())
            .expect_err("no kid");
        assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
    }

    #[test]
    fn x5c_without_kid_selects_the_certificate_key() {
        let key = ec_key(KidFormat::Libtrust, true);
        let header = serde_json::json!({ "alg": "ES256", "x5c": key.x5c });
        let token = hand_signed(&key, &header.to_string());
        let trusted = crate::keys::VerifyingKey::from_pem(EC_CERT_PEM).expect("cert");
        assert!(verify_access(&trusted, &token, &expect()).is_ok());
        let rsa_only = crate::keys::VerifyingKey::from_pem(RSA_CERT_PEM).expect("cert");
        let err = verify_access(&rsa_only, &token, &expect()).expect_err("untrusted cert");
        assert!(matches!(err, TokenError::UnknownKey(_)), "{err}");
    }

    #[test]
    fn alg_none_is_unsupported() {
        let key = ec_key(KidFormat::Libtrust, false);
        let claims = serde_json::to_string(&access_claims()).expect("json");
        let header = format!(r#"{{"alg":"none","kid":"{}"}}"#, key.kid);
        for sig in ["", "AAAA"] {
            let token = format!("{}.{}.{sig}", b64(&header), b64(&claims));
            let err = verify_access(std::slice::from_ref(&key.verifying), &token, &expect())
                .expect_err("none");
            assert!(matches!(err, TokenError::UnsupportedAlgorithm(_)), "{err}");
        }
    }

    /// Key confusion: an HS256 token whose HMAC secret is the public key.
    #[test]
    fn hs256_with_public_key_as_secret_is_unsupported() {
        let key = rsa_key(Algorithm::Rs256);
        let pem = crate::keys::tests::to_pem("PUBLIC KEY", key.verifying.spki_der());
        for secret in [
            key.verifying.spki_der(),
            pem.as_bytes(),
            RSA_CERT_PEM.as_bytes(),
        ] {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(key.kid.clone());
            let hmac = jsonwebtoken::EncodingKey::from_secret(secret);
            let token = jsonwebtoken::encode(&header, &access_claims(), &hmac).expect("hs256");
            let err = verify_access(std::slice::from_ref(&key.verifying), &token, &expect())
                .expect_err("HS256");
            assert!(
                matches!(err, TokenError::UnsupportedAlgorithm(ref a) if a.contains("HS256")),
                "{err}"
            );
        }
    }

    #[test]
    fn algorithm_must_fit_the_selected_key() {
        // RSA-signed token claiming the EC key's kid.
        let ec = ec_key(KidFormat::Libtrust, false);
        let rsa = rsa_key(Algorithm::Rs256);
        let token = hand_signed(&rsa, &format!(r#"{{"alg":"RS256","kid":"{}"}}"#, ec.kid));
        let err = verify_access(std::slice::from_ref(&ec.verifying), &token, &expect())
            .expect_err("mismatch");
        assert!(matches!(err, TokenError::AlgorithmMismatch { .. }), "{err}");

        // Our own RS256 key accepts only RS256, a certificate-derived RSA key both.
        let ps = sign(&rsa_key(Algorithm::Ps256), &access_claims()).expect("sign");
        let err =
            verify_access(std::slice::from_ref(&rsa.verifying), &ps, &expect()).expect_err("PS256");
        assert!(matches!(err, TokenError::AlgorithmMismatch { .. }), "{err}");
        let from_cert = crate::keys::VerifyingKey::from_pem(RSA_CERT_PEM).expect("cert");
        assert!(verify_access(&from_cert, &ps, &expect()).is_ok());
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let key = ec_key(KidFormat::Libtrust, false);
        let token = sign(&key, &access_claims()).expect("sign");
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims = access_claims();
        claims.sub = "admin".into();
        let forged_payload = b64(&serde_json::to_string(&claims).expect("json"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        let err = verify_access(&[key.verifying], &forged, &expect()).expect_err("tampered");
        assert!(matches!(err, TokenError::BadSignature), "{err}");
    }

    #[test]
    fn refresh_round_trip_and_binding() {
        let key = ec_key(KidFormat::Libtrust, false);
        let claims = RefreshClaims::new(ISSUER, "alice", SERVICE, "fp1", NOW, 86_400);
        assert_eq!(claims.aud, format!("regauth-refresh:{SERVICE}"));
        let token = sign(&key, &claims).expect("sign");
        let keys = [key.verifying];
        assert_eq!(
            verify_refresh(&keys, &token, &expect()).expect("valid"),
            claims
        );
        let other_service = Expectations {
            audience: "other",
            ..expect()
        };
        let err = verify_refresh(&keys, &token, &other_service).expect_err("other service");
        assert!(matches!(err, TokenError::WrongAudience { .. }), "{err}");
        let later = Expectations {
            now: NOW + 86_400 + 61,
            ..expect()
        };
        assert!(matches!(
            verify_refresh(&keys, &token, &later),
            Err(TokenError::Expired { .. })
        ));
    }

    #[test]
    fn refresh_and_access_tokens_are_not_interchangeable() {
        let key = ec_key(KidFormat::Libtrust, false);
        let keys = [key.verifying.clone()];
        let refresh = sign(
            &key,
            &RefreshClaims::new(ISSUER, "alice", SERVICE, "fp", NOW, 600),
        )
        .expect("sign");
        let err = verify_access(&keys, &refresh, &expect()).expect_err("refresh as access");
        assert!(matches!(err, TokenError::WrongTokenType { .. }), "{err}");
        let access = sign(&key, &access_claims()).expect("sign");
        let err = verify_refresh(&keys, &access, &expect()).expect_err("access as refresh");
        assert!(matches!(err, TokenError::WrongTokenType { .. }), "{err}");

        // Even with the typ claim stripped, the audience form keeps them apart.
        let mut no_typ =
            serde_json::to_value(RefreshClaims::new(ISSUER, "a", SERVICE, "fp", NOW, 600))
                .expect("json");
        if let Some(obj) = no_typ.as_object_mut() {
            obj.remove("typ");
            obj.insert("nbf".into(), NOW.into());
        }
        let err = verify_access(&keys, &sign(&key, &no_typ).expect("sign"), &expect());
        assert!(
            matches!(err, Err(TokenError::WrongAudience { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let key = ec_key(KidFormat::Libtrust, true);
        let keys = [key.verifying.clone()];
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        let huge_dots = format!("{0}.{0}.{0}", "A".repeat(30_000));
        let hdr = b64(&format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid));
        let inputs = [
            "",
            ".",
            "..",
            "...",
            "a.b",
            "a.b.c",
            "a.b.c.d",
            "!!!.###.$$$",
            "é.ü.ß",
            &huge,
            &huge_dots,
            &format!("{}.e30.", b64("[]")),
            &format!("{}.e30.", b64(r#"{"alg":5}"#)),
            &format!("{}.e30.", b64(r#"{"alg":"ES256","x5c":[]}"#)),
            &format!("{}.e30.", b64(r#"{"alg":"ES256","x5c":["!!"]}"#)),
            &format!("{}.e30.", b64(r#"{"alg":"ES256","x5c":["AAAA"]}"#)),
            &format!(
                "{}.e30.AAAA",
                b64(r#"{"alg":"ES256","kid":"x","crit":["b64"]}"#)
            ),
            &format!("{hdr}.e30."),
            &format!("{hdr}.e30.!!!!"),
            &format!("{hdr}.e30.{}", "A".repeat(86)),
            &format!("{hdr}.e30=.AAAA"),
            &format!("{hdr}==.e30.AAAA"),
        ];
        for input in inputs {
            assert!(verify_access(&keys, input, &expect()).is_err());
            assert!(verify_refresh(&keys, input, &expect()).is_err());
        }
        // Every single-character corruption of a valid token must fail cleanly.
        let token = sign(&key, &access_claims()).expect("sign");
        for i in 0..token.len() {
            for replacement in ['A', '.', '-', '=', 'é'] {
                let mut bytes: Vec<char> = token.chars().collect();
                if bytes[i] == replacement {
                    continue;
                }
                bytes[i] = replacement;
                let mutated: String = bytes.into_iter().collect();
                assert!(
                    verify_access(&keys, &mutated, &expect()).is_err(),
                    "index {i}"
                );
            }
        }
    }

    #[test]
    fn errors_do_not_echo_the_token() {
        let key = ec_key(KidFormat::Libtrust, false);
        let token = sign(&key, &access_claims()).expect("sign");
        let cases = [
            verify_access(
                std::slice::from_ref(&key.verifying),
                &token,
                &Expectations {
                    now: NOW + 9_999,
                    ..expect()
                },
            ),
            verify_access(
                std::slice::from_ref(&key.verifying),
                &format!("{token}x"),
                &expect(),
            ),
            verify_access(&[], &token, &expect()),
        ];
        for result in cases {
            let message = result.expect_err("rejected").to_string();
            for part in token.split('.') {
                assert!(!message.contains(part), "{message}");
            }
        }
    }

    #[test]
    fn jti_is_128_bit_and_unique() {
        let (a, b) = (new_jti(), new_jti());
        let bits = BASE64URL_NOPAD.decode(a.as_bytes()).expect("base64url");
        assert_eq!(bits.len(), 16);
        assert_ne!(a, b);
    }
}

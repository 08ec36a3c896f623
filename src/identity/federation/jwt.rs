//! What a presented ID token says before it is verified (enough to find
//! the entry and the key, nothing to decide on), and the issuers' public
//! keys as verifiers.

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::FederationError;

/// Longest token looked at; ID tokens are a few KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;

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
pub(super) struct RawHeader {
    pub(super) alg: String,
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

pub(super) fn split(token: &str) -> Result<(&str, &str, &str), FederationError> {
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

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(
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
    pub(super) key: DecodingKey,
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
    pub(super) fn allows(&self, alg: Algorithm) -> bool {
        self.family_allows(alg) && self.alg.is_none_or(|named| named == alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}

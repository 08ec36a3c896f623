//! The JWK Set (RFC 7517) of every key whose tokens regauth accepts, for a registry that
//! reads its trusted keys from a JWKS file: Distribution registry 3's `auth.token.jwks`
//! (`regauth jwks` prints it).
//!
//! Registry 3 files each JWK under its `kid` exactly as written, and finds a token's key
//! by the `kid` of the token's header. So every key is listed under the `kid` regauth
//! puts into its headers: the signing key's own, and for the keys of
//! `token.trusted_certificates` (earlier signing keys, during a rotation) the ID in the
//! configured `token.kid` format. With `thumbprint` that is the thumbprint registry 3
//! itself computes, leading zero bytes of EC coordinates dropped (see `key_id`); a JWKS
//! written by a tool that keeps them would name about 1 EC key in 128 differently.
//!
//! The key parameters, by contrast, follow RFC 7518 to the letter: EC coordinates are
//! always 32 bytes (go-jose, which reads the file for the registry, refuses a shorter
//! one and with it the whole file) and RSA numbers carry no leading zero bytes. Only
//! public parameters exist here: the type has no place for a private one.

use data_encoding::BASE64URL_NOPAD;
use serde::Serialize;

use super::{Algorithm, KidFormat, PublicComponents, SigningKey, VerifyingKey};

/// A JWK Set: `{"keys": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwks {
    /// The keys, the signing key first.
    pub keys: Vec<Jwk>,
}

/// One public key as a JWK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    /// The key parameters, with `kty` (`EC` or `RSA`).
    #[serde(flatten)]
    pub params: JwkParams,
    /// Always `sig`: the key verifies token signatures.
    #[serde(rename = "use")]
    pub usage: &'static str,
    /// The algorithm tokens signed by this key use, when there is only one: always for
    /// the signing key and EC keys; a trusted RSA key may have signed RS256 or PS256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alg: Option<Algorithm>,
    /// The key ID regauth writes into the `kid` header of tokens signed with this key.
    pub kid: String,
}

/// The `kty`-specific members of a [`Jwk`], base64url without padding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kty")]
pub enum JwkParams {
    /// `{"kty":"EC","crv":"P-256","x":…,"y":…}`.
    #[serde(rename = "EC")]
    Ec {
        /// Always `P-256`.
        crv: &'static str,
        /// The x coordinate, all 32 bytes.
        x: String,
        /// The y coordinate, all 32 bytes.
        y: String,
    },
    /// `{"kty":"RSA","n":…,"e":…}`.
    #[serde(rename = "RSA")]
    Rsa {
        /// The modulus, without leading zero bytes.
        n: String,
        /// The public exponent, without leading zero bytes.
        e: String,
    },
}

impl Jwks {
    /// The set for `signing` and the keys of `token.trusted_certificates`, in that
    /// order; trusted keys are named in `kid_format` (`token.kid`). A key listed twice
    /// (a trusted certificate for the signing key itself) appears once.
    pub fn new(signing: &SigningKey, trusted: &[VerifyingKey], kid_format: KidFormat) -> Jwks {
        let mut keys = vec![Jwk::new(
            &signing.verifying,
            signing.kid.clone(),
            Some(signing.algorithm),
        )];
        for key in trusted {
            let kid = match kid_format {
                KidFormat::Libtrust => &key.libtrust_kid,
                KidFormat::Thumbprint => &key.thumbprint,
            };
            if keys.iter().any(|listed| &listed.kid == kid) {
                continue;
            }
            let algorithms = key.algorithms();
            let alg = algorithms
                .first()
                .copied()
                .filter(|_| algorithms.len() == 1);
            keys.push(Jwk::new(key, kid.clone(), alg));
        }
        Jwks { keys }
    }
}

impl Jwk {
    fn new(key: &VerifyingKey, kid: String, alg: Option<Algorithm>) -> Jwk {
        let b64 = |bytes: &[u8]| BASE64URL_NOPAD.encode(bytes);
        let params = match key.public_components() {
            PublicComponents::P256 { x, y } => JwkParams::Ec {
                crv: "P-256",
                x: b64(&coordinate(x)),
                y: b64(&coordinate(y)),
            },
            PublicComponents::Rsa { n, e } => JwkParams::Rsa {
                n: b64(without_leading_zeros(n)),
                e: b64(without_leading_zeros(e)),
            },
        };
        Jwk {
            params,
            usage: "sig",
            alg,
            kid,
        }
    }
}

/// RFC 7518 §6.2.1.2: a P-256 coordinate is always 32 bytes, leading zeros included
/// (go-jose refuses anything else).
fn coordinate(bytes: &[u8]) -> [u8; 32] {
    let bytes = without_leading_zeros(bytes);
    let mut fixed = [0u8; 32];
    // A coordinate is below the field prime, so it never has more than 32 bytes.
    let start = 32usize.saturating_sub(bytes.len());
    fixed[start..].copy_from_slice(&bytes[bytes.len().saturating_sub(32)..]);
    fixed
}

/// RFC 7518 §6.3.1: RSA numbers use the minimum number of octets (a DER INTEGER, for
/// one, may start with a zero byte that is not part of the number).
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use sha2::{Digest as _, Sha256};

    use super::*;
    use crate::keys::tests::{
        EC_CERT_PEM, EC_SEC1_KID, EC_SEC1_PEM, EC_SEC1_THUMBPRINT, RSA_CERT_PEM, RSA_KID,
        RSA_PKCS1_PEM, RSA_THUMBPRINT,
    };

    /// A P-256 key whose x coordinate starts with a zero byte (tests/fixtures/jwks).
    const LEADING_ZERO_KEY: &str = include_str!("../../tests/fixtures/jwks/ec-leading-zero-x.key");
    const LEADING_ZERO_CERT: &str = include_str!("../../tests/fixtures/jwks/ec-leading-zero-x.crt");
    /// Its coordinates and thumbprints, computed with Python from the public point.
    const LEADING_ZERO_X: &str = "ACfjg0_ui1fnM00hQmYjVkhJaB-GJyJwuDKU7DUaiGE";
    const LEADING_ZERO_Y: &str = "H8zWi5MFs_sADyCo-7a7Tp2tbLo5dX1GorU7L0eEiy8";
    const LEADING_ZERO_REGISTRY3_KID: &str = "4Z0tBFbtTzpdgY4S0vRpOsdAUebZmuzhOaCXV7PPXyg";
    const LEADING_ZERO_STRICT_KID: &str = "3BlULRy2A7JrLe1pH0WNTrboSuWjxa9fNrw_boLvcaY";

    fn signing(pem: &str, alg: Algorithm, kid: KidFormat) -> SigningKey {
        SigningKey::from_pem(pem, None, alg, kid).expect("test key loads")
    }

    fn to_json(jwks: &Jwks) -> Value {
        serde_json::to_value(jwks).expect("serializes")
    }

    fn decode(text: &Value) -> Vec<u8> {
        BASE64URL_NOPAD
            .decode(text.as_str().expect("a string").as_bytes())
            .expect("base64url without padding")
    }

    #[test]
    fn leading_zero_coordinate_keeps_32_bytes_and_the_registry_3_kid() {
        let key = signing(LEADING_ZERO_KEY, Algorithm::Es256, KidFormat::Thumbprint);
        let jwks = to_json(&Jwks::new(&key, &[], KidFormat::Thumbprint));
        assert_eq!(
            jwks,
            json!({"keys": [{
                "kty": "EC", "crv": "P-256",
                "x": LEADING_ZERO_X, "y": LEADING_ZERO_Y,
                "use": "sig", "alg": "ES256",
                "kid": LEADING_ZERO_REGISTRY3_KID,
            }]})
        );
        let x = decode(&jwks["keys"][0]["x"]);
        assert_eq!((x.len(), x[0]), (32, 0), "x is full length, zero first");
        // The kid is what tokens carry, and not the strict RFC 7638 thumbprint.
        assert_eq!(key.kid, LEADING_ZERO_REGISTRY3_KID);
        assert_ne!(jwks["keys"][0]["kid"], LEADING_ZERO_STRICT_KID);
    }

    /// Registry 3 computes the thumbprint of a rootcertbundle key from Go's
    /// `big.Int.Bytes()`; recomputed here from the JWK's own members, zeros dropped.
    #[test]
    fn thumbprint_kid_is_recomputable_from_the_jwk_as_registry_3_does() {
        let key = signing(LEADING_ZERO_KEY, Algorithm::Es256, KidFormat::Thumbprint);
        let jwk = &to_json(&Jwks::new(&key, &[], KidFormat::Thumbprint))["keys"][0];
        let go_bytes = |member: &Value| {
            let bytes = decode(member);
            BASE64URL_NOPAD.encode(without_leading_zeros(&bytes))
        };
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            go_bytes(&jwk["x"]),
            go_bytes(&jwk["y"])
        );
        let thumbprint = BASE64URL_NOPAD.encode(&Sha256::digest(canonical.as_bytes()));
        assert_eq!(jwk["kid"], thumbprint.as_str());
    }

    #[test]
    fn libtrust_signing_key_and_trusted_rsa_certificate() {
        let key = signing(EC_SEC1_PEM, Algorithm::Es256, KidFormat::Libtrust);
        let trusted = VerifyingKey::from_pem(RSA_CERT_PEM).expect("cert");
        let jwks = to_json(&Jwks::new(&key, &trusted, KidFormat::Libtrust));
        let keys = jwks["keys"].as_array().expect("array");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0]["kid"], EC_SEC1_KID);
        assert_eq!(keys[1]["kid"], RSA_KID);
        assert_eq!(keys[1]["kty"], "RSA");
        assert_eq!(keys[1]["e"], "AQAB");
        // A trusted RSA key may have signed RS256 or PS256 tokens: no `alg`.
        assert!(keys[1].get("alg").is_none(), "{}", keys[1]);
        let n = decode(&keys[1]["n"]);
        assert_eq!(n.len(), 256, "2048-bit modulus, no leading zero byte");
        assert_ne!(n[0], 0);
        // Public members only: no d, p, q, dp, dq, qi.
        for key in keys {
            let members: Vec<&str> = key
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(!members.contains(&private), "{key}");
            }
        }
    }

    #[test]
    fn trusted_keys_take_the_configured_kid_format_and_appear_once() {
        let key = signing(RSA_PKCS1_PEM, Algorithm::Ps256, KidFormat::Thumbprint);
        let bundle = format!("{EC_CERT_PEM}{RSA_CERT_PEM}");
        let trusted = VerifyingKey::from_pem(&bundle).expect("bundle");
        let jwks = to_json(&Jwks::new(&key, &trusted, KidFormat::Thumbprint));
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("array")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid"))
            .collect();
        // The RSA certificate is the signing key's own: listed once, with PS256.
        assert_eq!(kids, [RSA_THUMBPRINT, EC_SEC1_THUMBPRINT]);
        assert_eq!(jwks["keys"][0]["alg"], "PS256");
        assert_eq!(jwks["keys"][1]["alg"], "ES256");
    }

    #[test]
    fn certificate_and_private_key_give_the_same_jwk() {
        let key = signing(LEADING_ZERO_KEY, Algorithm::Es256, KidFormat::Thumbprint);
        let from_cert = VerifyingKey::from_pem(LEADING_ZERO_CERT).expect("cert");
        let other = signing(EC_SEC1_PEM, Algorithm::Es256, KidFormat::Thumbprint);
        let jwks = Jwks::new(&other, &from_cert, KidFormat::Thumbprint);
        let own = Jwks::new(&key, &[], KidFormat::Thumbprint);
        assert_eq!(jwks.keys[1].params, own.keys[0].params);
        assert_eq!(jwks.keys[1].kid, LEADING_ZERO_REGISTRY3_KID);
    }

    #[test]
    fn rsa_numbers_lose_leading_zero_bytes() {
        assert_eq!(without_leading_zeros(&[0, 0, 1, 0]), [1, 0]);
        assert_eq!(without_leading_zeros(&[0, 0]), [] as [u8; 0]);
        assert_eq!(without_leading_zeros(&[1, 0, 1]), [1, 0, 1]);
    }

    /// Whatever length the key type hands over, a coordinate comes out as 32 bytes.
    #[test]
    fn ec_coordinates_are_always_32_bytes() {
        let mut full = [7u8; 32];
        full[0] = 0;
        assert_eq!(coordinate(&full), full);
        assert_eq!(coordinate(&full[1..]), full, "stripped: padded back");
        let mut with_sign_byte = vec![0u8];
        with_sign_byte.extend_from_slice(&full);
        assert_eq!(
            coordinate(&with_sign_byte),
            full,
            "DER-style extra zero dropped"
        );
    }
}

//! Tokens the tests sign themselves, the way regauth signs them (or an attacker would try
//! to): the clock in JWT seconds, a signing key made by `regauth keygen`, access claims.

use regauth::keys::{Algorithm, KidFormat, SigningKey};
use regauth::token::{self, AccessClaims, AccessEntry};

use super::{keygen, Harness};

/// Seconds since the Unix epoch, the unit of `exp`, `nbf` and `iat`.
pub fn now() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is past 1970");
    i64::try_from(elapsed.as_secs()).expect("seconds fit in i64")
}

/// `regauth keygen` of an ES256 pair `<stem>.key`/`<stem>.crt` in the temp dir, loaded to
/// sign tokens in the test (libtrust `kid`, as regauth's default config names its key).
pub fn test_signing_key(h: &Harness, stem: &str) -> SigningKey {
    let (key, cert) = keygen(h, "ES256", stem);
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    SigningKey::from_pem(
        &read(&key),
        Some(&read(&cert)),
        Algorithm::Es256,
        KidFormat::Libtrust,
    )
    .expect("a key regauth keygen wrote")
}

/// Access-token claims from `issuer` for `service`, valid from now for five minutes, with
/// `(type, name, actions)` entries.
pub fn access_claims(
    issuer: &str,
    service: &str,
    sub: &str,
    access: &[(&str, &str, &[&str])],
) -> AccessClaims {
    let now = now();
    AccessClaims {
        iss: issuer.into(),
        sub: sub.into(),
        aud: service.into(),
        exp: now + 300,
        nbf: now,
        iat: now,
        jti: token::new_jti(),
        groups: Vec::new(),
        access: access
            .iter()
            .map(|(kind, name, actions)| AccessEntry {
                resource_type: (*kind).into(),
                class: None,
                name: (*name).into(),
                actions: actions.iter().map(|a| a.to_string()).collect(),
            })
            .collect(),
    }
}

/// `token` with its header swapped for `{"typ":"JWT","alg":"none","kid":kid}` and its
/// signature dropped: the oldest JWT forgery.
pub fn alg_none_forgery(token: &str, kid: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let header = serde_json::json!({ "typ": "JWT", "alg": "none", "kid": kid });
    let header = data_encoding::BASE64URL_NOPAD.encode(header.to_string().as_bytes());
    format!("{header}.{payload}.")
}

/// `claims` signed HS256 under `kid` with the signer's public certificate `certificate` as
/// the secret: algorithm confusion, which a verifier must refuse.
pub fn hs256_forgery(claims: &AccessClaims, kid: &str, certificate: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_owned());
    let secret = jsonwebtoken::EncodingKey::from_secret(certificate);
    jsonwebtoken::encode(&header, claims, &secret).expect("HS256 signs anything")
}

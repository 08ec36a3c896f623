//! Decoding key material: PEM text into labelled DER blocks, DER into the key types
//! regauth supports (EC P-256 and RSA; SEC1, PKCS#1 and PKCS#8 private keys,
//! SubjectPublicKeyInfo public keys), and the certificate checks behind `x5c`.
//!
//! Errors name what was being decoded and why it cannot be used, for the operator;
//! an unsupported key is refused by name rather than skipped.

use std::fmt;

use aws_lc_rs::encoding::{AsDer as _, PublicKeyX509Der};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use pkcs8::der::asn1::BitStringRef;
use pkcs8::der::{AnyRef, Decode as _, Encode as _};
use pkcs8::spki::{AlgorithmIdentifierRef, SubjectPublicKeyInfoRef};
use pkcs8::{ObjectIdentifier, PrivateKeyInfo};

use super::{libtrust_kid, KeyError, VerifyingKey};

/// OID of `id-ecPublicKey` (RFC 5480).
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// OID of the P-256 curve, `prime256v1` / `secp256r1`.
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// OID of `rsaEncryption` (RFC 8017).
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// OID of Ed25519 (RFC 8410), named in errors because registry 2.8 cannot use it.
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// Length of an uncompressed SEC1 P-256 point: `04 ‖ x ‖ y`.
const P256_POINT_LEN: usize = 65;

/// Public half of a supported key, as the numbers JWKs and key IDs are made
/// of. Always valid: a point on the curve, an RSA key AWS-LC accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum PublicKey {
    /// Uncompressed SEC1 point `04 ‖ x ‖ y`.
    P256([u8; P256_POINT_LEN]),
    /// Modulus and public exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl PublicKey {
    /// Parses a DER SubjectPublicKeyInfo, naming unsupported types clearly.
    pub(super) fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        let spki = SubjectPublicKeyInfoRef::from_der(der).map_err(invalid_key("public key"))?;
        match spki.algorithm.oids().map_err(invalid_key("public key"))? {
            (OID_EC_PUBLIC_KEY, Some(OID_P256)) => {
                let point = spki.subject_public_key.raw_bytes();
                PublicKey::p256(point).map_err(|reason| KeyError::InvalidKey {
                    what: "EC public key",
                    reason: reason.into(),
                })
            }
            (OID_EC_PUBLIC_KEY, curve) => Err(unsupported_curve(curve)),
            (OID_RSA, _) => {
                let key = aws_lc_rs::rsa::PublicKey::from_der(der)
                    .map_err(invalid_key("RSA public key"))?;
                Ok(PublicKey::rsa(&key))
            }
            (other, _) => Err(unsupported_oid(other)),
        }
    }

    /// Checks that `point` is an uncompressed point on P-256 (Go's
    /// `x509.ParsePKIXPublicKey`, and so the registry, accepts no other form).
    fn p256(point: &[u8]) -> Result<PublicKey, &'static str> {
        let point: [u8; P256_POINT_LEN] = point
            .try_into()
            .ok()
            .filter(|p: &[u8; P256_POINT_LEN]| p[0] == 4)
            .ok_or("only uncompressed P-256 points (65 bytes, 0x04 first) are supported")?;
        aws_lc_rs::signature::ParsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
            point,
        )
        .map_err(|_| "the point is not on the P-256 curve")?;
        Ok(PublicKey::P256(point))
    }

    fn rsa(key: &aws_lc_rs::rsa::PublicKey) -> PublicKey {
        PublicKey::Rsa {
            n: key.modulus().big_endian_without_leading_zero().to_vec(),
            e: key.exponent().big_endian_without_leading_zero().to_vec(),
        }
    }

    /// Bits of an RSA modulus; 0 for EC keys.
    pub(super) fn rsa_bits(&self) -> usize {
        match self {
            PublicKey::P256(_) => 0,
            PublicKey::Rsa { n, .. } => modulus_bits(n),
        }
    }

    /// Canonical DER SubjectPublicKeyInfo, the bytes Go's
    /// `x509.MarshalPKIXPublicKey` produces (uncompressed EC point, RSA
    /// parameters NULL).
    pub(super) fn to_spki_der(&self) -> Result<Vec<u8>, KeyError> {
        match self {
            PublicKey::P256(point) => {
                let spki = SubjectPublicKeyInfoRef {
                    algorithm: AlgorithmIdentifierRef {
                        oid: OID_EC_PUBLIC_KEY,
                        parameters: Some(AnyRef::from(&OID_P256)),
                    },
                    subject_public_key: BitStringRef::from_bytes(point)
                        .map_err(invalid_key("EC public key"))?,
                };
                spki.to_der().map_err(invalid_key("EC public key"))
            }
            PublicKey::Rsa { n, e } => {
                let components = aws_lc_rs::rsa::PublicKeyComponents { n, e };
                let der: PublicKeyX509Der<'_> =
                    components.as_der().map_err(invalid_key("RSA public key"))?;
                Ok(der.as_ref().to_vec())
            }
        }
    }
}

fn modulus_bits(n: &[u8]) -> usize {
    match n.iter().position(|b| *b != 0) {
        Some(first) => (n.len() - first) * 8 - n[first].leading_zeros() as usize,
        None => 0,
    }
}

/// A private key parsed once and ready to sign.
pub(super) enum PrivateKey {
    /// P-256; signatures come out raw r‖s, as JWS wants.
    P256(EcdsaKeyPair),
    /// RSA of at least [`super::RSA_MIN_BITS`] bits.
    Rsa(RsaKeyPair),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key itself.
        f.write_str(match self {
            PrivateKey::P256(_) => "PrivateKey::P256",
            PrivateKey::Rsa(_) => "PrivateKey::Rsa",
        })
    }
}

/// Maps a decoder error to [`KeyError::InvalidKey`] about `what`.
fn invalid_key<E: fmt::Display>(what: &'static str) -> impl Fn(E) -> KeyError {
    move |e| KeyError::InvalidKey {
        what,
        reason: e.to_string(),
    }
}

fn unsupported_curve(curve: Option<ObjectIdentifier>) -> KeyError {
    let curve = curve.map_or_else(|| "(none)".to_owned(), |c| c.to_string());
    KeyError::UnsupportedKeyType(format!("EC key on curve OID {curve}"))
}

fn unsupported_oid(oid: ObjectIdentifier) -> KeyError {
    if oid == OID_ED25519 {
        KeyError::UnsupportedKeyType("Ed25519 (registry 2.8 refuses to start with it)".into())
    } else {
        KeyError::UnsupportedKeyType(format!("with algorithm OID {oid}"))
    }
}

/// The canonical DER SubjectPublicKeyInfo of the key in a DER certificate.
/// Used to match an `x5c` header against trusted keys. `index` only labels
/// errors.
pub fn certificate_spki_der(cert_der: &[u8], index: usize) -> Result<Vec<u8>, KeyError> {
    let invalid = |reason: String| KeyError::InvalidCertificate { index, reason };
    let cert = x509_cert::Certificate::from_der(cert_der).map_err(|e| invalid(e.to_string()))?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der();
    let spki = spki.map_err(|e| invalid(e.to_string()))?;
    PublicKey::from_spki_der(&spki)?.to_spki_der()
}

/// Finds the single private key in the PEM and parses it, once, for signing.
pub(super) fn parse_private_key(pem: &str) -> Result<(PublicKey, PrivateKey), KeyError> {
    let mut found = None;
    for block in pem_blocks(pem)? {
        let parsed = match block.label.as_str() {
            "PRIVATE KEY" => parse_pkcs8(&block.der)?,
            "EC PRIVATE KEY" => p256_pair(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &block.der)
                    .map_err(invalid_key("SEC1 EC private key (only P-256 is supported)"))?,
            )?,
            "RSA PRIVATE KEY" => rsa_pair(&block.der, "PKCS#1 RSA private key")?,
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::EncryptedKey),
            _ => continue,
        };
        if found.replace(parsed).is_some() {
            return Err(KeyError::MultiplePrivateKeys);
        }
    }
    found.ok_or(KeyError::NoPrivateKey)
}

fn parse_pkcs8(der: &[u8]) -> Result<(PublicKey, PrivateKey), KeyError> {
    const WHAT: &str = "PKCS#8 private key";
    let info = PrivateKeyInfo::try_from(der).map_err(invalid_key(WHAT))?;
    match info.algorithm.oids().map_err(invalid_key(WHAT))? {
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => p256_pair(
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map_err(invalid_key(WHAT))?,
        ),
        (OID_EC_PUBLIC_KEY, curve) => Err(unsupported_curve(curve)),
        // The PKCS#8 payload of an RSA key is its PKCS#1 RSAPrivateKey.
        (OID_RSA, _) => rsa_pair(info.private_key, WHAT),
        (other, _) => Err(unsupported_oid(other)),
    }
}

fn p256_pair(pair: EcdsaKeyPair) -> Result<(PublicKey, PrivateKey), KeyError> {
    let public =
        PublicKey::p256(pair.public_key().as_ref()).map_err(|reason| KeyError::InvalidKey {
            what: "EC private key",
            reason: reason.into(),
        })?;
    Ok((public, PrivateKey::P256(pair)))
}

/// An RSA key from its PKCS#1 DER. The size is checked first, so that a
/// small key is named as such rather than as merely unacceptable.
fn rsa_pair(pkcs1_der: &[u8], what: &'static str) -> Result<(PublicKey, PrivateKey), KeyError> {
    let structure = pkcs1::RsaPrivateKey::from_der(pkcs1_der).map_err(invalid_key(what))?;
    let bits = modulus_bits(structure.modulus.as_bytes());
    if bits < super::RSA_MIN_BITS {
        return Err(KeyError::RsaKeyTooSmall(bits));
    }
    let pair = RsaKeyPair::from_der(pkcs1_der).map_err(invalid_key(what))?;
    let public = PublicKey::rsa(pair.public_key());
    Ok((public, PrivateKey::Rsa(pair)))
}

/// The `x5c` chain from a certificate PEM whose first certificate must hold
/// `key`.
pub(super) fn certificate_chain(pem: &str, key: &VerifyingKey) -> Result<Vec<String>, KeyError> {
    let certs: Vec<Vec<u8>> = pem_blocks(pem)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE")
        .map(|b| b.der)
        .collect();
    let leaf = certs.first().ok_or(KeyError::NoCertificate)?;
    let leaf_spki = certificate_spki_der(leaf, 1)?;
    if leaf_spki != key.spki_der {
        return Err(KeyError::CertificateMismatch {
            certificate: libtrust_kid(&leaf_spki),
            private_key: key.libtrust_kid.clone(),
        });
    }
    for (i, cert) in certs.iter().enumerate().skip(1) {
        certificate_spki_der(cert, i + 1)?;
    }
    Ok(certs
        .iter()
        .map(|der| data_encoding::BASE64.encode(der))
        .collect())
}

/// One decoded PEM block.
pub(super) struct PemBlock {
    /// The label of the BEGIN and END lines, e.g. `CERTIFICATE`.
    pub(super) label: String,
    /// The base64-decoded body.
    pub(super) der: Vec<u8>,
}

/// Splits PEM text into blocks. Text outside blocks is ignored (as OpenSSL
/// does, so `openssl x509 -text` output loads). Lenient about line width and
/// CRLF; RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) mean an encrypted key.
pub(super) fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, KeyError> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        match current.as_mut() {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    current = Some((label.to_owned(), String::new()));
                }
            }
            Some((label, body)) => {
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(KeyError::Pem(format!("BEGIN {label} closed by END {end}")));
                    }
                    let der = data_encoding::BASE64.decode(body.as_bytes()).map_err(|e| {
                        KeyError::Pem(format!("{label} block is not valid base64: {e}"))
                    })?;
                    blocks.push(PemBlock {
                        label: std::mem::take(label),
                        der,
                    });
                    current = None;
                } else if line.contains(':') {
                    // An RFC 1421 header; only legacy encrypted keys use them.
                    if line.contains("ENCRYPTED") {
                        return Err(KeyError::EncryptedKey);
                    }
                } else {
                    body.push_str(line);
                }
            }
        }
    }
    if let Some((label, _)) = current {
        return Err(KeyError::Pem(format!("BEGIN {label} has no END line")));
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::encoding::Pkcs8V1Der;

    use super::*;
    use crate::keys::tests::{
        EC_CERT_PEM, EC_PKCS8_KID, EC_PKCS8_PEM, EC_PKCS8_PUBLIC_PEM, EC_PKCS8_THUMBPRINT,
        EC_SEC1_KID, EC_SEC1_PEM, EC_SEC1_THUMBPRINT, ED25519_PEM, P384_PKCS8_PEM, P384_SEC1_PEM,
        RSA_CERT_PEM, RSA_KID, RSA_PKCS1_PEM, RSA_THUMBPRINT,
    };
    use crate::keys::{Algorithm, KidFormat, SigningKey};

    #[test]
    fn loads_sec1_with_ec_parameters_block() {
        let key = SigningKey::from_pem(EC_SEC1_PEM, None, Algorithm::Es256, KidFormat::Libtrust)
            .expect("SEC1 key");
        assert_eq!(key.kid, EC_SEC1_KID);
        assert_eq!(key.verifying.libtrust_kid, EC_SEC1_KID);
        assert_eq!(key.verifying.thumbprint, EC_SEC1_THUMBPRINT);
        assert_eq!(key.verifying.algorithms(), &[Algorithm::Es256]);
        assert!(key.x5c.is_none());
    }

    #[test]
    fn loads_sec1_without_parameters_and_with_crlf() {
        let bare = EC_SEC1_PEM
            .split_once("-----END EC PARAMETERS-----\n")
            .map(|(_, k)| k);
        let bare = bare.expect("params block");
        let key = SigningKey::from_pem(bare, None, Algorithm::Es256, KidFormat::Thumbprint)
            .expect("bare SEC1 key");
        assert_eq!(key.kid, EC_SEC1_THUMBPRINT);
        let crlf = EC_SEC1_PEM.replace('\n', "\r\n");
        let key = SigningKey::from_pem(&crlf, None, Algorithm::Es256, KidFormat::Libtrust);
        assert_eq!(key.expect("CRLF PEM").kid, EC_SEC1_KID);
    }

    #[test]
    fn loads_pkcs8_ec() {
        let key = SigningKey::from_pem(EC_PKCS8_PEM, None, Algorithm::Es256, KidFormat::Libtrust)
            .expect("PKCS#8 EC key");
        assert_eq!(key.kid, EC_PKCS8_KID);
        assert_eq!(key.verifying.thumbprint, EC_PKCS8_THUMBPRINT);
    }

    #[test]
    fn loads_pkcs1_and_pkcs8_rsa() {
        let key = SigningKey::from_pem(RSA_PKCS1_PEM, None, Algorithm::Rs256, KidFormat::Libtrust)
            .expect("PKCS#1 RSA key");
        assert_eq!(key.kid, RSA_KID);
        assert_eq!(key.verifying.thumbprint, RSA_THUMBPRINT);
        assert_eq!(key.verifying.algorithms(), &[Algorithm::Rs256]);

        let pkcs1 = &pem_blocks(RSA_PKCS1_PEM).expect("pem")[0].der;
        let rsa = RsaKeyPair::from_der(pkcs1).expect("rsa");
        let pkcs8: Pkcs8V1Der<'_> = rsa.as_der().expect("pkcs8");
        let pkcs8 = crate::keys::tests::to_pem("PRIVATE KEY", pkcs8.as_ref());
        let key = SigningKey::from_pem(&pkcs8, None, Algorithm::Ps256, KidFormat::Thumbprint)
            .expect("PKCS#8 RSA key");
        assert_eq!(key.kid, RSA_THUMBPRINT);
        assert_eq!(key.verifying.algorithms(), &[Algorithm::Ps256]);
    }

    #[test]
    fn certificate_goes_into_x5c() {
        let key = SigningKey::from_pem(
            EC_SEC1_PEM,
            Some(EC_CERT_PEM),
            Algorithm::Es256,
            KidFormat::Libtrust,
        )
        .expect("key with cert");
        let blocks = pem_blocks(EC_CERT_PEM).expect("pem");
        assert_eq!(
            key.x5c,
            Some(vec![data_encoding::BASE64.encode(&blocks[0].der)])
        );

        let rsa = SigningKey::from_pem(
            RSA_PKCS1_PEM,
            Some(RSA_CERT_PEM),
            Algorithm::Rs256,
            KidFormat::Libtrust,
        );
        assert_eq!(
            rsa.expect("RSA key with cert").x5c.map(|c| c.len()),
            Some(1)
        );
    }

    #[test]
    fn mismatched_certificate_is_rejected() {
        for (key, cert, alg) in [
            (EC_SEC1_PEM, RSA_CERT_PEM, Algorithm::Es256),
            (EC_PKCS8_PEM, EC_CERT_PEM, Algorithm::Es256),
            (RSA_PKCS1_PEM, EC_CERT_PEM, Algorithm::Rs256),
        ] {
            let err = SigningKey::from_pem(key, Some(cert), alg, KidFormat::Libtrust)
                .expect_err("mismatch");
            assert!(matches!(err, KeyError::CertificateMismatch { .. }), "{err}");
        }
        let err = SigningKey::from_pem(
            EC_SEC1_PEM,
            Some(EC_PKCS8_PUBLIC_PEM),
            Algorithm::Es256,
            KidFormat::Libtrust,
        )
        .expect_err("no certificate");
        assert!(matches!(err, KeyError::NoCertificate), "{err}");
    }

    #[test]
    fn unsupported_and_broken_private_keys_are_rejected() {
        type Check = fn(&KeyError) -> bool;
        let cases: [(&str, Check); 8] = [
            (P384_SEC1_PEM, |e| matches!(e, KeyError::InvalidKey { .. })),
            (P384_PKCS8_PEM, |e| matches!(e, KeyError::UnsupportedKeyType(_))),
            (ED25519_PEM, |e| e.to_string().contains("Ed25519")),
            (EC_CERT_PEM, |e| matches!(e, KeyError::NoPrivateKey)),
            ("", |e| matches!(e, KeyError::NoPrivateKey)),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIHs\n-----END ENCRYPTED PRIVATE KEY-----\n",
                |e| matches!(e, KeyError::EncryptedKey),
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END EC PRIVATE KEY-----\n",
                |e| matches!(e, KeyError::EncryptedKey),
            ),
            (
                "-----BEGIN EC PRIVATE KEY-----\n!!!!\n-----END EC PRIVATE KEY-----\n",
                |e| matches!(e, KeyError::Pem(_)),
            ),
        ];
        for (pem, expected) in cases {
            let err = SigningKey::from_pem(pem, None, Algorithm::Es256, KidFormat::Libtrust)
                .expect_err("must fail");
            assert!(expected(&err), "unexpected error for {pem:?}: {err}");
        }
        let two = format!("{EC_SEC1_PEM}{EC_PKCS8_PEM}");
        let err = SigningKey::from_pem(&two, None, Algorithm::Es256, KidFormat::Libtrust);
        assert!(matches!(err, Err(KeyError::MultiplePrivateKeys)));
        let cut = &EC_PKCS8_PEM[..EC_PKCS8_PEM.len() - 10];
        let err = SigningKey::from_pem(cut, None, Algorithm::Es256, KidFormat::Libtrust);
        assert!(matches!(err, Err(KeyError::Pem(_))));
    }
}

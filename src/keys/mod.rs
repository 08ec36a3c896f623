//! Signing and verification keys for registry tokens.
//!
//! This module owns everything about key *material*: parsing PEM private keys,
//! certificates and public keys; checking that the configured algorithm fits
//! the key; the two key-ID schemes registries use to find a trusted key
//! (libtrust IDs for registry 2.8, RFC 7638 thumbprints for registry 3.x, see
//! protocol.md §6.3 and §6.5); and generating a fresh key pair with a
//! self-signed certificate for the registry's `rootcertbundle`.
//!
//! This file is the public face: the algorithm and key-ID settings, the two
//! key types, their errors, and [`generate`]. PEM and DER decoding and the
//! certificate checks live in `pem`, the key-ID computations in `key_id`;
//! what callers need from them is re-exported here, so every path is
//! `crate::keys::…`.
//!
//! It does no I/O: callers read files (off the reactor) and pass PEM text.
//! Token encoding and verification live in `token.rs`.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ParsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_SHA256, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256,
};
use serde::{Deserialize, Serialize};

pub mod jwks;
mod key_id;
mod pem;

pub use jwks::{Jwk, JwkParams, Jwks};
pub use key_id::{libtrust_kid, rfc7638_thumbprint, PublicComponents};
pub use pem::certificate_spki_der;
use pem::{certificate_chain, parse_private_key, pem_blocks, PrivateKey, PublicKey};

/// Smallest RSA modulus we accept; smaller keys are considered broken.
const RSA_MIN_BITS: usize = 2048;
/// Size of RSA keys made by [`generate`]. 2048 rather than 3072 keeps the
/// signature and the `x5c` header small (protocol.md §9.17); prefer ES256.
const RSA_GENERATE_SIZE: rcgen::RsaKeySize = rcgen::RsaKeySize::_2048;
/// Validity of a generated certificate, in days (about ten years).
const GENERATED_CERT_DAYS: i64 = 3650;

/// JWS algorithm used to sign tokens. Registry 2.8 accepts only ES256 and
/// RS256; PS256 works with registry 3.x only (protocol.md §9.6).
#[derive(Serialize, Deserialize, clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256, raw r‖s signatures.
    #[serde(rename = "ES256")]
    #[value(name = "ES256")]
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    #[serde(rename = "RS256")]
    #[value(name = "RS256")]
    Rs256,
    /// RSASSA-PSS with SHA-256 (not accepted by registry 2.8).
    #[serde(rename = "PS256")]
    #[value(name = "PS256")]
    Ps256,
}

impl Algorithm {
    /// The JWS `alg` name, e.g. `"ES256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
            Algorithm::Ps256 => "PS256",
        }
    }

    /// Parses a JWS `alg` header value; anything but our three is `None`.
    pub fn from_jws_name(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "RS256" => Some(Algorithm::Rs256),
            "PS256" => Some(Algorithm::Ps256),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Algorithm {
    /// AWS-LC's verifier for this algorithm. RSA keys below 2048 bits fail
    /// verification outright.
    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Algorithm::Es256 => &ECDSA_P256_SHA256_FIXED,
            Algorithm::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
            Algorithm::Ps256 => &RSA_PSS_2048_8192_SHA256,
        }
    }
}

/// Which key ID goes into the `kid` header of tokens we sign.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KidFormat {
    /// libtrust key ID: what registry 2.8 looks up (protocol.md §6.3).
    Libtrust,
    /// RFC 7638 thumbprint: what registry 3.1+ looks up (protocol.md §6.5).
    Thumbprint,
}

/// Why key material could not be loaded or made. Messages are written for
/// the operator; the caller adds which file was being read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not well-formed PEM.
    #[error("malformed PEM: {0}")]
    Pem(String),
    /// No private key block was found.
    #[error("no private key found: expected a PEM block labelled PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY")]
    NoPrivateKey,
    /// More than one private key block was found.
    #[error("the private key PEM holds more than one private key; keep exactly one")]
    MultiplePrivateKeys,
    /// The private key is password protected.
    #[error("the private key is encrypted; regauth needs an unencrypted key (e.g. `openssl pkey -in KEY -out KEY.plain`)")]
    EncryptedKey,
    /// A key block could not be decoded.
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// What was being decoded, e.g. "PKCS#8 private key".
        what: &'static str,
        /// The decoder's complaint.
        reason: String,
    },
    /// The key is of a type or curve regauth cannot use.
    #[error("unsupported key type {0}; only EC P-256 (prime256v1) and RSA keys are supported")]
    UnsupportedKeyType(String),
    /// The configured algorithm does not fit the key.
    #[error("private key is {key} but token.algorithm is {algorithm}; use {suggestion}")]
    AlgorithmMismatch {
        /// Description of the key, e.g. "an RSA key".
        key: &'static str,
        /// The configured algorithm.
        algorithm: Algorithm,
        /// Algorithms that would fit.
        suggestion: &'static str,
    },
    /// The RSA key is too small to be trusted.
    #[error("RSA key has {0} bits; at least 2048 are required")]
    RsaKeyTooSmall(usize),
    /// The certificate PEM holds no certificate.
    #[error("no CERTIFICATE block found in the certificate PEM")]
    NoCertificate,
    /// A certificate could not be parsed.
    #[error("certificate #{index} could not be parsed: {reason}")]
    InvalidCertificate {
        /// 1-based position of the certificate among the PEM blocks.
        index: usize,
        /// The parser's complaint.
        reason: String,
    },
    /// The certificate is for a different key than the private key.
    #[error("the certificate does not match the private key (certificate key ID {certificate}, private key ID {private_key})")]
    CertificateMismatch {
        /// libtrust ID of the certificate's public key.
        certificate: String,
        /// libtrust ID of the private key's public half.
        private_key: String,
    },
    /// A verification-key PEM holds nothing usable.
    #[error("no CERTIFICATE or PUBLIC KEY block found")]
    NoPublicKeys,
    /// Key or certificate generation failed.
    #[error("could not generate key or certificate: {0}")]
    Generate(String),
    /// `generate_if_missing` found the certificate but not its private key:
    /// a new key would not match the certificate the registry trusts.
    #[error("the private key is missing but its certificate {} exists; not generating a key that would not match it (restore the key, or remove the certificate to start afresh)", certificate.display())]
    CertificateWithoutKey {
        /// The certificate file that exists.
        certificate: std::path::PathBuf,
    },
    /// Signing failed inside the crypto library (it does not say why).
    #[error("the crypto library could not sign with the {0} key")]
    Sign(Algorithm),
}

/// A public key trusted for verification, with both of its IDs. Parsed
/// once (per configuration snapshot) into AWS-LC's form, so verifying a
/// token does no key decoding.
#[derive(Clone)]
pub struct VerifyingKey {
    /// libtrust key ID (registry 2.8 `kid`).
    pub libtrust_kid: String,
    /// RFC 7638 thumbprint, registry 3.1 flavour (registry 3.x `kid`).
    pub thumbprint: String,
    /// Canonical DER SubjectPublicKeyInfo, to match `x5c` certificates.
    spki_der: Vec<u8>,
    /// The public numbers, for JWKs and key IDs.
    public: PublicKey,
    /// Algorithms a token signed by this key may claim.
    algorithms: &'static [Algorithm],
    /// The key parsed for each of `algorithms`, in the same order.
    verifiers: Arc<[ParsedPublicKey]>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("libtrust_kid", &self.libtrust_kid)
            .field("thumbprint", &self.thumbprint)
            .field("algorithms", &self.algorithms())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Loads every key from PEM text holding certificates ("CERTIFICATE",
    /// e.g. a `rootcertbundle`) and/or public keys ("PUBLIC KEY"), in order.
    /// Other blocks are ignored, as the registry does. An unsupported key
    /// type is an error rather than silently skipped.
    pub fn from_pem(pem: &str) -> Result<Vec<VerifyingKey>, KeyError> {
        let mut keys = Vec::new();
        for (index, block) in pem_blocks(pem)?.iter().enumerate() {
            let spki = match block.label.as_str() {
                "CERTIFICATE" => certificate_spki_der(&block.der, index + 1)?,
                "PUBLIC KEY" => block.der.clone(),
                _ => continue,
            };
            let key = PublicKey::from_spki_der(&spki)?;
            let algorithms = all_algorithms(&key);
            keys.push(VerifyingKey::new(key, algorithms)?);
        }
        if keys.is_empty() {
            return Err(KeyError::NoPublicKeys);
        }
        Ok(keys)
    }

    fn new(key: PublicKey, algorithms: &'static [Algorithm]) -> Result<VerifyingKey, KeyError> {
        let spki_der = key.to_spki_der()?;
        let verifiers = algorithms
            .iter()
            .map(|&alg| {
                ParsedPublicKey::new(alg.verification(), &spki_der).map_err(|e| {
                    KeyError::InvalidKey {
                        what: "public key",
                        reason: e.to_string(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let verifying = VerifyingKey {
            libtrust_kid: libtrust_kid(&spki_der),
            thumbprint: String::new(),
            spki_der,
            public: key,
            algorithms,
            verifiers: verifiers.into(),
        };
        let thumbprint = rfc7638_thumbprint(&verifying.public_components());
        Ok(VerifyingKey {
            thumbprint,
            ..verifying
        })
    }

    /// True if `kid` is either of this key's IDs.
    pub fn matches_kid(&self, kid: &str) -> bool {
        self.libtrust_kid == kid || self.thumbprint == kid
    }

    /// The algorithms a token signed with this key may use: ES256 for P-256;
    /// RS256 and PS256 for RSA, or only the configured one for our own key.
    pub fn algorithms(&self) -> &[Algorithm] {
        self.algorithms
    }

    /// True if a token signed with this key may claim `alg`.
    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    /// Canonical DER SubjectPublicKeyInfo of this key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The public numbers (EC x and y, RSA n and e; big-endian), for a JWK.
    pub fn public_components(&self) -> PublicComponents<'_> {
        match &self.public {
            PublicKey::P256(point) => PublicComponents::P256 {
                x: &point[1..33],
                y: &point[33..],
            },
            PublicKey::Rsa { n, e } => PublicComponents::Rsa { n, e },
        }
    }

    /// True if `signature` is this key's valid `alg` signature of `message`;
    /// false also when the key does not allow `alg`. ES256 signatures must be
    /// raw r‖s (64 bytes): DER fails.
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        self.algorithms
            .iter()
            .position(|a| *a == alg)
            .and_then(|i| self.verifiers.get(i))
            .is_some_and(|key| key.verify_sig(message, signature).is_ok())
    }
}

fn all_algorithms(key: &PublicKey) -> &'static [Algorithm] {
    match key {
        PublicKey::P256(_) => &[Algorithm::Es256],
        PublicKey::Rsa { .. } => &[Algorithm::Rs256, Algorithm::Ps256],
    }
}

/// The key regauth signs with: parsed once per configuration snapshot, with
/// the token header already encoded, so that signing a token is one JSON
/// encoding of the claims and one signature.
#[derive(Clone, Debug)]
pub struct SigningKey {
    /// The JWS algorithm of every token signed with this key.
    pub algorithm: Algorithm,
    /// The `kid` header value, in the configured [`KidFormat`].
    pub kid: String,
    /// The `x5c` header value: standard base64 DER of the certificate chain
    /// (leaf first), when a certificate was configured.
    pub x5c: Option<Vec<String>>,
    /// The public half, restricted to [`SigningKey::algorithm`].
    pub verifying: VerifyingKey,
    /// The private key, ready to sign.
    private: Arc<PrivateKey>,
    /// The encoded JWS header of every token this key signs (the `x5c`
    /// certificate makes it most of a token, and it never changes).
    jws_header: String,
}

impl SigningKey {
    /// Loads the signing key from a private key PEM in PKCS#8 ("PRIVATE
    /// KEY"), SEC1 ("EC PRIVATE KEY", possibly after the "EC PARAMETERS"
    /// block `openssl ecparam -genkey` writes) or PKCS#1 ("RSA PRIVATE KEY").
    ///
    /// `certificate_pem`, if given, must start with a certificate for the
    /// same key; all its certificates (leaf first) go into `x5c`. The
    /// algorithm must fit the key: ES256 for P-256, RS256 or PS256 for RSA of
    /// at least 2048 bits.
    pub fn from_pem(
        private_key_pem: &str,
        certificate_pem: Option<&str>,
        algorithm: Algorithm,
        kid_format: KidFormat,
    ) -> Result<SigningKey, KeyError> {
        let (public, private) = parse_private_key(private_key_pem)?;
        check_algorithm(&public, algorithm)?;
        let allowed: &'static [Algorithm] = match algorithm {
            Algorithm::Es256 => &[Algorithm::Es256],
            Algorithm::Rs256 => &[Algorithm::Rs256],
            Algorithm::Ps256 => &[Algorithm::Ps256],
        };
        let verifying = VerifyingKey::new(public, allowed)?;
        let x5c = match certificate_pem {
            Some(pem) => Some(certificate_chain(pem, &verifying)?),
            None => None,
        };
        let kid = match kid_format {
            KidFormat::Libtrust => verifying.libtrust_kid.clone(),
            KidFormat::Thumbprint => verifying.thumbprint.clone(),
        };
        let jws_header = jws_header(algorithm, &kid, x5c.as_deref());
        Ok(SigningKey {
            algorithm,
            kid,
            x5c,
            verifying,
            private: Arc::new(private),
            jws_header,
        })
    }

    /// The JWS header segment (unpadded base64url of `{"typ":"JWT","alg",
    /// "kid"[,"x5c"]}`) of every token this key signs.
    pub fn jws_header(&self) -> &str {
        &self.jws_header
    }

    /// Signs `message` (a JWS signing input) with [`SigningKey::algorithm`]:
    /// ES256 gives raw r‖s (64 bytes), RS256/PS256 a modulus-sized signature.
    /// AWS-LC's RSA is blinded and constant-time.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::Sign(self.algorithm);
        match (&*self.private, self.algorithm) {
            (PrivateKey::P256(pair), _) => pair
                .sign(&SystemRandom::new(), message)
                .map(|signature| signature.as_ref().to_vec())
                .map_err(failed),
            (PrivateKey::Rsa(pair), alg) => {
                let padding: &'static dyn aws_lc_rs::signature::RsaEncoding = match alg {
                    Algorithm::Ps256 => &RSA_PSS_SHA256,
                    _ => &RSA_PKCS1_SHA256,
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(padding, &SystemRandom::new(), message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
        }
    }
}

fn jws_header(algorithm: Algorithm, kid: &str, x5c: Option<&[String]>) -> String {
    #[derive(Serialize)]
    struct Header<'a> {
        typ: &'static str,
        alg: &'static str,
        kid: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        x5c: Option<&'a [String]>,
    }
    let header = Header {
        typ: "JWT",
        alg: algorithm.as_str(),
        kid,
        x5c,
    };
    // Serializing plain strings into a Vec cannot fail.
    let json = serde_json::to_vec(&header).unwrap_or_default();
    data_encoding::BASE64URL_NOPAD.encode(&json)
}

fn check_algorithm(key: &PublicKey, algorithm: Algorithm) -> Result<(), KeyError> {
    match (key, algorithm) {
        (PublicKey::P256(_), Algorithm::Es256) => Ok(()),
        (PublicKey::Rsa { .. }, Algorithm::Rs256 | Algorithm::Ps256) => {
            let bits = key.rsa_bits();
            if bits < RSA_MIN_BITS {
                return Err(KeyError::RsaKeyTooSmall(bits));
            }
            Ok(())
        }
        (PublicKey::P256(_), _) => Err(KeyError::AlgorithmMismatch {
            key: "an EC P-256 key",
            algorithm,
            suggestion: "ES256",
        }),
        (PublicKey::Rsa { .. }, _) => Err(KeyError::AlgorithmMismatch {
            key: "an RSA key",
            algorithm,
            suggestion: "RS256 (or PS256 for registry 3.x only)",
        }),
    }
}

/// A new key pair and a self-signed certificate for the registry's
/// `rootcertbundle`: subject CN `common_name`, valid from a day ago for about
/// ten years, v3 with key usage digitalSignature. EC keys are P-256; RSA keys
/// are 2048 bits. Returns (private key PKCS#8 PEM, certificate PEM).
pub fn generate(algorithm: Algorithm, common_name: &str) -> Result<(String, String), KeyError> {
    let fail = |e: rcgen::Error| KeyError::Generate(e.to_string());
    let key_pair = match algorithm {
        Algorithm::Es256 => rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        // The certificate's own signature algorithm is independent of the
        // JWS algorithm; PKCS#1 v1.5 is what every verifier accepts.
        Algorithm::Rs256 | Algorithm::Ps256 => {
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RSA_GENERATE_SIZE)
        }
    }
    .map_err(fail)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    // Backdated a day so a registry host with a slow clock accepts it at once.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(GENERATED_CERT_DAYS);
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key_pair).map_err(fail)?;
    Ok((key_pair.serialize_pem(), cert.pem()))
}

#[cfg(test)]
pub(crate) mod tests {
    //! Test inputs were made with OpenSSL 3; expected key IDs were computed
    //! independently with `openssl pkey -pubout -outform DER` and Python.
    //! The fixtures are shared with the tests in `pem`, `key_id` and `token.rs`.
    use pkcs8::der::Decode as _;
    use pkcs8::ObjectIdentifier;

    use super::*;

    /// PEM text of one DER block, as OpenSSL writes it.
    pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
        let body = data_encoding::BASE64.encode(der);
        let mut pem = format!("-----BEGIN {label}-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem + &format!("-----END {label}-----\n")
    }

    /// SEC1 P-256 key as `openssl ecparam -genkey -name prime256v1` writes it,
    /// with the EC PARAMETERS block first.
    pub(crate) const EC_SEC1_PEM: &str = "\
-----BEGIN EC PARAMETERS-----
BggqhkjOPQMBBw==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIAuJnVG1E1+kc1zSuIFgiVzJcVh3bl79AmmQAxClyoVHoAoGCCqGSM49
AwEHoUQDQgAE3sbgHTGRBrLuRZXgUDVA0U5yYJxL+a99wEkcXCSVrZRyIq6uPEy9
KL7qpPQYjQfDHwt04vhRE2Vpjg2zWM26hg==
-----END EC PRIVATE KEY-----
";

    /// PKCS#8 P-256 key (`openssl genpkey -algorithm EC`).
    pub(crate) const EC_PKCS8_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgR6+jrC64lgrjBkyA
tZHH1plQBMiS9YVE3dAganPOIWChRANCAARFdYPsQAfxE09FgHtqgNoX6bgTzS+s
B4Wx5MlkOeGnK/ZlrktkzjXD67iKXhgIwQBKaT1kE9gdBNjZoxJAq8Cq
-----END PRIVATE KEY-----
";

    /// Public key of EC_PKCS8_PEM (`openssl pkey -pubout`).
    pub(crate) const EC_PKCS8_PUBLIC_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAERXWD7EAH8RNPRYB7aoDaF+m4E80v
rAeFseTJZDnhpyv2Za5LZM41w+u4il4YCMEASmk9ZBPYHQTY2aMSQKvAqg==
-----END PUBLIC KEY-----
";

    /// PKCS#1 RSA-2048 key (`openssl genrsa -traditional 2048`).
    pub(crate) const RSA_PKCS1_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAk4W4JyLJ47e8/eEvAbkxBc6Jjo2Su0sSEDuEjeSPgXLdW+lx
LsOaB1aFRmt6+QiFsziFcOKxJDx2bAt7BBCtLiMyblj/WC4euN2zY3ZpPZKdNM4Y
uY2WKsZ5Gk9ASZGxKW/JkRhEzyqGKp1FktTWn7t6F7owIF9hXFsisM5QFgfy5jno
1kvfyVB/k+j27WR5Jbc6/O/KU8pyNLTON0zQqUCAiyxmlHbAvzTQKXl15s7RFVEC
ovMHnttisABvtyXAAz+hOKL9sSIkXKJmrxvKOjOX59DUb5+EscGVs7uu7aQn8O0/
yJ6SaAKHHkXy1CC/dvMl5SIpQ9YL9cKh3P0eGQIDAQABAoIBAAUWciMjDs0plFfO
+l2VTwC3zn7so0Q4wDJa3nURzkCybvpZNv1Gw0Ma8OenM94kP6SDundp5rPSGX/x
AUC4Q1lmtESBvCmvf9apP7iaYsyxXSEEdW4VzoQND6wQfQ450J82GEtRR9M7ZgCQ
0g97WL0OHKAg8da1+hAS4mOwXoBJ9RF5eqOuZLbHQcG5RfME14Ab7tPJww4lo0Ow
gfeqnmT9RnjG4XVQX1+MTsd9LN2qRkT0spZbu63eVkQHbZbDGYGXEX64Ke5oWmEO
SduO2sW8o0v1TH3SUEF2ZZeJpkcbvDMESFDSvoak3gqe22pd79M5VgOooxwY6do/
6j0mp8ECgYEAxTvUl7AS3gcLvM1RI/D4ToDAqR5B+VdWSlG4WHnrqmNacc7sfylr
ebjyXc1yfUilOiHyNnYWDFfL3vPiziCONajIYgPI96Yw2jNYpUmou9su7msxLLVq
UyiZ6dw8ZPOO9AWywUMc+4TSQl5kj7aVvWlpVAEOsyadeI1+hEqUUsECgYEAv3oc
lrLjVHNLPvZeP2TH9vuUcEWAx1YDoPPKCPVYfy18N4ON3T/hoIV3qtIqqALJR8DM
B+4Fpzgzy7XYbEy1WHyAqp5rUcQGqMyCveD/DiwKbhQVnG8+lLgNcwAKvNvOjq99
ExoyL1WdtSkdM1lrcTjZKGk1w5t3EyjwrKK3mVkCgYAsWqIaYpw7lfYLxVhj7sLI
VKf+4DER85QSLoJ4UyKuNJ2YTmJczmG/A9ptQdBnYDjX895WZQPcTrooL0xn8mZI
puY5NISzPIpr53Qd54ysgkPxleV/GmUIwm6qar6iLSuOsOFcGM2humLWTgfrUbIm
4FexbnNx0lNDUv6KnYLxgQKBgH+t+KRQsyAcJV/dvuj81g6OoePfpMjHRXItPlqM
568ecIdAFPgk4do9RZfFvyX7faZ4HFVpVaG062z6XE+TMxXHJ7EeJCgI0/v5K3Fc
OBeGLIpMoECJOazHskguDfrzg6BHytpTDIXdzGUB/nPAO9Hq+3tj9LLz1woSsbIc
ats5AoGAPONNDOv3jGImXQvk5/Y5SFRUftBZchzkp8MxbFk9tdoh9Z1GLzSkOdvE
8pfXHqE6JX3eavxmV+dnih2ANdpfxlaNkJH2IdAuqTFGmo5biPU94cbuRjJDpFTC
6a79KB6LP+S042ID6L59Hdr0MmQ0V3BVB6pljWiKdCWJNdHGArs=
-----END RSA PRIVATE KEY-----
";

    /// PKCS#1 RSA-1024 key: too small.
    pub(crate) const RSA_1024_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIICWwIBAAKBgQDMWWj9qd7uxrBwNnfrdKjRDQI+Do6RVEZafZOCo+1pzbtGqt9X
icCe2ItvI1zZ7zoQEAiRD/tHS5xfbgQnwqrXSx3K4Px0zs7b4DdtIu8SLvN8S0tI
5pzh5IwAu1Dcu1Fj8ovbdzyEk4kJAh9d5fyN2I55n2c4gd/EM+tWwTf4SwIDAQAB
AoGABePZ293mmBlQApv/TuEY8JWgZ+uBfnzgXkFaXByffjo42KuaLmrBC5MQSc7K
IVn84XOk25GLW525TyLbqc25oNfOmlPP2+6UIFfIH7lEvsV8gN2060X4rFZBJsJf
G4MI9k8v1NyY0PUiBA6tP50i3EjZy05LNVcGdJkiqFP/CekCQQDthVTAnHNrROPQ
xx9XaxxpjYsoHgrorHf1twnuqOUmmVud0HHKaHmGrXFV8TZ243BZs2iCmhsZHZJX
tr0sM+YnAkEA3D9n1ysNHq+nkrIZS4UJ7rHr9Yj+LRuadZwLDomgSStQizFPU22D
iSJxxKsQv/CsPR3+Q1rrgXOCAkCZOPJ3PQJADP8Yrhlhb2MrnAbpPh1MRrJKBP3v
1t9pCPblAjwXnc8SZkY7k7m3vJjM9MjoFAVJ5n6cn1jTVsJ5eXc0TrDgTQJANjsi
jXebRmgIAfX6hn7eoDiNGis+MssuMDFZA55dqkaREYT1vFwl3Dlv+/YHLMvNDUt6
VQlpHbncVEOltsD1HQJAM8uvz8hbIWuH8TewUijADW+XwCVBerWe/ASmrp3gAhjs
GqXF2d3m1YMK3J1Z9OZaXwtwl1wRfjWoZDkwOtvWWA==
-----END RSA PRIVATE KEY-----
";

    /// SEC1 P-384 key: unsupported curve.
    pub(crate) const P384_SEC1_PEM: &str = "\
-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDAKaTirEmIb7uu8SvBMF2ZuKrhWslwud4Iah/QKG0H0yhseLD3Dp2Dv
0uwhj/gh+gCgBwYFK4EEACKhZANiAAQVhOILPKduzJdKOda6aOLk/DNh4Kra4GLf
eSfPt7Fp2v6kdmxVzbb/D7L4uj/+kj0sPrA81ro/CDd2jHrA92ouxmY4QU9Koo1m
7koJ9Ja2SreioR0slUCauXcOYQnkKps=
-----END EC PRIVATE KEY-----
";

    /// The same P-384 key in PKCS#8.
    pub(crate) const P384_PKCS8_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDAKaTirEmIb7uu8SvBM
F2ZuKrhWslwud4Iah/QKG0H0yhseLD3Dp2Dv0uwhj/gh+gChZANiAAQVhOILPKdu
zJdKOda6aOLk/DNh4Kra4GLfeSfPt7Fp2v6kdmxVzbb/D7L4uj/+kj0sPrA81ro/
CDd2jHrA92ouxmY4QU9Koo1m7koJ9Ja2SreioR0slUCauXcOYQnkKps=
-----END PRIVATE KEY-----
";

    /// PKCS#8 Ed25519 key: unsupported type.
    pub(crate) const ED25519_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIFLzubhITSI+DasI/cMLZ+96Thn0Yl4olhkI1GFP3Ig6
-----END PRIVATE KEY-----
";

    /// Self-signed certificate for EC_SEC1_PEM (`openssl req -x509`).
    pub(crate) const EC_CERT_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUK0vDs2SOjlsISNG9M/vZDIpLGZAwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPcmVnYXV0aC10ZXN0LWVjMCAXDTI2MTEyNjEyMzYyMFoYDzIx
MjYxMTAyMTIzNjIwWjAaMRgwFgYDVQQDDA9yZWdhdXRoLXRlc3QtZWMwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAATexuAdMZEGsu5FleBQNUDRTnJgnEv5r33ASRxc
JJWtlHIirq48TL0ovuqk9BiNB8MfC3Ti+FETZWmODbNYzbqGo1MwUTAdBgNVHQ4E
FgQUQz8zl3SOiS3gBKSkHLACmPk5vMQwHwYDVR0jBBgwFoAUQz8zl3SOiS3gBKSk
HLACmPk5vMQwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAlvhUO
HNr0RE8zovTlmwLuBLRO1k8YL6fWgYD+Qa5ewAIgPbJ01ixC4WxN3JSHzd8lx6HP
rTXXn98P02IiaMRXQYQ=
-----END CERTIFICATE-----
";

    /// Self-signed certificate for RSA_PKCS1_PEM.
    pub(crate) const RSA_CERT_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIDGTCCAgGgAwIBAgIUAIlwgmA1VZmEID7+o3Q/OdKEflQwDQYJKoZIhvcNAQEL
BQAwGzEZMBcGA1UEAwwQcmVnYXV0aC10ZXN0LXJzYTAgFw0yNjExMjYxMjM2MjBa
GA8yMTI2MTEwMjEyMzYyMFowGzEZMBcGA1UEAwwQcmVnYXV0aC10ZXN0LXJzYTCC
ASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAJOFuCciyeO3vP3hLwG5MQXO
iY6NkrtLEhA7hI3kj4Fy3VvpcS7DmgdWhUZrevkIhbM4hXDisSQ8dmwLewQQrS4j
Mm5Y/1guHrjds2N2aT2SnTTOGLmNlirGeRpPQEmRsSlvyZEYRM8qhiqdRZLU1p+7
ehe6MCBfYVxbIrDOUBYH8uY56NZL38lQf5Po9u1keSW3OvzvylPKcjS0zjdM0KlA
gIssZpR2wL800Cl5debO0RVRAqLzB57bYrAAb7clwAM/oTii/bEiJFyiZq8byjoz
l+fQ1G+fhLHBlbO7ru2kJ/DtP8iekmgChx5F8tQgv3bzJeUiKUPWC/XCodz9HhkC
AwEAAaNTMFEwHQYDVR0OBBYEFEkBaFBJ4DCzvu10+nMEqhLKD+VLMB8GA1UdIwQY
MBaAFEkBaFBJ4DCzvu10+nMEqhLKD+VLMA8GA1UdEwEB/wQFMAMBAf8wDQYJKoZI
hvcNAQELBQADggEBABjiHBC5a6vgDng4/li7uWnaJtRnu6KeOILiY/yAc25cxCFi
Z8oBFyeuAwIrch5zH1CzFzg24VD2Y30h6D9cnAj0jyaoIUXk8ssNd+Vp6pWeyKQy
hIRSzW8sGEne4+IUt4yyj7TknmNGcQVkhnyFbIsh+avy97LHaZUVsAO2QeXY1xHT
GVHfBjfC18cf3qwgLgJsLmJGNYXFW19d5Xo9i9i4cx1ZMbtCu06KLi6WNj2pEEbi
A13fhXkIM3YhI7Cvpc2paS8HZhOIw3G15GTRlVkvh8mketCW0FrGwaskM7pbmxSL
oxooEKcU1+h+7POKcAw7M+OR6Ty80MEeKlZ2tmk=
-----END CERTIFICATE-----
";

    /// libtrust ID and thumbprint of EC_SEC1_PEM (and EC_CERT_PEM).
    pub(crate) const EC_SEC1_KID: &str =
        "W7PE:NAZO:TGXM:QYS4:HRLS:YNDF:APQ3:G3VL:MYOB:UXSB:NITV:E2JY";
    pub(crate) const EC_SEC1_THUMBPRINT: &str = "_EZfa-pRgYnPI7PA8KCLWGQxOxNrbMXFh4DliPaRPQQ";
    pub(crate) const EC_PKCS8_KID: &str =
        "R7V6:IRXH:5SGK:CPGK:AEN5:5KBK:XS4X:EQGQ:3ONQ:I6VD:RCSJ:F4U2";
    pub(crate) const EC_PKCS8_THUMBPRINT: &str = "lrDy7ODEi5khjHYTpkPwKlfQqfuGNOSMThD8_O9PYtA";
    pub(crate) const RSA_KID: &str = "6PGY:HWEQ:Z7DJ:URVE:T5RZ:4CIL:SAYI:KKRF:CKXD:UPZ7:56RQ:5QKG";
    pub(crate) const RSA_THUMBPRINT: &str = "RWWDRaQ5zlFfk4rV4NDgcXX6l6lU69xknqsYNB0xHsU";

    #[test]
    fn mismatched_algorithm_is_rejected_with_a_helpful_message() {
        let err = SigningKey::from_pem(RSA_PKCS1_PEM, None, Algorithm::Es256, KidFormat::Libtrust)
            .expect_err("RSA key with ES256");
        assert!(
            err.to_string()
                .contains("is an RSA key but token.algorithm is ES256"),
            "{err}"
        );
        for alg in [Algorithm::Rs256, Algorithm::Ps256] {
            let err = SigningKey::from_pem(EC_PKCS8_PEM, None, alg, KidFormat::Libtrust)
                .expect_err("EC key with RSA algorithm");
            assert!(matches!(err, KeyError::AlgorithmMismatch { .. }), "{err}");
        }
        let err = SigningKey::from_pem(RSA_1024_PEM, None, Algorithm::Rs256, KidFormat::Libtrust)
            .expect_err("small RSA key");
        assert!(matches!(err, KeyError::RsaKeyTooSmall(1024)), "{err}");
    }

    #[test]
    fn verifying_keys_from_bundle_and_public_key() {
        let bundle = format!("some text\n{EC_CERT_PEM}\n{RSA_CERT_PEM}{EC_PKCS8_PUBLIC_PEM}");
        let keys = VerifyingKey::from_pem(&bundle).expect("bundle");
        let kids: Vec<&str> = keys.iter().map(|k| k.libtrust_kid.as_str()).collect();
        assert_eq!(kids, [EC_SEC1_KID, RSA_KID, EC_PKCS8_KID]);
        assert_eq!(keys[0].thumbprint, EC_SEC1_THUMBPRINT);
        assert_eq!(keys[1].algorithms(), &[Algorithm::Rs256, Algorithm::Ps256]);
        assert!(keys[2].matches_kid(EC_PKCS8_THUMBPRINT));
        assert!(matches!(
            VerifyingKey::from_pem(""),
            Err(KeyError::NoPublicKeys)
        ));
        assert!(matches!(
            VerifyingKey::from_pem(EC_SEC1_PEM),
            Err(KeyError::NoPublicKeys)
        ));
    }

    #[test]
    fn generated_es256_key_and_certificate_round_trip() {
        let (key_pem, cert_pem) = generate(Algorithm::Es256, "regauth token signer").expect("gen");
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = SigningKey::from_pem(
            &key_pem,
            Some(&cert_pem),
            Algorithm::Es256,
            KidFormat::Libtrust,
        )
        .expect("generated pair loads");
        let trusted = VerifyingKey::from_pem(&cert_pem).expect("cert loads");
        assert_eq!(trusted[0].libtrust_kid, key.kid);

        let der = &pem_blocks(&cert_pem).expect("pem")[0].der;
        let cert = x509_cert::Certificate::from_der(der).expect("cert parses");
        let tbs = &cert.tbs_certificate;
        assert_eq!(tbs.version, x509_cert::Version::V3);
        assert_eq!(tbs.subject.to_string(), "CN=regauth token signer");
        assert_eq!(tbs.issuer, tbs.subject, "self-signed");
        let validity =
            tbs.validity.not_after.to_unix_duration() - tbs.validity.not_before.to_unix_duration();
        let days = validity.as_secs() / 86_400;
        assert!((3600..=3700).contains(&days), "{days} days");
        let key_usage = ObjectIdentifier::new_unwrap("2.5.29.15");
        let exts = tbs.extensions.as_deref().unwrap_or_default();
        assert!(exts.iter().any(|e| e.extn_id == key_usage), "has key usage");
    }

    #[test]
    fn generated_rsa_key_and_certificate_round_trip() {
        let (key_pem, cert_pem) = generate(Algorithm::Ps256, "rsa signer").expect("gen");
        let key = SigningKey::from_pem(
            &key_pem,
            Some(&cert_pem),
            Algorithm::Ps256,
            KidFormat::Thumbprint,
        )
        .expect("generated RSA pair loads");
        assert_eq!(
            VerifyingKey::from_pem(&cert_pem).expect("cert")[0].thumbprint,
            key.kid
        );
    }

    #[test]
    fn algorithm_and_kid_format_serde_names() {
        let json = serde_json::to_string(&[Algorithm::Es256, Algorithm::Rs256, Algorithm::Ps256]);
        assert_eq!(json.expect("json"), r#"["ES256","RS256","PS256"]"#);
        assert_eq!(Algorithm::Ps256.to_string(), "PS256");
        let fmt: Vec<KidFormat> =
            serde_json::from_str(r#"["libtrust","thumbprint"]"#).expect("kid");
        assert_eq!(fmt, [KidFormat::Libtrust, KidFormat::Thumbprint]);
    }
}

//! The two key IDs registries use to find a trusted key: libtrust IDs (registry 2.8,
//! protocol.md §6.3) and RFC 7638 thumbprints (registry 3.x, protocol.md §6.5).
//!
//! Pure functions over public-key bytes. They must agree with the registries byte for
//! byte, or a token we sign names a key the registry cannot find.

use data_encoding::BASE64URL_NOPAD;
use sha2::{Digest as _, Sha256};

/// JWK public components for [`rfc7638_thumbprint`].
#[derive(Debug, Clone, Copy)]
pub enum PublicComponents<'a> {
    /// EC P-256 affine coordinates, big-endian.
    P256 {
        /// The x coordinate.
        x: &'a [u8],
        /// The y coordinate.
        y: &'a [u8],
    },
    /// RSA modulus and public exponent, big-endian.
    Rsa {
        /// The modulus.
        n: &'a [u8],
        /// The public exponent.
        e: &'a [u8],
    },
}

/// libtrust key ID of a public key (protocol.md §6.3): SHA-256 of the DER
/// SubjectPublicKeyInfo, first 30 bytes, base32 (upper case, no padding),
/// in 12 groups of 4 joined by `:`. Registry 2.8 finds `kid` keys by this.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = Sha256::digest(spki_der);
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest[..30]);
    let mut kid = String::with_capacity(59);
    for (i, c) in encoded.chars().enumerate() {
        if i > 0 && i % 4 == 0 {
            kid.push(':');
        }
        kid.push(c);
    }
    kid
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url without padding) over the
/// canonical JWK `{"crv","kty","x","y"}` or `{"e","kty","n"}`.
///
/// Leading zero bytes of every component are stripped before encoding. That
/// is what registry 3.1 does (it encodes Go's `big.Int.Bytes()`, protocol.md
/// §6.5), so our `kid` matches its rootcert key IDs. For an EC key whose x or
/// y starts with 0x00 (about 1 in 128 keys) this differs from a strict
/// RFC 7518 encoding, which keeps x and y at 32 bytes; for RSA both agree.
pub fn rfc7638_thumbprint(key: &PublicComponents<'_>) -> String {
    let b64 = |bytes: &[u8]| BASE64URL_NOPAD.encode(strip_leading_zeros(bytes));
    // Built by hand: RFC 7638 needs exactly this member order and no spaces,
    // and base64url output never needs JSON escaping.
    let canonical = match key {
        PublicComponents::P256 { x, y } => format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            b64(x),
            b64(y)
        ),
        PublicComponents::Rsa { n, e } => {
            format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64(e), b64(n))
        }
    };
    BASE64URL_NOPAD.encode(&Sha256::digest(canonical.as_bytes()))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::agreement::{PrivateKey, ECDH_P256};

    use super::*;
    use crate::keys::pem::PublicKey;
    use crate::keys::{Algorithm, VerifyingKey};

    fn b64url(s: &str) -> Vec<u8> {
        BASE64URL_NOPAD
            .decode(s.as_bytes())
            .expect("test vector is base64url")
    }

    /// The uncompressed P-256 point of a secret scalar that fits in a u32.
    fn p256_from_scalar(k: u32) -> [u8; 65] {
        let mut bytes = [0u8; 32];
        bytes[28..].copy_from_slice(&k.to_be_bytes());
        let private = PrivateKey::from_private_key(&ECDH_P256, &bytes).expect("valid scalar");
        let public = private.compute_public_key().expect("public key");
        public.as_ref().try_into().expect("65-byte point")
    }

    fn ids(point: &[u8; 65]) -> VerifyingKey {
        VerifyingKey::new(PublicKey::P256(*point), &[Algorithm::Es256]).expect("key")
    }

    #[test]
    fn libtrust_and_thumbprint_vector_from_protocol_6_3() {
        let (x, y) = (
            b64url("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q"),
            b64url("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc"),
        );
        let mut key = [4u8; 65];
        key[1..33].copy_from_slice(&x);
        key[33..].copy_from_slice(&y);
        assert_eq!(
            libtrust_kid(ids(&key).spki_der()),
            "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
        );
        let thumbprint = rfc7638_thumbprint(&PublicComponents::P256 { x: &x, y: &y });
        assert_eq!(thumbprint, "8qjioA3ZA7ti2JIE7c-U8smBFuZolQZvhSHDPU3hhB8");
        assert_eq!(ids(&key).thumbprint, thumbprint);
    }

    #[test]
    fn rfc7638_rsa_example() {
        let n = b64url(
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP\
             ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY\
             368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f\
             M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        );
        let e = b64url("AQAB");
        assert_eq!(
            rfc7638_thumbprint(&PublicComponents::Rsa { n: &n, e: &e }),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// Registry 3.1 encodes x and y from Go's big.Int.Bytes(), dropping leading
    /// zero bytes; we do the same so our `kid` matches there. The expected
    /// values were computed with OpenSSL + Python from the stripped coordinates.
    #[test]
    fn thumbprint_strips_leading_zero_coordinates_like_registry_3_1() {
        let x_key = p256_from_scalar(379);
        assert_eq!(x_key[1], 0, "x must start with 0x00");
        assert_eq!(
            ids(&x_key).thumbprint,
            "cqdWPhcnF9DHfVHOTKaBvs582HJ6LmX0fEgRXTtiGFU"
        );
        // A strict RFC 7518 encoding (32-byte x) would have given this instead.
        assert_ne!(
            ids(&x_key).thumbprint,
            "7Yxe6c_3bAa6kiaK1G-BZmi9EeNsUmlcbdnrtLeuK4E"
        );

        let y_key = p256_from_scalar(43);
        assert_eq!(y_key[33], 0, "y must start with 0x00");
        assert_eq!(
            ids(&y_key).thumbprint,
            "oynto_iDk7BbC1TpDhAjGoiBUFY63hdrK_AAqhuXqX8"
        );
        // The libtrust ID hashes the fixed-length SPKI and is unaffected.
        assert_eq!(
            ids(&y_key).libtrust_kid,
            "5AGM:HKO7:7OPF:652Q:TP4K:C4TR:SMEB:2RDP:EZOM:FPEU:QIPJ:TCRD"
        );
    }
}

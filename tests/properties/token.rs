//! Properties of token signing and verification, with one ES256 key per test run.

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::sample::Index;
use regauth::keys::{self, Algorithm, KidFormat, SigningKey};
use regauth::token::{self, AccessClaims, AccessEntry, Expectations, TokenError};

use super::*;

const ISSUER: &str = "regauth-proptest";
const SERVICE: &str = "registry.proptest";

pub(crate) fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let (key_pem, _certificate) =
            keys::generate(Algorithm::Es256, ISSUER).expect("generate a key");
        SigningKey::from_pem(&key_pem, None, Algorithm::Es256, KidFormat::Libtrust)
            .expect("load it")
    })
}

/// A token we signed that is valid at any time, to make garbage look like ours.
pub(crate) fn timeless_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            sub: "alice".to_owned(),
            aud: SERVICE.to_owned(),
            exp: i64::MAX,
            nbf: i64::MIN,
            iat: 0,
            jti: token::new_jti(),
            access: Vec::new(),
            groups: Vec::new(),
        };
        token::sign(signing_key(), &claims).expect("sign")
    })
}

pub(crate) fn expect(leeway_secs: u64, now: i64) -> Expectations<'static> {
    Expectations {
        issuer: ISSUER,
        audience: SERVICE,
        leeway_secs,
        now,
    }
}

pub(crate) fn verify(token: &str, expect: &Expectations) -> Result<AccessClaims, TokenError> {
    token::verify_access(
        std::slice::from_ref(&signing_key().verifying),
        token,
        expect,
    )
}

pub(crate) fn access_entry() -> impl Strategy<Value = AccessEntry> {
    let actions = prop::collection::vec(any::<String>(), 0..4);
    (
        "[a-z]{1,10}",
        prop::option::of("[a-z]{1,6}"),
        any::<String>(),
        actions,
    )
        .prop_map(|(resource_type, class, name, actions)| AccessEntry {
            resource_type,
            class,
            name,
            actions,
        })
}

/// Claims valid from `nbf` to `exp`, a leeway, and a time inside the accepted window: half
/// the time exactly on one of its edges, where off-by-ones and a forgotten leeway show.
pub(crate) fn claims_leeway_now() -> impl Strategy<Value = (AccessClaims, u64, i64)> {
    let access = prop::collection::vec(access_entry(), 0..4);
    let lifetime = prop_oneof![0i64..600, 0i64..1_000_000];
    let edge = prop_oneof![1 => Just(Some(false)), 1 => Just(Some(true)), 2 => Just(None)];
    let times = (
        0i64..4_000_000_000,
        lifetime,
        0u64..600,
        edge,
        any::<Index>(),
    );
    (any::<String>(), access, times).prop_map(|(sub, access, (nbf, lifetime, leeway, edge, at))| {
        let exp = nbf + lifetime;
        let skew = leeway as i64;
        let window = usize::try_from(exp - nbf + 2 * skew + 1).expect("small window");
        let now = match edge {
            Some(false) => nbf - skew,
            Some(true) => exp + skew,
            None => nbf - skew + at.index(window) as i64,
        };
        let jti = token::new_jti();
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            sub,
            aud: SERVICE.to_owned(),
            exp,
            nbf,
            iat: nbf,
            jti,
            access,
            groups: Vec::new(),
        };
        (claims, leeway, now)
    })
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn garbage_tokens_are_rejected_without_panicking(
        text in any::<String>(),
        payload in "[A-Za-z0-9_-]{0,120}",
        signature in "[A-Za-z0-9_-]{0,90}",
        now in any::<i64>(),
    ) {
        let key = std::slice::from_ref(&signing_key().verifying);
        let expect = expect(60, now);
        let real = timeless_token();
        prop_assert!(token::verify_access(key, real, &expect).is_ok());
        let (message, _) = real.rsplit_once('.').unwrap_or_default();
        let header = message.split('.').next().unwrap_or_default();
        let mut candidates = vec![
            text.clone(),
            format!("{header}.{text}"),
            format!("{header}.{payload}.{signature}"),
            // Our own header and claims under any other signature.
            format!("{message}.{signature}"),
        ];
        if !text.is_empty() {
            candidates.push(format!("{real}{text}"));
        }
        for candidate in candidates {
            prop_assert!(token::verify_access(key, &candidate, &expect).is_err(), "{:?}", candidate);
            prop_assert!(token::verify_refresh(key, &candidate, &expect).is_err(), "{:?}", candidate);
        }
    }

    #[test]
    fn signed_claims_round_trip_inside_the_window_only((claims, leeway, now) in claims_leeway_now()) {
        let signed = token::sign(signing_key(), &claims).expect("sign");
        prop_assert_eq!(verify(&signed, &expect(leeway, now)).expect("verifies"), claims.clone());
        let late = claims.exp + leeway as i64 + 1;
        let expired = verify(&signed, &expect(leeway, late));
        prop_assert!(matches!(expired, Err(TokenError::Expired { .. })), "{:?}", expired);
        let early = claims.nbf - leeway as i64 - 1;
        let too_early = verify(&signed, &expect(leeway, early));
        prop_assert!(matches!(too_early, Err(TokenError::NotYetValid { .. })), "{:?}", too_early);
    }

    #[test]
    fn flipping_any_byte_breaks_the_token(
        (claims, leeway, now) in claims_leeway_now(),
        at in any::<Index>(),
        mask in 1u8..128,
    ) {
        let signed = token::sign(signing_key(), &claims).expect("sign");
        let mut bytes = signed.into_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        // Tokens are ASCII, and a mask below 128 keeps them so.
        let tampered = String::from_utf8(bytes).expect("still ASCII");
        let result = verify(&tampered, &expect(leeway, now));
        prop_assert!(result.is_err(), "byte {} ^ {:#04x} still verifies: {:?}", at, mask, result);
    }
}

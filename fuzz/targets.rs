//! What each fuzz target does with its input, shared by the cargo-fuzz
//! targets (nightly, `fuzz/fuzz_targets/`) and the stable test that replays
//! the committed seeds (`tests/fuzz_seeds.rs`), so both run the same code.
//!
//! Each function takes arbitrary bytes, must never panic, and asserts the
//! invariants that hold for every input (a parse that succeeds re-parses to
//! the same value, a route that succeeds names only valid repositories, a
//! token that verifies carries the expected issuer and audience).

#![allow(dead_code)] // each target binary uses one of these

use std::path::Path;
use std::sync::OnceLock;

use regauth::acl::{Acl, RuleSpec, Subject};
use regauth::keys::{Algorithm, KidFormat, SigningKey, VerifyingKey};
use regauth::scope::{parse_scopes, validate_repository_name};
use regauth::token::{self, Expectations};

/// Issuer and service the token seeds were signed for.
pub const ISSUER: &str = "regauth-fuzz";
/// Audience of access tokens in the seeds.
pub const SERVICE: &str = "registry.fuzz";
/// The fixed "now" tokens are checked against (2027-01-15), before the
/// seeds' `exp`, so valid seeds stay valid.
pub const NOW: i64 = 1_800_000_000;

/// The fuzzing key: committed test material, never used anywhere else.
pub fn signing_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SigningKey::from_pem(
            include_str!("keys/es256.key"),
            Some(include_str!("keys/es256.crt")),
            Algorithm::Es256,
            KidFormat::Libtrust,
        )
        .expect("the committed fuzzing key loads")
    })
}

fn verifying_keys() -> &'static [VerifyingKey] {
    static KEYS: OnceLock<Vec<VerifyingKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        VerifyingKey::from_pem(include_str!("keys/es256.crt")).expect("the fuzzing certificate")
    })
}

/// Lines of the input, lossily decoded: inputs that are not UTF-8 still
/// reach the parsers (as U+FFFD), which is what a header's `to_str` could
/// never hand over but what a query decoder might.
fn lines(data: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(data)
        .split('\n')
        .map(str::to_owned)
        .collect()
}

/// The scope grammar: every line is one `scope` parameter value.
pub fn scope(data: &[u8]) {
    let values = lines(data);
    let Ok(scopes) = parse_scopes(values.iter().map(String::as_str)) else {
        return;
    };
    for scope in &scopes {
        // What was parsed prints back to text that parses to the same scope.
        let again = parse_scopes([scope.to_string().as_str()]).expect("a printed scope re-parses");
        assert_eq!(again.as_slice(), std::slice::from_ref(scope));
        if scope.resource_type == "repository" {
            assert!(validate_repository_name(&scope.name).is_ok(), "{scope}");
        }
        assert!(!scope.actions.is_empty());
    }
}

/// The route map: line 1 the method, line 2 the original URI, every further
/// line one `Content-Type` value (as raw bytes).
pub fn route(data: &[u8]) {
    let mut parts = data.split(|byte| *byte == b'\n');
    let method = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let uri = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let content_types: Vec<&[u8]> = parts.collect();
    let _ = regauth::route::refuse_form_body(&method, &content_types);
    let Ok(needed) = regauth::route::required_access(&method, &uri) else {
        return;
    };
    // Whatever is let through is something the registry reads the same
    // way: no separators or escapes it could split differently.
    let (path, query) = uri.split_once('?').unwrap_or((&uri, ""));
    assert!(
        !uri.contains(';') && !uri.contains('#') && !uri.contains('\\'),
        "{uri:?}"
    );
    assert!(!path.contains('%') && !path.contains("//"), "{uri:?}");
    assert!(
        !query
            .split('&')
            .any(|pair| pair.contains('%') && !valid_escapes(pair)),
        "{uri:?}"
    );
    for scope in &needed {
        if scope.resource_type == "repository" {
            assert!(validate_repository_name(&scope.name).is_ok(), "{uri:?}");
        }
        assert!(!scope.actions.is_empty(), "{uri:?}");
    }
}

fn valid_escapes(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().all(|(index, byte)| {
        *byte != b'%'
            || bytes
                .get(index + 1..index + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Token verification: the input is a compact JWS (or garbage) checked as an
/// access token and as a refresh token against the fuzzing key.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let expect = Expectations {
        issuer: ISSUER,
        audience: SERVICE,
        leeway_secs: 60,
        now: NOW,
    };
    if let Ok(claims) = token::verify_access(verifying_keys(), text, &expect) {
        assert_eq!(claims.iss, ISSUER);
        assert!(claims.exp.saturating_add(60) >= NOW);
    }
    if let Ok(claims) = token::verify_refresh(verifying_keys(), text, &expect) {
        assert_eq!(claims.iss, ISSUER);
    }
}

/// The `Authorization` header: Basic credentials, a bearer token, or anything else.
pub fn basic(data: &[u8]) {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    use regauth::http::authorization::{parse, Authorization};
    match parse(&headers) {
        Authorization::Basic { user, .. } => {
            assert!(!user.contains(':'), "the user name ends at the first ':'");
        }
        Authorization::Bearer(token) => assert!(!token.contains(' ')),
        Authorization::Nothing | Authorization::Malformed(_) => {}
    }
}

/// The config loader: the input as a whole config document, as an ACL rule
/// list (compiled and asked about a few names), and as an htpasswd file.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = regauth::config::Config::parse(&text, Path::new("/nonexistent/fuzz"));
    let _ = regauth::users::parse_htpasswd(&text);
    let Ok(specs) = serde_json::from_str::<Vec<RuleSpec>>(&text) else {
        return;
    };
    let Ok(acl) = Acl::compile(&specs) else {
        return;
    };
    let groups = vec!["staff".to_owned()];
    for account in [None, Some("alice"), Some("alice/team"), Some("..")] {
        let subject = Subject {
            account,
            groups: &groups,
        };
        for name in ["alice/app", "public/x", "a", "catalog"] {
            let _ = acl.allowed(&subject, "repository", name);
        }
    }
}

//! `regauth jwks` on the real binary, checked the way registry 3 uses a JWKS file: the
//! token's header `kid` is looked up literally among the set's kids and the token must
//! verify with that JWK, across a key rotation. Two independent readers do the check:
//! jsonwebtoken, and go-jose (the JOSE library registry 3 is built on; Debian's v2) in
//! `tests/jose/main.go`, built here with Debian's Go. Plus `--private-key` and the
//! `check-config` warnings about the two setups registry 3 refuses wholesale.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::{Command, Output};

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-jwks";
/// The thumbprint registry 3 computes for tests/fixtures/jwks/ec-leading-zero-x.key
/// (leading zero dropped; see the fixture README).
const LEADING_ZERO_KID: &str = "4Z0tBFbtTzpdgY4S0vRpOsdAUebZmuzhOaCXV7PPXyg";

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks");

/// Copies fixture `name` into the harness as `as_name`, with the mode regauth insists on
/// for private keys; returns its path.
fn fixture(h: &Harness, name: &str, as_name: &str) -> String {
    let path = h.write(
        as_name,
        fs::read(format!("{FIXTURES}/{name}")).expect("fixture"),
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The P-256 key whose x coordinate starts with a zero byte.
fn leading_zero_key(h: &Harness) -> String {
    fixture(h, "ec-leading-zero-x.key", "current.key")
}

/// An RSA 2048 key and its certificate (generating one in a debug build takes seconds).
fn rsa_key(h: &Harness, stem: &str) -> (String, String) {
    (
        fixture(h, "rsa.key", &format!("{stem}.key")),
        fixture(h, "rsa.crt", &format!("{stem}.crt")),
    )
}

fn config(addr: &str, token: Value) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": format!("http://{addr}/token"),
        "listen": [addr],
        "token": token,
        "acl": [{ "name": "public/**", "actions": ["pull"] }],
        "registry": { "version": 3, "keys": "jwks" },
    })
}

/// `regauth jwks --config PATH [extra...]`, parsed.
fn jwks(config: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["jwks", "--config", config.to_str().expect("UTF-8 path")];
    args.extend_from_slice(extra);
    serde_json::from_str(&regauth_cmd(&args, "")).expect("jwks prints JSON")
}

fn header(token: &str) -> Value {
    let segment = token.split('.').next().expect("JWT header");
    serde_json::from_slice(
        &BASE64URL_NOPAD
            .decode(segment.as_bytes())
            .expect("base64url"),
    )
    .expect("JSON")
}

/// What registry 3 does with a token and its `auth.token.jwks`: the key whose `kid` is the
/// header's, taken literally, must verify the token (with `iss` and `aud` checked).
fn verify_like_registry_3(set: &Value, token: &str) {
    let header = header(token);
    assert!(
        header.get("x5c").is_none(),
        "x5c would bypass the JWKS: {header}"
    );
    let kid = header["kid"].as_str().expect("kid header");
    let set: JwkSet = serde_json::from_value(set.clone()).expect("a JWK Set jsonwebtoken reads");
    let jwk = set
        .find(kid)
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    let key = DecodingKey::from_jwk(jwk).expect("usable public key");
    let alg = header["alg"].as_str().expect("alg");
    let mut validation = Validation::new(alg.parse().expect("known alg"));
    validation.set_audience(&[SERVICE]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("token with kid {kid} does not verify: {e}"));
}

/// Where Debian's golang-gopkg-square-go-jose.v2-dev puts the library (GOPATH layout).
const GOPATH: &str = "/usr/share/gocode";

/// Builds `tests/jose/main.go` into the harness; `None` (and a note) without Go or go-jose.
fn build_jose_verify(h: &Harness) -> Option<PathBuf> {
    let go = ["/usr/bin/go", "/usr/lib/go/bin/go"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    let library = Path::new(GOPATH).join("src/gopkg.in/square/go-jose.v2/jwk.go");
    let (Some(go), true) = (go, library.exists()) else {
        eprintln!("skipped go-jose check: needs golang-go and golang-gopkg-square-go-jose.v2-dev (tests/run.sh installs them)");
        return None;
    };
    let binary = h.file("jose-verify");
    let out = Command::new(go)
        .args(["build", "-o"])
        .arg(&binary)
        .arg(".")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/jose"))
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", h.mkdir("gocache"))
        .output()
        .expect("run go build");
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(binary)
}

/// `jose-verify JWKS ISSUER SERVICE TOKEN...`: its lines, and whether all verified.
fn jose_verify(h: &Harness, verifier: &Path, set: &str, tokens: &[&str]) -> (bool, Vec<String>) {
    let file = h.write("check.jwks", set);
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(verifier)
        .arg(&file)
        .args([ISSUER, SERVICE])
        .args(tokens)
        .output()
        .expect("run jose-verify");
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "jose-verify: {}",
        String::from_utf8_lossy(&stderr)
    );
    let lines = String::from_utf8(stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_owned)
        .collect();
    (status.success(), lines)
}

/// Rotation with a JWKS: tokens of the old RSA key (PS256) and of the new EC key, whose
/// x coordinate starts with a zero byte, both verify against the printed set.
#[test]
fn tokens_verify_against_the_printed_jwks_across_a_rotation() {
    let mut h = Harness::new("jwks-rotation");
    let (old_key, old_cert) = rsa_key(&h, "old");
    let addr = reserve_tcp();
    let ep = Endpoint::Tcp(addr.clone());
    let scope = ["repository:public/app:pull"];

    // Before: the old key signs.
    let before = config(
        &addr,
        json!({ "algorithm": "PS256", "private_key": old_key, "kid": "thumbprint" }),
    );
    start_regauth(&mut h, &before, &ep);
    let old_token = fetch_token(&ep, "/token", SERVICE, None, &scope);
    let old_set = jwks(&h.file("regauth.json"), &[]);
    assert_eq!(old_set["keys"].as_array().expect("keys").len(), 1);
    verify_like_registry_3(&old_set, &old_token);

    // After: the new key signs, the old certificate is still trusted.
    let new_key = leading_zero_key(&h);
    let after = config(
        &addr,
        json!({ "algorithm": "ES256", "private_key": new_key, "kid": "thumbprint",
                "trusted_certificates": [old_cert] }),
    );
    reconfigure_regauth(&mut h, &after, &ep);
    let new_token = fetch_token(&ep, "/token", SERVICE, None, &scope);
    let set = jwks(&h.file("regauth.json"), &[]);
    let keys = set["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{set}");
    assert_eq!(keys[0]["kid"], LEADING_ZERO_KID);
    assert_eq!(header(&new_token)["kid"], LEADING_ZERO_KID);
    let x = BASE64URL_NOPAD
        .decode(keys[0]["x"].as_str().expect("x").as_bytes())
        .expect("base64url");
    assert_eq!((x.len(), x[0]), (32, 0), "x keeps its leading zero byte");
    assert_eq!(keys[1]["kid"], old_set["keys"][0]["kid"]);
    verify_like_registry_3(&set, &new_token);
    verify_like_registry_3(&set, &old_token);

    // go-jose reads the very text regauth printed, and finds and verifies both tokens.
    let printed = regauth_cmd(
        &[
            "jwks",
            "--config",
            h.file("regauth.json").to_str().expect("UTF-8"),
        ],
        "",
    );
    if let Some(verifier) = build_jose_verify(&h) {
        let old_kid = header(&old_token)["kid"].as_str().expect("kid").to_owned();
        let (ok, lines) = jose_verify(&h, &verifier, &printed, &[&new_token, &old_token]);
        assert!(ok, "{lines:?}");
        assert_eq!(
            lines,
            [format!("ok {LEADING_ZERO_KID}"), format!("ok {old_kid}")]
        );
        // What go-jose does to a JWKS whose x lost its leading zero byte, as a writer
        // that encodes Go's big.Int.Bytes() would produce: the whole file is refused.
        let mut stripped = set.clone();
        let x = BASE64URL_NOPAD
            .decode(keys[0]["x"].as_str().expect("x").as_bytes())
            .expect("x");
        stripped["keys"][0]["x"] = BASE64URL_NOPAD.encode(&x[1..]).into();
        let (ok, lines) = jose_verify(&h, &verifier, &stripped.to_string(), &[&new_token]);
        assert!(!ok);
        assert!(lines[0].contains("wrong length for x"), "{lines:?}");
        // A token with x5c is not for the JWKS, whatever its kid.
        let certificate = fixture(&h, "ec-leading-zero-x.crt", "current.crt");
        let with_x5c = config(
            &addr,
            json!({ "algorithm": "ES256", "private_key": new_key, "kid": "thumbprint",
                    "certificate": certificate, "trusted_certificates": [old_cert] }),
        );
        reconfigure_regauth(&mut h, &with_x5c, &ep);
        let x5c_token = fetch_token(&ep, "/token", SERVICE, None, &scope);
        assert!(header(&x5c_token).get("x5c").is_some());
        let (ok, lines) = jose_verify(&h, &verifier, &printed, &[&x5c_token]);
        assert!(!ok);
        assert!(lines[0].contains("x5c"), "{lines:?}");
    }

    // Once the old certificate leaves the set, its tokens have no key in the JWKS.
    let done = config(
        &addr,
        json!({ "algorithm": "ES256", "private_key": new_key, "kid": "thumbprint" }),
    );
    h.write("regauth.json", serde_json::to_vec(&done).expect("JSON"));
    let set = jwks(&h.file("regauth.json"), &[]);
    let old_kid = header(&old_token)["kid"].as_str().expect("kid").to_owned();
    let parsed: JwkSet = serde_json::from_value(set).expect("JWKS");
    assert!(parsed.find(&old_kid).is_none());
}

#[test]
fn libtrust_kids_are_listed_literally_and_private_key_can_be_named() {
    let h = Harness::new("jwks-libtrust");
    let (key, _) = keygen(&h, "ES256", "token");
    // As in the systemd config: the path exists only inside the service.
    let credential = "/run/credentials/regauth.service/token.key";
    let doc = config(
        "127.0.0.1:1",
        json!({ "algorithm": "ES256", "private_key": credential }),
    );
    let path = h.write("regauth.json", serde_json::to_vec(&doc).expect("JSON"));

    let out = Command::new(REGAUTH)
        .args(["jwks", "--config"])
        .arg(&path)
        .output()
        .expect("run regauth jwks");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(credential), "{stderr}");

    let set = jwks(&path, &["--private-key", key.to_str().expect("UTF-8")]);
    let kid = set["keys"][0]["kid"].as_str().expect("kid");
    // The libtrust ID check-config reports for the same key.
    let doc = config(
        "127.0.0.1:1",
        json!({ "algorithm": "ES256", "private_key": key }),
    );
    let direct = h.write("direct.json", serde_json::to_vec(&doc).expect("JSON"));
    let summary = String::from_utf8(check_config(&direct).stdout).expect("UTF-8");
    assert!(
        summary.contains(&format!(", kid {kid}, ")),
        "{kid}\n{summary}"
    );
    assert_eq!(kid.len(), 59, "libtrust format: {kid}");
}

#[test]
fn check_config_warns_about_the_two_setups_registry_3_refuses() {
    let h = Harness::new("jwks-warnings");
    let (key, cert) = keygen(&h, "ES256", "token");
    let (ps_key, ps_cert) = rsa_key(&h, "rsa");
    let warnings = |token: Value, registry: Value| {
        let mut doc = config("127.0.0.1:1", token);
        doc["registry"] = registry;
        let path = h.write("check.json", serde_json::to_vec(&doc).expect("JSON"));
        let out = check_config(&path);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .lines()
            .filter(|l| l.starts_with("warning:"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };

    // 1. x5c (a certificate) while the registry reads only a JWKS.
    let w = warnings(
        json!({ "algorithm": "ES256", "private_key": key, "certificate": cert, "kid": "thumbprint" }),
        json!({ "version": 3, "keys": "jwks" }),
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("never falls back to the kid"), "{w:?}");
    // 2. A libtrust kid without a certificate, against rootcertbundle.
    let w = warnings(
        json!({ "algorithm": "ES256", "private_key": key, "kid": "libtrust" }),
        json!({ "version": 3, "keys": "rootcertbundle" }),
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("libtrust kid never matches"), "{w:?}");
    // The documented setups: JWKS without a certificate; rootcertbundle with x5c.
    let ok = warnings(
        json!({ "algorithm": "ES256", "private_key": key, "kid": "thumbprint" }),
        json!({ "version": 3, "keys": "jwks" }),
    );
    assert!(ok.is_empty(), "{ok:?}");
    let ok = warnings(
        json!({ "algorithm": "PS256", "private_key": ps_key, "certificate": ps_cert }),
        json!({ "version": 3, "keys": "rootcertbundle" }),
    );
    assert!(ok.is_empty(), "{ok:?}");
    // Registry 2 is told about PS256.
    let w = warnings(
        json!({ "algorithm": "PS256", "private_key": ps_key, "certificate": ps_cert }),
        json!({ "version": 2 }),
    );
    assert!(w.iter().any(|l| l.contains("PS256")), "{w:?}");
}

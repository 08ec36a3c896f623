//! End to end: nginx 1.22 `auth_request` asks regauth about every request to a
//! docker-registry 2.8 that has no auth of its own.
//!
//! The site is the shipped `nginx/registry.conf` and `nginx/regauth-*.conf`, with only
//! paths, ports and the certificate rewritten (see [`support::NginxSite`]): these tests check
//! what operators install. Needs the peers `tests/run.sh` installs.

mod support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";
/// regauth's `auth.trusted_user_header` in the token-mode site.
const TRUSTED_HEADER: &str = "X-Authenticated-User";
/// What skopeo prints when nginx refuses a request: the error code of the JSON body of the
/// 401 (`unauthorized`) or 403 (`denied`).
const REFUSED: &[&str] = &["unauthorized", "denied"];
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

const ALICE: (&str, &str) = ("alice", "alice-Secret-1");
const BOB: (&str, &str) = ("bob", "bob-Secret-2");
const ADMIN: (&str, &str) = ("admin", "admin-Secret-4");
const DAVE: (&str, &str) = ("dave", "dave-Secret-5");
const ERIN: (&str, &str) = ("erin", "erin-Secret-6");

fn user((name, password): (&'static str, &'static str)) -> Creds<'static> {
    Creds::User(name, password)
}

/// A token from regauth through nginx's `/token`.
fn token(s: &NginxSite, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
    fetch_token(&s.plain, "/token", SERVICE, creds, scopes)
}

fn token_key() -> Value {
    json!({
        "algorithm": "ES256",
        "private_key": "token.key",
        "certificate": "token.crt",
        "expiration_secs": 300,
    })
}

/// The challenge of a 401 (scheme, parameters), asserting the JSON error body nginx's
/// `@regauth_401` adds.
fn challenge_of(r: &Response, what: &str) -> (String, BTreeMap<String, String>) {
    assert_eq!(r.status, 401, "{what}: {} {}", r.status, r.text());
    assert_eq!(
        r.json()["errors"][0]["code"],
        "UNAUTHORIZED",
        "{what}: body"
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "{what}: Docker-Distribution-Api-Version"
    );
    let header = r
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: no WWW-Authenticate: {:?}", r.headers));
    parse_challenge(header)
}

#[test]
fn nginx_auth_request_with_regauth_tokens() {
    let s = NginxSite::start("nginx-token", |realm, listen| {
        json!({
            "service": SERVICE,
            "issuer": ISSUER,
            "realm": realm,
            "listen": listen,
            "token": token_key(),
            "users": {
                "alice": { "password": hash_password(ALICE.1) },
                "bob": { "password": hash_password(BOB.1) },
                "admin": { "password": hash_password(ADMIN.1), "groups": ["ops"] },
            },
            "acl": [
                { "group": "ops", "name": "**", "actions": ["*"] },
                { "account": "bob", "name": "alice/**", "actions": ["pull"] },
                { "account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"] },
                { "account": "", "name": "public/**", "actions": ["pull"] },
            ],
            "auth": { "mode": "token", "trusted_user_header": TRUSTED_HEADER },
        })
    });
    // One site, several aspects, in order (later ones use the images pushed first).
    skopeo_through_nginx_obeys_the_acl(&s);
    large_layers_stream_through(&s);
    challenges_tell_clients_what_to_do(&s);
    oauth2_post_passes_the_realm_location(&s);
    upstream_sees_only_the_account_regauth_names(&s);
    trusted_user_header_cannot_come_from_clients(&s);
    confusing_paths_are_denied(&s);
}

const ALICE_MANIFEST: &str = "/v2/alice/app/manifests/v1";

fn param<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// skopeo through nginx: the owner pushes and pulls; a pull-only user cannot push;
/// anonymous pulls only the public repository; a wrong password fails.
fn skopeo_through_nginx_obeys_the_acl(s: &NginxSite) {
    let sk = Skopeo::new(&s.h);
    let app = make_image(&s.h, "app-v1");
    sk.push(&app, &s.at("alice/app:v1"), user(ALICE))
        .assert_ok();
    sk.pull(&s.at("alice/app:v1"), user(ALICE))
        .assert_pulled(&app);
    sk.pull(&s.at("alice/app:v1"), user(BOB))
        .assert_pulled(&app);
    let bob_img = make_image(&s.h, "bob-push");
    sk.push(&bob_img, &s.at("alice/app:bob"), user(BOB))
        .assert_failed(REFUSED);
    let base = make_image(&s.h, "public-base");
    sk.push(&base, &s.at("public/base:1"), user(ADMIN))
        .assert_ok();
    sk.pull(&s.at("public/base:1"), Creds::Anonymous)
        .assert_pulled(&base);
    sk.pull(&s.at("alice/app:v1"), Creds::Anonymous)
        .assert_failed(REFUSED);
    sk.pull(&s.at("alice/app:v1"), Creds::User(ALICE.0, "wrong"))
        .assert_failed(&["invalid username/password"]);
}

/// A layer larger than nginx's default 1 MiB body limit streams through, and nothing is
/// spooled to a temp file on the way.
fn large_layers_stream_through(s: &NginxSite) {
    let sk = Skopeo::new(&s.h);
    let big = make_image_with_payload(&s.h, "big", 3 << 20);
    sk.push(&big, &s.at("alice/big:1"), user(ALICE)).assert_ok();
    sk.pull(&s.at("alice/big:1"), user(ALICE))
        .assert_pulled(&big);
    let nginx_errors = s.h.log("nginx-error");
    assert!(
        !nginx_errors.contains("buffered to a temporary file"),
        "nginx spooled a body:\n{nginx_errors}"
    );
}

/// No token: a Bearer challenge for the right scope at nginx's /token, with no error.
/// Edited claims: `invalid_token`. A pull-only token pushing: `insufficient_scope`, and the
/// challenge names the push.
fn challenges_tell_clients_what_to_do(s: &NginxSite) {
    let (scheme, params) = challenge_of(&s.request("GET", ALICE_MANIFEST, &[]), "no token");
    assert_eq!(scheme, "bearer");
    assert_eq!(param(&params, "realm"), Some(s.realm.as_str()));
    assert_eq!(param(&params, "service"), Some(SERVICE));
    assert_eq!(param(&params, "scope"), Some("repository:alice/app:pull"));
    assert_eq!(param(&params, "error"), None, "no token, yet an error");
    let (scheme, _) = challenge_of(&s.request("GET", "/v2/", &[]), "GET /v2/ without token");
    assert_eq!(scheme, "bearer");

    let alice = token(s, Some(ALICE), &["repository:alice/app:pull"]);
    let accept = ("Accept", MANIFEST_ACCEPT);
    let ok = s.request(
        "GET",
        ALICE_MANIFEST,
        &[("Authorization", &bearer(&alice)), accept],
    );
    assert_eq!(ok.status, 200, "alice's token: {}", ok.text());
    let forged = forge_jwt(&alice, |c| {
        c["sub"] = json!("admin");
        c["access"] = json!([{ "type": "repository", "name": "alice/app", "actions": ["*"] }]);
    });
    let r = s.request(
        "GET",
        ALICE_MANIFEST,
        &[("Authorization", &bearer(&forged))],
    );
    let (_, params) = challenge_of(&r, "forged token");
    assert_eq!(param(&params, "error"), Some("invalid_token"), "{params:?}");
    assert_eq!(param(&params, "realm"), Some(s.realm.as_str()));

    let bob = token(s, Some(BOB), &["repository:alice/app:pull,push"]);
    assert_eq!(
        granted(&jwt_claims(&bob), "repository", "alice/app"),
        ["pull"]
    );
    let ok = s.request(
        "GET",
        ALICE_MANIFEST,
        &[("Authorization", &bearer(&bob)), accept],
    );
    assert_eq!(ok.status, 200, "bob pulls: {}", ok.text());
    let push = s.request(
        "POST",
        "/v2/alice/app/blobs/uploads/",
        &[("Authorization", &bearer(&bob))],
    );
    let (_, params) = challenge_of(&push, "pull-only token pushing");
    assert_eq!(
        param(&params, "error"),
        Some("insufficient_scope"),
        "{params:?}"
    );
    let scope = param(&params, "scope").expect("scope in the challenge");
    let actions = scope
        .strip_prefix("repository:alice/app:")
        .unwrap_or_else(|| panic!("challenge scope {scope:?}"));
    assert!(
        actions.split(',').any(|a| a == "push"),
        "challenge scope {scope:?}"
    );
}

/// The OAuth2 password grant passes nginx's /token, also with a chunked body.
fn oauth2_post_passes_the_realm_location(s: &NginxSite) {
    assert_password_grant(&s.plain, SERVICE, ALICE, "alice/app", &["pull", "push"]);
}

/// The upstream receives regauth's account in Remote-User (skopeo's pushes and hand-made
/// requests alike), and never a Remote-User header of the client's own.
fn upstream_sees_only_the_account_regauth_names(s: &NginxSite) {
    let line = s.upstream_saw("PUT", ALICE_MANIFEST);
    assert!(
        line.contains(r#"remote_user="alice""#),
        "upstream saw: {line}"
    );

    let accept = ("Accept", MANIFEST_ACCEPT);
    let forged_user = ("Remote-User", "forged-root");
    let alice = bearer(&token(s, Some(ALICE), &["repository:alice/app:pull"]));
    let r = s.request(
        "HEAD",
        ALICE_MANIFEST,
        &[("Authorization", &alice), accept, forged_user],
    );
    assert_eq!(r.status, 200, "alice's HEAD");
    let line = s.upstream_saw("HEAD", ALICE_MANIFEST);
    assert!(
        line.contains(r#"remote_user="alice""#),
        "upstream saw: {line}"
    );

    // In token mode anonymous clients use tokens too; theirs names no account.
    let public = "/v2/public/base/manifests/1";
    let anonymous = bearer(&token(s, None, &["repository:public/base:pull"]));
    let r = s.request(
        "HEAD",
        public,
        &[("Authorization", &anonymous), accept, forged_user],
    );
    assert_eq!(r.status, 200, "anonymous HEAD of the public manifest");
    let line = s.upstream_saw("HEAD", public);
    assert!(line.contains(r#"remote_user="-""#), "upstream saw: {line}");
    assert!(
        !s.h.log("upstream-view").contains("forged-root"),
        "a client's Remote-User reached the upstream"
    );
}

/// regauth honours the trusted-user header on its trusted socket only, and the shipped
/// regauth-auth.conf keeps a client's own header from reaching that socket.
fn trusted_user_header_cannot_come_from_clients(s: &NginxSite) {
    let auth_headers = [
        ("X-Original-URI", ALICE_MANIFEST),
        ("X-Original-Method", "GET"),
        (TRUSTED_HEADER, "alice"),
    ];
    let socket = Endpoint::Unix(s.socket.clone());
    let direct = http(&socket, "GET", "/auth", &auth_headers, b"").expect("/auth on the socket");
    assert_eq!(direct.status, 200, "trusted socket: {}", direct.text());
    assert_eq!(direct.header("remote-user"), Some("alice"));
    let untrusted = http(&s.regauth_tcp, "GET", "/auth", &auth_headers, b"").expect("/auth on TCP");
    assert_eq!(
        untrusted.status, 401,
        "untrusted listener honoured {TRUSTED_HEADER}"
    );

    let r = s.request("GET", ALICE_MANIFEST, &[(TRUSTED_HEADER, "alice")]);
    let (_, params) = challenge_of(&r, "client's own trusted-user header");
    assert_eq!(param(&params, "error"), None);
}

/// A request that nginx and the registry might read differently is denied outright (403,
/// with a DENIED body), however good the token.
fn confusing_paths_are_denied(s: &NginxSite) {
    let alice = bearer(&token(s, Some(ALICE), &["repository:alice/app:pull"]));
    for target in [
        "/v2/alice%2Fapp/manifests/v1",
        "/v2/public/base/../../alice/app/manifests/v1",
    ] {
        let r = s.request("GET", target, &[("Authorization", &alice)]);
        assert_eq!(r.status, 403, "{target}: {} {}", r.status, r.text());
        assert_eq!(r.json()["errors"][0]["code"], "DENIED", "{target}: body");
    }
}

#[test]
fn nginx_auth_request_with_basic_credentials() {
    let s = NginxSite::start("nginx-basic", |realm, listen| {
        json!({
            "service": SERVICE,
            "issuer": ISSUER,
            "realm": realm,
            "listen": listen,
            "token": token_key(),
            "users": {
                "dave": { "password": hash_password(DAVE.1), "groups": ["staff"] },
                "erin": { "password": hash_password(ERIN.1) },
            },
            "acl": [
                { "group": "staff", "name": "**", "actions": ["pull", "push"] },
                { "name": "public/**", "actions": ["pull"] },
            ],
            "auth": { "mode": "basic" },
        })
    });
    let sk = Skopeo::new(&s.h);

    // Staff push; anonymous and non-staff users pull public images; non-staff cannot push.
    let tool = make_image(&s.h, "tool");
    sk.push(&tool, &s.at("public/tool:1"), user(DAVE))
        .assert_ok();
    let private = make_image(&s.h, "private");
    sk.push(&private, &s.at("staff/private:1"), user(DAVE))
        .assert_ok();
    sk.pull(&s.at("public/tool:1"), Creds::Anonymous)
        .assert_pulled(&tool);
    sk.pull(&s.at("public/tool:1"), user(ERIN))
        .assert_pulled(&tool);
    let erin_img = make_image(&s.h, "erin-push");
    sk.push(&erin_img, &s.at("public/tool:2"), user(ERIN))
        .assert_failed(REFUSED);
    sk.pull(&s.at("staff/private:1"), user(ERIN))
        .assert_failed(REFUSED);
    sk.pull(&s.at("staff/private:1"), Creds::Anonymous)
        .assert_failed(REFUSED);

    let line = s.upstream_saw("PUT", "/v2/staff/private/manifests/1");
    assert!(
        line.contains(r#"remote_user="dave""#),
        "upstream saw: {line}"
    );

    // Without credentials, or with a wrong password: 401 with a Basic challenge.
    let manifest = "/v2/staff/private/manifests/1";
    let (scheme, _) = challenge_of(&s.request("GET", manifest, &[]), "no credentials");
    assert_eq!(scheme, "basic");
    let wrong = basic_auth(DAVE.0, "wrong");
    let (scheme, _) = challenge_of(
        &s.request("GET", manifest, &[("Authorization", &wrong)]),
        "wrong password",
    );
    assert_eq!(scheme, "basic");
    let good = basic_auth(DAVE.0, DAVE.1);
    let r = s.request(
        "GET",
        manifest,
        &[("Authorization", &good), ("Accept", MANIFEST_ACCEPT)],
    );
    assert_eq!(r.status, 200, "dave's credentials: {}", r.text());
}

#[test]
fn shipped_pulp_example_is_valid_nginx() {
    let h = Harness::new("nginx-pulp");
    keygen(&h, "ES256", "tls");
    let socket = h.file("regauth.sock");
    // Only checked with `nginx -t`, which binds nothing: any port numbers do.
    let site = rewrite_site(
        &h,
        "pulp.conf",
        8443,
        8080,
        &socket,
        "pulp-registry.access.log",
    );
    write_nginx_conf(&h, "pulp", &site);
}

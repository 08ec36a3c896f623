//! `/auth` (nginx auth_request) on the real binary: every way a bearer token
//! can be wrong, the challenges that tell clients what to fetch, Basic mode,
//! and the trusted front-proxy user header.

mod support;

use regauth::keys::SigningKey;
use regauth::token::{self, AccessClaims};
use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-it";
const PROXY_USER_HEADER: &str = "X-Authenticated-User";
const REALM: &str = "https://registry.test/token";

struct Sidecar {
    h: Harness,
    config: Value,
    tcp: Endpoint,
    unix: Endpoint,
    key: SigningKey,
    stranger: SigningKey,
}

/// The sidecar's config: alice (staff) and bob, listening on `listen`.
fn config(listen: Value, auth: Value) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": REALM,
        "listen": listen,
        "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
        "users": {
            "alice": { "password": hash_password("alice-pw"), "groups": ["staff"] },
            "bob": { "password": hash_password("bob-pw") },
        },
        "acl": [
            { "group": "staff", "type": "registry", "name": "catalog", "actions": ["*"] },
            { "group": "staff", "actions": ["pull", "push", "delete"] },
            { "actions": ["pull"] },
        ],
        "auth": auth,
    })
}

/// A trusted unix socket `regauth.sock` and an untrusted one, `plain.sock`.
fn unix_listeners(h: &Harness) -> [Value; 2] {
    [
        json!({ "address": format!("unix:{}", h.file("regauth.sock").display()), "trusted": true }),
        json!(format!("unix:{}", h.file("plain.sock").display())),
    ]
}

impl Sidecar {
    fn start(label: &str, auth: Value) -> Sidecar {
        let mut h = Harness::new(label);
        let key = test_signing_key(&h, "token");
        let stranger = test_signing_key(&h, "stranger");
        let addr = reserve_tcp();
        let [trusted, plain] = unix_listeners(&h);
        let config = config(json!([addr, trusted, plain]), auth);
        let tcp = Endpoint::Tcp(addr);
        start_regauth(&mut h, &config, &tcp);
        Sidecar {
            unix: Endpoint::Unix(h.file("regauth.sock")),
            h,
            config,
            tcp,
            key,
            stranger,
        }
    }

    /// The subrequest nginx would send for `method uri`.
    fn ask(&self, ep: &Endpoint, method: &str, uri: &str, extra: &[(&str, &str)]) -> Response {
        let mut headers = vec![("X-Original-Method", method), ("X-Original-URI", uri)];
        headers.extend_from_slice(extra);
        get(ep, "/auth", &headers)
    }

    fn ask_with_token(&self, method: &str, uri: &str, token: &str) -> Response {
        let bearer = format!("Bearer {token}");
        self.ask(&self.tcp, method, uri, &[("Authorization", &bearer)])
    }

    fn claims(&self, sub: &str, access: &[(&str, &str, &[&str])]) -> AccessClaims {
        access_claims(ISSUER, SERVICE, sub, access)
    }

    fn sign(&self, claims: &AccessClaims) -> String {
        token::sign(&self.key, claims).unwrap()
    }

    /// Asserts a 401 Bearer challenge with exactly these scope and error parameters.
    fn assert_challenge(&self, r: &Response, scope: Option<&str>, error: Option<&str>) {
        assert_eq!(r.status, 401, "{}", r.text());
        let value = r.header("www-authenticate").expect("WWW-Authenticate");
        let (scheme, params) = parse_challenge(value);
        assert_eq!(scheme, "bearer", "{value}");
        assert_eq!(
            params.get("realm").map(String::as_str),
            Some(REALM),
            "{value}"
        );
        assert_eq!(
            params.get("service").map(String::as_str),
            Some(SERVICE),
            "{value}"
        );
        assert_eq!(params.get("scope").map(String::as_str), scope, "{value}");
        assert_eq!(params.get("error").map(String::as_str), error, "{value}");
    }
}

#[test]
fn valid_tokens_pass_with_the_user_named() {
    let s = Sidecar::start("auth-valid", json!({}));
    let token = s.sign(&s.claims("alice", &[("repository", "team/app", &["pull", "push"])]));
    for (method, uri) in [
        ("GET", "/v2/"),
        ("HEAD", "/v2/team/app/manifests/latest"),
        ("GET", "/v2/team/app/tags/list?n=10"),
        ("PATCH", "/v2/team/app/blobs/uploads/3f1c-aa_b?_state=xyz"),
        ("POST", "/v2/team/app/blobs/uploads/"),
    ] {
        let r = s.ask_with_token(method, uri, &token);
        assert_eq!(r.status, 200, "{method} {uri}: {}", r.text());
        assert_eq!(r.header("remote-user"), Some("alice"), "{method} {uri}");
    }
    // Cached on the second use: still checked for access every time.
    let r = s.ask_with_token(
        "DELETE",
        "/v2/team/app/manifests/sha256:".to_owned().as_str(),
        &token,
    );
    assert_eq!(
        r.status,
        403,
        "a bad digest is refused outright: {}",
        r.text()
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let r = s.ask_with_token(
        "DELETE",
        &format!("/v2/team/app/manifests/{digest}"),
        &token,
    );
    s.assert_challenge(
        &r,
        Some("repository:team/app:delete"),
        Some("insufficient_scope"),
    );

    // The catalog needs `registry:catalog:*`; `*` covers every action.
    let admin = s.sign(&s.claims(
        "alice",
        &[("registry", "catalog", &["*"]), ("repository", "x", &["*"])],
    ));
    assert_eq!(
        s.ask_with_token("GET", "/v2/_catalog?n=100", &admin).status,
        200
    );
    assert_eq!(
        s.ask_with_token("DELETE", &format!("/v2/x/blobs/{digest}"), &admin)
            .status,
        200
    );
    let puller = s.sign(&s.claims("bob", &[("registry", "catalog", &["pull"])]));
    let r = s.ask_with_token("GET", "/v2/_catalog", &puller);
    s.assert_challenge(&r, Some("registry:catalog:*"), Some("insufficient_scope"));

    // Anonymous tokens (sub "") are valid; no user header unless configured.
    let anonymous = s.sign(&s.claims("", &[("repository", "public/x", &["pull"])]));
    let r = s.ask_with_token("GET", "/v2/public/x/manifests/1", &anonymous);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("remote-user"), None);

    // A blob mount needs pull on the source too.
    let mount = format!("/v2/team/app/blobs/uploads/?mount={digest}&from=other%2Frepo");
    let r = s.ask_with_token("POST", &mount, &token);
    s.assert_challenge(
        &r,
        Some("repository:team/app:pull,push repository:other/repo:pull"),
        Some("insufficient_scope"),
    );
}

#[test]
fn bad_tokens_get_invalid_token_challenges() {
    let s = Sidecar::start("auth-invalid", json!({}));
    let uri = "/v2/team/app/manifests/latest";
    let scope = Some("repository:team/app:pull");

    // No token at all: the challenge carries no error, like the registry's.
    let r = s.ask(&s.tcp, "GET", uri, &[]);
    s.assert_challenge(&r, scope, None);
    let r = s.ask(&s.tcp, "GET", "/v2/", &[]);
    s.assert_challenge(&r, None, None);

    let good = s.claims("alice", &[("repository", "team/app", &["pull"])]);
    let mut expired = good.clone();
    expired.exp = now() - 5;
    let mut early = good.clone();
    early.nbf = now() + 120;
    let mut wrong_aud = good.clone();
    wrong_aud.aud = "other.registry".into();
    let mut wrong_iss = good.clone();
    wrong_iss.iss = "someone-else".into();
    let genuine = s.sign(&good);
    let alg_none = alg_none_forgery(&genuine, &s.key.kid);
    let cert_pem = std::fs::read(s.h.file("token.crt")).unwrap();
    let hs256 = hs256_forgery(&good, &s.key.kid, &cert_pem);
    let cases = [
        ("expired", s.sign(&expired)),
        ("not yet valid", s.sign(&early)),
        ("wrong audience", s.sign(&wrong_aud)),
        ("wrong issuer", s.sign(&wrong_iss)),
        ("unknown key", token::sign(&s.stranger, &good).unwrap()),
        ("alg none", alg_none),
        ("HS256 keyed with the public certificate", hs256),
        (
            "tampered payload",
            forge_jwt(&genuine, |c| c["sub"] = json!("admin")),
        ),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in cases {
        let r = s.ask_with_token("GET", uri, &token);
        assert_eq!(r.status, 401, "{what}");
        s.assert_challenge(&r, scope, Some("invalid_token"));
    }
    assert_eq!(s.ask_with_token("GET", uri, &genuine).status, 200);
}

#[test]
fn confusing_requests_are_forbidden() {
    let s = Sidecar::start("auth-confusing", json!({}));
    let token = s.sign(&s.claims("alice", &[("repository", "a", &["*"])]));
    for (method, uri) in [
        ("GET", "/v2/a/../b/manifests/latest"),
        ("GET", "/v2/a/%2e%2e/b/manifests/latest"),
        ("GET", "/v2//a/manifests/latest"),
        ("GET", "/v2/a/manifests/lat%2Fest"),
        ("GET", "/v2/A/manifests/latest"),
        ("GET", "/v2/a/nothing-here"),
        ("GET", "/admin"),
        ("OPTIONS", "/v2/a/manifests/latest"),
    ] {
        let r = s.ask_with_token(method, uri, &token);
        assert_eq!(r.status, 403, "{method} {uri}: {}", r.text());
        assert_eq!(r.json()["errors"][0]["code"], "DENIED");
    }
    let long = format!("/v2/{}/manifests/latest", "a".repeat(256));
    assert_eq!(s.ask_with_token("GET", &long, &token).status, 403);
    // A mount's `from` could hide in a form body the sidecar never sees.
    let bearer = format!("Bearer {token}");
    let form = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = s.ask(&s.tcp, "POST", "/v2/a/blobs/uploads/", &form);
    assert_eq!(r.status, 403, "{}", r.text());
    // Go still reads a form when a parameter is not ASCII: so must we refuse it.
    let disguised = [
        ("Authorization", bearer.as_str()),
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=\u{e9}",
        ),
    ];
    let r = s.ask(&s.tcp, "POST", "/v2/a/blobs/uploads/", &disguised);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("not printable ASCII"), "{}", r.text());
    // A non-ASCII original URI is named as such, not as a missing header.
    let r = s.ask(
        &s.tcp,
        "GET",
        "/v2/caf\u{e9}/manifests/1",
        &[("Authorization", &bearer)],
    );
    assert_eq!(r.status, 403);
    assert!(
        r.text()
            .contains("X-Original-URI is empty or not printable ASCII"),
        "{}",
        r.text()
    );
    // A subrequest without the original URI is a broken nginx config.
    let r = get(&s.tcp, "/auth", &[("X-Original-Method", "GET")]);
    assert_eq!(r.status, 403);
}

#[test]
fn basic_mode_everyone_pulls_staff_pushes() {
    let s = Sidecar::start("auth-basic", json!({ "mode": "basic" }));
    let alice = basic_auth("alice", "alice-pw");
    let bob = basic_auth("bob", "bob-pw");
    let manifest = "/v2/lib/app/manifests/1";
    // Anonymous pulls, but the ping challenges so clients learn to send credentials.
    let r = s.ask(&s.tcp, "GET", manifest, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("remote-user"), None);
    let r = s.ask(&s.tcp, "GET", manifest, &[("Authorization", "Basic Og==")]);
    assert_eq!(r.status, 200, "containers/image's empty Basic is anonymous");
    let r = s.ask(&s.tcp, "GET", "/v2/", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"registry.test\"")
    );
    let r = s.ask(&s.tcp, "PUT", manifest, &[]);
    assert_eq!(r.status, 401, "anonymous push: signing in may help");

    let r = s.ask(&s.tcp, "PUT", manifest, &[("Authorization", &alice)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("remote-user"), Some("alice"));
    let r = s.ask(&s.tcp, "PUT", manifest, &[("Authorization", &bob)]);
    assert_eq!(r.status, 403, "bob is not staff: {}", r.text());
    let r = s.ask(&s.tcp, "GET", manifest, &[("Authorization", &bob)]);
    assert_eq!(r.header("remote-user"), Some("bob"));
    let wrong = basic_auth("alice", "wrong");
    let r = s.ask(&s.tcp, "GET", manifest, &[("Authorization", &wrong)]);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"registry.test\"")
    );
}

#[test]
fn trusted_proxy_user_only_on_trusted_listeners() {
    let s = Sidecar::start(
        "auth-proxy",
        json!({ "trusted_user_header": PROXY_USER_HEADER, "anonymous_user": "anonymous" }),
    );
    let push = "/v2/lib/app/manifests/1";
    // On the trusted unix socket the proxy's user decides through the ACL.
    let r = s.ask(&s.unix, "PUT", push, &[(PROXY_USER_HEADER, "alice")]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("remote-user"), Some("alice"));
    let r = s.ask(&s.unix, "PUT", push, &[(PROXY_USER_HEADER, "bob")]);
    assert_eq!(r.status, 403);
    // On TCP the same header is ignored: no token, so a challenge.
    let r = s.ask(&s.tcp, "PUT", push, &[(PROXY_USER_HEADER, "alice")]);
    s.assert_challenge(&r, Some("repository:lib/app:pull,push"), None);
    // Without the header, tokens work as usual, and anonymous gets the configured name.
    let anonymous = s.sign(&s.claims("", &[("repository", "lib/app", &["pull"])]));
    let bearer = format!("Bearer {anonymous}");
    let r = s.ask(&s.unix, "GET", push, &[("Authorization", &bearer)]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("remote-user"), Some("anonymous"));
}

/// regauth binds these sockets itself: with no TCP listener the test has none to hand
/// over (see `regauth_serve` in tests/support), so the files are regauth's.
#[test]
fn unix_sockets_default_to_modes_nginx_can_use() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Harness::new("auth-socket-modes");
    keygen(&h, "ES256", "token");
    let config = config(json!(unix_listeners(&h)), json!({}));
    let plain = Endpoint::Unix(h.file("plain.sock"));
    start_regauth(&mut h, &config, &plain);
    let mode = |name: &str| {
        std::fs::metadata(h.file(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("regauth.sock"), 0o660, "trusted: owner and group only");
    assert_eq!(mode("plain.sock"), 0o666, "as reachable as loopback TCP");
}

#[test]
fn trusted_header_is_ignored_unless_configured() {
    let s = Sidecar::start("auth-proxy-off", json!({}));
    let r = s.ask(
        &s.unix,
        "GET",
        "/v2/lib/app/manifests/1",
        &[(PROXY_USER_HEADER, "alice")],
    );
    s.assert_challenge(&r, Some("repository:lib/app:pull"), None);
}

#[test]
fn rotation_set_is_trusted_until_removed() {
    let mut s = Sidecar::start("auth-rotation", json!({}));
    let uri = "/v2/lib/app/manifests/1";
    let claims = s.claims("alice", &[("repository", "lib/app", &["pull"])]);
    let by_old_key = token::sign(&s.stranger, &claims).unwrap();
    let r = s.ask_with_token("GET", uri, &by_old_key);
    s.assert_challenge(&r, Some("repository:lib/app:pull"), Some("invalid_token"));

    // The previous key's certificate in the rotation set: its tokens pass.
    s.config["token"]["trusted_certificates"] = json!(["stranger.crt"]);
    reconfigure_regauth(&mut s.h, &s.config, &s.tcp);
    assert_eq!(s.ask_with_token("GET", uri, &by_old_key).status, 200);
    assert_eq!(
        s.ask_with_token("GET", uri, &by_old_key).status,
        200,
        "cached"
    );
    assert_eq!(s.ask_with_token("GET", uri, &s.sign(&claims)).status, 200);

    // Dropped from the set: refused at once, the cached verification forgotten.
    s.config["token"]["trusted_certificates"] = json!([]);
    reconfigure_regauth(&mut s.h, &s.config, &s.tcp);
    let r = s.ask_with_token("GET", uri, &by_old_key);
    s.assert_challenge(&r, Some("repository:lib/app:pull"), Some("invalid_token"));
}

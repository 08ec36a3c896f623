//! The token endpoint on the real binary: GET and OAuth2 POST forms, every
//! status it answers, the token it signs, and the refresh-token lifecycle.

mod support;

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-it";

/// A running regauth with alice (staff), bob, and carol from htpasswd.
struct Server {
    h: Harness,
    ep: Endpoint,
    config: Value,
}

impl Server {
    fn start(label: &str) -> Server {
        let mut h = Harness::new(label);
        keygen(&h, "ES256", "token");
        h.write("users.htpasswd", htpasswd_line("carol", "carol-pw"));
        let addr = reserve_tcp();
        let config = json!({
            "service": SERVICE,
            "issuer": ISSUER,
            "realm": format!("http://{addr}/token"),
            "listen": [addr],
            "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
            "users": {
                "alice": { "password": hash_password("alice-pw"), "groups": ["staff"] },
                "bob": { "password": hash_password("bob-pw") },
            },
            "htpasswd": "users.htpasswd",
            "acl": [
                { "group": "staff", "type": "registry", "name": "catalog", "actions": ["*"] },
                { "account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"] },
                { "account": "bob", "name": "alice/**", "actions": ["pull"] },
                { "name": "public/**", "actions": ["pull"] },
            ],
            "limits": { "header_read_timeout_secs": 2 },
        });
        let ep = Endpoint::Tcp(addr);
        start_regauth(&mut h, &config, &ep);
        Server { h, ep, config }
    }

    fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        http(&self.ep, method, target, headers, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    fn get(&self, target: &str, creds: Option<(&str, &str)>) -> Response {
        let auth = creds.map(|(u, p)| basic_auth(u, p));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        self.request("GET", target, &headers, b"")
    }

    fn post_form(&self, form: &str) -> Response {
        let headers = [(
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )];
        self.request("POST", "/token", &headers, form.as_bytes())
    }

    /// Rewrites the config file in place and waits until the reload is in force.
    fn reconfigure(&mut self, edit: impl FnOnce(&mut Value)) {
        edit(&mut self.config);
        reconfigure_regauth(&mut self.h, &self.config, &self.ep);
    }
}

/// The `errors[0].code` of a Distribution error body.
fn error_code(response: &Response) -> String {
    response.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn jwt_header(token: &str) -> Value {
    let segment = token.split('.').next().unwrap();
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(segment.as_bytes())
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn get_issues_the_intersection_of_asked_and_allowed() {
    let server = Server::start("token-get");
    let r = server.get(
        "/token?account=alice&service=registry.test&scope=repository%3Aalice%2Fapp%3Apush%2Cpull&scope=repository%3Abob%2Fx%3Apull+registry%3Acatalog%3A%2A",
        Some(("alice", "alice-pw")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["access_token"], body["token"]);
    assert_eq!(body["expires_in"], json!(300));
    let issued_at = body["issued_at"].as_str().unwrap();
    assert!(
        issued_at.ends_with('Z') && issued_at.len() == 20,
        "{issued_at}"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "refresh token only when asked"
    );

    let header = jwt_header(token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["typ"], "JWT");
    let kid = header["kid"].as_str().unwrap();
    assert_eq!(kid.len(), 59, "libtrust kid: {kid}");
    assert_eq!(kid.split(':').count(), 12, "libtrust kid: {kid}");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1));

    let claims = jwt_claims(token);
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["aud"], SERVICE,
        "aud must be a plain string for registry 2.8"
    );
    assert_eq!(claims["sub"], "alice");
    let (exp, iat) = (
        claims["exp"].as_i64().unwrap(),
        claims["iat"].as_i64().unwrap(),
    );
    assert_eq!(exp - iat, 300);
    assert_eq!(claims["nbf"], claims["iat"]);
    assert!(claims["jti"].as_str().unwrap().len() >= 22);
    assert_eq!(
        granted(&claims, "repository", "alice/app"),
        ["pull", "push"]
    );
    assert!(granted(&claims, "repository", "bob/x").is_empty());
    assert_eq!(granted(&claims, "registry", "catalog"), ["*"]);

    // Anonymous: public pulls only, and an empty access list is still 200.
    let anon = server.get(
        "/token?service=registry.test&scope=repository:public/base:pull,push",
        None,
    );
    assert_eq!(anon.status, 200, "{}", anon.text());
    let claims = jwt_claims(anon.json()["token"].as_str().unwrap());
    assert_eq!(claims["sub"], "");
    assert_eq!(granted(&claims, "repository", "public/base"), ["pull"]);
    let denied = server.get("/token?scope=repository:alice/app:pull", None);
    assert_eq!(denied.status, 200);
    assert_eq!(
        jwt_claims(denied.json()["token"].as_str().unwrap())["access"],
        json!([])
    );

    // `*` (skopeo delete) yields everything the rule allows; htpasswd users work.
    let star = server.get(
        "/token?scope=repository:carol/x:*",
        Some(("carol", "carol-pw")),
    );
    let claims = jwt_claims(star.json()["token"].as_str().unwrap());
    assert_eq!(
        granted(&claims, "repository", "carol/x"),
        ["delete", "pull", "push"]
    );
    // bob may only pull alice's repositories; host:port names parse.
    let bob = server.get(
        "/token?scope=repository:alice/app:pull,push&scope=repository:localhost:5000/bob/x:pull",
        Some(("bob", "bob-pw")),
    );
    let claims = jwt_claims(bob.json()["token"].as_str().unwrap());
    assert_eq!(granted(&claims, "repository", "alice/app"), ["pull"]);
}

#[test]
fn get_refuses_bad_requests_with_clear_errors() {
    let server = Server::start("token-errors");
    for (who, creds) in [
        ("wrong password", ("alice", "nope")),
        ("unknown user", ("mallory", "alice-pw")),
    ] {
        let r = server.get("/token?service=registry.test", Some(creds));
        assert_eq!(r.status, 401, "{who}: {}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"registry.test\""),
            "{who}"
        );
        assert_eq!(error_code(&r), "UNAUTHORIZED", "{who}");
    }
    let cases = [
        (
            "/token?scope=repository:Alice/App:pull",
            "INVALID_SCOPE",
            "Alice/App",
        ),
        ("/token?scope=repository:a", "INVALID_SCOPE", "repository:a"),
        (
            "/token?service=other.registry",
            "UNSUPPORTED_VALUE",
            "other.registry",
        ),
        (
            "/token?offline_token=maybe",
            "BAD_TOKEN_OPTION",
            "offline_token",
        ),
        ("/token?account=bob", "UNSUPPORTED_VALUE", "account"),
    ];
    for (target, code, mentioned) in cases {
        let r = server.get(target, Some(("alice", "alice-pw")));
        assert_eq!(r.status, 400, "{target}: {}", r.text());
        assert_eq!(error_code(&r), code, "{target}");
        assert!(r.text().contains(mentioned), "{target}: {}", r.text());
    }
    let bearer = server.request(
        "GET",
        "/token",
        &[("Authorization", "Bearer abc.def.ghi")],
        b"",
    );
    assert_eq!(bearer.status, 401);
    let malformed = server.request("GET", "/token", &[("Authorization", "Basic ???")], b"");
    assert_eq!(malformed.status, 400);
    let put = server.request("PUT", "/token", &[], b"");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, POST"));
    assert_eq!(server.request("GET", "/nowhere", &[], b"").status, 404);
    // The realm with a trailing slash, as the reference server serves it.
    assert_eq!(
        server
            .get("/token/?scope=repository:public/x:pull", None)
            .status,
        200
    );
}

#[test]
fn post_password_grant_like_containerd() {
    let server = Server::start("token-post");
    // containerd: one space-joined scope field that may name a repository twice.
    let r = server.post_form(
        "client_id=containerd-client&grant_type=password&password=alice-pw&scope=repository%3Aalice%2Fapp%3Apull%2Cpush+repository%3Aalice%2Fapp%3Apush%2Cpull&service=registry.test&username=alice",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["access"].as_array().unwrap().len(),
        1,
        "merged: {claims}"
    );
    assert_eq!(
        granted(&claims, "repository", "alice/app"),
        ["pull", "push"]
    );
    assert_eq!(body["scope"], "repository:alice/app:pull,push");
    assert!(body.get("refresh_token").is_none());

    let offline = server.post_form(
        "grant_type=password&username=alice&password=alice-pw&service=registry.test&client_id=x&access_type=offline",
    );
    assert!(
        offline.json()["refresh_token"].is_string(),
        "{}",
        offline.text()
    );

    let bad = server.post_form(
        "grant_type=password&username=alice&password=wrong&service=registry.test&client_id=x",
    );
    assert_eq!(bad.status, 401);
    for (form, code) in [
        ("username=alice&password=alice-pw", "MISSING_REQUIRED_FIELD"),
        (
            "grant_type=password&username=alice",
            "MISSING_REQUIRED_FIELD",
        ),
        ("grant_type=authorization_code&code=x", "UNSUPPORTED_VALUE"),
        (
            "grant_type=password&username=alice&password=alice-pw&access_type=forever",
            "UNSUPPORTED_VALUE",
        ),
        (
            "grant_type=password&username=alice&password=alice-pw&scope=nonsense",
            "INVALID_SCOPE",
        ),
    ] {
        let r = server.post_form(form);
        assert_eq!(r.status, 400, "{form}: {}", r.text());
        assert_eq!(error_code(&r), code, "{form}");
    }
    let json_body = server.request(
        "POST",
        "/token",
        &[("Content-Type", "application/json")],
        b"{}",
    );
    assert_eq!(json_body.status, 400, "{}", json_body.text());
    let huge = format!("grant_type=password&scope={}", "a".repeat(70 * 1024));
    let too_large = server.post_form(&huge);
    assert_eq!(too_large.status, 413, "{}", too_large.text());
}

#[test]
fn refresh_tokens_live_until_the_password_changes() {
    let mut server = Server::start("token-refresh");
    let login = server.get(
        "/token?account=alice&client_id=docker&offline_token=true&service=registry.test",
        Some(("alice", "alice-pw")),
    );
    assert_eq!(login.status, 200, "{}", login.text());
    let refresh = login.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh, login.json()["token"].as_str().unwrap());
    // Anonymous callers have nothing to refresh.
    let anonymous = server.get("/token?offline_token=true", None);
    assert!(anonymous.json().get("refresh_token").is_none());

    // containers/image: repeated scope fields; the same refresh token comes back.
    let form = format!(
        "client_id=containers%2Fimage&grant_type=refresh_token&refresh_token={refresh}&scope=repository%3Aalice%2Fa%3Apull&scope=repository%3Aalice%2Fb%3Apull%2Cpush&service=registry.test"
    );
    let redeemed = server.post_form(&form);
    assert_eq!(redeemed.status, 200, "{}", redeemed.text());
    let body = redeemed.json();
    assert_eq!(
        body["refresh_token"].as_str(),
        Some(refresh.as_str()),
        "never rotated"
    );
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(granted(&claims, "repository", "alice/b"), ["pull", "push"]);

    // containerd's GET fallback: the refresh token as the password of an empty user.
    let fallback = server.get("/token?scope=repository:alice/a:pull", Some(("", &refresh)));
    assert_eq!(fallback.status, 200, "{}", fallback.text());
    assert_eq!(
        jwt_claims(fallback.json()["token"].as_str().unwrap())["sub"],
        "alice"
    );

    // Asking for offline access that way renews nothing: the same token comes back.
    let again = server.get("/token?offline_token=true", Some(("", &refresh)));
    assert_eq!(
        again.json()["refresh_token"].as_str(),
        Some(refresh.as_str())
    );

    // A refresh token is not an access token, and a tampered one is refused.
    let tampered = forge_jwt(&refresh, |c| c["sub"] = json!("bob"));
    let r = server.post_form(&format!(
        "grant_type=refresh_token&refresh_token={tampered}&service=registry.test"
    ));
    assert_eq!(r.status, 401, "{}", r.text());
    let access = login.json()["token"].as_str().unwrap().to_owned();
    let r = server.post_form(&format!(
        "grant_type=refresh_token&refresh_token={access}&service=registry.test"
    ));
    assert_eq!(
        r.status,
        401,
        "an access token redeemed as a refresh token: {}",
        r.text()
    );

    // A password change revokes it.
    let new_hash = hash_password("alice-new-pw");
    server.reconfigure(|config| config["users"]["alice"]["password"] = json!(new_hash));
    let revoked = server.post_form(&form);
    assert_eq!(revoked.status, 401, "{}", revoked.text());
    assert_eq!(
        server.get("/token", Some(("alice", "alice-pw"))).status,
        401
    );
    assert_eq!(
        server.get("/token", Some(("alice", "alice-new-pw"))).status,
        200
    );
}

#[test]
fn a_stalled_body_is_answered_408_and_frees_its_connection() {
    use std::io::{Read, Write};
    let server = Server::start("token-stall");
    let Endpoint::Tcp(addr) = &server.ep else {
        unreachable!()
    };
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    // Headers promising a body that never comes.
    stream
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=",
        )
        .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"TIMEOUT\""), "{answer}");
}

/// Every token request ends in one outcome, logged once: issued, refused
/// (with the account and why), a refused refresh token, or a request that
/// could not be parsed (logged by the router, never twice).
#[test]
fn each_request_is_logged_once_with_its_outcome() {
    let s = Server::start("token-outcome-log");
    let count = |needle: &str| {
        s.h.log("regauth")
            .lines()
            .filter(|line| line.contains(needle))
            .count()
    };
    let scope = "scope=repository%3Aalice%2Fapp%3Apull";

    let issued = s.get(&format!("/token?{scope}"), Some(("alice", "alice-pw")));
    assert_eq!(issued.status, 200, "{}", issued.text());
    let wrong = s.get(&format!("/token?{scope}"), Some(("alice", "nope")));
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let forged = s.post_form("grant_type=refresh_token&refresh_token=not.a.token");
    assert_eq!(forged.status, 401, "{}", forged.text());
    let unparsable = s.post_form("grant_type=magic");
    assert_eq!(unparsable.status, 400, "{}", unparsable.text());

    // Logs are written off the request path: wait for the last request's
    // line; one writer keeps them in order, so the others are there too.
    s.h.wait_for_log_line("regauth", "request refused");
    let log = s.h.log("regauth");
    assert_eq!(count("token issued"), 1, "{log}");
    assert_eq!(
        count(" token refused: invalid username or password"),
        1,
        "{log}"
    );
    let refused = log
        .lines()
        .find(|line| line.contains(" token refused"))
        .unwrap_or_default();
    assert!(
        refused.contains(r#"account="alice""#) && refused.contains(r#"grant="basic""#),
        "{refused}"
    );
    assert_eq!(count("refresh token refused"), 1, "{log}");
    assert_eq!(count("request refused"), 1, "{log}");
    assert!(
        log.lines()
            .any(|line| line.contains("request refused") && line.contains("grant_type")),
        "{log}"
    );
}

//! End to end: keyless CI login by OIDC federation with real skopeo, in both deployments —
//! docker-registry 2.8 with `auth: token`, and nginx `auth_request` in Basic mode.
//!
//! The issuer is real HTTPS: nginx serving a discovery document and a JWKS over TLS with a
//! test CA ([`support::OidcIssuer`]); regauth trusts that CA through `ca_file`. The test
//! mints GitHub-Actions-shaped ID tokens itself. Covered: login → push within the ACL →
//! refusal outside it; refusal on a failed claim condition, a wrong audience, an expired
//! token and an unknown issuer, each a 401 with a clear error and an audit line; the
//! issuer going away while its cached keys keep working.

mod support;

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";

/// The `federation` entry: GitHub-style claims, the owner `Acme` on any branch.
fn federation(issuer: &OidcIssuer) -> Value {
    json!([{
        "issuer": issuer.url,
        "audience": SERVICE,
        "account": "ci-{repository_owner|lower}",
        "groups": ["ci"],
        "claims": { "repository_owner": "Acme", "ref": "refs/heads/*" },
        "ca_file": issuer.ca_file,
    }])
}

/// CI identities push to their own namespace only.
fn acl() -> Value {
    json!([
        { "group": "ci", "name": "${account}/**", "actions": ["pull", "push"] },
    ])
}

/// The regauth config both deployments share.
fn config(issuer: &OidcIssuer, realm: &str, listen: Value, auth: Value) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": realm,
        "listen": listen,
        "token": token_section("ES256"),
        "acl": acl(),
        "federation": federation(issuer),
        "auth": auth,
    })
}

#[test]
fn federation_with_registry_token_auth() {
    let mut issuer = OidcIssuer::start("fed-t");
    let s = TokenAuthSite::start("fed-t", "ES256", |realm, listen| {
        config(&issuer, realm, listen, json!({}))
    });
    scenario(&s.deployment(), &mut issuer);
}

#[test]
fn federation_with_nginx_auth_request() {
    let mut issuer = OidcIssuer::start("fed-n");
    let s = NginxSite::start("fed-n", |realm, listen| {
        config(&issuer, realm, listen, json!({ "mode": "basic" }))
    });
    scenario(&s.deployment(), &mut issuer);
}

fn scenario(d: &Deployment<'_>, issuer: &mut OidcIssuer) {
    let sk = Skopeo::new(d.h);
    let good = issuer.mint(&issuer.github_claims(SERVICE, "Acme", "refs/heads/main"));

    // Login with the ID token as the password (any user name): push and pull in ci-acme/.
    let app = make_image(d.h, "fed-app");
    sk.push(&app, &d.at("ci-acme/app:1"), Creds::User("ci", &good))
        .assert_ok();
    sk.pull(&d.at("ci-acme/app:1"), Creds::User("x-access-token", &good))
        .assert_pulled(&app);
    // The ACL still decides: not outside the mapped account's namespace.
    let other = make_image(d.h, "fed-other");
    sk.push(&other, &d.at("ci-other/app:1"), Creds::User("ci", &good))
        .assert_failed(Deployment::REFUSED);
    let line = d.h.wait_for_log_line("regauth", "ci-acme");
    assert!(
        line.contains("federation") || line.contains(&issuer.url),
        "{line}"
    );

    // podman, as in the GitLab CI example: login with the ID token, push, pull.
    let podman = Podman::new(d.h);
    let podman_app = make_image(d.h, "fed-podman");
    let podman_ref = d.at("ci-acme/podman:1");
    podman.load(d.h, &podman_app, &podman_ref);
    podman.login(d.h, d.host, ("gitlab-ci", &good)).assert_ok();
    podman.push(d.h, &podman_ref).assert_ok();
    podman.pull(d.h, &podman_ref, &podman_app).assert_ok();

    // A failed condition (a tag, not a branch): refused.
    let tag = issuer.mint(&issuer.github_claims(SERVICE, "Acme", "refs/tags/v1"));
    let refused = make_image(d.h, "fed-tag");
    sk.push(&refused, &d.at("ci-acme/app:tag"), Creds::User("ci", &tag))
        .assert_failed(Deployment::REFUSED);
    // Another owner: refused by the owner condition.
    let evil = issuer.mint(&issuer.github_claims(SERVICE, "Evil", "refs/heads/main"));
    sk.pull(&d.at("ci-acme/app:1"), Creds::User("ci", &evil))
        .assert_failed(Deployment::REFUSED);

    // Each failure mode: a 401 with a clear error, and an audit line.
    let mut expired_claims = issuer.github_claims(SERVICE, "Acme", "refs/heads/main");
    expired_claims["exp"] = json!(expired_claims["iat"].as_u64().unwrap() - 3600);
    expired_claims["iat"] = json!(expired_claims["iat"].as_u64().unwrap() - 3900);
    expired_claims["nbf"] = expired_claims["iat"].clone();
    let mut foreign = issuer.github_claims(SERVICE, "Acme", "refs/heads/main");
    foreign["iss"] = json!("https://token.actions.githubusercontent.com");
    let cases = [
        (tag.clone(), "condition"),
        (
            issuer.mint(&issuer.github_claims(
                "https://github.com/Acme",
                "Acme",
                "refs/heads/main",
            )),
            "audience",
        ),
        (issuer.mint(&expired_claims), "expired"),
        (issuer.mint(&foreign), "issuer"),
    ];
    for (token, needle) in &cases {
        let mark = log_mark(d.h, "regauth");
        let r = if d.token_auth {
            token_request(d.regauth, "/token", SERVICE, Some(("ci", token)), &[])
        } else {
            let auth = basic_auth("ci", token);
            get(
                d.regauth,
                "/auth",
                &[
                    ("Authorization", &auth),
                    ("X-Original-URI", "/v2/ci-acme/app/manifests/1"),
                    ("X-Original-Method", "GET"),
                ],
            )
        };
        assert_eq!(r.status, 401, "{needle}: {} {}", r.status, r.text());
        if d.token_auth {
            let message = r.json()["errors"][0]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            assert!(
                message.contains(needle),
                "{needle}: client told {message:?}"
            );
        }
        let log = log_since(d.h, "regauth", mark);
        assert!(
            log.lines()
                .any(|line| line.contains(needle) && !line.contains(token.as_str())),
            "{needle}: no audit line (or it holds the token):\n{log}"
        );
    }

    // The issuer goes away: its cached keys keep working.
    issuer.stop();
    let later = issuer.mint(&issuer.github_claims(SERVICE, "Acme", "refs/heads/release"));
    let again = make_image(d.h, "fed-app-2");
    sk.push(&again, &d.at("ci-acme/app:2"), Creds::User("ci", &later))
        .assert_ok();
}

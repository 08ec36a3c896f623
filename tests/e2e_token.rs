//! End to end: docker-registry 2.8 with `auth: token` checks the tokens regauth signs.
//!
//! One registry and one regauth per scenario; real skopeo pushes, pulls, inspects and
//! deletes as several users, and the catalog is read over plain HTTP. The scenario runs
//! once with an ES256 signing key and once with RS256. Needs the peers `tests/run.sh`
//! installs.

mod support;

use serde_json::json;
use support::*;

/// What skopeo prints when the registry refuses a request (its 401 body).
const REFUSED: &str = "authentication required";

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";

// Users. alice owns `alice/**` (the `${account}/**` rule); bob may only pull there; carol
// (from the htpasswd file) may pull and push there but not delete; admin may do anything,
// the catalog included. Anonymous clients may pull `public/**`.
const ALICE: (&str, &str) = ("alice", "alice-Secret-1");
const BOB: (&str, &str) = ("bob", "bob-Secret-2");
const CAROL: (&str, &str) = ("carol", "carol-Secret-3");
const ADMIN: (&str, &str) = ("admin", "admin-Secret-4");

#[test]
fn registry_checks_regauth_tokens_es256() {
    scenario("ES256");
}

#[test]
fn registry_checks_regauth_tokens_rs256() {
    scenario("RS256");
}

/// The scenario's peers: a registry that trusts regauth's certificate, regauth, skopeo.
struct Setup {
    h: Harness,
    /// The registry, `127.0.0.1:PORT`.
    registry: String,
    /// regauth's (only) listener; the realm is its `/token`.
    regauth: Endpoint,
    sk: Skopeo,
}

impl Setup {
    fn start(algorithm: &str) -> Setup {
        let h = Harness::new(&format!("token-{}", algorithm.to_lowercase()));
        h.write("users.htpasswd", htpasswd_line(CAROL.0, CAROL.1));
        // Relative paths: the key, certificate and htpasswd file sit beside the config.
        let site = TokenAuthSite::start_in(h, algorithm, None, |realm, listen| {
            json!({
                "service": SERVICE,
                "issuer": ISSUER,
                "realm": realm,
                "listen": listen,
                "token": token_section(algorithm),
                "users": {
                    "alice": { "password": hash_password(ALICE.1) },
                    "bob": { "password": hash_password(BOB.1) },
                    "admin": { "password": hash_password(ADMIN.1), "groups": ["ops"] },
                },
                "htpasswd": "users.htpasswd",
                "acl": [
                    { "account": "admin", "type": "registry", "name": "catalog", "actions": ["*"] },
                    { "group": "ops", "name": "**", "actions": ["*"] },
                    { "account": "bob", "name": "alice/**", "actions": ["pull"] },
                    { "account": "carol", "name": "alice/**", "actions": ["pull", "push"] },
                    { "account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"] },
                    { "account": "", "name": "public/**", "actions": ["pull"] },
                ],
            })
        });
        let sk = Skopeo::new(&site.h);
        Setup {
            h: site.h,
            registry: site.registry,
            regauth: site.regauth,
            sk,
        }
    }

    /// skopeo's name for `repo` in the registry.
    fn at(&self, repo: &str) -> String {
        format!("{}/{repo}", self.registry)
    }

    /// A token from regauth's GET endpoint.
    fn token(&self, creds: (&str, &str), scopes: &[&str]) -> String {
        fetch_token(&self.regauth, "/token", SERVICE, Some(creds), scopes)
    }

    /// `GET` on the registry itself with a bearer token.
    fn registry_get(&self, target: &str, token: &str) -> Response {
        let reg = Endpoint::Tcp(self.registry.clone());
        get(
            &reg,
            target,
            &[("Authorization", &format!("Bearer {token}"))],
        )
    }
}

fn user((name, password): (&'static str, &'static str)) -> Creds<'static> {
    Creds::User(name, password)
}

fn scenario(algorithm: &str) {
    let s = Setup::start(algorithm);
    // In order: later steps use the images pushed first.
    owner_pushes_and_others_pull_as_allowed(&s);
    anonymous_pulls_only_the_public_repository(&s);
    catalog_needs_registry_catalog_star(&s);
    edited_tokens_are_refused(&s);
    delete_needs_delete(&s);
    oauth2_password_grant(&s);
    wrong_password_is_refused(&s);
}

/// The owner pushes and pulls in its namespace; a pull-only user pulls but cannot push,
/// because regauth leaves push out of the token and the registry then refuses the upload.
fn owner_pushes_and_others_pull_as_allowed(s: &Setup) {
    let app = make_image(&s.h, "app-v1");
    s.sk.push(&app, &s.at("alice/app:v1"), user(ALICE))
        .assert_ok();
    s.sk.pull(&s.at("alice/app:v1"), user(ALICE))
        .assert_pulled(&app);
    s.sk.pull(&s.at("alice/app:v1"), user(BOB))
        .assert_pulled(&app);
    let bob_img = make_image(&s.h, "bob-push");
    s.sk.push(&bob_img, &s.at("alice/app:bob"), user(BOB))
        .assert_failed(&[REFUSED]);
    let bob_token = s.token(BOB, &["repository:alice/app:pull,push"]);
    assert_eq!(
        granted(&jwt_claims(&bob_token), "repository", "alice/app"),
        ["pull"]
    );
    s.sk.inspect(&s.at("alice/app:bob"), user(ALICE))
        .assert_failed(&["manifest unknown"]);
}

/// Anonymous clients pull the public repository, and neither pull elsewhere nor push.
fn anonymous_pulls_only_the_public_repository(s: &Setup) {
    let base = make_image(&s.h, "public-base");
    s.sk.push(&base, &s.at("public/base:1"), user(ADMIN))
        .assert_ok();
    s.sk.pull(&s.at("public/base:1"), Creds::Anonymous)
        .assert_pulled(&base);
    s.sk.pull(&s.at("alice/app:v1"), Creds::Anonymous)
        .assert_failed(&[REFUSED]);
    let anon_img = make_image(&s.h, "anon-push");
    s.sk.push(&anon_img, &s.at("public/base:anon"), Creds::Anonymous)
        .assert_failed(&[REFUSED]);
}

/// `_catalog` needs `registry:catalog:*`: the admin's token lists the repositories; another
/// user's token for the same scope grants nothing and the registry refuses it.
fn catalog_needs_registry_catalog_star(s: &Setup) {
    let admin = s.token(ADMIN, &["registry:catalog:*"]);
    let catalog = s.registry_get("/v2/_catalog", &admin);
    assert_eq!(catalog.status, 200, "admin catalog: {}", catalog.text());
    assert_eq!(
        catalog.json()["repositories"],
        json!(["alice/app", "public/base"]),
        "catalog"
    );
    let alice = s.token(ALICE, &["registry:catalog:*"]);
    assert!(
        granted(&jwt_claims(&alice), "registry", "catalog").is_empty(),
        "alice got catalog access"
    );
    let refused = s.registry_get("/v2/_catalog", &alice);
    assert_eq!(refused.status, 401, "alice catalog: {}", refused.text());
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "alice catalog challenge: {challenge}"
    );
}

/// A token whose claims were changed after signing is refused by the registry.
fn edited_tokens_are_refused(s: &Setup) {
    let alice = s.token(ALICE, &["repository:alice/app:pull"]);
    let ok = s.registry_get("/v2/alice/app/tags/list", &alice);
    assert_eq!(ok.status, 200, "alice's genuine token: {}", ok.text());
    let forged = forge_jwt(&alice, |c| c["sub"] = json!("admin"));
    let r = s.registry_get("/v2/alice/app/tags/list", &forged);
    assert_eq!(r.status, 401, "forged token: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "forged token challenge: {challenge}"
    );
}

/// `skopeo delete` needs `delete`: carol may push but not delete; the owner deletes, and
/// the other tag stays.
fn delete_needs_delete(s: &Setup) {
    let tmp = make_image(&s.h, "app-tmp");
    s.sk.push(&tmp, &s.at("alice/app:tmp"), user(CAROL))
        .assert_ok();
    s.sk.delete(&s.at("alice/app:tmp"), user(CAROL))
        .assert_failed(&[REFUSED]);
    s.sk.inspect(&s.at("alice/app:tmp"), user(ALICE))
        .assert_ok();
    s.sk.delete(&s.at("alice/app:tmp"), user(ALICE)).assert_ok();
    s.sk.inspect(&s.at("alice/app:tmp"), user(ALICE))
        .assert_failed(&["manifest unknown"]);
    s.sk.inspect(&s.at("alice/app:v1"), user(ALICE)).assert_ok();
}

/// The OAuth2 password grant (containerd's first try) answers with `access_token`, the body
/// sent with a Content-Length or chunked.
fn oauth2_password_grant(s: &Setup) {
    assert_password_grant(&s.regauth, SERVICE, ALICE, "alice/app", &["pull", "push"]);
}

/// A wrong password: the token endpoint answers 401 with a Basic challenge; skopeo fails.
fn wrong_password_is_refused(s: &Setup) {
    let wrong = (ALICE.0, "wrong");
    let r = token_request(
        &s.regauth,
        "/token",
        SERVICE,
        Some(wrong),
        &["repository:alice/app:pull"],
    );
    assert_eq!(r.status, 401, "wrong password: {}", r.text());
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic realm="),
        "wrong password challenge: {challenge:?}"
    );
    s.sk.pull(&s.at("alice/app:v1"), Creds::User(wrong.0, wrong.1))
        .assert_failed(&["invalid username/password"]);
}

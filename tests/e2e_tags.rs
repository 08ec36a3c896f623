//! End to end: tag rules at the edge (issue 12 part 3). nginx's `auth_request` asks regauth
//! about every request to a docker-registry 2.8 without auth; ACL rules with `tags` and
//! `digests` decide manifest writes by what they name, in token mode (the token grants the
//! repository, `/auth` checks the tag) and in Basic mode alike. skopeo is the client.
//!
//! The ACL is the issue's example: anyone in `ci` may push `app/**` by digest and `sha-*`
//! tags; only `release-managers` may push or delete `v*` and `latest`; every signed-in user
//! pulls.

mod support;

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";
const CI: (&str, &str) = ("bot", "bot-Secret-1");
const RELEASER: (&str, &str) = ("rm", "rm-Secret-2");
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

fn config(realm: &str, listen: Value, mode: &str) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": realm,
        "listen": listen,
        "token": token_section("ES256"),
        "users": {
            "bot": { "password": hash_password(CI.1), "groups": ["ci"] },
            "rm": { "password": hash_password(RELEASER.1), "groups": ["release-managers"] },
        },
        "acl": [
            { "group": "release-managers", "name": "app/**", "tags": ["v*", "latest"],
              "digests": true, "actions": ["pull", "push", "delete"] },
            { "group": "ci", "name": "app/**", "tags": ["sha-*"], "digests": true,
              "actions": ["pull", "push"] },
            { "account": "*", "name": "app/**", "actions": ["pull"] },
        ],
        "auth": { "mode": mode },
    })
}

fn user((name, password): (&'static str, &'static str)) -> Creds<'static> {
    Creds::User(name, password)
}

#[test]
fn tag_rules_through_nginx_in_token_mode() {
    let s = NginxSite::start("tags-token", |realm, listen| config(realm, listen, "token"));
    let ci_token = fetch_token(
        &s.plain,
        "/token",
        SERVICE,
        Some(CI),
        &["repository:app/web:pull,push"],
    );
    let rm_token = fetch_token(
        &s.plain,
        "/token",
        SERVICE,
        Some(RELEASER),
        &["repository:app/web:pull"],
    );
    protected_tags_hold(
        &s,
        &format!("Bearer {ci_token}"),
        &format!("Bearer {rm_token}"),
    );
}

#[test]
fn tag_rules_through_nginx_in_basic_mode() {
    let s = NginxSite::start("tags-basic", |realm, listen| config(realm, listen, "basic"));
    protected_tags_hold(
        &s,
        &basic_auth(CI.0, CI.1),
        &basic_auth(RELEASER.0, RELEASER.1),
    );
}

/// The same story in either mode; `ci_auth` and `reader_auth` are `Authorization` values
/// for direct requests (ci's push credential, and one that may pull `app/web`).
fn protected_tags_hold(s: &NginxSite, ci_auth: &str, reader_auth: &str) {
    let sk = Skopeo::new(&s.h);
    let image = make_image(&s.h, "tagged");

    // ci pushes a `sha-*` tag: allowed.
    sk.push(&image, &s.at("app/web:sha-3f1c"), user(CI))
        .assert_ok();
    // ci pushes `v1.0` and `latest`: the blobs may go up, the manifest is refused (403).
    sk.push(&image, &s.at("app/web:v1.0"), user(CI))
        .assert_failed(&["denied"]);
    sk.push(&image, &s.at("app/web:latest"), user(CI))
        .assert_failed(&["denied"]);
    // The refused tags do not exist.
    for tag in ["v1.0", "latest"] {
        let r = s.request(
            "GET",
            &format!("/v2/app/web/manifests/{tag}"),
            &[("Authorization", reader_auth), ("Accept", MANIFEST_ACCEPT)],
        );
        assert_eq!(
            r.status,
            404,
            "tag {tag} exists after a refused push: {}",
            r.text()
        );
    }
    // regauth said why, naming the tag.
    let log = s.h.log("regauth");
    assert!(
        log.lines().any(|line| line.contains("deny")
            && line.contains("/v2/app/web/manifests/v1.0")
            && line.contains("v1.0")
            && line.contains("of app/web is protected")),
        "no deny line naming the tag:\n{log}"
    );
    // A release manager pushes `v1.0`: allowed, and it is there.
    sk.push(&image, &s.at("app/web:v1.0"), user(RELEASER))
        .assert_ok();
    sk.inspect(&s.at("app/web:v1.0"), user(CI)).assert_ok();
    // /auth itself names the tag in its 403 body (nginx replaces the body for clients).
    let r = http(
        &Endpoint::Unix(s.socket.clone()),
        "GET",
        "/auth",
        &[
            ("X-Original-Method", "PUT"),
            ("X-Original-URI", "/v2/app/web/manifests/v2.0"),
            ("Authorization", ci_auth),
        ],
        b"",
    )
    .expect("GET /auth");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("tag \\\"v2.0\\\""), "{}", r.text());
}

/// `check-config` says where tag rules hold and where they cannot.
#[test]
fn check_config_warns_that_tag_rules_need_auth_request() {
    let h = Harness::new("tags-check");
    keygen(&h, "ES256", "token");
    // Only checked, never served: any address does.
    let listen = json!([
        "127.0.0.1:5001",
        { "address": format!("unix:{}", h.file("regauth.sock").display()), "trusted": true, "mode": "0666" },
    ]);
    let mut doc = config("https://registry.test/token", listen, "token");
    let warned = |doc: &Value| {
        let path = h.write("regauth.json", doc.to_string());
        let out = check_config(&path);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
            .lines()
            .any(|line| line.starts_with("warning:") && line.contains("enforced only by /auth"))
    };
    assert!(warned(&doc), "no warning about tag rules");
    doc["acl"] = json!([{ "account": "*", "name": "app/**", "actions": ["pull"] }]);
    assert!(!warned(&doc), "a warning without tag rules");
}

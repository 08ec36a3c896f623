//! End to end: scoped API tokens with real skopeo, in both deployments — docker-registry
//! 2.8 with `auth: token` (regauth's `/token`), and nginx `auth_request` in Basic mode
//! (regauth's `/auth`, the shipped nginx site).
//!
//! The life of a token: `regauth token create` → push within its scopes → refusal outside
//! them (while the owner's password may) → `token revoke` → refusal; a `tokens_only` robot
//! whose password never works; expiry; refresh tokens that die with their API token; the
//! token id (never the secret) in the audit log and in `/metrics`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";

/// A human who may do anything in `ci/**` and `team/**`.
const ALICE: (&str, &str) = ("alice", "alice-Secret-1");
/// A robot account: only API tokens log in as it.
const ROBOT: (&str, &str) = ("robot", "robot-Password-9");

fn users() -> Value {
    json!({
        "alice": { "password": hash_password(ALICE.1) },
        "robot": { "password": hash_password(ROBOT.1), "tokens_only": true },
    })
}

fn acl() -> Value {
    json!([
        { "account": "alice", "name": "ci/**", "actions": ["*"] },
        { "account": "alice", "name": "team/**", "actions": ["*"] },
        { "account": "robot", "name": "ci/**", "actions": ["pull", "push"] },
    ])
}

/// The regauth config both deployments share.
fn config(realm: &str, listen: Value, auth: Value) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": realm,
        "listen": listen,
        "token": token_section("ES256"),
        "users": users(),
        "acl": acl(),
        "api_tokens": "tokens.json",
        "auth": auth,
    })
}

#[test]
fn api_tokens_with_registry_token_auth() {
    let s = TokenAuthSite::start("tok-t", "ES256", |realm, listen| {
        config(realm, listen, json!({}))
    });
    scenario(&s.deployment());
}

#[test]
fn api_tokens_with_nginx_auth_request() {
    let s = NginxSite::start("tok-n", |realm, listen| {
        config(realm, listen, json!({ "mode": "basic" }))
    });
    scenario(&s.deployment());
}

fn scenario(d: &Deployment<'_>) {
    let sk = Skopeo::new(d.h);
    let config = d.h.file("regauth.json");

    // create: one line on stdout, the secret; the server picks the new file up.
    let before = generation(d.regauth);
    let secret = create(
        &config,
        "alice",
        &["repository:ci/**:pull,push"],
        Some("1h"),
        "alice's CI",
    );
    wait_for_generation(d, before);
    let alice_token = (ALICE.0, secret.as_str());

    // Within the scopes: push and pull.
    let app = make_image(d.h, "ci-app");
    sk.push(&app, &d.at("ci/app:1"), alice_token.into_creds())
        .assert_ok();
    sk.pull(&d.at("ci/app:1"), alice_token.into_creds())
        .assert_pulled(&app);
    // Outside them: refused, though alice's password may push there.
    let team = make_image(d.h, "team-app");
    sk.push(&team, &d.at("team/app:1"), alice_token.into_creds())
        .assert_failed(Deployment::REFUSED);
    sk.push(&team, &d.at("team/app:1"), ALICE.into_creds())
        .assert_ok();
    // podman logs in with the token as its password, as a CI job would.
    let podman = Podman::new(d.h);
    let podman_app = make_image(d.h, "ci-podman");
    let podman_ref = d.at("ci/podman:1");
    podman.load(d.h, &podman_app, &podman_ref);
    podman.login(d.h, d.host, alice_token).assert_ok();
    podman.push(d.h, &podman_ref).assert_ok();
    podman.pull(d.h, &podman_ref, &podman_app).assert_ok();
    let podman_team = d.at("team/podman:1");
    podman.tag(d.h, &podman_ref, &podman_team);
    podman
        .push(d.h, &podman_team)
        .assert_failed(Deployment::REFUSED);

    // The token is alice's: another user name with it is refused.
    sk.pull(&d.at("ci/app:1"), (ROBOT.0, secret.as_str()).into_creds())
        .assert_failed(Deployment::REFUSED);

    // A tokens_only robot: its password never works, its pull-only token pulls.
    let before = generation(d.regauth);
    let robot_secret = create(&config, "robot", &["repository:ci/**:pull"], None, "");
    wait_for_generation(d, before);
    sk.pull(&d.at("ci/app:1"), ROBOT.into_creds())
        .assert_failed(Deployment::REFUSED);
    sk.pull(
        &d.at("ci/app:1"),
        (ROBOT.0, robot_secret.as_str()).into_creds(),
    )
    .assert_pulled(&app);
    let robot_img = make_image(d.h, "robot-push");
    sk.push(
        &robot_img,
        &d.at("ci/robot:1"),
        (ROBOT.0, robot_secret.as_str()).into_creds(),
    )
    .assert_failed(Deployment::REFUSED);

    // list: one line a token, id first; never a secret.
    let listed = regauth_cmd(&["token", "list", "--config", path_str(&config)], "");
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(!listed.contains(&secret) && !listed.contains(&robot_secret));
    let alice_line = listed
        .lines()
        .find(|line| line.contains("\talice\t"))
        .unwrap_or_else(|| panic!("no line for alice: {listed}"));
    let fields: Vec<&str> = alice_line.split('\t').collect();
    assert_eq!(fields[1..3], ["alice", "repository:ci/**:pull,push"]);
    assert_eq!(fields[4], "alice's CI");
    let alice_id = fields[0].to_owned();
    assert!(alice_id.starts_with("tok_"), "{alice_line}");
    let file = std::fs::read_to_string(d.h.file("tokens.json")).expect("token file");
    assert!(!file.contains(&secret), "the token file holds a secret");
    assert_mode_0600(&d.h.file("tokens.json"));

    // Audit lines and metrics name the token id, never the secret.
    let log = d.h.log("regauth");
    assert!(log.contains(&alice_id), "no audit line names {alice_id}");
    assert!(!log.contains(&secret), "the secret is in the log");
    let metrics = get(d.regauth, "/metrics", &[]).text();
    assert!(
        metrics.contains(&format!("token_id=\"{alice_id}\"")),
        "no metric names {alice_id}"
    );
    assert!(!metrics.contains(&secret));

    // A refresh token from an API-token login carries the token's scopes, and dies with it.
    let refresh = d.token_auth.then(|| {
        let refresh = refresh_token(d.regauth, SERVICE, alice_token);
        let scopes = "repository:ci/app:pull,push repository:team/app:pull";
        let r = refresh_grant(d.regauth, &refresh, scopes);
        assert_eq!(r.status, 200, "refresh grant: {}", r.text());
        let issued = jwt_claims(r.json()["access_token"].as_str().expect("access_token"));
        assert_eq!(granted(&issued, "repository", "ci/app"), ["pull", "push"]);
        assert!(granted(&issued, "repository", "team/app").is_empty());
        refresh
    });

    // revoke: refused from the next reload on.
    let before = generation(d.regauth);
    let revoked_at = Instant::now();
    regauth_cmd(
        &["token", "revoke", "--config", path_str(&config), &alice_id],
        "",
    );
    wait_for_generation(d, before);
    let took = revoked_at.elapsed();
    eprintln!("revocation in force after {took:?}");
    let r = token_request(d.regauth, "/token", SERVICE, Some(alice_token), &[]);
    assert_eq!(r.status, 401, "revoked token: {}", r.text());
    let again = make_image(d.h, "ci-app-2");
    sk.push(&again, &d.at("ci/app:2"), alice_token.into_creds())
        .assert_failed(Deployment::REFUSED);
    sk.pull(&d.at("ci/app:1"), alice_token.into_creds())
        .assert_failed(Deployment::REFUSED);
    if let Some(refresh) = refresh {
        let r = refresh_grant(d.regauth, &refresh, "repository:ci/app:pull");
        assert_eq!(r.status, 401, "refresh after revoke: {}", r.text());
    }
    // The robot's token is untouched.
    sk.pull(
        &d.at("ci/app:1"),
        (ROBOT.0, robot_secret.as_str()).into_creds(),
    )
    .assert_pulled(&app);

    // Expiry needs no reload: the clock decides.
    let before = generation(d.regauth);
    let short = create(&config, "alice", &["repository:ci/**:pull"], Some("3s"), "");
    wait_for_generation(d, before);
    let started = Instant::now();
    let r = token_request(d.regauth, "/token", SERVICE, Some((ALICE.0, &short)), &[]);
    assert_eq!(r.status, 200, "fresh short-lived token: {}", r.text());
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(started.elapsed()) + Duration::from_millis(1100),
    );
    let r = token_request(d.regauth, "/token", SERVICE, Some((ALICE.0, &short)), &[]);
    assert_eq!(r.status, 401, "expired token: {}", r.text());
    sk.pull(&d.at("ci/app:1"), (ALICE.0, short.as_str()).into_creds())
        .assert_failed(Deployment::REFUSED);
}

/// `regauth token create`; asserts stdout is the secret alone on one line.
fn create(
    config: &Path,
    account: &str,
    scopes: &[&str],
    expires: Option<&str>,
    description: &str,
) -> String {
    let mut args = vec![
        "token",
        "create",
        "--config",
        path_str(config),
        "--account",
        account,
    ];
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    if let Some(expires) = expires {
        args.extend(["--expires", expires]);
    }
    args.extend(["--description", description]);
    let out = regauth_cmd(&args, "");
    let secret = out.strip_suffix('\n').unwrap_or(&out);
    assert!(
        secret.starts_with("rgt_") && !secret.contains('\n') && secret.len() == 47,
        "stdout of token create: {out:?}"
    );
    secret.to_owned()
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", path.display());
}

/// The config generation `/healthz` reports.
fn generation(ep: &Endpoint) -> u64 {
    get(ep, "/healthz", &[]).json()["config_generation"]
        .as_u64()
        .expect("config_generation")
}

/// Waits until regauth has reloaded after a token file change.
fn wait_for_generation(d: &Deployment<'_>, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while generation(d.regauth) <= before {
        assert!(
            Instant::now() < deadline,
            "regauth did not reload the token file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `POST /token` with the refresh-token grant.
fn refresh_grant(ep: &Endpoint, refresh: &str, scope: &str) -> Response {
    let form = format!(
        "grant_type=refresh_token&client_id=regauth-e2e&service={}&scope={}&refresh_token={}",
        urlencode(SERVICE),
        urlencode(scope),
        urlencode(refresh),
    );
    http(
        ep,
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    )
    .expect("POST /token")
}

/// `(user, password)` as skopeo credentials.
trait IntoCreds<'a> {
    fn into_creds(self) -> Creds<'a>;
}

impl<'a> IntoCreds<'a> for (&'a str, &'a str) {
    fn into_creds(self) -> Creds<'a> {
        Creds::User(self.0, self.1)
    }
}

//! End to end with the clients people actually use: containerd 1.6 (`ctr`), podman 4.3 and
//! dockerd 20.10 with the docker CLI, each in both deployments:
//!
//! - **token**: docker-registry 2.8 with `auth: token` checks regauth's tokens itself
//!   (plain HTTP, the realm is regauth's own listener);
//! - **nginx**: the shipped nginx site (`nginx/registry.conf`, TLS) asks regauth about every
//!   request to a registry without auth (see [`support::NginxSite`]).
//!
//! Every scenario logs in (where the client has a login), pushes, pulls, is refused a push
//! it may not do, pulls a public repository anonymously, and is refused with a wrong
//! password; and each client's own token flow is checked in regauth's log: containerd's
//! OAuth2 password grant and its GET fallback, podman's GET with Basic and its (chunked)
//! refresh-token POST, docker login's offline token and dockerd's refresh-token POSTs.
//! Needs the packages `tests/run.sh` installs (containerd, podman, docker.io).

mod support;

use serde_json::{json, Value};
use std::fs;
use std::time::{Duration, Instant};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";

// alice owns `alice/**`; bob may only pull there; admin may do anything; anyone, signed in
// or not, may pull `public/**` (signed-in docker and podman never ask anonymously).
const ALICE: (&str, &str) = ("alice", "alice-Secret-1");
const BOB: (&str, &str) = ("bob", "bob-Secret-2");
const ADMIN: (&str, &str) = ("admin", "admin-Secret-4");

/// What the log of regauth says about every token it hands out.
const ISSUED: &str = "token issued";

#[test]
fn containerd_with_registry_token_auth() {
    containerd_scenario(Site::registry_token_auth("ctr-token", false));
}

#[test]
fn containerd_through_nginx_auth_request() {
    containerd_scenario(Site::nginx("ctr-nginx"));
}

#[test]
fn containerd_falls_back_to_get_when_post_is_refused() {
    containerd_get_fallback(Site::registry_token_auth("ctr-get", true));
}

#[test]
fn podman_with_registry_token_auth() {
    podman_scenario(Site::registry_token_auth("podman-token", false));
}

#[test]
fn podman_through_nginx_auth_request() {
    podman_scenario(Site::nginx("podman-nginx"));
}

#[test]
fn docker_with_registry_token_auth() {
    docker_scenario(Site::registry_token_auth("docker-token", false));
}

#[test]
fn docker_through_nginx_auth_request() {
    docker_scenario(Site::nginx("docker-nginx"));
}

// ---------------------------------------------------------------------------------------
// The two deployments
// ---------------------------------------------------------------------------------------

/// A registry guarded by regauth, either way.
struct Site {
    h: Harness,
    /// The registry as clients name it, `127.0.0.1:PORT`.
    host: String,
    /// Whether clients reach it over TLS (the nginx site) or plain HTTP.
    tls: bool,
    /// Where the test itself asks regauth for tokens (the realm's listener).
    token_ep: Endpoint,
    /// For checks the clients under test cannot make (does a tag exist?).
    sk: Skopeo,
}

fn regauth_config(realm: &str, listen: Value) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": realm,
        "listen": listen,
        "token": token_section("ES256"),
        "users": {
            "alice": { "password": hash_password(ALICE.1) },
            "bob": { "password": hash_password(BOB.1) },
            "admin": { "password": hash_password(ADMIN.1), "groups": ["ops"] },
        },
        "acl": [
            { "group": "ops", "name": "**", "actions": ["*"] },
            { "account": "bob", "name": "alice/**", "actions": ["pull"] },
            { "account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"] },
            { "name": "public/**", "actions": ["pull"] },
        ],
        "auth": { "mode": "token" },
    })
}

impl Site {
    /// docker-registry 2.8 with `auth: token`, regauth as its realm. With `get_only_front`,
    /// the realm is an nginx in front of regauth that answers every POST with 404, as a
    /// token server without the OAuth2 form would (containerd then falls back to GET).
    fn registry_token_auth(label: &str, get_only_front: bool) -> Site {
        let front_port = get_only_front.then(free_port);
        let front = front_port.map(|port| format!("127.0.0.1:{port}"));
        let TokenAuthSite {
            mut h,
            registry,
            regauth_addr,
            regauth,
            ..
        } = TokenAuthSite::start_in(
            Harness::new(label),
            "ES256",
            front.as_deref(),
            regauth_config,
        );
        if let Some(front_port) = front_port {
            let front = format!(
                r#"
server {{
    listen 127.0.0.1:{front_port};
    access_log {log};
    location = /token {{
        if ($request_method = POST) {{
            return 404;
        }}
        proxy_pass http://{regauth_addr};
    }}
}}
"#,
                log = h.log_path("get-only-front").display(),
            );
            start_nginx(&mut h, &front, &[front_port]);
        }
        let sk = Skopeo::new(&h);
        Site {
            h,
            host: registry,
            tls: false,
            token_ep: regauth,
            sk,
        }
    }

    /// The shipped nginx site in front of a registry without auth; clients use its TLS
    /// listener, the test asks for tokens on its plain-HTTP one.
    fn nginx(label: &str) -> Site {
        let NginxSite { h, tls, plain, .. } = NginxSite::start(label, regauth_config);
        let sk = Skopeo::new(&h);
        Site {
            h,
            host: tls,
            tls: true,
            token_ep: plain,
            sk,
        }
    }

    /// `HOST/repo:tag`.
    fn at(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.host)
    }

    /// Panics unless the registry has no manifest for `repo:tag` (asked as admin).
    fn assert_absent(&self, repo_tag: &str) {
        self.sk
            .inspect(&self.at(repo_tag), Creds::User(ADMIN.0, ADMIN.1))
            .assert_failed(&["manifest unknown"]);
    }

    /// Where regauth's log stands now.
    fn mark(&self) -> usize {
        log_mark(&self.h, "regauth")
    }

    /// regauth's log since `mark`.
    fn since(&self, mark: usize) -> String {
        log_since(&self.h, "regauth", mark)
    }

    /// Changes a user's password in regauth's config the way config managers do (write
    /// elsewhere, rename over) and waits for the reload.
    fn set_password(&self, user: &str, password: &str) {
        let path = self.h.file("regauth.json");
        let mut config: Value =
            serde_json::from_slice(&fs::read(&path).expect("read regauth.json")).expect("JSON");
        config["users"][user]["password"] = json!(hash_password(password));
        let staged = self.h.write(
            "staging/regauth.json",
            serde_json::to_vec_pretty(&config).expect("JSON"),
        );
        let mark = self.mark();
        fs::rename(&staged, &path).expect("rename the new config into place");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.since(mark).contains("configuration reloaded") {
            assert!(
                Instant::now() < deadline,
                "regauth did not reload its config:\n{}",
                self.since(mark)
            );
        }
    }
}

fn user((name, password): (&'static str, &'static str)) -> CtrAuth<'static> {
    CtrAuth::User(name, password)
}

// ---------------------------------------------------------------------------------------
// containerd
// ---------------------------------------------------------------------------------------

/// containerd POSTs the OAuth2 password grant (or the refresh_token grant) first and falls
/// back to GET with Basic credentials on 401: every refusal must be a 401, never 403/500.
fn containerd_scenario(mut site: Site) {
    let ctrd = start_containerd(&mut site.h);
    if site.tls {
        ctrd.trust_tls(&site.host);
    }
    let s = &site;
    let app = make_image(&s.h, "ctr-app");
    let app_ref = s.at("alice/ctr:v1");
    ctrd.import(&s.h, &app, &app_ref);

    // The owner pushes and pulls with the password grant.
    let mark = s.mark();
    ctrd.push(&s.h, &app_ref, user(ALICE)).assert_ok();
    assert_logged(
        &s.since(mark),
        &[
            ISSUED,
            "account=alice",
            r#"grant="password""#,
            r#"client="containerd-client""#,
            "granted=repository:alice/ctr:pull,push ",
        ],
        "ctr push as the owner",
    );
    ctrd.pull(&s.h, &app_ref, user(ALICE), &app).assert_ok();

    // A pull-only user pulls, and is refused a push: the token leaves push out.
    ctrd.pull(&s.h, &app_ref, user(BOB), &app).assert_ok();
    let bobs = make_image(&s.h, "ctr-bob");
    let bob_ref = s.at("alice/ctr:bob");
    ctrd.import(&s.h, &bobs, &bob_ref);
    let mark = s.mark();
    ctrd.push(&s.h, &bob_ref, user(BOB))
        .assert_failed(&["insufficient_scope"]);
    assert_logged(
        &s.since(mark),
        &[ISSUED, "account=bob", "granted=repository:alice/ctr:pull "],
        "ctr push as a pull-only user",
    );
    s.assert_absent("alice/ctr:bob");

    // Anonymous (and any signed-in user) pulls the public repository; anonymous pulls
    // nothing else and pushes nowhere.
    let base = make_image(&s.h, "ctr-public");
    let base_ref = s.at("public/ctr:v1");
    ctrd.import(&s.h, &base, &base_ref);
    ctrd.push(&s.h, &base_ref, user(ADMIN)).assert_ok();
    ctrd.pull(&s.h, &base_ref, user(BOB), &base).assert_ok();
    let mark = s.mark();
    ctrd.pull(&s.h, &base_ref, CtrAuth::Anonymous, &base)
        .assert_ok();
    assert_logged(
        &s.since(mark),
        &[ISSUED, "account= ", "granted=repository:public/ctr:pull "],
        "anonymous ctr pull",
    );
    ctrd.pull(&s.h, &app_ref, CtrAuth::Anonymous, &app)
        .assert_failed(&["insufficient_scope"]);
    let anon = make_image(&s.h, "ctr-anon");
    let anon_ref = s.at("public/ctr:anon");
    ctrd.import(&s.h, &anon, &anon_ref);
    ctrd.push(&s.h, &anon_ref, CtrAuth::Anonymous)
        .assert_failed(&["insufficient_scope"]);
    s.assert_absent("public/ctr:anon");

    // A wrong password: the POST gets 401, so containerd retries with GET, 401 again.
    let mark = s.mark();
    ctrd.pull(&s.h, &app_ref, CtrAuth::User(ALICE.0, "wrong"), &app)
        .assert_failed(&["401 Unauthorized"]);
    let log = s.since(mark);
    let refusals = lines_with(
        &log,
        &["invalid username or password", r#"account="alice""#],
    );
    assert!(
        refusals.len() >= 2,
        "expected the POST and the GET fallback refused:\n{log}"
    );

    // A refresh token (what `docker login` stores; ctr --refresh): the refresh_token grant.
    let refresh = refresh_token(&s.token_ep, SERVICE, ALICE);
    let mark = s.mark();
    ctrd.pull(&s.h, &app_ref, CtrAuth::Refresh(&refresh), &app)
        .assert_ok();
    assert_logged(
        &s.since(mark),
        &[
            ISSUED,
            "account=alice",
            r#"grant="refresh_token""#,
            r#"client="containerd-client""#,
            "granted=repository:alice/ctr:pull ",
        ],
        "ctr pull with a refresh token",
    );
    let mark = s.mark();
    let forged = forge_jwt(&refresh, |c| c["sub"] = json!("admin"));
    ctrd.pull(&s.h, &app_ref, CtrAuth::Refresh(&forged), &app)
        .assert_failed(&["401 Unauthorized"]);
    let log = s.since(mark);
    assert!(
        lines_with(&log, &["refresh token refused"]).len() >= 2,
        "expected the POST and the GET fallback (Basic with an empty user) refused:\n{log}"
    );
}

/// A realm that refuses POST (404): containerd sends GET with Basic `user:password`, or
/// with Basic `:refresh_token` (empty user name), and regauth serves both.
fn containerd_get_fallback(mut site: Site) {
    let ctrd = start_containerd(&mut site.h);
    let s = &site;
    let app = make_image(&s.h, "ctr-get");
    let app_ref = s.at("alice/ctr-get:v1");
    ctrd.import(&s.h, &app, &app_ref);

    let mark = s.mark();
    ctrd.push(&s.h, &app_ref, user(ALICE)).assert_ok();
    assert_logged(
        &s.since(mark),
        &[
            ISSUED,
            "account=alice",
            r#"grant="basic""#,
            "granted=repository:alice/ctr-get:pull,push ",
        ],
        "ctr push through a GET-only realm",
    );
    let front = s.h.log("get-only-front");
    assert_logged(&front, &["\"POST /token ", "\" 404 "], "the refused POST");
    assert_logged(&front, &["\"GET /token?", "\" 200 "], "the GET fallback");

    let refresh = refresh_token(&s.token_ep, SERVICE, ALICE);
    let mark = s.mark();
    ctrd.pull(&s.h, &app_ref, CtrAuth::Refresh(&refresh), &app)
        .assert_ok();
    assert_logged(
        &s.since(mark),
        &[
            ISSUED,
            "account=alice",
            r#"grant="basic_refresh_token""#,
            "granted=repository:alice/ctr-get:pull ",
        ],
        "ctr pull with a refresh token through a GET-only realm",
    );
}

// ---------------------------------------------------------------------------------------
// podman and docker alike
// ---------------------------------------------------------------------------------------

/// Where podman and docker differ in the steps they share ([`CliSteps`]).
struct CliExpect {
    /// In regauth's log line for the owner's login, after `account=alice`.
    login: &'static [&'static str],
    /// In regauth's log line for the owner's push, before the scope granted.
    owner_push: &'static [&'static str],
    /// The client's error for a login with a wrong password.
    wrong_password: &'static str,
    /// The client's error for an anonymous pull of a repository it may not pull.
    anonymous_refused: &'static str,
}

/// The steps of the podman and docker scenarios that are the same for both, with images
/// `NAME-*` in the repositories `alice/NAME` and `public/NAME`.
struct CliSteps<'a, C: ImageCli> {
    s: &'a Site,
    cli: &'a C,
    expect: &'a CliExpect,
    /// The owner's image, loaded as `app_ref` (`alice/NAME:v1`).
    app: OciImage,
    app_ref: String,
}

impl<'a, C: ImageCli> CliSteps<'a, C> {
    /// Loads the owner's image and logs in as the owner.
    fn login_owner(s: &'a Site, cli: &'a C, expect: &'a CliExpect) -> Self {
        let name = C::NAME;
        let app = make_image(&s.h, &format!("{name}-app"));
        let app_ref = s.at(&format!("alice/{name}:v1"));
        cli.load(&s.h, &app, &app_ref);

        let mark = s.mark();
        cli.login(&s.h, &s.host, ALICE).assert_ok();
        assert_logged(
            &s.since(mark),
            &[&[ISSUED, "account=alice"][..], expect.login].concat(),
            &format!("{name} login"),
        );
        CliSteps {
            s,
            cli,
            expect,
            app,
            app_ref,
        }
    }

    /// The owner (logged in) pushes and pulls.
    fn owner_pushes_and_pulls(&self) {
        let (s, cli, name) = (self.s, self.cli, C::NAME);
        let mark = s.mark();
        cli.push(&s.h, &self.app_ref).assert_ok();
        let granted = format!("granted=repository:alice/{name}:pull,push ");
        assert_logged(
            &s.since(mark),
            &[
                &[ISSUED, "account=alice"][..],
                self.expect.owner_push,
                &[&granted],
            ]
            .concat(),
            &format!("{name} push as the owner"),
        );
        cli.pull(&s.h, &self.app_ref, &self.app).assert_ok();
    }

    /// The refusals, and the public repository.
    fn refusals_and_public_pulls(&self) {
        let (s, cli, name) = (self.s, self.cli, C::NAME);

        // A pull-only user is refused a push.
        cli.login(&s.h, &s.host, BOB).assert_ok();
        let bobs = make_image(&s.h, &format!("{name}-bob"));
        let bob_ref = s.at(&format!("alice/{name}:bob"));
        cli.load(&s.h, &bobs, &bob_ref);
        cli.push(&s.h, &bob_ref)
            .assert_failed(&["requested access to the resource is denied"]);
        s.assert_absent(&format!("alice/{name}:bob"));

        // A wrong password fails the login.
        cli.login(&s.h, &s.host, (ALICE.0, "wrong"))
            .assert_failed(&[self.expect.wrong_password]);

        // Anonymous (and any signed-in user) pulls the public repository; anonymous only
        // that.
        cli.login(&s.h, &s.host, ADMIN).assert_ok();
        let base = make_image(&s.h, &format!("{name}-public"));
        let base_ref = s.at(&format!("public/{name}:v1"));
        cli.load(&s.h, &base, &base_ref);
        cli.push(&s.h, &base_ref).assert_ok();
        cli.login(&s.h, &s.host, BOB).assert_ok();
        cli.pull(&s.h, &base_ref, &base).assert_ok();
        cli.logout(&s.h, &s.host);
        let mark = s.mark();
        cli.pull(&s.h, &base_ref, &base).assert_ok();
        assert_logged(
            &s.since(mark),
            &[
                ISSUED,
                "account= ",
                &format!("granted=repository:public/{name}:pull "),
            ],
            &format!("anonymous {name} pull"),
        );
        cli.pull(&s.h, &self.app_ref, &self.app)
            .assert_failed(&[self.expect.anonymous_refused]);
    }
}

// ---------------------------------------------------------------------------------------
// podman
// ---------------------------------------------------------------------------------------

const PODMAN: CliExpect = CliExpect {
    // Login is a token request without scope.
    login: &[r#"grant="basic""#, "requested= "],
    owner_push: &[],
    wrong_password: "invalid username/password",
    anonymous_refused: "requested access to the resource is denied",
};

/// podman (containers/image 5.23) GETs with Basic credentials and `account`; with an
/// identity token in its auth file it POSTs the refresh_token grant, body chunked.
fn podman_scenario(site: Site) {
    let s = &site;
    let pm = Podman::new(&s.h);

    let steps = CliSteps::login_owner(s, &pm, &PODMAN);
    steps.owner_pushes_and_pulls();
    steps.refusals_and_public_pulls();
    let CliSteps { app, app_ref, .. } = steps;

    // An identity token, as `docker login` stores it: the (chunked) refresh_token POST.
    let refresh = refresh_token(&s.token_ep, SERVICE, ALICE);
    pm.use_identity_token(&s.host, ALICE.0, &refresh);
    let mark = s.mark();
    pm.pull(&s.h, &app_ref, &app).assert_ok();
    let v2 = s.at("alice/podman:v2");
    pm.tag(&s.h, &app_ref, &v2);
    pm.push(&s.h, &v2).assert_ok();
    let log = s.since(mark);
    let refresh_grant = [
        ISSUED,
        "account=alice",
        r#"grant="refresh_token""#,
        r#"client="containers/image""#,
    ];
    assert_logged(
        &log,
        &[
            &refresh_grant[..],
            &["granted=repository:alice/podman:pull "],
        ]
        .concat(),
        "podman pull with an identity token",
    );
    assert_logged(
        &log,
        &[
            &refresh_grant[..],
            &["granted=repository:alice/podman:pull,push "],
        ]
        .concat(),
        "podman push with an identity token",
    );
    let forged = forge_jwt(&refresh, |c| c["sub"] = json!("admin"));
    pm.use_identity_token(&s.host, ALICE.0, &forged);
    pm.pull(&s.h, &app_ref, &app)
        .assert_failed(&["invalid or revoked refresh token"]);
}

// ---------------------------------------------------------------------------------------
// dockerd + docker CLI
// ---------------------------------------------------------------------------------------

const DOCKER: CliExpect = CliExpect {
    // Login: GET with client_id=docker&offline_token=true.
    login: &[
        r#"grant="basic""#,
        r#"client="docker""#,
        "refresh_token=true",
    ],
    // Push and pull with the refresh_token grant.
    owner_push: &[r#"grant="refresh_token""#, r#"client="docker""#],
    // regauth's own message.
    wrong_password: "invalid username or password",
    anonymous_refused: "pull access denied",
};

/// `docker login` asks for an offline token; the CLI then keeps only the identity token and
/// dockerd POSTs the refresh_token grant for every pull and push, with no fallback.
fn docker_scenario(mut site: Site) {
    let ctrd = start_containerd(&mut site.h);
    let dk = start_dockerd(&mut site.h, &ctrd);
    let s = &site;

    // Login; only the identity token is kept.
    let steps = CliSteps::login_owner(s, &dk, &DOCKER);
    let stored = dk.stored_login(&s.host);
    assert!(
        stored["identitytoken"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "docker login stored no identity token: {stored}"
    );
    assert_eq!(
        stored["auth"].as_str(),
        Some(data_encoding::BASE64.encode(b"alice:").as_str()),
        "docker login kept the password: {stored}"
    );
    steps.owner_pushes_and_pulls();
    let app_ref = &steps.app_ref;

    // A cross-repository mount: one token for both repositories.
    let copy_ref = s.at("alice/docker-copy:v1");
    dk.tag(&s.h, app_ref, &copy_ref);
    let pushed = dk.push(&s.h, &copy_ref);
    pushed.assert_ok();
    assert!(
        pushed.stdout.contains("Mounted from alice/docker"),
        "docker did not mount the layer:\n{}",
        pushed.stdout
    );

    // A mount from a repository the user may not read: the token leaves that repository
    // out, the mount is refused, and docker uploads the layer instead.
    dk.login(&s.h, &s.host, ADMIN).assert_ok();
    let secret = make_image(&s.h, "docker-secret");
    let secret_ref = s.at("ops/docker:v1");
    dk.load(&s.h, &secret, &secret_ref);
    dk.push(&s.h, &secret_ref).assert_ok();
    dk.login(&s.h, &s.host, ALICE).assert_ok();
    let mine_ref = s.at("alice/docker-from-ops:v1");
    dk.tag(&s.h, &secret_ref, &mine_ref);
    let mark = s.mark();
    let pushed = dk.push(&s.h, &mine_ref);
    pushed.assert_ok();
    assert!(
        pushed.stdout.contains("Pushed") && !pushed.stdout.contains("Mounted from"),
        "docker should have uploaded the layer:\n{}",
        pushed.stdout
    );
    assert_logged(
        &s.since(mark),
        &[
            ISSUED,
            "account=alice",
            "requested=repository:alice/docker-from-ops:pull,push repository:ops/docker:pull ",
            "granted=repository:alice/docker-from-ops:pull,push refresh_token",
        ],
        "docker push with a refused mount",
    );
    dk.pull(&s.h, &mine_ref, &secret).assert_ok();

    steps.refusals_and_public_pulls();
    let CliSteps { app, app_ref, .. } = steps;

    // A password change revokes the stored identity token; a new login works again.
    dk.login(&s.h, &s.host, ALICE).assert_ok();
    dk.pull(&s.h, &app_ref, &app).assert_ok();
    let new_password = "alice-Changed-7";
    s.set_password(ALICE.0, new_password);
    dk.pull(&s.h, &app_ref, &app)
        .assert_failed(&["invalid or revoked refresh token"]);
    dk.login(&s.h, &s.host, (ALICE.0, new_password)).assert_ok();
    dk.pull(&s.h, &app_ref, &app).assert_ok();
}

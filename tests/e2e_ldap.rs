//! End to end: people from a real OpenLDAP `slapd` (started and seeded by the test) log in
//! with real clients (skopeo, podman), and their directory groups decide push and pull —
//! with docker-registry 2.8 checking regauth's tokens (`auth: token`), and behind the
//! shipped nginx `auth_request` site. A directory that goes down answers 503 with
//! `Retry-After`, and file users keep working.
//!
//! Needs the peers `tests/run.sh` installs (slapd, ldap-utils, docker-registry, nginx,
//! skopeo, podman).

mod support;

use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-e2e";
const REFUSED: &[&str] = &[
    "unauthorized",
    "denied",
    "requested access to the resource is denied",
];

/// In `devs` (push and pull `team/**`) and `readers`.
const ALICE: (&str, &str) = ("alice", "alice-Ldap-1");
/// In `readers` (pull `team/**`).
const BOB: (&str, &str) = ("bob", "bob-Ldap-2");
/// In no group.
const CAROL: (&str, &str) = ("carol", "carol-Ldap-3");
/// A file user in `devs`.
const FRANK: (&str, &str) = ("frank", "frank-File-4");
/// In `readers`; logs in only once the directory is down (so nothing is cached).
const ERIN: (&str, &str) = ("erin", "erin-Ldap-6");
/// A name both in the files (this password) and the directory ([`DORA_LDAP`]).
const DORA_FILE: (&str, &str) = ("dora", "dora-File-5");
const DORA_LDAP: (&str, &str) = ("dora", "dora-Ldap-5");

const PEOPLE: &[LdapUser<'static>] = &[
    LdapUser {
        uid: ALICE.0,
        password: ALICE.1,
        groups: &["devs", "readers"],
    },
    LdapUser {
        uid: BOB.0,
        password: BOB.1,
        groups: &["readers"],
    },
    LdapUser {
        uid: CAROL.0,
        password: CAROL.1,
        groups: &[],
    },
    LdapUser {
        uid: ERIN.0,
        password: ERIN.1,
        groups: &["readers"],
    },
    LdapUser {
        uid: DORA_LDAP.0,
        password: DORA_LDAP.1,
        groups: &["devs"],
    },
];

fn user((name, password): (&'static str, &'static str)) -> Creds<'static> {
    Creds::User(name, password)
}

/// The regauth config both deployments share: file users, the directory over StartTLS
/// with the test CA, and an ACL that speaks only of groups.
fn config(slapd: &Slapd, realm: &str, listen: Value, auth: Value) -> Value {
    json!({
        "service": SERVICE,
        "issuer": ISSUER,
        "realm": realm,
        "listen": listen,
        "token": token_section("ES256"),
        "users": {
            "frank": { "password": hash_password(FRANK.1), "groups": ["devs"] },
            "dora": { "password": hash_password(DORA_FILE.1), "groups": ["readers"] },
        },
        "ldap": {
            "url": slapd.url,
            "starttls": true,
            "ca_file": slapd.ca_file,
            "bind_dn": LDAP_SERVICE_DN,
            "bind_password_file": slapd.bind_password_file,
            "user_base": format!("ou=people,{LDAP_BASE}"),
            "user_filter": "(&(objectClass=inetOrgPerson)(uid={username}))",
            "group_attribute": "memberOf",
            "group_name_attribute": "cn",
            "timeout_secs": 2,
        },
        "acl": [
            { "group": "devs", "name": "team/**", "actions": ["pull", "push"] },
            { "group": "readers", "name": "team/**", "actions": ["pull"] },
        ],
        "auth": auth,
    })
}

fn start_directory(h: &mut Harness) -> Slapd {
    let slapd = start_slapd(h, "slapd");
    slapd.add_users(PEOPLE);
    slapd
}

/// `/auth` as nginx would ask it, for a GET of `uri`.
fn ask_auth(ep: &Endpoint, uri: &str, extra: &[(&str, &str)]) -> Response {
    let mut headers = vec![("X-Original-URI", uri), ("X-Original-Method", "GET")];
    headers.extend_from_slice(extra);
    http(ep, "GET", "/auth", &headers, b"").expect("/auth")
}

#[test]
fn registry_token_auth_with_ldap_users() {
    let mut h = Harness::new("ldap-token");
    let slapd = start_directory(&mut h);
    let site = TokenAuthSite::start_in(h, "ES256", None, |realm, listen| {
        config(&slapd, realm, listen, json!({"mode": "token"}))
    });
    let TokenAuthSite {
        mut h,
        registry,
        regauth,
        ..
    } = site;
    let at = |repo: &str| format!("{registry}/{repo}");

    // skopeo: a dev pushes and pulls, a reader pulls but cannot push, a user in no group
    // gets nothing; the names are the directory's whatever case the client typed.
    let sk = Skopeo::new(&h);
    let app = make_image(&h, "ldap-app");
    sk.push(&app, &at("team/app:v1"), user(ALICE)).assert_ok();
    sk.pull(&at("team/app:v1"), user(BOB)).assert_pulled(&app);
    sk.pull(&at("team/app:v1"), Creds::User("BOB", BOB.1))
        .assert_pulled(&app);
    let bobs = make_image(&h, "ldap-bob");
    sk.push(&bobs, &at("team/app:bob"), user(BOB))
        .assert_failed(REFUSED);
    sk.pull(&at("team/app:v1"), user(CAROL))
        .assert_failed(REFUSED);
    sk.pull(&at("team/app:v1"), Creds::User(ALICE.0, "wrong"))
        .assert_failed(&["invalid username/password", "unauthorized"]);
    // A file user with the same group, beside the directory's people.
    let franks = make_image(&h, "file-frank");
    sk.push(&franks, &at("team/frank:1"), user(FRANK))
        .assert_ok();
    // A name in both: file users come first, so only the file password counts (and the
    // file user's groups: readers, who cannot push).
    sk.pull(&at("team/app:v1"), user(DORA_FILE))
        .assert_pulled(&app);
    sk.pull(&at("team/app:v1"), user(DORA_LDAP))
        .assert_failed(&["invalid username/password", "unauthorized"]);

    // podman logs in as a directory user, pushes and pulls.
    let pm = Podman::new(&h);
    pm.login(&h, &registry, ALICE).assert_ok();
    let pm_ref = at("team/podman:v1");
    pm.load(&h, &app, &pm_ref);
    pm.push(&h, &pm_ref).assert_ok();
    pm.pull(&h, &pm_ref, &app).assert_ok();
    pm.logout(&h, &registry);
    pm.login(&h, &registry, BOB).assert_ok();
    let bob_ref = at("team/podman:bob");
    pm.tag(&h, &pm_ref, &bob_ref);
    pm.push(&h, &bob_ref).assert_failed(REFUSED);

    // The token names the directory's spelling of the account and carries its groups; a
    // directory user gets no refresh token (the directory is asked again instead).
    let r = token_request(
        &regauth,
        "/token",
        SERVICE,
        Some(("ALICE", ALICE.1)),
        &["repository:team/app:pull"],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().expect("token").to_owned();
    let claims = jwt_claims(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["groups"], json!(["devs", "readers"]));
    let login = get(
        &regauth,
        &format!("/token?service={SERVICE}&account=alice&offline_token=true&client_id=docker"),
        &[("Authorization", &basic_auth(ALICE.0, ALICE.1))],
    );
    assert_eq!(login.status, 200, "{}", login.text());
    assert!(
        login.json().get("refresh_token").is_none(),
        "{}",
        login.text()
    );

    // Token mode /auth: the groups come from the token's private claim.
    let answer = ask_auth(
        &regauth,
        "/v2/team/app/manifests/v1",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("remote-user"), Some("alice"));
    assert_eq!(answer.header("remote-groups"), Some("devs,readers"));

    // The directory goes down: its people get 503 with Retry-After (not 401), logged and
    // counted; file users keep working. (Erin has not logged in before: no cached success.)
    h.stop("slapd");
    let down = token_request(
        &regauth,
        "/token",
        SERVICE,
        Some(ERIN),
        &["repository:team/app:pull"],
    );
    assert_eq!(down.status, 503, "{}", down.text());
    let retry_after: u64 = down
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    sk.pull(&at("team/app:v1"), user(FRANK)).assert_pulled(&app);
    h.wait_for_log_line("regauth", "LDAP directory unavailable");
    let metrics = get(&regauth, "/metrics", &[]);
    assert!(
        metrics
            .text()
            .lines()
            .any(|l| l.starts_with("regauth_ldap_logins_total{result=\"unavailable\"}")),
        "{}",
        metrics.text()
    );
    // A login the directory confirmed shortly before is remembered like a bcrypt success.
    sk.pull(&at("team/app:v1"), user(BOB)).assert_pulled(&app);
}

#[test]
fn nginx_auth_request_with_ldap_users() {
    let mut slapd_h = Harness::new("ldap-nginx-dir");
    let slapd = start_directory(&mut slapd_h);
    let s = NginxSite::start("ldap-nginx", |realm, listen| {
        config(
            &slapd,
            realm,
            listen,
            json!({
                "mode": "basic",
                "trusted_user_header": "X-Authenticated-User",
                "trusted_groups_header": "X-Authenticated-Groups",
            }),
        )
    });
    let sk = Skopeo::new(&s.h);

    // skopeo with Basic credentials through nginx: groups decide.
    let app = make_image(&s.h, "nginx-ldap-app");
    sk.push(&app, &s.at("team/app:1"), user(ALICE)).assert_ok();
    sk.pull(&s.at("team/app:1"), user(BOB)).assert_pulled(&app);
    let bobs = make_image(&s.h, "nginx-ldap-bob");
    sk.push(&bobs, &s.at("team/app:2"), user(BOB))
        .assert_failed(REFUSED);
    sk.pull(&s.at("team/app:1"), user(CAROL))
        .assert_failed(REFUSED);

    // The upstream gets the account and its groups from regauth, never the client's own.
    let line = s.upstream_saw("PUT", "/v2/team/app/manifests/1");
    assert!(
        line.contains(r#"remote_user="alice" remote_groups="devs,readers""#),
        "upstream saw: {line}"
    );
    let manifest = "/v2/team/app/manifests/1";
    let accept = ("Accept", "application/vnd.oci.image.manifest.v1+json");
    let bob = basic_auth(BOB.0, BOB.1);
    let r = s.request(
        "HEAD",
        manifest,
        &[
            ("Authorization", &bob),
            accept,
            ("Remote-Groups", "forged-admins"),
            ("Remote-User", "forged-root"),
        ],
    );
    assert_eq!(r.status, 200, "bob's HEAD: {}", r.text());
    let line = s.upstream_saw("HEAD", manifest);
    assert!(
        line.contains(r#"remote_user="bob" remote_groups="readers""#),
        "upstream saw: {line}"
    );
    assert!(
        !s.h.log("upstream-view").contains("forged"),
        "a client's header got through"
    );

    // A trusted front proxy may name the groups with the user, on the trusted socket only;
    // through nginx a client cannot set them (the shipped include overwrites the header).
    let trusted = [
        ("X-Authenticated-User", "sso-user"),
        ("X-Authenticated-Groups", "devs, sso-staff"),
    ];
    let socket = Endpoint::Unix(s.socket.clone());
    let direct = ask_auth(&socket, "/v2/team/app/manifests/1", &trusted);
    assert_eq!(direct.status, 200, "trusted socket: {}", direct.text());
    assert_eq!(direct.header("remote-user"), Some("sso-user"));
    assert_eq!(direct.header("remote-groups"), Some("devs,sso-staff"));
    let untrusted = ask_auth(&s.regauth_tcp, "/v2/team/app/manifests/1", &trusted);
    assert_eq!(
        untrusted.status, 401,
        "untrusted listener honoured the proxy headers"
    );
    let forged = s.request("GET", manifest, &[trusted[0], trusted[1], accept]);
    assert_eq!(
        forged.status,
        401,
        "a client's own proxy headers: {}",
        forged.text()
    );

    // The directory goes down: nginx passes regauth's 503 and Retry-After on (not a 500,
    // not a 401); file users keep working.
    slapd_h.stop("slapd");
    let r = s.request(
        "GET",
        manifest,
        &[("Authorization", &basic_auth(ERIN.0, ERIN.1)), accept],
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    assert_eq!(r.json()["errors"][0]["code"], "UNAVAILABLE");
    sk.pull(&s.at("team/app:1"), user(FRANK))
        .assert_pulled(&app);
    drop(slapd_h);
}

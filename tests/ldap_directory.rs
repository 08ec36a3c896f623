//! The LDAP client against a real OpenLDAP `slapd` started by the test:
//! search + bind, groups from `memberOf` and from a group search, names
//! the way the directory compares them, hostile names, and a directory
//! that is down or silent — over plain LDAP, StartTLS and LDAPS.

mod support;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regauth::config::LdapSettings;
use regauth::identity::ldap::{Directory, DirectoryError, DirectoryUser};
use support::*;

const PEOPLE: &[LdapUser<'static>] = &[
    LdapUser {
        uid: "alice",
        password: "alice-pw",
        groups: &["devs", "readers"],
    },
    LdapUser {
        uid: "bob",
        password: "bob-pw",
        groups: &["ops"],
    },
    LdapUser {
        uid: "carol",
        password: "carol-pw",
        groups: &[],
    },
];

fn settings(slapd: &Slapd, url: &str, extra: serde_json::Value) -> LdapSettings {
    let mut json = serde_json::json!({
        "url": url,
        "bind_dn": LDAP_SERVICE_DN,
        "bind_password_file": slapd.bind_password_file,
        "user_base": format!("ou=people,{LDAP_BASE}"),
        "timeout_secs": 5,
    });
    for (key, value) in extra.as_object().expect("object") {
        json[key] = value.clone();
    }
    serde_json::from_value(json).expect("valid ldap settings")
}

fn directory(settings: &LdapSettings) -> Directory {
    Directory::load(settings).expect("load the directory client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn user(account: &str, groups: &[&str]) -> DirectoryUser {
    DirectoryUser {
        account: account.into(),
        dn: format!("uid={account},ou=people,{LDAP_BASE}"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    }
}

#[test]
fn logins_over_plain_ldap() {
    let mut h = Harness::new("ldap-plain");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    assert_eq!(
        slapd.member_of("alice"),
        [
            format!("cn=devs,ou=groups,{LDAP_BASE}"),
            format!("cn=readers,ou=groups,{LDAP_BASE}")
        ],
        "the memberof overlay is at work"
    );
    let dir = directory(&settings(&slapd, &slapd.url, serde_json::json!({})));
    let rt = runtime();
    rt.block_on(async {
        assert_eq!(
            dir.login("alice", "alice-pw").await,
            Ok(user("alice", &["devs", "readers"]))
        );
        assert_eq!(dir.login("carol", "carol-pw").await, Ok(user("carol", &[])));
        // uid compares case-insensitively: the account is the directory's spelling.
        assert_eq!(
            dir.login("ALICE", "alice-pw").await,
            Ok(user("alice", &["devs", "readers"]))
        );
        assert_eq!(
            dir.login("alice", "bob-pw").await,
            Err(DirectoryError::WrongPassword)
        );
        assert_eq!(
            dir.login("alice", "ALICE-PW").await,
            Err(DirectoryError::WrongPassword)
        );
        assert_eq!(
            dir.login("mallory", "x").await,
            Err(DirectoryError::UnknownUser)
        );
        // An empty password never reaches a bind (it would be anonymous).
        assert_eq!(
            dir.login("alice", "").await,
            Err(DirectoryError::WrongPassword)
        );
        // Filter injection: the name is escaped, so it matches only itself.
        for hostile in ["*", "a*", "*)(uid=*", "alice)(|(uid=*", "\\2a", "alice\0"] {
            assert_eq!(
                dir.login(hostile, "alice-pw").await,
                Err(DirectoryError::UnknownUser),
                "{hostile:?}"
            );
        }
    });
    // Only escaped filters reached the directory.
    let log = h.log("slapd");
    assert!(
        log.contains("filter=\"(&(objectClass=inetOrgPerson)(uid=\\2A\\29\\28uid=\\2A))\""),
        "slapd's log shows the escaped filter"
    );
    // Four logins with alice's name and a non-empty password bound as her;
    // the empty password and the hostile names bound nothing.
    let alice_binds = log
        .matches(&format!(
            "BIND dn=\"uid=alice,ou=people,{LDAP_BASE}\" method=128"
        ))
        .count();
    assert_eq!(alice_binds, 4, "binds as alice");
}

#[test]
fn a_filter_matching_several_entries_is_refused() {
    let mut h = Harness::new("ldap-ambiguous");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    // A careless filter: uid or sn; two entries share an sn.
    let s = settings(
        &slapd,
        &slapd.url,
        serde_json::json!({"user_filter": "(|(uid={username})(sn={username}))"}),
    );
    slapd
        .ldapadd(&format!(
            "dn: uid=dave,ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nuid: dave\ncn: dave\nsn: shared\nuserPassword: pw\n\n\
             dn: uid=erin,ou=people,{LDAP_BASE}\nobjectClass: inetOrgPerson\nuid: erin\ncn: erin\nsn: shared\nuserPassword: pw\n"
        ))
        .unwrap();
    let dir = directory(&s);
    runtime().block_on(async {
        assert!(matches!(
            dir.login("shared", "pw").await,
            Err(DirectoryError::Refused(reason)) if reason.contains("more than one")
        ));
        assert_eq!(dir.login("bob", "bob-pw").await, Ok(user("bob", &["ops"])));
    });
}

#[test]
fn groups_by_search_for_directories_without_member_of() {
    let mut h = Harness::new("ldap-groupsearch");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    let s = settings(
        &slapd,
        &slapd.url,
        serde_json::json!({
            // A group attribute no entry has: memberOf is not read.
            "group_attribute": "description",
            "group_search": {"base": format!("ou=groups,{LDAP_BASE}")}
        }),
    );
    let dir = directory(&s);
    runtime().block_on(async {
        assert_eq!(
            dir.login("Alice", "alice-pw").await,
            Ok(user("alice", &["devs", "readers"]))
        );
        assert_eq!(dir.login("bob", "bob-pw").await, Ok(user("bob", &["ops"])));
    });
}

#[test]
fn logins_over_starttls_and_ldaps_with_a_test_ca() {
    let mut h = Harness::new("ldap-tls");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    let starttls = settings(
        &slapd,
        &slapd.url,
        serde_json::json!({"starttls": true, "ca_file": slapd.ca_file}),
    );
    let ldaps = settings(
        &slapd,
        &slapd.ldaps_url,
        serde_json::json!({"ca_file": slapd.ca_file}),
    );
    // A CA that did not sign the server's certificate.
    let (other_ca, _, _) = test_ca_and_server_certificate();
    let other_ca = h.write("other-ca.pem", other_ca);
    let untrusted = settings(
        &slapd,
        &slapd.url,
        serde_json::json!({"starttls": true, "ca_file": other_ca}),
    );
    let rt = runtime();
    rt.block_on(async {
        let expected = Ok(user("alice", &["devs", "readers"]));
        assert_eq!(
            directory(&starttls).login("alice", "alice-pw").await,
            expected
        );
        assert_eq!(directory(&ldaps).login("alice", "alice-pw").await, expected);
        assert_eq!(
            directory(&starttls).login("alice", "nope").await,
            Err(DirectoryError::WrongPassword)
        );
        match directory(&untrusted).login("alice", "alice-pw").await {
            Err(DirectoryError::Unavailable(reason)) => {
                assert!(reason.to_lowercase().contains("certificate"), "{reason}")
            }
            other => panic!("an untrusted certificate must fail: {other:?}"),
        }
    });
    let log = h.log("slapd");
    assert!(log.contains("STARTTLS"), "slapd saw StartTLS");
    assert!(
        log.contains("TLS established") || log.contains("tls_ssf="),
        "slapd saw a TLS session"
    );
}

#[test]
fn a_directory_that_is_down_or_silent_is_unavailable_within_the_timeout() {
    let h = Harness::new("ldap-down");
    let password = h.write("service.secret", LDAP_SERVICE_PASSWORD);
    // Nobody listens there, and nobody can while the test runs.
    let closed = RefusingPort::bind();
    // A listener that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("ldap://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let make = |url: &str| -> LdapSettings {
        serde_json::from_value(serde_json::json!({
            "url": url,
            "bind_dn": LDAP_SERVICE_DN,
            "bind_password_file": password,
            "user_base": format!("ou=people,{LDAP_BASE}"),
            "timeout_secs": 1,
        }))
        .unwrap()
    };
    let rt = runtime();
    rt.block_on(async {
        let down = directory(&make(&format!("ldap://{}", closed.addr())));
        assert!(matches!(
            down.login("alice", "alice-pw").await,
            Err(DirectoryError::Unavailable(reason)) if reason.contains("connect")
        ));
        let silent = Arc::new(directory(&make(&silent_url)));
        let started = Instant::now();
        // More logins than connections: all wait, none longer than the bound.
        let logins: Vec<_> = (0..12)
            .map(|_| {
                let silent = Arc::clone(&silent);
                tokio::spawn(async move { silent.login("alice", "alice-pw").await })
            })
            .collect();
        for login in logins {
            assert!(matches!(
                login.await.unwrap(),
                Err(DirectoryError::Unavailable(reason)) if reason.contains("within 1s")
            ));
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(4),
            "bounded by timeout_secs, took {elapsed:?}"
        );
    });
    drop(silent);
}

#[test]
fn a_wrong_service_password_is_unavailable_not_a_wrong_user_password() {
    let mut h = Harness::new("ldap-service");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    let mut s = settings(&slapd, &slapd.url, serde_json::json!({}));
    s.bind_password_file = h.write("wrong.secret", "not-the-password\n");
    let dir = directory(&s);
    runtime().block_on(async {
        assert!(matches!(
            dir.login("alice", "alice-pw").await,
            Err(DirectoryError::Unavailable(reason)) if reason.contains("service account")
        ));
    });
    s.bind_password_file = h.write("empty.secret", "\n");
    assert!(Directory::load(&s)
        .unwrap_err()
        .to_string()
        .contains("non-empty"));
}

#[test]
fn the_pool_reuses_connections_and_a_stopped_directory_is_unavailable() {
    let mut h = Harness::new("ldap-pool");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    let dir = directory(&settings(&slapd, &slapd.url, serde_json::json!({})));
    let rt = runtime();
    rt.block_on(async {
        for _ in 0..5 {
            assert!(dir.login("bob", "bob-pw").await.is_ok());
        }
    });
    let connections = h
        .log("slapd")
        .lines()
        .filter(|l| l.contains("ACCEPT from"))
        .count();
    // Seeding used ldapwhoami/ldapadd/ldapsearch connections; regauth one.
    assert!(
        connections <= 4,
        "five sequential logins share a connection ({connections} accepted)"
    );
    // The pooled connection dies with the directory: the login tries a
    // fresh connection, which is refused.
    h.stop("slapd");
    rt.block_on(async {
        assert!(matches!(
            dir.login("bob", "bob-pw").await,
            Err(DirectoryError::Unavailable(_))
        ));
    });
}

/// The cost of a directory login, for the report (not an assertion: the machine is shared
/// and noisy). Run with
/// `cargo test --release --test ldap_directory -- --ignored --nocapture measure`.
/// Medians over many logins against the local slapd, beside a bcrypt check at cost 10 (what
/// a file user's uncached login costs) measured in the same run:
/// - cold: a new connection each time (TCP, StartTLS or none, service bind, search, bind);
/// - warm: the pooled connection reused (service bind, search, bind);
/// - cached: the credential cache remembers the login (no directory traffic).
#[test]
#[ignore = "a measurement for the report, not a test"]
fn measure_ldap_login_costs() {
    use regauth::identity::files::CredentialChecker;
    use regauth::identity::ldap::login_cached;

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }
    fn show(what: &str, d: Duration, baseline: Duration) {
        println!(
            "{what:<40} {:>10.1} µs  {:>8.3} × bcrypt(10)",
            d.as_secs_f64() * 1e6,
            d.as_secs_f64() / baseline.as_secs_f64()
        );
    }

    let mut h = Harness::new("ldap-measure");
    let slapd = start_slapd(&mut h, "slapd");
    slapd.add_users(PEOPLE);
    let hash = bcrypt::hash("alice-pw", 10).unwrap();
    let bcrypt_median = median(
        (0..20)
            .map(|_| {
                let t = Instant::now();
                assert!(bcrypt::verify("alice-pw", &hash).unwrap());
                t.elapsed()
            })
            .collect(),
    );
    show(
        "bcrypt verify, cost 10 (baseline)",
        bcrypt_median,
        bcrypt_median,
    );
    let rt = runtime();
    for (label, extra) in [
        ("plain", serde_json::json!({})),
        (
            "StartTLS",
            serde_json::json!({"starttls": true, "ca_file": slapd.ca_file}),
        ),
    ] {
        let s = settings(&slapd, &slapd.url, extra);
        rt.block_on(async {
            let cold = {
                let mut samples = Vec::new();
                for _ in 0..100 {
                    let dir = directory(&s);
                    let t = Instant::now();
                    dir.login("alice", "alice-pw").await.unwrap();
                    samples.push(t.elapsed());
                }
                median(samples)
            };
            let dir = directory(&s);
            dir.login("alice", "alice-pw").await.unwrap();
            let warm = {
                let mut samples = Vec::new();
                for _ in 0..300 {
                    let t = Instant::now();
                    dir.login("alice", "alice-pw").await.unwrap();
                    samples.push(t.elapsed());
                }
                median(samples)
            };
            let checker = CredentialChecker::new(
                Duration::from_secs(120),
                regauth::config::LoginLimits::default().queue,
            );
            login_cached(&checker, &dir, "alice", "alice-pw")
                .await
                .unwrap();
            let cached = {
                let mut samples = Vec::new();
                for _ in 0..1000 {
                    let t = Instant::now();
                    login_cached(&checker, &dir, "alice", "alice-pw")
                        .await
                        .unwrap();
                    samples.push(t.elapsed());
                }
                median(samples)
            };
            show(
                &format!("LDAP {label}: cold (new connection)"),
                cold,
                bcrypt_median,
            );
            show(
                &format!("LDAP {label}: warm (pooled connection)"),
                warm,
                bcrypt_median,
            );
            show(
                &format!("LDAP {label}: cached (credential cache)"),
                cached,
                bcrypt_median,
            );
        });
    }
}

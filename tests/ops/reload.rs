//! Reload: a config replaced by rename, written in place or swapped in through a
//! Kubernetes-style `..data` symlink is in force within a second; broken configs are
//! refused (the old one keeps serving, a log line and a metric report it); SIGHUP reloads;
//! refresh tokens of removed users stop working.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

#[test]
fn reload_picks_up_a_config_replaced_by_rename() {
    let mut h = Harness::new("ops-rename");
    let (ep, path, doc) = serve_inline(&mut h, &[ALICE]);
    // alice's success is now cached; the reload must drop that too.
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200);
    assert_eq!(token_status(&ep, BOB.0, BOB.1), 401);
    write_by_rename(&path, &to_bytes(&with_users(&doc, &[BOB])));
    assert_swapped_to_bob(&mut h, &ep, "atomic rename");
}

#[test]
fn reload_picks_up_a_config_written_in_place() {
    let mut h = Harness::new("ops-inplace");
    let (ep, path, doc) = serve_inline(&mut h, &[ALICE]);
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .expect("open config");
    file.write_all(&to_bytes(&with_users(&doc, &[BOB])))
        .expect("write config");
    drop(file);
    assert_swapped_to_bob(&mut h, &ep, "in-place write");
}

#[test]
fn reload_follows_a_kubernetes_style_symlink_swap() {
    // A ConfigMap volume: `regauth.json -> ..data/regauth.json`, `..data -> ..<version>`;
    // an update writes a new version directory and renames a new `..data` over the old.
    let mut h = Harness::new("ops-symlink");
    let key = signing_key(&h);
    let addr = reserve_tcp();
    let mut doc = config(json!([addr]), &key, &[]);
    doc["htpasswd"] = json!("users.htpasswd");
    let dir = h.mkdir("configmap");
    let version = |name: &str, user: (&str, &str)| {
        let v = dir.join(name);
        fs::create_dir(&v).expect("version dir");
        fs::write(v.join("regauth.json"), to_bytes(&doc)).expect("write config");
        let line = format!("{}:{}\n", user.0, hash_password(user.1));
        fs::write(v.join("users.htpasswd"), line).expect("write htpasswd");
    };
    version("..v1", ALICE);
    symlink("..v1", dir.join("..data")).expect("..data");
    symlink("..data/regauth.json", dir.join("regauth.json")).expect("config link");
    symlink("..data/users.htpasswd", dir.join("users.htpasswd")).expect("htpasswd link");
    let ep = Endpoint::Tcp(addr);
    start(&mut h, &dir.join("regauth.json"), &ep);
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200);

    version("..v2", BOB);
    symlink("..v2", dir.join("..data_tmp")).expect("..data_tmp");
    fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    fs::remove_dir_all(dir.join("..v1")).expect("remove old version");
    assert_swapped_to_bob(&mut h, &ep, "symlink swap");
}

/// One way to break a running config, and how to undo it.
struct Break<'a> {
    what: &'a str,
    /// The file the error must name.
    file: &'a Path,
    apply: Box<dyn Fn()>,
    restore: Box<dyn Fn()>,
    /// A piece of the error message.
    cause: &'a str,
    /// Whether the change needs SIGHUP (the watcher only sees content changes).
    hangup: bool,
}

#[test]
fn broken_configs_are_refused_reported_and_the_old_one_keeps_serving() {
    let mut h = Harness::new("ops-broken");
    let key = signing_key(&h);
    let addr = reserve_tcp();
    let mut doc = config(json!([addr]), &key, &[ALICE]);
    doc["htpasswd"] = json!("users.htpasswd");
    doc["log"] = json!({ "format": "json" });
    let config_path = h.write("regauth.json", to_bytes(&doc));
    let htpasswd = h.write(
        "users.htpasswd",
        format!("{}:{}\n", CAROL.0, hash_password(CAROL.1)),
    );
    let ep = Endpoint::Tcp(addr);
    start(&mut h, &config_path, &ep);
    let pid = h.pid(REGAUTH_CHILD);

    let good_config = fs::read(&config_path).expect("read config");
    let good_htpasswd = fs::read(&htpasswd).expect("read htpasswd");
    let good_key = fs::read(&key).expect("read key");
    let mut unknown_field = doc.clone();
    unknown_field["bogus_field"] = json!(1);
    let mut appended = good_htpasswd.clone();
    appended.extend_from_slice(b"dave:$apr1$abcdefgh$0123456789abcdefghijkl\n");

    let write = |path: &Path, bytes: Vec<u8>| {
        let path = path.to_owned();
        Box::new(move || fs::write(&path, &bytes).expect("write")) as Box<dyn Fn()>
    };
    let chmod = |path: &Path, mode: u32| {
        let path = path.to_owned();
        Box::new(move || {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod")
        }) as Box<dyn Fn()>
    };
    let breaks = [
        Break {
            what: "syntax error",
            file: &config_path,
            apply: write(&config_path, b"{ \"service\": \"x\",\n".to_vec()),
            restore: write(&config_path, good_config.clone()),
            cause: "EOF while parsing",
            hangup: false,
        },
        Break {
            what: "unknown field",
            file: &config_path,
            apply: write(&config_path, to_bytes(&unknown_field)),
            restore: write(&config_path, good_config.clone()),
            cause: "unknown field `bogus_field`",
            hangup: false,
        },
        Break {
            what: "bad bcrypt line",
            file: &htpasswd,
            apply: write(&htpasswd, appended),
            restore: write(&htpasswd, good_htpasswd.clone()),
            cause: "htpasswd line 2: only bcrypt hashes",
            hangup: false,
        },
        Break {
            what: "unusable key",
            file: &key,
            apply: write(&key, b"not a key\n".to_vec()),
            restore: write(&key, good_key.clone()),
            cause: "no private key found",
            hangup: false,
        },
        // A mode change leaves the contents alone, so the watcher ignores it: SIGHUP.
        Break {
            what: "key readable by group",
            file: &key,
            apply: chmod(&key, 0o640),
            restore: chmod(&key, 0o600),
            cause: "chmod 600",
            hangup: true,
        },
    ];

    for (n, step) in breaks.iter().enumerate() {
        let what = step.what;
        (step.apply)();
        if step.hangup {
            send_signal(pid, "HUP");
        }
        poll(
            &mut h,
            &format!("{what} counted as a failed reload"),
            RELOAD_DEADLINE,
            || reloads(&ep, "failed") == n as f64 + 1.0,
        );
        // The refusal is one JSON log line naming the file and the cause.
        // Lines are written off the request path: wait for this one.
        let log_path = h.log_path(REGAUTH_CHILD);
        poll(&mut h, &format!("{what} logged"), RELOAD_DEADLINE, || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            log.matches("configuration refused").count() > n
        });
        let log = h.log(REGAUTH_CHILD);
        let refusal = log
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| {
                event["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("configuration refused"))
            })
            .nth(n)
            .unwrap_or_else(|| panic!("{what}: no refusal #{n} in the log:\n{log}"));
        let error = refusal["error"].as_str().unwrap_or_default();
        assert_eq!(refusal["level"], "ERROR", "{refusal}");
        assert!(
            error.contains(&step.file.display().to_string()) && error.contains(step.cause),
            "{what}: {refusal}"
        );
        // The old config still serves (inline alice, htpasswd carol), unchanged.
        assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200, "{what}: alice");
        assert_eq!(token_status(&ep, CAROL.0, CAROL.1), 200, "{what}: carol");
        assert_eq!(generation(&ep), 1 + n as u64, "{what}: generation");

        let ok_before = reloads(&ep, "ok");
        (step.restore)();
        if step.hangup {
            send_signal(pid, "HUP");
        }
        poll(
            &mut h,
            &format!("reload after fixing the {what}"),
            RELOAD_DEADLINE,
            || reloads(&ep, "ok") == ok_before + 1.0,
        );
    }
    assert_eq!(reloads(&ep, "failed"), breaks.len() as f64);
    assert_eq!(generation(&ep), 1 + breaks.len() as u64);
    assert!(
        !h.log(REGAUTH_CHILD).contains(ALICE.1),
        "a password reached the log"
    );
}

#[test]
fn sighup_reloads_even_without_a_file_change() {
    let mut h = Harness::new("ops-sighup");
    let (ep, _, _) = serve_inline(&mut h, &[ALICE]);
    assert_eq!(generation(&ep), 1);
    send_signal(h.pid(REGAUTH_CHILD), "HUP");
    poll(&mut h, "generation 2 after SIGHUP", RELOAD_DEADLINE, || {
        generation(&ep) == 2
    });
    assert_eq!(reloads(&ep, "ok"), 1.0);
    assert_eq!(scrape(&ep).value("regauth_config_generation", &[]), 2.0);
    assert!(
        h.log(REGAUTH_CHILD).contains("trigger=Signal"),
        "{}",
        h.log(REGAUTH_CHILD)
    );
    assert_eq!(token_status(&ep, ALICE.0, ALICE.1), 200);
}

#[test]
fn refresh_tokens_of_removed_or_changed_users_stop_working_after_reload() {
    let mut h = Harness::new("ops-refresh");
    let (ep, path, doc) = serve_inline(&mut h, &[ALICE, BOB, CAROL]);
    let refresh_token = |(user, password): (&str, &str)| {
        let target =
            format!("/token?service={SERVICE}&offline_token=true&client_id=x&account={user}");
        let response = get(
            &ep,
            &target,
            &[("Authorization", &basic_auth(user, password))],
        );
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned()
    };
    let (alice, bob, carol) = (
        refresh_token(ALICE),
        refresh_token(BOB),
        refresh_token(CAROL),
    );
    for token in [&alice, &bob, &carol] {
        assert_eq!(redeem(&ep, token), 200);
    }
    // bob is removed, carol gets a new password, alice keeps her entry (the same hash: a
    // fresh hash of the same password has a new salt and counts as a change).
    let mut changed = with_users(&doc, &[(CAROL.0, "carol-new-pw")]);
    changed["users"]["alice"] = doc["users"]["alice"].clone();
    write_by_rename(&path, &to_bytes(&changed));
    poll(&mut h, "generation 2", RELOAD_DEADLINE, || {
        generation(&ep) == 2
    });
    assert_eq!(redeem(&ep, &bob), 401, "removed user's refresh token");
    assert_eq!(
        redeem(&ep, &carol),
        401,
        "refresh token from before a password change"
    );
    assert_eq!(redeem(&ep, &alice), 200, "an unaffected user keeps hers");
}

/// A reload refused because the config names a file that does not exist yet is retried
/// when that file appears, with no SIGHUP: the reloader watches what the refused config
/// names, not only what the config in force names.
#[test]
fn a_config_refused_for_a_missing_file_reloads_when_the_file_appears() {
    let mut h = Harness::new("ops-missing-file");
    let (ep, path, doc) = serve_inline(&mut h, &[ALICE]);
    // `more.htpasswd` sits next to the config; `later/` exists but holds nothing the
    // config in force names, so nobody watches it yet.
    let later = h.mkdir("later");
    let steps = [
        (h.file("more.htpasswd"), "more.htpasswd", BOB),
        (later.join("users.htpasswd"), "later/users.htpasswd", CAROL),
    ];
    for (n, (file, named, user)) in steps.into_iter().enumerate() {
        let n = n as f64;
        let mut named_file = doc.clone();
        named_file["htpasswd"] = json!(named);
        write_by_rename(&path, &to_bytes(&named_file));
        poll(
            &mut h,
            &format!("config naming a missing {named} refused"),
            RELOAD_DEADLINE,
            || reloads(&ep, "failed") == n + 1.0,
        );
        assert_eq!(
            token_status(&ep, user.0, user.1),
            401,
            "{named} not there yet"
        );

        fs::write(&file, format!("{}:{}\n", user.0, hash_password(user.1))).expect("create");
        poll(
            &mut h,
            &format!("{} accepted once {named} exists", user.0),
            RELOAD_DEADLINE,
            || token_status(&ep, user.0, user.1) == 200,
        );
        assert_eq!(reloads(&ep, "failed"), n + 1.0, "{named}");
        assert_eq!(reloads(&ep, "ok"), n + 1.0, "{named}");
        assert_eq!(
            token_status(&ep, ALICE.0, ALICE.1),
            200,
            "inline users stay"
        );
    }
}

/// Settings used only at start are reported when a reload changes them, once, naming
/// the field; the rest of the config is applied.
#[test]
fn a_reload_that_changes_a_start_only_setting_warns_once() {
    let mut h = Harness::new("ops-restart-only");
    let (ep, path, doc) = serve_inline(&mut h, &[ALICE]);
    let mut changed = with_users(&doc, &[BOB]);
    changed["credential_cache_secs"] = json!(30);
    write_by_rename(&path, &to_bytes(&changed));
    assert_swapped_to_bob(&mut h, &ep, "reload with a new credential_cache_secs");
    let warning = "`credential_cache_secs` changed: it takes effect at restart";
    let line = h.wait_for_log_line(REGAUTH_CHILD, warning);
    assert!(line.contains("WARN"), "{line}");

    // Another reload that leaves it alone says nothing more about it.
    send_signal(h.pid(REGAUTH_CHILD), "HUP");
    poll(&mut h, "generation 3 after SIGHUP", RELOAD_DEADLINE, || {
        generation(&ep) == 3
    });
    let log = h.log(REGAUTH_CHILD);
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(!log.contains("changed: it takes effect at restart setting=\"listen\""));
}

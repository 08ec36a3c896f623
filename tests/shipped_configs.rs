//! The configs we ship parse, and their ACLs mean what their comments say:
//! the seeds' semantics (per-user map, anonymous white/blacklist, Pulp's
//! basic mode) and the default config a newcomer starts with.

use std::path::Path;

use regauth::acl::{Acl, Subject};
use regauth::config::Config;

fn load(relative: &str) -> (Config, Acl) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path).unwrap();
    let config =
        Config::parse(&text, path.parent().unwrap()).unwrap_or_else(|e| panic!("{relative}: {e}"));
    let acl = Acl::compile(&config.acl).unwrap_or_else(|e| panic!("{relative}: {e}"));
    (config, acl)
}

/// `who` may do exactly `actions` on repository `name` (sorted, comma-joined).
fn may(acl: &Acl, who: Option<&str>, groups: &[&str], name: &str) -> String {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    let subject = Subject {
        account: who,
        groups: &groups,
    };
    let allowed = acl.allowed(&subject, "repository", name);
    allowed.into_iter().collect::<Vec<_>>().join(",")
}

#[test]
fn every_shipped_config_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            load(&format!("config/examples/{name}"));
            count += 1;
        }
    }
    assert!(count >= 5, "examples found: {count}");
    load("config/regauth.json");
}

#[test]
fn default_config_gives_each_user_a_namespace() {
    let (config, acl) = load("config/regauth.json");
    assert!(
        config.token.generate_if_missing,
        "the demo config must start without keys"
    );
    assert_eq!(may(&acl, Some("bob"), &[], "bob/app"), "delete,pull,push");
    assert_eq!(may(&acl, Some("bob"), &[], "alice/app"), "");
    assert_eq!(may(&acl, Some("bob"), &[], "shared/base"), "pull");
    assert_eq!(
        may(&acl, Some("alice"), &["staff"], "shared/base"),
        "pull,push"
    );
    assert_eq!(may(&acl, None, &[], "public/hello"), "pull");
    assert_eq!(may(&acl, None, &[], "bob/app"), "");
    assert_eq!(
        may(&acl, Some("admin"), &["admins"], "bob/app"),
        "delete,pull,push"
    );
}

#[test]
fn per_user_map_like_the_python_service() {
    let (_, acl) = load("config/examples/per-user-map.json");
    assert_eq!(may(&acl, Some("alice"), &[], "alice/app"), "pull,push");
    assert_eq!(may(&acl, Some("alice"), &[], "other/thing"), "pull");
    assert_eq!(may(&acl, Some("bob"), &[], "alice/app"), "pull,push");
    assert_eq!(may(&acl, Some("carol"), &[], "alice/app"), "");
    assert_eq!(may(&acl, None, &[], "alice/app"), "");
}

#[test]
fn anonymous_whitelist_and_blacklist() {
    let (_, white) = load("config/examples/anonymous-whitelist.json");
    assert_eq!(may(&white, None, &[], "some-image"), "pull");
    assert_eq!(may(&white, None, &[], "tools/lint"), "pull");
    assert_eq!(may(&white, None, &[], "private/app"), "");
    assert_eq!(may(&white, Some("bob"), &[], "private/app"), "pull,push");

    let (_, black) = load("config/examples/anonymous-blacklist.json");
    assert_eq!(may(&black, None, &[], "anything/else"), "pull");
    assert_eq!(may(&black, None, &[], "internal/db"), "");
    assert_eq!(may(&black, None, &[], "secret-app"), "");
    assert_eq!(may(&black, Some("bob"), &[], "internal/db"), "pull,push");
}

#[test]
fn pulp_basic_mode_everyone_pulls_staff_pushes() {
    let (config, acl) = load("config/examples/pulp-basic.json");
    assert_eq!(config.auth.mode, regauth::config::AuthMode::Basic);
    assert_eq!(may(&acl, None, &[], "any/repo"), "pull");
    assert_eq!(may(&acl, Some("bob"), &[], "any/repo"), "pull");
    assert_eq!(
        may(&acl, Some("admin"), &["staff"], "any/repo"),
        "delete,pull,push"
    );
}

#[test]
fn check_config_validates_the_default_config_without_writing_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("regauth.json");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/regauth.json"),
        &config,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
    assert!(stdout.contains("`serve` will generate it"), "{stdout}");
    assert!(
        !dir.path().join("keys").exists(),
        "check-config wrote key files"
    );
}

//! The shipped systemd units and config example: `systemd-analyze verify`, the
//! `systemd-analyze security --offline=yes` exposure score, and the example config agreeing
//! with the units (credential path, socket path) and passing `check-config`.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::support::*;

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");

/// Copies both units into the temp dir with `ExecStart` pointing at the built binary
/// (`verify` checks that the binary exists); returns the service unit's path.
fn units_for_test(h: &Harness) -> std::path::PathBuf {
    let dir = h.mkdir("units");
    let service = fs::read_to_string(format!("{UNITS}/regauth.service")).expect("regauth.service");
    assert!(
        service.contains("\nExecStart=/usr/local/bin/regauth serve "),
        "ExecStart moved"
    );
    let service = service.replace(
        "\nExecStart=/usr/local/bin/regauth ",
        &format!("\nExecStart={REGAUTH} "),
    );
    fs::write(dir.join("regauth.service"), service).expect("write service");
    fs::copy(
        format!("{UNITS}/regauth.socket"),
        dir.join("regauth.socket"),
    )
    .expect("copy socket");
    dir.join("regauth.service")
}

#[test]
fn systemd_units_pass_verify() {
    let h = Harness::new("ops-verify");
    let service = units_for_test(&h);
    let out = Command::new(require("systemd-analyze"))
        .arg("verify")
        .arg(&service)
        .arg(service.with_file_name("regauth.socket"))
        .output()
        .expect("systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "verify ({}):\n{stderr}",
        out.status
    );
}

#[test]
fn systemd_service_exposure_is_at_most_2_5() {
    let h = Harness::new("ops-security");
    let service = units_for_test(&h);
    let out = Command::new(require("systemd-analyze"))
        .args(["security", "--offline=yes"])
        .arg(&service)
        .output()
        .expect("systemd-analyze security");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // "→ Overall exposure level for regauth.service: 0.9 SAFE 😀"
    let score: f64 = stdout
        .lines()
        .find_map(|line| line.split_once("Overall exposure level for regauth.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{stdout}"));
    eprintln!("systemd-analyze security exposure: {score}");
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{stdout}");
}

#[test]
fn systemd_config_example_matches_the_unit_and_is_valid() {
    let h = Harness::new("ops-example");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/regauth.systemd.json");
    let mut doc: Value =
        serde_json::from_slice(&fs::read(example).expect("example")).expect("JSON");
    // The key is the credential the unit loads, where systemd puts it for this unit.
    let service = fs::read_to_string(format!("{UNITS}/regauth.service")).expect("unit");
    assert!(
        service.contains("\nLoadCredential=token.key:"),
        "unit lost its LoadCredential"
    );
    assert_eq!(
        doc["token"]["private_key"],
        "/run/credentials/regauth.service/token.key"
    );
    let socket = fs::read_to_string(format!("{UNITS}/regauth.socket")).expect("socket unit");
    let activated = doc["listen"][0].as_str().expect("listen[0]");
    assert!(socket.contains(&format!(
        "\nListenStream={}\n",
        activated.trim_start_matches("unix:")
    )));

    // Everything else checks out with a real key and certificate, and the htpasswd file
    // beside the config (relative paths resolve against the config's directory).
    let (key, cert) = keygen(&h, "ES256", "token");
    doc["token"]["private_key"] = json!(key);
    doc["token"]["certificate"] = json!(cert);
    let htpasswd = doc["htpasswd"].as_str().expect("htpasswd").to_owned();
    assert!(
        Path::new(&htpasswd).is_relative(),
        "htpasswd should sit beside the config"
    );
    h.write(&htpasswd, format!("alice:{}\n", hash_password("pw")));
    let path = h.write("regauth.json", to_bytes(&doc));
    let out = check_config(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

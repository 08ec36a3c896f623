//! The fuzz targets' committed seeds (and any crash kept as a regression), replayed on
//! stable through the very functions the cargo-fuzz targets call (`fuzz/targets.rs`), so
//! CI checks them without a nightly toolchain. Fuzzing itself: `fuzz/README.md`.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

/// Feeds every file under `fuzz/seeds/<target>/` to `run`; returns how many there were.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "fuzz seed {} failed", path.display());
        count += 1;
    }
    assert!(count > 0, "no seeds in {}", dir.display());
    count
}

#[test]
fn scope_seeds() {
    replay("scope", targets::scope);
}

#[test]
fn route_seeds() {
    replay("route", targets::route);
}

#[test]
fn token_seeds() {
    replay("token", targets::token);
}

#[test]
fn basic_seeds() {
    replay("basic", targets::basic);
}

#[test]
fn config_seeds() {
    replay("config", targets::config);
}

/// The token seeds reach past the signature check: the committed key verifies them, so
/// the fuzzer mutates tokens that are genuine, not only garbage.
#[test]
fn token_seeds_include_genuine_tokens() {
    let expect = regauth::token::Expectations {
        issuer: targets::ISSUER,
        audience: targets::SERVICE,
        leeway_secs: 60,
        now: targets::NOW,
    };
    let keys = [targets::signing_key().verifying.clone()];
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/token");
    for (name, valid) in [
        ("access_kid", true),
        ("access_x5c", true),
        ("expired", false),
        ("alg_none", false),
        ("hs256", false),
        ("float_exp", false),
    ] {
        let token = std::fs::read_to_string(seeds.join(name)).unwrap();
        let verified = regauth::token::verify_access(&keys, &token, &expect);
        assert_eq!(verified.is_ok(), valid, "{name}: {verified:?}");
    }
    let refresh = std::fs::read_to_string(seeds.join("refresh")).unwrap();
    regauth::token::verify_refresh(&keys, &refresh, &expect).expect("the refresh seed verifies");
}

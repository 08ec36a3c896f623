//! scratch
mod support;
use support::*;

#[test]
fn harness_smoke_registry_without_auth() {
    let mut h = Harness::new("smoke");
    let reg = start_registry(&mut h, None);
    let sk = Skopeo::new(&h);
    let img = make_image(&h, "one");
    sk.push(&img, &format!("{reg}/smoke/one:v1"), Creds::Anonymous).assert_ok();
    sk.pull(&format!("{reg}/smoke/one:v1"), Creds::Anonymous).assert_pulled(&img);
    sk.inspect(&format!("{reg}/smoke/one:v1"), Creds::Anonymous).assert_ok();
    sk.delete(&format!("{reg}/smoke/one:v1"), Creds::Anonymous).assert_ok();
    sk.inspect(&format!("{reg}/smoke/one:v1"), Creds::Anonymous).assert_failed(&["manifest unknown"]);
}

//! The Debian package (`packaging/debian/build.sh`): built from the binary cargo made for
//! these tests, inspected with `dpkg-deb` (control fields, file layout and modes,
//! conffiles, maintainer scripts), then installed into a throwaway root with
//! `dpkg --root --force-script-chrootless`, where the maintainer scripts really run: the
//! `regauth` user, `/etc/regauth` handed to its group, a first signing key that the shipped
//! config loads, `systemd-analyze verify` of the installed units, and a purge.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const TOP: &str = env!("CARGO_MANIFEST_DIR");
const REGAUTH: &str = env!("CARGO_BIN_EXE_regauth");

/// The package, built once per test binary and shared by the tests.
struct Built {
    /// Keeps the output directory alive.
    _dir: tempfile::TempDir,
    /// The `.deb` file.
    deb: PathBuf,
}

fn package() -> &'static Path {
    static BUILT: OnceLock<Built> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        // Uncompressed: the test is about the contents, and xz on the debug binary is slow.
        let out = run(Command::new("bash")
            .arg(format!("{TOP}/packaging/debian/build.sh"))
            .args(["--binary", REGAUTH, "--compression", "none", "--output"])
            .arg(dir.path()));
        let deb = PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim());
        assert!(deb.is_file(), "build.sh printed {}", deb.display());
        Built { _dir: dir, deb }
    });
    &built.deb
}

/// Runs `command`, panicking with its output unless it succeeds.
fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).expect("utf-8 output")
}

fn dpkg_deb(args: &[&str]) -> String {
    stdout(Command::new("dpkg-deb").args(args).arg(package()))
}

/// The package's control archive, extracted.
fn control_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(package())
        .arg(dir.path()));
    dir
}

#[test]
fn control_fields_name_the_package_its_version_and_dependencies() {
    let field = |name: &str| {
        dpkg_deb(&["--field"])
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")).map(str::to_owned))
    };
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"));
    assert_eq!(field("Package").as_deref(), Some("regauth"));
    assert_eq!(
        field("Version"),
        Some(format!("{}-1", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(field("Architecture").as_deref(), Some(arch.trim()));
    let depends = field("Depends").expect("Depends");
    // From dpkg-shlibdeps: the C library the binary links, with a version.
    assert!(depends.starts_with("libc6 (>= "), "{depends}");
    assert!(depends.contains("adduser"), "{depends}");
    assert!(field("Maintainer").is_some_and(|m| m.contains('<')));
    let installed_kib: u64 = field("Installed-Size")
        .expect("Installed-Size")
        .parse()
        .expect("a number");
    assert!(installed_kib > 1000, "{installed_kib} KiB");
    assert!(field("Description").is_some());
}

#[test]
fn files_are_where_debian_looks_with_their_modes() {
    // "drwxr-x--- root/root 0 2026-11-30 09:55 ./etc/regauth/" → path → (mode, owner).
    let listing: BTreeMap<String, (String, String)> = dpkg_deb(&["--contents"])
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').trim_end_matches('/');
            (
                path.to_owned(),
                (fields[0].to_owned(), fields[1].to_owned()),
            )
        })
        .collect();
    let expected = [
        ("/usr/bin/regauth", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/regauth.service", "-rw-r--r--"),
        ("/usr/lib/systemd/system/regauth.socket", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/regauth.conf", "-rw-r--r--"),
        ("/usr/lib/tmpfiles.d/regauth.conf", "-rw-r--r--"),
        ("/etc/regauth", "drwxr-x---"),
        ("/etc/regauth/keys", "drwxr-x---"),
        ("/etc/regauth/regauth.json", "-rw-r-----"),
        ("/etc/nginx/regauth/regauth-upstream.conf", "-rw-r--r--"),
        ("/etc/nginx/regauth/regauth-auth.conf", "-rw-r--r--"),
        ("/etc/nginx/regauth/regauth-token.conf", "-rw-r--r--"),
        ("/etc/nginx/regauth/regauth-protect.conf", "-rw-r--r--"),
        ("/usr/share/doc/regauth/copyright", "-rw-r--r--"),
        ("/usr/share/doc/regauth/changelog.Debian.gz", "-rw-r--r--"),
        ("/usr/share/lintian/overrides/regauth", "-rw-r--r--"),
        (
            "/usr/share/doc/regauth/examples/nginx/registry.conf",
            "-rw-r--r--",
        ),
    ];
    for (path, mode) in expected {
        let (actual, owner) = listing
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing from {listing:#?}"));
        assert_eq!(actual, mode, "{path}");
        assert_eq!(owner, "root/root", "{path}");
    }
    for (path, (_, owner)) in &listing {
        assert_eq!(owner, "root/root", "{path}");
        // /run is a tmpfs: its directory comes from tmpfiles.d, never from the archive.
        assert!(!path.starts_with("/run"), "{path}");
        assert!(!path.starts_with("/usr/local"), "{path}");
    }
}

#[test]
fn packaged_files_are_the_shipped_ones() {
    let root = tempfile::tempdir().expect("temp dir");
    run(Command::new("dpkg-deb")
        .arg("--extract")
        .arg(package())
        .arg(root.path()));
    let read = |path: &str| fs::read_to_string(root.path().join(path)).expect(path);
    let source = |path: &str| fs::read_to_string(Path::new(TOP).join(path)).expect(path);

    // The units are the repository's, with the binary where Debian installs it.
    let service = read("usr/lib/systemd/system/regauth.service");
    assert!(
        service.contains("\nExecStart=/usr/bin/regauth serve --config /etc/regauth/regauth.json\n"),
        "{service}"
    );
    assert!(!service.contains("/usr/local"), "{service}");
    let source_service = source("systemd/regauth.service");
    assert!(service.ends_with(&source_service.replace("/usr/local/bin/", "/usr/bin/")));
    assert!(
        read("usr/lib/systemd/system/regauth.socket").ends_with(&source("systemd/regauth.socket"))
    );
    assert!(read("usr/lib/systemd/system/regauth.socket")
        .contains("\nListenStream=/run/regauth/regauth.sock\n"));
    assert!(read("usr/lib/tmpfiles.d/regauth.conf").contains("\nd /run/regauth 0755 root root -\n"));
    assert!(read("usr/lib/sysusers.d/regauth.conf").contains("\nu regauth - "));

    assert_eq!(
        read("etc/regauth/regauth.json"),
        source("config/regauth.systemd.json")
    );
    for snippet in ["upstream", "auth", "token", "protect"] {
        let name = format!("regauth-{snippet}.conf");
        assert_eq!(
            read(&format!("etc/nginx/regauth/{name}")),
            source(&format!("nginx/{name}")),
            "{name}"
        );
    }
    // Stripped, and still the program it was.
    let binary = root.path().join("usr/bin/regauth");
    assert!(
        fs::metadata(&binary).expect("binary").len() < fs::metadata(REGAUTH).expect("built").len()
    );
    let version = stdout(Command::new(&binary).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("regauth {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn conffiles_and_maintainer_scripts() {
    let control = control_dir();
    let conffiles = fs::read_to_string(control.path().join("conffiles")).expect("conffiles");
    assert_eq!(
        conffiles.lines().collect::<Vec<_>>(),
        [
            "/etc/nginx/regauth/regauth-auth.conf",
            "/etc/nginx/regauth/regauth-protect.conf",
            "/etc/nginx/regauth/regauth-token.conf",
            "/etc/nginx/regauth/regauth-upstream.conf",
            "/etc/regauth/regauth.json",
        ]
    );
    for script in ["postinst", "prerm", "postrm"] {
        let path = control.path().join(script);
        let mode = fs::metadata(&path).expect(script).permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
        let text = fs::read_to_string(&path).expect(script);
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        assert!(text.contains("\nset -e\n"), "{script}");
        // dash is Debian's /bin/sh: the scripts must parse there.
        run(Command::new("sh").arg("-n").arg(&path));
    }
}

/// The gid of `name` in `root`'s own group file.
fn group_id(root: &Path, name: &str) -> Option<u32> {
    fs::read_to_string(root.join("etc/group"))
        .expect("group file")
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields[0] == name).then(|| fields[2].parse().expect("gid"))
        })
}

fn mode_and_gid(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.gid())
}

/// A root that dpkg accepts (its database) and in which `systemd-analyze verify` finds the
/// targets the units name and the commands they run.
fn throwaway_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let r = root.path();
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "etc",
        "usr/bin",
        "usr/lib/systemd/system",
    ] {
        fs::create_dir_all(r.join(dir)).expect(dir);
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        fs::write(r.join(file), "").expect(file);
    }
    std::os::unix::fs::symlink("usr/bin", r.join("bin")).expect("bin");
    std::os::unix::fs::symlink("usr/lib", r.join("lib")).expect("lib");
    fs::copy("/usr/bin/kill", r.join("usr/bin/kill")).expect("kill (ExecReload)");
    for entry in fs::read_dir("/lib/systemd/system").expect("the host's units") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "target") {
            fs::copy(
                &path,
                r.join("usr/lib/systemd/system")
                    .join(path.file_name().unwrap()),
            )
            .expect("target unit");
        }
    }
    root
}

fn dpkg_in(root: &Path, args: &[&str]) -> Output {
    run(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        // The scripts run on the host with DPKG_ROOT set (there is no shell in the root to
        // chroot into); they must touch nothing outside it, which the test checks.
        .args(["--force-script-chrootless", "--force-depends"])
        .args(args))
}

#[test]
fn installs_into_a_throwaway_root_and_purges_cleanly() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: installing with dpkg --root needs root (CI runs as root)");
        return;
    }
    let host_passwd = fs::read_to_string("/etc/passwd").expect("host passwd");
    let host_has_etc_regauth = Path::new("/etc/regauth").exists();
    let root = throwaway_root();
    let r = root.path();
    let deb = package().to_str().expect("utf-8 path");
    let install = dpkg_in(r, &["--install", deb]);
    let said = String::from_utf8_lossy(&install.stdout);
    assert!(said.contains("created the signing key"), "{said}");

    // The user and group, made by systemd-sysusers in the root's own files.
    let passwd = fs::read_to_string(r.join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("regauth:"))
        .expect("regauth user");
    assert!(user.ends_with(":/nonexistent:/usr/sbin/nologin"), "{user}");
    let gid = group_id(r, "regauth").expect("regauth group");

    // The config tree belongs to root:regauth; the key stays root-only.
    let etc = r.join("etc/regauth");
    assert_eq!(mode_and_gid(&etc), (0o750, gid));
    assert_eq!(mode_and_gid(&etc.join("keys")), (0o750, gid));
    assert_eq!(mode_and_gid(&etc.join("regauth.json")), (0o640, gid));
    assert_eq!(mode_and_gid(&etc.join("users.htpasswd")), (0o640, gid));
    assert_eq!(mode_and_gid(&etc.join("keys/token.key")), (0o600, 0));
    assert_eq!(mode_and_gid(&etc.join("keys/token.crt")), (0o644, 0));

    // The shipped config loads with the generated key, certificate and empty htpasswd,
    // once its private_key points at the key itself rather than systemd's credential copy.
    let config = fs::read_to_string(etc.join("regauth.json")).expect("config");
    let credential = "/run/credentials/regauth.service/token.key";
    assert!(config.contains(credential));
    let key = etc.join("keys/token.key");
    let check = etc.join("check.json");
    fs::write(
        &check,
        config.replace(credential, key.to_str().expect("utf-8")),
    )
    .expect("copy");
    let summary = stdout(
        Command::new(r.join("usr/bin/regauth"))
            .arg("check-config")
            .arg(&check),
    );
    assert!(summary.contains("configuration OK"), "{summary}");
    fs::remove_file(&check).expect("remove copy");

    // The installed units, as systemd would load them from this root.
    let verify = Command::new("systemd-analyze")
        .arg(format!("--root={}", r.display()))
        .args(["verify", "regauth.socket", "regauth.service"])
        .output()
        .expect("systemd-analyze");
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && stderr.trim().is_empty(),
        "verify ({}):\n{stderr}",
        verify.status
    );

    // A reinstall (configure as an upgrade) keeps the key and fixes ownership again.
    let key_before = fs::read(&key).expect("key");
    dpkg_in(r, &["--install", deb]);
    assert_eq!(fs::read(&key).expect("key"), key_before);
    assert_eq!(mode_and_gid(&etc.join("regauth.json")), (0o640, gid));

    // Purge removes what postinst made as well as the package's files.
    dpkg_in(r, &["--purge", "regauth"]);
    for gone in [
        "etc/regauth",
        "etc/nginx/regauth",
        "usr/bin/regauth",
        "usr/lib/systemd/system/regauth.service",
    ] {
        assert!(!r.join(gone).exists(), "{gone} left after purge");
    }

    // Nothing happened on the host.
    assert_eq!(
        fs::read_to_string("/etc/passwd").expect("passwd"),
        host_passwd
    );
    assert_eq!(Path::new("/etc/regauth").exists(), host_has_etc_regauth);
}

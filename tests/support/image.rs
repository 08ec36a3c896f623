//! Test images and the client that moves them: tiny OCI layouts with random content,
//! and skopeo 1.9 with private policy, auth file, home and temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use super::{random_bytes, random_hex, require, sha256_digest, Harness};

/// A one-layer OCI image layout on disk, with random layer content.
pub struct OciImage {
    /// The layout directory.
    pub dir: PathBuf,
    /// Its one tag (`org.opencontainers.image.ref.name`).
    pub tag: String,
    /// Digest of the manifest.
    pub manifest_digest: String,
    /// Digest of the config blob (survives the layer compression skopeo applies on push).
    pub config_digest: String,
    /// Random text inside the layer's one file (tells images apart).
    pub marker: String,
}

impl OciImage {
    /// `oci:DIR:TAG`, for skopeo.
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.dir.display(), self.tag)
    }
}

/// Writes a one-layer image (plain tar layer holding `hello.txt` with random content) as
/// an OCI layout in `<tempdir>/images/<name>`.
pub fn make_image(h: &Harness, name: &str) -> OciImage {
    make_image_with_payload(h, name, 0)
}

/// Like [`make_image`], with `payload` more random bytes in the layer (`random.bin`), e.g.
/// to push a blob larger than a proxy's default body size limit.
pub fn make_image_with_payload(h: &Harness, name: &str, payload: usize) -> OciImage {
    let dir = h.mkdir(&format!("images/{name}"));
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("create blobs dir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let digest = sha256_digest(bytes);
        let hex = digest.strip_prefix("sha256:").expect("sha256");
        fs::write(blobs.join(hex), bytes).expect("write blob");
        (digest, bytes.len())
    };
    let marker = format!("regauth e2e {name} {}\n", random_hex(16));
    let mut layer = tar_one_file("hello.txt", marker.as_bytes());
    if payload > 0 {
        // Drop the end-of-archive blocks of the first archive and append a second entry.
        layer.truncate(layer.len() - 1024);
        layer.extend(tar_one_file("random.bin", &random_bytes(payload)));
    }
    let (layer_digest, layer_size) = put(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).expect("JSON"));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }],
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).expect("JSON"));
    let tag = "latest".to_owned();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": tag },
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("JSON"),
    )
    .expect("write index.json");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
    OciImage {
        dir,
        tag,
        manifest_digest,
        config_digest,
        marker,
    }
}

/// A ustar archive with one regular file.
fn tar_one_file(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let mut field = |offset: usize, bytes: &[u8]| {
        header[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    field(0, name.as_bytes());
    field(100, b"0000644\0"); // mode
    field(108, b"0000000\0"); // uid
    field(116, b"0000000\0"); // gid
    field(124, format!("{:011o}\0", data.len()).as_bytes()); // size
    field(136, b"00000000000\0"); // mtime
    field(148, b"        "); // checksum placeholder: eight spaces
    field(156, b"0"); // regular file
    field(257, b"ustar\0"); // magic
    field(263, b"00"); // version
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.resize(out.len() + 1024, 0); // two zero blocks end the archive
    out
}
/// Who skopeo is.
#[derive(Clone, Copy, Debug)]
pub enum Creds<'a> {
    /// No credentials at all (`--no-creds`).
    Anonymous,
    /// `--creds user:password`.
    User(&'a str, &'a str),
}

/// The result of one skopeo run.
pub struct Outcome {
    /// What ran, for messages.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// For a pull: the OCI layout it wrote.
    pub pulled: Option<PathBuf>,
}

impl Outcome {
    /// Panics with skopeo's stderr unless it succeeded.
    pub fn assert_ok(&self) -> &Self {
        assert!(
            self.status.success(),
            "expected success: {}\nexit: {}\nstderr:\n{}",
            self.what,
            self.status,
            self.stderr
        );
        self
    }

    /// Panics unless this was a successful pull of `image` (same config blob).
    pub fn assert_pulled(&self, image: &OciImage) -> &Self {
        self.assert_ok();
        let dir = self.pulled.as_ref().expect("not a pull");
        let read_json = |p: PathBuf| -> serde_json::Value {
            serde_json::from_slice(&fs::read(&p).expect("read pulled layout")).expect("JSON")
        };
        let blob = |digest: &serde_json::Value| {
            let digest = digest.as_str().expect("digest string");
            dir.join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").expect("sha256 digest"))
        };
        let index = read_json(dir.join("index.json"));
        let manifest = read_json(blob(&index["manifests"][0]["digest"]));
        assert_eq!(
            manifest["config"]["digest"].as_str(),
            Some(image.config_digest.as_str()),
            "{} pulled another image than {}",
            self.what,
            image.dir.display()
        );
        self
    }

    /// Panics unless skopeo failed and its stderr contains one of `reasons` (so a refusal
    /// is not mistaken for, say, a connection error).
    pub fn assert_failed(&self, reasons: &[&str]) -> &Self {
        assert!(
            !self.status.success(),
            "expected failure: {}\nbut it succeeded; stderr:\n{}",
            self.what,
            self.stderr
        );
        assert!(
            reasons.iter().any(|r| self.stderr.contains(r)),
            "{} failed, but not for an expected reason {reasons:?}; stderr:\n{}",
            self.what,
            self.stderr
        );
        self
    }
}

/// skopeo with a private policy, auth file, home and temp dir (nothing global leaks in).
pub struct Skopeo {
    bin: PathBuf,
    policy: PathBuf,
    authfile: PathBuf,
    home: PathBuf,
    tmp: PathBuf,
    /// Where pulled images go (`oci:` layouts), one sub-dir per pull.
    pulls: PathBuf,
}

impl Skopeo {
    pub fn new(h: &Harness) -> Skopeo {
        let policy = h.write(
            "skopeo/policy.json",
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        );
        let authfile = h.write("skopeo/auth.json", r#"{"auths":{}}"#);
        Skopeo {
            bin: require("skopeo"),
            policy,
            authfile,
            home: h.mkdir("skopeo/home"),
            tmp: h.mkdir("skopeo/tmp"),
            pulls: h.mkdir("pulls"),
        }
    }

    fn run(&self, args: &[String]) -> Outcome {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--policy")
            .arg(&self.policy)
            .arg("--tmpdir")
            .arg(&self.tmp)
            .arg("--command-timeout")
            .arg("120s")
            .args(args)
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_RUNTIME_DIR", &self.home)
            .env("REGISTRY_AUTH_FILE", &self.authfile)
            .env_remove("DOCKER_CONFIG")
            .stdin(Stdio::null());
        let out = cmd.output().expect("run skopeo");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Captured by the test harness: shown for a failing test (or with --nocapture).
        eprintln!(
            "$ skopeo {}\n  -> {}\n{}",
            args.join(" "),
            out.status,
            stderr.trim_end()
        );
        Outcome {
            what: format!("skopeo {}", args.join(" ")),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            pulled: None,
        }
    }

    fn creds(&self, prefix: &str, creds: Creds<'_>) -> Vec<String> {
        let mut v = vec![format!("--{prefix}authfile"), path_arg(&self.authfile)];
        match creds {
            Creds::Anonymous => v.push(format!("--{prefix}no-creds")),
            Creds::User(u, p) => v.extend([format!("--{prefix}creds"), format!("{u}:{p}")]),
        }
        v
    }

    /// `skopeo copy oci:DIR:TAG docker://<dest>` over plain HTTP or unverified TLS.
    pub fn push(&self, image: &OciImage, dest: &str, creds: Creds<'_>) -> Outcome {
        let mut args = vec!["copy".to_owned(), "--dest-tls-verify=false".to_owned()];
        args.extend(self.creds("dest-", creds));
        args.extend([image.reference(), format!("docker://{dest}")]);
        self.run(&args)
    }

    /// `skopeo copy docker://<src> oci:<fresh dir>:pulled`; on success the layout holds the
    /// pulled image.
    pub fn pull(&self, src: &str, creds: Creds<'_>) -> Outcome {
        let into = self.pulls.join(random_hex(6));
        let mut args = vec!["copy".to_owned(), "--src-tls-verify=false".to_owned()];
        args.extend(self.creds("src-", creds));
        args.extend([
            format!("docker://{src}"),
            format!("oci:{}:pulled", into.display()),
        ]);
        Outcome {
            pulled: Some(into),
            ..self.run(&args)
        }
    }

    /// `skopeo inspect --raw docker://<reference>` (stdout = the manifest).
    pub fn inspect(&self, reference: &str, creds: Creds<'_>) -> Outcome {
        let mut args = vec![
            "inspect".to_owned(),
            "--raw".to_owned(),
            "--tls-verify=false".to_owned(),
        ];
        args.extend(self.creds("", creds));
        args.push(format!("docker://{reference}"));
        self.run(&args)
    }

    /// `skopeo delete docker://<reference>`.
    pub fn delete(&self, reference: &str, creds: Creds<'_>) -> Outcome {
        let mut args = vec!["delete".to_owned(), "--tls-verify=false".to_owned()];
        args.extend(self.creds("", creds));
        args.push(format!("docker://{reference}"));
        self.run(&args)
    }
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

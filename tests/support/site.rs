//! The two deployments the e2e suites run, each in its own [`Harness`]:
//! [`TokenAuthSite`] (docker-registry 2.8 with `auth: token`, regauth as its realm) and
//! [`NginxSite`], below.
//!
//! The shipped nginx example site run for real: `nginx/registry.conf` and the
//! `nginx/regauth-*.conf` it includes, with only paths, ports and the certificate rewritten
//! (each rewrite asserts its pattern still occurs, so the files and the tests stay in step).
//!
//! nginx listens with TLS (for skopeo) and, in the same `server {}`, on plain HTTP (for
//! hand-made requests). Between nginx and the registry (no auth) sits a second nginx
//! `server {}` that only logs the `Remote-User` header the upstream receives
//! (`logs/upstream-view.log`). regauth listens on a trusted unix socket (nginx's upstream)
//! and on untrusted TCP, both bound by the test and handed to it
//! ([`regauth_serve`](super::regauth_serve)).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{
    free_ports, http, keygen, reserve_tcp, start_nginx, start_regauth, start_registry, Endpoint,
    Harness, Response, TokenAuth,
};

/// Either deployment as a scenario that runs in both sees it.
pub struct Deployment<'a> {
    pub h: &'a Harness,
    /// The registry's `host:port` as clients name it and log in to it.
    pub host: &'a str,
    /// regauth's own TCP listener (`/token`, `/healthz`, `/metrics`).
    pub regauth: &'a Endpoint,
    /// Whether the registry checks regauth's tokens itself (token auth) rather than nginx
    /// asking `/auth`.
    pub token_auth: bool,
}

impl Deployment<'_> {
    /// What skopeo prints when either deployment refuses a request: the registry's 401
    /// body, or nginx's `unauthorized`/`denied` error codes.
    pub const REFUSED: &'static [&'static str] = &[
        "authentication required",
        "unauthorized",
        "denied",
        "403 (Forbidden)",
    ];

    /// skopeo's name for `repo` (`name:tag`) in the registry.
    pub fn at(&self, repo: &str) -> String {
        format!("{}/{repo}", self.host)
    }
}

/// The `token` section of a test config for the key pair [`TokenAuthSite`] and
/// [`NginxSite`] write beside the config: 300-second tokens, key IDs in the libtrust form
/// registry 2.8 looks up (both regauth's defaults, spelled out).
pub fn token_section(algorithm: &str) -> Value {
    json!({
        "algorithm": algorithm,
        "private_key": "token.key",
        "certificate": "token.crt",
        "expiration_secs": 300,
        "kid": "libtrust",
    })
}

/// docker-registry 2.8 with `auth: token`, trusting regauth's `token.crt`, and regauth on
/// a TCP port the test bound, its `/token` the realm (plain HTTP).
pub struct TokenAuthSite {
    pub h: Harness,
    /// The registry as clients name it, `127.0.0.1:PORT`.
    pub registry: String,
    /// regauth's (only) listener, `127.0.0.1:PORT`.
    pub regauth_addr: String,
    /// The same, to send requests to.
    pub regauth: Endpoint,
    /// The realm the registry sends clients to.
    pub realm: String,
}

impl TokenAuthSite {
    /// Starts the site in a new harness: a key pair `token.key`/`token.crt` of
    /// `algorithm`, regauth (config from `make_config(realm, listen)`, where `listen` is
    /// its TCP listener), then the registry, whose `service` and `issuer` are the config's.
    pub fn start(
        label: &str,
        algorithm: &str,
        make_config: impl FnOnce(&str, Value) -> Value,
    ) -> TokenAuthSite {
        TokenAuthSite::start_in(Harness::new(label), algorithm, None, make_config)
    }

    /// [`TokenAuthSite::start`] in `h`, which may already run other peers or hold files
    /// the config names; with `front` (`host:port` of a proxy the caller starts in front
    /// of regauth), the realm is the front's `/token`.
    pub fn start_in(
        mut h: Harness,
        algorithm: &str,
        front: Option<&str>,
        make_config: impl FnOnce(&str, Value) -> Value,
    ) -> TokenAuthSite {
        let (_, cert) = keygen(&h, algorithm, "token");
        let regauth_addr = reserve_tcp();
        let realm = format!("http://{}/token", front.unwrap_or(&regauth_addr));
        let config = make_config(&realm, json!([regauth_addr]));
        let regauth = Endpoint::Tcp(regauth_addr.clone());
        start_regauth(&mut h, &config, &regauth);
        let named = |field: &str| {
            config[field]
                .as_str()
                .unwrap_or_else(|| panic!("the config has no {field}"))
        };
        let registry = start_registry(
            &mut h,
            Some(TokenAuth {
                realm: &realm,
                service: named("service"),
                issuer: named("issuer"),
                rootcertbundle: &cert,
            }),
        );
        TokenAuthSite {
            h,
            registry,
            regauth_addr,
            regauth,
            realm,
        }
    }

    /// What a scenario run in both deployments needs of this one.
    pub fn deployment(&self) -> Deployment<'_> {
        Deployment {
            h: &self.h,
            host: &self.registry,
            regauth: &self.regauth,
            token_auth: true,
        }
    }
}

/// The running site of one test.
pub struct NginxSite {
    pub h: Harness,
    /// `127.0.0.1:PORT` of nginx's TLS listener (what skopeo uses).
    pub tls: String,
    /// nginx's plain-HTTP listener, same `server {}`.
    pub plain: Endpoint,
    /// regauth's trusted unix socket.
    pub socket: PathBuf,
    /// regauth's untrusted TCP listener.
    pub regauth_tcp: Endpoint,
    /// The token realm (nginx's `/token`, over TLS).
    pub realm: String,
}

impl NginxSite {
    /// Starts registry (no auth), regauth (config from `make_config(realm, listen)`, where
    /// `listen` is the site's pair of listeners: untrusted TCP, then the trusted unix socket
    /// nginx uses) and nginx serving the shipped `registry.conf`.
    pub fn start(label: &str, make_config: impl FnOnce(&str, Value) -> Value) -> NginxSite {
        let mut h = Harness::new(label);
        keygen(&h, "ES256", "token");
        keygen(&h, "ES256", "tls");
        let registry = start_registry(&mut h, None);
        let [tls_port, plain_port, inner_port] = free_ports();
        let tls = format!("127.0.0.1:{tls_port}");
        let realm = format!("https://{tls}/token");
        let socket = h.file("regauth.sock");
        let regauth_tcp = reserve_tcp();
        // Both are bound by the test and inherited, so no `mode`: nginx's workers run as the
        // test's user (see `write_nginx_conf`), the socket file's owner.
        let listen = json!([
            regauth_tcp,
            { "address": format!("unix:{}", socket.display()), "trusted": true },
        ]);
        let config = make_config(&realm, listen);
        start_regauth(&mut h, &config, &Endpoint::Unix(socket.clone()));

        let site = rewrite_site(
            &h,
            "registry.conf",
            tls_port,
            plain_port,
            &socket,
            "registry.access.log",
        );
        let site = rewrite(
            &site,
            "registry.conf",
            "server 127.0.0.1:5000;",
            &format!("server 127.0.0.1:{inner_port};"),
        );
        // The registry's stand-in front: logs what the upstream receives, then proxies.
        let upstream_view = format!(
            r#"
log_format upstream_view '"$request_method $request_uri " remote_user="$http_remote_user" remote_groups="$http_remote_groups"';
server {{
    listen 127.0.0.1:{inner_port};
    access_log {log} upstream_view;
    client_max_body_size 0;
    location / {{
        proxy_pass http://{registry};
        proxy_http_version 1.1;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-Proto $http_x_forwarded_proto;
        proxy_set_header Connection "";
    }}
}}
"#,
            log = h.log_path("upstream-view").display(),
        );
        start_nginx(
            &mut h,
            &format!("{site}\n{upstream_view}"),
            &[tls_port, plain_port, inner_port],
        );
        NginxSite {
            h,
            tls,
            plain: Endpoint::Tcp(format!("127.0.0.1:{plain_port}")),
            socket,
            regauth_tcp: Endpoint::Tcp(regauth_tcp),
            realm,
        }
    }

    /// skopeo's name for `repo` on this site.
    pub fn at(&self, repo: &str) -> String {
        self.deployment().at(repo)
    }

    /// What a scenario run in both deployments needs of this one (clients use the TLS
    /// listener; nginx asks `/auth`).
    pub fn deployment(&self) -> Deployment<'_> {
        Deployment {
            h: &self.h,
            host: &self.tls,
            regauth: &self.regauth_tcp,
            token_auth: false,
        }
    }

    /// A request to nginx's plain-HTTP listener.
    pub fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        http(&self.plain, method, target, headers, b"")
            .unwrap_or_else(|e| panic!("{method} {target} through nginx: {e}"))
    }

    /// The line of the upstream's log for `method path` (waits for it).
    pub fn upstream_saw(&self, method: &str, path: &str) -> String {
        self.h
            .wait_for_log_line("upstream-view", &format!("\"{method} {path} "))
    }
}

/// The text of a shipped `nginx/` file.
pub fn shipped_nginx(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("nginx")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Replaces `from`, which must occur in the shipped `file`.
pub fn rewrite(text: &str, file: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "nginx/{file} no longer contains {from:?}; update tests/support/site.rs"
    );
    text.replace(from, to)
}

/// A shipped example site rewritten for the test: includes from the work tree, the
/// upstream's socket in the temp dir, loopback listeners, the test certificate.
pub fn rewrite_site(
    h: &Harness,
    file: &str,
    tls_port: u16,
    plain_port: u16,
    socket: &Path,
    access_log: &str,
) -> String {
    let upstream = rewrite(
        &shipped_nginx("regauth-upstream.conf"),
        "regauth-upstream.conf",
        "unix:/run/regauth/regauth.sock",
        &format!("unix:{}", socket.display()),
    );
    let upstream = h.write(&format!("nginx/{file}-regauth-upstream.conf"), upstream);
    let nginx_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx");
    let edits = [
        (
            "/etc/nginx/regauth/regauth-upstream.conf".to_owned(),
            upstream.display().to_string(),
        ),
        (
            "/etc/nginx/regauth/".to_owned(),
            format!("{}/", nginx_dir.display()),
        ),
        ("    listen [::]:443 ssl http2;\n".to_owned(), String::new()),
        (
            "listen 443 ssl http2;".to_owned(),
            format!("listen 127.0.0.1:{tls_port} ssl http2;\n    listen 127.0.0.1:{plain_port};"),
        ),
        (
            "/etc/ssl/certs/registry.example.com.pem".to_owned(),
            h.file("tls.crt").display().to_string(),
        ),
        (
            "/etc/ssl/private/registry.example.com.key".to_owned(),
            h.file("tls.key").display().to_string(),
        ),
        (
            format!("/var/log/nginx/{access_log}"),
            h.log_path(&format!("{file}-access")).display().to_string(),
        ),
    ];
    let mut text = shipped_nginx(file);
    for (from, to) in &edits {
        text = rewrite(&text, file, from, to);
    }
    text
}

//! The attack corpus (issue 8 item 7): every attack tried against regauth, by name, with
//! the answer it must get, run against the real binary. A regression fails here under the
//! attack's name.
//!
//! One regauth serves all of them: token mode on an untrusted TCP listener, and a trusted
//! unix socket (as nginx would use) that believes a front proxy's user header. The ACL
//! protects `release-*` tags of `eve/x`, gives every account its own `${account}/**`
//! namespace, staff everything, and anonymous callers `public/**`. Each table row says what was sent and what must come back; rows
//! marked "held" were refused before this suite existed, the others name the fix.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use regauth::keys::SigningKey;
use regauth::token::{self, AccessClaims, RefreshClaims};
use serde_json::{json, Value};
use support::*;

const SERVICE: &str = "registry.test";
const ISSUER: &str = "regauth-attacks";
const PROXY_USER_HEADER: &str = "X-Authenticated-User";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Site {
    h: Harness,
    tcp: Endpoint,
    trusted: Endpoint,
    key: SigningKey,
    stranger: SigningKey,
}

impl Site {
    fn start() -> Site {
        let mut h = Harness::new("attacks");
        let key = test_signing_key(&h, "token");
        let stranger = test_signing_key(&h, "stranger");
        let addr = reserve_tcp();
        let socket = h.file("trusted.sock");
        let config = json!({
            "service": SERVICE,
            "issuer": ISSUER,
            "realm": "https://registry.test/token",
            "listen": [
                addr,
                { "address": format!("unix:{}", socket.display()), "trusted": true },
            ],
            "token": { "algorithm": "ES256", "private_key": "token.key", "certificate": "token.crt" },
            "users": {
                "alice": { "password": hash_password("alice-pw"), "groups": ["staff"] },
                "eve": { "password": hash_password("eve-pw") },
            },
            "acl": [
                { "name": "eve/x", "tags": ["release-*"], "actions": ["pull"] },
                { "account": "*", "name": "${account}/**", "actions": ["pull", "push", "delete"] },
                { "group": "staff", "actions": ["pull", "push", "delete"] },
                { "name": "public/**", "actions": ["pull"] },
            ],
            "auth": { "trusted_user_header": PROXY_USER_HEADER },
        });
        let tcp = Endpoint::Tcp(addr);
        start_regauth(&mut h, &config, &tcp);
        Site {
            h,
            tcp,
            trusted: Endpoint::Unix(socket),
            key,
            stranger,
        }
    }

    /// Claims on repositories `(name, actions)`.
    fn claims(&self, sub: &str, access: &[(&str, &[&str])]) -> AccessClaims {
        let access: Vec<_> = access
            .iter()
            .map(|(name, actions)| ("repository", *name, *actions))
            .collect();
        access_claims(ISSUER, SERVICE, sub, &access)
    }

    fn sign(&self, claims: &AccessClaims) -> String {
        token::sign(&self.key, claims).unwrap()
    }

    fn send(&self, probe: &Probe) -> Response {
        match probe {
            Probe::Auth {
                method,
                uri,
                bearer,
                headers,
            } => {
                let authorization = bearer.as_ref().map(|token| format!("Bearer {token}"));
                let mut all = vec![("X-Original-Method", *method), ("X-Original-URI", uri)];
                all.extend(
                    authorization
                        .iter()
                        .map(|value| ("Authorization", value.as_str())),
                );
                all.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
                get(&self.tcp, "/auth", &all)
            }
            Probe::ProxyUser { user, method, uri } => get(
                &self.trusted,
                "/auth",
                &[
                    ("X-Original-Method", method),
                    ("X-Original-URI", uri),
                    (PROXY_USER_HEADER, user),
                ],
            ),
            Probe::TokenGet { query, basic } => {
                let authorization = basic.map(|(user, password)| basic_auth(user, password));
                let headers: Vec<(&str, &str)> = authorization
                    .iter()
                    .map(|value| ("Authorization", value.as_str()))
                    .collect();
                get(&self.tcp, &format!("/token?{query}"), &headers)
            }
            Probe::TokenPost { body } => http(
                &self.tcp,
                "POST",
                "/token",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body,
            )
            .expect("POST /token"),
        }
    }
}

/// What an attack sends.
enum Probe {
    /// nginx's subrequest to `/auth` on the untrusted TCP listener, with a bearer token.
    Auth {
        method: &'static str,
        uri: String,
        bearer: Option<String>,
        headers: Vec<(&'static str, String)>,
    },
    /// A subrequest on the trusted socket naming the user in the front proxy's header.
    ProxyUser {
        user: &'static str,
        method: &'static str,
        uri: String,
    },
    /// `GET /token?query`, optionally with Basic credentials.
    TokenGet {
        query: String,
        basic: Option<(&'static str, &'static str)>,
    },
    /// `POST /token` with a form body.
    TokenPost { body: Vec<u8> },
}

/// What an attack must get back.
struct Expect {
    status: u16,
    /// Text the answer must contain (in the body or the challenge).
    says: Option<&'static str>,
}

struct Attack {
    name: &'static str,
    probe: Probe,
    expect: Expect,
}

fn expect(status: u16, says: Option<&'static str>) -> Expect {
    Expect { status, says }
}

fn auth(method: &'static str, uri: impl Into<String>, bearer: &str) -> Probe {
    Probe::Auth {
        method,
        uri: uri.into(),
        bearer: Some(bearer.to_owned()),
        headers: Vec::new(),
    }
}

/// Every attack, with its expected answer.
fn corpus(site: &Site) -> Vec<Attack> {
    // eve may pull and push her own repository, nothing else.
    let eve = site.sign(&site.claims("eve", &[("eve/x", &["pull", "push"])]));
    let mount = format!("/v2/eve/x/blobs/uploads/?mount={DIGEST}");
    let genuine_claims = site.claims("eve", &[("eve/x", &["pull", "push"])]);
    let genuine = site.sign(&genuine_claims);
    let alg_none = alg_none_forgery(&genuine, &site.key.kid);
    let certificate = std::fs::read(site.h.file("token.crt")).unwrap();
    let hs256 = hs256_forgery(&genuine_claims, &site.key.kid, &certificate);
    let mut expired = genuine_claims.clone();
    expired.exp = now() - 120;
    let mut other_audience = genuine_claims.clone();
    other_audience.aud = "other.registry".into();
    let mut other_issuer = genuine_claims.clone();
    other_issuer.iss = "someone-else".into();
    let refresh = token::sign(
        &site.key,
        &RefreshClaims {
            iss: ISSUER.into(),
            sub: "eve".into(),
            aud: token::refresh_audience(SERVICE),
            exp: now() + 300,
            iat: now(),
            jti: token::new_jti(),
            typ: "refresh".into(),
            credential: "x".into(),
        },
    )
    .unwrap();
    let forged_line =
        "2026-01-01T00:00:00.000000Z  INFO regauth::audit: token issued outcome=\"allow\"";

    let denied = |says| expect(403, Some(says));
    vec![
        // --- Parser differentials (issue 8 item 1) -----------------------------------
        Attack {
            name: "semicolon_hides_mount_source",
            probe: auth("POST", format!("{mount};from=alice/private"), &eve),
            expect: denied("';'"),
        },
        Attack {
            name: "semicolon_after_another_parameter_hides_mount_source",
            probe: auth("POST", format!("{mount}&x=1;from=alice/private"), &eve),
            expect: denied("';'"),
        },
        Attack {
            name: "semicolon_on_a_read_endpoint",
            probe: auth("GET", "/v2/eve/x/tags/list?n=1;from=alice/private", &eve),
            expect: denied("';'"),
        },
        Attack {
            name: "repeated_from_go_reads_first_django_last",
            probe: auth(
                "POST",
                format!("{mount}&from=eve/x&from=alice/private"),
                &eve,
            ),
            expect: denied("more than once"),
        },
        Attack {
            name: "percent_encoded_key_repeats_from",
            probe: auth(
                "POST",
                format!("{mount}&from=eve/x&%66rom=alice/private"),
                &eve,
            ),
            expect: denied("more than once"),
        },
        Attack {
            name: "repeated_mount",
            probe: auth("POST", format!("{mount}&mount={DIGEST}&from=eve/x"), &eve),
            expect: denied("more than once"),
        },
        Attack {
            name: "invalid_escape_go_drops_the_pair",
            probe: auth("POST", format!("{mount}&from=eve/x&x=%zz"), &eve),
            expect: denied("percent-encoding"),
        },
        Attack {
            name: "key_not_utf8_after_decoding",
            probe: auth("POST", format!("{mount}&from%FF=alice/private"), &eve),
            expect: denied("UTF-8"),
        },
        Attack {
            name: "nul_in_from_key",
            probe: auth("POST", format!("{mount}&from%00=alice/private"), &eve),
            expect: denied("control character"),
        },
        Attack {
            name: "crlf_in_query_value",
            probe: auth("GET", "/v2/eve/x/tags/list?last=a%0D%0Ab", &eve),
            expect: denied("control character"),
        },
        Attack {
            name: "backslash_in_query",
            probe: auth("POST", format!("{mount}&from=alice\\private"), &eve),
            expect: denied("backslash"),
        },
        Attack {
            name: "plus_as_space_in_mount_source_held",
            probe: auth("POST", format!("{mount}&from=alice+private"), &eve),
            expect: denied("mount source"),
        },
        Attack {
            name: "encoded_slash_in_mount_source_needs_pull_on_it_held",
            probe: auth("POST", format!("{mount}&from=alice%2Fprivate"), &eve),
            expect: expect(401, Some("repository:alice/private:pull")),
        },
        Attack {
            name: "form_body_carries_mount_source_held",
            probe: Probe::Auth {
                method: "POST",
                uri: "/v2/eve/x/blobs/uploads/".into(),
                bearer: Some(eve.clone()),
                headers: vec![(
                    "Content-Type",
                    "application/x-www-form-urlencoded".to_owned(),
                )],
            },
            expect: denied("bodies are refused"),
        },
        Attack {
            name: "fragment_in_original_uri_held",
            probe: auth(
                "GET",
                "/v2/eve/x/manifests/latest#/../../alice/private",
                &eve,
            ),
            expect: denied("fragment"),
        },
        Attack {
            name: "token_query_semicolon",
            probe: Probe::TokenGet {
                query: format!("service={SERVICE};scope=repository:alice/private:pull"),
                basic: Some(("eve", "eve-pw")),
            },
            expect: expect(400, Some("';'")),
        },
        Attack {
            name: "token_query_invalid_escape",
            probe: Probe::TokenGet {
                query: "scope=repository%3Aeve%2Fx%3Apull%zz".into(),
                basic: Some(("eve", "eve-pw")),
            },
            expect: expect(400, Some("percent-encoding")),
        },
        Attack {
            name: "token_form_not_utf8",
            probe: Probe::TokenPost {
                body: b"grant_type=password&username=eve%FF&password=eve-pw".to_vec(),
            },
            expect: expect(400, Some("UTF-8")),
        },
        // --- Path confusion (held) ----------------------------------------------------
        Attack {
            name: "encoded_slash_in_name_held",
            probe: auth("GET", "/v2/eve%2F..%2Falice/private/manifests/latest", &eve),
            expect: denied("percent-encoding"),
        },
        Attack {
            name: "encoded_dots_held",
            probe: auth(
                "GET",
                "/v2/eve/x/%2e%2e/%2e%2e/alice/private/manifests/latest",
                &eve,
            ),
            expect: denied("percent-encoding"),
        },
        Attack {
            name: "dot_dot_segments_held",
            probe: auth(
                "GET",
                "/v2/eve/x/../../alice/private/manifests/latest",
                &eve,
            ),
            expect: denied("'..'"),
        },
        Attack {
            name: "double_slash_held",
            probe: auth("GET", "/v2/eve//x/manifests/latest", &eve),
            expect: denied("empty segment"),
        },
        Attack {
            name: "backslash_in_path_held",
            probe: auth("GET", "/v2/eve\\..\\alice/private/manifests/latest", &eve),
            expect: denied("backslash"),
        },
        Attack {
            name: "path_parameter_held",
            probe: auth("GET", "/v2/alice/private;eve/x/manifests/latest", &eve),
            expect: denied("';'"),
        },
        Attack {
            name: "absolute_form_target_held",
            probe: auth(
                "GET",
                "http://registry/v2/alice/private/manifests/latest",
                &eve,
            ),
            expect: denied("not under /v2/"),
        },
        Attack {
            name: "upper_case_prefix_held",
            probe: auth("GET", "/V2/alice/private/manifests/latest", &eve),
            expect: denied("not under /v2/"),
        },
        Attack {
            name: "lower_case_method_held",
            probe: auth("get", "/v2/eve/x/manifests/latest", &eve),
            expect: denied("not part of the registry API"),
        },
        Attack {
            name: "missing_original_uri_header_held",
            probe: Probe::Auth {
                method: "GET",
                uri: String::new(),
                bearer: Some(eve.clone()),
                headers: Vec::new(),
            },
            expect: denied("empty"),
        },
        // --- Account names that escape their namespace (issue 8 item 5) -------------
        Attack {
            name: "proxy_user_with_slash_owns_part_of_anothers_namespace",
            probe: Probe::ProxyUser {
                user: "alice/team",
                method: "PUT",
                uri: "/v2/alice/team/app/manifests/latest".into(),
            },
            expect: denied("access denied by the ACL"),
        },
        Attack {
            name: "proxy_user_with_valid_name_keeps_its_namespace",
            probe: Probe::ProxyUser {
                user: "carol",
                method: "PUT",
                uri: "/v2/carol/app/manifests/latest".into(),
            },
            expect: expect(200, None),
        },
        // --- Log forging (issue 8 item 2) ---------------------------------------------
        Attack {
            name: "token_service_newline_forges_an_audit_line",
            probe: Probe::TokenGet {
                query: format!("service=x%0A{}", urlencode(forged_line)),
                basic: None,
            },
            expect: expect(400, Some("control character")),
        },
        Attack {
            name: "token_scope_carriage_return",
            probe: Probe::TokenGet {
                query: "scope=repository%3Apublic%2Fx%3Apull%0D".into(),
                basic: None,
            },
            expect: expect(400, Some("control character")),
        },
        // --- JWT forgery and algorithm confusion (held) -------------------------------
        Attack {
            name: "jwt_alg_none_held",
            probe: auth("GET", "/v2/eve/x/manifests/latest", &alg_none),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_hs256_keyed_with_the_public_certificate_held",
            probe: auth("GET", "/v2/eve/x/manifests/latest", &hs256),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_signed_by_an_unknown_key_held",
            probe: auth(
                "GET",
                "/v2/eve/x/manifests/latest",
                &token::sign(&site.stranger, &genuine_claims).unwrap(),
            ),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_payload_widened_after_signing_held",
            probe: auth(
                "GET",
                "/v2/alice/private/manifests/latest",
                &forge_jwt(&genuine, |claims| {
                    claims["access"][0]["name"] = json!("alice/private");
                }),
            ),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_subject_swapped_after_signing_held",
            probe: auth(
                "GET",
                "/v2/eve/x/manifests/latest",
                &forge_jwt(&genuine, |claims| claims["sub"] = json!("alice")),
            ),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_expired_held",
            probe: auth("GET", "/v2/eve/x/manifests/latest", &site.sign(&expired)),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_for_another_registry_held",
            probe: auth(
                "GET",
                "/v2/eve/x/manifests/latest",
                &site.sign(&other_audience),
            ),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_from_another_issuer_held",
            probe: auth(
                "GET",
                "/v2/eve/x/manifests/latest",
                &site.sign(&other_issuer),
            ),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "refresh_token_used_as_access_token_held",
            probe: auth("GET", "/v2/eve/x/manifests/latest", &refresh),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "jwt_with_two_dots_too_many_held",
            probe: auth("GET", "/v2/eve/x/manifests/latest", &format!("{genuine}.x")),
            expect: expect(401, Some("invalid_token")),
        },
        Attack {
            name: "genuine_token_out_of_its_scope_held",
            probe: auth("GET", "/v2/alice/private/manifests/latest", &eve),
            expect: expect(401, Some("insufficient_scope")),
        },
        // --- Tag rules at the edge (issue 12 part 3) ---------------------------------
        Attack {
            name: "protected_tag_pushed_with_a_repository_token",
            probe: auth("PUT", "/v2/eve/x/manifests/release-1", &eve),
            expect: denied("release-1\\\" of eve/x is protected"),
        },
        Attack {
            name: "protected_tag_deleted_by_tag",
            probe: auth(
                "DELETE",
                "/v2/eve/x/manifests/release-1",
                &site.sign(&site.claims("eve", &[("eve/x", &["delete"])])),
            ),
            expect: denied("is protected"),
        },
        Attack {
            name: "unprotected_tag_pushed_with_the_same_token",
            probe: auth("PUT", "/v2/eve/x/manifests/dev-1", &eve),
            expect: expect(200, None),
        },
        Attack {
            name: "genuine_token_in_scope_passes",
            probe: auth("PUT", "/v2/eve/x/manifests/latest", &eve),
            expect: expect(200, None),
        },
    ]
}

#[test]
fn every_attack_gets_its_expected_answer() {
    let site = Site::start();
    let mut failures = Vec::new();
    for attack in corpus(&site) {
        let response = site.send(&attack.probe);
        let challenge = response.header("www-authenticate").unwrap_or_default();
        let answer = format!("{} {}", response.text(), challenge);
        let status_ok = response.status == attack.expect.status;
        let says_ok = attack.expect.says.is_none_or(|text| answer.contains(text));
        if !(status_ok && says_ok) {
            failures.push(format!(
                "{}: expected {} {:?}, got {} {}",
                attack.name, attack.expect.status, attack.expect.says, response.status, answer
            ));
        }
    }
    // The forged audit line never appears as a line of its own.
    let log = site.h.log("regauth");
    if log
        .lines()
        .any(|line| line.starts_with("2026-01-01T00:00:00"))
    {
        failures
            .push("token_service_newline_forges_an_audit_line: the log holds a forged line".into());
    }
    // A refused query is logged with the reason.
    if !log.contains("Go up to 1.16") {
        failures.push("semicolon_hides_mount_source: no log line says why".into());
    }
    assert!(
        failures.is_empty(),
        "attacks not answered as expected:\n{}",
        failures.join("\n")
    );
}

/// Names that could escape their namespace never load (issue 8 item 5).
#[test]
fn config_with_an_escaping_user_name_is_refused() {
    let h = Harness::new("attacks-names");
    let hash = "$2y$10$iRxq4as0aXEICViLH46Uhu.TuA/9/2EEWcq.d5vwRDBJMy3xv1gFq";
    // A config whose users come from `source` (`users` or `htpasswd`) = `users`.
    let assert_refused = |source: &str, users: Value, what: &str| {
        let mut config = json!({
            "service": SERVICE,
            "issuer": ISSUER,
            "realm": "https://registry.test/token",
            "token": { "algorithm": "ES256", "private_key": "token.key" },
        });
        config[source] = users;
        let path = h.write("regauth.json", config.to_string());
        let out = check_config(&path);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} accepted");
        assert!(stderr.contains("path component"), "{what}: {stderr}");
    };
    for name in ["alice/team", "..", "Alice", "a*"] {
        let inline = json!({ name: { "password": hash } });
        assert_refused("users", inline, &format!("user {name:?}"));
        let line = h.write("users.htpasswd", format!("{name}:{hash}\n"));
        assert_refused("htpasswd", json!(line), &format!("htpasswd user {name:?}"));
    }
}

/// Request smuggling and framing attacks (held): hyper refuses ambiguous framing, so the
/// request hidden in the body is never answered as a request of its own.
#[test]
fn smuggling_attempts_are_refused() {
    let site = Site::start();
    let Endpoint::Tcp(addr) = &site.tcp else {
        unreachable!()
    };
    let smuggled = "GET /auth HTTP/1.1\r\nHost: x\r\nX-Original-Method: GET\r\nX-Original-URI: /v2/public/x/manifests/latest\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "content_length_and_transfer_encoding",
            format!("POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "two_different_content_lengths",
            format!("POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        (
            "obsolete_line_folding",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n{smuggled}"),
        ),
        (
            "space_before_colon",
            format!("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length : {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        (
            "transfer_encoding_not_chunked_last",
            format!("POST /token HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n{smuggled}"),
        ),
    ];
    for (name, request) in cases {
        let answers = raw_exchange(addr, request.as_bytes());
        let statuses: Vec<&str> = answers
            .lines()
            .filter(|line| line.starts_with("HTTP/1.1 "))
            .collect();
        assert!(
            statuses
                .iter()
                .all(|line| !line.starts_with("HTTP/1.1 200")),
            "{name}: the smuggled request was answered: {answers}"
        );
        assert!(
            statuses.len() <= 1,
            "{name}: more than one answer on the connection: {answers}"
        );
    }
}

/// Writes raw bytes (deliberately malformed HTTP, which no client library would send) and
/// reads what comes back until the server closes or goes quiet.
fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

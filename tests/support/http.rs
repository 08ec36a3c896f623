//! A small blocking HTTP/1.1 client (TCP or unix socket) for the tests' probes and
//! token requests, plus helpers for Basic credentials, challenges and JWTs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

/// Where an HTTP request goes.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

/// A complete response (the body is de-chunked).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): {} {}",
                self.status,
                self.text()
            )
        })
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn http(
    ep: &Endpoint,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let host = match ep {
        Endpoint::Tcp(addr) => addr.as_str(),
        Endpoint::Unix(_) => "localhost",
    };
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        let _ = write!(req, "Content-Length: {}\r\n", body.len());
    }
    req.push_str("\r\n");
    let mut raw = Vec::new();
    let timeout = Some(Duration::from_secs(30));
    match ep {
        Endpoint::Tcp(addr) => {
            let mut s = TcpStream::connect(addr)?;
            s.set_read_timeout(timeout)?;
            s.write_all(req.as_bytes())?;
            s.write_all(body)?;
            s.read_to_end(&mut raw)?;
        }
        Endpoint::Unix(path) => {
            let mut s = UnixStream::connect(path)?;
            s.set_read_timeout(timeout)?;
            s.write_all(req.as_bytes())?;
            s.write_all(body)?;
            s.read_to_end(&mut raw)?;
        }
    }
    parse_response(&raw, method == "HEAD")
}

/// Like [`http`], for a GET, panicking on I/O errors.
pub fn get(ep: &Endpoint, target: &str, headers: &[(&str, &str)]) -> Response {
    http(ep, "GET", target, headers, b"").unwrap_or_else(|e| panic!("GET {target} ({ep:?}): {e}"))
}

fn parse_response(raw: &[u8], head_only: bool) -> io::Result<Response> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of response head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("non-UTF-8 head"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(status_line))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let find = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let body = if head_only || status == 204 || status == 304 {
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(len) = find("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..len).ok_or_else(|| bad("short body"))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// An `Authorization: Basic` header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn urlencode(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// Parses the parameters of a `WWW-Authenticate` challenge:
/// `Bearer realm="r",service="s"` → `("bearer", {realm: r, service: s})`.
pub fn parse_challenge(value: &str) -> (String, BTreeMap<String, String>) {
    let (scheme, mut rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let (val, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let close = quoted.find('"').unwrap_or(quoted.len());
                (&quoted[..close], quoted.get(close + 1..).unwrap_or(""))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key.trim().to_ascii_lowercase(), val.to_owned());
        rest = after;
    }
    (scheme.to_ascii_lowercase(), params)
}

/// The claims of a JWT (its middle segment), without checking anything.
pub fn jwt_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("JWT has three segments");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWT payload is unpadded base64url");
    serde_json::from_slice(&bytes).expect("JWT payload is JSON")
}

/// Re-encodes a JWT with changed claims but the original header and signature: the result
/// looks like a real token but its signature no longer matches.
pub fn forge_jwt(token: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let mut claims = jwt_claims(token);
    edit(&mut claims);
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&claims).expect("claims to JSON"));
    format!("{}.{payload}.{}", parts[0], parts[2])
}

// ---------------------------------------------------------------------------------------
// docker-registry 2.8

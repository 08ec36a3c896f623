//! A blocking HTTP/1.1 client over hyper (TCP or unix socket) for the tests' probes and
//! token requests, plus helpers for Basic credentials, challenges and JWTs.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Where an HTTP request goes.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// `host:port`.
    Tcp(String),
    /// A unix socket path.
    Unix(PathBuf),
}

/// A complete response.
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

/// Sends one request and reads the whole response, through hyper's client so
/// that no HTTP is framed or parsed by hand. A `Transfer-Encoding: chunked`
/// header asks for the body to be sent chunked (as podman sends its forms).
pub fn http(
    ep: &Endpoint,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let host = match ep {
        Endpoint::Tcp(addr) => addr.as_str(),
        Endpoint::Unix(_) => "localhost",
    };
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("Host", host);
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("transfer-encoding") {
            // From bytes, so that tests can send what a hostile client would
            // (non-ASCII header values are legal obs-text on the wire).
            let value = hyper::header::HeaderValue::from_bytes(value.as_bytes())
                .map_err(io::Error::other)?;
            request = request.header(*name, value);
        }
    }
    let body = Bytes::copy_from_slice(body);
    let body = if chunked {
        UnsizedBody(Some(body)).boxed()
    } else {
        Full::new(body).map_err(|never| match never {}).boxed()
    };
    let request = request.body(body).map_err(io::Error::other)?;
    runtime.block_on(async {
        let exchange = async {
            match ep {
                Endpoint::Tcp(addr) => {
                    send(tokio::net::TcpStream::connect(addr).await?, request).await
                }
                Endpoint::Unix(path) => {
                    send(tokio::net::UnixStream::connect(path).await?, request).await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer in 30 s"))?
    })
}

async fn send<S>(
    stream: S,
    request: hyper::Request<BoxBody<Bytes, io::Error>>,
) -> io::Result<Response>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(io::Error::other)?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A one-frame body of unknown length, so hyper sends it chunked.
struct UnsizedBody(Option<Bytes>);

impl hyper::body::Body for UnsizedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, io::Error>>> {
        std::task::Poll::Ready(self.0.take().map(|data| Ok(hyper::body::Frame::data(data))))
    }
}

/// Like [`http`], for a GET, panicking on I/O errors.
pub fn get(ep: &Endpoint, target: &str, headers: &[(&str, &str)]) -> Response {
    http(ep, "GET", target, headers, b"").unwrap_or_else(|e| panic!("GET {target} ({ep:?}): {e}"))
}

/// An `Authorization: Basic` header value.
pub fn basic_auth(user: &str, password: &str) -> String {
    let b64 = data_encoding::BASE64.encode(format!("{user}:{password}").as_bytes());
    format!("Basic {b64}")
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
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
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(payload.as_bytes())
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
    let payload = data_encoding::BASE64URL_NOPAD
        .encode(&serde_json::to_vec(&claims).expect("claims to JSON"));
    format!("{}.{payload}.{}", parts[0], parts[2])
}

// ---------------------------------------------------------------------------------------
// docker-registry 2.8

/// `GET <path>?service=..&scope=..` (one `scope=` per scope, as skopeo sends them), with
/// Basic credentials or anonymous. Returns the raw response.
pub fn token_request(
    ep: &Endpoint,
    path: &str,
    service: &str,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
) -> Response {
    let mut target = format!("{path}?service={}", urlencode(service));
    if let Some((user, _)) = creds {
        let _ = write!(target, "&account={}", urlencode(user));
    }
    for scope in scopes {
        let _ = write!(target, "&scope={}", urlencode(scope));
    }
    let auth = creds.map(|(u, p)| basic_auth(u, p));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    get(ep, &target, &headers)
}

/// Like [`token_request`], but asserts a 200 with the fields every client needs, and
/// returns the token.
pub fn fetch_token(
    ep: &Endpoint,
    path: &str,
    service: &str,
    creds: Option<(&str, &str)>,
    scopes: &[&str],
) -> String {
    let r = token_request(ep, path, service, creds, scopes);
    let who = creds.map_or("anonymous", |(u, _)| u);
    assert_eq!(r.status, 200, "token for {who} {scopes:?}: {}", r.text());
    let body = r.json();
    let token = body["token"].as_str().expect("`token` in the answer");
    assert_eq!(
        body["access_token"].as_str(),
        Some(token),
        "`access_token` must equal `token`: {body}"
    );
    assert!(
        body["expires_in"].as_u64().is_some_and(|s| s >= 60),
        "`expires_in` must be an integer >= 60: {body}"
    );
    token.to_owned()
}

/// The actions a token's `access` claim grants on `type:name` (empty when none).
pub fn granted(claims: &serde_json::Value, kind: &str, name: &str) -> Vec<String> {
    let mut actions: Vec<String> = claims["access"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == kind && e["name"] == name)
        .flat_map(|e| e["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    actions.sort();
    actions.dedup();
    actions
}

/// `POST <path>` with the OAuth2 password grant form (as containerd sends it first), the
/// body sent with a Content-Length or, when `chunked_body`, chunked (as podman sends its
/// refresh-token POST).
pub fn password_grant(
    ep: &Endpoint,
    path: &str,
    service: &str,
    (user, password): (&str, &str),
    scope: &str,
    chunked_body: bool,
) -> Response {
    let form = format!(
        "grant_type=password&client_id=regauth-e2e&username={}&password={}&service={}&scope={}",
        urlencode(user),
        urlencode(password),
        urlencode(service),
        urlencode(scope),
    );
    let mut headers = vec![(
        "Content-Type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    if chunked_body {
        headers.push(("Transfer-Encoding", "chunked"));
    }
    http(ep, "POST", path, &headers, form.as_bytes()).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// The OAuth2 password grant on `ep`'s `/token` answers 200 with an `access_token` that
/// grants exactly `expected` on repository `repo`, whether the form is sent with a
/// Content-Length or chunked.
pub fn assert_password_grant(
    ep: &Endpoint,
    service: &str,
    creds: (&str, &str),
    repo: &str,
    expected: &[&str],
) {
    let scope = format!("repository:{repo}:pull,push");
    for chunked_body in [false, true] {
        let r = password_grant(ep, "/token", service, creds, &scope, chunked_body);
        assert_eq!(
            r.status,
            200,
            "POST /token (chunked: {chunked_body}): {}",
            r.text()
        );
        let issued = r.json()["access_token"].as_str().map(str::to_owned);
        let issued = issued.unwrap_or_else(|| panic!("no access_token: {}", r.text()));
        assert_eq!(granted(&jwt_claims(&issued), "repository", repo), expected);
    }
}

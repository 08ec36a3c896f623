//! HTTP: the router, and the one place where an [`ApiError`] becomes a
//! status, headers and a JSON body. Handlers return values; none of them
//! builds an error response by hand.

mod auth_endpoint;
pub mod authorization;
mod client;
mod health;
mod params;
mod token_endpoint;
mod token_request;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::identity::IdentityError;
use crate::metrics::Handles;
use crate::state::State;
use client::client_address;

/// Response body type of every handler.
pub type Body = Full<Bytes>;

/// What the server knows about the connection a request came in on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Peer address for logs (`unix` for unix sockets).
    pub peer: String,
    /// Whether the listener is trusted to carry a front proxy's user header.
    pub trusted: bool,
    /// The listener's front proxy: which headers describe the original
    /// request to `/auth`.
    pub front: crate::config::Front,
}

/// Every way a request can fail, with what the client is told.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong; `code` is a Distribution errcode.
    #[error("{message}")]
    BadRequest {
        /// errcode value, e.g. `MISSING_REQUIRED_FIELD`.
        code: &'static str,
        /// What is wrong, for the client.
        message: String,
    },
    /// Credentials missing, wrong, or not good enough; `challenge` is the
    /// `WWW-Authenticate` value that tells the client what to do.
    #[error("{message}")]
    Unauthorized {
        /// For the client.
        message: String,
        /// The `WWW-Authenticate` header value.
        challenge: String,
    },
    /// No credential could help.
    #[error("{message}")]
    Forbidden {
        /// For the client.
        message: String,
    },
    /// No such endpoint.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: &'static str,
    },
    /// The body is larger than the endpoint accepts.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The body did not arrive in time.
    #[error("request body not received in time")]
    RequestTimeout,
    /// The caller must slow down (login limiter, full password-check queue).
    #[error("{message}")]
    TooManyRequests {
        /// For the client.
        message: String,
        /// Value of the `Retry-After` header.
        retry_after: Duration,
    },
    /// A source of identities cannot answer now (a directory or an issuer
    /// is down).
    #[error("{message}")]
    Unavailable {
        /// For the client.
        message: String,
        /// Value of the `Retry-After` header.
        retry_after: Duration,
    },
    /// Our fault; the detail goes to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized { .. } => "UNAUTHORIZED",
            ApiError::Forbidden { .. } => "DENIED",
            ApiError::NotFound => "NOT_FOUND",
            ApiError::MethodNotAllowed { .. } => "UNSUPPORTED",
            ApiError::PayloadTooLarge => "SIZE_INVALID",
            ApiError::RequestTimeout => "TIMEOUT",
            ApiError::TooManyRequests { .. } => "TOOMANYREQUESTS",
            ApiError::Unavailable { .. } => "UNAVAILABLE",
            ApiError::Internal(_) => "UNKNOWN",
        }
    }

    /// The one mapping of identity refusals to answers: a wrong credential
    /// is a 401 carrying `challenge`, a limited caller a 429 and an
    /// unavailable source a 503 (both with `Retry-After`), our own failure
    /// a 500.
    pub fn from_identity(error: IdentityError, challenge: String) -> ApiError {
        match error {
            IdentityError::WrongCredential { reason, .. } => ApiError::Unauthorized {
                message: reason.to_owned(),
                challenge,
            },
            IdentityError::Limited { retry_after } => ApiError::TooManyRequests {
                message: error.to_string(),
                retry_after,
            },
            IdentityError::Unavailable { retry_after, .. } => ApiError::Unavailable {
                message: error.to_string(),
                retry_after,
            },
            IdentityError::Internal(_) => ApiError::Internal(error.to_string()),
        }
    }

    /// The error as the client sees it: the Distribution errcode envelope,
    /// which docker, containerd and containers/image all parse.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({ "errors": [{ "code": self.code(), "message": message }] });
        let mut response = json_response(status, &body);
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized { challenge, .. } => match HeaderValue::from_str(challenge) {
                Ok(value) => {
                    headers.insert(WWW_AUTHENTICATE, value);
                }
                // Challenges are built from validated config values and
                // scope text, so this is a bug; say so rather than answer
                // a 401 that tells the client nothing without a trace.
                Err(_) => tracing::error!(
                    challenge = ?crate::scope::excerpt(challenge),
                    "WWW-Authenticate challenge is not a valid header value; answered without it"
                ),
            },
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::TooManyRequests { retry_after, .. }
            | ApiError::Unavailable { retry_after, .. } => {
                headers.insert(RETRY_AFTER, retry_after_value(*retry_after));
            }
            _ => {}
        }
        response
    }
}

/// `Retry-After` in whole seconds, rounded up: retrying early only earns
/// another refusal.
fn retry_after_value(retry_after: Duration) -> HeaderValue {
    let seconds = retry_after
        .as_secs()
        .saturating_add(u64::from(retry_after.subsec_nanos() > 0));
    HeaderValue::from(seconds)
}

/// The challenge for Basic credentials, from the token endpoint and from
/// `/auth` in Basic mode alike.
pub fn basic_challenge(service: &str) -> String {
    format!("Basic realm=\"{service}\"")
}

/// A JSON response that no cache may keep (it may hold a token).
pub fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    // Plain structs and `Value`s always serialize; should one ever fail,
    // an empty object (and a log line) beats a panic.
    let bytes = serde_json::to_vec(body).unwrap_or_else(|error| {
        tracing::error!(%error, "a response body did not serialize");
        b"{}".to_vec()
    });
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Which of regauth's handlers a request goes to; also the `endpoint`
/// metric label.
#[derive(Clone, Copy)]
enum Handler {
    Token,
    Auth,
    Health,
    Metrics,
    Unknown,
}

impl Handler {
    fn label(self) -> &'static str {
        match self {
            Handler::Token => "token",
            Handler::Auth => "auth",
            Handler::Health => "healthz",
            Handler::Metrics => "metrics",
            Handler::Unknown => "unknown",
        }
    }
}

/// `regauth_http_requests_total` by endpoint and status: room for every
/// endpoint with the statuses it commonly answers.
static REQUESTS: Handles<(&str, u16), metrics::Counter, 32> = Handles::new();

/// `regauth_http_request_seconds` by endpoint.
static LATENCY: Handles<&str, metrics::Histogram, 5> = Handles::new();

/// Serves one request. Never fails: every error is an answer.
pub async fn handle(
    state: Arc<State>,
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let snapshot = state.snapshot();
    let path = request.uri().path();
    let token_path = snapshot.config.token_path.as_str();
    let handler = if path == token_path || path.strip_suffix('/') == Some(token_path) {
        Handler::Token
    } else if path == snapshot.config.auth.path {
        Handler::Auth
    } else if path == "/healthz" {
        Handler::Health
    } else if path == "/metrics" {
        Handler::Metrics
    } else {
        Handler::Unknown
    };
    let method = request.method().clone();
    // The token endpoint's futures (password checks, directory binds,
    // signing) are boxed: inline they would make every request's future,
    // which hyper moves on each request, several KiB larger.
    let result = match (handler, &method) {
        (Handler::Token, &Method::GET) => {
            Box::pin(token_endpoint::get(
                &state,
                &snapshot,
                &connection,
                &request,
            ))
            .await
        }
        (Handler::Token, &Method::POST) => {
            Box::pin(token_endpoint::post(
                &state,
                &snapshot,
                &connection,
                request,
            ))
            .await
        }
        (Handler::Token, _) => Err(ApiError::MethodNotAllowed { allow: "GET, POST" }),
        (Handler::Auth, &Method::GET | &Method::HEAD) => {
            Ok(auth_endpoint::handle(&state, &snapshot, &connection, &request).await)
        }
        (Handler::Auth, _) => Err(ApiError::MethodNotAllowed { allow: "GET" }),
        (Handler::Health, &Method::GET | &Method::HEAD) => Ok(health::healthz(&state, &snapshot)),
        (Handler::Metrics, &Method::GET | &Method::HEAD) => Ok(health::metrics(&state)),
        (Handler::Health | Handler::Metrics, _) => {
            Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" })
        }
        (Handler::Unknown, _) => Err(ApiError::NotFound),
    };
    let response = result.unwrap_or_else(|error| {
        // Endpoints log the outcome of every request they parse; what comes
        // back as an error never got that far. Internal errors are logged,
        // with their cause, as they become a response.
        if !matches!(error, ApiError::Internal(_)) {
            tracing::warn!(
                endpoint = handler.label(),
                peer = %connection.peer,
                %method,
                %error,
                "request refused"
            );
        }
        error.into_response()
    });
    let status = response.status();
    REQUESTS.record(
        (handler.label(), status.as_u16()),
        || {
            metrics::counter!(
                "regauth_http_requests_total",
                "endpoint" => handler.label(),
                "status" => status.as_str().to_owned()
            )
        },
        |counter| counter.increment(1),
    );
    LATENCY.record(
        handler.label(),
        || metrics::histogram!("regauth_http_request_seconds", "endpoint" => handler.label()),
        |histogram| histogram.record(started.elapsed().as_secs_f64()),
    );
    Ok(response)
}

/// The current unix time in seconds; the one clock read of a request,
/// handed to the pure code below.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn identity_refusals_map_to_401_429_503_and_500() {
        let challenge = || basic_challenge("reg");
        let wrong =
            ApiError::from_identity(IdentityError::wrong("nope"), challenge()).into_response();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            header(&wrong, "www-authenticate"),
            Some("Basic realm=\"reg\"")
        );

        let limited = IdentityError::Limited {
            retry_after: Duration::from_millis(2500),
        };
        let limited = ApiError::from_identity(limited, challenge()).into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&limited, "retry-after"), Some("3"));

        let down = IdentityError::Unavailable {
            origin: "ldap",
            detail: "connection refused".into(),
            retry_after: Duration::from_secs(10),
        };
        let down = ApiError::from_identity(down, challenge()).into_response();
        assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&down, "retry-after"), Some("10"));

        let ours = IdentityError::Internal("bcrypt task failed".into());
        let ours = ApiError::from_identity(ours, challenge()).into_response();
        assert_eq!(ours.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_client_address_is_the_proxy_s_word_only_on_trusted_listeners() {
        use crate::client_address::ClientAddress;
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("10.0.0.9, 192.0.2.7"),
        );
        let trusted = Connection {
            peer: "127.0.0.1:40000".into(),
            trusted: true,
            front: crate::config::Front::Nginx,
        };
        let untrusted = Connection {
            trusted: false,
            ..trusted.clone()
        };
        assert_eq!(
            client_address(&trusted, &headers),
            ClientAddress::ip("192.0.2.7".parse().unwrap())
        );
        assert_eq!(
            client_address(&untrusted, &headers),
            ClientAddress::ip("127.0.0.1".parse().unwrap())
        );
        let unix = Connection {
            peer: "unix".into(),
            trusted: false,
            front: crate::config::Front::Nginx,
        };
        let nothing = http::HeaderMap::new();
        assert_eq!(client_address(&unix, &nothing), ClientAddress::Local);
    }
}

//! The token endpoint: `GET` (Distribution token spec) and the OAuth2
//! `POST` form (password and refresh_token grants), as one pipeline:
//! parse the request → authenticate (the identity seam) → authorize
//! ([`decide::token`]) → sign → answer, with one outcome logged and counted
//! once, and the clock read once.

use std::net::IpAddr;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::authorization::{self, Authorization};
use super::params::Params;
use super::{basic_challenge, client_address, json_response, unix_now, ApiError, Body, Connection};
use crate::decide::token::{self as decide, Grant, Refresh, RefreshAsked};
use crate::identity::{self, Credentials, Identity, IdentityError};
use crate::media_type::{self, FORM_MEDIA_TYPES};
use crate::scope::ResourceScope;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::token::{self, AccessClaims, AccessEntry, RefreshClaims};

/// Largest POST form accepted; real forms are well under 1 KiB, but many
/// scopes can add up.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// `GET /token?service=..&scope=..[&offline_token=true]` with Basic
/// credentials or none.
pub async fn get(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let now = unix_now();
    let params = Params::parse(request.uri().query().unwrap_or("").as_bytes())?;
    let authorization = authorization::parse(request.headers());
    let parsed = parse_get(
        snapshot,
        &params,
        &authorization,
        client(connection, request),
    )?;
    serve(state, snapshot, connection, parsed, now).await
}

/// OAuth2 `POST /token` (form): `grant_type=password` or `refresh_token`.
pub async fn post(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let now = unix_now();
    let client = client(connection, &request);
    let body = read_form(snapshot, request).await?;
    let params = Params::parse(&body)?;
    let parsed = parse_post(snapshot, &params, client)?;
    serve(state, snapshot, connection, parsed, now).await
}

/// A token request, parsed: what the caller presents, and what it asks for.
struct TokenRequest<'a> {
    /// What proves who asks.
    proof: Proof<'a>,
    /// How it was presented, for the log.
    method: AuthMethod,
    /// The access asked for.
    requested: Vec<ResourceScope>,
    /// The refresh token asked for.
    refresh: RefreshAsked<'a>,
    /// The OAuth2 form also answers with the granted `scope`.
    oauth_form: bool,
    /// `client_id`, for the log.
    client_id: &'a str,
    /// The client's address, for the identity seam.
    client: Option<IpAddr>,
}

/// What proves who asks.
enum Proof<'a> {
    /// Nothing: anonymous.
    Nothing,
    /// A user name and password.
    Password { user: &'a str, password: &'a str },
    /// A refresh token regauth issued.
    RefreshToken(&'a str),
}

/// How the caller authenticated: the `grant` field of the token log.
#[derive(Clone, Copy)]
enum AuthMethod {
    /// No credentials.
    Anonymous,
    /// `GET` with Basic credentials.
    Basic,
    /// `GET` with a refresh token as the password of an empty user name
    /// (containerd's fallback after a refused POST).
    BasicRefreshToken,
    /// `POST` with `grant_type=password`.
    Password,
    /// `POST` with `grant_type=refresh_token`.
    RefreshToken,
}

impl AuthMethod {
    fn label(self) -> &'static str {
        match self {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Basic => "basic",
            AuthMethod::BasicRefreshToken => "basic_refresh_token",
            AuthMethod::Password => "password",
            AuthMethod::RefreshToken => "refresh_token",
        }
    }
}

/// How one token request ended.
enum Outcome {
    /// A token, and perhaps a refresh token, for the answer.
    Issued(Issued),
    /// Who asks could not be established.
    Refused(IdentityError),
}

/// A signed token and what it says, for the log and the answer.
struct Issued {
    /// The token's subject; empty for anonymous.
    account: String,
    /// Which source vouched (and which API token or issuer), for the log.
    source: String,
    /// The access the token carries.
    granted: Vec<ResourceScope>,
    /// The signed access token.
    access_token: String,
    /// The refresh token of the answer, if any.
    refresh_token: Option<String>,
}

/// The pipeline every parsed request goes through.
async fn serve(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: TokenRequest<'_>,
    now: i64,
) -> Result<Response<Body>, ApiError> {
    let outcome = match authenticate(state, snapshot, &request, now).await {
        Ok(identity) => {
            let grant = decide::grant(
                identity.as_ref(),
                &request.requested,
                request.refresh,
                &snapshot.acl,
            );
            Outcome::Issued(sign(snapshot, identity.as_ref(), grant, now)?)
        }
        Err(error) => Outcome::Refused(error),
    };
    audit(connection, &request, &outcome);
    Ok(answer(snapshot, &request, outcome, now))
}

fn client(connection: &Connection, request: &Request<Incoming>) -> Option<IpAddr> {
    client_address(connection, request.headers())
}

fn parse_get<'a>(
    snapshot: &Snapshot,
    params: &'a Params,
    authorization: &'a Authorization,
    client: Option<IpAddr>,
) -> Result<TokenRequest<'a>, ApiError> {
    params.check_service(snapshot)?;
    let offline = match params.single("offline_token")? {
        None | Some("") => false,
        Some(value) => parse_go_bool(value).ok_or_else(|| ApiError::BadRequest {
            code: "BAD_TOKEN_OPTION",
            message: format!("`offline_token` must be true or false, not `{value}`"),
        })?,
    };
    let requested = params.scopes()?;
    let (proof, method) = match authorization {
        Authorization::Nothing => (Proof::Nothing, AuthMethod::Anonymous),
        Authorization::Basic { user, password } if user.is_empty() => {
            (Proof::RefreshToken(password), AuthMethod::BasicRefreshToken)
        }
        Authorization::Basic { user, password } => {
            if let Some(account) = params.single("account")? {
                if !account.is_empty() && account != user {
                    return Err(ApiError::BadRequest {
                        code: "UNSUPPORTED_VALUE",
                        message: "`account` does not match the Basic credentials".into(),
                    });
                }
            }
            let proof = Proof::Password { user, password };
            (proof, AuthMethod::Basic)
        }
        Authorization::Bearer(_) => {
            return Err(ApiError::Unauthorized {
                message: "the token endpoint takes Basic credentials, not a bearer token".into(),
                challenge: basic_challenge(&snapshot.config.service),
            })
        }
        Authorization::Malformed(reason) => {
            return Err(ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: (*reason).into(),
            })
        }
    };
    // Asked again for offline access with a refresh token, hand back the
    // same token, as the refresh grant does.
    let refresh = match (offline, &proof) {
        (false, _) => RefreshAsked::No,
        (true, Proof::RefreshToken(presented)) => RefreshAsked::Same(presented),
        (true, _) => RefreshAsked::New,
    };
    Ok(TokenRequest {
        proof,
        method,
        requested,
        refresh,
        oauth_form: false,
        client_id: params.single("client_id")?.unwrap_or(""),
        client,
    })
}

/// Reads the POST body, which must be a form.
async fn read_form(
    snapshot: &Snapshot,
    request: Request<Incoming>,
) -> Result<bytes::Bytes, ApiError> {
    if !is_form(request.headers()) {
        return Err(ApiError::BadRequest {
            code: "UNSUPPORTED_VALUE",
            message: "POST bodies must be application/x-www-form-urlencoded".into(),
        });
    }
    // Collect works with Content-Length and chunked bodies alike (podman
    // sends its refresh grant chunked). A body that stalls must not hold the
    // connection slot for ever: it gets as long as the headers got.
    let read_limit = snapshot.config.limits.header_read_timeout.duration();
    let body = tokio::time::timeout(
        read_limit,
        Limited::new(request.into_body(), MAX_FORM_BYTES).collect(),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout)?
    .map_err(|error| {
        if error.is::<http_body_util::LengthLimitError>() {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: format!("could not read the request body: {error}"),
            }
        }
    })?;
    Ok(body.to_bytes())
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|value| media_type::matches(value.as_bytes(), FORM_MEDIA_TYPES[0]))
}

fn parse_post<'a>(
    snapshot: &Snapshot,
    params: &'a Params,
    client: Option<IpAddr>,
) -> Result<TokenRequest<'a>, ApiError> {
    params.check_service(snapshot)?;
    let grant_type = params.required("grant_type")?;
    let offline = match params.single("access_type")? {
        None | Some("") | Some("online") => false,
        Some("offline") => true,
        Some(other) => {
            return Err(ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: format!("`access_type` must be online or offline, not `{other}`"),
            })
        }
    };
    let requested = params.scopes()?;
    let client_id = params.single("client_id")?.unwrap_or("");
    let (proof, method, refresh) = match grant_type {
        "password" => {
            let user = params.required("username")?;
            let password = params.required("password")?;
            let refresh = if offline {
                RefreshAsked::New
            } else {
                RefreshAsked::No
            };
            let proof = Proof::Password { user, password };
            (proof, AuthMethod::Password, refresh)
        }
        "refresh_token" => {
            let presented = params.required("refresh_token")?;
            let proof = Proof::RefreshToken(presented);
            (
                proof,
                AuthMethod::RefreshToken,
                RefreshAsked::Same(presented),
            )
        }
        other => {
            return Err(ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: format!("`grant_type` must be password or refresh_token, not `{other}`"),
            })
        }
    };
    Ok(TokenRequest {
        proof,
        method,
        requested,
        refresh,
        oauth_form: true,
        client_id,
        client,
    })
}

/// Who asks (`None`: anonymous), through the identity seam.
async fn authenticate(
    state: &State,
    snapshot: &Snapshot,
    request: &TokenRequest<'_>,
    now: i64,
) -> Result<Option<Identity>, IdentityError> {
    match request.proof {
        Proof::Nothing => Ok(None),
        Proof::Password { user, password } => {
            let credentials = Credentials {
                user,
                password,
                client: request.client,
            };
            identity::authenticate(state, snapshot, &credentials)
                .await
                .map(Some)
        }
        Proof::RefreshToken(presented) => {
            identity::refresh::redeem(snapshot, presented, now).map(Some)
        }
    }
}

/// Signs the access token, and a new refresh token where one is granted.
fn sign(
    snapshot: &Snapshot,
    identity: Option<&Identity>,
    grant: Grant<'_>,
    now: i64,
) -> Result<Issued, ApiError> {
    let config = &snapshot.config;
    let lifetime = config.token.expiration.as_i64();
    let account = identity
        .map(|identity| identity.account.clone())
        .unwrap_or_default();
    let claims = AccessClaims {
        iss: config.issuer.clone(),
        sub: account.clone(),
        aud: config.service.clone(),
        exp: now.saturating_add(lifetime),
        nbf: now,
        iat: now,
        jti: token::new_jti(),
        access: grant.access.iter().map(AccessEntry::from).collect(),
    };
    let signing_failed = |e: token::TokenError| ApiError::Internal(format!("signing failed: {e}"));
    let access_token = token::sign(&snapshot.signing_key, &claims).map_err(signing_failed)?;
    let refresh_token = match grant.refresh {
        Refresh::No => None,
        Refresh::Echo(presented) => Some(presented.to_owned()),
        Refresh::Issue { binding } => {
            let refresh_lifetime = config.token.refresh_expiration.as_i64();
            let claims = RefreshClaims::new(
                &config.issuer,
                &account,
                &config.service,
                binding,
                now,
                refresh_lifetime,
            );
            Some(token::sign(&snapshot.signing_key, &claims).map_err(signing_failed)?)
        }
    };
    let source = identity.map_or_else(
        || "anonymous".to_owned(),
        |identity| identity.source.to_string(),
    );
    Ok(Issued {
        account,
        source,
        granted: grant.access,
        access_token,
        refresh_token,
    })
}

/// The one log line and the one count of a token request.
fn audit(connection: &Connection, request: &TokenRequest<'_>, outcome: &Outcome) {
    let grant = request.method.label();
    let client = request.client_id;
    match outcome {
        Outcome::Issued(issued) => {
            tracing::info!(
                account = %issued.account,
                peer = %connection.peer,
                grant,
                source = %issued.source,
                client,
                requested = %join_scopes(&request.requested),
                granted = %join_scopes(&issued.granted),
                refresh_token = issued.refresh_token.is_some(),
                "token issued"
            );
            metrics::counter!("regauth_token_requests_total", "outcome" => "issued").increment(1);
        }
        Outcome::Refused(error) => {
            // A refresh token names its account only once it verifies.
            let (account, refused) = match request.proof {
                Proof::Password { user, .. } => (user, "token"),
                Proof::RefreshToken(_) | Proof::Nothing => ("", "refresh token"),
            };
            let outcome = match (&request.proof, error) {
                (Proof::RefreshToken(_), IdentityError::WrongCredential { .. }) => {
                    "bad_refresh_token"
                }
                _ => error.outcome(),
            };
            // Our own failures are logged, with their cause, by the edge.
            if !matches!(error, IdentityError::Internal(_)) {
                tracing::warn!(
                    account,
                    peer = %connection.peer,
                    grant,
                    client,
                    reason = %error.detail(),
                    "{refused} refused: {error}"
                );
            }
            metrics::counter!("regauth_token_requests_total", "outcome" => outcome).increment(1);
        }
    }
}

fn answer(
    snapshot: &Snapshot,
    request: &TokenRequest<'_>,
    outcome: Outcome,
    now: i64,
) -> Response<Body> {
    let config = &snapshot.config;
    let issued = match outcome {
        Outcome::Issued(issued) => issued,
        Outcome::Refused(error) => {
            return ApiError::from_identity(error, basic_challenge(&config.service)).into_response()
        }
    };
    let mut body = json!({
        "token": issued.access_token,
        "access_token": issued.access_token,
        "expires_in": config.token.expiration.secs(),
        "issued_at": rfc3339(now),
    });
    if let Some(refresh_token) = issued.refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    if request.oauth_form {
        body["scope"] = json!(join_scopes(&issued.granted));
    }
    json_response(StatusCode::OK, &body)
}

fn join_scopes(scopes: &[ResourceScope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// RFC 3339 UTC, as Go's `time.Time` JSON decoding wants it.
fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The spellings Go's `strconv.ParseBool` accepts, which the reference
/// token server uses for `offline_token`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        assert_eq!(parse_go_bool("true"), Some(true));
        assert_eq!(parse_go_bool("F"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn rfc3339_is_utc_with_z() {
        assert_eq!(rfc3339(1_257_894_000), "2009-11-10T23:00:00Z");
    }
}

//! The token endpoint: `GET` (Distribution token spec) and the OAuth2
//! `POST` form (password and refresh_token grants), as one pipeline:
//! parse the request → authenticate (the identity seam) → authorize
//! ([`decide::token`]) → sign → answer, with one outcome logged and counted
//! once, and the clock read once.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::authorization;
use super::params::Params;
use super::token_request::{parse_get, parse_post, read_form, Proof, TokenRequest};
use super::{basic_challenge, client_address, json_response, unix_now, ApiError, Body, Connection};
use crate::client_address::ClientAddress;
use crate::decide::token::{self as decide, Grant, Refresh};
use crate::identity::{self, Credentials, Identity, IdentityError};
use crate::scope::ResourceScope;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::token::{self, AccessClaims, AccessEntry, RefreshClaims};

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

fn client(connection: &Connection, request: &Request<Incoming>) -> ClientAddress {
    client_address(connection, request.headers())
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
            identity::authenticate(state, snapshot, &credentials, now)
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
        groups: identity
            .map(|identity| identity.groups.clone())
            .unwrap_or_default(),
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
                address = %request.client,
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
                    address = %request.client,
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
    let body = TokenBody {
        access_token: &issued.access_token,
        expires_in: config.token.expiration.secs(),
        issued_at: rfc3339(now),
        refresh_token: issued.refresh_token.as_deref(),
        scope: request.oauth_form.then(|| join_scopes(&issued.granted)),
        token: &issued.access_token,
    };
    json_response(StatusCode::OK, &body)
}

/// The token response: Distribution's `token` and OAuth2's `access_token`
/// (the same token). Fields in alphabetical order: the body is byte for
/// byte what the earlier `serde_json::Value` (a sorted map) wrote.
#[derive(serde::Serialize)]
struct TokenBody<'a> {
    access_token: &'a str,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    /// Granted scopes, for the OAuth2 form (RFC 6749 §5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    token: &'a str,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_z() {
        assert_eq!(rfc3339(1_257_894_000), "2009-11-10T23:00:00Z");
    }
}

//! The token endpoint: `GET` (Distribution token spec) and the OAuth2
//! `POST` form (password and refresh_token grants). Parse the request, find
//! who asks, let the ACL grant the intersection, sign, answer.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use super::basic::{presented, Presented};
use super::params::Params;
use super::{basic_challenge, client_address, json_response, unix_now, ApiError, Body, Connection};
use crate::acl::Subject;
use crate::identity::{self, Credentials, Identity, IdentityError};
use crate::media_type::{self, FORM_MEDIA_TYPES};
use crate::scope::ResourceScope;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::token::{self, AccessClaims, AccessEntry, RefreshClaims};

/// Largest POST form accepted; real forms are well under 1 KiB, but many
/// scopes can add up.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Whether and how the answer carries a refresh token.
enum Refresh {
    /// No refresh token.
    No,
    /// Issue one (offline access asked for).
    Issue,
    /// Hand the presented one back, unchanged: clients such as dockerd
    /// cannot store a rotated token (moby #39718).
    Echo(String),
}

/// `GET /token?service=..&scope=..[&offline_token=true]` with Basic
/// credentials or none.
pub async fn get(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = Params::parse(request.uri().query().unwrap_or("").as_bytes());
    params.check_service(snapshot)?;
    let offline = match params.single("offline_token")? {
        None | Some("") => false,
        Some(value) => parse_go_bool(value).ok_or_else(|| ApiError::BadRequest {
            code: "BAD_TOKEN_OPTION",
            message: format!("`offline_token` must be true or false, not `{value}`"),
        })?,
    };
    let scopes = params.scopes()?;
    // `grant` names how the caller authenticated, for the log.
    let mut presented_refresh = None;
    let (identity, grant) = match presented(request.headers()) {
        Presented::Nothing => (None, "anonymous"),
        // containerd's fallback after a refused POST: the refresh token as
        // the password of an empty user name.
        Presented::Basic { user, password } if user.is_empty() => {
            let identity = redeem_refresh_token(snapshot, &password, connection)?;
            let identity = Some(identity);
            // Asked again for offline access, hand back the same token, as
            // the refresh grant does: a refresh token must never renew itself.
            presented_refresh = Some(password.to_string());
            (identity, "basic_refresh_token")
        }
        Presented::Basic { user, password } => {
            if let Some(account) = params.single("account")? {
                if !account.is_empty() && account != user {
                    return Err(ApiError::BadRequest {
                        code: "UNSUPPORTED_VALUE",
                        message: "`account` does not match the Basic credentials".into(),
                    });
                }
            }
            let identity =
                check_password(state, snapshot, request, &user, &password, connection).await?;
            (Some(identity), "basic")
        }
        Presented::Bearer(_) => {
            return Err(unauthorized(
                snapshot,
                "the token endpoint takes Basic credentials, not a bearer token",
            ))
        }
        Presented::Malformed(reason) => {
            return Err(ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: reason.into(),
            })
        }
    };
    let refresh = match (offline, presented_refresh) {
        (false, _) => Refresh::No,
        (true, Some(presented_token)) => Refresh::Echo(presented_token),
        (true, None) => Refresh::Issue,
    };
    let client = params.single("client_id")?.unwrap_or("");
    let request = Issue {
        identity: identity.as_ref(),
        requested: scopes,
        refresh,
        oauth_form: false,
        client,
        grant,
    };
    issue(snapshot, connection, request)
}

/// OAuth2 `POST /token` (form): `grant_type=password` or `refresh_token`.
pub async fn post(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let client = client_address(connection, request.headers());
    let is_form = request
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|value| media_type::is(value.as_bytes(), FORM_MEDIA_TYPES[0]));
    if !is_form {
        return Err(ApiError::BadRequest {
            code: "UNSUPPORTED_VALUE",
            message: "POST bodies must be application/x-www-form-urlencoded".into(),
        });
    }
    // Collect works with Content-Length and chunked bodies alike (podman
    // sends its refresh grant chunked). A body that stalls must not hold the
    // connection slot for ever: it gets as long as the headers got.
    let read_limit = Duration::from_secs(snapshot.config.limits.header_read_timeout_secs);
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
                message: "could not read the request body".into(),
            }
        }
    })?
    .to_bytes();
    let params = Params::parse(&body);
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
    let scopes = params.scopes()?;
    let client_id = params.single("client_id")?.unwrap_or("");
    let (identity, refresh) = match grant_type {
        "password" => {
            let user = params.required("username")?;
            let password = params.required("password")?;
            let credentials = Credentials {
                user,
                password,
                client,
            };
            let identity = authenticate(state, snapshot, &credentials, connection).await?;
            let refresh = if offline { Refresh::Issue } else { Refresh::No };
            (identity, refresh)
        }
        "refresh_token" => {
            let presented_token = params.required("refresh_token")?;
            let identity = redeem_refresh_token(snapshot, presented_token, connection)?;
            (identity, Refresh::Echo(presented_token.to_owned()))
        }
        other => {
            return Err(ApiError::BadRequest {
                code: "UNSUPPORTED_VALUE",
                message: format!("`grant_type` must be password or refresh_token, not `{other}`"),
            })
        }
    };
    let request = Issue {
        identity: Some(&identity),
        requested: scopes,
        refresh,
        oauth_form: true,
        client: client_id,
        grant: grant_type,
    };
    issue(snapshot, connection, request)
}

/// The Basic challenge every credential failure carries.
fn unauthorized(snapshot: &Snapshot, message: &str) -> ApiError {
    ApiError::Unauthorized {
        message: message.to_owned(),
        challenge: basic_challenge(&snapshot.config.service),
    }
}

/// GET's Basic credentials through the identity seam.
async fn check_password(
    state: &State,
    snapshot: &Snapshot,
    request: &Request<Incoming>,
    user: &str,
    password: &str,
    connection: &Connection,
) -> Result<Identity, ApiError> {
    let credentials = Credentials {
        user,
        password,
        client: client_address(connection, request.headers()),
    };
    authenticate(state, snapshot, &credentials, connection).await
}

async fn authenticate(
    state: &State,
    snapshot: &Snapshot,
    credentials: &Credentials<'_>,
    connection: &Connection,
) -> Result<Identity, ApiError> {
    identity::authenticate(state, snapshot, credentials)
        .await
        .map_err(|error| {
            if !matches!(error, IdentityError::Internal(_)) {
                tracing::warn!(
                    account = credentials.user,
                    peer = %connection.peer,
                    client = %credentials.client,
                    reason = %error.detail(),
                    "token refused: {error}"
                );
                metrics::counter!("regauth_token_requests_total", "outcome" => error.outcome())
                    .increment(1);
            }
            ApiError::from_identity(error, basic_challenge(&snapshot.config.service))
        })
}

/// A refresh token is good while its user exists with the same password.
fn redeem_refresh_token(
    snapshot: &Snapshot,
    presented_token: &str,
    connection: &Connection,
) -> Result<Identity, ApiError> {
    identity::refresh::redeem(snapshot, presented_token, unix_now()).map_err(|error| {
        tracing::warn!(peer = %connection.peer, reason = %error.detail(), "refresh token refused");
        metrics::counter!("regauth_token_requests_total", "outcome" => "bad_refresh_token")
            .increment(1);
        ApiError::from_identity(error, basic_challenge(&snapshot.config.service))
    })
}

/// A token request, parsed and authenticated: what is left is to decide,
/// sign and answer.
struct Issue<'a> {
    /// Who asks; `None` for anonymous.
    identity: Option<&'a Identity>,
    /// What they ask for.
    requested: Vec<ResourceScope>,
    /// Whether a refresh token goes into the answer.
    refresh: Refresh,
    /// The OAuth2 form also answers with the granted `scope`.
    oauth_form: bool,
    /// `client_id`, for the log.
    client: &'a str,
    /// How the caller authenticated: `anonymous`, `basic`,
    /// `basic_refresh_token` (GET) or the POST's `grant_type`, for the log.
    grant: &'a str,
}

fn issue(
    snapshot: &Snapshot,
    connection: &Connection,
    request: Issue<'_>,
) -> Result<Response<Body>, ApiError> {
    let Issue {
        identity,
        requested,
        refresh,
        oauth_form,
        client,
        grant,
    } = request;
    let requested = requested.as_slice();
    let config = &snapshot.config;
    let subject = identity.map_or(Subject::anonymous(), Identity::subject);
    let granted = snapshot.acl.grant(&subject, requested);
    let now = unix_now();
    let lifetime = i64::try_from(config.token.expiration_secs).unwrap_or(i64::MAX);
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
        access: granted.iter().map(access_entry).collect(),
    };
    let access_token = token::sign(&snapshot.signing_key, &claims)
        .map_err(|e| ApiError::Internal(format!("signing failed: {e}")))?;
    let binding = identity.and_then(|identity| identity.refresh_binding.as_deref());
    let refresh_token = match (refresh, binding) {
        (Refresh::Echo(presented_token), _) => Some(presented_token),
        (Refresh::Issue, Some(binding)) => {
            let refresh_lifetime =
                i64::try_from(config.token.refresh_expiration_secs).unwrap_or(i64::MAX);
            let claims = RefreshClaims::new(
                &config.issuer,
                &account,
                &config.service,
                binding,
                now,
                refresh_lifetime,
            );
            Some(
                token::sign(&snapshot.signing_key, &claims)
                    .map_err(|e| ApiError::Internal(format!("signing failed: {e}")))?,
            )
        }
        // Anonymous callers have nothing to refresh, and identities
        // without a binding cannot have one.
        _ => None,
    };

    let requested_text = join_scopes(requested);
    let granted_text = join_scopes(&granted);
    tracing::info!(
        account = %account,
        peer = %connection.peer,
        grant,
        client,
        requested = %requested_text,
        granted = %granted_text,
        refresh_token = refresh_token.is_some(),
        "token issued"
    );
    metrics::counter!("regauth_token_requests_total", "outcome" => "issued").increment(1);

    let mut body = json!({
        "token": access_token,
        "access_token": access_token,
        "expires_in": config.token.expiration_secs,
        "issued_at": rfc3339(now),
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    if oauth_form {
        body["scope"] = json!(granted_text);
    }
    Ok(json_response(StatusCode::OK, &body))
}

fn access_entry(scope: &ResourceScope) -> AccessEntry {
    AccessEntry {
        resource_type: scope.resource_type.clone(),
        class: scope.class.clone(),
        name: scope.name.clone(),
        actions: scope.actions.iter().cloned().collect(),
    }
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

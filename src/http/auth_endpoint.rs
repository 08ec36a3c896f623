//! `GET /auth`: nginx's `auth_request` subrequest. Parse the original
//! request into the access it needs, find who asks (bearer token, Basic
//! credentials through the identity seam, or a trusted front proxy's user
//! header), let [`decide::auth`] decide, and answer the way the registry
//! itself would, so every client's retry logic works.
//!
//! nginx turns any status other than 2xx, 401 and 403 into a 500 for the
//! client, so every decision is a 200, 401 or 403; only an identity seam
//! that cannot answer (a limited caller, a source down, our own failure)
//! gets the edge's 429, 503 or 500.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::authorization::{self, Authorization};
use super::{basic_challenge, client_address, unix_now, ApiError, Body, Connection};
use crate::config::{AuthMode, AuthSettings, Front, HeaderField};
use crate::decide::auth::{decide, Caller, Decision, Unproven, WriteCheck};
use crate::identity::{self, Credentials};
use crate::metrics::Handles;
use crate::scope::{ChallengeScopes, ResourceScope};
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::token::{self, Expectations};
use crate::token_cache::TokenCache;
use crate::verified_token::VerifiedToken;

/// `regauth_auth_decisions_total` by outcome.
static DECISIONS: Handles<&str, metrics::Counter, 8> = Handles::new();

/// Answers one subrequest.
pub async fn handle(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: &Request<Incoming>,
) -> Response<Body> {
    let now = unix_now();
    let original = original_request(request.headers(), &snapshot.config.auth, connection.front);
    let (method, path) = match &original {
        Ok((method, uri)) => (*method, uri.split('?').next().unwrap_or(uri)),
        Err(_) => ("", ""),
    };
    let required =
        original.and_then(|(method, uri)| required_access(request.headers(), method, uri));
    // Which source vouched (which API token, which issuer and workload),
    // for the audit line.
    let mut source = String::new();
    let decision = match &required {
        Ok(required) => {
            let caller = identify(state, snapshot, connection, request, now).await;
            if let Caller::Identified(identity) = &caller {
                source = identity.source.to_string();
            }
            // Tag rules may need the token subject's groups: those the token
            // carries (as of its issue, whatever source vouched: files, LDAP,
            // federation), else, for a token without the claim, the
            // configured user's.
            let bearer = match &caller {
                Caller::Bearer(claims) => Some(Arc::clone(claims)),
                _ => None,
            };
            let token_groups = match &bearer {
                Some(claims) if !claims.groups().is_empty() => claims.groups(),
                Some(claims) => snapshot
                    .users
                    .get(claims.subject())
                    .map(|user| user.groups.as_slice())
                    .unwrap_or_default(),
                _ => &[],
            };
            let write = required.manifest_write.as_ref().map(|write| WriteCheck {
                write,
                token_groups,
            });
            decide(caller, &required.access, write, &snapshot.acl)
        }
        Err(reason) => Decision::unroutable(reason.clone()),
    };

    let needed: &[ResourceScope] = required
        .as_ref()
        .map(|required| required.access.as_slice())
        .unwrap_or_default();
    let needed_text = ChallengeScopes(needed);
    // Every refusal is audited at info. Allowed decisions, nearly all of a
    // registry's traffic, are audited at debug: writing each one cost a
    // quarter of this endpoint's throughput (README, "Performance");
    // `log.level` "info,regauth::audit=debug" logs every decision (README,
    // "Logs").
    macro_rules! audit {
        ($level:ident) => {
            tracing::$level!(
                target: "regauth::audit",
                account = decision.account(),
                peer = %connection.peer,
                // Behind nginx the peer is the proxy; the client is the
                // address nginx appended to X-Forwarded-For, believed on
                // trusted listeners only.
                address = %client_address(connection, request.headers()),
                method,
                path,
                needed = %needed_text,
                outcome = decision.outcome(),
                reason = decision.reason().as_str(),
                source,
                "auth decision"
            )
        };
    }
    match decision {
        Decision::Allow { .. } => audit!(debug),
        _ => audit!(info),
    }
    let outcome = decision.outcome();
    DECISIONS.record(
        outcome,
        || metrics::counter!("regauth_auth_decisions_total", "outcome" => outcome),
        |counter| counter.increment(1),
    );

    answer(snapshot, decision, &needed_text)
}

/// The original request the listener's front proxy describes in the
/// subrequest's headers (only its own kind: Caddy and Traefik pass every
/// client header on). Missing and unreadable headers are told apart: they
/// have different causes (a broken include, a client's raw non-ASCII
/// request line).
fn original_request<'h>(
    headers: &'h HeaderMap,
    settings: &AuthSettings,
    front: Front,
) -> Result<(&'h str, &'h str), String> {
    let read = |name: &HeaderField| match headers.get(name.name()) {
        None => Err(format!(
            "the subrequest lacks {name}: check the {} configuration",
            match front {
                Front::Nginx => "nginx include",
                Front::Caddy | Front::Traefik => front.name(),
            }
        )),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|text| !text.is_empty())
            .ok_or_else(|| format!("{name} is empty or not printable ASCII")),
    };
    let (method_header, uri_header) = front.original_request_headers(settings);
    Ok((read(method_header)?, read(uri_header)?))
}

/// The access the original request needs (and what a manifest write
/// writes), or why it gets none.
fn required_access(
    headers: &HeaderMap,
    method: &str,
    uri: &str,
) -> Result<crate::route::Required, String> {
    let content_types: Vec<&[u8]> = headers
        .get_all(CONTENT_TYPE)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    crate::route::refuse_form_body(method, &content_types)
        .and_then(|()| crate::route::classify(method, uri))
        .map_err(|error| error.to_string())
}

/// Who asks: a trusted front proxy's user, or what the `Authorization`
/// header proves in this mode.
async fn identify(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: &Request<Incoming>,
    now: i64,
) -> Caller {
    let settings = &snapshot.config.auth;
    if let Some(header) = &settings.trusted_user_header {
        let proxy_user = request
            .headers()
            .get(header.name())
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty());
        match proxy_user {
            Some(user) if connection.trusted => {
                let groups = settings
                    .trusted_groups_header
                    .as_ref()
                    .and_then(|header| request.headers().get(header.as_str()))
                    // Sent but not UTF-8: the proxy named no usable group.
                    .map(|value| std::str::from_utf8(value.as_bytes()).unwrap_or(""));
                return Caller::Identified(identity::trusted_proxy(snapshot, user, groups));
            }
            // Debug only: any client of an untrusted listener could
            // otherwise fill the log with this line.
            Some(_) => tracing::debug!(
                peer = %connection.peer,
                header = header.as_str(),
                "ignoring a front-proxy user header on a listener not marked trusted"
            ),
            None => {}
        }
    }
    match (settings.mode, authorization::parse(request.headers())) {
        (AuthMode::Token, Authorization::Bearer(token)) => {
            match verified_claims(state, snapshot, token, now).await {
                Ok(claims) => Caller::Bearer(claims),
                Err(reason) => Caller::Unproven(Unproven::InvalidToken(reason)),
            }
        }
        // As the registry does: anything but a bearer token is "no token".
        (AuthMode::Token, _) => Caller::Unproven(Unproven::Missing("no bearer token")),
        (AuthMode::Basic, Authorization::Basic { user, password }) => {
            let credentials = Credentials {
                user: &user,
                password: &password,
                client: client_address(connection, request.headers()),
            };
            // Boxed: a password check's future (bcrypt queue, directory
            // bind) is large, and hyper moves the request's future on
            // every request, the many bearer-token ones included.
            match Box::pin(identity::authenticate(state, snapshot, &credentials, now)).await {
                Ok(identity) => Caller::Identified(identity),
                Err(error) => Caller::Unproven(Unproven::Refused {
                    account: user,
                    error,
                }),
            }
        }
        (AuthMode::Basic, Authorization::Nothing) => Caller::Anonymous,
        (AuthMode::Basic, _) => Caller::Unproven(Unproven::Missing("no credentials")),
    }
}

/// Verifies a token, or finds it verified in the cache; either way its
/// validity period is checked against `now`.
async fn verified_claims(
    state: &State,
    snapshot: &Snapshot,
    token: &str,
    now: i64,
) -> Result<Arc<VerifiedToken>, String> {
    let config = &snapshot.config;
    let leeway = config.auth.leeway.as_i64();
    let key = TokenCache::key(
        snapshot.generation,
        snapshot.signing_key.jws_header(),
        token,
    );
    if let Some(verified) = state.tokens.get(&key).await {
        if verified.expired_at(now, leeway) {
            return Err("token expired".into());
        }
        return Ok(verified);
    }
    let expect = Expectations {
        issuer: &config.issuer,
        audience: &config.service,
        leeway_secs: config.auth.leeway.secs(),
        now,
    };
    let claims = token::verify_access(&snapshot.verifying_keys, token, &expect)
        .map_err(|error| error.to_string())?;
    let verified = Arc::new(VerifiedToken::from(claims));
    let expires_at = verified.accepted_until(leeway);
    state
        .tokens
        .insert(key, Arc::clone(&verified), expires_at, now)
        .await;
    Ok(verified)
}

fn answer(
    snapshot: &Snapshot,
    decision: Decision,
    needed_text: &ChallengeScopes,
) -> Response<Body> {
    let config = &snapshot.config;
    match decision {
        Decision::Allow { user, groups } => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::OK;
            // Groups belong to a signed-in user only.
            let groups = user.as_ref().and_then(|_| identity::group_list(&groups));
            let name = user.or_else(|| config.auth.anonymous_user.clone());
            if let Some(name) = name {
                match HeaderValue::from_str(&name) {
                    Ok(value) => {
                        let header = config.auth.user_header.name().clone();
                        response.headers_mut().insert(header, value);
                    }
                    // Account names are checked at load, proxies send
                    // header values and tokens are ours: a bug, which must
                    // not pass the request on without a word.
                    Err(_) => tracing::error!(
                        header = %config.auth.user_header,
                        account = ?crate::scope::excerpt(&name),
                        "the user header cannot carry this account; answered without it"
                    ),
                }
            }
            if let Some(groups) = groups {
                // Bytes, not ASCII only: group names may be UTF-8; the list
                // was cleared of control characters.
                match HeaderValue::from_bytes(groups.as_bytes()) {
                    Ok(value) => {
                        let header = config.auth.groups_header.name().clone();
                        response.headers_mut().insert(header, value);
                    }
                    Err(_) => tracing::error!(
                        header = %config.auth.groups_header,
                        "the groups header cannot carry these groups; answered without it"
                    ),
                }
            }
            response
        }
        Decision::Challenge { error, .. } => ApiError::Unauthorized {
            message: "authentication required".into(),
            challenge: challenge(snapshot, needed_text, error),
        }
        .into_response(),
        Decision::Deny { reason, .. } => ApiError::Forbidden { message: reason }.into_response(),
        Decision::Unidentified { error, .. } => {
            ApiError::from_identity(error, challenge(snapshot, needed_text, None)).into_response()
        }
    }
}

/// The challenge of this mode: Basic, or the registry's Bearer challenge.
fn challenge(snapshot: &Snapshot, needed_text: &ChallengeScopes, error: Option<&str>) -> String {
    let config = &snapshot.config;
    match config.auth.mode {
        AuthMode::Basic => basic_challenge(&config.service),
        AuthMode::Token => bearer_challenge(
            &config.realm,
            &config.service,
            &needed_text.to_string(),
            error,
        ),
    }
}

/// The registry's challenge, parameter for parameter (2.8 accesscontroller).
fn bearer_challenge(realm: &str, service: &str, scope: &str, error: Option<&str>) -> String {
    let mut challenge = format!("Bearer realm=\"{realm}\",service=\"{service}\"");
    if !scope.is_empty() {
        challenge.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        challenge.push_str(&format!(",error=\"{error}\""));
    }
    challenge
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_matches_the_registry_format() {
        assert_eq!(
            bearer_challenge("https://r/token", "reg", "repository:a:pull,push", Some("insufficient_scope")),
            "Bearer realm=\"https://r/token\",service=\"reg\",scope=\"repository:a:pull,push\",error=\"insufficient_scope\""
        );
        assert_eq!(
            bearer_challenge("https://r/token", "reg", "", None),
            "Bearer realm=\"https://r/token\",service=\"reg\""
        );
    }
}

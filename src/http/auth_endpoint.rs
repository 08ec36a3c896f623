//! `GET /auth`: nginx's `auth_request` subrequest. Find the access the
//! original request needs, find who asks (bearer token, Basic credentials,
//! or a trusted front proxy's user header), decide, and answer the way the
//! registry itself would, so every client's retry logic works.
//!
//! nginx turns any status other than 2xx, 401 and 403 into a 500 for the
//! client, so this endpoint answers only 200, 401 and 403.

use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::basic::{presented, Presented};
use super::{basic_challenge, client_address, unix_now, ApiError, Body, Connection};
use crate::acl::Subject;
use crate::config::{AuthMode, AuthSettings};
use crate::identity::{self, Credentials, Identity, IdentityError};
use crate::scope::ResourceScope;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::token::{self, AccessClaims, AccessEntry, Expectations};
use crate::token_cache::TokenCache;

/// What `/auth` decided.
enum Decision {
    /// Let the request through as this user (`None`: anonymous).
    Allow { user: Option<String> },
    /// 401: a (better) credential may help. `error` is the Bearer
    /// challenge's `error` parameter.
    Challenge {
        error: Option<&'static str>,
        reason: String,
        /// Who asked, when known (for the audit log).
        account: Option<String>,
    },
    /// 403: no credential can help.
    Deny {
        reason: String,
        /// Who asked, when known (for the audit log).
        account: Option<String>,
    },
    /// The identity seam could not say who asks (limited, a source down,
    /// our own failure); answered as the edge maps it.
    Unidentified {
        error: IdentityError,
        /// Who asked (for the audit log).
        account: Option<String>,
    },
}

impl Decision {
    fn outcome(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Challenge { .. } => "challenge",
            Decision::Deny { .. } => "deny",
            Decision::Unidentified { error, .. } => error.outcome(),
        }
    }
}

/// Answers one subrequest.
pub async fn handle(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: &Request<Incoming>,
) -> Response<Body> {
    let original = original_request(request.headers(), &snapshot.config.auth);
    let (method, path) = match &original {
        Ok((method, uri)) => (*method, uri.split('?').next().unwrap_or(uri)),
        Err(_) => ("", ""),
    };

    let mut needed = Vec::new();
    let decision = match original {
        Ok((method, uri)) => {
            let content_types: Vec<&[u8]> = request
                .headers()
                .get_all(CONTENT_TYPE)
                .iter()
                .map(|value| value.as_bytes())
                .collect();
            match crate::route::refuse_form_body(method, &content_types)
                .and_then(|()| crate::route::required_access(method, uri))
            {
                Ok(access) => {
                    needed = access;
                    decide(state, snapshot, connection, request, &needed).await
                }
                Err(error) => Decision::Deny {
                    reason: error.to_string(),
                    account: None,
                },
            }
        }
        Err(reason) => Decision::Deny {
            reason,
            account: None,
        },
    };

    let needed_text = needed
        .iter()
        .map(ResourceScope::challenge_string)
        .collect::<Vec<_>>()
        .join(" ");
    let (account, reason) = match &decision {
        Decision::Allow { user } => (user.as_deref().unwrap_or(""), String::new()),
        Decision::Challenge {
            reason, account, ..
        }
        | Decision::Deny { reason, account } => (account.as_deref().unwrap_or(""), reason.clone()),
        Decision::Unidentified { error, account } => {
            (account.as_deref().unwrap_or(""), error.detail())
        }
    };
    // Behind nginx the peer is the proxy; the client is the address nginx
    // appended to X-Forwarded-For, believed on trusted listeners only.
    let client = client_address(connection, request.headers());
    tracing::info!(
        target: "regauth::audit",
        account,
        peer = %connection.peer,
        client = %client,
        method,
        path,
        needed = %needed_text,
        outcome = decision.outcome(),
        reason = reason.as_str(),
        "auth decision"
    );
    metrics::counter!("regauth_auth_decisions_total", "outcome" => decision.outcome()).increment(1);

    answer(snapshot, decision, &needed_text)
}

/// The original request nginx describes in the subrequest's headers.
/// Missing and unreadable headers are told apart: they have different
/// causes (a broken include, a client's raw non-ASCII request line).
fn original_request<'h>(
    headers: &'h HeaderMap,
    settings: &AuthSettings,
) -> Result<(&'h str, &'h str), String> {
    let read = |name: &str| match headers.get(name) {
        None => Err(format!(
            "the subrequest lacks {name}: check the nginx include"
        )),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|text| !text.is_empty())
            .ok_or_else(|| format!("{name} is empty or not printable ASCII")),
    };
    Ok((read(&settings.method_header)?, read(&settings.uri_header)?))
}

async fn decide(
    state: &State,
    snapshot: &Snapshot,
    connection: &Connection,
    request: &Request<Incoming>,
    needed: &[ResourceScope],
) -> Decision {
    let settings = &snapshot.config.auth;
    if let Some(header) = &settings.trusted_user_header {
        let proxy_user = request
            .headers()
            .get(header.as_str())
            .and_then(|value| value.to_str().ok())
            .filter(|value| !value.is_empty());
        match proxy_user {
            Some(user) if connection.trusted => {
                let identity = identity::trusted_proxy(snapshot, user);
                return decide_by_acl(snapshot, Some(&identity), needed);
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
    match (settings.mode, presented(request.headers())) {
        (AuthMode::Token, Presented::Bearer(token)) => {
            decide_by_token(state, snapshot, &token, needed).await
        }
        // As the registry does: anything but a bearer token is "no token".
        (AuthMode::Token, _) => Decision::Challenge {
            error: None,
            reason: "no bearer token".into(),
            account: None,
        },
        (AuthMode::Basic, Presented::Basic { user, password }) => {
            let credentials = Credentials {
                user: &user,
                password: &password,
                client: client_address(connection, request.headers()),
            };
            match identity::authenticate(state, snapshot, &credentials).await {
                Ok(identity) => decide_by_acl(snapshot, Some(&identity), needed),
                Err(IdentityError::WrongCredential { reason, .. }) => Decision::Challenge {
                    error: None,
                    reason: reason.to_owned(),
                    account: Some(user),
                },
                Err(error) => Decision::Unidentified {
                    error,
                    account: Some(user),
                },
            }
        }
        // The `/v2/` ping must challenge, or clients never learn that they
        // could send credentials; anything else anonymous may do, it may.
        (AuthMode::Basic, Presented::Nothing) if !needed.is_empty() => {
            decide_by_acl(snapshot, None, needed)
        }
        (AuthMode::Basic, _) => Decision::Challenge {
            error: None,
            reason: "no credentials".into(),
            account: None,
        },
    }
}

/// Basic and trusted-proxy modes: the ACL decides. An authenticated user
/// the ACL refuses gets 403 (other credentials are not on offer); an
/// anonymous one gets a challenge, since signing in may help.
fn decide_by_acl(
    snapshot: &Snapshot,
    identity: Option<&Identity>,
    needed: &[ResourceScope],
) -> Decision {
    let subject = identity.map_or(Subject::anonymous(), Identity::subject);
    let account = identity.map(|identity| identity.account.as_str());
    let refused = needed.iter().find(|scope| {
        let allowed = snapshot
            .acl
            .allowed(&subject, &scope.resource_type, &scope.name);
        !covers(&allowed, scope)
    });
    match refused {
        None => Decision::Allow {
            user: account.map(str::to_owned),
        },
        Some(scope) if identity.is_some() => Decision::Deny {
            reason: format!("access denied by the ACL: {}", scope.challenge_string()),
            account: account.map(str::to_owned),
        },
        Some(scope) => Decision::Challenge {
            error: None,
            reason: format!("anonymous access denied: {}", scope.challenge_string()),
            account: None,
        },
    }
}

async fn decide_by_token(
    state: &State,
    snapshot: &Snapshot,
    token: &str,
    needed: &[ResourceScope],
) -> Decision {
    let claims = match verified_claims(state, snapshot, token).await {
        Ok(claims) => claims,
        Err(reason) => {
            return Decision::Challenge {
                error: Some("invalid_token"),
                reason,
                account: None,
            }
        }
    };
    match needed
        .iter()
        .find(|scope| !token_covers(&claims.access, scope))
    {
        None => Decision::Allow {
            user: Some(claims.sub.clone()).filter(|sub| !sub.is_empty()),
        },
        Some(scope) => Decision::Challenge {
            error: Some("insufficient_scope"),
            reason: format!("token lacks {}", scope.challenge_string()),
            account: Some(claims.sub.clone()),
        },
    }
}

/// Verifies a token, or finds it verified in the cache; either way its
/// validity period is checked against the clock now.
async fn verified_claims(
    state: &State,
    snapshot: &Snapshot,
    token: &str,
) -> Result<Arc<AccessClaims>, String> {
    let config = &snapshot.config;
    let now = unix_now();
    let leeway = i64::try_from(config.auth.leeway_secs).unwrap_or(i64::MAX);
    let key = TokenCache::key(snapshot.generation, token);
    if let Some(claims) = state.tokens.get(&key).await {
        if now > claims.exp.saturating_add(leeway) {
            return Err("token expired".into());
        }
        return Ok(claims);
    }
    let expect = Expectations {
        issuer: &config.issuer,
        audience: &config.service,
        leeway_secs: config.auth.leeway_secs,
        now,
    };
    let claims = token::verify_access(&snapshot.verifying_keys, token, &expect)
        .map_err(|error| error.to_string())?;
    let claims = Arc::new(claims);
    let expires_at = claims.exp.saturating_add(leeway);
    state
        .tokens
        .insert(key, Arc::clone(&claims), expires_at, now)
        .await;
    Ok(claims)
}

/// Whether a set of allowed actions covers what a scope needs; `*` covers
/// everything, and a needed `*` (the catalog) is covered only by `*`.
fn covers(allowed: &std::collections::BTreeSet<String>, needed: &ResourceScope) -> bool {
    allowed.contains("*") || needed.actions.iter().all(|action| allowed.contains(action))
}

/// The registry's rule: entries are matched on (type, name), class ignored,
/// and several entries for one resource add up.
fn token_covers(access: &[AccessEntry], needed: &ResourceScope) -> bool {
    let allowed = access
        .iter()
        .filter(|entry| entry.resource_type == needed.resource_type && entry.name == needed.name)
        .flat_map(|entry| entry.actions.iter().cloned())
        .collect();
    covers(&allowed, needed)
}

fn answer(snapshot: &Snapshot, decision: Decision, needed_text: &str) -> Response<Body> {
    let config = &snapshot.config;
    match decision {
        Decision::Allow { user } => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::OK;
            let name = user.or_else(|| config.auth.anonymous_user.clone());
            if let Some(value) = name.and_then(|name| HeaderValue::from_str(&name).ok()) {
                if let Ok(header) = http::HeaderName::from_bytes(config.auth.user_header.as_bytes())
                {
                    response.headers_mut().insert(header, value);
                }
            }
            response
        }
        Decision::Challenge { error, .. } => {
            let challenge = match config.auth.mode {
                AuthMode::Basic => basic_challenge(&config.service),
                AuthMode::Token => {
                    bearer_challenge(&config.realm, &config.service, needed_text, error)
                }
            };
            ApiError::Unauthorized {
                message: "authentication required".into(),
                challenge,
            }
            .into_response()
        }
        Decision::Deny { reason, .. } => ApiError::Forbidden { message: reason }.into_response(),
        Decision::Unidentified { error, .. } => {
            ApiError::from_identity(error, basic_challenge(&config.service)).into_response()
        }
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

    fn scope(text: &str) -> ResourceScope {
        crate::scope::parse_scope(text).unwrap()
    }

    fn entry(name: &str, actions: &[&str]) -> AccessEntry {
        AccessEntry {
            resource_type: "repository".into(),
            class: None,
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn token_coverage_follows_the_registry() {
        let access = vec![
            entry("a", &["pull"]),
            entry("a", &["push"]),
            entry("b", &["*"]),
        ];
        assert!(token_covers(&access, &scope("repository:a:pull,push")));
        assert!(!token_covers(&access, &scope("repository:a:delete")));
        assert!(token_covers(&access, &scope("repository:b:delete")));
        assert!(!token_covers(&access, &scope("repository:c:pull")));
        let catalog = vec![AccessEntry {
            resource_type: "registry".into(),
            class: None,
            name: "catalog".into(),
            actions: vec!["pull".into()],
        }];
        assert!(!token_covers(&catalog, &scope("registry:catalog:*")));
    }

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

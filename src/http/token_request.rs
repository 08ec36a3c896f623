//! A token request, parsed: the `GET` query with its `Authorization`
//! header, or the OAuth2 `POST` form. What the caller presents to prove who
//! it is, what it asks for, and nothing decided yet.

use std::net::IpAddr;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::authorization::Authorization;
use super::params::Params;
use super::{basic_challenge, ApiError};
use crate::decide::token::RefreshAsked;
use crate::media_type::{self, FORM_MEDIA_TYPES};
use crate::scope::ResourceScope;
use crate::snapshot::Snapshot;

/// Largest POST form accepted; real forms are well under 1 KiB, but many
/// scopes can add up.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// A token request, parsed: what the caller presents, and what it asks for.
pub(super) struct TokenRequest<'a> {
    /// What proves who asks.
    pub(super) proof: Proof<'a>,
    /// How it was presented, for the log.
    pub(super) method: AuthMethod,
    /// The access asked for.
    pub(super) requested: Vec<ResourceScope>,
    /// The refresh token asked for.
    pub(super) refresh: RefreshAsked<'a>,
    /// The OAuth2 form also answers with the granted `scope`.
    pub(super) oauth_form: bool,
    /// `client_id`, for the log.
    pub(super) client_id: &'a str,
    /// The client's address, for the identity seam.
    pub(super) client: Option<IpAddr>,
}

/// What proves who asks.
pub(super) enum Proof<'a> {
    /// Nothing: anonymous.
    Nothing,
    /// A user name and password.
    Password { user: &'a str, password: &'a str },
    /// A refresh token regauth issued.
    RefreshToken(&'a str),
}

/// How the caller authenticated: the `grant` field of the token log.
#[derive(Clone, Copy)]
pub(super) enum AuthMethod {
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
    /// The value of the log's `grant` field.
    pub(super) fn label(self) -> &'static str {
        match self {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Basic => "basic",
            AuthMethod::BasicRefreshToken => "basic_refresh_token",
            AuthMethod::Password => "password",
            AuthMethod::RefreshToken => "refresh_token",
        }
    }
}

/// Parses `GET /token`: the query, and the `Authorization` header.
pub(super) fn parse_get<'a>(
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
pub(super) async fn read_form(
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

/// Parses the OAuth2 `POST /token` form.
pub(super) fn parse_post<'a>(
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
}

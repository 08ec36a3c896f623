//! Refresh tokens as an identity source: a token regauth issued earlier
//! names its account again, as long as the credential it was bound to
//! still holds (a changed password or a removed user revokes it, with no
//! server-side token store).

use subtle::ConstantTimeEq;

use super::{api_tokens, Identity, IdentityError, Source};
use crate::snapshot::Snapshot;
use crate::token::{self, Expectations, RefreshClaims};

/// What the client is told for every refused refresh token.
const REFUSED: &str = "invalid or revoked refresh token";

/// The identity a refresh token stands for, checked at `now`.
pub fn redeem(snapshot: &Snapshot, presented: &str, now: i64) -> Result<Identity, IdentityError> {
    let config = &snapshot.config;
    let expect = Expectations {
        issuer: &config.issuer,
        audience: &config.service,
        leeway_secs: 0,
        now,
    };
    let refused = |detail: String| IdentityError::WrongCredential {
        reason: REFUSED,
        detail,
    };
    let claims: RefreshClaims = token::verify_refresh(&snapshot.verifying_keys, presented, &expect)
        .map_err(|error| refused(error.to_string()))?;
    if api_tokens::is_refresh_binding(&claims.credential) {
        // From an API-token login: good while that token is.
        return api_tokens::redeem(snapshot, &claims.credential, &claims.sub, now)
            .map_err(|refusal| refused(refusal.to_string()));
    }
    let user = snapshot
        .users
        .get(&claims.sub)
        .ok_or_else(|| refused("user no longer exists".into()))?;
    if user.tokens_only {
        return Err(refused(
            "the account is tokens_only: refresh tokens from password logins are refused".into(),
        ));
    }
    let binding = user.credential_fingerprint();
    if !bool::from(binding.as_bytes().ct_eq(claims.credential.as_bytes())) {
        return Err(refused(
            "password changed since the token was issued".into(),
        ));
    }
    Ok(Identity {
        account: claims.sub,
        groups: user.groups.clone(),
        source: Source::RefreshToken,
        refresh_binding: Some(binding),
        scope_limit: None,
    })
}

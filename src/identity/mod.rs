//! Identity sources (placeholder until the shared seam lands): API tokens
//! and OIDC federation.

pub mod api_tokens;
pub mod federation;
pub mod jwks;

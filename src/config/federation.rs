//! The config's `federation` section: OIDC issuers whose ID tokens log in
//! (keyless CI). Only the document's shape lives here; the section is
//! compiled (URLs, account template, claim conditions, trusted roots) by
//! [`crate::identity::federation`] when a snapshot loads, with errors that
//! name the entry's field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One trusted OIDC issuer.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    /// The issuer's URL (`https://…`), compared exactly with the token's
    /// `iss`; discovery is at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    /// The audience tokens must name in `aud` (a string, or one of an array).
    pub audience: String,
    /// Template of the account name over the token's claims, e.g.
    /// `ci-{repository_owner}` or `ci-{namespace_path|lower}`.
    pub account: String,
    /// Groups the ACL sees for every identity of this entry.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Conditions on claims, all of which must hold: an exact value, or a
    /// glob with the ACL's `*` (within a `/` segment) and `**` (across).
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// The JWKS URL, instead of the one discovery names.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// PEM file of extra root certificates trusted for this issuer.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Free text for the operator; ignored.
    #[serde(default)]
    pub comment: Option<String>,
}

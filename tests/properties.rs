//! Property-based tests of the pure decision code, through the public API only: the scope
//! grammar (`scope`), ACL evaluation and its name patterns (`acl`), request routing
//! (`route`) and token signing and verification (`token`, `keys`).
//!
//! Where a property needs an oracle, the oracle is the simplest thing that could be right:
//! a memoised recursive glob matcher, a first-match rule scan, the documented method table.
//! Cases are capped so the whole file runs in a few seconds in debug builds, and failures
//! are not persisted to the tree (proptest prints the minimal input instead).
//!
//! Layout: one file per module under test in `properties/`; strategies shared between
//! them (repository names) live in `properties/scope.rs`.

use proptest::prelude::ProptestConfig;

#[path = "properties/acl.rs"]
mod acl;
#[path = "properties/route.rs"]
mod route;
#[path = "properties/scope.rs"]
mod scope;
#[path = "properties/token.rs"]
mod token;

use scope::*;

/// Capped cases, nothing persisted to the tree.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

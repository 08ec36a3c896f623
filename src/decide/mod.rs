//! Every allow/deny decision of the two endpoints, as pure functions: no
//! hyper types, no I/O, no clock (the caller passes `now` in). The HTTP
//! layer parses a request, asks the identity seam who is asking, calls one
//! function here, and answers with what it returns.
//!
//! - [`auth`]: what `/auth` answers for an original registry request.
//! - [`token`]: what a token grants, and what it says.
//!
//! What an access grant covers (the meaning of `*`) is defined once, by
//! [`crate::acl::Actions`], for ACL rules and verified tokens alike.

pub mod auth;
pub mod token;

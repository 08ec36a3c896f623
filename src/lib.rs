//! regauth guards private container registries: it is a Distribution
//! "token authentication" server and an nginx `auth_request` sidecar in one
//! small binary.
//!
//! # Layout
//!
//! A request walks one way through the house: parse → decide → answer.
//!
//! - Pure decision code, no I/O and no clock (the clock is passed in):
//!   [`decide`] (every allow/deny of `/auth` and of the token endpoint),
//!   [`scope`] (the scope grammar), [`acl`] (ordered rules, first match,
//!   and [`acl::Actions`], the one meaning of `*`),
//!   [`pattern`] (ACL name globs and their linear-time matcher),
//!   [`route`] (original method + URI → the access it needs), [`query`]
//!   (queries and forms read the one way every parser agrees on),
//!   [`media_type`] (a `Content-Type` read the way Go reads it),
//!   [`token`] (JWT claims, signing and verification), [`keys`] (PEM keys,
//!   key IDs, certificates, the JWKS for registry 3).
//! - Configuration: [`config`] (the JSON document, parsed once into typed
//!   values: bounded [`config::Seconds`] and [`config::Count`], parsed
//!   [`config::HeaderField`]s and [`config::Listener`]s), [`users`]
//!   (inline users and htpasswd), [`snapshot`] (everything derived from one
//!   config version), [`state`] (the swappable snapshot plus caches),
//!   [`reload`] (file watching and SIGHUP).
//! - Identities: [`identity`] (presented credentials → who asks, one entry
//!   point for every source; file users with bcrypt off the reactor and a
//!   cache of successes in [`identity::files`], refresh tokens in
//!   [`identity::refresh`], scoped API tokens in [`identity::api_tokens`],
//!   OIDC workload federation in [`identity::federation`] with the issuers'
//!   keys in [`identity::jwks`], the directory in [`identity::ldap`]); every
//!   source that checks a secret is guarded by [`limiter`] (failed logins
//!   per account and address: pure, clock passed in; run by
//!   [`identity::login_limits`]; identical logins in flight share one check,
//!   [`identity::turns`]), and bcrypt by [`work_queue`] (bounded,
//!   per-address fair queue), both counting against the [`client_address`].
//! - Checks with state: [`token_cache`] (verified tokens for `/auth`, kept
//!   as compact [`verified_token`]s: what `/auth` decides on, expiry with
//!   `now` passed in).
//! - Edges: [`http`] (router; endpoints that parse, ask [`identity`], call
//!   [`decide`] and answer; the one mapping from errors to responses),
//!   [`listeners`] (TCP, unix and systemd sockets), [`server`] (accept
//!   loop, graceful drain), [`metrics`] (Prometheus), [`logging`] (a
//!   non-blocking writer; escaped text), [`app`] (wires
//!   `serve`), [`commands`] (the other CLI commands), [`token_commands`]
//!   (`regauth token create|list|revoke`), [`explain`] (`regauth explain`:
//!   which rule decides, and why the others do not).

pub mod acl;
pub mod app;
pub mod client_address;
pub mod commands;
pub mod config;
pub mod decide;
pub mod explain;
pub mod http;
pub mod identity;
pub mod keys;
pub mod limiter;
pub mod listeners;
pub mod logging;
pub mod media_type;
pub mod metrics;
pub mod pattern;
pub mod query;
pub mod reload;
pub mod route;
pub mod scope;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod token;
pub mod token_cache;
pub mod token_commands;
pub mod users;
pub mod verified_token;
pub mod work_queue;

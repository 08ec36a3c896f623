//! `/healthz` and `/metrics`: unauthenticated, like Pulp's status API, and
//! free of anything secret.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use super::{json_response, Body};
use crate::snapshot::Snapshot;
use crate::state::State;

/// Liveness and what is in force: config generation, key IDs, uptime.
pub fn healthz(state: &State, snapshot: &Snapshot) -> Response<Body> {
    let key_ids: Vec<_> = snapshot
        .verifying_keys
        .iter()
        .map(|key| json!({ "libtrust": key.libtrust_kid, "thumbprint": key.thumbprint }))
        .collect();
    let body = json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "service": snapshot.config.service,
        "config_generation": snapshot.generation,
        "signing_kid": snapshot.signing_key.kid,
        "verifying_keys": key_ids,
        "uptime_secs": state.started.elapsed().as_secs(),
    });
    json_response(StatusCode::OK, &body)
}

/// Prometheus text exposition of every counter and histogram; gauges of
/// tables are read now.
pub fn metrics(state: &State) -> Response<Body> {
    crate::identity::login_limits::record_table_sizes(&state.login_limiter);
    let text = state
        .metrics
        .as_ref()
        .map(|handle| handle.render())
        .unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

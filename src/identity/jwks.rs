//! The federated issuers' signing keys: fetched over HTTPS (rustls), cached,
//! refreshed without holding up logins.
//!
//! - Discovery: `<issuer>/.well-known/openid-configuration` names the
//!   `jwks_uri` (unless the config gives one); its `issuer` must equal the
//!   configured issuer.
//! - A login whose `kid` is cached never waits: keys older than
//!   [`Timing::refresh_after`] are refreshed in the background, and serve
//!   meanwhile.
//! - An unknown `kid` (the issuer rotated) fetches at once, but at most once
//!   per [`Timing::min_refetch`] per issuer; concurrent logins share that one
//!   fetch, and it is bounded by [`Timing::fetch_timeout`]. Logins for other
//!   issuers, and logins with cached keys, never wait for it.
//! - Issuer unreachable: the cached keys keep working until they are
//!   [`Timing::max_age`] old (counted from the last successful fetch).
//!
//! The cache lives in the server's state (it survives reloads); its size is
//! bounded by the number of configured issuers.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use super::federation::{FederationError, IssuerKey};

/// Largest discovery document or JWKS read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Longest a connection to an issuer is kept, whatever happens.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Most keys kept per issuer.
const MAX_KEYS: usize = 100;

/// How keys age and how often issuers are asked.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Keys older than this are refreshed in the background on next use.
    pub refresh_after: Duration,
    /// Keys older than this (no successful fetch since) are not used.
    pub max_age: Duration,
    /// Least time between two fetches for one issuer (unknown `kid`s,
    /// failures).
    pub min_refetch: Duration,
    /// Longest a fetch (connect, TLS, request, body) may take.
    pub fetch_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh_after: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(24 * 3600),
            min_refetch: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

/// Where and how one issuer's keys are fetched; built at config load.
#[derive(Clone)]
pub struct KeySource {
    /// The issuer, compared with the discovery document's `issuer`.
    pub issuer: String,
    /// The configured `jwks_uri`, skipping discovery.
    pub jwks_uri: Option<http::Uri>,
    /// System roots plus the entry's `ca_file`.
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySource")
            .field("issuer", &self.issuer)
            .field("jwks_uri", &self.jwks_uri)
            .finish()
    }
}

/// Why keys could not be fetched. For logs; never shown with a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(String);

/// A fetch under way: the JWKS's `keys` array, or why there is none.
pub type Fetching<'a> = Pin<Box<dyn Future<Output = Result<Vec<Value>, FetchError>> + Send + 'a>>;

/// Fetches an issuer's JWKS (the `keys` array). A trait so the cache can be
/// tested without a network; [`HttpsFetcher`] is the real one.
pub trait FetchKeys: Send + Sync + 'static {
    /// The JWKS of `source`'s issuer.
    fn fetch<'a>(&'a self, source: &'a KeySource) -> Fetching<'a>;
}

/// The keys of one issuer at one moment.
struct KeySet {
    keys: Vec<IssuerKey>,
    fetched_at: Instant,
}

/// One issuer's cache slot.
#[derive(Default)]
struct Slot {
    keys: ArcSwapOption<KeySet>,
    /// When the last fetch started, good or bad (rate limit).
    last_attempt: Mutex<Option<Instant>>,
    /// The last failure, reported while no keys are usable.
    last_error: Mutex<Option<String>>,
    /// Held while fetching: concurrent misses wait for the one fetch.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

/// The key cache of every federated issuer.
pub struct KeyCache {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    fetcher: Arc<dyn FetchKeys>,
    timing: Timing,
}

impl KeyCache {
    /// A cache fetching with `fetcher`.
    pub fn new(fetcher: Arc<dyn FetchKeys>, timing: Timing) -> Arc<KeyCache> {
        Arc::new(KeyCache {
            slots: Mutex::new(HashMap::new()),
            fetcher,
            timing,
        })
    }

    /// A cache fetching over HTTPS with the default timing.
    pub fn https() -> Arc<KeyCache> {
        KeyCache::new(Arc::new(HttpsFetcher), Timing::default())
    }

    /// Drops the slots of issuers no longer configured (after a reload).
    pub fn retain(&self, issuers: &[&str]) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.retain(|issuer, _| issuers.contains(&issuer.as_str()));
        }
    }

    fn slot(&self, issuer: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(slots.entry(issuer.to_owned()).or_default())
    }

    /// The key `kid` of `source`'s issuer at `now`; without a `kid`, the
    /// issuer's only key (several keys and no `kid` is ambiguous: refused).
    pub async fn key(
        self: &Arc<Self>,
        source: &KeySource,
        kid: Option<&str>,
        now: Instant,
    ) -> Result<IssuerKey, FederationError> {
        let slot = self.slot(&source.issuer);
        if let Some(set) = slot.keys.load_full() {
            let age = now.saturating_duration_since(set.fetched_at);
            if age < self.timing.max_age {
                if age >= self.timing.refresh_after {
                    self.refresh_in_background(&slot, source, now);
                }
                if let Some(key) = find(&set, kid) {
                    return Ok(key);
                }
            }
        }
        // Unknown kid, or nothing usable: fetch now, if the rate allows.
        let _fetching = slot.fetching.lock().await;
        // Someone else may have fetched while we waited.
        if let Some(set) = slot.keys.load_full() {
            let fresh = now.saturating_duration_since(set.fetched_at) < self.timing.max_age;
            if let Some(key) = find(&set, kid).filter(|_| fresh) {
                return Ok(key);
            }
        }
        if !self.may_fetch(&slot, now) {
            return Err(self.miss(&slot, source, kid, now));
        }
        self.fetch_into(&slot, source, now).await;
        match slot.keys.load_full() {
            Some(set) if now.saturating_duration_since(set.fetched_at) < self.timing.max_age => {
                find(&set, kid).ok_or_else(|| self.miss(&slot, source, kid, now))
            }
            _ => Err(self.miss(&slot, source, kid, now)),
        }
    }

    /// The refusal when no usable key is found: unreachable when the last
    /// fetch failed and no keys are usable, else unknown key.
    fn miss(
        &self,
        slot: &Slot,
        source: &KeySource,
        kid: Option<&str>,
        now: Instant,
    ) -> FederationError {
        let usable =
            slot.keys.load().as_ref().is_some_and(|set| {
                now.saturating_duration_since(set.fetched_at) < self.timing.max_age
            });
        let error = slot.last_error.lock().map(|e| e.clone()).unwrap_or(None);
        match error {
            Some(cause) if !usable => FederationError::IssuerUnreachable {
                issuer: source.issuer.clone(),
                cause,
            },
            _ => FederationError::UnknownKey {
                issuer: source.issuer.clone(),
                kid: kid.map_or_else(|| "(none)".to_owned(), |kid| format!("{kid:?}")),
            },
        }
    }

    fn may_fetch(&self, slot: &Slot, now: Instant) -> bool {
        let mut last = slot.last_attempt.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.saturating_duration_since(at) < self.timing.min_refetch => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Fetches and stores; on failure keeps the old keys and records why.
    async fn fetch_into(&self, slot: &Slot, source: &KeySource, now: Instant) {
        let fetched =
            tokio::time::timeout(self.timing.fetch_timeout, self.fetcher.fetch(source)).await;
        let result = match fetched {
            Ok(Ok(jwks)) => parse_keys(&jwks),
            Ok(Err(error)) => Err(error.0),
            Err(_) => Err(format!(
                "no answer within {}s",
                self.timing.fetch_timeout.as_secs()
            )),
        };
        match result {
            Ok(keys) => {
                tracing::info!(issuer = %source.issuer, keys = keys.len(), "identity token keys fetched");
                metrics::counter!("regauth_federation_key_fetches_total", "result" => "ok")
                    .increment(1);
                slot.keys.store(Some(Arc::new(KeySet {
                    keys,
                    fetched_at: now,
                })));
                if let Ok(mut error) = slot.last_error.lock() {
                    *error = None;
                }
            }
            Err(cause) => {
                tracing::warn!(issuer = %source.issuer, %cause, "cannot fetch identity token keys; cached keys (if any) stay in use");
                metrics::counter!("regauth_federation_key_fetches_total", "result" => "failed")
                    .increment(1);
                if let Ok(mut error) = slot.last_error.lock() {
                    *error = Some(cause);
                }
            }
        }
    }

    fn refresh_in_background(self: &Arc<Self>, slot: &Arc<Slot>, source: &KeySource, now: Instant) {
        // A refresh already running holds the lock: nothing to do.
        let Ok(guard) = Arc::clone(&slot.fetching).try_lock_owned() else {
            return;
        };
        if !self.may_fetch(slot, now) {
            return;
        }
        let (cache, slot, source) = (Arc::clone(self), Arc::clone(slot), source.clone());
        tokio::spawn(async move {
            let _guard = guard;
            cache.fetch_into(&slot, &source, Instant::now()).await;
        });
    }
}

fn find(set: &KeySet, kid: Option<&str>) -> Option<IssuerKey> {
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .find(|key| key.kid.as_deref() == Some(kid))
            .cloned(),
        // Without a kid, only an issuer with a single key is unambiguous.
        None if set.keys.len() == 1 => set.keys.first().cloned(),
        None => None,
    }
}

/// The usable keys of a JWKS's `keys` array; keys we cannot use (other
/// types, encryption keys) are skipped, not fatal.
fn parse_keys(jwks: &[Value]) -> Result<Vec<IssuerKey>, String> {
    let keys: Vec<IssuerKey> = jwks
        .iter()
        .take(MAX_KEYS)
        .filter_map(|value| serde_json::from_value(value.clone()).ok())
        .filter_map(|jwk| IssuerKey::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("the JWKS has no usable signing key".into());
    }
    Ok(keys)
}

/// Builds the TLS client settings for an issuer: the system's roots, plus
/// the certificates of `ca_file`. Blocking (reads files).
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|error| format!("{}: {error}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|error| format!("{}: {error}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|error| format!("{}: {error}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trusted root certificates: install ca-certificates or set ca_file".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| error.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Fetches keys over HTTPS: discovery (unless `jwks_uri` is configured),
/// then the JWKS. One connection per document; fetches are rare.
pub struct HttpsFetcher;

impl FetchKeys for HttpsFetcher {
    fn fetch<'a>(&'a self, source: &'a KeySource) -> Fetching<'a> {
        Box::pin(async move {
            let jwks_uri = match &source.jwks_uri {
                Some(uri) => uri.clone(),
                None => discover(source).await?,
            };
            let jwks = get_json(&jwks_uri, &source.tls).await?;
            match jwks.get("keys") {
                Some(Value::Array(keys)) => Ok(keys.clone()),
                _ => Err(FetchError(format!(
                    "{jwks_uri}: not a JWKS (no `keys` array)"
                ))),
            }
        })
    }
}

/// Reads the discovery document and returns its `jwks_uri`.
async fn discover(source: &KeySource) -> Result<http::Uri, FetchError> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        source.issuer.trim_end_matches('/')
    );
    let uri: http::Uri = url
        .parse()
        .map_err(|_| FetchError(format!("{url}: not a URL")))?;
    let document = get_json(&uri, &source.tls).await?;
    if document.get("issuer").and_then(Value::as_str) != Some(source.issuer.as_str()) {
        return Err(FetchError(format!(
            "{url}: its `issuer` is not {:?}",
            source.issuer
        )));
    }
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| FetchError(format!("{url}: no `jwks_uri`")))?;
    let parsed: http::Uri = jwks_uri
        .parse()
        .map_err(|_| FetchError(format!("{url}: `jwks_uri` is not a URL")))?;
    if parsed.scheme_str() != Some("https") {
        return Err(FetchError(format!("{url}: `jwks_uri` is not https")));
    }
    Ok(parsed)
}

/// GETs a JSON document over HTTPS with hyper; 200 and JSON or an error.
async fn get_json(uri: &http::Uri, tls: &Arc<rustls::ClientConfig>) -> Result<Value, FetchError> {
    let fail = |what: String| FetchError(format!("{uri}: {what}"));
    if uri.scheme_str() != Some("https") {
        return Err(fail("only https:// is fetched".into()));
    }
    let host = uri.host().ok_or_else(|| fail("no host".into()))?;
    // `http::Uri` keeps IPv6 literals in brackets; connecting wants them bare.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let server_name = ServerName::try_from(bare_host.to_owned())
        .map_err(|_| fail("the host is not a valid TLS server name".into()))?;
    let tcp = tokio::net::TcpStream::connect((bare_host, port))
        .await
        .map_err(|error| fail(format!("cannot connect: {error}")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls));
    let stream = connector
        .connect(server_name, tcp)
        .await
        .map_err(|error| fail(format!("TLS: {error}")))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| fail(format!("HTTP: {error}")))?;
    // The connection ends with the exchange; the bound only guards against
    // a peer that never lets go once the caller has given up on it.
    tokio::spawn(async move {
        let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
    });
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("regauth/", env!("CARGO_PKG_VERSION")),
        )
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|error| fail(error.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| fail(format!("HTTP: {error}")))?;
    if response.status() != http::StatusCode::OK {
        return Err(fail(format!("answered {}", response.status())));
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|error| fail(format!("reading the body: {error}")))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|_| fail("the body is not JSON".into()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use serde_json::json;

    /// A fetcher that answers from a list it can be told to change, and
    /// counts its calls.
    struct Scripted {
        answer: Mutex<Result<Vec<Value>, FetchError>>,
        calls: AtomicUsize,
        delay: Duration,
    }

    impl FetchKeys for Scripted {
        fn fetch<'a>(&'a self, _: &'a KeySource) -> Fetching<'a> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                self.answer.lock().unwrap().clone()
            })
        }
    }

    fn ec_jwk(kid: &str) -> Value {
        // A valid P-256 public key (the generator point).
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU",
        })
    }

    fn source() -> KeySource {
        KeySource {
            issuer: "https://issuer.test".into(),
            jwks_uri: None,
            tls: tls_config(None).unwrap(),
        }
    }

    fn cache(
        answer: Result<Vec<Value>, FetchError>,
        delay: Duration,
    ) -> (Arc<KeyCache>, Arc<Scripted>) {
        let fetcher = Arc::new(Scripted {
            answer: Mutex::new(answer),
            calls: AtomicUsize::new(0),
            delay,
        });
        let timing = Timing {
            refresh_after: Duration::from_secs(100),
            max_age: Duration::from_secs(1000),
            min_refetch: Duration::from_secs(10),
            fetch_timeout: Duration::from_secs(2),
        };
        (KeyCache::new(fetcher.clone(), timing), fetcher)
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_served_from_the_cache() {
        let (cache, fetcher) = cache(
            Ok(vec![ec_jwk("a"), json!({"kty": "oct", "k": "AA"})]),
            Duration::ZERO,
        );
        let start = Instant::now();
        let key = cache.key(&source(), Some("a"), start).await.unwrap();
        assert_eq!(key.kid.as_deref(), Some("a"));
        cache
            .key(&source(), Some("a"), start + Duration::from_secs(50))
            .await
            .unwrap();
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
        // Without a kid, a single key is used.
        assert!(cache.key(&source(), None, start).await.is_ok());
    }

    #[tokio::test]
    async fn an_unknown_kid_refetches_at_most_once_per_interval() {
        let (cache, fetcher) = cache(Ok(vec![ec_jwk("a")]), Duration::ZERO);
        let start = Instant::now();
        cache.key(&source(), Some("a"), start).await.unwrap();
        // Rotation: the issuer now has "b".
        *fetcher.answer.lock().unwrap() = Ok(vec![ec_jwk("a"), ec_jwk("b")]);
        let early = cache
            .key(&source(), Some("b"), start + Duration::from_secs(5))
            .await;
        assert_eq!(early.unwrap_err().label(), "unknown_key", "rate limited");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
        let later = start + Duration::from_secs(11);
        assert!(cache.key(&source(), Some("b"), later).await.is_ok());
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
        // A kid the issuer never had: one more fetch after the interval, then refused.
        let error = cache
            .key(&source(), Some("zzz"), later + Duration::from_secs(11))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("\"zzz\""), "{error}");
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn cached_keys_outlive_an_unreachable_issuer_until_they_expire() {
        let (cache, fetcher) = cache(Ok(vec![ec_jwk("a")]), Duration::ZERO);
        let start = Instant::now();
        cache.key(&source(), Some("a"), start).await.unwrap();
        *fetcher.answer.lock().unwrap() = Err(FetchError("connection refused".into()));
        // Stale: served, and a background refresh (which fails) is started.
        let stale = start + Duration::from_secs(500);
        assert!(cache.key(&source(), Some("a"), stale).await.is_ok());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 2);
        assert!(cache
            .key(&source(), Some("a"), stale + Duration::from_secs(400))
            .await
            .is_ok());
        // Too old: refused, naming the issuer and the cause.
        let expired = start + Duration::from_secs(1000);
        let error = cache.key(&source(), Some("a"), expired).await.unwrap_err();
        assert!(error.to_string().contains("https://issuer.test"), "{error}");
        assert!(error.to_string().contains("connection refused"), "{error}");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch_and_other_issuers_do_not_wait() {
        let (cache, fetcher) = cache(Ok(vec![ec_jwk("a")]), Duration::from_millis(300));
        let start = Instant::now();
        let other = KeySource {
            issuer: "https://other.test".into(),
            ..source()
        };
        // Warm the other issuer first.
        cache.key(&other, Some("a"), start).await.unwrap();
        let slow = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move {
                let source = source();
                let a = cache.key(&source, Some("a"), start);
                let b = cache.key(&source, Some("a"), start);
                let (a, b) = tokio::join!(a, b);
                (a.is_ok(), b.is_ok())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let began = Instant::now();
        cache.key(&other, Some("a"), start).await.unwrap();
        assert!(
            began.elapsed() < Duration::from_millis(200),
            "a cached issuer waited for a fetch"
        );
        assert_eq!(slow.await.unwrap(), (true, true));
        assert_eq!(
            fetcher.calls.load(Ordering::SeqCst),
            2,
            "one fetch per issuer"
        );
    }

    #[tokio::test]
    async fn a_hanging_issuer_times_out() {
        let (cache, _) = cache(Ok(vec![ec_jwk("a")]), Duration::from_secs(5));
        let error = cache
            .key(&source(), Some("a"), Instant::now())
            .await
            .unwrap_err();
        assert_eq!(error.label(), "issuer_unreachable");
        assert!(error.to_string().contains("no answer within 2s"), "{error}");
    }

    #[test]
    fn a_jwks_without_signing_keys_is_an_error() {
        assert!(parse_keys(&[json!({"kty": "oct", "k": "AA"})]).is_err());
        assert!(parse_keys(&[json!("garbage"), ec_jwk("a")]).is_ok());
    }

    #[test]
    fn ca_files_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(tls_config(Some(&empty))
            .unwrap_err()
            .contains("no PEM certificate"));
        assert!(tls_config(Some(&dir.path().join("missing.pem"))).is_err());
    }
}

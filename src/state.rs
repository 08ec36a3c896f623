//! The shared [`State`] handle: the current [`Snapshot`] behind an
//! `ArcSwap`, the caches that belong to it, and process-wide facts.
//! Handlers load the snapshot once per request and use only that one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::identity::files::CredentialChecker;
use crate::identity::jwks::KeyCache;
use crate::identity::login_limits::limiter_for;
use crate::identity::turns::LoginTurns;
use crate::limiter::LoginLimiter;
use crate::snapshot::Snapshot;
use crate::token_cache::TokenCache;

/// Everything requests share. Cheap to clone through `Arc<State>`.
pub struct State {
    /// The config in force; replaced whole on reload.
    snapshot: ArcSwap<Snapshot>,
    /// Password checks and their cache.
    pub credentials: CredentialChecker,
    /// Failed logins per account and address (sized at start).
    pub login_limiter: LoginLimiter,
    /// Identical logins in flight take turns (sized like the limiter).
    pub login_turns: LoginTurns,
    /// Verified access tokens for `/auth`.
    pub tokens: TokenCache,
    /// Federated issuers' signing keys; kept across reloads.
    pub federation_keys: Arc<KeyCache>,
    /// The config file reloads read.
    pub config_path: PathBuf,
    /// When the process started, for `/healthz`.
    pub started: Instant,
    /// Renders `/metrics`; absent when no recorder was installed (tests).
    pub metrics: Option<PrometheusHandle>,
}

impl State {
    /// Wraps the first snapshot.
    pub fn new(
        mut snapshot: Snapshot,
        config_path: PathBuf,
        metrics: Option<PrometheusHandle>,
    ) -> State {
        let credentials = CredentialChecker::new(
            snapshot.config.credential_cache.duration(),
            snapshot.config.login_limits.queue,
        );
        let login_limiter = limiter_for(&snapshot.config.login_limits);
        let login_turns = LoginTurns::new(snapshot.config.login_limits.table_capacity);
        let tokens = TokenCache::new(snapshot.config.auth.cache_capacity.get());
        snapshot.generation = 1;
        State {
            snapshot: ArcSwap::from_pointee(snapshot),
            credentials,
            login_limiter,
            login_turns,
            federation_keys: KeyCache::https(),
            tokens,
            config_path,
            started: Instant::now(),
            metrics,
        }
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Puts a new snapshot in force and returns its generation.
    /// Remembered password checks and verified tokens belonged to the old
    /// users and keys, so they go too. Reloads are serialised by the
    /// reloader, so reading the old generation here does not race.
    pub fn replace(&self, mut snapshot: Snapshot) -> u64 {
        let generation = self.snapshot.load().generation + 1;
        snapshot.generation = generation;
        self.snapshot.store(Arc::new(snapshot));
        self.credentials.clear();
        self.tokens.clear();
        self.federation_keys
            .retain(&self.snapshot.load().federation.issuers());
        generation
    }
}

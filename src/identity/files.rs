//! The file users source: inline users and htpasswd entries, checked by
//! password. bcrypt runs off the async reactor behind a bounded queue shared
//! fairly between client addresses (a flood from one address is refused
//! rather than queued in front of everyone), and a short-lived cache of
//! successes lets a client's burst of token requests pay for bcrypt once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use super::ldap::DirectoryUser;
use super::login_limits::refused;
use super::secret_key::SecretKeyer;
use super::{Credentials, Identity, IdentityError, Source};
use crate::client_address::ClientAddress;
use crate::config::QueueLimits;
use crate::metrics::Handles;
use crate::users::{User, Users};
use crate::work_queue::{JobError, WorkQueue};

/// What the client is told for an unknown user and a wrong password alike.
const WRONG_PASSWORD: &str = "invalid username or password";

/// Verifies Basic credentials against a [`Users`] table.
pub struct CredentialChecker {
    /// Keyed digests of (user, password, stored hash) that recently verified.
    /// The stored hash is part of the key so a changed password can never
    /// hit an old entry, even before the reload clears the cache.
    /// Directory logins are remembered here too, with the directory's answer.
    verified: moka::future::Cache<[u8; 32], Remembered>,
    /// Cache keys: the cache never holds anything that could be attacked
    /// offline to recover a password.
    keyer: SecretKeyer,
    /// Bounds bcrypt runs, in total and per client address, so a flood of
    /// bad passwords can neither take every blocking thread nor make
    /// everyone else wait behind it.
    bcrypt: WorkQueue,
}

/// What a remembered success holds.
#[derive(Clone)]
enum Remembered {
    /// A file user: the user table has the rest.
    File,
    /// A directory login: the directory's answer (account and groups), so
    /// a burst of token requests costs one bind, and the groups are as
    /// fresh as the cache's lifetime.
    Directory(Arc<DirectoryUser>),
}

impl Remembered {
    /// The cache's capacity counts file users as 1 and directory users by
    /// size, so groups cannot grow the cache past its bound.
    fn weight(&self) -> u32 {
        match self {
            Remembered::File => 1,
            Remembered::Directory(user) => {
                let bytes = user.account.len()
                    + user.dn.len()
                    + user.groups.iter().map(String::len).sum::<usize>();
                1 + u32::try_from(bytes / 128).unwrap_or(u32::MAX)
            }
        }
    }
}

/// `regauth_credential_cache_total` by result: counted on every password
/// login, so through handles registered once.
static LOOKUPS: Handles<&str, metrics::Counter, 2> = Handles::new();

fn count_lookup(result: &'static str) {
    LOOKUPS.record(
        result,
        || metrics::counter!("regauth_credential_cache_total", "result" => result),
        |counter| counter.increment(1),
    );
}

/// A file user as the ACL sees them.
fn file_identity(name: &str, user: User) -> Identity {
    Identity {
        account: name.to_owned(),
        refresh_binding: Some(user.credential_fingerprint()),
        groups: user.groups,
        source: Source::File,
        scope_limit: None,
    }
}

/// Stands in for the stored hash in the cache key of directory logins; no
/// bcrypt hash starts with a NUL, so the two kinds can never collide.
const DIRECTORY_KEY_TAG: &str = "\0directory";

impl CredentialChecker {
    /// A checker that remembers successes for `ttl` and runs bcrypt within
    /// `queue`'s bounds.
    pub fn new(ttl: Duration, queue: QueueLimits) -> CredentialChecker {
        CredentialChecker {
            verified: moka::future::Cache::builder()
                .max_capacity(100_000)
                .weigher(|_, remembered: &Remembered| remembered.weight())
                .time_to_live(ttl)
                .build(),
            keyer: SecretKeyer::random(),
            bcrypt: WorkQueue::new("bcrypt", queue),
        }
    }

    /// Forgets every remembered success (users changed).
    pub fn clear(&self) {
        self.verified.invalidate_all();
    }

    /// Checks the presented user name and password; on success, the user's
    /// [`Identity`].
    pub async fn authenticate(
        &self,
        users: &Users,
        credentials: &Credentials<'_>,
    ) -> Result<Identity, IdentityError> {
        let Credentials {
            user: name,
            password,
            client,
        } = *credentials;
        let user = self.verify(users, name, password, client).await?;
        Ok(file_identity(name, user))
    }

    /// The identity of `name` if this password of theirs verified within
    /// the cache's lifetime: no bcrypt, nothing to wait for. `None` says
    /// nothing about the password; [`authenticate`](Self::authenticate)
    /// is the check. Counted as a cache hit only when found.
    pub fn remembered(&self, users: &Users, name: &str, password: &str) -> Option<Identity> {
        let user = users.get(name).filter(|user| !user.tokens_only)?;
        let cache_key = self.cache_key(name, password, &user.password_hash);
        if !self.verified.contains_key(&cache_key) {
            return None;
        }
        count_lookup("hit");
        Some(file_identity(name, user.clone()))
    }

    /// Checks `name`/`password`; on success returns the user's record.
    async fn verify(
        &self,
        users: &Users,
        name: &str,
        password: &str,
        client: ClientAddress,
    ) -> Result<User, IdentityError> {
        let user = users.get(name);
        // An unknown name costs the same bcrypt work as a wrong password.
        let stored_hash = user.map_or(users.unknown_user_hash(), |u| u.password_hash.as_str());
        let cache_key = self.cache_key(name, password, stored_hash);
        if self.verified.contains_key(&cache_key) {
            count_lookup("hit");
            // contains_key is true only for entries of existing users, but a
            // reload may have removed the user in between: ask again.
            return user
                .cloned()
                .ok_or_else(|| IdentityError::wrong(WRONG_PASSWORD));
        }
        count_lookup("miss");

        let matches = self.run_bcrypt(client, password, stored_hash).await?;
        match user {
            Some(user) if matches => {
                self.verified.insert(cache_key, Remembered::File).await;
                Ok(user.clone())
            }
            _ => Err(IdentityError::wrong(WRONG_PASSWORD)),
        }
    }

    /// A directory login of `name` with `password` remembered from the
    /// last `ttl`, if any.
    pub async fn remembered_directory_login(
        &self,
        name: &str,
        password: &str,
    ) -> Option<Arc<DirectoryUser>> {
        let key = self.cache_key(name, password, DIRECTORY_KEY_TAG);
        let found = match self.verified.get(&key).await {
            Some(Remembered::Directory(user)) => Some(user),
            _ => None,
        };
        count_lookup(if found.is_some() { "hit" } else { "miss" });
        found
    }

    /// Remembers a successful directory login for the cache's lifetime.
    pub async fn remember_directory_login(
        &self,
        name: &str,
        password: &str,
        user: Arc<DirectoryUser>,
    ) {
        let key = self.cache_key(name, password, DIRECTORY_KEY_TAG);
        self.verified.insert(key, Remembered::Directory(user)).await;
    }

    async fn run_bcrypt(
        &self,
        client: ClientAddress,
        password: &str,
        hash: &str,
    ) -> Result<bool, IdentityError> {
        let password = Zeroizing::new(password.to_owned());
        let hash: Arc<str> = Arc::from(hash);
        let outcome = self
            .bcrypt
            .run_blocking(client, move || {
                let started = Instant::now();
                let outcome = bcrypt::verify(password.as_bytes(), &hash);
                metrics::histogram!("regauth_bcrypt_seconds")
                    .record(started.elapsed().as_secs_f64());
                outcome
            })
            .await
            .map_err(|error| match error {
                JobError::Refused(refusal) => {
                    refused(refusal.label());
                    IdentityError::Limited {
                        retry_after: refusal.retry_after(),
                    }
                }
                JobError::Crashed(detail) => {
                    IdentityError::Internal(format!("bcrypt task failed: {detail}"))
                }
            })?;
        // Hashes are checked at load and `verify` truncates long passwords
        // instead of failing, so an error here is a stored hash we cannot
        // read: our fault, not a wrong password.
        outcome.map_err(|e| IdentityError::Internal(format!("stored bcrypt hash unreadable: {e}")))
    }

    fn cache_key(&self, name: &str, password: &str, stored_hash: &str) -> [u8; 32] {
        self.keyer.key_of(&[name, password, stored_hash])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoginLimits, UserSpec};
    use std::num::NonZeroUsize;

    fn checker() -> CredentialChecker {
        CredentialChecker::new(Duration::from_secs(60), LoginLimits::default().queue)
    }

    fn credentials<'a>(user: &'a str, password: &'a str) -> Credentials<'a> {
        Credentials {
            user,
            password,
            client: ClientAddress::Local,
        }
    }

    fn users_with(name: &str, password: &str) -> Users {
        let spec = UserSpec {
            password: bcrypt::hash(password, 4).unwrap(),
            groups: vec!["staff".into()],
            tokens_only: false,
        };
        let name = name.to_owned();
        Users::build([(&name, &spec)], vec![]).unwrap()
    }

    #[tokio::test]
    async fn right_password_passes_and_is_cached() {
        let users = users_with("alice", "secret");
        let checker = checker();
        let user = checker
            .verify(&users, "alice", "secret", ClientAddress::Local)
            .await
            .unwrap();
        assert_eq!(user.groups, vec!["staff".to_owned()]);
        assert!(checker.verified.contains_key(&checker.cache_key(
            "alice",
            "secret",
            &user.password_hash
        )));
        assert!(checker
            .verify(&users, "alice", "secret", ClientAddress::Local)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_are_the_same_error() {
        let users = users_with("alice", "secret");
        let checker = checker();
        let wrong = checker
            .verify(&users, "alice", "nope", ClientAddress::Local)
            .await
            .unwrap_err();
        let unknown = checker
            .verify(&users, "mallory", "secret", ClientAddress::Local)
            .await
            .unwrap_err();
        assert_eq!(wrong.to_string(), unknown.to_string());
        checker.verified.run_pending_tasks().await;
        assert_eq!(checker.verified.entry_count(), 0);
    }

    #[tokio::test]
    async fn a_changed_password_misses_the_cache() {
        let checker = checker();
        let before = users_with("alice", "old");
        checker
            .verify(&before, "alice", "old", ClientAddress::Local)
            .await
            .unwrap();
        let after = users_with("alice", "new");
        assert!(checker
            .verify(&after, "alice", "old", ClientAddress::Local)
            .await
            .is_err());
        assert!(checker
            .verify(&after, "alice", "new", ClientAddress::Local)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn the_identity_names_the_source_and_binds_refresh_tokens_to_the_hash() {
        let users = users_with("alice", "secret");
        let checker = checker();
        let identity = checker
            .authenticate(&users, &credentials("alice", "secret"))
            .await
            .unwrap();
        assert_eq!(identity.account, "alice");
        assert_eq!(identity.groups, vec!["staff".to_owned()]);
        assert_eq!(identity.source, Source::File);
        let fingerprint = users.get("alice").unwrap().credential_fingerprint();
        assert_eq!(identity.refresh_binding, Some(fingerprint));
        assert!(identity.scope_limit.is_none());
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_our_fault_not_a_wrong_password() {
        let spec = UserSpec {
            password: "$2y$04$not-a-real-hash".into(),
            groups: vec![],
            tokens_only: false,
        };
        let name = "alice".to_owned();
        let users = Users::build([(&name, &spec)], vec![]).unwrap();
        let checker = checker();
        let error = checker
            .authenticate(&users, &credentials("alice", "secret"))
            .await
            .unwrap_err();
        assert!(matches!(error, IdentityError::Internal(_)), "{error:?}");
    }

    #[tokio::test]
    async fn a_full_queue_refuses_without_running_bcrypt() {
        let users = users_with("alice", "secret");
        let one_at_a_time = QueueLimits {
            workers: NonZeroUsize::MIN,
            waiting: 0,
            per_address: NonZeroUsize::MIN,
        };
        let checker = CredentialChecker::new(Duration::from_secs(60), one_at_a_time);
        let busy = checker.bcrypt.admit(ClientAddress::Local).await.unwrap();
        let error = checker
            .authenticate(&users, &credentials("alice", "secret"))
            .await
            .unwrap_err();
        let IdentityError::Limited { retry_after } = error else {
            panic!("expected Limited, got {error:?}");
        };
        assert!(retry_after >= Duration::from_secs(1));
        drop(busy);
        let identity = checker
            .authenticate(&users, &credentials("alice", "secret"))
            .await;
        assert!(identity.is_ok());
    }
}

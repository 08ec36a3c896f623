//! Identical logins take turns.
//!
//! The login limiter charges every attempt before its secret is checked
//! (that is what stops parallel guessing), and the password-check queue
//! gives one address a bounded share. A burst of logins with the *right*
//! password for one account from one address (a CI farm behind one NAT
//! starting its jobs, or the credential cache's entry for a busy robot
//! expiring) would be refused by both once it outnumbered their bounds,
//! and would run one bcrypt per login meanwhile.
//!
//! So a login that finds an identical one (same account, same secret) being
//! checked waits for that check to end, then goes on with everyone else who
//! waited. After a success they find it remembered (no bcrypt; charged and
//! refunded at once, never limited); after a failure each is checked and
//! charged on its own, in parallel, exactly as without this. Logins that
//! differ in anything never wait for each other, so nobody can make a user
//! wait without knowing the user's secret.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

use super::secret_key::SecretKeyer;

/// A backstop: a lock is forgotten as its check ends (see [`Checking`]);
/// one unused this long is forgotten anyway.
const IDLE_FOR: Duration = Duration::from_secs(60);

/// The checks in flight, one lock per (account, secret) in use: held for
/// writing by the login being checked, waited on (for reading) by identical
/// logins arriving meanwhile.
pub struct LoginTurns {
    /// Keyed by account and secret through `keyer`: nothing kept here can
    /// be attacked offline to recover a secret.
    checks: moka::sync::Cache<[u8; 32], Arc<RwLock<()>>>,
    keyer: SecretKeyer,
}

impl LoginTurns {
    /// Room for `capacity` distinct logins in flight; beyond it the oldest
    /// are forgotten, and logins identical to a forgotten one simply do not
    /// wait (as before this existed).
    pub fn new(capacity: u64) -> LoginTurns {
        LoginTurns {
            checks: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(IDLE_FOR)
                .build(),
            keyer: SecretKeyer::random(),
        }
    }

    /// Waits while a login with this `account` and `secret` is being
    /// checked. `Some` when this login is the one checked now: others
    /// arriving meanwhile wait until it is dropped.
    pub async fn wait(&self, account: &str, secret: &str) -> Option<Checking<'_>> {
        let key = self.keyer.key_of(&[account, secret]);
        let check = self.checks.get_with(key, Default::default);
        if let Ok(guard) = Arc::clone(&check).try_write_owned() {
            return Some(Checking {
                checks: &self.checks,
                key,
                _guard: guard,
            });
        }
        // Only logins waiting here take the read side, and they let go at
        // once: when the check ends they all go on together.
        drop(check.read().await);
        None
    }
}

/// The check of one login in flight. Dropping it (the check ended, or the
/// client went away) lets the identical logins waiting for it go on, and
/// forgets the lock: the table holds only checks in flight.
pub struct Checking<'t> {
    checks: &'t moka::sync::Cache<[u8; 32], Arc<RwLock<()>>>,
    key: [u8; 32],
    _guard: OwnedRwLockWriteGuard<()>,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        // Before the guard goes (fields drop after this): a login arriving
        // in between starts a check of its own rather than waiting for one
        // that has ended.
        self.checks.invalidate(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_same_login_waits_for_the_check_in_flight_and_different_ones_do_not() {
        let turns = LoginTurns::new(100);
        let checking = turns.wait("robot", "secret").await;
        assert!(checking.is_some(), "the first login is the one checked");
        // A different secret, or another account, goes at once.
        for (account, secret) in [
            ("robot", "other"),
            ("robott", "secret"),
            ("robo", "tsecret"),
        ] {
            let turn = tokio::time::timeout(Duration::from_secs(5), turns.wait(account, secret))
                .await
                .expect("a different login does not wait");
            assert!(turn.is_some());
        }
        // Identical logins wait for the check to end, then all go on.
        let waiting = identical_pair(&turns);
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut waiting)
                .await
                .is_err(),
            "identical logins did not wait"
        );
        drop(checking);
        let (second, third) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting logins go on once the check ends");
        assert!(
            second.is_none() && third.is_none(),
            "they go on without a check of their own"
        );
        // With nothing in flight, the next identical login is checked again,
        // and the table holds only what is in flight.
        let again = turns.wait("robot", "secret").await;
        assert!(again.is_some());
        drop(again);
        turns.checks.run_pending_tasks();
        assert_eq!(turns.checks.entry_count(), 0);
    }

    /// Two identical logins waiting at once.
    async fn identical_pair(turns: &LoginTurns) -> (Option<Checking<'_>>, Option<Checking<'_>>) {
        tokio::join!(turns.wait("robot", "secret"), turns.wait("robot", "secret"))
    }
}

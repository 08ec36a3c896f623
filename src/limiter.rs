//! The login limiter: failed logins are counted per (account, client
//! address), per client address and per account, and a login attempt beyond
//! a threshold is refused before any secret is checked (no bcrypt, no
//! directory bind). Pure: no I/O, and the clock is passed in.
//!
//! It must not become a lock-out tool, so no counter blocks an account
//! outright:
//! - per (account, address): guesses at one account from one place;
//! - per address: one place spraying many accounts;
//! - per account: guesses at one account from many places, which is the
//!   counter a stranger could fill for someone else. Addresses the account
//!   logged in from recently ("known addresses") skip it, so the real user
//!   keeps working while a botnet guesses at their name.
//!
//! Each counter is a leaky bucket (GCRA): `limit` failures at once, then one
//! more every `window / limit`. An attempt is charged *before* the secret is
//! checked, so concurrent guesses cannot all slip past the check; a success
//! refunds its charge and clears the (account, address) counter, and an
//! attempt that never reached the check (a full queue) is refunded whole.
//!
//! State is two bounded moka tables: counters (evicted by moka's TinyLFU
//! policy when full, so the busy counters of an ongoing attack stay) and
//! known addresses, which only successes fill, so failures cannot push a
//! real user's known address out.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;

use crate::client_address::{AddressGroup, ClientAddress};

/// The thresholds; `None` turns a counter off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// The period a counter's `limit` failures are spread over: a full
    /// counter lets one more attempt through every `window / limit`.
    pub window: Duration,
    /// Failures at one account from one address.
    pub per_account_and_address: Option<NonZeroU32>,
    /// Failures from one address, whatever the account.
    pub per_address: Option<NonZeroU32>,
    /// Failures at one account from addresses it has not logged in from
    /// within `known_address_for`.
    pub per_account: Option<NonZeroU32>,
    /// How long a successful login exempts its address from the per-account
    /// counter.
    pub known_address_for: Duration,
}

/// The counter that refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Failures at this account from this address.
    AccountAtAddress,
    /// Failures from this address.
    Address,
    /// Failures at this account from unknown addresses.
    Account,
}

impl Counter {
    /// Name for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Counter::AccountAtAddress => "account_address",
            Counter::Address => "address",
            Counter::Account => "account",
        }
    }
}

/// An attempt refused without checking the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Which counter is full.
    pub counter: Counter,
    /// When that counter lets the next attempt through.
    pub retry_after: Duration,
}

/// How often a remembered login renews its known address: a checked login
/// renews it every time; one let through by
/// [`LoginLimiter::admit_remembered`] writes only when the last renewal is
/// this old, so the known period ends at most this much early.
const KNOWN_RENEWAL: Duration = Duration::from_secs(60);

/// Per-process keyed digest of an account name: table keys stay 8 bytes
/// whatever length of name a request carries.
type AccountKey = u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CounterKey {
    AccountAtAddress(AccountKey, AddressGroup),
    Address(AddressGroup),
    Account(AccountKey),
}

/// A leaky bucket stored as the instant it will be empty again; its level
/// at `now` is `empty_at - now`, in units of one failure's cost.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    empty_at: Instant,
}

/// Sizes of the limiter's tables, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSizes {
    /// Live failure counters.
    pub counters: u64,
    /// Remembered (account, address) pairs with a recent success.
    pub known_addresses: u64,
}

/// The limiter's state; shared by every request (its tables are
/// concurrent).
pub struct LoginLimiter {
    counters: moka::sync::Cache<CounterKey, Bucket>,
    known: moka::sync::Cache<(AccountKey, AddressGroup), Instant>,
    hasher: RandomState,
}

impl LoginLimiter {
    /// A limiter whose tables each hold at most `capacity` entries. Entries
    /// also expire once they can no longer matter (`idle_after`: the longest
    /// window a counter may use; `known_for`: the longest known-address
    /// period), which only frees memory sooner: an expired entry reads the
    /// same as a drained one.
    pub fn new(capacity: u64, idle_after: Duration, known_for: Duration) -> LoginLimiter {
        LoginLimiter {
            counters: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_idle(idle_after)
                .build(),
            known: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(known_for)
                .build(),
            hasher: RandomState::new(),
        }
    }

    /// Checks every counter for a login as `account` from `client` and
    /// charges each one failure. `Err` means the secret must not be checked;
    /// nothing stays charged then. The returned [`Attempt`] keeps its
    /// charges unless told the outcome was a success or that the check
    /// never ran: a client that hangs up mid-check is charged all the same.
    pub fn begin(
        &self,
        thresholds: &Thresholds,
        account: &str,
        client: ClientAddress,
        now: Instant,
    ) -> Result<Attempt<'_>, Limited> {
        let account = self.hasher.hash_one(account);
        let group = client.group();
        let known_since = self.known.get(&(account, group));
        let counters = Self::counters_of(thresholds, account, group, known_since, now);
        let mut attempt = Attempt {
            limiter: self,
            account,
            group,
            charged: Vec::with_capacity(counters.len()),
        };
        for (key, limit, counter) in counters {
            let Some(limit) = limit else { continue };
            let cost = thresholds.window / limit.get();
            match self.charge(key, cost, thresholds.window, now) {
                Ok(()) => attempt.charged.push((key, cost)),
                Err(retry_after) => {
                    attempt.refund_all(now);
                    return Err(Limited {
                        counter,
                        retry_after,
                    });
                }
            }
        }
        Ok(attempt)
    }

    /// Whether [`begin`](Self::begin) would admit a login as `account` from
    /// `client` now, and if so, records the success that login is already
    /// known to be: for a secret that verified moments ago (the credential
    /// cache), which skips the charge and refund of a checked login. A
    /// refusal records nothing; the caller then takes the charged way and
    /// is refused there, so a limited client never learns that a guess was
    /// right.
    ///
    /// Reads only, unless there is something to record: failures at this
    /// account from this address to clear, or a known address due for
    /// renewal.
    pub fn admit_remembered(
        &self,
        thresholds: &Thresholds,
        account: &str,
        client: ClientAddress,
        now: Instant,
    ) -> bool {
        let account = self.hasher.hash_one(account);
        let group = client.group();
        let known_since = self.known.get(&(account, group));
        let admitted = Self::counters_of(thresholds, account, group, known_since, now)
            .into_iter()
            .all(|(key, limit, _)| {
                let Some(limit) = limit else { return true };
                let cost = thresholds.window / limit.get();
                self.level(key, now) + cost <= thresholds.window
            });
        if admitted {
            let failures_here = CounterKey::AccountAtAddress(account, group);
            if self.counters.contains_key(&failures_here) {
                self.counters.invalidate(&failures_here);
            }
            let renewed_lately = known_since
                .is_some_and(|since| now.saturating_duration_since(since) < KNOWN_RENEWAL);
            if !renewed_lately {
                self.known.insert((account, group), now);
            }
        }
        admitted
    }

    /// The counters a login as `account` from `group` is charged to, with
    /// their limits (`None`: not counted). The per-account one does not
    /// count an address the account logged in from lately (`known_since`,
    /// the known-address table's entry).
    fn counters_of(
        thresholds: &Thresholds,
        account: AccountKey,
        group: AddressGroup,
        known_since: Option<Instant>,
        now: Instant,
    ) -> [(CounterKey, Option<NonZeroU32>, Counter); 3] {
        let known = known_since.is_some_and(|since| {
            now.saturating_duration_since(since) < thresholds.known_address_for
        });
        [
            (
                CounterKey::AccountAtAddress(account, group),
                thresholds.per_account_and_address,
                Counter::AccountAtAddress,
            ),
            (
                CounterKey::Address(group),
                thresholds.per_address,
                Counter::Address,
            ),
            (
                CounterKey::Account(account),
                thresholds.per_account.filter(|_| !known),
                Counter::Account,
            ),
        ]
    }

    /// A counter's level at `now`, in time: zero for one never charged or
    /// drained.
    fn level(&self, key: CounterKey, now: Instant) -> Duration {
        self.counters.get(&key).map_or(Duration::ZERO, |bucket| {
            bucket.empty_at.saturating_duration_since(now)
        })
    }

    /// How full the tables are. Runs the tables' pending upkeep first, so
    /// the counts are current: for `/metrics`, not for every login.
    pub fn table_sizes(&self) -> TableSizes {
        self.counters.run_pending_tasks();
        self.known.run_pending_tasks();
        TableSizes {
            counters: self.counters.entry_count(),
            known_addresses: self.known.entry_count(),
        }
    }

    /// Forgets everything (tests; an operator's restart does the same).
    pub fn clear(&self) {
        self.counters.invalidate_all();
        self.known.invalidate_all();
    }

    /// Adds one failure's `cost` to `key` unless that would take the bucket
    /// past `window`; `Err` carries the wait until it would not. Atomic per
    /// key, so concurrent attempts are counted one by one.
    fn charge(
        &self,
        key: CounterKey,
        cost: Duration,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut outcome = Ok(());
        self.counters.entry(key).and_compute_with(|entry| {
            let empty_at = entry.map_or(now, |entry| entry.into_value().empty_at.max(now));
            let level = empty_at - now;
            if level + cost > window {
                outcome = Err(level + cost - window);
                Op::Nop
            } else {
                Op::Put(Bucket {
                    empty_at: empty_at + cost,
                })
            }
        });
        outcome
    }

    /// Takes one `cost` back out of `key`.
    fn refund(&self, key: CounterKey, cost: Duration, now: Instant) {
        self.counters
            .entry(key)
            .and_compute_with(|entry| match entry {
                None => Op::Nop,
                Some(entry) => match entry.into_value().empty_at.checked_sub(cost) {
                    Some(empty_at) if empty_at > now => Op::Put(Bucket { empty_at }),
                    _ => Op::Remove,
                },
            });
    }
}

/// A charged login attempt. Dropping it keeps the charges: that is the
/// outcome of a failure, and of a check that was abandoned.
#[must_use = "a success must be reported, or it counts as a failure"]
pub struct Attempt<'l> {
    limiter: &'l LoginLimiter,
    account: AccountKey,
    group: AddressGroup,
    charged: Vec<(CounterKey, Duration)>,
}

impl Attempt<'_> {
    /// The secret was right: refund the charges, clear the (account,
    /// address) counter and remember the address as known for the account.
    pub fn succeeded(mut self, now: Instant) {
        self.refund_all(now);
        let limiter = self.limiter;
        limiter
            .counters
            .invalidate(&CounterKey::AccountAtAddress(self.account, self.group));
        limiter.known.insert((self.account, self.group), now);
    }

    /// The secret was never checked (the work queue refused it): refund.
    pub fn not_checked(mut self, now: Instant) {
        self.refund_all(now);
    }

    fn refund_all(&mut self, now: Instant) {
        for (key, cost) in self.charged.drain(..) {
            self.limiter.refund(key, cost, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn thresholds() -> Thresholds {
        Thresholds {
            window: 10 * MINUTE,
            per_account_and_address: NonZeroU32::new(10),
            per_address: NonZeroU32::new(30),
            per_account: NonZeroU32::new(100),
            known_address_for: 30 * 24 * 60 * MINUTE,
        }
    }

    fn limiter() -> LoginLimiter {
        LoginLimiter::new(10_000, 10 * MINUTE, 30 * 24 * 60 * MINUTE)
    }

    fn address(text: &str) -> ClientAddress {
        ClientAddress::ip(text.parse().unwrap())
    }

    /// `n` failed attempts; the number the limiter let through.
    fn fail(
        limiter: &LoginLimiter,
        thresholds: &Thresholds,
        account: &str,
        client: ClientAddress,
        n: usize,
        now: Instant,
    ) -> usize {
        (0..n)
            .filter(|_| limiter.begin(thresholds, account, client, now).is_ok())
            .count()
    }

    /// One failed attempt at each of `n` accounts; the number let through.
    fn spray(
        limiter: &LoginLimiter,
        thresholds: &Thresholds,
        client: ClientAddress,
        n: usize,
        now: Instant,
    ) -> usize {
        (0..n)
            .filter(|i| {
                let account = format!("user{i}");
                limiter.begin(thresholds, &account, client, now).is_ok()
            })
            .count()
    }

    #[test]
    fn a_burst_at_one_account_from_one_address_stops_at_the_threshold() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let mallory = address("192.0.2.66");
        assert_eq!(fail(&limiter, &t, "alice", mallory, 40, now), 10);
        let refused = limiter.begin(&t, "alice", mallory, now).err().unwrap();
        assert_eq!(refused.counter, Counter::AccountAtAddress);
        assert_eq!(refused.retry_after, MINUTE);
        // One attempt more per window / limit, not a fresh burst.
        let later = now + MINUTE;
        assert_eq!(fail(&limiter, &t, "alice", mallory, 5, later), 1);
        let drained = now + 10 * MINUTE + MINUTE;
        assert_eq!(fail(&limiter, &t, "alice", mallory, 40, drained), 10);
    }

    #[test]
    fn the_same_account_from_another_address_is_not_blocked() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        fail(&limiter, &t, "alice", address("192.0.2.66"), 40, now);
        let attempt = limiter.begin(&t, "alice", address("198.51.100.7"), now);
        assert!(attempt.is_ok());
    }

    #[test]
    fn spraying_many_accounts_from_one_address_stops_at_the_address_threshold() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let mallory = address("192.0.2.66");
        assert_eq!(spray(&limiter, &t, mallory, 40, now), 30);
        let refused = limiter.begin(&t, "alice", mallory, now).err().unwrap();
        assert_eq!(refused.counter, Counter::Address);
        assert_eq!(refused.retry_after, MINUTE / 3);
        // Other places are not affected.
        assert!(limiter
            .begin(&t, "alice", address("192.0.2.67"), now)
            .is_ok());
    }

    #[test]
    fn ipv6_neighbours_in_one_slash_64_share_the_address_counter() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let let_through = (0..40u32)
            .filter(|i| {
                let client = address(&format!("2001:db8:0:1::{i:x}"));
                limiter.begin(&t, &format!("user{i}"), client, now).is_ok()
            })
            .count();
        assert_eq!(let_through, 30);
    }

    /// A login whose secret was right, as the limiter learns of it.
    type Success = fn(&LoginLimiter, &Thresholds, ClientAddress, Instant);

    /// Checked (charged, then refunded) or remembered (admitted without a
    /// charge): either must leave the same state behind.
    const SUCCESSES: [(&str, Success); 2] = [
        ("checked", |limiter, t, client, now| {
            limiter
                .begin(t, "alice", client, now)
                .unwrap()
                .succeeded(now);
        }),
        ("remembered", |limiter, t, client, now| {
            assert!(limiter.admit_remembered(t, "alice", client, now));
        }),
    ];

    #[test]
    fn many_addresses_fill_the_account_counter_but_known_addresses_pass() {
        for (kind, succeed) in SUCCESSES {
            let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
            let home = address("198.51.100.7");
            succeed(&limiter, &t, home, now);
            // A botnet: 100 addresses, one guess each at alice.
            for i in 0..100u32 {
                let bot = address(&format!("10.0.{}.{}", i / 250, i % 250));
                assert!(
                    limiter.begin(&t, "alice", bot, now).is_ok(),
                    "{kind}: bot {i}"
                );
            }
            let stranger = address("203.0.113.9");
            let refused = limiter.begin(&t, "alice", stranger, now).err().unwrap();
            assert_eq!(refused.counter, Counter::Account, "{kind}");
            assert_eq!(refused.retry_after, 6 * Duration::from_secs(1), "{kind}");
            // The real user, from where they logged in before, still gets in.
            succeed(&limiter, &t, home, now);
            // ... but only while the address is remembered.
            let much_later = now + t.known_address_for;
            for i in 0..100u32 {
                let bot = address(&format!("10.1.{}.{}", i / 250, i % 250));
                let _ = limiter.begin(&t, "alice", bot, much_later);
            }
            assert!(
                limiter.begin(&t, "alice", home, much_later).is_err(),
                "{kind}"
            );
            // Other accounts are not affected.
            assert!(limiter.begin(&t, "bob", stranger, now).is_ok(), "{kind}");
        }
    }

    #[test]
    fn a_success_clears_its_own_counter_and_refunds_the_others() {
        for (kind, succeed) in SUCCESSES {
            let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
            let office = address("192.0.2.10");
            assert_eq!(fail(&limiter, &t, "alice", office, 9, now), 9, "{kind}");
            succeed(&limiter, &t, office, now);
            // The typo streak is forgotten: ten more tries before a refusal.
            assert_eq!(fail(&limiter, &t, "alice", office, 11, now), 10, "{kind}");
            // The address counter kept the 9 + 10 failures (not the success).
            assert_eq!(spray(&limiter, &t, office, 20, now), 11, "{kind}");
        }
    }

    #[test]
    fn a_limited_client_is_refused_a_remembered_login_and_nothing_is_recorded() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let client = address("192.0.2.10");
        assert_eq!(fail(&limiter, &t, "alice", client, 11, now), 10);
        // The right secret, remembered: still refused while limited, so
        // the answer tells a guesser nothing.
        assert!(!limiter.admit_remembered(&t, "alice", client, now));
        // The refusal cleared nothing: the counter is as full as before.
        assert!(limiter.begin(&t, "alice", client, now).is_err());
        // Once the counter has room again, it is admitted.
        let later = now + t.window / 10;
        assert!(limiter.admit_remembered(&t, "alice", client, later));
        assert_eq!(fail(&limiter, &t, "alice", client, 11, later), 10);
    }

    #[test]
    fn an_attempt_that_was_never_checked_costs_nothing() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let client = address("192.0.2.10");
        for _ in 0..100 {
            limiter
                .begin(&t, "alice", client, now)
                .unwrap()
                .not_checked(now);
        }
        assert_eq!(fail(&limiter, &t, "alice", client, 11, now), 10);
    }

    #[test]
    fn a_refused_attempt_leaves_no_charge_behind() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let client = address("192.0.2.10");
        fail(&limiter, &t, "alice", client, 10, now);
        // 1000 refusals at alice do not fill the address counter.
        fail(&limiter, &t, "alice", client, 1000, now);
        assert_eq!(spray(&limiter, &t, client, 30, now), 20);
    }

    #[test]
    fn counters_that_are_off_never_refuse() {
        let limiter = limiter();
        let off = Thresholds {
            per_account_and_address: None,
            per_address: None,
            per_account: None,
            ..thresholds()
        };
        let now = Instant::now();
        assert_eq!(
            fail(&limiter, &off, "alice", address("192.0.2.1"), 500, now),
            500
        );
        assert_eq!(limiter.table_sizes().counters, 0);
    }

    #[test]
    fn concurrent_guesses_are_counted_one_by_one() {
        let (limiter, t, now) = (limiter(), thresholds(), Instant::now());
        let mallory = address("192.0.2.66");
        let let_through = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| fail(&limiter, &t, "alice", mallory, 50, now)))
                .collect();
            workers
                .into_iter()
                .map(|worker| worker.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(let_through, 10);
    }

    #[test]
    fn the_tables_are_bounded() {
        let limiter = LoginLimiter::new(100, 10 * MINUTE, MINUTE);
        let (t, now) = (thresholds(), Instant::now());
        for i in 0..5_000u32 {
            let client = ClientAddress::ip(std::net::Ipv4Addr::from(i).into());
            limiter
                .begin(&t, &format!("user{i}"), client, now)
                .unwrap()
                .succeeded(now);
            let _ = limiter.begin(&t, &format!("user{i}"), client, now);
        }
        let sizes = limiter.table_sizes();
        assert!(sizes.counters <= 100, "{sizes:?}");
        assert!(sizes.known_addresses <= 100, "{sizes:?}");
    }
}

//! The queue in front of costly secret checks (bcrypt today; any check that
//! burns CPU or a scarce connection can share it): a fixed number of
//! workers, a bounded number of waiting checks, and a bounded share of both
//! per client address. Waiting checks are served round-robin between
//! addresses, so one address's backlog delays everybody else by at most one
//! check per turn. When a bound is reached the check is refused at once;
//! the caller answers with a `Retry-After`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::client_address::{AddressGroup, ClientAddress};
use crate::config::QueueLimits;

/// Why a check was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every worker is busy and the waiting line is full.
    #[error("too many password checks waiting; try again shortly")]
    Full,
    /// This client address already has its share running or waiting.
    #[error("too many password checks from this address at once; try again shortly")]
    AddressShare,
}

impl Refused {
    /// What to tell the client: a check takes well under a second, so the
    /// line will have moved by then.
    pub fn retry_after(self) -> Duration {
        Duration::from_secs(1)
    }

    /// Name for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Full => "queue_full",
            Refused::AddressShare => "queue_address_share",
        }
    }
}

/// Why a queued blocking job gave no result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// It was never run.
    #[error(transparent)]
    Refused(#[from] Refused),
    /// It panicked on its blocking thread; never the client's fault.
    #[error("password check failed: {0}")]
    Crashed(String),
}

/// The queue; one per kind of work, shared by every request.
pub struct WorkQueue {
    shared: Arc<Shared>,
}

struct Shared {
    /// Metric label, e.g. `bcrypt`.
    name: &'static str,
    limits: QueueLimits,
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    running: usize,
    waiting: usize,
    /// Addresses with running or waiting checks; never more entries than
    /// `workers + waiting`, since an entry goes when its counts reach zero.
    clients: HashMap<AddressGroup, ClientShare>,
    /// Addresses with waiting checks, in the order they are served.
    turns: VecDeque<AddressGroup>,
}

#[derive(Default)]
struct ClientShare {
    running: usize,
    waiters: VecDeque<oneshot::Sender<Permit>>,
}

impl ClientShare {
    fn load(&self) -> usize {
        self.running + self.waiters.len()
    }
}

/// The right to run one check; the worker is free again when it drops.
pub struct Permit {
    /// `None` once disarmed (a permit that never reached its waiter).
    shared: Option<Arc<Shared>>,
    client: AddressGroup,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            let mut state = shared.lock();
            state.running -= 1;
            if let Some(share) = state.clients.get_mut(&self.client) {
                share.running -= 1;
                if share.load() == 0 {
                    state.clients.remove(&self.client);
                }
            }
            dispatch(&shared, &mut state);
            shared.record(&state);
        }
    }
}

impl WorkQueue {
    /// A queue named `name` in metrics.
    pub fn new(name: &'static str, limits: QueueLimits) -> WorkQueue {
        WorkQueue {
            shared: Arc::new(Shared {
                name,
                limits,
                state: Mutex::new(QueueState::default()),
            }),
        }
    }

    /// Waits for a worker for `client`, or refuses at once when a bound is
    /// reached.
    pub async fn admit(&self, client: ClientAddress) -> Result<Permit, Refused> {
        let group = client.group();
        let shared = &self.shared;
        let limits = &shared.limits;
        let receiver = {
            let mut state = shared.lock();
            let share_full = |state: &QueueState| {
                state
                    .clients
                    .get(&group)
                    .is_some_and(|share| share.load() >= limits.per_address.get())
            };
            let line_full = |state: &QueueState| {
                state.running >= limits.workers.get() && state.waiting >= limits.waiting
            };
            if share_full(&state) || line_full(&state) {
                // Waiters whose clients hung up still hold places: drop them
                // before refusing anyone.
                forget_abandoned(&mut state);
                if share_full(&state) {
                    return Err(Refused::AddressShare);
                }
                if line_full(&state) {
                    return Err(Refused::Full);
                }
            }
            if state.running < limits.workers.get() {
                // Nobody waits while a worker is free (releases dispatch).
                state.running += 1;
                state.clients.entry(group).or_default().running += 1;
                shared.record(&state);
                return Ok(Permit {
                    shared: Some(Arc::clone(shared)),
                    client: group,
                });
            }
            let (sender, receiver) = oneshot::channel();
            let share = state.clients.entry(group).or_default();
            share.waiters.push_back(sender);
            if share.waiters.len() == 1 {
                state.turns.push_back(group);
            }
            state.waiting += 1;
            shared.record(&state);
            receiver
        };
        // The sender goes only with the queue itself.
        receiver.await.map_err(|_| Refused::Full)
    }

    /// Runs `job` on a blocking thread once admitted. The permit goes with
    /// the job, so a client that hangs up does not free the worker before
    /// the job is really done.
    pub async fn run_blocking<T, F>(&self, client: ClientAddress, job: F) -> Result<T, JobError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self.admit(client).await?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|error| JobError::Crashed(error.to_string()))
    }

    /// Checks running and waiting now.
    pub fn depth(&self) -> (usize, usize) {
        let state = self.shared.lock();
        (state.running, state.waiting)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state is consistent between statements; a panic elsewhere
        // must not stop every later login.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, state: &QueueState) {
        metrics::gauge!("regauth_check_queue_running", "queue" => self.name)
            .set(state.running as f64);
        metrics::gauge!("regauth_check_queue_waiting", "queue" => self.name)
            .set(state.waiting as f64);
    }
}

/// Hands free workers to waiters, one address at a time.
fn dispatch(shared: &Arc<Shared>, state: &mut QueueState) {
    while state.running < shared.limits.workers.get() {
        let Some(group) = state.turns.pop_front() else {
            return;
        };
        let Some(share) = state.clients.get_mut(&group) else {
            continue;
        };
        let Some(sender) = share.waiters.pop_front() else {
            continue;
        };
        if !share.waiters.is_empty() {
            state.turns.push_back(group);
        }
        state.waiting -= 1;
        let permit = Permit {
            shared: Some(Arc::clone(shared)),
            client: group,
        };
        match sender.send(permit) {
            Ok(()) => {
                share.running += 1;
                state.running += 1;
            }
            // The waiter is gone; its permit must not release (we hold
            // the lock, and it was never counted).
            Err(mut unclaimed) => {
                unclaimed.shared = None;
                if share.load() == 0 {
                    state.clients.remove(&group);
                }
            }
        }
    }
}

/// Drops waiters whose requests were abandoned (the client hung up).
fn forget_abandoned(state: &mut QueueState) {
    let mut dropped = 0;
    state.clients.retain(|_, share| {
        let before = share.waiters.len();
        share.waiters.retain(|sender| !sender.is_closed());
        dropped += before - share.waiters.len();
        share.load() > 0
    });
    state.waiting -= dropped;
    let QueueState { clients, turns, .. } = state;
    turns.retain(|group| {
        clients
            .get(group)
            .is_some_and(|share| !share.waiters.is_empty())
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    fn queue(workers: usize, waiting: usize, per_address: usize) -> WorkQueue {
        WorkQueue::new(
            "test",
            QueueLimits {
                workers: NonZeroUsize::new(workers).unwrap(),
                waiting,
                per_address: NonZeroUsize::new(per_address).unwrap(),
            },
        )
    }

    fn client(n: u8) -> ClientAddress {
        ClientAddress::ip([192, 0, 2, n].into())
    }

    #[tokio::test]
    async fn one_address_gets_its_share_and_no_more() {
        let queue = queue(2, 10, 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            let admitted = tokio::time::timeout(Duration::from_millis(5), queue.admit(client(1)));
            if let Ok(permit) = admitted.await {
                held.push(permit.unwrap());
            }
        }
        // Two run, the third waits (its future was dropped by the timeout).
        assert_eq!(held.len(), 2);
        let mut waiter = Box::pin(queue.admit(client(1)));
        assert!(futures_poll_once(&mut waiter).await.is_none());
        // The share counts running and waiting checks alike.
        assert_eq!(
            queue.admit(client(1)).await.err(),
            Some(Refused::AddressShare)
        );
        // Another address is not refused: it waits its turn.
        let mut other = Box::pin(queue.admit(client(2)));
        assert!(futures_poll_once(&mut other).await.is_none());
        drop(held.pop());
        // Round-robin: address 1 was first in line.
        assert!(futures_poll_once(&mut waiter).await.is_some());
        drop(held.pop());
        assert!(futures_poll_once(&mut other).await.is_some());
    }

    #[tokio::test]
    async fn a_full_line_refuses_at_once() {
        let queue = queue(1, 2, 10);
        let running = queue.admit(client(1)).await.unwrap();
        let mut first = Box::pin(queue.admit(client(2)));
        let mut second = Box::pin(queue.admit(client(3)));
        assert!(futures_poll_once(&mut first).await.is_none());
        assert!(futures_poll_once(&mut second).await.is_none());
        assert_eq!(queue.depth(), (1, 2));
        assert_eq!(queue.admit(client(4)).await.err(), Some(Refused::Full));
        // A waiter that hangs up gives its place back.
        drop(second);
        let mut third = Box::pin(queue.admit(client(4)));
        assert!(futures_poll_once(&mut third).await.is_none());
        drop(running);
    }

    #[tokio::test]
    async fn waiting_addresses_are_served_in_turn() {
        let queue = Arc::new(queue(1, 100, 100));
        let running = queue.admit(client(9)).await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Address 1 queues five checks before address 2 queues one.
        for n in [1, 1, 1, 1, 1, 2] {
            let (queue, order) = (Arc::clone(&queue), Arc::clone(&order));
            tasks.push(tokio::spawn(async move {
                let _permit = queue.admit(client(n)).await.unwrap();
                order.lock().unwrap().push(n);
            }));
            tokio::task::yield_now().await;
        }
        drop(running);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 2, 1, 1, 1, 1]);
        assert_eq!(queue.depth(), (0, 0));
        assert!(queue.shared.lock().clients.is_empty());
    }

    #[tokio::test]
    async fn a_blocking_job_holds_its_worker_until_it_ends() {
        let queue = Arc::new(queue(1, 0, 1));
        let (started, wait_started) = std::sync::mpsc::channel();
        let (finish, wait_finish) = std::sync::mpsc::channel::<()>();
        let job = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move {
                queue
                    .run_blocking(client(1), move || {
                        started.send(()).unwrap();
                        wait_finish.recv().unwrap();
                        7
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || wait_started.recv().unwrap())
            .await
            .unwrap();
        // The request gives up; the job still runs and still holds the worker.
        job.abort();
        assert_eq!(queue.depth(), (1, 0));
        let refused = queue.run_blocking(client(2), || 0).await.unwrap_err();
        assert!(matches!(refused, JobError::Refused(Refused::Full)));
        finish.send(()).unwrap();
        let released = tokio::time::timeout(Duration::from_secs(10), async {
            while queue.depth() != (0, 0) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        released.await.unwrap();
        assert_eq!(queue.run_blocking(client(2), || 8).await.unwrap(), 8);
    }

    /// Polls a future once: `Some` if it finished.
    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: &mut F,
    ) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *future).poll(cx) {
            std::task::Poll::Ready(output) => std::task::Poll::Ready(Some(output)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }
}

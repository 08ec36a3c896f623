//! The accept loops: one per listener, each with its own connection budget,
//! one hyper HTTP/1 task per accepted connection, and one graceful drain for
//! the whole server on shutdown. Sockets come from [`crate::listeners`].

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONNECTION};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::http::{handle, Connection};
use crate::listeners::{BoundListener, Stream};
use crate::state::State;

/// Serves until `shutdown` completes, then stops accepting and gives
/// in-flight requests `limits.shutdown_grace_secs` to finish.
///
/// Each listener's budget (`max_connections`, its own or
/// `limits.max_connections`) is read once, here; the header-read timeout,
/// the per-connection request bound and the grace period are read from the
/// snapshot in force when they are needed, so a reload changes them.
pub async fn run(
    listeners: Vec<BoundListener>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    // One drain for every connection of every listener: it lives here, not
    // in an accept task, so an accept task that ends (or panics) cannot take
    // its connections' drain with it.
    let connections = Arc::new(GracefulShutdown::new());
    let default_budget = state.snapshot().config.limits.max_connections;
    let mut accept_tasks = JoinSet::new();
    for listener in listeners {
        let budget = listener
            .options()
            .max_connections
            .unwrap_or(default_budget)
            .as_usize();
        tracing::info!(
            listener = listener.label(),
            trusted = listener.options().trusted,
            max_connections = budget,
            "listening"
        );
        let context = AcceptContext {
            state: Arc::clone(&state),
            slots: Arc::new(Semaphore::new(budget)),
            drain: Arc::clone(&connections),
        };
        accept_tasks.spawn(accept_loop(listener, context));
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = accept_tasks.join_next() => {
                // Accept loops run for ever; one that ends has panicked.
                // Its listener is lost, the rest keep serving.
                tracing::error!(error = ?ended.err(), "an accept loop ended; its listener no longer accepts");
            }
        }
    }
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    // Ending the accept loops (panicked ones included) drops their handles
    // on the drain: what is left to wait for are the connections.
    accept_tasks.shutdown().await;
    let grace = state.snapshot().config.limits.shutdown_grace;
    let drained = async move {
        match Arc::try_unwrap(connections) {
            Ok(connections) => connections.shutdown().await,
            Err(_) => tracing::error!("the drain is still shared; closing connections now"),
        }
    };
    if tokio::time::timeout(grace.duration(), drained)
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.secs(),
            "connections still open after the grace period; closing them"
        );
    }
}

/// What every connection of one listener needs.
struct AcceptContext {
    state: Arc<State>,
    /// This listener's connection budget.
    slots: Arc<Semaphore>,
    /// The server's one drain; each connection is watched by it.
    drain: Arc<GracefulShutdown>,
}

/// Shortest and longest pause after an accept error that a retry cannot
/// cure at once (out of descriptors or memory).
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts for ever, within the listener's budget: a connection is taken
/// from the kernel only once a slot is free, so the excess waits in the
/// backlog rather than in memory.
async fn accept_loop(listener: BoundListener, context: AcceptContext) {
    let mut backoff = BACKOFF_START;
    loop {
        let Ok(slot) = Arc::clone(&context.slots).acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = BACKOFF_START;
                let connection = Arc::new(Connection {
                    peer,
                    trusted: listener.options().trusted,
                    front: listener.options().front,
                });
                spawn_connection(stream, connection, &context, slot);
            }
            // The peer gave up between its connect and our accept: nothing
            // is wrong here, and the next connection may already wait.
            Err(error) if is_peer_gone(&error) => {
                tracing::debug!(listener = listener.label(), %error, "connection gone before accept");
            }
            Err(error) => {
                // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would
                // spin. Ending the loop would stop the listener for good.
                tracing::warn!(listener = listener.label(), %error, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                drop(slot);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Accept errors that concern one connection only.
fn is_peer_gone(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

/// Serves one accepted connection on its own task.
fn spawn_connection(
    stream: Stream,
    connection: Arc<Connection>,
    context: &AcceptContext,
    slot: OwnedSemaphorePermit,
) {
    match stream {
        Stream::Tcp(stream) => spawn_http1(stream, connection, context, slot),
        Stream::Unix(stream) => spawn_http1(stream, connection, context, slot),
    }
}

/// Most bytes hyper buffers per connection, and the largest request head
/// it accepts; a bigger head is answered 431. Room for a `/token` URL with
/// the most scopes a token takes (128 long ones) and large headers. hyper's
/// default buffer, about 400 KiB, would be far too much; together with the
/// per-listener budget this bounds memory: see the README's "Connection
/// budgets and memory".
pub const MAX_HEAD_BYTES: usize = 128 * 1024;

fn spawn_http1<S>(
    stream: S,
    connection: Arc<Connection>,
    context: &AcceptContext,
    slot: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::clone(&context.state);
    let limits = state.snapshot().config.limits.clone();
    let max_requests = limits.max_requests_per_connection.get();
    let served = AtomicU64::new(0);
    let service = service_fn(move |request| {
        let last = served.fetch_add(1, Ordering::Relaxed) + 1 >= max_requests;
        let answer = handle(Arc::clone(&state), Arc::clone(&connection), request);
        async move {
            let mut response = answer.await?;
            if last {
                // hyper closes the connection once this answer is sent.
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timer makes the header-read timeout work: a client that opens a
    // connection (or leaves one idle between requests) and sends nothing
    // is dropped instead of holding a slot.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.duration())
        .max_buf_size(MAX_HEAD_BYTES)
        // The buffer size alone is a soft limit: one large read can bring
        // in a whole bigger head. This one is checked on every head.
        .max_header_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    let connection_future = builder.serve_connection(TokioIo::new(stream), service);
    let watched = context.drain.watcher().watch(connection_future);
    tokio::spawn(async move {
        if let Err(error) = watched.await {
            tracing::debug!(%error, "connection ended with an error");
        }
        drop(slot);
    });
}

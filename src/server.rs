//! The accept loop: one hyper HTTP/1 connection task per accepted
//! connection, a cap on concurrent connections, backoff on accept errors,
//! and a graceful drain on shutdown. Sockets come from [`crate::listeners`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Semaphore};

use crate::http::{handle, Connection};
use crate::listeners::{BoundListener, Stream};
use crate::state::State;

/// Serves until `shutdown` completes, then stops accepting and gives
/// in-flight requests `limits.shutdown_grace_secs` to finish.
///
/// `limits.max_connections` is read once, here; the header-read timeout
/// and the grace period are read from the snapshot in force when they are
/// needed, so a reload changes them.
pub async fn run(
    listeners: Vec<BoundListener>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()>,
) {
    let max_connections = state.snapshot().config.limits.max_connections.as_usize();
    let connection_slots = Arc::new(Semaphore::new(max_connections));
    let (stop_accepting, stopped) = watch::channel(false);
    let mut accept_tasks = Vec::new();
    for listener in listeners {
        tracing::info!(
            listener = listener.label(),
            trusted = listener.options().trusted,
            "listening"
        );
        let context = AcceptContext {
            state: Arc::clone(&state),
            slots: Arc::clone(&connection_slots),
        };
        accept_tasks.push(tokio::spawn(accept_loop(
            listener,
            context,
            stopped.clone(),
        )));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop_accepting.send(true);
    // Each accept loop hands back the drain handle of its connections; all
    // drain at once, within one grace period.
    let mut drains = Vec::new();
    for task in accept_tasks {
        match task.await {
            Ok(connections) => drains.push(tokio::spawn(connections.shutdown())),
            Err(error) => tracing::warn!(
                %error,
                "an accept task failed; its connections are closed without waiting for them"
            ),
        }
    }
    let grace = state.snapshot().config.limits.shutdown_grace;
    let all_drained = async {
        for drain in drains {
            let _ = drain.await;
        }
    };
    if tokio::time::timeout(grace.duration(), all_drained)
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.secs(),
            "connections still open after the grace period; closing them"
        );
    }
}

/// What every accepted connection needs.
struct AcceptContext {
    state: Arc<State>,
    slots: Arc<Semaphore>,
}

/// Accepts until `stopped` changes, then returns the handle that drains
/// the connections it accepted. Owning that handle here, not sharing it,
/// means the drain can never be lost to a leftover reference.
async fn accept_loop(
    listener: BoundListener,
    context: AcceptContext,
    mut stopped: watch::Receiver<bool>,
) -> GracefulShutdown {
    let connections = GracefulShutdown::new();
    let mut backoff = Duration::from_millis(10);
    loop {
        let slot = tokio::select! {
            _ = stopped.changed() => return connections,
            slot = Arc::clone(&context.slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return connections,
            },
        };
        let accepted = tokio::select! {
            _ = stopped.changed() => return connections,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let connection = Arc::new(Connection {
                    peer,
                    trusted: listener.options().trusted,
                });
                spawn_connection(stream, connection, &context, connections.watcher(), slot);
            }
            Err(error) => {
                // EMFILE and friends pass; ending the loop would stop the
                // listener for good.
                tracing::warn!(listener = listener.label(), %error, retry_in_ms = backoff.as_millis() as u64, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Serves one accepted connection on its own task.
fn spawn_connection(
    stream: Stream,
    connection: Arc<Connection>,
    context: &AcceptContext,
    drain: Watcher,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    match stream {
        Stream::Tcp(stream) => spawn_http1(stream, connection, context, drain, slot),
        Stream::Unix(stream) => spawn_http1(stream, connection, context, drain, slot),
    }
}

/// Most bytes hyper buffers per connection, and the largest request head
/// (a long `/token` URL with many scopes, and its headers) it accepts; a
/// bigger head is answered 431. hyper's default buffer, about 400 KiB,
/// times `limits.max_connections` would be far too much memory.
const MAX_BUF_SIZE: usize = 128 * 1024;

fn spawn_http1<S>(
    stream: S,
    connection: Arc<Connection>,
    context: &AcceptContext,
    drain: Watcher,
    slot: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::clone(&context.state);
    let header_timeout = state
        .snapshot()
        .config
        .limits
        .header_read_timeout
        .duration();
    let service =
        service_fn(move |request| handle(Arc::clone(&state), Arc::clone(&connection), request));
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The timer makes the header-read timeout work: a client that opens a
    // connection and sends nothing is dropped instead of holding a slot.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        // The buffer size alone is a soft limit: one large read can bring
        // in a whole bigger head. This one is checked on every head.
        .max_header_size(MAX_BUF_SIZE)
        .keep_alive(true);
    let connection_future = builder.serve_connection(TokioIo::new(stream), service);
    let watched = drain.watch(connection_future);
    tokio::spawn(async move {
        if let Err(error) = watched.await {
            tracing::debug!(%error, "connection ended with an error");
        }
        drop(slot);
    });
}

//! `regauth serve`: load the config, set up logging and metrics, bind,
//! start the reloader, serve until SIGTERM/SIGINT, drain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config::LogSettings;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::{listeners, server};

/// Runs the server on the config at `config_path`. Returns when a shutdown
/// signal has been handled; errors are start-up failures.
pub fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config_path = absolute(config_path)?;
    // Held to the end: dropping it flushes the lines still queued.
    let _log = crate::logging::init(&log_settings_of(&config_path));
    // Taking systemd's sockets edits the environment: do it while this is
    // still the only thread.
    let inherited = listeners::take_inherited_sockets()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_async(config_path, inherited))
}

async fn serve_async(
    config_path: PathBuf,
    inherited: Vec<listeners::InheritedSocket>,
) -> anyhow::Result<()> {
    let path = config_path.clone();
    let snapshot = tokio::task::spawn_blocking(move || Snapshot::load(&path))
        .await
        .context("config loader failed")??;
    for line in snapshot.summary().lines() {
        // The summary's warnings (a trusted TCP listener, PS256) must stand
        // out among its lines.
        match line.strip_prefix("warning:") {
            Some(warning) => tracing::warn!("{}", warning.trim_start()),
            None => tracing::info!("{line}"),
        }
    }
    let backlog = snapshot.config.limits.backlog;
    let listen = snapshot.config.listen.clone();
    let metrics = crate::metrics::install()?;
    let state = Arc::new(State::new(snapshot, config_path, Some(metrics)));
    metrics::gauge!("regauth_config_generation").set(1.0);

    // Socket activation replaces the configured listeners; an inherited
    // socket takes the options of the configured listener at its address.
    // Handlers go in before anything listens: a SIGTERM that arrives once
    // we are ready must drain, not kill.
    let shutdown = shutdown_signal()?;
    let mut listeners = listeners::inherited_listeners(inherited, &listen)?;
    if listeners.is_empty() {
        listeners = listeners::bind_all(&listen, backlog)?;
    } else {
        tracing::info!(
            count = listeners.len(),
            "using sockets from systemd; `listen` is not bound"
        );
    }

    crate::reload::spawn(Arc::clone(&state))?;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    server::run(listeners, state, shutdown).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("stopped");
    Ok(())
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that
/// completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    })
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("bad config path {}", path.display()))
}

/// Logging starts before the config is fully validated, so its errors are
/// logged too: read just the `log` section, falling back to defaults.
fn log_settings_of(config_path: &Path) -> LogSettings {
    std::fs::read_to_string(config_path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|value| value.get("log").cloned())
        .and_then(|log| serde_json::from_value(log).ok())
        .unwrap_or_default()
}

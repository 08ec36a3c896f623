//! Hot reload: watch the directories of every file the config is built
//! from (editors and config managers replace files by rename; Kubernetes
//! swaps a `..data` symlink), and listen for SIGHUP. On either, build a
//! whole new snapshot off the reactor and swap it in, or log why not and
//! keep serving the old one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::snapshot::Snapshot;
use crate::state::State;

/// Events closer together than this are one change (a rename-based save
/// produces several events).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    FileChanged,
    Signal,
}

/// Starts watching and returns at once; reloading runs on its own task
/// until the process ends.
pub fn spawn(state: Arc<State>) -> anyhow::Result<()> {
    let (events, mut triggers) = mpsc::unbounded_channel();
    let file_events = events.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access()) {
            let _ = file_events.send(Trigger::FileChanged);
        }
    })?;
    let mut watched = Watched {
        watcher,
        directories: BTreeSet::new(),
    };
    let snapshot = state.snapshot();
    watched.follow(&snapshot.source_files);
    // What the files held at the last attempt, good or bad: a file event
    // that leaves them so is not a change. Remembering failed attempts too
    // reports a broken config once, not again on every unrelated event in
    // its directory (editor swap files, other services' files).
    let mut last_seen = files_fingerprint(&snapshot.source_files);

    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let _ = events.send(Trigger::Signal);
        }
    });

    tokio::spawn(async move {
        while let Some(mut trigger) = triggers.recv().await {
            // Let the burst of events one save makes settle.
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(next) = triggers.try_recv() {
                if matches!(next, Trigger::Signal) {
                    trigger = next;
                }
            }
            let sources = state.snapshot().source_files.clone();
            // Taken before the load: a write that lands during the load then
            // shows up as a difference at its own event, never as "seen".
            let before = fingerprint_off_reactor(sources.clone()).await;
            // SIGHUP always reloads.
            if matches!(trigger, Trigger::FileChanged) && before == last_seen {
                continue;
            }
            last_seen = before;
            if let Some(loaded) = reload(&state, trigger).await {
                watched.follow(&loaded);
                // A new file set (say, an htpasswd file added) was not part
                // of the fingerprint above.
                if loaded != sources {
                    last_seen = fingerprint_off_reactor(loaded).await;
                }
            }
        }
    });
    Ok(())
}

async fn fingerprint_off_reactor(files: Vec<PathBuf>) -> [u8; 32] {
    tokio::task::spawn_blocking(move || files_fingerprint(&files))
        .await
        .unwrap_or_default()
}

/// Builds and swaps in a new snapshot; returns its source files on success.
async fn reload(state: &State, trigger: Trigger) -> Option<Vec<PathBuf>> {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    let path = state.config_path.clone();
    let loaded = tokio::task::spawn_blocking(move || Snapshot::load(&path)).await;
    let outcome = match loaded {
        Ok(Ok(snapshot)) => {
            let listen_changed = snapshot.config.listen != state.snapshot().config.listen;
            let sources = snapshot.source_files.clone();
            let generation = state.replace(snapshot);
            tracing::info!(generation, ?trigger, "configuration reloaded");
            if listen_changed {
                tracing::warn!("`listen` changed: listeners are bound at start; restart to apply");
            }
            metrics::counter!("regauth_reloads_total", "result" => "ok").increment(1);
            metrics::gauge!("regauth_config_generation").set(generation as f64);
            Some(sources)
        }
        Ok(Err(error)) => {
            tracing::error!(%error, ?trigger, "configuration refused; the previous one stays in force");
            metrics::counter!("regauth_reloads_total", "result" => "failed").increment(1);
            None
        }
        Err(error) => {
            tracing::error!(%error, "reload task failed; the previous configuration stays in force");
            metrics::counter!("regauth_reloads_total", "result" => "failed").increment(1);
            None
        }
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    outcome
}

/// The directories being watched.
struct Watched {
    watcher: RecommendedWatcher,
    directories: BTreeSet<PathBuf>,
}

impl Watched {
    /// Watches the directory of every file (not the files: a rename-based
    /// save would leave a watch on a file that no longer exists).
    fn follow(&mut self, files: &[PathBuf]) {
        let wanted: BTreeSet<PathBuf> = files
            .iter()
            .filter_map(|file| file.parent().map(Path::to_path_buf))
            .collect();
        for gone in self.directories.difference(&wanted) {
            let _ = self.watcher.unwatch(gone);
        }
        for directory in wanted.difference(&self.directories) {
            if let Err(error) = self.watcher.watch(directory, RecursiveMode::NonRecursive) {
                tracing::warn!(directory = %directory.display(), %error, "cannot watch for changes; SIGHUP still reloads");
            }
        }
        self.directories = wanted;
    }
}

/// A digest of the files' contents (following symlinks), so that events
/// for unrelated files in the same directory do not cause reloads.
fn files_fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut digest = Sha256::new();
    for file in files {
        match std::fs::read(file) {
            Ok(bytes) => {
                digest.update((bytes.len() as u64).to_be_bytes());
                digest.update(&bytes);
            }
            Err(error) => digest.update(error.to_string().as_bytes()),
        }
    }
    digest.finalize().into()
}

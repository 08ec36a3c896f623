//! Hot reload: watch the directories of every file the config is built
//! from (editors and config managers replace files by rename; Kubernetes
//! swaps a `..data` symlink), and listen for SIGHUP. On either, build a
//! whole new snapshot off the reactor and swap it in, or log why not and
//! keep serving the old one. The watched files are those the config on
//! disk names, loaded or refused, so that fixing a refused config by
//! creating or repairing one of its files reloads too. Settings that are
//! used only at start are reported when a reload changes them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::snapshot::{read_config, Snapshot};
use crate::state::State;

/// Events closer together than this are one change (a rename-based save
/// produces several events).
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Triggers that may wait for the reloader; more file events than this
/// are one change.
const PENDING_TRIGGERS: usize = 2;

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    FileChanged,
    Signal,
}

/// The reloader's memory between two triggers.
struct Reloader {
    state: Arc<State>,
    /// What the process runs with until it restarts: settings a reload
    /// cannot apply are compared with this.
    started: Config,
    /// The files named by the last config that parsed, whether it loaded
    /// or not: after a refusal, the file that would fix it (say, an
    /// htpasswd file it names that does not exist yet) must be watched too.
    sources: Vec<PathBuf>,
    /// What the files held at the last attempt, good or bad: a file event
    /// that leaves them so is not a change. Remembering failed attempts too
    /// reports a broken config once, not again on every unrelated event in
    /// its directory (editor swap files, other services' files).
    last_seen: [u8; 32],
    /// The directories being watched for `sources`.
    watched: Watched,
}

/// Starts watching and returns at once; reloading runs on its own task
/// until the process ends. Call it with the snapshot loaded at start in
/// force: settings a reload cannot apply are compared with that one.
pub fn spawn(state: Arc<State>) -> anyhow::Result<()> {
    let (events, triggers) = mpsc::channel(PENDING_TRIGGERS);
    let file_events = events.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A full queue already holds a trigger that will look at every
        // file: this event adds nothing. A busy neighbour in a watched
        // directory (a log file written thousands of times a second) thus
        // costs one pending trigger, not a queue growing without bound.
        if event.is_ok_and(|event| !event.kind.is_access()) {
            let _ = file_events.try_send(Trigger::FileChanged);
        }
    })?;
    let snapshot = state.snapshot();
    let sources = snapshot.source_files.clone();
    let mut reloader = Reloader {
        started: snapshot.config.clone(),
        last_seen: files_fingerprint(&sources),
        sources,
        watched: Watched {
            watcher,
            directories: BTreeSet::new(),
            unwatchable: BTreeSet::new(),
        },
        state,
    };
    reloader.watched.follow(&reloader.sources);

    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // Waits for room: a signal is never lost to queued file events.
            let _ = events.send(Trigger::Signal).await;
        }
    });
    tokio::spawn(reloader.run(triggers));
    Ok(())
}

impl Reloader {
    async fn run(mut self, mut triggers: mpsc::Receiver<Trigger>) {
        while let Some(mut trigger) = triggers.recv().await {
            // Let the burst of events one save makes settle.
            tokio::time::sleep(DEBOUNCE).await;
            while let Ok(next) = triggers.try_recv() {
                if matches!(next, Trigger::Signal) {
                    trigger = next;
                }
            }
            let sources = std::mem::take(&mut self.sources);
            self.sources = sources_off_reactor(self.state.config_path.clone(), sources).await;
            // Watched before the fingerprint is taken: a file that changes
            // (or appears) later sends an event, one that changed earlier is
            // part of the fingerprint.
            self.watched.follow(&self.sources);
            // Taken before the load: a write that lands during the load then
            // shows up as a difference at its own event, never as "seen".
            let before = fingerprint_off_reactor(self.sources.clone()).await;
            // SIGHUP always reloads.
            if matches!(trigger, Trigger::FileChanged) && before == self.last_seen {
                continue;
            }
            self.last_seen = before;
            reload(&self.state, &self.started, trigger).await;
        }
    }
}

/// The files the config at `config_path` names now; `previous` when it
/// cannot be read or parsed (its own directory is watched either way).
async fn sources_off_reactor(config_path: PathBuf, previous: Vec<PathBuf>) -> Vec<PathBuf> {
    let fallback = previous.clone();
    tokio::task::spawn_blocking(move || match read_config(&config_path) {
        Ok(config) => config.source_files(&config_path),
        Err(_) => previous,
    })
    .await
    .unwrap_or(fallback)
}

async fn fingerprint_off_reactor(files: Vec<PathBuf>) -> [u8; 32] {
    tokio::task::spawn_blocking(move || files_fingerprint(&files))
        .await
        .unwrap_or_default()
}

/// Builds and swaps in a new snapshot, or logs why not. `started` is the
/// config the process started with.
async fn reload(state: &State, started: &Config, trigger: Trigger) {
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
    let path = state.config_path.clone();
    let loaded = tokio::task::spawn_blocking(move || Snapshot::load(&path)).await;
    match loaded {
        Ok(Ok(snapshot)) => {
            let pending = not_applied(started, &state.snapshot().config, &snapshot.config);
            let generation = state.replace(snapshot);
            tracing::info!(generation, ?trigger, "configuration reloaded");
            for setting in pending {
                tracing::warn!(setting, "`{setting}` changed: it takes effect at restart");
            }
            metrics::counter!("regauth_reloads_total", "result" => "ok").increment(1);
            metrics::gauge!("regauth_config_generation").set(generation as f64);
        }
        Ok(Err(error)) => {
            tracing::error!(%error, ?trigger, "configuration refused; the previous one stays in force");
            metrics::counter!("regauth_reloads_total", "result" => "failed").increment(1);
        }
        Err(error) => {
            tracing::error!(%error, "reload task failed; the previous configuration stays in force");
            metrics::counter!("regauth_reloads_total", "result" => "failed").increment(1);
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
}

/// The settings a reload from `previous` to `new` changes but cannot apply:
/// each is reported once, when it changes, and not when it goes back to the
/// value the process `started` with.
fn not_applied(started: &Config, previous: &Config, new: &Config) -> Vec<&'static str> {
    let pending = started.restart_only_differences(new);
    previous
        .restart_only_differences(new)
        .into_iter()
        .filter(|setting| pending.contains(setting))
        .collect()
}

/// The directories being watched.
struct Watched {
    watcher: RecommendedWatcher,
    directories: BTreeSet<PathBuf>,
    /// Directories that could not be watched (say, not created yet): tried
    /// again at every change, reported once.
    unwatchable: BTreeSet<PathBuf>,
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
        self.directories
            .retain(|directory| wanted.contains(directory));
        self.unwatchable
            .retain(|directory| wanted.contains(directory));
        for directory in wanted {
            if self.directories.contains(&directory) {
                continue;
            }
            match self.watcher.watch(&directory, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.unwatchable.remove(&directory);
                    self.directories.insert(directory);
                }
                Err(error) => {
                    if self.unwatchable.insert(directory.clone()) {
                        tracing::warn!(directory = %directory.display(), %error, "cannot watch for changes; SIGHUP still reloads");
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!(
            r#"{{ "service": "s", "issuer": "i", "realm": "https://r/token", {extra}
                  "token": {{ "algorithm": "ES256", "private_key": "k" }} }}"#
        );
        Config::parse(&text, Path::new("/etc/regauth")).unwrap()
    }

    #[test]
    fn a_restart_only_change_is_reported_once_and_not_when_undone() {
        let started = config("");
        let longer = config(r#""credential_cache_secs": 600,"#);
        let with_acl = config(r#""credential_cache_secs": 600, "acl": [],"#);
        // Changed by this reload: reported.
        assert_eq!(
            not_applied(&started, &started, &longer),
            ["credential_cache_secs"]
        );
        // Still pending but not changed by this reload: already reported.
        assert!(not_applied(&started, &longer, &with_acl).is_empty());
        // Back to the value in effect: nothing is pending.
        assert!(not_applied(&started, &with_acl, &started).is_empty());
        // Reloadable settings are never reported.
        let acl_only = config(r#""acl": [{"actions": ["pull"]}],"#);
        assert!(not_applied(&started, &started, &acl_only).is_empty());
    }
}

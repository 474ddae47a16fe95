//! Watching the manifest directory: inotify events trigger a rescan, a periodic resync
//! catches whatever inotify missed, and each changed result is published as a whole
//! [`Snapshot`].
//!
//! Events are sorted into two kinds. A completed write or a rename *into* the directory, a
//! delete, a new symlink or a mode change means the directory is in a final state: rescan at
//! once. A rename *out of* the directory, or a change to the `..data` symlink layout, is
//! usually an editor or a tool half-way through a save (vim renames `pod.yaml` to `pod.yaml~`
//! before writing the new file): wait until events have been quiet for the debounce period.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch as channel};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Resolver, ScanError, Scanner, Snapshot, TrustPolicy, classify};
use crate::clock::{Clock, Timestamp};
use crate::event::{EventSink, EventType, PodEvent};
use crate::metrics::Metrics;
use crate::pod::NodeName;

/// How the manifest directory is watched.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// The manifest directory.
    pub dir: PathBuf,
    /// The node pods are bound to.
    pub node: NodeName,
    /// Full rescan period, whatever inotify says.
    pub resync: Duration,
    /// Quiet time that ends an editor's burst of events.
    pub debounce: Duration,
    /// Longest a burst may hold back a rescan.
    pub max_hold: Duration,
    /// How files not owned by root, or writable by others, are treated.
    pub policy: TrustPolicy,
    /// Metrics to record successful scans in.
    pub metrics: Option<Arc<Metrics>>,
    /// Told the time of every scan attempt (a heartbeat for `/healthz`).
    pub heartbeat: Option<channel::Sender<Timestamp>>,
    /// Where `InvalidManifest` events about pods of a rejected file go.
    pub events: EventSink,
}

/// How urgently an event asks for a rescan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// The directory is in a final state: rescan now.
    Now,
    /// Probably mid-save: rescan once events are quiet.
    Deferred,
}

fn name_of(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn is_manifest(p: &Path) -> bool {
    classify(name_of(p)).is_ok()
}

/// The `..data` symlink-swap layout that ConfigMap-style tools write.
fn is_data_swap(p: &Path) -> bool {
    name_of(p).starts_with("..")
}

fn trigger_for(event: &Event, dir: &Path) -> Option<Trigger> {
    let in_dir = |p: &PathBuf| p.parent() == Some(dir);
    // Events from directories that manifests link into: any name may matter there.
    if event.paths.iter().all(|p| !in_dir(p)) {
        return match event.kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_)
            | EventKind::Create(_) => Some(Trigger::Deferred),
            _ => None,
        };
    }
    let manifest = event.paths.iter().any(|p| is_manifest(p));
    let swap = event.paths.iter().any(|p| is_data_swap(p));
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) if manifest => Some(Trigger::Now),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) if manifest => Some(Trigger::Now),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            let from_manifest = event.paths.first().is_some_and(|p| is_manifest(p));
            if from_manifest || swap {
                Some(Trigger::Deferred)
            } else if manifest {
                Some(Trigger::Now)
            } else {
                None
            }
        }
        EventKind::Modify(ModifyKind::Name(_)) if manifest || swap => Some(Trigger::Deferred),
        EventKind::Remove(_) if manifest => Some(Trigger::Now),
        EventKind::Modify(ModifyKind::Metadata(_)) if manifest => Some(Trigger::Now),
        // A new regular file is written next and closed: wait for that. Anything else (a
        // symlink, a FIFO, a device node) is complete as created.
        EventKind::Create(_) if manifest => {
            let complete = event
                .paths
                .iter()
                .any(|p| std::fs::symlink_metadata(p).is_ok_and(|m| !m.file_type().is_file()));
            complete.then_some(Trigger::Now)
        }
        _ if swap => Some(Trigger::Deferred),
        _ => None,
    }
}

struct Reporter {
    reported: BTreeSet<String>,
    dir_error: Option<String>,
}

impl Reporter {
    /// Logs each manifest error and warning once, and when it goes away.
    fn report(
        &mut self,
        snapshot: &Snapshot,
        dir_warnings: &[String],
        events: &EventSink,
        at: Timestamp,
    ) {
        let mut now = BTreeSet::new();
        for w in dir_warnings {
            if !self.reported.contains(w) {
                warn!(warning = %w, "untrusted manifests allowed");
            }
            now.insert(w.clone());
        }
        for (path, file) in &snapshot.files {
            for e in &file.errors {
                let line = e.to_string();
                if !self.reported.contains(&line) {
                    if file.pods.is_empty() {
                        warn!(file = %path.display(), error = %line, "manifest rejected");
                    } else {
                        warn!(file = %path.display(), error = %line, pods = ?file.pods.iter().map(ToString::to_string).collect::<Vec<_>>(), "manifest rejected; its pods keep running their last good version");
                    }
                    for key in &file.pods {
                        events.emit(PodEvent {
                            key: key.clone(),
                            type_: EventType::Warning,
                            reason: "InvalidManifest".to_owned(),
                            message: format!("{line}; the pod keeps running its last good version"),
                            field_path: None,
                            at,
                        });
                    }
                }
                now.insert(line);
            }
            for w in &file.warnings {
                let line = format!("{}: {w}", path.display());
                if !self.reported.contains(&line) {
                    warn!(file = %path.display(), warning = %w, "manifest accepted with a warning");
                }
                now.insert(line);
            }
        }
        for gone in self.reported.difference(&now) {
            info!(was = %gone, "manifest problem resolved");
        }
        self.reported = now;
    }
}

/// Scans `config.dir` until `shutdown`, publishing every changed snapshot on `tx`. The first
/// snapshot is published after the first successful scan; until the directory can be read,
/// nothing is published (so that a missing directory never looks like "no pods").
pub async fn watch(
    config: WatchConfig,
    clock: Clock,
    tx: channel::Sender<Option<Arc<Snapshot>>>,
    shutdown: CancellationToken,
) {
    let (event_tx, mut events) = mpsc::unbounded_channel::<Trigger>();
    let dir = config.dir.clone();
    let handler_dir = dir.clone();
    let mut watcher = match notify::recommended_watcher(move |res: notify::Result<Event>| match res
    {
        Ok(event) => {
            if let Some(t) = trigger_for(&event, &handler_dir) {
                let _ = event_tx.send(t);
            }
        }
        Err(e) => {
            debug!(error = %e, "inotify error; the periodic resync covers it");
            let _ = event_tx.send(Trigger::Deferred);
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "inotify unavailable; relying on the periodic resync only");
            None
        }
    };
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let state = Arc::new(Mutex::new((
        Scanner::with_policy(&dir, config.policy),
        Resolver::new(config.node.clone()),
    )));
    let mut reporter = Reporter {
        reported: BTreeSet::new(),
        dir_error: None,
    };
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = resync.tick() => {}
            Some(first) = events.recv() => {
                let mut deferred = first == Trigger::Deferred;
                while let Ok(t) = events.try_recv() {
                    deferred |= t == Trigger::Deferred;
                }
                if deferred {
                    let hold_until = Instant::now() + config.max_hold;
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            more = events.recv() => if more.is_none() { break },
                            _ = tokio::time::sleep(config.debounce) => break,
                            _ = tokio::time::sleep_until(hold_until) => break,
                        }
                    }
                }
                while events.try_recv().is_ok() {}
            }
        }

        let now = clock.now();
        if let Some(h) = &config.heartbeat {
            h.send_replace(now);
        }
        let scan_state = state.clone();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = scan_state.lock().unwrap_or_else(|e| e.into_inner());
            let (scanner, resolver) = &mut *guard;
            scanner.scan().map(|scan| {
                let snapshot = resolver.resolve(&scan, now);
                (snapshot, scan.link_dirs, scan.warnings)
            })
        })
        .await;
        let (snapshot, link_dirs, dir_warnings) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                let message = e.to_string();
                if reporter.dir_error.as_deref() != Some(message.as_str()) {
                    match e {
                        ScanError::Missing { .. } => {
                            warn!(error = %message, "waiting for the manifest directory; running pods are left alone")
                        }
                        ScanError::Unreadable { .. } => {
                            warn!(error = %message, "manifest directory unreadable; running pods are left alone")
                        }
                        ScanError::Untrusted { .. } => {
                            error!(error = %message, "manifest directory refused; running pods are left alone")
                        }
                    }
                    reporter.dir_error = Some(message);
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "manifest scan task failed");
                continue;
            }
        };
        if let Some(err) = reporter.dir_error.take() {
            info!(was = %err, "manifest directory readable");
        }
        reporter.report(&snapshot, &dir_warnings, &config.events, now);
        if let Some(m) = &config.metrics {
            m.resynced(now);
        }

        if let Some(w) = watcher.as_mut() {
            let mut wanted: BTreeSet<PathBuf> = link_dirs;
            wanted.insert(dir.clone());
            for gone in watched.difference(&wanted).cloned().collect::<Vec<_>>() {
                let _ = w.unwatch(&gone);
                watched.remove(&gone);
            }
            for new in wanted.difference(&watched).cloned().collect::<Vec<_>>() {
                match w.watch(&new, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        watched.insert(new);
                    }
                    Err(e) => debug!(path = %new.display(), error = %e, "cannot watch yet"),
                }
            }
        }

        let changed = tx.borrow().as_ref().is_none_or(|old| **old != snapshot);
        if changed {
            debug!(
                pods = snapshot.pods.len(),
                files = snapshot.files.len(),
                "manifest snapshot changed"
            );
            tx.send_replace(Some(Arc::new(snapshot)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, RemoveKind};

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    const DIR: &str = "/etc/kubernetes/manifests";

    fn t(kind: EventKind, paths: &[&str]) -> Option<Trigger> {
        trigger_for(&ev(kind, paths), Path::new(DIR))
    }

    #[test]
    fn completed_writes_renames_in_and_deletes_rescan_at_once() {
        let m = "/etc/kubernetes/manifests/etcd.yaml";
        assert_eq!(
            t(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &[m]
            ),
            Some(Trigger::Now)
        );
        assert_eq!(
            t(EventKind::Modify(ModifyKind::Name(RenameMode::To)), &[m]),
            Some(Trigger::Now)
        );
        assert_eq!(
            t(EventKind::Remove(RemoveKind::File), &[m]),
            Some(Trigger::Now)
        );
    }

    #[test]
    fn partial_writes_and_editor_files_do_not_trigger() {
        let m = "/etc/kubernetes/manifests/etcd.yaml";
        assert_eq!(
            t(
                EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
                &[m]
            ),
            None
        );
        assert_eq!(t(EventKind::Create(CreateKind::File), &[m]), None);
        assert_eq!(
            t(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/etc/kubernetes/manifests/.etcd.yaml.swp"]
            ),
            None
        );
        assert_eq!(
            t(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/etc/kubernetes/manifests/4913"]
            ),
            None
        );
        assert_eq!(
            t(
                EventKind::Remove(RemoveKind::File),
                &["/etc/kubernetes/manifests/etcd.yaml~"]
            ),
            None
        );
    }

    #[test]
    fn renaming_a_manifest_away_waits_for_the_editor_to_finish() {
        let m = "/etc/kubernetes/manifests/etcd.yaml";
        let backup = "/etc/kubernetes/manifests/etcd.yaml~";
        assert_eq!(
            t(EventKind::Modify(ModifyKind::Name(RenameMode::From)), &[m]),
            Some(Trigger::Deferred)
        );
        assert_eq!(
            t(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &[m, backup]
            ),
            Some(Trigger::Deferred)
        );
    }

    #[test]
    fn data_symlink_swaps_and_linked_directories_are_deferred() {
        assert_eq!(
            t(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/etc/kubernetes/manifests/..data"]
            ),
            Some(Trigger::Deferred)
        );
        assert_eq!(
            t(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/srv/config/web.conf"]
            ),
            Some(Trigger::Deferred)
        );
    }

    #[test]
    fn a_new_symlink_or_fifo_is_complete_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe.yaml");
        let link = dir.path().join("link.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        std::os::unix::fs::symlink("pipe.yaml", &link).expect("symlink");
        for p in [&fifo, &link] {
            let event = Event::new(EventKind::Create(CreateKind::Any)).add_path(p.clone());
            assert_eq!(trigger_for(&event, dir.path()), Some(Trigger::Now), "{p:?}");
        }
    }
}

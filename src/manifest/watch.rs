//! Watching the manifest directory: inotify events trigger a rescan, a periodic resync
//! catches whatever inotify missed, and each changed result is published as a whole
//! [`Snapshot`].
//!
//! Events are sorted into two kinds. A completed write or a rename *into* the directory, a
//! delete, a new symlink or a mode change means the directory is in a final state: rescan at
//! once. A rename *out of* the directory, or a change to the `..data` symlink layout, is
//! usually an editor or a tool half-way through a save (vim renames `pod.yaml` to `pod.yaml~`
//! before writing the new file): wait until events have been quiet for the debounce period.
//!
//! A manifest renamed away is held for [`RENAME_HOLD`]: its pods keep running until the
//! editor writes the file back (however slowly) or the hold ends, so an editor's save never
//! deletes a pod. Deleting a file (`rm`) is not held.
//!
//! The directory itself may be replaced (`mv manifests old; mv new manifests`): its parent is
//! watched for that, and every scan re-watches a path whose inode changed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{Event, EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch as channel};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{FileStatus, LastGood, Resolver, ScanError, Scanner, Snapshot, TrustPolicy, classify};
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
    /// Where each file's last good version is kept across restarts (`None`: in memory only).
    pub last_good: Option<PathBuf>,
}

/// How long a manifest renamed away keeps its pods while an editor writes the new version.
/// Deleting it another way is not held; renaming it away for good (`mv web.yaml
/// web.yaml.off`) takes this long to stop its pod.
pub const RENAME_HOLD: Duration = Duration::from_secs(2);

/// What the inotify handler tells the loop.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Signal {
    /// Rescan, now or once events are quiet.
    Rescan(Trigger),
    /// This manifest was renamed away: hold its pods, then rescan once quiet.
    RenamedAway(PathBuf),
    /// This manifest was renamed to another manifest name here: no editor, no hold.
    Renamed(PathBuf),
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

/// What `event` asks for. `links` are the directories manifests link into (watched too).
///
/// inotify reports a rename as `From` (the old name) and, when both names are watched,
/// `Both` (old, new) after it. A manifest renamed away is held; one renamed to another
/// manifest name in the directory is not an editor's save, and its hold is released.
fn signal_for(event: &Event, dir: &Path, links: &BTreeSet<PathBuf>) -> Option<Signal> {
    let here = |p: &&PathBuf| p.parent() == Some(dir) && is_manifest(p);
    if let EventKind::Modify(ModifyKind::Name(mode)) = event.kind
        && let Some(from) = event.paths.first().filter(here)
    {
        match mode {
            RenameMode::From => return Some(Signal::RenamedAway(from.clone())),
            RenameMode::Both if event.paths.get(1).filter(here).is_some() => {
                return Some(Signal::Renamed(from.clone()));
            }
            _ => {}
        }
    }
    trigger_for(event, dir, links).map(Signal::Rescan)
}

fn trigger_for(event: &Event, dir: &Path, links: &BTreeSet<PathBuf>) -> Option<Trigger> {
    let in_dir = |p: &PathBuf| p.parent() == Some(dir);
    // The directory itself created, removed or renamed, seen from its parent's watch: it may
    // have been swapped for another. Rescan (and re-watch) at once.
    if event.paths.iter().any(|p| p == dir) {
        return Some(Trigger::Now);
    }
    // The rest of the parent's entries do not matter, unless manifests link into it.
    let parent = dir.parent();
    if event
        .paths
        .iter()
        .all(|p| p.parent() == parent && !parent.is_some_and(|d| links.contains(d)))
    {
        return None;
    }
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

/// (device, inode) of a path, to notice when a watched directory was replaced.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The directories under watch, each with the inode it had when the watch was placed:
/// inotify follows the inode, so a directory replaced by rename must be watched again.
#[derive(Default)]
struct Watched(BTreeMap<PathBuf, Option<(u64, u64)>>);

impl Watched {
    /// Watches exactly `wanted`, re-watching any path whose inode changed.
    fn update(&mut self, w: &mut impl Watcher, wanted: &BTreeSet<PathBuf>) {
        let stale: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|(p, id)| !wanted.contains(*p) || identity(p) != **id)
            .map(|(p, _)| p.clone())
            .collect();
        for gone in stale {
            let _ = w.unwatch(&gone);
            self.0.remove(&gone);
        }
        let missing: Vec<&PathBuf> = wanted.iter().filter(|p| !self.0.contains_key(*p)).collect();
        for new in missing {
            let id = identity(new);
            match w.watch(new, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.0.insert(new.clone(), id);
                }
                Err(e) => debug!(path = %new.display(), error = %e, "cannot watch yet"),
            }
        }
    }
}

/// Gives the resolver the last good versions kept on disk before this start.
fn restore(resolver: &mut Resolver, store: &mut LastGood, now: Timestamp) {
    for (path, parsed) in store.load() {
        match resolver.restore(path.clone(), parsed, now) {
            Ok(()) => info!(manifest = %path.display(), "last good version loaded from disk"),
            Err(e) => {
                warn!(manifest = %path.display(), error = %e, "kept last good version no longer applies; ignored")
            }
        }
    }
    store.loaded(resolver.accepted());
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
    let (event_tx, mut events) = mpsc::unbounded_channel::<Signal>();
    let again = event_tx.clone();
    let dir = config.dir.clone();
    let handler_dir = dir.clone();
    let links: Arc<Mutex<BTreeSet<PathBuf>>> = Arc::default();
    let handler_links = links.clone();
    let mut watcher = match notify::recommended_watcher(move |res: notify::Result<Event>| match res
    {
        Ok(event) => {
            let links = handler_links.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = signal_for(&event, &handler_dir, &links) {
                let _ = event_tx.send(s);
            }
        }
        Err(e) => {
            debug!(error = %e, "inotify error; the periodic resync covers it");
            let _ = event_tx.send(Signal::Rescan(Trigger::Deferred));
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            warn!(error = %e, "inotify unavailable; relying on the periodic resync only");
            None
        }
    };
    let mut watched = Watched::default();
    let mut held: BTreeMap<PathBuf, Instant> = BTreeMap::new();
    let mut resolver = Resolver::new(config.node.clone());
    let mut store = config.last_good.clone().map(LastGood::new);
    if let Some(store) = store.as_mut() {
        restore(&mut resolver, store, clock.now());
    }
    let state = Arc::new(Mutex::new((
        Scanner::with_policy(&dir, config.policy),
        resolver,
        store,
    )));
    let mut reporter = Reporter {
        reported: BTreeSet::new(),
        dir_error: None,
    };
    let mut resync = tokio::time::interval(config.resync);
    resync.set_missed_tick_behavior(MissedTickBehavior::Delay);

    loop {
        let hold_ends = held.values().min().copied();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = resync.tick() => {}
            _ = sleep_until_opt(hold_ends) => {}
            Some(first) = events.recv() => {
                let mut pending = vec![first];
                while let Ok(s) = events.try_recv() {
                    pending.push(s);
                }
                let mut deferred = false;
                for s in pending {
                    match s {
                        Signal::Rescan(t) => deferred |= t == Trigger::Deferred,
                        other => {
                            hold(&mut held, other);
                            deferred = true;
                        }
                    }
                }
                if deferred {
                    let hold_until = Instant::now() + config.max_hold;
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            more = events.recv() => match more {
                                None => break,
                                Some(s) => hold(&mut held, s),
                            },
                            _ = tokio::time::sleep(config.debounce) => break,
                            _ = tokio::time::sleep_until(hold_until) => break,
                        }
                    }
                }
                while let Ok(s) = events.try_recv() {
                    hold(&mut held, s);
                }
            }
        }
        // Holds that arrived meanwhile count for this scan already.
        while let Ok(s) = events.try_recv() {
            hold(&mut held, s);
        }
        let instant = Instant::now();
        held.retain(|_, until| *until > instant);

        let now = clock.now();
        if let Some(h) = &config.heartbeat {
            h.send_replace(now);
        }
        let scan_state = state.clone();
        let holding: BTreeSet<PathBuf> = held.keys().cloned().collect();
        let result = tokio::task::spawn_blocking(move || {
            let mut guard = scan_state.lock().unwrap_or_else(|e| e.into_inner());
            let (scanner, resolver, store) = &mut *guard;
            scanner.scan().map(|scan| {
                let snapshot = resolver.resolve_holding(&scan, now, &holding);
                if let Some(store) = store.as_mut() {
                    store.sync(resolver.accepted());
                }
                (snapshot, scan.link_dirs, scan.warnings)
            })
        })
        .await;
        // A file that is back (or gone for good from the snapshot) needs no hold any more.
        if let Ok(Ok((snapshot, _, _))) = &result {
            held.retain(|p, _| {
                snapshot
                    .files
                    .get(p)
                    .is_some_and(|f| f.status == FileStatus::RenamedAway)
            });
        }
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
                if let Some(w) = watcher.as_mut() {
                    // Watch the parent, to notice the directory coming (back).
                    let wanted: BTreeSet<PathBuf> =
                        dir.parent().map(Path::to_owned).into_iter().collect();
                    watched.update(w, &wanted);
                }
                continue;
            }
            Err(e) => {
                warn!(error = %e, "manifest scan task failed");
                continue;
            }
        };
        // A rename that raced this scan: the file is missing, and only now do we learn that
        // an editor moved it. Do not publish a snapshot without its pods; scan again with it
        // held (the resolver still has its pods).
        let mut raced = false;
        while let Ok(s) = events.try_recv() {
            if let Signal::RenamedAway(p) = &s
                && !held.contains_key(p)
                && !snapshot.files.contains_key(p)
            {
                raced = true;
            }
            hold(&mut held, s);
        }
        if raced {
            let _ = again.send(Signal::Rescan(Trigger::Now));
            continue;
        }
        if let Some(err) = reporter.dir_error.take() {
            info!(was = %err, "manifest directory readable");
        }
        reporter.report(&snapshot, &dir_warnings, &config.events, now);
        if let Some(m) = &config.metrics {
            m.resynced(now.0 as f64 / 1e9);
        }

        if let Some(w) = watcher.as_mut() {
            let mut wanted: BTreeSet<PathBuf> = link_dirs.clone();
            wanted.insert(dir.clone());
            wanted.extend(dir.parent().map(Path::to_owned));
            *links.lock().unwrap_or_else(|e| e.into_inner()) = link_dirs;
            watched.update(w, &wanted);
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

/// Starts or releases a hold; rescans are decided elsewhere.
fn hold(held: &mut BTreeMap<PathBuf, Instant>, signal: Signal) {
    match signal {
        Signal::RenamedAway(path) => {
            held.insert(path, Instant::now() + RENAME_HOLD);
        }
        Signal::Renamed(path) => {
            held.remove(&path);
        }
        Signal::Rescan(_) => {}
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventSink;
    use crate::pod::NodeName;
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
        trigger_for(&ev(kind, paths), Path::new(DIR), &BTreeSet::new())
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
            assert_eq!(
                trigger_for(&event, dir.path(), &BTreeSet::new()),
                Some(Trigger::Now),
                "{p:?}"
            );
        }
    }

    #[test]
    fn renames_away_are_held_renames_within_are_not_and_the_parent_only_matters_for_the_dir() {
        let m = "/etc/kubernetes/manifests/etcd.yaml";
        let none = BTreeSet::new();
        let sig = |kind, paths: &[&str]| signal_for(&ev(kind, paths), Path::new(DIR), &none);
        let name = |mode| EventKind::Modify(ModifyKind::Name(mode));
        assert_eq!(
            sig(name(RenameMode::From), &[m]),
            Some(Signal::RenamedAway(PathBuf::from(m)))
        );
        // vim's backup name is no manifest: the hold from `From` stands.
        assert_eq!(
            sig(
                name(RenameMode::Both),
                &[m, "/etc/kubernetes/manifests/etcd.yaml~"]
            ),
            Some(Signal::Rescan(Trigger::Deferred))
        );
        assert_eq!(
            sig(
                name(RenameMode::Both),
                &[m, "/etc/kubernetes/manifests/etcd2.yaml"]
            ),
            Some(Signal::Renamed(PathBuf::from(m)))
        );
        // The directory itself, seen from its parent's watch: swapped, rescan now.
        assert_eq!(
            sig(name(RenameMode::To), &[DIR]),
            Some(Signal::Rescan(Trigger::Now))
        );
        assert_eq!(
            sig(EventKind::Create(CreateKind::Folder), &[DIR]),
            Some(Signal::Rescan(Trigger::Now))
        );
        // Its siblings do not matter, unless manifests link into the parent.
        let admin = "/etc/kubernetes/admin.conf";
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(sig(close, &[admin]), None);
        let parent: BTreeSet<PathBuf> = [PathBuf::from("/etc/kubernetes")].into();
        assert_eq!(
            signal_for(&ev(close, &[admin]), Path::new(DIR), &parent),
            Some(Signal::Rescan(Trigger::Deferred))
        );
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: 'busybox:1.35'}]}\n";

    /// Runs the watcher on `dir` with an hour-long resync (so only inotify can explain a
    /// prompt change); returns the snapshot receiver and the shutdown token.
    fn start(dir: &Path) -> (channel::Receiver<Option<Arc<Snapshot>>>, CancellationToken) {
        start_keeping(dir, None)
    }

    /// [`start`], keeping last good versions in `last_good`.
    fn start_keeping(
        dir: &Path,
        last_good: Option<PathBuf>,
    ) -> (channel::Receiver<Option<Arc<Snapshot>>>, CancellationToken) {
        let (tx, rx) = channel::channel(None);
        let token = CancellationToken::new();
        let config = WatchConfig {
            dir: dir.to_owned(),
            node: NodeName::new("n1"),
            resync: Duration::from_secs(3600),
            debounce: Duration::from_millis(100),
            max_hold: Duration::from_secs(1),
            policy: TrustPolicy::Off,
            metrics: None,
            heartbeat: None,
            events: EventSink::discard(),
            last_good,
        };
        tokio::spawn(watch(config, Clock::System, tx, token.clone()));
        (rx, token)
    }

    /// Waits (at most 10 s) for a snapshot that satisfies `check`.
    async fn until(
        rx: &mut channel::Receiver<Option<Arc<Snapshot>>>,
        what: &str,
        check: impl Fn(&Snapshot) -> bool,
    ) {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if rx.borrow_and_update().as_deref().is_some_and(&check) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        assert!(waited.is_ok(), "no snapshot with {what} within 10 s");
    }

    fn images(s: &Snapshot) -> Vec<String> {
        s.pods
            .values()
            .map(|p| p.spec.containers[0].image.clone().unwrap_or_default())
            .collect()
    }

    /// Issue 16.3: a file that became invalid while podvisor was down still has the version
    /// that ran before, from the copy kept on disk; without the copy it is left alone.
    #[tokio::test]
    async fn a_file_broken_while_podvisor_was_down_keeps_its_last_good_version_issue_16() {
        let top = tempfile::tempdir().expect("tempdir");
        let dir = top.path().join("manifests");
        let kept = top.path().join("last-good");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("web.yaml"), POD).expect("write");
        let (mut rx, token) = start_keeping(&dir, Some(kept.clone()));
        until(&mut rx, "the pod", |s| s.pods.len() == 1).await;
        let hash = rx
            .borrow()
            .as_ref()
            .map(|s| s.pods.values().next().map(|p| p.hash.clone()));
        token.cancel();

        // podvisor is down; the file is broken
        std::fs::write(dir.join("web.yaml"), "kind: Pod\nspec: [broken\n").expect("write");
        let (mut rx, token) = start_keeping(&dir, Some(kept.clone()));
        until(&mut rx, "the rejected file with its last good pod", |s| {
            let file = &s.files[&dir.join("web.yaml")];
            file.status == FileStatus::Rejected && s.pods.len() == 1 && s.untouchable.is_empty()
        })
        .await;
        let again = rx
            .borrow()
            .as_ref()
            .map(|s| s.pods.values().next().map(|p| p.hash.clone()));
        assert_eq!(again, hash, "the same version, the same hash");
        token.cancel();

        // without the copy: left alone, as before
        let (mut rx, token) = start(&dir);
        until(&mut rx, "the untouchable file", |s| {
            s.pods.is_empty() && s.untouchable.contains(&dir.join("web.yaml"))
        })
        .await;
        token.cancel();
    }

    #[tokio::test]
    async fn a_replaced_manifest_directory_is_watched_again_issue_17() {
        let top = tempfile::tempdir().expect("tempdir");
        let dir = top.path().join("manifests");
        std::fs::create_dir(&dir).expect("mkdir");
        let (mut rx, token) = start(&dir);
        until(&mut rx, "the first scan", |_| true).await;
        // mv manifests old; mv new manifests
        let new = top.path().join("new");
        std::fs::create_dir(&new).expect("mkdir");
        std::fs::write(new.join("web.yaml"), POD).expect("write");
        std::fs::rename(&dir, top.path().join("old")).expect("mv away");
        std::fs::rename(&new, &dir).expect("mv in");
        until(&mut rx, "the new directory's pod", |s| s.pods.len() == 1).await;
        // and the new directory's own changes are seen too
        std::fs::write(dir.join("web.yaml"), POD.replace("1.35", "1.36")).expect("write");
        until(&mut rx, "the edit in the new directory", |s| {
            images(s) == ["busybox:1.36"]
        })
        .await;
        token.cancel();
    }

    #[tokio::test]
    async fn a_slow_editor_save_never_drops_the_pod_issue_17() {
        let top = tempfile::tempdir().expect("tempdir");
        let dir = top.path().join("manifests");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join("web.yaml"), POD).expect("write");
        let (mut rx, token) = start(&dir);
        until(&mut rx, "the pod", |s| s.pods.len() == 1).await;
        let saw_none = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watcher = {
            let mut rx = rx.clone();
            let saw_none = saw_none.clone();
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    if rx
                        .borrow_and_update()
                        .as_deref()
                        .is_some_and(|s| s.pods.is_empty())
                    {
                        saw_none.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        };
        // vim: rename away, and write the new file well after the 100 ms debounce.
        std::fs::rename(dir.join("web.yaml"), dir.join("web.yaml~")).expect("rename");
        tokio::time::sleep(Duration::from_millis(600)).await;
        std::fs::write(dir.join("web.yaml"), POD.replace("1.35", "1.36")).expect("write");
        std::fs::remove_file(dir.join("web.yaml~")).expect("rm backup");
        until(&mut rx, "the edited pod", |s| images(s) == ["busybox:1.36"]).await;
        assert!(
            !saw_none.load(std::sync::atomic::Ordering::SeqCst),
            "the pod was dropped mid-save"
        );
        // Renamed away for good: dropped once the hold ends.
        std::fs::rename(dir.join("web.yaml"), dir.join("web.yaml.off")).expect("rename");
        until(&mut rx, "the pod gone", |s| s.pods.is_empty()).await;
        token.cancel();
        watcher.abort();
    }
}

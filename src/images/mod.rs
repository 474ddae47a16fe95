//! Images on the node, kept from filling its disk.
//!
//! * `gc` (pure): which images to remove, by the kubelet's rules and thresholds, never one a
//!   current manifest names.
//! * `names` (pure): whether the runtime's list holds an image a manifest names.
//! * [`collect_garbage`]: the task. Once the first reconcile pass is done (so the manifests
//!   are read and their pods' containers exist), and then every [`PERIOD`] (the kubelet's
//!   image GC period), it lists the runtime's images and what uses them, reads the image
//!   filesystem's usage and removes what `gc` chose.

pub mod gc;
pub mod names;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::{Clock, Timestamp};
use crate::health::{NodeHealth, Signal};
use crate::manifest::Snapshot;
use crate::reconcile::ReconcileState;
use crate::runtime::{Runtime, RuntimeError};
pub use gc::{FsUsage, GcPolicy, Records};

/// How often images are collected (the kubelet's `ImageGCPeriod`).
pub const PERIOD: Duration = Duration::from_secs(5 * 60);

/// The image names the pods of `snapshot` run, init containers included.
pub fn named_images(snapshot: &Snapshot) -> BTreeSet<String> {
    snapshot
        .pods
        .values()
        .flat_map(|p| p.init_containers().iter().chain(p.containers()))
        .filter_map(|c| c.image.clone())
        .filter(|i| !i.is_empty())
        .collect()
}

/// The image filesystem's figures: the first the runtime reports.
async fn image_fs<R: Runtime>(runtime: &R) -> Option<FsUsage> {
    let mounts = runtime.image_filesystems().await.ok()?;
    let mount = mounts.first()?.clone();
    tokio::task::spawn_blocking(move || crate::health::figures::filesystem(Path::new(&mount)))
        .await
        .ok()
        .flatten()
        .map(|f| FsUsage {
            available: f.bytes.available,
            capacity: f.bytes.capacity,
        })
}

/// How a collection decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// By the thresholds and ages (the periodic collection).
    Thresholds,
    /// Every unused image old enough: the disk is under pressure.
    Reclaim,
}

/// One collection: what was removed, or why nothing could be decided.
pub async fn collect_once<R: Runtime>(
    runtime: &R,
    records: &mut Records,
    names: &BTreeSet<String>,
    policy: GcPolicy,
    mode: Mode,
    began: Timestamp,
    now: Timestamp,
) -> Result<gc::Collection, RuntimeError> {
    let images = runtime.list_images().await?;
    let in_use = runtime.images_in_use().await?;
    records.detect(&images, &in_use, now);
    // An image a manifest names, by the ID the runtime resolves the name to; a name the
    // runtime cannot resolve (not pulled yet) protects nothing, and an error stops the round.
    let mut named = BTreeSet::new();
    for name in names {
        if let Some(id) = runtime.image_id(name).await? {
            named.insert(id);
        }
    }
    let decided = match mode {
        Mode::Thresholds => {
            let fs = image_fs(runtime).await;
            records.collect(&in_use, &named, fs, policy, began, now)
        }
        Mode::Reclaim => records.reclaim(&in_use, &named, policy, now),
    };
    for (id, why) in &decided.remove {
        let tags = images
            .iter()
            .find(|i| &i.id == id)
            .map(|i| i.tags.join(","))
            .unwrap_or_default();
        let size = records.get(id).map_or(0, |r| r.size);
        match runtime.remove_image(id).await {
            Ok(()) => {
                records.forget(id);
                info!(image = %id, names = %tags, bytes = size, reason = ?why, "image removed");
            }
            Err(e) => warn!(image = %id, names = %tags, error = %e, "cannot remove image"),
        }
    }
    if decided.fell_short() {
        warn!(
            usage_percent = decided.usage_percent.unwrap_or(0),
            freed = decided.freed,
            wanted = decided.wanted,
            "insufficient free disk space on the image filesystem: unused images do not hold enough; investigate disk usage (active images, logs, volumes, other data)"
        );
    }
    Ok(decided)
}

/// Whether the node's health says its image (or, without a separate one, its root)
/// filesystem is short of bytes.
fn disk_short(health: &NodeHealth) -> bool {
    health.met.contains(&Signal::ImagefsAvailable) || health.met.contains(&Signal::NodefsAvailable)
}

/// The image garbage collection task; stops when `token` is cancelled. Besides the periodic
/// collection, a disk running short (an `imagefs.available` or `nodefs.available` threshold
/// met) has every unused image removed at once, as the kubelet's eviction manager reclaims.
/// A high threshold of 100 turns both off (the kubelet would still reclaim under pressure; an
/// operator who says "never" means never).
pub async fn collect_garbage<R: Runtime>(
    runtime: Arc<R>,
    policy: GcPolicy,
    clock: Clock,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    mut state: watch::Receiver<Arc<ReconcileState>>,
    mut health: watch::Receiver<NodeHealth>,
    token: CancellationToken,
) {
    if policy.high_percent >= 100 {
        // 100: images are never removed, not even under disk pressure. The task still lives
        // until shutdown: a task that ends is a loop that stopped.
        token.cancelled().await;
        return;
    }
    tokio::select! {
        () = token.cancelled() => return,
        synced = state.wait_for(|s| s.synced) => if synced.is_err() { return },
    }
    let began = clock.now();
    let mut records = Records::default();
    let mut mode = Mode::Thresholds;
    let mut next = tokio::time::Instant::now();
    let mut short = disk_short(&health.borrow_and_update());
    let mut health_open = true;
    loop {
        // Without the manifests read, nothing is known to be safe to remove.
        let names = snapshots.borrow().as_deref().map(named_images);
        if let Some(names) = names {
            let now = clock.now();
            if let Err(e) = collect_once(
                runtime.as_ref(),
                &mut records,
                &names,
                policy,
                mode,
                began,
                now,
            )
            .await
            {
                warn!(error = %e, "image garbage collection skipped");
            }
        }
        if mode == Mode::Thresholds {
            next += PERIOD;
        }
        mode = loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep_until(next) => break Mode::Thresholds,
                changed = health.changed(), if health_open => {
                    if changed.is_err() {
                        health_open = false; // no health reports: periodic collection only
                        continue;
                    }
                    let now_short = disk_short(&health.borrow_and_update());
                    let became = now_short && !short;
                    short = now_short;
                    if became {
                        info!("disk pressure: removing every unused image");
                        break Mode::Reclaim;
                    }
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeImage;
    use crate::runtime::fake::{FakeCall, FakeRuntime};

    fn image(id: &str, tag: &str) -> RuntimeImage {
        RuntimeImage {
            id: id.to_owned(),
            tags: vec![tag.to_owned()],
            digests: Vec::new(),
            size: 10,
            pinned: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_unused_unnamed_image_is_removed_through_the_runtime() {
        let clock = Clock::tokio(Timestamp(0));
        let rt = FakeRuntime::new(clock);
        rt.add_image(image("sha256:pause", "registry.k8s.io/pause:3.10"));
        rt.add_image(image("sha256:etcd", "registry.k8s.io/etcd:3.6.4-0"));
        rt.add_image(image("sha256:old", "example.org/old:1"));
        rt.set_sandbox_image("sha256:pause");
        let policy = GcPolicy {
            max_age: Duration::from_secs(60),
            ..GcPolicy::default()
        };
        let names = BTreeSet::from(["registry.k8s.io/etcd:3.6.4-0".to_owned()]);
        let mut records = Records::default();
        let began = clock.now();
        collect_once(
            &rt,
            &mut records,
            &names,
            policy,
            Mode::Thresholds,
            began,
            clock.now(),
        )
        .await
        .expect("first round");
        assert_eq!(rt.image_ids().len(), 3, "nothing is old yet");
        tokio::time::advance(Duration::from_secs(120)).await;
        let c = collect_once(
            &rt,
            &mut records,
            &names,
            policy,
            Mode::Thresholds,
            began,
            clock.now(),
        )
        .await
        .expect("second round");
        assert_eq!(c.remove, [("sha256:old".to_owned(), gc::Why::Age)]);
        assert_eq!(rt.image_ids(), ["sha256:etcd", "sha256:pause"]);
        assert!(
            rt.calls()
                .contains(&FakeCall::RemoveImage("sha256:old".to_owned()))
        );
        assert!(records.get("sha256:old").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn disk_pressure_removes_every_unused_image_at_once_between_periods() {
        let clock = Clock::tokio(Timestamp(0));
        let rt = Arc::new(FakeRuntime::new(clock));
        rt.add_image(image("sha256:a", "example.org/a:1"));
        rt.add_image(image("sha256:named", "example.org/named:1"));
        let policy = GcPolicy {
            min_age: Duration::ZERO,
            ..GcPolicy::default()
        };
        let snapshot = Snapshot::default();
        let (_snap_tx, snaps) = watch::channel(Some(Arc::new(snapshot)));
        let (_state_tx, state) = watch::channel(Arc::new(ReconcileState {
            synced: true,
            ..ReconcileState::default()
        }));
        let (health_tx, health) = watch::channel(NodeHealth::default());
        let token = CancellationToken::new();
        let task = tokio::spawn(collect_garbage(
            rt.clone(),
            policy,
            clock,
            snaps,
            state,
            health,
            token.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            rt.image_ids().len(),
            2,
            "no figures, no pressure: nothing removed"
        );
        health_tx.send_modify(|h| {
            h.met.insert(Signal::NodefsAvailable);
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(rt.image_ids().is_empty(), "{:?}", rt.image_ids());
        token.cancel();
        task.await.expect("task");
    }

    #[tokio::test(start_paused = true)]
    async fn a_high_threshold_of_100_removes_nothing_even_under_disk_pressure() {
        let clock = Clock::tokio(Timestamp(0));
        let rt = Arc::new(FakeRuntime::new(clock));
        rt.add_image(image("sha256:a", "example.org/a:1"));
        let policy = GcPolicy {
            high_percent: 100,
            min_age: Duration::ZERO,
            ..GcPolicy::default()
        };
        let (_snap_tx, snaps) = watch::channel(Some(Arc::new(Snapshot::default())));
        let (_state_tx, state) = watch::channel(Arc::new(ReconcileState {
            synced: true,
            ..ReconcileState::default()
        }));
        let mut pressed = NodeHealth::default();
        pressed.met.insert(Signal::NodefsAvailable);
        let (_health_tx, health) = watch::channel(pressed);
        let token = CancellationToken::new();
        let task = tokio::spawn(collect_garbage(
            rt.clone(),
            policy,
            clock,
            snaps,
            state,
            health,
            token.clone(),
        ));
        tokio::time::sleep(PERIOD * 2).await;
        assert!(!task.is_finished(), "the task lives until shutdown");
        assert_eq!(rt.image_ids(), ["sha256:a"]);
        assert!(rt.calls().is_empty(), "{:?}", rt.calls());
        token.cancel();
        task.await.expect("task");
    }
}

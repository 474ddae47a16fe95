//! The decision core: `plan(desired, observed, now) -> actions`, pure, no IO, no clock reads.
//!
//! For each pod it compares what the manifests want with what the runtime has and returns an
//! ordered list of actions, which the executor applies in order (so "stop the old pod, then
//! start the new one" is one list). Rules, following the kubelet's `computePodActions`:
//!
//! * A pod with no manifest behind it is stopped with its grace period and removed, unless its
//!   manifest exists but has been unreadable since podvisor started (then it is left alone).
//! * Sandboxes of another version (UID) are stopped and removed before the new one starts.
//! * At most one ready sandbox per pod; the newest wins, the others are stopped and removed.
//! * Init containers run one at a time, each to success, before app containers; sidecars
//!   (init containers with `restartPolicy: Always`) start in order and keep running.
//! * A running container whose hash changed is replaced; one that failed its liveness or
//!   startup probe is stopped; an exited one is restarted per the restart policy, after
//!   CrashLoopBackOff; at most one dead instance per name is kept.
//! * Pull before swap: when running containers are stopped for a new version (a replaced
//!   sandbox, or a container whose spec changed), the list starts with `PrepareSwap`, which
//!   pulls the new version's images and checks its host paths first; if that fails, nothing
//!   else in the list runs and the old version keeps running.
//! * A pod whose containers are all done for good has its sandbox stopped (not removed).
//! * A pod active longer than its `activeDeadlineSeconds` has its containers and sandbox
//!   stopped (not removed), and nothing of that version runs again.
//!
//! `pod` holds the rules for a pod with a manifest, `teardown` those for stopping things.

mod pod;
mod teardown;

pub use teardown::{hook_host, stop_recorded};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler};

use crate::clock::Timestamp;
use crate::manifest::Snapshot;
use crate::pod::{ContainerHash, PodKey, PodUid, ProbeKind, StaticPod};
use crate::runtime::{ContainerId, Observed, ObservedContainer, ObservedSandbox, SandboxId};

use crate::backoff::Backoff;

/// The kubelet never gives a container less than this to stop.
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// Identifies one container version for CrashLoopBackOff: pod UID, name, hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RestartKey {
    /// The pod UID.
    pub uid: PodUid,
    /// Container name.
    pub name: String,
    /// Container hash (`None` for a container created without one).
    pub hash: Option<ContainerHash>,
}

/// Which sandbox a container goes into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxRef {
    /// One that exists.
    Existing(SandboxId),
    /// The one the `RunSandbox` earlier in the same list creates.
    New,
}

/// Why a container is being stopped (for logs and events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its pod's manifest was removed.
    PodRemoved,
    /// Its pod is replaced by a new version.
    PodReplaced,
    /// Its container spec changed.
    SpecChanged,
    /// No longer declared by the manifest.
    ContainerRemoved,
    /// Its sandbox is broken or a duplicate.
    SandboxGone,
    /// The runtime no longer knows its state.
    Unknown,
    /// It failed its liveness probe.
    LivenessProbe,
    /// It failed its startup probe.
    StartupProbe,
    /// Its pod has been active longer than its `activeDeadlineSeconds`.
    DeadlineExceeded,
    /// The node is shutting down (`podvisor shutdown`).
    NodeShutdown,
}

/// A lifecycle hook to run, with what it needs to reach the container.
#[derive(Clone, Debug, PartialEq)]
pub struct Hook {
    /// The handler.
    pub handler: LifecycleHandler,
    /// The container's ports, for a named httpGet port.
    pub ports: Vec<ContainerPort>,
    /// The address httpGet hooks use when they name no host (pod IP, or host IP).
    pub host: Option<String>,
}

/// One container to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct StopTarget {
    /// The container.
    pub id: ContainerId,
    /// Its name.
    pub name: String,
    /// How long it gets, preStop included.
    pub grace: Duration,
    /// Its preStop hook, run first, within the grace period.
    pub pre_stop: Option<Hook>,
}

/// One step for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Before anything running is stopped for a new version: make that version's images
    /// present (per pull policy) and check the host paths it needs. Fails, and so ends the
    /// pod's list with the old version untouched, if the new version could not start.
    PrepareSwap {
        /// The new version.
        pod: Arc<StaticPod>,
        /// The containers whose images it needs now, in start order.
        containers: Vec<String>,
    },
    /// Stop these containers in parallel, each with its grace period.
    StopContainers {
        /// The containers.
        containers: Vec<StopTarget>,
        /// Why.
        reason: StopReason,
    },
    /// Remove a dead container.
    RemoveContainer(ContainerId),
    /// Stop a sandbox.
    StopSandbox(SandboxId),
    /// Remove a stopped sandbox.
    RemoveSandbox(SandboxId),
    /// Remove the host side of a pod version nothing uses any more (log and pod
    /// directories, cgroup).
    CleanupPod {
        /// The pod.
        key: PodKey,
        /// The version's UID.
        uid: PodUid,
    },
    /// Make the host side of a pod ready (directories, volumes) for the sandbox that follows.
    PreparePod {
        /// The pod.
        pod: Arc<StaticPod>,
    },
    /// Create and start a sandbox.
    RunSandbox {
        /// The pod.
        pod: Arc<StaticPod>,
        /// Sandbox metadata attempt.
        attempt: u32,
    },
    /// Create and start a container, then run its postStart hook.
    StartContainer {
        /// The pod.
        pod: Arc<StaticPod>,
        /// Where.
        sandbox: SandboxRef,
        /// Container name.
        name: String,
        /// Metadata attempt (one more than any before it in the sandbox's history).
        attempt: u32,
        /// Restart count: the predecessor's plus one when it ran the same spec version,
        /// else 0.
        restarts: u32,
        /// For a restart after an exit: the backoff key and when it exited.
        restart: Option<(RestartKey, Timestamp)>,
    },
    /// Start a container that was created but never started.
    StartCreated(ContainerId),
}

/// All actions for one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodWork {
    /// The pod.
    pub key: PodKey,
    /// Steps, applied in order; a failed step ends the list.
    pub actions: Vec<Action>,
}

/// A container held back by CrashLoopBackOff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingOff {
    /// The pod.
    pub key: PodKey,
    /// Container name.
    pub name: String,
    /// When it may restart.
    pub until: Timestamp,
}

/// What to do now, and when to look again at the latest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Work per pod, pods in key order.
    pub work: Vec<PodWork>,
    /// The earliest moment a waiting decision becomes due (backoff expiry).
    pub wake_at: Option<Timestamp>,
    /// Containers waiting for CrashLoopBackOff to expire.
    pub backing_off: Vec<BackingOff>,
}

/// Everything `plan` decides from.
pub struct PlanInput<'a> {
    /// What the manifests ask for.
    pub desired: &'a Snapshot,
    /// What the runtime has.
    pub observed: &'a Observed,
    /// Now.
    pub now: Timestamp,
    /// CrashLoopBackOff state.
    pub backoff: &'a Backoff<RestartKey>,
    /// Pods with work in flight: left alone until it finishes.
    pub busy: &'a BTreeSet<PodKey>,
    /// Pods whose last work failed, and when they may be retried.
    pub retry_at: &'a BTreeMap<PodKey, Timestamp>,
    /// Running containers that failed a liveness or startup probe, and which.
    pub unhealthy: &'a BTreeMap<ContainerId, ProbeKind>,
    /// The node's address, which host-network pods use as theirs.
    pub host_ip: Option<&'a str>,
}

/// A grace period in seconds, with the kubelet's floor.
pub fn grace(seconds: Option<i64>) -> Duration {
    Duration::from_secs(u64::try_from(seconds.unwrap_or(30)).unwrap_or(0)).max(MIN_GRACE)
}

#[derive(Default)]
struct PodView<'a> {
    sandboxes: Vec<&'a ObservedSandbox>,
    containers: Vec<&'a ObservedContainer>,
}

/// Plans every pod. Pure.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut views: BTreeMap<&PodKey, PodView<'_>> = BTreeMap::new();
    for s in &input.observed.sandboxes {
        views.entry(&s.key).or_default().sandboxes.push(s);
    }
    for c in &input.observed.containers {
        views.entry(&c.key).or_default().containers.push(c);
    }
    let keys: BTreeSet<&PodKey> = input
        .desired
        .pods
        .keys()
        .chain(views.keys().copied())
        .collect();

    let empty = PodView::default();
    let mut out = Plan::default();
    for key in keys {
        if input.busy.contains(key) {
            continue;
        }
        if let Some(at) = input.retry_at.get(key)
            && *at > input.now
        {
            out.wake_at = earliest(out.wake_at, *at);
            continue;
        }
        let view = views.get(key).unwrap_or(&empty);
        let mut actions = Vec::new();
        match input.desired.pods.get(key) {
            None => teardown::plan_orphan(key, view, input, &mut actions),
            Some(pod) => pod::plan_pod(pod, view, input, &mut actions, &mut out),
        }
        if !actions.is_empty() {
            out.work.push(PodWork {
                key: key.clone(),
                actions,
            });
        }
    }
    out
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[cfg(test)]
mod tests;

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
//! * A running container whose hash changed is replaced; an exited one is restarted per the
//!   restart policy, after CrashLoopBackOff; at most one dead instance per name is kept.
//! * A pod whose containers are all done for good has its sandbox stopped (not removed).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::manifest::Snapshot;
use crate::pod::{PodKey, RestartPolicy, StaticPod};
use crate::runtime::{
    ContainerId, ContainerState, Observed, ObservedContainer, ObservedSandbox, SandboxId,
    SandboxState,
};

use super::backoff::Backoff;

/// The kubelet never gives a container less than this to stop.
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// Identifies one container version for CrashLoopBackOff: pod UID, name, hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RestartKey {
    /// Sandbox version.
    pub uid: String,
    /// Container name.
    pub name: String,
    /// Container hash.
    pub hash: String,
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
}

/// One step for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Stop these containers in parallel, each with its grace period.
    StopContainers {
        /// Container, name and grace period.
        containers: Vec<(ContainerId, String, Duration)>,
        /// Why.
        reason: StopReason,
    },
    /// Remove a dead container.
    RemoveContainer(ContainerId),
    /// Stop a sandbox.
    StopSandbox(SandboxId),
    /// Remove a stopped sandbox.
    RemoveSandbox(SandboxId),
    /// Remove the host-side state of a pod version nothing uses any more.
    ForgetPod {
        /// The pod.
        key: PodKey,
        /// The version's UID.
        uid: String,
    },
    /// Create and start a sandbox.
    RunSandbox {
        /// The pod.
        pod: Arc<StaticPod>,
        /// Sandbox metadata attempt.
        attempt: u32,
    },
    /// Create and start a container.
    StartContainer {
        /// The pod.
        pod: Arc<StaticPod>,
        /// Where.
        sandbox: SandboxRef,
        /// Container name.
        name: String,
        /// Restart count.
        attempt: u32,
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
}

fn grace(seconds: Option<i64>) -> Duration {
    Duration::from_secs(u64::try_from(seconds.unwrap_or(30)).unwrap_or(0)).max(MIN_GRACE)
}

fn not_exited(c: &ObservedContainer) -> bool {
    c.state != ContainerState::Exited
}

struct PodView<'a> {
    sandboxes: Vec<&'a ObservedSandbox>,
    containers: Vec<&'a ObservedContainer>,
}

/// Plans every pod. Pure.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut views: BTreeMap<&PodKey, PodView<'_>> = BTreeMap::new();
    for s in &input.observed.sandboxes {
        views
            .entry(&s.key)
            .or_insert_with(|| PodView {
                sandboxes: Vec::new(),
                containers: Vec::new(),
            })
            .sandboxes
            .push(s);
    }
    for c in &input.observed.containers {
        views
            .entry(&c.key)
            .or_insert_with(|| PodView {
                sandboxes: Vec::new(),
                containers: Vec::new(),
            })
            .containers
            .push(c);
    }
    let empty = PodView {
        sandboxes: Vec::new(),
        containers: Vec::new(),
    };
    let keys: BTreeSet<&PodKey> = input
        .desired
        .pods
        .keys()
        .chain(views.keys().copied())
        .collect();

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
            None => plan_orphan(key, view, input.desired, &mut actions),
            Some(pod) => plan_pod(pod, view, input, &mut actions, &mut out),
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

/// Stops everything in `sandboxes` (and their containers) and removes it.
fn tear_down(
    sandboxes: &[&ObservedSandbox],
    containers: &[&ObservedContainer],
    reason: StopReason,
    actions: &mut Vec<Action>,
) {
    let ids: BTreeSet<&SandboxId> = sandboxes.iter().map(|s| &s.id).collect();
    let running: Vec<(ContainerId, String, Duration)> = containers
        .iter()
        .filter(|c| ids.contains(&c.sandbox) && not_exited(c))
        .map(|c| (c.id.clone(), c.name.clone(), grace(c.grace_seconds)))
        .collect();
    if !running.is_empty() {
        actions.push(Action::StopContainers {
            containers: running,
            reason,
        });
    }
    for s in sandboxes {
        if s.state == SandboxState::Ready {
            actions.push(Action::StopSandbox(s.id.clone()));
        }
    }
    for s in sandboxes {
        actions.push(Action::RemoveSandbox(s.id.clone()));
    }
}

fn plan_orphan(key: &PodKey, view: &PodView<'_>, desired: &Snapshot, actions: &mut Vec<Action>) {
    let untouchable = view.sandboxes.iter().any(|s| {
        s.manifest
            .as_ref()
            .is_some_and(|m| desired.untouchable.contains(m))
    });
    if untouchable {
        return;
    }
    tear_down(
        &view.sandboxes,
        &view.containers,
        StopReason::PodRemoved,
        actions,
    );
    remove_strays(view, actions);
    let uids: BTreeSet<&str> = view
        .sandboxes
        .iter()
        .map(|s| s.uid.as_str())
        .chain(view.containers.iter().map(|c| c.uid.as_str()))
        .collect();
    for uid in uids {
        actions.push(Action::ForgetPod {
            key: key.clone(),
            uid: uid.to_owned(),
        });
    }
}

/// Containers whose sandbox the runtime no longer lists.
fn remove_strays(view: &PodView<'_>, actions: &mut Vec<Action>) {
    let ids: BTreeSet<&SandboxId> = view.sandboxes.iter().map(|s| &s.id).collect();
    for c in &view.containers {
        if !ids.contains(&c.sandbox) {
            if not_exited(c) {
                actions.push(Action::StopContainers {
                    containers: vec![(c.id.clone(), c.name.clone(), grace(c.grace_seconds))],
                    reason: StopReason::SandboxGone,
                });
            }
            actions.push(Action::RemoveContainer(c.id.clone()));
        }
    }
}

/// The newest instance of each container name among `containers`.
fn latest_by_name<'a>(
    containers: &[&'a ObservedContainer],
) -> BTreeMap<&'a str, &'a ObservedContainer> {
    let mut latest: BTreeMap<&str, &ObservedContainer> = BTreeMap::new();
    for c in containers {
        let newer = latest
            .get(c.name.as_str())
            .is_none_or(|l| (c.attempt, c.created_at) > (l.attempt, l.created_at));
        if newer {
            latest.insert(&c.name, c);
        }
    }
    latest
}

/// Whether a container whose newest instance is `latest` must run (again), by the restart
/// policy and its hash.
fn wants_run(
    pod: &StaticPod,
    name: &str,
    latest: Option<&ObservedContainer>,
    policy: RestartPolicy,
) -> bool {
    let Some(c) = latest else { return true };
    if c.hash.as_deref() != pod.container_hash(name).map(|h| h.as_str()) {
        return true;
    }
    match c.state {
        ContainerState::Running | ContainerState::Created => true,
        ContainerState::Unknown => policy != RestartPolicy::Never,
        ContainerState::Exited => policy.restarts_after(c.exit_code.unwrap_or(-1)),
    }
}

/// Whether the pod has anything left to run, judged from the newest instances.
fn pod_has_work(pod: &StaticPod, latest: &BTreeMap<&str, &ObservedContainer>) -> bool {
    let policy = pod.restart_policy();
    let apps_started = pod
        .containers()
        .iter()
        .any(|c| latest.contains_key(c.name.as_str()));
    if !apps_started {
        // Still initialising, unless a regular init container failed for good.
        let init_failed = pod.init_containers().iter().any(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            latest.get(c.name.as_str()).is_some_and(|o| {
                !sidecar
                    && o.state == ContainerState::Exited
                    && o.exit_code != Some(0)
                    && policy == RestartPolicy::Never
            })
        });
        return !init_failed;
    }
    pod.containers()
        .iter()
        .any(|c| wants_run(pod, &c.name, latest.get(c.name.as_str()).copied(), policy))
}

fn plan_pod(
    pod: &Arc<StaticPod>,
    view: &PodView<'_>,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
    out: &mut Plan,
) {
    // 1. Other versions go first, entirely.
    let (current, stale): (Vec<&ObservedSandbox>, Vec<&ObservedSandbox>) =
        view.sandboxes.iter().partition(|s| s.uid == pod.uid.0);
    if !stale.is_empty() {
        tear_down(&stale, &view.containers, StopReason::PodReplaced, actions);
        let uids: BTreeSet<&str> = stale.iter().map(|s| s.uid.as_str()).collect();
        for uid in uids {
            actions.push(Action::ForgetPod {
                key: pod.key.clone(),
                uid: uid.to_owned(),
            });
        }
    }
    remove_strays(view, actions);

    // 2. One live sandbox of this version.
    let current_ids: BTreeSet<&SandboxId> = current.iter().map(|s| &s.id).collect();
    let containers: Vec<&ObservedContainer> = view
        .containers
        .iter()
        .copied()
        .filter(|c| current_ids.contains(&c.sandbox))
        .collect();
    let latest = latest_by_name(&containers);
    let live = current
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .max_by_key(|s| (s.attempt, s.created_at))
        .copied();
    let dead: Vec<&ObservedSandbox> = current
        .iter()
        .copied()
        .filter(|s| Some(&s.id) != live.map(|l| &l.id))
        .collect();
    let sandbox = match live {
        Some(l) => {
            if !dead.is_empty() {
                tear_down(&dead, &view.containers, StopReason::SandboxGone, actions);
            }
            SandboxRef::Existing(l.id.clone())
        }
        None => {
            if !pod_has_work(pod, &latest) {
                return; // completed for good: keep what is left for logs and status
            }
            tear_down(&dead, &view.containers, StopReason::SandboxGone, actions);
            let attempt = current.iter().map(|s| s.attempt + 1).max().unwrap_or(0);
            actions.push(Action::RunSandbox {
                pod: pod.clone(),
                attempt,
            });
            SandboxRef::New
        }
    };
    let in_live =
        |c: &ObservedContainer| matches!(&sandbox, SandboxRef::Existing(id) if &c.sandbox == id);
    let policy = pod.restart_policy();
    let mut starts = 0usize;

    // 3. Init containers, one at a time.
    let apps_started = pod
        .containers()
        .iter()
        .any(|c| latest.get(c.name.as_str()).is_some_and(|o| in_live(o)));
    let mut init_done = true;
    if !apps_started {
        for c in pod.init_containers() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let current = latest.get(c.name.as_str()).copied().filter(|o| in_live(o));
            let next_attempt = latest.get(c.name.as_str()).map_or(0, |o| o.attempt + 1);
            match current {
                None => {
                    actions.push(start(pod, &sandbox, &c.name, next_attempt, None));
                    starts += 1;
                    init_done = false;
                    break;
                }
                Some(o) if o.state == ContainerState::Running => {
                    if !sidecar {
                        init_done = false;
                        break;
                    }
                }
                Some(o) if o.state == ContainerState::Created => {
                    actions.push(Action::StartCreated(o.id.clone()));
                    starts += 1;
                    init_done = false;
                    break;
                }
                Some(o)
                    if o.state == ContainerState::Exited && o.exit_code == Some(0) && !sidecar => {}
                Some(o) => {
                    // Failed (or a sidecar that stopped): retry per policy, after backoff.
                    init_done = false;
                    let restartable = sidecar || policy != RestartPolicy::Never;
                    if restartable {
                        starts += restart_after_backoff(pod, &sandbox, o, input, actions, out);
                    }
                    break;
                }
            }
        }
    }

    // 4. App containers.
    if init_done {
        for c in pod.containers() {
            let name = c.name.as_str();
            let newest = latest.get(name).copied();
            let next_attempt = newest.map_or(0, |o| o.attempt + 1);
            let desired_hash = pod.container_hash(name).map(|h| h.0.as_str());
            match newest {
                None => {
                    actions.push(start(pod, &sandbox, name, 0, None));
                    starts += 1;
                }
                Some(o) if !in_live(o) => {
                    // From a sandbox that is gone: run again if the policy says so.
                    if wants_run(pod, name, Some(o), policy) {
                        actions.push(start(pod, &sandbox, name, next_attempt, None));
                        starts += 1;
                    }
                }
                Some(o) if o.hash.as_deref() != desired_hash => {
                    if not_exited(o) {
                        actions.push(Action::StopContainers {
                            containers: vec![(
                                o.id.clone(),
                                o.name.clone(),
                                grace(Some(pod.grace_period_seconds())),
                            )],
                            reason: StopReason::SpecChanged,
                        });
                    }
                    actions.push(start(pod, &sandbox, name, next_attempt, None));
                    starts += 1;
                }
                Some(o) => match o.state {
                    ContainerState::Running => {}
                    ContainerState::Created => {
                        actions.push(Action::StartCreated(o.id.clone()));
                        starts += 1;
                    }
                    ContainerState::Unknown => {
                        actions.push(Action::StopContainers {
                            containers: vec![(
                                o.id.clone(),
                                o.name.clone(),
                                grace(Some(pod.grace_period_seconds())),
                            )],
                            reason: StopReason::Unknown,
                        });
                        if policy != RestartPolicy::Never {
                            actions.push(start(pod, &sandbox, name, next_attempt, None));
                            starts += 1;
                        }
                    }
                    ContainerState::Exited => {
                        if policy.restarts_after(o.exit_code.unwrap_or(-1)) {
                            starts += restart_after_backoff(pod, &sandbox, o, input, actions, out);
                        }
                    }
                },
            }
        }
    }

    // 5. Garbage: containers no longer declared, and all but the newest dead instance per name.
    if let SandboxRef::Existing(live_id) = &sandbox {
        let in_sandbox: Vec<&ObservedContainer> = containers
            .iter()
            .copied()
            .filter(|c| &c.sandbox == live_id)
            .collect();
        for c in &in_sandbox {
            if pod.container(&c.name).is_none() {
                if not_exited(c) {
                    actions.push(Action::StopContainers {
                        containers: vec![(
                            c.id.clone(),
                            c.name.clone(),
                            grace(Some(pod.grace_period_seconds())),
                        )],
                        reason: StopReason::ContainerRemoved,
                    });
                }
                actions.push(Action::RemoveContainer(c.id.clone()));
            }
        }
        let mut by_name: BTreeMap<&str, Vec<&ObservedContainer>> = BTreeMap::new();
        for c in in_sandbox
            .iter()
            .filter(|c| pod.container(&c.name).is_some() && c.state == ContainerState::Exited)
        {
            by_name.entry(&c.name).or_default().push(c);
        }
        for (_, mut dead) in by_name {
            dead.sort_by_key(|c| (c.attempt, c.created_at));
            dead.pop(); // keep the newest dead instance, for `logs --previous` and lastState
            for c in dead {
                actions.push(Action::RemoveContainer(c.id.clone()));
            }
        }

        // 6. Done for good: stop the sandbox, keep it for status.
        let any_running = in_sandbox
            .iter()
            .any(|c| not_exited(c) && pod.container(&c.name).is_some());
        let waiting = out.backing_off.iter().any(|b| b.key == pod.key);
        if starts == 0 && !any_running && !waiting && !pod_has_work(pod, &latest) {
            actions.push(Action::StopSandbox(live_id.clone()));
        }
    }
}

fn start(
    pod: &Arc<StaticPod>,
    sandbox: &SandboxRef,
    name: &str,
    attempt: u32,
    restart: Option<(RestartKey, Timestamp)>,
) -> Action {
    Action::StartContainer {
        pod: pod.clone(),
        sandbox: sandbox.clone(),
        name: name.to_owned(),
        attempt,
        restart,
    }
}

/// Restarts an exited container now, or records that it waits for CrashLoopBackOff.
/// Returns how many starts it planned (0 or 1).
fn restart_after_backoff(
    pod: &Arc<StaticPod>,
    sandbox: &SandboxRef,
    o: &ObservedContainer,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
    out: &mut Plan,
) -> usize {
    let key = RestartKey {
        uid: pod.uid.0.clone(),
        name: o.name.clone(),
        hash: o.hash.clone().unwrap_or_default(),
    };
    let finished = o.finished_at.unwrap_or(input.now);
    if let Some(until) = input.backoff.retry_at(&key, finished, input.now) {
        out.wake_at = earliest(out.wake_at, until);
        out.backing_off.push(BackingOff {
            key: pod.key.clone(),
            name: o.name.clone(),
            until,
        });
        return 0;
    }
    actions.push(start(
        pod,
        sandbox,
        &o.name,
        o.attempt + 1,
        Some((key, finished)),
    ));
    1
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

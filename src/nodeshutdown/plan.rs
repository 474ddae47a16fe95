//! Which pods stop in which step, with what grace: pure, from the runtime's record of
//! podvisor's pods (their sandboxes' labels and annotations, their containers' recorded grace
//! periods and preStop hooks), with no manifest and no clock.
//!
//! As the kubelet's node shutdown manager: pods are grouped by priority range
//! ([`ShutdownPolicy::group_of`]), lowest priority group first; each pod gets
//! `min(its terminationGracePeriodSeconds, the group's period)`. podvisor adds an order
//! within a group, since kubeadm gives etcd the same priority as the API server that writes
//! to it: a pod's `podvisor.dev/shutdown-order` annotation (an integer, higher later), else 1
//! for a pod labelled `component: etcd`, else 0. Each (group, order) is one step, whose pods
//! stop together and which may take the group's whole period.

use std::collections::BTreeMap;
use std::time::Duration;

use super::policy::{PriorityPeriod, ShutdownPolicy};
use crate::pod::{ContainerKind, PodKey};
use crate::reconcile::{MIN_GRACE, StopTarget, hook_host, stop_recorded};
use crate::runtime::{
    ContainerState, Observed, ObservedContainer, ObservedSandbox, SandboxId, SandboxState,
};

/// The order of a pod labelled `component: etcd` that names none: after the rest of its
/// group, so that the API server and the controllers stop before the store they write to.
pub const ETCD_ORDER: i32 = 1;

/// Where a pod's priority came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrioritySource {
    /// Recorded on its sandbox when it was made.
    Recorded,
    /// Its sandbox was made by a podvisor that did not record it: taken as 0.
    Unrecorded,
}

/// One pod to stop.
#[derive(Clone, Debug, PartialEq)]
pub struct PodStop {
    /// The pod.
    pub key: PodKey,
    /// Its priority.
    pub priority: i32,
    /// Where that came from.
    pub priority_source: PrioritySource,
    /// Its order within its group.
    pub order: i32,
    /// Its grace period: its own, at most its group's period.
    pub grace: Duration,
    /// Its app containers still running, stopped first, in parallel.
    pub app: Vec<StopTarget>,
    /// Its init containers still running (sidecars), stopped after the app containers.
    pub init: Vec<StopTarget>,
    /// Its ready sandboxes, stopped last and kept (not removed).
    pub sandboxes: Vec<SandboxId>,
}

/// Pods that stop together.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Their priority group.
    pub group: PriorityPeriod,
    /// Their order within it.
    pub order: i32,
    /// The pods, by key.
    pub pods: Vec<PodStop>,
}

/// The steps, in the order they run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShutdownPlan {
    /// The steps; each starts when the one before is done or its period is over.
    pub steps: Vec<Step>,
}

impl ShutdownPlan {
    /// The longest the steps may take together: the sum of their periods.
    pub fn bound(&self) -> Duration {
        self.steps.iter().map(|s| s.group.period).sum()
    }

    /// How many pods it stops.
    pub fn pods(&self) -> usize {
        self.steps.iter().map(|s| s.pods.len()).sum()
    }
}

/// The order of a pod within its group, from its sandbox.
pub fn order(sandbox: &ObservedSandbox) -> i32 {
    sandbox
        .shutdown_order
        .unwrap_or(if sandbox.component.as_deref() == Some("etcd") {
            ETCD_ORDER
        } else {
            0
        })
}

/// Plans stopping every pod of `observed` that still runs (a ready sandbox or a container
/// not exited); `host_ip` is the address host-network pods' hooks use. Nothing when the
/// policy is off.
pub fn plan(policy: &ShutdownPolicy, observed: &Observed, host_ip: Option<&str>) -> ShutdownPlan {
    let mut pods: BTreeMap<&PodKey, (Vec<&ObservedSandbox>, Vec<&ObservedContainer>)> =
        BTreeMap::new();
    for s in &observed.sandboxes {
        pods.entry(&s.key).or_default().0.push(s);
    }
    for c in &observed.containers {
        pods.entry(&c.key).or_default().1.push(c);
    }
    let mut steps: BTreeMap<(usize, i32), Vec<PodStop>> = BTreeMap::new();
    for (key, (sandboxes, containers)) in pods {
        let Some((group, stop)) = plan_pod(policy, key, &sandboxes, &containers, host_ip) else {
            continue;
        };
        steps.entry((group, stop.order)).or_default().push(stop);
    }
    let steps = steps
        .into_iter()
        .map(|((group, order), pods)| Step {
            group: policy.periods()[group],
            order,
            pods,
        })
        .collect();
    ShutdownPlan { steps }
}

/// One pod's group index and stop, if it still runs.
fn plan_pod(
    policy: &ShutdownPolicy,
    key: &PodKey,
    sandboxes: &[&ObservedSandbox],
    containers: &[&ObservedContainer],
    host_ip: Option<&str>,
) -> Option<(usize, PodStop)> {
    let ready: Vec<&ObservedSandbox> = sandboxes
        .iter()
        .copied()
        .filter(|s| s.state == SandboxState::Ready)
        .collect();
    let live: Vec<&ObservedContainer> = containers
        .iter()
        .copied()
        .filter(|c| c.state != ContainerState::Exited)
        .collect();
    if ready.is_empty() && live.is_empty() {
        return None;
    }
    // the sandbox the pod runs in now: the newest ready one, else the newest
    let current = newest(&ready).or_else(|| newest(sandboxes));
    let (priority, priority_source) = match current.and_then(|s| s.priority) {
        Some(p) => (p, PrioritySource::Recorded),
        None => (0, PrioritySource::Unrecorded),
    };
    let group = policy.group_of(priority)?;
    let period = policy.periods()[group].period;
    // the pod's terminationGracePeriodSeconds, as its containers recorded it
    let own = live
        .iter()
        .filter_map(|c| c.grace_seconds)
        .max()
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
    let grace = own.map_or(period, |own| own.min(period));
    let target = |c: &ObservedContainer| {
        let mut t = stop_recorded(c, hook_host(c, sandboxes, host_ip));
        // The kubelet runs preStop only when the override leaves time for it, and never
        // gives a container less than the 2 s floor to stop.
        if grace.is_zero() {
            t.pre_stop = None;
        }
        t.grace = grace.max(MIN_GRACE);
        t
    };
    let of_kind = |kind| {
        live.iter()
            .copied()
            .filter(|c| c.kind == kind)
            .map(target)
            .collect()
    };
    let stop = PodStop {
        key: key.clone(),
        priority,
        priority_source,
        order: current.map_or(0, order),
        grace,
        app: of_kind(ContainerKind::App),
        init: of_kind(ContainerKind::Init),
        sandboxes: ready.iter().map(|s| s.id.clone()).collect(),
    };
    Some((group, stop))
}

/// The newest of `sandboxes`.
fn newest<'a>(sandboxes: &[&'a ObservedSandbox]) -> Option<&'a ObservedSandbox> {
    sandboxes
        .iter()
        .copied()
        .max_by_key(|s| (s.created_at, s.attempt))
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;

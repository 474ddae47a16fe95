//! Stopping and removing: whole sandboxes (a removed manifest, an old version, a broken
//! sandbox), stray containers, and what each container needs to be stopped well.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ContainerPort;

use super::{Action, Hook, PlanInput, PodView, StopReason, StopTarget, grace};
use crate::pod::{ContainerKind, PodKey, PodUid, StaticPod};
use crate::runtime::{ContainerState, ObservedContainer, ObservedSandbox, SandboxId, SandboxState};

pub(super) fn not_exited(c: &ObservedContainer) -> bool {
    c.state != ContainerState::Exited
}

/// The address a container's hooks use: its sandbox's IP, or the node's for host-network
/// sandboxes (which have none of their own).
pub fn hook_host(
    c: &ObservedContainer,
    sandboxes: &[&ObservedSandbox],
    host_ip: Option<&str>,
) -> Option<String> {
    sandboxes
        .iter()
        .find(|s| s.id == c.sandbox)
        .and_then(|s| s.ip.clone())
        .or_else(|| host_ip.map(str::to_owned))
}

/// How to stop a container when only the runtime's record of it is known: the grace period
/// and preStop hook the kubelet annotations preserved (`restoreSpecsFromContainerLabels`).
pub fn stop_recorded(c: &ObservedContainer, host: Option<String>) -> StopTarget {
    let pre_stop = c.pre_stop.clone().map(|handler| Hook {
        handler,
        ports: Vec::new(),
        host,
    });
    StopTarget {
        id: c.id.clone(),
        name: c.name.clone(),
        grace: grace(c.grace_seconds),
        pre_stop,
    }
}

/// How to stop a container of a pod whose spec is known.
pub(super) fn stop_declared(
    pod: &StaticPod,
    c: &ObservedContainer,
    host: Option<String>,
    grace_seconds: Option<i64>,
) -> StopTarget {
    let spec = pod.container(&c.name).map(|(_, spec)| spec);
    let pre_stop = spec.and_then(|s| {
        let handler = s.lifecycle.as_ref()?.pre_stop.clone()?;
        let ports: Vec<ContainerPort> = s.ports.clone().unwrap_or_default();
        Some(Hook {
            handler,
            ports,
            host: host.clone(),
        })
    });
    StopTarget {
        id: c.id.clone(),
        name: c.name.clone(),
        grace: grace(grace_seconds.or(Some(pod.grace_period_seconds()))),
        pre_stop,
    }
}

/// Stops every container still running in `sandboxes` (app containers first, then init
/// containers and sidecars, as the kubelet orders termination), each as `target` says, then
/// the sandboxes that are still ready.
fn stop_all(
    sandboxes: &[&ObservedSandbox],
    containers: &[&ObservedContainer],
    reason: StopReason,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
    target: impl Fn(&ObservedContainer, Option<String>) -> StopTarget,
) {
    let ids: BTreeSet<&SandboxId> = sandboxes.iter().map(|s| &s.id).collect();
    for kind in [ContainerKind::App, ContainerKind::Init] {
        let targets: Vec<StopTarget> = containers
            .iter()
            .filter(|c| ids.contains(&c.sandbox) && not_exited(c) && c.kind == kind)
            .map(|c| target(c, hook_host(c, sandboxes, input.host_ip)))
            .collect();
        if !targets.is_empty() {
            actions.push(Action::StopContainers {
                containers: targets,
                reason,
            });
        }
    }
    for s in sandboxes {
        if s.state == SandboxState::Ready {
            actions.push(Action::StopSandbox(s.id.clone()));
        }
    }
}

/// Stops everything in `sandboxes` with what each container recorded, and removes them.
pub(super) fn tear_down(
    sandboxes: &[&ObservedSandbox],
    containers: &[&ObservedContainer],
    reason: StopReason,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
) {
    stop_all(sandboxes, containers, reason, input, actions, stop_recorded);
    for s in sandboxes {
        actions.push(Action::RemoveSandbox(s.id.clone()));
    }
}

/// A pod past its active deadline: its containers still running stopped with its grace
/// period and preStop hooks, its sandboxes stopped. Nothing is removed: its status and logs
/// stay, as a failed pod's do.
pub(super) fn stop_past_deadline(
    pod: &StaticPod,
    sandboxes: &[&ObservedSandbox],
    containers: &[&ObservedContainer],
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
) {
    stop_all(
        sandboxes,
        containers,
        StopReason::DeadlineExceeded,
        input,
        actions,
        |c, host| stop_declared(pod, c, host, None),
    );
}

/// A pod with no manifest behind it: stopped with its recorded grace period, removed, and
/// its host-side state forgotten — unless its manifest is unreadable since start-up.
pub(super) fn plan_orphan(
    key: &PodKey,
    view: &PodView<'_>,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
) {
    let untouchable = view.sandboxes.iter().any(|s| {
        s.manifest
            .as_ref()
            .is_some_and(|m| input.desired.untouchable.contains(m))
    });
    if untouchable {
        return;
    }
    tear_down(
        &view.sandboxes,
        &view.containers,
        StopReason::PodRemoved,
        input,
        actions,
    );
    remove_strays(view, input, actions);
    let uids: BTreeSet<&str> = view
        .sandboxes
        .iter()
        .map(|s| s.uid.as_str())
        .chain(view.containers.iter().map(|c| c.uid.as_str()))
        .collect();
    for uid in uids {
        actions.push(Action::CleanupPod {
            key: key.clone(),
            uid: PodUid(uid.to_owned()),
        });
    }
}

/// Containers whose sandbox the runtime no longer lists.
pub(super) fn remove_strays(view: &PodView<'_>, input: &PlanInput<'_>, actions: &mut Vec<Action>) {
    let ids: BTreeSet<&SandboxId> = view.sandboxes.iter().map(|s| &s.id).collect();
    for c in &view.containers {
        if !ids.contains(&c.sandbox) {
            if not_exited(c) {
                actions.push(Action::StopContainers {
                    containers: vec![stop_recorded(c, input.host_ip.map(str::to_owned))],
                    reason: StopReason::SandboxGone,
                });
            }
            actions.push(Action::RemoveContainer(c.id.clone()));
        }
    }
}

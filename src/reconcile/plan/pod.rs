//! The rules for a pod whose manifest is known: replace other versions, keep one live sandbox,
//! run init containers in order, then keep app containers running per restart policy,
//! probes and CrashLoopBackOff.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::teardown::{not_exited, remove_strays, stop_declared, stop_past_deadline, tear_down};
use super::{
    Action, BackingOff, Plan, PlanInput, PodView, RestartKey, SandboxRef, StopReason, earliest,
};
use crate::pod::ProbeKind;
use crate::pod::{PodUid, RestartPolicy, StaticPod};
use crate::runtime::{
    Asked, ContainerState, Observed, ObservedContainer, ObservedSandbox, SandboxId, SandboxState,
    active_deadline,
};

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
    if c.hash.as_ref() != pod.container_hash(name) {
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

/// A running container that failed its liveness or startup probe: stop it, with the probe's
/// own grace period if it sets one. The next pass restarts it per policy and backoff.
fn stop_unhealthy(
    pod: &StaticPod,
    o: &ObservedContainer,
    kind: ProbeKind,
    host: Option<String>,
) -> Action {
    let probe_grace = pod.container(&o.name).and_then(|(_, c)| {
        let probe = match kind {
            ProbeKind::Startup => c.startup_probe.as_ref(),
            _ => c.liveness_probe.as_ref(),
        };
        probe.and_then(|p| p.termination_grace_period_seconds)
    });
    Action::StopContainers {
        containers: vec![stop_declared(pod, o, host, probe_grace)],
        reason: if kind == ProbeKind::Startup {
            StopReason::StartupProbe
        } else {
            StopReason::LivenessProbe
        },
    }
}

pub(super) fn plan_pod(
    pod: &Arc<StaticPod>,
    view: &PodView<'_>,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
    out: &mut Plan,
) {
    let mut cleanups = Vec::new();
    plan_version(pod, view, input, actions, out, &mut cleanups);
    if let Some(prepare) = prepare_swap(pod, actions) {
        actions.insert(0, prepare);
    }
    actions.extend(cleanups);
}

/// Pull before swap: when `actions` stop running containers for a new version, the step that
/// makes that version's images present first. A replaced pod needs every container's image;
/// a container whose spec changed, its own. `None` when nothing running is stopped for a new
/// version (a new pod, or one whose old version is not running, starts as it would anyway).
fn prepare_swap(pod: &Arc<StaticPod>, actions: &[Action]) -> Option<Action> {
    let mut replaced = false;
    let mut changed: Vec<&str> = Vec::new();
    for a in actions {
        if let Action::StopContainers { containers, reason } = a {
            match reason {
                StopReason::PodReplaced => replaced = true,
                StopReason::SpecChanged => {
                    changed.extend(containers.iter().map(|c| c.name.as_str()))
                }
                _ => {}
            }
        }
    }
    let containers: Vec<String> = if replaced {
        pod.init_containers()
            .iter()
            .chain(pod.containers())
            .map(|c| c.name.clone())
            .collect()
    } else {
        pod.init_containers()
            .iter()
            .chain(pod.containers())
            .filter(|c| changed.contains(&c.name.as_str()))
            .map(|c| c.name.clone())
            .collect()
    };
    (!containers.is_empty()).then(|| Action::PrepareSwap {
        pod: pod.clone(),
        containers,
    })
}

fn plan_version(
    pod: &Arc<StaticPod>,
    view: &PodView<'_>,
    input: &PlanInput<'_>,
    actions: &mut Vec<Action>,
    out: &mut Plan,
    cleanups: &mut Vec<Action>,
) {
    // 1. Other versions go first, entirely.
    let (current, stale): (Vec<&ObservedSandbox>, Vec<&ObservedSandbox>) = view
        .sandboxes
        .iter()
        .partition(|s| s.version == pod.sandbox);
    if !stale.is_empty() {
        tear_down(
            &stale,
            &view.containers,
            StopReason::PodReplaced,
            input,
            actions,
        );
        // A manifest `metadata.uid` survives sandbox changes: its directories, logs and
        // cgroup are the new sandbox's too, and stay.
        let uids: BTreeSet<&str> = stale
            .iter()
            .map(|s| s.uid.as_str())
            .filter(|uid| *uid != pod.uid.as_str())
            .collect();
        // Cleaned up last: the new version does not wait for the old one's files.
        for uid in uids {
            cleanups.push(Action::CleanupPod {
                key: pod.key.clone(),
                uid: PodUid(uid.to_owned()),
            });
        }
    }
    remove_strays(view, input, actions);

    // 2. Past `activeDeadlineSeconds`, the version is stopped and never runs again (the
    // kubelet's activeDeadlineHandler); until then, wake when it falls due.
    if let Some(deadline) = active_deadline(pod, &current) {
        if input.now >= deadline {
            stop_past_deadline(pod, &current, &view.containers, input, actions);
            return;
        }
        out.wake_at = earliest(out.wake_at, deadline);
    }

    // 3. One live sandbox of this version.
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
                tear_down(
                    &dead,
                    &view.containers,
                    StopReason::SandboxGone,
                    input,
                    actions,
                );
            }
            SandboxRef::Existing(l.id.clone())
        }
        None => {
            if !pod_has_work(pod, &latest) {
                return; // completed for good: keep what is left for logs and status
            }
            tear_down(
                &dead,
                &view.containers,
                StopReason::SandboxGone,
                input,
                actions,
            );
            let attempt = input.observed.next_attempt(
                &Asked::Sandbox(pod.uid.clone()),
                current.iter().map(|s| s.attempt).max(),
            );
            actions.push(Action::PreparePod { pod: pod.clone() });
            actions.push(Action::RunSandbox {
                pod: pod.clone(),
                attempt,
            });
            SandboxRef::New
        }
    };
    let host = if pod.host_network() {
        input.host_ip.map(str::to_owned)
    } else {
        live.and_then(|l| l.ip.clone())
    };
    let in_live =
        |c: &ObservedContainer| matches!(&sandbox, SandboxRef::Existing(id) if &c.sandbox == id);
    let policy = pod.restart_policy();
    let mut starts = 0usize;

    // 4. Init containers, one at a time; sidecars keep running.
    let apps_started = pod
        .containers()
        .iter()
        .any(|c| latest.get(c.name.as_str()).is_some_and(|o| in_live(o)));
    let mut init_done = true;
    if !apps_started {
        for c in pod.init_containers() {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let newest = latest.get(c.name.as_str()).copied();
            let current = newest.filter(|o| in_live(o));
            match current {
                None => {
                    actions.push(start(pod, &sandbox, &c.name, newest, None, input.observed));
                    starts += 1;
                    init_done = false;
                    break;
                }
                Some(o) if o.state == ContainerState::Running => {
                    if let Some(kind) = input.unhealthy.get(&o.id) {
                        actions.push(stop_unhealthy(pod, o, *kind, host.clone()));
                    }
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
                    if sidecar || policy != RestartPolicy::Never {
                        starts += restart_after_backoff(pod, &sandbox, o, input, actions, out);
                    }
                    break;
                }
            }
        }
    } else {
        // Sidecars keep running next to the app containers: restart them, stop them if unhealthy.
        for c in pod
            .init_containers()
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        {
            match latest.get(c.name.as_str()).copied().filter(|o| in_live(o)) {
                Some(o) if o.state == ContainerState::Running => {
                    if let Some(kind) = input.unhealthy.get(&o.id) {
                        actions.push(stop_unhealthy(pod, o, *kind, host.clone()));
                    }
                }
                Some(o) if o.state == ContainerState::Exited => {
                    starts += restart_after_backoff(pod, &sandbox, o, input, actions, out);
                }
                _ => {}
            }
        }
    }

    // 5. App containers.
    if init_done {
        for c in pod.containers() {
            let name = c.name.as_str();
            let newest = latest.get(name).copied();
            let desired_hash = pod.container_hash(name);
            match newest {
                None => {
                    actions.push(start(pod, &sandbox, name, None, None, input.observed));
                    starts += 1;
                }
                Some(o) if !in_live(o) => {
                    // From a sandbox that is gone: run again if the policy says so.
                    if wants_run(pod, name, Some(o), policy) {
                        actions.push(start(pod, &sandbox, name, Some(o), None, input.observed));
                        starts += 1;
                    }
                }
                Some(o) if o.hash.as_ref() != desired_hash => {
                    if not_exited(o) {
                        actions.push(Action::StopContainers {
                            containers: vec![stop_declared(pod, o, host.clone(), None)],
                            reason: StopReason::SpecChanged,
                        });
                    }
                    actions.push(start(pod, &sandbox, name, Some(o), None, input.observed));
                    starts += 1;
                }
                Some(o) => match o.state {
                    ContainerState::Running => {
                        if let Some(kind) = input.unhealthy.get(&o.id) {
                            actions.push(stop_unhealthy(pod, o, *kind, host.clone()));
                        }
                    }
                    ContainerState::Created => {
                        actions.push(Action::StartCreated(o.id.clone()));
                        starts += 1;
                    }
                    ContainerState::Unknown => {
                        actions.push(Action::StopContainers {
                            containers: vec![stop_declared(pod, o, host.clone(), None)],
                            reason: StopReason::Unknown,
                        });
                        if policy != RestartPolicy::Never {
                            actions.push(start(pod, &sandbox, name, Some(o), None, input.observed));
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

    // 6. Garbage: containers no longer declared, and all but the newest dead instance per name.
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
                        containers: vec![stop_declared(pod, c, host.clone(), None)],
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

        // 7. Done for good: stop the sandbox, keep it for status.
        let any_running = in_sandbox
            .iter()
            .any(|c| not_exited(c) && pod.container(&c.name).is_some());
        let waiting = out.backing_off.iter().any(|b| b.key == pod.key);
        if starts == 0 && !any_running && !waiting && !pod_has_work(pod, &latest) {
            actions.push(Action::StopSandbox(live_id.clone()));
        }
    }
}

/// Starts container `name` after `previous` (its newest instance, if any): the next
/// attempt (past any name a request got no answer for), and a restart count that goes on
/// from `previous` only when it ran the same spec version. An edit starts again from 0, as
/// the kubelet's new pod for an edited file does; a skipped name is not a restart.
fn start(
    pod: &Arc<StaticPod>,
    sandbox: &SandboxRef,
    name: &str,
    previous: Option<&ObservedContainer>,
    restart: Option<(RestartKey, crate::clock::Timestamp)>,
    observed: &Observed,
) -> Action {
    let same_spec = |o: &&ObservedContainer| o.hash.as_ref() == pod.container_hash(name);
    Action::StartContainer {
        pod: pod.clone(),
        sandbox: sandbox.clone(),
        name: name.to_owned(),
        attempt: observed.next_attempt(
            &Asked::Container(pod.uid.clone(), name.to_owned()),
            previous.map(|o| o.attempt),
        ),
        restarts: previous.filter(same_spec).map_or(0, |o| o.restarts + 1),
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
        uid: pod.uid.clone(),
        name: o.name.clone(),
        hash: o.hash.clone(),
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
        Some(o),
        Some((key, finished)),
        input.observed,
    ));
    1
}

//! A static pod's status, computed as the kubelet's `generateAPIPodStatus` and `getPhase` do,
//! from the pod, what the runtime reports, probe results and podvisor's own waiting reasons.
//! Pure; the status API and mirror pods publish it.

pub mod conditions;
mod publish;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    ContainerState as K8sState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, PodIP, PodStatus, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use publish::{compute, publish};

use crate::clock::Timestamp;
use crate::health::NodeHealth;
use crate::pod::{PodKey, RestartPolicy, StaticPod, TerminationReason};
use crate::probe::ContainerProbes;
use crate::reconcile::{BackingOff, StartError};
use crate::runtime::{
    ContainerId, ContainerState, Observed, ObservedContainer, RuntimeVersion, SandboxState,
    active_deadline, start_time,
};

/// The pod's `status.reason` once it has been active longer than `activeDeadlineSeconds`.
pub const DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
/// The kubelet's `status.message` for it.
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// One static pod as the node reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct PodReport {
    /// The pod as it runs (the version the manifests ask for).
    pub pod: Arc<StaticPod>,
    /// Its status.
    pub status: PodStatus,
    /// The last error podvisor met working on it, until work succeeds again.
    pub last_error: Option<String>,
    /// Why the version that runs is not the one its file says: the file is invalid (its last
    /// good version runs), or the file's version was rolled back.
    pub note: Option<String>,
}

/// Every static pod's status at one moment, for the status API and mirror pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeStatus {
    /// Pods by key.
    pub pods: BTreeMap<PodKey, PodReport>,
    /// The first full reconcile is done.
    pub synced: bool,
    /// Why the runtime cannot be reached, while it cannot.
    pub runtime_error: Option<String>,
    /// What the runtime says it is, once it has said.
    pub runtime: Option<RuntimeVersion>,
    /// The runtime's conditions and the node's pressure.
    pub health: NodeHealth,
}

/// Everything a pod's status is computed from.
pub struct StatusInput<'a> {
    /// The pod.
    pub pod: &'a StaticPod,
    /// What the runtime reports (all pods; this pod's objects are picked out).
    pub observed: &'a Observed,
    /// Probe results by container instance.
    pub probes: &'a BTreeMap<ContainerId, ContainerProbes>,
    /// Containers waiting for CrashLoopBackOff.
    pub backing_off: &'a [BackingOff],
    /// Start failures by (pod, container name).
    pub start_errors: &'a BTreeMap<(PodKey, String), StartError>,
    /// The runtime's name for container IDs (`containerd` → `containerd://<id>`).
    pub runtime_name: &'a str,
    /// The node's address.
    pub host_ip: Option<&'a str>,
    /// Now, for `activeDeadlineSeconds`.
    pub now: Timestamp,
}

/// Converts a CRI timestamp to an API time.
pub fn api_time(t: Timestamp) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(t.0)).unwrap_or_default())
}

fn terminated(c: &ObservedContainer, runtime: &str) -> ContainerStateTerminated {
    let exit_code = c.exit_code.unwrap_or(-1);
    ContainerStateTerminated {
        exit_code,
        reason: Some(match &c.reason {
            Some(reason) => reason.to_string(),
            None => TerminationReason::from_runtime("", exit_code).to_string(),
        }),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: c.started_at.map(api_time),
        finished_at: c.finished_at.map(api_time),
        container_id: Some(format!("{runtime}://{}", c.id.0)),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<String>) -> K8sState {
    K8sState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..Default::default()
    }
}

struct Built {
    status: ContainerStatus,
}

/// Go's `time.Duration.String()` for whole seconds: `10s`, `1m20s`, `5m0s`.
fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

/// The cpu and memory requests and limits a container runs with, as the kubelet reports
/// them in `containerStatuses[].resources`.
fn running_resources(spec: Option<&k8s_openapi::api::core::v1::Container>) -> ResourceRequirements {
    let pick =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            let kept: BTreeMap<_, _> = m
                .into_iter()
                .flatten()
                .filter(|(k, _)| matches!(k.as_str(), "cpu" | "memory"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (!kept.is_empty()).then_some(kept)
        };
    let r = spec.and_then(|c| c.resources.as_ref());
    ResourceRequirements {
        limits: pick(r.and_then(|r| r.limits.as_ref())),
        requests: pick(r.and_then(|r| r.requests.as_ref())),
        ..ResourceRequirements::default()
    }
}

fn container_status(
    input: &StatusInput<'_>,
    name: &str,
    image: &str,
    instances: &[&ObservedContainer],
    default_waiting: &str,
) -> Built {
    let pod = input.pod;
    let mut sorted: Vec<&ObservedContainer> = instances.to_vec();
    sorted.sort_by_key(|c| (c.attempt, c.created_at));
    let latest = sorted.last().copied();
    let previous = sorted.iter().rev().nth(1).copied();
    let backing_off = input
        .backing_off
        .iter()
        .find(|b| b.key == pod.key && b.name == name);
    let start_error = input.start_errors.get(&(pod.key.clone(), name.to_owned()));
    let probes = latest
        .and_then(|c| input.probes.get(&c.id))
        .copied()
        .unwrap_or_default();
    let running = latest.is_some_and(|c| c.state == ContainerState::Running);
    let started = running && probes.started.unwrap_or(true);
    let spec = pod.container(name).map(|(_, c)| c);
    let regular_init = pod.container(name).is_some_and(|(k, c)| {
        k == crate::pod::ContainerKind::Init && c.restart_policy.as_deref() != Some("Always")
    });

    let (state, last_state) = match latest {
        None => {
            let state = match start_error {
                Some(e) => waiting(e.reason.as_str(), Some(e.message.clone())),
                None => waiting(default_waiting, None),
            };
            (state, None)
        }
        Some(c) => match c.state {
            ContainerState::Running => (
                K8sState {
                    running: Some(ContainerStateRunning {
                        started_at: c.started_at.map(api_time),
                    }),
                    ..Default::default()
                },
                previous
                    .filter(|p| p.state == ContainerState::Exited)
                    .map(|p| K8sState {
                        terminated: Some(terminated(p, input.runtime_name)),
                        ..Default::default()
                    }),
            ),
            ContainerState::Exited => {
                let last = K8sState {
                    terminated: Some(terminated(c, input.runtime_name)),
                    ..Default::default()
                };
                match (backing_off, start_error) {
                    (Some(b), _) => (
                        waiting(
                            "CrashLoopBackOff",
                            Some(format!(
                                "back-off {} restarting failed container={name} pod={}_{}({})",
                                go_duration(b.until.since(c.finished_at.unwrap_or(b.until))),
                                pod.key.name,
                                pod.key.namespace,
                                pod.uid
                            )),
                        ),
                        Some(last),
                    ),
                    (None, Some(e)) => (
                        waiting(e.reason.as_str(), Some(e.message.clone())),
                        Some(last),
                    ),
                    (None, None) => (
                        last,
                        previous.map(|p| K8sState {
                            terminated: Some(terminated(p, input.runtime_name)),
                            ..Default::default()
                        }),
                    ),
                }
            }
            // Created, not yet started: the kubelet reports an empty waiting state and keeps
            // the previous instance as the last state, so a restarting container's pod stays
            // Running instead of flipping to Pending between create and start.
            ContainerState::Created | ContainerState::Unknown => {
                match previous.filter(|p| p.state == ContainerState::Exited) {
                    Some(p) => (
                        K8sState {
                            waiting: Some(ContainerStateWaiting::default()),
                            ..Default::default()
                        },
                        Some(K8sState {
                            terminated: Some(terminated(p, input.runtime_name)),
                            ..Default::default()
                        }),
                    ),
                    None => (waiting("ContainerCreating", None), None),
                }
            }
        },
    };
    // A regular init container is ready once it completed (the kubelet's prober manager).
    let ready = if regular_init {
        state.terminated.as_ref().is_some_and(|t| t.exit_code == 0)
    } else {
        started && probes.ready.unwrap_or(true)
    };
    Built {
        status: ContainerStatus {
            name: name.to_owned(),
            state: Some(state),
            last_state,
            ready,
            resources: latest.map(|_| running_resources(spec)),
            started: Some(started),
            restart_count: latest.map_or(0, |c| i32::try_from(c.restarts).unwrap_or(i32::MAX)),
            image: image.to_owned(),
            image_id: latest.map(|c| c.image_ref.clone()).unwrap_or_default(),
            container_id: latest.map(|c| format!("{}://{}", input.runtime_name, c.id.0)),
            ..Default::default()
        },
    }
}

fn state_of(s: &ContainerStatus) -> (bool, bool, bool, Option<i32>, Option<i32>) {
    let st = s.state.clone().unwrap_or_default();
    let last_exit = s
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .map(|t| t.exit_code);
    (
        st.running.is_some(),
        st.waiting.is_some(),
        st.terminated.is_some(),
        st.terminated.as_ref().map(|t| t.exit_code),
        last_exit,
    )
}

/// The kubelet's `getPhase`.
fn phase(pod: &StaticPod, init: &[ContainerStatus], apps: &[ContainerStatus]) -> &'static str {
    let policy = pod.restart_policy();
    let (mut pending_init, mut failed_init) = (0, 0);
    let (mut unknown, mut running, mut waiting_n, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for (spec, status) in pod.init_containers().iter().zip(init) {
        let (run, wait, term, exit, last_exit) = state_of(status);
        let sidecar = spec.restart_policy.as_deref() == Some("Always");
        if sidecar {
            if run {
                if !status.started.unwrap_or(false) {
                    pending_init += 1;
                }
                running += 1;
            } else if wait && last_exit.is_none() {
                pending_init += 1;
                waiting_n += 1;
            } else if !term && !wait {
                pending_init += 1;
                unknown += 1;
            }
            continue;
        }
        if run {
            pending_init += 1;
        } else if term {
            if exit != Some(0) {
                failed_init += 1;
            }
        } else if wait {
            match last_exit {
                Some(code) if code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    let mut any_app_started = false;
    for status in apps {
        let (run, wait, term, exit, last_exit) = state_of(status);
        if run {
            running += 1;
        } else if term {
            stopped += 1;
            if exit == Some(0) {
                succeeded += 1;
            }
        } else if wait {
            if last_exit.is_some() {
                stopped += 1;
            } else {
                waiting_n += 1;
            }
        } else {
            unknown += 1;
        }
        any_app_started |= run || term || last_exit.is_some();
    }
    if failed_init > 0 && policy == RestartPolicy::Never {
        return "Failed";
    }
    if (pending_init > 0 && !any_app_started) || waiting_n > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        return match policy {
            RestartPolicy::Always => "Running",
            _ if stopped == succeeded => "Succeeded",
            RestartPolicy::Never => "Failed",
            RestartPolicy::OnFailure => "Running",
        };
    }
    "Pending"
}

/// Computes the pod's status.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let (sandboxes, containers) = input.observed.of_version(pod);
    let live = sandboxes
        .iter()
        .filter(|s| s.state == SandboxState::Ready)
        .max_by_key(|s| (s.attempt, s.created_at));
    let start_time = Some(start_time(pod, &sandboxes));

    // Only instances of this spec version's container: after a container-only edit the
    // sandbox stays and the old container runs on until it is stopped, but it is the old
    // version's, as under the kubelet, where the edited pod is a new pod.
    let of = |name: &str| -> Vec<&ObservedContainer> {
        let want = pod.container_hash(name);
        containers
            .iter()
            .copied()
            .filter(|c| c.name == name && (c.hash.is_none() || c.hash.as_ref() == want))
            .collect()
    };
    let init: Vec<ContainerStatus> = pod
        .init_containers()
        .iter()
        .map(|c| {
            container_status(
                input,
                &c.name,
                c.image.as_deref().unwrap_or(""),
                &of(&c.name),
                "PodInitializing",
            )
            .status
        })
        .collect();
    let init_done = pod.init_containers().iter().zip(&init).all(|(spec, s)| {
        let st = s.state.clone().unwrap_or_default();
        if spec.restart_policy.as_deref() == Some("Always") {
            s.started.unwrap_or(false)
        } else {
            st.terminated.is_some_and(|t| t.exit_code == 0)
        }
    });
    let any_app = pod.containers().iter().any(|c| !of(&c.name).is_empty());
    let app_default = if init_done || any_app {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let apps: Vec<ContainerStatus> = pod
        .containers()
        .iter()
        .map(|c| {
            container_status(
                input,
                &c.name,
                c.image.as_deref().unwrap_or(""),
                &of(&c.name),
                app_default,
            )
            .status
        })
        .collect();

    let sandbox_ready = live.is_some_and(|s| pod.host_network() || s.ip.is_some());
    let since = start_time.map(api_time);
    let host_ip = input.host_ip.map(str::to_owned);
    let pod_ip = if pod.host_network() {
        host_ip.clone()
    } else {
        live.and_then(|s| s.ip.clone())
    };
    // The kubelet's activeDeadlineHandler: Failed from the deadline on, whatever the
    // containers are doing while they are stopped.
    let past_deadline = active_deadline(pod, &sandboxes).is_some_and(|d| input.now >= d);
    let phase = if past_deadline {
        "Failed"
    } else {
        phase(pod, &init, &apps)
    };
    let containers_ready = conditions::containers_ready(pod, &init, &apps, phase);
    // Readiness gates are set by others in the API server; locally none is, so a pod with
    // gates is not ready here (the mirror task recomputes Ready with the server's).
    let ready = conditions::ready(pod, &containers_ready, &[]);

    PodStatus {
        phase: Some(phase.to_owned()),
        reason: past_deadline.then(|| DEADLINE_EXCEEDED.to_owned()),
        message: past_deadline.then(|| DEADLINE_MESSAGE.to_owned()),
        conditions: Some(vec![
            conditions::ready_to_start(sandbox_ready),
            conditions::initialized(pod, &init, &apps, phase),
            ready,
            containers_ready,
            conditions::scheduled(),
        ]),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: since,
        qos_class: Some(pod.qos().as_str().to_owned()),
        init_container_statuses: (!init.is_empty()).then_some(init),
        container_statuses: Some(apps),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

//! The pod conditions the kubelet owns, as `pkg/kubelet/status/generate.go` computes them:
//! `PodReadyToStartContainers`, `Initialized`, `ContainersReady`, `Ready` (readiness gates
//! included) and `PodScheduled`, with the kubelet's reasons and messages; and
//! `lastTransitionTime`, which moves only when a condition's status changes. Pure.
//!
//! Conditions of other types (readiness gates, `DisruptionTarget`) belong to whoever sets
//! them in the API server; they are read there, never written here.

use k8s_openapi::api::core::v1::{Container, ContainerStatus, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pod::StaticPod;

/// The condition types the kubelet (and so podvisor) writes.
pub const OWNED: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

fn condition(type_: &str, ok: bool, reason: Option<&str>, message: Option<String>) -> PodCondition {
    PodCondition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.map(str::to_owned),
        message,
        ..PodCondition::default()
    }
}

/// Go's `fmt.Sprintf("%s", []string{...})`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn find<'a>(statuses: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|s| s.name == name)
}

/// `ContainersReady`: every app container and sidecar ready.
pub fn containers_ready(
    pod: &StaticPod,
    init: &[ContainerStatus],
    apps: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let mut unknown = Vec::new();
    let mut unready = Vec::new();
    let sidecars = pod.init_containers().iter().filter(|c| is_sidecar(c));
    for (c, statuses) in sidecars
        .map(|c| (c, init))
        .chain(pod.containers().iter().map(|c| (c, apps)))
    {
        match find(statuses, &c.name) {
            Some(s) if !s.ready => unready.push(c.name.as_str()),
            Some(_) => {}
            None => unknown.push(c.name.as_str()),
        }
    }
    match phase {
        "Succeeded" if unknown.is_empty() => {
            return condition("ContainersReady", false, Some("PodCompleted"), None);
        }
        "Failed" => return condition("ContainersReady", false, Some("PodFailed"), None),
        _ => {}
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !unready.is_empty() {
        messages.push(format!(
            "containers with unready status: {}",
            go_list(&unready)
        ));
    }
    if messages.is_empty() {
        condition("ContainersReady", true, None, None)
    } else {
        condition(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(messages.join(", ")),
        )
    }
}

/// `Ready`: `ContainersReady`, and every readiness gate's condition in `conditions` True.
/// Locally no one sets gates, so a pod with gates is not ready until the API server's
/// conditions say so.
pub fn ready(
    pod: &StaticPod,
    containers_ready: &PodCondition,
    conditions: &[PodCondition],
) -> PodCondition {
    if containers_ready.status != "True" {
        return PodCondition {
            type_: "Ready".to_owned(),
            ..containers_ready.clone()
        };
    }
    let mut messages = Vec::new();
    for gate in pod.spec.readiness_gates.iter().flatten() {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => messages.push(format!(
                "corresponding condition of pod readiness gate {:?} does not exist.",
                gate.condition_type
            )),
            Some(c) if c.status != "True" => messages.push(format!(
                "the status of pod readiness gate {:?} is not \"True\", but {}",
                gate.condition_type, c.status
            )),
            Some(_) => {}
        }
    }
    if messages.is_empty() {
        condition("Ready", true, None, None)
    } else {
        condition(
            "Ready",
            false,
            Some("ReadinessGatesNotReady"),
            Some(messages.join(", ")),
        )
    }
}

/// Whether an app container has ever run (the pod was initialized before).
fn any_app_started(apps: &[ContainerStatus]) -> bool {
    apps.iter().any(|s| {
        let st = s.state.clone().unwrap_or_default();
        st.running.is_some()
            || st.terminated.is_some()
            || s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
    })
}

/// `Initialized`: every init container done (sidecars: started).
pub fn initialized(
    pod: &StaticPod,
    init: &[ContainerStatus],
    apps: &[ContainerStatus],
    phase: &str,
) -> PodCondition {
    let mut unknown = Vec::new();
    let mut incomplete = Vec::new();
    for c in pod.init_containers() {
        match find(init, &c.name) {
            None => unknown.push(c.name.as_str()),
            Some(s) => {
                let done = if is_sidecar(c) {
                    s.started.unwrap_or(false)
                } else {
                    s.ready
                };
                if !done {
                    incomplete.push(c.name.as_str());
                }
            }
        }
    }
    if phase == "Succeeded" && unknown.is_empty() {
        return condition("Initialized", true, Some("PodCompleted"), None);
    }
    if any_app_started(apps) {
        return condition("Initialized", true, None, None);
    }
    let mut messages = Vec::new();
    if !unknown.is_empty() {
        messages.push(format!(
            "containers with unknown status: {}",
            go_list(&unknown)
        ));
    }
    if !incomplete.is_empty() {
        messages.push(format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        ));
    }
    if messages.is_empty() {
        condition("Initialized", true, None, None)
    } else {
        condition(
            "Initialized",
            false,
            Some("ContainersNotInitialized"),
            Some(messages.join(", ")),
        )
    }
}

/// `PodReadyToStartContainers`: the sandbox and its network are up.
pub fn ready_to_start(sandbox_ready: bool) -> PodCondition {
    condition("PodReadyToStartContainers", sandbox_ready, None, None)
}

/// `PodScheduled`: always, for a pod bound to its node from the start.
pub fn scheduled() -> PodCondition {
    condition("PodScheduled", true, None, None)
}

/// Sets each condition's `lastTransitionTime`, as the kubelet's status manager does: kept
/// from `old` while the condition's status is the same, `now` when it changed or is new.
pub fn stamp_transitions(new: &mut PodStatus, old: Option<&PodStatus>, now: &Time) {
    let old = old.and_then(|o| o.conditions.as_deref()).unwrap_or(&[]);
    for c in new.conditions.iter_mut().flatten() {
        c.last_transition_time = match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status && o.last_transition_time.is_some() => {
                o.last_transition_time.clone()
            }
            _ => Some(now.clone()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> StaticPod {
        crate::manifest::testing::static_pod(yaml)
    }

    fn status(name: &str, ready: bool) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            ready,
            ..ContainerStatus::default()
        }
    }

    const TWO: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  readinessGates: [{conditionType: example.com/lb}]\n  containers:\n  - {name: main, image: i}\n  - {name: side, image: i}\n";

    #[test]
    fn unready_containers_are_named_as_the_kubelet_names_them_issue_17() {
        let p = pod(TWO);
        let c = containers_ready(
            &p,
            &[],
            &[status("main", false), status("side", true)],
            "Running",
        );
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
            (
                "False",
                Some("ContainersNotReady"),
                Some("containers with unready status: [main]")
            )
        );
        let r = ready(&p, &c, &[]);
        assert_eq!((r.type_.as_str(), r.message), ("Ready", c.message));
    }

    #[test]
    fn finished_pods_say_completed_or_failed_issue_17() {
        let p = pod(TWO);
        let done = [status("main", false), status("side", false)];
        for (phase, reason) in [("Succeeded", "PodCompleted"), ("Failed", "PodFailed")] {
            let c = containers_ready(&p, &[], &done, phase);
            assert_eq!(c.reason.as_deref(), Some(reason));
            assert_eq!(ready(&p, &c, &[]).reason.as_deref(), Some(reason));
        }
    }

    #[test]
    fn readiness_gates_hold_ready_until_their_conditions_are_true_issue_17() {
        let p = pod(TWO);
        let c = containers_ready(
            &p,
            &[],
            &[status("main", true), status("side", true)],
            "Running",
        );
        let missing = ready(&p, &c, &[]);
        assert_eq!(
            (
                missing.status.as_str(),
                missing.reason.as_deref(),
                missing.message.as_deref()
            ),
            (
                "False",
                Some("ReadinessGatesNotReady"),
                Some(
                    "corresponding condition of pod readiness gate \"example.com/lb\" does not exist."
                )
            )
        );
        let gate = |s: &str| PodCondition {
            type_: "example.com/lb".into(),
            status: s.into(),
            ..PodCondition::default()
        };
        let no = ready(&p, &c, &[gate("False")]);
        assert_eq!(
            no.message.as_deref(),
            Some("the status of pod readiness gate \"example.com/lb\" is not \"True\", but False")
        );
        assert_eq!(ready(&p, &c, &[gate("True")]).status, "True");
    }

    #[test]
    fn transition_times_move_only_when_the_status_changes() {
        let t = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).expect("time"));
        let cond = |s: &str| PodCondition {
            type_: "Ready".into(),
            status: s.into(),
            ..PodCondition::default()
        };
        let mut first = PodStatus {
            conditions: Some(vec![cond("False")]),
            ..PodStatus::default()
        };
        stamp_transitions(&mut first, None, &t(1));
        let mut same = PodStatus {
            conditions: Some(vec![cond("False")]),
            ..PodStatus::default()
        };
        stamp_transitions(&mut same, Some(&first), &t(2));
        assert_eq!(
            same.conditions.as_ref().expect("c")[0].last_transition_time,
            Some(t(1))
        );
        let mut flipped = PodStatus {
            conditions: Some(vec![cond("True")]),
            ..PodStatus::default()
        };
        stamp_transitions(&mut flipped, Some(&same), &t(3));
        assert_eq!(
            flipped.conditions.as_ref().expect("c")[0].last_transition_time,
            Some(t(3))
        );
    }
}

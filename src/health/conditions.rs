//! Pure: the Node's four conditions as the kubelet sets them, in its order
//! (`MemoryPressure`, `DiskPressure`, `PIDPressure`, then `Ready` last), with its reasons
//! and messages. `Ready` is false while the runtime cannot be reached, has not answered
//! `Status` yet, or reports `RuntimeReady` or `NetworkReady` false or missing; the message
//! lists every reason, as the kubelet's aggregated error does.

use super::NodeHealth;
use super::thresholds::Pressure;

/// One Node condition, before timestamps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionState {
    /// `Ready`, `MemoryPressure`, ...
    pub kind: &'static str,
    /// `True` or `False`.
    pub status: bool,
    /// The kubelet's reason.
    pub reason: &'static str,
    /// The kubelet's message.
    pub message: String,
}

/// The condition type of a pressure.
pub fn pressure_name(p: Pressure) -> &'static str {
    match p {
        Pressure::Memory => "MemoryPressure",
        Pressure::Disk => "DiskPressure",
        Pressure::Pid => "PIDPressure",
    }
}

fn pressure_condition(p: Pressure, on: bool) -> ConditionState {
    let (reason, message) = match (p, on) {
        (Pressure::Memory, true) => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        (Pressure::Memory, false) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        (Pressure::Disk, true) => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        (Pressure::Disk, false) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        (Pressure::Pid, true) => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
        (Pressure::Pid, false) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    };
    ConditionState {
        kind: pressure_name(p),
        status: on,
        reason,
        message: message.to_owned(),
    }
}

/// Why the node is not ready, in the kubelet's words; empty when it is. `unreachable` is the
/// reconciler's error while the runtime cannot be reached at all.
pub fn runtime_errors(unreachable: Option<&str>, health: &NodeHealth) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some(e) = unreachable {
        errors.push(format!("container runtime is down: {e}"));
        return errors;
    }
    let status = match &health.runtime {
        None => {
            errors.push("container runtime status check may not have completed yet".to_owned());
            return errors;
        }
        Some(Err(e)) => {
            errors.push(format!("container runtime is down: {e}"));
            return errors;
        }
        Some(Ok(s)) => s,
    };
    let describe = |kind: &str| {
        status
            .condition(kind)
            .map_or_else(|| "<nil>".to_owned(), |c| c.to_string())
    };
    if !status.condition("RuntimeReady").is_some_and(|c| c.status) {
        errors.push(format!(
            "container runtime not ready: {}",
            describe("RuntimeReady")
        ));
    }
    if !status.condition("NetworkReady").is_some_and(|c| c.status) {
        errors.push(format!(
            "container runtime network not ready: {}",
            describe("NetworkReady")
        ));
    }
    errors
}

/// The kubelet's aggregated error text: one error as itself, several as `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// The Node's conditions, Ready last.
pub fn conditions(unreachable: Option<&str>, health: &NodeHealth) -> Vec<ConditionState> {
    let mut out: Vec<ConditionState> = Pressure::ALL
        .into_iter()
        .map(|p| pressure_condition(p, health.pressure.contains(&p)))
        .collect();
    let errors = runtime_errors(unreachable, health);
    out.push(if errors.is_empty() {
        ConditionState {
            kind: "Ready",
            status: true,
            reason: "KubeletReady",
            message: "kubelet is posting ready status".to_owned(),
        }
    } else {
        ConditionState {
            kind: "Ready",
            status: false,
            reason: "KubeletNotReady",
            message: aggregate(&errors),
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::runtime::{RuntimeCondition, RuntimeStatus};

    fn healthy() -> NodeHealth {
        NodeHealth {
            runtime: Some(Ok(RuntimeStatus::ready())),
            ..NodeHealth::default()
        }
    }

    fn ready(c: &[ConditionState]) -> &ConditionState {
        c.last().filter(|c| c.kind == "Ready").expect("Ready last")
    }

    #[test]
    fn a_healthy_node_reports_the_kubelets_four_conditions_ready_last() {
        let c = conditions(None, &healthy());
        let summary: Vec<_> = c.iter().map(|c| (c.kind, c.status, c.reason)).collect();
        assert_eq!(
            summary,
            [
                ("MemoryPressure", false, "KubeletHasSufficientMemory"),
                ("DiskPressure", false, "KubeletHasNoDiskPressure"),
                ("PIDPressure", false, "KubeletHasSufficientPID"),
                ("Ready", true, "KubeletReady"),
            ]
        );
        assert_eq!(ready(&c).message, "kubelet is posting ready status");
    }

    #[test]
    fn a_network_that_is_not_ready_makes_the_node_not_ready_in_the_kubelets_words() {
        let mut h = healthy();
        let Some(Ok(s)) = &mut h.runtime else {
            unreachable!()
        };
        s.conditions[1] = RuntimeCondition {
            kind: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "Network plugin returns error: cni plugin not initialized".into(),
        };
        let c = conditions(None, &h);
        assert_eq!(
            (ready(&c).status, ready(&c).reason),
            (false, "KubeletNotReady")
        );
        assert_eq!(
            ready(&c).message,
            "container runtime network not ready: NetworkReady=false \
             reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"
        );
    }

    #[test]
    fn every_reason_is_listed_when_the_runtime_reports_neither_condition() {
        let h = NodeHealth {
            runtime: Some(Ok(RuntimeStatus::default())),
            ..NodeHealth::default()
        };
        assert_eq!(
            ready(&conditions(None, &h)).message,
            "[container runtime not ready: <nil>, container runtime network not ready: <nil>]"
        );
    }

    #[test]
    fn an_unreachable_or_silent_runtime_makes_the_node_not_ready() {
        let c = conditions(Some("connection refused"), &healthy());
        assert_eq!(
            ready(&c).message,
            "container runtime is down: connection refused"
        );
        let c = conditions(None, &NodeHealth::default());
        assert_eq!(
            ready(&c).message,
            "container runtime status check may not have completed yet"
        );
        let failed = NodeHealth {
            runtime: Some(Err("Status timed out".into())),
            ..NodeHealth::default()
        };
        assert!(!ready(&conditions(None, &failed)).status);
    }

    #[test]
    fn pressure_turns_its_condition_true_with_the_kubelets_reason() {
        let h = NodeHealth {
            pressure: BTreeSet::from([Pressure::Disk, Pressure::Pid]),
            ..healthy()
        };
        let c = conditions(None, &h);
        let on: Vec<_> = c
            .iter()
            .filter(|c| c.status && c.kind != "Ready")
            .map(|c| (c.kind, c.reason, c.message.as_str()))
            .collect();
        assert_eq!(
            on,
            [
                (
                    "DiskPressure",
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure"
                ),
                (
                    "PIDPressure",
                    "KubeletHasInsufficientPID",
                    "kubelet has insufficient PID available"
                ),
            ]
        );
        assert!(ready(&c).status, "pressure alone leaves the node Ready");
    }
}

//! Pods the API server binds to this node that are not its mirror pods. podvisor runs only
//! the static pods of its manifest directory, so such a pod would sit `Pending` for ever (a
//! black hole: the Deployment behind it never notices). Instead the node carries a taint the
//! scheduler names when it passes the node over, and a pod bound here anyway (a DaemonSet
//! that tolerates everything, a pod with `spec.nodeName`) is failed at once, as the kubelet
//! fails a pod it cannot admit: phase `Failed`, with a reason and message. Pure.

use k8s_openapi::api::core::v1::{Pod, Taint};
use serde_json::{Value, json};

use crate::labels;

/// The taint of every Node podvisor registers: the scheduler's message names it.
pub const STATIC_PODS_ONLY: &str = "podvisor.dev/static-pods-only";
/// The reason a bound pod is failed with.
pub const REASON: &str = "StaticPodsOnly";
/// The message it is failed with.
pub const MESSAGE: &str = "this node runs only the static pods of its manifest directory (podvisor); it does not run pods from the API server";

/// The taint that keeps the scheduler away.
pub fn taint() -> Taint {
    Taint {
        key: STATIC_PODS_ONLY.to_owned(),
        value: None,
        effect: "NoSchedule".to_owned(),
        time_added: None,
    }
}

/// A pod to fail: bound here, not a mirror pod, not finished, not being deleted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Foreign {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (failed once per UID).
    pub uid: String,
}

/// Whether `pod` (bound to this node) is one to fail.
pub fn foreign(pod: &Pod) -> Option<Foreign> {
    let meta = &pod.metadata;
    let mirror = meta
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(labels::CONFIG_MIRROR));
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Failed" || p == "Succeeded");
    if mirror || finished || meta.deletion_timestamp.is_some() {
        return None;
    }
    Some(Foreign {
        namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
        name: meta.name.clone()?,
        uid: meta.uid.clone()?,
    })
}

/// The status patch that fails it (a merge patch, on the pod's UID so a pod recreated under
/// the same name is not failed by mistake).
pub fn rejection(f: &Foreign) -> Value {
    json!({
        "metadata": {"uid": f.uid},
        "status": {"phase": "Failed", "reason": REASON, "message": MESSAGE},
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(annotations: &[(&str, &str)], phase: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("coredns-1".into()),
                namespace: Some("kube-system".into()),
                uid: Some("u1".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                phase: phase.map(str::to_owned),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn only_unfinished_pods_that_are_not_mirror_pods_are_failed_issue_13() {
        let f = foreign(&pod(&[], Some("Pending"))).expect("foreign");
        assert_eq!(
            (f.namespace.as_str(), f.uid.as_str()),
            ("kube-system", "u1")
        );
        assert_eq!(foreign(&pod(&[(labels::CONFIG_MIRROR, "h")], None)), None);
        assert_eq!(foreign(&pod(&[], Some("Failed"))), None);
        assert_eq!(foreign(&pod(&[], Some("Succeeded"))), None);
        let patch = rejection(&f);
        assert_eq!(patch["status"]["phase"], "Failed");
        assert_eq!(patch["status"]["reason"], REASON);
        assert_eq!(patch["metadata"]["uid"], "u1");
    }
}

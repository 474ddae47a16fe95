//! A pod's priority, as node shutdown orders pods by it. Pure.
//!
//! Under a kubelet the API server's `Priority` admission plugin turns `priorityClassName`
//! into `spec.priority`; a static pod has no API server behind it, so podvisor resolves the
//! two built-in classes itself (`pkg/apis/scheduling`) and nothing else.

use k8s_openapi::api::core::v1::PodSpec;

/// `system-node-critical`'s value.
pub const SYSTEM_NODE_CRITICAL: i32 = 2_000_001_000;
/// `system-cluster-critical`'s value.
pub const SYSTEM_CLUSTER_CRITICAL: i32 = 2_000_000_000;
/// Where the priorities of critical system pods begin (the kubelet's
/// `SystemCriticalPriority`): the bottom of `shutdownGracePeriodCriticalPods`' group.
pub const SYSTEM_CRITICAL: i32 = 2_000_000_000;

/// The pod's priority: `spec.priority` when set, else its `priorityClassName` if that is
/// one of the built-in classes, else 0. Any other class is defined only in an API server,
/// which a static pod cannot ask, so it counts as 0.
pub fn priority(spec: &PodSpec) -> i32 {
    if let Some(p) = spec.priority {
        return p;
    }
    match spec.priority_class_name.as_deref() {
        Some("system-node-critical") => SYSTEM_NODE_CRITICAL,
        Some("system-cluster-critical") => SYSTEM_CLUSTER_CRITICAL,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(priority: Option<i32>, class: Option<&str>) -> PodSpec {
        PodSpec {
            priority,
            priority_class_name: class.map(str::to_owned),
            ..PodSpec::default()
        }
    }

    #[test]
    fn spec_priority_wins_over_the_class_name() {
        assert_eq!(priority(&spec(Some(7), Some("system-node-critical"))), 7);
        assert_eq!(priority(&spec(Some(-3), None)), -3);
    }

    #[test]
    fn the_built_in_classes_resolve_without_an_api_server() {
        assert_eq!(
            priority(&spec(None, Some("system-node-critical"))),
            2_000_001_000
        );
        assert_eq!(
            priority(&spec(None, Some("system-cluster-critical"))),
            2_000_000_000
        );
    }

    #[test]
    fn other_classes_and_no_class_count_as_zero() {
        assert_eq!(priority(&spec(None, Some("high-priority"))), 0);
        assert_eq!(priority(&spec(None, None)), 0);
    }
}

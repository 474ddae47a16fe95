//! Quality-of-service class of a pod (`pkg/apis/core/v1/helper/qos`), which decides its
//! cgroup placement and OOM score. Pure.

use k8s_openapi::api::core::v1::PodSpec;

use crate::quantity;

/// The pod's QoS class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal CPU and memory requests and limits.
    Guaranteed,
    /// Something is requested, but not Guaranteed.
    Burstable,
    /// Nothing requested or limited.
    BestEffort,
}

impl QosClass {
    /// The name the API uses in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    /// The cgroup directory under the pods' root: Guaranteed pods sit directly in it.
    pub fn cgroup_dir(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }
}

/// Computes the QoS class as the API server does: over init and app containers, CPU and memory.
pub fn qos_class(spec: &PodSpec) -> QosClass {
    let mut any_set = false;
    let mut guaranteed = true;
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
    {
        let r = c.resources.as_ref();
        let requests = r.and_then(|r| r.requests.as_ref());
        let limits = r.and_then(|r| r.limits.as_ref());
        for res in ["cpu", "memory"] {
            let req = requests
                .and_then(|m| m.get(res))
                .and_then(|q| quantity::milli_value(&q.0).ok())
                .filter(|v| *v > 0);
            let lim = limits
                .and_then(|m| m.get(res))
                .and_then(|q| quantity::milli_value(&q.0).ok())
                .filter(|v| *v > 0);
            if req.is_some() || lim.is_some() {
                any_set = true;
            }
            if lim.is_none() || req.is_some_and(|r| Some(r) != lim) {
                guaranteed = false;
            }
        }
    }
    if !any_set {
        QosClass::BestEffort
    } else if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn spec(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> PodSpec {
        let map = |kv: &[(&str, &str)]| {
            (!kv.is_empty()).then(|| {
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                    .collect()
            })
        };
        PodSpec {
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: map(requests),
                    limits: map(limits),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn no_resources_is_best_effort() {
        assert_eq!(qos_class(&spec(&[], &[])), QosClass::BestEffort);
    }

    #[test]
    fn equal_cpu_and_memory_requests_and_limits_is_guaranteed() {
        let s = spec(
            &[("cpu", "500m"), ("memory", "1Gi")],
            &[("cpu", "0.5"), ("memory", "1Gi")],
        );
        assert_eq!(qos_class(&s), QosClass::Guaranteed);
    }

    #[test]
    fn requests_only_is_burstable() {
        assert_eq!(
            qos_class(&spec(&[("cpu", "100m")], &[])),
            QosClass::Burstable
        );
        assert_eq!(
            qos_class(&spec(&[("memory", "1Gi")], &[("memory", "1Gi")])),
            QosClass::Burstable
        );
    }
}

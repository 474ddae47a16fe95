//! A container's environment, in declaration order with `$(VAR)` expansion, and the
//! downward-API values (`fieldRef`, `resourceFieldRef`) it and downwardAPI volumes use.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, EnvVar};

use super::{StaticPod, expand};
use crate::quantity;

/// What a node offers, for limits a container leaves unset (`resourceFieldRef` reads them as
/// the node's capacity).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Online CPUs.
    pub cpus: i64,
    /// Memory in bytes.
    pub memory_bytes: i64,
}

/// Host addresses a container's environment may refer to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addresses {
    /// The pod IP (the host IP for hostNetwork pods).
    pub pod_ip: Option<String>,
    /// The node IP.
    pub host_ip: Option<String>,
}

fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// The value of a downward-API field path for this pod.
pub fn field_value(pod: &StaticPod, path: &str, addrs: &Addresses) -> String {
    let meta = &pod.metadata;
    if let Some(k) = subscript(path, "metadata.labels") {
        return meta
            .labels
            .as_ref()
            .and_then(|m| m.get(k))
            .cloned()
            .unwrap_or_default();
    }
    if let Some(k) = subscript(path, "metadata.annotations") {
        return meta
            .annotations
            .as_ref()
            .and_then(|m| m.get(k))
            .cloned()
            .unwrap_or_default();
    }
    match path {
        "metadata.name" => pod.key.name.clone(),
        "metadata.namespace" => pod.key.namespace.clone(),
        "metadata.uid" => pod.uid.0.clone(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => pod.spec.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => String::new(),
        "status.hostIP" | "status.hostIPs" => addrs.host_ip.clone().unwrap_or_default(),
        "status.podIP" | "status.podIPs" => addrs.pod_ip.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// The value of a `resourceFieldRef` for a container, in units of `divisor`, rounded up.
/// Unset limits read as the node's capacity, as the kubelet does.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    node: Capacity,
) -> String {
    let r = c.resources.as_ref();
    let (map, name) = match resource.split_once('.') {
        Some(("limits", n)) => (r.and_then(|r| r.limits.as_ref()), n),
        Some(("requests", n)) => (r.and_then(|r| r.requests.as_ref()), n),
        _ => return String::new(),
    };
    let set = map
        .and_then(|m| m.get(name))
        .and_then(|q| quantity::milli_value(&q.0).ok());
    let milli = match (set, resource.starts_with("limits"), name) {
        (Some(v), _, _) => v,
        (None, true, "cpu") => node.cpus * 1000,
        (None, true, "memory") => node.memory_bytes.saturating_mul(1000),
        (None, _, _) => 0,
    };
    let divisor_milli = divisor
        .and_then(|d| quantity::milli_value(d).ok())
        .filter(|d| *d > 0)
        .unwrap_or(1000);
    let value = (milli + divisor_milli - 1) / divisor_milli;
    // The kubelet reports a CPU request of zero as 1 in whole-core units, never 0.
    if name == "cpu" && value == 0 && resource.starts_with("requests") {
        "1".to_owned()
    } else {
        value.to_string()
    }
}

/// The container's environment in declaration order, each value expanded with the
/// variables before it, as the kubelet's `makeEnvironmentVariables`.
pub fn environment(
    pod: &StaticPod,
    c: &Container,
    addrs: &Addresses,
    node: Capacity,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for EnvVar {
        name,
        value,
        value_from,
    } in c.env.iter().flatten()
    {
        let v = match (value, value_from) {
            (Some(v), _) if !v.is_empty() => expand(v, |n| lookup(&env, n)),
            (_, Some(from)) => {
                if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, addrs)
                } else if let Some(r) = &from.resource_field_ref {
                    resource_value(
                        c,
                        &r.resource,
                        r.divisor.as_ref().map(|d| d.0.as_str()),
                        node,
                    )
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        env.retain(|(n, _)| n != name);
        env.push((name.clone(), v));
    }
    env
}

/// The value of `name` in an environment built so far (the last one wins).
pub fn lookup(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

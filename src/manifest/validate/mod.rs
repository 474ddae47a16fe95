//! Validation of a defaulted pod: the kubelet's `ValidatePodCreate` rules that matter on a
//! node, the static-pod restriction on API-object references (`PreventStaticPodAPIReferences`),
//! and what podvisor itself cannot honour. Every issue carries its field path. Pure; no IO.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Pod, PodSpec};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldIssue {
    /// Field path, like `spec.containers[0].name`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Default)]
struct Issues(Vec<FieldIssue>);

impl Issues {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldIssue {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Validates a defaulted pod. An empty result means it may run.
pub fn validate(pod: &Pod) -> Vec<FieldIssue> {
    let mut v = Issues::default();
    validate_metadata(pod, &mut v);
    match &pod.spec {
        Some(spec) => {
            validate_spec(spec, &mut v);
            validate_apparmor_annotations(&pod.metadata, spec, &mut v);
        }
        None => v.add("spec", "required"),
    }
    v.0
}

mod container;
mod names;
mod probe;
mod references;
mod scheduling;
mod security;
mod unsupported;
mod volume;

use container::validate_container;
/// What is wrong with `full_name` (the manifest's name with the node suffix) as a pod name,
/// in the API server's words; `None` when it is valid. The kubelet validates the pod only
/// after appending the node name, so this is the rule for pod names.
pub fn pod_name_error(full_name: &str) -> Option<&'static str> {
    dns1123_subdomain_error(full_name)
}
use names::*;
use references::validate_api_references;
use scheduling::validate_scheduling;
use security::{validate_apparmor, validate_apparmor_annotations, validate_pod_security};
use unsupported::validate_unsupported;
use volume::validate_volume;

// ---- metadata ----

fn validate_metadata(pod: &Pod, v: &mut Issues) {
    let m = &pod.metadata;
    // Like the kubelet, the name's rules apply to the full name, after the node suffix is
    // appended (`abc-` on node1 is the valid `abc--node1`). Node names are subdomains, so the
    // characters can be judged here with any such suffix; the length is judged with the real
    // one, in `resolve::bind` (`pod_name_error`).
    match m.name.as_deref() {
        None | Some("") => v.add("metadata.name", "required: a static pod needs a name"),
        Some(name) => {
            if let Some(why) = names::dns1123_subdomain_error(&format!("{name}-node"))
                && why == DNS1123_SUBDOMAIN
            {
                v.add(
                    "metadata.name",
                    format!("{name:?} with the node suffix (\"{name}-<node>\"): {why}"),
                );
            }
        }
    }
    // The kubelet keeps a manifest's UID as the pod UID, and it names directories and a
    // cgroup on the node: only what is safe in a path.
    if let Some(uid) = m.uid.as_deref().filter(|u| !u.is_empty())
        && !is_safe_uid(uid)
    {
        v.add(
            "metadata.uid",
            format!("{uid:?}: it names the pod's directories on the node, so at most 128 letters, digits, '-' and '_' (a UUID, say)"),
        );
    }
    if m.generate_name.as_deref().is_some_and(|g| !g.is_empty()) && m.name.is_none() {
        v.add(
            "metadata.generateName",
            "not supported for static pods: set metadata.name",
        );
    }
    if let Some(ns) = m.namespace.as_deref()
        && !is_dns1123_label(ns)
    {
        v.add("metadata.namespace", format!("{ns:?} {DNS1123_LABEL}"));
    }
    for (k, val) in m.labels.iter().flatten() {
        if !is_qualified_name(k) {
            v.add(
                format!("metadata.labels[{k:?}]"),
                "key must be a qualified name: [prefix/]name of alphanumerics, '-', '_' and '.', at most 63 characters",
            );
        }
        if !is_label_value(val) {
            v.add(
                format!("metadata.labels[{k:?}]"),
                format!("value {val:?} must be at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"),
            );
        }
    }
    let mut total = 0usize;
    for (k, val) in m.annotations.iter().flatten() {
        if !is_qualified_name(&k.to_lowercase()) {
            v.add(
                format!("metadata.annotations[{k:?}]"),
                "key must be a qualified name",
            );
        }
        total += k.len() + val.len();
    }
    if total > 256 * 1024 {
        v.add("metadata.annotations", "must be at most 256 KiB in total");
    }
    if let Some(order) = m
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::labels::SHUTDOWN_ORDER))
        && order.trim().parse::<i32>().is_err()
    {
        v.add(
            format!("metadata.annotations[{:?}]", crate::labels::SHUTDOWN_ORDER),
            format!("{order:?} must be an integer (higher stops later at node shutdown)"),
        );
    }
    if m.owner_references.as_ref().is_some_and(|o| !o.is_empty()) {
        v.add("metadata.ownerReferences", "not allowed on static pods");
    }
}

// ---- spec ----

fn validate_spec(spec: &PodSpec, v: &mut Issues) {
    if spec.containers.is_empty() {
        v.add("spec.containers", "required: at least one container");
    }
    let volumes: BTreeSet<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|vol| vol.name.as_str())
        .collect();
    let mut names = HashSet::new();
    let host_network = spec.host_network.unwrap_or(false);
    let mut host_ports = HashSet::new();
    for (kind, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ] {
        for (i, c) in list.iter().enumerate() {
            let at = format!("spec.{kind}[{i}]");
            if !names.insert(c.name.as_str()) && !c.name.is_empty() {
                v.add(
                    format!("{at}.name"),
                    format!("duplicate container name {:?}", c.name),
                );
            }
            validate_container(c, &at, kind == "initContainers", host_network, &volumes, v);
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let hp = p.host_port.unwrap_or(0);
                if hp != 0 {
                    let key = (
                        hp,
                        p.protocol.clone().unwrap_or_default(),
                        p.host_ip.clone().unwrap_or_default(),
                    );
                    if !host_ports.insert(key) {
                        v.add(
                            format!("{at}.ports[{j}].hostPort"),
                            format!("duplicate host port {hp}"),
                        );
                    }
                }
            }
        }
    }
    if spec
        .ephemeral_containers
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        v.add("spec.ephemeralContainers", "not supported for static pods");
    }
    match spec.restart_policy.as_deref() {
        Some("Always" | "OnFailure" | "Never") | None => {}
        Some(other) => v.add(
            "spec.restartPolicy",
            format!("{other:?} must be Always, OnFailure or Never"),
        ),
    }
    match spec.dns_policy.as_deref() {
        Some("ClusterFirst" | "ClusterFirstWithHostNet" | "Default") | None => {}
        Some("None") => {
            if spec
                .dns_config
                .as_ref()
                .and_then(|d| d.nameservers.as_ref())
                .is_none_or(Vec::is_empty)
            {
                v.add(
                    "spec.dnsConfig.nameservers",
                    "required when dnsPolicy is None",
                );
            }
        }
        Some(other) => v.add(
            "spec.dnsPolicy",
            format!("{other:?} must be ClusterFirst, ClusterFirstWithHostNet, Default or None"),
        ),
    }
    if let Some(dns) = &spec.dns_config {
        let servers = dns.nameservers.as_deref().unwrap_or(&[]);
        if servers.len() > 3 {
            v.add("spec.dnsConfig.nameservers", "at most 3 nameservers");
        }
        for (i, s) in servers.iter().enumerate() {
            if s.parse::<IpAddr>().is_err() {
                v.add(
                    format!("spec.dnsConfig.nameservers[{i}]"),
                    format!("{s:?} is not an IP address"),
                );
            }
        }
        if dns.searches.as_ref().is_some_and(|s| s.len() > 32) {
            v.add("spec.dnsConfig.searches", "at most 32 search domains");
        }
    }
    if let Some(g) = spec.termination_grace_period_seconds
        && g < 0
    {
        v.add("spec.terminationGracePeriodSeconds", "must not be negative");
    }
    if let Some(d) = spec.active_deadline_seconds
        && d <= 0
    {
        v.add("spec.activeDeadlineSeconds", "must be positive");
    }
    // Taken as the CRI runtime handler of the same name (`runtime::convert::runtime_handler`).
    if let Some(class) = spec.runtime_class_name.as_deref()
        && let Some(why) = dns1123_subdomain_error(class)
    {
        v.add("spec.runtimeClassName", format!("{class:?}: {why}"));
    }
    for (field, value) in [
        ("spec.hostname", &spec.hostname),
        ("spec.subdomain", &spec.subdomain),
    ] {
        if let Some(h) = value.as_deref()
            && !h.is_empty()
            && !is_dns1123_label(h)
        {
            v.add(field, format!("{h:?} {DNS1123_LABEL}"));
        }
    }
    if spec.share_process_namespace.unwrap_or(false) && spec.host_pid.unwrap_or(false) {
        v.add(
            "spec.shareProcessNamespace",
            "cannot be used together with hostPID",
        );
    }
    for (i, alias) in spec.host_aliases.iter().flatten().enumerate() {
        if alias.ip.parse::<IpAddr>().is_err() {
            v.add(
                format!("spec.hostAliases[{i}].ip"),
                format!("{:?} is not an IP address", alias.ip),
            );
        }
        for (j, h) in alias.hostnames.iter().flatten().enumerate() {
            if let Some(why) = dns1123_subdomain_error(h) {
                v.add(
                    format!("spec.hostAliases[{i}].hostnames[{j}]"),
                    format!("{h:?}: {why}"),
                );
            }
        }
    }
    validate_pod_security(spec, v);
    validate_scheduling(spec, v);
    let mut seen_volumes = HashSet::new();
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("spec.volumes[{i}]");
        if !is_dns1123_label(&vol.name) {
            v.add(
                format!("{at}.name"),
                format!("{:?} {DNS1123_LABEL}", vol.name),
            );
        }
        if !seen_volumes.insert(vol.name.as_str()) {
            v.add(
                format!("{at}.name"),
                format!("duplicate volume name {:?}", vol.name),
            );
        }
        validate_volume(vol, &at, v);
    }
    validate_api_references(spec, v);
    validate_unsupported(spec, v);
}

fn validate_seccomp(kind: &str, localhost: Option<&str>, at: &str, v: &mut Issues) {
    match kind {
        "RuntimeDefault" | "Unconfined" => {}
        "Localhost" => {
            if localhost.is_none_or(str::is_empty) {
                v.add(
                    format!("{at}.localhostProfile"),
                    "required when type is Localhost",
                );
            } else if localhost
                .is_some_and(|p| p.starts_with('/') || p.split('/').any(|s| s == ".."))
            {
                v.add(
                    format!("{at}.localhostProfile"),
                    "must be a relative path without '..'",
                );
            }
        }
        other => v.add(
            format!("{at}.type"),
            format!("{other:?} must be RuntimeDefault, Unconfined or Localhost"),
        ),
    }
}

#[cfg(test)]
mod tests;

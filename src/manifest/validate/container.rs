//! One container: name, image, ports, env, mounts, resources, security context. Pure.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Container, EnvVar, ResourceRequirements, SecurityContext};

use super::names::*;
use super::probe::{validate_handler, validate_probe};
use super::volume::is_label_or_annotation_ref;
use super::{Issues, validate_seccomp};
use crate::quantity;

pub(super) const ENV_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

pub(super) fn validate_env(env: &[EnvVar], at: &str, v: &mut Issues) {
    for (i, e) in env.iter().enumerate() {
        let eat = format!("{at}.env[{i}]");
        if !is_env_name(&e.name) {
            v.add(
                format!("{eat}.name"),
                format!("{:?} must be printable ASCII without '='", e.name),
            );
        }
        if let Some(from) = &e.value_from {
            if e.value.as_deref().is_some_and(|s| !s.is_empty()) {
                v.add(
                    format!("{eat}.valueFrom"),
                    "may not be set together with value",
                );
            }
            let count = [
                from.field_ref.is_some(),
                from.resource_field_ref.is_some(),
                from.config_map_key_ref.is_some(),
                from.secret_key_ref.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if count != 1 {
                v.add(
                    format!("{eat}.valueFrom"),
                    "exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef",
                );
            }
            if let Some(f) = &from.field_ref
                && !(ENV_FIELDS.contains(&f.field_path.as_str())
                    || is_label_or_annotation_ref(&f.field_path))
            {
                v.add(
                    format!("{eat}.valueFrom.fieldRef.fieldPath"),
                    format!("{:?} is not a supported field", f.field_path),
                );
            }
            if let Some(r) = &from.resource_field_ref
                && !matches!(
                    r.resource.as_str(),
                    "limits.cpu"
                        | "limits.memory"
                        | "requests.cpu"
                        | "requests.memory"
                        | "limits.ephemeral-storage"
                        | "requests.ephemeral-storage"
                )
            {
                v.add(
                    format!("{eat}.valueFrom.resourceFieldRef.resource"),
                    format!("{:?} is not a supported resource", r.resource),
                );
            }
        }
    }
}

pub(super) fn validate_container(
    c: &Container,
    at: &str,
    init: bool,
    host_network: bool,
    volumes: &BTreeSet<&str>,
    v: &mut Issues,
) {
    if !is_dns1123_label(&c.name) {
        v.add(
            format!("{at}.name"),
            format!("{:?} {DNS1123_LABEL}", c.name),
        );
    }
    match c.image.as_deref() {
        None | Some("") => v.add(format!("{at}.image"), "required"),
        Some(i) if i.trim() != i => v.add(
            format!("{at}.image"),
            "must not have leading or trailing whitespace",
        ),
        _ => {}
    }
    match c.image_pull_policy.as_deref() {
        Some("Always" | "IfNotPresent" | "Never") | None => {}
        Some(other) => v.add(
            format!("{at}.imagePullPolicy"),
            format!("{other:?} must be Always, IfNotPresent or Never"),
        ),
    }
    match c.termination_message_policy.as_deref() {
        Some("File" | "FallbackToLogsOnError") | None => {}
        Some(other) => v.add(
            format!("{at}.terminationMessagePolicy"),
            format!("{other:?} must be File or FallbackToLogsOnError"),
        ),
    }
    if let Some(p) = c.termination_message_path.as_deref()
        && !p.starts_with('/')
    {
        v.add(
            format!("{at}.terminationMessagePath"),
            "must be an absolute path",
        );
    }
    let sidecar = match c.restart_policy.as_deref() {
        None => false,
        Some("Always") if init => true,
        Some(other) if init => {
            v.add(
                format!("{at}.restartPolicy"),
                format!("{other:?}: only Always is allowed, for a sidecar"),
            );
            false
        }
        Some(_) => {
            v.add(
                format!("{at}.restartPolicy"),
                "only init containers may set a restartPolicy",
            );
            false
        }
    };
    if init && !sidecar {
        for (present, field) in [
            (c.liveness_probe.is_some(), "livenessProbe"),
            (c.readiness_probe.is_some(), "readinessProbe"),
            (c.startup_probe.is_some(), "startupProbe"),
            (c.lifecycle.is_some(), "lifecycle"),
        ] {
            if present {
                v.add(format!("{at}.{field}"), "not allowed on an init container unless it is a sidecar (restartPolicy: Always)");
            }
        }
    }
    let mut port_names = HashSet::new();
    for (j, p) in c.ports.iter().flatten().enumerate() {
        let pat = format!("{at}.ports[{j}]");
        if !(1..=65535).contains(&p.container_port) {
            v.add(
                format!("{pat}.containerPort"),
                format!("{} must be between 1 and 65535", p.container_port),
            );
        }
        if let Some(hp) = p.host_port
            && !(0..=65535).contains(&hp)
        {
            v.add(
                format!("{pat}.hostPort"),
                format!("{hp} must be between 1 and 65535"),
            );
        }
        if host_network && p.host_port.is_some_and(|hp| hp != p.container_port) {
            v.add(
                format!("{pat}.hostPort"),
                "must equal containerPort when hostNetwork is true",
            );
        }
        match p.protocol.as_deref() {
            Some("TCP" | "UDP" | "SCTP") | None => {}
            Some(other) => v.add(
                format!("{pat}.protocol"),
                format!("{other:?} must be TCP, UDP or SCTP"),
            ),
        }
        if let Some(ip) = p.host_ip.as_deref()
            && !ip.is_empty()
            && ip.parse::<IpAddr>().is_err()
        {
            v.add(
                format!("{pat}.hostIP"),
                format!("{ip:?} is not an IP address"),
            );
        }
        if let Some(name) = p.name.as_deref() {
            if !is_iana_svc_name(name) {
                v.add(
                    format!("{pat}.name"),
                    format!(
                        "{name:?} must be at most 15 lowercase alphanumerics or '-', with a letter"
                    ),
                );
            } else if !port_names.insert(name) {
                v.add(
                    format!("{pat}.name"),
                    format!("duplicate port name {name:?}"),
                );
            }
        }
    }
    validate_env(c.env.as_deref().unwrap_or(&[]), at, v);
    if c.env_from.as_ref().is_some_and(|e| !e.is_empty()) {
        v.add(
            format!("{at}.envFrom"),
            "static pods may not reference ConfigMaps or Secrets",
        );
    }
    let mut mount_paths = HashSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mat = format!("{at}.volumeMounts[{j}]");
        if !volumes.contains(m.name.as_str()) {
            v.add(
                format!("{mat}.name"),
                format!("no volume named {:?} in spec.volumes", m.name),
            );
        }
        if m.mount_path.is_empty() {
            v.add(format!("{mat}.mountPath"), "required");
        } else if !mount_paths.insert(m.mount_path.trim_end_matches('/')) {
            v.add(
                format!("{mat}.mountPath"),
                format!("{:?} is mounted twice", m.mount_path),
            );
        }
        for (field, sub) in [("subPath", &m.sub_path), ("subPathExpr", &m.sub_path_expr)] {
            if let Some(s) = sub.as_deref()
                && (s.starts_with('/') || s.split('/').any(|p| p == ".."))
            {
                v.add(
                    format!("{mat}.{field}"),
                    "must be a relative path without '..'",
                );
            }
        }
        if m.sub_path.as_deref().is_some_and(|s| !s.is_empty())
            && m.sub_path_expr.as_deref().is_some_and(|s| !s.is_empty())
        {
            v.add(
                format!("{mat}.subPathExpr"),
                "may not be set together with subPath",
            );
        }
        match m.mount_propagation.as_deref() {
            None | Some("None" | "HostToContainer") => {}
            Some("Bidirectional") => {
                let privileged = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.privileged)
                    .unwrap_or(false);
                if !privileged {
                    v.add(
                        format!("{mat}.mountPropagation"),
                        "Bidirectional needs a privileged container",
                    );
                }
            }
            Some(other) => v.add(
                format!("{mat}.mountPropagation"),
                format!("{other:?} must be None, HostToContainer or Bidirectional"),
            ),
        }
    }
    if c.volume_devices.as_ref().is_some_and(|d| !d.is_empty()) {
        v.add(format!("{at}.volumeDevices"), "not supported by podvisor");
    }
    if let Some(r) = &c.resources {
        validate_resources(r, &format!("{at}.resources"), v);
    }
    let mut resized = HashSet::new();
    for (i, p) in c.resize_policy.iter().flatten().enumerate() {
        let pat = format!("{at}.resizePolicy[{i}]");
        if !resized.insert(p.resource_name.as_str()) {
            v.add(&pat, format!("duplicate value {:?}", p.resource_name));
        }
        if !matches!(p.resource_name.as_str(), "cpu" | "memory") {
            v.add(
                format!("{pat}.resourceName"),
                format!(
                    "{:?}: supported values: \"cpu\", \"memory\"",
                    p.resource_name
                ),
            );
        }
        if !matches!(
            p.restart_policy.as_str(),
            "NotRequired" | "RestartContainer"
        ) {
            v.add(
                format!("{pat}.restartPolicy"),
                format!(
                    "{:?}: supported values: \"NotRequired\", \"RestartContainer\"",
                    p.restart_policy
                ),
            );
        }
    }
    if let Some(sc) = &c.security_context {
        validate_security_context(sc, &format!("{at}.securityContext"), v);
    }
    for (probe, field) in [
        (&c.liveness_probe, "livenessProbe"),
        (&c.readiness_probe, "readinessProbe"),
        (&c.startup_probe, "startupProbe"),
    ] {
        if let Some(p) = probe {
            validate_probe(p, c, field, &format!("{at}.{field}"), v);
        }
    }
    if let Some(l) = &c.lifecycle {
        for (h, field) in [(&l.post_start, "postStart"), (&l.pre_stop, "preStop")] {
            if let Some(h) = h {
                validate_handler(h, c, &format!("{at}.lifecycle.{field}"), v);
            }
        }
    }
}

pub(super) fn validate_resources(r: &ResourceRequirements, at: &str, v: &mut Issues) {
    for (kind, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (name, q) in map.iter().flatten() {
            let valid_name = matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage")
                || name.starts_with("hugepages-")
                || name.contains('/');
            if !valid_name {
                v.add(
                    format!("{at}.{kind}[{name}]"),
                    "unknown resource: expected cpu, memory, ephemeral-storage or hugepages-<size>",
                );
            }
            if let Some(size) = name.strip_prefix("hugepages-")
                && !quantity::value(size).is_ok_and(|bytes| bytes > 0)
            {
                v.add(
                    format!("{at}.{kind}[{name}]"),
                    format!("{size:?} is not a page size (hugepages-2Mi, hugepages-1Gi)"),
                );
            }
            if let Err(e) = quantity::milli_value(&q.0) {
                v.add(format!("{at}.{kind}[{name}]"), e.to_string());
            }
        }
    }
    if let (Some(limits), Some(requests)) = (&r.limits, &r.requests) {
        for (name, req) in requests {
            if let Some(lim) = limits.get(name)
                && let (Ok(req_m), Ok(lim_m)) =
                    (quantity::milli_value(&req.0), quantity::milli_value(&lim.0))
                && req_m > lim_m
            {
                v.add(
                    format!("{at}.requests[{name}]"),
                    format!(
                        "{} must be less than or equal to the limit {}",
                        req.0, lim.0
                    ),
                );
            }
        }
    }
    let has = |names: &[&str], huge: bool| {
        [&r.limits, &r.requests].into_iter().flatten().any(|m| {
            m.keys()
                .any(|k| names.contains(&k.as_str()) || (huge && k.starts_with("hugepages-")))
        })
    };
    if has(&[], true) && !has(&["cpu", "memory"], false) {
        v.add(at, "forbidden: HugePages require cpu or memory");
    }
    if r.claims.as_ref().is_some_and(|c| !c.is_empty()) {
        v.add(
            format!("{at}.claims"),
            "static pods may not reference ResourceClaims",
        );
    }
}

pub(super) fn validate_security_context(sc: &SecurityContext, at: &str, v: &mut Issues) {
    for (field, id) in [
        ("runAsUser", sc.run_as_user),
        ("runAsGroup", sc.run_as_group),
    ] {
        if id.is_some_and(|id| id < 0) {
            v.add(format!("{at}.{field}"), "must not be negative");
        }
    }
    let privileged = sc.privileged.unwrap_or(false);
    if sc.allow_privilege_escalation == Some(false) {
        if privileged {
            v.add(
                format!("{at}.allowPrivilegeEscalation"),
                "cannot be false when privileged is true",
            );
        }
        if sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .is_some_and(|a| a.iter().any(|c| c == "SYS_ADMIN" || c == "CAP_SYS_ADMIN"))
        {
            v.add(
                format!("{at}.allowPrivilegeEscalation"),
                "cannot be false when SYS_ADMIN is added",
            );
        }
    }
    if let Some(p) = &sc.seccomp_profile {
        validate_seccomp(
            &p.type_,
            p.localhost_profile.as_deref(),
            &format!("{at}.seccompProfile"),
            v,
        );
    }
    if let Some(p) = &sc.app_armor_profile {
        super::validate_apparmor(p, &format!("{at}.appArmorProfile"), v);
    }
    match sc.proc_mount.as_deref() {
        None | Some("Default") => {}
        Some(other) => v.add(
            format!("{at}.procMount"),
            format!("{other:?} is not supported by podvisor"),
        ),
    }
}

//! Fields podvisor cannot carry out, refused on their field rather than accepted and quietly
//! not done (issue 13.4: no silently ignored field). Each message says why and what to do
//! instead. The README's field table lists every field's outcome. Pure.

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::Issues;

/// Refuses what `spec` asks for that podvisor cannot do.
pub(super) fn validate_unsupported(spec: &PodSpec, v: &mut Issues) {
    if spec.host_users == Some(false) {
        // Whatever the runtime: containerd 1.6 has no CRI user namespaces, and a pod that
        // asked for one must not run without it.
        v.add(
            "spec.hostUsers",
            "false is not supported: podvisor runs no pod in a user namespace (containerd 1.6 offers none through CRI); remove the field or set it to true",
        );
    }
    if let Some(os) = &spec.os
        && os.name == "windows"
    {
        v.add(
            "spec.os.name",
            "windows is not supported: podvisor runs Linux pods only (the kubelet refuses a pod for another OS)",
        );
    }
    if spec.overhead.as_ref().is_some_and(|o| !o.is_empty()) {
        v.add(
            "spec.overhead",
            "is set by RuntimeClass admission from a RuntimeClass object, and a static pod has none: remove it",
        );
    }
    if spec.resources.is_some() {
        v.add(
            "spec.resources",
            "pod-level resources are not supported: podvisor sizes no pod cgroup; set resources on each container",
        );
    }
    if spec.hostname_override.is_some() {
        v.add(
            "spec.hostnameOverride",
            "is not supported (alpha HostnameOverride): set spec.hostname",
        );
    }
    if let Some(sc) = &spec.security_context {
        if sc.supplemental_groups_policy.as_deref() == Some("Strict") {
            v.add(
                "spec.securityContext.supplementalGroupsPolicy",
                "Strict is not supported: containerd 1.6 always adds the image's groups; remove it or use Merge",
            );
        }
        if sc.windows_options.is_some() {
            v.add(
                "spec.securityContext.windowsOptions",
                "applies to Windows only, and podvisor runs Linux pods: remove it",
            );
        }
    }
    for (kind, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ] {
        for (i, c) in list.iter().enumerate() {
            unsupported_in_container(c, &format!("spec.{kind}[{i}]"), v);
        }
    }
}

fn unsupported_in_container(c: &Container, at: &str, v: &mut Issues) {
    if c.resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .is_some_and(|l| l.contains_key("ephemeral-storage"))
    {
        // A request is only a scheduling hint, and there is no scheduler: it is kept.
        v.add(
            format!("{at}.resources.limits[ephemeral-storage]"),
            "is not enforced for static pods: the kubelet enforces it by eviction, which never evicts a static pod, and podvisor evicts nothing; remove the limit",
        );
    }
    let r = c.resources.as_ref();
    for (kind, map) in [
        ("limits", r.and_then(|r| r.limits.as_ref())),
        ("requests", r.and_then(|r| r.requests.as_ref())),
    ] {
        for name in map.into_iter().flatten().map(|(k, _)| k) {
            if name.contains('/') && !name.starts_with("kubernetes.io/") {
                v.add(
                    format!("{at}.resources.{kind}[{name}]"),
                    "extended resources are not supported: they come from device plugins, and podvisor runs none",
                );
            }
        }
    }
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        if m.recursive_read_only.as_deref() == Some("Enabled") {
            v.add(
                format!("{at}.volumeMounts[{j}].recursiveReadOnly"),
                "Enabled is not supported: containerd 1.6 cannot make a mount read-only recursively; use IfPossible or Disabled",
            );
        }
    }
    if c.restart_policy_rules
        .as_ref()
        .is_some_and(|r| !r.is_empty())
    {
        v.add(
            format!("{at}.restartPolicyRules"),
            "is not supported (alpha ContainerRestartRules): use the pod's restartPolicy",
        );
    }
    if c.lifecycle
        .as_ref()
        .is_some_and(|l| l.stop_signal.is_some())
    {
        v.add(
            format!("{at}.lifecycle.stopSignal"),
            "is not supported: containerd 1.6 takes no stop signal through CRI and stops with the image's STOPSIGNAL; set it in the image",
        );
    }
    if c.security_context
        .as_ref()
        .is_some_and(|s| s.windows_options.is_some())
    {
        v.add(
            format!("{at}.securityContext.windowsOptions"),
            "applies to Windows only, and podvisor runs Linux pods: remove it",
        );
    }
}

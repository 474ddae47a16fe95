//! The pod's security settings as `pkg/apis/core/validation` checks them: the pod security
//! context (ids, seccomp, AppArmor, sysctls, fsGroupChangePolicy), user namespaces
//! (`hostUsers: false` shares no host namespace) and `spec.os`. Pure.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{AppArmorProfile, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{Issues, validate_seccomp};
use crate::pod::apparmor;

/// Validates an AppArmor profile at `at`.
pub(super) fn validate_apparmor(p: &AppArmorProfile, at: &str, v: &mut Issues) {
    match p.type_.as_str() {
        "Localhost" => match p.localhost_profile.as_deref() {
            None => v.add(
                format!("{at}.localhostProfile"),
                "must be set when AppArmor type is Localhost",
            ),
            Some(s) if s.trim() != s => v.add(
                format!("{at}.localhostProfile"),
                "must not be padded with whitespace",
            ),
            Some("") => v.add(
                format!("{at}.localhostProfile"),
                "must be set when AppArmor type is Localhost",
            ),
            Some(s) if s.len() > 4095 => v.add(
                format!("{at}.localhostProfile"),
                "may not be longer than 4095",
            ),
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if p.localhost_profile.is_some() {
                v.add(
                    format!("{at}.localhostProfile"),
                    "can only be set when AppArmor type is Localhost",
                );
            }
        }
        "" => v.add(
            format!("{at}.type"),
            "type is required when appArmorProfile is set",
        ),
        other => v.add(
            format!("{at}.type"),
            format!(
                "{other:?}: supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\""
            ),
        ),
    }
}

/// The legacy AppArmor annotations (`container.apparmor.security.beta.kubernetes.io/<name>`):
/// each names a container and a profile (`ValidateAppArmorPodAnnotations`), and agrees with
/// the container's profile field where both are set
/// (`validateAppArmorAnnotationsAndFieldsMatchOnCreate`).
pub(super) fn validate_apparmor_annotations(meta: &ObjectMeta, spec: &PodSpec, v: &mut Issues) {
    let containers = || {
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| ("initContainers", c))
            .enumerate()
            .chain(
                spec.containers
                    .iter()
                    .map(|c| ("containers", c))
                    .enumerate(),
            )
    };
    let annotations = meta.annotations.as_ref();
    for (key, value) in annotations.into_iter().flatten() {
        let Some(name) = key.strip_prefix(apparmor::ANNOTATION_PREFIX) else {
            continue;
        };
        let at = format!("metadata.annotations[{key:?}]");
        if !containers().any(|(_, (_, c))| c.name == name) {
            v.add(&at, format!("container {name:?} not found"));
        }
        if apparmor::from_annotation(value).is_err() {
            v.add(
                &at,
                format!("invalid AppArmor profile name: {value:?} (runtime/default, unconfined or localhost/<profile>)"),
            );
        }
    }
    if spec.os.as_ref().is_some_and(|os| os.name == "windows") {
        return;
    }
    let pod_profile = spec
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref());
    for (i, (kind, c)) in containers() {
        let field = c
            .security_context
            .as_ref()
            .and_then(|s| s.app_armor_profile.as_ref())
            .or(pod_profile);
        let annotation = annotations
            .and_then(|a| a.get(&format!("{}{}", apparmor::ANNOTATION_PREFIX, c.name)))
            .and_then(|value| apparmor::from_annotation(value).ok().flatten());
        let (Some(field), Some(annotation)) = (field, annotation) else {
            continue;
        };
        let at = format!("spec.{kind}[{i}].securityContext.appArmorProfile");
        if field.type_ != annotation.type_ {
            v.add(
                format!("{at}.type"),
                "apparmor type in annotation and field must match",
            );
        } else if field.localhost_profile != annotation.localhost_profile {
            v.add(
                format!("{at}.localhostProfile"),
                "apparmor profile in annotation and field must match",
            );
        }
    }
}

/// Validates the pod-level security fields of `spec`.
pub(super) fn validate_pod_security(spec: &PodSpec, v: &mut Issues) {
    let host_network = spec.host_network.unwrap_or(false);
    let host_ipc = spec.host_ipc.unwrap_or(false);
    if spec.host_users == Some(false) {
        for (field, shared) in [
            ("spec.hostNetwork", host_network),
            ("spec.hostPID", spec.host_pid.unwrap_or(false)),
            ("spec.hostIPC", host_ipc),
        ] {
            if shared {
                v.add(field, "forbidden when `hostUsers` is false");
            }
        }
    }
    if let Some(sc) = &spec.security_context {
        for (field, id) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
            ("fsGroup", sc.fs_group),
        ] {
            if id.is_some_and(|id| id < 0) {
                v.add(
                    format!("spec.securityContext.{field}"),
                    "must not be negative",
                );
            }
        }
        if let Some(p) = &sc.seccomp_profile {
            validate_seccomp(
                &p.type_,
                p.localhost_profile.as_deref(),
                "spec.securityContext.seccompProfile",
                v,
            );
        }
        if let Some(p) = &sc.app_armor_profile {
            validate_apparmor(p, "spec.securityContext.appArmorProfile", v);
        }
        let mut names = HashSet::new();
        for (i, s) in sc.sysctls.iter().flatten().enumerate() {
            let at = format!("spec.securityContext.sysctls[{i}].name");
            if s.name.is_empty()
                || s.name.len() > 253
                || !s
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
            {
                v.add(at, format!("{:?} is not a sysctl name", s.name));
            } else if !names.insert(s.name.as_str()) {
                v.add(at, format!("duplicate value {:?}", s.name));
            } else if host_network && s.name.starts_with("net.") {
                v.add(at, "may not be specified when 'hostNetwork' is true");
            } else if host_ipc
                && (s.name.starts_with("kernel.shm")
                    || s.name.starts_with("kernel.msg")
                    || s.name == "kernel.sem"
                    || s.name.starts_with("fs.mqueue."))
            {
                v.add(at, "may not be specified when 'hostIPC' is true");
            }
        }
        if let Some(p) = sc.fs_group_change_policy.as_deref()
            && !matches!(p, "OnRootMismatch" | "Always")
        {
            v.add(
                "spec.securityContext.fsGroupChangePolicy",
                format!("{p:?}: supported values: \"Always\", \"OnRootMismatch\""),
            );
        }
        if let Some(p) = sc.supplemental_groups_policy.as_deref()
            && !matches!(p, "Merge" | "Strict")
        {
            v.add(
                "spec.securityContext.supplementalGroupsPolicy",
                format!("{p:?}: supported values: \"Merge\", \"Strict\""),
            );
        }
        if let Some(p) = sc.se_linux_change_policy.as_deref()
            && !matches!(p, "MountOption" | "Recursive")
        {
            v.add(
                "spec.securityContext.seLinuxChangePolicy",
                format!("{p:?}: supported values: \"MountOption\", \"Recursive\""),
            );
        }
    }
    validate_os(spec, v);
}

/// `spec.os`: linux or windows; a windows pod may not set Linux-only fields.
fn validate_os(spec: &PodSpec, v: &mut Issues) {
    let Some(os) = &spec.os else { return };
    match os.name.as_str() {
        "linux" => {}
        "windows" => {
            let forbidden = |v: &mut Issues, field: &str| {
                v.add(field, "forbidden: cannot be set for a windows pod");
            };
            if spec.host_users.is_some() {
                forbidden(v, "spec.hostUsers");
            }
            if spec.host_pid.unwrap_or(false) {
                forbidden(v, "spec.hostPID");
            }
            if spec.host_ipc.unwrap_or(false) {
                forbidden(v, "spec.hostIPC");
            }
            if spec.share_process_namespace.is_some() {
                forbidden(v, "spec.shareProcessNamespace");
            }
            if let Some(sc) = &spec.security_context {
                for (field, set) in [
                    ("appArmorProfile", sc.app_armor_profile.is_some()),
                    ("seLinuxOptions", sc.se_linux_options.is_some()),
                    ("seccompProfile", sc.seccomp_profile.is_some()),
                    ("fsGroup", sc.fs_group.is_some()),
                    ("fsGroupChangePolicy", sc.fs_group_change_policy.is_some()),
                    (
                        "sysctls",
                        sc.sysctls.as_ref().is_some_and(|s| !s.is_empty()),
                    ),
                    ("runAsUser", sc.run_as_user.is_some()),
                    ("runAsGroup", sc.run_as_group.is_some()),
                    ("supplementalGroups", sc.supplemental_groups.is_some()),
                    (
                        "supplementalGroupsPolicy",
                        sc.supplemental_groups_policy.is_some(),
                    ),
                    ("seLinuxChangePolicy", sc.se_linux_change_policy.is_some()),
                ] {
                    if set {
                        forbidden(v, &format!("spec.securityContext.{field}"));
                    }
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
                    let Some(sc) = &c.security_context else {
                        continue;
                    };
                    for (field, set) in [
                        ("appArmorProfile", sc.app_armor_profile.is_some()),
                        ("seLinuxOptions", sc.se_linux_options.is_some()),
                        ("seccompProfile", sc.seccomp_profile.is_some()),
                        ("capabilities", sc.capabilities.is_some()),
                        (
                            "readOnlyRootFilesystem",
                            sc.read_only_root_filesystem.is_some(),
                        ),
                        ("privileged", sc.privileged.is_some()),
                        (
                            "allowPrivilegeEscalation",
                            sc.allow_privilege_escalation.is_some(),
                        ),
                        ("procMount", sc.proc_mount.is_some()),
                        ("runAsUser", sc.run_as_user.is_some()),
                        ("runAsGroup", sc.run_as_group.is_some()),
                    ] {
                        if set {
                            forbidden(v, &format!("spec.{kind}[{i}].securityContext.{field}"));
                        }
                    }
                }
            }
        }
        other => v.add(
            "spec.os.name",
            format!("{other:?}: supported values: \"linux\", \"windows\""),
        ),
    }
}

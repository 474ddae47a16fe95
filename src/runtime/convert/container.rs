//! The container config: command and args, environment, mounts (volumes, the managed
//! /etc/hosts, the termination-message file), resources and the security context.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Container;

use super::sandbox::namespace_options;
use super::security::{apparmor, container_selinux, seccomp};
use crate::host::{NodeContext, podfiles, volumes};
use crate::labels;
use crate::pod::environment::{Addresses, environment, lookup};
use crate::pod::{ContainerKind, QosClass, StaticPod, expand};
use crate::quantity;

/// Paths masked inside unprivileged containers (`pkg/securitycontext/util.go`).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// Paths read-only inside unprivileged containers.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const CPU_PERIOD_US: i64 = 100_000;
const MIN_SHARES: i64 = 2;
const MAX_SHARES: i64 = 262_144;
const MIN_QUOTA_US: i64 = 1_000;

/// OOM score adjustment (`pkg/kubelet/qos/policy.go`).
pub fn oom_score_adj(pod: &StaticPod, c: &Container, ctx: &NodeContext) -> i64 {
    let critical = matches!(
        pod.spec.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    match pod.qos() {
        _ if critical => -997,
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|m| m.get("memory"))
                .and_then(|q| quantity::value(&q.0).ok())
                .unwrap_or(0);
            if ctx.memory_bytes <= 0 {
                return 999;
            }
            let adj = 1000 - (1000 * i128::from(request) / i128::from(ctx.memory_bytes)) as i64;
            adj.clamp(3, 999)
        }
    }
}

fn linux_resources(
    pod: &StaticPod,
    c: &Container,
    ctx: &NodeContext,
) -> cri::LinuxContainerResources {
    let r = c.resources.as_ref();
    let get = |kind: &str, name: &str| {
        r.and_then(|r| {
            if kind == "limits" {
                r.limits.as_ref()
            } else {
                r.requests.as_ref()
            }
        })
        .and_then(|m| m.get(name))
        .map(|q| q.0.clone())
    };
    let cpu_request = get("requests", "cpu")
        .and_then(|q| quantity::milli_value(&q).ok())
        .unwrap_or(0);
    let cpu_limit = get("limits", "cpu")
        .and_then(|q| quantity::milli_value(&q).ok())
        .unwrap_or(0);
    let memory_limit = get("limits", "memory")
        .and_then(|q| quantity::value(&q).ok())
        .unwrap_or(0);
    let share_basis = if cpu_request == 0 && cpu_limit != 0 {
        cpu_limit
    } else {
        cpu_request
    };
    let cpu_shares = if share_basis == 0 {
        MIN_SHARES
    } else {
        (share_basis * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES)
    };
    let (cpu_quota, cpu_period) = if cpu_limit > 0 {
        (
            (cpu_limit * CPU_PERIOD_US / 1000).max(MIN_QUOTA_US),
            CPU_PERIOD_US,
        )
    } else {
        (0, 0)
    };
    cri::LinuxContainerResources {
        cpu_period,
        cpu_quota,
        cpu_shares,
        memory_limit_in_bytes: memory_limit,
        oom_score_adj: oom_score_adj(pod, c, ctx),
        hugepage_limits: hugepage_limits(c, ctx),
        ..Default::default()
    }
}

/// A huge page size in the kubelet's unit (`HugePageUnitSizeFromByteSize`): `2MB`, `1GB`.
pub(super) fn page_size_unit(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let (mut size, mut i) = (bytes, 0);
    while size != 0 && size % 1024 == 0 && i < UNITS.len() - 1 {
        size /= 1024;
        i += 1;
    }
    format!("{size}{}", UNITS[i])
}

/// Huge page limits as the kubelet's `GetHugepageLimitsFromResources` sets them: 0 for every
/// size the host offers, then each `hugepages-<size>` limit of the container. The runtime
/// writes them to the hugetlb cgroup (containerd only with `disable_hugetlb_controller =
/// false`).
fn hugepage_limits(c: &Container, ctx: &NodeContext) -> Vec<cri::HugepageLimit> {
    let mut limits: Vec<cri::HugepageLimit> = ctx
        .hugepage_sizes
        .iter()
        .map(|&size| cri::HugepageLimit {
            page_size: page_size_unit(size),
            limit: 0,
        })
        .collect();
    let asked = c
        .resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .into_iter()
        .flatten();
    for (name, amount) in asked {
        let Some(size) = name.strip_prefix("hugepages-") else {
            continue;
        };
        // Validation guarantees both parse.
        let (Ok(size), Ok(limit)) = (quantity::value(size), quantity::value(&amount.0)) else {
            continue;
        };
        let page_size = page_size_unit(u64::try_from(size).unwrap_or(0));
        let limit = u64::try_from(limit).unwrap_or(0);
        match limits.iter_mut().find(|l| l.page_size == page_size) {
            Some(l) => l.limit = limit,
            None => limits.push(cri::HugepageLimit { page_size, limit }),
        }
    }
    limits
}

// `apparmor_profile` is deprecated in CRI, but containerd 1.6 reads only it; the kubelet
// still sets both.
#[allow(deprecated)]
fn container_security(
    pod: &StaticPod,
    c: &Container,
    ctx: &NodeContext,
) -> cri::LinuxContainerSecurityContext {
    let sc = c.security_context.as_ref();
    let pod_sc = pod.spec.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let mut supplemental: Vec<i64> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs) = pod_sc.and_then(|s| s.fs_group) {
        supplemental.push(fs);
    }
    let (masked, readonly) = if privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect(),
            READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
        )
    };
    let (apparmor_profile, apparmor_deprecated) = apparmor(pod, c);
    cri::LinuxContainerSecurityContext {
        capabilities: caps.map(|c| cri::Capability {
            add_capabilities: c.add.clone().unwrap_or_default(),
            drop_capabilities: c.drop.clone().unwrap_or_default(),
            ..Default::default()
        }),
        privileged,
        namespace_options: Some(namespace_options(pod)),
        run_as_user: sc
            .and_then(|s| s.run_as_user)
            .or_else(|| pod_sc.and_then(|s| s.run_as_user))
            .map(|value| cri::Int64Value { value }),
        run_as_group: sc
            .and_then(|s| s.run_as_group)
            .or_else(|| pod_sc.and_then(|s| s.run_as_group))
            .map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        supplemental_groups: supplemental,
        no_new_privs: sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
        masked_paths: masked,
        readonly_paths: readonly,
        seccomp: Some(seccomp(sc, pod_sc, ctx)),
        apparmor: apparmor_profile,
        apparmor_profile: apparmor_deprecated,
        selinux_options: container_selinux(sc, pod_sc),
        ..Default::default()
    }
}

fn mounts(
    pod: &StaticPod,
    c: &Container,
    attempt: u32,
    env: &[(String, String)],
    has_ip: bool,
    ctx: &NodeContext,
) -> Vec<cri::Mount> {
    let volumes = pod.spec.volumes.as_deref().unwrap_or(&[]);
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.iter().find(|v| v.name == m.name) else {
            continue; // validation guarantees every mount names a volume
        };
        let Some(mut host) = volumes::volume_host_dir(pod, vol, ctx) else {
            continue;
        };
        let sub = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
            (Some(s), _) if !s.is_empty() => Some(s.to_owned()),
            (_, Some(e)) if !e.is_empty() => Some(expand(e, |n| lookup(env, n))),
            _ => None,
        };
        if let Some(sub) = sub {
            host = host.join(sub);
        }
        let propagation = match m.mount_propagation.as_deref() {
            Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
            Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
            _ => cri::MountPropagation::PropagationPrivate,
        };
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m.read_only.unwrap_or(false),
            propagation: propagation as i32,
            ..Default::default()
        });
    }
    if podfiles::mounts_etc_hosts(pod, c, has_ip) {
        out.push(cri::Mount {
            container_path: "/etc/hosts".to_owned(),
            host_path: podfiles::etc_hosts_path(ctx, pod.uid.as_str())
                .to_string_lossy()
                .into_owned(),
            ..Default::default()
        });
    }
    if let Some(path) = c
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        let taken = c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == path);
        if !taken {
            out.push(cri::Mount {
                container_path: path.to_owned(),
                host_path: podfiles::termination_log_path(ctx, pod.uid.as_str(), &c.name, attempt)
                    .to_string_lossy()
                    .into_owned(),
                ..Default::default()
            });
        }
    }
    out
}

/// The container config for container `c` of `pod`: metadata attempt `attempt`, restart
/// count `restarts` (the `io.kubernetes.container.restartCount` annotation crictl and the
/// status read).
pub fn container_config(
    pod: &StaticPod,
    c: &Container,
    kind: ContainerKind,
    (attempt, restarts): (u32, u32),
    addrs: &Addresses,
    ctx: &NodeContext,
) -> cri::ContainerConfig {
    let env = environment(pod, c, addrs, ctx.capacity());
    let expand_all = |list: &Option<Vec<String>>| -> Vec<String> {
        list.iter()
            .flatten()
            .map(|s| expand(s, |n| lookup(&env, n)))
            .collect()
    };
    let container_labels: HashMap<String, String> = [
        (labels::POD_NAME, pod.key.name.clone()),
        (labels::POD_NAMESPACE, pod.key.namespace.clone()),
        (labels::POD_UID, pod.uid.0.clone()),
        (labels::CONTAINER_NAME, c.name.clone()),
        (labels::MANAGED, labels::MANAGED_VALUE.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut annotations: HashMap<String, String> = HashMap::new();
    let mut annotate = |k: &str, v: String| {
        annotations.insert(k.to_owned(), v);
    };
    annotate(
        labels::CONTAINER_HASH,
        pod.container_hash(&c.name)
            .map(|h| h.0.clone())
            .unwrap_or_default(),
    );
    annotate(labels::CONTAINER_RESTART_COUNT, restarts.to_string());
    annotate(
        labels::CONTAINER_TERMINATION_MESSAGE_PATH,
        c.termination_message_path.clone().unwrap_or_default(),
    );
    annotate(
        labels::CONTAINER_TERMINATION_MESSAGE_POLICY,
        c.termination_message_policy.clone().unwrap_or_default(),
    );
    annotate(
        labels::POD_TERMINATION_GRACE_PERIOD,
        pod.grace_period_seconds().to_string(),
    );
    if let Some(pre_stop) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref()) {
        annotate(
            labels::CONTAINER_PRESTOP_HANDLER,
            serde_json::to_string(pre_stop).unwrap_or_default(),
        );
    }
    if let Some(ports) = c.ports.as_ref().filter(|p| !p.is_empty()) {
        annotate(
            labels::CONTAINER_PORTS,
            serde_json::to_string(ports).unwrap_or_default(),
        );
    }
    annotate(labels::CONTAINER_KIND, kind.as_str().to_owned());

    let image = c.image.clone().unwrap_or_default();
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: image.clone(),
            user_specified_image: image,
            ..Default::default()
        }),
        command: expand_all(&c.command),
        args: expand_all(&c.args),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: mounts(pod, c, attempt, &env, addrs.pod_ip.is_some(), ctx),
        labels: container_labels,
        annotations,
        log_path: format!("{}/{attempt}.log", c.name),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(linux_resources(pod, c, ctx)),
            security_context: Some(container_security(pod, c, ctx)),
        }),
        ..Default::default()
    }
}

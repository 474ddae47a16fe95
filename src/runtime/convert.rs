//! Pure translation of a [`StaticPod`] into CRI sandbox and container configs, as the
//! kubelet's `kuberuntime` builds them (labels, annotations, paths, namespaces, resources,
//! security). No IO: everything about the host comes in through [`NodeContext`].

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSecurityContext, SecurityContext};

use std::path::PathBuf;

use super::{NodeContext, podfiles, volumes};
use crate::labels;
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

/// The cgroup a pod's containers nest under: `/kubepods[/<qos>]/pod<uid>`.
pub fn cgroup_parent(pod: &StaticPod, ctx: &NodeContext) -> String {
    let mut path = ctx.cgroup_root.trim_end_matches('/').to_owned();
    if let Some(dir) = pod.qos().cgroup_dir() {
        path.push('/');
        path.push_str(dir);
    }
    path.push_str("/pod");
    path.push_str(pod.uid.as_str());
    path
}

fn namespace_options(pod: &StaticPod) -> cri::NamespaceOption {
    let spec = &pod.spec;
    let mode = |host: Option<bool>, otherwise: cri::NamespaceMode| {
        if host.unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else {
            otherwise as i32
        }
    };
    let pid = if spec.share_process_namespace.unwrap_or(false) {
        cri::NamespaceMode::Pod
    } else {
        cri::NamespaceMode::Container
    };
    cri::NamespaceOption {
        network: mode(spec.host_network, cri::NamespaceMode::Pod),
        pid: mode(spec.host_pid, pid),
        ipc: mode(spec.host_ipc, cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

/// The sandbox hostname: none for hostNetwork pods (runc refuses one without a UTS
/// namespace), else `spec.hostname` or the pod name cut to 63 characters.
pub fn sandbox_hostname(pod: &StaticPod) -> String {
    if pod.host_network() {
        return String::new();
    }
    let name = pod
        .spec
        .hostname
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.key.name.clone());
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

fn merge_options(base: &mut Vec<String>, extra: &[(String, Option<String>)]) {
    for (name, value) in extra {
        base.retain(|o| o.split(':').next() != Some(name.as_str()));
        base.push(match value {
            Some(v) => format!("{name}:{v}"),
            None => name.clone(),
        });
    }
}

fn dedup(list: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for item in list {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// DNS as the kubelet's `GetPodDNS` computes it on a node without cluster DNS: every policy
/// but `None` falls back to the host's resolv.conf; `dnsConfig` is appended.
pub fn dns_config(pod: &StaticPod, ctx: &NodeContext) -> cri::DnsConfig {
    let mut dns = if pod.spec.dns_policy.as_deref() == Some("None") {
        cri::DnsConfig::default()
    } else {
        cri::DnsConfig {
            servers: ctx.resolv_conf.servers.clone(),
            searches: ctx.resolv_conf.searches.clone(),
            options: ctx.resolv_conf.options.clone(),
        }
    };
    if let Some(extra) = &pod.spec.dns_config {
        dns.servers
            .extend(extra.nameservers.iter().flatten().cloned());
        dns.searches
            .extend(extra.searches.iter().flatten().cloned());
        let options: Vec<(String, Option<String>)> = extra
            .options
            .iter()
            .flatten()
            .filter_map(|o| o.name.clone().map(|n| (n, o.value.clone())))
            .collect();
        merge_options(&mut dns.options, &options);
    }
    dns.servers = dedup(dns.servers);
    dns.servers.truncate(3);
    dns.searches = dedup(dns.searches);
    dns.searches.truncate(32);
    dns
}

fn protocol(p: Option<&str>) -> i32 {
    match p {
        Some("UDP") => cri::Protocol::Udp as i32,
        Some("SCTP") => cri::Protocol::Sctp as i32,
        _ => cri::Protocol::Tcp as i32,
    }
}

fn seccomp(
    container: Option<&SecurityContext>,
    pod: Option<&PodSecurityContext>,
    ctx: &NodeContext,
) -> cri::SecurityProfile {
    use cri::security_profile::ProfileType;
    let profile = container
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.and_then(|s| s.seccomp_profile.as_ref()));
    match profile.map(|p| (p.type_.as_str(), p.localhost_profile.clone())) {
        Some(("RuntimeDefault", _)) => cri::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
        // Relative to `<root-dir>/seccomp`, as the kubelet's seccomp profile root.
        Some(("Localhost", Some(path))) => cri::SecurityProfile {
            profile_type: ProfileType::Localhost as i32,
            localhost_ref: ctx
                .root_dir
                .join("seccomp")
                .join(path)
                .to_string_lossy()
                .into_owned(),
        },
        // The kubelet's default without `seccompDefault`: Unconfined.
        _ => cri::SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
    }
}

/// The sandbox config for `pod` at metadata attempt `attempt`.
pub fn sandbox_config(pod: &StaticPod, attempt: u32, ctx: &NodeContext) -> cri::PodSandboxConfig {
    let meta = &pod.metadata;
    let mut sandbox_labels: HashMap<String, String> = meta
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    sandbox_labels.insert(labels::POD_NAME.into(), pod.key.name.clone());
    sandbox_labels.insert(labels::POD_NAMESPACE.into(), pod.key.namespace.clone());
    sandbox_labels.insert(labels::POD_UID.into(), pod.uid.0.clone());
    sandbox_labels.insert(labels::MANAGED.into(), labels::MANAGED_VALUE.into());
    let mut annotations: HashMap<String, String> = meta
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    annotations.insert(
        labels::MANIFEST_PATH.into(),
        pod.source.path.to_string_lossy().into_owned(),
    );

    let port_mappings = pod
        .containers()
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter(|p| p.host_port.unwrap_or(0) != 0)
        .map(|p| cri::PortMapping {
            protocol: protocol(p.protocol.as_deref()),
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.clone().unwrap_or_default(),
        })
        .collect();

    let pod_sc = pod.spec.security_context.as_ref();
    let privileged = pod
        .init_containers()
        .iter()
        .chain(pod.containers())
        .any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
    let mut supplemental: Vec<i64> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default();
    if let Some(fs) = pod_sc.and_then(|s| s.fs_group) {
        supplemental.push(fs);
    }
    let sysctls = pod_sc
        .and_then(|s| s.sysctls.as_ref())
        .map(|l| {
            l.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default();

    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod.key.name.clone(),
            uid: pod.uid.0.clone(),
            namespace: pod.key.namespace.clone(),
            attempt,
        }),
        hostname: sandbox_hostname(pod),
        log_directory: ctx
            .pod_log_dir(&pod.key.namespace, &pod.key.name, pod.uid.as_str())
            .to_string_lossy()
            .into_owned(),
        dns_config: Some(dns_config(pod, ctx)),
        port_mappings,
        labels: sandbox_labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent(pod, ctx),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: pod_sc
                    .and_then(|s| s.run_as_user)
                    .map(|value| cri::Int64Value { value }),
                run_as_group: pod_sc
                    .and_then(|s| s.run_as_group)
                    .map(|value| cri::Int64Value { value }),
                supplemental_groups: supplemental,
                privileged,
                seccomp: Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                }),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
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
    ctx: &NodeContext,
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
        (None, true, "cpu") => ctx.cpus * 1000,
        (None, true, "memory") => ctx.memory_bytes.saturating_mul(1000),
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
    ctx: &NodeContext,
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
                        ctx,
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

fn lookup(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
}

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
        ..Default::default()
    }
}

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
        ..Default::default()
    }
}

/// The host directory and the sub-path within it of each volume mount that uses
/// `subPath` or `subPathExpr` (expanded with the container's environment).
pub fn sub_paths(
    pod: &StaticPod,
    c: &Container,
    env: &[(String, String)],
    ctx: &NodeContext,
) -> Vec<(PathBuf, PathBuf)> {
    let volumes = pod.spec.volumes.as_deref().unwrap_or(&[]);
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.iter().find(|v| v.name == m.name) else {
            continue;
        };
        let sub = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
            (Some(s), _) if !s.is_empty() => s.to_owned(),
            (_, Some(e)) if !e.is_empty() => expand(e, |n| lookup(env, n)),
            _ => continue,
        };
        if let Some(dir) = volume_host_dir(pod, vol, ctx) {
            out.push((dir, PathBuf::from(sub)));
        }
    }
    out
}

fn volume_host_dir(
    pod: &StaticPod,
    vol: &k8s_openapi::api::core::v1::Volume,
    ctx: &NodeContext,
) -> Option<PathBuf> {
    match &vol.host_path {
        Some(hp) => Some(PathBuf::from(&hp.path)),
        None => volumes::volume_path(ctx, pod.uid.as_str(), vol),
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
        let Some(mut host) = volume_host_dir(pod, vol, ctx) else {
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

/// The container config for container `c` of `pod`, at restart count `attempt`.
pub fn container_config(
    pod: &StaticPod,
    c: &Container,
    kind: ContainerKind,
    attempt: u32,
    addrs: &Addresses,
    ctx: &NodeContext,
) -> cri::ContainerConfig {
    let env = environment(pod, c, addrs, ctx);
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
    annotate(labels::CONTAINER_RESTART_COUNT, attempt.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::manifest::{Format, parse_manifest};
    use crate::pod::{ManifestRef, NodeName};
    use crate::runtime::ResolvConf;
    use std::path::PathBuf;

    fn ctx() -> NodeContext {
        NodeContext {
            node: NodeName::new("node1"),
            root_dir: PathBuf::from("/var/lib/podvisor"),
            pod_log_dir: PathBuf::from("/var/log/pods"),
            cgroup_root: "/kubepods".into(),
            resolv_conf: ResolvConf {
                servers: vec!["10.0.0.53".into()],
                searches: vec!["example.com".into()],
                options: vec!["ndots:1".into()],
            },
            host_ip: Some("192.168.1.10".parse().expect("ip")),
            memory_bytes: 8 << 30,
            cpus: 4,
        }
    }

    fn pod(yaml: &str) -> StaticPod {
        crate::manifest::testing::static_pod_at("/etc/kubernetes/manifests/p.yaml", "node1", yaml)
    }

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: edge\n  labels: {app: web}\n  annotations: {team: blue}\nspec:\n  containers:\n  - name: web\n    image: busybox:1.35\n    command: [httpd, -f, -p, $(PORT)]\n    args: [$$(PORT), $(MISSING)]\n    env:\n    - {name: PORT, value: '8080'}\n    - {name: URL, value: 'http://$(POD_NAME):$(PORT)/'}\n    - name: POD_NAME\n      valueFrom: {fieldRef: {fieldPath: metadata.name}}\n    - name: NODE\n      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}\n    - name: MEM\n      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}\n    ports: [{containerPort: 8080, hostPort: 18080, name: http}]\n    resources:\n      requests: {cpu: 250m, memory: 64Mi}\n      limits: {cpu: 500m, memory: 128Mi}\n";

    #[test]
    fn sandbox_carries_kubelet_labels_and_pod_annotations() {
        let p = pod(WEB);
        let s = sandbox_config(&p, 2, &ctx());
        let m = s.metadata.expect("metadata");
        assert_eq!(
            (
                m.name.as_str(),
                m.namespace.as_str(),
                m.uid.as_str(),
                m.attempt
            ),
            ("web-node1", "edge", p.uid.as_str(), 2)
        );
        assert_eq!(s.labels["io.kubernetes.pod.name"], "web-node1");
        assert_eq!(s.labels["io.kubernetes.pod.namespace"], "edge");
        assert_eq!(s.labels["io.kubernetes.pod.uid"], p.uid.as_str());
        assert_eq!(s.labels["app"], "web");
        assert_eq!(s.labels["podvisor.dev/managed"], "true");
        assert_eq!(s.annotations["team"], "blue");
        assert_eq!(s.annotations["kubernetes.io/config.hash"], p.hash.as_str());
        assert_eq!(s.annotations["kubernetes.io/config.source"], "file");
        assert!(s.annotations.contains_key("kubernetes.io/config.seen"));
        assert_eq!(
            s.annotations["podvisor.dev/manifest"],
            "/etc/kubernetes/manifests/p.yaml"
        );
        assert_eq!(
            s.log_directory,
            format!("/var/log/pods/edge_web-node1_{}", p.uid)
        );
        assert_eq!(s.hostname, "web-node1");
        assert_eq!(s.port_mappings.len(), 1);
        assert_eq!(
            (
                s.port_mappings[0].container_port,
                s.port_mappings[0].host_port
            ),
            (8080, 18080)
        );
        let linux = s.linux.expect("linux");
        assert_eq!(
            linux.cgroup_parent,
            format!("/kubepods/burstable/pod{}", p.uid)
        );
        let ns = linux
            .security_context
            .expect("sc")
            .namespace_options
            .expect("ns");
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        let dns = s.dns_config.expect("dns");
        assert_eq!(dns.servers, ["10.0.0.53"]);
    }

    #[test]
    fn host_network_sandbox_uses_the_node_namespace_and_sets_no_hostname() {
        let p = pod(&WEB
            .replace("  containers:", "  hostNetwork: true\n  containers:")
            .replace("hostPort: 18080", "hostPort: 8080"));
        let s = sandbox_config(&p, 0, &ctx());
        assert_eq!(s.hostname, "");
        let ns = s
            .linux
            .and_then(|l| l.security_context)
            .and_then(|sc| sc.namespace_options)
            .expect("ns");
        assert_eq!(ns.network, cri::NamespaceMode::Node as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    }

    #[test]
    fn container_carries_exactly_the_kubelet_labels_and_annotations() {
        let p = pod(WEB);
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            3,
            &Addresses::default(),
            &ctx(),
        );
        let mut keys: Vec<&str> = c.labels.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "io.kubernetes.container.name",
                "io.kubernetes.pod.name",
                "io.kubernetes.pod.namespace",
                "io.kubernetes.pod.uid",
                "podvisor.dev/managed"
            ]
        );
        assert_eq!(
            c.annotations["io.kubernetes.container.hash"],
            p.container_hash("web").expect("hash").as_str()
        );
        assert_eq!(c.annotations["io.kubernetes.container.restartCount"], "3");
        assert_eq!(
            c.annotations["io.kubernetes.container.terminationMessagePath"],
            "/dev/termination-log"
        );
        assert_eq!(
            c.annotations["io.kubernetes.container.terminationMessagePolicy"],
            "File"
        );
        assert_eq!(
            c.annotations["io.kubernetes.pod.terminationGracePeriod"],
            "30"
        );
        assert_eq!(
            c.annotations["io.kubernetes.container.ports"],
            r#"[{"containerPort":8080,"hostPort":18080,"name":"http","protocol":"TCP"}]"#
        );
        assert_eq!(c.log_path, "web/3.log");
        let m = c.metadata.expect("metadata");
        assert_eq!((m.name.as_str(), m.attempt), ("web", 3));
    }

    #[test]
    fn env_and_command_are_expanded_like_the_kubelet() {
        let p = pod(WEB);
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let env: Vec<(&str, &str)> = c
            .envs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_str()))
            .collect();
        // URL refers to POD_NAME before it is defined, so that reference stays as written
        assert_eq!(
            env,
            [
                ("PORT", "8080"),
                ("URL", "http://$(POD_NAME):8080/"),
                ("POD_NAME", "web-node1"),
                ("NODE", "node1"),
                ("MEM", "128")
            ]
        );
        assert_eq!(c.command, ["httpd", "-f", "-p", "8080"]);
        assert_eq!(c.args, ["$(PORT)", "$(MISSING)"]);
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let p = pod(WEB);
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let r = c.linux.and_then(|l| l.resources).expect("resources");
        assert_eq!(r.cpu_shares, 256);
        assert_eq!((r.cpu_quota, r.cpu_period), (50_000, 100_000));
        assert_eq!(r.memory_limit_in_bytes, 128 << 20);
        // burstable: 1000 - 1000 * 64Mi / 8Gi = 993
        assert_eq!(r.oom_score_adj, 993);
    }

    #[test]
    fn best_effort_gets_minimum_shares_and_highest_oom_score() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: b}\nspec: {containers: [{name: c, image: 'i:1'}]}\n",
        );
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let r = c.linux.expect("linux").resources.expect("resources");
        assert_eq!(
            (
                r.cpu_shares,
                r.cpu_quota,
                r.memory_limit_in_bytes,
                r.oom_score_adj
            ),
            (2, 0, 0, 1000)
        );
        assert_eq!(
            cgroup_parent(&p, &ctx()),
            format!("/kubepods/besteffort/pod{}", p.uid)
        );
    }

    #[test]
    fn host_path_and_empty_dir_mounts_resolve_to_host_paths() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: v}\nspec:\n  containers:\n  - name: c\n    image: 'i:1'\n    volumeMounts:\n    - {name: certs, mountPath: /etc/ssl, readOnly: true}\n    - {name: scratch, mountPath: /scratch}\n    - {name: certs, mountPath: /ca.crt, subPath: ca.crt, mountPropagation: HostToContainer}\n  volumes:\n  - {name: certs, hostPath: {path: /etc/kubernetes/pki, type: DirectoryOrCreate}}\n  - {name: scratch, emptyDir: {}}\n",
        );
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let m: Vec<(&str, &str, bool)> = c
            .mounts
            .iter()
            .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
            .collect();
        let empty = format!(
            "/var/lib/podvisor/pods/{}/volumes/kubernetes.io~empty-dir/scratch",
            p.uid
        );
        let log = format!(
            "/var/lib/podvisor/pods/{}/containers/c/termination-log-0",
            p.uid
        );
        assert_eq!(
            m,
            [
                ("/etc/ssl", "/etc/kubernetes/pki", true),
                ("/scratch", empty.as_str(), false),
                ("/ca.crt", "/etc/kubernetes/pki/ca.crt", false),
                ("/dev/termination-log", log.as_str(), false),
            ]
        );
        assert_eq!(
            c.mounts[2].propagation,
            cri::MountPropagation::PropagationHostToContainer as i32
        );
    }

    #[test]
    fn dns_none_uses_only_the_pod_dns_config() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec:\n  dnsPolicy: None\n  dnsConfig: {nameservers: [1.1.1.1], searches: [s.example], options: [{name: ndots, value: '5'}]}\n  containers: [{name: c, image: 'i:1'}]\n",
        );
        let dns = dns_config(&p, &ctx());
        assert_eq!(
            (dns.servers, dns.searches, dns.options),
            (
                vec!["1.1.1.1".to_owned()],
                vec!["s.example".to_owned()],
                vec!["ndots:5".to_owned()]
            )
        );
        let q = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: d}\nspec:\n  dnsConfig: {nameservers: [1.1.1.1], options: [{name: ndots, value: '5'}]}\n  containers: [{name: c, image: 'i:1'}]\n",
        );
        let dns = dns_config(&q, &ctx());
        assert_eq!(dns.servers, ["10.0.0.53", "1.1.1.1"]);
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn privileged_container_gets_no_masked_paths_and_makes_the_sandbox_privileged() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'i:1', securityContext: {privileged: true}}]}\n",
        );
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let sc = c.linux.and_then(|l| l.security_context).expect("sc");
        assert!(sc.privileged && sc.masked_paths.is_empty());
        let s = sandbox_config(&p, 0, &ctx());
        assert!(
            s.linux
                .and_then(|l| l.security_context)
                .expect("sc")
                .privileged
        );
        let q = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: 'i:1', securityContext: {allowPrivilegeEscalation: false, runAsUser: 1000, capabilities: {drop: [ALL]}}}]}\n",
        );
        let c = container_config(
            &q,
            &q.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let sc = c.linux.and_then(|l| l.security_context).expect("sc");
        assert!(sc.no_new_privs);
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        assert_eq!(
            sc.capabilities.map(|c| c.drop_capabilities),
            Some(vec!["ALL".to_owned()])
        );
        assert!(sc.masked_paths.contains(&"/proc/kcore".to_owned()));
    }

    fn kubeadm(name: &str) -> StaticPod {
        let text = match name {
            "etcd" => include_str!("../../tests/fixtures/kubeadm/etcd.yaml"),
            "kube-apiserver" => include_str!("../../tests/fixtures/kubeadm/kube-apiserver.yaml"),
            "kube-controller-manager" => {
                include_str!("../../tests/fixtures/kubeadm/kube-controller-manager.yaml")
            }
            _ => include_str!("../../tests/fixtures/kubeadm/kube-scheduler.yaml"),
        };
        let path = PathBuf::from(format!("/etc/kubernetes/manifests/{name}.yaml"));
        let parsed = parse_manifest(&path, Format::Yaml, text.as_bytes())
            .expect("kubeadm manifest accepted");
        assert_eq!(parsed.len(), 1);
        assert!(parsed[0].warnings.is_empty(), "{:?}", parsed[0].warnings);
        let p = parsed.into_iter().next().expect("pod");
        StaticPod::build(
            p.metadata,
            p.spec,
            &NodeName::new("cp1"),
            ManifestRef { path, at: p.at },
            |_| Timestamp(0),
        )
    }

    #[test]
    fn kubeadm_control_plane_manifests_become_host_network_node_critical_containers() {
        for name in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
        ] {
            let pod = kubeadm(name);
            assert_eq!(pod.key.name, format!("{name}-cp1"));
            assert_eq!(pod.key.namespace, "kube-system");
            let s = sandbox_config(&pod, 0, &ctx());
            assert_eq!(s.hostname, "", "{name}: no hostname on the host network");
            let ns = s
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .and_then(|sc| sc.namespace_options.clone())
                .expect("ns");
            assert_eq!(ns.network, cri::NamespaceMode::Node as i32, "{name}");
            assert_eq!(s.labels["component"], name);
            assert_eq!(s.labels["tier"], "control-plane");
            let spec = &pod.containers()[0];
            let addrs = Addresses {
                pod_ip: Some("192.168.1.10".into()),
                host_ip: Some("192.168.1.10".into()),
            };
            let c = container_config(&pod, spec, ContainerKind::App, 0, &addrs, &ctx());
            assert_eq!(
                Some(&c.command),
                spec.command.as_ref(),
                "{name}: command passed verbatim"
            );
            assert!(c.args.is_empty());
            let r = c
                .linux
                .as_ref()
                .and_then(|l| l.resources.as_ref())
                .expect("resources");
            assert_eq!(r.oom_score_adj, -997, "{name}: system-node-critical");
            let sc = c
                .linux
                .as_ref()
                .and_then(|l| l.security_context.as_ref())
                .expect("sc");
            assert_eq!(
                sc.seccomp.as_ref().map(|p| p.profile_type),
                Some(cri::security_profile::ProfileType::RuntimeDefault as i32)
            );
            // every hostPath volume mount, with its read-only flag, then the managed files
            let volumes = pod.spec.volumes.clone().expect("volumes");
            let expected: Vec<(String, String, bool)> = spec
                .volume_mounts
                .iter()
                .flatten()
                .map(|m| {
                    let v = volumes.iter().find(|v| v.name == m.name).expect("volume");
                    (
                        m.mount_path.clone(),
                        v.host_path.clone().expect("hostPath").path,
                        m.read_only.unwrap_or(false),
                    )
                })
                .chain([
                    (
                        "/etc/hosts".to_owned(),
                        format!("/var/lib/podvisor/pods/{}/etc-hosts", pod.uid),
                        false,
                    ),
                    (
                        "/dev/termination-log".to_owned(),
                        format!(
                            "/var/lib/podvisor/pods/{}/containers/{name}/termination-log-0",
                            pod.uid
                        ),
                        false,
                    ),
                ])
                .collect();
            let got: Vec<(String, String, bool)> = c
                .mounts
                .iter()
                .map(|m| (m.container_path.clone(), m.host_path.clone(), m.readonly))
                .collect();
            assert_eq!(got, expected, "{name}");
        }
        let etcd = kubeadm("etcd");
        let ann = etcd.metadata.annotations.clone().expect("annotations");
        assert_eq!(
            ann["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
            "https://192.168.1.10:2379"
        );
        let s = sandbox_config(&etcd, 0, &ctx());
        assert_eq!(
            s.linux.expect("linux").cgroup_parent,
            format!("/kubepods/burstable/pod{}", etcd.uid)
        );
    }

    #[test]
    fn kubeadm_probes_target_what_kubeadm_means() {
        use crate::probe::{describe_target, probe_host};
        let host = probe_host(
            &kubeadm("kube-apiserver"),
            Some("10.88.0.9".into()),
            Some("192.168.1.10"),
        );
        assert_eq!(
            host.as_deref(),
            Some("192.168.1.10"),
            "host-network pods are probed on the host address"
        );
        let expect = [
            (
                "etcd",
                [
                    "GET http://127.0.0.1:2381/livez",
                    "GET http://127.0.0.1:2381/readyz",
                    "GET http://127.0.0.1:2381/readyz",
                ],
            ),
            (
                "kube-apiserver",
                [
                    "GET https://192.168.1.10:6443/livez",
                    "GET https://192.168.1.10:6443/readyz",
                    "GET https://192.168.1.10:6443/livez",
                ],
            ),
            (
                "kube-scheduler",
                [
                    "GET https://127.0.0.1:10259/livez",
                    "GET https://127.0.0.1:10259/readyz",
                    "GET https://127.0.0.1:10259/livez",
                ],
            ),
        ];
        for (name, [liveness, readiness, startup]) in expect {
            let pod = kubeadm(name);
            let c = &pod.containers()[0];
            let ports = c.ports.clone().unwrap_or_default();
            let d = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
                describe_target(p.as_ref().expect("probe"), &ports, "192.168.1.10")
            };
            assert_eq!(
                (
                    d(&c.liveness_probe).as_str(),
                    d(&c.readiness_probe).as_str(),
                    d(&c.startup_probe).as_str()
                ),
                (liveness, readiness, startup),
                "{name}"
            );
            let l = c.liveness_probe.clone().expect("liveness");
            assert_eq!(
                (
                    l.initial_delay_seconds,
                    l.timeout_seconds,
                    l.failure_threshold,
                    l.period_seconds
                ),
                (Some(10), Some(15), Some(8), Some(10))
            );
        }
        let cm = kubeadm("kube-controller-manager");
        let c = &cm.containers()[0];
        assert_eq!(
            describe_target(
                c.liveness_probe.as_ref().expect("probe"),
                &[],
                "192.168.1.10"
            ),
            "GET https://127.0.0.1:10257/healthz"
        );
        assert!(c.readiness_probe.is_none());
    }

    #[test]
    fn host_pid_ipc_and_shared_process_namespace_map_to_cri_namespace_modes() {
        let ns = |extra: &str| {
            let p = pod(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: ns}}\nspec:\n{extra}  containers: [{{name: c, image: 'i:1'}}]\n"
            ));
            sandbox_config(&p, 0, &ctx())
                .linux
                .and_then(|l| l.security_context)
                .and_then(|s| s.namespace_options)
                .expect("ns")
        };
        let host = ns("  hostPID: true\n  hostIPC: true\n");
        assert_eq!(
            (host.pid, host.ipc),
            (
                cri::NamespaceMode::Node as i32,
                cri::NamespaceMode::Node as i32
            )
        );
        let shared = ns("  shareProcessNamespace: true\n");
        assert_eq!(
            (shared.pid, shared.ipc),
            (
                cri::NamespaceMode::Pod as i32,
                cri::NamespaceMode::Pod as i32
            )
        );
        let plain = ns("");
        assert_eq!(plain.pid, cri::NamespaceMode::Container as i32);
    }

    #[test]
    fn sysctls_and_localhost_seccomp_profiles_are_passed_on() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: s}\nspec:\n  securityContext:\n    sysctls: [{name: net.ipv4.ip_unprivileged_port_start, value: '0'}]\n    seccompProfile: {type: Localhost, localhostProfile: profiles/audit.json}\n  containers: [{name: c, image: 'i:1'}]\n",
        );
        let s = sandbox_config(&p, 0, &ctx());
        assert_eq!(
            s.linux.expect("linux").sysctls["net.ipv4.ip_unprivileged_port_start"],
            "0"
        );
        let c = container_config(
            &p,
            &p.containers()[0],
            ContainerKind::App,
            0,
            &Addresses::default(),
            &ctx(),
        );
        let seccomp = c
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.seccomp)
            .expect("seccomp");
        assert_eq!(
            seccomp.profile_type,
            cri::security_profile::ProfileType::Localhost as i32
        );
        assert_eq!(
            seccomp.localhost_ref,
            "/var/lib/podvisor/seccomp/profiles/audit.json"
        );
    }
}

//! The pod sandbox config: namespaces, DNS, hostname, port mappings, labels, cgroup parent.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use crate::host::NodeContext;
use crate::labels;
use crate::pod::{StaticPod, cgroups};

/// The cgroup a pod's containers nest under, named for the node's cgroup driver:
/// `/kubepods[/<qos>]/pod<uid>` (cgroupfs) or the kubelet's nested slices (systemd).
pub fn cgroup_parent(pod: &StaticPod, ctx: &NodeContext) -> String {
    cgroups::pod_cgroup(
        ctx.cgroup_driver,
        &ctx.cgroup_root,
        pod.qos(),
        pod.uid.as_str(),
    )
}

pub(super) fn namespace_options(pod: &StaticPod) -> cri::NamespaceOption {
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
/// The CRI runtime handler the sandbox runs under: `spec.runtimeClassName` itself. A static
/// pod has no RuntimeClass object to look the handler up in, so the name is taken as a
/// RuntimeClass whose handler equals its name; none (or empty) is the runtime's default.
pub fn runtime_handler(pod: &StaticPod) -> String {
    pod.spec.runtime_class_name.clone().unwrap_or_default()
}

/// Why `pod`'s sandbox cannot be created, if its `setHostnameAsFQDN` hostname is longer
/// than the kernel allows (the kubelet's words).
pub fn hostname_refusal(pod: &StaticPod) -> Option<String> {
    let fqdn = pod.fqdn_hostname()?;
    (fqdn.len() > 64).then(|| {
        format!(
            "failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too long (64 characters is the max, {} characters requested)",
            fqdn.len()
        )
    })
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
    annotations.insert(labels::SANDBOX_HASH.into(), pod.sandbox.0.clone());
    // What `podvisor shutdown` orders pods by, read back without the manifest (which may
    // have changed or gone since), as the kubelet keeps the grace period on its containers.
    annotations.insert(
        labels::PRIORITY.into(),
        crate::pod::priority::priority(&pod.spec).to_string(),
    );
    // Sandbox annotations cannot change after creation, and a container-only edit keeps
    // the sandbox while the pod's config.hash moves on. So the sandbox carries what stays
    // true for its whole life: the pod UID, which is exactly the kubelet's `config.hash`.
    annotations.insert(labels::CONFIG_HASH.into(), pod.uid.0.clone());

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
        hostname: pod.fqdn_hostname().unwrap_or_else(|| pod.hostname()),
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
                selinux_options: super::security::sandbox_selinux(pod_sc),
                ..Default::default()
            }),
            sysctls,
            ..Default::default()
        }),
        ..Default::default()
    }
}

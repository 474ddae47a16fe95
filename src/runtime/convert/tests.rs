//! Tests of the spec → CRI translation, including kubeadm's own manifests.

use super::sandbox::{cgroup_parent, dns_config};
use super::*;
use crate::clock::Timestamp;
use crate::host::{NodeContext, ResolvConf};
use crate::manifest::{Format, parse_manifest};
use crate::pod::environment::Addresses;
use crate::pod::{ContainerKind, StaticPod};
use crate::pod::{ManifestRef, NodeName};
use k8s_cri::v1 as cri;
use std::path::PathBuf;

pub(super) fn ctx() -> NodeContext {
    NodeContext {
        node: NodeName::new("node1"),
        root_dir: PathBuf::from("/var/lib/podvisor"),
        pod_log_dir: PathBuf::from("/var/log/pods"),
        cgroup_root: "/kubepods".into(),
        cgroup_driver: crate::pod::CgroupDriver::Cgroupfs,
        container_log_links: None,
        resolv_conf: ResolvConf {
            servers: vec!["10.0.0.53".into()],
            searches: vec!["example.com".into()],
            options: vec!["ndots:1".into()],
        },
        host_ip: Some("192.168.1.10".parse().expect("ip")),
        node_ips: vec!["192.168.1.10".parse().expect("ip")],
        memory_bytes: 8 << 30,
        cpus: 4,
        apparmor: false,
        hugepage_sizes: vec![2 << 20, 1 << 30],
    }
}

pub(super) fn pod(yaml: &str) -> StaticPod {
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
    assert_eq!(
        s.annotations["kubernetes.io/config.hash"],
        p.uid.as_str(),
        "the sandbox outlives container-only edits: it carries the UID, as the kubelet's does"
    );
    assert_eq!(
        s.annotations["podvisor.dev/sandbox-hash"],
        p.sandbox.as_str()
    );
    assert_eq!(s.annotations["kubernetes.io/config.source"], "file");
    assert_eq!(
        s.annotations["podvisor.dev/priority"], "0",
        "no priority: 0"
    );
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
        (3, 3),
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
        (0, 0),
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
        (0, 0),
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
        (0, 0),
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
        (0, 0),
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
        (0, 0),
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
        (0, 0),
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
        "etcd" => include_str!("../../../tests/fixtures/kubeadm/etcd.yaml"),
        "kube-apiserver" => include_str!("../../../tests/fixtures/kubeadm/kube-apiserver.yaml"),
        "kube-controller-manager" => {
            include_str!("../../../tests/fixtures/kubeadm/kube-controller-manager.yaml")
        }
        _ => include_str!("../../../tests/fixtures/kubeadm/kube-scheduler.yaml"),
    };
    let path = PathBuf::from(format!("/etc/kubernetes/manifests/{name}.yaml"));
    let parsed =
        parse_manifest(&path, Format::Yaml, text.as_bytes()).expect("kubeadm manifest accepted");
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
        assert_eq!(
            s.annotations["podvisor.dev/priority"], "2000001000",
            "{name}: the priority node shutdown orders by is recorded"
        );
        let spec = &pod.containers()[0];
        let addrs = Addresses {
            pod_ip: Some("192.168.1.10".into()),
            host_ip: Some("192.168.1.10".into()),
        };
        let c = container_config(&pod, spec, ContainerKind::App, (0, 0), &addrs, &ctx());
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
    use crate::action::describe_target;
    use crate::probe::probe_host;
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
        (0, 0),
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

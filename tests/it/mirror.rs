//! Mirror pods end to end: the podvisor binary on a real containerd, mirroring into the
//! in-process fake API server (no real kube-apiserver can be installed here).

use std::time::{Duration, Instant};

use fake_apiserver::{FakeApiServer, Mode};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::{running, sleeper};

const T: Duration = Duration::from_secs(30);

async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + T;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kubeconfig(lab: &Lab, api: &FakeApiServer) -> String {
    let path = lab.dir.path().join("kubelet.conf");
    std::fs::write(&path, api.kubeconfig_yaml("node-token")).expect("write kubeconfig");
    path.display().to_string()
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn static_pods_appear_as_mirror_pods_with_live_status_and_go_with_their_file() {
    let api = FakeApiServer::start().await;
    let lab = Lab::start();
    let kc = kubeconfig(&lab, &api);
    let d = Daemon::start_with(
        &lab,
        &[
            "--kubeconfig",
            &kc,
            "--node-labels",
            "node.kubernetes.io/edge=true",
        ],
    );
    let etcd = sleeper("etcd", "1").replace(
        "  labels: {app: etcd}",
        "  labels: {component: etcd, tier: control-plane}\n  annotations:\n    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://192.168.1.10:2379",
    );
    d.write("etcd.yaml", &etcd);
    let pod = d.pod("etcd");
    wait_for(&lab.cri(), T, "etcd running", |o| {
        running(o, &pod).len() == 1
    })
    .await;

    // the Node, then the mirror pod with every annotation, owned by the Node, Running
    until("node registered", || api.node(&d.node).is_some()).await;
    let node = api.node(&d.node).expect("node");
    assert_eq!(
        node.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("node.kubernetes.io/edge"))
            .map(String::as_str),
        Some("true")
    );
    until("mirror pod Running", || {
        api.pod("kube-system", &pod)
            .and_then(|p| p.status)
            .and_then(|s| s.phase)
            .is_some_and(|p| p == "Running")
    })
    .await;
    let mirror = api.pod("kube-system", &pod).expect("mirror");
    let ann = mirror.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann["kubeadm.kubernetes.io/etcd.advertise-client-urls"],
        "https://192.168.1.10:2379"
    );
    assert_eq!(
        ann["kubernetes.io/config.mirror"],
        ann["kubernetes.io/config.hash"]
    );
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    let owner = &mirror.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Node", d.node.as_str(), Some(true))
    );
    assert_eq!(Some(owner.uid.clone()), node.metadata.uid);
    assert_eq!(
        mirror.spec.and_then(|s| s.node_name).as_deref(),
        Some(d.node.as_str())
    );
    // the status API reports the mirror as synced
    let (_, body) = podvisor::api::client::get_raw(&d.socket, "/mirror")
        .await
        .expect("/mirror");
    assert!(
        String::from_utf8_lossy(&body).contains("Synced"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // an edit gives a new hash: the mirror is replaced; the file removed: the mirror is deleted
    d.write("etcd.yaml", &etcd.replace("value: '1'", "value: '2'"));
    until("mirror of the new version", || {
        api.pod("kube-system", &pod).is_some_and(|p| {
            let a = p.metadata.annotations.unwrap_or_default();
            a.get("kubernetes.io/config.mirror") != ann.get("kubernetes.io/config.mirror")
                && a.contains_key("kubernetes.io/config.mirror")
        })
    })
    .await;
    d.remove("etcd.yaml");
    until("mirror deleted", || api.pod("kube-system", &pod).is_none()).await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_hanging_api_server_delays_no_pod_start_or_stop() {
    let api = FakeApiServer::start().await;
    api.set_mode(Mode::Hang); // accepts connections, never answers
    let lab = Lab::start();
    let kc = kubeconfig(&lab, &api);
    let d = Daemon::start_with(&lab, &["--kubeconfig", &kc]);
    let cri = lab.cri();
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: quick}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n"
    );
    // let the mirror task get stuck in its first request before the pod arrives
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    d.write("quick.yaml", &manifest);
    wait_for(&cri, T, "running", |o| {
        running(o, &d.pod("quick")).len() == 1
    })
    .await;
    let up = started.elapsed();
    let stopping = Instant::now();
    d.remove("quick.yaml");
    wait_for(&cri, T, "removed", |o| o.sandboxes.is_empty()).await;
    let down = stopping.elapsed();
    assert!(
        up < Duration::from_secs(5),
        "start took {up:?} with the API server hanging"
    );
    assert!(
        down < Duration::from_secs(5),
        "stop took {down:?} with the API server hanging"
    );
    assert!(
        api.requests().iter().any(|r| r.status.is_none()),
        "the mirror task was indeed waiting on the hung server"
    );
    let (code, body) = podvisor::api::client::get_raw(&d.socket, "/mirror")
        .await
        .expect("/mirror");
    assert_eq!(code, 200);
    let body = String::from_utf8_lossy(&body).into_owned();
    assert!(
        body.contains("Unreachable") || body.contains("Connecting"),
        "{body}"
    );
}

/// An address of this host that the kubelet would take as a node IP.
fn local_node_ip() -> String {
    podvisor::host::addresses::local_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() && podvisor::host::addresses::usable(ip))
        .expect("a non-loopback IPv4 address on this host")
        .to_string()
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn the_node_reports_the_runtimes_readiness_its_pressure_and_the_given_node_ip_issue_13() {
    let api = FakeApiServer::start().await;
    let lab = Lab::start();
    let kc = kubeconfig(&lab, &api);
    let ip = local_node_ip();
    // memory.available<100% is met on any machine: MemoryPressure from the real figures
    let _d = Daemon::start_with(
        &lab,
        &[
            "--kubeconfig",
            &kc,
            "--node-ip",
            &ip,
            "--eviction-hard",
            "memory.available<100%",
            "--eviction-pressure-transition-period",
            "0s",
        ],
    );
    let conditions = |api: &FakeApiServer| {
        api.node("itnode")
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .unwrap_or_default()
    };
    until("MemoryPressure and Ready reported", || {
        let c = conditions(&api);
        c.iter()
            .any(|c| c.type_ == "MemoryPressure" && c.status == "True")
            && c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
    .await;
    let c = conditions(&api);
    let kinds: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        kinds,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    let reason = |t: &str| {
        c.iter()
            .find(|c| c.type_ == t)
            .and_then(|c| c.reason.clone())
    };
    assert_eq!(
        reason("MemoryPressure").as_deref(),
        Some("KubeletHasInsufficientMemory")
    );
    assert_eq!(
        reason("DiskPressure").as_deref(),
        Some("KubeletHasNoDiskPressure")
    );
    // containerd's own RuntimeReady and NetworkReady (the lab has a CNI config) hold
    assert_eq!(reason("Ready").as_deref(), Some("KubeletReady"));
    let addresses: Vec<_> = api
        .node("itnode")
        .and_then(|n| n.status?.addresses)
        .unwrap_or_default()
        .into_iter()
        .map(|a| (a.type_, a.address))
        .collect();
    assert_eq!(
        addresses,
        [
            ("InternalIP".to_owned(), ip.clone()),
            ("Hostname".to_owned(), "itnode".to_owned())
        ]
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_node_ip_this_host_does_not_have_stops_podvisor_at_start_naming_it_issue_13() {
    let lab = Lab::start();
    // TEST-NET-3: documentation addresses, never on a real interface
    let mut d = Daemon::start_with(&lab, &["--node-ip", "203.0.113.77"]);
    let status = d
        .exited_within(Duration::from_secs(20))
        .expect("podvisor exits");
    assert!(!status.success());
    assert!(
        d.log()
            .contains("--node-ip 203.0.113.77: not an address of this host's network interfaces"),
        "{}",
        d.log()
    );
}

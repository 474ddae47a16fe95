//! Reaching the API server: absent at start, late kubeconfig, restarts, hangs, and the Node
//! and Lease.

use super::*;
use podvisor::runtime::RuntimeVersion;

#[tokio::test]
async fn api_server_absent_at_start_is_unreachable_until_it_appears_then_all_is_mirrored() {
    let mut fake = Harness::fake().await;
    fake.stop().await;
    let etcd = static_pod("etcd", "registry.k8s.io/etcd:3.5.9-0");
    let mut h = Harness::start(fake, &[&etcd]).await;
    let down = h
        .state_until("unreachable", |s| {
            matches!(s.phase, MirrorPhase::Unreachable { .. })
        })
        .await;
    assert!(
        down.phase
            .to_string()
            .starts_with("API server unreachable: "),
        "{}",
        down.phase
    );
    assert_eq!(down.pods.get(&etcd.key), Some(&PodMirror::Pending));

    h.fake.restart().await;
    let uid = h.mirrored(&etcd).await;
    let node = h.fake.node("n1").expect("node registered");
    let node_uid = node.metadata.uid.clone().unwrap();
    let labels = node.metadata.labels.clone().unwrap();
    assert_eq!(labels["kubernetes.io/hostname"], "n1");
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels.contains_key("kubernetes.io/arch"));
    let conditions = node.status.unwrap().conditions.unwrap();
    let kinds: Vec<_> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("MemoryPressure", "False"),
            ("DiskPressure", "False"),
            ("PIDPressure", "False"),
            ("Ready", "True")
        ],
        "the kubelet's four conditions, Ready last"
    );

    let lease = eventually("lease", || h.fake.lease("kube-node-lease", "n1")).await;
    let spec = lease.spec.clone().unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    assert_eq!(lease.metadata.owner_references.unwrap()[0].uid, node_uid);

    let mirror = h.fake.pod(NS, "etcd-n1").unwrap();
    let want = etcd.metadata.annotations.clone().unwrap();
    for (k, v) in &want {
        assert_eq!(annotation(&mirror, k), Some(v.as_str()), "annotation {k}");
    }
    for k in [
        "kubernetes.io/config.hash",
        "kubernetes.io/config.source",
        "kubernetes.io/config.seen",
    ] {
        assert!(want.contains_key(k), "{k}");
    }
    assert_eq!(
        annotation(&mirror, "kubernetes.io/config.mirror"),
        Some(etcd.hash.0.as_str())
    );
    assert_eq!(
        annotation(&mirror, "kubeadm.kubernetes.io/etcd.advertise-client-urls"),
        Some("https://10.0.0.1:2379")
    );
    assert_eq!(mirror.metadata.labels, etcd.metadata.labels);
    let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", "n1"));
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        (node_uid.as_str(), Some(true))
    );
    assert_eq!(
        mirror.spec.as_ref().unwrap().node_name.as_deref(),
        Some("n1")
    );
    let status = eventually("status patched", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Running"))
    })
    .await;
    assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));

    let state = h.synced().await;
    assert_eq!(state.node_uid.as_deref(), Some(node_uid.as_str()));
    assert_eq!(state.pods[&etcd.key], PodMirror::Mirrored { uid });
    let renewed = lease.metadata.resource_version.clone();
    eventually("lease renewed", || {
        h.fake
            .lease("kube-node-lease", "n1")
            .filter(|l| l.metadata.resource_version != renewed)
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_kubeconfig_written_after_start_is_picked_up() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start_with(fake, &[&etcd], |_| {}, false).await;
    let waiting = h
        .state_until("connecting", |s| {
            matches!(&s.phase, MirrorPhase::Connecting { error: Some(_) })
        })
        .await;
    let text = waiting.phase.to_string();
    assert!(text.contains("kubelet.conf"), "{text}");
    assert!(h.fake.requests().is_empty(), "nothing to talk to yet");
    h.write_kubeconfig();
    h.synced().await;
    h.mirrored(&etcd).await;
    h.stop().await;
}

#[tokio::test]
async fn after_an_api_server_restart_the_state_recovers_and_statuses_are_compared_again() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.mirrored(&etcd).await;
    let path = "/api/v1/namespaces/kube-system/pods/etcd-n1/status";
    eventually("first status patch", || {
        (h.requests(&http::Method::PATCH, path).len() == 1).then_some(())
    })
    .await;
    h.synced().await;

    h.fake.stop().await;
    h.state_until("unreachable", |s| {
        matches!(s.phase, MirrorPhase::Unreachable { .. })
    })
    .await;
    h.fake.restart().await;
    let state = h.synced().await;
    assert_eq!(state.counters.disconnects, 1);
    // The server kept the status: compared with what it holds, nothing is written again.
    h.syncs(3).await;
    assert_eq!(h.requests(&http::Method::PATCH, path).len(), 1);
    // A change after the reconnection is.
    h.status.send_replace(node_status(&[(&etcd, "Failed")]));
    eventually("status patched after the reconnection", || {
        (h.requests(&http::Method::PATCH, path).len() == 2).then_some(())
    })
    .await;
    assert!(
        h.requests(&http::Method::POST, "/api/v1/namespaces/kube-system/pods")
            .len()
            == 1,
        "the mirror pod survived the restart and is not created again"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_hanging_api_server_holds_up_neither_inputs_nor_shutdown_and_is_recovered_from() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.mirrored(&etcd).await;
    h.synced().await;

    h.fake.set_mode(Mode::Hang);
    h.state_until("unreachable", |s| {
        matches!(s.phase, MirrorPhase::Unreachable { .. })
    })
    .await;
    // The event channel holds 16; the task keeps draining it while requests hang.
    for i in 0..40 {
        let sent = h.events.try_send(event("etcd", &format!("Reason{i}")));
        assert!(sent.is_ok(), "event {i} must not find the channel full");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    h.state_until("events buffered", |s| s.counters.events_pending == 40)
        .await;
    h.desired.send_replace(snapshot(&[]));

    h.fake.set_mode(Mode::Normal);
    h.synced().await;
    // The kubelet's spam filter lets 25 events about one pod through at once; the other
    // 15 are dropped and counted.
    eventually("buffered events posted", || {
        (pod_events(&h.fake).len() == 25).then_some(())
    })
    .await;
    h.state_until("the rest dropped", |s| s.counters.events_dropped == 15)
        .await;
    eventually("removed pod's mirror deleted", || {
        h.fake.pod(NS, "etcd-n1").is_none().then_some(())
    })
    .await;

    h.fake.set_mode(Mode::Hang);
    h.events
        .try_send(event("etcd", "Late"))
        .expect("channel has room");
    h.stop().await;
}

#[tokio::test]
async fn without_register_node_the_task_waits_for_the_node_and_never_creates_it() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start_with(fake, &[&etcd], |c| c.register_node = false, true).await;
    let waiting = h
        .state_until("waiting for node", |s| {
            matches!(s.phase, MirrorPhase::WaitingForNode { .. })
        })
        .await;
    assert!(
        waiting.phase.to_string().starts_with("waiting for Node: "),
        "{}",
        waiting.phase
    );
    assert!(h.requests(&http::Method::POST, "/api/v1/nodes").is_empty());
    assert!(h.fake.pods().is_empty());

    let created = h
        .fake
        .set_node(&node("n1"))
        .expect("admin creates the node");
    h.mirrored(&etcd).await;
    let mirror = h.fake.pod(NS, "etcd-n1").unwrap();
    assert_eq!(
        mirror.metadata.owner_references.unwrap()[0].uid,
        created.metadata.uid.unwrap()
    );
    h.synced().await;
    assert!(
        h.requests(&http::Method::POST, "/api/v1/nodes").is_empty(),
        "never registers"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_existing_node_is_adopted_with_the_default_labels() {
    let fake = Harness::fake().await;
    let existing = fake.set_node(&node("n1")).unwrap();
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.synced().await;
    h.mirrored(&etcd).await;
    let node = h.fake.node("n1").unwrap();
    assert_eq!(
        node.metadata.uid, existing.metadata.uid,
        "adopted, not recreated"
    );
    assert_eq!(node.metadata.labels.unwrap()["kubernetes.io/os"], "linux");
    h.stop().await;
}

#[tokio::test]
async fn a_recreated_node_gets_mirror_pods_owned_by_the_new_node() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    let old_pod = h.mirrored(&etcd).await;
    let old_node = h.fake.node("n1").unwrap().metadata.uid.unwrap();
    assert!(h.fake.delete_node("n1"));
    let new_node = eventually("node registered again", || {
        h.fake
            .node("n1")
            .and_then(|n| n.metadata.uid)
            .filter(|u| *u != old_node)
    })
    .await;
    let owner = eventually("mirror pod owned by the new node", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.metadata.owner_references)
            .map(|o| o[0].uid.clone())
            .filter(|u| *u == new_node)
    })
    .await;
    assert_eq!(owner, new_node);
    assert_ne!(
        h.fake.pod(NS, "etcd-n1").unwrap().metadata.uid.unwrap(),
        old_pod
    );
    h.stop().await;
}

#[tokio::test]
async fn node_ready_follows_the_container_runtime() {
    let fake = Harness::fake().await;
    let mut h = Harness::start(fake, &[]).await;
    h.synced().await;
    let ready = |fake: &FakeApiServer| {
        fake.node("n1")
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .map(|c| {
                (
                    c[3].status.clone(),
                    c[3].message.clone().unwrap_or_default(),
                )
            })
    };
    h.status.send_replace(Arc::new(NodeStatus {
        runtime_error: Some("connection refused".into()),
        ..NodeStatus::default()
    }));
    let (status, message) =
        eventually("not ready", || ready(&h.fake).filter(|(s, _)| s == "False")).await;
    assert_eq!(status, "False");
    assert_eq!(message, "container runtime is down: connection refused");
    // The runtime comes back, upgraded: the Node says so at once, not at the next report.
    h.status.send_replace(Arc::new(NodeStatus {
        runtime: Some(RuntimeVersion {
            name: "containerd".into(),
            version: "2.1.0".into(),
            api: "v1".into(),
        }),
        health: NodeHealth::ready(),
        ..NodeStatus::default()
    }));
    eventually("ready again", || {
        ready(&h.fake).filter(|(s, _)| s == "True")
    })
    .await;
    let runtime = eventually("runtime version reported", || {
        h.fake
            .node("n1")
            .and_then(|n| n.status?.node_info)
            .map(|i| i.container_runtime_version)
            .filter(|v| !v.is_empty())
    })
    .await;
    assert_eq!(runtime, "containerd://2.1.0");
    h.stop().await;
}

#[tokio::test]
async fn the_runtimes_network_and_the_nodes_pressure_reach_the_node_conditions_issue_13() {
    let fake = Harness::fake().await;
    let mut h = Harness::start(fake, &[]).await;
    h.synced().await;
    let mut status = podvisor::runtime::RuntimeStatus::ready();
    status.conditions[1] = podvisor::runtime::RuntimeCondition {
        kind: "NetworkReady".into(),
        status: false,
        reason: "NetworkPluginNotReady".into(),
        message: "cni plugin not initialized".into(),
    };
    h.status.send_replace(Arc::new(NodeStatus {
        health: NodeHealth {
            runtime: Some(Ok(status)),
            pressure: [podvisor::health::Pressure::Disk].into(),
            ..NodeHealth::default()
        },
        ..NodeStatus::default()
    }));
    let conditions = eventually("not ready, under disk pressure", || {
        let c = h.fake.node("n1")?.status?.conditions?;
        (c[3].status == "False").then_some(c)
    })
    .await;
    let by_type = |t: &str| conditions.iter().find(|c| c.type_ == t).expect(t).clone();
    assert_eq!(by_type("DiskPressure").status, "True");
    assert_eq!(
        by_type("DiskPressure").reason.as_deref(),
        Some("KubeletHasDiskPressure")
    );
    assert_eq!(by_type("MemoryPressure").status, "False");
    assert_eq!(
        by_type("Ready").message.as_deref(),
        Some(
            "container runtime network not ready: NetworkReady=false \
             reason:NetworkPluginNotReady message:cni plugin not initialized"
        )
    );
    // Each flip is a Node event, as the kubelet records them: registered Ready and without
    // pressure, then under disk pressure and not ready.
    let reasons = eventually("node events", || {
        let r: Vec<String> = h
            .fake
            .events()
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("Node"))
            .filter_map(|e| e.reason)
            .collect();
        r.contains(&"NodeNotReady".to_owned()).then_some(r)
    })
    .await;
    for want in [
        "NodeHasSufficientMemory",
        "NodeHasNoDiskPressure",
        "NodeReady",
        "NodeHasDiskPressure",
        "NodeNotReady",
    ] {
        assert!(reasons.contains(&want.to_owned()), "{want} in {reasons:?}");
    }
    let disk = h
        .fake
        .events()
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("NodeHasDiskPressure"))
        .expect("event");
    assert_eq!(disk.involved_object.name.as_deref(), Some("n1"));
    assert_eq!(disk.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(
        disk.message.as_deref(),
        Some("Node n1 status is now: NodeHasDiskPressure")
    );
    assert_eq!(disk.type_.as_deref(), Some("Normal"));
    h.stop().await;
}

#[tokio::test]
async fn a_403_is_a_refusal_with_its_own_state_not_an_outage_issue_17() {
    let fake = Harness::fake().await;
    // As when the kubeconfig's certificate is another node's: every read of this Node is
    // forbidden.
    fake.inject_error(
        http::Method::GET,
        "/api/v1/nodes/n1",
        http::StatusCode::FORBIDDEN,
        usize::MAX,
    );
    let etcd = static_pod("etcd", "registry.k8s.io/etcd:3.5.9-0");
    let mut h = Harness::start(fake, &[&etcd]).await;
    let refused = h
        .state_until("refused", |s| {
            matches!(s.phase, MirrorPhase::Refused { .. })
        })
        .await;
    assert!(refused.phase.reachable(), "the API server answered");
    let text = refused.phase.to_string();
    assert!(text.starts_with("API server refuses: "), "{text}");
    assert!(
        text.ends_with("(are the kubeconfig's credentials those of node \"n1\"?)"),
        "{text}"
    );
    assert_eq!(refused.to_json()["phase"], "Refused");
    h.stop().await;
}

#[tokio::test]
async fn a_node_ready_condition_someone_else_changed_is_written_back_within_a_check_issue_17() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.synced().await;
    let ready = |h: &Harness| {
        h.fake
            .node("n1")
            .and_then(|n| n.status)
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "Ready"))
    };
    let first = eventually("Ready written", || ready(&h)).await;
    let since = first.last_transition_time.clone();
    // As the node lifecycle controller does when it misses heartbeats.
    let api: kube::Api<k8s_openapi::api::core::v1::Node> =
        kube::Api::all(h.fake.kube_client().await);
    let unknown = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
         "message": "Kubelet stopped posting node status."}
    ]}});
    api.patch_status(
        "n1",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&unknown),
    )
    .await
    .expect("patch");
    // node_status_update is 100 ms here (the kubelet's 10 s); node_status_report is 300 s.
    let back = eventually("Ready put back", || {
        ready(&h).filter(|c| c.status == "True")
    })
    .await;
    assert_eq!(back.reason.as_deref(), Some("KubeletReady"));
    assert!(back.last_transition_time >= since);
    h.stop().await;
}

#[tokio::test]
async fn pods_bound_here_from_the_api_server_are_failed_and_the_node_is_tainted_issue_13() {
    let etcd = static_pod("etcd", "registry.k8s.io/etcd:3.5.9-0");
    let mut h = Harness::start(Harness::fake().await, &[&etcd]).await;
    h.mirrored(&etcd).await;
    let taints = h
        .fake
        .node("n1")
        .and_then(|n| n.spec)
        .and_then(|s| s.taints)
        .unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "podvisor.dev/static-pods-only" && t.effect == "NoSchedule"),
        "{taints:?}"
    );
    // a DaemonSet pod (it tolerates every taint) bound straight to this node
    let bound = Pod {
        metadata: ObjectMeta {
            name: Some("kube-proxy-x".into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        spec: Some(k8s_openapi::api::core::v1::PodSpec {
            node_name: Some("n1".into()),
            containers: vec![k8s_openapi::api::core::v1::Container {
                name: "kube-proxy".into(),
                image: Some("registry.k8s.io/kube-proxy:v1.35.0".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            ..PodStatus::default()
        }),
    };
    h.fake.set_pod(&bound).expect("bind a pod");
    let failed = eventually("the bound pod failed", || {
        h.fake
            .pod(NS, "kube-proxy-x")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Failed"))
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("StaticPodsOnly"));
    assert!(
        failed
            .message
            .as_deref()
            .unwrap_or("")
            .contains("only the static pods"),
        "{failed:?}"
    );
    // and a Warning event says why, about that pod
    let event = eventually("the rejection event", || {
        pod_events(&h.fake)
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("StaticPodsOnly"))
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(event.involved_object.name.as_deref(), Some("kube-proxy-x"));
    assert_eq!(
        event.involved_object.uid,
        h.fake.pod(NS, "kube-proxy-x").and_then(|p| p.metadata.uid)
    );
    // the mirror pod is left alone
    let mirror = h.fake.pod(NS, "etcd-n1").expect("mirror");
    assert_eq!(
        mirror.status.and_then(|s| s.phase).as_deref(),
        Some("Running")
    );
}

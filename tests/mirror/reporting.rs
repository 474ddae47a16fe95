//! What reaches the API server about running pods: statuses and events.

use http::{Method, StatusCode};

use super::*;

const STATUS: &str = "/api/v1/namespaces/kube-system/pods/etcd-n1/status";

#[tokio::test]
async fn status_is_patched_only_when_it_changes() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.mirrored(&etcd).await;
    eventually("first patch", || {
        (h.requests(&Method::PATCH, STATUS).len() == 1).then_some(())
    })
    .await;
    h.syncs(3).await;
    h.status.send_replace(node_status(&[(&etcd, "Running")]));
    h.syncs(2).await;
    assert_eq!(
        h.requests(&Method::PATCH, STATUS).len(),
        1,
        "same status, no patch"
    );

    h.status.send_replace(node_status(&[(&etcd, "Failed")]));
    let status = eventually("second patch", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Failed"))
    })
    .await;
    assert_eq!(status.conditions.unwrap()[0].status, "False");
    h.syncs(2).await;
    assert_eq!(h.requests(&Method::PATCH, STATUS).len(), 2);
    assert_eq!(h.state.borrow().counters.status_patches, 2);
    let content_type = h.requests(&Method::PATCH, STATUS)[1].content_type.clone();
    assert_eq!(
        content_type.as_deref(),
        Some("application/strategic-merge-patch+json"),
        "conditions merge by type, as the kubelet's patches do"
    );
    h.stop().await;
}

#[tokio::test]
async fn status_is_rate_limited_per_pod() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start_with(
        fake,
        &[&etcd],
        |c| c.timings.status_min_interval = Duration::from_millis(300),
        true,
    )
    .await;
    h.mirrored(&etcd).await;
    eventually("first patch", || {
        (h.requests(&Method::PATCH, STATUS).len() == 1).then_some(())
    })
    .await;
    let first = Instant::now();
    for phase in ["Pending", "Failed", "Succeeded", "Running", "Failed"] {
        h.status.send_replace(node_status(&[(&etcd, phase)]));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eventually("latest status", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Failed"))
    })
    .await;
    assert!(
        first.elapsed() >= Duration::from_millis(250),
        "waited for the interval"
    );
    assert_eq!(
        h.requests(&Method::PATCH, STATUS).len(),
        2,
        "intermediate statuses folded"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_status_conflict_is_reread_and_retried() {
    let fake = Harness::fake().await;
    fake.inject_error(Method::PATCH, STATUS, StatusCode::CONFLICT, 1);
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.mirrored(&etcd).await;
    eventually("running", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Running"))
    })
    .await;
    let codes: Vec<_> = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path
                .starts_with("/api/v1/namespaces/kube-system/pods/etcd-n1")
        })
        .map(|r| (r.method, r.status.map(|s| s.as_u16())))
        .collect();
    assert_eq!(
        codes,
        [
            (Method::PATCH, Some(409)),
            (Method::GET, Some(200)),
            (Method::PATCH, Some(200))
        ]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_stale_status_never_lands_on_a_recreated_mirror_pod() {
    let fake = Harness::fake().await;
    let old = static_pod("etcd", "etcd:1");
    let new = static_pod("etcd", "etcd:2");
    let mut h = Harness::start(fake, &[&old]).await;
    h.mirrored(&old).await;
    eventually("patched", || {
        (h.requests(&Method::PATCH, STATUS).len() == 1).then_some(())
    })
    .await;
    // The manifest changed; the status still describes the old version.
    h.status.send_replace(node_status(&[(&old, "Failed")]));
    h.desired.send_replace(snapshot(&[&new]));
    h.mirrored(&new).await;
    h.syncs(3).await;
    let status = h.fake.pod(NS, "etcd-n1").and_then(|p| p.status).unwrap();
    assert_eq!(
        status.phase.as_deref(),
        Some("Pending"),
        "not the old version's status"
    );
    h.status.send_replace(node_status(&[(&new, "Running")]));
    eventually("new version's status", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Running"))
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn events_are_posted_about_the_mirror_pod_and_repeats_bump_the_count() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.events.send(event("etcd", "BackOff")).await.unwrap();
    let uid = h.mirrored(&etcd).await;
    let posted = eventually("event", || pod_events(&h.fake).pop()).await;
    let involved = &posted.involved_object;
    assert_eq!(involved.kind.as_deref(), Some("Pod"));
    assert_eq!(involved.name.as_deref(), Some("etcd-n1"));
    assert_eq!(involved.namespace.as_deref(), Some(NS));
    assert_eq!(
        involved.uid.as_deref(),
        Some(uid.as_str()),
        "held until the mirror pod existed"
    );
    assert_eq!(
        involved.field_path.as_deref(),
        Some("spec.containers{etcd}")
    );
    assert_eq!(posted.metadata.namespace.as_deref(), Some(NS));
    assert_eq!(posted.reason.as_deref(), Some("BackOff"));
    assert_eq!(posted.type_.as_deref(), Some("Warning"));
    let source = posted.source.clone().unwrap();
    assert_eq!(
        (source.component.as_deref(), source.host.as_deref()),
        (Some("podvisor"), Some("n1"))
    );
    assert_eq!(posted.count, Some(1));

    h.events.send(event("etcd", "BackOff")).await.unwrap();
    let bumped = eventually("count bumped", || {
        pod_events(&h.fake).pop().filter(|e| e.count == Some(2))
    })
    .await;
    assert_eq!(bumped.metadata.name, posted.metadata.name);
    assert_eq!(pod_events(&h.fake).len(), 1, "a repeat is not a new event");
    assert_eq!(h.state.borrow().counters.events_posted, 2);
    h.stop().await;
}

#[tokio::test]
async fn events_are_buffered_while_the_server_is_down_and_the_oldest_dropped_when_full() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start_with(fake, &[&etcd], |c| c.event_buffer = 3, true).await;
    h.mirrored(&etcd).await;
    h.synced().await;
    h.fake.stop().await;
    h.state_until("unreachable", |s| {
        matches!(s.phase, MirrorPhase::Unreachable { .. })
    })
    .await;
    for i in 1..=5 {
        h.events
            .send(event("etcd", &format!("Reason{i}")))
            .await
            .unwrap();
    }
    h.state_until("buffered", |s| {
        s.counters.events_dropped == 2 && s.counters.events_pending == 3
    })
    .await;
    h.fake.restart().await;
    let posted = eventually("posted", || {
        let events = pod_events(&h.fake);
        (events.len() == 3).then_some(events)
    })
    .await;
    let mut reasons: Vec<_> = posted.iter().filter_map(|e| e.reason.clone()).collect();
    reasons.sort();
    assert_eq!(reasons, ["Reason3", "Reason4", "Reason5"]);
    let state = h
        .state_until("counted", |s| s.counters.events_posted == 3)
        .await;
    assert_eq!(
        (state.counters.events_pending, state.counters.events_dropped),
        (0, 2)
    );
    h.stop().await;
}

#[tokio::test]
async fn a_flood_of_events_about_one_pod_writes_at_most_the_kubelets_burst_issue_17() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.mirrored(&etcd).await;
    for i in 0..60 {
        let mut e = event("etcd", "Unhealthy");
        e.message = format!("Readiness probe failed: attempt {i}");
        h.events.send(e).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Distinct messages never fold in the buffer: each is posted or dropped on its own.
    h.state_until("every event handled", |s| {
        s.counters.events_posted + s.counters.events_dropped >= 60
    })
    .await;
    let writes = h
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.path.contains(&format!("/namespaces/{NS}/events")) && r.method != http::Method::GET
        })
        .count();
    assert!(
        writes <= 25,
        "{writes} event writes for one pod within a second"
    );
    // From the tenth message on, they share one combined event.
    let combined = pod_events(&h.fake)
        .into_iter()
        .filter(|e| {
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("(combined from similar events): "))
        })
        .count();
    assert_eq!(combined, 1);
    h.stop().await;
}

#[tokio::test]
async fn a_status_or_condition_someone_else_writes_is_corrected_or_kept_issue_17() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    h.mirrored(&etcd).await;
    eventually("first patch", || {
        (h.requests(&Method::PATCH, STATUS).len() == 1).then_some(())
    })
    .await;
    // A controller sets its own condition, and someone overwrites podvisor's phase.
    let api: kube::Api<Pod> = kube::Api::namespaced(h.fake.kube_client().await, NS);
    let other = serde_json::json!({"status": {"phase": "Failed", "conditions": [
        {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
    ]}});
    api.patch_status(
        "etcd-n1",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(&other),
    )
    .await
    .expect("another writer's patch");
    let fixed = eventually("phase put right", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Running"))
    })
    .await;
    let types: Vec<String> = fixed
        .conditions
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert!(
        types.contains(&"DisruptionTarget".to_owned()),
        "another writer's condition is kept: {types:?}"
    );
    h.syncs(3).await;
    assert_eq!(
        h.requests(&Method::PATCH, STATUS).len(),
        3,
        "ours, the other writer's, our correction, and no patch loop"
    );
    h.stop().await;
}

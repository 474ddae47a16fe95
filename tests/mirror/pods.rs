//! Mirror pods: recreated when deleted or outdated, orphans removed, other pods untouched,
//! rejections reported and retried with backoff.

use http::{Method, StatusCode};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;

const PODS: &str = "/api/v1/namespaces/kube-system/pods";

/// A pod stored as an admin would, bound to `node`; a mirror pod when `mirror_hash` is set.
fn stored_pod(name: &str, node: &str, mirror_hash: Option<&str>, owner_uid: &str) -> Pod {
    let annotations = mirror_hash.map(|h| {
        BTreeMap::from([
            ("kubernetes.io/config.mirror".to_owned(), h.to_owned()),
            ("kubernetes.io/config.hash".to_owned(), h.to_owned()),
        ])
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            annotations,
            owner_references: mirror_hash.map(|_| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: node.into(),
                    uid: owner_uid.into(),
                    controller: Some(true),
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "c".into(),
                image: Some("busybox:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
        status: None,
    }
}

#[tokio::test]
async fn a_mirror_pod_deleted_by_someone_is_recreated() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    let first = h.mirrored(&etcd).await;

    assert!(h.fake.force_delete_pod(NS, "etcd-n1"));
    let second = eventually("recreated after a forced delete", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.metadata.uid)
            .filter(|u| *u != first)
    })
    .await;

    // A graceful delete leaves the pod terminating: the node finishes it and recreates.
    eventually("running status on the new mirror pod", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Running"))
    })
    .await;
    assert!(h.fake.delete_pod(NS, "etcd-n1"));
    assert!(
        h.fake
            .pod(NS, "etcd-n1")
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    let third = eventually("recreated after a graceful delete", || {
        h.fake
            .pod(NS, "etcd-n1")
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .and_then(|p| p.metadata.uid)
            .filter(|u| *u != second)
    })
    .await;
    let state = h
        .state_until("mirrored as the third pod", |s| {
            s.pods.get(&etcd.key) == Some(&PodMirror::Mirrored { uid: third.clone() })
        })
        .await;
    assert_eq!(state.counters.mirrors_created, 3);
    eventually("status on the third mirror pod", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.status)
            .filter(|s| s.phase.as_deref() == Some("Running"))
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_mirror_pod_of_another_version_is_deleted_and_recreated() {
    let fake = Harness::fake().await;
    let node_uid = fake.set_node(&node("n1")).unwrap().metadata.uid.unwrap();
    let stale = fake
        .set_pod(&stored_pod("etcd-n1", "n1", Some("0ld"), &node_uid))
        .unwrap();
    let etcd = static_pod("etcd", "etcd:2");
    let mut h = Harness::start(fake, &[&etcd]).await;
    let uid = h.mirrored(&etcd).await;
    assert_ne!(Some(uid), stale.metadata.uid);
    let deletes = h.requests(&Method::DELETE, &format!("{PODS}/etcd-n1"));
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].status, Some(StatusCode::OK));

    // A manifest edit: the next version replaces the mirror pod the same way.
    let edited = static_pod("etcd", "etcd:3");
    h.desired.send_replace(snapshot(&[&edited]));
    h.status.send_replace(node_status(&[(&edited, "Running")]));
    h.mirrored(&edited).await;
    assert_eq!(
        h.requests(&Method::DELETE, &format!("{PODS}/etcd-n1"))
            .len(),
        2
    );
    h.stop().await;
}

#[tokio::test]
async fn orphaned_mirror_pods_are_deleted_and_other_pods_left_alone() {
    let fake = Harness::fake().await;
    let n1 = fake.set_node(&node("n1")).unwrap().metadata.uid.unwrap();
    let n2 = fake.set_node(&node("n2")).unwrap().metadata.uid.unwrap();
    fake.set_pod(&stored_pod("orphan-n1", "n1", Some("h"), &n1))
        .unwrap();
    let plain = fake.set_pod(&stored_pod("plain", "n1", None, "")).unwrap();
    let foreign = fake
        .set_pod(&stored_pod("etcd-n2", "n2", Some("h"), &n2))
        .unwrap();
    let mut h = Harness::start(fake, &[]).await;
    eventually("orphan deleted", || {
        h.fake.pod(NS, "orphan-n1").is_none().then_some(())
    })
    .await;
    h.syncs(2).await;
    // not a mirror pod: never deleted, but failed (issue 13: no pod sits bound and Pending)
    let plain_now = h.fake.pod(NS, "plain").expect("not deleted");
    assert_eq!(plain_now.spec, plain.spec);
    assert_eq!(
        plain_now.status.and_then(|s| s.reason).as_deref(),
        Some("StaticPodsOnly")
    );
    assert_eq!(
        h.fake.pod(NS, "etcd-n2"),
        Some(foreign),
        "another node's: untouched"
    );
    assert_eq!(h.state.borrow().counters.mirrors_deleted, 1);
    h.stop().await;
}

#[tokio::test]
async fn orphans_are_kept_until_the_manifests_are_fully_known() {
    let fake = Harness::fake().await;
    let n1 = fake.set_node(&node("n1")).unwrap().metadata.uid.unwrap();
    fake.set_pod(&stored_pod("orphan-n1", "n1", Some("h"), &n1))
        .unwrap();
    let mut h = Harness::start(fake, &[]).await;
    h.desired.send_replace(None);
    h.synced().await;
    h.syncs(2).await;
    assert!(
        h.fake.pod(NS, "orphan-n1").is_some(),
        "manifests not read yet"
    );

    let mut broken = Snapshot::default();
    broken
        .untouchable
        .insert("/etc/kubernetes/manifests/broken.yaml".into());
    h.desired.send_replace(Some(Arc::new(broken)));
    h.syncs(2).await;
    assert!(
        h.fake.pod(NS, "orphan-n1").is_some(),
        "a rejected file's pods are unknown"
    );

    h.desired.send_replace(snapshot(&[]));
    eventually("orphan deleted", || {
        h.fake.pod(NS, "orphan-n1").is_none().then_some(())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_removed_static_pod_has_its_mirror_pod_deleted() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let apiserver = static_pod("kube-apiserver", "kube-apiserver:1");
    let mut h = Harness::start(fake, &[&etcd, &apiserver]).await;
    h.mirrored(&etcd).await;
    h.mirrored(&apiserver).await;
    h.desired.send_replace(snapshot(&[&apiserver]));
    eventually("etcd mirror deleted", || {
        h.fake.pod(NS, "etcd-n1").is_none().then_some(())
    })
    .await;
    assert!(h.fake.pod(NS, "kube-apiserver-n1").is_some());
    let state = h
        .state_until("etcd forgotten", |s| !s.pods.contains_key(&etcd.key))
        .await;
    assert!(matches!(
        state.pods[&apiserver.key],
        PodMirror::Mirrored { .. }
    ));
    h.stop().await;
}

#[tokio::test]
async fn a_rejected_mirror_pod_is_reported_and_retried_with_backoff() {
    let fake = Harness::fake().await;
    fake.inject_error(Method::POST, PODS, StatusCode::UNPROCESSABLE_ENTITY, 3);
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&etcd]).await;
    let rejected = h
        .state_until("rejected", |s| {
            matches!(s.pods.get(&etcd.key), Some(PodMirror::Rejected { .. }))
        })
        .await;
    let since = Instant::now();
    assert_eq!(
        rejected.pods[&etcd.key].to_string(),
        "mirror pod rejected: the server rejected our request due to an error in our request"
    );
    // The phase stays synced: the API server is fine, this pod is not.
    assert!(matches!(rejected.phase, MirrorPhase::Synced { .. }));
    h.mirrored(&etcd).await;
    let waited = since.elapsed();
    let posts = h.requests(&Method::POST, PODS);
    let codes: Vec<_> = posts.iter().map(|r| r.status.map(|s| s.as_u16())).collect();
    assert_eq!(
        codes,
        [Some(422), Some(422), Some(422), Some(201)],
        "no retry storm"
    );
    // Jittered delays of 100, 200 and 400 ms, each at least halved.
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    let state = h.synced().await;
    assert_eq!(state.counters.mirrors_rejected, 3);
    h.stop().await;
}

#[tokio::test]
async fn a_mirror_pod_admission_refuses_stays_rejected_with_the_servers_reason() {
    let fake = Harness::fake().await;
    let mut odd = static_pod("odd", "busybox:1");
    odd.spec.priority_class_name = Some("no-such-class".into());
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start(fake, &[&odd, &etcd]).await;
    h.mirrored(&etcd).await;
    let state = h
        .state_until("rejected", |s| {
            matches!(s.pods.get(&odd.key), Some(PodMirror::Rejected { .. }))
        })
        .await;
    assert_eq!(
        state.pods[&odd.key].to_string(),
        "mirror pod rejected: pods \"odd-n1\" is forbidden: no PriorityClass with name no-such-class was found"
    );
    h.syncs(12).await;
    let attempts = h
        .requests(&Method::POST, PODS)
        .iter()
        .filter(|r| r.status == Some(StatusCode::FORBIDDEN))
        .count();
    // Retries at jittered 100, 200, 400, 400.. ms, against a sync every 50 ms.
    assert!(
        (2..=7).contains(&attempts),
        "backoff, not a retry per sync: {attempts}"
    );

    // Its events are posted about the pod by name, as there is no mirror pod to point at.
    h.events.send(event("odd", "BackOff")).await.unwrap();
    let posted = eventually("event", || pod_events(&h.fake).pop()).await;
    assert_eq!(posted.involved_object.name.as_deref(), Some("odd-n1"));
    assert_eq!(posted.involved_object.uid, None);
    h.stop().await;
}

#[tokio::test]
async fn mirror_pods_are_watched_not_listed_and_a_deletion_is_seen_through_the_watch_issue_17() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    // A long resync: only the watch can explain a prompt recreation.
    let mut h = Harness::start_with(
        fake,
        &[&etcd],
        |c| c.timings.resync = Duration::from_secs(3600),
        true,
    )
    .await;
    let first = h.mirrored(&etcd).await;
    h.synced().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.fake.request_count("list"), 1, "one list, then the watch");
    assert_eq!(h.fake.request_count("watch"), 1);

    assert!(h.fake.force_delete_pod(NS, "etcd-n1"));
    eventually("recreated through the watch", || {
        h.fake
            .pod(NS, "etcd-n1")
            .and_then(|p| p.metadata.uid)
            .filter(|u| *u != first)
    })
    .await;
    assert_eq!(h.fake.request_count("list"), 1, "still no list");
    h.stop().await;
}

#[tokio::test]
async fn a_watch_the_server_ends_is_resumed_and_an_expired_version_is_listed_again() {
    let fake = Harness::fake().await;
    let etcd = static_pod("etcd", "etcd:1");
    let mut h = Harness::start_with(
        fake,
        &[&etcd],
        |c| c.timings.watch_timeout = Duration::from_secs(1),
        true,
    )
    .await;
    h.mirrored(&etcd).await;
    h.synced().await;
    // The server closes each watch after its timeoutSeconds: resumed, not relisted.
    eventually("a resumed watch", || {
        (h.fake.request_count("watch") >= 3).then_some(())
    })
    .await;
    assert_eq!(h.fake.request_count("list"), 1);
    // A restart forgets the history: the next watch's version is too old (410).
    h.fake.restart().await;
    eventually("listed again", || {
        (h.fake.request_count("list") >= 2).then_some(())
    })
    .await;
    h.stop().await;
}

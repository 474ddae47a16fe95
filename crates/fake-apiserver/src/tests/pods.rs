//! Mirror pods through the pod API: server metadata, reads, lists, status patches, conflicts
//! and the two ways a pod is deleted.

use super::*;

#[tokio::test]
async fn created_mirror_pod_gets_server_metadata_defaults_and_pending_status() {
    let (fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    let uid = meta.uid.clone().unwrap();
    assert_eq!(uid.len(), 36);
    assert_eq!(&uid[14..15], "4", "a version-4 UUID: {uid}");
    assert!(
        meta.resource_version
            .as_ref()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.termination_grace_period_seconds, Some(30));
    assert_eq!(
        spec.containers[0].image_pull_policy.as_deref(),
        Some("IfNotPresent")
    );
    let status = created.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let fetched = pods(&client).get("etcd-n1").await.unwrap();
    assert_eq!(fetched, created);
    assert_eq!(fake.pod(NS, "etcd-n1"), Some(created));
}

#[tokio::test]
async fn get_of_a_missing_pod_is_not_found() {
    let (_fake, client, _) = cluster().await;
    let status = api_error(pods(&client).get("nope").await);
    assert_eq!(status.code, 404);
    assert_eq!(status.reason, "NotFound");
    assert_eq!(status.message, "pods \"nope\" not found");
    assert!(status.is_not_found());
    let details = status.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("nope", "pods")
    );
}

#[tokio::test]
async fn creating_a_pod_that_exists_is_already_exists() {
    let (_fake, client, node_uid) = cluster().await;
    let pod = mirror_pod("etcd-n1", "n1", &node_uid);
    pods(&client)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    let status = api_error(pods(&client).create(&PostParams::default(), &pod).await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(status.message, "pods \"etcd-n1\" already exists");
}

#[tokio::test]
async fn list_filters_by_node_name_field_selector_and_labels() {
    let (_fake, client, n1) = cluster().await;
    let n2 = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node("n2"))
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    for (name, node, uid) in [
        ("etcd-n1", "n1", &n1),
        ("apiserver-n1", "n1", &n1),
        ("etcd-n2", "n2", &n2),
    ] {
        pods(&client)
            .create(&PostParams::default(), &mirror_pod(name, node, uid))
            .await
            .unwrap();
    }
    let on_n1 = Api::<Pod>::all(client.clone())
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    let names: Vec<_> = on_n1
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names, ["apiserver-n1", "etcd-n1"]);
    assert!(on_n1.metadata.resource_version.is_some());
    let etcd = pods(&client)
        .list(&ListParams::default().labels("component=etcd-n2"))
        .await
        .unwrap();
    assert_eq!(etcd.items.len(), 1);
    let status = api_error(
        pods(&client)
            .list(&ListParams::default().fields("spec.bogus=x"))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (400, "BadRequest"));
    assert_eq!(status.message, "field label not supported: spec.bogus");
}

#[tokio::test]
async fn merge_patch_of_status_changes_status_only_and_bumps_resource_version() {
    let (_fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let patch = json!({"status": {"phase": "Running", "podIP": "10.0.0.5"},
                       "spec": {"nodeName": "elsewhere"}});
    let patched = pods(&client)
        .patch_status("etcd-n1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        patched.status.as_ref().unwrap().phase.as_deref(),
        Some("Running")
    );
    assert_eq!(
        patched.status.as_ref().unwrap().pod_ip.as_deref(),
        Some("10.0.0.5")
    );
    assert_eq!(patched.spec.unwrap().node_name.as_deref(), Some("n1"));
    let before: u64 = created.metadata.resource_version.unwrap().parse().unwrap();
    let after: u64 = patched.metadata.resource_version.unwrap().parse().unwrap();
    assert!(after > before);
    assert_eq!(
        patched.metadata.generation,
        Some(1),
        "status writes leave generation alone"
    );
}

#[tokio::test]
async fn strategic_status_patch_merges_conditions_by_type() {
    let (fake, client, node_uid) = cluster().await;
    pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let first = json!({"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
    let second = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    for patch in [first, second] {
        pods(&client)
            .patch_status(
                "etcd-n1",
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .unwrap();
    }
    let conditions = fake
        .pod(NS, "etcd-n1")
        .unwrap()
        .status
        .unwrap()
        .conditions
        .unwrap();
    let got: Vec<_> = conditions
        .iter()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect();
    assert_eq!(got, [("Ready", "True"), ("PodScheduled", "True")]);
    let last = fake.requests().pop().unwrap();
    assert_eq!(last.method, Method::PATCH);
    assert_eq!(
        last.path,
        "/api/v1/namespaces/kube-system/pods/etcd-n1/status"
    );
    assert_eq!(
        last.content_type.as_deref(),
        Some("application/strategic-merge-patch+json")
    );
    assert_eq!(last.status, Some(StatusCode::OK));
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_is_a_conflict() {
    let (fake, client, node_uid) = cluster().await;
    fake.set_node_restriction(false);
    let stale = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let mut fresh = stale.clone();
    fresh.metadata.labels = Some(BTreeMap::from([("tier".into(), "control-plane".into())]));
    pods(&client)
        .replace("etcd-n1", &PostParams::default(), &fresh)
        .await
        .unwrap();
    let status = api_error(
        pods(&client)
            .replace("etcd-n1", &PostParams::default(), &stale)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on pods \"etcd-n1\": the object has been modified; please apply your changes to the latest version and try again"
    );
}

#[tokio::test]
async fn delete_with_another_uid_precondition_is_a_conflict_and_keeps_the_pod() {
    let (fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    let status = api_error(
        pods(&client)
            .delete("etcd-n1", &delete_now("old-uid"))
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        format!(
            "Operation cannot be fulfilled on Pod \"etcd-n1\": the UID in the precondition (old-uid) does not match the UID in record ({uid}). The object might have been deleted and then recreated"
        )
    );
    assert!(fake.pod(NS, "etcd-n1").is_some());
}

#[tokio::test]
async fn delete_with_grace_zero_and_matching_uid_removes_the_pod_and_returns_it() {
    let (fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let deleted = pods(&client)
        .delete("etcd-n1", &delete_now(&uid))
        .await
        .unwrap();
    let pod = deleted.left().expect("pods answer DELETE with the object");
    assert_eq!(pod.metadata.uid, Some(uid.clone()));
    assert_eq!(fake.pod(NS, "etcd-n1"), None);
    let status = api_error(pods(&client).delete("etcd-n1", &delete_now(&uid)).await);
    assert_eq!(status.code, 404);
}

#[tokio::test]
async fn user_delete_leaves_a_terminating_pod_until_its_node_deletes_it() {
    let (fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    assert!(fake.delete_pod(NS, "etcd-n1"));
    let terminating = pods(&client).get("etcd-n1").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert_eq!(terminating.metadata.generation, Some(2));
    let uid = created.metadata.uid.unwrap();
    pods(&client)
        .delete("etcd-n1", &delete_now(&uid))
        .await
        .unwrap();
    assert_eq!(fake.pod(NS, "etcd-n1"), None);
}

#[tokio::test]
async fn invalid_pod_is_unprocessable_with_field_causes() {
    let (_fake, client, node_uid) = cluster().await;
    let mut pod = mirror_pod("Bad_Name", "n1", &node_uid);
    pod.spec.as_mut().unwrap().containers.clear();
    let status = api_error(pods(&client).create(&PostParams::default(), &pod).await);
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert!(status.message.starts_with("Pod \"Bad_Name\" is invalid: [metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"));
    let causes = status.details.unwrap().causes;
    let fields: Vec<_> = causes
        .iter()
        .map(|c| (c.reason.as_str(), c.field.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("FieldValueInvalid", "metadata.name"),
            ("FieldValueRequired", "spec.containers")
        ]
    );
}

#[tokio::test]
async fn creating_with_a_resource_version_is_an_internal_error() {
    let (_fake, client, node_uid) = cluster().await;
    let mut pod = mirror_pod("etcd-n1", "n1", &node_uid);
    pod.metadata.resource_version = Some("7".into());
    let status = api_error(pods(&client).create(&PostParams::default(), &pod).await);
    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "resourceVersion should not be set on objects to be created"
    );
}

#[tokio::test]
async fn admin_writes_bypass_admission_and_set_status() {
    let fake = FakeApiServer::start().await;
    let stored = fake.set_node(&node("n1")).unwrap();
    let mut pod = mirror_pod("etcd-n1", "n1", stored.metadata.uid.as_deref().unwrap());
    pod.metadata.annotations = None;
    pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
        phase: Some("Running".into()),
        ..Default::default()
    });
    let stored = fake.set_pod(&pod).unwrap();
    assert_eq!(stored.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(fake.force_delete_pod(NS, "etcd-n1"));
    assert!(fake.pods().is_empty());
    let mut invalid = pod.clone();
    invalid.spec.as_mut().unwrap().containers.clear();
    assert_eq!(fake.set_pod(&invalid).unwrap_err().code, 422);
}

#[tokio::test]
async fn status_patch_carrying_another_uid_fails_the_storage_precondition() {
    let (_fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.unwrap();
    // The kubelet puts the pod's uid in every status patch, to miss a recreated pod.
    let patch = json!({"metadata": {"uid": "stale"}, "status": {"phase": "Running"}});
    let status = api_error(
        pods(&client)
            .patch_status(
                "etcd-n1",
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        format!(
            "Operation cannot be fulfilled on pods \"etcd-n1\": StorageError: invalid object, Code: 4, Key: /registry/pods/kube-system/etcd-n1, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: stale, UID in object meta: {uid}"
        )
    );
    let patch = json!({"metadata": {"uid": uid}, "status": {"phase": "Running"}});
    pods(&client)
        .patch_status(
            "etcd-n1",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
}

//! Nodes, leases, events and the raw protocol: patch types, unknown paths, methods.

use super::*;

#[tokio::test]
async fn leases_are_renewed_with_optimistic_concurrency() {
    let (fake, client, _) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let created = leases
        .create(&PostParams::default(), &lease("n1", "n1"))
        .await
        .unwrap();
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().renew_time = Some(MicroTime(Timestamp::now()));
    renewed.spec.as_mut().unwrap().holder_identity = Some("n1-again".into());
    let renewed = leases
        .replace("n1", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_ne!(
        renewed.metadata.resource_version,
        created.metadata.resource_version
    );
    let status = api_error(leases.replace("n1", &PostParams::default(), &created).await);
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        status.message,
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"n1\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let stored = fake.lease("kube-node-lease", "n1").unwrap();
    assert_eq!(
        stored.spec.unwrap().holder_identity.as_deref(),
        Some("n1-again")
    );
    let status = api_error(leases.get("n2").await);
    assert_eq!(
        status.message,
        "leases.coordination.k8s.io \"n2\" not found"
    );
}

#[tokio::test]
async fn apply_patch_creates_then_merges_and_requires_a_field_manager() {
    let (fake, client, _) = cluster().await;
    let path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
    let status = api_error(
        raw(
            &client,
            Method::PATCH,
            path,
            "application/apply-patch+yaml",
            "{}",
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        status.message,
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let params = PatchParams::apply("podvisor");
    let body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}});
    leases
        .patch("n1", &params, &Patch::Apply(&body))
        .await
        .unwrap();
    let body = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                      "spec": {"leaseDurationSeconds": 10}});
    leases
        .patch("n1", &params, &Patch::Apply(&body))
        .await
        .unwrap();
    let spec = fake.lease("kube-node-lease", "n1").unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some("n1"));
    assert_eq!(spec.lease_duration_seconds, Some(10));
}

#[tokio::test]
async fn events_are_stored_for_both_event_apis() {
    let (fake, client, _) = cluster().await;
    let regarding = ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(NS.into()),
        name: Some("etcd-n1".into()),
        ..ObjectReference::default()
    };
    let core = Event {
        metadata: ObjectMeta {
            name: Some("etcd-n1.17a".into()),
            ..ObjectMeta::default()
        },
        involved_object: regarding.clone(),
        reason: Some("Started".into()),
        type_: Some("Normal".into()),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &core)
        .await
        .unwrap();
    let v1 = EventV1 {
        metadata: ObjectMeta {
            name: Some("etcd-n1.17b".into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(Timestamp::now())),
        regarding: Some(regarding),
        reason: Some("Started".into()),
        action: Some("Start".into()),
        reporting_controller: Some("podvisor".into()),
        reporting_instance: Some("podvisor-n1".into()),
        type_: Some("Normal".into()),
        ..EventV1::default()
    };
    let events_v1 = Api::<EventV1>::namespaced(client.clone(), NS);
    events_v1.create(&PostParams::default(), &v1).await.unwrap();
    let listed = Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default().fields("involvedObject.name=etcd-n1"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let mut about_the_node = core.clone();
    about_the_node.metadata.name = Some("n1.17d".into());
    about_the_node.involved_object = ObjectReference {
        kind: Some("Node".into()),
        name: Some("n1".into()),
        ..ObjectReference::default()
    };
    let status = api_error(
        Api::<Event>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &about_the_node)
            .await,
    );
    assert_eq!(
        status.message,
        "Event \"n1.17d\" is invalid: involvedObject.namespace: Invalid value: \"\": does not match event.namespace"
    );
    assert_eq!(fake.events().len(), 1);
    assert_eq!(
        fake.events_v1()[0].reporting_controller.as_deref(),
        Some("podvisor")
    );
    let mut incomplete = v1.clone();
    incomplete.metadata.name = Some("etcd-n1.17c".into());
    incomplete.reporting_controller = None;
    let status = api_error(events_v1.create(&PostParams::default(), &incomplete).await);
    assert_eq!(status.code, 422);
    assert_eq!(
        status.message,
        "Event.events.k8s.io \"etcd-n1.17c\" is invalid: reportingController: Required value"
    );
}

#[tokio::test]
async fn node_status_patch_and_delete_answers_a_success_status() {
    let (fake, client, node_uid) = cluster().await;
    let nodes = Api::<Node>::all(client);
    let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "True",
                                                   "reason": "KubeletReady"}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let ready = fake.node("n1").unwrap().status.unwrap().conditions.unwrap();
    assert_eq!(ready[0].reason.as_deref(), Some("KubeletReady"));
    let deleted = nodes.delete("n1", &DeleteParams::default()).await.unwrap();
    let status = deleted.right().expect("nodes answer DELETE with a Status");
    assert!(status.is_success());
    let details = status.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("n1", "nodes")
    );
    assert_eq!(details.uid, node_uid);
    assert!(fake.node("n1").is_none());
}

#[tokio::test]
async fn json_patch_is_applied_and_other_patch_types_are_unsupported_media() {
    let (fake, client, _) = cluster().await;
    let path = "/api/v1/nodes/n1";
    let ops = r#"[{"op": "add", "path": "/metadata/labels", "value": {"a": "1"}},
                  {"op": "replace", "path": "/metadata/labels/a", "value": "2"}]"#;
    raw(
        &client,
        Method::PATCH,
        path,
        "application/json-patch+json",
        ops,
    )
    .await
    .unwrap();
    let labels = fake.node("n1").unwrap().metadata.labels.unwrap();
    assert_eq!(labels.get("a").map(String::as_str), Some("2"));
    let failing = r#"[{"op": "test", "path": "/metadata/labels/a", "value": "9"}]"#;
    let status = api_error(
        raw(
            &client,
            Method::PATCH,
            path,
            "application/json-patch+json",
            failing,
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let status = api_error(raw(&client, Method::PATCH, path, "application/xml", "<x/>").await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (415, "UnsupportedMediaType")
    );
    assert!(
        status
            .message
            .starts_with("the body of the request was in an unknown format")
    );
}

#[tokio::test]
async fn unknown_paths_are_not_found_and_wrong_methods_not_allowed() {
    let (_fake, client, _) = cluster().await;
    let status = api_error(
        raw(
            &client,
            Method::GET,
            "/api/v1/secrets",
            "application/json",
            "",
        )
        .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(
        status.message,
        "the server could not find the requested resource"
    );
    let status = api_error(
        raw(
            &client,
            Method::POST,
            "/api/v1/nodes/n1",
            "application/json",
            "{}",
        )
        .await,
    );
    assert_eq!(
        (status.code, status.reason.as_str()),
        (405, "MethodNotAllowed")
    );
    assert_eq!(client.apiserver_version().await.unwrap().minor, "34");
}

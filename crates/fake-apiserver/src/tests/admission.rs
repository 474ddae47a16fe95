//! The admission a kubelet meets when it writes mirror pods, its node and its lease.

use super::*;

#[tokio::test]
async fn a_node_may_not_update_its_mirror_pod() {
    let (_fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let status = api_error(
        pods(&client)
            .replace("etcd-n1", &PostParams::default(), &created)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        "pods \"etcd-n1\" is forbidden: unexpected operation \"UPDATE\", node \"n1\" can only create and delete mirror pods"
    );
}

#[tokio::test]
async fn node_restriction_rejects_pods_a_kubelet_may_not_create() {
    let (_fake, client, node_uid) = cluster().await;
    let forbidden = |why: &str| format!("pods \"etcd-n1\" is forbidden: {why}");
    type Mutation = Box<dyn Fn(&mut Pod)>;
    let cases: Vec<(&str, Mutation, String)> = vec![
        (
            "no mirror annotation",
            Box::new(|p: &mut Pod| {
                p.metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .remove("kubernetes.io/config.mirror");
            }),
            forbidden(
                "pod does not have \"kubernetes.io/config.mirror\" annotation, node \"n1\" can only create mirror pods",
            ),
        ),
        (
            "no owner",
            Box::new(|p: &mut Pod| p.metadata.owner_references = None),
            forbidden("node \"n1\" can only create pods with an owner reference set to itself"),
        ),
        (
            "stale node uid",
            Box::new(|p: &mut Pod| {
                p.metadata.owner_references.as_mut().unwrap()[0].uid = "gone".into()
            }),
            forbidden(&format!(
                "node n1 UID mismatch: expected gone got {node_uid}"
            )),
        ),
        (
            "not controller",
            Box::new(|p: &mut Pod| {
                p.metadata.owner_references.as_mut().unwrap()[0].controller = None
            }),
            forbidden(
                "node \"n1\" can only create pods with a controller owner reference set to itself",
            ),
        ),
        (
            "service account",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().service_account_name = Some("default".into())
            }),
            forbidden("a mirror pod may not reference service accounts"),
        ),
        (
            "configmap volume",
            Box::new(|p: &mut Pod| {
                p.spec.as_mut().unwrap().volumes = Some(vec![Volume {
                    name: "cfg".into(),
                    projected: Some(k8s_openapi::api::core::v1::ProjectedVolumeSource {
                        sources: Some(vec![VolumeProjection {
                            config_map: Some(Default::default()),
                            ..VolumeProjection::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Volume::default()
                }]);
            }),
            forbidden("node \"n1\" can not create pods that reference configmaps"),
        ),
    ];
    for (case, mutate, message) in cases {
        let mut pod = mirror_pod("etcd-n1", "n1", &node_uid);
        mutate(&mut pod);
        let status = api_error(pods(&client).create(&PostParams::default(), &pod).await);
        assert_eq!(
            (status.code, status.reason.as_str()),
            (403, "Forbidden"),
            "{case}"
        );
        assert_eq!(status.message, message, "{case}");
    }
}

#[tokio::test]
async fn mirror_pod_for_a_node_that_does_not_exist_is_node_not_found() {
    let (_fake, client, _) = cluster().await;
    let status = api_error(
        pods(&client)
            .create(
                &PostParams::default(),
                &mirror_pod("etcd-ghost", "ghost", "u"),
            )
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    assert_eq!(status.message, "node \"ghost\" not found");
}

#[tokio::test]
async fn without_node_restriction_plain_pods_are_admitted() {
    let (fake, client, _) = cluster().await;
    fake.set_node_restriction(false);
    let mut pod = mirror_pod("plain", "n1", "whatever");
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
    pods(&client)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_named_node_identity_may_only_modify_itself() {
    let (fake, client, _) = cluster().await;
    fake.set_node_identity(Some("n1"));
    let nodes = Api::<Node>::all(client.clone());
    let status = api_error(nodes.create(&PostParams::default(), &node("n2")).await);
    assert_eq!(
        status.message,
        "nodes \"n2\" is forbidden: node \"n1\" is not allowed to modify node \"n2\""
    );
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    leases
        .create(&PostParams::default(), &lease("n1", "n1"))
        .await
        .unwrap();
    let status = api_error(
        leases
            .create(&PostParams::default(), &lease("n2", "n1"))
            .await,
    );
    assert!(
        status
            .message
            .ends_with("can only access node lease with the same name as the requesting node")
    );
}

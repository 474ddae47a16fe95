//! An unavailable or misbehaving API server: errors, refused connections, hangs, restarts.

use super::*;

#[tokio::test]
async fn fail_mode_answers_internal_error_until_normal() {
    let (fake, client, _) = cluster().await;
    fake.set_mode(Mode::Fail(StatusCode::INTERNAL_SERVER_ERROR));
    let status = api_error(Api::<Node>::all(client.clone()).get("n1").await);
    assert_eq!(
        (status.code, status.reason.as_str()),
        (500, "InternalError")
    );
    assert!(status.message.starts_with("Internal error occurred: "));
    fake.set_mode(Mode::Normal);
    Api::<Node>::all(client).get("n1").await.unwrap();
}

#[tokio::test]
async fn stopped_server_refuses_connections_and_restart_keeps_the_objects() {
    let (mut fake, client, node_uid) = cluster().await;
    let url = fake.url();
    fake.stop().await;
    let err = Api::<Node>::all(client.clone())
        .get("n1")
        .await
        .unwrap_err();
    assert!(
        !matches!(err, Error::Api(_)),
        "a transport error, got {err:?}"
    );
    let addr = url.trim_start_matches("http://");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    fake.restart().await;
    assert_eq!(fake.url(), url);
    let node = Api::<Node>::all(client).get("n1").await.unwrap();
    assert_eq!(node.metadata.uid, Some(node_uid));
}

#[tokio::test]
async fn hang_mode_makes_client_calls_time_out() {
    let (fake, client, _) = cluster().await;
    fake.set_mode(Mode::Hang);
    let nodes = Api::<Node>::all(client.clone());
    let outcome = tokio::time::timeout(Duration::from_millis(300), nodes.get("n1")).await;
    assert!(
        outcome.is_err(),
        "the call must still be waiting: {outcome:?}"
    );
    assert_eq!(fake.requests().last().unwrap().status, None);
    fake.set_mode(Mode::Normal);
    nodes.get("n1").await.unwrap();
}

#[tokio::test]
async fn injected_error_fails_only_the_scripted_requests() {
    let (fake, client, node_uid) = cluster().await;
    pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let path = "/api/v1/namespaces/kube-system/pods/etcd-n1/status";
    fake.inject_error(Method::PATCH, path, StatusCode::CONFLICT, 1);
    let patch = Patch::Merge(json!({"status": {"phase": "Running"}}));
    let status = api_error(
        pods(&client)
            .patch_status("etcd-n1", &PatchParams::default(), &patch)
            .await,
    );
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    pods(&client)
        .patch_status("etcd-n1", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let codes: Vec<_> = fake
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.status.unwrap().as_u16())
        .collect();
    assert_eq!(codes, [409, 200]);
}

#[tokio::test]
async fn kubeconfig_token_is_sent_and_can_be_required() {
    let fake = FakeApiServer::start().await;
    fake.require_token(Some("s3cret"));
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&fake.kubeconfig_yaml("s3cret")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    Api::<Node>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let wrong = fake.kube_client().await;
    let status = api_error(Api::<Node>::all(wrong).list(&ListParams::default()).await);
    assert_eq!((status.code, status.reason.as_str()), (401, "Unauthorized"));
}

#[tokio::test]
async fn requests_are_counted_by_kubernetes_verb() {
    let (fake, client, node_uid) = cluster().await;
    let pod = mirror_pod("etcd-n1", "n1", &node_uid);
    pods(&client)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap();
    pods(&client).get("etcd-n1").await.unwrap();
    pods(&client).list(&ListParams::default()).await.unwrap();
    let patch = Patch::Merge(json!({"status": {"phase": "Running"}}));
    pods(&client)
        .patch_status("etcd-n1", &PatchParams::default(), &patch)
        .await
        .unwrap();
    pods(&client)
        .delete("etcd-n1", &delete_now(""))
        .await
        .unwrap_err();
    let counts: Vec<usize> = ["create", "get", "list", "patch", "delete", "watch"]
        .iter()
        .map(|verb| fake.request_count(verb))
        .collect();
    // Two creates: node n1 by `cluster()`, then the pod; the delete fails its precondition.
    assert_eq!(counts, [2, 1, 1, 1, 1, 0]);
}

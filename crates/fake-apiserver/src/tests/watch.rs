//! Watch through kube-rs's `Api::watch`: the changes after a resourceVersion in order,
//! selectors, expiry, bookmarks, and the ways a stream ends.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{WatchEvent, WatchParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

type Events<K> = BoxStream<'static, Result<WatchEvent<K>, Error>>;

/// Starts a watch of `api` from `version`.
async fn watch(api: &Api<Pod>, params: &WatchParams, version: &str) -> Events<Pod> {
    api.watch(params, version).await.unwrap().boxed()
}

/// The next item of a stream, `None` at its end; fails the test after 5 s of silence.
async fn next<K>(events: &mut Events<K>) -> Option<Result<WatchEvent<K>, Error>> {
    tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("a watch event or the end of the stream within 5 s")
}

/// Type, name and resourceVersion of the next pod event.
async fn next_brief(events: &mut Events<Pod>) -> (&'static str, String, String) {
    let event = next(events).await.expect("an event, not the end").unwrap();
    let (kind, pod) = match event {
        WatchEvent::Added(p) => ("ADDED", p),
        WatchEvent::Modified(p) => ("MODIFIED", p),
        WatchEvent::Deleted(p) => ("DELETED", p),
        WatchEvent::Bookmark(b) => return ("BOOKMARK", String::new(), b.metadata.resource_version),
        WatchEvent::Error(status) => panic!("unexpected error event: {status:?}"),
    };
    (kind, name(&pod), version(&pod))
}

/// Every event until the stream ends, briefly.
async fn rest(events: &mut Events<Pod>) -> Vec<(&'static str, String, String)> {
    let mut seen = Vec::new();
    while let Some(event) = next(events).await {
        seen.push(match event.unwrap() {
            WatchEvent::Added(p) => ("ADDED", name(&p), version(&p)),
            WatchEvent::Modified(p) => ("MODIFIED", name(&p), version(&p)),
            WatchEvent::Deleted(p) => ("DELETED", name(&p), version(&p)),
            WatchEvent::Bookmark(b) => ("BOOKMARK", String::new(), b.metadata.resource_version),
            WatchEvent::Error(status) => panic!("unexpected error event: {status:?}"),
        });
    }
    seen
}

fn name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn version(pod: &Pod) -> String {
    pod.metadata.resource_version.clone().unwrap_or_default()
}

async fn list_version(api: &Api<Pod>) -> String {
    let list = api.list(&ListParams::default()).await.unwrap();
    list.metadata.resource_version.unwrap()
}

/// The `Status` of the next event, which must be an `ERROR`.
async fn error_event(events: &mut Events<Pod>) -> Box<Status> {
    match next(events).await {
        Some(Ok(WatchEvent::Error(status))) => status,
        other => panic!("expected an ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_from_a_lists_resource_version_sees_later_create_patch_and_delete_in_order() {
    let (_fake, client, node_uid) = cluster().await;
    let rv = list_version(&pods(&client)).await;
    let mut events = watch(&pods(&client), &WatchParams::default(), &rv).await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let patch = Patch::Merge(json!({"status": {"phase": "Running"}}));
    let patched = pods(&client)
        .patch_status("etcd-n1", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    pods(&client)
        .delete("etcd-n1", &delete_now(&uid))
        .await
        .unwrap();
    match next(&mut events).await {
        Some(Ok(WatchEvent::Added(pod))) => assert_eq!(pod, created),
        other => panic!("expected ADDED, got {other:?}"),
    }
    match next(&mut events).await {
        Some(Ok(WatchEvent::Modified(pod))) => assert_eq!(pod, patched),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // The last state, at the revision of its removal.
    let deleted_at = (version(&patched).parse::<u64>().unwrap() + 1).to_string();
    assert_eq!(
        next_brief(&mut events).await,
        ("DELETED", "etcd-n1".into(), deleted_at)
    );
}

#[tokio::test]
async fn field_selectors_by_node_name_and_by_name_skip_other_pods() {
    let (_fake, client, n1) = cluster().await;
    let n2 = Api::<Node>::all(client.clone())
        .create(&PostParams::default(), &node("n2"))
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let rv = list_version(&pods(&client)).await;
    let all = Api::<Pod>::all(client.clone());
    let on_n1 = WatchParams::default().fields("spec.nodeName=n1").timeout(2);
    let mut node_events = watch(&all, &on_n1, &rv).await;
    let by_name = WatchParams::default()
        .fields("metadata.name=apiserver-n1")
        .timeout(2);
    let mut name_events = watch(&pods(&client), &by_name, &rv).await;
    for (name, node, uid) in [
        ("etcd-n2", "n2", &n2),
        ("etcd-n1", "n1", &n1),
        ("apiserver-n1", "n1", &n1),
    ] {
        pods(&client)
            .create(&PostParams::default(), &mirror_pod(name, node, uid))
            .await
            .unwrap();
    }
    let seen: Vec<_> = rest(&mut node_events)
        .await
        .into_iter()
        .map(|(kind, name, _)| (kind, name))
        .collect();
    assert_eq!(
        seen,
        [
            ("ADDED", "etcd-n1".to_owned()),
            ("ADDED", "apiserver-n1".to_owned())
        ]
    );
    let seen = rest(&mut name_events).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].1.as_str()), ("ADDED", "apiserver-n1"));
}

#[tokio::test]
async fn a_watch_of_one_namespace_or_of_nodes_sees_only_those_objects() {
    let (_fake, client, node_uid) = cluster().await;
    let default_pods = Api::<Pod>::namespaced(client.clone(), "default");
    let rv = list_version(&default_pods).await;
    let mut events = watch(&default_pods, &WatchParams::default().timeout(2), &rv).await;
    let mut nodes = Api::<Node>::all(client.clone())
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let mut in_default = mirror_pod("web-n1", "n1", &node_uid);
    in_default.metadata.namespace = Some("default".into());
    default_pods
        .create(&PostParams::default(), &in_default)
        .await
        .unwrap();
    let patch = Patch::Merge(json!({"metadata": {"labels": {"zone": "a"}}}));
    Api::<Node>::all(client.clone())
        .patch("n1", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let seen: Vec<_> = rest(&mut events)
        .await
        .into_iter()
        .map(|(kind, name, _)| (kind, name))
        .collect();
    assert_eq!(seen, [("ADDED", "web-n1".to_owned())]);
    match next(&mut nodes).await {
        Some(Ok(WatchEvent::Modified(node))) => {
            assert_eq!(node.metadata.name.as_deref(), Some("n1"));
            assert_eq!(node.metadata.labels.unwrap()["zone"], "a");
        }
        other => panic!("expected MODIFIED of node n1, got {other:?}"),
    }
    assert!(next(&mut nodes).await.is_none());
}

#[tokio::test]
async fn watch_from_zero_starts_with_the_current_objects_then_sends_bookmarks() {
    let (fake, client, node_uid) = cluster().await;
    let mut created = Vec::new();
    for name in ["etcd-n1", "apiserver-n1"] {
        let pod = pods(&client)
            .create(&PostParams::default(), &mirror_pod(name, "n1", &node_uid))
            .await
            .unwrap();
        created.push(version(&pod));
    }
    // A write the watch filters out still moves its bookmarks on.
    fake.set_node(&node("n2")).unwrap();
    let current = list_version(&pods(&client)).await;
    fake.set_bookmark_interval(Duration::from_millis(100));
    let mut events = watch(&pods(&client), &WatchParams::default(), "0").await;
    // In key order, each as stored.
    assert_eq!(
        next_brief(&mut events).await,
        ("ADDED", "apiserver-n1".into(), created[1].clone())
    );
    assert_eq!(
        next_brief(&mut events).await,
        ("ADDED", "etcd-n1".into(), created[0].clone())
    );
    match next(&mut events).await {
        Some(Ok(WatchEvent::Bookmark(bookmark))) => {
            assert_eq!(bookmark.metadata.resource_version, current);
            assert_eq!(
                (
                    bookmark.types.api_version.as_str(),
                    bookmark.types.kind.as_str()
                ),
                ("v1", "Pod")
            );
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    let quiet = WatchParams::default().disable_bookmarks();
    let mut quiet = watch(&pods(&client), &quiet, &current).await;
    let silent = tokio::time::timeout(Duration::from_millis(500), quiet.next()).await;
    assert!(silent.is_err(), "no bookmarks unless allowed: {silent:?}");
}

#[tokio::test]
async fn graceful_deletion_is_modified_with_a_deletion_timestamp_then_deleted() {
    let (fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let mut events = watch(&pods(&client), &WatchParams::default(), &version(&created)).await;
    assert!(fake.delete_pod(NS, "etcd-n1"));
    let terminating = match next(&mut events).await {
        Some(Ok(WatchEvent::Modified(pod))) => pod,
        other => panic!("expected MODIFIED, got {other:?}"),
    };
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    let uid = created.metadata.uid.unwrap();
    pods(&client)
        .delete("etcd-n1", &delete_now(&uid))
        .await
        .unwrap();
    match next(&mut events).await {
        Some(Ok(WatchEvent::Deleted(pod))) => {
            assert!(pod.metadata.deletion_timestamp.is_some());
            assert!(version(&pod).parse::<u64>().unwrap() > version(&terminating).parse().unwrap());
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pod_leaving_the_label_selector_is_deleted_and_one_entering_it_is_added() {
    let (fake, client, node_uid) = cluster().await;
    let created = pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let params = WatchParams::default().labels("component=etcd-n1");
    let mut events = watch(&pods(&client), &params, &version(&created)).await;
    let relabel = |component: &str| {
        let mut pod = fake.pod(NS, "etcd-n1").unwrap();
        pod.metadata.labels = Some(BTreeMap::from([("component".into(), component.into())]));
        fake.set_pod(&pod).unwrap()
    };
    let moved = relabel("other");
    match next(&mut events).await {
        Some(Ok(WatchEvent::Deleted(pod))) => {
            // The last state that matched, at the revision it stopped matching.
            assert_eq!(
                pod.metadata.labels.as_ref().unwrap()["component"],
                "etcd-n1"
            );
            assert_eq!(version(&pod), version(&moved));
        }
        other => panic!("expected DELETED, got {other:?}"),
    }
    let back = relabel("etcd-n1");
    assert_eq!(
        next_brief(&mut events).await,
        ("ADDED", "etcd-n1".into(), version(&back))
    );
}

#[tokio::test]
async fn expired_resource_version_gets_a_410_expired_error_event_then_the_end() {
    let (fake, client, node_uid) = cluster().await;
    let old = list_version(&pods(&client)).await;
    pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let current = list_version(&pods(&client)).await;
    fake.compact_watch_history();
    let mut events = watch(&pods(&client), &WatchParams::default(), &old).await;
    let status = error_event(&mut events).await;
    assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
    assert_eq!(
        status.message,
        format!("too old resource version: {old} ({current})")
    );
    assert!(next(&mut events).await.is_none());
    // The request itself succeeded: the error is inside the stream.
    let record = fake.requests().pop().unwrap();
    assert_eq!(
        (record.verb(), record.status),
        ("watch", Some(StatusCode::OK))
    );
    // The current revision is still resumable.
    let mut events = watch(&pods(&client), &WatchParams::default().timeout(1), &current).await;
    assert!(rest(&mut events).await.is_empty());
}

#[tokio::test]
async fn resource_version_older_than_the_history_limit_is_expired() {
    let (fake, client, _) = cluster().await;
    fake.set_watch_history_limit(1);
    let old = list_version(&pods(&client)).await;
    fake.set_node(&node("n2")).unwrap();
    fake.set_node(&node("n3")).unwrap();
    let mut events = watch(&pods(&client), &WatchParams::default(), &old).await;
    let status = error_event(&mut events).await;
    assert_eq!(status.code, 410);
    let kept = (old.parse::<u64>().unwrap() + 1).to_string();
    assert_eq!(
        status.message,
        format!("too old resource version: {old} ({kept})")
    );
}

#[tokio::test]
async fn timeout_seconds_ends_the_stream_cleanly() {
    let (_fake, client, _) = cluster().await;
    let rv = list_version(&pods(&client)).await;
    let started = tokio::time::Instant::now();
    let mut events = watch(&pods(&client), &WatchParams::default().timeout(1), &rv).await;
    assert!(next(&mut events).await.is_none());
    let elapsed = started.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(3)).contains(&elapsed),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn watch_response_is_a_chunked_stream_of_newline_delimited_json_events() {
    let (fake, _client, _) = cluster().await;
    let addr = fake.url().trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /api/v1/nodes?watch=1&timeoutSeconds=1 HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n";
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(body.ends_with("\r\n0\r\n\r\n"), "a clean end: {body:?}");
    let line = body.lines().nth(1).unwrap();
    assert!(line.starts_with(r#"{"type":"ADDED","object":{"#), "{line}");
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["object"]["kind"], "Node");
    assert_eq!(event["object"]["apiVersion"], "v1");
    assert_eq!(event["object"]["metadata"]["name"], "n1");
}

#[tokio::test]
async fn stop_ends_a_live_stream_and_restart_expires_older_resource_versions() {
    let (mut fake, client, node_uid) = cluster().await;
    let old = list_version(&pods(&client)).await;
    pods(&client)
        .create(
            &PostParams::default(),
            &mirror_pod("etcd-n1", "n1", &node_uid),
        )
        .await
        .unwrap();
    let current = list_version(&pods(&client)).await;
    let mut events = watch(&pods(&client), &WatchParams::default(), &current).await;
    fake.stop().await;
    // The cut connection may surface as one transport error before the end.
    let mut ended = false;
    for _ in 0..2 {
        match next(&mut events).await {
            None => {
                ended = true;
                break;
            }
            Some(Err(err)) => assert!(!matches!(err, Error::Api(_)), "{err:?}"),
            Some(Ok(event)) => panic!("no event expected, got {event:?}"),
        }
    }
    assert!(ended, "the stream must end when the server stops");
    fake.restart().await;
    let mut events = watch(&pods(&client), &WatchParams::default(), &old).await;
    assert_eq!(error_event(&mut events).await.code, 410);
    let mut events = watch(&pods(&client), &WatchParams::default(), &current).await;
    fake.force_delete_pod(NS, "etcd-n1");
    assert_eq!(next_brief(&mut events).await.0, "DELETED");
}

#[tokio::test]
async fn fail_mode_ends_live_watches_and_fails_new_ones() {
    let (fake, client, node_uid) = cluster().await;
    let rv = list_version(&pods(&client)).await;
    let mut events = watch(&pods(&client), &WatchParams::default(), &rv).await;
    fake.set_mode(Mode::Fail(StatusCode::INTERNAL_SERVER_ERROR));
    assert!(next(&mut events).await.is_none());
    match pods(&client).watch(&WatchParams::default(), &rv).await {
        Err(Error::Api(status)) => assert_eq!(status.code, 500),
        Err(other) => panic!("expected a 500, got {other:?}"),
        Ok(_) => panic!("expected a 500, got a stream"),
    }
    fake.set_mode(Mode::Normal);
    let mut events = watch(&pods(&client), &WatchParams::default(), &rv).await;
    fake.set_pod(&mirror_pod("etcd-n1", "n1", &node_uid))
        .unwrap();
    assert_eq!(next_brief(&mut events).await.0, "ADDED");
}

#[tokio::test]
async fn hang_mode_silences_a_live_watch_until_normal() {
    let (fake, client, node_uid) = cluster().await;
    let rv = list_version(&pods(&client)).await;
    let mut events = watch(&pods(&client), &WatchParams::default(), &rv).await;
    fake.set_mode(Mode::Hang);
    fake.set_pod(&mirror_pod("etcd-n1", "n1", &node_uid))
        .unwrap();
    let silent = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    assert!(silent.is_err(), "nothing while hanging: {silent:?}");
    fake.set_mode(Mode::Normal);
    assert_eq!(next_brief(&mut events).await.0, "ADDED");
}

#[tokio::test]
async fn injected_error_fails_one_watch_request_and_watches_are_counted() {
    let (fake, client, _) = cluster().await;
    let rv = list_version(&pods(&client)).await;
    fake.inject_error(
        Method::GET,
        "/api/v1/namespaces/kube-system/pods",
        StatusCode::FORBIDDEN,
        1,
    );
    match pods(&client).watch(&WatchParams::default(), &rv).await {
        Err(Error::Api(status)) => assert_eq!(status.code, 403),
        Err(other) => panic!("expected a 403, got {other:?}"),
        Ok(_) => panic!("expected a 403, got a stream"),
    }
    let _events = watch(&pods(&client), &WatchParams::default(), &rv).await;
    assert_eq!(fake.request_count("watch"), 2);
    assert_eq!(fake.request_count("list"), 1);
    let watches: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.verb() == "watch")
        .collect();
    assert!(
        watches
            .iter()
            .all(|r| r.method == Method::GET && r.query.contains("watch=true"))
    );
}

#[tokio::test]
async fn a_resource_version_ahead_of_the_store_is_waited_for_then_too_large() {
    let (fake, client, node_uid) = cluster().await;
    let rv: u64 = list_version(&pods(&client)).await.parse().unwrap();
    let ahead = (rv + 1).to_string();
    let fake = Arc::new(fake);
    let writer = {
        let fake = Arc::clone(&fake);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            fake.set_node(&node("n2")).unwrap();
            fake.set_pod(&mirror_pod("etcd-n1", "n1", &node_uid))
                .unwrap();
        })
    };
    // Answered once the store reaches it, from there on.
    let mut events = watch(&pods(&client), &WatchParams::default(), &ahead).await;
    writer.await.unwrap();
    assert_eq!(next_brief(&mut events).await.1, "etcd-n1");
    let far = (rv + 100).to_string();
    let mut events = watch(&pods(&client), &WatchParams::default(), &far).await;
    let status = error_event(&mut events).await;
    assert_eq!((status.code, status.reason.as_str()), (504, "Timeout"));
    assert_eq!(
        status.message,
        format!(
            "Timeout: Too large resource version: {far}, current: {}",
            rv + 2
        )
    );
}

//! Tests of the exit-event subscription against an in-process CRI server on a unix socket,
//! one that implements `GetContainerEvents` (as containerd 1.7+ and CRI-O do) and one that
//! refuses every call. containerd 1.6's own events service is covered by the containerd tests.

use std::time::Duration;

use futures::StreamExt;
use k8s_cri::v1 as cri;
use tokio::sync::broadcast;

use super::{EventSource, subscribe};
use crate::runtime::RuntimeError;
use crate::runtime::test_cri::{TestCri, channel, serve};

fn event(kind: cri::ContainerEventType) -> cri::ContainerEventResponse {
    cri::ContainerEventResponse {
        container_id: "c1".into(),
        container_event_type: kind as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn cri_container_events_are_used_where_the_runtime_has_them_and_only_exits_wake() {
    let (tx, _keep) = broadcast::channel(8);
    let (_dir, path) = serve(TestCri {
        events: Some(tx.clone()),
        ..TestCri::default()
    })
    .await;
    let channel = channel(path).await;
    let (source, mut exits) = subscribe(&channel)
        .await
        .expect("subscribed")
        .expect("a stream");
    assert_eq!(source, EventSource::Cri);
    // the server sends nothing before the first event; the subscription must not wait for it
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(event(cri::ContainerEventType::ContainerCreatedEvent))
        .expect("send");
    tx.send(event(cri::ContainerEventType::ContainerStartedEvent))
        .expect("send");
    tx.send(event(cri::ContainerEventType::ContainerStoppedEvent))
        .expect("send");
    let woke = tokio::time::timeout(Duration::from_secs(5), exits.next())
        .await
        .expect("an exit arrives");
    assert_eq!(woke, Some(()));
    // nothing else queued: the created and started events were dropped
    assert!(
        tokio::time::timeout(Duration::from_millis(100), exits.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_runtime_with_no_event_source_has_no_stream_rather_than_an_error() {
    let (_dir, path) = serve(TestCri::default()).await;
    // no CRI events, and this server has no containerd events service either
    let found = subscribe(&channel(path).await).await;
    assert!(
        matches!(found, Ok(None)),
        "{:?}",
        found.map(|f| f.map(|(s, _)| s))
    );
}

#[tokio::test]
async fn a_runtime_that_cannot_be_reached_is_unavailable_not_a_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gone = dir.path().join("gone.sock");
    let listener = tokio::net::UnixListener::bind(&gone).expect("bind");
    let channel = channel(gone.clone()).await;
    drop(listener);
    std::fs::remove_file(&gone).expect("remove socket");
    let err = subscribe(&channel).await.err().expect("no runtime");
    assert!(matches!(err, RuntimeError::Unavailable { .. }), "{err:?}");
}

/// Issue 14: CRI-O with `enable_pod_events = false` (its default) has the method but ends the
/// stream at once; subscribing again and again to an empty stream would only spin.
#[tokio::test]
async fn a_cri_event_stream_that_ends_at_once_counts_as_no_event_source() {
    let (_dir, path) = serve(TestCri {
        events_off: true,
        ..TestCri::default()
    })
    .await;
    let found = subscribe(&channel(path).await).await;
    assert!(
        matches!(found, Ok(None)),
        "{:?}",
        found.map(|f| f.map(|(s, _)| s))
    );
}

#[tokio::test]
async fn an_exit_sent_while_the_new_stream_is_checked_is_not_lost() {
    let (tx, _keep) = broadcast::channel(8);
    let (_dir, path) = serve(TestCri {
        events: Some(tx.clone()),
        ..TestCri::default()
    })
    .await;
    let channel = channel(path).await;
    let sender = tokio::spawn(async move {
        // inside the refusal window, while subscribe looks at the stream's first message
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(event(cri::ContainerEventType::ContainerStoppedEvent))
            .expect("send");
        tx
    });
    let (_, mut exits) = subscribe(&channel)
        .await
        .expect("subscribed")
        .expect("a stream");
    let _tx = sender.await.expect("sender");
    let woke = tokio::time::timeout(Duration::from_secs(5), exits.next())
        .await
        .expect("the exit arrives");
    assert_eq!(woke, Some(()));
}

/// Issue 14: CRI-O's sandbox events are only STARTED and STOPPED, for the sandbox's id; a
/// sandbox that stopped under podvisor wakes it like a container exit.
#[tokio::test]
async fn a_stopped_sandbox_wakes_like_an_exited_container() {
    let (tx, _keep) = broadcast::channel(8);
    let (_dir, path) = serve(TestCri {
        events: Some(tx.clone()),
        ..TestCri::default()
    })
    .await;
    let (_, mut exits) = subscribe(&channel(path).await)
        .await
        .expect("subscribed")
        .expect("a stream");
    let sandbox = |kind: cri::ContainerEventType| cri::ContainerEventResponse {
        container_id: "sandbox1".into(),
        container_event_type: kind as i32,
        pod_sandbox_status: Some(cri::PodSandboxStatus {
            id: "sandbox1".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    tx.send(sandbox(cri::ContainerEventType::ContainerStartedEvent))
        .expect("send");
    tx.send(sandbox(cri::ContainerEventType::ContainerStoppedEvent))
        .expect("send");
    let woke = tokio::time::timeout(Duration::from_secs(5), exits.next())
        .await
        .expect("the stop arrives");
    assert_eq!(woke, Some(()));
    assert!(
        tokio::time::timeout(Duration::from_millis(100), exits.next())
            .await
            .is_err(),
        "the start woke nothing"
    );
}

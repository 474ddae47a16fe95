//! Tests of the exit-event forwarder: counting events and catching up after a lost stream.

use super::*;
use crate::runtime::{ContainerId, FakeRuntime};

/// Lets the spawned task run until `done` holds (the clock is paused: no real time passes).
async fn settle(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never settled");
}

#[tokio::test(start_paused = true)]
async fn a_lost_exit_stream_is_taken_up_again_with_one_wake_for_the_exits_it_missed() {
    let rt = Arc::new(FakeRuntime::new(Clock::tokio(Timestamp::default())));
    let metrics = Arc::new(Metrics::new());
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(forward_exits(
        rt.clone(),
        tx,
        Duration::from_secs(1),
        Some(metrics.clone()),
        shutdown.clone(),
    ));
    settle(|| rt.exit_subscribers() == 1).await;
    // the first subscription is no gap: nothing to catch up on
    assert!(rx.try_recv().is_err());

    rt.exit_container(&ContainerId("gone".into()), 137);
    rx.recv().await.expect("a wake for the exit");
    assert!(
        metrics
            .render(&Default::default())
            .contains("podvisor_runtime_exit_events_total{source=\"cri\"} 1")
    );

    // the runtime restarts: the stream ends and exits in the gap are never sent
    rt.end_exit_streams();
    // (the paused clock jumps over the retry delay once every task waits)
    rx.recv().await.expect("one wake on subscribing again");
    assert_eq!(rt.exit_subscribers(), 1);
    assert!(rx.try_recv().is_err(), "only one");

    shutdown.cancel();
    task.await.expect("forwarder ends on shutdown");
}

fn snapshot_of(yamls: &[&str]) -> Snapshot {
    let mut s = Snapshot::default();
    for y in yamls {
        let p = crate::manifest::testing::static_pod(y);
        s.pods.insert(p.key.clone(), Arc::new(p));
    }
    s
}

/// Issue 16.1: a pod whose file changed is retried at once, whatever backoff its previous
/// version earned; pods whose file did not change keep theirs.
#[test]
fn only_pods_whose_version_changed_count_as_edited() {
    let pod = |name: &str, image: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: app, image: '{image}'}}]}}\n"
        )
    };
    let old = snapshot_of(&[&pod("a", "busybox:1"), &pod("b", "busybox:1")]);
    let new = snapshot_of(&[
        &pod("a", "busybox:2"),
        &pod("b", "busybox:1"),
        &pod("c", "busybox:1"),
    ]);
    let names: Vec<&str> = edited(&old, &new)
        .into_iter()
        .map(|k| k.name.as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(
        names[0].starts_with("a-") && names[1].starts_with("c-"),
        "{names:?}"
    );
}

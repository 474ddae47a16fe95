//! Health-gated rollback, decided from fake runtime states on a fixed clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, Timestamp};
use crate::probe::ContainerProbeResults;
use crate::runtime::{ContainerId, FakeRuntime};

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

/// `T0` plus `s` seconds; containers of the fake start at `T0` (the tokio clock is paused).
fn at(s: u64) -> Timestamp {
    T0.plus(Duration::from_secs(s))
}

fn pod(command: &str, annotations: &str, extra: &str) -> Arc<StaticPod> {
    Arc::new(crate::manifest::testing::static_pod(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web{annotations}}}\nspec:\n  containers:\n  - name: app\n    image: busybox\n    command: [{command}]\n{extra}"
    )))
}

fn on() -> RollbackPolicy {
    RollbackPolicy {
        enabled: true,
        ready_timeout: Duration::from_secs(120),
    }
}

fn snapshot(p: &Arc<StaticPod>) -> Arc<Snapshot> {
    let mut s = Snapshot::default();
    s.pods.insert(p.key.clone(), p.clone());
    Arc::new(s)
}

/// A runtime where `p`'s version runs (its sandbox and container `app`).
async fn running(rt: &FakeRuntime, p: &StaticPod, attempt: u32) -> ContainerId {
    let sb = rt.run_pod(p, attempt).await.expect("sandbox");
    rt.start(p, &sb, "app", 0).await.expect("container")
}

fn no_probes() -> ProbeResults {
    ProbeResults::default()
}

#[tokio::test(start_paused = true)]
async fn a_new_version_that_crashes_is_rolled_back_once_and_not_tried_again_until_the_file_changes()
{
    let rt = FakeRuntime::new(Clock::tokio(T0));
    let mut r = Rollouts::default();
    let good = pod("sleep, '3600'", "", "");
    running(&rt, &good, 0).await;
    r.step(&snapshot(&good), &rt.snapshot(), &no_probes(), at(9), &on());
    assert!(r.tracks.is_empty(), "running, but not for 10 s yet");
    let step = r.step(
        &snapshot(&good),
        &rt.snapshot(),
        &no_probes(),
        at(10),
        &on(),
    );
    assert!(step.rolled_back.is_empty());
    assert_eq!(r.tracks[&good.key], Track::Healthy(good.clone()));

    // the edit runs and crashes at once
    let bad = pod("'false'", "", "");
    let step = r.step(&snapshot(&bad), &rt.snapshot(), &no_probes(), at(10), &on());
    assert_eq!(step.effective.pods[&bad.key].hash, bad.hash, "tried first");
    let crashed = running(&rt, &bad, 1).await;
    rt.exit_container(&crashed, 1);
    let step = r.step(&snapshot(&bad), &rt.snapshot(), &no_probes(), at(10), &on());
    assert_eq!(step.rolled_back.len(), 1);
    assert_eq!(step.rolled_back[0].to, good.hash);
    assert!(
        step.rolled_back[0].reason.contains("exited with code 1"),
        "{:?}",
        step.rolled_back
    );
    assert_eq!(
        step.effective.pods[&bad.key].hash, good.hash,
        "the last healthy version runs again"
    );
    assert!(r.note(&bad.key).is_some_and(|n| n.contains("rolled back")));

    // the same file version: no second attempt, no second rollback, however long
    let later = at(3600);
    let step = r.step(&snapshot(&bad), &rt.snapshot(), &no_probes(), later, &on());
    assert!(step.rolled_back.is_empty());
    assert_eq!(step.effective.pods[&bad.key].hash, good.hash);

    // the file changes: the new version is tried
    let fixed = pod("sleep, '7200'", "", "");
    let step = r.step(
        &snapshot(&fixed),
        &rt.snapshot(),
        &no_probes(),
        later,
        &on(),
    );
    assert_eq!(step.effective.pods[&fixed.key].hash, fixed.hash);
    assert!(matches!(r.tracks[&fixed.key], Track::Trying { .. }));
    running(&rt, &fixed, 2).await;
    r.step(
        &snapshot(&fixed),
        &rt.snapshot(),
        &no_probes(),
        later,
        &on(),
    );
    assert_eq!(r.tracks[&fixed.key], Track::Healthy(fixed.clone()));
}

#[tokio::test(start_paused = true)]
async fn a_new_version_not_ready_within_its_window_is_rolled_back() {
    let rt = FakeRuntime::new(Clock::tokio(T0));
    let mut r = Rollouts::default();
    let good = pod("sleep, '3600'", "", "");
    running(&rt, &good, 0).await;
    r.step(
        &snapshot(&good),
        &rt.snapshot(),
        &no_probes(),
        at(10),
        &on(),
    );
    let probe = "    readinessProbe: {exec: {command: ['false']}, periodSeconds: 1}\n";
    let slow = pod("sleep, '3600'", "", probe);
    r.step(
        &snapshot(&slow),
        &rt.snapshot(),
        &no_probes(),
        at(10),
        &on(),
    );
    let id = running(&rt, &slow, 1).await;
    let never_ready = ProbeResults {
        containers: BTreeMap::from([(
            id,
            ContainerProbeResults {
                key: slow.key.clone(),
                name: "app".into(),
                liveness: None,
                readiness: Some(ProbeResult::Failure),
                startup: None,
            },
        )]),
    };
    let within = at(10 + 119);
    let step = r.step(
        &snapshot(&slow),
        &rt.snapshot(),
        &never_ready,
        within,
        &on(),
    );
    assert!(step.rolled_back.is_empty(), "still within its window");
    let past = at(10 + 120);
    let step = r.step(&snapshot(&slow), &rt.snapshot(), &never_ready, past, &on());
    assert_eq!(step.rolled_back.len(), 1);
    assert!(
        step.rolled_back[0]
            .reason
            .contains("not healthy within 120s")
    );
}

#[tokio::test(start_paused = true)]
async fn a_version_with_a_passing_readiness_probe_becomes_the_new_healthy_one() {
    let rt = FakeRuntime::new(Clock::tokio(T0));
    let mut r = Rollouts::default();
    let probe = "    readinessProbe: {exec: {command: ['true']}}\n";
    let p = pod("sleep, '3600'", "", probe);
    let id = running(&rt, &p, 0).await;
    // running, but its readiness is not known yet: not healthy
    r.step(&snapshot(&p), &rt.snapshot(), &no_probes(), at(10), &on());
    assert!(r.tracks.is_empty());
    let ready = ProbeResults {
        containers: BTreeMap::from([(
            id,
            ContainerProbeResults {
                key: p.key.clone(),
                name: "app".into(),
                liveness: None,
                readiness: Some(ProbeResult::Success),
                startup: None,
            },
        )]),
    };
    r.step(&snapshot(&p), &rt.snapshot(), &ready, at(10), &on());
    assert_eq!(r.tracks[&p.key], Track::Healthy(p.clone()));
}

#[tokio::test(start_paused = true)]
async fn rollback_is_off_unless_the_node_or_the_pod_turns_it_on() {
    let rt = FakeRuntime::new(Clock::tokio(T0));
    let off = RollbackPolicy::default();
    let plain = pod("sleep, '3600'", "", "");
    running(&rt, &plain, 0).await;
    let mut r = Rollouts::default();
    r.step(&snapshot(&plain), &rt.snapshot(), &no_probes(), T0, &off);
    assert!(r.tracks.is_empty(), "off by default: nothing tracked");

    let opted = pod(
        "sleep, '3600'",
        ", annotations: {podvisor.dev/rollback: 'true'}",
        "",
    );
    assert!(enabled(&opted, &off));
    let opted_out = pod(
        "sleep, '3600'",
        ", annotations: {podvisor.dev/rollback: 'false'}",
        "",
    );
    assert!(!enabled(&opted_out, &on()));
}

#[test]
fn the_window_adds_the_longest_startup_probe_budget_to_the_ready_timeout() {
    let probe = "    startupProbe: {exec: {command: ['true']}, initialDelaySeconds: 5, periodSeconds: 2, failureThreshold: 30}\n";
    let p = pod("sleep, '3600'", "", probe);
    assert_eq!(window(&p, &on()), Duration::from_secs(120 + 5 + 60));
}

#[tokio::test(start_paused = true)]
async fn an_edit_that_comes_before_the_running_version_was_judged_is_tried_against_it() {
    let rt = FakeRuntime::new(Clock::tokio(T0));
    let mut r = Rollouts::default();
    let good = pod("sleep, '3600'", "", "");
    // asked for, not running yet: nothing to judge
    r.step(&snapshot(&good), &rt.snapshot(), &no_probes(), T0, &on());
    assert!(r.tracks.is_empty());
    // it runs, and the edit arrives before any pass has seen it run
    running(&rt, &good, 0).await;
    let bad = pod("'false'", "", "");
    r.step(&snapshot(&bad), &rt.snapshot(), &no_probes(), at(10), &on());
    assert!(
        matches!(&r.tracks[&bad.key], Track::Trying { from, .. } if from.hash == good.hash),
        "{:?}",
        r.tracks
    );
}

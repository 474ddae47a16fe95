//! The shutdown steps against the fake runtime on a paused clock: order, grace periods,
//! periods that end before their pods do.

use super::*;
use crate::clock::{Clock, Timestamp};
use crate::event::EventSink;
use crate::nodeshutdown::{PriorityPeriod, ShutdownPolicy, plan};
use crate::pod::StaticPod;
use crate::runtime::{FakeCall, FakeRuntime, SandboxState};

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

/// A pod `name` with one container `name`, `grace` seconds, `extra` metadata lines and an
/// optional preStop sleep.
fn pod(name: &str, extra: &str, grace: u32, pre_stop: Option<u32>) -> StaticPod {
    let hook = pre_stop
        .map(|s| format!("\n    lifecycle: {{preStop: {{sleep: {{seconds: {s}}}}}}}"))
        .unwrap_or_default();
    crate::manifest::testing::static_pod(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n{extra}spec:\n  terminationGracePeriodSeconds: {grace}\n  containers:\n  - name: {name}\n    image: 'busybox:1.35'{hook}\n"
    ))
}

/// A priority group in whole seconds.
fn group(priority: i32, seconds: u64) -> PriorityPeriod {
    PriorityPeriod {
        priority,
        period: Duration::from_secs(seconds),
    }
}

const CRITICAL: &str = "  labels: {component: api}\n";
const ETCD: &str = "  labels: {component: etcd}\n";

async fn run(rt: &FakeRuntime, p: &StaticPod) {
    let sb = rt.run_pod(p, 0).await.expect("sandbox");
    rt.start(p, &sb, &p.spec.containers[0].name, 0)
        .await
        .expect("container");
}

/// Runs the plan for what `rt` holds; returns the end and each progress report with the
/// seconds since T0 it came at.
async fn shut_down(
    rt: &Arc<FakeRuntime>,
    clock: Clock,
    policy: &ShutdownPolicy,
) -> (Finished, Vec<(f64, Progress)>) {
    let plan = plan(policy, &rt.snapshot(), None);
    let cx = ExecContext {
        events: EventSink::discard(),
        host_ip: None,
        clock,
    };
    let mut seen = Vec::new();
    let finished = execute(rt.clone(), cx, plan, |p| {
        seen.push((clock.now().since(T0).as_secs_f64(), p));
    })
    .await;
    (finished, seen)
}

/// When each container exited (seconds since T0) and with what code, by name.
fn exits(rt: &FakeRuntime) -> Vec<(String, f64, Option<i32>)> {
    let mut list: Vec<_> = rt
        .snapshot()
        .containers
        .into_iter()
        .map(|c| {
            let at = c.finished_at.map_or(-1.0, |t| t.since(T0).as_secs_f64());
            (c.name, at, c.exit_code)
        })
        .collect();
    list.sort_by(|a, b| a.1.total_cmp(&b.1));
    list
}

fn stop_graces(rt: &FakeRuntime) -> Vec<u64> {
    rt.calls()
        .into_iter()
        .filter_map(|c| match c {
            FakeCall::StopContainer(_, grace) => Some(grace.as_secs()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn groups_stop_lowest_priority_first_each_waiting_for_the_one_before() {
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    let mut api = pod("api", CRITICAL, 30, None);
    api.spec.priority = Some(2_000_001_000);
    let mut etcd = pod("etcd", ETCD, 30, None);
    etcd.spec.priority = Some(2_000_001_000);
    for p in [&pod("web", "", 30, None), &api, &etcd] {
        run(&rt, p).await;
    }
    // web exits 1 s after SIGTERM, the API server 3 s after, etcd 2 s after
    rt.set_stop_delay("web", Duration::from_secs(1));
    rt.set_stop_delay("api", Duration::from_secs(3));
    rt.set_stop_delay("etcd", Duration::from_secs(2));
    let (finished, _) = shut_down(&rt, clock, &ShutdownPolicy::podvisor_default()).await;
    assert!(finished.all_stopped(), "{finished:?}");
    assert_eq!(
        exits(&rt),
        [
            ("web".to_owned(), 1.0, Some(0)),
            ("api".to_owned(), 4.0, Some(0)),
            ("etcd".to_owned(), 6.0, Some(0)),
        ],
        "each step starts once the one before is done"
    );
    assert_eq!(
        stop_graces(&rt),
        [20, 10, 10],
        "min(30 s, the group's period)"
    );
    assert_eq!(finished.took, Duration::from_secs(6));
    let sandboxes = rt.snapshot().sandboxes;
    assert!(
        sandboxes.len() == 3 && sandboxes.iter().all(|s| s.state == SandboxState::NotReady),
        "sandboxes stopped, not removed: {sandboxes:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_container_ignoring_sigterm_is_killed_at_its_groups_period_and_not_before() {
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    let mut api = pod("api", CRITICAL, 30, None);
    api.spec.priority = Some(2_000_000_000);
    for p in [&pod("web", "", 30, None), &api] {
        run(&rt, p).await;
    }
    rt.set_stop_delay("web", Duration::from_secs(3600));
    rt.set_stop_delay("api", Duration::from_secs(3600));
    let policy = ShutdownPolicy::migrate(Duration::from_secs(12), Duration::from_secs(4));
    let (finished, seen) = shut_down(&rt, clock, &policy).await;
    assert!(finished.all_stopped(), "{finished:?}");
    assert_eq!(
        exits(&rt),
        [
            ("web".to_owned(), 8.0, Some(137)),
            ("api".to_owned(), 12.0, Some(137)),
        ]
    );
    let took: Vec<(String, Duration)> = seen
        .into_iter()
        .filter_map(|(_, p)| match p {
            Progress::Pod { key, took, .. } => Some((key.name, took)),
            _ => None,
        })
        .collect();
    assert_eq!(
        took,
        [
            ("web-n1".to_owned(), Duration::from_secs(8)),
            ("api-n1".to_owned(), Duration::from_secs(4))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_step_whose_period_ends_first_lets_the_next_begin_and_its_pod_is_still_awaited() {
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    // web's preStop would sleep a minute: cut at its 5 s, then the 2 s floor to stop
    let web = pod("web", "", 5, Some(60));
    let mut api = pod("api", CRITICAL, 30, None);
    api.spec.priority = Some(2_000_000_000);
    for p in [&web, &api] {
        run(&rt, p).await;
    }
    rt.set_stop_delay("web", Duration::from_secs(3600));
    rt.set_stop_delay("api", Duration::from_secs(1));
    let policy = ShutdownPolicy::by_priority(vec![group(0, 5), group(2_000_000_000, 10)]);
    let (finished, seen) = shut_down(&rt, clock, &policy).await;
    assert!(finished.all_stopped(), "{finished:?}");
    let events: Vec<(f64, String)> = seen
        .into_iter()
        .map(|(at, p)| {
            let what = match p {
                Progress::Step { index, .. } => format!("step {index}"),
                Progress::PeriodOver { index, pending } => {
                    format!("over {index}: {}", pending[0].name)
                }
                Progress::Pod { key, took, .. } => format!("{} in {took:?}", key.name),
            };
            (at, what)
        })
        .collect();
    assert_eq!(
        events,
        [
            (0.0, "step 0".to_owned()),
            (5.0, "over 0: web-n1".to_owned()),
            (5.0, "step 1".to_owned()),
            (6.0, "api-n1 in 1s".to_owned()),
            (7.0, "web-n1 in 7s".to_owned()),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_zero_period_still_gives_a_container_the_two_second_floor_within_the_last_wait() {
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    run(&rt, &pod("web", "", 30, None)).await;
    rt.set_stop_delay("web", Duration::from_secs(3600));
    let policy = ShutdownPolicy::by_priority(vec![group(0, 0)]);
    let (finished, _) = shut_down(&rt, clock, &policy).await;
    // 0 s period: the container still gets the 2 s floor, inside the straggler wait
    assert!(finished.all_stopped(), "{finished:?}");
    assert_eq!(exits(&rt), [("web".to_owned(), 2.0, Some(137))]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_stop_is_reported_and_the_sandbox_is_stopped_anyway() {
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    run(&rt, &pod("web", "", 30, None)).await;
    rt.fail_next(
        "stop_container",
        RuntimeError::Unavailable {
            method: "StopContainer",
            message: "connection reset".into(),
        },
    );
    let (finished, _) = shut_down(&rt, clock, &ShutdownPolicy::podvisor_default()).await;
    assert_eq!(finished.failed.len(), 1, "{finished:?}");
    assert!(!finished.all_stopped());
    assert!(
        rt.calls()
            .iter()
            .any(|c| matches!(c, FakeCall::StopSandbox(_))),
        "the sandbox stop kills what is left"
    );
}

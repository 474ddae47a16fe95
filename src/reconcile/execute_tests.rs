//! The executor against the fake runtime and host: hooks, events, failures.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, Timestamp};
use crate::event::{PodEvent, channel};
use crate::host::FakeHost;
use crate::reconcile::plan::{Hook, MIN_GRACE, StopReason, StopTarget};
use crate::runtime::{ContainerId, ExecOutput, FakeCall, FakeRuntime};

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn pod(yaml: &str) -> Arc<StaticPod> {
    Arc::new(crate::manifest::testing::static_pod(yaml))
}

async fn running(rt: &FakeRuntime, pod: &Arc<StaticPod>, attempt: u32) -> ContainerId {
    let sb = rt.run_pod(pod, attempt).await.expect("sandbox");
    rt.start(pod, &sb, "app", 0).await.expect("container")
}

fn sleep_hook(seconds: i64) -> Hook {
    let handler = serde_json::from_value(serde_json::json!({"sleep": {"seconds": seconds}}))
        .expect("handler");
    Hook {
        handler,
        ports: Vec::new(),
        host: None,
    }
}

fn stops(rt: &FakeRuntime) -> Vec<Duration> {
    rt.calls()
        .into_iter()
        .filter_map(|c| match c {
            FakeCall::StopContainer(_, grace) => Some(grace),
            _ => None,
        })
        .collect()
}

/// An execution context on `clock`, and the receiving end of its events.
fn context(clock: Clock) -> (ExecContext, tokio::sync::mpsc::Receiver<PodEvent>) {
    let (events, rx) = channel(16);
    let cx = ExecContext {
        events,
        host_ip: None,
        clock,
    };
    (cx, rx)
}

/// A new sandbox for `p`, then its container `app`.
fn start_app(p: &Arc<StaticPod>) -> Vec<Action> {
    vec![
        Action::RunSandbox {
            pod: p.clone(),
            attempt: 0,
        },
        Action::StartContainer {
            pod: p.clone(),
            sandbox: SandboxRef::New,
            name: "app".into(),
            attempt: 0,
            restarts: 0,
            restart: None,
        },
    ]
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: 'busybox:1.35'}]}\n";

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_first_and_its_time_comes_out_of_the_grace_period() {
    let clock = Clock::tokio(T0);
    let rt = FakeRuntime::new(clock);
    let p = pod(POD);
    let (cx, mut rx) = context(clock);
    for (attempt, (grace, hook_secs, expected)) in [(10u64, 3i64, 7u64), (4, 3, 2), (5, 30, 2)]
        .into_iter()
        .enumerate()
    {
        let id = running(&rt, &p, attempt as u32).await;
        rt.take_calls();
        let target = StopTarget {
            id: id.clone(),
            name: "app".into(),
            grace: Duration::from_secs(grace),
            pre_stop: Some(sleep_hook(hook_secs)),
        };
        let work = PodWork {
            key: p.key.clone(),
            actions: vec![Action::StopContainers {
                containers: vec![target],
                reason: StopReason::PodRemoved,
            }],
        };
        let before = tokio::time::Instant::now();
        let outcome = execute(&rt, &FakeHost::new(), &cx, work).await;
        assert!(outcome.result.is_ok());
        assert_eq!(
            stops(&rt),
            [Duration::from_secs(expected)],
            "grace {grace}s, hook {hook_secs}s"
        );
        assert_eq!(
            before.elapsed(),
            Duration::from_secs((hook_secs as u64).min(grace)),
            "the hook is cut at the grace period"
        );
    }
    let reasons: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.reason)
        .collect();
    assert!(reasons.contains(&"Killing".to_owned()));
    assert!(
        reasons.contains(&"FailedPreStopHook".to_owned()),
        "the cut hook is reported: {reasons:?}"
    );
}

fn exec_hook(command: &[&str]) -> Hook {
    let handler =
        serde_json::from_value(serde_json::json!({"exec": {"command": command}})).expect("handler");
    Hook {
        handler,
        ports: Vec::new(),
        host: None,
    }
}

/// Stops container `id` of `p` with `grace` and `hook`; returns how long it took.
async fn stop_with_hook(
    rt: &FakeRuntime,
    cx: &ExecContext,
    p: &Arc<StaticPod>,
    id: ContainerId,
    grace: u64,
    hook: Hook,
) -> Duration {
    let work = PodWork {
        key: p.key.clone(),
        actions: vec![Action::StopContainers {
            containers: vec![StopTarget {
                id,
                name: "app".into(),
                grace: Duration::from_secs(grace),
                pre_stop: Some(hook),
            }],
            reason: StopReason::PodRemoved,
        }],
    };
    let before = tokio::time::Instant::now();
    assert!(execute(rt, &FakeHost::new(), cx, work).await.result.is_ok());
    before.elapsed()
}

#[tokio::test(start_paused = true)]
async fn an_exec_pre_stop_hook_is_cut_at_the_grace_period_whatever_the_runtime_does_issue_17() {
    // containerd 1.6 answers ExecSync only when `sleep 60` is gone: 60 s, not the 3 s asked.
    let clock = Clock::tokio(T0);
    let rt = FakeRuntime::new(clock);
    rt.set_exec_delay("sh", Duration::from_secs(60));
    let p = pod(POD);
    let (cx, mut rx) = context(clock);
    let id = running(&rt, &p, 0).await;
    rt.take_calls();
    let took = stop_with_hook(&rt, &cx, &p, id, 3, exec_hook(&["sh", "-c", "sleep 60"])).await;
    assert_eq!(
        took,
        Duration::from_secs(3),
        "the hook gets the grace period, no more"
    );
    assert_eq!(stops(&rt), [MIN_GRACE], "then the stop gets the 2 s floor");
    let failed: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|e| e.reason == "FailedPreStopHook")
        .map(|e| e.message)
        .collect();
    assert_eq!(failed, ["PreStopHook failed: did not finish within 3s"]);
}

#[tokio::test]
async fn a_pre_stop_hook_that_cannot_run_reports_the_runtimes_reason_issue_17() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(POD);
    let (cx, mut rx) = context(Clock::System);
    let id = running(&rt, &p, 0).await;
    rt.exit_container(&id, 1);
    stop_with_hook(&rt, &cx, &p, id, 2, exec_hook(&["/bin/drain"])).await;
    let failed: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .filter(|e| e.reason == "FailedPreStopHook")
        .map(|e| e.message)
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].starts_with(
            "PreStopHook failed: running command \"/bin/drain\": ExecSync failed: container "
        ) && failed[0].ends_with("is not running"),
        "{failed:?}"
    );
}

#[tokio::test]
async fn failed_post_start_hook_stops_the_container_and_says_why() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(&POD.replace(
        "image: 'busybox:1.35'",
        "image: 'busybox:1.35', lifecycle: {postStart: {exec: {command: [/bin/false]}}}",
    ));
    rt.set_exec_result(
        "/bin/false",
        ExecOutput {
            exit_code: 1,
            stdout: Vec::new(),
            stderr: b"nope".to_vec(),
        },
    );
    let (cx, mut rx) = context(Clock::System);
    let work = PodWork {
        key: p.key.clone(),
        actions: start_app(&p),
    };
    assert!(
        execute(&rt, &FakeHost::new(), &cx, work)
            .await
            .result
            .is_ok()
    );
    assert!(
        rt.running("p-n1").is_empty(),
        "stopped after its postStart hook failed"
    );
    assert_eq!(stops(&rt).len(), 1);
    let reasons: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.reason)
        .collect();
    assert_eq!(
        reasons,
        ["Pulled", "Created", "Started", "FailedPostStartHook"]
    );
}

#[tokio::test]
async fn a_failure_stopping_the_old_version_says_the_new_one_waits_for_it_issue_17() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(POD);
    rt.fail_next(
        "remove_sandbox",
        RuntimeError::Call {
            method: "RemovePodSandbox",
            code: tonic::Code::Unknown,
            message: "device or resource busy".into(),
        },
    );
    let (cx, _rx) = context(Clock::System);
    let mut actions = vec![Action::RemoveSandbox(SandboxId("old".into()))];
    actions.extend(start_app(&p));
    let work = PodWork {
        key: p.key.clone(),
        actions,
    };
    let err = execute(&rt, &FakeHost::new(), &cx, work)
        .await
        .result
        .expect_err("fails");
    assert_eq!(
        err.describe(),
        "the new version waits for the old one to stop: RemovePodSandbox failed: device or resource busy"
    );
    // A failure after the new sandbox runs is the new version's own.
    rt.fail_next(
        "start_container",
        RuntimeError::NoSuchContainer("app".into()),
    );
    let work = PodWork {
        key: p.key.clone(),
        actions: start_app(&p),
    };
    let err = execute(&rt, &FakeHost::new(), &cx, work)
        .await
        .result
        .expect_err("fails");
    assert_eq!(err.describe(), "pod has no container \"app\"");
}

#[tokio::test]
async fn a_start_posts_the_kubelets_pulled_created_and_started_events_issue_17() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(POD);
    let (cx, mut rx) = context(Clock::System);
    let work = PodWork {
        key: p.key.clone(),
        actions: start_app(&p),
    };
    assert!(
        execute(&rt, &FakeHost::new(), &cx, work)
            .await
            .result
            .is_ok()
    );
    let events: Vec<(String, String, Option<String>)> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| (e.reason, e.message, e.field_path))
        .collect();
    let field = Some("spec.containers{app}".to_owned());
    assert_eq!(
        events,
        [
            (
                "Pulled".into(),
                "Container image \"busybox:1.35\" already present on machine".into(),
                field.clone()
            ),
            ("Created".into(), "Container created".into(), field.clone()),
            ("Started".into(), "Container started".into(), field),
        ]
    );
}

#[tokio::test]
async fn the_host_side_is_prepared_before_the_runtime_is_asked_and_cleaned_through_the_host_issue_11()
 {
    use crate::host::HostCall;
    use crate::pod::PodUid;
    let rt = FakeRuntime::new(Clock::System);
    let host = FakeHost::new();
    let p = pod(POD);
    let (cx, _rx) = context(Clock::System);
    let mut actions = vec![Action::PreparePod { pod: p.clone() }];
    actions.extend(start_app(&p));
    actions.push(Action::CleanupPod {
        key: p.key.clone(),
        uid: PodUid("old".into()),
    });
    let work = PodWork {
        key: p.key.clone(),
        actions,
    };
    assert!(execute(&rt, &host, &cx, work).await.result.is_ok());
    let started = rt.observe().await.expect("observe").containers[0]
        .id
        .clone();
    assert_eq!(
        host.calls(),
        [
            HostCall::PreparePod(p.key.clone()),
            HostCall::PrepareContainer(p.key.clone(), "app".into(), 0),
            // issue 15: the started container's log linked where log shippers look
            HostCall::LinkLog(p.key.clone(), "app".into(), 0, started.0.clone()),
            HostCall::CleanupPod(p.key.clone(), PodUid("old".into())),
        ]
    );
    // a removed container's link goes with it
    let removed = PodWork {
        key: p.key.clone(),
        actions: vec![Action::RemoveContainer(started.clone())],
    };
    assert!(execute(&rt, &host, &cx, removed).await.result.is_ok());
    assert_eq!(
        host.calls().last(),
        Some(&HostCall::UnlinkLog(started.0.clone()))
    );
    // A host failure ends the list before the runtime is asked, and says what failed.
    host.fail_next("prepare_pod", "read-only file system");
    rt.take_calls();
    let mut actions = vec![Action::PreparePod { pod: p.clone() }];
    actions.extend(start_app(&p));
    let err = execute(
        &rt,
        &host,
        &cx,
        PodWork {
            key: p.key.clone(),
            actions,
        },
    )
    .await
    .result
    .expect_err("host failure");
    assert!(matches!(err.error, StepError::Host(_)));
    assert!(
        err.describe().contains("read-only file system"),
        "{}",
        err.describe()
    );
    assert!(
        !rt.calls()
            .iter()
            .any(|c| matches!(c, FakeCall::RunSandbox(..))),
        "no sandbox without its host side"
    );
}

#[tokio::test]
async fn a_failed_start_names_the_container_and_ends_the_list() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(POD);
    rt.fail_next(
        "start_container",
        RuntimeError::ImageNeverPull {
            image: "busybox:1.35".into(),
        },
    );
    let (cx, mut rx) = context(Clock::System);
    let mut actions = start_app(&p);
    actions.push(Action::StopSandbox(SandboxId("never-reached".into())));
    let work = PodWork {
        key: p.key.clone(),
        actions,
    };
    let err = execute(&rt, &FakeHost::new(), &cx, work)
        .await
        .result
        .expect_err("start fails");
    assert_eq!(err.container.as_deref(), Some("app"));
    assert!(matches!(
        err.error,
        StepError::Runtime(RuntimeError::ImageNeverPull { .. })
    ));
    assert!(
        !rt.calls()
            .iter()
            .any(|c| matches!(c, FakeCall::StopSandbox(_)))
    );
    let e = rx.try_recv().expect("event");
    assert_eq!(
        (e.reason.as_str(), e.field_path.as_deref()),
        ("ErrImageNeverPull", Some("spec.containers{app}"))
    );
}

/// Issue 13.4: a sandbox the runtime refuses (an unknown runtime handler, say) is said in the
/// kubelet's event, not left as a pod quietly pending.
#[tokio::test]
async fn a_refused_sandbox_posts_failed_create_pod_sandbox_with_the_runtimes_reason() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(POD);
    rt.fail_next(
        "run_sandbox",
        RuntimeError::Call {
            method: "RunPodSandbox",
            code: tonic::Code::Unknown,
            message: "no runtime for \"nope\" is configured".into(),
        },
    );
    let (cx, mut rx) = context(Clock::System);
    let work = PodWork {
        key: p.key.clone(),
        actions: start_app(&p),
    };
    let err = execute(&rt, &FakeHost::new(), &cx, work)
        .await
        .result
        .expect_err("sandbox refused");
    assert_eq!(err.container, None);
    let e = rx.try_recv().expect("event");
    assert_eq!(
        (e.type_, e.reason.as_str(), e.message.as_str()),
        (
            EventType::Warning,
            "FailedCreatePodSandBox",
            "Failed to create pod sandbox: RunPodSandbox failed: no runtime for \"nope\" is configured"
        )
    );
    assert!(
        rx.try_recv().is_err(),
        "no container event: none was started"
    );
}

#[tokio::test]
async fn a_pulled_image_is_announced_by_pulling_before_pulled_issue_15() {
    let rt = FakeRuntime::new(Clock::System);
    let p = pod(&POD.replace(
        "image: 'busybox:1.35'",
        "image: 'busybox:1.35', imagePullPolicy: Always",
    ));
    let (cx, mut rx) = context(Clock::System);
    let work = PodWork {
        key: p.key.clone(),
        actions: start_app(&p),
    };
    assert!(
        execute(&rt, &FakeHost::new(), &cx, work)
            .await
            .result
            .is_ok()
    );
    let events: Vec<(String, String)> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| (e.reason, e.message))
        .collect();
    let reasons: Vec<&str> = events.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(reasons, ["Pulling", "Pulled", "Created", "Started"]);
    assert_eq!(events[0].1, "Pulling image \"busybox:1.35\"");
    assert!(
        events[1]
            .1
            .starts_with("Successfully pulled image \"busybox:1.35\""),
        "{}",
        events[1].1
    );
}

/// Issue 16.1: a new version whose image cannot be pulled leaves the running version
/// untouched: nothing after `PrepareSwap` runs, the failure names the container and image,
/// and the events say the update is held.
#[tokio::test]
async fn an_unpullable_new_image_stops_nothing_and_holds_the_update() {
    let rt = FakeRuntime::new(Clock::System);
    let old = pod(POD);
    let running_id = running(&rt, &old, 0).await;
    let new = pod(&POD.replace("busybox:1.35", "busybox:no-such-tag"));
    rt.set_unpullable("busybox:no-such-tag");
    let (cx, mut rx) = context(Clock::System);
    let work = PodWork {
        key: new.key.clone(),
        actions: vec![
            Action::PrepareSwap {
                pod: new.clone(),
                containers: vec!["app".into()],
            },
            Action::StopContainers {
                containers: vec![StopTarget {
                    id: running_id.clone(),
                    name: "app".into(),
                    grace: MIN_GRACE,
                    pre_stop: None,
                }],
                reason: StopReason::SpecChanged,
            },
        ],
    };
    let err = execute(&rt, &FakeHost::new(), &cx, work)
        .await
        .result
        .expect_err("the pull fails");
    assert!(err.held);
    assert_eq!(err.container.as_deref(), Some("app"));
    assert_eq!(err.error.failed_pull(), Some("busybox:no-such-tag"));
    assert!(
        err.describe()
            .starts_with("update held, the running version is kept")
    );
    assert!(stops(&rt).is_empty(), "nothing was stopped");
    assert_eq!(
        rt.running(&old.key.name).len(),
        1,
        "the old version runs on"
    );
    let reasons: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|e| e.reason)
        .collect();
    assert_eq!(reasons, ["Pulling", "Failed", "UpdateHeld"]);
}

/// Issue 16.1: a host path the new version needs and the node lacks holds the update too.
#[tokio::test]
async fn a_missing_host_path_of_the_new_version_holds_the_update() {
    let rt = FakeRuntime::new(Clock::System);
    let new = pod(POD);
    let host = FakeHost::new();
    host.fail_next("check_pod", "no /data");
    let (cx, _rx) = context(Clock::System);
    let work = PodWork {
        key: new.key.clone(),
        actions: vec![
            Action::PrepareSwap {
                pod: new.clone(),
                containers: vec!["app".into()],
            },
            Action::StopSandbox(SandboxId("never-reached".into())),
        ],
    };
    let err = execute(&rt, &host, &cx, work)
        .await
        .result
        .expect_err("the check fails");
    assert!(err.held);
    assert!(matches!(err.error, StepError::Host(_)));
    assert!(
        !rt.calls()
            .iter()
            .any(|c| matches!(c, FakeCall::StopSandbox(_) | FakeCall::EnsureImage(..))),
        "neither pulled nor stopped"
    );
}

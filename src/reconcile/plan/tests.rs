//! Table tests for `plan`, and convergence: applying a plan to the fake runtime and planning
//! again yields nothing to do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::backoff::Policy;
use crate::clock::{Clock, Timestamp};
use crate::event::EventSink;
use crate::host::{FakeHost, HostCall};
use crate::manifest::{Entry, Format, Resolver, Scan, Snapshot, parse_manifest};
use crate::pod::NodeName;
use crate::pod::ProbeKind;
use crate::reconcile::{ExecContext, execute};
use crate::runtime::{
    Asked, ContainerId, ContainerState, FakeRuntime, Observed, ObservedContainer, SandboxState,
};

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn at(secs: u64) -> Timestamp {
    T0.plus(Duration::from_secs(secs))
}

fn snapshot(files: &[(&str, &str)]) -> Snapshot {
    snapshot_at(files, T0)
}

/// The snapshot of `files` as first seen at `seen`.
fn snapshot_at(files: &[(&str, &str)], seen: Timestamp) -> Snapshot {
    let mut scan = Scan::default();
    for (name, text) in files {
        let path = PathBuf::from(format!("/m/{name}"));
        let parsed = parse_manifest(&path, Format::Yaml, text.as_bytes()).map(Arc::new);
        scan.entries.insert(path, Entry::Parsed(parsed));
    }
    Resolver::new(NodeName::new("n1")).resolve(&scan, seen)
}

fn pod_yaml(name: &str, extra_spec: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n{extra_spec}  containers:\n{containers}"
    )
}

const ONE: &str = "  - {name: app, image: 'busybox:1.35', command: [sleep, '3600']}\n";

struct World {
    rt: FakeRuntime,
    backoff: Backoff<RestartKey>,
    now: Timestamp,
    unhealthy: BTreeMap<ContainerId, ProbeKind>,
}

fn cx() -> ExecContext {
    ExecContext {
        events: EventSink::discard(),
        host_ip: Some("192.168.1.10".into()),
        clock: Clock::System,
    }
}

impl World {
    fn new() -> World {
        World {
            rt: FakeRuntime::new(Clock::System),
            backoff: Backoff::new(Policy::CRASH_LOOP),
            now: T0,
            unhealthy: BTreeMap::new(),
        }
    }

    fn plan(&self, desired: &Snapshot) -> Plan {
        self.plan_with(desired, &self.rt.snapshot())
    }

    fn plan_with(&self, desired: &Snapshot, observed: &Observed) -> Plan {
        plan(&PlanInput {
            desired,
            observed,
            now: self.now,
            backoff: &self.backoff,
            busy: &BTreeSet::new(),
            retry_at: &BTreeMap::new(),
            unhealthy: &self.unhealthy,
            host_ip: Some("192.168.1.10"),
        })
    }

    /// Plans and applies until nothing is left to do; returns the plans applied.
    async fn converge(&mut self, desired: &Snapshot) -> Vec<Plan> {
        let mut plans = Vec::new();
        for _ in 0..10 {
            let p = self.plan(desired);
            if p.work.is_empty() {
                return plans;
            }
            for work in p.work.clone() {
                for a in &work.actions {
                    if let Action::StartContainer {
                        restart: Some((k, finished)),
                        ..
                    } = a
                    {
                        self.backoff.next(k, *finished, self.now);
                    }
                }
                execute(&self.rt, &FakeHost::new(), &cx(), work)
                    .await
                    .result
                    .expect("fake runtime accepts the plan");
            }
            plans.push(p);
        }
        panic!("did not converge: {:?}", self.plan(desired));
    }

    fn containers(&self, name: &str) -> Vec<ObservedContainer> {
        let mut v: Vec<_> = self
            .rt
            .snapshot()
            .containers
            .into_iter()
            .filter(|c| c.name == name)
            .collect();
        v.sort_by_key(|c| c.attempt);
        v
    }
}

fn kinds(p: &Plan) -> Vec<&'static str> {
    p.work
        .iter()
        .flat_map(|w| &w.actions)
        .map(|a| match a {
            Action::PrepareSwap { .. } => "prepare-swap",
            Action::StopContainers { .. } => "stop-containers",
            Action::RemoveContainer(_) => "remove-container",
            Action::StopSandbox(_) => "stop-sandbox",
            Action::RemoveSandbox(_) => "remove-sandbox",
            Action::CleanupPod { .. } => "cleanup",
            Action::PreparePod { .. } => "prepare",
            Action::RunSandbox { .. } => "run-sandbox",
            Action::StartContainer { .. } => "start",
            Action::StartCreated(_) => "start-created",
        })
        .collect()
}

#[tokio::test]
async fn new_pod_gets_a_sandbox_then_its_containers() {
    let w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["prepare", "run-sandbox", "start"]);
    match &p.work[0].actions[2] {
        Action::StartContainer {
            sandbox,
            name,
            attempt,
            restart,
            ..
        } => {
            assert_eq!(
                (sandbox, name.as_str(), *attempt, restart),
                (&SandboxRef::New, "app", 0, &None)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn applying_a_plan_then_planning_again_yields_nothing() {
    let mut w = World::new();
    let two = format!("{ONE}  - {{name: side, image: 'busybox:1.35'}}\n");
    let desired = snapshot(&[
        ("a.yaml", &pod_yaml("a", "", ONE)),
        ("b.yaml", &pod_yaml("b", "  hostNetwork: true\n", &two)),
        (
            "c.yaml",
            &pod_yaml(
                "c",
                "  initContainers:\n  - {name: init, image: 'busybox:1.35'}\n",
                ONE,
            ),
        ),
    ]);
    let plans = w.converge(&desired).await;
    assert!(!plans.is_empty());
    // the init container runs and stays running in the fake, so c waits for it
    assert_eq!(w.rt.running("a-n1").len(), 1);
    assert_eq!(w.rt.running("b-n1").len(), 2);
    assert_eq!(w.plan(&desired).work, Vec::<PodWork>::new());
}

#[tokio::test]
async fn removed_manifest_stops_pod_with_grace_and_removes_it() {
    let mut w = World::new();
    let desired = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "  terminationGracePeriodSeconds: 7\n", ONE),
    )]);
    w.converge(&desired).await;
    let p = w.plan(&snapshot(&[]));
    assert_eq!(
        kinds(&p),
        [
            "stop-containers",
            "stop-sandbox",
            "remove-sandbox",
            "cleanup"
        ]
    );
    match &p.work[0].actions[0] {
        Action::StopContainers { containers, reason } => {
            assert_eq!(containers[0].grace, Duration::from_secs(7));
            assert_eq!(*reason, StopReason::PodRemoved);
        }
        other => panic!("unexpected {other:?}"),
    }
    w.converge(&snapshot(&[])).await;
    assert_eq!(w.rt.snapshot(), Observed::default());
}

#[tokio::test]
async fn zero_grace_period_still_gets_the_two_second_floor() {
    let mut w = World::new();
    w.converge(&snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "  terminationGracePeriodSeconds: 0\n", ONE),
    )]))
    .await;
    let p = w.plan(&snapshot(&[]));
    assert!(
        matches!(&p.work[0].actions[0], Action::StopContainers { containers, .. } if containers[0].grace == MIN_GRACE)
    );
}

#[tokio::test]
async fn pods_of_a_file_rejected_since_startup_are_left_alone() {
    let mut w = World::new();
    w.converge(&snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]))
        .await;
    // podvisor restarted and the file is now broken: no last good version is known
    let broken = snapshot(&[("a.yaml", "kind: Pod\n")]);
    assert!(broken.untouchable.contains(Path::new("/m/a.yaml")));
    assert_eq!(w.plan(&broken).work, Vec::<PodWork>::new());
}

#[tokio::test]
async fn container_only_change_restarts_only_that_container() {
    let mut w = World::new();
    let two = format!("{ONE}  - {{name: side, image: 'busybox:1.35'}}\n");
    w.converge(&snapshot(&[("a.yaml", &pod_yaml("a", "", &two))]))
        .await;
    let sandbox_before = w.rt.snapshot().sandboxes[0].id.clone();
    let side_before = w.containers("side")[0].id.clone();
    let edited = two.replace("command: [sleep, '3600']", "command: [sleep, '7200']");
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", &edited))]);
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["prepare-swap", "stop-containers", "start"]);
    assert!(
        matches!(&p.work[0].actions[0], Action::PrepareSwap { containers, .. } if containers == &["app"]),
        "only the changed container's image is made ready first"
    );
    assert!(matches!(
        &p.work[0].actions[1],
        Action::StopContainers {
            reason: StopReason::SpecChanged,
            ..
        }
    ));
    assert!(matches!(
        &p.work[0].actions[2],
        Action::StartContainer {
            attempt: 1,
            restart: None,
            ..
        }
    ));
    w.converge(&desired).await;
    let after = w.rt.snapshot();
    assert_eq!(after.sandboxes.len(), 1);
    assert_eq!(after.sandboxes[0].id, sandbox_before);
    assert_eq!(w.rt.running("a-n1").len(), 2);
    assert!(
        w.rt.running("a-n1").iter().any(|c| c.id == side_before),
        "the untouched container kept running"
    );
}

#[tokio::test]
async fn sandbox_change_stops_the_old_pod_fully_before_starting_the_new_one() {
    let mut w = World::new();
    w.converge(&snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]))
        .await;
    let old = w.rt.snapshot().sandboxes[0].id.clone();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "  hostNetwork: true\n", ONE))]);
    let p = w.plan(&desired);
    assert_eq!(
        kinds(&p),
        [
            "prepare-swap",
            "stop-containers",
            "stop-sandbox",
            "remove-sandbox",
            "prepare",
            "run-sandbox",
            "start",
            "cleanup"
        ]
    );
    assert!(matches!(
        &p.work[0].actions[1],
        Action::StopContainers {
            reason: StopReason::PodReplaced,
            ..
        }
    ));
    assert_eq!(p.work[0].actions[3], Action::RemoveSandbox(old));
    w.converge(&desired).await;
    assert_eq!(w.rt.snapshot().sandboxes.len(), 1);
}

#[tokio::test]
async fn a_manifest_uid_survives_a_sandbox_change_and_keeps_its_directories_issue_17() {
    let mut w = World::new();
    let yaml = |extra: &str| {
        pod_yaml("a", extra, ONE).replace(
            "{name: a}",
            "{name: a, uid: 0a1b2c3d-aaaa-bbbb-cccc-0123456789ab}",
        )
    };
    w.converge(&snapshot(&[("a.yaml", &yaml(""))])).await;
    let before = w.rt.snapshot().sandboxes[0].clone();
    assert_eq!(before.uid.as_str(), "0a1b2c3d-aaaa-bbbb-cccc-0123456789ab");
    let desired = snapshot(&[("a.yaml", &yaml("  hostNetwork: true\n"))]);
    let p = w.plan(&desired);
    assert_eq!(
        kinds(&p),
        [
            "prepare-swap",
            "stop-containers",
            "stop-sandbox",
            "remove-sandbox",
            "prepare",
            "run-sandbox",
            "start"
        ],
        "replaced by sandbox version, and the UID's directories are not cleaned up"
    );
    w.converge(&desired).await;
    let after = w.rt.snapshot().sandboxes;
    assert_eq!(after.len(), 1);
    assert_ne!(after[0].id, before.id);
    assert_eq!(after[0].uid, before.uid);
    assert_ne!(after[0].version, before.version);
}

#[tokio::test]
async fn crashed_container_restarts_at_once_then_backs_off() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    w.converge(&desired).await;

    // first crash: restarted immediately, with attempt 1
    let c0 = w.containers("app")[0].id.clone();
    w.rt.exit_container(&c0, 1);
    let finished = w.containers("app")[0].finished_at.expect("finished");
    w.now = finished;
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["start"]);
    assert!(matches!(
        &p.work[0].actions[0],
        Action::StartContainer {
            attempt: 1,
            restart: Some(_),
            ..
        }
    ));
    w.converge(&desired).await;

    // second crash: waits 10 s from the exit (meanwhile the older dead instance goes),
    // then restarts exactly at expiry
    let c1 = w.containers("app")[1].id.clone();
    w.rt.exit_container(&c1, 1);
    let finished = w.containers("app")[1].finished_at.expect("finished");
    w.now = finished;
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["remove-container"]);
    assert_eq!(p.work[0].actions[0], Action::RemoveContainer(c0));
    assert_eq!(p.wake_at, Some(finished.plus(Duration::from_secs(10))));
    assert_eq!(p.backing_off.len(), 1);
    w.converge(&desired).await;
    w.now = finished.plus(Duration::from_nanos(9_999_999_999));
    assert!(w.plan(&desired).work.is_empty(), "not a nanosecond early");
    w.now = finished.plus(Duration::from_secs(10));
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["start"]);
    assert!(matches!(
        &p.work[0].actions[0],
        Action::StartContainer {
            attempt: 2,
            restart: Some(_),
            ..
        }
    ));
}

#[tokio::test]
async fn at_most_one_dead_instance_per_container_is_kept() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    w.converge(&desired).await;
    for _ in 0..4 {
        let running = w.rt.running("a-n1")[0].id.clone();
        w.rt.exit_container(&running, 2);
        w.now = w.now.plus(Duration::from_secs(400));
        w.converge(&desired).await;
    }
    let app = w.containers("app");
    assert_eq!(app.len(), 2, "{app:?}");
    assert_eq!((app[0].state, app[0].attempt), (ContainerState::Exited, 3));
    assert_eq!((app[1].state, app[1].attempt), (ContainerState::Running, 4));
}

#[tokio::test]
async fn restart_policy_never_leaves_an_exited_container_and_stops_the_sandbox() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "  restartPolicy: Never\n", ONE))]);
    w.converge(&desired).await;
    let c = w.containers("app")[0].id.clone();
    w.rt.exit_container(&c, 1);
    assert_eq!(kinds(&w.plan(&desired)), ["stop-sandbox"]);
    w.converge(&desired).await;
    assert_eq!(w.rt.snapshot().sandboxes[0].state, SandboxState::NotReady);
    assert_eq!(w.containers("app").len(), 1, "kept for status and logs");
}

#[tokio::test]
async fn restart_policy_on_failure_restarts_only_failures() {
    let mut w = World::new();
    let desired = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "  restartPolicy: OnFailure\n", ONE),
    )]);
    w.converge(&desired).await;
    let c = w.containers("app")[0].id.clone();
    w.rt.exit_container(&c, 3);
    assert_eq!(kinds(&w.plan(&desired)), ["start"]);
    w.converge(&desired).await;
    let c = w.rt.running("a-n1")[0].id.clone();
    w.rt.exit_container(&c, 0);
    // the older failed instance goes (one dead instance per name), and the pod is done
    assert_eq!(
        kinds(&w.plan(&desired)),
        ["remove-container", "stop-sandbox"]
    );
}

#[tokio::test]
async fn edited_container_of_a_completed_never_pod_runs_again() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "  restartPolicy: Never\n", ONE))]);
    w.converge(&desired).await;
    let c = w.containers("app")[0].id.clone();
    w.rt.exit_container(&c, 0);
    w.converge(&desired).await;
    let edited = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "  restartPolicy: Never\n", &ONE.replace("3600", "60")),
    )]);
    let p = w.plan(&edited);
    assert_eq!(
        kinds(&p),
        ["remove-sandbox", "prepare", "run-sandbox", "start"]
    );
    assert!(matches!(
        &p.work[0].actions[3],
        Action::StartContainer { attempt: 1, .. }
    ));
}

#[tokio::test]
async fn init_containers_run_one_at_a_time_before_app_containers() {
    let mut w = World::new();
    let spec = "  initContainers:\n  - {name: init1, image: 'busybox:1.35'}\n  - {name: init2, image: 'busybox:1.35'}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", spec, ONE))]);
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["prepare", "run-sandbox", "start"]);
    assert!(
        matches!(&p.work[0].actions[2], Action::StartContainer { name, .. } if name == "init1")
    );
    w.converge(&desired).await;
    assert_eq!(
        w.plan(&desired).work,
        Vec::<PodWork>::new(),
        "waits while init1 runs"
    );

    let init1 = w.containers("init1")[0].id.clone();
    w.rt.exit_container(&init1, 0);
    let p = w.plan(&desired);
    assert!(
        matches!(&p.work[0].actions[..], [Action::StartContainer { name, .. }] if name == "init2")
    );
    w.converge(&desired).await;
    let init2 = w.containers("init2")[0].id.clone();
    w.rt.exit_container(&init2, 0);
    let p = w.plan(&desired);
    assert!(
        matches!(&p.work[0].actions[..], [Action::StartContainer { name, .. }] if name == "app")
    );
    w.converge(&desired).await;
    assert_eq!(w.rt.running("a-n1").len(), 1);
}

#[tokio::test]
async fn failed_init_container_is_retried_unless_restart_policy_never() {
    let mut w = World::new();
    let spec = "  initContainers:\n  - {name: init, image: 'busybox:1.35'}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", spec, ONE))]);
    w.converge(&desired).await;
    let init = w.containers("init")[0].id.clone();
    w.rt.exit_container(&init, 1);
    let p = w.plan(&desired);
    assert!(
        matches!(&p.work[0].actions[..], [Action::StartContainer { name, attempt: 1, .. }] if name == "init")
    );

    let mut w = World::new();
    let never = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", &format!("  restartPolicy: Never\n{spec}"), ONE),
    )]);
    w.converge(&never).await;
    let init = w.containers("init")[0].id.clone();
    w.rt.exit_container(&init, 1);
    assert_eq!(kinds(&w.plan(&never)), ["stop-sandbox"]);
}

#[tokio::test]
async fn sidecars_start_in_order_and_do_not_block_the_next_container() {
    let mut w = World::new();
    let spec = "  initContainers:\n  - {name: proxy, image: 'busybox:1.35', restartPolicy: Always}\n  - {name: init, image: 'busybox:1.35'}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", spec, ONE))]);
    w.converge(&desired).await;
    assert_eq!(w.containers("proxy").len(), 1);
    assert_eq!(
        w.containers("init").len(),
        1,
        "started while the sidecar keeps running"
    );
    let init = w.containers("init")[0].id.clone();
    w.rt.exit_container(&init, 0);
    w.converge(&desired).await;
    let running: Vec<String> = w.rt.running("a-n1").into_iter().map(|c| c.name).collect();
    assert_eq!(running.len(), 2);
    assert!(running.contains(&"proxy".to_owned()) && running.contains(&"app".to_owned()));
}

#[tokio::test]
async fn dead_sandbox_is_replaced_with_a_higher_attempt_and_restart_counts_continue() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    w.converge(&desired).await;
    let sb = w.rt.snapshot().sandboxes[0].id.clone();
    execute(
        &w.rt,
        &FakeHost::new(),
        &cx(),
        PodWork {
            key: w.rt.snapshot().sandboxes[0].key.clone(),
            actions: vec![Action::StopSandbox(sb.clone())],
        },
    )
    .await
    .result
    .expect("stop");
    let p = w.plan(&desired);
    assert_eq!(
        kinds(&p),
        ["remove-sandbox", "prepare", "run-sandbox", "start"]
    );
    assert!(matches!(
        &p.work[0].actions[2],
        Action::RunSandbox { attempt: 1, .. }
    ));
    assert!(matches!(
        &p.work[0].actions[3],
        Action::StartContainer { attempt: 1, .. }
    ));
}

#[tokio::test]
async fn duplicate_ready_sandboxes_are_reduced_to_the_newest() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    w.converge(&desired).await;
    let pod = desired.pods.values().next().expect("pod").clone();
    let mut extra = w.rt.snapshot().sandboxes[0].clone();
    extra.id = crate::runtime::SandboxId("zz-duplicate".into());
    extra.attempt = 0;
    extra.created_at = Some(Timestamp(1));
    w.rt.insert_sandbox(extra.clone());
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["stop-sandbox", "remove-sandbox"]);
    assert_eq!(p.work[0].actions[1], Action::RemoveSandbox(extra.id));
    assert_eq!(pod.key, p.work[0].key);
}

#[tokio::test]
async fn busy_and_cooling_down_pods_are_not_planned() {
    let w = World::new();
    let desired = snapshot(&[
        ("a.yaml", &pod_yaml("a", "", ONE)),
        ("b.yaml", &pod_yaml("b", "", ONE)),
    ]);
    let keys: Vec<PodKey> = desired.pods.keys().cloned().collect();
    let busy: BTreeSet<PodKey> = [keys[0].clone()].into();
    let retry: BTreeMap<PodKey, Timestamp> = [(keys[1].clone(), at(5))].into();
    let observed = Observed::default();
    let p = plan(&PlanInput {
        desired: &desired,
        observed: &observed,
        now: T0,
        backoff: &w.backoff,
        busy: &busy,
        retry_at: &retry,
        unhealthy: &BTreeMap::new(),
        host_ip: None,
    });
    assert!(p.work.is_empty());
    assert_eq!(p.wake_at, Some(at(5)));
}

#[tokio::test]
async fn containers_dropped_from_the_manifest_are_stopped_and_removed() {
    let mut w = World::new();
    let two = format!("{ONE}  - {{name: side, image: 'busybox:1.35'}}\n");
    w.converge(&snapshot(&[("a.yaml", &pod_yaml("a", "", &two))]))
        .await;
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    // removing a container changes no sandbox-shaping field, so the sandbox stays
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["stop-containers", "remove-container"]);
    assert!(matches!(
        &p.work[0].actions[0],
        Action::StopContainers {
            reason: StopReason::ContainerRemoved,
            ..
        }
    ));
}

#[tokio::test]
async fn adopted_pods_with_matching_hashes_get_no_work() {
    // what a restarted podvisor sees: the same runtime state, a fresh backoff table
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    w.converge(&desired).await;
    let fresh = World {
        rt: FakeRuntime::new(Clock::System),
        backoff: Backoff::new(Policy::CRASH_LOOP),
        now: at(60),
        unhealthy: BTreeMap::new(),
    };
    assert_eq!(
        fresh.plan_with(&desired, &w.rt.snapshot()).work,
        Vec::<PodWork>::new()
    );
}

#[tokio::test]
async fn failed_liveness_probe_stops_the_container_then_it_restarts_with_backoff() {
    let mut w = World::new();
    let probe = "  - name: app\n    image: 'busybox:1.35'\n    livenessProbe: {exec: {command: [/bin/true]}, terminationGracePeriodSeconds: 4}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", probe))]);
    w.converge(&desired).await;
    let c = w.containers("app")[0].id.clone();
    w.unhealthy.insert(c.clone(), ProbeKind::Liveness);
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["stop-containers"]);
    match &p.work[0].actions[0] {
        Action::StopContainers { containers, reason } => {
            assert_eq!(*reason, StopReason::LivenessProbe);
            assert_eq!(
                (containers[0].id.clone(), containers[0].grace),
                (c, Duration::from_secs(4)),
                "the probe's grace period"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    w.converge(&desired).await;
    // exited now: the restart policy (Always) brings it back
    let app = w.containers("app");
    assert_eq!(app.len(), 2);
    assert_eq!((app[1].attempt, app[1].state), (1, ContainerState::Running));
}

#[tokio::test]
async fn failed_liveness_under_restart_policy_never_leaves_the_container_dead() {
    let mut w = World::new();
    let probe =
        "  - {name: app, image: 'busybox:1.35', livenessProbe: {exec: {command: [/bin/true]}}}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "  restartPolicy: Never\n", probe))]);
    w.converge(&desired).await;
    let c = w.containers("app")[0].id.clone();
    w.unhealthy.insert(c, ProbeKind::Liveness);
    w.converge(&desired).await;
    let app = w.containers("app");
    assert_eq!((app.len(), app[0].state), (1, ContainerState::Exited));
}

#[tokio::test]
async fn stop_targets_carry_the_pre_stop_hook_and_the_pod_address() {
    let mut w = World::new();
    let hooked = "  - name: app\n    image: 'busybox:1.35'\n    ports: [{name: http, containerPort: 8080}]\n    lifecycle: {preStop: {httpGet: {path: /quit, port: http}}}\n";
    w.converge(&snapshot(&[("a.yaml", &pod_yaml("a", "", hooked))]))
        .await;
    // the manifest goes: the hook comes from the container's preStop annotation
    let p = w.plan(&snapshot(&[]));
    match &p.work[0].actions[0] {
        Action::StopContainers { containers, .. } => {
            let hook = containers[0]
                .pre_stop
                .clone()
                .expect("preStop kept from the annotation");
            assert_eq!(
                hook.handler.http_get.and_then(|h| h.path).as_deref(),
                Some("/quit")
            );
            assert_eq!(hook.host.as_deref(), Some("10.88.0.2"), "the pod's own IP");
        }
        other => panic!("unexpected {other:?}"),
    }
    // a spec change: the hook comes from the spec, with its named ports
    let edited = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "", &hooked.replace("/quit", "/bye")),
    )]);
    let p = w.plan(&edited);
    match &p.work[0].actions[1] {
        Action::StopContainers {
            containers,
            reason: StopReason::SpecChanged,
        } => {
            let hook = containers[0]
                .pre_stop
                .clone()
                .expect("preStop from the new spec");
            assert_eq!(
                hook.handler.http_get.and_then(|h| h.path).as_deref(),
                Some("/bye")
            );
            assert_eq!(hook.ports.len(), 1);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn sidecars_are_stopped_after_the_app_containers() {
    let mut w = World::new();
    let spec =
        "  initContainers:\n  - {name: proxy, image: 'busybox:1.35', restartPolicy: Always}\n";
    w.converge(&snapshot(&[("a.yaml", &pod_yaml("a", spec, ONE))]))
        .await;
    assert_eq!(w.rt.running("a-n1").len(), 2);
    let p = w.plan(&snapshot(&[]));
    let stops: Vec<Vec<String>> = p.work[0]
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::StopContainers { containers, .. } => {
                Some(containers.iter().map(|t| t.name.clone()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(stops, [vec!["app".to_owned()], vec!["proxy".to_owned()]]);
}

#[tokio::test]
async fn a_stopped_sidecar_is_restarted_next_to_running_app_containers() {
    let mut w = World::new();
    let spec =
        "  initContainers:\n  - {name: proxy, image: 'busybox:1.35', restartPolicy: Always}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", spec, ONE))]);
    w.converge(&desired).await;
    let proxy = w.containers("proxy")[0].id.clone();
    w.rt.exit_container(&proxy, 1);
    let p = w.plan(&desired);
    assert!(
        matches!(&p.work[0].actions[..], [Action::StartContainer { name, attempt: 1, .. }] if name == "proxy")
    );
}

#[tokio::test]
async fn crashes_count_as_restarts_and_an_edit_starts_the_count_again_issue_13() {
    let mut w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    w.converge(&desired).await;
    let first = w.containers("app")[0].clone();
    assert_eq!((first.attempt, first.restarts), (0, 0));
    // a crash: restarted by the policy, one restart
    w.rt.exit_container(&first.id, 1);
    w.converge(&desired).await;
    let crashed = w.containers("app").last().cloned().expect("restarted");
    assert_eq!((crashed.attempt, crashed.restarts), (1, 1));
    // an edit: a new version of the container, whose count starts at 0; the attempt goes on
    let edited = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "", &ONE.replace("'3600'", "'7200'")),
    )]);
    let p = w.plan(&edited);
    assert!(matches!(
        &p.work[0].actions[2],
        Action::StartContainer {
            attempt: 2,
            restarts: 0,
            ..
        }
    ));
    w.converge(&edited).await;
    let new = w.containers("app").last().cloned().expect("edited");
    assert_eq!((new.attempt, new.restarts), (2, 0));
    // the status reports restarts, not attempts
    w.rt.exit_container(&new.id, 1);
    w.now = w.now.plus(std::time::Duration::from_secs(60));
    w.converge(&edited).await;
    assert_eq!(w.containers("app").last().map(|c| c.restarts), Some(1));
}

/// Issue 13.4: `activeDeadlineSeconds` as the kubelet enforces it: once the pod has been
/// active that long (from its sandbox's creation) its containers are stopped with its grace
/// period, its sandbox too, and nothing restarts, whatever the restart policy; an edit is a
/// new pod with a deadline of its own.
#[tokio::test(start_paused = true)]
async fn a_pod_past_its_active_deadline_is_stopped_and_not_restarted_until_edited() {
    let mut w = World::new();
    w.rt = FakeRuntime::new(Clock::tokio(T0));
    let deadline = "  activeDeadlineSeconds: 30\n  terminationGracePeriodSeconds: 5\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", deadline, ONE))]);
    w.converge(&desired).await;
    let p = w.plan(&desired);
    assert!(p.work.is_empty());
    assert_eq!(p.wake_at, Some(at(30)), "wakes when the deadline falls due");

    w.now = at(30);
    let p = w.plan(&desired);
    assert_eq!(kinds(&p), ["stop-containers", "stop-sandbox"]);
    match &p.work[0].actions[0] {
        Action::StopContainers { containers, reason } => {
            assert_eq!(*reason, StopReason::DeadlineExceeded);
            assert_eq!(containers[0].grace, Duration::from_secs(5));
        }
        other => panic!("unexpected {other:?}"),
    }
    w.converge(&desired).await;
    w.now = at(3600);
    let p = w.plan(&desired);
    assert!(
        p.work.is_empty(),
        "restartPolicy Always, yet nothing runs: {p:?}"
    );
    assert_eq!(p.wake_at, None);
    assert_eq!(w.containers("app").len(), 1, "kept for status and logs");

    // Any edit is a new pod: the old one goes, the new one runs with a fresh deadline.
    let edited = snapshot_at(
        &[(
            "a.yaml",
            &pod_yaml("a", deadline, &ONE.replace("3600", "7200")),
        )],
        w.now,
    );
    let p = w.plan(&edited);
    assert!(
        kinds(&p).ends_with(&["prepare", "run-sandbox", "start", "cleanup"]),
        "{:?}",
        kinds(&p)
    );
}

#[tokio::test]
async fn a_pod_that_never_got_a_sandbox_counts_its_deadline_from_when_it_was_first_seen() {
    let mut w = World::new();
    let desired = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "  activeDeadlineSeconds: 10\n", ONE),
    )]);
    w.now = at(10);
    let p = w.plan(&desired);
    assert!(p.work.is_empty(), "never started: {p:?}");
}

#[tokio::test]
async fn a_replaced_pod_makes_every_image_of_its_new_version_ready_before_anything_stops_issue_16()
{
    let mut w = World::new();
    let spec = "  initContainers:\n  - {name: init, image: 'busybox:1.35', command: ['true']}\n";
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", spec, ONE))]);
    w.converge(&desired).await;
    let init = w.containers("init")[0].id.clone();
    w.rt.exit_container(&init, 0);
    w.converge(&desired).await;
    assert_eq!(w.rt.running("a-n1").len(), 1, "the app runs");
    let edited = format!("  hostNetwork: true\n{spec}");
    let p = w.plan(&snapshot(&[("a.yaml", &pod_yaml("a", &edited, ONE))]));
    match &p.work[0].actions[0] {
        Action::PrepareSwap { pod, containers } => {
            assert!(pod.host_network(), "the new version is prepared");
            assert_eq!(
                containers,
                &["init", "app"],
                "init containers first, then apps"
            );
        }
        other => panic!("expected PrepareSwap first, got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_is_prepared_first_when_no_old_version_runs_issue_16() {
    let mut w = World::new();
    // a new pod
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    assert!(!kinds(&w.plan(&desired)).contains(&"prepare-swap"));
    // an edit of a pod whose container is dead: nothing running to protect
    w.converge(&desired).await;
    let app = w.containers("app")[0].id.clone();
    w.rt.exit_container(&app, 1);
    let edited = snapshot(&[(
        "a.yaml",
        &pod_yaml("a", "", &ONE.replace("'3600'", "'7200'")),
    )]);
    assert_eq!(kinds(&w.plan(&edited)), ["start"]);
}

#[tokio::test]
async fn names_held_after_requests_that_got_no_answer_are_skipped_and_the_files_follow_the_attempt()
{
    let w = World::new();
    let desired = snapshot(&[("a.yaml", &pod_yaml("a", "", ONE))]);
    let pod = desired.pods.values().next().expect("pod").clone();
    // a podvisor killed mid-RunPodSandbox (attempt 0) and mid-CreateContainer (attempt 2)
    w.rt.leave_unanswered(Asked::Sandbox(pod.uid.clone()), 1);
    w.rt.leave_unanswered(Asked::Container(pod.uid.clone(), "app".into()), 3);
    let p = w.plan(&desired);
    assert!(matches!(
        &p.work[0].actions[..],
        [
            Action::PreparePod { .. },
            Action::RunSandbox { attempt: 1, .. },
            Action::StartContainer {
                attempt: 3,
                restarts: 0,
                ..
            }
        ]
    ));
    let host = FakeHost::new();
    execute(&w.rt, &host, &cx(), p.work[0].clone())
        .await
        .result
        .expect("the runtime takes the names past the held ones");
    // the container's files (its termination-message file) are made for the attempt it runs
    assert!(
        host.calls().contains(&HostCall::PrepareContainer(
            pod.key.clone(),
            "app".into(),
            3
        )),
        "{:?}",
        host.calls()
    );
    let app = w.containers("app");
    assert_eq!((app[0].attempt, app[0].restarts), (3, 0));
    assert!(w.plan(&desired).work.is_empty());
}

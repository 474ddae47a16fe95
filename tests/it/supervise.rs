//! The daemon's loops wired together over the in-memory runtime, on a paused clock: timing
//! decisions checked to the millisecond without sleeping. Needs no root.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use podvisor::app::{Parts, supervise_until};
use podvisor::cli::LogFormat;
use podvisor::clock::{Clock, Timestamp};
use podvisor::config::Config;
use podvisor::pod::{NodeName, WaitingReason};
use podvisor::reconcile::ReconcileState;
use podvisor::shutdown::Shutdown;
use podvisor::testing::{FakeCall, FakeHost, FakeRuntime};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn config(dir: &Path) -> Config {
    Config {
        manifest_dir: dir.to_owned(),
        runtime_endpoint: "unix:///unused".into(),
        image_service_endpoint: None,
        credential_providers: None,
        pulls: podvisor::runtime::PullSettings::default(),
        rollback: podvisor::reconcile::RollbackPolicy::default(),
        node_name: NodeName::new("n1"),
        resync_period: Duration::from_secs(10),
        relist_period: Duration::from_secs(1),
        root_dir: dir.join("root"),
        pod_log_dir: dir.join("logs"),
        container_log_links: None,
        container_logs: podvisor::logfiles::LogSettings::default(),
        image_gc: podvisor::images::GcPolicy::default(),
        log_format: LogFormat::Text,
        status_socket: dir.join("podvisor.sock"),
        status_address: None,
        allow_insecure_manifests: false,
        mirror: None,
        node_api: None,
        healthz: None,
        cgroup_driver: None,
        node_status: Default::default(),
        shutdown: Default::default(),
    }
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: app, image: 'busybox:1.35'}\n";

async fn until(
    state: &mut watch::Receiver<Arc<ReconcileState>>,
    what: &str,
    check: impl Fn() -> bool,
) {
    for _ in 0..10_000 {
        if check() {
            return;
        }
        if tokio::time::timeout(Duration::from_secs(60), state.changed())
            .await
            .is_err()
        {
            panic!("no reconcile pass for a minute while waiting for {what}");
        }
    }
    panic!("never saw {what}");
}

#[tokio::test(start_paused = true)]
async fn crash_loop_restarts_at_once_then_exactly_when_the_backoff_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (channels, task) = supervise_until(
        &config(dir.path()),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let mut state = channels.state;
    let task = tokio::spawn(task);

    until(&mut state, "web running", || {
        rt.running("web-n1").len() == 1
    })
    .await;
    let first = rt.running("web-n1")[0].clone();

    // first crash: the exit event wakes the loop, which restarts it at once (no backoff)
    rt.exit_container(&first.id, 1);
    let crashed = clock.now();
    until(&mut state, "first restart", || {
        rt.running("web-n1").iter().any(|c| c.attempt == 1)
    })
    .await;
    let second = rt.running("web-n1")[0].clone();
    assert_eq!(
        second.created_at,
        Some(crashed),
        "restarted without waiting for a relist"
    );

    // second crash: CrashLoopBackOff, 10 s from the exit, not a tick later
    rt.exit_container(&second.id, 1);
    let crashed = clock.now();
    until(&mut state, "second restart", || {
        rt.running("web-n1").iter().any(|c| c.attempt == 2)
    })
    .await;
    let third = rt.running("web-n1")[0].clone();
    let waited = third.created_at.expect("created").since(crashed);
    assert!(
        waited >= Duration::from_secs(10) && waited <= Duration::from_millis(10_002),
        "restarted after {waited:?}, not at the 10 s expiry"
    );

    // third crash: 20 s
    rt.exit_container(&third.id, 1);
    let crashed = clock.now();
    until(&mut state, "third restart", || {
        rt.running("web-n1").iter().any(|c| c.attempt == 3)
    })
    .await;
    let waited = rt.running("web-n1")[0]
        .created_at
        .expect("created")
        .since(crashed);
    assert!(
        waited >= Duration::from_secs(20) && waited <= Duration::from_millis(20_002),
        "waited {waited:?}"
    );

    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_the_loops_and_touches_no_pod() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (channels, task) = supervise_until(
        &config(dir.path()),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let mut state = channels.state;
    let task = tokio::spawn(task);
    until(&mut state, "synced", || state_synced(&rt)).await;
    rt.take_calls();
    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean shutdown");
    let calls: Vec<FakeCall> = rt
        .take_calls()
        .into_iter()
        .filter(|c| *c != FakeCall::Observe)
        .collect();
    assert_eq!(calls, Vec::<FakeCall>::new());
    assert_eq!(rt.running("web-n1").len(), 1);
}

fn state_synced(rt: &FakeRuntime) -> bool {
    rt.running("web-n1").len() == 1
}

#[tokio::test(start_paused = true)]
async fn a_missing_manifest_directory_never_deletes_running_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    // a pod from an earlier run is in the runtime
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("mkdir");
    std::fs::write(manifests.join("web.yaml"), POD).expect("write");
    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (channels, task) = supervise_until(
        &config(&manifests),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let mut state = channels.state;
    let task = tokio::spawn(task);
    until(&mut state, "web running", || {
        rt.running("web-n1").len() == 1
    })
    .await;
    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean shutdown");

    // podvisor restarts while the directory is gone (unmounted, say)
    std::fs::remove_dir_all(&manifests).expect("rm");
    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (_channels, task) = supervise_until(
        &config(&manifests),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let task = tokio::spawn(task);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(rt.running("web-n1").len(), 1, "the pod survived");
    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn tearing_down_an_orphan_with_a_long_grace_period_holds_up_neither_readiness_nor_other_pods_issue_17()
 {
    use podvisor::manifest::{Loaded, load_manifest};

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    // A pod whose manifest vanished while podvisor was down: 40 s of grace, and a preStop
    // hook that uses all of it.
    let orphan_yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: old}\nspec:\n  terminationGracePeriodSeconds: 40\n  containers:\n  - name: app\n    image: 'busybox:1.35'\n    lifecycle: {preStop: {sleep: {seconds: 40}}}\n";
    let Ok(Loaded::Accepted { pods, .. }) = load_manifest(
        &dir.path().join("gone.yaml"),
        orphan_yaml.as_bytes(),
        &NodeName::new("n1"),
        T0,
    ) else {
        panic!("orphan manifest");
    };
    let sandbox = rt.run_pod(&pods[0], 0).await.expect("sandbox");
    rt.start(&pods[0], &sandbox, "app", 0)
        .await
        .expect("container");

    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (channels, task) = supervise_until(
        &config(dir.path()),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let mut state = channels.state;
    let task = tokio::spawn(task);
    let started = clock.now();
    let reader = state.clone();
    until(&mut state, "first full reconcile", || {
        reader.borrow().synced
    })
    .await;
    assert!(
        clock.now().since(started) < Duration::from_secs(5),
        "readiness waited {:?} for the orphan's grace period",
        clock.now().since(started)
    );
    assert_eq!(rt.running("web-n1").len(), 1, "the wanted pod is up");
    assert_eq!(
        rt.running("old-n1").len(),
        1,
        "the orphan is still in its preStop hook"
    );
    until(&mut state, "orphan stopped", || {
        rt.running("old-n1").is_empty()
    })
    .await;
    assert!(clock.now().since(started) >= Duration::from_secs(40));
    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn a_failed_pull_shows_err_image_pull_then_image_pull_back_off_and_retries_after_10_then_20_s_issue_17()
 {
    use podvisor::runtime::RuntimeError;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    let pull = || RuntimeError::ImagePull {
        image: "busybox:1.35".into(),
        message: "no registry".into(),
    };
    for _ in 0..3 {
        rt.fail_next("start_container", pull());
    }
    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (channels, task) = supervise_until(
        &config(dir.path()),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let mut state = channels.state;
    let task = tokio::spawn(task);
    let reason = |s: &watch::Receiver<Arc<ReconcileState>>| {
        s.borrow().start_errors.values().next().map(|e| e.reason)
    };
    let reader = state.clone();
    until(&mut state, "ErrImagePull", || {
        reason(&reader) == Some(WaitingReason::ErrImagePull)
    })
    .await;
    let failed = clock.now();
    until(&mut state, "ImagePullBackOff", || {
        reason(&reader) == Some(WaitingReason::ImagePullBackOff)
    })
    .await;
    let message = reader
        .borrow()
        .start_errors
        .values()
        .next()
        .expect("error")
        .message
        .clone();
    assert_eq!(
        message,
        "Back-off pulling image \"busybox:1.35\": ErrImagePull: pulling image busybox:1.35 failed: no registry"
    );
    let starts = |rt: &FakeRuntime| {
        rt.calls()
            .iter()
            .filter(|c| matches!(c, FakeCall::StartContainer(..)))
            .count()
    };
    until(&mut state, "the second pull", || starts(&rt) == 2).await;
    assert_eq!(
        clock.now().since(failed),
        Duration::from_secs(10),
        "the kubelet's 10 s"
    );
    let failed = clock.now();
    until(&mut state, "the third pull", || starts(&rt) == 3).await;
    assert_eq!(
        clock.now().since(failed),
        Duration::from_secs(20),
        "then 20 s"
    );
    until(&mut state, "web running", || {
        rt.running("web-n1").len() == 1
    })
    .await;
    assert!(reader.borrow().start_errors.is_empty());
    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean shutdown");
}

#[tokio::test(start_paused = true)]
async fn the_runtime_is_asked_what_it_is_whenever_it_comes_back_issue_11() {
    use podvisor::runtime::RuntimeError;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
    let clock = Clock::tokio(T0);
    let rt = Arc::new(FakeRuntime::new(clock));
    let down = || RuntimeError::Unavailable {
        method: "Version",
        message: "connection refused".into(),
    };
    rt.fail_next("version", down());
    let shutdown = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let (channels, task) = supervise_until(
        &config(dir.path()),
        rt.clone(),
        Arc::new(FakeHost::new()),
        Parts::plain(clock),
        shutdown.clone(),
    );
    let mut state = channels.state;
    let task = tokio::spawn(task);
    let reader = state.clone();
    let version = |s: &watch::Receiver<Arc<ReconcileState>>| {
        s.borrow().runtime.as_ref().map(|v| v.version.clone())
    };
    until(&mut state, "a version after a failed first ask", || {
        version(&reader).as_deref() == Some("0.0.0")
    })
    .await;
    until(&mut state, "web running", || {
        rt.running("web-n1").len() == 1
    })
    .await;
    let status = channels.status.clone();
    let mut published = status.clone();
    let id = loop {
        let id = status
            .borrow()
            .pods
            .values()
            .next()
            .and_then(|r| r.status.container_statuses.clone())
            .and_then(|c| c[0].container_id.clone());
        if let Some(id) = id {
            break id;
        }
        published.changed().await.expect("status published");
    };
    assert!(
        id.starts_with("fake://"),
        "named by the runtime's own name: {id}"
    );

    // The runtime goes away and comes back upgraded.
    rt.fail_next(
        "observe",
        RuntimeError::Unavailable {
            method: "ListPodSandbox",
            message: "connection refused".into(),
        },
    );
    until(&mut state, "runtime down", || {
        reader.borrow().runtime_error.is_some()
    })
    .await;
    rt.set_version("2.0.0");
    until(&mut state, "the new version", || {
        version(&reader).as_deref() == Some("2.0.0")
    })
    .await;
    assert!(reader.borrow().runtime_error.is_none());
    shutdown.graceful.cancel();
    task.await.expect("join").expect("clean exit");
}

//! Regressions of issue 17 (bugs found by trying podvisor as users would), against a real
//! containerd: each test failed before its fix.

use std::process::Command;
use std::time::{Duration, Instant};

use podvisor::runtime::Runtime;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::{running, sandbox_of};

const T: Duration = Duration::from_secs(30);

/// A pod that ignores SIGTERM and whose preStop hook never finishes by itself.
fn stubborn(grace: u32) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: stubborn, namespace: kube-system}}
spec:
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'trap \"\" TERM; while true; do sleep 0.2; done']
    lifecycle:
      preStop:
        exec: {{command: [sh, -c, 'sleep 60']}}
"
    )
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_hanging_pre_stop_hook_is_bounded_by_the_grace_period() {
    let lab = Lab::start();
    // NO_COLOR empty: as under systemd, where nothing asks for plain text but stderr is no tty.
    let d = Daemon::start_with_env(&lab, &[], &[("NO_COLOR", "")]);
    let cri = lab.cri();
    let pod = d.pod("stubborn");
    d.write("stubborn.yaml", &stubborn(3));
    wait_for(&cri, T, "stubborn running", |o| running(o, &pod).len() == 1).await;
    let removed = Instant::now();
    d.remove("stubborn.yaml");
    wait_for(&cri, T, "stubborn stopped", |o| running(o, &pod).is_empty()).await;
    let took = removed.elapsed();
    // The kubelet: 3 s of hook, then the 2 s floor for SIGTERM → SIGKILL. Before the fix,
    // containerd 1.6 held the hook for its own timeout plus 10 s: 15 s in all.
    assert!(
        took < Duration::from_secs(9),
        "stopping took {took:?}; the grace period is 3 s (plus the 2 s floor)"
    );
    d.wait_log("did not finish within 3s", T).await;
    let log = d.log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal:\n{log}"
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_second_podvisor_on_the_same_root_dir_is_refused_and_the_first_keeps_working() {
    let lab = Lab::start();
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &crate::lifecycle::sleeper("web", "1"));
    wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;

    let (manifests, node, root, logs) = (
        d.manifests.clone(),
        d.node.clone(),
        d.root.clone(),
        d.logs.clone(),
    );
    let second = |socket: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_podvisor"))
            .args(["run", "--manifest-dir"])
            .arg(&manifests)
            .arg("--runtime-endpoint")
            .arg(&lab.endpoint)
            .args(["--node-name", &node, "--root-dir"])
            .arg(&root)
            .arg("--pod-log-dir")
            .arg(&logs)
            .arg("--status-socket")
            .arg(socket)
            .env("NO_COLOR", "1")
            .output()
            .expect("run a second podvisor")
    };
    let out = second(&lab.dir.path().join("other.sock"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("another podvisor") && stderr.contains("podvisor.lock"),
        "{stderr}"
    );

    // Another root dir but the same socket: refused as well, and the socket stays.
    let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", "--manifest-dir"])
        .arg(lab.path("empty-manifests"))
        .arg("--runtime-endpoint")
        .arg(&lab.endpoint)
        .args(["--node-name", "other", "--root-dir"])
        .arg(lab.path("other-root"))
        .arg("--status-socket")
        .arg(&d.socket)
        .output()
        .expect("run a third podvisor");
    assert_eq!(out.status.code(), Some(75));
    let (code, ps, _) = d.cli(&["ps"]);
    assert_eq!(code, 0, "the first daemon's socket still answers");
    assert!(ps.contains(&pod), "{ps}");

    // A regular file as the socket: a startup error that names it, and the file is kept.
    let conf = lab.dir.path().join("admin.conf");
    std::fs::write(&conf, "apiVersion: v1\n").expect("write");
    d.kill9();
    let out = second(&conf);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("admin.conf"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&conf).expect("kept"),
        "apiVersion: v1\n"
    );
    // The pods were never touched by any of it.
    let o = cri.observe().await.expect("observe");
    assert_eq!(running(&o, &pod).len(), 1);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_manifest_uid_is_the_pod_uid_and_survives_a_sandbox_edit() {
    const UID: &str = "6f1c2b1e-1b2a-4c3d-9e8f-0a1b2c3d4e5f";
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("fixed");
    let manifest = |label: &str| {
        crate::lifecycle::sleeper("fixed", "1").replace(
            "  labels: {app: fixed}",
            &format!("  uid: {UID}\n  labels: {{app: {label}}}"),
        )
    };
    d.write("fixed.yaml", &manifest("one"));
    let o = wait_for(&cri, T, "fixed running", |o| running(o, &pod).len() == 1).await;
    let first = sandbox_of(&o, &pod).clone();
    assert_eq!(
        first.uid.as_str(),
        UID,
        "io.kubernetes.pod.uid is the manifest's uid"
    );
    let log = d.logs.join(format!("kube-system_{pod}_{UID}/main/0.log"));
    assert!(log.exists(), "no log at {}", log.display());

    // Labels shape the sandbox: a new sandbox, the same UID, and its directories kept.
    d.write("fixed.yaml", &manifest("two"));
    let o = wait_for(&cri, T, "new sandbox running", |o| {
        o.sandboxes
            .iter()
            .any(|s| s.key.name == pod && s.id != first.id)
            && running(o, &pod).len() == 1
    })
    .await;
    let second = sandbox_of(&o, &pod);
    assert_eq!(second.uid.as_str(), UID);
    assert_ne!(second.version, first.version);
    assert_eq!(o.sandboxes.iter().filter(|s| s.key.name == pod).count(), 1);
    assert!(
        d.logs.join(format!("kube-system_{pod}_{UID}")).exists(),
        "the UID's log directory is the new sandbox's too"
    );
}

/// Waits until pod `pod`'s container `main` shows waiting reason `reason`; returns its view.
async fn wait_reason(d: &Daemon, pod: &str, reason: &str) -> podvisor::api::views::ContainerView {
    let deadline = Instant::now() + T;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let pods: Vec<podvisor::api::views::PodView> =
            podvisor::api::client::get_json(&d.socket, "/pods")
                .await
                .unwrap_or_default();
        if let Some(c) = pods
            .iter()
            .filter(|p| p.name == pod)
            .flat_map(|p| p.containers.iter())
            .find(|c| c.reason.as_deref() == Some(reason))
        {
            return c.clone();
        }
        last = pods;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{pod} never showed {reason}; last:\n{last:#?}");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn waiting_reasons_are_the_kubelets_for_a_missing_command_and_a_failed_pull() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let nocmd = crate::lifecycle::sleeper("nocmd", "1").replace(
        "command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']",
        "command: [/no/such/binary]",
    );
    d.write("nocmd.yaml", &nocmd);
    if lab.kind.creates_the_process_at_create() {
        // CRI-O: CreateContainer fails; a container that never existed is no crash, and
        // the pod keeps trying, as under the kubelet
        let c = wait_reason(&d, &d.pod("nocmd"), "CreateContainerError").await;
        assert_eq!((c.name.as_str(), c.restarts), ("main", 0));
        assert!(c.container_id.is_none(), "{c:?}");
        let tries = |log: &str| {
            log.lines()
                .filter(|l| l.contains("nocmd") && l.contains("CreateContainer failed"))
                .count()
        };
        let deadline = Instant::now() + T;
        while tries(&d.log()) < 2 {
            assert!(Instant::now() < deadline, "no second try:\n{}", d.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        let c = wait_reason(&d, &d.pod("nocmd"), "RunContainerError").await;
        assert_eq!(c.name, "main");
        // then, as under the kubelet, the failed start counts as a crash
        wait_reason(&d, &d.pod("nocmd"), "CrashLoopBackOff").await;
    }

    // No registry: Always must pull, fails, and backs off as the kubelet does.
    let pull = crate::lifecycle::sleeper("pull", "1")
        .replace("    env:", "    imagePullPolicy: Always\n    env:");
    d.write("pull.yaml", &pull);
    wait_reason(&d, &d.pod("pull"), "ErrImagePull").await;
    wait_reason(&d, &d.pod("pull"), "ImagePullBackOff").await;
}

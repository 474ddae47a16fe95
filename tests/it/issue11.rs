//! Regressions of issue 11 (the redesign's defects), against a real containerd.

use std::time::Duration;

use podvisor::runtime::{ContainerId, Runtime, RuntimeError, SandboxId};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::running;

const T: Duration = Duration::from_secs(30);

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn containerd_answers_not_found_for_what_it_does_not_have_and_stopping_it_is_done() {
    let lab = Lab::start();
    let cri = lab.cri();
    let container = ContainerId("c0ffee".repeat(10) + "c0ff");
    let sandbox = SandboxId("5ad".repeat(21) + "5");
    // Read by the gRPC code alone: no message text is looked at.
    assert_eq!(
        cri.stop_container(&container, Duration::from_secs(1)).await,
        Ok(())
    );
    assert_eq!(cri.remove_container(&container).await, Ok(()));
    assert_eq!(cri.stop_sandbox(&sandbox).await, Ok(()));
    assert_eq!(cri.remove_sandbox(&sandbox).await, Ok(()));
    let err = cri
        .start_created(&container)
        .await
        .expect_err("nothing to start");
    assert!(
        matches!(err, RuntimeError::NotFound { .. }),
        "containerd's answer for an unknown container: {err:?}"
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_runtime_down_at_start_is_named_by_its_own_version_once_it_is_up() {
    let lab = Lab::start();
    lab.stop_containerd();
    let d = Daemon::start(&lab);
    let pod = d.pod("web");
    d.write(
        "web.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  containers:\n  - {{name: app, image: {BUSYBOX}, command: [sleep, '3600']}}\n"
        ),
    );
    d.wait_log("container runtime unreachable", T).await;
    lab.start_containerd();
    let cri = lab.cri();
    wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    d.wait_log("container runtime connected", T).await;
    let version = cri.version().await.expect("the runtime answers");
    assert_eq!(version.name, lab.kind.runtime_name());
    assert!(
        d.log().contains(&version.describe()),
        "the daemon named the runtime it found:\n{}",
        d.log()
    );
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, detail, _) = d.cli(&["inspect", "web"]);
        if detail.contains(&format!("containerID: {}://", lab.kind.runtime_name())) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn a_duration_too_large_to_hold_exits_64_naming_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", "--resync-period", "99999999999999999999s"])
        .arg("--root-dir")
        .arg(dir.path())
        .output()
        .expect("run podvisor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("resync"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

//! The pod log directory on a read-only or full filesystem: pods still start, restart and are
//! removed, podvisor says why logs are missing, and stays up (issue 7). The kubelet fails the
//! pod instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};
use crate::lifecycle::{running, sleeper};

const T: Duration = Duration::from_secs(30);

/// A tmpfs over `dir`, lazily unmounted when dropped, whatever the test did (running
/// containers may still hold log files open in it).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, options: &str) -> Tmpfs {
        mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some(options),
        )
        .expect("mount tmpfs");
        Tmpfs(dir.to_owned())
    }

    fn read_only(self) -> Tmpfs {
        mount(
            None::<&str>,
            &self.0,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .expect("remount read-only");
        self
    }

    /// Writes a file until the filesystem has no space left.
    fn fill(&self) {
        let err = std::fs::write(self.0.join("filler"), vec![0u8; 4 << 20])
            .expect_err("4 MiB fit into a 256 KiB tmpfs");
        assert_eq!(err.raw_os_error(), Some(nix::libc::ENOSPC), "{err}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

/// A pod that logs a line every 100 ms.
fn chatty(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do echo chatter; sleep 0.1; done']
"
    )
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn read_only_pod_log_directory_pods_still_run_restart_and_go() {
    let lab = Lab::start();
    // the daemon's --pod-log-dir, made read-only before it starts
    let _logs = Tmpfs::mount(&lab.path("pod-logs"), "size=1m").read_only();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running without logs", |o| {
        running(o, &pod).len() == 1
    })
    .await;
    d.wait_log(
        &format!("log directory unusable; running without container logs pod=kube-system/{pod}"),
        T,
    )
    .await;
    assert!(d.log().contains("Read-only file system"), "{}", d.log());

    // still managed: a crash is restarted, an edit applied, a delete removes it
    let id = running(&o, &pod)[0].id.clone();
    d.wait_log("watching container exits", T).await;
    lab.kill_container(&id.0);
    wait_for(&cri, T, "web restarted", |o| {
        running(o, &pod)
            .iter()
            .any(|c| c.id != id && c.attempt == 1)
    })
    .await;
    d.remove("web.yaml");
    wait_for(&cri, T, "web gone", |o| {
        o.sandboxes.is_empty() && o.containers.is_empty()
    })
    .await;
    let (code, out, _) = d.cli(&["ps"]);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn full_pod_log_filesystem_pods_still_start_restart_and_go() {
    let lab = Lab::start();
    let logs = Tmpfs::mount(&lab.path("pod-logs"), "size=256k");
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    // one pod started while there is room, logging all along
    let early = d.pod("early");
    d.write("early.yaml", &chatty("early"));
    let o = wait_for(&cri, T, "early running", |o| running(o, &early).len() == 1).await;
    let early_id = running(&o, &early)[0].id.clone();
    logs.fill();

    // a pod started on the full disk runs, without logs, and the warning says why
    let late = d.pod("late");
    d.write("late.yaml", &chatty("late"));
    let o = wait_for(&cri, T, "late running", |o| running(o, &late).len() == 1).await;
    let late_id = running(&o, &late)[0].id.clone();
    d.wait_log(
        &format!("log directory unusable; running without container logs pod=kube-system/{late}"),
        T,
    )
    .await;
    assert!(d.log().contains("No space left on device"), "{}", d.log());

    // the logging pod keeps running while its log writes fail
    holds_for(&cri, Duration::from_secs(3), "early untouched", |o| {
        running(o, &early).iter().any(|c| c.id == early_id)
    })
    .await;

    // crashes are restarted, deletes go through
    d.wait_log("watching container exits", T).await;
    lab.kill_container(&early_id.0);
    lab.kill_container(&late_id.0);
    wait_for(&cri, T, "both restarted", |o| {
        running(o, &early).iter().any(|c| c.attempt == 1)
            && running(o, &late).iter().any(|c| c.attempt == 1)
    })
    .await;
    d.remove("late.yaml");
    wait_for(&cri, T, "late gone", |o| {
        o.sandboxes.iter().all(|s| s.key.name != late) && running(o, &early).len() == 1
    })
    .await;
    let (code, out, _) = d.cli(&["ps"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&early), "{out}");
}

//! Image garbage collection against containerd (issue 15): over the high threshold, unused
//! images go, but never one in use, the runtime's sandbox image, or one a manifest names
//! while its pod has no container of it.

use std::time::{Duration, Instant};

use podvisor::runtime::Runtime;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::running;

const T: Duration = Duration::from_secs(30);

async fn tags(cri: &podvisor::runtime::CriRuntime) -> Vec<String> {
    let mut t: Vec<String> = cri
        .list_images()
        .await
        .expect("list images")
        .into_iter()
        .flat_map(|i| i.tags)
        .collect();
    t.sort();
    t
}

/// A pod whose init container always fails: its app's image, spare:1, is named by the
/// manifest and never used by a container.
fn write_held(d: &Daemon) {
    d.write(
        "held.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: held}}\nspec:\n  initContainers:\n  - name: wait\n    image: {BUSYBOX}\n    command: [sh, -c, 'exit 1']\n  containers:\n  - name: app\n    image: podvisor.local/spare:1\n    command: [sh, -c, 'sleep 3600']\n"
        ),
    );
}

/// Waits until the runtime no longer holds an image named `tag`.
async fn wait_removed(cri: &podvisor::runtime::CriRuntime, d: &Daemon, tag: &str) {
    let deadline = Instant::now() + T;
    while tags(cri).await.iter().any(|t| t == tag) {
        assert!(
            Instant::now() < deadline,
            "{tag} never removed:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn over_the_threshold_unused_images_go_but_a_manifests_image_stays_while_its_pod_cannot_start()
 {
    let lab = Lab::start();
    lab.import(&["spare-1.tar", "spare-2.tar"]);
    let cri = lab.cri();
    let before = tags(&cri).await;
    assert!(
        before.contains(&"podvisor.local/spare:2".to_owned()),
        "{before:?}"
    );
    let d = Daemon::start_with(
        &lab,
        &[
            // any usage is over 1 %: free all that may go
            "--image-gc-high-threshold",
            "1",
            "--image-gc-low-threshold",
            "0",
            "--image-minimum-gc-age",
            "0s",
        ],
    );
    d.write(
        "web.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n"
        ),
    );
    write_held(&d);
    let pod = d.pod("web");
    wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;

    wait_removed(&cri, &d, "podvisor.local/spare:2").await;
    let after = tags(&cri).await;
    for kept in [
        "podvisor.local/busybox:1.35",
        "podvisor.local/pause:3.10",
        "podvisor.local/spare:1",
    ] {
        assert!(
            after.contains(&kept.to_owned()),
            "{kept} removed: {after:?}"
        );
    }
    let log = d.log();
    assert!(
        log.contains("image removed") && log.contains("podvisor.local/spare:2"),
        "{log}"
    );
    // The rest of the disk is not images: podvisor says it could not free enough.
    assert!(
        log.contains("insufficient free disk space on the image filesystem"),
        "{log}"
    );
    // and the pods are untouched
    wait_for(&cri, T, "web still running", |o| {
        running(o, &pod).len() == 1
    })
    .await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_small_image_filesystem_filled_past_the_thresholds_reports_disk_pressure_and_sheds_unused_images()
 {
    // containerd's root on a 64 MiB tmpfs of its own, filled to 92 % by something else
    let lab = Lab::start_small_root(64);
    lab.import(&["spare-1.tar", "spare-2.tar"]);
    let root = lab.dir.path().join("root");
    let fs = nix::sys::statvfs::statvfs(&root).expect("statvfs");
    let block = fs.fragment_size();
    let capacity = fs.blocks() * block;
    let available = fs.blocks_available() * block;
    let fill = available.saturating_sub(capacity * 8 / 100);
    {
        use std::io::Write;
        let mut f = std::fs::File::create(root.join("filler")).expect("filler");
        let chunk = vec![0u8; 1 << 20];
        let mut left = fill;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).expect("fill");
            left -= n as u64;
        }
    }
    let cri = lab.cri();
    // The kubelet's thresholds (85 % high, 15 % imagefs.available): only the minimum age is
    // zero, so the test need not wait two minutes.
    let d = Daemon::start_with(
        &lab,
        &[
            "--image-gc-high-threshold",
            "85",
            "--image-gc-low-threshold",
            "80",
            "--image-minimum-gc-age",
            "0s",
        ],
    );
    write_held(&d);
    wait_removed(&cri, &d, "podvisor.local/spare:2").await;
    let after = tags(&cri).await;
    assert!(
        after.contains(&"podvisor.local/spare:1".to_owned()),
        "{after:?}"
    );
    assert!(
        after.contains(&"podvisor.local/pause:3.10".to_owned()),
        "{after:?}"
    );
    // imagefs.available < 15 % on the image filesystem: DiskPressure, in the metrics
    let deadline = Instant::now() + T;
    loop {
        let (_, body) = podvisor::api::client::get_raw(&d.socket, "/metrics")
            .await
            .expect("metrics");
        let metrics = String::from_utf8_lossy(&body).into_owned();
        if metrics.contains("podvisor_node_condition{condition=\"DiskPressure\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "no DiskPressure:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

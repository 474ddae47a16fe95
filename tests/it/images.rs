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
    // An init container that always fails: the app's image is named, never used.
    d.write(
        "held.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: held}}\nspec:\n  initContainers:\n  - name: wait\n    image: {BUSYBOX}\n    command: [sh, -c, 'exit 1']\n  containers:\n  - name: app\n    image: podvisor.local/spare:1\n    command: [sh, -c, 'sleep 3600']\n"
        ),
    );
    let pod = d.pod("web");
    wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;

    let deadline = Instant::now() + T;
    while tags(&cri)
        .await
        .contains(&"podvisor.local/spare:2".to_owned())
    {
        assert!(
            Instant::now() < deadline,
            "spare:2 never removed:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

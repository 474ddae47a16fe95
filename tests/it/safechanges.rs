//! Issue 16: changes to a running pod that cannot hurt it — pull before swap, health-gated
//! rollback, the durable last good version.

use std::time::{Duration, Instant};

use podvisor::runtime::Runtime;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};
use crate::lifecycle::{running, sleeper};

const T: Duration = Duration::from_secs(30);

/// The daemon's `/metrics` text.
async fn metrics(d: &Daemon) -> String {
    let (_, body) = podvisor::api::client::get_raw(&d.socket, "/metrics")
        .await
        .expect("metrics");
    String::from_utf8_lossy(&body).into_owned()
}

/// `podvisor_pod_updates_held_total` in `metrics`.
fn held(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("podvisor_pod_updates_held_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Polls `podvisor ps` until its output contains `needle`.
async fn wait_ps(d: &Daemon, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (_, out, _) = d.cli(&["ps"]);
        if out.contains(needle) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "ps never showed {needle:?}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn an_edit_to_a_missing_image_keeps_the_old_container_running_until_the_file_is_fixed() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("api");
    d.write("api.yaml", &sleeper("api", "1"));
    let o = wait_for(&cri, T, "api running", |o| running(o, &pod).len() == 1).await;
    let old = running(&o, &pod)[0].id.clone();

    // a tag that does not exist (no registry here: a missing local image under
    // IfNotPresent is the same case)
    let missing = BUSYBOX.replace(":1.35", ":no-such-tag");
    d.write(
        "api.yaml",
        &sleeper("api", "2").replace(&format!("image: {BUSYBOX}"), &format!("image: {missing}")),
    );
    // reported as the new version's state: Pending, with the reason (the old version's
    // Running must not pass for the new one's: `kubeadm upgrade` waits for the new hash)
    let ps = wait_ps(&d, "update held").await;
    assert!(ps.contains("Pending"), "{ps}");
    let (_, detail, _) = d.cli(&["inspect", "api"]);
    assert!(
        detail.contains("no-such-tag") && detail.contains("update held"),
        "inspect names the image and says the update is held:\n{detail}"
    );
    // the old container was never touched: the same instance, running, all along
    holds_for(&cri, Duration::from_secs(3), "old container running", |o| {
        running(o, &pod).iter().map(|c| &c.id).eq([&old])
    })
    .await;
    assert!(
        d.log().contains("update held, the running version is kept"),
        "the log says so"
    );
    // tried again after the pull backoff (10 s), and held again: the next try is 20 s away
    let deadline = Instant::now() + T;
    while held(&metrics(&d).await) < 2 {
        assert!(
            Instant::now() < deadline,
            "never retried:\n{}",
            metrics(&d).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = cri.observe().await.expect("observe");
    assert!(running(&o, &pod).iter().map(|c| &c.id).eq([&old]));

    // fixed: applied at once, not after the 20 s the broken version's backoff has left
    d.write("api.yaml", &sleeper("api", "3"));
    let o = wait_for(
        &cri,
        Duration::from_secs(8),
        "the fixed version running",
        |o| {
            let r = running(o, &pod);
            r.len() == 1 && r[0].id != old
        },
    )
    .await;
    let new = running(&o, &pod)[0];
    assert_eq!(new.image, BUSYBOX);
    wait_ps(&d, "Running").await;
}

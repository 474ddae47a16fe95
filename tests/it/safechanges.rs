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

/// `sleeper(name, env)` with the rollback annotation, and a command `command` (None: the
/// sleeper's).
fn guarded(name: &str, env: &str, command: Option<&str>) -> String {
    let text = sleeper(name, env).replace(
        &format!("  labels: {{app: {name}}}\n"),
        &format!("  labels: {{app: {name}}}\n  annotations: {{podvisor.dev/rollback: 'true'}}\n"),
    );
    match command {
        Some(c) => with_command(&text, c),
        None => text,
    }
}

/// `sleeper` text with its command replaced by `command`.
fn with_command(sleeper: &str, command: &str) -> String {
    let own = "command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']";
    assert!(sleeper.contains(own), "the sleeper's command changed");
    sleeper.replace(own, command)
}

/// `podvisor_pod_rollbacks_total` in `metrics`.
fn rollbacks(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("podvisor_pod_rollbacks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_new_version_that_exits_at_once_is_rolled_back_once_and_stays_rolled_back_across_a_restart()
 {
    let lab = Lab::start();
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("api");
    let plain = d.pod("plain");
    d.write("api.yaml", &guarded("api", "1", None));
    d.write("plain.yaml", &sleeper("plain", "1"));
    let o = wait_for(&cri, T, "both running", |o| {
        running(o, &pod).len() == 1 && running(o, &plain).len() == 1
    })
    .await;
    let good = running(&o, &pod)[0].hash.clone().expect("hash");
    let first = running(&o, &pod)[0].id.clone();
    // a version counts as healthy once it has run for 10 s
    d.wait_log(
        &format!("rollback track pod=kube-system/{pod} state=\"healthy\""),
        T,
    )
    .await;
    let plain_good = running(&o, &plain)[0].hash.clone().expect("hash");

    // both edited to a version that exits at once
    let crash = "command: [sh, -c, 'exit 3']";
    d.write("api.yaml", &guarded("api", "2", Some(crash)));
    d.write("plain.yaml", &with_command(&sleeper("plain", "2"), crash));
    // with rollback on: the new version ran, failed, and the last healthy version runs again
    d.wait_log("ROLLED BACK", T).await;
    let o = wait_for(&cri, T, "api back at its healthy version", |o| {
        running(o, &pod)
            .iter()
            .any(|c| c.hash.as_ref() == Some(&good) && c.id != first)
    })
    .await;
    let restored = running(&o, &pod)[0].id.clone();
    let ps = wait_ps(&d, "rolled back").await;
    assert!(ps.contains("Running"), "{ps}");
    assert_eq!(rollbacks(&metrics(&d).await), 1);

    // never a flap: past the crash backoff, the failed version is not tried again
    holds_for(
        &cri,
        Duration::from_secs(12),
        "the restored container",
        |o| running(o, &pod).iter().map(|c| &c.id).eq([&restored]),
    )
    .await;
    assert_eq!(
        rollbacks(&metrics(&d).await),
        1,
        "one rollback per file version"
    );

    // with rollback off (the other pod): a crash loop, as today
    let o = cri.observe().await.expect("observe");
    let plain_now: Vec<_> = o
        .containers
        .iter()
        .filter(|c| c.key.name == plain)
        .collect();
    assert!(
        plain_now
            .iter()
            .all(|c| c.hash.as_ref() != Some(&plain_good)),
        "the old version does not come back without rollback: {plain_now:#?}"
    );
    assert!(
        plain_now.iter().any(|c| c.restarts >= 1),
        "the new version is restarting: {plain_now:#?}"
    );

    // across a restart of podvisor: still rolled back, the same container untouched
    d.kill9();
    d.restart();
    wait_ps(&d, "rolled back").await;
    holds_for(
        &cri,
        Duration::from_secs(3),
        "the restored container",
        |o| running(o, &pod).iter().map(|c| &c.id).eq([&restored]),
    )
    .await;

    // the file changes: the new version is tried
    d.write("api.yaml", &guarded("api", "3", None));
    wait_for(&cri, T, "api's new version", |o| {
        let r = running(o, &pod);
        r.len() == 1 && r[0].hash.as_ref() != Some(&good)
    })
    .await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_file_broken_while_podvisor_is_down_keeps_its_pod_at_the_last_good_version() {
    let lab = Lab::start();
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("api");
    d.write("api.yaml", &sleeper("api", "1"));
    let o = wait_for(&cri, T, "api running", |o| running(o, &pod).len() == 1).await;
    let id = running(&o, &pod)[0].id.clone();

    d.kill9();
    d.write(
        "api.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: api\n",
    );
    d.restart();
    let ps = wait_ps(&d, "last good version").await;
    assert!(ps.contains("Running"), "{ps}");
    holds_for(&cri, Duration::from_secs(3), "the same container", |o| {
        running(o, &pod).iter().map(|c| &c.id).eq([&id])
    })
    .await;
    // an edit made valid again applies as usual
    d.write("api.yaml", &sleeper("api", "2"));
    wait_for(&cri, T, "the new version", |o| {
        let r = running(o, &pod);
        r.len() == 1 && r[0].id != id
    })
    .await;
}

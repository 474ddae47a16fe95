//! What keeping the disk clean costs (issue 15): podvisor's CPU with N pods writing logs,
//! rotation off and on, per rotation; and the time of one image garbage collection scan
//! (ListImages, every container's image, the sandbox image, the image filesystem) through the
//! same library code the daemon runs.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{Bench, FIRST_RECONCILE, STEP_TIMEOUT};
use crate::daemon::{USER_HZ, cpu_ticks};
use crate::pods::manifest_running;
use podvisor::clock::Clock;
use podvisor::host::NodeContext;
use podvisor::images::{GcPolicy, Mode, Records, collect_once};
use podvisor::pod::NodeName;
use podvisor::runtime::CriRuntime;

/// A burst of 100 lines (~14 KB in the CRI log) a second: one fork a second per pod.
const WRITER: &str = "trap 'exit 0' TERM; while true; do i=0; while [ $i -lt 100 ]; do echo \"housekeeping bench line $i of a writer that fills its log steadily, about a hundred bytes\"; i=$((i+1)); done; sleep 1 & wait $!; done";

/// Window each setting is measured over.
const WINDOW: Duration = Duration::from_secs(60);
/// Image GC scans timed.
const SCANS: usize = 20;

fn file(i: usize) -> String {
    format!("w-{i:03}.yaml")
}

fn rotations(log: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(log).with_context(|| format!("read {}", log.display()))?;
    Ok(text.matches("container log rotated").count())
}

/// Restarts podvisor with `extra` flags and measures its CPU (percent of a core) and the
/// rotations it logs over [`WINDOW`].
async fn window(b: &mut Bench<'_>, extra: &[&str]) -> Result<(f64, usize)> {
    let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
    b.respawn_with(false, None, &extra)?;
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    b.settle(Duration::from_secs(5)).await;
    let pid = b.daemon.pid()?;
    let log = b.daemon.log_path().clone();
    let rotated_before = rotations(&log)?;
    let start = Instant::now();
    let before = cpu_ticks(pid)?;
    tokio::time::sleep(WINDOW).await;
    let after = cpu_ticks(pid)?;
    let elapsed = start.elapsed().as_secs_f64();
    let rotated = rotations(&log)? - rotated_before;
    b.daemon.check_alive()?;
    Ok(((after - before) as f64 / USER_HZ / elapsed * 100.0, rotated))
}

/// The scenario.
pub async fn run(b: &mut Bench<'_>, endpoint: &str) -> Result<()> {
    let n = b.settings.burst_pods;
    for f in b.manifests.files()? {
        b.manifests.remove(&f)?;
    }
    b.wait_census(0, Duration::from_millis(100), "no pods")
        .await?;
    for i in 0..n {
        b.manifests.stage(
            &file(i),
            &manifest_running(&format!("w-{i:03}"), true, 0, WRITER),
        )?;
        b.manifests.commit(&file(i))?;
    }
    b.wait_census(n, Duration::from_millis(100), &format!("{n} writers"))
        .await?;

    let (off, _) = window(b, &["--container-log-max-size", "-1"]).await?;
    let (on, rotated) = window(
        b,
        &[
            "--container-log-max-size",
            "64Ki",
            "--container-log-monitor-interval",
            "1s",
        ],
    )
    .await?;
    if rotated == 0 {
        bail!(
            "housekeeping: no rotation in the window:\n{}",
            b.daemon.tail()
        );
    }
    b.record("housekeeping.cpu_rotation_off", off)?;
    b.record("housekeeping.cpu_rotation_on", on)?;
    b.record("housekeeping.rotations", rotated as f64)?;
    b.record(
        "housekeeping.cpu_per_rotation",
        (on - off).max(0.0) / 100.0 * WINDOW.as_secs_f64() * 1000.0 / rotated as f64,
    )?;

    // One image GC scan with the N pods' containers listed, nothing to remove (threshold 100).
    let ctx = NodeContext::detect(
        NodeName::new("bench-gc"),
        b.manifests.dir.join("../gc-root"),
        b.manifests.dir.join("../gc-logs"),
    );
    let rt = CriRuntime::new(endpoint, Arc::new(ctx), None)?;
    let clock = Clock::System;
    let policy = GcPolicy {
        high_percent: 100,
        ..GcPolicy::default()
    };
    let names = BTreeSet::from(["podvisor.local/busybox:1.35".to_owned()]);
    let mut records = Records::default();
    let began = clock.now();
    for _ in 0..SCANS {
        let t0 = Instant::now();
        let done = collect_once(
            &rt,
            &mut records,
            &names,
            policy,
            Mode::Thresholds,
            began,
            clock.now(),
        )
        .await?;
        b.record(
            "housekeeping.image_gc_scan",
            t0.elapsed().as_secs_f64() * 1000.0,
        )?;
        if !done.remove.is_empty() {
            bail!("housekeeping: the scan removed images: {:?}", done.remove);
        }
    }

    for i in 0..n {
        b.manifests.remove(&file(i))?;
    }
    b.wait_census(0, Duration::from_millis(100), "writers gone")
        .await?;
    b.respawn(false, None)?;
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    Ok(())
}

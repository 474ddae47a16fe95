//! Many pods: burst (N manifests at once), the CPU cost of a resync, adoption after
//! `kill -9`, and the idle daemon's RSS and CPU. All use hostNetwork pods `s-000`, `s-001`…

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::bench::{Bench, FIRST_RECONCILE, STEP_TIMEOUT};
use crate::daemon::{USER_HZ, cpu_ticks, status_kib};
use crate::pods::manifest;

/// How often bulk waits look.
const BULK_POLL: Duration = Duration::from_millis(25);

fn file(i: usize) -> String {
    format!("s-{i:03}.yaml")
}

/// Makes the manifest directory hold exactly pods `s-000`..`s-<n-1>` and waits until podvisor
/// runs exactly those.
pub async fn ensure_pods(b: &mut Bench<'_>, n: usize) -> Result<()> {
    let wanted: Vec<String> = (0..n).map(file).collect();
    for f in b.manifests.files()? {
        if !wanted.contains(&f) {
            b.manifests.remove(&f)?;
        }
    }
    for (i, f) in wanted.iter().enumerate() {
        if !b.manifests.has(f) {
            b.manifests
                .stage(f, &manifest(&format!("s-{i:03}"), true, 0))?;
            b.manifests.commit(f)?;
        }
    }
    b.wait_census(n, Duration::from_millis(100), &format!("{n} pods"))
        .await?;
    Ok(())
}

/// N manifests dropped at once → all running; all removed → all sandboxes gone.
pub async fn burst(b: &mut Bench<'_>) -> Result<()> {
    let n = b.settings.burst_pods;
    for r in 0..b.settings.burst_reps {
        ensure_pods(b, 0).await?;
        b.settle(Duration::from_secs(1)).await;
        for i in 0..n {
            b.manifests
                .stage(&file(i), &manifest(&format!("s-{i:03}"), true, 0))?;
        }
        let t0 = Instant::now();
        for i in 0..n {
            b.manifests.commit(&file(i))?;
        }
        let t1 = b.wait_census(n, BULK_POLL, "burst up").await?;
        b.record_since("burst.up", t0, t1)?;
        let up_ms = (t1 - t0).as_secs_f64() * 1000.0;
        b.settle(Duration::from_secs(1)).await;

        let t0 = Instant::now();
        for i in 0..n {
            b.manifests.remove(&file(i))?;
        }
        let t1 = b.wait_census(0, BULK_POLL, "burst down").await?;
        b.record_since("burst.down", t0, t1)?;
        eprintln!(
            "bench: burst {}/{}: {n} up in {up_ms:.0} ms",
            r + 1,
            b.settings.burst_reps,
        );
    }
    Ok(())
}

/// CPU ticks of podvisor over `window`, after it has adopted everything and settled.
async fn cpu_window(b: &mut Bench<'_>, window: Duration) -> Result<u64> {
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    b.settle(Duration::from_secs(3)).await;
    let pid = b.daemon.pid()?;
    let before = cpu_ticks(pid)?;
    tokio::time::sleep(window).await;
    let after = cpu_ticks(pid)?;
    b.daemon.check_alive()?;
    Ok(after - before)
}

/// With N pods running: podvisor's CPU over a window with a 1 s resync, minus the same
/// window with resync effectively off (1 h), divided by the resyncs in the window.
pub async fn resync(b: &mut Bench<'_>) -> Result<()> {
    let n = b.settings.burst_pods;
    ensure_pods(b, n).await?;
    let window = b.settings.resync_window();
    let resyncs = window.as_secs_f64(); // one per second
    for r in 0..b.settings.resync_rounds {
        b.respawn(false, Some("1s"))?;
        let with = cpu_window(b, window).await?;
        b.respawn(false, Some("3600s"))?;
        let without = cpu_window(b, window).await?;
        let with_ms = with as f64 / USER_HZ * 1000.0;
        let without_ms = without as f64 / USER_HZ * 1000.0;
        b.record("resync.cpu", (with_ms - without_ms) / resyncs)?;
        b.record("relist.cpu", without_ms / window.as_secs_f64())?;
        eprintln!(
            "bench: resync round {}/{}: {with_ms:.0} CPU ms with a 1 s resync, {without_ms:.0} without, over {window:?}",
            r + 1,
            b.settings.resync_rounds
        );
    }
    b.respawn(false, None)?;
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    Ok(())
}

/// With N pods running: `kill -9`, restart, time to the first full reconcile, and how many
/// containers changed id or attempt.
pub async fn adopt(b: &mut Bench<'_>) -> Result<()> {
    let n = b.settings.adopt_pods;
    ensure_pods(b, n).await?;
    b.settle(Duration::from_secs(2)).await;
    for r in 0..b.settings.adopt_reps {
        let before = b.running_map().await?;
        if before.len() != n {
            bail!(
                "adopt: {} pods running before the kill, not {n}",
                before.len()
            );
        }
        let t0 = b.respawn(true, None)?;
        let t1 = b
            .daemon
            .wait_log(FIRST_RECONCILE, Duration::from_millis(1), STEP_TIMEOUT)
            .await?;
        b.record_since("adopt.time", t0, t1)?;
        // Anything it restarts is dispatched before that line; give it time to show.
        b.settle(Duration::from_millis(2500)).await;
        let after = b.running_map().await?;
        let restarted = before
            .iter()
            .filter(|(pod, old)| after.get(*pod) != Some(*old))
            .count();
        b.record("adopt.restarts", restarted as f64)?;
        eprintln!(
            "bench: adopt {}/{}: {:.1} ms, {restarted} restarted",
            r + 1,
            b.settings.adopt_reps,
            (t1 - t0).as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

/// What one idle window showed.
pub struct IdleSample {
    /// VmRSS every second, MiB.
    pub rss: Vec<f64>,
    /// CPU over the window, % of one core.
    pub cpu: f64,
    /// RssAnon at the end, MiB.
    pub rss_anon: f64,
    /// RssFile at the end, MiB.
    pub rss_file: f64,
}

/// A freshly started podvisor (default periods, `extra` flags), once it has adopted
/// everything and settled: RSS every second and CPU over `settings.idle_secs`.
pub async fn idle_window(b: &mut Bench<'_>, extra: &[String]) -> Result<IdleSample> {
    b.respawn_with(false, None, extra)?;
    b.daemon
        .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
        .await?;
    b.settle(Duration::from_secs(5)).await;
    let pid = b.daemon.pid()?;
    let secs = b.settings.idle_secs;
    let mut rss = Vec::new();
    let start = Instant::now();
    let before = cpu_ticks(pid)?;
    for s in 1..=secs {
        tokio::time::sleep_until((start + Duration::from_secs(s)).into()).await;
        rss.push(status_kib(pid, "VmRSS:")? as f64 / 1024.0);
    }
    let after = cpu_ticks(pid)?;
    let elapsed = start.elapsed().as_secs_f64();
    let sample = IdleSample {
        rss,
        cpu: (after - before) as f64 / USER_HZ / elapsed * 100.0,
        rss_anon: status_kib(pid, "RssAnon:")? as f64 / 1024.0,
        rss_file: status_kib(pid, "RssFile:")? as f64 / 1024.0,
    };
    b.daemon.check_alive()?;
    Ok(sample)
}

/// Records an idle window as the figures `<prefix>.rss`, `.cpu`, `.rss_anon`, `.rss_file`.
pub fn record_idle(b: &mut Bench<'_>, prefix: &str, s: &IdleSample) -> Result<()> {
    for &r in &s.rss {
        b.record(&format!("{prefix}.rss"), r)?;
    }
    b.record(&format!("{prefix}.cpu"), s.cpu)?;
    b.record(&format!("{prefix}.rss_anon"), s.rss_anon)?;
    b.record(&format!("{prefix}.rss_file"), s.rss_file)
}

/// With N pods running and a freshly started podvisor (default periods): RSS every second
/// and CPU over the whole window.
pub async fn idle(b: &mut Bench<'_>, containerd_pid: Option<i32>) -> Result<()> {
    let n = b.settings.idle_pods;
    ensure_pods(b, n).await?;
    let long_lived = status_kib(b.daemon.pid()?, "VmRSS:")?;
    b.record("idle.rss_long_lived", long_lived as f64 / 1024.0)?;
    let sample = idle_window(b, &[]).await?;
    record_idle(b, "idle", &sample)?;
    if let Some(cpid) = containerd_pid {
        b.record(
            "idle.containerd_rss",
            status_kib(cpid, "VmRSS:")? as f64 / 1024.0,
        )?;
    }
    let (running, _) = b.census().await?;
    if running != n {
        bail!("idle: {running} pods running at the end, not {n}");
    }
    Ok(())
}

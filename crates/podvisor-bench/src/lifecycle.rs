//! One pod's life through podvisor (create, edit, crash, delete), interleaved with the floor
//! measured beside it: each round runs the floor pods first, then the podvisor pods, so
//! drifting machine load hits both alike.

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::bench::Bench;
use crate::cri::background_poll;
use crate::floor::{self, FloorSample};
use crate::pods::manifest;

/// Pause between steps, so that each starts from a quiet podvisor.
const SETTLE: Duration = Duration::from_millis(300);

/// Runs `settings.reps` rounds. Even rounds measure the floor first, odd rounds podvisor
/// first, so that neither always follows the other's teardown.
pub async fn run(b: &mut Bench<'_>) -> Result<()> {
    warm_up(b).await?;
    for i in 0..b.settings.reps {
        let up = if i % 2 == 0 {
            let up = floors(b, i).await?;
            podvisor_pods(b, i).await?;
            up
        } else {
            podvisor_pods(b, i).await?;
            floors(b, i).await?
        };
        eprintln!(
            "bench: lifecycle round {}/{}: floor up {up:.1} ms",
            i + 1,
            b.settings.reps,
        );
    }
    Ok(())
}

/// One untimed pass of each kind, so that no figure's first sample pays for first use
/// (image unpacking, CNI set-up, code paths not yet paged in).
async fn warm_up(b: &mut Bench<'_>) -> Result<()> {
    floor::once(&b.floor_cri, &b.floor_env, "floor-wh".into(), true).await?;
    floor::once(&b.floor_cri, &b.floor_env, "floor-wn".into(), false).await?;
    for (name, host_network) in [("warm-h", true), ("warm-n", false)] {
        let file = format!("{name}.yaml");
        let pod = b.pod_name(name);
        b.manifests.stage(&file, &manifest(name, host_network, 0))?;
        b.manifests.commit(&file)?;
        b.wait_running(&pod, None, "warm-up create").await?;
        b.settle(SETTLE).await;
        b.manifests.remove(&file)?;
        b.wait_gone(&pod, "warm-up delete").await?;
    }
    b.poller.round_trips.clear();
    b.poller.cycles.clear();
    b.settle(SETTLE).await;
    Ok(())
}

async fn podvisor_pods(b: &mut Bench<'_>, i: usize) -> Result<()> {
    host_pod(b, i).await?;
    net_pod(b, i).await
}

/// The three floor pods of round `i`; returns the hostNetwork pod-up time.
async fn floors(b: &mut Bench<'_>, i: usize) -> Result<f64> {
    let host = polled_floor(b, format!("floor-h{i}"), true).await?;
    record_floor(b, "host", &host)?;
    b.record("floor.host.down_up", host.down + host.up)?;
    b.record("floor.host.restart", host.restart)?;
    b.record("floor.host.recreate", host.recreate)?;
    b.record("floor.host.exit_recorded", host.exit_recorded)?;
    b.record("floor.host.crash", host.crash)?;
    b.record("floor.host.run_sandbox", host.run_sandbox)?;
    b.record("floor.host.create", host.create)?;
    b.record("floor.host.start", host.start)?;
    b.record("floor.host.stop_sandbox", host.stop_sandbox)?;
    b.record("floor.host.remove_sandbox", host.remove_sandbox)?;
    b.settle(SETTLE).await;

    let net = polled_floor(b, format!("floor-n{i}"), false).await?;
    record_floor(b, "net", &net)?;
    b.settle(SETTLE).await;

    let quiet = floor::once(&b.floor_cri, &b.floor_env, format!("floor-q{i}"), true).await?;
    b.record("floor.quiet.up", quiet.up)?;
    b.record("floor.quiet.down", quiet.down)?;
    b.settle(SETTLE).await;
    Ok(host.up)
}

fn record_floor(b: &mut Bench<'_>, kind: &str, s: &FloorSample) -> Result<()> {
    let id = |what: &str| format!("floor.{kind}.{what}");
    b.record(&id("up"), s.up)?;
    b.record(&id("down"), s.down)?;
    b.record(&id("stop_container"), s.stop_container)?;
    Ok(())
}

/// The floor, with the observer polling for the floor pod as it polls for podvisor's.
async fn polled_floor(b: &mut Bench<'_>, name: String, host_network: bool) -> Result<FloorSample> {
    let poll = tokio::spawn(background_poll(
        b.observer.clone(),
        name.clone(),
        b.settings.poll(),
    ));
    let result = floor::once(&b.floor_cri, &b.floor_env, name, host_network).await;
    poll.abort();
    result
}

/// create → edit → crash → delete of one hostNetwork pod.
async fn host_pod(b: &mut Bench<'_>, i: usize) -> Result<()> {
    let name = format!("life-{i}");
    let file = format!("{name}.yaml");
    let pod = b.pod_name(&name);

    b.manifests.stage(&file, &manifest(&name, true, 0))?;
    b.mark(&format!("create {pod}"));
    let t0 = Instant::now();
    b.manifests.commit(&file)?;
    let (t1, first) = b.wait_running(&pod, None, "create").await?;
    b.mark(&format!("created {pod}"));
    b.record_since("create.host", t0, t1)?;
    b.settle(SETTLE).await;

    b.manifests.stage(&file, &manifest(&name, true, 1))?;
    b.mark(&format!("edit {pod}"));
    let t0 = Instant::now();
    b.manifests.commit(&file)?;
    let (t1, edited) = b.wait_running(&pod, Some(&first), "edit").await?;
    b.mark(&format!("edited {pod}"));
    b.record_since("edit", t0, t1)?;
    b.settle(SETTLE).await;

    let pid = b.observer.container_pid(&edited).await?;
    b.mark(&format!("kill {pod}"));
    let t0 = Instant::now();
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let (t1, _) = b.wait_running(&pod, Some(&edited), "crash restart").await?;
    b.mark(&format!("restarted {pod}"));
    b.record_since("crash", t0, t1)?;
    b.settle(SETTLE).await;

    b.mark(&format!("delete {pod}"));
    let t0 = Instant::now();
    b.manifests.remove(&file)?;
    let (stopped, removed) = b.wait_gone(&pod, "delete").await?;
    b.mark(&format!("deleted {pod}"));
    b.record_since("delete.stopped", t0, stopped)?;
    b.record_since("delete.removed", t0, removed)?;
    b.settle(SETTLE).await;
    Ok(())
}

/// create → delete of one pod with its own network namespace.
async fn net_pod(b: &mut Bench<'_>, i: usize) -> Result<()> {
    let name = format!("net-{i}");
    let file = format!("{name}.yaml");
    let pod = b.pod_name(&name);

    b.manifests.stage(&file, &manifest(&name, false, 0))?;
    let t0 = Instant::now();
    b.manifests.commit(&file)?;
    let (t1, _) = b.wait_running(&pod, None, "create (pod network)").await?;
    b.record_since("create.net", t0, t1)?;
    b.settle(SETTLE).await;

    let t0 = Instant::now();
    b.manifests.remove(&file)?;
    let (stopped, removed) = b.wait_gone(&pod, "delete (pod network)").await?;
    b.record_since("delete.net.stopped", t0, stopped)?;
    b.record_since("delete.net.removed", t0, removed)?;
    b.settle(SETTLE).await;
    Ok(())
}

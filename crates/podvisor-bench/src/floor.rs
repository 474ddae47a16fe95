//! The floor: what the runtime itself costs for the bench's pod, as raw CRI calls over one
//! open connection, with exactly the configs podvisor sends: the pod comes from the bench's
//! own manifest through podvisor's pipeline, and its host-side set-up and CRI configs from
//! `podvisor::runtime::prepare`, the code the daemon itself calls. That set-up (directories,
//! files) happens before the clock starts.
//!
//! Two differences, both outside the timed calls: the configs lose podvisor's
//! `podvisor.dev/managed` label, so that the podvisor running beside them never sees them; and
//! a pod-network floor pod is prepared without its pod IP (podvisor asks `PodSandboxStatus`
//! for it before `CreateContainer`, one more call that is podvisor's cost, not the floor's).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_cri::v1 as cri;
use podvisor::clock::Timestamp;
use podvisor::host::{NodeContext, prepare};
use podvisor::labels;
use podvisor::manifest::{Loaded, load_manifest};
use podvisor::pod::StaticPod;
use podvisor::pod::environment::Addresses;
use podvisor::runtime::{container_configs, sandbox_config};

use crate::cri::Cri;
use crate::pods::{GRACE_SECONDS, manifest};

/// Untimed pause between a start and the next stop.
const RUNNING_PAUSE: Duration = Duration::from_millis(300);

/// Where the floor's host-side files go: its own root and log directories, with the host's
/// resolver config and address, as a podvisor would have.
pub struct FloorEnv {
    /// The node context the floor's configs are built for.
    pub ctx: NodeContext,
}

/// The durations of one floor pod's life, in ms.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloorSample {
    /// RunPodSandbox.
    pub run_sandbox: f64,
    /// CreateContainer.
    pub create: f64,
    /// StartContainer.
    pub start: f64,
    /// RunPodSandbox + CreateContainer + StartContainer.
    pub up: f64,
    /// StopContainer (the container exits on SIGTERM at once).
    pub stop_container: f64,
    /// StopPodSandbox.
    pub stop_sandbox: f64,
    /// RemovePodSandbox.
    pub remove_sandbox: f64,
    /// StopContainer + StopPodSandbox + RemovePodSandbox.
    pub down: f64,
    /// StopContainer + CreateContainer + StartContainer of attempt 1 in the same sandbox: what
    /// a container-only edit or a restart needs.
    pub restart: f64,
    /// CreateContainer + StartContainer of that attempt 1: what a crash restart needs.
    pub recreate: f64,
    /// SIGKILL of attempt 1's process → ContainerStatus says EXITED: how long the runtime
    /// takes to record a crash, which no supervisor can act before.
    pub exit_recorded: f64,
    /// SIGKILL → EXITED, then CreateContainer + StartContainer of attempt 2: a crash restart
    /// by a client that polls ContainerStatus as fast as it can.
    pub crash: f64,
}

struct FloorPod {
    pod: Arc<StaticPod>,
    name: String,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Removes `/kubepods/besteffort/pod<uid>` in every hierarchy: containerd leaves it.
pub fn remove_pod_cgroup(uid: &str) {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut bases: Vec<PathBuf> = hierarchies.flatten().map(|e| e.path()).collect();
    bases.push(PathBuf::from("/sys/fs/cgroup"));
    for base in bases {
        let _ = std::fs::remove_dir(base.join(format!("kubepods/besteffort/pod{uid}")));
    }
}

/// The bench's pod `name`, as podvisor's pipeline makes it from the bench's manifest.
fn floor_pod(env: &FloorEnv, name: &str, host_network: bool) -> Result<FloorPod> {
    let path = Path::new("/etc/kubernetes/manifests").join(format!("{name}.yaml"));
    let text = manifest(name, host_network, 0);
    match load_manifest(&path, text.as_bytes(), &env.ctx.node, Timestamp(0))? {
        Loaded::Accepted { pods, .. } if pods.len() == 1 => Ok(FloorPod {
            pod: pods[0].clone(),
            name: name.to_owned(),
        }),
        other => bail!("the floor manifest {name} did not load as one pod: {other:?}"),
    }
}

/// Drops podvisor's ownership label, so that the podvisor running beside never adopts it.
fn unmanaged(
    mut labels: std::collections::HashMap<String, String>,
) -> std::collections::HashMap<String, String> {
    labels.remove(labels::MANAGED);
    labels
}

/// Runs one floor pod through up, a container restart, a crash, and down.
pub async fn once(
    cri: &Cri,
    env: &FloorEnv,
    name: String,
    host_network: bool,
) -> Result<FloorSample> {
    let floor = floor_pod(env, &name, host_network)?;
    let pod = &floor.pod;
    let host_ip = env.ctx.host_ip.map(|ip| ip.to_string());
    let addrs = Addresses {
        pod_ip: if host_network { host_ip.clone() } else { None },
        host_ip,
    };
    let prepared = (|| -> Result<_> {
        let ready = prepare::pod(pod, &env.ctx)?;
        let mut sandbox_config = sandbox_config(pod, 0, ready, &env.ctx);
        sandbox_config.labels = unmanaged(std::mem::take(&mut sandbox_config.labels));
        let mut containers = Vec::new();
        for attempt in 0..3 {
            let ready = prepare::container(pod, "main", attempt, &addrs, &env.ctx)?;
            let (mut c, _) =
                container_configs(pod, "main", (attempt, attempt), &addrs, ready, &env.ctx)?;
            c.labels = unmanaged(std::mem::take(&mut c.labels));
            containers.push(c);
        }
        let [c0, c1, c2]: [cri::ContainerConfig; 3] = containers
            .try_into()
            .map_err(|_| anyhow::anyhow!("three attempts"))?;
        Ok((sandbox_config, [c0, c1, c2]))
    })();
    let result = match prepared {
        Ok((sandbox_config, containers)) => life(cri, &floor, sandbox_config, containers).await,
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_dir_all(env.ctx.pod_log_dir(
        &pod.key.namespace,
        &pod.key.name,
        pod.uid.as_str(),
    ));
    let _ = std::fs::remove_dir_all(env.ctx.pod_dir(pod.uid.as_str()));
    remove_pod_cgroup(pod.uid.as_str());
    result
}

async fn life(
    cri: &Cri,
    pod: &FloorPod,
    sandbox_config: cri::PodSandboxConfig,
    [c0, c1, c2]: [cri::ContainerConfig; 3],
) -> Result<FloorSample> {
    let mut rt = cri.client();
    let mut s = FloorSample::default();
    let what = |step: &str| format!("floor {step} of {}", pod.name);

    let t0 = Instant::now();
    let sandbox = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .with_context(|| what("RunPodSandbox"))?
        .into_inner()
        .pod_sandbox_id;
    let t1 = Instant::now();
    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(c0),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .with_context(|| what("CreateContainer"))?
        .into_inner()
        .container_id;
    let t2 = Instant::now();
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .with_context(|| what("StartContainer"))?;
    let t3 = Instant::now();
    s.run_sandbox = ms(t1 - t0);
    s.create = ms(t2 - t1);
    s.start = ms(t3 - t2);
    s.up = ms(t3 - t0);
    // The shell must have set its trap before it is stopped, as podvisor's pods have by the
    // time the bench edits or deletes them; a SIGTERM before that waits out the grace period.
    tokio::time::sleep(RUNNING_PAUSE).await;

    // A container restart in the same sandbox.
    let r0 = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: container,
        timeout: GRACE_SECONDS,
    })
    .await
    .with_context(|| what("StopContainer"))?;
    let r1 = Instant::now();
    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(c1),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .with_context(|| what("CreateContainer (attempt 1)"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .with_context(|| what("StartContainer (attempt 1)"))?;
    let r2 = Instant::now();
    s.restart = ms(r2 - r0);
    s.recreate = ms(r2 - r1);
    tokio::time::sleep(RUNNING_PAUSE).await;

    // A crash: attempt 1 killed, noticed by polling, replaced by attempt 2.
    let pid = cri.container_pid(&container).await?;
    let k0 = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    loop {
        let state = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: container.clone(),
                verbose: false,
            })
            .await
            .with_context(|| what("ContainerStatus"))?
            .into_inner()
            .status
            .map(|st| st.state);
        if state == Some(cri::ContainerState::ContainerExited as i32) {
            break;
        }
        if k0.elapsed() > Duration::from_secs(10) {
            anyhow::bail!("{}: still not EXITED 10 s after SIGKILL", what("crash"));
        }
    }
    let k1 = Instant::now();
    let container = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(c2),
            sandbox_config: Some(sandbox_config),
        })
        .await
        .with_context(|| what("CreateContainer (attempt 2)"))?
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container.clone(),
    })
    .await
    .with_context(|| what("StartContainer (attempt 2)"))?;
    let k3 = Instant::now();
    s.exit_recorded = ms(k1 - k0);
    s.crash = ms(k3 - k0);
    tokio::time::sleep(RUNNING_PAUSE).await;

    let d0 = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: container,
        timeout: GRACE_SECONDS,
    })
    .await
    .with_context(|| what("StopContainer"))?;
    let d1 = Instant::now();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox.clone(),
    })
    .await
    .with_context(|| what("StopPodSandbox"))?;
    let d2 = Instant::now();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox,
    })
    .await
    .with_context(|| what("RemovePodSandbox"))?;
    let d3 = Instant::now();
    s.stop_container = ms(d1 - d0);
    s.stop_sandbox = ms(d2 - d1);
    s.remove_sandbox = ms(d3 - d2);
    s.down = ms(d3 - d0);
    Ok(s)
}

//! Host-side set-up before a CRI call, and the config that call sends: the pod's directories,
//! volumes, `/etc/hosts`, termination-message file and log directory, then the sandbox or
//! container config. The CRI runtime calls these; so does the benchmark's floor, so that it
//! measures the runtime on exactly what podvisor sends.

use std::path::Path;

use k8s_cri::v1 as cri;
use tracing::warn;

use super::convert::{self, Addresses};
use super::podfiles::{self, host_error};
use super::{NodeContext, RuntimeError, volumes};
use crate::pod::StaticPod;

/// Whether container logs can go to `dir`. When they cannot (a read-only or full
/// filesystem), the pod runs all the same, without logs, and a warning says why: a pod is
/// worth more than its logs, and a full disk must not stop pods from being managed.
fn logs_usable(pod: &StaticPod, container: Option<&str>, dir: &Path) -> bool {
    match podfiles::ensure_log_dir(dir) {
        Ok(()) => true,
        Err(e) => {
            const WHY: &str = "log directory unusable; running without container logs";
            match container {
                Some(c) => warn!(pod = %pod.key, container = c, error = %e, "{WHY}"),
                None => warn!(pod = %pod.key, error = %e, "{WHY}"),
            }
            false
        }
    }
}

/// Creates the pod's directories and volumes; returns the `RunPodSandbox` config.
pub fn sandbox(
    pod: &StaticPod,
    attempt: u32,
    ctx: &NodeContext,
) -> Result<cri::PodSandboxConfig, RuntimeError> {
    let log_dir = ctx.pod_log_dir(&pod.key.namespace, &pod.key.name, pod.uid.as_str());
    let logs = logs_usable(pod, None, &log_dir);
    let pod_dir = ctx.pod_dir(pod.uid.as_str());
    std::fs::create_dir_all(&pod_dir)
        .map_err(|e| host_error("creating pod directory", &pod_dir, e))?;
    volumes::prepare(pod, ctx)?;
    let mut config = convert::sandbox_config(pod, attempt, ctx);
    if !logs {
        config.log_directory.clear();
    }
    Ok(config)
}

/// Writes the files container `name` mounts (volumes, `/etc/hosts`, its termination-message
/// file, subPaths) and its log directory; returns the `CreateContainer` config and the sandbox
/// config that goes with it. `None` when the pod has no such container.
pub fn container(
    pod: &StaticPod,
    name: &str,
    attempt: u32,
    addrs: &Addresses,
    ctx: &NodeContext,
) -> Result<(cri::ContainerConfig, cri::PodSandboxConfig), RuntimeError> {
    let (kind, container) = pod
        .container(name)
        .ok_or_else(|| RuntimeError::NoSuchContainer(name.to_owned()))?;
    volumes::prepare(pod, ctx)?;
    if podfiles::mounts_etc_hosts(pod, container, addrs.pod_ip.is_some()) {
        podfiles::write_etc_hosts(pod, ctx, addrs.pod_ip.as_deref())?;
    }
    if container.termination_message_path.is_some() {
        podfiles::create_termination_log(&podfiles::termination_log_path(
            ctx,
            pod.uid.as_str(),
            name,
            attempt,
        ))?;
    }
    let env = convert::environment(pod, container, addrs, ctx);
    volumes::ensure_sub_paths(&convert::sub_paths(pod, container, &env, ctx))?;
    let log_dir = ctx
        .pod_log_dir(&pod.key.namespace, &pod.key.name, pod.uid.as_str())
        .join(name);
    let logs = logs_usable(pod, Some(name), &log_dir);
    let mut config = convert::container_config(pod, container, kind, attempt, addrs, ctx);
    let mut sandbox_config = convert::sandbox_config(pod, 0, ctx);
    if !logs {
        // containerd logs nothing when either is empty (and fails the container when it
        // cannot create the log file).
        config.log_path.clear();
        sandbox_config.log_directory.clear();
    }
    Ok((config, sandbox_config))
}

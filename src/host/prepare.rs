//! A pod's host side made ready before the runtime is asked for its sandbox or a container:
//! the pod's directories, volumes, `/etc/hosts`, termination-message file, subPaths and log
//! directories. Idempotent; says whether container logs can be written, which the runtime
//! then honours in the configs it sends.

use std::path::Path;

use tracing::warn;

use super::podfiles;
use super::{HostError, NodeContext, volumes};
use crate::pod::StaticPod;
use crate::pod::environment::{Addresses, environment};

/// What the host side offers a sandbox or container once ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Whether container logs can be written (else the runtime is told to write none).
    pub logs: bool,
}

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

/// Creates the pod's directory, log directory and volumes.
pub fn pod(pod: &StaticPod, ctx: &NodeContext) -> Result<Ready, HostError> {
    let log_dir = ctx.pod_log_dir(&pod.key.namespace, &pod.key.name, pod.uid.as_str());
    let logs = logs_usable(pod, None, &log_dir);
    let pod_dir = ctx.pod_dir(pod.uid.as_str());
    std::fs::create_dir_all(&pod_dir)
        .map_err(|e| HostError::new("creating pod directory", &pod_dir, e))?;
    volumes::prepare(pod, ctx)?;
    Ok(Ready { logs })
}

/// Writes the files container `name` mounts (volumes, `/etc/hosts`, its termination-message
/// file, subPaths) and creates its log directory.
pub fn container(
    pod: &StaticPod,
    name: &str,
    attempt: u32,
    addrs: &Addresses,
    ctx: &NodeContext,
) -> Result<Ready, HostError> {
    let Some((_, container)) = pod.container(name) else {
        return Err(HostError::new(
            "preparing container",
            Path::new(name),
            "the pod has no such container",
        ));
    };
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
    let env = environment(pod, container, addrs, ctx.capacity());
    volumes::ensure_sub_paths(&volumes::sub_paths(pod, container, &env, ctx))?;
    let log_dir = ctx
        .pod_log_dir(&pod.key.namespace, &pod.key.name, pod.uid.as_str())
        .join(name);
    Ok(Ready {
        logs: logs_usable(pod, Some(name), &log_dir),
    })
}

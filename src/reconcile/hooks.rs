//! The lifecycle hooks that belong to stopping and starting a container: preStop before a
//! stop, inside the grace period and cut at its end on podvisor's own timer; postStart after
//! a start, whose failure stops the container.

use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::context::ExecContext;
use super::plan::{MIN_GRACE, StopTarget, grace};
use crate::action::{HookError, run_handler};
use crate::chain::chain;
use crate::event::EventType;
use crate::pod::{PodKey, StaticPod};
use crate::runtime::{ContainerId, Runtime, RuntimeError, SandboxId};

/// Longest a postStart hook may run (the kubelet bounds it only by its request timeout).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// Stops one container: its preStop hook first, bounded by the grace period, then the stop
/// with what is left of it (never under the kubelet's 2 s floor).
pub(super) async fn stop_one<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    key: &PodKey,
    t: &StopTarget,
) -> Result<(), RuntimeError> {
    let mut grace = t.grace;
    if let Some(hook) = &t.pre_stop {
        let started = Instant::now();
        let host = hook
            .host
            .clone()
            .or_else(|| cx.host_ip.clone())
            .unwrap_or_default();
        // The kubelet waits for preStop at most the grace period, on its own timer: the
        // runtime's exec timeout is not to be trusted (containerd 1.6 overruns it by as long
        // as the hook's children live).
        let run = run_handler(rt, &hook.handler, &t.id, &hook.ports, &host, t.grace);
        let outcome = match tokio::time::timeout(t.grace, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HookError::Cut { timeout: t.grace }),
        };
        if let Err(e) = outcome {
            let why = chain(&e);
            warn!(pod = %key, container = %t.name, error = %why, "preStop hook failed");
            cx.emit(
                key,
                EventType::Warning,
                "FailedPreStopHook",
                format!("PreStopHook failed: {why}"),
                None,
            );
        }
        grace = t.grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
    }
    rt.stop_container(&t.id, grace).await
}

/// Runs a container's postStart hook; if it fails, the container is stopped (the kubelet's
/// `FailedPostStartHook`) and the restart policy takes it from there.
#[allow(clippy::too_many_arguments)]
pub(super) async fn post_start<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    key: &PodKey,
    pod: &StaticPod,
    sandbox: &SandboxId,
    name: &str,
    id: &ContainerId,
    field: String,
) -> Result<(), RuntimeError> {
    let Some((_, spec)) = pod.container(name) else {
        return Ok(());
    };
    let Some(handler) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
        return Ok(());
    };
    let host = if pod.host_network() {
        cx.host_ip.clone()
    } else {
        rt.sandbox_ip(sandbox).await.ok().flatten()
    };
    let ports = spec.ports.clone().unwrap_or_default();
    if let Err(e) = run_handler(
        rt,
        handler,
        id,
        &ports,
        &host.unwrap_or_default(),
        POST_START_TIMEOUT,
    )
    .await
    {
        warn!(pod = %key, container = %name, error = %e, "postStart hook failed; stopping the container");
        cx.emit(
            key,
            EventType::Warning,
            "FailedPostStartHook",
            format!("PostStartHook failed: {e}"),
            Some(field),
        );
        rt.stop_container(id, grace(Some(pod.grace_period_seconds())))
            .await?;
    }
    Ok(())
}

//! Applies one pod's planned actions through the [`Runtime`] and the [`Host`], in order,
//! stopping at the first failure. The only place that turns decisions into runtime and host
//! calls; the hooks around starts and stops are in `hooks`, the events' words in `wording`.

use std::sync::Arc;

use futures::future::join_all;
use tracing::{debug, info, warn};

use super::context::ExecContext;
use super::hooks;
use super::outcome::{Outcome, StepError, WorkError};
use super::plan::{Action, PodWork, SandboxRef, StopReason, StopTarget};
use super::wording;
use crate::event::{EventType, container_field};
use crate::host::{Host, Ready};
use crate::pod::environment::Addresses;
use crate::pod::{ContainerKind, PodKey, StaticPod, WaitingReason};
use crate::runtime::{ContainerStart, Runtime, RuntimeError, SandboxId, Started};

/// What earlier steps of one pod's work left for later ones.
#[derive(Default)]
struct Carry {
    /// The sandbox `RunSandbox` created.
    new_sandbox: Option<SandboxId>,
    /// The host side `PreparePod` made ready.
    prepared: Option<Ready>,
    /// The container whose image `PrepareSwap` could not make present.
    unready: Option<String>,
}

/// Runs `work` to completion or first failure, through the runtime `rt` and the host `host`.
pub async fn execute<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    work: PodWork,
) -> Outcome {
    let key = work.key;
    let mut carry = Carry::default();
    let mut sandbox_ahead = work
        .actions
        .iter()
        .any(|a| matches!(a, Action::RunSandbox { .. }));
    for action in work.actions {
        let starting = match &action {
            Action::StartContainer { name, .. } => Some(name.clone()),
            _ => None,
        };
        let runs_sandbox = matches!(action, Action::RunSandbox { .. });
        let preparing = matches!(action, Action::PrepareSwap { .. });
        if let Err(error) = apply(rt, host, cx, &key, action, &mut carry).await {
            return Outcome {
                key,
                result: Err(WorkError {
                    held: preparing,
                    container: starting.or(carry.unready),
                    blocks_new_sandbox: sandbox_ahead && !runs_sandbox,
                    error,
                }),
            };
        }
        if runs_sandbox {
            sandbox_ahead = false;
        }
    }
    Outcome {
        key,
        result: Ok(()),
    }
}

/// Stops `containers` of pod `key` in parallel, each with its preStop hook first and within
/// its grace period; the first failure once all are done.
pub async fn stop_containers<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    key: &PodKey,
    containers: &[StopTarget],
    reason: StopReason,
) -> Result<(), RuntimeError> {
    for t in containers {
        let message = wording::killing(&t.name, reason);
        cx.emit(key, EventType::Normal, "Killing", message, None);
    }
    let results = join_all(containers.iter().map(|t| hooks::stop_one(rt, cx, key, t))).await;
    for (t, r) in containers.iter().zip(&results) {
        if r.is_ok() {
            info!(pod = %key, container = %t.name, id = %t.id, grace = ?t.grace, reason = wording::stop_reason(reason), "container stopped");
        }
    }
    results
        .into_iter()
        .collect::<Result<Vec<()>, _>>()
        .map(|_| ())
}

async fn apply<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    key: &PodKey,
    action: Action,
    carry: &mut Carry,
) -> Result<(), StepError> {
    match action {
        Action::PrepareSwap { pod, containers } => {
            prepare_swap(rt, host, cx, key, &pod, &containers, carry).await
        }
        Action::StopContainers { containers, reason } => {
            stop_containers(rt, cx, key, &containers, reason)
                .await
                .map_err(StepError::from)
        }
        Action::RemoveContainer(id) => {
            rt.remove_container(&id).await?;
            host.unlink_container_log(id.0.clone()).await;
            debug!(pod = %key, id = %id, "dead container removed");
            Ok(())
        }
        Action::StopSandbox(id) => {
            rt.stop_sandbox(&id).await?;
            info!(pod = %key, sandbox = %id, "pod sandbox stopped");
            Ok(())
        }
        Action::RemoveSandbox(id) => {
            rt.remove_sandbox(&id).await?;
            info!(pod = %key, sandbox = %id, "pod sandbox removed");
            Ok(())
        }
        Action::CleanupPod { key, uid } => {
            host.cleanup_pod(key.clone(), uid.clone()).await?;
            debug!(pod = %key, uid = %uid, "pod's host side removed");
            Ok(())
        }
        Action::PreparePod { pod } => {
            carry.prepared = Some(host.prepare_pod(pod).await?);
            Ok(())
        }
        Action::RunSandbox { pod, attempt } => {
            let ready = carry.prepared.unwrap_or(Ready { logs: true });
            let id = match rt.run_sandbox(&pod, attempt, ready).await {
                Ok(id) => id,
                Err(e) => {
                    // The kubelet's event, so that a refused sandbox (an unknown runtime
                    // handler, say) reads as such and not as a pod quietly pending.
                    cx.emit(
                        key,
                        EventType::Warning,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e}"),
                        None,
                    );
                    return Err(e.into());
                }
            };
            info!(pod = %key, uid = %pod.uid, hash = %pod.hash, sandbox = %id, attempt, "pod sandbox started");
            carry.new_sandbox = Some(id);
            Ok(())
        }
        Action::StartContainer {
            pod,
            sandbox,
            name,
            attempt,
            restarts,
            restart,
        } => {
            let sandbox_id = match sandbox {
                SandboxRef::Existing(id) => id,
                SandboxRef::New => carry
                    .new_sandbox
                    .clone()
                    .ok_or_else(|| StepError::NoNewSandbox(name.clone()))?,
            };
            let init = matches!(pod.container(&name), Some((ContainerKind::Init, _)));
            let field = container_field(init, &name);
            let instance = (attempt, restarts);
            let image = pod
                .container(&name)
                .and_then(|(_, c)| c.image.clone())
                .unwrap_or_default();
            let pulling = announce_pull(cx, key, &image, &field);
            let steps = Steps {
                pod: &pod,
                sandbox: &sandbox_id,
                name: &name,
                instance,
                pulling: &pulling,
            };
            let started = match start(rt, host, cx, steps).await {
                Ok(started) => started,
                Err(e) => {
                    failed_start(cx, key, e.waiting_reason(), e.to_string(), &field);
                    return Err(e);
                }
            };
            let id = started.id;
            // where log shippers look; a link that cannot be made costs the container nothing
            if let Err(e) = host
                .link_container_log(pod.clone(), name.clone(), attempt, id.0.clone())
                .await
            {
                warn!(pod = %key, container = %name, error = %e, "container log link not made");
            }
            cx.emit(
                key,
                EventType::Normal,
                "Pulled",
                wording::pulled(&image, started.image),
                Some(field.clone()),
            );
            cx.emit(
                key,
                EventType::Normal,
                "Created",
                "Container created".to_owned(),
                Some(field.clone()),
            );
            let restart_count = restarts;
            if restart.is_some() {
                info!(pod = %key, container = %name, id = %id, restart_count, "container restarted");
            } else {
                info!(pod = %key, container = %name, id = %id, restart_count, "container started");
            }
            cx.emit(
                key,
                EventType::Normal,
                "Started",
                "Container started".to_owned(),
                Some(field.clone()),
            );
            hooks::post_start(rt, cx, key, &pod, &sandbox_id, &name, &id, field.clone())
                .await
                .map_err(StepError::from)
        }
        Action::StartCreated(id) => {
            rt.start_created(&id).await?;
            info!(pod = %key, id = %id, "created container started");
            Ok(())
        }
    }
}

/// The kubelet's warning event for a container that cannot start (its image included):
/// `ErrImageNeverPull` for an image it may not pull, `Failed` otherwise.
fn failed_start(
    cx: &ExecContext,
    key: &PodKey,
    reason: WaitingReason,
    message: String,
    field: &str,
) {
    let reason = match reason {
        WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
        _ => "Failed",
    };
    cx.emit(
        key,
        EventType::Warning,
        reason,
        message,
        Some(field.to_owned()),
    );
}

/// The kubelet's `Pulling` event for `image` of the container at `field`, to post when a
/// pull starts.
fn announce_pull<'a>(
    cx: &'a ExecContext,
    key: &'a PodKey,
    image: &'a str,
    field: &'a str,
) -> impl Fn() + Send + Sync + 'a {
    move || {
        cx.emit(
            key,
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
            Some(field.to_owned()),
        );
    }
}

/// Pull before swap: the new version's images made present and its host paths checked,
/// while the old version runs on. A failure is reported as the kubelet reports a failed pull
/// or start (event, waiting reason), plus a warning that the running version is kept.
async fn prepare_swap<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    key: &PodKey,
    pod: &Arc<StaticPod>,
    containers: &[String],
    carry: &mut Carry,
) -> Result<(), StepError> {
    let held = |cx: &ExecContext, what: String| {
        cx.emit(
            key,
            EventType::Warning,
            "UpdateHeld",
            wording::update_held(&what),
            None,
        );
    };
    if let Err(e) = host.check_pod(pod.clone()).await {
        held(cx, e.to_string());
        return Err(e.into());
    }
    for name in containers {
        let Some((kind, c)) = pod.container(name) else {
            continue;
        };
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_default();
        let field = container_field(kind == ContainerKind::Init, name);
        let pulling = announce_pull(cx, key, &image, &field);
        match rt.ensure_image(&image, &policy, Some(&pulling)).await {
            Ok(source) => {
                if !matches!(source, crate::runtime::ImageSource::Present) {
                    cx.emit(
                        key,
                        EventType::Normal,
                        "Pulled",
                        wording::pulled(&image, source),
                        Some(field.clone()),
                    );
                }
            }
            Err(e) => {
                failed_start(cx, key, e.waiting_reason(), e.to_string(), &field);
                held(cx, e.to_string());
                carry.unready = Some(name.clone());
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// The addresses a container of `pod` in `sandbox` sees: the sandbox's IP, or the node's for
/// a host-network pod.
async fn addresses<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    pod: &StaticPod,
    sandbox: &SandboxId,
) -> Result<Addresses, RuntimeError> {
    let pod_ip = if pod.host_network() {
        cx.host_ip.clone()
    } else {
        rt.sandbox_ip(sandbox).await?
    };
    Ok(Addresses {
        pod_ip,
        host_ip: cx.host_ip.clone(),
    })
}

/// What [`start`] starts, and whom it tells about a pull.
struct Steps<'a> {
    pod: &'a Arc<StaticPod>,
    sandbox: &'a SandboxId,
    name: &'a str,
    instance: (u32, u32),
    pulling: &'a (dyn Fn() + Send + Sync),
}

/// Starts one container: its host side made ready, then the runtime asked.
async fn start<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    steps: Steps<'_>,
) -> Result<Started, StepError> {
    let Steps {
        pod,
        sandbox,
        name,
        instance: (attempt, restarts),
        pulling,
    } = steps;
    let addrs = addresses(rt, cx, pod, sandbox).await?;
    let ready = host
        .prepare_container(pod.clone(), name.to_owned(), attempt, addrs.clone())
        .await?;
    let start = ContainerStart {
        pod,
        sandbox,
        name,
        attempt,
        restarts,
        addrs: &addrs,
        host: ready,
        pulling: Some(pulling),
    };
    Ok(rt.start_container(&start).await?)
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;

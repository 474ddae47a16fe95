//! Applies one pod's planned actions through the [`Runtime`], in order, stopping at the first
//! failure. The only place that turns decisions into runtime calls.

use futures::future::join_all;
use tracing::{debug, info};

use super::plan::{Action, PodWork, SandboxRef, StopReason};
use crate::pod::PodKey;
use crate::runtime::{Runtime, RuntimeError, SandboxId};

/// How one pod's work ended.
#[derive(Debug)]
pub struct Outcome {
    /// The pod.
    pub key: PodKey,
    /// `Ok`, or the first error (the remaining actions were not attempted).
    pub result: Result<(), RuntimeError>,
}

fn reason_text(r: StopReason) -> &'static str {
    match r {
        StopReason::PodRemoved => "manifest removed",
        StopReason::PodReplaced => "pod replaced by a new version",
        StopReason::SpecChanged => "container spec changed",
        StopReason::ContainerRemoved => "container removed from the manifest",
        StopReason::SandboxGone => "sandbox gone or duplicated",
        StopReason::Unknown => "state unknown",
    }
}

/// Runs `work` to completion or first failure.
pub async fn execute<R: Runtime>(rt: &R, work: PodWork) -> Outcome {
    let key = work.key;
    let mut new_sandbox: Option<SandboxId> = None;
    for action in work.actions {
        if let Err(e) = apply(rt, &key, action, &mut new_sandbox).await {
            return Outcome {
                key,
                result: Err(e),
            };
        }
    }
    Outcome {
        key,
        result: Ok(()),
    }
}

async fn apply<R: Runtime>(
    rt: &R,
    key: &PodKey,
    action: Action,
    new_sandbox: &mut Option<SandboxId>,
) -> Result<(), RuntimeError> {
    match action {
        Action::StopContainers { containers, reason } => {
            let results = join_all(
                containers
                    .iter()
                    .map(|(id, _, grace)| rt.stop_container(id, *grace)),
            )
            .await;
            for ((id, name, grace), r) in containers.iter().zip(&results) {
                if r.is_ok() {
                    info!(pod = %key, container = %name, id = %id, grace = ?grace, reason = reason_text(reason), "container stopped");
                }
            }
            results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
        }
        Action::RemoveContainer(id) => {
            rt.remove_container(&id).await?;
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
        Action::ForgetPod { key, uid } => rt.forget_pod(&key, &uid).await,
        Action::RunSandbox { pod, attempt } => {
            let id = rt.run_sandbox(&pod, attempt).await?;
            info!(pod = %key, uid = %pod.uid, hash = %pod.hash, sandbox = %id, attempt, "pod sandbox started");
            *new_sandbox = Some(id);
            Ok(())
        }
        Action::StartContainer {
            pod,
            sandbox,
            name,
            attempt,
            restart,
        } => {
            let sandbox_id = match sandbox {
                SandboxRef::Existing(id) => id,
                SandboxRef::New => new_sandbox.clone().ok_or_else(|| RuntimeError::Call {
                    method: "CreateContainer",
                    code: 9,
                    message: "no sandbox was created for this container".to_owned(),
                })?,
            };
            let id = rt
                .start_container(&pod, &sandbox_id, &name, attempt)
                .await?;
            let restart_count = attempt;
            if restart.is_some() {
                info!(pod = %key, container = %name, id = %id, restart_count, "container restarted");
            } else {
                info!(pod = %key, container = %name, id = %id, restart_count, "container started");
            }
            Ok(())
        }
        Action::StartCreated(id) => {
            rt.start_created(&id).await?;
            info!(pod = %key, id = %id, "created container started");
            Ok(())
        }
    }
}

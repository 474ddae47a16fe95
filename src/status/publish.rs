//! The status task: whenever the manifests, the runtime, a probe result or the node's health
//! change, recompute every static pod's status and publish the whole [`NodeStatus`] if it changed.

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{NodeStatus, PodReport, StatusInput, conditions, pod_status};
use crate::clock::{Clock, Timestamp};
use crate::health::NodeHealth;
use crate::manifest::Snapshot;
use crate::probe::ProbeResults;
use crate::reconcile::ReconcileState;

/// The name container IDs carry before the runtime has said its own.
const UNKNOWN_RUNTIME: &str = "cri";

/// Recomputes the node's status from its inputs. Pure.
pub fn compute(
    snapshot: Option<&Snapshot>,
    state: &ReconcileState,
    probes: &ProbeResults,
    host_ip: Option<&str>,
    now: Timestamp,
) -> NodeStatus {
    let probe_view = probes.for_status();
    // Until the runtime has said its name there are no containers to name by it.
    let runtime_name = state
        .runtime
        .as_ref()
        .map_or(UNKNOWN_RUNTIME, |v| v.name.as_str());
    let pods = snapshot
        .map(|s| {
            s.pods
                .iter()
                .map(|(key, pod)| {
                    let status = pod_status(&StatusInput {
                        pod,
                        observed: &state.observed,
                        probes: &probe_view,
                        backing_off: &state.backing_off,
                        start_errors: &state.start_errors,
                        runtime_name,
                        host_ip,
                        now,
                    });
                    let report = PodReport {
                        pod: pod.clone(),
                        status,
                        last_error: state.pod_errors.get(key).cloned(),
                        note: state
                            .rolled_back
                            .get(key)
                            .cloned()
                            .or_else(|| kept_note(s, pod)),
                    };
                    (key.clone(), report)
                })
                .collect()
        })
        .unwrap_or_default();
    NodeStatus {
        pods,
        synced: state.synced,
        runtime_error: state.runtime_error.clone(),
        runtime: state.runtime.clone(),
        health: NodeHealth::default(),
    }
}

/// For a pod whose file is rejected: that its last good version runs, and why the file is.
fn kept_note(snapshot: &Snapshot, pod: &crate::pod::StaticPod) -> Option<String> {
    let file = snapshot.files.get(&pod.source.path)?;
    if file.status != crate::manifest::FileStatus::Rejected {
        return None;
    }
    let why = file
        .errors
        .first()
        .map_or_else(String::new, |e| format!(": {e}"));
    Some(format!(
        "running its last good version; {} is invalid{why}",
        pod.source.path.display()
    ))
}

/// Gives each pod's conditions their `lastTransitionTime`: from `old` while unchanged,
/// `now` when changed. Pure.
pub fn stamp(new: &mut NodeStatus, old: &NodeStatus, now: Timestamp) {
    let now = super::api_time(now);
    for (key, report) in new.pods.iter_mut() {
        let before = old.pods.get(key).map(|r| &r.status);
        conditions::stamp_transitions(&mut report.status, before, &now);
    }
}

/// Publishes the node's status on `tx` until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn publish(
    mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    mut state: watch::Receiver<Arc<ReconcileState>>,
    mut probes: watch::Receiver<Arc<ProbeResults>>,
    mut health: watch::Receiver<NodeHealth>,
    host_ip: Option<String>,
    clock: Clock,
    tx: watch::Sender<Arc<NodeStatus>>,
    shutdown: CancellationToken,
) {
    loop {
        let snapshot = snapshots.borrow_and_update().clone();
        let current = state.borrow_and_update().clone();
        let results = probes.borrow_and_update().clone();
        let now = clock.now();
        let mut status = compute(
            snapshot.as_deref(),
            &current,
            &results,
            host_ip.as_deref(),
            now,
        );
        status.health = health.borrow_and_update().clone();
        stamp(&mut status, &tx.borrow(), now);
        tx.send_if_modified(|old| {
            if **old == status {
                false
            } else {
                *old = Arc::new(status);
                true
            }
        });
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = snapshots.changed() => if r.is_err() { return },
            r = state.changed() => if r.is_err() { return },
            r = probes.changed() => if r.is_err() { return },
            r = health.changed() => if r.is_err() { return },
        }
    }
}

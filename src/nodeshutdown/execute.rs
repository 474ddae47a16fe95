//! Runs a [`ShutdownPlan`] through the [`Runtime`]: step after step, each step's pods in
//! parallel, the next step once all of them are done or the step's period is over (the
//! kubelet's `killPods`). A pod still stopping when its period ends goes on stopping
//! meanwhile; after the last step such pods are waited for [`STRAGGLER_WAIT`] more at most.
//! Containers are stopped with the reconciler's own stop (preStop hook within the grace
//! period, then the rest of it, never under 2 s); sandboxes are stopped and kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::plan::{PodStop, ShutdownPlan, Step};
use crate::pod::PodKey;
use crate::reconcile::{ExecContext, MIN_GRACE, StopReason, stop_containers};
use crate::runtime::{Runtime, RuntimeError};

/// How long pods still stopping after the last step are waited for: a container is never
/// given less than the kubelet's 2 s floor, whatever its group's period, and then the runtime
/// stops its sandbox.
pub const STRAGGLER_WAIT: Duration = Duration::from_secs(MIN_GRACE.as_secs() + 3);

/// How one pod's stop ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its containers and sandboxes are stopped.
    Stopped,
    /// A runtime call failed (the rest of its stop was still attempted).
    Failed(RuntimeError),
}

/// What happens, as it happens.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Step `index` (0-based) begins.
    Step {
        /// Its index.
        index: usize,
        /// The step.
        step: Step,
    },
    /// A pod's stop ended.
    Pod {
        /// The pod.
        key: PodKey,
        /// The index of its step.
        step: usize,
        /// How long it took, from the start of its stop.
        took: Duration,
        /// How it ended.
        outcome: Outcome,
    },
    /// Step `index`'s period is over and these pods are still stopping: the next step begins.
    PeriodOver {
        /// The step's index.
        index: usize,
        /// Its pods still stopping.
        pending: Vec<PodKey>,
    },
}

/// How the whole shutdown ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Finished {
    /// From the first step's start to the end.
    pub took: Duration,
    /// Pods stopped.
    pub stopped: Vec<PodKey>,
    /// Pods whose stop failed.
    pub failed: Vec<(PodKey, RuntimeError)>,
    /// Pods still stopping when the wait ended.
    pub unfinished: Vec<PodKey>,
}

impl Finished {
    /// Whether every pod was stopped.
    pub fn all_stopped(&self) -> bool {
        self.failed.is_empty() && self.unfinished.is_empty()
    }
}

struct Done {
    key: PodKey,
    step: usize,
    took: Duration,
    result: Result<(), RuntimeError>,
}

/// The pods still stopping, what came of the others, and where progress goes.
struct Tally<F> {
    progress: F,
    pending: BTreeMap<PodKey, usize>,
    finished: Finished,
}

impl<F: FnMut(Progress)> Tally<F> {
    fn done(&mut self, done: Done) {
        self.pending.remove(&done.key);
        let outcome = match done.result {
            Ok(()) => {
                self.finished.stopped.push(done.key.clone());
                Outcome::Stopped
            }
            Err(e) => {
                self.finished.failed.push((done.key.clone(), e.clone()));
                Outcome::Failed(e)
            }
        };
        (self.progress)(Progress::Pod {
            key: done.key,
            step: done.step,
            took: done.took,
            outcome,
        });
    }

    fn pending_in(&self, step: usize) -> Vec<PodKey> {
        self.pending
            .iter()
            .filter(|&(_, &s)| s == step)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// Runs `plan` through `rt`, telling `progress` what happens.
pub async fn execute<R: Runtime>(
    rt: Arc<R>,
    cx: ExecContext,
    plan: ShutdownPlan,
    progress: impl FnMut(Progress),
) -> Finished {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let mut tally = Tally {
        progress,
        pending: BTreeMap::new(),
        finished: Finished::default(),
    };
    let steps = plan.steps.len();
    for (index, step) in plan.steps.into_iter().enumerate() {
        let deadline = Instant::now() + step.group.period;
        for pod in &step.pods {
            tally.pending.insert(pod.key.clone(), index);
            tokio::spawn(stop_pod(
                rt.clone(),
                cx.clone(),
                pod.clone(),
                index,
                tx.clone(),
            ));
        }
        (tally.progress)(Progress::Step { index, step });
        while !tally.pending_in(index).is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(done)) => tally.done(done),
                Ok(None) => break,
                Err(_) => {
                    if index + 1 < steps {
                        let pending = tally.pending_in(index);
                        (tally.progress)(Progress::PeriodOver { index, pending });
                    }
                    break;
                }
            }
        }
    }
    let deadline = Instant::now() + STRAGGLER_WAIT;
    while !tally.pending.is_empty() {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(done)) => tally.done(done),
            Ok(None) | Err(_) => break,
        }
    }
    let mut finished = tally.finished;
    finished.unfinished = tally.pending.into_keys().collect();
    finished.took = started.elapsed();
    finished
}

/// Stops one pod: its app containers, then its init containers (sidecars), then its
/// sandboxes; a failure does not stop the rest (stopping the sandbox kills what is left).
async fn stop_pod<R: Runtime>(
    rt: Arc<R>,
    cx: ExecContext,
    pod: PodStop,
    step: usize,
    tx: mpsc::UnboundedSender<Done>,
) {
    let started = Instant::now();
    let mut result = Ok(());
    for batch in [&pod.app, &pod.init] {
        if !batch.is_empty() {
            let r = stop_containers(&*rt, &cx, &pod.key, batch, StopReason::NodeShutdown).await;
            result = result.and(r);
        }
    }
    for id in &pod.sandboxes {
        result = result.and(rt.stop_sandbox(id).await);
    }
    let _ = tx.send(Done {
        key: pod.key,
        step,
        took: started.elapsed(),
        result,
    });
}

#[cfg(test)]
#[path = "execute_tests.rs"]
mod tests;

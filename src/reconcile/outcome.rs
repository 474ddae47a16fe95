//! What came of one pod's work: the first failed step, what it was doing, and how it reads
//! in the pod's `lastError` and its containers' waiting reasons.

use thiserror::Error;

use crate::host::HostError;
use crate::pod::{PodKey, WaitingReason};
use crate::runtime::RuntimeError;

/// Why one step failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// The runtime refused or could not be reached.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The host side (directories, volumes, files) failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A container was to go into the new sandbox, and none was created.
    #[error("no sandbox was created for container {0:?}")]
    NoNewSandbox(String),
    /// The task working on the pod ended without an outcome.
    #[error("the pod's task died: {0}")]
    TaskDied(String),
}

impl StepError {
    /// Whether the runtime itself is unreachable, rather than refusing this pod.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StepError::Runtime(e) if e.is_unavailable())
    }

    /// The waiting reason of a container that failed to start with this error.
    pub fn waiting_reason(&self) -> WaitingReason {
        match self {
            StepError::Runtime(e) => e.waiting_reason(),
            _ => WaitingReason::CreateContainerError,
        }
    }

    /// The image a failed pull was for.
    pub fn failed_pull(&self) -> Option<&str> {
        match self {
            StepError::Runtime(e) => e.failed_pull(),
            _ => None,
        }
    }
}

/// A failed step.
#[derive(Debug)]
pub struct WorkError {
    /// The container being started, when the failure was a start.
    pub container: Option<String>,
    /// The step failed while clearing the way for a new sandbox: the new version waits.
    pub blocks_new_sandbox: bool,
    /// The step was preparing a new version (pull before swap): the old version was left
    /// running, untouched.
    pub held: bool,
    /// What failed.
    pub error: StepError,
}

impl WorkError {
    /// How the failure reads in `lastError`: a failure to stop the old version says that
    /// the new one waits for it.
    pub fn describe(&self) -> String {
        if self.held {
            format!(
                "update held, the running version is kept: the new version cannot start: {}",
                self.error
            )
        } else if self.blocks_new_sandbox {
            format!(
                "the new version waits for the old one to stop: {}",
                self.error
            )
        } else {
            self.error.to_string()
        }
    }
}

/// How one pod's work ended.
#[derive(Debug)]
pub struct Outcome {
    /// The pod.
    pub key: PodKey,
    /// `Ok`, or the first error (the remaining actions were not attempted).
    pub result: Result<(), WorkError>,
}

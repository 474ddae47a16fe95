//! The words podvisor's modules share about a pod's containers: which probe, why a container
//! waits, why it ended. Pure data, the kubelet's spellings.

use std::fmt;

/// Which probe a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// `livenessProbe`: a published failure means the container must be restarted.
    Liveness,
    /// `readinessProbe`: the published result is the container's readiness.
    Readiness,
    /// `startupProbe`: liveness and readiness wait until it has succeeded; a published
    /// failure means the container must be restarted.
    Startup,
}

impl ProbeKind {
    /// Startup gating: whether a probe of this kind runs, given whether the container has
    /// started (`containerStatus.started`). Until then only the startup probe runs; after
    /// that it stops and liveness and readiness run.
    pub fn runs_when(self, started: bool) -> bool {
        match self {
            ProbeKind::Startup => !started,
            ProbeKind::Liveness | ProbeKind::Readiness => started,
        }
    }

    /// The kubelet's name for it in events ("Liveness probe failed: ...").
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

/// Why a container is not running yet, in the kubelet's words (`containerStatuses[].state
/// .waiting.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitingReason {
    /// The sandbox or the container is being created.
    ContainerCreating,
    /// An init container has yet to finish.
    PodInitializing,
    /// Waiting for CrashLoopBackOff to expire.
    CrashLoopBackOff,
    /// The image pull failed.
    ErrImagePull,
    /// Waiting for the image pull backoff to expire.
    ImagePullBackOff,
    /// `imagePullPolicy: Never` and the image is not present.
    ErrImageNeverPull,
    /// The container's configuration cannot be honoured (e.g. runAsNonRoot with root).
    CreateContainerConfigError,
    /// The runtime refused to create the container.
    CreateContainerError,
    /// The runtime created the container but could not start its command.
    RunContainerError,
}

impl WaitingReason {
    /// The reason as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingReason::ContainerCreating => "ContainerCreating",
            WaitingReason::PodInitializing => "PodInitializing",
            WaitingReason::CrashLoopBackOff => "CrashLoopBackOff",
            WaitingReason::ErrImagePull => "ErrImagePull",
            WaitingReason::ImagePullBackOff => "ImagePullBackOff",
            WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitingReason::CreateContainerConfigError => "CreateContainerConfigError",
            WaitingReason::CreateContainerError => "CreateContainerError",
            WaitingReason::RunContainerError => "RunContainerError",
        }
    }
}

impl fmt::Display for WaitingReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a container ended (`containerStatuses[].state.terminated.reason`), as the runtime
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TerminationReason {
    /// It exited with code 0.
    Completed,
    /// It exited with another code.
    Error,
    /// The kernel's OOM killer ended it.
    OomKilled,
    /// The runtime could not run its command (CRI-O's `ContainerCannotRun`).
    ContainerCannotRun,
    /// Any other reason a runtime gives, as it spells it.
    Other(String),
}

impl TerminationReason {
    /// The runtime's reason; an empty one is `Completed` or `Error` by the exit code, as the
    /// kubelet fills it in.
    pub fn from_runtime(reason: &str, exit_code: i32) -> TerminationReason {
        match reason {
            "" if exit_code == 0 => TerminationReason::Completed,
            "" => TerminationReason::Error,
            "Completed" => TerminationReason::Completed,
            "Error" => TerminationReason::Error,
            "OOMKilled" => TerminationReason::OomKilled,
            "ContainerCannotRun" => TerminationReason::ContainerCannotRun,
            other => TerminationReason::Other(other.to_owned()),
        }
    }

    /// The reason as the API spells it.
    pub fn as_str(&self) -> &str {
        match self {
            TerminationReason::Completed => "Completed",
            TerminationReason::Error => "Error",
            TerminationReason::OomKilled => "OOMKilled",
            TerminationReason::ContainerCannotRun => "ContainerCannotRun",
            TerminationReason::Other(reason) => reason,
        }
    }
}

impl fmt::Display for TerminationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_termination_reason_round_trips_and_an_empty_one_follows_the_exit_code() {
        for r in [
            "Completed",
            "Error",
            "OOMKilled",
            "ContainerCannotRun",
            "StartError",
        ] {
            assert_eq!(TerminationReason::from_runtime(r, 1).as_str(), r);
        }
        assert_eq!(
            TerminationReason::from_runtime("", 0),
            TerminationReason::Completed
        );
        assert_eq!(
            TerminationReason::from_runtime("", 137),
            TerminationReason::Error
        );
    }
}

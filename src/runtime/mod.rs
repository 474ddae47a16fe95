//! The container runtime seam: what podvisor asks of a CRI runtime, on podvisor's own types.
//!
//! [`Runtime`] is implemented by [`CriRuntime`] (containerd, CRI-O over CRI v1) and, for tests,
//! by `FakeRuntime`. Protobuf types never leave this module: `convert` turns a
//! [`StaticPod`] into CRI configs (pure), `cri` performs the calls.

pub mod convert;
mod cri;
mod events;
#[cfg(any(test, feature = "test-util"))]
pub(crate) mod fake;
mod grpc;
mod leftover_task;
mod metered;
mod streams;
#[cfg(test)]
mod test_cri;
mod unanswered;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use k8s_openapi::api::core::v1::LifecycleHandler;

use crate::clock::Timestamp;
use crate::host::{Ready, TerminationSource};
use crate::pod::environment::Addresses;
use crate::pod::{
    ContainerHash, ContainerKind, PodKey, PodUid, SandboxHash, StaticPod, TerminationReason,
    WaitingReason,
};

pub use cri::{CriRuntime, container_configs, sandbox_config};
pub use events::{EventSource, ExitStream};
#[cfg(test)]
pub(crate) use fake::{FakeCall, FakeRuntime};
pub use streams::{
    ContainerUse, CpuUse, FsUse, InterfaceUse, MemoryUse, NetworkUse, PodUse, Stdio, Streaming,
};
pub use unanswered::Asked;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Runtime IDs are 64 hex digits; 13 are plenty to tell them apart in logs.
                f.write_str(&self.0[..self.0.len().min(13)])
            }
        }
    };
}

id!(
    /// A pod sandbox's runtime ID.
    SandboxId
);
id!(
    /// A container's runtime ID.
    ContainerId
);

/// Whether a sandbox (its network namespace and pause process) is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxState {
    /// Running.
    Ready,
    /// Stopped or broken.
    NotReady,
}

/// A sandbox podvisor created, as the runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedSandbox {
    /// Runtime ID.
    pub id: SandboxId,
    /// The pod it belongs to (from its labels).
    pub key: PodKey,
    /// The pod UID it was created for (`io.kubernetes.pod.uid`).
    pub uid: PodUid,
    /// The sandbox version it was created for (`podvisor.dev/sandbox-hash`; a sandbox
    /// created before podvisor wrote that annotation carries its UID, which was its version).
    pub version: SandboxHash,
    /// Its metadata attempt.
    pub attempt: u32,
    /// Ready or not.
    pub state: SandboxState,
    /// Creation time; `None` when the runtime gives none (a zero or negative time).
    pub created_at: Option<Timestamp>,
    /// The manifest it came from (podvisor's annotation).
    pub manifest: Option<PathBuf>,
    /// The pod IP, for sandboxes with their own network namespace.
    pub ip: Option<String>,
    /// The pod's priority when the sandbox was made (`podvisor.dev/priority`); `None` for a
    /// sandbox made before podvisor recorded it.
    pub priority: Option<i32>,
    /// The pod's `podvisor.dev/shutdown-order` annotation, when it is an integer.
    pub shutdown_order: Option<i32>,
    /// The pod's `component` label (kubeadm's control-plane pods: `etcd`, `kube-apiserver`).
    pub component: Option<String>,
}

/// A container's state as CRI reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The runtime does not know.
    Unknown,
}

/// A container podvisor created, as the runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    /// Runtime ID.
    pub id: ContainerId,
    /// Its sandbox.
    pub sandbox: SandboxId,
    /// The pod it belongs to (from its labels).
    pub key: PodKey,
    /// The pod UID it was created for.
    pub uid: PodUid,
    /// The container name.
    pub name: String,
    /// The metadata attempt: unique per name in a sandbox, it only ever increases.
    pub attempt: u32,
    /// Its restart count: restarts of this spec version by the restart policy
    /// (`io.kubernetes.container.restartCount`; 0 again after an edit, as under the kubelet,
    /// where an edited static pod is a new pod).
    pub restarts: u32,
    /// Init or app container.
    pub kind: ContainerKind,
    /// State.
    pub state: ContainerState,
    /// The container hash it was created from.
    pub hash: Option<ContainerHash>,
    /// The pod's grace period when it was created, for stopping it without a spec.
    pub grace_seconds: Option<i64>,
    /// Its `lifecycle.preStop` when it was created, for stopping it without a spec.
    pub pre_stop: Option<LifecycleHandler>,
    /// Image as specified.
    pub image: String,
    /// Image ID the runtime resolved.
    pub image_ref: String,
    /// Creation time; `None` when the runtime gives none (a zero or negative time).
    pub created_at: Option<Timestamp>,
    /// Start time, once started.
    pub started_at: Option<Timestamp>,
    /// Finish time, once exited.
    pub finished_at: Option<Timestamp>,
    /// Exit code, once exited.
    pub exit_code: Option<i32>,
    /// Why it ended, once exited.
    pub reason: Option<TerminationReason>,
    /// Where its termination message is, once exited: the host reads it.
    pub termination: Option<TerminationSource>,
    /// The termination message once the host has read it, else the runtime's message.
    pub message: String,
}

/// Everything podvisor created that the runtime still has.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Sandboxes.
    pub sandboxes: Vec<ObservedSandbox>,
    /// Containers.
    pub containers: Vec<ObservedContainer>,
    /// Status calls that failed this time (the object is listed, its details are not known
    /// yet and are asked for again next time).
    pub unreadable: Vec<RuntimeError>,
    /// The lowest attempt a sandbox's or container's name may still be asked for: requests
    /// for lower ones got no answer, and the runtime may hold those names (see `unanswered`).
    pub unanswered: BTreeMap<Asked, u32>,
}

impl Observed {
    /// The attempt to create `asked` with after its newest one, `previous`: the next, or 0,
    /// and past any request that got no answer.
    pub fn next_attempt(&self, asked: &Asked, previous: Option<u32>) -> u32 {
        let floor = self.unanswered.get(asked).copied().unwrap_or(0);
        previous.map_or(0, |a| a.saturating_add(1)).max(floor)
    }

    /// The sandboxes of `pod` at its sandbox version, and the containers in them. A
    /// container whose sandbox was not listed (the two lists race) counts by its pod UID.
    pub fn of_version<'a>(
        &'a self,
        pod: &StaticPod,
    ) -> (Vec<&'a ObservedSandbox>, Vec<&'a ObservedContainer>) {
        let sandboxes: Vec<&ObservedSandbox> = self
            .sandboxes
            .iter()
            .filter(|s| s.key == pod.key && s.version == pod.sandbox)
            .collect();
        let containers = self
            .containers
            .iter()
            .filter(|c| c.key == pod.key)
            .filter(
                |c| match self.sandboxes.iter().find(|s| s.id == c.sandbox) {
                    Some(s) => s.version == pod.sandbox,
                    None => c.uid == pod.uid,
                },
            )
            .collect();
        (sandboxes, containers)
    }
}

/// When `pod` started, as its status's `startTime` says: the creation of its first sandbox
/// of this version (`sandboxes`), else — none yet, or the runtime gives no time — when
/// podvisor first saw it, as the kubelet stamps `startTime` with its own clock.
pub fn start_time(pod: &StaticPod, sandboxes: &[&ObservedSandbox]) -> Timestamp {
    sandboxes
        .iter()
        .filter_map(|s| s.created_at)
        .min()
        .unwrap_or(pod.seen)
}

/// When `pod` has been active for its `activeDeadlineSeconds`, counted from its
/// [`start_time`] as the kubelet counts from `startTime`; `None` without a deadline.
pub fn active_deadline(pod: &StaticPod, sandboxes: &[&ObservedSandbox]) -> Option<Timestamp> {
    let seconds = u64::try_from(pod.spec.active_deadline_seconds?).unwrap_or(0);
    Some(start_time(pod, sandboxes).plus(Duration::from_secs(seconds)))
}

/// A container's newest instance and the one before it that exited, as `kubectl logs` and
/// `--previous` mean them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Instances<'a> {
    /// The newest instance (highest attempt, then newest).
    pub current: Option<&'a ObservedContainer>,
    /// The newest exited instance other than the current one.
    pub previous: Option<&'a ObservedContainer>,
}

impl Observed {
    /// The instances of container `name` of `pod` at its sandbox version.
    pub fn instances<'a>(&'a self, pod: &StaticPod, name: &str) -> Instances<'a> {
        let (_, containers) = self.of_version(pod);
        let mine: Vec<&ObservedContainer> =
            containers.into_iter().filter(|c| c.name == name).collect();
        let current = mine
            .iter()
            .copied()
            .max_by_key(|c| (c.attempt, c.created_at));
        let previous = mine
            .iter()
            .copied()
            .filter(|c| c.state == ContainerState::Exited && Some(&c.id) != current.map(|x| &x.id))
            .max_by_key(|c| (c.attempt, c.created_at));
        Instances { current, previous }
    }
}

/// What the runtime says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeVersion {
    /// `containerd`, `cri-o`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The CRI version it speaks.
    pub api: String,
}

impl RuntimeVersion {
    /// `containerd 1.6.20 (CRI v1)`.
    pub fn describe(&self) -> String {
        format!("{} {} (CRI {})", self.name, self.version, self.api)
    }
}

/// One condition of the runtime's CRI `Status`: `RuntimeReady`, `NetworkReady`, or another
/// the runtime adds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeCondition {
    /// Its type, e.g. `NetworkReady`.
    pub kind: String,
    /// Whether it holds.
    pub status: bool,
    /// Why, in a word.
    pub reason: String,
    /// Why, in a sentence.
    pub message: String,
}

impl fmt::Display for RuntimeCondition {
    /// As the kubelet prints a runtime condition in the Ready condition's message:
    /// `NetworkReady=false reason:NetworkPluginNotReady message:...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={} reason:{} message:{}",
            self.kind, self.status, self.reason, self.message
        )
    }
}

/// The runtime's answer to CRI `Status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    /// Its conditions, as the runtime listed them.
    pub conditions: Vec<RuntimeCondition>,
}

impl RuntimeStatus {
    /// The condition of type `kind`, if the runtime reports it.
    pub fn condition(&self, kind: &str) -> Option<&RuntimeCondition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// Both conditions the kubelet requires, holding.
    pub fn ready() -> RuntimeStatus {
        let holds = |kind: &str| RuntimeCondition {
            kind: kind.to_owned(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        RuntimeStatus {
            conditions: vec![holds("RuntimeReady"), holds("NetworkReady")],
        }
    }
}

/// A failed runtime operation.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum RuntimeError {
    /// The runtime could not be reached (socket missing, connection refused or reset).
    #[error("runtime unreachable during {method}: {message}")]
    Unavailable {
        /// The CRI method.
        method: &'static str,
        /// What the transport said.
        message: String,
    },
    /// The runtime did not answer in time.
    #[error("runtime did not answer {method} within {timeout:?}")]
    Timeout {
        /// The CRI method.
        method: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The runtime has no such sandbox or container (gRPC `NotFound`).
    #[error("{method}: {message}")]
    NotFound {
        /// The CRI method.
        method: &'static str,
        /// The runtime's message.
        message: String,
    },
    /// The runtime refused the call.
    #[error("{method} failed: {message}")]
    Call {
        /// The CRI method.
        method: &'static str,
        /// The gRPC status code the runtime answered with.
        code: tonic::Code,
        /// The runtime's message.
        message: String,
    },
    /// `imagePullPolicy: Never` and the image is not present (the kubelet's `ErrImageNeverPull`).
    #[error("image {image} is not present and imagePullPolicy is Never")]
    ImageNeverPull {
        /// The image.
        image: String,
    },
    /// The image could not be pulled (`ErrImagePull`).
    #[error("pulling image {image} failed: {message}")]
    ImagePull {
        /// The image.
        image: String,
        /// The runtime's message.
        message: String,
    },
    /// The container may not run as configured (the kubelet's `CreateContainerConfigError`).
    #[error("{message}")]
    Refused {
        /// What is wrong.
        message: String,
    },
    /// The pod does not declare the container asked for.
    #[error("pod has no container {0:?}")]
    NoSuchContainer(String),
}

impl RuntimeError {
    /// Whether the runtime itself is unreachable, rather than refusing this pod.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RuntimeError::Unavailable { .. } | RuntimeError::Timeout { .. }
        )
    }

    /// The kubelet's waiting reason for a container that failed to start with this error:
    /// a refused `StartContainer` (the command cannot be run) is `RunContainerError`, any
    /// other failure to create it `CreateContainerError`.
    pub fn waiting_reason(&self) -> WaitingReason {
        match self {
            RuntimeError::ImageNeverPull { .. } => WaitingReason::ErrImageNeverPull,
            RuntimeError::ImagePull { .. } => WaitingReason::ErrImagePull,
            RuntimeError::Refused { .. } => WaitingReason::CreateContainerConfigError,
            RuntimeError::Call {
                method: "StartContainer",
                ..
            } => WaitingReason::RunContainerError,
            _ => WaitingReason::CreateContainerError,
        }
    }

    /// The image a failed pull was for.
    pub fn failed_pull(&self) -> Option<&str> {
        match self {
            RuntimeError::ImagePull { image, .. } => Some(image),
            _ => None,
        }
    }
}

/// What starting one container takes.
#[derive(Clone, Copy)]
pub struct ContainerStart<'a> {
    /// The pod.
    pub pod: &'a StaticPod,
    /// Its sandbox.
    pub sandbox: &'a SandboxId,
    /// The container's name.
    pub name: &'a str,
    /// Metadata attempt.
    pub attempt: u32,
    /// Restart count of this spec version.
    pub restarts: u32,
    /// The addresses its environment may refer to.
    pub addrs: &'a Addresses,
    /// Its host side, as the host layer prepared it.
    pub host: Ready,
    /// Called once just before the image is pulled (not when it is present), for the
    /// `Pulling` event.
    pub pulling: Option<&'a (dyn Fn() + Send + Sync)>,
}

/// How pulls are watched for progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullSettings {
    /// A pull whose downloads show no progress for this long is cancelled and fails
    /// (`ErrImagePull`, then back-off); with nothing to watch, the limit of the whole pull.
    pub progress_timeout: Duration,
    /// The directory whose changes show download progress; `None`: containerd's ingest
    /// area, found beside its image filesystem.
    pub progress_dir: Option<PathBuf>,
    /// Pulls at once: `Some(1)` is the kubelet's `serializeImagePulls` (its default),
    /// `Some(n)` its `maxParallelImagePulls`, `None` no limit.
    pub parallel: Option<usize>,
}

impl PullSettings {
    /// containerd 1.7's default `image_pull_progress_timeout`.
    pub const DEFAULT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(5 * 60);
}

impl Default for PullSettings {
    fn default() -> Self {
        PullSettings {
            progress_timeout: PullSettings::DEFAULT_PROGRESS_TIMEOUT,
            progress_dir: None,
            parallel: Some(1),
        }
    }
}

/// How the image of a started container came to be present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// It was there already.
    Present,
    /// It was pulled now.
    Pulled {
        /// How long the pull took.
        took: Duration,
        /// That and the time it waited for its turn (`serializeImagePulls`).
        with_waiting: Duration,
        /// The image's size in bytes, as the runtime reports it.
        size: u64,
    },
}

/// A container that was created and started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its runtime ID.
    pub id: ContainerId,
    /// How its image came to be present.
    pub image: ImageSource,
}

/// The result of running a command in a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Exit code.
    pub exit_code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// An image the runtime holds (CRI `Image`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeImage {
    /// Its ID (`sha256:…` of its config).
    pub id: String,
    /// Its names (`registry/repo:tag`).
    pub tags: Vec<String>,
    /// Its digests (`registry/repo@sha256:…`).
    pub digests: Vec<String>,
    /// Bytes on disk.
    pub size: u64,
    /// Whether the runtime asks that it never be removed (e.g. its sandbox image).
    pub pinned: bool,
}

/// What podvisor asks of a container runtime. All methods are idempotent where CRI is:
/// stopping or removing something already gone succeeds.
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's name and version (CRI `Version`).
    fn version(&self) -> impl Future<Output = Result<RuntimeVersion, RuntimeError>> + Send;

    /// The runtime's conditions (CRI `Status`).
    fn status(&self) -> impl Future<Output = Result<RuntimeStatus, RuntimeError>> + Send;

    /// Where the runtime keeps its images: the mount points of its image filesystems (CRI
    /// `ImageFsInfo`).
    fn image_filesystems(&self) -> impl Future<Output = Result<Vec<PathBuf>, RuntimeError>> + Send;

    /// Every image the runtime holds (CRI `ListImages`).
    fn list_images(&self) -> impl Future<Output = Result<Vec<RuntimeImage>, RuntimeError>> + Send;

    /// The ID of the image `name` names, if the runtime holds it (CRI `ImageStatus`).
    fn image_id(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send;

    /// Removes an image (CRI `RemoveImage`); one already gone is fine.
    fn remove_image(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The IDs of the images in use: those of every container the runtime has, podvisor's
    /// or not, running or not, and the runtime's own sandbox image where it tells it.
    fn images_in_use(
        &self,
    ) -> impl Future<Output = Result<std::collections::BTreeSet<String>, RuntimeError>> + Send;

    /// Lists every sandbox and container podvisor created (those with its label).
    fn observe(&self) -> impl Future<Output = Result<Observed, RuntimeError>> + Send;

    /// Creates and starts a sandbox for `pod` with metadata attempt `attempt`; its host side
    /// is `host` (prepared by the host layer).
    fn run_sandbox(
        &self,
        pod: &StaticPod,
        attempt: u32,
        host: Ready,
    ) -> impl Future<Output = Result<SandboxId, RuntimeError>> + Send;

    /// Makes `image` present per the pull `policy` (`Always`, `IfNotPresent`, `Never`), as a
    /// container start would, without starting anything: podvisor pulls a new version's
    /// images this way while the old version keeps running. `pulling` is called once before
    /// a pull starts.
    fn ensure_image(
        &self,
        image: &str,
        policy: &str,
        pulling: Option<&(dyn Fn() + Send + Sync)>,
    ) -> impl Future<Output = Result<ImageSource, RuntimeError>> + Send;

    /// Ensures the image per the pull policy, then creates and starts container `start.name`
    /// of `start.pod` in `start.sandbox`.
    fn start_container(
        &self,
        start: &ContainerStart<'_>,
    ) -> impl Future<Output = Result<Started, RuntimeError>> + Send;

    /// Starts a container that was created but never started.
    fn start_created(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Has the runtime reopen a running container's log file, so that after the file was
    /// renamed (rotated) the container writes on into a fresh one (CRI `ReopenContainerLog`).
    fn reopen_container_log(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops a container: SIGTERM (or the image's stop signal), SIGKILL after `grace`.
    fn stop_container(
        &self,
        id: &ContainerId,
        grace: Duration,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes a stopped container (its log files stay: the log manager deletes them).
    fn remove_container(
        &self,
        id: &ContainerId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Stops a sandbox (and anything still running in it) and tears down its network.
    fn stop_sandbox(&self, id: &SandboxId)
    -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Removes a stopped sandbox with its containers.
    fn remove_sandbox(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// The IP of a sandbox with its own network namespace (`None` for host-network ones).
    fn sandbox_ip(
        &self,
        id: &SandboxId,
    ) -> impl Future<Output = Result<Option<String>, RuntimeError>> + Send;

    /// Runs `cmd` in a running container and waits for it, at most `timeout` (CRI ExecSync).
    fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput, RuntimeError>> + Send;

    /// A stream that yields whenever a container exits, from the best source the runtime
    /// offers. `Ok(None)`: the runtime has no event source (relisting alone notices exits).
    fn exits(
        &self,
    ) -> impl Future<Output = Result<Option<(EventSource, ExitStream)>, RuntimeError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_map_to_the_kubelets_waiting_reasons_issue_17() {
        let call = |method| RuntimeError::Call {
            method,
            code: tonic::Code::Unknown,
            message: "exec: \"nope\": executable file not found in $PATH".into(),
        };
        assert_eq!(
            call("StartContainer").waiting_reason(),
            WaitingReason::RunContainerError
        );
        assert_eq!(
            call("CreateContainer").waiting_reason(),
            WaitingReason::CreateContainerError
        );
        let pull = RuntimeError::ImagePull {
            image: "x:1".into(),
            message: "no registry".into(),
        };
        assert_eq!(pull.waiting_reason(), WaitingReason::ErrImagePull);
        assert_eq!(pull.failed_pull(), Some("x:1"));
    }
}

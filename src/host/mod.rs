//! The host side of running pods: what podvisor does on the node's own filesystem, beside
//! what it asks of the container runtime. Pod directories, volumes and their mounts, the
//! files the kubelet manages for a pod (`/etc/hosts`, termination messages), log
//! directories, the pod's cgroup at removal; and the node facts those depend on.
//!
//! * `node`: [`NodeContext`], the node's paths, DNS, addresses and capacity; `addresses`:
//!   its InternalIPs, picked as the kubelet picks them.
//! * `podfiles`: `/etc/hosts`, termination-message files, log directories.
//! * `volumes`: hostPath checks, emptyDir and downwardAPI volumes, subPaths, unmounting.
//! * `prepare`: a pod's or a container's host side made ready, before the runtime is asked.
//! * `cleanup`: a pod version's host side removed once no sandbox uses it.
//! * `log_links`: `/var/log/containers/<pod>_<ns>_<container>-<id>.log`, for log shippers.
//! * [`Host`]: what the executor asks of the host, as planned actions; [`RealHost`] does it
//!   on blocking threads, `FakeHost` in memory for tests.

pub mod addresses;
mod cleanup;
#[cfg(any(test, feature = "test-util"))]
pub(crate) mod fake;
pub mod log_links;
mod mounts;
mod node;
pub mod podfiles;
pub mod prepare;
mod real;
pub mod volumes;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::pod::environment::Addresses;
use crate::pod::{PodKey, PodUid, StaticPod};

#[cfg(test)]
pub(crate) use fake::{FakeHost, HostCall};
pub use node::{NodeContext, ResolvConf};
pub use podfiles::TerminationSource;
pub use prepare::Ready;
pub use real::RealHost;

/// What the executor asks of the node's host side. Every method is idempotent.
pub trait Host: Send + Sync + 'static {
    /// Makes a pod's directories, log directory and volumes ready, before its sandbox runs.
    fn prepare_pod(
        &self,
        pod: Arc<StaticPod>,
    ) -> impl Future<Output = Result<Ready, HostError>> + Send;

    /// Checks, changing nothing, what `pod` needs of the host that cannot be made: its
    /// hostPath volumes of a type that must exist. Run before a running version is stopped
    /// for `pod`.
    fn check_pod(&self, pod: Arc<StaticPod>) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Makes the files container `name` mounts ready (volumes, `/etc/hosts`, its
    /// termination-message file, subPaths) and its log directory, before it is created.
    fn prepare_container(
        &self,
        pod: Arc<StaticPod>,
        name: String,
        attempt: u32,
        addrs: Addresses,
    ) -> impl Future<Output = Result<Ready, HostError>> + Send;

    /// The termination message of a container that exited with `exit_code`, read from where
    /// `source` says (empty when there is none).
    fn termination_message(
        &self,
        source: TerminationSource,
        exit_code: i32,
    ) -> impl Future<Output = String> + Send;

    /// Links a started container's log file where log shippers look (best effort: a link
    /// that cannot be made is logged, the container runs on).
    fn link_container_log(
        &self,
        pod: Arc<StaticPod>,
        name: String,
        attempt: u32,
        id: String,
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Removes a removed container's log link.
    fn unlink_container_log(&self, id: String) -> impl Future<Output = ()> + Send;

    /// Removes what a pod version left on the host once no sandbox uses it: its log
    /// directory (and the links into it), its pod directory (mounts below it first) and its
    /// cgroup.
    fn cleanup_pod(
        &self,
        key: PodKey,
        uid: PodUid,
    ) -> impl Future<Output = Result<(), HostError>> + Send;
}

/// A host-side step that failed, naming the path.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{what} {}: {message}", path.display())]
pub struct HostError {
    /// What was being done.
    pub what: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The OS error, or what was wrong.
    pub message: String,
}

impl HostError {
    /// A failed step on `path`.
    pub fn new(what: &'static str, path: &Path, message: impl ToString) -> HostError {
        HostError {
            what,
            path: path.to_owned(),
            message: message.to_string(),
        }
    }
}

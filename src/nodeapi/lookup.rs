//! Finding what a request names: a static pod by namespace, API name and (optionally) UID,
//! and a container's instances in it, from the latest published status and observation.
//! Pure. The messages are the kubelet's.

use thiserror::Error;

use super::route::{ContainerRef, PodRef};
use crate::runtime::{ContainerState, Instances, Observed, ObservedContainer, ObservedSandbox};
use crate::status::{NodeStatus, PodReport};

/// Nothing by that name.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LookupError {
    /// No such pod (or not with that UID).
    #[error("pod {0:?} does not exist")]
    NoPod(String),
    /// The pod has no such container.
    #[error("container {container:?} not found in pod {pod:?}")]
    NoContainer {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// The container (or sandbox) is not running.
    #[error("container {container:?} in pod {pod:?} is not running")]
    NotRunning {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
    },
    /// The pod has no running sandbox.
    #[error("pod {0:?} has no running sandbox")]
    NoSandbox(String),
}

/// Finds a static pod.
pub fn pod<'a>(status: &'a NodeStatus, r: &PodRef) -> Result<&'a PodReport, LookupError> {
    status
        .pods
        .values()
        .find(|p| {
            p.pod.key.namespace == r.namespace
                && p.pod.key.name == r.pod
                && r.uid.as_deref().is_none_or(|u| u == p.pod.uid.as_str())
        })
        .ok_or_else(|| LookupError::NoPod(r.pod.clone()))
}

fn pod_ref(c: &ContainerRef) -> PodRef {
    PodRef {
        namespace: c.namespace.clone(),
        pod: c.pod.clone(),
        uid: c.uid.clone(),
    }
}

/// A container of a static pod and its instances.
pub struct Found<'a> {
    /// The pod.
    pub report: &'a PodReport,
    /// The container's instances.
    pub instances: Instances<'a>,
}

/// Finds a container by name (init or app) and its instances.
pub fn container<'a>(
    status: &'a NodeStatus,
    observed: &'a Observed,
    c: &ContainerRef,
) -> Result<Found<'a>, LookupError> {
    let report = pod(status, &pod_ref(c))?;
    let spec = &report.pod.spec;
    let declared = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|x| x.name == c.container);
    if !declared {
        return Err(LookupError::NoContainer {
            pod: c.pod.clone(),
            container: c.container.clone(),
        });
    }
    Ok(Found {
        report,
        instances: observed.instances(&report.pod, &c.container),
    })
}

/// The running instance of a container, for exec, attach and run.
pub fn running<'a>(
    status: &'a NodeStatus,
    observed: &'a Observed,
    c: &ContainerRef,
) -> Result<&'a ObservedContainer, LookupError> {
    container(status, observed, c)?
        .instances
        .current
        .filter(|x| x.state == ContainerState::Running)
        .ok_or_else(|| LookupError::NotRunning {
            pod: c.pod.clone(),
            container: c.container.clone(),
        })
}

/// The ready sandbox of a pod, for port-forward.
pub fn sandbox<'a>(
    status: &'a NodeStatus,
    observed: &'a Observed,
    r: &PodRef,
) -> Result<&'a ObservedSandbox, LookupError> {
    let report = pod(status, r)?;
    let (sandboxes, _) = observed.of_version(&report.pod);
    sandboxes
        .into_iter()
        .filter(|s| s.state == crate::runtime::SandboxState::Ready)
        .max_by_key(|s| s.attempt)
        .ok_or_else(|| LookupError::NoSandbox(r.pod.clone()))
}

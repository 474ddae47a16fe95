//! The decision of `podvisor diff`, pure: given the pods that run and the snapshot a proposal
//! would make, what the daemon would do to each pod. It asks the daemon's own planner:
//! the running pods become an `Observed` in which each runs at its version (sandbox up, app
//! containers and sidecars running, init containers done), the planner plans the proposed
//! snapshot against it, and its actions are read back as one outcome per pod.
//!
//! Reading actions rather than comparing hashes keeps the planner's exact rules: an edited
//! init container replaces the pod (init containers shape the sandbox version), a pod whose
//! file is unreadable since start-up is left alone, a container added or dropped is started
//! or stopped alone, and a container whose hash changed but which the planner would not run
//! again is reported as such rather than as a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::fields::{container_fields, pod_fields, sandbox_fields};
use crate::api::applied::RunningPod;
use crate::backoff::{Backoff, Policy};
use crate::clock::Timestamp;
use crate::manifest::{FileStatus, Snapshot};
use crate::pod::{ContainerHash, ContainerKind, PodKey, PodUid, SandboxHash, StaticPod};
use crate::reconcile::{Action, PlanInput, SandboxRef, StopReason, plan};
use crate::runtime::{
    ContainerId, ContainerState, Observed, ObservedContainer, ObservedSandbox, SandboxId,
    SandboxState,
};

/// What happens to one pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Nothing.
    Nothing,
    /// A new version in place, nothing restarted (only fields outside the containers that
    /// do not shape the sandbox changed, like `terminationGracePeriodSeconds`).
    Update,
    /// Some containers restarted, started or stopped in place; the sandbox stays.
    Restart,
    /// The whole pod is replaced: a new sandbox.
    Replace,
    /// A new pod.
    Create,
    /// The pod is stopped and removed.
    Remove,
}

/// What happens to one container of a pod that stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Stopped and started again with its new spec.
    Restart,
    /// New in the pod: started.
    Start,
    /// Gone from the pod: stopped and removed.
    Stop,
    /// Its spec changed but the planner does not run it again. No pod edit leads here with
    /// today's rules (an init container's edit replaces the pod); it keeps such a change
    /// from passing unseen if the rules change.
    Unchanged,
}

/// One container's change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerChange {
    /// Container name.
    pub name: String,
    /// What happens to it.
    pub step: Step,
    /// Its fields that changed (`image`, `env`, ...), when both versions are known.
    pub fields: Vec<String>,
}

/// One pod's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodDiff {
    /// `namespace/name`.
    pub pod: String,
    /// The manifest file behind it (the proposed one, else the running one's).
    pub file: Option<PathBuf>,
    /// What happens.
    pub outcome: Outcome,
    /// For `replace`: the sandbox-shaping fields that changed; for `update`: the pod fields
    /// that changed.
    pub fields: Vec<String>,
    /// For `restart` and `update`: the containers concerned.
    pub containers: Vec<ContainerChange>,
    /// Why nothing happens to a pod whose file is invalid, and similar remarks.
    pub note: Option<String>,
}

impl PodDiff {
    /// Whether anything changes.
    pub fn changes(&self) -> bool {
        self.outcome != Outcome::Nothing
    }
}

/// The pods `pods` (and `unmanaged`, pods running without a known spec) as the runtime
/// would show them running at their versions.
pub fn as_running(pods: &BTreeMap<PodKey, Arc<StaticPod>>, unmanaged: &[RunningPod]) -> Observed {
    let mut observed = Observed::default();
    for pod in pods.values() {
        let containers = pod
            .init_containers()
            .iter()
            .map(|c| (ContainerKind::Init, c))
            .chain(pod.containers().iter().map(|c| (ContainerKind::App, c)))
            .map(|(kind, c)| {
                let sidecar = c.restart_policy.as_deref() == Some("Always");
                (
                    c.name.clone(),
                    kind,
                    pod.container_hash(&c.name).cloned(),
                    kind == ContainerKind::Init && !sidecar,
                )
            });
        add(
            &mut observed,
            &pod.key,
            &pod.uid,
            &pod.sandbox,
            Some(pod.source.path.clone()),
            containers,
        );
    }
    for r in unmanaged {
        let key = PodKey {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
        };
        let containers = r.containers.iter().map(|c| {
            let kind = c.kind();
            let hash = c.hash.clone().map(ContainerHash);
            (c.name.clone(), kind, hash, kind == ContainerKind::Init)
        });
        add(
            &mut observed,
            &key,
            &PodUid(r.uid.clone()),
            &SandboxHash(r.sandbox_hash.clone()),
            r.manifest.clone(),
            containers,
        );
    }
    observed
}

/// Adds one ready sandbox with `containers` (name, kind, hash, done) to `observed`.
fn add(
    observed: &mut Observed,
    key: &PodKey,
    uid: &PodUid,
    version: &SandboxHash,
    manifest: Option<PathBuf>,
    containers: impl Iterator<Item = (String, ContainerKind, Option<ContainerHash>, bool)>,
) {
    let sandbox = SandboxId(format!("running/{key}"));
    observed.sandboxes.push(ObservedSandbox {
        id: sandbox.clone(),
        key: key.clone(),
        uid: uid.clone(),
        version: version.clone(),
        attempt: 0,
        state: SandboxState::Ready,
        created_at: None,
        manifest,
        ip: None,
        priority: None,
        shutdown_order: None,
        component: None,
    });
    for (name, kind, hash, done) in containers {
        observed.containers.push(ObservedContainer {
            id: ContainerId(format!("running/{key}/{name}")),
            sandbox: sandbox.clone(),
            key: key.clone(),
            uid: uid.clone(),
            name,
            attempt: 0,
            restarts: 0,
            kind,
            state: if done {
                ContainerState::Exited
            } else {
                ContainerState::Running
            },
            hash,
            grace_seconds: None,
            pre_stop: None,
            image: String::new(),
            image_ref: String::new(),
            created_at: None,
            started_at: None,
            finished_at: None,
            exit_code: done.then_some(0),
            reason: None,
            termination: None,
            message: String::new(),
        });
    }
}

/// What the daemon would do to every pod, going from `current` (running as `observed`, see
/// [`as_running`]) to `proposed`, at `now`. Pods in key order.
pub fn diff(
    current: &BTreeMap<PodKey, Arc<StaticPod>>,
    observed: &Observed,
    proposed: &Snapshot,
    now: Timestamp,
) -> Vec<PodDiff> {
    let backoff = Backoff::new(Policy::CRASH_LOOP);
    let none = BTreeSet::new();
    let planned = plan(&PlanInput {
        desired: proposed,
        observed,
        now,
        backoff: &backoff,
        busy: &none,
        retry_at: &BTreeMap::new(),
        unhealthy: &BTreeMap::new(),
        host_ip: None,
    });
    let work: BTreeMap<&PodKey, &[Action]> = planned
        .work
        .iter()
        .map(|w| (&w.key, w.actions.as_slice()))
        .collect();
    let running: BTreeSet<&PodKey> = observed.sandboxes.iter().map(|s| &s.key).collect();
    let keys: BTreeSet<&PodKey> = proposed
        .pods
        .keys()
        .chain(current.keys())
        .chain(running.iter().copied())
        .collect();
    keys.into_iter()
        .map(|key| {
            let actions = work.get(key).copied().unwrap_or(&[]);
            let old = current.get(key).map(Arc::as_ref);
            match proposed.pods.get(key) {
                None => gone(key, old, actions),
                Some(new) if !running.contains(key) => PodDiff {
                    pod: key.to_string(),
                    file: Some(new.source.path.clone()),
                    outcome: Outcome::Create,
                    fields: Vec::new(),
                    containers: Vec::new(),
                    note: None,
                },
                Some(new) => stays(new, old, observed, actions, proposed),
            }
        })
        .collect()
}

/// A running pod the proposal does not declare.
fn gone(key: &PodKey, old: Option<&StaticPod>, actions: &[Action]) -> PodDiff {
    let left = actions.is_empty();
    PodDiff {
        pod: key.to_string(),
        file: old.map(|p| p.source.path.clone()),
        outcome: if left {
            Outcome::Nothing
        } else {
            Outcome::Remove
        },
        fields: Vec::new(),
        containers: Vec::new(),
        note: left.then(|| {
            "its manifest has been invalid since the daemon started: it is left as it runs"
                .to_owned()
        }),
    }
}

/// A running pod the proposal declares: replaced, changed in place, or left.
fn stays(
    new: &Arc<StaticPod>,
    old: Option<&StaticPod>,
    observed: &Observed,
    actions: &[Action],
    proposed: &Snapshot,
) -> PodDiff {
    let mut out = PodDiff {
        pod: new.key.to_string(),
        file: Some(new.source.path.clone()),
        outcome: Outcome::Nothing,
        fields: Vec::new(),
        containers: Vec::new(),
        note: None,
    };
    let rejected = proposed
        .files
        .get(&new.source.path)
        .is_some_and(|f| f.status == FileStatus::Rejected);
    if rejected {
        out.note = Some("its file is invalid: the running version is kept".to_owned());
    }
    if actions
        .iter()
        .any(|a| matches!(a, Action::RunSandbox { .. }))
    {
        out.outcome = Outcome::Replace;
        out.fields = match old {
            Some(old) => sandbox_fields(old, new),
            None => vec!["sandbox version (the running spec is not known)".to_owned()],
        };
        return out;
    }
    let running_hash = |name: &str| {
        observed
            .containers
            .iter()
            .find(|c| c.key == new.key && c.name == name)
            .map(|c| c.hash.clone())
    };
    let fields_of = |name: &str| match (old.and_then(|o| o.container(name)), new.container(name)) {
        (Some((_, a)), Some((_, b))) => container_fields(a, b),
        _ => Vec::new(),
    };
    let mut touched = BTreeSet::new();
    for action in actions {
        let (name, step) = match action {
            Action::StartContainer {
                name,
                sandbox: SandboxRef::Existing(_),
                ..
            } => match running_hash(name) {
                None => (name, Step::Start),
                Some(_) => (name, Step::Restart),
            },
            Action::StopContainers {
                containers,
                reason: StopReason::ContainerRemoved,
            } => {
                for c in containers {
                    touched.insert(c.name.clone());
                    out.containers.push(ContainerChange {
                        name: c.name.clone(),
                        step: Step::Stop,
                        fields: Vec::new(),
                    });
                }
                continue;
            }
            _ => continue,
        };
        if touched.insert(name.clone()) {
            out.containers.push(ContainerChange {
                name: name.clone(),
                step,
                fields: fields_of(name),
            });
        }
    }
    if !out.containers.is_empty() {
        out.outcome = Outcome::Restart;
    }
    // Containers whose spec changed but which the planner does not run again.
    for (name, hash) in &new.container_hashes {
        let changed = running_hash(name).is_some_and(|h| h.as_ref() != Some(hash));
        if changed && !touched.contains(name) {
            out.containers.push(ContainerChange {
                name: name.clone(),
                step: Step::Unchanged,
                fields: fields_of(name),
            });
        }
    }
    let new_version = old.is_some_and(|o| o.hash != new.hash);
    if out.outcome == Outcome::Nothing && new_version {
        out.outcome = Outcome::Update;
    }
    if new_version {
        out.fields = old.map(|o| pod_fields(o, new)).unwrap_or_default();
    }
    out
}

#[cfg(test)]
#[path = "outcome_tests.rs"]
mod tests;

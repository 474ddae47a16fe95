//! `/applied` and `/images`: what the daemon runs, in enough detail for `podvisor diff` to
//! plan a proposed change against it with the daemon's own planner, and which images the
//! node holds. Pure views; the server fills them from the loops' snapshots and the runtime.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::manifest::Snapshot;
use crate::pod::{ContainerKind, PodKey, StaticPod};
use crate::runtime::{Observed, ObservedContainer, ObservedSandbox, RuntimeImage, SandboxState};

/// One pod the daemon runs, whole: the version it keeps running (for a pod whose file is now
/// invalid, its last good version) with the hashes the daemon computed.
pub use crate::pod::StaticPodRecord as AppliedPod;

/// One container of a [`RunningPod`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningContainer {
    /// Name.
    pub name: String,
    /// `init` or `app`.
    pub kind: String,
    /// The container version it was created from.
    pub hash: Option<String>,
}

/// A pod the runtime runs for which the daemon holds no spec: one whose manifest has been
/// unreadable since the daemon started (left as it is), or one being torn down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningPod {
    /// Namespace.
    pub namespace: String,
    /// Full name.
    pub name: String,
    /// Pod UID of its newest sandbox.
    pub uid: String,
    /// Sandbox version of its newest sandbox.
    pub sandbox_hash: String,
    /// The manifest its sandbox was created from.
    pub manifest: Option<PathBuf>,
    /// Whether that sandbox is up.
    pub ready: bool,
    /// The newest instance of each container in that sandbox.
    pub containers: Vec<RunningContainer>,
}

/// `/applied`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedView {
    /// The node name, as in pod names.
    pub node: String,
    /// The manifest directory.
    pub manifest_dir: PathBuf,
    /// The pods the daemon runs, in key order.
    pub pods: Vec<AppliedPod>,
    /// Manifests unreadable since the daemon started: their pods are left as they run.
    pub untouchable: Vec<PathBuf>,
    /// Pods the runtime runs that none of `pods` is.
    pub unmanaged: Vec<RunningPod>,
}

impl AppliedView {
    /// What the daemon runs, from its manifest `snapshot` and its last runtime `observed`.
    pub fn of(
        snapshot: &Snapshot,
        observed: &Observed,
        node: &str,
        manifest_dir: &Path,
    ) -> AppliedView {
        let mut by_key: BTreeMap<&PodKey, Vec<&ObservedSandbox>> = BTreeMap::new();
        for s in &observed.sandboxes {
            if !snapshot.pods.contains_key(&s.key) {
                by_key.entry(&s.key).or_default().push(s);
            }
        }
        let unmanaged = by_key
            .into_values()
            .filter_map(|sandboxes| {
                let newest = sandboxes
                    .into_iter()
                    .max_by_key(|s| (s.state == SandboxState::Ready, s.attempt, s.created_at))?;
                Some(running_pod(newest, &observed.containers))
            })
            .collect();
        AppliedView {
            node: node.to_owned(),
            manifest_dir: manifest_dir.to_owned(),
            pods: snapshot.pods.values().map(|p| AppliedPod::of(p)).collect(),
            untouchable: snapshot.untouchable.iter().cloned().collect(),
            unmanaged,
        }
    }

    /// The daemon's pods as static pods, by key.
    pub fn into_pods(self) -> BTreeMap<PodKey, Arc<StaticPod>> {
        self.pods
            .into_iter()
            .map(|p| {
                let pod = p.into_pod();
                (pod.key.clone(), Arc::new(pod))
            })
            .collect()
    }
}

fn running_pod(sandbox: &ObservedSandbox, containers: &[ObservedContainer]) -> RunningPod {
    let mut newest: BTreeMap<&str, &ObservedContainer> = BTreeMap::new();
    for c in containers.iter().filter(|c| c.sandbox == sandbox.id) {
        if newest
            .get(c.name.as_str())
            .is_none_or(|n| (c.attempt, c.created_at) > (n.attempt, n.created_at))
        {
            newest.insert(&c.name, c);
        }
    }
    RunningPod {
        namespace: sandbox.key.namespace.clone(),
        name: sandbox.key.name.clone(),
        uid: sandbox.uid.0.clone(),
        sandbox_hash: sandbox.version.0.clone(),
        manifest: sandbox.manifest.clone(),
        ready: sandbox.state == SandboxState::Ready,
        containers: newest
            .into_values()
            .map(|c| RunningContainer {
                name: c.name.clone(),
                kind: c.kind.as_str().to_owned(),
                hash: c.hash.as_ref().map(|h| h.0.clone()),
            })
            .collect(),
    }
}

impl RunningContainer {
    /// Init or app.
    pub fn kind(&self) -> ContainerKind {
        if self.kind == ContainerKind::Init.as_str() {
            ContainerKind::Init
        } else {
            ContainerKind::App
        }
    }
}

/// One image the node holds (`/images`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageView {
    /// Its ID.
    pub id: String,
    /// Its names.
    pub tags: Vec<String>,
    /// Its digests.
    pub digests: Vec<String>,
    /// Bytes on disk.
    pub size: u64,
}

impl ImageView {
    /// The view of `image`.
    pub fn of(image: &RuntimeImage) -> ImageView {
        ImageView {
            id: image.id.clone(),
            tags: image.tags.clone(),
            digests: image.digests.clone(),
            size: image.size,
        }
    }

    /// The image again (never pinned: the view does not say).
    pub fn into_image(self) -> RuntimeImage {
        RuntimeImage {
            id: self.id,
            tags: self.tags,
            digests: self.digests,
            size: self.size,
            pinned: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::testing;
    use crate::pod::{PodUid, SandboxHash};

    #[test]
    fn an_applied_pod_comes_back_as_the_same_static_pod() {
        let pod = testing::static_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, uid: u-1}\nspec: {initContainers: [{name: i, image: 'i:1'}], containers: [{name: c, image: 'i:1'}]}\n",
        );
        let json = serde_json::to_string(&AppliedPod::of(&pod)).expect("serialize");
        let back: AppliedPod = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back.into_pod(), pod);
    }

    #[test]
    fn pods_running_without_a_spec_are_listed_from_their_newest_sandbox() {
        let pod = testing::static_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: 'i:1'}]}\n",
        );
        let mut snapshot = Snapshot::default();
        snapshot.pods.insert(pod.key.clone(), Arc::new(pod.clone()));
        snapshot.untouchable.insert(PathBuf::from("/m/old.yaml"));
        let key = PodKey {
            namespace: "default".into(),
            name: "old-n1".into(),
        };
        let sandbox = |id: &str, attempt: u32, state: SandboxState| ObservedSandbox {
            id: crate::runtime::SandboxId(id.into()),
            key: key.clone(),
            uid: PodUid(format!("uid-{id}")),
            version: SandboxHash(format!("v-{id}")),
            attempt,
            state,
            created_at: None,
            manifest: Some(PathBuf::from("/m/old.yaml")),
            ip: None,
            priority: None,
            shutdown_order: None,
            component: None,
        };
        let observed = Observed {
            sandboxes: vec![
                sandbox("s0", 0, SandboxState::NotReady),
                sandbox("s1", 1, SandboxState::Ready),
            ],
            ..Default::default()
        };
        let view = AppliedView::of(&snapshot, &observed, "n1", Path::new("/m"));
        assert_eq!(view.pods, [AppliedPod::of(&pod)]);
        assert_eq!(view.untouchable, [PathBuf::from("/m/old.yaml")]);
        let names: Vec<(&str, &str, bool)> = view
            .unmanaged
            .iter()
            .map(|r| (r.name.as_str(), r.sandbox_hash.as_str(), r.ready))
            .collect();
        assert_eq!(names, [("old-n1", "v-s1", true)]);
    }
}

//! Which mirror pods to create and delete, from the static pods and the mirror pods the API
//! server lists on this node. Pure: no IO, no clock; retry timing is the caller's business.
//!
//! The rules are the kubelet's (`tryReconcileMirrorPods`, `HandlePodCleanups`):
//! * a static pod without a mirror pod gets one;
//! * a mirror pod of another version (`config.mirror` ≠ `config.hash`), one being deleted
//!   (`deletionTimestamp`), or one owned by another Node object is deleted (grace 0, UID
//!   precondition) and created again;
//! * a mirror pod with no static pod behind it is deleted, but only when the manifests are
//!   fully known ([`Orphans::Delete`]).
//!
//! Spec differences are ignored, as `IsMirrorPodOf` ignores them: the API server may default
//! and mutate the mirror, and edits made there never change what runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::pod::ObservedMirror;
use crate::pod::{PodKey, StaticPod};

/// What to do about mirror pods without a static pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Orphans {
    /// Delete them: the manifests are fully known.
    Delete,
    /// Keep them: the manifests are not read yet, or a rejected file's pods are unknown.
    Keep,
}

/// Why a mirror pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteReason {
    /// It mirrors another version of the static pod.
    Outdated,
    /// Someone deleted it; it waits for its node to confirm.
    Terminating,
    /// Its owner reference names another Node object (the Node was recreated).
    WrongOwner,
    /// No static pod has its name.
    Orphan,
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeleteReason::Outdated => "mirrors another version of the static pod",
            DeleteReason::Terminating => "being deleted",
            DeleteReason::WrongOwner => "owned by a previous Node object",
            DeleteReason::Orphan => "no static pod of that name",
        })
    }
}

/// One step towards the desired mirror pods. Deletes come before creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MirrorAction {
    /// Delete this mirror pod, with grace 0 and its UID as precondition.
    Delete {
        /// Namespace and name.
        key: PodKey,
        /// The UID precondition.
        uid: String,
        /// Why.
        reason: DeleteReason,
    },
    /// Create the mirror pod of this static pod.
    Create {
        /// Namespace and name.
        key: PodKey,
    },
}

/// Plans the mirror pods: `desired` static pods, `observed` mirror pods of this node,
/// `node_uid` the Node object's UID.
pub fn plan(
    desired: &BTreeMap<PodKey, Arc<StaticPod>>,
    observed: &BTreeMap<PodKey, ObservedMirror>,
    node_uid: &str,
    orphans: Orphans,
) -> Vec<MirrorAction> {
    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    for (key, mirror) in observed {
        let reason = match desired.get(key) {
            None if orphans == Orphans::Keep => continue,
            None => Some(DeleteReason::Orphan),
            Some(_) if mirror.deleting => Some(DeleteReason::Terminating),
            Some(pod) if !mirror.is_mirror_of(pod) => Some(DeleteReason::Outdated),
            Some(_) if mirror.owner_uid.as_deref() != Some(node_uid) => {
                Some(DeleteReason::WrongOwner)
            }
            Some(_) => None,
        };
        if let Some(reason) = reason {
            deletes.push(MirrorAction::Delete {
                key: key.clone(),
                uid: mirror.uid.clone(),
                reason,
            });
            if desired.contains_key(key) {
                creates.push(MirrorAction::Create { key: key.clone() });
            }
        }
    }
    for key in desired.keys().filter(|k| !observed.contains_key(*k)) {
        creates.push(MirrorAction::Create { key: key.clone() });
    }
    creates.sort_by(|a, b| action_key(a).cmp(action_key(b)));
    deletes.extend(creates);
    deletes
}

fn action_key(action: &MirrorAction) -> &PodKey {
    match action {
        MirrorAction::Delete { key, .. } | MirrorAction::Create { key } => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::testing::static_pod;

    const NODE_UID: &str = "node-uid";

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "kube-system".into(),
            name: format!("{name}-n1"),
        }
    }

    fn desired(pods: &[(&str, &str)]) -> BTreeMap<PodKey, Arc<StaticPod>> {
        pods.iter()
            .map(|(name, image)| (key(name), Arc::new(static_pod(name, image))))
            .collect()
    }

    /// A mirror of `name` at the version built from `image`, owned by this node.
    fn mirror(name: &str, image: &str, uid: &str) -> ObservedMirror {
        ObservedMirror {
            key: key(name),
            uid: uid.into(),
            mirror_hash: static_pod(name, image).hash.0,
            owner_uid: Some(NODE_UID.into()),
            deleting: false,
            status: None,
            version: None,
        }
    }

    fn observed(mirrors: Vec<ObservedMirror>) -> BTreeMap<PodKey, ObservedMirror> {
        mirrors.into_iter().map(|m| (m.key.clone(), m)).collect()
    }

    fn create(name: &str) -> MirrorAction {
        MirrorAction::Create { key: key(name) }
    }

    fn delete(name: &str, uid: &str, reason: DeleteReason) -> MirrorAction {
        MirrorAction::Delete {
            key: key(name),
            uid: uid.into(),
            reason,
        }
    }

    #[test]
    fn plans_follow_the_kubelets_mirror_pod_rules() {
        let terminating = ObservedMirror {
            deleting: true,
            ..mirror("etcd", "etcd:1", "u1")
        };
        let foreign_owner = ObservedMirror {
            owner_uid: Some("old-node".into()),
            ..mirror("etcd", "etcd:1", "u1")
        };
        // (case, static pods as (name, image), listed mirror pods, orphan policy, plan)
        type Case = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            Vec<ObservedMirror>,
            Orphans,
            Vec<MirrorAction>,
        );
        let cases: Vec<Case> = vec![
            ("nothing anywhere", vec![], vec![], Orphans::Delete, vec![]),
            (
                "static pod without mirror is created",
                vec![("etcd", "etcd:1")],
                vec![],
                Orphans::Delete,
                vec![create("etcd")],
            ),
            (
                "mirror of the current version is kept",
                vec![("etcd", "etcd:1")],
                vec![mirror("etcd", "etcd:1", "u1")],
                Orphans::Delete,
                vec![],
            ),
            (
                "hash changed: delete then recreate",
                vec![("etcd", "etcd:2")],
                vec![mirror("etcd", "etcd:1", "u1")],
                Orphans::Delete,
                vec![delete("etcd", "u1", DeleteReason::Outdated), create("etcd")],
            ),
            (
                "someone deleted it: delete with grace 0 then recreate",
                vec![("etcd", "etcd:1")],
                vec![terminating],
                Orphans::Delete,
                vec![
                    delete("etcd", "u1", DeleteReason::Terminating),
                    create("etcd"),
                ],
            ),
            (
                "the Node was recreated: recreate with the new owner",
                vec![("etcd", "etcd:1")],
                vec![foreign_owner],
                Orphans::Delete,
                vec![
                    delete("etcd", "u1", DeleteReason::WrongOwner),
                    create("etcd"),
                ],
            ),
            (
                "file removed: mirror deleted",
                vec![],
                vec![mirror("etcd", "etcd:1", "u1")],
                Orphans::Delete,
                vec![delete("etcd", "u1", DeleteReason::Orphan)],
            ),
            (
                "manifests not fully known: orphans kept, creates still happen",
                vec![("apiserver", "kube-apiserver:1")],
                vec![mirror("etcd", "etcd:1", "u1")],
                Orphans::Keep,
                vec![create("apiserver")],
            ),
            (
                "deletes come before creates",
                vec![("apiserver", "kube-apiserver:1"), ("etcd", "etcd:2")],
                vec![mirror("etcd", "etcd:1", "u1"), mirror("old", "old:1", "u2")],
                Orphans::Delete,
                vec![
                    delete("etcd", "u1", DeleteReason::Outdated),
                    delete("old", "u2", DeleteReason::Orphan),
                    create("apiserver"),
                    create("etcd"),
                ],
            ),
        ];
        for (case, want, seen, orphans, expected) in cases {
            let got = plan(&desired(&want), &observed(seen), NODE_UID, orphans);
            assert_eq!(got, expected, "{case}");
        }
    }

    #[test]
    fn applying_a_plan_and_planning_again_yields_nothing() {
        let want = desired(&[("apiserver", "kube-apiserver:1"), ("etcd", "etcd:2")]);
        let mut seen = observed(vec![
            mirror("etcd", "etcd:1", "u1"),
            mirror("old", "old:1", "u2"),
        ]);
        for action in plan(&want, &seen, NODE_UID, Orphans::Delete) {
            match action {
                MirrorAction::Delete { key, .. } => {
                    seen.remove(&key);
                }
                MirrorAction::Create { key } => {
                    let pod = &want[&key];
                    let name = pod.base_name(&crate::pod::NodeName::new("n1")).to_owned();
                    let image = pod.spec.containers[0].image.clone().unwrap_or_default();
                    seen.insert(key.clone(), mirror(&name, &image, "new"));
                }
            }
        }
        assert_eq!(plan(&want, &seen, NODE_UID, Orphans::Delete), vec![]);
    }
}

//! The mirror Pod object: built from a static pod as the kubelet's `CreateMirrorPod` does,
//! and read back from what the API server lists. Pure.

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::labels;
use crate::pod::{NodeName, PodKey, StaticPod};

/// The Node that mirror pods belong to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// Its name.
    pub name: NodeName,
    /// Its UID, which NodeRestriction checks owner references against.
    pub uid: String,
}

/// A mirror pod of this node as the API server lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedMirror {
    /// Namespace and name.
    pub key: PodKey,
    /// The server's UID.
    pub uid: String,
    /// `kubernetes.io/config.mirror`: the hash of the static pod it mirrors.
    pub mirror_hash: String,
    /// The UID of its controller owner, when it is a Node.
    pub owner_uid: Option<String>,
    /// It has a `deletionTimestamp`.
    pub deleting: bool,
    /// Its status as the API server holds it.
    pub status: Option<PodStatus>,
    /// The `resourceVersion` this view is of.
    pub version: Option<String>,
}

impl ObservedMirror {
    /// Whether this view is older than `other` of the same pod: a watch event that arrives
    /// after the answer to our own write describes an earlier state. Versions are compared
    /// as the numbers etcd makes them; an unreadable one counts as newer.
    pub fn older_than(&self, other: &ObservedMirror) -> bool {
        match (&self.version, &other.version) {
            (Some(a), Some(b)) => match (a.parse::<u64>(), b.parse::<u64>()) {
                (Ok(a), Ok(b)) => self.uid == other.uid && a < b,
                _ => false,
            },
            _ => false,
        }
    }
}

impl ObservedMirror {
    /// The kubelet's `IsMirrorPodOf`: same name, and the mirror hash is the pod's hash.
    pub fn is_mirror_of(&self, pod: &StaticPod) -> bool {
        self.key == pod.key && self.mirror_hash == pod.hash.0
    }
}

/// Reads a listed pod as a mirror pod; `None` when it is not one (no `config.mirror`
/// annotation) or lacks a name or UID.
pub fn observe(pod: &Pod) -> Option<ObservedMirror> {
    let meta = &pod.metadata;
    let mirror_hash = meta
        .annotations
        .as_ref()?
        .get(labels::CONFIG_MIRROR)?
        .clone();
    let owner_uid = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "Node" && o.controller == Some(true))
        .map(|o| o.uid.clone());
    Some(ObservedMirror {
        key: PodKey {
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".into()),
            name: meta.name.clone()?,
        },
        uid: meta.uid.clone()?,
        mirror_hash,
        owner_uid,
        deleting: meta.deletion_timestamp.is_some(),
        status: pod.status.clone(),
        version: meta.resource_version.clone(),
    })
}

/// The mirror pod of a static pod: its labels, annotations and spec verbatim, plus
/// `kubernetes.io/config.mirror`, `spec.nodeName` and the Node as controller owner.
///
/// Server-owned metadata (UID, resource version, timestamps) is left out, as is the status,
/// which the server resets anyway. Finalizers are dropped: nothing would ever remove them,
/// and a finalizer would keep an outdated mirror pod from being deleted.
pub fn build(pod: &StaticPod, node: &NodeRef) -> Pod {
    let source = &pod.metadata;
    let mut annotations = source.annotations.clone().unwrap_or_default();
    annotations.insert(labels::CONFIG_MIRROR.to_owned(), pod.hash.0.clone());
    let metadata = ObjectMeta {
        name: Some(pod.key.name.clone()),
        namespace: Some(pod.key.namespace.clone()),
        labels: source.labels.clone(),
        annotations: Some(annotations),
        owner_references: Some(vec![OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: node.name.as_str().to_owned(),
            uid: node.uid.clone(),
            controller: Some(true),
            block_owner_deletion: None,
        }]),
        ..ObjectMeta::default()
    };
    let mut spec = pod.spec.clone();
    spec.node_name = Some(node.name.as_str().to_owned());
    Pod {
        metadata,
        spec: Some(spec),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::mirror::testing::static_pod;

    fn node() -> NodeRef {
        NodeRef {
            name: NodeName::new("n1"),
            uid: "node-uid".into(),
        }
    }

    #[test]
    fn mirror_pod_keeps_labels_annotations_and_spec_and_adds_mirror_fields() {
        let pod = static_pod("etcd", "registry.k8s.io/etcd:3.5.9-0");
        let built = build(&pod, &node());
        let meta = &built.metadata;
        assert_eq!(meta.name.as_deref(), Some("etcd-n1"));
        assert_eq!(meta.namespace.as_deref(), Some("kube-system"));
        assert_eq!(meta.uid, None, "the server assigns the UID");
        assert_eq!(meta.labels, pod.metadata.labels);
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.get(labels::CONFIG_MIRROR),
            Some(&pod.hash.0),
            "config.mirror is the static pod's hash"
        );
        for (k, v) in pod.metadata.annotations.as_ref().unwrap() {
            assert_eq!(annotations.get(k), Some(v), "{k} is copied verbatim");
        }
        assert!(annotations.contains_key("kubeadm.kubernetes.io/etcd.advertise-client-urls"));
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "n1", "node-uid")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, None);
        assert_eq!(
            built.spec.as_ref().unwrap().node_name.as_deref(),
            Some("n1")
        );
        assert_eq!(built.spec.as_ref().unwrap().containers, pod.spec.containers);
        assert!(built.status.is_none());
    }

    #[test]
    fn listed_pods_without_the_mirror_annotation_are_not_mirrors() {
        let pod = static_pod("etcd", "etcd:1");
        let mut listed = build(&pod, &node());
        listed.metadata.uid = Some("u1".into());
        let seen = observe(&listed).unwrap();
        assert!(seen.is_mirror_of(&pod));
        assert_eq!(seen.owner_uid.as_deref(), Some("node-uid"));
        assert!(!seen.deleting);
        listed.metadata.deletion_timestamp = Some(Time(Default::default()));
        assert!(observe(&listed).unwrap().deleting);
        listed.metadata.annotations = Some(BTreeMap::new());
        assert_eq!(observe(&listed), None);
        let other = static_pod("etcd", "etcd:2");
        assert!(
            !seen.is_mirror_of(&other),
            "another version is not mirrored by it"
        );
    }
}

//! A [`StaticPod`] as data: serializable whole, and read back exactly, hashes included (they
//! are not recomputed: they are what its sandbox and containers are labelled with).

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use super::{ContainerHash, DocRef, ManifestRef, PodKey, PodUid, SandboxHash, SpecHash, StaticPod};
use crate::clock::Timestamp;

/// A static pod whole, as it ran, with the hashes the daemon computed: what the status API's
/// `/applied` serves and what the rollback state keeps on disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaticPodRecord {
    /// Namespace.
    pub namespace: String,
    /// Full name (`<name>-<node>`).
    pub name: String,
    /// Pod UID.
    pub uid: String,
    /// Sandbox version.
    pub sandbox_hash: String,
    /// Pod version (`kubernetes.io/config.hash`).
    pub hash: String,
    /// First seen, nanoseconds since the epoch.
    pub seen: i64,
    /// The manifest file.
    pub file: PathBuf,
    /// Its YAML document, 1-based.
    pub document: usize,
    /// Its item in a `List`, 0-based.
    pub item: Option<usize>,
    /// Per-container versions.
    pub container_hashes: BTreeMap<String, String>,
    /// Metadata as built (full name, UID, `kubernetes.io/config.*` annotations).
    pub metadata: ObjectMeta,
    /// The defaulted spec with `nodeName`.
    pub spec: PodSpec,
}

impl StaticPodRecord {
    /// The view of `pod`.
    pub fn of(pod: &StaticPod) -> StaticPodRecord {
        StaticPodRecord {
            namespace: pod.key.namespace.clone(),
            name: pod.key.name.clone(),
            uid: pod.uid.0.clone(),
            sandbox_hash: pod.sandbox.0.clone(),
            hash: pod.hash.0.clone(),
            seen: pod.seen.0,
            file: pod.source.path.clone(),
            document: pod.source.at.document,
            item: pod.source.at.item,
            container_hashes: pod
                .container_hashes
                .iter()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect(),
            metadata: pod.metadata.clone(),
            spec: pod.spec.clone(),
        }
    }

    /// The pod again, with the daemon's hashes (not recomputed: they are what its
    /// containers are labelled with).
    pub fn into_pod(self) -> StaticPod {
        StaticPod {
            key: PodKey {
                namespace: self.namespace,
                name: self.name,
            },
            uid: PodUid(self.uid),
            sandbox: SandboxHash(self.sandbox_hash),
            hash: SpecHash(self.hash),
            seen: Timestamp(self.seen),
            source: ManifestRef {
                path: self.file,
                at: DocRef {
                    document: self.document,
                    item: self.item,
                },
            },
            metadata: self.metadata,
            spec: self.spec,
            container_hashes: self
                .container_hashes
                .into_iter()
                .map(|(k, v)| (k, ContainerHash(v)))
                .collect(),
        }
    }
}

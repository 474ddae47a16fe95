//! The static pod: one validated, defaulted pod from one manifest document, with the
//! identities the rest of podvisor keys on.
//!
//! * [`PodKey`]: `namespace/name-<node>`; at most one pod per key runs.
//! * [`SpecHash`]: the pod version (`kubernetes.io/config.hash`); any change to the pod changes it.
//! * [`SandboxHash`]: the sandbox version; it changes only when something that shapes the
//!   sandbox changes, so container-only edits keep the sandbox.
//! * [`PodUid`]: `io.kubernetes.pod.uid`: the manifest's `metadata.uid` when it sets one (as
//!   the kubelet keeps it), else the sandbox version.
//! * [`ContainerHash`]: one container's version (`io.kubernetes.container.hash`).
//!
//! `cgroups` names a pod's cgroup for each cgroup driver. Pure data and hashing; no IO.

pub mod apparmor;
pub mod cgroups;
pub mod environment;
mod expand;
mod hash;
mod kinds;
pub mod priority;
mod qos;
mod record;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

pub use cgroups::CgroupDriver;
pub use expand::expand;
pub use hash::{canonical_json, container_hash, pod_hashes, sandbox_projection};
pub use kinds::{ProbeKind, TerminationReason, WaitingReason};
pub use qos::{QosClass, qos_class};
pub use record::StaticPodRecord;

use crate::clock::Timestamp;
use crate::labels;

/// Namespace and full name (with the node suffix) of a static pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    /// The pod's namespace (`default` when the manifest names none).
    pub namespace: String,
    /// The pod name with the node suffix: `<metadata.name>-<node>`.
    pub name: String,
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub String);

        impl $name {
            /// The hex string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

hex_id!(
    /// The pod version: 32 hex digits, written as `kubernetes.io/config.hash`.
    SpecHash
);
hex_id!(
    /// The sandbox version: 32 hex digits (`podvisor.dev/sandbox-hash`).
    SandboxHash
);
hex_id!(
    /// The pod UID (`io.kubernetes.pod.uid`): the manifest's `metadata.uid`, else the
    /// sandbox version. It names the pod's directories and cgroup.
    PodUid
);
hex_id!(
    /// One container's version: 16 hex digits, written as `io.kubernetes.container.hash`.
    ContainerHash
);

/// The kubelet's node name: lowercased, as it appears in pod names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Lowercases the name as the kubelet does.
    pub fn new(name: &str) -> NodeName {
        NodeName(name.trim().to_lowercase())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where in a file a pod was declared: its YAML document, and its item if that is a `List`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocRef {
    /// 1-based document number.
    pub document: usize,
    /// 0-based index in `items`, when the document is a `List`.
    pub item: Option<usize>,
}

impl fmt::Display for DocRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.item {
            Some(i) => write!(f, "document {}, items[{i}]", self.document),
            None => write!(f, "document {}", self.document),
        }
    }
}

/// Which manifest document a pod came from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestRef {
    /// The manifest file, as found in the manifest directory.
    pub path: PathBuf,
    /// The document within the file.
    pub at: DocRef,
}

impl fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.at)
    }
}

/// Whether a container runs before the app containers or is one of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ContainerKind {
    /// `spec.initContainers`.
    Init,
    /// `spec.containers`.
    App,
}

impl ContainerKind {
    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerKind::Init => "init",
            ContainerKind::App => "app",
        }
    }
}

/// A validated, defaulted static pod, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct StaticPod {
    /// Namespace and full name.
    pub key: PodKey,
    /// The pod UID.
    pub uid: PodUid,
    /// Sandbox version.
    pub sandbox: SandboxHash,
    /// Pod version.
    pub hash: SpecHash,
    /// When podvisor first saw this pod UID (`kubernetes.io/config.seen`).
    pub seen: Timestamp,
    /// Where it came from.
    pub source: ManifestRef,
    /// Metadata as the runtime and a mirror pod see it: full name, namespace, UID, and the
    /// manifest's labels and annotations plus the `kubernetes.io/config.*` annotations.
    pub metadata: ObjectMeta,
    /// The defaulted spec with `nodeName` set.
    pub spec: PodSpec,
    /// Per-container versions, init and app containers alike (names are unique across both).
    pub container_hashes: BTreeMap<String, ContainerHash>,
}

/// The CRI log file of one instance of a container of the pod version `key`/`uid`:
/// `<pod-log-dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`.
pub fn log_file(
    pod_log_dir: &std::path::Path,
    key: &PodKey,
    uid: &PodUid,
    container: &str,
    attempt: u32,
) -> std::path::PathBuf {
    log_dir(pod_log_dir, &key.namespace, &key.name, uid.as_str())
        .join(container)
        .join(format!("{attempt}.log"))
}

/// The log directory of a pod version: `<pod-log-dir>/<namespace>_<name>_<uid>`.
pub fn log_dir(
    pod_log_dir: &std::path::Path,
    namespace: &str,
    name: &str,
    uid: &str,
) -> std::path::PathBuf {
    pod_log_dir.join(format!("{namespace}_{name}_{uid}"))
}

impl StaticPod {
    /// The CRI log file of one instance of a container, as the runtime writes it:
    /// `<pod-log-dir>/<namespace>_<name>_<uid>/<container>/<attempt>.log`.
    pub fn log_file(
        &self,
        pod_log_dir: &std::path::Path,
        container: &str,
        attempt: u32,
    ) -> std::path::PathBuf {
        log_file(pod_log_dir, &self.key, &self.uid, container, attempt)
    }

    /// Builds the static pod from validated, defaulted metadata and spec, as the kubelet's
    /// `applyDefaults` does: hash first, then the node suffix, `nodeName` and annotations.
    /// `seen` gives the first-seen time for the pod UID (the kubelet records it per UID, so a
    /// container-only edit, which keeps the UID, keeps it too).
    pub fn build(
        metadata: ObjectMeta,
        spec: PodSpec,
        node: &NodeName,
        source: ManifestRef,
        seen: impl FnOnce(&PodUid) -> Timestamp,
    ) -> StaticPod {
        let (hash, sandbox) = pod_hashes(&metadata, &spec, node, &source.path);
        let uid = match metadata.uid.as_deref().filter(|u| !u.is_empty()) {
            Some(given) => PodUid(given.to_owned()),
            None => PodUid(sandbox.0.clone()),
        };
        let seen = seen(&uid);
        let base_name = metadata.name.clone().unwrap_or_default();
        let namespace = metadata
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "default".to_owned());
        let key = PodKey {
            namespace: namespace.clone(),
            name: format!("{base_name}-{node}"),
        };
        let mut metadata = metadata;
        metadata.name = Some(key.name.clone());
        metadata.namespace = Some(namespace);
        metadata.uid = Some(uid.0.clone());
        let annotations = metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(labels::CONFIG_HASH.to_owned(), hash.0.clone());
        annotations.insert(labels::CONFIG_SOURCE.to_owned(), "file".to_owned());
        annotations.insert(labels::CONFIG_SEEN.to_owned(), seen.rfc3339_nanos());
        let mut spec = spec;
        spec.node_name = Some(node.as_str().to_owned());
        let container_hashes = spec
            .init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| (c.name.clone(), container_hash(c)))
            .collect();
        StaticPod {
            key,
            uid,
            sandbox,
            hash,
            seen,
            source,
            metadata,
            spec,
            container_hashes,
        }
    }

    /// The app containers, in manifest order.
    pub fn containers(&self) -> &[Container] {
        &self.spec.containers
    }

    /// The init containers, in manifest order.
    pub fn init_containers(&self) -> &[Container] {
        self.spec.init_containers.as_deref().unwrap_or(&[])
    }

    /// Finds a container (init or app) by name.
    pub fn container(&self, name: &str) -> Option<(ContainerKind, &Container)> {
        self.init_containers()
            .iter()
            .find(|c| c.name == name)
            .map(|c| (ContainerKind::Init, c))
            .or_else(|| {
                self.containers()
                    .iter()
                    .find(|c| c.name == name)
                    .map(|c| (ContainerKind::App, c))
            })
    }

    /// The hash of a container of this pod.
    pub fn container_hash(&self, name: &str) -> Option<&ContainerHash> {
        self.container_hashes.get(name)
    }

    /// `spec.restartPolicy` (defaulted to `Always`).
    pub fn restart_policy(&self) -> RestartPolicy {
        match self.spec.restart_policy.as_deref() {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// `spec.terminationGracePeriodSeconds` (defaulted to 30).
    pub fn grace_period_seconds(&self) -> i64 {
        self.spec.termination_grace_period_seconds.unwrap_or(30)
    }

    /// The QoS class.
    pub fn qos(&self) -> QosClass {
        qos_class(&self.spec)
    }

    /// `spec.hostNetwork`.
    pub fn host_network(&self) -> bool {
        self.spec.host_network.unwrap_or(false)
    }

    /// The sandbox hostname: none for hostNetwork pods (runc refuses one without a UTS
    /// namespace), else `spec.hostname` or the pod name cut to 63 characters.
    pub fn hostname(&self) -> String {
        if self.host_network() {
            return String::new();
        }
        let name = self
            .spec
            .hostname
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| self.key.name.clone());
        let mut h: String = name.chars().take(63).collect();
        while h.ends_with(['-', '.']) {
            h.pop();
        }
        h
    }

    /// The sandbox hostname with `setHostnameAsFQDN`: `<hostname>.<subdomain>.<namespace>
    /// .svc.cluster.local` when the pod names a subdomain, as the kubelet's
    /// `GetNodenameForKernel` builds it (uncut; the kernel takes at most 64 characters).
    /// `None` when the pod does not ask for it or cannot have it.
    pub fn fqdn_hostname(&self) -> Option<String> {
        if !self.spec.set_hostname_as_fqdn.unwrap_or(false) || self.host_network() {
            return None;
        }
        let sub = self.spec.subdomain.as_deref().filter(|s| !s.is_empty())?;
        Some(format!(
            "{}.{sub}.{}.svc.cluster.local",
            self.hostname(),
            self.key.namespace
        ))
    }

    /// The manifest's `metadata.name`, without the node suffix.
    pub fn base_name<'a>(&'a self, node: &NodeName) -> &'a str {
        self.key
            .name
            .strip_suffix(node.as_str())
            .and_then(|n| n.strip_suffix('-'))
            .unwrap_or(&self.key.name)
    }
}

/// `spec.restartPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Restart whatever way a container ends.
    Always,
    /// Restart only after a non-zero exit.
    OnFailure,
    /// Never restart.
    Never,
}

impl RestartPolicy {
    /// Whether a container that exited with `exit_code` should run again.
    pub fn restarts_after(self, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

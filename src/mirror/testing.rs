//! Fixtures for the mirror's tests: a kubeadm-style static pod and a node's host facts. Its
//! unit tests use them here; `tests/mirror/` reaches them through [`crate::testing`].

use std::path::Path;

use super::{KUBELET_VERSION, NodeInfo};
use crate::clock::Timestamp;
use crate::manifest::{Format, parse_manifest};
use crate::pod::{ManifestRef, NodeName, StaticPod};

/// A static pod `name` in `kube-system` on node `n1`, with one container running `image`
/// and kubeadm-style labels and annotations.
pub fn static_pod(name: &str, image: &str) -> StaticPod {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: kube-system\n  labels:\n    component: {name}\n    tier: control-plane\n  annotations:\n    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.1:2379\nspec:\n  hostNetwork: true\n  containers:\n  - name: {name}\n    image: {image}\n"
    );
    let path = Path::new("/etc/kubernetes/manifests/pod.yaml");
    let parsed = parse_manifest(path, Format::Yaml, yaml.as_bytes())
        .expect("valid manifest")
        .remove(0);
    StaticPod::build(
        parsed.metadata,
        parsed.spec,
        &NodeName::new("n1"),
        ManifestRef {
            path: path.to_owned(),
            at: parsed.at,
        },
        |_| Timestamp(1_700_000_000_000_000_000),
    )
}

/// Host facts of a made-up node `n1`.
pub fn node_info() -> NodeInfo {
    NodeInfo {
        hostname: "n1".into(),
        internal_ips: vec!["10.0.0.1".into()],
        cpus: 4,
        memory_bytes: 8 * 1024 * 1024 * 1024,
        max_pods: 110,
        os: "linux".into(),
        arch: "amd64".into(),
        kernel_version: "6.1.0".into(),
        os_image: "Debian GNU/Linux 12 (bookworm)".into(),
        machine_id: "m".into(),
        system_uuid: "s".into(),
        boot_id: "b".into(),
        kubelet_version: KUBELET_VERSION.into(),
        kubelet_port: Some(10250),
    }
}

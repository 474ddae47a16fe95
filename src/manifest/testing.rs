//! Test helper: a static pod straight from YAML, as the resolver would build it.

use std::path::Path;

use super::{Format, parse_manifest};
use crate::clock::Timestamp;
use crate::pod::{ManifestRef, NodeName, StaticPod};

/// The first pod of `yaml`, as if read from `path` on `node`, first seen at time 0.
pub fn static_pod_at(path: &str, node: &str, yaml: &str) -> StaticPod {
    let path = Path::new(path);
    let p = parse_manifest(path, Format::Yaml, yaml.as_bytes())
        .expect("a valid test manifest")
        .remove(0);
    StaticPod::build(
        p.metadata,
        p.spec,
        &NodeName::new(node),
        ManifestRef {
            path: path.to_owned(),
            at: p.at,
        },
        |_| Timestamp(0),
    )
}

/// [`static_pod_at`] `/m/p.yaml` on node `n1`.
pub fn static_pod(yaml: &str) -> StaticPod {
    static_pod_at("/m/p.yaml", "n1", yaml)
}

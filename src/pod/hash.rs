//! Hashes that identify pod and container versions.
//!
//! They live in the labels and annotations of running containers, so they must not change
//! between podvisor versions for the same input: SHA-256 over a canonical JSON form (object
//! keys sorted, no whitespace), never a std hasher. The golden tests below pin them; changing
//! one of those expected values restarts every pod on every upgraded node.

use std::path::Path;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{ContainerHash, NodeName, SandboxHash, SpecHash};

/// Pod-spec fields that decide nothing about the sandbox: changing them never recreates it.
/// `containers` is replaced by the parts of the containers that do shape it (ports, privilege).
const NOT_SANDBOX_FIELDS: &[&str] = &[
    "containers",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "tolerations",
    "nodeSelector",
    "affinity",
    "schedulerName",
];

/// Writes `v` as compact JSON with object keys in byte order, whatever the map type.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// Where canonical JSON goes: a string, or straight into a hash (so that a large pod is not
/// copied once more just to be hashed).
trait Sink {
    fn push(&mut self, c: char);
    fn push_str(&mut self, s: &str);
}

impl Sink for String {
    fn push(&mut self, c: char) {
        String::push(self, c);
    }
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
}

impl Sink for Sha256 {
    fn push(&mut self, c: char) {
        self.update(c.encode_utf8(&mut [0; 4]).as_bytes());
    }
    fn push_str(&mut self, s: &str) {
        self.update(s.as_bytes());
    }
}

fn write_canonical(v: &Value, out: &mut impl Sink) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(&Value::String(k.clone()), out);
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => {
            // Escaped as serde_json escapes, a chunk at a time.
            let quoted = serde_json::to_string(s).unwrap_or_default();
            out.push_str(&quoted);
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    // k8s-openapi types serialize into JSON infallibly (string keys, no non-finite floats).
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn digest(domain: &str, body: &Value, node: &NodeName, path: &Path) -> String {
    let mut h = Sha256::new();
    h.update(domain.as_bytes());
    write_canonical(body, &mut h);
    h.update(b"\nhost:");
    h.update(node.as_str().as_bytes());
    h.update(b"\nfile:");
    h.update(path.as_os_str().as_encoded_bytes());
    hex(&h.finalize()[..16])
}

/// A pod as hashed: `apiVersion`, `kind`, `metadata` and `spec`.
fn pod_value(metadata: &ObjectMeta, spec: &PodSpec) -> Value {
    let mut pod = Map::new();
    pod.insert("apiVersion".into(), Value::from("v1"));
    pod.insert("kind".into(), Value::from("Pod"));
    pod.insert("metadata".into(), to_value(metadata));
    pod.insert("spec".into(), to_value(spec));
    Value::Object(pod)
}

/// The part of a pod that shapes its sandbox, as the sandbox version hashes it: the whole
/// pod without `NOT_SANDBOX_FIELDS`, its containers reduced to `{ports, privileged}` (all
/// ports of all containers, and whether any is privileged). For a pod with
/// `activeDeadlineSeconds`, the whole pod.
///
/// `podvisor diff` compares two of these to name the fields that replace a pod.
pub fn sandbox_projection(metadata: &ObjectMeta, spec: &PodSpec) -> Value {
    let mut sandbox = pod_value(metadata, spec);
    // A pod with `activeDeadlineSeconds` keeps the kubelet's rule that any edit is a new pod:
    // its deadline counts from its sandbox, so an edit that kept the sandbox would inherit
    // a deadline already spent (and a pod killed for it could never run again).
    let whole = spec.active_deadline_seconds.is_some();
    if let Some(Value::Object(spec_map)) = sandbox.get_mut("spec").filter(|_| !whole) {
        for field in NOT_SANDBOX_FIELDS {
            spec_map.remove(*field);
        }
        let ports: Vec<Value> = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .map(to_value)
            .collect();
        let privileged = spec.containers.iter().any(|c| {
            c.security_context
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false)
        });
        let mut shape = Map::new();
        shape.insert("ports".into(), Value::Array(ports));
        shape.insert("privileged".into(), Value::Bool(privileged));
        spec_map.insert("containers".into(), Value::Object(shape));
    }
    sandbox
}

/// The pod version hash and the sandbox version of a defaulted pod, before the node suffix is added
/// to its name (as the kubelet hashes), from `node` and the manifest `path`.
///
/// * hash: everything in the pod.
/// * sandbox version: [`sandbox_projection`].
pub fn pod_hashes(
    metadata: &ObjectMeta,
    spec: &PodSpec,
    node: &NodeName,
    path: &Path,
) -> (SpecHash, SandboxHash) {
    let hash = SpecHash(digest("pod\n", &pod_value(metadata, spec), node, path));
    let sandbox = sandbox_projection(metadata, spec);
    let version = SandboxHash(digest("sandbox\n", &sandbox, node, path));
    (hash, version)
}

/// A container's version: 64 bits of SHA-256 over its canonical JSON, in hex.
pub fn container_hash(c: &Container) -> ContainerHash {
    let mut h = Sha256::new();
    write_canonical(&to_value(c), &mut h);
    ContainerHash(hex(&h.finalize()[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, EnvVar};

    fn sample() -> (ObjectMeta, PodSpec) {
        let meta = ObjectMeta {
            name: Some("web".into()),
            namespace: Some("default".into()),
            labels: Some([("app".to_owned(), "web".to_owned())].into()),
            ..Default::default()
        };
        let spec = PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some("podvisor.local/busybox:1.35".into()),
                command: Some(vec!["httpd".into(), "-f".into()]),
                ..Default::default()
            }],
            restart_policy: Some("Always".into()),
            ..Default::default()
        };
        (meta, spec)
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value = serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#)
            .expect("valid json");
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    /// Golden values: these hashes are stored in the labels of running containers. If this test
    /// fails, the change restarts every pod on upgrade; do not update the values lightly.
    /// The pod hash reproduces outside Rust:
    /// `printf 'pod\n<CANONICAL>\nhost:node-1\nfile:/etc/kubernetes/manifests/web.yaml' | sha256sum | cut -c1-32`
    #[test]
    fn hashes_are_pinned_golden_values() {
        let (meta, spec) = sample();
        let pod =
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
        assert_eq!(
            canonical_json(&pod),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"app":"web"},"name":"web","namespace":"default"},"spec":{"containers":[{"command":["httpd","-f"],"image":"podvisor.local/busybox:1.35","name":"web"}],"restartPolicy":"Always"}}"#
        );
        let node = NodeName::new("Node-1");
        let (hash, uid) = pod_hashes(
            &meta,
            &spec,
            &node,
            Path::new("/etc/kubernetes/manifests/web.yaml"),
        );
        assert_eq!(hash.as_str(), "d8e88200a7c3fd5488a6435ab363152b");
        assert_eq!(uid.as_str(), "d4e09c96f068997065e5c07befda4e29");
        assert_eq!(
            container_hash(&spec.containers[0]).as_str(),
            "219ab59d6a6cc3e6"
        );
    }

    #[test]
    fn hash_depends_on_node_and_path() {
        let (meta, spec) = sample();
        let a = pod_hashes(&meta, &spec, &NodeName::new("a"), Path::new("/m/web.yaml"));
        let b = pod_hashes(&meta, &spec, &NodeName::new("b"), Path::new("/m/web.yaml"));
        let c = pod_hashes(&meta, &spec, &NodeName::new("a"), Path::new("/m/web2.yaml"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.0.as_str().len(), 32);
    }

    #[test]
    fn container_only_change_keeps_the_sandbox_uid_but_changes_the_hash() {
        let (meta, spec) = sample();
        let node = NodeName::new("n");
        let path = Path::new("/m/web.yaml");
        let before = pod_hashes(&meta, &spec, &node, path);
        let mut edited = spec.clone();
        edited.containers[0].env = Some(vec![EnvVar {
            name: "A".into(),
            value: Some("1".into()),
            ..Default::default()
        }]);
        edited.termination_grace_period_seconds = Some(5);
        let after = pod_hashes(&meta, &edited, &node, path);
        assert_ne!(before.0, after.0);
        assert_eq!(before.1, after.1);
        assert_ne!(
            container_hash(&spec.containers[0]),
            container_hash(&edited.containers[0])
        );
    }

    /// Issue 13.4: with a deadline, any edit is a new pod, as under the kubelet, and so
    /// starts a new deadline.
    #[test]
    fn with_an_active_deadline_any_edit_is_a_new_sandbox() {
        let (meta, mut spec) = sample();
        spec.active_deadline_seconds = Some(30);
        let node = NodeName::new("n");
        let path = Path::new("/m/web.yaml");
        let before = pod_hashes(&meta, &spec, &node, path).1;
        let mut edited = spec.clone();
        edited.containers[0].command = Some(vec!["true".into()]);
        assert_ne!(before, pod_hashes(&meta, &edited, &node, path).1);
        let mut longer = spec.clone();
        longer.active_deadline_seconds = Some(60);
        assert_ne!(before, pod_hashes(&meta, &longer, &node, path).1);
    }

    #[test]
    fn sandbox_shaping_changes_change_the_uid() {
        let (meta, spec) = sample();
        let node = NodeName::new("n");
        let path = Path::new("/m/web.yaml");
        let base = pod_hashes(&meta, &spec, &node, path).1;

        let mut host_net = spec.clone();
        host_net.host_network = Some(true);
        assert_ne!(base, pod_hashes(&meta, &host_net, &node, path).1);

        let mut ports = spec.clone();
        ports.containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }]);
        assert_ne!(base, pod_hashes(&meta, &ports, &node, path).1);

        let mut labels = meta.clone();
        labels.labels = Some([("app".to_owned(), "other".to_owned())].into());
        assert_ne!(base, pod_hashes(&labels, &spec, &node, path).1);
    }
}

//! Which fields differ between two versions of a pod, named as manifest field paths
//! (`spec.hostNetwork`, `metadata.labels.tier`): the sandbox-shaping ones that replace a
//! pod, the container fields that restart a container, the rest of the pod. Pure.
//!
//! The sandbox fields come from the very projection the sandbox version hashes
//! ([`sandbox_projection`]), so a field is named exactly when it is part of that hash.

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::labels;
use crate::pod::{StaticPod, sandbox_projection};

/// `a.b` for a plain key, `a["app.kubernetes.io/name"]` for one with a dot in it.
fn join(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    match (path.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{key:?}]"),
    }
}

/// The paths at which `a` and `b` differ: down into objects by key and into lists of equal
/// length by index; a list whose length changed is named whole.
pub fn changed_paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", a, b, &mut out);
    out
}

fn walk(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = Value::Null;
                walk(
                    &join(path, k),
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ => out.push(path.to_owned()),
    }
}

/// The metadata as hashed: without the annotations podvisor adds after hashing (the hash
/// itself and the first-seen time) and without a UID podvisor derived from the hash.
fn hashed_metadata(pod: &StaticPod) -> ObjectMeta {
    let mut meta = pod.metadata.clone();
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(labels::CONFIG_HASH);
        annotations.remove(labels::CONFIG_SEEN);
    }
    if pod.uid.as_str() == pod.sandbox.as_str() {
        meta.uid = None;
    }
    meta
}

/// The sandbox-shaping fields that differ between `old` and `new`. The projection folds
/// every container's ports and privilege into `spec.containers`; they are named as
/// `spec.containers[*].ports` and `spec.containers[*].securityContext.privileged`. When no
/// field differs (the pod moved to another file, whose path is hashed too), says so.
pub fn sandbox_fields(old: &StaticPod, new: &StaticPod) -> Vec<String> {
    let a = sandbox_projection(&hashed_metadata(old), &old.spec);
    let b = sandbox_projection(&hashed_metadata(new), &new.spec);
    let mut fields: Vec<String> = Vec::new();
    for path in changed_paths(&a, &b) {
        let named = if path.starts_with("spec.containers.ports") {
            "spec.containers[*].ports".to_owned()
        } else if path == "spec.containers.privileged" {
            "spec.containers[*].securityContext.privileged".to_owned()
        } else {
            path
        };
        if !fields.contains(&named) {
            fields.push(named);
        }
    }
    if fields.is_empty() && old.source.path != new.source.path {
        fields.push(format!(
            "manifest file ({} → {})",
            old.source.path.display(),
            new.source.path.display()
        ));
    }
    fields
}

/// The top-level fields of a container that differ (`image`, `command`, `env`, ...).
pub fn container_fields(old: &Container, new: &Container) -> Vec<String> {
    let a = serde_json::to_value(old).unwrap_or(Value::Null);
    let b = serde_json::to_value(new).unwrap_or(Value::Null);
    let mut fields: Vec<String> = changed_paths(&a, &b)
        .into_iter()
        .map(|p| {
            p.split(['.', '['])
                .next()
                .map(str::to_owned)
                .unwrap_or_default()
        })
        .collect();
    fields.dedup();
    fields
}

/// The fields of the pod outside its containers that differ (`spec.tolerations`,
/// `metadata.annotations.owner`, ...): what changes without restarting anything.
pub fn pod_fields(old: &StaticPod, new: &StaticPod) -> Vec<String> {
    let value = |pod: &StaticPod| {
        let mut spec = serde_json::to_value(&pod.spec).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut spec {
            map.remove("containers");
            map.remove("initContainers");
        }
        serde_json::json!({"metadata": hashed_metadata(pod), "spec": spec})
    };
    changed_paths(&value(old), &value(new))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::testing::{static_pod, static_pod_at};

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {tier: a}}\nspec:\n  containers: [{name: c, image: 'i:1'}]\n";

    #[test]
    fn paths_go_down_objects_and_equal_lists_and_quote_dotted_keys() {
        let a = serde_json::json!({"spec": {"hostNetwork": false, "volumes": [{"name": "a"}], "x": [1]},
            "metadata": {"labels": {"app.kubernetes.io/name": "a"}}});
        let b = serde_json::json!({"spec": {"hostNetwork": true, "volumes": [{"name": "b"}], "x": [1, 2]},
            "metadata": {"labels": {"app.kubernetes.io/name": "b"}}});
        assert_eq!(
            changed_paths(&a, &b),
            [
                "metadata.labels[\"app.kubernetes.io/name\"]",
                "spec.hostNetwork",
                "spec.volumes[0].name",
                "spec.x"
            ]
        );
    }

    #[test]
    fn the_sandbox_fields_are_those_of_the_hashed_projection() {
        let old = static_pod(WEB);
        let relabelled = static_pod(&WEB.replace("tier: a", "tier: b"));
        assert_eq!(sandbox_fields(&old, &relabelled), ["metadata.labels.tier"]);
        let ported = static_pod(&WEB.replace(
            "image: 'i:1'}",
            "image: 'i:1', ports: [{containerPort: 80, hostPort: 80}]}",
        ));
        assert_eq!(sandbox_fields(&old, &ported), ["spec.containers[*].ports"]);
        // A container-only edit shapes nothing: the same sandbox version, no field.
        let imaged = static_pod(&WEB.replace("i:1", "i:2"));
        assert_eq!(imaged.sandbox, old.sandbox);
        assert!(sandbox_fields(&old, &imaged).is_empty());
    }

    #[test]
    fn a_pod_moved_to_another_file_names_the_file() {
        let old = static_pod_at("/m/a.yaml", "n1", WEB);
        let new = static_pod_at("/m/b.yaml", "n1", WEB);
        assert_ne!(old.sandbox, new.sandbox);
        assert_eq!(
            sandbox_fields(&old, &new),
            ["manifest file (/m/a.yaml → /m/b.yaml)"]
        );
    }

    #[test]
    fn container_and_pod_fields_name_what_changed_briefly() {
        let old = static_pod(WEB);
        let new = static_pod(&WEB.replace(
            "image: 'i:1'}]",
            "image: 'i:2', env: [{name: A, value: '1'}]}]\n  terminationGracePeriodSeconds: 5",
        ));
        assert_eq!(
            container_fields(&old.spec.containers[0], &new.spec.containers[0]),
            ["env", "image"]
        );
        assert_eq!(
            pod_fields(&old, &new),
            ["spec.terminationGracePeriodSeconds"]
        );
    }
}

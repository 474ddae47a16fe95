//! The admission plugins the real server runs on what a kubelet writes, in the real order:
//! ServiceAccount (mirror pods only), NodeRestriction, Priority, DefaultTolerationSeconds.
//!
//! NodeRestriction needs to know which node is calling. The fake has no authentication, so
//! the caller is either a fixed node ([`NodeIdentity::Named`]) or, by default, the node each
//! pod names in `spec.nodeName` ([`NodeIdentity::PodsNode`]); in that mode node and lease
//! writes are not restricted.

use serde_json::{Value, json};

use super::meta::{items, text};
use super::resource::Resource;
use super::status::ApiError;

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Which node the NodeRestriction plugin takes a request to come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum NodeIdentity {
    /// The node named by the pod's `spec.nodeName`.
    PodsNode,
    /// Always this node.
    Named(String),
}

/// The operation being admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operation {
    Create,
    Update,
    Delete,
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some()
}

fn all_containers(pod: &Value) -> impl Iterator<Item = &Value> {
    [
        "/spec/containers",
        "/spec/initContainers",
        "/spec/ephemeralContainers",
    ]
    .into_iter()
    .flat_map(move |p| items(pod, p))
}

/// `podutil.VisitPodSecretNames` found at least one name.
fn references_secrets(pod: &Value) -> bool {
    let in_containers = all_containers(pod).any(|c| {
        items(c, "/envFrom")
            .iter()
            .any(|e| e.get("secretRef").is_some())
            || items(c, "/env")
                .iter()
                .any(|e| e.pointer("/valueFrom/secretKeyRef").is_some())
    });
    let in_volumes = items(pod, "/spec/volumes").iter().any(|v| {
        let Some(map) = v.as_object() else {
            return false;
        };
        map.contains_key("secret")
            || map.contains_key("azureFile")
            || map.values().any(|src| {
                src.get("secretRef").is_some() || src.get("nodePublishSecretRef").is_some()
            })
            || items(v, "/projected/sources")
                .iter()
                .any(|s| s.get("secret").is_some())
    });
    !items(pod, "/spec/imagePullSecrets").is_empty() || in_containers || in_volumes
}

/// `podutil.VisitPodConfigmapNames` found at least one name.
fn references_configmaps(pod: &Value) -> bool {
    all_containers(pod).any(|c| {
        items(c, "/envFrom")
            .iter()
            .any(|e| e.get("configMapRef").is_some())
            || items(c, "/env")
                .iter()
                .any(|e| e.pointer("/valueFrom/configMapKeyRef").is_some())
    }) || items(pod, "/spec/volumes").iter().any(|v| {
        v.get("configMap").is_some()
            || items(v, "/projected/sources")
                .iter()
                .any(|s| s.get("configMap").is_some())
    })
}

/// The ServiceAccount plugin's rule for mirror pods: no service account, no secrets.
fn service_account(pod: &Value, name: &str) -> Result<(), ApiError> {
    if !is_mirror(pod) {
        return Ok(());
    }
    let forbid = |why: &str| Err(ApiError::forbidden(Resource::Pods, name, why));
    if !text(pod, "/spec/serviceAccountName").is_empty() {
        return forbid("a mirror pod may not reference service accounts");
    }
    if references_secrets(pod) {
        return forbid("a mirror pod may not reference secrets");
    }
    let token_projection = items(pod, "/spec/volumes").iter().any(|v| {
        items(v, "/projected/sources")
            .iter()
            .any(|s| s.get("serviceAccountToken").is_some())
    });
    if token_projection {
        return forbid("a mirror pod may not use ServiceAccountToken volume projections");
    }
    Ok(())
}

/// NodeRestriction's `admitPodCreate`. `node_uid` looks up an existing Node's uid.
fn node_restriction_pod_create(
    pod: &Value,
    name: &str,
    node: &str,
    node_uid: impl Fn(&str) -> Option<String>,
) -> Result<(), ApiError> {
    let forbid = |why: String| Err(ApiError::forbidden(Resource::Pods, name, &why));
    if !is_mirror(pod) {
        return forbid(format!(
            "pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if text(pod, "/spec/nodeName") != node {
        return forbid(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = items(pod, "/metadata/ownerReferences");
    match owners {
        [] => {
            return forbid(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ));
        }
        [owner] => {
            if text(owner, "/apiVersion") != "v1"
                || text(owner, "/kind") != "Node"
                || text(owner, "/name") != node
            {
                return forbid(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ));
            }
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                return forbid(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ));
            }
            if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                return forbid(format!(
                    "node {node:?} must not set blockOwnerDeletion on an owner reference"
                ));
            }
            let Some(uid) = node_uid(node) else {
                return Err(ApiError::node_lister_not_found(node));
            };
            let owner_uid = text(owner, "/uid");
            if owner_uid != uid {
                return forbid(format!(
                    "node {node} UID mismatch: expected {owner_uid} got {uid}"
                ));
            }
        }
        _ => {
            return forbid(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ));
        }
    }
    if !text(pod, "/spec/serviceAccountName").is_empty() {
        return forbid(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    if references_secrets(pod) {
        return forbid(format!(
            "node {node:?} can not create pods that reference secrets"
        ));
    }
    if references_configmaps(pod) {
        return forbid(format!(
            "node {node:?} can not create pods that reference configmaps"
        ));
    }
    let volumes = items(pod, "/spec/volumes");
    let trust_bundle = volumes.iter().any(|v| {
        items(v, "/projected/sources")
            .iter()
            .any(|s| s.get("clusterTrustBundle").is_some())
    });
    if trust_bundle {
        return forbid(format!(
            "node {node:?} can not create pods that reference clustertrustbundles"
        ));
    }
    if volumes
        .iter()
        .any(|v| v.get("persistentVolumeClaim").is_some())
    {
        return forbid(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    Ok(())
}

/// The Priority plugin: resolves `priorityClassName` (only the two system classes exist).
fn priority(pod: &mut Value, name: &str) -> Result<(), ApiError> {
    let class = text(pod, "/spec/priorityClassName").to_owned();
    let value: i64 = match class.as_str() {
        "" => 0,
        "system-node-critical" => 2_000_001_000,
        "system-cluster-critical" => 2_000_000_000,
        other => {
            return Err(ApiError::forbidden(
                Resource::Pods,
                name,
                &format!("no PriorityClass with name {other} was found"),
            ));
        }
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64)
        && given != value
    {
        let why = format!(
            "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {value} from the given PriorityClass name"
        );
        return Err(ApiError::forbidden(Resource::Pods, name, &why));
    }
    spec.insert("priority".into(), json!(value));
    spec.entry("preemptionPolicy")
        .or_insert_with(|| json!("PreemptLowerPriority"));
    Ok(())
}

/// DefaultTolerationSeconds: tolerate not-ready and unreachable for 300s unless already tolerated.
fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let tolerated = list.iter().any(|t| {
            let key = text(t, "/key");
            let effect = text(t, "/effect");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        });
        if !tolerated {
            list.push(
                json!({"key": taint, "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}),
            );
        }
    }
}

/// Admits a pod create, mutating it as the real chain does. `restriction` is `None` when
/// NodeRestriction is off.
pub(super) fn pod_create(
    pod: &mut Value,
    restriction: Option<&NodeIdentity>,
    node_uid: impl Fn(&str) -> Option<String>,
) -> Result<(), ApiError> {
    let name = text(pod, "/metadata/name").to_owned();
    service_account(pod, &name)?;
    if let Some(identity) = restriction {
        let node = match identity {
            NodeIdentity::PodsNode => text(pod, "/spec/nodeName").to_owned(),
            NodeIdentity::Named(n) => n.clone(),
        };
        node_restriction_pod_create(pod, &name, &node, node_uid)?;
    }
    priority(pod, &name)?;
    default_toleration_seconds(pod);
    Ok(())
}

/// A write other than a pod creation, as NodeRestriction sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Write<'a> {
    pub(super) resource: Resource,
    pub(super) op: Operation,
    /// Through the `status` subresource.
    pub(super) status: bool,
    pub(super) namespace: &'a str,
    pub(super) name: &'a str,
    /// The stored object; absent for creates.
    pub(super) old: Option<&'a Value>,
    /// The object being written; absent for deletes.
    pub(super) new: Option<&'a Value>,
}

/// NodeRestriction for writes other than pod creation.
pub(super) fn node_write(w: Write<'_>, identity: &NodeIdentity) -> Result<(), ApiError> {
    let bound_node = w.old.map(|o| text(o, "/spec/nodeName")).unwrap_or_default();
    let caller = match identity {
        NodeIdentity::Named(n) => n.as_str(),
        NodeIdentity::PodsNode if w.resource == Resource::Pods => bound_node,
        // Without a fixed identity the fake cannot tell whose node or lease this is.
        NodeIdentity::PodsNode => return Ok(()),
    };
    let forbid = |why: String| Err(ApiError::forbidden(w.resource, w.name, &why));
    match (w.resource, w.op, w.status) {
        (Resource::Pods, Operation::Update, false) => forbid(format!(
            "unexpected operation \"UPDATE\", node {caller:?} can only create and delete mirror pods"
        )),
        (Resource::Pods, Operation::Update, true) if bound_node != caller => forbid(format!(
            "node {caller:?} can only update pod status for pods with spec.nodeName set to itself"
        )),
        (Resource::Pods, Operation::Update, true)
            if w.old.and_then(|o| o.pointer("/metadata/labels"))
                != w.new.and_then(|n| n.pointer("/metadata/labels")) =>
        {
            forbid(format!(
                "node {caller:?} cannot update labels through pod status"
            ))
        }
        (Resource::Pods, Operation::Delete, _) if bound_node != caller => forbid(format!(
            "node {caller:?} can only delete pods with spec.nodeName set to itself"
        )),
        (Resource::Nodes, _, _) if w.name != caller => forbid(format!(
            "node {caller:?} is not allowed to modify node {:?}",
            w.name
        )),
        (Resource::Nodes, Operation::Update, _)
            if w.old.and_then(|o| o.pointer("/spec/taints"))
                != w.new.and_then(|n| n.pointer("/spec/taints")) =>
        {
            forbid(format!("node {caller:?} is not allowed to modify taints"))
        }
        (Resource::Leases, _, _) if w.namespace != NODE_LEASE_NAMESPACE => forbid(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        )),
        (Resource::Leases, _, _) if w.name != caller => forbid(
            "can only access node lease with the same name as the requesting node".to_owned(),
        ),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror_pod() -> Value {
        json!({"metadata": {"name": "etcd-n1", "namespace": "kube-system",
                "annotations": {"kubernetes.io/config.mirror": "h"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "n1",
                                     "uid": "u1", "controller": true}]},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}})
    }

    fn admit(pod: &mut Value) -> Result<(), ApiError> {
        pod_create(pod, Some(&NodeIdentity::PodsNode), |n| {
            (n == "n1").then(|| "u1".to_owned())
        })
    }

    fn message(err: ApiError) -> String {
        serde_json::to_value(err.body()).unwrap()["message"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_well_formed_mirror_pod_is_admitted_and_gets_default_tolerations() {
        let mut pod = mirror_pod();
        admit(&mut pod).unwrap();
        assert_eq!(pod["spec"]["priority"], 0);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn the_controller_flag_is_required() {
        let mut pod = mirror_pod();
        pod["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert_eq!(
            message(admit(&mut pod).unwrap_err()),
            "pods \"etcd-n1\" is forbidden: node \"n1\" can only create pods with a controller owner reference set to itself"
        );
    }

    #[test]
    fn configmap_volumes_are_forbidden_but_secrets_are_caught_by_service_account_first() {
        let mut pod = mirror_pod();
        pod["spec"]["volumes"] = json!([{"name": "v", "configMap": {"name": "cm"}}]);
        assert!(
            message(admit(&mut pod).unwrap_err())
                .ends_with("can not create pods that reference configmaps")
        );
        let mut pod = mirror_pod();
        pod["spec"]["volumes"] = json!([{"name": "v", "secret": {"secretName": "s"}}]);
        assert!(
            message(admit(&mut pod).unwrap_err())
                .ends_with("a mirror pod may not reference secrets")
        );
    }

    #[test]
    fn unknown_priority_class_is_forbidden() {
        let mut pod = mirror_pod();
        pod["spec"]["priorityClassName"] = json!("gold");
        assert!(
            message(admit(&mut pod).unwrap_err())
                .ends_with("no PriorityClass with name gold was found")
        );
        let mut pod = mirror_pod();
        pod["spec"]["priorityClassName"] = json!("system-node-critical");
        admit(&mut pod).unwrap();
        assert_eq!(pod["spec"]["priority"], 2_000_001_000);
    }

    #[test]
    fn a_named_node_may_only_touch_its_own_lease_in_the_node_lease_namespace() {
        let me = NodeIdentity::Named("n1".into());
        let lease = |namespace: &str, name: &str| {
            let write = Write {
                resource: Resource::Leases,
                op: Operation::Update,
                status: false,
                namespace,
                name,
                old: None,
                new: None,
            };
            node_write(write, &me)
        };
        assert!(lease("kube-node-lease", "n1").is_ok());
        assert!(lease("kube-node-lease", "n2").is_err());
        assert!(lease("default", "n1").is_err());
    }
}

//! The Node object and its Lease, as the kubelet keeps them: registered (or adopted) with
//! the host's addresses, capacity and default labels; the conditions written when they
//! change and at least every report period; the Lease in `kube-node-lease` renewed on a
//! fixed schedule. Object builders are pure; the `async fn`s are one API call each (or two).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec,
    NodeStatus as K8sNodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::time::Instant;

use super::client::{MirrorError, call};
use super::host::NodeInfo;
use super::pod::NodeRef;
use crate::clock::Timestamp;
use crate::health::{self, ConditionState, NodeHealth};
use crate::pod::NodeName;
use crate::runtime::RuntimeVersion;
use crate::status::{NodeStatus, api_time};

/// The namespace of node leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The labels the kubelet puts on its Node and keeps there.
pub fn default_labels(node: &NodeName, info: &NodeInfo) -> BTreeMap<String, String> {
    [
        // the name the node registers under, as the kubelet labels it with --hostname-override
        // (kubeadm's --node-name), not the machine's own name
        ("kubernetes.io/hostname", node.as_str()),
        ("kubernetes.io/os", info.os.as_str()),
        ("kubernetes.io/arch", info.arch.as_str()),
        ("beta.kubernetes.io/os", info.os.as_str()),
        ("beta.kubernetes.io/arch", info.arch.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The parts of the Node status that change while podvisor runs: its conditions (Ready
/// from the runtime's own conditions, the three pressures from the node's figures) and the
/// runtime it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Readiness {
    /// The conditions, in the kubelet's order, Ready last.
    pub conditions: Vec<ConditionState>,
    /// `nodeInfo.containerRuntimeVersion`: `containerd://1.6.20`; empty until the runtime
    /// has said.
    pub runtime_version: String,
}

impl Readiness {
    /// From the reconciler's runtime error, what the runtime last said it is, and the node's
    /// health.
    pub fn new(
        runtime_error: Option<&str>,
        runtime: Option<&RuntimeVersion>,
        health: &NodeHealth,
    ) -> Readiness {
        Readiness {
            conditions: health::conditions(runtime_error, health),
            runtime_version: runtime
                .map(|v| format!("{}://{}", v.name, v.version))
                .unwrap_or_default(),
        }
    }

    /// From the node's published status.
    pub fn of(status: &NodeStatus) -> Readiness {
        Readiness::new(
            status.runtime_error.as_deref(),
            status.runtime.as_ref(),
            &status.health,
        )
    }
}

fn quantity(n: i64) -> Quantity {
    Quantity(n.to_string())
}

fn memory(bytes: i64) -> Quantity {
    if bytes % 1024 == 0 {
        Quantity(format!("{}Ki", bytes / 1024))
    } else {
        quantity(bytes)
    }
}

/// The node status to write: capacity, addresses, system info and the conditions, each
/// condition's `lastTransitionTime` from `since`.
pub fn node_status(
    info: &NodeInfo,
    readiness: &Readiness,
    heartbeat: Timestamp,
    since: &dyn Fn(&ConditionState) -> Timestamp,
) -> K8sNodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu".to_owned(), quantity(info.cpus)),
        ("memory".to_owned(), memory(info.memory_bytes)),
        ("pods".to_owned(), quantity(info.max_pods)),
    ]
    .into();
    let mut addresses: Vec<NodeAddress> = info
        .internal_ips
        .iter()
        .map(|ip| NodeAddress {
            type_: "InternalIP".to_owned(),
            address: ip.clone(),
        })
        .collect();
    if !info.hostname.is_empty() {
        addresses.push(NodeAddress {
            type_: "Hostname".to_owned(),
            address: info.hostname.clone(),
        });
    }
    let conditions = readiness
        .conditions
        .iter()
        .map(|c| NodeCondition {
            type_: c.kind.to_owned(),
            status: if c.status { "True" } else { "False" }.to_owned(),
            reason: Some(c.reason.to_owned()),
            message: Some(c.message.clone()),
            last_heartbeat_time: Some(api_time(heartbeat)),
            last_transition_time: Some(api_time(since(c))),
        })
        .collect();
    K8sNodeStatus {
        addresses: Some(addresses),
        allocatable: Some(resources.clone()),
        capacity: Some(resources),
        conditions: Some(conditions),
        daemon_endpoints: info.kubelet_port.map(|port| NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: info.arch.clone(),
            boot_id: info.boot_id.clone(),
            container_runtime_version: readiness.runtime_version.clone(),
            kernel_version: info.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: info.kubelet_version.clone(),
            machine_id: info.machine_id.clone(),
            operating_system: info.os.clone(),
            os_image: info.os_image.clone(),
            swap: None,
            system_uuid: info.system_uuid.clone(),
        }),
        ..K8sNodeStatus::default()
    }
}

/// The Node to register: default labels plus `extra_labels`, and its status.
pub fn new_node(
    name: &NodeName,
    info: &NodeInfo,
    extra_labels: &BTreeMap<String, String>,
    taints: &[Taint],
    status: K8sNodeStatus,
) -> Node {
    let mut labels = default_labels(name, info);
    labels.extend(extra_labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(name.as_str().to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec {
            taints: Some(
                std::iter::once(super::foreign::taint())
                    .chain(taints.iter().cloned())
                    .collect(),
            ),
            ..NodeSpec::default()
        }),
        status: Some(status),
    }
}

/// The default labels an existing Node lacks or has with another value.
pub fn missing_labels(node: &Node, wanted: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let have = node.metadata.labels.clone().unwrap_or_default();
    wanted
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Decides when the node status is written: after every (re)connection, when a condition
/// changed, and at least every report period. Tracks each condition's transition time.
#[derive(Debug, Default)]
pub struct Heartbeat {
    written: Option<(Readiness, Instant)>,
    transitions: BTreeMap<String, (bool, Timestamp)>,
}

impl Heartbeat {
    /// Whether to write now.
    pub fn due(&self, readiness: &Readiness, now: Instant, report: Duration) -> bool {
        match &self.written {
            None => true,
            Some((last, at)) => last != readiness || now >= *at + report,
        }
    }

    /// When the next periodic write falls due.
    pub fn next_due(&self, report: Duration) -> Option<Instant> {
        self.written.as_ref().map(|(_, at)| *at + report)
    }

    /// Records each condition's status at `now`: a condition whose status changed (or is
    /// new) transitions at `now`. Returns those transitions (condition, now holding), for
    /// the kubelet's Node events.
    pub fn observe(&mut self, readiness: &Readiness, now: Timestamp) -> Vec<(&'static str, bool)> {
        let mut flipped = Vec::new();
        for c in &readiness.conditions {
            match self.transitions.get(c.kind) {
                Some((was, _)) if *was == c.status => {}
                _ => {
                    self.transitions.insert(c.kind.to_owned(), (c.status, now));
                    flipped.push((c.kind, c.status));
                }
            }
        }
        flipped
    }

    /// A condition's `lastTransitionTime` (after [`Heartbeat::observe`]).
    pub fn since(&self, c: &ConditionState) -> Timestamp {
        self.transitions
            .get(c.kind)
            .map_or(Timestamp(0), |(_, at)| *at)
    }

    /// Records a successful write.
    pub fn written(&mut self, readiness: Readiness, at: Instant) {
        self.written = Some((readiness, at));
    }

    /// Takes the transition times the API server holds for conditions podvisor has none of
    /// its own for yet (after a restart) and whose status on the server is the one podvisor
    /// reports, so that restarting podvisor does not move `lastTransitionTime`.
    pub fn adopt(&mut self, server: &BTreeMap<String, (bool, Timestamp)>, readiness: &Readiness) {
        for c in &readiness.conditions {
            if !self.transitions.contains_key(c.kind)
                && let Some((was, since)) = server.get(c.kind)
                && *was == c.status
            {
                self.transitions.insert(c.kind.to_owned(), (*was, *since));
            }
        }
    }

    /// Forgets the last write (not the transition times), so that the next check writes.
    pub fn forget(&mut self) {
        self.written = None;
    }
}

/// The Node's conditions as the API server holds them: type → (true, lastTransitionTime).
pub fn server_conditions(node: &Node) -> BTreeMap<String, (bool, Timestamp)> {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let since = c.last_transition_time.as_ref()?;
            let since = Timestamp(i64::try_from(since.0.as_nanosecond()).unwrap_or(0));
            Some((c.type_.clone(), (c.status == "True", since)))
        })
        .collect()
}

/// Whether the Node's conditions on the server say something else than `readiness` (someone
/// else wrote them): then they are written again at once, not at the next report.
pub fn conditions_drifted(node: &Node, readiness: &Readiness) -> bool {
    let on_server = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    readiness.conditions.iter().any(|want| {
        let have = on_server
            .into_iter()
            .flatten()
            .find(|c| c.type_ == want.kind);
        match have {
            None => true,
            Some(c) => {
                c.status != if want.status { "True" } else { "False" }
                    || c.message.as_deref() != Some(want.message.as_str())
            }
        }
    })
}

/// Reads the Node; `None` when it does not exist.
pub async fn get(
    api: &Api<Node>,
    name: &str,
    timeout: Duration,
) -> Result<Option<Node>, MirrorError> {
    call(timeout, api.get_opt(name)).await
}

/// Creates the Node; if it appeared meanwhile, reads it.
pub async fn register(
    api: &Api<Node>,
    node: &Node,
    timeout: Duration,
) -> Result<Node, MirrorError> {
    match call(timeout, api.create(&PostParams::default(), node)).await {
        Err(e) if e.is_code(409) => {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            match get(api, name, timeout).await? {
                Some(n) => Ok(n),
                None => Err(e),
            }
        }
        other => other,
    }
}

/// Sets labels on an existing Node.
pub async fn label(
    api: &Api<Node>,
    name: &str,
    labels: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Node, MirrorError> {
    let patch = json!({"metadata": {"labels": labels}});
    call(
        timeout,
        api.patch(name, &PatchParams::default(), &Patch::Strategic(&patch)),
    )
    .await
}

/// Writes the node status (a strategic merge: conditions merge by type).
pub async fn write_status(
    api: &Api<Node>,
    name: &str,
    status: &K8sNodeStatus,
    timeout: Duration,
) -> Result<Node, MirrorError> {
    let patch = json!({ "status": status });
    call(
        timeout,
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch)),
    )
    .await
}

fn micro_time(t: Timestamp) -> MicroTime {
    MicroTime(api_time(t).0)
}

/// The node's Lease, owned by the Node so that it goes away with it.
pub fn new_lease(node: &NodeRef, duration: Duration, now: Timestamp) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.name.as_str().to_owned()),
            namespace: Some(LEASE_NAMESPACE.to_owned()),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".to_owned(),
                kind: "Node".to_owned(),
                name: node.name.as_str().to_owned(),
                uid: node.uid.clone(),
                ..OwnerReference::default()
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.name.as_str().to_owned()),
            lease_duration_seconds: Some(i32::try_from(duration.as_secs()).unwrap_or(i32::MAX)),
            renew_time: Some(micro_time(now)),
            ..LeaseSpec::default()
        }),
    }
}

/// Keeps the node Lease: read or create it once, then renew it with optimistic concurrency.
#[derive(Debug, Default)]
pub struct LeaseKeeper {
    lease: Option<Lease>,
}

impl LeaseKeeper {
    /// Renews the lease (creating it if needed). After a failure the next call reads it anew.
    pub async fn renew(
        &mut self,
        api: &Api<Lease>,
        node: &NodeRef,
        duration: Duration,
        now: Timestamp,
        timeout: Duration,
    ) -> Result<(), MirrorError> {
        let name = node.name.as_str();
        let current = match self.lease.take() {
            Some(lease) => lease,
            None => match call(timeout, api.get_opt(name)).await? {
                Some(lease) => lease,
                None => {
                    let lease = new_lease(node, duration, now);
                    let created = call(timeout, api.create(&PostParams::default(), &lease)).await?;
                    self.lease = Some(created);
                    return Ok(());
                }
            },
        };
        let fresh = new_lease(node, duration, now);
        let mut next = current;
        next.spec = Some(LeaseSpec {
            holder_identity: fresh.spec.as_ref().and_then(|s| s.holder_identity.clone()),
            lease_duration_seconds: fresh.spec.as_ref().and_then(|s| s.lease_duration_seconds),
            renew_time: Some(micro_time(now)),
            ..next.spec.unwrap_or_default()
        });
        if next
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(Vec::is_empty)
        {
            next.metadata.owner_references = fresh.metadata.owner_references;
        }
        let renewed = call(timeout, api.replace(name, &PostParams::default(), &next)).await?;
        self.lease = Some(renewed);
        Ok(())
    }

    /// Forgets the lease, so that the next renewal reads it first.
    pub fn forget(&mut self) {
        self.lease = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::testing::node_info;

    #[test]
    fn node_carries_default_and_extra_labels_capacity_and_addresses() {
        let info = node_info();
        let extra = BTreeMap::from([(
            "node-role.kubernetes.io/control-plane".to_owned(),
            String::new(),
        )]);
        let status = node_status(
            &info,
            &Readiness::new(None, None, &NodeHealth::ready()),
            Timestamp(2),
            &|_| Timestamp(1),
        );
        let node = new_node(&NodeName::new("n1"), &info, &extra, &[], status);
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert!(labels.contains_key("node-role.kubernetes.io/control-plane"));
        let status = node.status.as_ref().unwrap();
        let capacity = status.capacity.as_ref().unwrap();
        assert_eq!(capacity["cpu"].0, "4");
        assert_eq!(capacity["memory"].0, "8388608Ki");
        assert_eq!(capacity["pods"].0, "110");
        assert_eq!(status.allocatable, status.capacity);
        let addresses: Vec<_> = status
            .addresses
            .iter()
            .flatten()
            .map(|a| (a.type_.as_str(), a.address.as_str()))
            .collect();
        assert_eq!(addresses, [("InternalIP", "10.0.0.1"), ("Hostname", "n1")]);
        let conditions: Vec<_> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.as_str(), c.status.as_str()))
            .collect();
        assert_eq!(
            conditions,
            [
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True")
            ]
        );
        assert_eq!(
            node.spec.as_ref().unwrap().taints,
            Some(vec![crate::mirror::foreign::taint()]),
            "only the static-pods-only taint"
        );
    }

    #[test]
    fn a_registered_node_is_labelled_with_its_node_name_and_carries_its_taints_issue_13() {
        let mut info = node_info();
        info.hostname = "machine-7".into();
        let taint = Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: None,
            effect: "NoSchedule".into(),
            time_added: None,
        };
        let status = node_status(
            &info,
            &Readiness::new(None, None, &NodeHealth::ready()),
            Timestamp(2),
            &|_| Timestamp(1),
        );
        let node = new_node(
            &NodeName::new("edge-1"),
            &info,
            &BTreeMap::new(),
            std::slice::from_ref(&taint),
            status,
        );
        let labels = node.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["kubernetes.io/hostname"], "edge-1");
        assert_eq!(
            node.spec.and_then(|s| s.taints),
            Some(vec![crate::mirror::foreign::taint(), taint])
        );
    }

    #[test]
    fn a_down_runtime_makes_the_node_not_ready() {
        let not_ready = Readiness::new(Some("connection refused"), None, &NodeHealth::ready());
        assert!(!not_ready.conditions.last().expect("Ready").status);
        let status = node_status(&node_info(), &not_ready, Timestamp(2), &|_| Timestamp(1));
        let conditions = status.conditions.unwrap();
        let ready = conditions.last().expect("Ready last");
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("container runtime is down: connection refused")
        );
    }

    #[test]
    fn status_is_written_on_change_or_after_the_report_period() {
        let report = Duration::from_secs(300);
        let t0 = Instant::now();
        let ready = Readiness::new(None, None, &NodeHealth::ready());
        let mut hb = Heartbeat::default();
        assert!(hb.due(&ready, t0, report), "first write");
        hb.written(ready.clone(), t0);
        assert!(!hb.due(&ready, t0 + Duration::from_secs(10), report));
        assert!(hb.due(&ready, t0 + report, report), "periodic report");
        assert!(
            hb.due(
                &Readiness::new(Some("down"), None, &NodeHealth::ready()),
                t0,
                report
            ),
            "change"
        );
        hb.forget();
        assert!(hb.due(&ready, t0, report), "after a reconnection");
    }

    #[test]
    fn each_conditions_transition_time_moves_only_when_it_flips() {
        let mut hb = Heartbeat::default();
        let ready = Readiness::new(None, None, &NodeHealth::ready());
        let disk = Readiness::new(
            None,
            None,
            &NodeHealth {
                pressure: [health::Pressure::Disk].into(),
                ..NodeHealth::ready()
            },
        );
        let since = |hb: &Heartbeat, r: &Readiness, kind: &str| {
            hb.since(r.conditions.iter().find(|c| c.kind == kind).expect(kind))
        };
        hb.observe(&ready, Timestamp(1));
        hb.observe(&ready, Timestamp(5));
        assert_eq!(since(&hb, &ready, "Ready"), Timestamp(1));
        hb.observe(&disk, Timestamp(7));
        assert_eq!(since(&hb, &disk, "DiskPressure"), Timestamp(7));
        assert_eq!(
            since(&hb, &disk, "Ready"),
            Timestamp(1),
            "Ready did not flip"
        );
        assert_eq!(since(&hb, &disk, "MemoryPressure"), Timestamp(1));
    }

    #[test]
    fn a_restart_keeps_the_servers_transition_times_for_unchanged_conditions() {
        let mut node = Node::default();
        let ready = Readiness::new(None, None, &NodeHealth::ready());
        node.status = Some(node_status(&node_info(), &ready, Timestamp(9), &|c| {
            Timestamp(if c.kind == "Ready" {
                3_000_000_000
            } else {
                1_000_000_000
            })
        }));
        let server = server_conditions(&node);
        let mut hb = Heartbeat::default();
        let disk = Readiness::new(
            None,
            None,
            &NodeHealth {
                pressure: [health::Pressure::Disk].into(),
                ..NodeHealth::ready()
            },
        );
        hb.adopt(&server, &disk);
        hb.observe(&disk, Timestamp(10_000_000_000));
        let since =
            |kind: &str| hb.since(disk.conditions.iter().find(|c| c.kind == kind).expect(kind));
        assert_eq!(since("Ready"), Timestamp(3_000_000_000));
        assert_eq!(since("MemoryPressure"), Timestamp(1_000_000_000));
        assert_eq!(
            since("DiskPressure"),
            Timestamp(10_000_000_000),
            "it flipped"
        );
        assert!(conditions_drifted(&node, &disk));
        assert!(!conditions_drifted(&node, &ready));
    }

    #[test]
    fn missing_labels_lists_only_what_differs() {
        let info = node_info();
        let wanted = default_labels(&NodeName::new("n1"), &info);
        let mut node = Node::default();
        node.metadata.labels = Some(BTreeMap::from([
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ("kubernetes.io/arch".to_owned(), "arm64".to_owned()),
        ]));
        let missing = missing_labels(&node, &wanted);
        assert_eq!(
            missing.get("kubernetes.io/arch").map(String::as_str),
            Some("amd64")
        );
        assert!(!missing.contains_key("kubernetes.io/os"));
        assert!(missing.contains_key("kubernetes.io/hostname"));
    }
}

//! Mirror pods: podvisor's static pods, their status and events made visible in a Kubernetes
//! API server, with the Node object and Lease they need, as the kubelet does. Optional
//! (`--kubeconfig`); without it podvisor runs standalone and this task does not exist.
//!
//! The API server may not exist yet, may be one of podvisor's own pods, and may go away and
//! come back. So this is a task of its own, fed with snapshots: it only reads watch channels
//! and drains the event channel, every request has a timeout, and it reconnects with capped,
//! jittered backoff. Its trouble never delays a pod operation, and nothing flows back: edits
//! made in the API server never change what runs.
//!
//! * `client`: kubeconfig → client, re-read on every reconnection; error classes.
//! * `host`: [`NodeInfo`], the host facts the Node reports.
//! * `node`: the Node (registered or adopted, Ready kept current) and its Lease.
//! * `pod` and `plan` (pure): the mirror Pod object; which mirror pods to create or delete.
//! * `status`: status patches, only on change, onto the mirror pod's current UID.
//! * `retry`: when a rejected mirror pod may be posted again.
//! * `events`: pod events, bounded buffer, repeats folded into counts.
//! * `foreign` (pure): pods bound here that are not mirror pods, failed at once; the taint
//!   that keeps the scheduler away.
//! * `state`: [`MirrorState`], for logs and the status API.
//! * `worker`: the loop that drives them.

mod client;
mod correlator;
mod events;
pub mod foreign;
mod host;
mod metering;
mod node;
mod plan;
mod pod;
mod retry;
mod state;
mod status;
mod worker;

#[cfg(any(test, feature = "test-util"))]
pub(crate) mod testing;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use client::{MirrorError, call, connect, connect_as};
pub use host::{DEFAULT_MAX_PODS, KUBELET_VERSION, NodeInfo};
// Public so that a stand-in API server in tests names and reads requests exactly as the
// request metrics do.
pub use metering::{verb, watch_truthy};
pub use state::{MirrorCounters, MirrorPhase, MirrorState, PodMirror};

use crate::backoff::Policy;
use crate::clock::Clock;
use crate::event::PodEvent;
use crate::manifest::Snapshot;
use crate::pod::NodeName;
use crate::status::NodeStatus;

/// Default number of events held while they cannot be posted.
pub const DEFAULT_EVENT_BUFFER: usize = 1000;

/// How often things happen. The defaults are the kubelet's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorTimings {
    /// Limit on every API request (connect, write, answer).
    pub request_timeout: Duration,
    /// Reconnecting or looking for the Node again ([`Policy::API_SERVER`]).
    pub retry: Policy,
    /// The Lease's `leaseDurationSeconds` (kubelet: 40s).
    pub lease_duration: Duration,
    /// How often the Lease is renewed (kubelet: 10s).
    pub lease_renew: Duration,
    /// How often the Node is read back, to notice that it was deleted or recreated
    /// (kubelet: node status update frequency, 10s).
    pub node_status_update: Duration,
    /// Longest time between node status writes when nothing changes (kubelet: 5m). Changes
    /// (the Ready condition) are written at once.
    pub node_status_report: Duration,
    /// How often the mirror pods (as the watch keeps them) are reconciled even without a
    /// change: a pass with no API request unless something is to be done.
    pub resync: Duration,
    /// How long the API server keeps one pod watch open (`timeoutSeconds`, kube's 290 s);
    /// it is then resumed from the last version seen.
    pub watch_timeout: Duration,
    /// Least time between two status patches of one pod.
    pub status_min_interval: Duration,
    /// Retrying a mirror pod the API server rejected ([`Policy::API_REJECTED`]).
    pub reject: Policy,
}

impl Default for MirrorTimings {
    fn default() -> MirrorTimings {
        MirrorTimings {
            request_timeout: Duration::from_secs(10),
            retry: Policy::API_SERVER,
            lease_duration: Duration::from_secs(40),
            lease_renew: Duration::from_secs(10),
            node_status_update: Duration::from_secs(10),
            node_status_report: Duration::from_secs(300),
            resync: Duration::from_secs(10),
            watch_timeout: Duration::from_secs(290),
            status_min_interval: Duration::from_secs(1),
            reject: Policy::API_REJECTED,
        }
    }
}

/// What the mirror task needs.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// The kubeconfig (kubeadm: `/etc/kubernetes/kubelet.conf`); it may not exist yet.
    pub kubeconfig: PathBuf,
    /// This node's name.
    pub node_name: NodeName,
    /// Create the Node if missing (`--register-node`, default true); otherwise wait for it.
    /// Either way, once it exists, its status and Lease are kept current, as the kubelet does.
    pub register_node: bool,
    /// Labels for a Node podvisor registers (`--node-labels`), besides the default ones.
    /// Like the kubelet, an existing Node only gets the default labels back, not these.
    pub node_labels: BTreeMap<String, String>,
    /// Taints for a Node podvisor registers (`--register-with-taints`); like the kubelet,
    /// only at registration: an existing Node's taints are the cluster's.
    pub register_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// Host facts for the Node.
    pub node_info: NodeInfo,
    /// Schedules and limits.
    pub timings: MirrorTimings,
    /// Most events held while they cannot be posted; the oldest go first.
    pub event_buffer: usize,
    /// Where timestamps (lease renewals, heartbeats, state) come from.
    pub clock: Clock,
    /// Where API requests are counted, by verb.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The client certificate to present instead of the kubeconfig's user, once that file
    /// exists: the certificate manager's `kubelet-client-current.pem`.
    pub identity: Option<PathBuf>,
    /// Bumped by the certificate manager with every new client certificate: the session
    /// ends and the client is made again with it, without a restart.
    pub credentials: Option<watch::Receiver<u64>>,
}

impl MirrorConfig {
    /// A configuration with the kubelet's defaults: register the Node, no extra labels.
    pub fn new(kubeconfig: PathBuf, node_name: NodeName, node_info: NodeInfo) -> MirrorConfig {
        MirrorConfig {
            kubeconfig,
            node_name,
            register_node: true,
            node_labels: BTreeMap::new(),
            register_taints: Vec::new(),
            node_info,
            timings: MirrorTimings::default(),
            event_buffer: DEFAULT_EVENT_BUFFER,
            clock: Clock::System,
            metrics: None,
            identity: None,
            credentials: None,
        }
    }
}

/// Runs the mirror task until `shutdown`: mirrors the static pods of `desired` with the
/// statuses of `status`, posts `events`, and publishes its own state on `state`.
///
/// Never returns before `shutdown`, whatever the API server does; it returns promptly after
/// it, even with requests in flight.
pub async fn run(
    config: MirrorConfig,
    desired: watch::Receiver<Option<Arc<Snapshot>>>,
    status: watch::Receiver<Arc<NodeStatus>>,
    events: mpsc::Receiver<PodEvent>,
    state: watch::Sender<MirrorState>,
    shutdown: CancellationToken,
) {
    let inbox = worker::Inbox::new(config.event_buffer);
    let drain = inbox.clone().drain(events);
    let worker = worker::Worker::new(config, desired, status, inbox, state);
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = drain => {}
        () = worker.run() => {}
    }
}

//! The mirror task (`podvisor::mirror::run`) driven end to end against the fake API server
//! (`crates/fake-apiserver`) with the real kube client, through podvisor's public API only.
//! No privileges or containerd needed.

mod certs;
mod lifecycle;
mod pods;
mod reporting;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fake_apiserver::{FakeApiServer, Mode, RequestRecord};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podvisor::backoff::Policy;
use podvisor::clock::Timestamp;
use podvisor::event::{EventType, PodEvent};
use podvisor::health::NodeHealth;
use podvisor::manifest::Snapshot;
use podvisor::mirror::{MirrorConfig, MirrorPhase, MirrorState, MirrorTimings, PodMirror};
use podvisor::pod::{NodeName, PodKey, StaticPod};
use podvisor::status::{NodeStatus, PodReport};
pub use podvisor::testing::{node_info, static_pod};
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const NS: &str = "kube-system";

/// Short schedules, so that the tests take milliseconds where the kubelet takes seconds.
fn fast() -> MirrorTimings {
    MirrorTimings {
        request_timeout: Duration::from_millis(500),
        retry: Policy::API_SERVER.with(Duration::from_millis(10), Duration::from_millis(100)),
        lease_duration: Duration::from_secs(40),
        lease_renew: Duration::from_millis(200),
        node_status_update: Duration::from_millis(100),
        node_status_report: Duration::from_secs(300),
        resync: Duration::from_millis(50),
        watch_timeout: Duration::from_secs(5),
        status_min_interval: Duration::ZERO,
        reject: Policy::API_REJECTED.with(Duration::from_millis(100), Duration::from_millis(400)),
    }
}

fn key(name: &str) -> PodKey {
    PodKey {
        namespace: NS.into(),
        name: format!("{name}-n1"),
    }
}

fn snapshot(pods: &[&StaticPod]) -> Option<Arc<Snapshot>> {
    Some(Arc::new(Snapshot {
        pods: pods
            .iter()
            .map(|p| (p.key.clone(), Arc::new((*p).clone())))
            .collect(),
        ..Snapshot::default()
    }))
}

fn pod_status(phase: &str) -> PodStatus {
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: if phase == "Running" { "True" } else { "False" }.into(),
            ..PodCondition::default()
        }]),
        host_ip: Some("10.0.0.1".into()),
        pod_ip: Some("10.0.0.1".into()),
        ..PodStatus::default()
    }
}

fn node_status(pods: &[(&StaticPod, &str)]) -> Arc<NodeStatus> {
    Arc::new(NodeStatus {
        pods: pods
            .iter()
            .map(|(p, phase)| {
                let report = PodReport {
                    pod: Arc::new((*p).clone()),
                    status: pod_status(phase),
                    last_error: None,
                    note: None,
                };
                (p.key.clone(), report)
            })
            .collect(),
        synced: true,
        runtime_error: None,
        runtime: None,
        health: NodeHealth::ready(),
    })
}

fn event(pod: &str, reason: &str) -> PodEvent {
    PodEvent {
        key: key(pod),
        type_: EventType::Warning,
        reason: reason.into(),
        message: format!("{reason} happened"),
        field_path: Some(format!("spec.containers{{{pod}}}")),
        at: Timestamp(1_700_000_000_000_000_000),
    }
}

/// A node object as an admin would create it.
fn node(name: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Node::default()
    }
}

/// The mirror task running against a fake API server.
struct Harness {
    fake: FakeApiServer,
    dir: TempDir,
    desired: watch::Sender<Option<Arc<Snapshot>>>,
    status: watch::Sender<Arc<NodeStatus>>,
    events: mpsc::Sender<PodEvent>,
    state: watch::Receiver<MirrorState>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// How long a condition may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

impl Harness {
    /// A fake that treats every client as node `n1`, as NodeRestriction sees a kubelet.
    async fn fake() -> FakeApiServer {
        let fake = FakeApiServer::start().await;
        fake.set_node_identity(Some("n1"));
        fake
    }

    /// Starts the task with a kubeconfig for `fake`, static pods `pods` (all Running).
    async fn start(fake: FakeApiServer, pods: &[&StaticPod]) -> Harness {
        Harness::start_with(fake, pods, |_| {}, true).await
    }

    /// Starts the task after `tweak`ing its configuration; `write_kubeconfig` false leaves
    /// the kubeconfig missing.
    async fn start_with(
        fake: FakeApiServer,
        pods: &[&StaticPod],
        tweak: impl FnOnce(&mut MirrorConfig),
        write_kubeconfig: bool,
    ) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kubelet.conf");
        if write_kubeconfig {
            std::fs::write(&path, fake.kubeconfig_yaml("t")).expect("write kubeconfig");
        }
        let mut config = MirrorConfig::new(path, NodeName::new("n1"), node_info());
        config.timings = fast();
        tweak(&mut config);
        let (desired, desired_rx) = watch::channel(snapshot(pods));
        let statuses: Vec<_> = pods.iter().map(|p| (*p, "Running")).collect();
        let (status, status_rx) = watch::channel(node_status(&statuses));
        let (events, events_rx) = mpsc::channel(16);
        let (state_tx, state) = watch::channel(MirrorState::default());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(podvisor::mirror::run(
            config,
            desired_rx,
            status_rx,
            events_rx,
            state_tx,
            shutdown.clone(),
        ));
        Harness {
            fake,
            dir,
            desired,
            status,
            events,
            state,
            shutdown,
            task,
        }
    }

    fn write_kubeconfig(&self) {
        let path = self.dir.path().join("kubelet.conf");
        std::fs::write(path, self.fake.kubeconfig_yaml("t")).expect("write kubeconfig");
    }

    /// Waits until the published state satisfies `f`.
    async fn state_until(&mut self, what: &str, f: impl Fn(&MirrorState) -> bool) -> MirrorState {
        let waited = tokio::time::timeout(PATIENCE, self.state.wait_for(|s| f(s)))
            .await
            .map(|r| r.map(|state| state.clone()));
        match waited {
            Ok(Ok(state)) => state,
            _ => panic!(
                "timed out waiting for {what}; state: {:#?}",
                *self.state.borrow()
            ),
        }
    }

    async fn synced(&mut self) -> MirrorState {
        self.state_until("synced", |s| matches!(s.phase, MirrorPhase::Synced { .. }))
            .await
    }

    /// Waits until `pod` has a mirror pod of the version given and returns its UID.
    async fn mirrored(&mut self, pod: &StaticPod) -> String {
        let hash = pod.hash.0.clone();
        let found = eventually(&format!("mirror of {} at {hash}", pod.key), || {
            self.fake.pod(NS, &pod.key.name).filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && annotation(p, podvisor::labels::CONFIG_MIRROR) == Some(hash.as_str())
            })
        })
        .await;
        found.metadata.uid.unwrap_or_default()
    }

    /// Requests with this method whose path is `path`.
    fn requests(&self, method: &http::Method, path: &str) -> Vec<RequestRecord> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.method == *method && r.path == path)
            .collect()
    }

    /// Waits for `n` more successful mirror syncs.
    async fn syncs(&mut self, n: usize) {
        for _ in 0..n {
            let last = self.state.borrow().counters.last_sync;
            self.state_until("another sync", |s| s.counters.last_sync != last)
                .await;
        }
    }

    /// Stops the task; it must end promptly.
    async fn stop(self) -> FakeApiServer {
        self.shutdown.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        assert!(ended.is_ok(), "the task must end promptly on shutdown");
        self.fake
    }
}

fn annotation<'a>(pod: &'a Pod, name: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(name))
        .map(String::as_str)
}

/// The events about pods: the Node's own condition events (NodeReady, ...) left out.
fn pod_events(fake: &FakeApiServer) -> Vec<k8s_openapi::api::core::v1::Event> {
    fake.events()
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod"))
        .collect()
}

/// Polls `f` until it yields a value; fails the test after [`PATIENCE`].
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

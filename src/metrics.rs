//! Prometheus metrics (prometheus-client). Counters and histograms are recorded where things
//! happen (CRI calls, reconcile passes, resyncs, API requests); the gauges that describe
//! state (pods by phase, restarts, manifest errors, mirror state) are set at scrape time from
//! [`Gauges`], which whoever serves the metrics fills from the latest published state, so
//! they can never drift from what `/pods` shows. A leaf: it knows none of podvisor's types.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabel {
    namespace: String,
    pod: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    file: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabel {
    verb: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabel {
    condition: String,
}

/// What the mirror task reports, for metrics: its phase name and whether the API server
/// answered lately. `None` when mirroring is off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorSummary {
    /// `Synced`, `Unreachable`, `Refused`, `WaitingForNode`, `Connecting`.
    pub state: String,
    /// The API server answered lately.
    pub reachable: bool,
}

/// One container's restart count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restarts {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Its restart count.
    pub count: i64,
}

/// The state the gauges show, as plain values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Each static pod's phase.
    pub pod_phases: Vec<String>,
    /// Each container's restart count.
    pub restarts: Vec<Restarts>,
    /// Manifest files with errors, and how many.
    pub manifest_errors: Vec<(String, i64)>,
    /// The mirror task's state, when mirroring is on.
    pub mirror: Option<MirrorSummary>,
    /// The Node's conditions (`Ready`, `MemoryPressure`, ...) and whether each holds.
    pub node_conditions: Vec<(String, bool)>,
}

/// podvisor's metrics.
pub struct Metrics {
    registry: Registry,
    reconcile_duration: Histogram,
    cri_duration: Family<MethodLabel, Histogram>,
    cri_errors: Family<MethodLabel, Counter>,
    exit_events: Family<SourceLabel, Counter>,
    last_resync: Gauge<f64, AtomicU64>,
    pods: Family<PhaseLabel, Gauge>,
    restarts: Family<ContainerLabel, Gauge>,
    manifest_errors: Family<FileLabel, Gauge>,
    mirror_state: Family<StateLabel, Gauge>,
    apiserver_reachable: Gauge,
    apiserver_requests: Family<VerbLabel, Counter>,
    node_condition: Family<ConditionLabel, Gauge>,
    review_errors: Counter,
    updates_held: Counter,
    rollbacks: Counter,
    pulls_in_flight: Gauge,
    pull_duration: Family<ResultLabel, Histogram>,
    certificates: [Certificate; 2],
    scrape: Mutex<()>,
}

/// One certificate's expiry (`notAfter` in Unix seconds, [`i64::MIN`] when none) and
/// renewal failures, as the kubelet's certificate managers report them.
#[derive(Debug, Default)]
struct Certificate {
    not_after: AtomicI64,
    ttl: Gauge<f64, AtomicU64>,
    renew_errors: Counter,
}

/// An image pull in flight, counted in `image_pulls_in_flight` until dropped.
#[derive(Debug)]
pub struct PullGuard<'a>(&'a Metrics);

impl Drop for PullGuard<'_> {
    fn drop(&mut self) {
        self.0.pulls_in_flight.dec();
    }
}

/// The certificates, by the kubelet's word for them in metric names.
const CERTIFICATES: [&str; 2] = ["client", "server"];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("podvisor");
        let reconcile_duration = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let cri_duration = Family::<MethodLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let cri_errors = Family::<MethodLabel, Counter>::default();
        let exit_events = Family::<SourceLabel, Counter>::default();
        let last_resync = Gauge::<f64, AtomicU64>::default();
        let pods = Family::<PhaseLabel, Gauge>::default();
        let restarts = Family::<ContainerLabel, Gauge>::default();
        let manifest_errors = Family::<FileLabel, Gauge>::default();
        let mirror_state = Family::<StateLabel, Gauge>::default();
        let apiserver_reachable = Gauge::default();
        let apiserver_requests = Family::<VerbLabel, Counter>::default();
        let node_condition = Family::<ConditionLabel, Gauge>::default();
        let review_errors = Counter::default();
        let updates_held = Counter::default();
        let rollbacks = Counter::default();
        registry.register(
            "pod_updates_held",
            "Times a pod's new version could not be made ready (image pull, host paths) and \
             its running version was kept",
            updates_held.clone(),
        );
        registry.register(
            "pod_rollbacks",
            "Times a pod's new version failed its health gate and the last healthy version \
             was restored",
            rollbacks.clone(),
        );
        let pulls_in_flight = Gauge::default();
        // A pull takes from milliseconds (a cached layer) to many minutes.
        let pull_duration = Family::<ResultLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 16))
        });
        registry.register(
            "image_pulls_in_flight",
            "Image pulls the runtime is doing for podvisor now",
            pulls_in_flight.clone(),
        );
        registry.register(
            "image_pull_duration_seconds",
            "Duration of image pulls by result (pulled, failed, stalled)",
            pull_duration.clone(),
        );
        registry.register(
            "node_api_authorization_errors",
            "Node API requests answered 500 because the SubjectAccessReview failed \
             (API server away, slow or refusing)",
            review_errors.clone(),
        );
        registry.register(
            "node_condition",
            "1 while the node condition holds (Ready, MemoryPressure, DiskPressure, PIDPressure), \
             as the Node object reports it",
            node_condition.clone(),
        );
        let certificates: [Certificate; 2] = Default::default();
        for (name, c) in CERTIFICATES.iter().zip(&certificates) {
            c.not_after.store(i64::MIN, Ordering::Relaxed);
            registry.register(
                format!("certificate_manager_{name}_ttl_seconds"),
                format!("Seconds until the node's {name} certificate expires (negative once expired, +Inf when there is none)"),
                c.ttl.clone(),
            );
            registry.register(
                format!("certificate_manager_{name}_expiration_renew_errors"),
                format!("Failed attempts to get a {name} certificate (bootstrap or renewal)"),
                c.renew_errors.clone(),
            );
        }
        registry.register(
            "apiserver_requests",
            "Requests sent to the API server, by Kubernetes verb",
            apiserver_requests.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time of one reconcile pass (observe, plan, dispatch)",
            reconcile_duration.clone(),
        );
        registry.register(
            "cri_call_duration_seconds",
            "Duration of CRI calls by method",
            cri_duration.clone(),
        );
        registry.register(
            "cri_call_errors",
            "CRI calls that failed, by method",
            cri_errors.clone(),
        );
        registry.register(
            "runtime_exit_events",
            "Container exit events received from the runtime, by source (cri: \
             GetContainerEvents; containerd: its events service)",
            exit_events.clone(),
        );
        registry.register(
            "last_resync_timestamp_seconds",
            "Unix time of the last successful manifest directory scan",
            last_resync.clone(),
        );
        registry.register("pods", "Static pods by phase", pods.clone());
        registry.register(
            "container_restarts",
            "Restart count of each static pod container",
            restarts.clone(),
        );
        registry.register(
            "manifest_errors",
            "Errors of each manifest file (rejected or conflicting)",
            manifest_errors.clone(),
        );
        registry.register(
            "mirror_sync_state",
            "1 for the mirror task's current state",
            mirror_state.clone(),
        );
        registry.register(
            "apiserver_reachable",
            "1 when the API server answered lately (mirroring on)",
            apiserver_reachable.clone(),
        );
        Metrics {
            registry,
            reconcile_duration,
            cri_duration,
            cri_errors,
            exit_events,
            last_resync,
            pods,
            restarts,
            manifest_errors,
            mirror_state,
            apiserver_reachable,
            apiserver_requests,
            node_condition,
            review_errors,
            updates_held,
            rollbacks,
            pulls_in_flight,
            pull_duration,
            certificates,
            scrape: Mutex::new(()),
        }
    }

    /// One more image pull in flight; the guard counts it finished when dropped.
    pub fn pull_started(&self) -> PullGuard<'_> {
        self.pulls_in_flight.inc();
        PullGuard(self)
    }

    /// Records a finished pull: how long it took and `result` (`pulled`, `failed`,
    /// `stalled`).
    pub fn pull_finished(&self, took: Duration, result: &str) {
        self.pull_duration
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Records one request to the API server (`get`, `list`, `watch`, `create`, `update`,
    /// `patch`, `delete`).
    pub fn apiserver_request(&self, verb: &str) {
        self.apiserver_requests
            .get_or_create(&VerbLabel {
                verb: verb.to_owned(),
            })
            .inc();
    }

    fn certificate(&self, name: &str) -> Option<&Certificate> {
        CERTIFICATES
            .iter()
            .position(|n| *n == name)
            .map(|i| &self.certificates[i])
    }

    /// Records the expiry of the `client` or `server` certificate in use (`notAfter` in Unix
    /// seconds), `None` when there is none.
    pub fn certificate_expiry(&self, name: &str, not_after_unix: Option<i64>) {
        if let Some(c) = self.certificate(name) {
            c.not_after
                .store(not_after_unix.unwrap_or(i64::MIN), Ordering::Relaxed);
        }
    }

    /// Records a failed attempt to get the `client` or `server` certificate.
    pub fn certificate_renew_error(&self, name: &str) {
        if let Some(c) = self.certificate(name) {
            c.renew_errors.inc();
        }
    }

    /// Records one CRI call.
    pub fn cri_call(&self, method: &str, took: Duration, ok: bool) {
        let label = MethodLabel {
            method: method.to_owned(),
        };
        self.cri_duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
        if !ok {
            self.cri_errors.get_or_create(&label).inc();
        }
    }

    /// Records one container exit event from the runtime's `source` (`cri`, `containerd`).
    pub fn exit_event(&self, source: &str) {
        self.exit_events
            .get_or_create(&SourceLabel {
                source: source.to_owned(),
            })
            .inc();
    }

    /// Records one reconcile pass.
    pub fn reconcile_pass(&self, took: Duration) {
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    /// Records a successful manifest directory scan at `unix_seconds`.
    pub fn resynced(&self, unix_seconds: f64) {
        self.last_resync.set(unix_seconds);
    }

    /// Records a pod update held back because its new version could not be made ready.
    pub fn update_held(&self) {
        self.updates_held.inc();
    }

    /// Records a pod rolled back to its last healthy version.
    pub fn rolled_back(&self) {
        self.rollbacks.inc();
    }

    /// Records a node API request refused because its authorization review failed.
    pub fn authorization_error(&self) {
        self.review_errors.inc();
    }

    /// Renders the text exposition format, with the state gauges set from `gauges`.
    pub fn render(&self, gauges: &Gauges) -> String {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        self.pods.clear();
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            self.pods
                .get_or_create(&PhaseLabel {
                    phase: phase.to_owned(),
                })
                .set(0);
        }
        for phase in &gauges.pod_phases {
            self.pods
                .get_or_create(&PhaseLabel {
                    phase: phase.clone(),
                })
                .inc();
        }
        self.restarts.clear();
        for r in &gauges.restarts {
            let label = ContainerLabel {
                namespace: r.namespace.clone(),
                pod: r.pod.clone(),
                container: r.container.clone(),
            };
            self.restarts.get_or_create(&label).set(r.count);
        }
        self.manifest_errors.clear();
        for (file, count) in &gauges.manifest_errors {
            let label = FileLabel { file: file.clone() };
            self.manifest_errors.get_or_create(&label).set(*count);
        }
        let mirror = gauges.mirror.as_ref();
        self.mirror_state.clear();
        if let Some(m) = mirror {
            self.mirror_state
                .get_or_create(&StateLabel {
                    state: m.state.clone(),
                })
                .set(1);
            self.apiserver_reachable.set(i64::from(m.reachable));
        }
        for (condition, holds) in &gauges.node_conditions {
            let label = ConditionLabel {
                condition: condition.clone(),
            };
            self.node_condition
                .get_or_create(&label)
                .set(i64::from(*holds));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        for c in &self.certificates {
            let ttl = match c.not_after.load(Ordering::Relaxed) {
                i64::MIN => f64::INFINITY,
                not_after => (not_after - now) as f64,
            };
            c.ttl.set(ttl);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_shows_recorded_calls_and_state_gauges() {
        let m = Metrics::new();
        m.cri_call("ListContainers", Duration::from_millis(2), true);
        m.cri_call("RunPodSandbox", Duration::from_millis(50), false);
        m.reconcile_pass(Duration::from_micros(300));
        m.resynced(1_700_000_000.0);
        m.authorization_error();
        m.exit_event("cri");
        let text = m.render(&Gauges {
            mirror: Some(MirrorSummary {
                state: "Unreachable".into(),
                reachable: false,
            }),
            node_conditions: vec![("DiskPressure".into(), true), ("Ready".into(), false)],
            ..Gauges::default()
        });
        assert!(
            text.contains("podvisor_cri_call_duration_seconds_count{method=\"ListContainers\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_cri_call_errors_total{method=\"RunPodSandbox\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_reconcile_duration_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_runtime_exit_events_total{source=\"cri\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_last_resync_timestamp_seconds 1700000000"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_pods{phase=\"Running\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_mirror_sync_state{state=\"Unreachable\"} 1"),
            "{text}"
        );
        assert!(text.contains("podvisor_apiserver_reachable 0"), "{text}");
        assert!(
            text.contains("podvisor_node_api_authorization_errors_total 1"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_node_condition{condition=\"DiskPressure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("podvisor_node_condition{condition=\"Ready\"} 0"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn certificate_ttl_counts_down_to_the_expiry_and_is_infinite_without_one() {
        let m = Metrics::new();
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("podvisor_certificate_manager_client_ttl_seconds inf\n"),
            "{text}"
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64;
        m.certificate_expiry("server", Some(now - 10));
        m.certificate_renew_error("client");
        m.certificate_renew_error("client");
        let text = m.render(&Gauges::default());
        let ttl = text
            .lines()
            .find_map(|l| l.strip_prefix("podvisor_certificate_manager_server_ttl_seconds "))
            .and_then(|v| v.parse::<f64>().ok())
            .expect("a server ttl");
        assert!((-12.0..=-9.0).contains(&ttl), "{ttl}");
        assert!(
            text.contains("podvisor_certificate_manager_client_expiration_renew_errors_total 2"),
            "{text}"
        );
    }
}

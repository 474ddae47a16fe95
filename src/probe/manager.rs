//! The prober task: one [`ProbeWorker`] per running container instance and probe kind, probes
//! run when due (startup first, then liveness and readiness), results published on a watch
//! channel for the reconciler (restarts) and the status (readiness).
//!
//! It follows the reconciler's view of the runtime: a worker appears when a container instance
//! of a desired pod is seen running and goes when it stops, so a restarted container gets
//! fresh workers (the kubelet's "on hold until the container ID changes").

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::{Outcome, ProbeResult, ProbeWorker, container_started, run_probe};
use crate::clock::{Clock, Timestamp};
use crate::event::{EventSink, EventType, PodEvent, container_field};
use crate::manifest::Snapshot;
use crate::pod::{ContainerKind, PodKey, ProbeKind, StaticPod};
use crate::runtime::{ContainerId, ContainerState, Observed, Runtime};

/// Probe-derived facts about one container instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerProbes {
    /// Readiness result; `None` when the container has no readiness probe.
    pub ready: Option<bool>,
    /// Startup result; `None` when the container has no startup probe.
    pub started: Option<bool>,
}

/// Published probe results of one container instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerProbeResults {
    /// Its pod.
    pub key: PodKey,
    /// Its name.
    pub name: String,
    /// Liveness, if it has the probe.
    pub liveness: Option<ProbeResult>,
    /// Readiness, if it has the probe.
    pub readiness: Option<ProbeResult>,
    /// Startup, if it has the probe.
    pub startup: Option<ProbeResult>,
}

/// Every container's probe results.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeResults {
    /// By container instance.
    pub containers: BTreeMap<ContainerId, ContainerProbeResults>,
}

impl ProbeResults {
    /// Containers that must be restarted: a published liveness or startup failure.
    pub fn unhealthy(&self) -> BTreeMap<ContainerId, ProbeKind> {
        let mut out = BTreeMap::new();
        for (id, r) in &self.containers {
            if r.startup == Some(ProbeResult::Failure) {
                out.insert(id.clone(), ProbeKind::Startup);
            } else if r.liveness == Some(ProbeResult::Failure) {
                out.insert(id.clone(), ProbeKind::Liveness);
            }
        }
        out
    }

    /// What the pod status needs: readiness and startup per container instance.
    pub fn for_status(&self) -> BTreeMap<ContainerId, ContainerProbes> {
        self.containers
            .iter()
            .map(|(id, r)| {
                let started = r.startup.map(|s| s == ProbeResult::Success);
                let ready = r.readiness.map(|s| s == ProbeResult::Success);
                (id.clone(), ContainerProbes { ready, started })
            })
            .collect()
    }
}

/// The address probes use when they name no host: the node's for host-network pods
/// (kubeadm's apiserver probe is `https://<host-ip>:6443/livez`), the pod's otherwise.
pub fn probe_host(
    pod: &StaticPod,
    sandbox_ip: Option<String>,
    host_ip: Option<&str>,
) -> Option<String> {
    if pod.host_network() {
        host_ip.map(str::to_owned)
    } else {
        sandbox_ip
    }
}

struct Target {
    key: PodKey,
    name: String,
    init: bool,
    probe: Probe,
    ports: Vec<ContainerPort>,
    host: Option<String>,
}

struct Entry {
    worker: ProbeWorker,
    target: Target,
    in_flight: bool,
}

type Slot = (ContainerId, ProbeKind);

/// Runs the probes of every running container of a desired pod.
pub struct Prober<R: Runtime> {
    rt: Arc<R>,
    clock: Clock,
    host_ip: Option<String>,
    events: EventSink,
    entries: BTreeMap<Slot, Entry>,
    tx: watch::Sender<Arc<ProbeResults>>,
}

impl<R: Runtime> Prober<R> {
    /// A prober; its results are published on the returned receiver.
    pub fn new(
        rt: Arc<R>,
        clock: Clock,
        host_ip: Option<String>,
        events: EventSink,
    ) -> (Self, watch::Receiver<Arc<ProbeResults>>) {
        let (tx, rx) = watch::channel(Arc::new(ProbeResults::default()));
        (
            Prober {
                rt,
                clock,
                host_ip,
                events,
                entries: BTreeMap::new(),
                tx,
            },
            rx,
        )
    }

    /// Runs until `shutdown`.
    pub async fn run(
        mut self,
        mut desired: watch::Receiver<Option<Arc<Snapshot>>>,
        mut observed: watch::Receiver<Arc<Observed>>,
        shutdown: CancellationToken,
    ) {
        let mut tasks: JoinSet<(Slot, Outcome, Timestamp)> = JoinSet::new();
        loop {
            let snapshot = desired.borrow_and_update().clone();
            let seen = observed.borrow_and_update().clone();
            if let Some(snapshot) = &snapshot {
                self.sync(snapshot, &seen);
            }
            self.dispatch(&mut tasks);
            self.publish();
            let wake = self
                .entries
                .iter()
                .filter(|(slot, e)| !e.in_flight && self.eligible(slot))
                .filter_map(|(_, e)| e.worker.next_due())
                .min()
                .map(|at| self.clock.instant_at(at));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = desired.changed() => if r.is_err() { break },
                r = observed.changed() => if r.is_err() { break },
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((slot, outcome, at)) = done {
                        self.record(slot, &outcome, at);
                    }
                }
                _ = async { match wake { Some(w) => tokio::time::sleep_until(w).await, None => std::future::pending().await } } => {}
            }
        }
        tasks.abort_all();
    }

    /// Liveness and readiness wait for the startup probe (`runs_when`).
    fn eligible(&self, (id, kind): &Slot) -> bool {
        let startup = self
            .entries
            .get(&(id.clone(), ProbeKind::Startup))
            .map(|s| &s.worker);
        kind.runs_when(container_started(startup))
    }

    /// Creates workers for new running containers and drops those of containers that stopped.
    fn sync(&mut self, snapshot: &Snapshot, observed: &Observed) {
        let mut live: BTreeSet<Slot> = BTreeSet::new();
        for c in observed
            .containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
        {
            // Only containers of the pod's current sandbox version are probed.
            let in_current = |p: &&Arc<StaticPod>| {
                observed
                    .sandboxes
                    .iter()
                    .any(|s| s.id == c.sandbox && s.version == p.sandbox)
            };
            let Some(pod) = snapshot.pods.get(&c.key).filter(in_current) else {
                continue;
            };
            let Some((kind, spec)) = pod.container(&c.name) else {
                continue;
            };
            let sandbox_ip = observed
                .sandboxes
                .iter()
                .find(|s| s.id == c.sandbox)
                .and_then(|s| s.ip.clone());
            let host = probe_host(pod, sandbox_ip, self.host_ip.as_deref());
            let probes = [
                (ProbeKind::Startup, &spec.startup_probe),
                (ProbeKind::Liveness, &spec.liveness_probe),
                (ProbeKind::Readiness, &spec.readiness_probe),
            ];
            for (probe_kind, probe) in probes {
                let Some(probe) = probe else { continue };
                let slot = (c.id.clone(), probe_kind);
                live.insert(slot.clone());
                let started_at = c
                    .started_at
                    .or(c.created_at)
                    .unwrap_or_else(|| self.clock.now());
                let entry = self.entries.entry(slot).or_insert_with(|| Entry {
                    worker: ProbeWorker::new(probe_kind, probe, started_at),
                    target: Target {
                        key: c.key.clone(),
                        name: c.name.clone(),
                        init: kind == ContainerKind::Init,
                        probe: probe.clone(),
                        ports: spec.ports.clone().unwrap_or_default(),
                        host: None,
                    },
                    in_flight: false,
                });
                entry.target.host = host.clone();
            }
        }
        let before = self.entries.len();
        self.entries.retain(|slot, _| live.contains(slot));
        if self.entries.len() != before {
            debug!(workers = self.entries.len(), "probe workers changed");
        }
    }

    fn dispatch(&mut self, tasks: &mut JoinSet<(Slot, Outcome, Timestamp)>) {
        let now = self.clock.now();
        let due: Vec<Slot> = self
            .entries
            .iter()
            .filter(|(slot, e)| !e.in_flight && e.worker.is_due(now) && self.eligible(slot))
            .map(|(slot, _)| slot.clone())
            .collect();
        for slot in due {
            let Some(entry) = self.entries.get_mut(&slot) else {
                continue;
            };
            let needs_host = entry.target.probe.exec.is_none()
                && entry
                    .target
                    .probe
                    .http_get
                    .as_ref()
                    .is_none_or(|h| h.host.is_none())
                && entry
                    .target
                    .probe
                    .tcp_socket
                    .as_ref()
                    .is_none_or(|t| t.host.is_none());
            if needs_host && entry.target.host.is_none() {
                continue; // no address yet; the next observation brings it
            }
            entry.in_flight = true;
            let rt = self.rt.clone();
            let clock = self.clock;
            let probe = entry.target.probe.clone();
            let ports = entry.target.ports.clone();
            let host = entry.target.host.clone().unwrap_or_default();
            tasks.spawn(async move {
                let outcome = run_probe(rt.as_ref(), &probe, &slot.0, &ports, &host).await;
                (slot, outcome, clock.now())
            });
        }
    }

    fn record(&mut self, slot: Slot, outcome: &Outcome, at: Timestamp) {
        let Some(entry) = self.entries.get_mut(&slot) else {
            return;
        };
        entry.in_flight = false;
        let kind = slot.1;
        if let Outcome::Failure(message) = outcome {
            self.events.emit(PodEvent {
                key: entry.target.key.clone(),
                type_: EventType::Warning,
                reason: "Unhealthy".to_owned(),
                message: format!("{} probe failed: {message}", kind.as_str()),
                field_path: Some(container_field(entry.target.init, &entry.target.name)),
                at,
            });
        }
        if let Some(result) = entry.worker.record(outcome, at) {
            info!(pod = %entry.target.key, container = %entry.target.name, probe = kind.as_str(), result = ?result, message = outcome.message(), "probe result changed");
        }
    }

    fn publish(&self) {
        let mut results = ProbeResults::default();
        for ((id, kind), e) in &self.entries {
            let r = results
                .containers
                .entry(id.clone())
                .or_insert_with(|| ContainerProbeResults {
                    key: e.target.key.clone(),
                    name: e.target.name.clone(),
                    liveness: None,
                    readiness: None,
                    startup: None,
                });
            let value = Some(e.worker.result());
            match kind {
                ProbeKind::Liveness => r.liveness = value,
                ProbeKind::Readiness => r.readiness = value,
                ProbeKind::Startup => r.startup = value,
            }
        }
        self.tx.send_if_modified(|current| {
            if **current == results {
                false
            } else {
                *current = Arc::new(results);
                true
            }
        });
    }
}

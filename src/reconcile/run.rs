//! The reconcile loop: observe the runtime, plan, hand each pod's actions to a task, repeat.
//!
//! Level-triggered: every pass starts from a fresh observation, so a podvisor restart, a
//! containerd restart or a missed event is just another pass. It wakes on a manifest
//! snapshot, on a finished task, on a container exit, on a probe result, on the relist tick,
//! and exactly when a backoff expires.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::context::ExecContext;
use super::execute::execute;
use super::messages::TerminationMessages;
use super::outcome::{Outcome, StepError, WorkError};
use super::plan::{Action, BackingOff, PlanInput, RestartKey, plan};
use super::recheck::Rechecks;
use super::rollout::{RollbackPolicy, Rollouts, Track};
use super::rollout_store::RolloutStore;
use crate::backoff::{Backoff, Delays, Policy};
use crate::clock::{Clock, Timestamp};
use crate::event::{EventType, PodEvent, container_field};
use crate::host::Host;
use crate::manifest::Snapshot;
use crate::metrics::Metrics;
use crate::pod::{PodKey, WaitingReason};
use crate::probe::ProbeResults;
use crate::runtime::{Observed, Runtime, RuntimeVersion};

/// How the loop paces itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconcilerConfig {
    /// How often to list the runtime's state even without any event (the kubelet's PLEG: 1 s).
    pub relist_period: Duration,
    /// Pods worked on at once.
    pub max_parallel: usize,
}

impl Default for ReconcilerConfig {
    fn default() -> Self {
        ReconcilerConfig {
            relist_period: Duration::from_secs(1),
            max_parallel: 32,
        }
    }
}

/// Why a container could not be started, in the kubelet's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartError {
    /// `ErrImageNeverPull`, `ErrImagePull`, `CreateContainerError`, ...
    pub reason: WaitingReason,
    /// Details.
    pub message: String,
    /// The image, when pulling it failed.
    pub image: Option<String>,
    /// When it failed.
    pub at: Timestamp,
}

/// What the loop knows after a pass, for status reporting and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReconcileState {
    /// Passes completed (observe + plan + dispatch).
    pub passes: u64,
    /// Whether the first full pass over a manifest snapshot succeeded.
    pub synced: bool,
    /// When the last pass ran.
    pub last_pass: Timestamp,
    /// The last observation.
    pub observed: Arc<Observed>,
    /// Why the runtime cannot be reached, while it cannot.
    pub runtime_error: Option<String>,
    /// What the runtime said it is, asked again each time it comes back (it may have been
    /// upgraded or replaced while away); `None` until it has answered.
    pub runtime: Option<RuntimeVersion>,
    /// The last error per pod, until its work succeeds.
    pub pod_errors: BTreeMap<PodKey, String>,
    /// Why containers could not be started, until their pod's work succeeds.
    pub start_errors: BTreeMap<(PodKey, String), StartError>,
    /// Containers waiting for CrashLoopBackOff.
    pub backing_off: Vec<BackingOff>,
    /// Pods with work in flight.
    pub busy: BTreeSet<PodKey>,
    /// Pods rolled back to their last healthy version, and why.
    pub rolled_back: BTreeMap<PodKey, String>,
}

/// Drives the runtime towards the manifests.
pub struct Reconciler<R: Runtime, H: Host> {
    rt: Arc<R>,
    host: Arc<H>,
    clock: Clock,
    config: ReconcilerConfig,
    cx: ExecContext,
    crash_backoff: Backoff<RestartKey>,
    pod_retry: Backoff<PodKey>,
    /// The kubelet's image pull backoff, per image.
    pull_retry: Backoff<String>,
    retry_at: BTreeMap<PodKey, Timestamp>,
    runtime_retry: Delays,
    announced_backoffs: BTreeSet<(PodKey, String, Timestamp)>,
    metrics: Option<Arc<Metrics>>,
    messages: TerminationMessages,
    /// Status calls that failed last pass, to warn once per failure.
    unreadable: BTreeSet<String>,
    running: std::collections::HashMap<tokio::task::Id, PodKey>,
    state: ReconcileState,
    state_tx: watch::Sender<Arc<ReconcileState>>,
    /// Health-gated rollback: the settings, each pod's track, where tracks are kept.
    rollback: RollbackPolicy,
    rollouts: Rollouts,
    rollout_store: Option<RolloutStore>,
    /// The snapshot each pass plans against (rolled-back pods at the version that runs).
    effective_tx: watch::Sender<Option<Arc<Snapshot>>>,
    observed_tx: watch::Sender<Arc<Observed>>,
}

impl<R: Runtime, H: Host> Reconciler<R, H> {
    /// A reconciler over the runtime `rt` and the host `host`. Its state is published on the
    /// returned receiver.
    pub fn new(
        rt: Arc<R>,
        host: Arc<H>,
        cx: ExecContext,
        config: ReconcilerConfig,
    ) -> (Self, watch::Receiver<Arc<ReconcileState>>) {
        let (state_tx, state_rx) = watch::channel(Arc::new(ReconcileState::default()));
        let r = Reconciler {
            rt,
            host,
            clock: cx.clock,
            config,
            cx,
            crash_backoff: Backoff::new(Policy::CRASH_LOOP),
            pod_retry: Backoff::new(Policy::POD_WORK),
            pull_retry: Backoff::new(Policy::IMAGE_PULL),
            retry_at: BTreeMap::new(),
            runtime_retry: Delays::new(Policy::RUNTIME),
            announced_backoffs: BTreeSet::new(),
            metrics: None,
            messages: TerminationMessages::default(),
            unreadable: BTreeSet::new(),
            running: std::collections::HashMap::new(),
            state: ReconcileState::default(),
            state_tx,
            observed_tx: watch::channel(Arc::new(Observed::default())).0,
            rollback: RollbackPolicy::default(),
            rollouts: Rollouts::default(),
            rollout_store: None,
            effective_tx: watch::channel(None).0,
        };
        (r, state_rx)
    }

    /// Each pass's observation of the runtime, for the prober.
    pub fn observed(&self) -> watch::Receiver<Arc<Observed>> {
        self.observed_tx.subscribe()
    }

    /// The snapshots the loop plans against: the manifests' own, with pods that were rolled
    /// back at the version that runs. What status, probes and mirror pods should follow.
    pub fn effective(&self) -> watch::Receiver<Option<Arc<Snapshot>>> {
        self.effective_tx.subscribe()
    }

    /// Health-gated rollback per `policy`, its tracks kept in `store` across restarts.
    pub fn with_rollback(mut self, policy: RollbackPolicy, store: Option<RolloutStore>) -> Self {
        if let Some(s) = &store {
            self.rollouts = s.load();
        }
        self.rollback = policy;
        self.rollout_store = store;
        self
    }

    /// Records pass durations in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs until `shutdown` is cancelled. Waits for the first manifest snapshot before
    /// touching anything, so that a missing directory never looks like "no pods".
    pub async fn run(
        mut self,
        mut snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        mut probes: watch::Receiver<Arc<ProbeResults>>,
        shutdown: CancellationToken,
    ) {
        let mut snapshot = loop {
            if let Some(s) = snapshots.borrow_and_update().clone() {
                break s;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = snapshots.changed() => if changed.is_err() { return },
            }
        };
        let (exit_tx, mut exits) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(forward_exits(
            self.rt.clone(),
            exit_tx,
            self.config.relist_period,
            self.metrics.clone(),
            shutdown.clone(),
        ));
        let mut rechecks = Rechecks::default();
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        let mut relist = tokio::time::interval(self.config.relist_period);
        relist.set_missed_tick_behavior(MissedTickBehavior::Delay);
        relist.reset(); // the first pass runs now, below; the tick follows one period later
        let mut snapshot_synced = false;
        loop {
            let probe_results = probes.borrow_and_update().clone();
            let wake = self
                .pass(&snapshot, &probe_results, &mut tasks, &mut snapshot_synced)
                .await;
            let wake = match (
                wake.map(|at| self.clock.instant_at(at)),
                rechecks.due(Instant::now()),
            ) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = snapshots.changed() => {
                    if changed.is_err() { break; }
                    if let Some(s) = snapshots.borrow_and_update().clone() {
                        for key in edited(&snapshot, &s) {
                            // a fixed file applies at once, not after the broken one's backoff
                            self.retry_at.remove(key);
                            self.pod_retry.reset(key);
                        }
                        snapshot = s;
                        snapshot_synced = false;
                    }
                }
                changed = probes.changed() => if changed.is_err() { break },
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    self.joined(done);
                    while let Some(done) = tasks.try_join_next_with_id() {
                        self.joined(done);
                    }
                }
                _ = relist.tick() => {}
                Some(()) = exits.recv() => rechecks.exit_seen(Instant::now()),
                _ = sleep_until_opt(wake) => {}
            }
        }
        tasks.abort_all();
    }

    /// One pass: observe, plan, dispatch. Returns when to wake at the latest.
    async fn pass(
        &mut self,
        snapshot: &Arc<Snapshot>,
        probes: &ProbeResults,
        tasks: &mut JoinSet<Outcome>,
        snapshot_synced: &mut bool,
    ) -> Option<Timestamp> {
        let started = Instant::now();
        self.publish_effective(self.rollouts.effective(snapshot));
        let mut observed = match self.rt.observe().await {
            Ok(o) => {
                if let Some(err) = self.state.runtime_error.take() {
                    info!(previous_error = %err, "container runtime reachable again");
                    self.state.runtime = None;
                }
                if self.state.runtime.is_none() {
                    self.ask_version().await;
                }
                self.runtime_retry.reset();
                o
            }
            Err(e) => {
                let message = e.to_string();
                if self.state.runtime_error.as_deref() != Some(message.as_str()) {
                    warn!(error = %message, "container runtime unreachable; retrying");
                }
                self.state.runtime_error = Some(message);
                let retry = self.runtime_retry.next_drawn();
                self.publish();
                return Some(self.clock.now().plus(retry));
            }
        };
        self.report_unreadable(&observed);
        self.messages.fill(self.host.as_ref(), &mut observed).await;
        let now = self.clock.now();
        self.crash_backoff.gc(now);
        self.retry_at.retain(|_, at| *at > now);
        let snapshot = &self.roll_out(snapshot, &observed, probes, now);
        let pull_wake = self.image_pull_backoff(snapshot, now);
        let unhealthy = probes.unhealthy();
        let planned = plan(&PlanInput {
            desired: snapshot,
            observed: &observed,
            now,
            backoff: &self.crash_backoff,
            busy: &self.state.busy,
            retry_at: &self.retry_at,
            unhealthy: &unhealthy,
            host_ip: self.cx.host_ip.as_deref(),
        });
        let capacity = self
            .config
            .max_parallel
            .saturating_sub(self.state.busy.len());
        let desired_work = planned
            .work
            .iter()
            .any(|w| snapshot.pods.contains_key(&w.key));
        for work in planned.work.into_iter().take(capacity) {
            for action in &work.actions {
                if let Action::StartContainer {
                    restart: Some((key, finished)),
                    ..
                } = action
                {
                    self.crash_backoff.next(key, *finished, now);
                }
            }
            debug!(pod = %work.key, actions = work.actions.len(), "dispatching pod work");
            self.state.busy.insert(work.key.clone());
            let rt = self.rt.clone();
            let host = self.host.clone();
            let cx = self.cx.clone();
            let key = work.key.clone();
            let handle =
                tasks.spawn(async move { execute(rt.as_ref(), host.as_ref(), &cx, work).await });
            self.running.insert(handle.id(), key);
        }
        self.announce_backoffs(&planned.backing_off, snapshot);
        // Synced once every pod the manifests ask for is as asked. Tearing down pods no
        // manifest asks for any more (orphans, possibly with long grace periods) goes on in
        // their own tasks and holds up neither readiness nor other pods.
        let desired_pending = desired_work
            || self
                .state
                .busy
                .iter()
                .any(|k| snapshot.pods.contains_key(k));
        if !desired_pending && !*snapshot_synced {
            *snapshot_synced = true;
            if !self.state.synced {
                info!(pods = snapshot.pods.len(), "first full reconcile done");
            }
            self.state.synced = true;
        }
        self.state.passes += 1;
        self.state.last_pass = now;
        self.state.observed = Arc::new(observed);
        self.observed_tx.send_replace(self.state.observed.clone());
        self.state.backing_off = planned.backing_off;
        self.publish();
        if let Some(m) = &self.metrics {
            m.reconcile_pass(started.elapsed());
        }
        match (planned.wake_at, pull_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Moves the rollback tracks on and reports rollbacks; returns the snapshot to plan.
    fn roll_out(
        &mut self,
        snapshot: &Arc<Snapshot>,
        observed: &Observed,
        probes: &ProbeResults,
        now: Timestamp,
    ) -> Arc<Snapshot> {
        let before = self.rollouts.tracks.clone();
        let step = self
            .rollouts
            .step(snapshot, observed, probes, now, &self.rollback);
        for r in &step.rolled_back {
            warn!(pod = %r.key, failed = %r.from, restored = %r.to, reason = %r.reason,
                "ROLLED BACK: the new version failed; its last healthy version runs again, and the new one is tried again only when its file changes");
            self.cx.events.emit(PodEvent {
                key: r.key.clone(),
                type_: EventType::Warning,
                reason: "RolledBack".to_owned(),
                message: format!(
                    "Rolled back to the last healthy version {}: version {} failed: {}",
                    r.to, r.from, r.reason
                ),
                field_path: None,
                at: now,
            });
            if let Some(m) = &self.metrics {
                m.rolled_back();
            }
        }
        // (from the tracks each pass: tracks loaded from disk count from the first)
        self.state.rolled_back = self
            .rollouts
            .tracks
            .keys()
            .filter_map(|k| self.rollouts.note(k).map(|n| (k.clone(), n)))
            .collect();
        if self.rollouts.tracks != before {
            for (key, track) in &self.rollouts.tracks {
                let (state, hash) = match track {
                    Track::Healthy(p) => ("healthy", &p.hash),
                    Track::Trying { to, .. } => ("trying", to),
                    Track::RolledBack { rejected, .. } => ("rolled back", rejected),
                };
                debug!(pod = %key, state, version = %hash, "rollback track");
            }
            if let Some(store) = &self.rollout_store {
                store.save(&self.rollouts);
            }
        }
        self.publish_effective(step.effective.clone());
        step.effective
    }

    fn publish_effective(&self, effective: Arc<Snapshot>) {
        self.effective_tx.send_if_modified(|old| {
            // (a rolled-back snapshot is rebuilt each pass: equal is unchanged)
            if old
                .as_ref()
                .is_some_and(|o| Arc::ptr_eq(o, &effective) || **o == *effective)
            {
                false
            } else {
                *old = Some(effective);
                true
            }
        });
    }

    /// Asks the runtime what it is; on failure, the next pass asks again.
    async fn ask_version(&mut self) {
        match self.rt.version().await {
            Ok(v) => {
                info!(runtime = %v.describe(), "container runtime connected");
                self.state.runtime = Some(v);
            }
            Err(e) => debug!(error = %e, "runtime did not say its version; asking next pass"),
        }
    }

    /// Warns once about each status call that failed, and when such failures clear.
    fn report_unreadable(&mut self, observed: &Observed) {
        let now: BTreeSet<String> = observed.unreadable.iter().map(|e| e.to_string()).collect();
        for error in now.difference(&self.unreadable) {
            warn!(%error, "runtime status call failed; its details are asked for again next pass");
        }
        if now.is_empty() && !self.unreadable.is_empty() {
            info!("runtime status calls succeed again");
        }
        self.unreadable = now;
    }

    /// Emits the kubelet's `BackOff` event once per backoff period of each container.
    fn announce_backoffs(&mut self, backing_off: &[BackingOff], snapshot: &Snapshot) {
        let current: BTreeSet<(PodKey, String, Timestamp)> = backing_off
            .iter()
            .map(|b| (b.key.clone(), b.name.clone(), b.until))
            .collect();
        for (key, name, until) in current.difference(&self.announced_backoffs) {
            let init = snapshot
                .pods
                .get(key)
                .and_then(|p| p.container(name))
                .is_some_and(|(k, _)| k == crate::pod::ContainerKind::Init);
            self.cx.events.emit(PodEvent {
                key: key.clone(),
                type_: EventType::Warning,
                reason: "BackOff".to_owned(),
                message: format!(
                    "Back-off restarting failed container {name} in pod {}",
                    key.name
                ),
                field_path: Some(container_field(init, name)),
                at: self.clock.now(),
            });
            info!(pod = %key, container = %name, until = %until, "container in CrashLoopBackOff");
        }
        self.announced_backoffs = current;
    }

    /// A pod task ended: its outcome, or — should it have panicked — a failure, so that the
    /// pod is never left marked busy.
    fn joined(&mut self, done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) {
        let outcome = match done {
            Ok((id, outcome)) => {
                self.running.remove(&id);
                outcome
            }
            Err(e) => {
                let Some(key) = self.running.remove(&e.id()) else {
                    return;
                };
                warn!(pod = %key, error = %e, "pod task died");
                Outcome {
                    key,
                    result: Err(WorkError {
                        container: None,
                        held: false,
                        blocks_new_sandbox: false,
                        error: StepError::TaskDied(e.to_string()),
                    }),
                }
            }
        };
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        let key = outcome.key;
        self.state.busy.remove(&key);
        match outcome.result {
            Ok(()) => {
                self.pod_retry.reset(&key);
                self.retry_at.remove(&key);
                self.state.start_errors.retain(|(k, _), _| *k != key);
                if self.state.pod_errors.remove(&key).is_some() {
                    info!(pod = %key, "pod work succeeded after earlier errors");
                }
            }
            Err(failure) => {
                let now = self.clock.now();
                let message = failure.describe();
                if failure.held
                    && let Some(m) = &self.metrics
                {
                    m.update_held();
                }
                if self.state.pod_errors.get(&key) != Some(&message) {
                    warn!(pod = %key, error = %message, "pod work failed; will retry");
                } else {
                    debug!(pod = %key, error = %message, "pod work failed again");
                }
                if let Some(container) = failure.container {
                    self.state.start_errors.insert(
                        (key.clone(), container),
                        StartError {
                            reason: failure.error.waiting_reason(),
                            message: message.clone(),
                            image: failure.error.failed_pull().map(str::to_owned),
                            at: now,
                        },
                    );
                }
                if let Some(image) = failure.error.failed_pull() {
                    // As the kubelet: the pull is tried again after its own backoff.
                    let image = image.to_owned();
                    self.pull_retry.next(&image, now, now);
                    let delay = self
                        .pull_retry
                        .delay(&image)
                        .unwrap_or(Policy::IMAGE_PULL.initial);
                    self.retry_at.insert(key.clone(), now.plus(delay));
                } else if !failure.error.is_unavailable() {
                    self.pod_retry.next(&key, now, now);
                    let delay = self
                        .pod_retry
                        .delay(&key)
                        .unwrap_or(Policy::POD_WORK.initial);
                    self.retry_at.insert(key.clone(), now.plus(delay));
                }
                self.state.pod_errors.insert(key, message);
            }
        }
        self.publish();
    }

    /// A container whose pull failed shows `ErrImagePull` for one relist period (the
    /// kubelet's until its next sync), then `ImagePullBackOff` while its pod waits to try
    /// again. Returns when the next such change is due.
    fn image_pull_backoff(&mut self, snapshot: &Snapshot, now: Timestamp) -> Option<Timestamp> {
        let mut wake = None;
        for ((key, name), e) in self.state.start_errors.iter_mut() {
            if e.reason != WaitingReason::ErrImagePull || !self.retry_at.contains_key(key) {
                continue;
            }
            let due = e.at.plus(self.config.relist_period);
            if due > now {
                wake = earliest(wake, due);
                continue;
            }
            let image = e.image.clone().unwrap_or_default();
            e.reason = WaitingReason::ImagePullBackOff;
            e.message = format!(
                "Back-off pulling image {image:?}: ErrImagePull: {}",
                e.message
            );
            let init = snapshot
                .pods
                .get(key)
                .and_then(|p| p.container(name))
                .is_some_and(|(k, _)| k == crate::pod::ContainerKind::Init);
            self.cx.events.emit(PodEvent {
                key: key.clone(),
                type_: EventType::Normal,
                reason: "BackOff".to_owned(),
                message: format!("Back-off pulling image {image:?}"),
                field_path: Some(container_field(init, name)),
                at: now,
            });
        }
        wake
    }

    fn publish(&self) {
        self.state_tx.send_replace(Arc::new(self.state.clone()));
    }
}

/// Keeps a subscription to the runtime's exit events, forwarding each as a wake-up.
///
/// A stream can end under podvisor: CRI-O ends `GetContainerEvents` when it restarts, and
/// any runtime drops it with the connection. Exits in the gap were never sent, so a new
/// subscription after a lost one wakes the loop once, to relist at once rather than on the
/// next tick.
async fn forward_exits<R: Runtime>(
    rt: Arc<R>,
    tx: tokio::sync::mpsc::Sender<()>,
    relist: Duration,
    metrics: Option<Arc<Metrics>>,
    shutdown: CancellationToken,
) {
    let mut retry = Delays::new(Policy::EXIT_EVENTS);
    let mut reported = false;
    let mut lost = false;
    let mut had_stream = false;
    loop {
        match rt.exits().await {
            Ok(Some((source, mut stream))) => {
                info!(source = ?source, "watching container exits");
                if lost {
                    let _ = tx.try_send(());
                }
                had_stream = true;
                reported = false;
                retry.reset();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        next = stream.next() => match next {
                            Some(()) => {
                                if let Some(m) = &metrics {
                                    m.exit_event(source.as_str());
                                }
                                let _ = tx.try_send(());
                            }
                            None => break,
                        },
                    }
                }
                debug!(source = ?source, "container exit stream ended; subscribing again");
            }
            // after a stream, "none" may be a runtime still starting up: ask again later
            Ok(None) if had_stream => {
                debug!("runtime offers no container events now; asking again")
            }
            Ok(None) => {
                info!(relist = ?relist, "runtime offers no container events; relisting finds exits");
                return;
            }
            Err(e) => {
                if !reported {
                    debug!(error = %e, "cannot subscribe to container exits yet");
                    reported = true;
                }
            }
        }
        lost = true;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(retry.next_drawn()) => {}
        }
    }
}

/// The pods whose version differs between two snapshots (new ones included).
fn edited<'a>(old: &Snapshot, new: &'a Snapshot) -> Vec<&'a PodKey> {
    new.pods
        .iter()
        .filter(|(k, p)| old.pods.get(*k).is_none_or(|o| o.hash != p.hash))
        .map(|(k, _)| k)
        .collect()
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "run_tests.rs"]
mod tests;

//! The mirror task's loop. Outside: load the kubeconfig, connect, back off. Inside a session
//! (one client, one Node UID): keep the Node status and Lease current, reconcile mirror pods
//! on every manifest change and every resync, patch changed statuses, post buffered events.
//!
//! Decisions come from `plan`, `status::StatusTracker`, `node::Heartbeat`, `retry` and
//! [`crate::backoff`]; this file only sequences API calls and classifies their outcomes. Any request
//! that finds the API server out of reach ends the session; a refusal is handled where it
//! happens and never retried faster than its backoff.

mod informer;
mod reject;
mod sync;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};

use super::MirrorConfig;
use super::client::{self, MirrorError};
use super::correlator::{Aggregator, SpamFilter};
use super::events::{self, EventBuffer, EventPoster};
use super::foreign;
use super::node::{self, Heartbeat, LEASE_NAMESPACE, LeaseKeeper, Readiness};
use super::pod::{NodeRef, ObservedMirror};
use super::retry::RetryGate;
use super::state::{MirrorPhase, MirrorState, Publisher};
use super::status::StatusTracker;
use crate::backoff::Delays;
use crate::event::PodEvent;
use crate::manifest::Snapshot;
use crate::pod::PodKey;
use crate::status::NodeStatus;

/// The event buffer, filled by [`Inbox::drain`] and emptied by the worker.
#[derive(Clone, Debug)]
pub struct Inbox(Arc<(Mutex<EventBuffer>, Notify)>);

impl Inbox {
    /// An empty inbox holding at most `capacity` events.
    pub fn new(capacity: usize) -> Inbox {
        Inbox(Arc::new((
            Mutex::new(EventBuffer::new(capacity)),
            Notify::new(),
        )))
    }

    fn lock(&self) -> MutexGuard<'_, EventBuffer> {
        // The buffer stays consistent across a panic in another holder: push and take
        // never leave it half-changed.
        self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves events from the channel into the buffer, whatever the API server does. Pends
    /// forever once every sender is gone.
    pub async fn drain(self, mut events: mpsc::Receiver<PodEvent>) {
        while let Some(event) = events.recv().await {
            self.lock().push(event);
            self.0.1.notify_one();
        }
        std::future::pending::<()>().await;
    }
}

/// The last refusal per topic, so that a refusal met again on every retry is logged at
/// warn once, then at debug.
#[derive(Debug, Default)]
struct Refusals(BTreeMap<String, String>);

impl Refusals {
    /// Whether `message` is news for `topic`.
    fn is_new(&mut self, topic: String, message: &str) -> bool {
        if self.0.get(&topic).map(String::as_str) == Some(message) {
            return false;
        }
        // Topics name pods; a bound keeps a long-lived daemon's memory flat.
        if self.0.len() >= 1024 {
            self.0.clear();
        }
        self.0.insert(topic, message.to_owned());
        true
    }
}

/// Why a session ended.
enum End {
    /// The API server is out of reach: back off, then reconnect.
    Lost(MirrorError),
    /// The Node is gone or was recreated: look it up again at once.
    NodeChanged,
    /// The client certificate changed: connect again with it at once.
    Rotated,
}

impl From<MirrorError> for End {
    fn from(err: MirrorError) -> End {
        End::Lost(err)
    }
}

/// State that lives as long as one client and one Node object.
struct Session {
    client: kube::Client,
    node: NodeRef,
    mirrors: BTreeMap<PodKey, ObservedMirror>,
    statuses: StatusTracker,
    lease: LeaseKeeper,
    lease_at: Instant,
    lease_backoff: Delays,
    node_check_at: Instant,
    resync_at: Instant,
    synced_at: Option<Instant>,
    status_wake: Option<Instant>,
    mirrors_dirty: bool,
    check_node: bool,
    /// The pod watch, while one is open.
    watch: Option<informer::PodStream>,
    /// The last resourceVersion seen, to resume the watch from.
    version: String,
    /// The pods must be listed (anew): at the start, and when the watch's version expired.
    need_list: bool,
    /// Pods bound here that are not mirror pods, to fail.
    foreign: BTreeMap<String, foreign::Foreign>,
}

/// The mirror task.
pub struct Worker {
    cfg: MirrorConfig,
    desired: watch::Receiver<Option<Arc<Snapshot>>>,
    desired_open: bool,
    status: watch::Receiver<Arc<NodeStatus>>,
    status_open: bool,
    inbox: Inbox,
    out: Publisher,
    retry: RetryGate,
    heartbeat: Heartbeat,
    poster: EventPoster,
    aggregator: Aggregator,
    spam: SpamFilter,
    events_refused: u64,
    refusals: Refusals,
}

/// Resolves when the certificate manager has a new client certificate; never without one.
async fn rotated(credentials: &mut Option<watch::Receiver<u64>>) {
    if let Some(c) = credentials.as_mut()
        && c.changed().await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

fn earliest(a: Instant, b: Option<Instant>) -> Instant {
    b.map_or(a, |b| a.min(b))
}

impl Worker {
    /// A worker over its inputs, publishing on `state`.
    pub fn new(
        cfg: MirrorConfig,
        desired: watch::Receiver<Option<Arc<Snapshot>>>,
        status: watch::Receiver<Arc<NodeStatus>>,
        inbox: Inbox,
        state: watch::Sender<MirrorState>,
    ) -> Worker {
        let retry = RetryGate::new(cfg.timings.reject);
        Worker {
            cfg,
            desired,
            desired_open: true,
            status,
            status_open: true,
            inbox,
            out: Publisher::new(state),
            retry,
            heartbeat: Heartbeat::default(),
            poster: EventPoster::default(),
            aggregator: Aggregator::default(),
            spam: SpamFilter::default(),
            events_refused: 0,
            refusals: Refusals::default(),
        }
    }

    /// Connects, runs sessions and backs off between them, forever.
    pub async fn run(mut self) {
        let t = self.cfg.timings.clone();
        let mut backoff = Delays::new(t.retry);
        self.out.set_phase(MirrorPhase::Connecting { error: None });
        loop {
            self.note_desired();
            let metrics = self.cfg.metrics.as_ref();
            let (path, identity) = (&self.cfg.kubeconfig, self.cfg.identity.as_deref());
            if let Some(c) = self.cfg.credentials.as_mut() {
                c.mark_unchanged();
            }
            let outcome = match client::connect_as(path, identity, t.request_timeout, metrics).await
            {
                Err(e) => {
                    self.out.set_phase(MirrorPhase::Connecting {
                        error: Some(e.reason()),
                    });
                    Err(())
                }
                Ok(client) => self.session(client, &mut backoff).await,
            };
            self.refresh_counters();
            self.out.flush();
            if outcome.is_err() {
                // New credentials (a bootstrapped kubeconfig) end the wait.
                tokio::select! {
                    () = sleep(backoff.next_drawn()) => {}
                    () = rotated(&mut self.cfg.credentials) => {}
                }
            }
        }
    }

    /// Records why a session ended: the server out of reach, or refusing (a 4xx such as
    /// 403 when the node's credentials may not act for `--node-name`).
    fn unreachable(&mut self, err: &MirrorError) {
        let since = self.cfg.clock.now();
        let phase = if err.is_unreachable() {
            MirrorPhase::Unreachable {
                error: err.reason(),
                since,
            }
        } else {
            let mut error = err.reason();
            if err.is_code(403) {
                error.push_str(&format!(
                    " (are the kubeconfig's credentials those of node {:?}?)",
                    self.cfg.node_name.as_str()
                ));
            }
            MirrorPhase::Refused { error, since }
        };
        self.out.set_phase(phase);
    }

    /// One session: find the Node, then keep everything in sync until the server is lost
    /// (`Err`) or the Node changes (`Ok`, to look it up again at once).
    async fn session(&mut self, client: kube::Client, backoff: &mut Delays) -> Result<(), ()> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node = loop {
            match self.find_node(&nodes).await {
                Ok(Some(node)) => break node,
                Ok(None) => {
                    self.note_desired();
                    self.refresh_counters();
                    self.out.flush();
                    sleep(backoff.next_drawn()).await;
                }
                Err(e) => {
                    self.unreachable(&e);
                    return Err(());
                }
            }
        };
        self.out.set_node_uid(Some(node.uid.clone()));
        self.heartbeat.forget();
        let now = Instant::now();
        let t = &self.cfg.timings;
        let mut s = Session {
            client,
            node,
            mirrors: BTreeMap::new(),
            statuses: StatusTracker::default(),
            lease: LeaseKeeper::default(),
            lease_at: now,
            lease_backoff: Delays::new(
                t.retry
                    .with(t.retry.initial, t.retry.max.min(t.lease_renew)),
            ),
            node_check_at: now + t.node_status_update,
            resync_at: now,
            synced_at: None,
            status_wake: None,
            mirrors_dirty: true,
            check_node: false,
            watch: None,
            version: String::new(),
            need_list: true,
            foreign: BTreeMap::new(),
        };
        match self.sync_loop(&mut s, backoff).await {
            End::NodeChanged => Ok(()),
            End::Rotated => {
                info!("client certificate changed; connecting with it");
                Ok(())
            }
            End::Lost(e) => {
                self.unreachable(&e);
                Err(())
            }
        }
    }

    /// Looks the Node up, registering or adopting it; `None` while waiting for it.
    async fn find_node(&mut self, api: &Api<Node>) -> Result<Option<NodeRef>, MirrorError> {
        let name = self.cfg.node_name.clone();
        let timeout = self.cfg.timings.request_timeout;
        let waiting = |out: &mut Publisher, reason: String| {
            out.set_phase(MirrorPhase::WaitingForNode { reason });
            None
        };
        let found = match node::get(api, name.as_str(), timeout).await? {
            Some(n) if n.metadata.deletion_timestamp.is_some() => {
                return Ok(waiting(
                    &mut self.out,
                    format!("Node {name:?} is being deleted"),
                ));
            }
            Some(n) => {
                if self.cfg.register_node {
                    self.adopt(api, &n).await?;
                }
                let readiness = Readiness::of(&self.status.borrow());
                self.heartbeat
                    .adopt(&node::server_conditions(&n), &readiness);
                n
            }
            None if !self.cfg.register_node => {
                let why = format!("Node {name:?} does not exist (--register-node=false)");
                return Ok(waiting(&mut self.out, why));
            }
            None => {
                let t = self.cfg.clock.now();
                let readiness = Readiness::of(&self.status.borrow());
                let info = &self.cfg.node_info;
                let status = node::node_status(info, &readiness, t, &|_| t);
                let new = node::new_node(
                    &name,
                    info,
                    &self.cfg.node_labels,
                    &self.cfg.register_taints,
                    status,
                );
                match node::register(api, &new, timeout).await {
                    Ok(n) => {
                        info!(node = %name, "registered Node");
                        n
                    }
                    Err(e) if e.is_unreachable() => return Err(e),
                    Err(e) => {
                        let why = format!("cannot register Node {name:?}: {}", e.reason());
                        return Ok(waiting(&mut self.out, why));
                    }
                }
            }
        };
        match found.metadata.uid {
            Some(uid) => Ok(Some(NodeRef { name, uid })),
            None => Ok(waiting(&mut self.out, format!("Node {name:?} has no UID"))),
        }
    }

    /// Puts the default labels back on an existing Node, as the kubelet does on start.
    async fn adopt(&mut self, api: &Api<Node>, existing: &Node) -> Result<(), MirrorError> {
        let wanted = node::default_labels(&self.cfg.node_name, &self.cfg.node_info);
        let missing = node::missing_labels(existing, &wanted);
        if missing.is_empty() {
            return Ok(());
        }
        let name = self.cfg.node_name.as_str();
        match node::label(api, name, &missing, self.cfg.timings.request_timeout).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_unreachable() => Err(e),
            Err(e) => {
                warn!(node = %name, error = %e.reason(), "cannot set the default Node labels");
                Ok(())
            }
        }
    }

    async fn sync_loop(&mut self, s: &mut Session, backoff: &mut Delays) -> End {
        loop {
            if let Err(end) = self.step(s).await {
                return end;
            }
            if s.synced_at.is_some()
                && !matches!(self.out.state().phase, MirrorPhase::Synced { .. })
            {
                backoff.reset();
                let since = self.cfg.clock.now();
                self.out.set_phase(MirrorPhase::Synced { since });
            }
            self.refresh_counters();
            self.out.flush();
            let t = &self.cfg.timings;
            let mut wake = s.lease_at.min(s.resync_at).min(s.node_check_at);
            wake = earliest(wake, self.heartbeat.next_due(t.node_status_report));
            wake = earliest(wake, self.retry.next_retry_after(s.synced_at));
            wake = earliest(wake, s.status_wake);
            let desired_open = self.desired_open;
            let status_open = self.status_open;
            let idle = t.watch_timeout + t.request_timeout;
            tokio::select! {
                event = informer::next_event(&mut s.watch, idle) => self.on_watch_event(s, event),
                changed = self.desired.changed(), if desired_open => {
                    self.desired_open = changed.is_ok();
                    s.mirrors_dirty = true;
                }
                changed = self.status.changed(), if status_open => {
                    self.status_open = changed.is_ok();
                }
                () = self.inbox.0.1.notified() => {}
                () = sleep_until(wake) => {}
                () = rotated(&mut self.cfg.credentials) => return End::Rotated,
            }
        }
    }

    /// One pass over everything that is due.
    async fn step(&mut self, s: &mut Session) -> Result<(), End> {
        let now = Instant::now();
        self.keep_node(s, now).await?;
        if s.need_list {
            self.list_mirrors(s).await?;
        }
        if s.watch.is_none() {
            self.start_watch(s).await?;
            if s.need_list {
                // The version expired before the watch began: list, then watch.
                self.list_mirrors(s).await?;
                self.start_watch(s).await?;
            }
        }
        let retry_due = self
            .retry
            .next_retry_after(s.synced_at)
            .is_some_and(|at| at <= now);
        if s.mirrors_dirty || retry_due || now >= s.resync_at {
            self.sync_mirrors(s).await?;
        }
        self.sync_statuses(s).await?;
        self.reject_foreign(s).await?;
        self.post_events(s).await?;
        Ok(())
    }

    /// Node check, node status and Lease when due. A Node that is gone, recreated or being
    /// deleted ends the session, to be looked up again.
    async fn keep_node(&mut self, s: &mut Session, now: Instant) -> Result<(), End> {
        let t = self.cfg.timings.clone();
        let nodes: Api<Node> = Api::all(s.client.clone());
        let name = s.node.name.as_str().to_owned();
        if std::mem::take(&mut s.check_node) || now >= s.node_check_at {
            s.node_check_at = now + t.node_status_update;
            match node::get(&nodes, &name, t.request_timeout).await? {
                Some(n)
                    if n.metadata.uid.as_deref() == Some(s.node.uid.as_str())
                        && n.metadata.deletion_timestamp.is_none() =>
                {
                    // Compared with what the server holds, as the kubelet does every 10 s:
                    // a condition someone else changed is written back at once.
                    let readiness = Readiness::of(&self.status.borrow());
                    self.heartbeat
                        .adopt(&node::server_conditions(&n), &readiness);
                    if node::conditions_drifted(&n, &readiness) {
                        self.heartbeat.forget();
                    }
                }
                _ => {
                    info!(node = %name, "Node deleted or recreated; looking it up again");
                    return Err(End::NodeChanged);
                }
            }
        }
        let readiness = Readiness::of(&self.status.borrow());
        if self.heartbeat.due(&readiness, now, t.node_status_report) {
            let ts = self.cfg.clock.now();
            let flipped = self.heartbeat.observe(&readiness, ts);
            let heartbeat = &self.heartbeat;
            let status =
                node::node_status(&self.cfg.node_info, &readiness, ts, &|c| heartbeat.since(c));
            match node::write_status(&nodes, &name, &status, t.request_timeout).await {
                Ok(n) if n.metadata.uid.as_deref() != Some(s.node.uid.as_str()) => {
                    return Err(End::NodeChanged);
                }
                Ok(_) => {}
                Err(e) if e.is_code(404) => return Err(End::NodeChanged),
                Err(e) if e.is_unreachable() => return Err(e.into()),
                Err(e) => warn!(node = %name, error = %e.reason(), "node status refused"),
            }
            // A refused write is retried on the next change or report, not in a loop.
            self.heartbeat.written(readiness, now);
            for (nth, (kind, holds)) in flipped.into_iter().enumerate() {
                let Some(reason) = events::node_event_reason(kind, holds) else {
                    continue;
                };
                let event = events::new_node_event(&s.node.name, reason, ts, nth);
                match events::post_node_event(&s.client, &event, t.request_timeout).await {
                    Ok(()) => debug!(node = %name, reason, "node event posted"),
                    Err(e) if e.is_unreachable() => return Err(e.into()),
                    Err(e) => {
                        debug!(node = %name, reason, error = %e.reason(), "node event refused")
                    }
                }
            }
        }
        if now >= s.lease_at {
            let leases: Api<Lease> = Api::namespaced(s.client.clone(), LEASE_NAMESPACE);
            let ts = self.cfg.clock.now();
            match s
                .lease
                .renew(&leases, &s.node, t.lease_duration, ts, t.request_timeout)
                .await
            {
                Ok(()) => {
                    s.lease_backoff.reset();
                    s.lease_at = now + t.lease_renew;
                }
                Err(e) if e.is_unreachable() => return Err(e.into()),
                Err(e) => {
                    let reason = e.reason();
                    if e.is_code(409) || !self.refusals.is_new("lease".into(), &reason) {
                        debug!(node = %name, error = %reason, "node lease refused");
                    } else {
                        warn!(node = %name, error = %reason, "node lease refused; retrying");
                    }
                    s.lease.forget();
                    s.lease_at = now + s.lease_backoff.next_drawn();
                }
            }
        }
        Ok(())
    }
}

//! The session's three jobs: mirror pods (list, plan, apply), statuses (patch what changed)
//! and events (post what can be posted).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{End, Session, Worker};
use crate::backoff::jitter;
use crate::manifest::Snapshot;
use crate::mirror::client::{MirrorError, call};
use crate::mirror::events::Route;
use crate::mirror::plan::{self, DeleteReason, MirrorAction, Orphans};
use crate::mirror::pod;
use crate::mirror::state::PodMirror;
use crate::mirror::status::{self, StatusDecision};
use crate::pod::{PodKey, StaticPod};
use crate::status::PodReport;

impl Worker {
    /// The static pods and whether orphaned mirror pods may be deleted: only once the
    /// manifests are read, and not while a rejected file's pods are unknown (they keep
    /// running, so their mirror pods stay too).
    fn desired(&self) -> (Arc<Snapshot>, Orphans) {
        match self.desired.borrow().clone() {
            None => (Arc::default(), Orphans::Keep),
            Some(snapshot) if snapshot.untouchable.is_empty() => (snapshot, Orphans::Delete),
            Some(snapshot) => (snapshot, Orphans::Keep),
        }
    }

    /// Gives every static pod a mirror state (`Pending` to begin with) and forgets the others.
    pub(super) fn note_desired(&mut self) {
        let (snapshot, _) = self.desired();
        let desired = &snapshot.pods;
        for key in desired.keys() {
            if self.out.pod(key).is_none() {
                self.out.set_pod(key, PodMirror::Pending);
            }
        }
        self.out.retain_pods(|k| desired.contains_key(k));
        self.retry.retain(|k| desired.contains_key(k));
    }

    /// Copies the event buffer's figures into the counters.
    pub(super) fn refresh_counters(&mut self) {
        let (pending, dropped) = {
            let buffer = self.inbox.lock();
            (buffer.len() as u64, buffer.dropped())
        };
        let refused = self.events_refused;
        let counters = self.out.counters();
        counters.events_pending = pending;
        counters.events_dropped = dropped + refused;
    }

    /// Plans the mirror pods against what the watch knows, applies the plan, and updates
    /// pod states.
    pub(super) async fn sync_mirrors(&mut self, s: &mut Session) -> Result<(), End> {
        // Retries falling due after this instant are left for the next pass.
        let started = Instant::now();
        self.desired.borrow_and_update();
        let (snapshot, orphans) = self.desired();
        let desired = &snapshot.pods;
        for action in plan::plan(desired, &s.mirrors, &s.node.uid, orphans) {
            match action {
                MirrorAction::Delete { key, uid, reason } => {
                    self.delete_mirror(s, &key, &uid, reason).await?;
                }
                MirrorAction::Create { key } => {
                    if let Some(pod) = desired.get(&key) {
                        self.create_mirror(s, pod).await?;
                    }
                }
            }
        }
        self.note_desired();
        for (key, pod) in desired.iter() {
            match s.mirrors.get(key) {
                Some(m) if m.is_mirror_of(pod) && !m.deleting => {
                    self.retry.clear(key);
                    self.out
                        .set_pod(key, PodMirror::Mirrored { uid: m.uid.clone() });
                }
                _ if matches!(self.out.pod(key), Some(PodMirror::Rejected { .. })) => {}
                _ => self.out.set_pod(key, PodMirror::Pending),
            }
        }
        s.mirrors_dirty = false;
        s.synced_at = Some(started);
        s.resync_at = Instant::now() + self.cfg.timings.resync;
        self.out.counters().last_sync = Some(self.cfg.clock.now());
        Ok(())
    }

    async fn delete_mirror(
        &mut self,
        s: &mut Session,
        key: &PodKey,
        uid: &str,
        reason: DeleteReason,
    ) -> Result<(), End> {
        let api: Api<Pod> = Api::namespaced(s.client.clone(), &key.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match call(
            self.cfg.timings.request_timeout,
            api.delete(&key.name, &params),
        )
        .await
        {
            Ok(_) => {
                info!(pod = %key, uid, reason = %reason, "deleted mirror pod");
                self.out.counters().mirrors_deleted += 1;
                s.mirrors.remove(key);
            }
            // Already gone, or replaced by someone: the next list tells which.
            Err(e) if e.is_code(404) || e.is_code(409) => {
                s.mirrors.remove(key);
            }
            Err(e) if e.is_unreachable() => return Err(e.into()),
            Err(e) => {
                let reason = e.reason();
                if self.refusals.is_new(format!("delete {key}"), &reason) {
                    warn!(pod = %key, uid, error = %reason, "cannot delete mirror pod; retrying at resync");
                } else {
                    debug!(pod = %key, uid, error = %reason, "cannot delete mirror pod");
                }
            }
        }
        Ok(())
    }

    async fn create_mirror(&mut self, s: &mut Session, static_pod: &StaticPod) -> Result<(), End> {
        let key = &static_pod.key;
        let now = Instant::now();
        // Still there: its deletion failed, and creating would only collide.
        if s.mirrors.contains_key(key) || !self.retry.ready(key, &static_pod.hash, now) {
            return Ok(());
        }
        let timeout = self.cfg.timings.request_timeout;
        let api: Api<Pod> = Api::namespaced(s.client.clone(), &key.namespace);
        let body = pod::build(static_pod, &s.node);
        let refusal = match call(timeout, api.create(&PostParams::default(), &body)).await {
            Ok(created) => {
                if let Some(m) = pod::observe(&created) {
                    info!(pod = %key, uid = %m.uid, hash = %static_pod.hash, "created mirror pod");
                    self.out.counters().mirrors_created += 1;
                    self.out
                        .set_pod(key, PodMirror::Mirrored { uid: m.uid.clone() });
                    self.retry.clear(key);
                    s.mirrors.insert(key.clone(), m);
                }
                return Ok(());
            }
            Err(e) if e.is_unreachable() => return Err(e.into()),
            Err(e) if e.is_code(409) => match self.existing(&api, s, static_pod).await? {
                true => return Ok(()),
                false => e,
            },
            Err(e) => {
                // The Node may be gone (404) or recreated with another UID (403).
                s.check_node |= e.is_code(404) || e.is_code(403);
                e
            }
        };
        self.out.counters().mirrors_rejected += 1;
        self.retry.failed(key, &static_pod.hash, now, jitter());
        self.out.set_pod(
            key,
            PodMirror::Rejected {
                reason: refusal.reason(),
            },
        );
        Ok(())
    }

    /// After `AlreadyExists`: reads the pod in the way. A mirror pod of this version is
    /// adopted; one of ours to replace is left to the next resync. `false` when the name is
    /// taken by something podvisor must not touch.
    async fn existing(
        &mut self,
        api: &Api<Pod>,
        s: &mut Session,
        static_pod: &StaticPod,
    ) -> Result<bool, MirrorError> {
        let found = call(
            self.cfg.timings.request_timeout,
            api.get_opt(&static_pod.key.name),
        )
        .await?;
        let on_node = |p: &Pod| {
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(s.node.name.as_str())
        };
        let Some(m) = found.as_ref().filter(|p| on_node(p)).and_then(pod::observe) else {
            return Ok(false);
        };
        if m.is_mirror_of(static_pod) && !m.deleting {
            self.out
                .set_pod(&m.key, PodMirror::Mirrored { uid: m.uid.clone() });
            self.retry.clear(&m.key);
        }
        s.mirrors.insert(m.key.clone(), m);
        Ok(true)
    }

    /// Patches every status that changed onto its mirror pod of the same version.
    pub(super) async fn sync_statuses(&mut self, s: &mut Session) -> Result<(), End> {
        let node_status = self.status.borrow_and_update().clone();
        let now = Instant::now();
        let min_interval = self.cfg.timings.status_min_interval;
        s.statuses.retain(|k| node_status.pods.contains_key(k));
        s.status_wake = None;
        for (key, report) in &node_status.pods {
            let Some(mirror) = s.mirrors.get(key) else {
                continue;
            };
            // A status computed for another version must not land on this mirror pod.
            if mirror.deleting || !mirror.is_mirror_of(&report.pod) {
                continue;
            }
            let desired = status::desired(&report.pod, &report.status, mirror.status.as_ref());
            match s.statuses.decide(
                key,
                &mirror.uid,
                &desired,
                mirror.status.as_ref(),
                now,
                min_interval,
            ) {
                StatusDecision::UpToDate => {}
                StatusDecision::Wait(at) => {
                    s.status_wake = Some(s.status_wake.map_or(at, |w| w.min(at)));
                }
                StatusDecision::Patch => self.patch_status(s, key, report, desired).await?,
            }
        }
        Ok(())
    }

    async fn patch_status(
        &mut self,
        s: &mut Session,
        key: &PodKey,
        report: &PodReport,
        mut desired: PodStatus,
    ) -> Result<(), End> {
        let timeout = self.cfg.timings.request_timeout;
        let api: Api<Pod> = Api::namespaced(s.client.clone(), &key.namespace);
        let Some(mut uid) = s.mirrors.get(key).map(|m| m.uid.clone()) else {
            return Ok(());
        };
        for attempt in 0..2 {
            match status::patch(&api, &key.name, &uid, &desired, timeout).await {
                Ok(patched) => {
                    s.statuses
                        .record(key, &uid, &desired, patched.status.as_ref(), Instant::now());
                    if let Some(m) = pod::observe(&patched) {
                        s.mirrors.insert(key.clone(), m);
                    }
                    self.out.counters().status_patches += 1;
                    return Ok(());
                }
                Err(e) if e.is_unreachable() => return Err(e.into()),
                // Another UID: re-read by name and patch the mirror pod of this version.
                Err(e) if e.is_code(409) && attempt == 0 => {
                    let found = call(timeout, api.get_opt(&key.name)).await?;
                    match found.as_ref().and_then(pod::observe) {
                        Some(m) if !m.deleting && m.is_mirror_of(&report.pod) => {
                            uid = m.uid.clone();
                            desired =
                                status::desired(&report.pod, &report.status, m.status.as_ref());
                            s.mirrors.insert(key.clone(), m);
                        }
                        other => {
                            match other {
                                Some(m) => s.mirrors.insert(key.clone(), m),
                                None => s.mirrors.remove(key),
                            };
                            s.mirrors_dirty = true;
                            return Ok(());
                        }
                    }
                }
                Err(e) if e.is_code(404) => {
                    s.mirrors.remove(key);
                    s.mirrors_dirty = true;
                    return Ok(());
                }
                Err(e) => {
                    warn!(pod = %key, uid, error = %e.reason(), "status patch refused");
                    self.out.counters().status_patch_failures += 1;
                    s.statuses.record(key, &uid, &desired, None, Instant::now());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Where a pod's events go: its mirror pod when it exists; held while it is being
    /// created; by name only when it was rejected or the pod is not a static pod (any more).
    fn route(
        &self,
        desired: &BTreeMap<PodKey, Arc<StaticPod>>,
        s: &Session,
        key: &PodKey,
    ) -> Route {
        let Some(static_pod) = desired.get(key) else {
            return Route::Post(None);
        };
        match s.mirrors.get(key) {
            Some(m) if m.is_mirror_of(static_pod) && !m.deleting => {
                Route::Post(Some(m.uid.clone()))
            }
            _ if matches!(self.out.pod(key), Some(PodMirror::Rejected { .. })) => Route::Post(None),
            _ => Route::Hold,
        }
    }

    /// Posts the events that can be posted now; on losing the server, puts the rest back.
    pub(super) async fn post_events(&mut self, s: &mut Session) -> Result<(), End> {
        let (snapshot, _) = self.desired();
        let batch = {
            let session = &*s;
            self.inbox
                .lock()
                .take(|key| self.route(&snapshot.pods, session, key))
        };
        let mut rest = batch.into_iter();
        while let Some((event, uid)) = rest.next() {
            // The kubelet's event correlator: combine floods, then rate-limit per object.
            let now = self.cfg.clock.now();
            let event = self.aggregator.aggregate(event, now);
            if !self.spam.allow(&event.key.pod, now) {
                debug!(pod = %event.key.pod, reason = %event.key.reason, "event dropped by the spam filter");
                self.events_refused += 1;
                continue;
            }
            let timeout = self.cfg.timings.request_timeout;
            match self
                .poster
                .post(&s.client, &event, uid, &s.node.name, timeout)
                .await
            {
                Ok(()) => self.out.counters().events_posted += 1,
                Err(e) if e.is_unreachable() => {
                    let mut back = vec![event];
                    back.extend(rest.map(|(e, _)| e));
                    self.inbox.lock().requeue(back);
                    return Err(e.into());
                }
                Err(e) => {
                    let error = e.reason();
                    if self.refusals.is_new("event".into(), &error) {
                        warn!(pod = %event.key.pod, reason = %event.key.reason, error = %error, "event refused; dropped");
                    } else {
                        debug!(pod = %event.key.pod, reason = %event.key.reason, error = %error, "event refused; dropped");
                    }
                    self.events_refused += 1;
                }
            }
        }
        Ok(())
    }
}

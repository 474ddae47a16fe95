//! The mirror pods of this node as the kubelet's pod informer knows them: one LIST (field
//! selector `spec.nodeName=<node>`), then a WATCH from its resourceVersion, resumed from the
//! last version seen when the server ends it (every `watch_timeout`), listed again only when
//! the server says the version is too old (410). A mirror pod deleted by someone is seen at
//! once and created again; a status someone else changed is compared at once.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use tracing::debug;

use super::{End, Session, Worker};
use crate::mirror::client::{MirrorError, call};
use crate::mirror::{foreign, pod};

/// A live watch of this node's pods.
pub(super) type PodStream =
    Pin<Box<dyn Stream<Item = Result<WatchEvent<Pod>, kube::Error>> + Send>>;

/// The next event of `watch`, or `None` when it ended, failed, or stayed silent past
/// `idle` (a connection that died without a word). Pends forever without a watch.
pub(super) async fn next_event(
    watch: &mut Option<PodStream>,
    idle: std::time::Duration,
) -> Option<Result<WatchEvent<Pod>, kube::Error>> {
    match watch {
        Some(stream) => tokio::time::timeout(idle, stream.next())
            .await
            .ok()
            .flatten(),
        None => std::future::pending().await,
    }
}

impl Worker {
    fn on_node(&self, s: &Session) -> String {
        format!("spec.nodeName={}", s.node.name)
    }

    /// Lists this node's pods: the mirror pods, and the version to watch from.
    pub(super) async fn list_mirrors(&mut self, s: &mut Session) -> Result<(), End> {
        let all: Api<Pod> = Api::all(s.client.clone());
        let params = ListParams::default().fields(&self.on_node(s));
        // Even a refused list ends the session: without it nothing can be reconciled.
        let listed = call(self.cfg.timings.request_timeout, all.list(&params))
            .await
            .map_err(End::Lost)?;
        s.mirrors = listed
            .items
            .iter()
            .filter_map(pod::observe)
            .map(|m| (m.key.clone(), m))
            .collect();
        s.foreign = listed
            .items
            .iter()
            .filter_map(foreign::foreign)
            .map(|f| (f.uid.clone(), f))
            .collect();
        s.version = listed.metadata.resource_version.unwrap_or_default();
        s.need_list = false;
        s.mirrors_dirty = true;
        Ok(())
    }

    /// Starts watching from the last version seen.
    pub(super) async fn start_watch(&mut self, s: &mut Session) -> Result<(), End> {
        let all: Api<Pod> = Api::all(s.client.clone());
        let secs = u32::try_from(self.cfg.timings.watch_timeout.as_secs()).unwrap_or(290);
        let params = WatchParams::default()
            .fields(&self.on_node(s))
            .timeout(secs);
        match call(
            self.cfg.timings.request_timeout,
            all.watch(&params, &s.version),
        )
        .await
        {
            Ok(stream) => {
                s.watch = Some(stream.boxed());
                Ok(())
            }
            Err(e @ MirrorError::Refused(_)) if e.is_code(410) => {
                s.need_list = true;
                Ok(())
            }
            Err(e) => Err(End::Lost(e)),
        }
    }

    /// Applies one watch event (`None`: the stream ended or failed).
    pub(super) fn on_watch_event(
        &mut self,
        s: &mut Session,
        event: Option<Result<WatchEvent<Pod>, kube::Error>>,
    ) {
        match event {
            Some(Ok(WatchEvent::Added(p) | WatchEvent::Modified(p))) => {
                self.seen_version(s, &p);
                match foreign::foreign(&p) {
                    Some(f) => {
                        s.foreign.insert(f.uid.clone(), f);
                    }
                    None => {
                        if let Some(uid) = &p.metadata.uid {
                            s.foreign.remove(uid);
                        }
                    }
                }
                if let Some(m) = pod::observe(&p)
                    && !s.mirrors.get(&m.key).is_some_and(|held| m.older_than(held))
                {
                    s.mirrors.insert(m.key.clone(), m);
                    s.mirrors_dirty = true;
                }
            }
            Some(Ok(WatchEvent::Deleted(p))) => {
                self.seen_version(s, &p);
                if let Some(uid) = &p.metadata.uid {
                    s.foreign.remove(uid);
                }
                if let Some(m) = pod::observe(&p)
                    && s.mirrors.get(&m.key).is_some_and(|old| old.uid == m.uid)
                {
                    s.mirrors.remove(&m.key);
                    s.mirrors_dirty = true;
                }
            }
            Some(Ok(WatchEvent::Bookmark(b))) => {
                s.version = b.metadata.resource_version;
            }
            Some(Ok(WatchEvent::Error(status))) => {
                debug!(code = status.code, reason = %status.reason, "pod watch ended with an error");
                s.watch = None;
                if status.code == 410 {
                    s.need_list = true;
                }
            }
            Some(Err(e)) => {
                debug!(error = %e, "pod watch failed; resuming");
                s.watch = None;
            }
            None => s.watch = None,
        }
    }

    fn seen_version(&self, s: &mut Session, p: &Pod) {
        if let Some(v) = &p.metadata.resource_version {
            s.version.clone_from(v);
        }
    }
}

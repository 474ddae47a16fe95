//! Failing pods bound here that are not mirror pods ([`foreign`]): one status patch each, as
//! the kubelet fails a pod it cannot admit. A refusal (the pod is gone, or NodeRestriction
//! says no) drops the pod from the list; an unreachable server ends the session as any call.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use tracing::{debug, warn};

use super::{End, Session, Worker};
use crate::mirror::client::{MirrorError, call};
use crate::mirror::events::{EventKey, PendingEvent};
use crate::mirror::foreign;
use crate::pod::PodKey;

impl Worker {
    /// Fails every foreign pod seen since the last pass.
    pub(super) async fn reject_foreign(&mut self, s: &mut Session) -> Result<(), End> {
        let pending: Vec<foreign::Foreign> = s.foreign.values().cloned().collect();
        for f in pending {
            let api: Api<Pod> = Api::namespaced(s.client.clone(), &f.namespace);
            let patch = foreign::rejection(&f);
            let done = call(
                self.cfg.timings.request_timeout,
                api.patch_status(&f.name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            match done {
                Ok(_) => {
                    warn!(
                        pod = %format!("{}/{}", f.namespace, f.name),
                        reason = foreign::REASON,
                        "a pod from the API server was bound to this node: failed it (podvisor runs only static pods)"
                    );
                    self.announce_rejection(s, &f).await?;
                }
                Err(e @ MirrorError::Refused(_)) => warn!(
                    pod = %format!("{}/{}", f.namespace, f.name),
                    error = %e.reason(),
                    "a pod bound to this node could not be failed"
                ),
                Err(e) => return Err(End::Lost(e)),
            }
            s.foreign.remove(&f.uid);
        }
        Ok(())
    }

    /// The Warning event about a failed foreign pod, as the kubelet's admission failure
    /// posts one. A refused event is only logged; an unreachable server ends the session.
    async fn announce_rejection(
        &mut self,
        s: &mut Session,
        f: &foreign::Foreign,
    ) -> Result<(), End> {
        let now = self.cfg.clock.now();
        let event = PendingEvent {
            key: EventKey {
                pod: PodKey {
                    namespace: f.namespace.clone(),
                    name: f.name.clone(),
                },
                type_: "Warning",
                reason: foreign::REASON.to_owned(),
                message: foreign::MESSAGE.to_owned(),
                field_path: None,
            },
            first: now,
            last: now,
            count: 1,
            combined: None,
        };
        let timeout = self.cfg.timings.request_timeout;
        match self
            .poster
            .post(
                &s.client,
                &event,
                Some(f.uid.clone()),
                &s.node.name,
                timeout,
            )
            .await
        {
            Ok(()) => {
                self.out.counters().events_posted += 1;
                Ok(())
            }
            Err(e) if e.is_unreachable() => Err(e.into()),
            Err(e) => {
                debug!(pod = %f.name, error = %e.reason(), "event about a failed foreign pod refused");
                self.events_refused += 1;
                Ok(())
            }
        }
    }
}

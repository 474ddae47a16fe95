//! Failing pods bound here that are not mirror pods ([`foreign`]): one status patch each, as
//! the kubelet fails a pod it cannot admit. A refusal (the pod is gone, or NodeRestriction
//! says no) drops the pod from the list; an unreachable server ends the session as any call.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use tracing::warn;

use super::{End, Session, Worker};
use crate::mirror::client::{MirrorError, call};
use crate::mirror::foreign;

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
                Ok(_) => warn!(
                    pod = %format!("{}/{}", f.namespace, f.name),
                    reason = foreign::REASON,
                    "a pod from the API server was bound to this node: failed it (podvisor runs only static pods)"
                ),
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
}

//! Static pod status on the mirror pod: `PATCH pods/<name>/status` with what the status
//! module computed, only when it changed since the last patch of that mirror pod, at most once
//! per interval per pod, and again after every reconnection.
//!
//! The patch carries the mirror pod's current UID in `metadata.uid`, as the kubelet's does, so
//! that the storage layer refuses it (409) if the pod was deleted and recreated meanwhile: a
//! stale status never lands on a new mirror pod (kubernetes#137309).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{MirrorError, call};
use crate::pod::PodKey;

/// Top-level status fields the status module owns: when it leaves one unset, the patch
/// clears it (a merge patch only changes what it names). Fields other writers own
/// (`resourceClaimStatuses`, `observedGeneration`) are never cleared.
const OWNED_FIELDS: &[&str] = &[
    "conditions",
    "containerStatuses",
    "ephemeralContainerStatuses",
    "hostIP",
    "hostIPs",
    "initContainerStatuses",
    "message",
    "nominatedNodeName",
    "phase",
    "podIP",
    "podIPs",
    "reason",
    "startTime",
];

/// The JSON merge patch that makes the mirror pod `uid`'s status `status`. Lists are
/// replaced whole (so a new pod IP does not sit beside the old one); owned fields that
/// `status` leaves unset are cleared. `qosClass` is left to the API server, which computed it
/// from the mirror pod as admitted (a LimitRange may have changed it) and refuses changes.
pub fn patch_body(uid: &str, status: &PodStatus) -> Value {
    let mut fields = match serde_json::to_value(status) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    fields.remove("qosClass");
    for field in OWNED_FIELDS {
        fields.entry(*field).or_insert(Value::Null);
    }
    json!({"metadata": {"uid": uid}, "status": fields})
}

/// What to do about one pod's status now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusDecision {
    /// Patch it.
    Patch,
    /// It changed, but the last patch was too recent: patch at this instant.
    Wait(Instant),
    /// The mirror pod already has it.
    UpToDate,
}

#[derive(Clone, Debug)]
struct Sent {
    uid: String,
    status: PodStatus,
    at: Instant,
}

/// What was last patched onto each mirror pod, in this session: a new session (after a
/// reconnection) starts empty and so patches every status again.
#[derive(Debug, Default)]
pub struct StatusTracker {
    sent: BTreeMap<PodKey, Sent>,
}

impl StatusTracker {
    /// Whether `status` should be patched onto mirror pod `uid` now.
    pub fn decide(
        &self,
        key: &PodKey,
        uid: &str,
        status: &PodStatus,
        now: Instant,
        min_interval: Duration,
    ) -> StatusDecision {
        match self.sent.get(key) {
            None => StatusDecision::Patch,
            Some(s) if s.uid != uid => StatusDecision::Patch,
            Some(s) if s.status == *status => StatusDecision::UpToDate,
            Some(s) if now < s.at + min_interval => StatusDecision::Wait(s.at + min_interval),
            Some(_) => StatusDecision::Patch,
        }
    }

    /// Records a patch (or a refused one, which is not retried until the status changes).
    pub fn record(&mut self, key: &PodKey, uid: &str, status: &PodStatus, at: Instant) {
        self.sent.insert(
            key.clone(),
            Sent {
                uid: uid.to_owned(),
                status: status.clone(),
                at,
            },
        );
    }

    /// Forgets pods not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&PodKey) -> bool) {
        self.sent.retain(|k, _| keep(k));
    }
}

/// Patches the status of mirror pod `name` (UID `uid`) in `api`'s namespace.
pub async fn patch(
    api: &Api<Pod>,
    name: &str,
    uid: &str,
    status: &PodStatus,
    timeout: Duration,
) -> Result<Pod, MirrorError> {
    let body = patch_body(uid, status);
    call(
        timeout,
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&body)),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PodKey {
        PodKey {
            namespace: "kube-system".into(),
            name: "etcd-n1".into(),
        }
    }

    fn phase(p: &str) -> PodStatus {
        PodStatus {
            phase: Some(p.into()),
            ..PodStatus::default()
        }
    }

    #[test]
    fn a_status_is_patched_once_per_change_and_mirror_pod() {
        let min = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut tracker = StatusTracker::default();
        let running = phase("Running");
        assert_eq!(
            tracker.decide(&key(), "u1", &running, t0, min),
            StatusDecision::Patch
        );
        tracker.record(&key(), "u1", &running, t0);
        assert_eq!(
            tracker.decide(&key(), "u1", &running, t0, min),
            StatusDecision::UpToDate
        );
        assert_eq!(
            tracker.decide(&key(), "u2", &running, t0, min),
            StatusDecision::Patch,
            "a recreated mirror pod starts Pending and needs the status again"
        );
        let failed = phase("Failed");
        assert_eq!(
            tracker.decide(&key(), "u1", &failed, t0, min),
            StatusDecision::Wait(t0 + min),
            "rate limited"
        );
        assert_eq!(
            tracker.decide(&key(), "u1", &failed, t0 + min, min),
            StatusDecision::Patch
        );
    }

    #[test]
    fn the_patch_carries_the_uid_and_clears_owned_fields_left_unset() {
        let status = PodStatus {
            qos_class: Some("BestEffort".into()),
            ..phase("Running")
        };
        let body = patch_body("u1", &status);
        assert_eq!(body["metadata"]["uid"], "u1");
        assert_eq!(body["status"]["phase"], "Running");
        assert!(body["status"]["podIP"].is_null());
        assert!(body["status"].as_object().unwrap().contains_key("podIP"));
        assert!(!body["status"].as_object().unwrap().contains_key("qosClass"));
        assert!(
            !body["status"]
                .as_object()
                .unwrap()
                .contains_key("resourceClaimStatuses")
        );
    }
}

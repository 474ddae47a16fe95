//! Static pod status on the mirror pod, kept as the kubelet's status manager keeps it:
//!
//! * the status written is merged with what the API server holds ([`desired`]): conditions
//!   podvisor does not own (readiness gates, `DisruptionTarget`) are never touched, `Ready`
//!   counts the readiness gates' conditions as the server has them, and a condition whose
//!   status did not change keeps the server's `lastTransitionTime`;
//! * it is compared with what the server holds, not with what was last sent, so a status
//!   someone else changed is put right ([`StatusTracker`]); a status the server normalised
//!   after our own patch is not fought over;
//! * it is sent as a strategic merge patch: conditions merge by type, lists podvisor owns
//!   are replaced, fields it leaves unset are cleared;
//! * the patch carries the mirror pod's current UID in `metadata.uid`, as the kubelet's does,
//!   so that the storage layer refuses it (409) if the pod was deleted and recreated
//!   meanwhile: a stale status never lands on a new mirror pod (kubernetes#137309).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::client::{MirrorError, call};
use crate::pod::{PodKey, StaticPod};
use crate::status::conditions;

/// Top-level status fields the status module owns: when it leaves one unset, the patch
/// clears it. Fields other writers own (`resourceClaimStatuses`, `observedGeneration`,
/// `nominatedNodeName`) are never touched; `qosClass` is the API server's (computed at
/// admission, and immutable).
const OWNED_FIELDS: &[&str] = &[
    "conditions",
    "containerStatuses",
    "ephemeralContainerStatuses",
    "hostIP",
    "hostIPs",
    "initContainerStatuses",
    "message",
    "phase",
    "podIP",
    "podIPs",
    "reason",
    "startTime",
];

/// The status to write onto a mirror pod whose server-side status is `server`: ours, with
/// `Ready` judged with the server's readiness-gate conditions and unchanged conditions
/// keeping the server's transition times. Pure.
pub fn desired(pod: &StaticPod, ours: &PodStatus, server: Option<&PodStatus>) -> PodStatus {
    let theirs: &[PodCondition] = server.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let mut status = ours.clone();
    let containers_ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ContainersReady")
        .cloned();
    for c in status.conditions.iter_mut().flatten() {
        if c.type_ == "Ready"
            && let Some(cr) = &containers_ready
        {
            let since = c.last_transition_time.clone();
            *c = conditions::ready(pod, cr, theirs);
            c.last_transition_time = since;
        }
        if let Some(t) = theirs.iter().find(|t| t.type_ == c.type_)
            && t.status == c.status
            && t.last_transition_time.is_some()
        {
            c.last_transition_time = t.last_transition_time.clone();
        }
    }
    status
}

/// The part of a status podvisor owns, as JSON (times at the API's one-second precision),
/// for comparing ours with the server's.
pub fn owned_view(status: &PodStatus) -> Value {
    let mut fields = match serde_json::to_value(status) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    fields.retain(|k, _| OWNED_FIELDS.contains(&k.as_str()));
    if let Some(Value::Array(list)) = fields.get_mut("conditions") {
        list.retain(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| conditions::OWNED.contains(&t))
        });
        for c in list.iter_mut() {
            if let Value::Object(m) = c {
                m.remove("lastProbeTime");
            }
        }
        list.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    }
    Value::Object(fields)
}

/// The strategic merge patch that makes mirror pod `uid`'s status `status`: owned
/// conditions merged by type with their reason and message set or cleared, `podIPs` and
/// `hostIPs` replaced whole, owned fields left unset cleared.
pub fn patch_body(uid: &str, status: &PodStatus) -> Value {
    let mut fields = match serde_json::to_value(status) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    fields.remove("qosClass");
    if let Some(Value::Array(list)) = fields.get_mut("conditions") {
        for c in list.iter_mut() {
            if let Value::Object(m) = c {
                for k in ["reason", "message"] {
                    m.entry(k).or_insert(Value::Null);
                }
            }
        }
    }
    for list in ["podIPs", "hostIPs"] {
        if let Some(Value::Array(items)) = fields.get_mut(list) {
            items.insert(0, json!({"$patch": "replace"}));
        }
    }
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
    desired: Value,
    /// The server's owned view right after the patch (`None` when it was refused).
    after: Option<Value>,
    at: Instant,
}

/// What was last patched onto each mirror pod, in this session.
#[derive(Debug, Default)]
pub struct StatusTracker {
    sent: BTreeMap<PodKey, Sent>,
}

impl StatusTracker {
    /// Whether `desired` should be patched onto mirror pod `uid`, whose status on the
    /// server is `server`, now.
    pub fn decide(
        &self,
        key: &PodKey,
        uid: &str,
        desired: &PodStatus,
        server: Option<&PodStatus>,
        now: Instant,
        min_interval: Duration,
    ) -> StatusDecision {
        let want = owned_view(desired);
        let have = server.map(owned_view);
        if have.as_ref() == Some(&want) {
            return StatusDecision::UpToDate;
        }
        let last = self.sent.get(key).filter(|s| s.uid == uid);
        if let Some(s) = last
            && s.desired == want
        {
            match &s.after {
                // Refused: not again until it changes.
                None => return StatusDecision::UpToDate,
                // The server normalised what we sent, and nobody changed it since.
                Some(after) if have.as_ref() == Some(after) => return StatusDecision::UpToDate,
                Some(_) => {}
            }
        }
        match last {
            Some(s) if now < s.at + min_interval => StatusDecision::Wait(s.at + min_interval),
            _ => StatusDecision::Patch,
        }
    }

    /// Records a patch of `desired` and the server's status after it (`None`: refused; not
    /// retried until the status changes).
    pub fn record(
        &mut self,
        key: &PodKey,
        uid: &str,
        desired: &PodStatus,
        after: Option<&PodStatus>,
        at: Instant,
    ) {
        self.sent.insert(
            key.clone(),
            Sent {
                uid: uid.to_owned(),
                desired: owned_view(desired),
                after: after.map(owned_view),
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
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&body)),
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
    fn a_status_is_patched_when_the_server_lacks_it_and_rate_limited() {
        let min = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut tracker = StatusTracker::default();
        let running = phase("Running");
        let pending = phase("Pending");
        assert_eq!(
            tracker.decide(&key(), "u1", &running, Some(&pending), t0, min),
            StatusDecision::Patch
        );
        tracker.record(&key(), "u1", &running, Some(&running), t0);
        assert_eq!(
            tracker.decide(&key(), "u1", &running, Some(&running), t0, min),
            StatusDecision::UpToDate
        );
        assert_eq!(
            tracker.decide(&key(), "u2", &running, Some(&pending), t0, min),
            StatusDecision::Patch,
            "a recreated mirror pod starts Pending and needs the status again"
        );
        let failed = phase("Failed");
        assert_eq!(
            tracker.decide(&key(), "u1", &failed, Some(&running), t0, min),
            StatusDecision::Wait(t0 + min),
            "rate limited"
        );
        assert_eq!(
            tracker.decide(&key(), "u1", &failed, Some(&running), t0 + min, min),
            StatusDecision::Patch
        );
    }

    #[test]
    fn a_status_someone_else_changed_is_put_right_issue_17() {
        let (t0, min) = (Instant::now(), Duration::ZERO);
        let mut tracker = StatusTracker::default();
        let running = phase("Running");
        tracker.record(&key(), "u1", &running, Some(&running), t0);
        assert_eq!(
            tracker.decide(&key(), "u1", &running, Some(&phase("Failed")), t0, min),
            StatusDecision::Patch,
            "the server holds something else than podvisor says"
        );
        // What the server made of our patch (its own normalisation) is not fought over.
        let normalised = PodStatus {
            message: Some("server's words".into()),
            ..running.clone()
        };
        tracker.record(&key(), "u1", &running, Some(&normalised), t0);
        assert_eq!(
            tracker.decide(&key(), "u1", &running, Some(&normalised), t0, min),
            StatusDecision::UpToDate
        );
        // A refusal is not retried until the status changes.
        tracker.record(&key(), "u1", &running, None, t0);
        assert_eq!(
            tracker.decide(&key(), "u1", &running, Some(&phase("Pending")), t0, min),
            StatusDecision::UpToDate
        );
    }

    fn cond(t: &str, status: &str, since: i64) -> PodCondition {
        PodCondition {
            type_: t.into(),
            status: status.into(),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::from_second(since).expect("time"),
            )),
            ..PodCondition::default()
        }
    }

    #[test]
    fn others_conditions_and_readiness_gates_are_respected_issue_17() {
        let pod = crate::manifest::testing::static_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  readinessGates: [{conditionType: example.com/lb}]\n  containers: [{name: c, image: i}]\n",
        );
        let ours = PodStatus {
            conditions: Some(vec![
                cond("ContainersReady", "True", 100),
                PodCondition {
                    reason: Some("ReadinessGatesNotReady".into()),
                    ..cond("Ready", "False", 100)
                },
            ]),
            ..phase("Running")
        };
        let server = PodStatus {
            conditions: Some(vec![
                cond("ContainersReady", "True", 5),
                cond("example.com/lb", "True", 50),
                cond("DisruptionTarget", "True", 60),
            ]),
            ..phase("Running")
        };
        let want = desired(&pod, &ours, Some(&server));
        let c = want.conditions.clone().expect("conditions");
        let ready = c.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.status, "True", "the gate is True on the server");
        let cr = c.iter().find(|c| c.type_ == "ContainersReady").expect("CR");
        assert_eq!(
            cr.last_transition_time,
            cond("x", "True", 5).last_transition_time
        );
        // The patch names only our conditions: strategic merge keeps the others.
        let body = patch_body("u1", &want);
        let types: Vec<&str> = body["status"]["conditions"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        assert_eq!(types, ["ContainersReady", "Ready"]);
        assert!(
            body["status"]["conditions"][1]["reason"].is_null(),
            "cleared"
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

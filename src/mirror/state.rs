//! What the mirror task reports about itself: its phase, each static pod's mirror pod, and
//! counters for metrics. Published on a watch channel for the status API; the [`Publisher`]
//! logs changes (never ticks).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock::Timestamp;
use crate::pod::PodKey;

/// Where the mirror task is in reaching the API server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum MirrorPhase {
    /// No kubeconfig configured: podvisor runs standalone.
    #[default]
    Disabled,
    /// No usable client yet (e.g. the kubeconfig does not exist yet); `error` says why.
    Connecting {
        /// Why the last attempt failed; `None` before the first attempt ends.
        error: Option<String>,
    },
    /// The API server does not answer, answers with server errors, or refuses our credentials.
    Unreachable {
        /// The last error.
        error: String,
        /// When this outage began.
        since: Timestamp,
    },
    /// The API server answers, but refuses what podvisor must do (403: the node's
    /// credentials may not act for this node name, or an authorizer says no).
    Refused {
        /// The server's words.
        error: String,
        /// When the refusals began.
        since: Timestamp,
    },
    /// The API server answers but the Node object is not there (or cannot be registered).
    WaitingForNode {
        /// Why.
        reason: String,
    },
    /// The Node exists; mirror pods, statuses, events and the lease are being kept current.
    Synced {
        /// When the task last became synced.
        since: Timestamp,
    },
}

impl MirrorPhase {
    /// The variant's name, for metrics labels and JSON: `Disabled`, `Connecting`,
    /// `Unreachable`, `Refused`, `WaitingForNode`, `Synced`.
    pub fn name(&self) -> &'static str {
        match self {
            MirrorPhase::Disabled => "Disabled",
            MirrorPhase::Connecting { .. } => "Connecting",
            MirrorPhase::Unreachable { .. } => "Unreachable",
            MirrorPhase::Refused { .. } => "Refused",
            MirrorPhase::WaitingForNode { .. } => "WaitingForNode",
            MirrorPhase::Synced { .. } => "Synced",
        }
    }

    /// Whether the API server answered lately (waiting for the Node and refusals included).
    pub fn reachable(&self) -> bool {
        matches!(
            self,
            MirrorPhase::WaitingForNode { .. }
                | MirrorPhase::Synced { .. }
                | MirrorPhase::Refused { .. }
        )
    }
}

impl fmt::Display for MirrorPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MirrorPhase::Disabled => f.write_str("mirror pods disabled (no kubeconfig)"),
            MirrorPhase::Connecting { error: None } => f.write_str("connecting to the API server"),
            MirrorPhase::Connecting { error: Some(e) } => {
                write!(f, "connecting to the API server: {e}")
            }
            MirrorPhase::Unreachable { error, .. } => write!(f, "API server unreachable: {error}"),
            MirrorPhase::Refused { error, .. } => write!(f, "API server refuses: {error}"),
            MirrorPhase::WaitingForNode { reason } => write!(f, "waiting for Node: {reason}"),
            MirrorPhase::Synced { .. } => f.write_str("synced"),
        }
    }
}

/// One static pod's mirror pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodMirror {
    /// Not in the API server yet: waiting for the server or the Node, or being created.
    Pending,
    /// The mirror pod of the current version exists with this UID.
    Mirrored {
        /// The API server's UID of the mirror pod.
        uid: String,
    },
    /// The API server refused to create it; retried with backoff and on every manifest change.
    Rejected {
        /// The API server's message.
        reason: String,
    },
}

impl PodMirror {
    /// The variant's name: `Pending`, `Mirrored`, `Rejected`.
    pub fn name(&self) -> &'static str {
        match self {
            PodMirror::Pending => "Pending",
            PodMirror::Mirrored { .. } => "Mirrored",
            PodMirror::Rejected { .. } => "Rejected",
        }
    }
}

impl fmt::Display for PodMirror {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PodMirror::Pending => f.write_str("mirror pod pending"),
            PodMirror::Mirrored { uid } => write!(f, "mirrored as {uid}"),
            PodMirror::Rejected { reason } => write!(f, "mirror pod rejected: {reason}"),
        }
    }
}

/// Counters for metrics. They only grow, except `events_pending`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorCounters {
    /// Successful status patches.
    pub status_patches: u64,
    /// Status patches the API server refused.
    pub status_patch_failures: u64,
    /// Mirror pods created.
    pub mirrors_created: u64,
    /// Mirror pods deleted (outdated, terminating or orphaned).
    pub mirrors_deleted: u64,
    /// Mirror pod creations the API server refused.
    pub mirrors_rejected: u64,
    /// Events posted (an aggregated repeat counts once per post).
    pub events_posted: u64,
    /// Events dropped: buffer full (oldest first) or refused by the API server.
    pub events_dropped: u64,
    /// Events waiting to be posted.
    pub events_pending: u64,
    /// Connections lost after having been synced.
    pub disconnects: u64,
    /// When mirror pods were last listed and reconciled successfully.
    pub last_sync: Option<Timestamp>,
}

/// Everything the mirror task reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorState {
    /// Overall phase.
    pub phase: MirrorPhase,
    /// The Node's UID, once known.
    pub node_uid: Option<String>,
    /// Each static pod's mirror pod, for the pods of the current snapshot.
    pub pods: BTreeMap<PodKey, PodMirror>,
    /// Counters.
    pub counters: MirrorCounters,
}

impl MirrorState {
    /// The state as the status API shows it:
    /// `{"phase", "message", "since"?, "nodeUID"?, "pods": {"ns/name": {"state", "uid"?,
    /// "message"}}, "counters": {..}}`, times in RFC 3339.
    pub fn to_json(&self) -> serde_json::Value {
        let since = match &self.phase {
            MirrorPhase::Unreachable { since, .. }
            | MirrorPhase::Refused { since, .. }
            | MirrorPhase::Synced { since } => Some(since.rfc3339_nanos()),
            _ => None,
        };
        let pods: serde_json::Map<String, serde_json::Value> = self
            .pods
            .iter()
            .map(|(key, mirror)| {
                let uid = match mirror {
                    PodMirror::Mirrored { uid } => Some(uid.as_str()),
                    _ => None,
                };
                let pod =
                    json!({"state": mirror.name(), "uid": uid, "message": mirror.to_string()});
                (key.to_string(), pod)
            })
            .collect();
        let c = &self.counters;
        json!({
            "phase": self.phase.name(),
            "message": self.phase.to_string(),
            "since": since,
            "nodeUID": self.node_uid,
            "pods": pods,
            "counters": {
                "statusPatches": c.status_patches,
                "statusPatchFailures": c.status_patch_failures,
                "mirrorsCreated": c.mirrors_created,
                "mirrorsDeleted": c.mirrors_deleted,
                "mirrorsRejected": c.mirrors_rejected,
                "eventsPosted": c.events_posted,
                "eventsDropped": c.events_dropped,
                "eventsPending": c.events_pending,
                "disconnects": c.disconnects,
                "lastSync": c.last_sync.map(Timestamp::rfc3339_nanos),
            },
        })
    }
}

/// Owns the published [`MirrorState`]: changes are made here, logged when they matter, and
/// sent on [`Publisher::flush`].
#[derive(Debug)]
pub struct Publisher {
    tx: watch::Sender<MirrorState>,
    state: MirrorState,
}

impl Publisher {
    /// Publishes on `tx`, starting from its current value.
    pub fn new(tx: watch::Sender<MirrorState>) -> Publisher {
        let state = tx.borrow().clone();
        Publisher { tx, state }
    }

    /// The state as it will be published.
    pub fn state(&self) -> &MirrorState {
        &self.state
    }

    /// The counters, to update.
    pub fn counters(&mut self) -> &mut MirrorCounters {
        &mut self.state.counters
    }

    /// Sets the phase, logging the transition, and publishes.
    pub fn set_phase(&mut self, phase: MirrorPhase) {
        let old = &self.state.phase;
        let kind_changed = old.name() != phase.name();
        match &phase {
            MirrorPhase::Connecting { error: Some(e) } if kind_changed || *old != phase => {
                warn!(error = %e, "cannot connect to the API server; retrying");
            }
            MirrorPhase::Unreachable { error, .. } if kind_changed => {
                warn!(error = %error, "API server unreachable; retrying with backoff");
            }
            MirrorPhase::Refused { error, .. } if kind_changed || *old != phase => {
                warn!(error = %error, "API server refuses podvisor's requests; retrying with backoff");
            }
            MirrorPhase::WaitingForNode { reason } if kind_changed || *old != phase => {
                warn!(reason = %reason, "waiting for Node");
            }
            MirrorPhase::Synced { .. } if kind_changed => {
                info!("API server reachable; mirror pods are being kept in sync");
            }
            _ => {}
        }
        if let (MirrorPhase::Synced { .. }, MirrorPhase::Unreachable { .. }) = (old, &phase) {
            self.state.counters.disconnects += 1;
        }
        // An outage keeps its start time across retries with different errors.
        let phase = match (old, phase) {
            (MirrorPhase::Unreachable { since, .. }, MirrorPhase::Unreachable { error, .. }) => {
                MirrorPhase::Unreachable {
                    error,
                    since: *since,
                }
            }
            (MirrorPhase::Refused { since, .. }, MirrorPhase::Refused { error, .. }) => {
                MirrorPhase::Refused {
                    error,
                    since: *since,
                }
            }
            (MirrorPhase::Synced { since }, MirrorPhase::Synced { .. }) => {
                MirrorPhase::Synced { since: *since }
            }
            (_, phase) => phase,
        };
        self.state.phase = phase;
        self.flush();
    }

    /// Records the Node's UID.
    pub fn set_node_uid(&mut self, uid: Option<String>) {
        self.state.node_uid = uid;
    }

    /// Sets one pod's mirror state; logs a new rejection.
    pub fn set_pod(&mut self, key: &PodKey, mirror: PodMirror) {
        let old = self.state.pods.get(key);
        if old == Some(&mirror) {
            return;
        }
        if let PodMirror::Rejected { reason } = &mirror {
            warn!(pod = %key, reason = %reason, "mirror pod rejected; retrying with backoff");
        }
        self.state.pods.insert(key.clone(), mirror);
    }

    /// One pod's mirror state.
    pub fn pod(&self, key: &PodKey) -> Option<&PodMirror> {
        self.state.pods.get(key)
    }

    /// Forgets pods that are no longer static pods.
    pub fn retain_pods(&mut self, keep: impl Fn(&PodKey) -> bool) {
        self.state.pods.retain(|k, _| keep(k));
    }

    /// Sends the state if it changed.
    pub fn flush(&self) {
        self.tx.send_if_modified(|published| {
            if *published == self.state {
                false
            } else {
                *published = self.state.clone();
                true
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_read_as_the_operator_should_see_them() {
        let cases = [
            (
                MirrorPhase::Unreachable {
                    error: "connection refused".into(),
                    since: Timestamp(0),
                },
                "API server unreachable: connection refused",
            ),
            (
                MirrorPhase::WaitingForNode {
                    reason: "Node \"n1\" does not exist".into(),
                },
                "waiting for Node: Node \"n1\" does not exist",
            ),
            (
                MirrorPhase::Connecting { error: None },
                "connecting to the API server",
            ),
        ];
        for (phase, text) in cases {
            assert_eq!(phase.to_string(), text);
        }
        let rejected = PodMirror::Rejected {
            reason: "no".into(),
        };
        assert_eq!(rejected.to_string(), "mirror pod rejected: no");
    }

    #[test]
    fn the_json_view_names_the_phase_and_each_pods_mirror() {
        let mut state = MirrorState {
            phase: MirrorPhase::Synced {
                since: Timestamp(0),
            },
            node_uid: Some("n".into()),
            ..MirrorState::default()
        };
        let key = PodKey {
            namespace: "kube-system".into(),
            name: "etcd-n1".into(),
        };
        state
            .pods
            .insert(key, PodMirror::Mirrored { uid: "u1".into() });
        let json = state.to_json();
        assert_eq!(json["phase"], "Synced");
        assert_eq!(json["since"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(json["pods"]["kube-system/etcd-n1"]["state"], "Mirrored");
        assert_eq!(json["pods"]["kube-system/etcd-n1"]["uid"], "u1");
        assert_eq!(json["counters"]["eventsDropped"], 0);
        assert!(state.phase.reachable());
        assert!(!MirrorPhase::Disabled.reachable());
    }

    #[test]
    fn an_outage_keeps_its_start_and_counts_one_disconnect() {
        let (tx, rx) = watch::channel(MirrorState::default());
        let mut p = Publisher::new(tx);
        p.set_phase(MirrorPhase::Synced {
            since: Timestamp(1),
        });
        for (i, e) in ["a", "b"].into_iter().enumerate() {
            p.set_phase(MirrorPhase::Unreachable {
                error: e.into(),
                since: Timestamp(10 + i as i64),
            });
        }
        let state = rx.borrow().clone();
        assert_eq!(
            state.phase,
            MirrorPhase::Unreachable {
                error: "b".into(),
                since: Timestamp(10)
            }
        );
        assert_eq!(state.counters.disconnects, 1);
    }
}

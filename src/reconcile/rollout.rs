//! Health-gated rollback (opt-in): which version of each pod to run when its file's newest
//! version does not become healthy. Pure: the caller feeds each pass's desired snapshot,
//! observation and probe results, and plans against the snapshot this returns.
//!
//! Per pod with rollback on (the `podvisor.dev/rollback` annotation, `"true"` or `"false"`,
//! over the node's `rollbackOnFailure`):
//!
//! * A version is **healthy** once every app container of it runs, started (its startup
//!   probe passed, if it has one) and ready (its readiness probe passed, if it has one), and
//!   has been running for [`STABLE`] (10 s).
//!   The last healthy version is remembered.
//! * A new version **fails** if, before it is healthy, one of its containers exits in a way
//!   its restart policy would restart (a crash loop's first turn, or a failed startup probe's
//!   kill), or if it is not healthy within its window: the node's `rollbackReadyTimeout`
//!   (2 minutes by default) plus the longest startup-probe budget of its containers
//!   (`initialDelaySeconds + periodSeconds × failureThreshold`).
//! * On failure the last healthy version runs again, the file is left alone, and the failed
//!   version is not tried again until the file changes: one rollback per file version, so
//!   never a flap. A pod with no healthy version yet (its first) has nothing to roll back to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::manifest::Snapshot;
use crate::pod::{PodKey, RestartPolicy, SpecHash, StaticPod};
use crate::probe::ProbeResult;
use crate::probe::ProbeResults;
use crate::runtime::{ContainerState, Observed, ObservedContainer};

/// The annotation that turns rollback on or off for one pod.
pub const ROLLBACK_ANNOTATION: &str = "podvisor.dev/rollback";

/// The node's rollback settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// Rollback for pods that do not say (`rollbackOnFailure`, default off).
    pub enabled: bool,
    /// How long a new version has to become ready, on top of its startup probes' budget
    /// (`rollbackReadyTimeout`, default 2 minutes).
    pub ready_timeout: Duration,
}

impl Default for RollbackPolicy {
    fn default() -> Self {
        RollbackPolicy {
            enabled: false,
            ready_timeout: Duration::from_secs(120),
        }
    }
}

/// Where one pod stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Track {
    /// Its last healthy version, which is also the one asked for.
    Healthy(Arc<StaticPod>),
    /// A new version on trial since `since`; `from` is the last healthy one.
    Trying {
        /// The last healthy version.
        from: Arc<StaticPod>,
        /// The version on trial.
        to: SpecHash,
        /// When the trial began.
        since: Timestamp,
    },
    /// The file's version `rejected` failed; `to` runs instead until the file changes.
    RolledBack {
        /// The version that runs: the last healthy one.
        to: Arc<StaticPod>,
        /// The file's version that failed.
        rejected: SpecHash,
        /// Why it failed.
        reason: String,
    },
}

/// A rollback that just happened, to report.
#[derive(Clone, Debug, PartialEq)]
pub struct RolledBack {
    /// The pod.
    pub key: PodKey,
    /// The failed version.
    pub from: SpecHash,
    /// The version restored.
    pub to: SpecHash,
    /// Why.
    pub reason: String,
}

/// Every pod's track.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollouts {
    /// By pod.
    pub tracks: BTreeMap<PodKey, Track>,
    /// The versions asked for at the previous step: an edit that arrives before its pod's
    /// running version was judged healthy is still tried against that version.
    pub(super) previous: BTreeMap<PodKey, Arc<StaticPod>>,
}

/// What one pass decides.
pub struct Step {
    /// The snapshot to plan against: the desired one, with rolled-back pods at their last
    /// healthy version.
    pub effective: Arc<Snapshot>,
    /// Rollbacks decided in this pass.
    pub rolled_back: Vec<RolledBack>,
}

/// Whether rollback applies to `pod`.
pub fn enabled(pod: &StaticPod, policy: &RollbackPolicy) -> bool {
    match pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ROLLBACK_ANNOTATION))
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("true") => true,
        Some("false") => false,
        _ => policy.enabled,
    }
}

/// How `pod`'s version is doing in `observed`.
#[derive(Debug, PartialEq)]
enum Health {
    Healthy,
    Failed(String),
    Pending,
}

/// How long every app container of a version must have run (and been ready) for the
/// version to count as healthy: as long as the kubelet's first crash-loop backoff, so that a
/// container that exits soon after starting is caught.
pub const STABLE: Duration = Duration::from_secs(10);

fn health(pod: &StaticPod, observed: &Observed, probes: &ProbeResults, now: Timestamp) -> Health {
    let sandboxes: Vec<_> = observed
        .sandboxes
        .iter()
        .filter(|s| s.key == pod.key && s.version == pod.sandbox)
        .map(|s| &s.id)
        .collect();
    let of_version = |name: &str| -> Vec<&ObservedContainer> {
        let want = pod.container_hash(name);
        observed
            .containers
            .iter()
            .filter(|c| {
                c.key == pod.key
                    && c.name == name
                    && sandboxes.contains(&&c.sandbox)
                    && c.hash.as_ref() == want
            })
            .collect()
    };
    let policy = pod.restart_policy();
    for c in pod.init_containers().iter().chain(pod.containers()) {
        for o in of_version(&c.name) {
            let code = o.exit_code.unwrap_or(-1);
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            let is_app = pod.containers().iter().any(|a| a.name == c.name);
            // an exit that is not a container's job done: a sidecar or an app container
            // that should have kept running, or any non-zero exit
            let failed = sidecar || code != 0 || (is_app && policy == RestartPolicy::Always);
            if o.state == ContainerState::Exited && failed {
                return Health::Failed(format!(
                    "container {} exited with code {code} before the version became healthy",
                    c.name
                ));
            }
        }
    }
    let all_ready = pod.containers().iter().all(|c| {
        of_version(&c.name).into_iter().any(|o| {
            o.state == ContainerState::Running
                && o.started_at.is_some_and(|t| now >= t.plus(STABLE))
                && probes.containers.get(&o.id).is_none_or(|r| {
                    r.startup.is_none_or(|s| s == ProbeResult::Success)
                        && r.readiness.is_none_or(|s| s == ProbeResult::Success)
                })
                && (c.startup_probe.is_none() && c.readiness_probe.is_none()
                    || probes.containers.contains_key(&o.id))
        })
    });
    if all_ready {
        Health::Healthy
    } else {
        Health::Pending
    }
}

/// How long a new version of `pod` has to become healthy.
pub fn window(pod: &StaticPod, policy: &RollbackPolicy) -> Duration {
    let startup = pod
        .containers()
        .iter()
        .filter_map(|c| c.startup_probe.as_ref())
        .map(|p| {
            let secs = |v: Option<i32>, d: i32| u64::try_from(v.unwrap_or(d)).unwrap_or(0);
            Duration::from_secs(
                secs(p.initial_delay_seconds, 0)
                    + secs(p.period_seconds, 10) * secs(p.failure_threshold, 3),
            )
        })
        .max()
        .unwrap_or_default();
    policy.ready_timeout + startup
}

impl Rollouts {
    /// One pass: moves every pod's track on from what runs, and says what to run.
    pub fn step(
        &mut self,
        desired: &Arc<Snapshot>,
        observed: &Observed,
        probes: &ProbeResults,
        now: Timestamp,
        policy: &RollbackPolicy,
    ) -> Step {
        let mut rolled_back = Vec::new();
        self.tracks.retain(|k, _| desired.pods.contains_key(k));
        for (key, pod) in &desired.pods {
            if !enabled(pod, policy) {
                self.tracks.remove(key);
                continue;
            }
            let next = match self.tracks.remove(key) {
                None => match health(pod, observed, probes, now) {
                    Health::Healthy => Some(Track::Healthy(pod.clone())),
                    _ => self
                        .previous
                        .get(key)
                        .filter(|p| {
                            p.hash != pod.hash
                                && health(p, observed, probes, now) == Health::Healthy
                        })
                        .map(|p| Track::Trying {
                            from: p.clone(),
                            to: pod.hash.clone(),
                            since: now,
                        }),
                },
                Some(Track::Healthy(h)) if h.hash == pod.hash => Some(Track::Healthy(pod.clone())),
                Some(Track::Healthy(h)) => Some(Track::Trying {
                    from: h,
                    to: pod.hash.clone(),
                    since: now,
                }),
                Some(Track::Trying { from, .. }) if from.hash == pod.hash => {
                    Some(Track::Healthy(pod.clone()))
                }
                Some(Track::Trying { from, to, since }) if to == pod.hash => {
                    match health(pod, observed, probes, now) {
                        Health::Healthy => Some(Track::Healthy(pod.clone())),
                        Health::Failed(reason) => {
                            Some(self::roll_back(key, from, to, reason, &mut rolled_back))
                        }
                        Health::Pending if now >= since.plus(window(pod, policy)) => {
                            let reason =
                                format!("not healthy within {}s", window(pod, policy).as_secs());
                            Some(self::roll_back(key, from, to, reason, &mut rolled_back))
                        }
                        Health::Pending => Some(Track::Trying { from, to, since }),
                    }
                }
                Some(Track::Trying { from, .. }) => Some(Track::Trying {
                    from,
                    to: pod.hash.clone(),
                    since: now,
                }),
                Some(Track::RolledBack {
                    to,
                    rejected,
                    reason,
                }) if rejected == pod.hash => Some(Track::RolledBack {
                    to,
                    rejected,
                    reason,
                }),
                Some(Track::RolledBack { to, .. }) if to.hash == pod.hash => {
                    Some(Track::Healthy(pod.clone()))
                }
                Some(Track::RolledBack { to, .. }) => Some(Track::Trying {
                    from: to,
                    to: pod.hash.clone(),
                    since: now,
                }),
            };
            if let Some(t) = next {
                self.tracks.insert(key.clone(), t);
            }
        }
        self.previous = desired
            .pods
            .iter()
            .filter(|(_, p)| enabled(p, policy))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect();
        Step {
            effective: self.effective(desired),
            rolled_back,
        }
    }

    /// `desired`, with each rolled-back pod at the version that runs instead.
    pub fn effective(&self, desired: &Arc<Snapshot>) -> Arc<Snapshot> {
        let mut back = self.tracks.iter().filter_map(|(k, t)| match t {
            Track::RolledBack { to, .. } => Some((k, to)),
            _ => None,
        });
        let Some(first) = back.next() else {
            return desired.clone();
        };
        let mut s = (**desired).clone();
        for (k, to) in std::iter::once(first).chain(back) {
            s.pods.insert(k.clone(), to.clone());
        }
        Arc::new(s)
    }

    /// Why `key` runs another version than its file's, if it was rolled back.
    pub fn note(&self, key: &PodKey) -> Option<String> {
        match self.tracks.get(key)? {
            Track::RolledBack {
                rejected, reason, ..
            } => Some(format!(
                "rolled back: the file's version {rejected} failed ({reason}); it is tried again when the file changes"
            )),
            _ => None,
        }
    }
}

fn roll_back(
    key: &PodKey,
    from: Arc<StaticPod>,
    failed: SpecHash,
    reason: String,
    out: &mut Vec<RolledBack>,
) -> Track {
    out.push(RolledBack {
        key: key.clone(),
        from: failed.clone(),
        to: from.hash.clone(),
        reason: reason.clone(),
    });
    Track::RolledBack {
        to: from,
        rejected: failed,
        reason,
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;

//! The rollback tracks kept on disk (`<root>/rollback.json`, written atomically), so that a
//! rollback survives a podvisor restart: the last healthy version of each pod is still known,
//! and a file version that was rolled back is still not tried again until the file changes.
//!
//! A pod version is kept whole (its bound metadata, spec and hashes), exactly as it ran.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::rollout::{Rollouts, Track};
use crate::clock::Timestamp;
use crate::manifest::write_atomic;
use crate::pod::{SpecHash, StaticPodRecord};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
enum TrackRecord {
    Healthy {
        pod: StaticPodRecord,
    },
    Trying {
        from: StaticPodRecord,
        to: String,
        since: i64,
    },
    RolledBack {
        to: StaticPodRecord,
        rejected: String,
        reason: String,
    },
}

/// Where the tracks are kept.
#[derive(Clone, Debug)]
pub struct RolloutStore {
    path: PathBuf,
}

impl RolloutStore {
    /// Tracks kept in `path`.
    pub fn new(path: PathBuf) -> RolloutStore {
        RolloutStore { path }
    }

    /// The tracks kept, or none (with a warning) if the file cannot be read.
    pub fn load(&self) -> Rollouts {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Rollouts::default(),
            Err(e) => {
                warn!(file = %self.path.display(), error = %e, "rollback state unreadable; starting without it");
                return Rollouts::default();
            }
        };
        let records: Vec<TrackRecord> = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => {
                warn!(file = %self.path.display(), error = %e, "rollback state corrupt; starting without it");
                return Rollouts::default();
            }
        };
        let tracks = records
            .into_iter()
            .map(|r| match r {
                TrackRecord::Healthy { pod } => {
                    let pod = Arc::new(pod.into_pod());
                    (pod.key.clone(), Track::Healthy(pod))
                }
                TrackRecord::Trying { from, to, since } => {
                    let from = Arc::new(from.into_pod());
                    let track = Track::Trying {
                        from: from.clone(),
                        to: SpecHash(to),
                        since: Timestamp(since),
                    };
                    (from.key.clone(), track)
                }
                TrackRecord::RolledBack {
                    to,
                    rejected,
                    reason,
                } => {
                    let to = Arc::new(to.into_pod());
                    let track = Track::RolledBack {
                        to: to.clone(),
                        rejected: SpecHash(rejected),
                        reason,
                    };
                    (to.key.clone(), track)
                }
            })
            .collect();
        Rollouts {
            tracks,
            ..Rollouts::default()
        }
    }

    /// Keeps `rollouts`, atomically; a failure is logged (rollback then works until the
    /// next restart only).
    pub fn save(&self, rollouts: &Rollouts) {
        let records: Vec<TrackRecord> = rollouts
            .tracks
            .values()
            .map(|t| match t {
                Track::Healthy(p) => TrackRecord::Healthy {
                    pod: StaticPodRecord::of(p),
                },
                Track::Trying { from, to, since } => TrackRecord::Trying {
                    from: StaticPodRecord::of(from),
                    to: to.0.clone(),
                    since: since.0,
                },
                Track::RolledBack {
                    to,
                    rejected,
                    reason,
                } => TrackRecord::RolledBack {
                    to: StaticPodRecord::of(to),
                    rejected: rejected.0.clone(),
                    reason: reason.clone(),
                },
            })
            .collect();
        let result = serde_json::to_vec_pretty(&records)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
                write_atomic(dir, &self.path, &bytes)
            });
        if let Err(e) = result {
            warn!(file = %self.path.display(), error = %e, "cannot keep the rollback state on disk");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolled_back_track_reads_back_exactly_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RolloutStore::new(dir.path().join("rollback.json"));
        assert_eq!(store.load(), Rollouts::default(), "nothing kept yet");
        let pod = Arc::new(crate::manifest::testing::static_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {a: b}}\nspec: {containers: [{name: c, image: busybox}]}\n",
        ));
        let mut r = Rollouts::default();
        r.tracks.insert(
            pod.key.clone(),
            Track::RolledBack {
                to: pod.clone(),
                rejected: SpecHash("f".repeat(32)),
                reason: "container c exited with code 1".into(),
            },
        );
        store.save(&r);
        assert_eq!(store.load(), r);
        std::fs::write(dir.path().join("rollback.json"), "[{").expect("corrupt");
        assert_eq!(
            store.load(),
            Rollouts::default(),
            "corrupt: started without"
        );
    }
}

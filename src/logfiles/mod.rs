//! Container log files on the node, kept from filling the disk as the kubelet keeps them.
//!
//! * `rotation` (pure): when a live log is rotated, which rotated files are compressed or
//!   removed (`containerLogMaxSize`, `containerLogMaxFiles`), and the order to read them in.
//! * `retention` (pure): which log files belong to no container the runtime still lists.
//! * `files`: the file operations, and a reader across a log's rotated files.
//! * [`manage`]: the task. Every `containerLogMonitorInterval` it rotates the logs of the
//!   running containers that reached the size (with at most `containerLogMaxWorkers` at
//!   once), and when the runtime's list of containers changed (or a minute passed) it
//!   deletes the log files of removed containers.

pub mod files;
pub mod retention;
pub mod rotation;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock::{Clock, Timestamp};
use crate::pod::{PodKey, PodUid};
use crate::reconcile::ReconcileState;
use crate::runtime::{ContainerId, ContainerState, Runtime};
pub use rotation::Policy;

/// How often the log files of removed containers are looked for (the kubelet's container
/// garbage collection period).
pub const SWEEP_PERIOD: Duration = Duration::from_secs(60);

/// The kubelet's container log settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogSettings {
    /// `None`: rotation off (a negative `containerLogMaxSize`).
    pub rotation: Option<Policy>,
    /// `containerLogMonitorInterval`.
    pub monitor_interval: Duration,
    /// `containerLogMaxWorkers`.
    pub max_workers: usize,
}

impl Default for LogSettings {
    /// The kubelet's defaults: 10Mi, 5 files, every 10 s, one worker.
    fn default() -> LogSettings {
        LogSettings {
            rotation: Some(Policy::default()),
            monitor_interval: Duration::from_secs(10),
            max_workers: 1,
        }
    }
}

/// A log file step that failed, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    /// A file operation failed.
    #[error("{what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The runtime did not reopen the log; the rotated file was renamed back.
    #[error("the runtime did not reopen the log of container {id}: {message}")]
    Reopen {
        /// The container.
        id: String,
        /// The runtime's error.
        message: String,
    },
    /// The blocking task failed.
    #[error("log file task failed: {0}")]
    Task(String),
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LogFileError + 'a {
    move |source| LogFileError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, LogFileError> + Send + 'static,
) -> Result<T, LogFileError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LogFileError::Task(e.to_string()))?
}

/// A running container's live log.
struct Live {
    id: ContainerId,
    log: PathBuf,
}

/// What rotating one log did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotated {
    /// Under the size, or already rotated this second.
    No,
    /// Renamed and reopened.
    Yes,
}

/// Rotates `log`, the live log of running container `id`, if it reached the policy's size.
pub async fn rotate<R: Runtime>(
    runtime: &R,
    id: &ContainerId,
    log: &Path,
    policy: Policy,
    now: Timestamp,
) -> Result<Rotated, LogFileError> {
    let size = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        // deleted under the container: have the runtime write a fresh one, as the kubelet does
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            debug!(log = %log.display(), "container log missing; asking the runtime to reopen it");
            runtime
                .reopen_container_log(id)
                .await
                .map_err(|e| LogFileError::Reopen {
                    id: id.0.clone(),
                    message: e.to_string(),
                })?;
            return Ok(Rotated::No);
        }
        Err(e) => return Err(io_error("cannot read the size of", log)(e)),
    };
    if size < policy.max_size {
        return Ok(Rotated::No);
    }
    let path = log.to_owned();
    let steps = blocking(move || {
        let siblings = files::siblings(&path).map_err(io_error("cannot list", &path))?;
        Ok(rotation::plan(&path, size, &siblings, policy, now))
    })
    .await?;
    let mut rotated = Rotated::No;
    for step in steps {
        match step {
            rotation::Step::Remove(p) => {
                blocking(move || files::remove(&p).map_err(io_error("cannot remove", &p))).await?;
            }
            rotation::Step::Compress(p) => {
                blocking(move || files::compress(&p).map_err(io_error("cannot compress", &p)))
                    .await?;
            }
            rotation::Step::Rotate { from, to } => {
                std::fs::rename(&from, &to).map_err(io_error("cannot rename", &from))?;
                if let Err(e) = runtime.reopen_container_log(id).await {
                    // Put it back so the next round tries again; the container still writes
                    // to the renamed file until a reopen succeeds.
                    if let Err(back) = std::fs::rename(&to, &from) {
                        warn!(log = %from.display(), error = %back, "cannot rename a rotated log back");
                    }
                    return Err(LogFileError::Reopen {
                        id: id.0.clone(),
                        message: e.to_string(),
                    });
                }
                rotated = Rotated::Yes;
            }
        }
    }
    Ok(rotated)
}

/// The attempts the runtime lists, per pod version and container name.
pub type Listed = BTreeMap<(PodKey, PodUid), BTreeMap<String, BTreeSet<u32>>>;

/// Deletes the log files of containers the runtime no longer lists, in the log directories
/// of the pod versions it still lists (a pod version that is gone has its whole log
/// directory removed by the host cleanup). Returns the files deleted.
pub fn sweep(pod_log_dir: &Path, listed: &Listed, now: Timestamp) -> Vec<PathBuf> {
    let mut deleted = Vec::new();
    for ((key, uid), containers) in listed {
        let pod_dir = crate::pod::log_dir(pod_log_dir, &key.namespace, &key.name, uid.as_str());
        let Ok(names) = files::names(&pod_dir) else {
            continue;
        };
        for name in names {
            let dir = pod_dir.join(&name);
            let Ok(found) = files::files(&dir) else {
                continue;
            };
            let none = BTreeSet::new();
            let live = containers.get(&name).unwrap_or(&none);
            for f in retention::garbage(&dir, &found, live, now) {
                match files::remove(&f) {
                    Ok(()) => deleted.push(f),
                    Err(e) => {
                        warn!(file = %f.display(), error = %e, "cannot delete an old container log")
                    }
                }
            }
        }
    }
    deleted
}

/// The log rotation and retention task; stops when `token` is cancelled.
pub async fn manage<R: Runtime>(
    runtime: Arc<R>,
    pod_log_dir: PathBuf,
    settings: LogSettings,
    clock: Clock,
    state: watch::Receiver<Arc<ReconcileState>>,
    token: CancellationToken,
) {
    let mut last_sweep: Option<Timestamp> = None;
    let mut last_listed: Listed = BTreeMap::new();
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(settings.monitor_interval) => {}
        }
        let observed = state.borrow().observed.clone();
        let now = clock.now();
        if let Some(policy) = settings.rotation {
            let live: Vec<Live> = observed
                .containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| Live {
                    id: c.id.clone(),
                    log: crate::pod::log_file(&pod_log_dir, &c.key, &c.uid, &c.name, c.attempt),
                })
                .collect();
            let runtime = &runtime;
            futures::stream::iter(live)
                .for_each_concurrent(settings.max_workers.max(1), |c| async move {
                    match rotate(runtime.as_ref(), &c.id, &c.log, policy, now).await {
                        Ok(Rotated::Yes) => info!(log = %c.log.display(), "container log rotated"),
                        Ok(Rotated::No) => {}
                        Err(e) => warn!(error = %crate::chain::chain(&e), "container log rotation"),
                    }
                })
                .await;
        }
        let mut listed: Listed = BTreeMap::new();
        for c in &observed.containers {
            listed
                .entry((c.key.clone(), c.uid.clone()))
                .or_default()
                .entry(c.name.clone())
                .or_default()
                .insert(c.attempt);
        }
        // Garbage appears when containers are removed: look when the list changed, and
        // every SWEEP_PERIOD for what an earlier look had to leave (written too recently).
        if listed != last_listed || last_sweep.is_none_or(|at| now.since(at) >= SWEEP_PERIOD) {
            last_sweep = Some(now);
            last_listed = listed.clone();
            let dir = pod_log_dir.clone();
            match tokio::task::spawn_blocking(move || sweep(&dir, &listed, now)).await {
                Ok(deleted) => {
                    for f in deleted {
                        debug!(file = %f.display(), "log of a removed container deleted");
                    }
                }
                Err(e) => warn!(error = %e, "container log sweep failed"),
            }
        }
    }
}

//! Create requests that got no answer, so their names are not asked for again.
//!
//! A CRI name (`k8s_POD_<pod>_<ns>_<uid>_<attempt>`, `k8s_<container>_<pod>_<ns>_<uid>_<attempt>`)
//! is reserved by the runtime the moment a `RunPodSandbox` or `CreateContainer` request
//! arrives. When the client goes away mid-call (podvisor killed, the call timed out), CRI-O
//! keeps the name: the creation may finish into its resource cache, to be handed to a retry
//! with the same name, but a creation that failed on the cancelled call can leave the name
//! reserved with nothing ever arriving, and every later request for it then waits out its
//! whole deadline (seen on CRI-O 1.37: "Creation of container ... not yet finished.
//! Currently at stage unknown"). A name asked for without an answer is therefore never
//! asked for again: the runtime's observation carries, per sandbox and container, the lowest
//! attempt it may still ask for, and the planner starts the next one there (so the files
//! prepared for an attempt, such as its termination-message file, are the ones it uses).
//!
//! An answer to a later attempt does not release an earlier name: a refused create leaves
//! nothing whose attempt observation could carry on from, and a created sandbox or container
//! can be removed again, after which the planner would count from 0. So a floor, once set,
//! stays for as long as podvisor keeps its root dir; it costs nothing but higher attempt
//! numbers in names. A refusal that says the name is reserved counts as no answer too.
//!
//! Within one podvisor that is a map in memory. Across a `kill -9` it is a file per name under
//! `<root-dir>/unanswered/`, holding the highest attempt of that name that may be reserved:
//! written before each call with the attempt asked for (or the higher one already recorded),
//! set back to the recorded one after an answer, and removed after an answer only when no
//! attempt of the name went unanswered. The next podvisor starts from it. The files need no
//! fsync: what they guard against lives in the runtime's memory, which a machine crash clears
//! too.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use tracing::{info, warn};

use super::RuntimeError;
use crate::pod::PodUid;

/// The records' directory under podvisor's root dir.
pub const UNANSWERED_DIR: &str = "unanswered";

/// Whose name a create request asks for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Asked {
    /// A pod's sandbox.
    Sandbox(PodUid),
    /// Container `name` of a pod.
    Container(PodUid, String),
}

impl Asked {
    /// The file that stands for an unanswered request. A uid (hex, or a manifest's own
    /// `metadata.uid`) or a container name (a DNS label, never a `_`) with anything that could
    /// lead outside the directory has none: it is kept in memory only.
    fn file_name(&self) -> Option<String> {
        let safe = |s: &str, underscore: bool| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'))
        };
        match self {
            Asked::Sandbox(uid) if safe(uid.as_str(), true) => {
                Some(format!("sandbox_{}", uid.as_str()))
            }
            Asked::Container(uid, name) if safe(uid.as_str(), true) && safe(name, false) => {
                Some(format!("container_{}_{name}", uid.as_str()))
            }
            _ => None,
        }
    }

    fn from_file_name(file: &str) -> Option<Asked> {
        if let Some(uid) = file.strip_prefix("sandbox_") {
            return Some(Asked::Sandbox(PodUid(uid.to_owned())));
        }
        let rest = file.strip_prefix("container_")?;
        let (uid, name) = rest.rsplit_once('_')?;
        Some(Asked::Container(PodUid(uid.to_owned()), name.to_owned()))
    }
}

/// How a create request ended, for [`Unanswered::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The runtime answered (created, or refused): it holds no half-made creation.
    Answered,
    /// No answer: the call timed out or the connection broke; the name may stay reserved.
    NoAnswer,
}

/// How a call's result ended: a timeout or a broken connection is no answer, and so is a
/// refusal saying the name is reserved (containerd: `name "..." is reserved for "<id>"`, CRI-O:
/// `name is reserved`), which asking again would only repeat; anything else the runtime said,
/// success or refusal, is one.
fn outcome<T>(result: &Result<T, RuntimeError>) -> Outcome {
    match result {
        Err(RuntimeError::Timeout { .. } | RuntimeError::Unavailable { .. }) => Outcome::NoAnswer,
        Err(RuntimeError::Call { message, .. }) if message.contains("is reserved") => {
            Outcome::NoAnswer
        }
        _ => Outcome::Answered,
    }
}

/// The lowest attempt each sandbox and container may still ask for.
#[derive(Debug)]
pub struct Unanswered {
    /// `None`: kept in memory only (a client that does not create, or a test).
    dir: Option<PathBuf>,
    floors: Mutex<BTreeMap<Asked, u32>>,
}

impl Unanswered {
    /// In memory only.
    #[cfg(test)]
    pub fn in_memory() -> Unanswered {
        Unanswered {
            dir: None,
            floors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Kept in `dir`, starting from the requests a previous podvisor left unanswered there.
    /// An unreadable directory or record is warned about and skipped: the worst it costs is
    /// the wait this module avoids.
    pub fn load(dir: PathBuf) -> Unanswered {
        let mut floors = BTreeMap::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let file = entry.file_name().to_string_lossy().into_owned();
                    let record = Asked::from_file_name(&file).and_then(|asked| {
                        let text = std::fs::read_to_string(entry.path()).ok()?;
                        Some((asked, text.trim().parse::<u32>().ok()?))
                    });
                    match record {
                        Some((asked, attempt)) => {
                            info!(
                                record = %entry.path().display(),
                                attempt,
                                "a create request of the previous podvisor got no answer: \
                                 its name is not asked for again"
                            );
                            raise(&mut floors, asked, attempt);
                        }
                        None => warn!(
                            record = %entry.path().display(),
                            "skipping an unreadable record of an unanswered create request"
                        ),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(dir = %dir.display(), error = %e, "cannot read unanswered create requests")
            }
        }
        Unanswered {
            dir: Some(dir),
            floors: Mutex::new(floors),
        }
    }

    /// The lowest attempt each name may still be asked for, for the observation.
    pub fn floors(&self) -> BTreeMap<Asked, u32> {
        self.locked().clone()
    }

    /// Asks the runtime for `attempt` of `asked` through `call`: said in the log when it skips
    /// a name, recorded before the call, and settled by how the call ended.
    pub async fn ask<T>(
        &self,
        asked: &Asked,
        attempt: u32,
        call: impl Future<Output = Result<T, RuntimeError>>,
    ) -> Result<T, RuntimeError> {
        self.announce(asked, attempt);
        self.asking(asked, attempt);
        let answer = call.await;
        self.settle(asked, attempt, outcome(&answer));
        answer
    }

    /// Says in the log when `attempt` (the planner's) is the first past a name that got no
    /// answer, or, planned from an older look, is not past it.
    fn announce(&self, asked: &Asked, attempt: u32) {
        match self.locked().get(asked) {
            Some(&floor) if attempt > floor => {}
            Some(&floor) if attempt == floor => info!(
                asked = ?asked,
                attempt,
                "an earlier request for this name got no answer: asking for the next attempt"
            ),
            Some(&floor) => warn!(
                asked = ?asked,
                attempt,
                floor,
                "asking again for a name that got no answer earlier"
            ),
            None => {}
        }
    }

    /// Records, before the call, that `attempt` of `asked` is being asked for (or keeps the
    /// higher attempt already recorded, should `attempt` have been planned from an older look).
    fn asking(&self, asked: &Asked, attempt: u32) {
        let recorded = self.highest_unanswered(asked);
        self.write(asked, recorded.map_or(attempt, |r| r.max(attempt)));
    }

    /// Records how the request for `attempt` of `asked` ended. The floor stays after an answer
    /// (see the module's doc); the record goes back to the highest attempt that got none, or
    /// goes when none did.
    fn settle(&self, asked: &Asked, attempt: u32, outcome: Outcome) {
        if outcome == Outcome::NoAnswer {
            raise(&mut self.locked(), asked.clone(), attempt);
        }
        match self.highest_unanswered(asked) {
            Some(highest) => self.write(asked, highest),
            None => self.remove(asked),
        }
    }

    /// The highest attempt of `asked` that got no answer, if any did.
    fn highest_unanswered(&self, asked: &Asked) -> Option<u32> {
        self.locked()
            .get(asked)
            .map(|floor| floor.saturating_sub(1))
    }

    fn locked(&self) -> MutexGuard<'_, BTreeMap<Asked, u32>> {
        self.floors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The record of `asked`, where it has one (in a directory, under a safe name).
    fn record(&self, asked: &Asked) -> Option<(&Path, String)> {
        Some((self.dir.as_deref()?, asked.file_name()?))
    }

    fn write(&self, asked: &Asked, attempt: u32) {
        let Some((dir, file)) = self.record(asked) else {
            return;
        };
        let write = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(dir.join(file), attempt.to_string()));
        if let Err(e) = write {
            warn!(dir = %dir.display(), error = %e, "cannot record a create request");
        }
    }

    fn remove(&self, asked: &Asked) {
        let Some((dir, file)) = self.record(asked) else {
            return;
        };
        let path = dir.join(file);
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            warn!(record = %path.display(), error = %e, "cannot remove a create request's record");
        }
    }
}

/// Sets the floor of `asked` past `attempt`, which got no answer.
fn raise(floors: &mut BTreeMap<Asked, u32>, asked: Asked, attempt: u32) {
    let next = attempt.saturating_add(1);
    floors
        .entry(asked)
        .and_modify(|floor| *floor = (*floor).max(next))
        .or_insert(next);
}

#[cfg(test)]
#[path = "unanswered_tests.rs"]
mod tests;

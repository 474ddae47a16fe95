//! Manifests: from a directory of files to the set of static pods that should run.
//!
//! * `filter`: which names are manifests.
//! * `parse`: bytes → Kubernetes `Pod`s (YAML, multi-document YAML, JSON, `v1` `List`).
//! * `defaults` and `validate`: the kubelet's defaulting and validation, and the static-pod
//!   restrictions.
//! * `scan`: reads the directory (follows symlinks within it, refuses FIFOs, devices and
//!   links out of it, caps size, parses on a stack of its own, caches by content).
//! * `pipeline`: one file's bytes → hashed static pods, as the daemon would (for fuzzing).
//! * `resolve`: files → [`Snapshot`]; keeps a rejected file's last good pods; first file wins.
//! * `watch`: inotify + debounce + periodic resync, publishing snapshots on a watch channel.
//!
//! This module never talks to the runtime. It publishes whole snapshots, never deltas.

mod budget;
mod defaults;
mod durable;
mod filter;
mod parse;
mod pipeline;
mod resolve;
mod scan;
#[cfg(test)]
pub(crate) mod testing;
mod trust;
mod validate;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

pub use crate::pod::DocRef;
use crate::pod::{PodKey, StaticPod};

pub use defaults::apply_defaults;
pub use durable::{LastGood, write_atomic};
pub use filter::{Format, IgnoreReason, classify};
pub use parse::{ParsedPod, parse_manifest};
pub use pipeline::{Loaded, load_manifest};
pub use resolve::Resolver;
pub use scan::{Entry, MAX_MANIFEST_BYTES, Scan, ScanError, Scanner, read_named_manifest};
pub use trust::{TrustPolicy, untrusted};
pub use validate::{FieldIssue, validate};
pub use watch::{WatchConfig, watch};

fn join_issues(issues: &[FieldIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a manifest file produced no pods. Every variant names the file.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: cannot read: {message}", path.display())]
    Read {
        /// The manifest file.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// Running as root, the file is owned by another user or writable by group or others.
    #[error("{}: refused: {reason}; anyone who can write it could run a privileged container (chown root, chmod go-w, or run with --allow-insecure-manifests)", path.display())]
    Untrusted {
        /// The manifest file.
        path: PathBuf,
        /// Who else may write it.
        reason: String,
    },
    /// The file is bigger than [`MAX_MANIFEST_BYTES`].
    #[error("{}: {size} bytes is over the {} byte limit", path.display(), MAX_MANIFEST_BYTES)]
    TooLarge {
        /// The manifest file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// Not valid YAML or JSON.
    #[error("{}: line {line}, column {column}: {message}", path.display())]
    Syntax {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The file holds no document.
    #[error("{}: no pod in the file (it is empty or only comments)", path.display())]
    Empty {
        /// The manifest file.
        path: PathBuf,
    },
    /// A document is not a `v1` `Pod` or a `List` of them, or a field has the wrong type.
    #[error("{}: {at}: {field}: {message}", path.display())]
    Decode {
        /// The manifest file.
        path: PathBuf,
        /// Which document.
        at: DocRef,
        /// The field path, like `spec.containers[0].ports[0].containerPort`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The pod fails validation.
    #[error("{}: {at}: {}", path.display(), join_issues(issues))]
    Invalid {
        /// The manifest file.
        path: PathBuf,
        /// Which document.
        at: DocRef,
        /// Every problem found, each with its field path.
        issues: Vec<FieldIssue>,
    },
    /// Another file, earlier in name order, already declares this pod.
    #[error("{}: {at}: pod {key} is already declared by {}; this one is ignored", path.display(), winner.display())]
    Conflict {
        /// The manifest file that lost.
        path: PathBuf,
        /// Which document.
        at: DocRef,
        /// The pod both declare.
        key: PodKey,
        /// The file whose pod runs.
        winner: PathBuf,
    },
}

/// What became of one directory entry.
#[derive(Clone, Debug, PartialEq)]
pub enum FileStatus {
    /// Read and accepted; all its pods are in the snapshot.
    Accepted,
    /// Read and valid, but an earlier file declares some of its pods: those are not run
    /// (see its `Conflict` errors); `FileReport::pods` lists those that are.
    Conflict,
    /// Not read, and why.
    Ignored(IgnoreReason),
    /// Rejected. `FileReport::pods` lists the pods still running its last good version.
    Rejected,
    /// Renamed away moments ago, as an editor does before writing the new version: its
    /// pods keep running until the editor writes it back, or the hold ends.
    RenamedAway,
}

/// One directory entry's outcome, as operators see it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileReport {
    /// Accepted, ignored or rejected.
    pub status: FileStatus,
    /// The pods this file provides to the snapshot (for a rejected file: its last good pods).
    pub pods: Vec<PodKey>,
    /// Errors: the rejection, or conflicts for some of its pods.
    pub errors: Vec<ManifestError>,
    /// Fields the parser did not recognise (likely typos); they are ignored, as the kubelet does.
    pub warnings: Vec<String>,
}

/// Everything the manifest directory asks for, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// The pods that should run, by key.
    pub pods: BTreeMap<PodKey, Arc<StaticPod>>,
    /// Every directory entry seen, by path.
    pub files: BTreeMap<PathBuf, FileReport>,
    /// Rejected files for which no last good version is known (podvisor restarted since):
    /// pods created from these files are left exactly as they are.
    pub untouchable: BTreeSet<PathBuf>,
}

impl Snapshot {
    /// All errors across files, in file order.
    pub fn errors(&self) -> impl Iterator<Item = &ManifestError> {
        self.files.values().flat_map(|f| f.errors.iter())
    }
}

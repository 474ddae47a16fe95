//! `podvisor diff [FILE|DIR]`: what the daemon would do with a proposed manifest file or
//! directory, pod by pod, without touching anything.
//!
//! * `merge` (pure): the snapshot the proposal would make, laid over what runs.
//! * `outcome` (pure): the daemon's planner run on it, read back as one outcome per pod.
//! * `fields` (pure): which fields changed (why a pod is replaced, what a restart changes).
//! * `images` (pure): the images the starting containers pull.
//! * `report` (pure): the report, its text and its exit status.
//!
//! This file is the IO: it asks the daemon (status socket) what runs and which images the
//! node holds, or, with no daemon, reads the manifest directory as a daemon starting now
//! would; and it reads the proposal with the daemon's scanner and parser.

pub mod fields;
pub mod images;
pub mod merge;
pub mod outcome;
pub mod report;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use crate::api::applied::{AppliedView, ImageView, RunningPod};
use crate::api::client::{ClientError, get_json};
use crate::cli::DiffArgs;
use crate::clock::Clock;
use crate::config::DEFAULT_MANIFEST_DIR;
use crate::manifest::{Resolver, Scan, ScanError, Scanner, Snapshot, TrustPolicy};
use crate::pod::{NodeName, PodKey, StaticPod};
use crate::runtime::RuntimeImage;
use merge::{Scope, propose};
pub use report::{Against, EXIT_CHANGES, EXIT_INVALID, EXIT_SAME, Report};

/// Why `diff` could not compare.
#[derive(Debug, Error)]
pub enum DiffError {
    /// The daemon answered, but not usefully.
    #[error(transparent)]
    Daemon(#[from] ClientError),
    /// The manifest directory or the proposed directory cannot be read.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// No daemon answered and no node name is known.
    #[error("no daemon answered and the node name is unknown ({0}): pass --node-name")]
    NoNode(String),
}

/// What runs, as `diff` compares against it.
struct Current {
    against: Against,
    manifest_dir: PathBuf,
    node: NodeName,
    snapshot: Snapshot,
    unmanaged: Vec<RunningPod>,
    images: Option<Vec<RuntimeImage>>,
    notes: Vec<String>,
}

/// Runs `podvisor diff`. `node` is the node name to use when no daemon answers (the flag,
/// else the hostname, or why it is unknown); `policy` is how a daemon started now would
/// trust the manifest directory.
pub async fn run(
    args: &DiffArgs,
    node: Result<NodeName, String>,
    policy: TrustPolicy,
) -> Result<Report, DiffError> {
    let socket = super::socket(&args.client);
    let daemon = if args.offline {
        None
    } else {
        match get_json::<AppliedView>(&socket, "/applied").await {
            Ok(view) => Some(view),
            Err(ClientError::Connect { source, .. })
                if matches!(
                    source.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let current = match daemon {
        Some(view) => from_daemon(view, &socket, args).await,
        None => {
            let node = node.map_err(DiffError::NoNode)?;
            let dir = args
                .manifest_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_MANIFEST_DIR));
            let mut current = from_directory(dir, node, policy)?;
            if !args.offline {
                current.notes.push(format!(
                    "no daemon answers at {}: compared with the directory",
                    socket.display()
                ));
            }
            current
        }
    };
    let (proposal, scope) = read_proposal(args.path.as_deref(), &current.manifest_dir, policy)?;
    let now = Clock::System.now();
    let proposed = propose(&current.snapshot, &proposal, &scope, &current.node, now);
    let pods: BTreeMap<PodKey, Arc<StaticPod>> = current.snapshot.pods.clone();
    let observed = outcome::as_running(&pods, &current.unmanaged);
    let diffs = outcome::diff(&pods, &observed, &proposed, now);
    let images = images::pulls(&diffs, &proposed, current.images.as_deref());
    Ok(Report {
        against: current.against,
        manifest_dir: current.manifest_dir,
        node: current.node.to_string(),
        pods: diffs,
        images,
        files: report::file_notes(&proposed),
        notes: current.notes,
    })
}

/// What the daemon runs, and the images it holds.
async fn from_daemon(view: AppliedView, socket: &Path, args: &DiffArgs) -> Current {
    let mut notes = Vec::new();
    if let Some(dir) = args
        .manifest_dir
        .as_ref()
        .filter(|d| **d != view.manifest_dir)
    {
        notes.push(format!(
            "--manifest-dir {} is not the daemon's; the daemon's is used",
            dir.display()
        ));
    }
    let images = match get_json::<Vec<ImageView>>(socket, "/images").await {
        Ok(list) => Some(list.into_iter().map(ImageView::into_image).collect()),
        Err(e) => {
            notes.push(format!("the daemon did not list the node's images: {e}"));
            None
        }
    };
    let node = NodeName::new(&view.node);
    let manifest_dir = view.manifest_dir.clone();
    let untouchable = view.untouchable.iter().cloned().collect();
    let unmanaged = view.unmanaged.clone();
    Current {
        against: Against::Daemon,
        manifest_dir,
        node,
        snapshot: Snapshot {
            pods: view.into_pods(),
            files: BTreeMap::new(),
            untouchable,
        },
        unmanaged,
        images,
        notes,
    }
}

/// The manifest directory as a daemon starting now would read it.
fn from_directory(dir: PathBuf, node: NodeName, policy: TrustPolicy) -> Result<Current, DiffError> {
    let mut notes = Vec::new();
    let scan = match Scanner::with_policy(&dir, policy).scan() {
        Ok(scan) => scan,
        Err(ScanError::Missing { .. }) => {
            notes.push(format!("{} does not exist: nothing runs", dir.display()));
            Scan::default()
        }
        Err(e) => return Err(e.into()),
    };
    let snapshot = Resolver::new(node.clone()).resolve(&scan, Clock::System.now());
    Ok(Current {
        against: Against::Directory,
        manifest_dir: dir,
        node,
        snapshot,
        unmanaged: Vec::new(),
        images: None,
        notes,
    })
}

/// Reads the proposal: a directory with the daemon's scanner, a file as `check` reads one,
/// or (none given) the manifest directory itself; its paths moved into the manifest
/// directory, since a pod's hashes include its file's path there. The proposal's own
/// ownership is not checked (a copy is what gets installed), the manifest directory's is.
fn read_proposal(
    path: Option<&Path>,
    manifest_dir: &Path,
    policy: TrustPolicy,
) -> Result<(Scan, Scope), DiffError> {
    let path = path.unwrap_or(manifest_dir);
    let policy = if path == manifest_dir {
        policy
    } else {
        TrustPolicy::Off
    };
    let (scan, scope) = if path.is_dir() {
        (Scanner::with_policy(path, policy).scan()?, Scope::Dir)
    } else {
        let name = path.file_name().map(PathBuf::from).unwrap_or_default();
        (
            super::check::scan_file(path, policy),
            Scope::File(manifest_dir.join(name)),
        )
    };
    let mut moved = Scan::default();
    for (p, entry) in scan.entries {
        let name = p.file_name().map(PathBuf::from).unwrap_or_default();
        moved.entries.insert(manifest_dir.join(name), entry);
    }
    Ok((moved, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: 'busybox:1.35'}]}\n";

    fn args(path: &Path, dir: &Path) -> DiffArgs {
        DiffArgs {
            path: Some(path.to_owned()),
            manifest_dir: Some(dir.to_owned()),
            node_name: None,
            offline: true,
            json: false,
            client: crate::cli::ClientArgs { socket: None },
        }
    }

    #[tokio::test]
    async fn a_proposed_file_is_hashed_as_if_it_were_in_the_manifest_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).expect("mkdir");
        std::fs::write(manifests.join("web.yaml"), WEB).expect("write");
        let elsewhere = dir.path().join("web.yaml");
        std::fs::write(&elsewhere, WEB).expect("write");
        let node = Ok(NodeName::new("n1"));
        let report = run(&args(&elsewhere, &manifests), node, TrustPolicy::Off)
            .await
            .expect("diff");
        assert_eq!(report.against, Against::Directory);
        let outcomes: Vec<(&str, outcome::Outcome)> = report
            .pods
            .iter()
            .map(|d| (d.pod.as_str(), d.outcome))
            .collect();
        assert_eq!(outcomes, [("default/web-n1", outcome::Outcome::Nothing)]);
        assert_eq!(report.exit_code(), EXIT_SAME);
        // The image's presence is not known without the daemon, and nothing starts.
        assert!(report.images.is_empty());
    }

    #[tokio::test]
    async fn a_missing_manifest_directory_runs_nothing_and_a_proposed_one_creates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let proposed = dir.path().join("proposed");
        std::fs::create_dir(&proposed).expect("mkdir");
        std::fs::write(proposed.join("web.yaml"), WEB).expect("write");
        let node = Ok(NodeName::new("n1"));
        let report = run(
            &args(&proposed, &dir.path().join("none")),
            node,
            TrustPolicy::Off,
        )
        .await
        .expect("diff");
        assert_eq!(report.pods[0].outcome, outcome::Outcome::Create);
        assert_eq!(report.images[0].why, images::Why::Unknown);
        assert_eq!(report.exit_code(), EXIT_CHANGES);
        assert!(
            report.notes[0].contains("does not exist"),
            "{:?}",
            report.notes
        );
    }
}

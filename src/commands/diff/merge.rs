//! The snapshot the daemon would make of a proposal, pure: the proposed files run through the
//! daemon's resolver (binding, hashes, duplicates), then laid over what runs as the resolver
//! would lay them over its own past: a proposed file that is invalid keeps the pods that run
//! from it (its last good version), or, if none run, leaves any pod of it alone; the first
//! file in name order wins a pod two files declare.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::Timestamp;
use crate::manifest::{FileStatus, ManifestError, Resolver, Scan, Snapshot};
use crate::pod::{NodeName, PodKey, StaticPod};

/// What a proposal replaces in the manifest directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// One file, by its path in the manifest directory; the others stay.
    File(PathBuf),
    /// The whole directory: files not in the proposal are gone.
    Dir,
}

impl Scope {
    fn replaces(&self, path: &Path) -> bool {
        match self {
            Scope::File(p) => p == path,
            Scope::Dir => true,
        }
    }
}

/// The snapshot after `proposal` (a scan whose paths are already those in the manifest
/// directory) replaces `scope` of `current`, for `node` at `now`. Its `files` are the
/// proposal's files only, with their errors and warnings.
pub fn propose(
    current: &Snapshot,
    proposal: &Scan,
    scope: &Scope,
    node: &NodeName,
    now: Timestamp,
) -> Snapshot {
    let fresh = Resolver::new(node.clone()).resolve(proposal, now);
    let mut candidates: BTreeMap<PathBuf, Vec<Arc<StaticPod>>> = BTreeMap::new();
    for pod in current.pods.values() {
        if !scope.replaces(&pod.source.path) {
            candidates
                .entry(pod.source.path.clone())
                .or_default()
                .push(pod.clone());
        }
    }
    let mut untouchable: BTreeSet<PathBuf> = current
        .untouchable
        .iter()
        .filter(|p| !scope.replaces(p))
        .cloned()
        .collect();
    let mut files = fresh.files.clone();
    for (path, report) in &files {
        let pods: Vec<Arc<StaticPod>> = match report.status {
            FileStatus::Rejected => {
                let kept: Vec<Arc<StaticPod>> = current
                    .pods
                    .values()
                    .filter(|p| &p.source.path == path)
                    .cloned()
                    .collect();
                if kept.is_empty() {
                    untouchable.insert(path.clone());
                }
                kept
            }
            FileStatus::Accepted | FileStatus::Conflict => report
                .pods
                .iter()
                .filter_map(|k| fresh.pods.get(k).cloned())
                .collect(),
            FileStatus::Ignored(_) | FileStatus::RenamedAway => Vec::new(),
        };
        if !pods.is_empty() {
            candidates.insert(path.clone(), pods);
        }
    }
    for list in candidates.values_mut() {
        list.sort_by_key(|p| p.source.at);
    }
    let mut pods: BTreeMap<PodKey, Arc<StaticPod>> = BTreeMap::new();
    for (path, list) in candidates {
        for pod in list {
            if let Some(winner) = pods.get(&pod.key) {
                if let Some(report) = files.get_mut(&path) {
                    if report.status == FileStatus::Accepted {
                        report.status = FileStatus::Conflict;
                    }
                    report.pods.retain(|k| k != &pod.key);
                    report.errors.push(ManifestError::Conflict {
                        path: path.clone(),
                        at: pod.source.at,
                        key: pod.key.clone(),
                        winner: winner.source.path.clone(),
                    });
                }
                continue;
            }
            pods.insert(pod.key.clone(), pod);
        }
    }
    Snapshot {
        pods,
        files,
        untouchable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Entry, Format, parse_manifest};

    fn pod(name: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec: {{containers: [{{name: c, image: '{image}'}}]}}\n"
        )
    }

    fn scan(files: &[(&str, &str)]) -> Scan {
        let mut s = Scan::default();
        for (name, text) in files {
            let path = PathBuf::from(format!("/m/{name}"));
            let parsed = parse_manifest(&path, Format::Yaml, text.as_bytes()).map(Arc::new);
            s.entries.insert(path, Entry::Parsed(parsed));
        }
        s
    }

    fn node() -> NodeName {
        NodeName::new("n1")
    }

    fn current(files: &[(&str, &str)]) -> Snapshot {
        Resolver::new(node()).resolve(&scan(files), Timestamp(1))
    }

    fn names(s: &Snapshot) -> Vec<String> {
        s.pods
            .values()
            .map(|p| format!("{}@{}", p.key.name, p.source.path.display()))
            .collect()
    }

    #[test]
    fn a_file_replaces_its_namesake_and_leaves_the_others() {
        let now = current(&[("a.yaml", &pod("a", "i:1")), ("b.yaml", &pod("b", "i:1"))]);
        let file = Scope::File(PathBuf::from("/m/b.yaml"));
        let next = propose(
            &now,
            &scan(&[("b.yaml", &pod("c", "i:1"))]),
            &file,
            &node(),
            Timestamp(2),
        );
        assert_eq!(names(&next), ["a-n1@/m/a.yaml", "c-n1@/m/b.yaml"]);
        assert_eq!(next.files.len(), 1, "only the proposed file is reported");
    }

    #[test]
    fn a_directory_replaces_every_file() {
        let now = current(&[("a.yaml", &pod("a", "i:1")), ("b.yaml", &pod("b", "i:1"))]);
        let next = propose(
            &now,
            &scan(&[("b.yaml", &pod("b", "i:2"))]),
            &Scope::Dir,
            &node(),
            Timestamp(2),
        );
        assert_eq!(names(&next), ["b-n1@/m/b.yaml"]);
    }

    #[test]
    fn an_invalid_file_keeps_the_pods_that_run_from_it_or_leaves_its_path_alone() {
        let now = current(&[("a.yaml", &pod("a", "i:1"))]);
        let bad = scan(&[("a.yaml", "kind: Pod\n"), ("new.yaml", "kind: Pod\n")]);
        let next = propose(&now, &bad, &Scope::Dir, &node(), Timestamp(2));
        assert_eq!(next.pods, now.pods, "the running version is kept");
        assert_eq!(
            next.untouchable.iter().collect::<Vec<_>>(),
            [Path::new("/m/new.yaml")]
        );
        assert_eq!(next.errors().count(), 2);
    }

    #[test]
    fn a_proposed_file_that_loses_a_pod_to_an_earlier_file_gets_a_conflict() {
        let now = current(&[("a.yaml", &pod("web", "i:1"))]);
        let next = propose(
            &now,
            &scan(&[("b.yaml", &pod("web", "i:2"))]),
            &Scope::File(PathBuf::from("/m/b.yaml")),
            &node(),
            Timestamp(2),
        );
        assert_eq!(next.pods, now.pods);
        let report = &next.files[Path::new("/m/b.yaml")];
        assert_eq!(report.status, FileStatus::Conflict);
        assert!(
            matches!(&report.errors[..], [ManifestError::Conflict { winner, .. }] if winner == Path::new("/m/a.yaml"))
        );
    }
}

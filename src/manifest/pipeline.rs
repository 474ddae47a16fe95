//! One manifest file's bytes → the static pods it would run on a node: the daemon's whole
//! pipeline (name rules, size limit, parse, defaults, validation, node binding and hashes)
//! for one file, with no IO. `scan` and `check` read the bytes; this is what they do next.
//!
//! Used by the `manifest` fuzz target and its regression test, and by anything else that has
//! a manifest's bytes in hand.

use std::path::Path;
use std::sync::Arc;

use super::{
    Entry, FileStatus, IgnoreReason, MAX_MANIFEST_BYTES, ManifestError, Resolver, Scan, classify,
    parse_manifest,
};
use crate::clock::Timestamp;
use crate::pod::{NodeName, StaticPod};

/// What one manifest file amounts to on a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Loaded {
    /// The file name is not read as a manifest (hidden, backup, other extension), and why.
    Ignored(IgnoreReason),
    /// The file is accepted.
    Accepted {
        /// The pods that would run, in file order.
        pods: Vec<Arc<StaticPod>>,
        /// Fields the parser did not recognise; they are ignored.
        warnings: Vec<String>,
        /// Pods the file declares more than once: the first runs, the others are reported here.
        conflicts: Vec<ManifestError>,
    },
}

/// Runs one manifest file's `bytes` through the daemon's pipeline for `node`, as if the file
/// were the only one at `path` in the manifest directory: the format is chosen by the file
/// name, files over [`MAX_MANIFEST_BYTES`] are refused, and pods are parsed, defaulted,
/// validated, named with the node suffix and hashed. `now` becomes
/// `kubernetes.io/config.seen`. Pure: no IO, no clock.
///
/// An error rejects the whole file, as the daemon does.
pub fn load_manifest(
    path: &Path,
    bytes: &[u8],
    node: &NodeName,
    now: Timestamp,
) -> Result<Loaded, ManifestError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let format = match classify(name) {
        Ok(format) => format,
        Err(reason) => return Ok(Loaded::Ignored(reason)),
    };
    let size = bytes.len() as u64;
    if size > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            path: path.to_owned(),
            size,
        });
    }
    let parsed = parse_manifest(path, format, bytes)?;
    let mut scan = Scan::default();
    scan.entries
        .insert(path.to_owned(), Entry::Parsed(Ok(Arc::new(parsed))));
    let mut snapshot = Resolver::new(node.clone()).resolve(&scan, now);
    let Some(report) = snapshot.files.remove(path) else {
        // The resolver reports every entry it is given; nothing to run if it did not.
        return Ok(Loaded::Accepted {
            pods: Vec::new(),
            warnings: Vec::new(),
            conflicts: Vec::new(),
        });
    };
    let mut errors = report.errors;
    if report.status == FileStatus::Rejected && !errors.is_empty() {
        return Err(errors.swap_remove(0));
    }
    let mut pods: Vec<Arc<StaticPod>> = snapshot.pods.into_values().collect();
    pods.sort_by_key(|p| p.source.at);
    Ok(Loaded::Accepted {
        pods,
        warnings: report.warnings,
        conflicts: errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME, namespace: kube-system}\nspec: {containers: [{name: c, image: 'busybox:1.35'}]}\n";

    fn load(name: &str, text: &str) -> Result<Loaded, ManifestError> {
        load_manifest(
            &Path::new("/m").join(name),
            text.as_bytes(),
            &NodeName::new("Node1"),
            Timestamp(7),
        )
    }

    #[test]
    fn a_manifest_becomes_named_hashed_pods_in_file_order() {
        let text = format!(
            "{}---\n{}",
            POD.replace("NAME", "b"),
            POD.replace("NAME", "a")
        );
        let Ok(Loaded::Accepted {
            pods, conflicts, ..
        }) = load("web.yaml", &text)
        else {
            panic!("not accepted");
        };
        let keys: Vec<String> = pods.iter().map(|p| p.key.to_string()).collect();
        assert_eq!(keys, ["kube-system/b-node1", "kube-system/a-node1"]);
        assert_eq!(pods[0].hash.as_str().len(), 32);
        assert!(conflicts.is_empty());
    }

    #[test]
    fn the_result_matches_what_the_daemon_resolves_for_the_same_file() {
        let path = Path::new("/m/web.yaml");
        let text = POD.replace("NAME", "web");
        let mut scan = Scan::default();
        scan.entries.insert(
            path.to_owned(),
            Entry::Parsed(
                parse_manifest(path, crate::manifest::Format::Yaml, text.as_bytes()).map(Arc::new),
            ),
        );
        let snap = Resolver::new(NodeName::new("node1")).resolve(&scan, Timestamp(7));
        let Ok(Loaded::Accepted { pods, .. }) = load("web.yaml", &text) else {
            panic!("not accepted");
        };
        assert_eq!(pods, snap.pods.into_values().collect::<Vec<_>>());
    }

    #[test]
    fn a_pod_declared_twice_in_one_file_runs_once_and_the_second_is_a_conflict() {
        let text = format!("{0}---\n{0}", POD.replace("NAME", "web"));
        let Ok(Loaded::Accepted {
            pods, conflicts, ..
        }) = load("web.yaml", &text)
        else {
            panic!("not accepted");
        };
        assert_eq!(pods.len(), 1);
        assert!(
            matches!(&conflicts[..], [ManifestError::Conflict { .. }]),
            "{conflicts:?}"
        );
    }

    #[test]
    fn names_the_scanner_skips_are_ignored_unparsed() {
        assert_eq!(
            load("web.yaml~", "not even yaml: ["),
            Ok(Loaded::Ignored(IgnoreReason::Backup))
        );
        assert_eq!(
            load("notes.txt", ""),
            Ok(Loaded::Ignored(IgnoreReason::Extension))
        );
    }

    #[test]
    fn bad_files_are_rejected_with_the_parser_or_binding_error() {
        assert!(matches!(
            load("web.json", "{"),
            Err(ManifestError::Syntax { .. })
        ));
        let long = POD.replace("NAME", &"a".repeat(250));
        assert!(matches!(
            load("web.yaml", &long),
            Err(ManifestError::Invalid { .. })
        ));
    }

    #[test]
    fn files_over_the_size_limit_are_refused_unparsed() {
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        assert!(matches!(
            load_manifest(
                Path::new("/m/big.yaml"),
                &big,
                &NodeName::new("n"),
                Timestamp(0)
            ),
            Err(ManifestError::TooLarge { .. })
        ));
    }
}

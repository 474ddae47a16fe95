//! `podvisor check FILE|DIR...`: validates manifests offline with the daemon's own scanner,
//! parser, defaults, rules and naming, and prints what would run or what is wrong. Needs no
//! runtime and no root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::clock::Clock;
use crate::manifest::{
    Entry, FileStatus, Resolver, Scan, Scanner, TrustPolicy, classify, parse_manifest,
    read_named_manifest, untrusted,
};
use crate::manifest::{MAX_MANIFEST_BYTES, ManifestError};
use crate::pod::NodeName;

/// One pod that would run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WouldRun {
    /// `namespace/name-node`.
    pub pod: String,
    /// `kubernetes.io/config.hash`.
    pub hash: String,
    /// `container=image`, init containers first.
    pub containers: Vec<String>,
}

/// The verdict on one path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The path.
    pub path: String,
    /// `ok`, `error` or `ignored`.
    pub result: String,
    /// Pods it would run.
    pub pods: Vec<WouldRun>,
    /// Errors.
    pub errors: Vec<String>,
    /// Warnings and reasons.
    pub notes: Vec<String>,
}

/// Reads one file as the scanner would (extension rules, size limit, trust), for a path
/// given on the command line.
pub(crate) fn scan_file(path: &Path, policy: TrustPolicy) -> Scan {
    let mut scan = Scan::default();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let entry = match classify(name) {
        Err(reason) => Entry::Ignored(reason),
        Ok(format) => match std::fs::metadata(path) {
            Err(e) => Entry::Parsed(Err(ManifestError::Read {
                path: path.to_owned(),
                message: e.to_string(),
            })),
            Ok(m) if m.len() > MAX_MANIFEST_BYTES => Entry::Parsed(Err(ManifestError::TooLarge {
                path: path.to_owned(),
                size: m.len(),
            })),
            Ok(m) => match (policy, untrusted(&m)) {
                (TrustPolicy::Enforce, Some(reason)) => {
                    Entry::Parsed(Err(ManifestError::Untrusted {
                        path: path.to_owned(),
                        reason,
                    }))
                }
                _ => Entry::Parsed(
                    read_named_manifest(path)
                        .and_then(|bytes| parse_manifest(path, format, &bytes))
                        .map(Arc::new),
                ),
            },
        },
    };
    scan.entries.insert(path.to_owned(), entry);
    scan
}

/// Checks `paths` for `node`. Directory entries are checked together (so duplicates across
/// files show); files given one by one are checked together too.
pub fn check(paths: &[PathBuf], node: &NodeName, policy: TrustPolicy) -> Vec<Verdict> {
    let mut combined = Scan::default();
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            match Scanner::with_policy(path, policy).scan() {
                Ok(scan) => combined.entries.extend(scan.entries),
                Err(e) => out.push(Verdict {
                    path: path.display().to_string(),
                    result: "error".into(),
                    pods: vec![],
                    errors: vec![e.to_string()],
                    notes: vec![],
                }),
            }
        } else {
            combined.entries.extend(scan_file(path, policy).entries);
        }
    }
    let snapshot = Resolver::new(node.clone()).resolve(&combined, Clock::System.now());
    let by_file: BTreeMap<&Path, Vec<&Arc<crate::pod::StaticPod>>> =
        snapshot.pods.values().fold(BTreeMap::new(), |mut m, p| {
            m.entry(p.source.path.as_path())
                .or_insert_with(Vec::new)
                .push(p);
            m
        });
    for (path, report) in &snapshot.files {
        let pods = by_file
            .get(path.as_path())
            .into_iter()
            .flatten()
            .map(|p| WouldRun {
                pod: p.key.to_string(),
                hash: p.hash.0.clone(),
                containers: p
                    .init_containers()
                    .iter()
                    .chain(p.containers())
                    .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("")))
                    .collect(),
            })
            .collect();
        let (result, mut notes) = match &report.status {
            FileStatus::Ignored(reason) => ("ignored", vec![reason.to_string()]),
            FileStatus::Rejected | FileStatus::Conflict => ("error", vec![]),
            FileStatus::Accepted if report.errors.is_empty() => ("ok", vec![]),
            FileStatus::Accepted => ("error", vec![]),
            // Only the daemon holds renamed files; `check` reads what is there.
            FileStatus::RenamedAway => ("ignored", vec!["renamed away".to_owned()]),
        };
        notes.extend(report.warnings.iter().cloned());
        out.push(Verdict {
            path: path.display().to_string(),
            result: result.to_owned(),
            pods,
            errors: report.errors.iter().map(ToString::to_string).collect(),
            notes,
        });
    }
    out
}

/// Renders verdicts for people. Pure.
pub fn render(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        match v.result.as_str() {
            "ignored" => out.push_str(&format!("{}: ignored ({})\n", v.path, v.notes.join("; "))),
            "ok" => {
                out.push_str(&format!("{}: ok\n", v.path));
                for p in &v.pods {
                    out.push_str(&format!("  pod {} hash {}\n", p.pod, p.hash));
                    for c in &p.containers {
                        out.push_str(&format!(
                            "    container {}\n",
                            c.replacen('=', " image ", 1)
                        ));
                    }
                }
                for n in &v.notes {
                    out.push_str(&format!("  warning: {n}\n"));
                }
            }
            _ => {
                for e in &v.errors {
                    out.push_str(&format!("error: {e}\n"));
                }
                for p in &v.pods {
                    out.push_str(&format!("  pod {} hash {} (would run)\n", p.pod, p.hash));
                }
            }
        }
    }
    let errors = verdicts.iter().filter(|v| v.result == "error").count();
    let ok = verdicts.iter().filter(|v| v.result == "ok").count();
    out.push_str(&format!(
        "{ok} ok, {errors} with errors, {} ignored\n",
        verdicts.len() - ok - errors
    ));
    out
}

/// Whether any verdict is an error.
pub fn failed(verdicts: &[Verdict]) -> bool {
    verdicts.iter().any(|v| v.result == "error")
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME, namespace: kube-system}\nspec: {containers: [{name: c, image: 'busybox:1.35'}]}\n";

    #[test]
    fn a_directory_gets_a_verdict_per_file_with_what_would_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), POD.replace("NAME", "web")).expect("write");
        std::fs::write(dir.path().join("b.yaml"), POD.replace("NAME", "web")).expect("write");
        std::fs::write(
            dir.path().join("c.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: Bad}\nspec: {containers: []}\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("notes.txt"), "x").expect("write");
        let v = check(
            &[dir.path().to_owned()],
            &NodeName::new("n1"),
            TrustPolicy::Off,
        );
        let results: Vec<(&str, &str)> = v
            .iter()
            .map(|v| {
                (
                    Path::new(&v.path)
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or(""),
                    v.result.as_str(),
                )
            })
            .collect();
        assert_eq!(
            results,
            [
                ("a.yaml", "ok"),
                ("b.yaml", "error"),
                ("c.yaml", "error"),
                ("notes.txt", "ignored")
            ]
        );
        assert!(failed(&v));
        assert_eq!(v[0].pods[0].pod, "kube-system/web-n1");
        assert_eq!(v[0].pods[0].containers, ["c=busybox:1.35"]);
        assert!(
            v[1].errors[0].contains("already declared by"),
            "{:?}",
            v[1].errors
        );
        let c = dir.path().join("c.yaml").display().to_string();
        assert_eq!(
            v[2].errors,
            [format!(
                "{c}: document 1: metadata.name: \"Bad\" with the node suffix (\"Bad-<node>\"): a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character; spec.containers: required: at least one container"
            )]
        );
    }

    #[test]
    fn a_fifo_named_on_the_command_line_is_refused_without_hanging() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let (tx, rx) = std::sync::mpsc::channel();
        let named = fifo.clone();
        std::thread::spawn(move || {
            let v = check(&[named], &NodeName::new("n1"), TrustPolicy::Off);
            let _ = tx.send(v);
        });
        let v = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("check hung on a FIFO");
        assert_eq!(v[0].result, "error");
        assert!(
            v[0].errors[0].contains("it is a FIFO (named pipe), not a regular file"),
            "{:?}",
            v[0].errors
        );
    }

    #[test]
    fn the_text_report_names_pods_images_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.yaml");
        std::fs::write(&good, POD.replace("NAME", "web")).expect("write");
        let v = check(
            std::slice::from_ref(&good),
            &NodeName::new("n1"),
            TrustPolicy::Off,
        );
        let text = render(&v);
        let hash = &v[0].pods[0].hash;
        assert_eq!(
            text,
            format!(
                "{}: ok\n  pod kube-system/web-n1 hash {hash}\n    container c image busybox:1.35\n1 ok, 0 with errors, 0 ignored\n",
                good.display()
            )
        );
        assert!(!failed(&v));
    }
}

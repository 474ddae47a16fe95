//! The report of `podvisor diff`: what it compared against, each pod's outcome, the images to
//! pull and the proposal's errors; its text form, and the exit status it makes. Pure.

use std::path::PathBuf;

use serde::Serialize;

use super::images::{ImagePull, Why};
use super::outcome::{Outcome, PodDiff, Step};
use crate::manifest::{FileStatus, Snapshot};

/// No change (and no error).
pub const EXIT_SAME: u8 = 0;
/// A proposed manifest is invalid, or the comparison could not be made.
pub const EXIT_INVALID: u8 = 1;
/// Something would change (and nothing is invalid).
pub const EXIT_CHANGES: u8 = 2;

/// What the proposal was compared against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Against {
    /// What the running daemon runs, through its status socket.
    Daemon,
    /// The manifest directory, read as a daemon starting now would read it.
    Directory,
}

/// One proposed file with something to say: errors, warnings, or why it is not read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileNote {
    /// Its path in the manifest directory.
    pub path: PathBuf,
    /// `ok`, `error` or `ignored`.
    pub result: &'static str,
    /// Its errors.
    pub errors: Vec<String>,
    /// Its warnings, or why it is ignored.
    pub notes: Vec<String>,
}

/// Everything `podvisor diff` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What the proposal was compared against.
    pub against: Against,
    /// The manifest directory.
    pub manifest_dir: PathBuf,
    /// The node name.
    pub node: String,
    /// Every pod's outcome, in key order.
    pub pods: Vec<PodDiff>,
    /// Images the starting containers pull (or may pull).
    pub images: Vec<ImagePull>,
    /// The proposal's files that have errors, warnings, or are not read.
    pub files: Vec<FileNote>,
    /// Remarks on the comparison itself.
    pub notes: Vec<String>,
}

/// The notes on the proposal's files in `proposed` (its `files` are the proposal's only).
pub fn file_notes(proposed: &Snapshot) -> Vec<FileNote> {
    proposed
        .files
        .iter()
        .filter_map(|(path, f)| {
            let (result, notes) = match &f.status {
                FileStatus::Ignored(reason) => ("ignored", vec![reason.to_string()]),
                _ if !f.errors.is_empty() => ("error", f.warnings.clone()),
                _ if !f.warnings.is_empty() => ("ok", f.warnings.clone()),
                _ => return None,
            };
            Some(FileNote {
                path: path.clone(),
                result,
                errors: f.errors.iter().map(ToString::to_string).collect(),
                notes,
            })
        })
        .collect()
}

impl Report {
    /// How many proposed files have errors.
    pub fn invalid(&self) -> usize {
        self.files.iter().filter(|f| f.result == "error").count()
    }

    /// 1 when a proposed file is invalid, else 2 when anything changes, else 0.
    pub fn exit_code(&self) -> u8 {
        if self.invalid() > 0 {
            EXIT_INVALID
        } else if self.pods.iter().any(PodDiff::changes) {
            EXIT_CHANGES
        } else {
            EXIT_SAME
        }
    }

    /// The report as printed: JSON for tools, else text.
    pub fn output(&self, json: bool) -> String {
        if json {
            serde_json::to_string_pretty(self)
                .map(|s| s + "\n")
                .unwrap_or_default()
        } else {
            self.render()
        }
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = match self.against {
            Against::Daemon => format!(
                "compared with the running daemon (node {}, {})\n",
                self.node,
                self.manifest_dir.display()
            ),
            Against::Directory => format!(
                "compared with the manifest directory {} (node {}; no daemon asked)\n",
                self.manifest_dir.display(),
                self.node
            ),
        };
        for note in &self.notes {
            out.push_str(&format!("note: {note}\n"));
        }
        for d in &self.pods {
            out.push_str(&pod_line(d));
        }
        for f in &self.files {
            for e in &f.errors {
                out.push_str(&format!("error: {e}\n"));
            }
            let tag = if f.result == "ignored" {
                "ignored"
            } else {
                "warning"
            };
            for n in &f.notes {
                out.push_str(&format!("{tag}: {}: {n}\n", f.path.display()));
            }
        }
        out.push_str(&self.image_lines());
        out.push_str(&self.summary());
        out
    }

    fn image_lines(&self) -> String {
        let mut out = String::new();
        for why in [Why::Always, Why::Absent, Why::Unknown, Why::NeverPulled] {
            let pulls: Vec<&ImagePull> = self.images.iter().filter(|p| p.why == why).collect();
            if pulls.is_empty() {
                continue;
            }
            out.push_str(match why {
                Why::Always => "images pulled (imagePullPolicy Always):\n",
                Why::Absent => "images pulled (not on the node):\n",
                Why::Unknown => "images pulled if not on the node (their presence is unknown without the daemon):\n",
                Why::NeverPulled => "images missing (not on the node, imagePullPolicy Never: these containers will not start):\n",
            });
            for p in pulls {
                out.push_str(&format!("  {}  ({})\n", p.image, p.pods.join(", ")));
            }
        }
        out
    }

    fn summary(&self) -> String {
        let count = |o: Outcome| self.pods.iter().filter(|d| d.outcome == o).count();
        let parts: Vec<String> = [
            (Outcome::Create, "to create"),
            (Outcome::Replace, "to replace"),
            (Outcome::Restart, "to restart in place"),
            (Outcome::Update, "to update in place"),
            (Outcome::Remove, "to remove"),
            (Outcome::Nothing, "unchanged"),
        ]
        .into_iter()
        .filter(|(o, _)| count(*o) > 0)
        .map(|(o, what)| format!("{} {what}", count(o)))
        .collect();
        let pods = if parts.is_empty() {
            "no pods".to_owned()
        } else {
            parts.join(", ")
        };
        match self.invalid() {
            0 => format!("{pods}\n"),
            n => format!("{pods}; {n} invalid file(s)\n"),
        }
    }
}

fn pod_line(d: &PodDiff) -> String {
    let word = match d.outcome {
        Outcome::Nothing => "nothing",
        Outcome::Update => "update",
        Outcome::Restart => "restart",
        Outcome::Replace => "replace",
        Outcome::Create => "create",
        Outcome::Remove => "remove",
    };
    let mut detail: Vec<String> = Vec::new();
    if d.outcome == Outcome::Replace {
        detail.push(format!("changed: {}", d.fields.join(", ")));
    }
    for c in &d.containers {
        let fields = if c.fields.is_empty() {
            String::new()
        } else {
            format!(" ({})", c.fields.join(", "))
        };
        detail.push(match c.step {
            Step::Restart => format!("restart container {} in place{fields}", c.name),
            Step::Start => format!("start new container {}", c.name),
            Step::Stop => format!("stop dropped container {}", c.name),
            Step::Unchanged => {
                format!("container {} changed{fields}, not run again", c.name)
            }
        });
    }
    if d.outcome == Outcome::Update && !d.fields.is_empty() {
        detail.push(format!("changed: {} (no restart)", d.fields.join(", ")));
    }
    if let Some(note) = &d.note {
        detail.push(note.clone());
    }
    let mut line = format!("{word:<8} {}", d.pod);
    if !detail.is_empty() {
        line.push_str(": ");
        line.push_str(&detail.join("; "));
    }
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::diff::outcome::ContainerChange;

    fn pod(name: &str, outcome: Outcome) -> PodDiff {
        PodDiff {
            pod: format!("kube-system/{name}-n1"),
            file: None,
            outcome,
            fields: vec![],
            containers: vec![],
            note: None,
        }
    }

    fn report(pods: Vec<PodDiff>, files: Vec<FileNote>) -> Report {
        Report {
            against: Against::Directory,
            manifest_dir: PathBuf::from("/m"),
            node: "n1".into(),
            pods,
            images: vec![],
            files,
            notes: vec![],
        }
    }

    #[test]
    fn exit_codes_fit_ci_errors_over_changes_over_nothing() {
        assert_eq!(
            report(vec![pod("a", Outcome::Nothing)], vec![]).exit_code(),
            0
        );
        assert_eq!(
            report(vec![pod("a", Outcome::Update)], vec![]).exit_code(),
            2
        );
        let bad = FileNote {
            path: PathBuf::from("/m/b.yaml"),
            result: "error",
            errors: vec!["/m/b.yaml: line 1, column 1: bad".into()],
            notes: vec![],
        };
        assert_eq!(
            report(vec![pod("a", Outcome::Create)], vec![bad]).exit_code(),
            1
        );
    }

    #[test]
    fn the_text_says_per_pod_what_happens_and_why() {
        let mut replace = pod("net", Outcome::Replace);
        replace.fields = vec!["spec.hostNetwork".into()];
        let mut restart = pod("web", Outcome::Restart);
        restart.containers = vec![ContainerChange {
            name: "main".into(),
            step: Step::Restart,
            fields: vec!["image".into()],
        }];
        let mut r = report(
            vec![
                pod("a", Outcome::Nothing),
                replace,
                restart,
                pod("new", Outcome::Create),
            ],
            vec![],
        );
        r.images = vec![ImagePull {
            image: "busybox:1.36".into(),
            why: Why::Unknown,
            pods: vec!["kube-system/web-n1".into()],
        }];
        assert_eq!(
            r.render(),
            "compared with the manifest directory /m (node n1; no daemon asked)\n\
             nothing  kube-system/a-n1\n\
             replace  kube-system/net-n1: changed: spec.hostNetwork\n\
             restart  kube-system/web-n1: restart container main in place (image)\n\
             create   kube-system/new-n1\n\
             images pulled if not on the node (their presence is unknown without the daemon):\n  \
             busybox:1.36  (kube-system/web-n1)\n\
             1 to create, 1 to replace, 1 to restart in place, 1 unchanged\n"
        );
    }
}

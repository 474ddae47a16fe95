//! One test per outcome, through the proposal merge and the daemon's planner.

use std::path::PathBuf;

use super::*;
use crate::commands::diff::merge::{Scope, propose};
use crate::manifest::{Entry, Format, Resolver, Scan, parse_manifest};
use crate::pod::NodeName;

const T: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn web(extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web, labels: {{tier: a}}}}\nspec:\n  containers:\n  - {{name: main, image: 'busybox:1.35'{extra}}}\n  - {{name: side, image: 'busybox:1.35'}}\n"
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

/// The outcomes of replacing `file` of a directory running `running` with `text`.
fn diff_file(running: &[(&str, &str)], file: &str, text: &str) -> Vec<PodDiff> {
    let node = NodeName::new("n1");
    let current = Resolver::new(node.clone()).resolve(&scan(running), T);
    let scope = Scope::File(PathBuf::from(format!("/m/{file}")));
    let proposed = propose(&current, &scan(&[(file, text)]), &scope, &node, T);
    let observed = as_running(&current.pods, &[]);
    diff(&current.pods, &observed, &proposed, T)
}

fn one(diffs: Vec<PodDiff>) -> PodDiff {
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    diffs.into_iter().next().expect("one")
}

#[test]
fn the_same_file_changes_nothing() {
    let d = one(diff_file(&[("web.yaml", &web(""))], "web.yaml", &web("")));
    assert_eq!(d.outcome, Outcome::Nothing);
    assert!(!d.changes());
    assert_eq!(d.pod, "default/web-n1");
}

#[test]
fn a_container_edit_restarts_that_container_in_place_and_says_what_changed() {
    let d = one(diff_file(
        &[("web.yaml", &web(""))],
        "web.yaml",
        &web(", env: [{name: A, value: '1'}]")
            .replace("'busybox:1.35', env", "'busybox:1.36', env"),
    ));
    assert_eq!(d.outcome, Outcome::Restart);
    assert_eq!(
        d.containers,
        [ContainerChange {
            name: "main".into(),
            step: Step::Restart,
            fields: vec!["env".into(), "image".into()],
        }]
    );
}

#[test]
fn a_sandbox_shaping_edit_replaces_the_pod_and_names_the_field() {
    let d = one(diff_file(
        &[("web.yaml", &web(""))],
        "web.yaml",
        &web("").replace("tier: a", "tier: b"),
    ));
    assert_eq!(d.outcome, Outcome::Replace);
    assert_eq!(d.fields, ["metadata.labels.tier"]);
    let d = one(diff_file(
        &[("web.yaml", &web(""))],
        "web.yaml",
        &web("").replace("spec:\n", "spec:\n  hostNetwork: true\n"),
    ));
    assert_eq!(
        (d.outcome, d.fields),
        (Outcome::Replace, vec!["spec.hostNetwork".to_owned()])
    );
}

#[test]
fn a_new_file_creates_its_pod_and_an_emptied_directory_removes_it() {
    let d = one(diff_file(&[], "web.yaml", &web("")));
    assert_eq!(
        (d.outcome, d.file),
        (Outcome::Create, Some(PathBuf::from("/m/web.yaml")))
    );

    let node = NodeName::new("n1");
    let current = Resolver::new(node.clone()).resolve(&scan(&[("web.yaml", &web(""))]), T);
    let proposed = propose(&current, &Scan::default(), &Scope::Dir, &node, T);
    let d = one(diff(
        &current.pods,
        &as_running(&current.pods, &[]),
        &proposed,
        T,
    ));
    assert_eq!(d.outcome, Outcome::Remove);
}

#[test]
fn an_invalid_file_keeps_its_running_version_and_carries_its_error() {
    let node = NodeName::new("n1");
    let current = Resolver::new(node.clone()).resolve(&scan(&[("web.yaml", &web(""))]), T);
    let bad = web("").replace("name: main", "name: Main_1");
    let scope = Scope::File(PathBuf::from("/m/web.yaml"));
    let proposed = propose(&current, &scan(&[("web.yaml", &bad)]), &scope, &node, T);
    let d = one(diff(
        &current.pods,
        &as_running(&current.pods, &[]),
        &proposed,
        T,
    ));
    assert_eq!(d.outcome, Outcome::Nothing);
    assert_eq!(
        d.note.as_deref(),
        Some("its file is invalid: the running version is kept")
    );
    let errors: Vec<String> = proposed.errors().map(ToString::to_string).collect();
    assert!(errors[0].contains("spec.containers[0].name"), "{errors:?}");
}

#[test]
fn added_and_dropped_containers_start_and_stop_alone() {
    let d = one(diff_file(
        &[("web.yaml", &web(""))],
        "web.yaml",
        &web("").replace("name: side", "name: extra"),
    ));
    assert_eq!(d.outcome, Outcome::Restart);
    let steps: Vec<(&str, Step)> = d
        .containers
        .iter()
        .map(|c| (c.name.as_str(), c.step))
        .collect();
    assert_eq!(steps, [("extra", Step::Start), ("side", Step::Stop)]);
}

#[test]
fn an_edit_outside_the_containers_restarts_nothing() {
    let d = one(diff_file(
        &[("web.yaml", &web(""))],
        "web.yaml",
        &web("").replace("spec:\n", "spec:\n  terminationGracePeriodSeconds: 5\n"),
    ));
    assert_eq!(d.outcome, Outcome::Update);
    assert_eq!(d.fields, ["spec.terminationGracePeriodSeconds"]);
    assert!(d.containers.is_empty());
}

/// Init containers are part of the sandbox version: an edit runs them again in a new pod,
/// as the planner decides, not a restart in place as the container hash alone would suggest.
#[test]
fn an_edited_init_container_replaces_the_pod() {
    let init = |image: &str| {
        web("").replace(
            "  containers:\n",
            &format!("  initContainers: [{{name: setup, image: '{image}'}}]\n  containers:\n"),
        )
    };
    let d = one(diff_file(
        &[("web.yaml", &init("i:1"))],
        "web.yaml",
        &init("i:2"),
    ));
    assert_eq!(d.outcome, Outcome::Replace);
    assert_eq!(d.fields, ["spec.initContainers[0].image"]);
}

#[test]
fn a_pod_whose_file_is_unreadable_since_start_up_is_left_alone() {
    let running = RunningPod {
        namespace: "default".into(),
        name: "web-n1".into(),
        uid: "u".into(),
        sandbox_hash: "s".into(),
        manifest: Some(PathBuf::from("/m/web.yaml")),
        ready: true,
        containers: vec![],
    };
    let mut proposed = Snapshot::default();
    proposed.untouchable.insert(PathBuf::from("/m/web.yaml"));
    let observed = as_running(&BTreeMap::new(), std::slice::from_ref(&running));
    let d = one(diff(&BTreeMap::new(), &observed, &proposed, T));
    assert_eq!(d.outcome, Outcome::Nothing);
    assert!(d.note.is_some());
    // Once the file is gone for good, the pod goes.
    let d = one(diff(&BTreeMap::new(), &observed, &Snapshot::default(), T));
    assert_eq!(d.outcome, Outcome::Remove);
}

//! What the status API serves, as plain serializable views built (purely) from the loops'
//! snapshots. The CLI reads the same types back.

use std::path::Path;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::manifest::{FileStatus, Snapshot};
use crate::pod::ContainerKind;
use crate::reconcile::ReconcileState;
use crate::runtime::Instances;
use crate::status::{NodeStatus, PodReport};

/// A container's last exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitView {
    /// Exit code.
    pub code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    /// When, RFC 3339.
    pub finished_at: Option<String>,
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    /// Name.
    pub name: String,
    /// `init` or `app`.
    pub kind: String,
    /// `running`, `waiting` or `terminated`.
    pub state: String,
    /// The waiting or termination reason, if any.
    pub reason: Option<String>,
    /// Restart count.
    pub restarts: i32,
    /// Ready.
    pub ready: bool,
    /// The last exit (of this instance if it exited, else of the previous one).
    pub last_exit: Option<ExitView>,
    /// Image.
    pub image: String,
    /// Runtime container ID (`containerd://...`).
    pub container_id: Option<String>,
    /// The current instance's log file.
    pub log_path: Option<String>,
    /// The previous (dead) instance's log file, if it is still there.
    pub previous_log_path: Option<String>,
}

/// One static pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    /// Full name (`<name>-<node>`).
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// The manifest file.
    pub file: String,
    /// `kubernetes.io/config.hash`.
    pub hash: String,
    /// Pod UID.
    pub uid: String,
    /// Phase.
    pub phase: String,
    /// All containers ready.
    pub ready: bool,
    /// Ready containers / all containers, `1/2`.
    pub ready_count: String,
    /// Restarts summed over containers.
    pub restarts: i32,
    /// Start time, RFC 3339.
    pub start_time: Option<String>,
    /// Pod IP.
    pub pod_ip: Option<String>,
    /// Containers, init first.
    pub containers: Vec<ContainerView>,
    /// The last error podvisor met working on it.
    pub last_error: Option<String>,
    /// Why the version that runs is not its file's (invalid file, rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestView {
    /// Its path.
    pub path: String,
    /// `accepted`, `ignored` or `rejected`.
    pub status: String,
    /// Why it is ignored.
    pub reason: Option<String>,
    /// Errors (the rejection, or conflicts).
    pub errors: Vec<String>,
    /// Warnings (unknown fields).
    pub warnings: Vec<String>,
    /// Pods it provides.
    pub pods: Vec<String>,
}

/// `/pods/<name>`: the view plus the whole pod as the API would show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodDetail {
    /// The summary.
    pub summary: PodView,
    /// The pod with its status.
    pub pod: Pod,
}

fn time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    t.0.to_string()
}

fn container_view(
    status: &ContainerStatus,
    kind: ContainerKind,
    report: &PodReport,
    state: &ReconcileState,
    pod_log_dir: &Path,
) -> ContainerView {
    let st = status.state.clone().unwrap_or_default();
    let (state_name, reason) = if st.running.is_some() {
        ("running", None)
    } else if let Some(t) = &st.terminated {
        ("terminated", t.reason.clone())
    } else {
        (
            "waiting",
            st.waiting.as_ref().and_then(|w| w.reason.clone()),
        )
    };
    let exit = |t: &k8s_openapi::api::core::v1::ContainerStateTerminated| ExitView {
        code: t.exit_code,
        reason: t.reason.clone().unwrap_or_default(),
        finished_at: t.finished_at.as_ref().map(time),
    };
    let last_exit = st.terminated.as_ref().map(exit).or_else(|| {
        status
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .map(exit)
    });
    let Instances { current, previous } = state.observed.instances(&report.pod, &status.name);
    let path = |attempt: u32| {
        report
            .pod
            .log_file(pod_log_dir, &status.name, attempt)
            .display()
            .to_string()
    };
    ContainerView {
        name: status.name.clone(),
        kind: kind.as_str().to_owned(),
        state: state_name.to_owned(),
        reason,
        restarts: status.restart_count,
        ready: status.ready,
        last_exit,
        image: status.image.clone(),
        container_id: status.container_id.clone(),
        log_path: current.map(|c| path(c.attempt)),
        previous_log_path: previous.map(|c| path(c.attempt)),
    }
}

/// The view of one pod.
pub fn pod_view(report: &PodReport, state: &ReconcileState, pod_log_dir: &Path) -> PodView {
    let pod = &report.pod;
    let s = &report.status;
    let containers: Vec<ContainerView> = s
        .init_container_statuses
        .iter()
        .flatten()
        .map(|c| container_view(c, ContainerKind::Init, report, state, pod_log_dir))
        .chain(
            s.container_statuses
                .iter()
                .flatten()
                .map(|c| container_view(c, ContainerKind::App, report, state, pod_log_dir)),
        )
        .collect();
    let apps: Vec<&ContainerView> = containers.iter().filter(|c| c.kind == "app").collect();
    let ready_n = apps.iter().filter(|c| c.ready).count();
    PodView {
        name: pod.key.name.clone(),
        namespace: pod.key.namespace.clone(),
        file: pod.source.path.display().to_string(),
        hash: pod.hash.0.clone(),
        uid: pod.uid.0.clone(),
        phase: s.phase.clone().unwrap_or_default(),
        ready: !apps.is_empty() && ready_n == apps.len(),
        ready_count: format!("{ready_n}/{}", apps.len()),
        restarts: containers.iter().map(|c| c.restarts).sum(),
        start_time: s.start_time.as_ref().map(time),
        pod_ip: s.pod_ip.clone(),
        containers,
        last_error: report.last_error.clone(),
        note: report.note.clone(),
    }
}

/// The views of every pod, in key order.
pub fn pod_views(status: &NodeStatus, state: &ReconcileState, pod_log_dir: &Path) -> Vec<PodView> {
    status
        .pods
        .values()
        .map(|r| pod_view(r, state, pod_log_dir))
        .collect()
}

/// Finds a pod by `name`, `namespace/name`, or the manifest's `metadata.name`.
pub fn find<'a>(status: &'a NodeStatus, wanted: &str, node: &str) -> Option<&'a PodReport> {
    let (ns, name) = match wanted.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, wanted),
    };
    let suffixed = format!("{name}-{node}");
    let matches = |r: &&PodReport| {
        ns.is_none_or(|ns| r.pod.key.namespace == ns)
            && (r.pod.key.name == name || r.pod.key.name == suffixed)
    };
    status.pods.values().find(matches)
}

/// The whole pod with status, as `/pods/<name>` shows it.
pub fn pod_detail(report: &PodReport, state: &ReconcileState, pod_log_dir: &Path) -> PodDetail {
    let pod = &report.pod;
    PodDetail {
        summary: pod_view(report, state, pod_log_dir),
        pod: Pod {
            metadata: pod.metadata.clone(),
            spec: Some(pod.spec.clone()),
            status: Some(report.status.clone()),
        },
    }
}

/// Every directory entry the manifest scan saw.
pub fn manifest_views(snapshot: Option<&Snapshot>) -> Vec<ManifestView> {
    snapshot
        .map(|s| {
            s.files
                .iter()
                .map(|(path, f)| {
                    let (status, reason) = match &f.status {
                        FileStatus::Accepted => ("accepted", None),
                        FileStatus::Conflict => (
                            "conflict",
                            Some("an earlier file declares the same pod".to_owned()),
                        ),
                        FileStatus::Ignored(r) => ("ignored", Some(r.to_string())),
                        FileStatus::Rejected => ("rejected", None),
                        FileStatus::RenamedAway => (
                            "renamed away",
                            Some(
                                "its pods run until an editor writes it back or the hold ends"
                                    .to_owned(),
                            ),
                        ),
                    };
                    ManifestView {
                        path: path.display().to_string(),
                        status: status.to_owned(),
                        reason,
                        errors: f.errors.iter().map(ToString::to_string).collect(),
                        warnings: f.warnings.clone(),
                        pods: f.pods.iter().map(ToString::to_string).collect(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Age of something started at `start` (RFC 3339), in kubectl's short form, at `now`.
pub fn age(start: Option<&str>, now: Timestamp) -> String {
    let Some(start) = start.and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return "-".to_owned();
    };
    let secs = (now.0 as i128 - start.as_nanosecond()) / 1_000_000_000;
    match secs {
        s if s < 0 => "0s".to_owned(),
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use crate::manifest::{Entry, Format, Resolver, Scan, parse_manifest};
    use crate::pod::NodeName;
    use crate::status::{StatusInput, pod_status};

    fn report(yaml: &str) -> PodReport {
        let mut scan = Scan::default();
        let path = std::path::PathBuf::from("/m/web.yaml");
        scan.entries.insert(
            path.clone(),
            Entry::Parsed(parse_manifest(&path, Format::Yaml, yaml.as_bytes()).map(Arc::new)),
        );
        let snap = Resolver::new(NodeName::new("n1")).resolve(&scan, Timestamp(0));
        let pod = snap.pods.values().next().expect("pod").clone();
        let status = pod_status(&StatusInput {
            pod: &pod,
            observed: &Default::default(),
            probes: &BTreeMap::new(),
            backing_off: &[],
            start_errors: &BTreeMap::new(),
            runtime_name: "containerd",
            host_ip: None,
            now: Timestamp(0),
        });
        PodReport {
            pod,
            status,
            last_error: Some("boom".into()),
            note: None,
        }
    }

    #[test]
    fn a_pod_view_summarises_status_for_people_and_tools() {
        let r = report(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: a, image: 'i:1'}, {name: b, image: 'i:1'}]}\n",
        );
        let v = pod_view(&r, &ReconcileState::default(), Path::new("/var/log/pods"));
        assert_eq!(
            (
                v.name.as_str(),
                v.phase.as_str(),
                v.ready_count.as_str(),
                v.ready
            ),
            ("web-n1", "Pending", "0/2", false)
        );
        assert_eq!(v.file, "/m/web.yaml");
        assert_eq!(
            v.containers
                .iter()
                .map(|c| c.state.as_str())
                .collect::<Vec<_>>(),
            ["waiting", "waiting"]
        );
        assert_eq!(v.last_error.as_deref(), Some("boom"));
    }

    #[test]
    fn pods_are_found_by_full_name_namespace_or_manifest_name() {
        let r = report(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: edge}\nspec: {containers: [{name: a, image: 'i:1'}]}\n",
        );
        let mut status = NodeStatus::default();
        status.pods.insert(r.pod.key.clone(), r);
        assert!(find(&status, "web-n1", "n1").is_some());
        assert!(find(&status, "edge/web-n1", "n1").is_some());
        assert!(find(&status, "web", "n1").is_some());
        assert!(find(&status, "default/web", "n1").is_none());
        assert!(find(&status, "other", "n1").is_none());
    }

    #[test]
    fn ages_read_like_kubectl() {
        let now = Timestamp(1_700_000_000_000_000_000);
        assert_eq!(age(Some("2023-11-14T22:12:20Z"), now), "60s");
        assert_eq!(age(Some("2023-11-14T20:13:20Z"), now), "2h");
        assert_eq!(age(None, now), "-");
    }
}

//! The state gauges of `/metrics`, read off the latest published state at scrape time: pods
//! by phase, restart counts and the node's conditions from the node status, manifest errors
//! from the snapshot, the mirror task's phase.

use crate::health;
use crate::manifest::{FileStatus, Snapshot};
use crate::metrics::{Gauges, MirrorSummary, Restarts};
use crate::mirror::MirrorState;
use crate::status::NodeStatus;

/// The gauges for this moment's state.
pub fn gauges(
    status: &NodeStatus,
    snapshot: Option<&Snapshot>,
    mirror: Option<&MirrorState>,
) -> Gauges {
    let mut g = Gauges::default();
    for (key, report) in &status.pods {
        g.pod_phases.push(
            report
                .status
                .phase
                .clone()
                .unwrap_or_else(|| "Unknown".to_owned()),
        );
        let statuses = report
            .status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(report.status.container_statuses.iter().flatten());
        for c in statuses {
            g.restarts.push(Restarts {
                namespace: key.namespace.clone(),
                pod: key.name.clone(),
                container: c.name.clone(),
                count: i64::from(c.restart_count),
            });
        }
    }
    for (path, file) in snapshot.map(|s| &s.files).into_iter().flatten() {
        if !file.errors.is_empty() || file.status == FileStatus::Rejected {
            g.manifest_errors
                .push((path.display().to_string(), file.errors.len() as i64));
        }
    }
    g.node_conditions = health::conditions(status.runtime_error.as_deref(), &status.health)
        .into_iter()
        .map(|c| (c.kind.to_owned(), c.status))
        .collect();
    g.mirror = mirror.map(|m| MirrorSummary {
        state: m.phase.name().to_owned(),
        reachable: m.phase.reachable(),
    });
    g
}

//! The node's health as the kubelet reports it in the Node's conditions: whether the runtime
//! and its network are ready (CRI `Status`), and whether the node is under memory, disk or
//! PID pressure (its figures against the kubelet's eviction thresholds).
//!
//! * `thresholds`: the eviction thresholds (`evictionHard`, `--eviction-hard`).
//! * `figures`: the node's figures, read from `/proc` and `statvfs(2)`.
//! * `pressure` (pure): thresholds met, and the conditions that hold over time.
//! * `conditions` (pure): the four Node conditions, with the kubelet's reasons and messages.
//! * `usage`: the node's own CPU and memory use for the node API's stats, from `/proc`.
//! * [`monitor`]: the task that asks the runtime and reads the figures every 10 s, publishing
//!   a [`NodeHealth`] when it changes. The kubelet asks the runtime every 5 s, but writes the
//!   Node only every 10 s, so asking more often shows nobody anything sooner; the
//!   reconciler's relist (every second) notices a runtime that stops answering at all.

pub mod conditions;
pub mod figures;
pub mod pressure;
pub mod thresholds;
pub mod usage;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::runtime::{Runtime, RuntimeStatus};
pub use conditions::{ConditionState, conditions};
pub use thresholds::{Pressure, Signal, ThresholdError, Thresholds};

/// How often the runtime's conditions are asked and the figures read (the kubelet's eviction
/// monitoring period and its Node status update frequency).
pub const PERIOD: Duration = Duration::from_secs(10);

/// What the node's conditions are computed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// The runtime's last answer to `Status`: `None` until it has answered once, `Err` with
    /// the error while the call fails.
    pub runtime: Option<Result<RuntimeStatus, String>>,
    /// The pressure conditions that hold.
    pub pressure: BTreeSet<Pressure>,
    /// The thresholds met at the last reading.
    pub met: BTreeSet<Signal>,
}

impl NodeHealth {
    /// A runtime that reports both conditions holding, and no pressure.
    pub fn ready() -> NodeHealth {
        NodeHealth {
            runtime: Some(Ok(RuntimeStatus::ready())),
            ..NodeHealth::default()
        }
    }
}

/// What the health monitor needs.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// The root dir: its filesystem is the nodefs.
    pub root_dir: PathBuf,
    /// The hard eviction thresholds.
    pub thresholds: Thresholds,
    /// How long a pressure condition stays on after its threshold was last met.
    pub transition: Duration,
}

/// Asks the runtime and reads the figures until `shutdown`, publishing on `tx` whenever the
/// node's health changes. Runs beside the reconciler and never holds it up.
pub async fn monitor<R: Runtime>(
    rt: Arc<R>,
    cfg: MonitorConfig,
    clock: Clock,
    tx: watch::Sender<NodeHealth>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tracker = pressure::PressureTracker::default();
    let mut image_filesystems: Option<Vec<PathBuf>> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut health = tx.borrow().clone();
        health.runtime = Some(rt.status().await.map_err(|e| e.to_string()));
        if image_filesystems.is_none() {
            image_filesystems = rt.image_filesystems().await.ok();
        }
        let root = cfg.root_dir.clone();
        let images = image_filesystems.clone().unwrap_or_default();
        let read = tokio::task::spawn_blocking(move || figures::read(&root, &images)).await;
        if let Ok(figures) = read {
            health.met = pressure::met(&figures, &cfg.thresholds);
            health.pressure = tracker.observe(&health.met, clock.now(), cfg.transition);
        }
        tx.send_if_modified(|old| {
            if *old == health {
                return false;
            }
            report_changes(old, &health);
            *old = health;
            true
        });
    }
}

/// Logs what changed: a runtime condition or a pressure condition turning on or off.
fn report_changes(old: &NodeHealth, new: &NodeHealth) {
    let errors = |h: &NodeHealth| conditions::runtime_errors(None, h);
    let (was, now) = (errors(old), errors(new));
    if was != now {
        if now.is_empty() {
            info!("container runtime and its network are ready");
        } else {
            warn!(errors = %now.join("; "), "container runtime not ready: the node is NotReady");
        }
    }
    for p in Pressure::ALL {
        let name = conditions::pressure_name(p);
        match (old.pressure.contains(&p), new.pressure.contains(&p)) {
            (false, true) => {
                let met: Vec<_> = new
                    .met
                    .iter()
                    .filter(|s| s.pressure() == p)
                    .map(|s| s.name())
                    .collect();
                warn!(condition = name, thresholds = %met.join(","), "node under pressure");
            }
            (true, false) => info!(condition = name, "node no longer under pressure"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{FakeRuntime, RuntimeCondition};

    #[tokio::test(start_paused = true)]
    async fn the_monitor_publishes_the_runtimes_conditions_as_they_change() {
        let rt = Arc::new(FakeRuntime::new(Clock::System));
        let (tx, mut rx) = watch::channel(NodeHealth::default());
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = MonitorConfig {
            root_dir: dir.path().to_path_buf(),
            thresholds: Thresholds::parse_flag("").expect("none"),
            transition: pressure::TRANSITION_PERIOD,
        };
        let token = CancellationToken::new();
        let task = tokio::spawn(monitor(rt.clone(), cfg, Clock::System, tx, token.clone()));
        rx.changed().await.expect("first answer");
        assert_eq!(
            rx.borrow_and_update().runtime,
            Some(Ok(RuntimeStatus::ready()))
        );
        let mut down = RuntimeStatus::ready();
        down.conditions[1] = RuntimeCondition {
            kind: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "cni plugin not initialized".into(),
        };
        rt.set_status(down.clone());
        rx.changed().await.expect("next answer");
        assert_eq!(rx.borrow().runtime, Some(Ok(down)));
        token.cancel();
        task.await.expect("monitor ends");
    }
}

//! Wiring: builds the runtime client, starts the loops as tasks (manifest watcher,
//! reconciler, prober, status), and owns shutdown. No decisions are made here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::event::EventSink;
use crate::manifest::{self, Snapshot, WatchConfig};
use crate::probe::{ProbeResults, Prober};
use crate::reconcile::{ExecContext, ReconcileState, Reconciler, ReconcilerConfig};
use crate::runtime::{CriRuntime, NodeContext, Runtime};
use crate::shutdown::Shutdown;
use crate::status::{self, NodeStatus};

/// How long the loops get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Quiet time ending an editor's burst of inotify events.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest an editor's burst may delay a rescan.
pub const MAX_HOLD: Duration = Duration::from_secs(1);

/// Facts about the node the loops need.
#[derive(Clone, Debug, Default)]
pub struct NodeFacts {
    /// The runtime's name, prefixed to container IDs in status (`containerd://...`).
    pub runtime_name: String,
    /// The node's address.
    pub host_ip: Option<String>,
}

/// The channels the running loops publish on.
#[derive(Clone, Debug)]
pub struct Supervised {
    /// Manifest snapshots.
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// The reconciler's state.
    pub state: watch::Receiver<Arc<ReconcileState>>,
    /// Probe results.
    pub probes: watch::Receiver<Arc<ProbeResults>>,
    /// Every static pod's status.
    pub status: watch::Receiver<Arc<NodeStatus>>,
}

/// Runs the daemon until `shutdown`. Returns an error when a loop ends on its own, which
/// should make the service manager restart podvisor.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        node = %config.node_name,
        manifest_dir = %config.manifest_dir.display(),
        runtime = %config.runtime_endpoint,
        "podvisor starting"
    );
    std::fs::create_dir_all(&config.root_dir)
        .with_context(|| format!("creating root dir {}", config.root_dir.display()))?;
    let ctx = NodeContext::detect(
        config.node_name.clone(),
        config.root_dir.clone(),
        config.pod_log_dir.clone(),
    );
    let host_ip = ctx.host_ip.map(|ip| ip.to_string());
    let runtime = Arc::new(CriRuntime::new(&config.runtime_endpoint, ctx)?);
    let runtime_name = match runtime.version().await {
        Ok(v) => {
            info!(runtime = %v.describe(), "container runtime connected");
            v.name
        }
        Err(e) => {
            warn!(error = %e, "container runtime not reachable yet; will keep trying");
            "containerd".to_owned()
        }
    };
    let facts = NodeFacts {
        runtime_name,
        host_ip,
    };
    let (_channels, task) = supervise(
        &config,
        runtime,
        facts,
        Clock::System,
        EventSink::discard(),
        shutdown,
    );
    task.await
}

/// Starts the manifest watcher, the reconciler, the prober and the status task over
/// `runtime`. Returns their channels and the future that runs them until `shutdown` (or
/// until one of them stops, which is an error).
pub fn supervise<R: Runtime>(
    config: &Config,
    runtime: Arc<R>,
    facts: NodeFacts,
    clock: Clock,
    events: EventSink,
    shutdown: Shutdown,
) -> (
    Supervised,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    let (snap_tx, snap_rx) = watch::channel(None);
    let cx = ExecContext {
        events: events.clone(),
        host_ip: facts.host_ip.clone(),
        clock,
    };
    let (reconciler, state) = Reconciler::new(
        runtime.clone(),
        cx,
        ReconcilerConfig {
            relist_period: config.relist_period,
            ..ReconcilerConfig::default()
        },
    );
    let (prober, probes) = Prober::new(runtime, clock, facts.host_ip.clone(), events);
    let (status_tx, status_rx) = watch::channel(Arc::new(NodeStatus::default()));
    let watch_config = WatchConfig {
        dir: config.manifest_dir.clone(),
        node: config.node_name.clone(),
        resync: config.resync_period,
        debounce: DEBOUNCE,
        max_hold: MAX_HOLD,
    };
    let channels = Supervised {
        snapshots: snap_rx.clone(),
        state: state.clone(),
        probes: probes.clone(),
        status: status_rx,
    };
    let task = {
        let channels = channels.clone();
        async move {
            let mut tasks = JoinSet::new();
            let token = shutdown.graceful.clone();
            tasks.spawn(manifest::watch(watch_config, clock, snap_tx, token.clone()));
            tasks.spawn(reconciler.run(snap_rx, channels.probes.clone(), token.clone()));
            tasks.spawn(prober.run(
                channels.snapshots.clone(),
                channels.state.clone(),
                token.clone(),
            ));
            tasks.spawn(status::publish(
                channels.snapshots.clone(),
                channels.state.clone(),
                channels.probes.clone(),
                facts.runtime_name,
                facts.host_ip,
                status_tx,
                token.clone(),
            ));
            tokio::select! {
                _ = token.cancelled() => {}
                _ = tasks.join_next() => if !token.is_cancelled() {
                    error!("a podvisor loop stopped unexpectedly");
                    token.cancel();
                    anyhow::bail!("a podvisor loop stopped unexpectedly");
                }
            }
            let drained = async { while tasks.join_next().await.is_some() {} };
            tokio::select! {
                _ = tokio::time::timeout(SHUTDOWN_GRACE, drained) => {}
                _ = shutdown.force.cancelled() => {}
            }
            info!("podvisor stopped; pods left running");
            Ok(())
        }
    };
    (channels, task)
}

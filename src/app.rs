//! Wiring: builds the runtime client, starts the manifest watcher and the reconciler as tasks,
//! and owns shutdown. No decisions are made here.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::config::Config;
use crate::manifest::{self, WatchConfig};
use crate::reconcile::{ReconcileState, Reconciler, ReconcilerConfig};
use crate::runtime::{CriRuntime, NodeContext, Runtime};
use crate::shutdown::Shutdown;

/// How long the loops get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Quiet time ending an editor's burst of inotify events.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest an editor's burst may delay a rescan.
pub const MAX_HOLD: Duration = Duration::from_secs(1);

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
    let runtime = Arc::new(CriRuntime::new(&config.runtime_endpoint, ctx)?);
    match runtime.version().await {
        Ok(v) => info!(runtime = %v, "container runtime connected"),
        Err(e) => warn!(error = %e, "container runtime not reachable yet; will keep trying"),
    }
    let (_state, task) = supervise(&config, runtime, Clock::System, shutdown);
    task.await
}

/// Starts the manifest watcher and the reconciler over `runtime`. Returns the reconciler's
/// state channel and the future that runs both until `shutdown` (or until one of them stops,
/// which is an error).
pub fn supervise<R: Runtime>(
    config: &Config,
    runtime: Arc<R>,
    clock: Clock,
    shutdown: Shutdown,
) -> (
    watch::Receiver<Arc<ReconcileState>>,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    let (snap_tx, snap_rx) = watch::channel(None);
    let (reconciler, state) = Reconciler::new(
        runtime,
        clock,
        ReconcilerConfig {
            relist_period: config.relist_period,
            ..ReconcilerConfig::default()
        },
    );
    let watch_config = WatchConfig {
        dir: config.manifest_dir.clone(),
        node: config.node_name.clone(),
        resync: config.resync_period,
        debounce: DEBOUNCE,
        max_hold: MAX_HOLD,
    };
    let task = async move {
        let mut tasks = JoinSet::new();
        let token = shutdown.graceful.clone();
        tasks.spawn(manifest::watch(watch_config, clock, snap_tx, token.clone()));
        tasks.spawn(reconciler.run(snap_rx, token.clone()));
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
    };
    (state, task)
}

//! Wiring: builds the runtime client, starts the loops as tasks (manifest watcher,
//! reconciler, prober, node health, status, status API, systemd notifications), and owns
//! shutdown. No decisions are made here.

mod certs;
mod cgroups;
mod node_api;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use crate::api::{self, ApiState, Listeners};
use crate::clock::{Clock, Timestamp};
use crate::config::Config;
use crate::event::{self, EventSink};
use crate::health::{self, MonitorConfig, NodeHealth};
use crate::host::{Host, NodeContext, RealHost};
use crate::images;
use crate::instance::InstanceLock;
use crate::logfiles;
use crate::manifest::{self, Snapshot, TrustPolicy, WatchConfig};
use crate::metrics::Metrics;
use crate::mirror::{self, MirrorConfig, MirrorState, NodeInfo};
use crate::nodeapi;
use crate::notify;
use crate::probe::{ProbeResults, Prober};
use crate::reconcile::{ExecContext, ReconcileState, Reconciler, ReconcilerConfig, RolloutStore};
use crate::registry::RegistryAuth;
use crate::runtime::{CriRuntime, Runtime};
use crate::shutdown::Shutdown;
use crate::status::{self, NodeStatus};

/// Pod events held for the mirror task before the newest are dropped.
const EVENT_CHANNEL: usize = 1024;
/// How long the loops get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Quiet time ending an editor's burst of inotify events.
pub const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest an editor's burst may delay a rescan.
pub const MAX_HOLD: Duration = Duration::from_secs(1);

/// What the loops need besides the configuration and the runtime.
#[derive(Clone)]
pub struct Parts {
    /// The node's address.
    pub host_ip: Option<String>,
    /// Time.
    pub clock: Clock,
    /// Where pod events go.
    pub events: EventSink,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// How untrusted manifests are treated.
    pub policy: TrustPolicy,
}

impl Parts {
    /// Parts for tests and tools: system clock, no events, fresh metrics, no trust checks.
    pub fn plain(clock: Clock) -> Parts {
        Parts {
            host_ip: None,
            clock,
            events: EventSink::discard(),
            metrics: Arc::new(Metrics::new()),
            policy: TrustPolicy::Off,
        }
    }
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
    /// The manifest watcher's last scan attempt.
    pub scans: watch::Receiver<Timestamp>,
}

/// The status API's view of the runtime's images.
fn image_lister<R: Runtime>(runtime: Arc<R>) -> api::ImageLister {
    Arc::new(move || {
        let runtime = runtime.clone();
        Box::pin(async move { runtime.list_images().await })
    })
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
    // A plugin config the kubelet would refuse is a configuration error: found before any
    // socket is opened.
    let auth = RegistryAuth::new(
        RegistryAuth::search_paths(&config.root_dir),
        config
            .credential_providers
            .as_ref()
            .map(|(c, b)| (c.as_path(), b.as_path())),
    )?;
    std::fs::create_dir_all(&config.root_dir)
        .with_context(|| format!("creating root dir {}", config.root_dir.display()))?;
    api::ensure_socket_dir(&config.status_socket)?;
    // Before anything touches a pod: one podvisor per root dir and socket.
    let _lock = InstanceLock::acquire(&config.root_dir, &config.status_socket)?;
    let listeners = Listeners::bind(&config.status_socket, config.status_address).await?;
    let metrics = Arc::new(Metrics::new());
    let mut ctx = NodeContext::detect(
        config.node_name.clone(),
        config.root_dir.clone(),
        config.pod_log_dir.clone(),
    )
    .with_node_ips(&config.node_status.node_ips)?;
    ctx.container_log_links = config.container_log_links.clone();
    let mut runtime = CriRuntime::new(
        &config.runtime_endpoint,
        Arc::new(ctx.clone()),
        Some(metrics.clone()),
    )?;
    if let Some(images) = &config.image_service_endpoint {
        runtime = runtime.with_image_endpoint(images, Some(metrics.clone()))?;
    }
    let runtime = runtime.with_pulls(
        Some(Arc::new(auth)),
        config.pulls.clone(),
        Some(metrics.clone()),
    );
    // Pod cgroups are named for the driver the runtime says it uses, before any pod is made.
    ctx.cgroup_driver = cgroups::settle(&runtime, config.cgroup_driver).await?;
    let host_ip = ctx.host_ip.map(|ip| ip.to_string());
    let runtime = Arc::new(runtime.with_context(Arc::new(ctx)));
    // The runtime's name and version are asked by the reconciler whenever it (re)connects.
    let node_info = NodeInfo::from_context(runtime.context());
    let euid = nix::unistd::geteuid().as_raw();
    let policy = TrustPolicy::for_process(euid, config.allow_insecure_manifests);
    if policy == TrustPolicy::Warn {
        warn!("--allow-insecure-manifests: manifests writable by other users will run");
    }
    let (events, event_rx) = match &config.mirror {
        Some(_) => {
            let (sink, rx) = event::channel(EVENT_CHANNEL);
            (sink, Some(rx))
        }
        None => (EventSink::discard(), None),
    };
    let parts = Parts {
        host_ip,
        clock: Clock::System,
        events,
        metrics: metrics.clone(),
        policy,
    };
    let mut node_info = node_info;
    let node_api = match &config.node_api {
        Some(settings) => {
            let (server, client_ca, serving) =
                node_api::bind(&config, settings, runtime.context()).await?;
            node_info.kubelet_port = Some(server.local_addr()?.port());
            Some((server, client_ca, serving))
        }
        None => None,
    };
    let host = Arc::new(RealHost::new(runtime.context().clone()));
    let (channels, loops) = supervise_until(
        &config,
        runtime.clone(),
        host,
        parts.clone(),
        shutdown.clone(),
    );
    let (mirror_tx, mirror_rx) = watch::channel(MirrorState::default());

    let token = shutdown.graceful.clone();
    let api_state = ApiState {
        status: channels.status.clone(),
        snapshots: channels.snapshots.clone(),
        reconcile: channels.state.clone(),
        mirror: config.mirror.is_some().then(|| mirror_rx.clone()),
        scans: channels.scans.clone(),
        metrics,
        pod_log_dir: config.pod_log_dir.clone(),
        node: config.node_name.as_str().to_owned(),
        manifest_dir: config.manifest_dir.clone(),
        images: Some(image_lister(runtime.clone())),
        reconcile_stall: (config.relist_period * 3).max(Duration::from_secs(10)),
        scan_stall: (config.resync_period * 3).max(Duration::from_secs(30)),
        clock: parts.clock,
    };
    let shared_state = Arc::new(api_state.clone());
    let mut tasks = JoinSet::new();
    tasks.spawn(loops);
    let serving = node_api.as_ref().map(|(_, _, serving)| serving.clone());
    if let (Some((server, client_ca, _)), Some(settings)) = (node_api, &config.node_api) {
        let api = node_api::assemble(
            &config,
            settings,
            client_ca,
            runtime.clone(),
            shared_state.clone(),
        );
        let token = token.clone();
        tasks.spawn(async move {
            server.serve(Arc::new(api), token).await;
            Ok(())
        });
    }
    if let Some(addr) = config.healthz {
        let (state, token) = (shared_state.clone(), token.clone());
        tasks.spawn(async move {
            nodeapi::serve_healthz(addr, state, token).await;
            Ok(())
        });
    }
    let socket = config.status_socket.clone();
    let api_token = token.clone();
    tasks.spawn(async move {
        api::serve(api_state, listeners, api_token)
            .await
            .with_context(|| format!("status API on {}", socket.display()))
    });
    if let (Some(settings), Some(event_rx)) = (&config.mirror, event_rx) {
        let mut mc = MirrorConfig::new(
            settings.kubeconfig.clone(),
            config.node_name.clone(),
            node_info,
        );
        let identity = certs::start(
            &config,
            settings,
            &mc.node_info,
            serving,
            &parts.metrics,
            &mut tasks,
            &token,
        );
        mc.identity = identity.identity;
        mc.credentials = identity.credentials;
        mc.register_node = settings.register_node;
        mc.metrics = Some(parts.metrics.clone());
        mc.node_labels = settings.node_labels.clone();
        mc.register_taints = settings
            .register_taints
            .iter()
            .map(|t| k8s_openapi::api::core::v1::Taint {
                key: t.key.clone(),
                value: (!t.value.is_empty()).then(|| t.value.clone()),
                effect: t.effect.clone(),
                time_added: None,
            })
            .collect();
        info!(kubeconfig = %settings.kubeconfig.display(), register_node = mc.register_node, "mirroring static pods to an API server");
        let (desired, status, token) = (
            channels.snapshots.clone(),
            channels.status.clone(),
            token.clone(),
        );
        tasks.spawn(async move {
            mirror::run(mc, desired, status, event_rx, mirror_tx, token).await;
            Ok(())
        });
    }
    tasks.spawn({
        let state = channels.state.clone();
        let token = token.clone();
        async move {
            notify::run(state, token).await;
            Ok(())
        }
    });
    // The first task to end decides: a shutdown ends them all; anything else is a failure.
    let mut result = Ok(());
    while let Some(done) = tasks.join_next().await {
        let outcome = done.unwrap_or_else(|e| Err(anyhow::anyhow!("task panicked: {e}")));
        if !token.is_cancelled() {
            match &outcome {
                Err(e) => error!(error = %format!("{e:#}"), "podvisor stopping"),
                Ok(()) => error!("a podvisor task ended on its own; stopping"),
            }
            token.cancel();
            result = outcome.and(Err(anyhow::anyhow!("a podvisor task stopped unexpectedly")));
        } else if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// Starts the manifest watcher, the reconciler, the prober and the status task over
/// `runtime` and `host`. Returns their channels and the future that runs them until
/// `shutdown` (or until one of them stops, which is an error).
pub fn supervise_until<R: Runtime, H: Host>(
    config: &Config,
    runtime: Arc<R>,
    host: Arc<H>,
    parts: Parts,
    shutdown: Shutdown,
) -> (
    Supervised,
    impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    let (snap_tx, snap_rx) = watch::channel(None);
    let (scan_tx, scan_rx) = watch::channel(Timestamp(0));
    let cx = ExecContext {
        events: parts.events.clone(),
        host_ip: parts.host_ip.clone(),
        clock: parts.clock,
    };
    let (reconciler, state) = Reconciler::new(
        runtime.clone(),
        host,
        cx,
        ReconcilerConfig {
            relist_period: config.relist_period,
            ..ReconcilerConfig::default()
        },
    );
    let reconciler = reconciler
        .with_metrics(parts.metrics.clone())
        .with_rollback(
            config.rollback,
            Some(RolloutStore::new(config.root_dir.join("rollback.json"))),
        );
    // Everyone but the reconciler and image GC follows the snapshot the reconciler plans
    // against: rolled-back pods at the version that runs.
    let effective = reconciler.effective();
    let observed = reconciler.observed();
    let monitor_config = MonitorConfig {
        root_dir: config.root_dir.clone(),
        thresholds: config.node_status.eviction_hard.clone(),
        transition: config.node_status.pressure_transition,
    };
    let (health_tx, health_rx) = watch::channel(NodeHealth::default());
    let image_health = health_rx.clone();
    let health_runtime = runtime.clone();
    let logs_runtime = runtime.clone();
    let images_runtime = runtime.clone();
    let image_gc = config.image_gc;
    let (pod_log_dir, log_settings) = (config.pod_log_dir.clone(), config.container_logs);
    let (prober, probes) = Prober::new(
        runtime,
        parts.clock,
        parts.host_ip.clone(),
        parts.events.clone(),
    );
    let (status_tx, status_rx) = watch::channel(Arc::new(NodeStatus::default()));
    let watch_config = WatchConfig {
        dir: config.manifest_dir.clone(),
        node: config.node_name.clone(),
        resync: config.resync_period,
        debounce: DEBOUNCE,
        max_hold: MAX_HOLD,
        policy: parts.policy,
        metrics: Some(parts.metrics.clone()),
        heartbeat: Some(scan_tx),
        events: parts.events.clone(),
        last_good: Some(config.root_dir.join("last-good")),
    };
    let channels = Supervised {
        snapshots: effective,
        state: state.clone(),
        probes: probes.clone(),
        status: status_rx,
        scans: scan_rx,
    };
    let task = {
        let channels = channels.clone();
        let clock = parts.clock;
        async move {
            let mut tasks = JoinSet::new();
            let token = shutdown.graceful.clone();
            tasks.spawn(manifest::watch(watch_config, clock, snap_tx, token.clone()));
            tasks.spawn(reconciler.run(snap_rx.clone(), channels.probes.clone(), token.clone()));
            tasks.spawn(prober.run(channels.snapshots.clone(), observed, token.clone()));
            tasks.spawn(health::monitor(
                health_runtime,
                monitor_config,
                parts.clock,
                health_tx,
                token.clone(),
            ));
            tasks.spawn(logfiles::manage(
                logs_runtime,
                pod_log_dir,
                log_settings,
                parts.clock,
                channels.state.clone(),
                token.clone(),
            ));
            tasks.spawn(images::collect_garbage(
                images_runtime,
                image_gc,
                parts.clock,
                // the manifests' own: a rolled-back version's image stays too
                snap_rx,
                channels.state.clone(),
                image_health,
                token.clone(),
            ));
            tasks.spawn(status::publish(
                channels.snapshots.clone(),
                channels.state.clone(),
                channels.probes.clone(),
                health_rx,
                parts.host_ip,
                parts.clock,
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

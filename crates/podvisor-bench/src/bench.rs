//! What every scenario shares: the observer's connection and poller, the floor's own
//! connection, the manifest directory, and the podvisor under test (restartable).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use podvisor::labels;

use crate::Settings;
use crate::cri::{Cri, Poller, selector};
use crate::daemon::{Daemon, DaemonConfig};
use crate::figures::Figures;
use crate::floor::FloorEnv;
use crate::lab::Lab;
use crate::pods::Manifests;

/// The log line podvisor writes once its first pass over a snapshot dispatched nothing.
pub const FIRST_RECONCILE: &str = "first full reconcile done";
/// Limit for one pod's step.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for many pods coming or going.
pub const BULK_TIMEOUT: Duration = Duration::from_secs(600);

/// Shared state of a run.
pub struct Bench<'a> {
    /// Counts and durations.
    pub settings: &'a Settings,
    /// Where samples go.
    pub figures: &'a mut Figures,
    /// The observer's connection.
    pub observer: Cri,
    /// The floor's connection.
    pub floor_cri: Cri,
    /// The fine-grained poller whose round trips are reported.
    pub poller: Poller,
    /// The manifest directory.
    pub manifests: Manifests,
    /// The floor's host-side paths.
    pub floor_env: FloorEnv,
    /// How podvisor is started by default.
    pub daemon_cfg: DaemonConfig,
    /// The podvisor under test.
    pub daemon: Daemon,
    spawns: usize,
    marks: std::path::PathBuf,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'a> Bench<'a> {
    /// Connects, prepares directories and starts podvisor with its default periods.
    pub async fn new(
        lab: &Lab,
        settings: &'a Settings,
        figures: &'a mut Figures,
    ) -> Result<Bench<'a>> {
        let observer = Cri::connect(&lab.socket()).await?;
        let floor_cri = Cri::connect(&lab.socket()).await?;
        let manifests = Manifests::new(lab.path("manifests")?, lab.path("staging")?);
        let daemon_cfg = DaemonConfig {
            bin: settings.podvisor.clone(),
            endpoint: lab.endpoint.clone(),
            manifest_dir: manifests.dir.clone(),
            root_dir: lab.path("root")?,
            pod_log_dir: lab.path("pod-logs")?,
            node: settings.node.clone(),
            resync: None,
            rust_log: settings.podvisor_log.clone(),
            log_dir: lab.path("logs")?,
            extra: crate::daemon::private_flags(&settings.podvisor, &lab.dir.join("status.sock")),
        };
        let floor_env = FloorEnv {
            ctx: podvisor::host::NodeContext::detect(
                podvisor::pod::NodeName::new("floor"),
                lab.path("floor-root")?,
                lab.path("floor-logs")?,
            ),
        };
        let (mut daemon, _) = Daemon::spawn(&daemon_cfg, 0)?;
        daemon
            .wait_log(FIRST_RECONCILE, Duration::from_millis(10), STEP_TIMEOUT)
            .await?;
        Ok(Bench {
            poller: Poller::new(settings.poll()),
            settings,
            figures,
            observer,
            floor_cri,
            manifests,
            floor_env,
            daemon_cfg,
            daemon,
            spawns: 1,
            marks: lab.path("logs")?.join("bench-marks.log"),
        })
    }

    /// Records the fine poller's round trips and cycles as figures.
    pub fn record_round_trips(&mut self) -> Result<()> {
        for rtt in std::mem::take(&mut self.poller.round_trips) {
            self.figures.record("observer.rtt", rtt)?;
        }
        for cycle in std::mem::take(&mut self.poller.cycles) {
            self.figures.record("observer.cycle", cycle)?;
        }
        Ok(())
    }

    /// Appends `what` with the wall-clock time (Unix seconds) to `logs/bench-marks.log`, to
    /// line the bench's steps up with podvisor's log timestamps.
    pub fn mark(&self, what: &str) {
        use std::io::Write as _;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.marks)
        {
            let _ = writeln!(f, "{now:.6} {what}");
        }
    }

    /// Records a sample.
    pub fn record(&mut self, id: &str, value: f64) -> Result<()> {
        self.figures.record(id, value)
    }

    /// Records a duration in ms.
    pub fn record_since(&mut self, id: &str, from: Instant, to: Instant) -> Result<()> {
        self.figures.record(id, ms(to - from))
    }

    /// The CRI pod name podvisor gives a manifest's `metadata.name`.
    pub fn pod_name(&self, name: &str) -> String {
        format!("{name}-{}", self.settings.node)
    }

    /// Replaces podvisor: `kill -9` if `hard`, else SIGTERM; then starts it with `resync`.
    /// Returns the instant just before the spawn.
    pub fn respawn(&mut self, hard: bool, resync: Option<&str>) -> Result<Instant> {
        self.respawn_with(hard, resync, &[])
    }

    /// [`Bench::respawn`] with `extra` flags after the default ones.
    pub fn respawn_with(
        &mut self,
        hard: bool,
        resync: Option<&str>,
        extra: &[String],
    ) -> Result<Instant> {
        if hard {
            self.daemon.kill9();
        } else {
            self.daemon.terminate()?;
        }
        let mut cfg = self.daemon_cfg.clone();
        cfg.resync = resync.map(str::to_owned);
        cfg.extra.extend_from_slice(extra);
        let (daemon, t0) = Daemon::spawn(&cfg, self.spawns)?;
        self.spawns += 1;
        self.daemon = daemon;
        Ok(t0)
    }

    /// Waits with the fine poller until `pod` has a RUNNING container other than `not`.
    /// Returns when it was seen and its id.
    pub async fn wait_running(
        &mut self,
        pod: &str,
        not: Option<&str>,
        what: &str,
    ) -> Result<(Instant, String)> {
        let cri = self.observer.clone();
        let sel = selector(labels::POD_NAME, pod);
        let result = self
            .poller
            .until(STEP_TIMEOUT, what, || {
                let cri = cri.clone();
                let sel = sel.clone();
                async move {
                    let found = cri.containers(sel, true).await?;
                    Ok(found
                        .into_iter()
                        .find(|c| Some(c.id.as_str()) != not)
                        .map(|c| c.id))
                }
            })
            .await;
        self.with_log(result)
    }

    /// Waits with the fine poller until `pod` has no RUNNING container, then until it has no
    /// sandbox. Returns both instants.
    pub async fn wait_gone(&mut self, pod: &str, what: &str) -> Result<(Instant, Instant)> {
        let cri = self.observer.clone();
        let sel = selector(labels::POD_NAME, pod);
        let stopped = self
            .poller
            .until(STEP_TIMEOUT, &format!("{what}: container stopped"), || {
                let cri = cri.clone();
                let sel = sel.clone();
                async move { Ok(cri.containers(sel, true).await?.is_empty().then_some(())) }
            })
            .await;
        let (stopped, ()) = self.with_log(stopped)?;
        let removed = self
            .poller
            .until(STEP_TIMEOUT, &format!("{what}: sandbox removed"), || {
                let cri = cri.clone();
                let sel = sel.clone();
                async move { Ok(cri.sandboxes(sel).await?.is_empty().then_some(())) }
            })
            .await;
        let (removed, ()) = self.with_log(removed)?;
        Ok((stopped, removed))
    }

    /// Counts podvisor's RUNNING containers and its sandboxes.
    pub async fn census(&self) -> Result<(usize, usize)> {
        let managed = selector(labels::MANAGED, labels::MANAGED_VALUE);
        let running = self.observer.containers(managed.clone(), true).await?.len();
        let sandboxes = self.observer.sandboxes(managed).await?.len();
        Ok((running, sandboxes))
    }

    /// Pod name → (container id, attempt) of every RUNNING container podvisor manages.
    pub async fn running_map(&self) -> Result<HashMap<String, (String, u32)>> {
        let managed = selector(labels::MANAGED, labels::MANAGED_VALUE);
        let mut out = HashMap::new();
        for c in self.observer.containers(managed, true).await? {
            let pod = c.labels.get(labels::POD_NAME).cloned().unwrap_or_default();
            let attempt = c.metadata.map(|m| m.attempt).unwrap_or(0);
            out.insert(pod, (c.id, attempt));
        }
        Ok(out)
    }

    /// Waits (coarsely, every `interval`) until podvisor runs exactly `running` containers
    /// in exactly `running` sandboxes. Returns when that was seen.
    pub async fn wait_census(
        &mut self,
        running: usize,
        interval: Duration,
        what: &str,
    ) -> Result<Instant> {
        let deadline = Instant::now() + BULK_TIMEOUT;
        loop {
            let (r, s) = self.census().await?;
            if r == running && s == running {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "timed out after {BULK_TIMEOUT:?} waiting for {what}: {r} running, {s} sandboxes; podvisor log tail:\n{}",
                    self.daemon.tail()
                );
            }
            self.daemon.check_alive()?;
            tokio::time::sleep(interval).await;
        }
    }

    fn with_log<T>(&self, r: Result<T>) -> Result<T> {
        r.with_context(|| {
            format!(
                "podvisor log {}, tail:\n{}",
                self.daemon.log_path().display(),
                self.daemon.tail()
            )
        })
    }

    /// Lets podvisor finish whatever the last step started.
    pub async fn settle(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}

//! [`Runtime`] over CRI v1 (containerd, CRI-O) on a unix socket, with tonic.
//!
//! The channel connects lazily and reconnects by itself, so podvisor starts before the runtime
//! and survives its restarts. Exit details of containers and sandbox IPs are immutable once
//! known, so they are fetched once per container or sandbox and cached.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tracing::warn;

use super::grpc::{done_if_gone, to_error};
use super::leftover_task;
use super::metered::Metered;
use super::unanswered::{UNANSWERED_DIR, Unanswered};
use super::{
    Asked, ContainerId, ContainerStart, ContainerState, EventSource, ExecOutput, ExitStream,
    ImageSource, Observed, ObservedContainer, ObservedSandbox, PullSettings, Runtime,
    RuntimeCondition, RuntimeError, RuntimeImage, RuntimeStatus, RuntimeVersion, SandboxId,
    SandboxState, Started, convert, events,
};
use crate::clock::Timestamp;
use crate::host::{NodeContext, Ready, TerminationSource};
use crate::labels;
use crate::metrics::Metrics;
use crate::pod::CgroupDriver;
use crate::pod::environment::Addresses;
use crate::pod::{
    ContainerHash, ContainerKind, PodKey, PodUid, SandboxHash, StaticPod, TerminationReason,
};
use crate::registry::progress::{self, StallWatch};
use crate::registry::{Credentials, RegistryAuth};

/// Limit for calls that only read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for calls that change state, as the kubelet's `runtimeRequestTimeout`.
const WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// A `PullImage` call's own deadline, in progress timeouts: only a runtime that keeps its
/// download area changing for ever without finishing would meet it.
const PULL_CALL_BOUND: u32 = 100;
/// Status calls in flight at once while observing.
const STATUS_CONCURRENCY: usize = 16;

#[derive(Clone, Debug, Default)]
struct ContainerDetails {
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    exit_code: Option<i32>,
    reason: Option<TerminationReason>,
    termination: Option<TerminationSource>,
    message: String,
    image_ref: String,
    exited: bool,
}

#[derive(Default)]
struct Cache {
    containers: HashMap<String, ContainerDetails>,
    sandbox_ips: HashMap<String, Option<String>>,
    /// Images `ensure_image` just made present (pull before swap), for the start that follows
    /// to use once instead of asking `ImageStatus` again.
    ensured: HashMap<String, (cri::Image, tokio::time::Instant)>,
}

/// How long an image `ensure_image` made present counts as present for the next start of
/// it without asking the runtime again: the few steps of one pod's work.
const ENSURED_FOR: Duration = Duration::from_secs(30);

/// A CRI v1 runtime behind a unix socket.
pub struct CriRuntime {
    channel: Metered,
    /// The image service: the runtime's own socket unless `--image-service-endpoint` names
    /// another.
    image_channel: Metered,
    ctx: Arc<NodeContext>,
    cache: Mutex<Cache>,
    pulls: Pulls,
    /// Create requests that got no answer: their names are not asked for again.
    unanswered: Unanswered,
}

/// How images are pulled: with whose credentials, watched how.
#[derive(Clone, Default)]
struct Pulls {
    auth: Option<Arc<RegistryAuth>>,
    settings: PullSettings,
    metrics: Option<Arc<Metrics>>,
    /// Turns to pull, when pulls are limited (`serializeImagePulls`, `maxParallelImagePulls`).
    turns: Option<Arc<tokio::sync::Semaphore>>,
}

/// A CRI timestamp, or `None` for the zero or negative values runtimes send for "never"
/// (containerd 1.6 sends Go's zero time as `-6795364578871345152`, 1754-08-30).
fn cri_time(nanos: i64) -> Option<Timestamp> {
    (nanos > 0).then_some(Timestamp(nanos))
}

/// The sandbox config for `pod`, without a log directory when its host side has no usable
/// one.
pub fn sandbox_config(
    pod: &StaticPod,
    attempt: u32,
    host: Ready,
    ctx: &NodeContext,
) -> cri::PodSandboxConfig {
    let mut config = convert::sandbox_config(pod, attempt, ctx);
    if !host.logs {
        config.log_directory.clear();
    }
    config
}

/// The `CreateContainer` config of container `name` and the sandbox config that goes with it,
/// without logs when its host side has no usable log directory; `instance` is the metadata
/// attempt and the restart count. The benchmark's floor sends exactly these.
pub fn container_configs(
    pod: &StaticPod,
    name: &str,
    instance: (u32, u32),
    addrs: &Addresses,
    host: Ready,
    ctx: &NodeContext,
) -> Result<(cri::ContainerConfig, cri::PodSandboxConfig), RuntimeError> {
    let (kind, container) = pod
        .container(name)
        .ok_or_else(|| RuntimeError::NoSuchContainer(name.to_owned()))?;
    if let Some(message) = convert::apparmor_refusal(pod, container, ctx) {
        return Err(RuntimeError::Refused { message });
    }
    let mut config = convert::container_config(pod, container, kind, instance, addrs, ctx);
    if !host.logs {
        // containerd logs nothing when either is empty (and fails the container when it
        // cannot create the log file).
        config.log_path.clear();
    }
    Ok((config, sandbox_config(pod, 0, host, ctx)))
}

fn socket_path(endpoint: &str) -> PathBuf {
    PathBuf::from(endpoint.strip_prefix("unix://").unwrap_or(endpoint))
}

/// The sandbox image named in a runtime's verbose status `config` (containerd's
/// `sandboxImage`).
fn sandbox_image_of(config: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(config).ok()?;
    v.get("sandboxImage")?
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn timeout_of<T>(mut req: tonic::Request<T>, t: Duration) -> tonic::Request<T> {
    req.set_timeout(t);
    req
}

/// What a container's status says that its list entry does not.
fn details_of(status: cri::ContainerStatus) -> ContainerDetails {
    let exited = status.state == cri::ContainerState::ContainerExited as i32;
    let termination = exited.then(|| {
        let path = status
            .annotations
            .get(labels::CONTAINER_TERMINATION_MESSAGE_PATH);
        TerminationSource {
            file: status
                .mounts
                .iter()
                .find(|m| Some(&m.container_path) == path)
                .map(|m| PathBuf::from(&m.host_path)),
            log: (!status.log_path.is_empty()).then(|| PathBuf::from(&status.log_path)),
            fallback_to_logs: status
                .annotations
                .get(labels::CONTAINER_TERMINATION_MESSAGE_POLICY)
                .is_some_and(|p| p == "FallbackToLogsOnError"),
        }
    });
    ContainerDetails {
        started_at: cri_time(status.started_at),
        finished_at: if exited {
            cri_time(status.finished_at)
        } else {
            None
        },
        exit_code: exited.then_some(status.exit_code),
        reason: exited.then(|| TerminationReason::from_runtime(&status.reason, status.exit_code)),
        termination,
        message: status.message,
        image_ref: status.image_ref,
        exited,
    }
}

/// A channel to a CRI socket that connects at the first call and again after the runtime
/// restarts.
fn unix_channel(endpoint: &str) -> Result<Channel, RuntimeError> {
    let path = socket_path(endpoint);
    Ok(Endpoint::try_from("http://[::]:50051")
        .map_err(|e| RuntimeError::Unavailable {
            method: "connect",
            message: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(2))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        })))
}

impl CriRuntime {
    /// A runtime at `endpoint` (`unix:///run/containerd/containerd.sock` or a bare path). Does
    /// not connect yet: the first call does, and calls reconnect after the runtime restarts.
    pub fn new(
        endpoint: &str,
        ctx: Arc<NodeContext>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<CriRuntime, RuntimeError> {
        let channel = Metered::new(unix_channel(endpoint)?, metrics);
        Ok(CriRuntime {
            image_channel: channel.clone(),
            channel,
            unanswered: Unanswered::load(ctx.root_dir.join(UNANSWERED_DIR)),
            ctx,
            cache: Mutex::new(Cache::default()),
            pulls: Pulls::default(),
        })
    }

    /// The same runtime pulling with credentials from `auth`, watched as `settings` say,
    /// counted in `metrics`.
    pub fn with_pulls(
        mut self,
        auth: Option<Arc<RegistryAuth>>,
        settings: PullSettings,
        metrics: Option<Arc<Metrics>>,
    ) -> CriRuntime {
        let turns = settings
            .parallel
            .map(|n| Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self.pulls = Pulls {
            auth,
            settings,
            metrics,
            turns,
        };
        self
    }

    /// The same runtime with its image service at another socket, as the kubelet's
    /// `--image-service-endpoint`.
    pub fn with_image_endpoint(
        mut self,
        endpoint: &str,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<CriRuntime, RuntimeError> {
        self.image_channel = Metered::new(unix_channel(endpoint)?, metrics);
        Ok(self)
    }

    /// The same runtime (and connection), building configs from `ctx`.
    pub fn with_context(mut self, ctx: Arc<NodeContext>) -> CriRuntime {
        self.ctx = ctx;
        self
    }

    /// The cgroup driver the runtime says it uses (CRI `RuntimeConfig`); `None` when the
    /// runtime does not implement the call (containerd before 1.7) or leaves it unsaid.
    pub async fn cgroup_driver(&self) -> Result<Option<CgroupDriver>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::RuntimeConfigRequest {}),
            READ_TIMEOUT,
        );
        let answer = match self.rt().runtime_config(req).await {
            Ok(a) => a.into_inner(),
            Err(s) if s.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(s) => return Err(to_error("RuntimeConfig", s, READ_TIMEOUT)),
        };
        Ok(answer
            .linux
            .and_then(|l| match cri::CgroupDriver::try_from(l.cgroup_driver) {
                Ok(cri::CgroupDriver::Systemd) => Some(CgroupDriver::Systemd),
                Ok(cri::CgroupDriver::Cgroupfs) => Some(CgroupDriver::Cgroupfs),
                Err(_) => None,
            }))
    }

    /// The node facts used to build configs.
    pub fn context(&self) -> &Arc<NodeContext> {
        &self.ctx
    }

    /// Runs `remove`; when containerd refuses it for a task that a start cancelled mid-way
    /// left behind, clears that task (see `leftover_task`) and asks again: a sandbox may hold
    /// a few such containers, each refused in turn.
    async fn clearing_leftover_task<F, Fut>(&self, remove: F) -> Result<(), RuntimeError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(), RuntimeError>>,
    {
        const TASKS_AT_MOST: usize = 8;
        let mut cleared = Vec::new();
        loop {
            let refused = match remove().await {
                Err(e) => e,
                ok => return ok,
            };
            let Some(id) = leftover_task::named_by(&refused).map(str::to_owned) else {
                return Err(refused);
            };
            // the same task again, or too many: the refusal stands, for the next pass
            if cleared.contains(&id) || cleared.len() == TASKS_AT_MOST {
                return Err(refused);
            }
            warn!(
                container = %id,
                "containerd kept a task for an exited container (a start cancelled mid-way, \
                 containerd#11037): killing and deleting it"
            );
            if let Err(e) = leftover_task::clear(self.channel.channel(), &id).await {
                // the refusal is what the caller acts on; why it could not be cleared is said here
                warn!(container = %id, error = %e, "could not clear containerd's leftover task");
                return Err(refused);
            }
            cleared.push(id);
        }
    }

    fn rt(&self) -> RuntimeServiceClient<Metered> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    fn images(&self) -> ImageServiceClient<Metered> {
        ImageServiceClient::new(self.image_channel.clone())
    }

    /// Every sandbox podvisor created (those with its label).
    async fn managed_sandboxes(&self) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: managed_filter(),
                    ..Default::default()
                }),
            }),
            READ_TIMEOUT,
        );
        Ok(self
            .rt()
            .list_pod_sandbox(req)
            .await
            .map_err(|s| to_error("ListPodSandbox", s, READ_TIMEOUT))?
            .into_inner()
            .items)
    }

    async fn container_details(
        &self,
        id: String,
    ) -> Result<Option<ContainerDetails>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ContainerStatusRequest {
                container_id: id,
                verbose: false,
            }),
            READ_TIMEOUT,
        );
        let status = match self.rt().container_status(req).await {
            Ok(resp) => resp.into_inner().status,
            Err(s) => match to_error("ContainerStatus", s, READ_TIMEOUT) {
                // Removed between the list and this call: the next list will not have it.
                RuntimeError::NotFound { .. } => None,
                e => return Err(e),
            },
        };
        Ok(status.map(details_of))
    }

    async fn fetch_sandbox_ip(&self, id: String) -> Result<Option<Option<String>>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id,
                verbose: false,
            }),
            READ_TIMEOUT,
        );
        let status = match self.rt().pod_sandbox_status(req).await {
            Ok(resp) => resp.into_inner().status,
            Err(s) => match to_error("PodSandboxStatus", s, READ_TIMEOUT) {
                RuntimeError::NotFound { .. } => None,
                e => return Err(e),
            },
        };
        Ok(status.map(|s| s.network.map(|n| n.ip).filter(|ip| !ip.is_empty())))
    }

    async fn image_status(
        &self,
        spec: &cri::ImageSpec,
    ) -> Result<Option<cri::Image>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            }),
            READ_TIMEOUT,
        );
        Ok(self
            .images()
            .image_status(req)
            .await
            .map_err(|s| to_error("ImageStatus", s, READ_TIMEOUT))?
            .into_inner()
            .image)
    }

    /// Makes the image present per the pull policy (never pulling a present image under
    /// IfNotPresent; never pulling at all under Never); returns the image's status and
    /// whether it was pulled. `pulling` is called once before a pull starts.
    async fn ensure_image_status(
        &self,
        image: &str,
        policy: &str,
        pulling: Option<&(dyn Fn() + Send + Sync)>,
    ) -> Result<(cri::Image, ImageSource), RuntimeError> {
        let spec = cri::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        };
        let present = self.image_status(&spec).await?;
        match (policy, present) {
            ("Never", None) => Err(RuntimeError::ImageNeverPull {
                image: image.to_owned(),
            }),
            ("Never" | "IfNotPresent", Some(found)) => Ok((found, ImageSource::Present)),
            _ => {
                if let Some(pulling) = pulling {
                    pulling();
                }
                // Pulling is announced, then waits its turn, as under the kubelet.
                let queued = tokio::time::Instant::now();
                let _turn = match &self.pulls.turns {
                    Some(turns) => turns.clone().acquire_owned().await.ok(),
                    None => None,
                };
                let started = tokio::time::Instant::now();
                let _in_flight = self.pulls.metrics.as_ref().map(|m| m.pull_started());
                let result = self.pull_with_credentials(image, &spec).await;
                let took = started.elapsed();
                if let Some(m) = &self.pulls.metrics {
                    let outcome = match &result {
                        Ok(()) => "pulled",
                        Err(PullFailure::Stalled(_)) => "stalled",
                        Err(PullFailure::Failed(_)) => "failed",
                    };
                    m.pull_finished(took, outcome);
                }
                result.map_err(|f| RuntimeError::ImagePull {
                    image: image.to_owned(),
                    message: f.message(),
                })?;
                let found =
                    self.image_status(&spec)
                        .await?
                        .ok_or_else(|| RuntimeError::ImagePull {
                            image: image.to_owned(),
                            message: "pulled, but the runtime does not list it".to_owned(),
                        })?;
                let size = found.size;
                Ok((
                    found,
                    ImageSource::Pulled {
                        took,
                        with_waiting: queued.elapsed(),
                        size,
                    },
                ))
            }
        }
    }

    /// Pulls with each credential the keyring gives for `image` in turn until one works,
    /// or without credentials when it gives none, as the kubelet's `PullImage`. Runtime
    /// messages are scrubbed of every credential tried.
    async fn pull_with_credentials(
        &self,
        image: &str,
        spec: &cri::ImageSpec,
    ) -> Result<(), PullFailure> {
        let creds = match &self.pulls.auth {
            Some(auth) => auth.lookup(image).await,
            None => Vec::new(),
        };
        if creds.is_empty() {
            return self.pull_once(spec, None).await;
        }
        let mut errors = Vec::new();
        for c in &creds {
            let auth = cri::AuthConfig {
                username: c.username.clone(),
                password: c.password().to_owned(),
                ..Default::default()
            };
            match self.pull_once(spec, Some(auth)).await {
                Ok(()) => return Ok(()),
                // A stall is not the credentials' fault: retrying with others would only
                // stall again.
                Err(PullFailure::Stalled(m)) => {
                    return Err(PullFailure::Stalled(scrub_all(&creds, &m)));
                }
                Err(PullFailure::Failed(m)) => errors.push(scrub_all(&creds, &m)),
            }
        }
        Err(PullFailure::Failed(if errors.len() == 1 {
            errors.remove(0)
        } else {
            format!("[{}]", errors.join(", "))
        }))
    }

    /// One `PullImage`, cancelled when the runtime's downloads show no progress for the
    /// progress timeout (see `registry::progress`).
    async fn pull_once(
        &self,
        spec: &cri::ImageSpec,
        auth: Option<cri::AuthConfig>,
    ) -> Result<(), PullFailure> {
        let timeout = self.pulls.settings.progress_timeout;
        let dir = self.progress_dir().await;
        let mut req = tonic::Request::new(cri::PullImageRequest {
            image: Some(spec.clone()),
            auth,
            ..Default::default()
        });
        // A bound far beyond any stall verdict, so a call can never hang for ever.
        req.set_timeout(timeout.saturating_mul(PULL_CALL_BOUND));
        let mut images = self.images();
        let pull = images.pull_image(req);
        tokio::pin!(pull);
        let now = tokio::time::Instant::now();
        let mut watch = StallWatch::new(timeout, now);
        let mut tick = tokio::time::interval(watch.period());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                done = &mut pull => {
                    return done.map(|_| ()).map_err(|s| PullFailure::Failed(s.message().to_owned()));
                }
                _ = tick.tick() => {
                    let sample = dir.as_ref().map(progress::Area::sample).unwrap_or_default();
                    if watch.stalled(sample, tokio::time::Instant::now()) {
                        // Dropping the call cancels it: containerd stops the fetch and
                        // keeps what it downloaded for the retry to resume.
                        return Err(PullFailure::Stalled(match dir {
                            Some(_) => format!(
                                "pull stalled: no download progress for {}",
                                humantime::format_duration(timeout)
                            ),
                            None => format!(
                                "pull did not finish within {} (the runtime's download progress cannot be watched)",
                                humantime::format_duration(timeout)
                            ),
                        }));
                    }
                }
            }
        }
    }

    /// Where the runtime's downloads can be watched: the configured directory, else the
    /// area that goes with its image filesystem (containerd's ingest area, CRI-O's
    /// containers/image temporary entries).
    async fn progress_dir(&self) -> Option<progress::Area> {
        if let Some(d) = &self.pulls.settings.progress_dir {
            return Some(progress::Area::dir(d.clone()));
        }
        let big_files = Path::new(progress::CONTAINERS_IMAGE_BIG_FILES);
        self.image_filesystems()
            .await
            .ok()?
            .iter()
            .find_map(|fs| progress::download_area(fs, big_files))
    }
}

/// Why one pull failed.
enum PullFailure {
    /// The runtime refused or failed it; its message.
    Failed(String),
    /// podvisor cancelled it for lack of progress.
    Stalled(String),
}

impl PullFailure {
    fn message(self) -> String {
        match self {
            PullFailure::Failed(m) | PullFailure::Stalled(m) => m,
        }
    }
}

fn scrub_all(creds: &[Credentials], message: &str) -> String {
    creds.iter().fold(message.to_owned(), |m, c| c.scrub(&m))
}

/// The kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot`, refuse a container that would run
/// as root, by its `runAsUser` or else the image's user.
fn check_run_as_non_root(
    pod: &StaticPod,
    c: &k8s_openapi::api::core::v1::Container,
    image: &cri::Image,
) -> Result<(), RuntimeError> {
    let sc = c.security_context.as_ref();
    let pod_sc = pod.spec.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if !non_root {
        return Ok(());
    }
    let refuse = |message: String| Err(RuntimeError::Refused { message });
    let user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    match user {
        Some(0) => refuse(format!(
            "container {} has runAsNonRoot and runAsUser 0",
            c.name
        )),
        Some(_) => Ok(()),
        None => match (image.uid.as_ref().map(|u| u.value), image.username.as_str()) {
            (Some(0), _) => refuse(format!(
                "container {} has runAsNonRoot and image will run as root",
                c.name
            )),
            (Some(_), _) => Ok(()),
            (None, "") | (None, "root") => refuse(format!(
                "container {} has runAsNonRoot and image will run as root",
                c.name
            )),
            (None, name) => refuse(format!(
                "container {} has runAsNonRoot and image has non-numeric user ({name}), cannot verify user is non-root",
                c.name
            )),
        },
    }
}

fn parse_key(labels: &HashMap<String, String>) -> Option<(PodKey, PodUid)> {
    Some((
        PodKey {
            namespace: labels.get(labels::POD_NAMESPACE)?.clone(),
            name: labels.get(labels::POD_NAME)?.clone(),
        },
        PodUid(labels.get(labels::POD_UID)?.clone()),
    ))
}

fn managed_filter() -> HashMap<String, String> {
    [(labels::MANAGED.to_owned(), labels::MANAGED_VALUE.to_owned())].into()
}

impl Runtime for CriRuntime {
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::VersionRequest {
                version: "v1".into(),
            }),
            READ_TIMEOUT,
        );
        let v = self
            .rt()
            .version(req)
            .await
            .map_err(|s| to_error("Version", s, READ_TIMEOUT))?
            .into_inner();
        Ok(RuntimeVersion {
            name: v.runtime_name,
            version: v.runtime_version,
            api: v.runtime_api_version,
        })
    }

    async fn status(&self) -> Result<RuntimeStatus, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::StatusRequest { verbose: false }),
            READ_TIMEOUT,
        );
        let answer = self
            .rt()
            .status(req)
            .await
            .map_err(|s| to_error("Status", s, READ_TIMEOUT))?
            .into_inner();
        let conditions = answer
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| RuntimeCondition {
                kind: c.r#type,
                status: c.status,
                reason: c.reason,
                message: c.message,
            })
            .collect();
        Ok(RuntimeStatus { conditions })
    }

    async fn list_images(&self) -> Result<Vec<RuntimeImage>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ListImagesRequest { filter: None }),
            READ_TIMEOUT,
        );
        let answer = self
            .images()
            .list_images(req)
            .await
            .map_err(|s| to_error("ListImages", s, READ_TIMEOUT))?
            .into_inner();
        Ok(answer
            .images
            .into_iter()
            .map(|i| RuntimeImage {
                id: i.id,
                tags: i.repo_tags,
                digests: i.repo_digests,
                size: i.size,
                pinned: i.pinned,
            })
            .collect())
    }

    async fn image_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        let spec = cri::ImageSpec {
            image: name.to_owned(),
            ..Default::default()
        };
        Ok(self.image_status(&spec).await?.map(|i| i.id))
    }

    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: id.to_owned(),
                    ..Default::default()
                }),
            }),
            WRITE_TIMEOUT,
        );
        match self.images().remove_image(req).await {
            Ok(_) => Ok(()),
            Err(s) => match to_error("RemoveImage", s, WRITE_TIMEOUT) {
                RuntimeError::NotFound { .. } => Ok(()),
                e => Err(e),
            },
        }
    }

    async fn images_in_use(&self) -> Result<std::collections::BTreeSet<String>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ListContainersRequest { filter: None }),
            READ_TIMEOUT,
        );
        let containers = self
            .rt()
            .list_containers(req)
            .await
            .map_err(|s| to_error("ListContainers", s, READ_TIMEOUT))?
            .into_inner()
            .containers;
        let mut used: std::collections::BTreeSet<String> =
            containers.into_iter().map(|c| c.image_ref).collect();
        // containerd tells its sandbox image in its verbose status (`config.sandboxImage`);
        // without it no new sandbox could start on a node that cannot pull.
        let req = timeout_of(
            tonic::Request::new(cri::StatusRequest { verbose: true }),
            READ_TIMEOUT,
        );
        let info = self
            .rt()
            .status(req)
            .await
            .map_err(|s| to_error("Status", s, READ_TIMEOUT))?
            .into_inner()
            .info;
        if let Some(name) = info.get("config").and_then(|c| sandbox_image_of(c))
            && let Some(id) = self.image_id(&name).await?
        {
            used.insert(id);
        }
        Ok(used)
    }

    async fn image_filesystems(&self) -> Result<Vec<PathBuf>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ImageFsInfoRequest {}),
            READ_TIMEOUT,
        );
        let answer = self
            .images()
            .image_fs_info(req)
            .await
            .map_err(|s| to_error("ImageFsInfo", s, READ_TIMEOUT))?
            .into_inner();
        Ok(answer
            .image_filesystems
            .into_iter()
            .filter_map(|f| f.fs_id)
            .map(|id| PathBuf::from(id.mountpoint))
            .filter(|p| !p.as_os_str().is_empty())
            .collect())
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        let sandboxes = self.managed_sandboxes().await?;
        let req = timeout_of(
            tonic::Request::new(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: managed_filter(),
                    ..Default::default()
                }),
            }),
            READ_TIMEOUT,
        );
        let containers = self
            .rt()
            .list_containers(req)
            .await
            .map_err(|s| to_error("ListContainers", s, READ_TIMEOUT))?
            .into_inner()
            .containers;

        // Fetch details only for what changed since the last look.
        let (need_containers, need_sandboxes) = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let need_c: Vec<String> = containers
                .iter()
                .filter(|c| {
                    let exited = c.state == cri::ContainerState::ContainerExited as i32;
                    let running = c.state == cri::ContainerState::ContainerRunning as i32;
                    match cache.containers.get(&c.id) {
                        None => exited || running,
                        Some(d) => exited && !d.exited,
                    }
                })
                .map(|c| c.id.clone())
                .collect();
            let need_s: Vec<String> = sandboxes
                .iter()
                .filter(|s| {
                    s.state == cri::PodSandboxState::SandboxReady as i32
                        && !cache.sandbox_ips.contains_key(&s.id)
                })
                .map(|s| s.id.clone())
                .collect();
            (need_c, need_s)
        };
        let details: Vec<_> = futures::stream::iter(need_containers)
            .map(|id| async move { (id.clone(), self.container_details(id).await) })
            .buffer_unordered(STATUS_CONCURRENCY)
            .collect()
            .await;
        let ips: Vec<_> = futures::stream::iter(need_sandboxes)
            .map(|id| async move { (id.clone(), self.fetch_sandbox_ip(id).await) })
            .buffer_unordered(STATUS_CONCURRENCY)
            .collect()
            .await;

        let mut observed = Observed {
            unanswered: self.unanswered.floors(),
            ..Observed::default()
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        // A failed status call is reported and asked again next time; nothing is cached.
        for (id, details) in details {
            match details {
                Ok(Some(d)) => {
                    cache.containers.insert(id, d);
                }
                Ok(None) => {}
                Err(e) => observed.unreadable.push(e),
            }
        }
        for (id, ip) in ips {
            match ip {
                Ok(Some(ip)) => {
                    cache.sandbox_ips.insert(id, ip);
                }
                Ok(None) => {}
                Err(e) => observed.unreadable.push(e),
            }
        }
        let live_c: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        cache
            .containers
            .retain(|id, _| live_c.contains(id.as_str()));
        let live_s: HashSet<&str> = sandboxes.iter().map(|s| s.id.as_str()).collect();
        cache
            .sandbox_ips
            .retain(|id, _| live_s.contains(id.as_str()));

        for s in sandboxes {
            let Some((key, uid)) = parse_key(&s.labels) else {
                continue;
            };
            let version = SandboxHash(
                s.annotations
                    .get(labels::SANDBOX_HASH)
                    .cloned()
                    .unwrap_or_else(|| uid.0.clone()),
            );
            observed.sandboxes.push(ObservedSandbox {
                ip: cache.sandbox_ips.get(&s.id).cloned().flatten(),
                id: SandboxId(s.id),
                key,
                uid,
                version,
                attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
                state: if s.state == cri::PodSandboxState::SandboxReady as i32 {
                    SandboxState::Ready
                } else {
                    SandboxState::NotReady
                },
                created_at: cri_time(s.created_at),
                manifest: s.annotations.get(labels::MANIFEST_PATH).map(PathBuf::from),
                priority: s
                    .annotations
                    .get(labels::PRIORITY)
                    .and_then(|p| p.parse().ok()),
                shutdown_order: s
                    .annotations
                    .get(labels::SHUTDOWN_ORDER)
                    .and_then(|o| o.trim().parse().ok()),
                component: s.labels.get(labels::COMPONENT).cloned(),
            });
        }
        for c in containers {
            let Some((key, uid)) = parse_key(&c.labels) else {
                continue;
            };
            let d = cache.containers.get(&c.id).cloned().unwrap_or_default();
            let state = match cri::ContainerState::try_from(c.state) {
                Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
                Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
                Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
                _ => ContainerState::Unknown,
            };
            let meta = c.metadata.unwrap_or_default();
            observed.containers.push(ObservedContainer {
                id: ContainerId(c.id),
                sandbox: SandboxId(c.pod_sandbox_id),
                key,
                uid,
                name: meta.name,
                // containers created before podvisor counted restarts carry the attempt here
                restarts: c
                    .annotations
                    .get(labels::CONTAINER_RESTART_COUNT)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(meta.attempt),
                attempt: meta.attempt,
                kind: match c
                    .annotations
                    .get(labels::CONTAINER_KIND)
                    .map(String::as_str)
                {
                    Some("init") => ContainerKind::Init,
                    _ => ContainerKind::App,
                },
                state,
                hash: c
                    .annotations
                    .get(labels::CONTAINER_HASH)
                    .map(|h| ContainerHash(h.clone())),
                grace_seconds: c
                    .annotations
                    .get(labels::POD_TERMINATION_GRACE_PERIOD)
                    .and_then(|g| g.parse().ok()),
                pre_stop: c
                    .annotations
                    .get(labels::CONTAINER_PRESTOP_HANDLER)
                    .and_then(|json| serde_json::from_str(json).ok()),
                image: c.image.map(|i| i.image).unwrap_or_default(),
                image_ref: if d.image_ref.is_empty() {
                    c.image_ref
                } else {
                    d.image_ref
                },
                created_at: cri_time(c.created_at),
                started_at: d.started_at,
                finished_at: d.finished_at,
                exit_code: d.exit_code,
                reason: d.reason,
                termination: d.termination,
                message: d.message,
            });
        }
        Ok(observed)
    }

    async fn run_sandbox(
        &self,
        pod: &StaticPod,
        attempt: u32,
        host: Ready,
    ) -> Result<SandboxId, RuntimeError> {
        if let Some(message) = convert::hostname_refusal(pod) {
            return Err(RuntimeError::Refused { message });
        }
        let config = sandbox_config(pod, attempt, host, &self.ctx);
        let req = timeout_of(
            tonic::Request::new(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: convert::runtime_handler(pod),
            }),
            WRITE_TIMEOUT,
        );
        let asked = Asked::Sandbox(pod.uid.clone());
        let answer = self
            .unanswered
            .ask(&asked, attempt, async {
                self.rt()
                    .run_pod_sandbox(req)
                    .await
                    .map_err(|s| to_error("RunPodSandbox", s, WRITE_TIMEOUT))
            })
            .await?;
        Ok(SandboxId(answer.into_inner().pod_sandbox_id))
    }

    async fn ensure_image(
        &self,
        image: &str,
        policy: &str,
        pulling: Option<&(dyn Fn() + Send + Sync)>,
    ) -> Result<ImageSource, RuntimeError> {
        let (found, source) = self.ensure_image_status(image, policy, pulling).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .ensured
            .retain(|_, (_, at)| at.elapsed() < ENSURED_FOR);
        cache
            .ensured
            .insert(image.to_owned(), (found, tokio::time::Instant::now()));
        Ok(source)
    }

    async fn start_container(&self, start: &ContainerStart<'_>) -> Result<Started, RuntimeError> {
        let ContainerStart {
            pod,
            sandbox,
            name,
            attempt,
            restarts,
            addrs,
            host,
            pulling,
        } = *start;
        let (_, container) = pod
            .container(name)
            .ok_or_else(|| RuntimeError::NoSuchContainer(name.to_owned()))?;
        let image = container.image.clone().unwrap_or_default();
        let policy = container
            .image_pull_policy
            .clone()
            .unwrap_or_else(|| "IfNotPresent".into());
        // pull before swap made it present moments ago: once, that answer stands
        let ensured = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .ensured
            .remove(&image)
            .filter(|(_, at)| at.elapsed() < ENSURED_FOR);
        let (found, source) = match ensured {
            Some((found, _)) => (found, ImageSource::Present),
            None => self.ensure_image_status(&image, &policy, pulling).await?,
        };
        check_run_as_non_root(pod, container, &found)?;
        let (config, sandbox_config) =
            container_configs(pod, name, (attempt, restarts), addrs, host, &self.ctx)?;
        let req = timeout_of(
            tonic::Request::new(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox.0.clone(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            }),
            WRITE_TIMEOUT,
        );
        let asked = Asked::Container(pod.uid.clone(), name.to_owned());
        let answer = self
            .unanswered
            .ask(&asked, attempt, async {
                self.rt()
                    .create_container(req)
                    .await
                    .map_err(|s| to_error("CreateContainer", s, WRITE_TIMEOUT))
            })
            .await?;
        let id = ContainerId(answer.into_inner().container_id);
        self.start_created(&id).await?;
        Ok(Started { id, image: source })
    }

    async fn start_created(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::StartContainerRequest {
                container_id: id.0.clone(),
            }),
            WRITE_TIMEOUT,
        );
        self.rt()
            .start_container(req)
            .await
            .map(|_| ())
            .map_err(|s| to_error("StartContainer", s, WRITE_TIMEOUT))
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ReopenContainerLogRequest {
                container_id: id.0.clone(),
            }),
            WRITE_TIMEOUT,
        );
        self.rt()
            .reopen_container_log(req)
            .await
            .map(|_| ())
            .map_err(|s| to_error("ReopenContainerLog", s, WRITE_TIMEOUT))
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        let limit = grace + WRITE_TIMEOUT;
        let req = timeout_of(
            tonic::Request::new(cri::StopContainerRequest {
                container_id: id.0.clone(),
                timeout: i64::try_from(grace.as_secs()).unwrap_or(i64::MAX),
            }),
            limit,
        );
        done_if_gone(
            self.rt()
                .stop_container(req)
                .await
                .map(|_| ())
                .map_err(|s| to_error("StopContainer", s, limit)),
        )
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        let remove = || async {
            let req = timeout_of(
                tonic::Request::new(cri::RemoveContainerRequest {
                    container_id: id.0.clone(),
                }),
                WRITE_TIMEOUT,
            );
            self.rt()
                .remove_container(req)
                .await
                .map(|_| ())
                .map_err(|s| to_error("RemoveContainer", s, WRITE_TIMEOUT))
        };
        done_if_gone(self.clearing_leftover_task(remove).await)
    }

    async fn stop_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.0.clone(),
            }),
            WRITE_TIMEOUT,
        );
        done_if_gone(
            self.rt()
                .stop_pod_sandbox(req)
                .await
                .map(|_| ())
                .map_err(|s| to_error("StopPodSandbox", s, WRITE_TIMEOUT)),
        )
    }

    async fn remove_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        let remove = || async {
            let req = timeout_of(
                tonic::Request::new(cri::RemovePodSandboxRequest {
                    pod_sandbox_id: id.0.clone(),
                }),
                WRITE_TIMEOUT,
            );
            self.rt()
                .remove_pod_sandbox(req)
                .await
                .map(|_| ())
                .map_err(|s| to_error("RemovePodSandbox", s, WRITE_TIMEOUT))
        };
        done_if_gone(self.clearing_leftover_task(remove).await)
    }

    async fn sandbox_ip(&self, id: &SandboxId) -> Result<Option<String>, RuntimeError> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.sandbox_ips.get(&id.0).cloned()
        };
        match cached {
            Some(ip) => Ok(ip),
            None => Ok(self.fetch_sandbox_ip(id.0.clone()).await?.flatten()),
        }
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let limit = timeout + READ_TIMEOUT;
        let req = timeout_of(
            tonic::Request::new(cri::ExecSyncRequest {
                container_id: id.0.clone(),
                cmd,
                timeout: i64::try_from(timeout.as_secs().max(1)).unwrap_or(i64::MAX),
            }),
            limit,
        );
        let resp = self
            .rt()
            .exec_sync(req)
            .await
            .map_err(|s| to_error("ExecSync", s, limit))?
            .into_inner();
        Ok(ExecOutput {
            exit_code: resp.exit_code,
            stdout: resp.stdout,
            stderr: resp.stderr,
        })
    }

    async fn exits(&self) -> Result<Option<(EventSource, ExitStream)>, RuntimeError> {
        events::subscribe(self.channel.channel()).await
    }
}

#[path = "cri_streams.rs"]
mod streaming;

#[cfg(test)]
#[path = "cri_tests.rs"]
mod tests;

//! An in-memory [`Runtime`] for tests: it keeps sandboxes and containers in a map, records
//! every call, and fails calls on request. Test code can make containers exit to play crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::{
    Asked, ContainerId, ContainerStart, ContainerState, EventSource, ExecOutput, ExitStream,
    ImageSource, Observed, ObservedContainer, ObservedSandbox, Runtime, RuntimeError, RuntimeImage,
    RuntimeStatus, RuntimeVersion, SandboxId, SandboxState, Started,
};
use crate::clock::Clock;
use crate::host::{Ready, TerminationSource};
use crate::pod::environment::Addresses;
use crate::pod::{PodKey, StaticPod, TerminationReason};

/// A call the fake received, with what identifies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeCall {
    /// `observe`.
    Observe,
    /// `run_sandbox(pod, attempt)`.
    RunSandbox(PodKey, u32),
    /// `start_container(pod, name, attempt)`.
    StartContainer(PodKey, String, u32),
    /// `start_created(id)`.
    StartCreated(ContainerId),
    /// `list_images`.
    ListImages,
    /// `remove_image(id)`.
    RemoveImage(String),
    /// `reopen_container_log(id)`.
    ReopenContainerLog(ContainerId),
    /// `stop_container(id, grace)`.
    StopContainer(ContainerId, Duration),
    /// `remove_container(id)`.
    RemoveContainer(ContainerId),
    /// `stop_sandbox(id)`.
    StopSandbox(SandboxId),
    /// `remove_sandbox(id)`.
    RemoveSandbox(SandboxId),
    /// `exec_sync(id, cmd)`.
    ExecSync(ContainerId, Vec<String>),
    /// `ensure_image(image, policy)`.
    EnsureImage(String, String),
}

#[derive(Default)]
struct State {
    next_id: u64,
    sandboxes: BTreeMap<SandboxId, ObservedSandbox>,
    containers: BTreeMap<ContainerId, ObservedContainer>,
    calls: Vec<FakeCall>,
    /// Errors to return from the next calls of a method, by method name.
    failures: BTreeMap<&'static str, Vec<RuntimeError>>,
    /// Exit code containers report when stopped.
    stop_exit_code: i32,
    /// What `version` answers (`fake 0.0.0` until set).
    version: Option<String>,
    /// What `status` answers (both conditions holding until set).
    status: Option<RuntimeStatus>,
    /// Scripted results for exec, by the command's first word; default exit 0.
    exec_results: BTreeMap<String, ExecOutput>,
    /// How long exec of a command (by its first word) takes to answer, whatever its timeout.
    exec_delays: BTreeMap<String, Duration>,
    /// How long containers (by name) take to exit once told to stop.
    stop_delays: BTreeMap<String, Duration>,
    /// The images held, by ID.
    images: BTreeMap<String, RuntimeImage>,
    /// Image IDs the runtime reports in use besides its containers' (its sandbox image).
    sandbox_images: BTreeSet<String>,
    /// Image names no registry has: pulling them fails, starting a container of them too.
    unpullable: BTreeSet<String>,
    /// Names held since a request for them got no answer: the lowest attempt still free.
    unanswered: BTreeMap<Asked, u32>,
}

impl State {
    /// Whether `attempt` of `asked` is a name held since a request for it got no answer.
    fn held(&self, asked: &Asked, attempt: u32) -> bool {
        self.unanswered
            .get(asked)
            .is_some_and(|&floor| attempt < floor)
    }
}

/// An in-memory runtime.
pub struct FakeRuntime {
    clock: Clock,
    state: Mutex<State>,
    /// Behind a lock so that [`FakeRuntime::end_exit_streams`] can swap it.
    exits: Mutex<tokio::sync::broadcast::Sender<()>>,
}

impl FakeRuntime {
    /// An empty runtime whose timestamps come from `clock`.
    pub fn new(clock: Clock) -> FakeRuntime {
        FakeRuntime {
            clock,
            state: Mutex::new(State {
                stop_exit_code: 137,
                ..State::default()
            }),
            exits: Mutex::new(tokio::sync::broadcast::channel(64).0),
        }
    }

    fn exit_sender(&self) -> tokio::sync::broadcast::Sender<()> {
        self.exits.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Ends every open exit stream, as CRI-O does to `GetContainerEvents` when it restarts.
    /// Later subscriptions get a new stream.
    pub fn end_exit_streams(&self) {
        *self.exits.lock().unwrap_or_else(|e| e.into_inner()) =
            tokio::sync::broadcast::channel(64).0;
    }

    /// How many exit streams are open.
    pub fn exit_subscribers(&self) -> usize {
        self.exit_sender().receiver_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pull_error(&self, image: &str) -> Result<(), RuntimeError> {
        if self.lock().unpullable.contains(image) {
            return Err(RuntimeError::ImagePull {
                image: image.to_owned(),
                message: format!("{image}: not found"),
            });
        }
        Ok(())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// The calls so far, forgetting them.
    pub fn take_calls(&self) -> Vec<FakeCall> {
        std::mem::take(&mut self.lock().calls)
    }

    /// Makes `version` answer `version` from now on, as an upgraded runtime would.
    pub fn set_version(&self, version: &str) {
        self.lock().version = Some(version.to_owned());
    }

    /// Makes `status` answer `status` from now on.
    pub fn set_status(&self, status: RuntimeStatus) {
        self.lock().status = Some(status);
    }

    /// Makes the next call of `method` (e.g. `"run_sandbox"`) fail with `error`.
    pub fn fail_next(&self, method: &'static str, error: RuntimeError) {
        self.lock().failures.entry(method).or_default().push(error);
    }

    /// The current runtime state, as `observe` would report it.
    pub fn snapshot(&self) -> Observed {
        let s = self.lock();
        Observed {
            sandboxes: s.sandboxes.values().cloned().collect(),
            containers: s.containers.values().cloned().collect(),
            unreadable: Vec::new(),
            unanswered: s.unanswered.clone(),
        }
    }

    /// Holds the names of `asked` below `floor`, as a runtime does after requests for them got
    /// no answer (a podvisor killed mid-create); `observe` reports it, as podvisor's records do.
    pub fn leave_unanswered(&self, asked: Asked, floor: u32) {
        self.lock().unanswered.insert(asked, floor);
    }

    /// Adds an object as if an earlier podvisor had created it.
    pub fn insert_sandbox(&self, sandbox: ObservedSandbox) {
        self.lock().sandboxes.insert(sandbox.id.clone(), sandbox);
    }

    /// Adds a container as if an earlier podvisor had created it.
    pub fn insert_container(&self, container: ObservedContainer) {
        self.lock()
            .containers
            .insert(container.id.clone(), container);
    }

    /// Makes `exec_sync` of commands starting with `program` return `output`.
    pub fn set_exec_result(&self, program: &str, output: ExecOutput) {
        self.lock().exec_results.insert(program.to_owned(), output);
    }

    /// Makes `image` unpullable, as a tag no registry has: ensuring it fails with
    /// [`RuntimeError::ImagePull`], and so does starting a container of it.
    pub fn set_unpullable(&self, image: &str) {
        self.lock().unpullable.insert(image.to_owned());
    }

    /// Adds an image the runtime holds.
    pub fn add_image(&self, image: RuntimeImage) {
        self.lock().images.insert(image.id.clone(), image);
    }

    /// Reports `id` in use as the runtime's sandbox image.
    pub fn set_sandbox_image(&self, id: &str) {
        self.lock().sandbox_images.insert(id.to_owned());
    }

    /// The IDs of the images held.
    pub fn image_ids(&self) -> Vec<String> {
        self.lock().images.keys().cloned().collect()
    }

    /// Makes `exec_sync` of commands starting with `program` answer only after `delay`,
    /// whatever timeout it was given, as containerd 1.6 does while the command's children
    /// live.
    pub fn set_exec_delay(&self, program: &str, delay: Duration) {
        self.lock().exec_delays.insert(program.to_owned(), delay);
    }

    /// Makes containers named `name` take `delay` to exit once stopped, as a process that
    /// traps SIGTERM and finishes its work: `stop_container` returns after that delay, or
    /// after the grace period, when the process is killed (exit 137) if still there.
    pub fn set_stop_delay(&self, name: &str, delay: Duration) {
        self.lock().stop_delays.insert(name.to_owned(), delay);
    }

    /// Test shorthand: runs a sandbox for `pod` (logs on).
    pub async fn run_pod(&self, pod: &StaticPod, attempt: u32) -> Result<SandboxId, RuntimeError> {
        self.run_sandbox(pod, attempt, Ready { logs: true }).await
    }

    /// Test shorthand: starts container `name` of `pod` in `sandbox`, without addresses.
    pub async fn start(
        &self,
        pod: &StaticPod,
        sandbox: &SandboxId,
        name: &str,
        attempt: u32,
    ) -> Result<ContainerId, RuntimeError> {
        let addrs = Addresses::default();
        let start = ContainerStart {
            pod,
            sandbox,
            name,
            attempt,
            restarts: attempt,
            addrs: &addrs,
            host: Ready { logs: true },
            pulling: None,
        };
        self.start_container(&start).await.map(|s| s.id)
    }

    /// Makes a running container exit with `code`, as a crash or completion would.
    pub fn exit_container(&self, id: &ContainerId, code: i32) {
        let now = self.clock.now();
        let mut s = self.lock();
        if let Some(c) = s.containers.get_mut(id)
            && c.state == ContainerState::Running
        {
            c.state = ContainerState::Exited;
            c.finished_at = Some(now);
            c.exit_code = Some(code);
            c.reason = Some(TerminationReason::from_runtime("", code));
            c.termination = Some(termination_source(id));
        }
        drop(s);
        let _ = self.exit_sender().send(());
    }

    /// Running containers of a pod named `name` (any namespace).
    pub fn running(&self, name: &str) -> Vec<ObservedContainer> {
        self.lock()
            .containers
            .values()
            .filter(|c| c.key.name == name && c.state == ContainerState::Running)
            .cloned()
            .collect()
    }

    fn record(&self, call: FakeCall, method: &'static str) -> Result<(), RuntimeError> {
        let mut s = self.lock();
        s.calls.push(call);
        match s.failures.get_mut(method) {
            Some(list) if !list.is_empty() => Err(list.remove(0)),
            _ => Ok(()),
        }
    }

    fn next_id(&self, prefix: &str) -> String {
        let mut s = self.lock();
        s.next_id += 1;
        format!("{prefix}{:061}", s.next_id)
    }
}

/// Where a fake container's termination message is: `/fake/termination/<id>`, a path a
/// `FakeHost` can be given a message for.
pub fn termination_source(id: &ContainerId) -> TerminationSource {
    TerminationSource {
        file: Some(PathBuf::from(format!("/fake/termination/{}", id.0))),
        log: None,
        fallback_to_logs: false,
    }
}

impl Runtime for FakeRuntime {
    /// Not recorded as a call; fails as `fail_next("version", ..)` says.
    async fn version(&self) -> Result<RuntimeVersion, RuntimeError> {
        let mut s = self.lock();
        if let Some(list) = s.failures.get_mut("version")
            && !list.is_empty()
        {
            return Err(list.remove(0));
        }
        Ok(RuntimeVersion {
            name: "fake".to_owned(),
            version: s.version.clone().unwrap_or_else(|| "0.0.0".to_owned()),
            api: "v1".to_owned(),
        })
    }

    /// Not recorded as a call; fails as `fail_next("status", ..)` says.
    async fn status(&self) -> Result<RuntimeStatus, RuntimeError> {
        let mut s = self.lock();
        if let Some(list) = s.failures.get_mut("status")
            && !list.is_empty()
        {
            return Err(list.remove(0));
        }
        Ok(s.status.clone().unwrap_or_else(RuntimeStatus::ready))
    }

    /// The fake keeps no images on disk.
    async fn image_filesystems(&self) -> Result<Vec<PathBuf>, RuntimeError> {
        Ok(Vec::new())
    }

    async fn observe(&self) -> Result<Observed, RuntimeError> {
        self.record(FakeCall::Observe, "observe")?;
        Ok(self.snapshot())
    }

    async fn run_sandbox(
        &self,
        pod: &StaticPod,
        attempt: u32,
        _host: Ready,
    ) -> Result<SandboxId, RuntimeError> {
        self.record(
            FakeCall::RunSandbox(pod.key.clone(), attempt),
            "run_sandbox",
        )?;
        let id = SandboxId(self.next_id("sb"));
        let now = self.clock.now();
        let mut s = self.lock();
        if s.held(&Asked::Sandbox(pod.uid.clone()), attempt)
            || s.sandboxes
                .values()
                .any(|sb| sb.key == pod.key && sb.uid == pod.uid && sb.attempt == attempt)
        {
            return Err(RuntimeError::Call {
                method: "RunPodSandbox",
                code: tonic::Code::Unknown,
                message: format!("name {}_{attempt} is reserved", pod.key.name),
            });
        }
        s.sandboxes.insert(
            id.clone(),
            ObservedSandbox {
                id: id.clone(),
                key: pod.key.clone(),
                uid: pod.uid.clone(),
                version: pod.sandbox.clone(),
                attempt,
                state: SandboxState::Ready,
                created_at: Some(now),
                manifest: Some(pod.source.path.clone()),
                ip: (!pod.host_network()).then(|| "10.88.0.2".to_owned()),
                priority: Some(crate::pod::priority::priority(&pod.spec)),
                shutdown_order: pod
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(crate::labels::SHUTDOWN_ORDER))
                    .and_then(|o| o.trim().parse().ok()),
                component: pod
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(crate::labels::COMPONENT))
                    .cloned(),
            },
        );
        Ok(id)
    }

    async fn start_container(&self, start: &ContainerStart<'_>) -> Result<Started, RuntimeError> {
        let (pod, sandbox, name, attempt) = (start.pod, start.sandbox, start.name, start.attempt);
        self.record(
            FakeCall::StartContainer(pod.key.clone(), name.to_owned(), attempt),
            "start_container",
        )?;
        let (kind, container) = pod
            .container(name)
            .ok_or_else(|| RuntimeError::NoSuchContainer(name.to_owned()))?;
        if let Some(image) = container.image.as_deref() {
            self.pull_error(image)?;
        }
        let id = ContainerId(self.next_id("ct"));
        let now = self.clock.now();
        let mut s = self.lock();
        if s.held(&Asked::Container(pod.uid.clone(), name.to_owned()), attempt) {
            return Err(RuntimeError::Call {
                method: "CreateContainer",
                code: tonic::Code::Unknown,
                message: format!("name {name}_{attempt} is reserved"),
            });
        }
        let sandbox_ready = s
            .sandboxes
            .get(sandbox)
            .is_some_and(|sb| sb.state == SandboxState::Ready);
        if !sandbox_ready {
            return Err(RuntimeError::Call {
                method: "CreateContainer",
                code: tonic::Code::FailedPrecondition,
                message: format!("sandbox {sandbox} is not ready"),
            });
        }
        s.containers.insert(
            id.clone(),
            ObservedContainer {
                id: id.clone(),
                sandbox: sandbox.clone(),
                key: pod.key.clone(),
                uid: pod.uid.clone(),
                name: name.to_owned(),
                attempt,
                restarts: start.restarts,
                kind,
                state: ContainerState::Running,
                hash: pod.container_hash(name).cloned(),
                grace_seconds: Some(pod.grace_period_seconds()),
                pre_stop: container
                    .lifecycle
                    .as_ref()
                    .and_then(|l| l.pre_stop.clone()),
                image: container.image.clone().unwrap_or_default(),
                image_ref: format!("sha256:{:064}", 1),
                created_at: Some(now),
                started_at: Some(now),
                finished_at: None,
                exit_code: None,
                reason: None,
                termination: None,
                message: String::new(),
            },
        );
        drop(s);
        // As a registry that always has the image: `Always` pulls, anything else finds it.
        let image = if container.image_pull_policy.as_deref() == Some("Always") {
            if let Some(pulling) = start.pulling {
                pulling();
            }
            ImageSource::Pulled {
                took: Duration::ZERO,
                with_waiting: Duration::ZERO,
                size: 0,
            }
        } else {
            ImageSource::Present
        };
        Ok(Started { id, image })
    }

    async fn ensure_image(
        &self,
        image: &str,
        policy: &str,
        pulling: Option<&(dyn Fn() + Send + Sync)>,
    ) -> Result<ImageSource, RuntimeError> {
        self.record(
            FakeCall::EnsureImage(image.to_owned(), policy.to_owned()),
            "ensure_image",
        )?;
        // An unpullable image is missing here: a pull is announced, then fails.
        let missing = self.pull_error(image);
        if missing.is_err() {
            if policy == "Never" {
                return Err(RuntimeError::ImageNeverPull {
                    image: image.to_owned(),
                });
            }
            if let Some(pulling) = pulling {
                pulling();
            }
            return missing.map(|()| ImageSource::Present);
        }
        // As a registry that has every other image: `Always` pulls, anything else finds it.
        if policy == "Always" {
            if let Some(pulling) = pulling {
                pulling();
            }
            return Ok(ImageSource::Pulled {
                took: Duration::ZERO,
                with_waiting: Duration::ZERO,
                size: 0,
            });
        }
        Ok(ImageSource::Present)
    }

    async fn start_created(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.record(FakeCall::StartCreated(id.clone()), "start_created")?;
        let now = self.clock.now();
        if let Some(c) = self.lock().containers.get_mut(id) {
            c.state = ContainerState::Running;
            c.started_at = Some(now);
        }
        Ok(())
    }

    async fn list_images(&self) -> Result<Vec<RuntimeImage>, RuntimeError> {
        self.record(FakeCall::ListImages, "list_images")?;
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn image_id(&self, name: &str) -> Result<Option<String>, RuntimeError> {
        Ok(self
            .lock()
            .images
            .values()
            .find(|i| i.id == name || i.tags.iter().any(|t| t == name))
            .map(|i| i.id.clone()))
    }

    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        self.record(FakeCall::RemoveImage(id.to_owned()), "remove_image")?;
        self.lock().images.remove(id);
        Ok(())
    }

    async fn images_in_use(&self) -> Result<BTreeSet<String>, RuntimeError> {
        let s = self.lock();
        let mut used: BTreeSet<String> =
            s.containers.values().map(|c| c.image_ref.clone()).collect();
        used.extend(s.sandbox_images.iter().cloned());
        Ok(used)
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.record(
            FakeCall::ReopenContainerLog(id.clone()),
            "reopen_container_log",
        )
    }

    async fn stop_container(&self, id: &ContainerId, grace: Duration) -> Result<(), RuntimeError> {
        self.record(FakeCall::StopContainer(id.clone(), grace), "stop_container")?;
        let delay = {
            let s = self.lock();
            s.containers
                .get(id)
                .filter(|c| c.state != ContainerState::Exited)
                .and_then(|c| s.stop_delays.get(&c.name).copied())
        };
        let mut code = None;
        if let Some(delay) = delay {
            tokio::time::sleep(delay.min(grace)).await;
            code = (delay < grace).then_some(0);
        }
        let now = self.clock.now();
        let mut s = self.lock();
        let code = code.unwrap_or(s.stop_exit_code);
        if let Some(c) = s.containers.get_mut(id)
            && c.state != ContainerState::Exited
        {
            c.state = ContainerState::Exited;
            c.finished_at = Some(now);
            c.exit_code = Some(code);
            c.reason = Some(TerminationReason::Error);
            c.termination = Some(termination_source(id));
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<(), RuntimeError> {
        self.record(FakeCall::RemoveContainer(id.clone()), "remove_container")?;
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn stop_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        self.record(FakeCall::StopSandbox(id.clone()), "stop_sandbox")?;
        let now = self.clock.now();
        let mut s = self.lock();
        if let Some(sb) = s.sandboxes.get_mut(id) {
            sb.state = SandboxState::NotReady;
        }
        for c in s.containers.values_mut().filter(|c| &c.sandbox == id) {
            if c.state != ContainerState::Exited {
                c.state = ContainerState::Exited;
                c.finished_at = Some(now);
                c.exit_code = Some(137);
            }
        }
        Ok(())
    }

    async fn remove_sandbox(&self, id: &SandboxId) -> Result<(), RuntimeError> {
        self.record(FakeCall::RemoveSandbox(id.clone()), "remove_sandbox")?;
        let mut s = self.lock();
        s.sandboxes.remove(id);
        s.containers.retain(|_, c| &c.sandbox != id);
        Ok(())
    }

    async fn sandbox_ip(&self, id: &SandboxId) -> Result<Option<String>, RuntimeError> {
        Ok(self.lock().sandboxes.get(id).and_then(|s| s.ip.clone()))
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        _timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.record(FakeCall::ExecSync(id.clone(), cmd.clone()), "exec_sync")?;
        let program = cmd.first().cloned().unwrap_or_default();
        let delay = self.lock().exec_delays.get(&program).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let s = self.lock();
        let running = s
            .containers
            .get(id)
            .is_some_and(|c| c.state == ContainerState::Running);
        if !running {
            return Err(RuntimeError::Call {
                method: "ExecSync",
                code: tonic::Code::FailedPrecondition,
                message: format!("container {id} is not running"),
            });
        }
        Ok(s.exec_results.get(&program).cloned().unwrap_or_default())
    }

    async fn exits(&self) -> Result<Option<(EventSource, ExitStream)>, RuntimeError> {
        let rx = self.exit_sender().subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(()) => return Some(((), rx)),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Some((EventSource::Cri, Box::pin(stream))))
    }
}

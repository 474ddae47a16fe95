//! Applies one pod's planned actions through the [`Runtime`], in order, stopping at the first
//! failure. The only place that turns decisions into runtime calls; it also runs the lifecycle
//! hooks that belong to starting and stopping (postStart after a start, preStop before a
//! stop, within the grace period) and reports what happened as pod events.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use thiserror::Error;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::plan::{Action, MIN_GRACE, PodWork, SandboxRef, StopReason, StopTarget};
use crate::action::{HookError, run_handler};
use crate::chain::chain;
use crate::clock::Clock;
use crate::event::{EventSink, EventType, PodEvent, container_field};
use crate::host::{Host, HostError, Ready};
use crate::pod::environment::Addresses;
use crate::pod::{ContainerKind, PodKey, StaticPod, WaitingReason};
use crate::runtime::{
    ContainerId, ContainerStart, ImageSource, Runtime, RuntimeError, SandboxId, Started,
};

/// Go's `time.Duration.String()`: `1.234s`, `56.789ms`, `2m3.5s`, as the kubelet's pull
/// events print durations.
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim(format!("{:.3}", nanos as f64 / 1e3)) + "µs";
    }
    if nanos < 1_000_000_000 {
        return trim(format!("{:.6}", nanos as f64 / 1e6)) + "ms";
    }
    let secs = d.as_secs();
    let frac = trim(format!(
        "{:.9}",
        f64::from(d.subsec_nanos()) / 1e9 + (secs % 60) as f64
    ));
    match (secs / 3600, secs % 3600 / 60) {
        (0, 0) => frac + "s",
        (0, m) => format!("{m}m{frac}s"),
        (h, m) => format!("{h}h{m}m{frac}s"),
    }
}

/// Drops trailing zeros (and a trailing point) from a decimal.
fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Longest a postStart hook may run (the kubelet bounds it only by its request timeout).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

/// What the executor needs besides the runtime.
#[derive(Clone, Debug)]
pub struct ExecContext {
    /// Where events go.
    pub events: EventSink,
    /// The node's address, which host-network pods' hooks use.
    pub host_ip: Option<String>,
    /// Time for event stamps.
    pub clock: Clock,
}

/// Why one step failed.
#[derive(Debug, Error)]
pub enum StepError {
    /// The runtime refused or could not be reached.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The host side (directories, volumes, files) failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A container was to go into the new sandbox, and none was created.
    #[error("no sandbox was created for container {0:?}")]
    NoNewSandbox(String),
    /// The task working on the pod ended without an outcome.
    #[error("the pod's task died: {0}")]
    TaskDied(String),
}

impl StepError {
    /// Whether the runtime itself is unreachable, rather than refusing this pod.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StepError::Runtime(e) if e.is_unavailable())
    }

    /// The waiting reason of a container that failed to start with this error.
    pub fn waiting_reason(&self) -> WaitingReason {
        match self {
            StepError::Runtime(e) => e.waiting_reason(),
            _ => WaitingReason::CreateContainerError,
        }
    }

    /// The image a failed pull was for.
    pub fn failed_pull(&self) -> Option<&str> {
        match self {
            StepError::Runtime(e) => e.failed_pull(),
            _ => None,
        }
    }
}

/// A failed step.
#[derive(Debug)]
pub struct WorkError {
    /// The container being started, when the failure was a start.
    pub container: Option<String>,
    /// The step failed while clearing the way for a new sandbox: the new version waits.
    pub blocks_new_sandbox: bool,
    /// What failed.
    pub error: StepError,
}

impl WorkError {
    /// How the failure reads in `lastError`: a failure to stop the old version says that
    /// the new one waits for it.
    pub fn describe(&self) -> String {
        if self.blocks_new_sandbox {
            format!(
                "the new version waits for the old one to stop: {}",
                self.error
            )
        } else {
            self.error.to_string()
        }
    }
}

/// How one pod's work ended.
#[derive(Debug)]
pub struct Outcome {
    /// The pod.
    pub key: PodKey,
    /// `Ok`, or the first error (the remaining actions were not attempted).
    pub result: Result<(), WorkError>,
}

fn reason_text(r: StopReason) -> &'static str {
    match r {
        StopReason::PodRemoved => "manifest removed",
        StopReason::PodReplaced => "pod replaced by a new version",
        StopReason::SpecChanged => "container spec changed",
        StopReason::ContainerRemoved => "container removed from the manifest",
        StopReason::SandboxGone => "sandbox gone or duplicated",
        StopReason::Unknown => "state unknown",
        StopReason::LivenessProbe => "failed liveness probe",
        StopReason::StartupProbe => "failed startup probe",
    }
}

impl ExecContext {
    fn emit(
        &self,
        key: &PodKey,
        type_: EventType,
        reason: &str,
        message: String,
        field_path: Option<String>,
    ) {
        self.events.emit(PodEvent {
            key: key.clone(),
            type_,
            reason: reason.to_owned(),
            message,
            field_path,
            at: self.clock.now(),
        });
    }
}

/// What earlier steps of one pod's work left for later ones.
#[derive(Default)]
struct Carry {
    /// The sandbox `RunSandbox` created.
    new_sandbox: Option<SandboxId>,
    /// The host side `PreparePod` made ready.
    prepared: Option<Ready>,
}

/// Runs `work` to completion or first failure, through the runtime `rt` and the host `host`.
pub async fn execute<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    work: PodWork,
) -> Outcome {
    let key = work.key;
    let mut carry = Carry::default();
    let mut sandbox_ahead = work
        .actions
        .iter()
        .any(|a| matches!(a, Action::RunSandbox { .. }));
    for action in work.actions {
        let starting = match &action {
            Action::StartContainer { name, .. } => Some(name.clone()),
            _ => None,
        };
        let runs_sandbox = matches!(action, Action::RunSandbox { .. });
        if let Err(error) = apply(rt, host, cx, &key, action, &mut carry).await {
            return Outcome {
                key,
                result: Err(WorkError {
                    container: starting,
                    blocks_new_sandbox: sandbox_ahead && !runs_sandbox,
                    error,
                }),
            };
        }
        if runs_sandbox {
            sandbox_ahead = false;
        }
    }
    Outcome {
        key,
        result: Ok(()),
    }
}

/// Stops one container: its preStop hook first, bounded by the grace period, then the stop
/// with what is left of it (never under the kubelet's 2 s floor).
async fn stop_one<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    key: &PodKey,
    t: &StopTarget,
) -> Result<(), RuntimeError> {
    let mut grace = t.grace;
    if let Some(hook) = &t.pre_stop {
        let started = Instant::now();
        let host = hook
            .host
            .clone()
            .or_else(|| cx.host_ip.clone())
            .unwrap_or_default();
        // The kubelet waits for preStop at most the grace period, on its own timer: the
        // runtime's exec timeout is not to be trusted (containerd 1.6 overruns it by as long
        // as the hook's children live).
        let run = run_handler(rt, &hook.handler, &t.id, &hook.ports, &host, t.grace);
        let outcome = match tokio::time::timeout(t.grace, run).await {
            Ok(outcome) => outcome,
            Err(_) => Err(HookError::Cut { timeout: t.grace }),
        };
        if let Err(e) = outcome {
            let why = chain(&e);
            warn!(pod = %key, container = %t.name, error = %why, "preStop hook failed");
            cx.emit(
                key,
                EventType::Warning,
                "FailedPreStopHook",
                format!("PreStopHook failed: {why}"),
                None,
            );
        }
        grace = t.grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
    }
    rt.stop_container(&t.id, grace).await
}

async fn apply<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    key: &PodKey,
    action: Action,
    carry: &mut Carry,
) -> Result<(), StepError> {
    match action {
        Action::StopContainers { containers, reason } => {
            for t in &containers {
                let message = match reason {
                    StopReason::LivenessProbe => format!(
                        "Container {} failed liveness probe, will be restarted",
                        t.name
                    ),
                    StopReason::StartupProbe => format!(
                        "Container {} failed startup probe, will be restarted",
                        t.name
                    ),
                    _ => format!("Stopping container {}", t.name),
                };
                cx.emit(key, EventType::Normal, "Killing", message, None);
            }
            let results = join_all(containers.iter().map(|t| stop_one(rt, cx, key, t))).await;
            for (t, r) in containers.iter().zip(&results) {
                if r.is_ok() {
                    info!(pod = %key, container = %t.name, id = %t.id, grace = ?t.grace, reason = reason_text(reason), "container stopped");
                }
            }
            results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
                .map_err(StepError::from)
        }
        Action::RemoveContainer(id) => {
            rt.remove_container(&id).await?;
            debug!(pod = %key, id = %id, "dead container removed");
            Ok(())
        }
        Action::StopSandbox(id) => {
            rt.stop_sandbox(&id).await?;
            info!(pod = %key, sandbox = %id, "pod sandbox stopped");
            Ok(())
        }
        Action::RemoveSandbox(id) => {
            rt.remove_sandbox(&id).await?;
            info!(pod = %key, sandbox = %id, "pod sandbox removed");
            Ok(())
        }
        Action::CleanupPod { key, uid } => {
            host.cleanup_pod(key.clone(), uid.clone()).await?;
            debug!(pod = %key, uid = %uid, "pod's host side removed");
            Ok(())
        }
        Action::PreparePod { pod } => {
            carry.prepared = Some(host.prepare_pod(pod).await?);
            Ok(())
        }
        Action::RunSandbox { pod, attempt } => {
            let ready = carry.prepared.unwrap_or(Ready { logs: true });
            let id = rt.run_sandbox(&pod, attempt, ready).await?;
            info!(pod = %key, uid = %pod.uid, hash = %pod.hash, sandbox = %id, attempt, "pod sandbox started");
            carry.new_sandbox = Some(id);
            Ok(())
        }
        Action::StartContainer {
            pod,
            sandbox,
            name,
            attempt,
            restart,
        } => {
            let sandbox_id = match sandbox {
                SandboxRef::Existing(id) => id,
                SandboxRef::New => carry
                    .new_sandbox
                    .clone()
                    .ok_or_else(|| StepError::NoNewSandbox(name.clone()))?,
            };
            let init = matches!(pod.container(&name), Some((ContainerKind::Init, _)));
            let field = container_field(init, &name);
            let started = match start(rt, host, cx, &pod, &sandbox_id, &name, attempt).await {
                Ok(started) => started,
                Err(e) => {
                    let reason = match e.waiting_reason() {
                        WaitingReason::ErrImageNeverPull => "ErrImageNeverPull",
                        _ => "Failed",
                    };
                    cx.emit(key, EventType::Warning, reason, e.to_string(), Some(field));
                    return Err(e);
                }
            };
            let id = started.id;
            let image = pod
                .container(&name)
                .and_then(|(_, c)| c.image.clone())
                .unwrap_or_default();
            // The kubelet's image and container events (v1.35 wording).
            let pulled = match started.image {
                ImageSource::Present => {
                    format!("Container image {image:?} already present on machine")
                }
                ImageSource::Pulled { took, size } => format!(
                    "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
                    go_duration(took),
                    go_duration(took)
                ),
            };
            cx.emit(
                key,
                EventType::Normal,
                "Pulled",
                pulled,
                Some(field.clone()),
            );
            cx.emit(
                key,
                EventType::Normal,
                "Created",
                "Container created".to_owned(),
                Some(field.clone()),
            );
            let restart_count = attempt;
            if restart.is_some() {
                info!(pod = %key, container = %name, id = %id, restart_count, "container restarted");
            } else {
                info!(pod = %key, container = %name, id = %id, restart_count, "container started");
            }
            cx.emit(
                key,
                EventType::Normal,
                "Started",
                "Container started".to_owned(),
                Some(field.clone()),
            );
            post_start(rt, cx, key, &pod, &sandbox_id, &name, &id, field)
                .await
                .map_err(StepError::from)
        }
        Action::StartCreated(id) => {
            rt.start_created(&id).await?;
            info!(pod = %key, id = %id, "created container started");
            Ok(())
        }
    }
}

/// The addresses a container of `pod` in `sandbox` sees: the sandbox's IP, or the node's for
/// a host-network pod.
async fn addresses<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    pod: &StaticPod,
    sandbox: &SandboxId,
) -> Result<Addresses, RuntimeError> {
    let pod_ip = if pod.host_network() {
        cx.host_ip.clone()
    } else {
        rt.sandbox_ip(sandbox).await?
    };
    Ok(Addresses {
        pod_ip,
        host_ip: cx.host_ip.clone(),
    })
}

/// Starts one container: its host side made ready, then the runtime asked.
async fn start<R: Runtime, H: Host>(
    rt: &R,
    host: &H,
    cx: &ExecContext,
    pod: &Arc<StaticPod>,
    sandbox: &SandboxId,
    name: &str,
    attempt: u32,
) -> Result<Started, StepError> {
    let addrs = addresses(rt, cx, pod, sandbox).await?;
    let ready = host
        .prepare_container(pod.clone(), name.to_owned(), attempt, addrs.clone())
        .await?;
    let start = ContainerStart {
        pod,
        sandbox,
        name,
        attempt,
        addrs: &addrs,
        host: ready,
    };
    Ok(rt.start_container(&start).await?)
}

/// Runs a container's postStart hook; if it fails, the container is stopped (the kubelet's
/// `FailedPostStartHook`) and the restart policy takes it from there.
#[allow(clippy::too_many_arguments)]
async fn post_start<R: Runtime>(
    rt: &R,
    cx: &ExecContext,
    key: &PodKey,
    pod: &StaticPod,
    sandbox: &SandboxId,
    name: &str,
    id: &ContainerId,
    field: String,
) -> Result<(), RuntimeError> {
    let Some((_, spec)) = pod.container(name) else {
        return Ok(());
    };
    let Some(handler) = spec.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
        return Ok(());
    };
    let host = if pod.host_network() {
        cx.host_ip.clone()
    } else {
        rt.sandbox_ip(sandbox).await.ok().flatten()
    };
    let ports = spec.ports.clone().unwrap_or_default();
    if let Err(e) = run_handler(
        rt,
        handler,
        id,
        &ports,
        &host.unwrap_or_default(),
        POST_START_TIMEOUT,
    )
    .await
    {
        warn!(pod = %key, container = %name, error = %e, "postStart hook failed; stopping the container");
        cx.emit(
            key,
            EventType::Warning,
            "FailedPostStartHook",
            format!("PostStartHook failed: {e}"),
            Some(field),
        );
        rt.stop_container(id, super::plan::grace(Some(pod.grace_period_seconds())))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    use std::sync::Arc;

    use super::*;
    use crate::clock::Timestamp;
    use crate::event::channel;

    use crate::host::FakeHost;
    use crate::reconcile::plan::Hook;
    use crate::runtime::{ExecOutput, FakeCall, FakeRuntime};

    const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

    fn pod(yaml: &str) -> Arc<StaticPod> {
        Arc::new(crate::manifest::testing::static_pod(yaml))
    }

    async fn running(rt: &FakeRuntime, pod: &Arc<StaticPod>, attempt: u32) -> ContainerId {
        let sb = rt.run_pod(pod, attempt).await.expect("sandbox");
        rt.start(pod, &sb, "app", 0).await.expect("container")
    }

    fn sleep_hook(seconds: i64) -> Hook {
        let handler = serde_json::from_value(serde_json::json!({"sleep": {"seconds": seconds}}))
            .expect("handler");
        Hook {
            handler,
            ports: Vec::new(),
            host: None,
        }
    }

    fn stops(rt: &FakeRuntime) -> Vec<Duration> {
        rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                FakeCall::StopContainer(_, grace) => Some(grace),
                _ => None,
            })
            .collect()
    }

    /// An execution context on `clock`, and the receiving end of its events.
    fn context(clock: Clock) -> (ExecContext, tokio::sync::mpsc::Receiver<PodEvent>) {
        let (events, rx) = channel(16);
        let cx = ExecContext {
            events,
            host_ip: None,
            clock,
        };
        (cx, rx)
    }

    /// A new sandbox for `p`, then its container `app`.
    fn start_app(p: &Arc<StaticPod>) -> Vec<Action> {
        vec![
            Action::RunSandbox {
                pod: p.clone(),
                attempt: 0,
            },
            Action::StartContainer {
                pod: p.clone(),
                sandbox: SandboxRef::New,
                name: "app".into(),
                attempt: 0,
                restart: None,
            },
        ]
    }

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: app, image: 'busybox:1.35'}]}\n";

    #[tokio::test(start_paused = true)]
    async fn pre_stop_runs_first_and_its_time_comes_out_of_the_grace_period() {
        let clock = Clock::tokio(T0);
        let rt = FakeRuntime::new(clock);
        let p = pod(POD);
        let (cx, mut rx) = context(clock);
        for (attempt, (grace, hook_secs, expected)) in [(10u64, 3i64, 7u64), (4, 3, 2), (5, 30, 2)]
            .into_iter()
            .enumerate()
        {
            let id = running(&rt, &p, attempt as u32).await;
            rt.take_calls();
            let target = StopTarget {
                id: id.clone(),
                name: "app".into(),
                grace: Duration::from_secs(grace),
                pre_stop: Some(sleep_hook(hook_secs)),
            };
            let work = PodWork {
                key: p.key.clone(),
                actions: vec![Action::StopContainers {
                    containers: vec![target],
                    reason: StopReason::PodRemoved,
                }],
            };
            let before = tokio::time::Instant::now();
            let outcome = execute(&rt, &FakeHost::new(), &cx, work).await;
            assert!(outcome.result.is_ok());
            assert_eq!(
                stops(&rt),
                [Duration::from_secs(expected)],
                "grace {grace}s, hook {hook_secs}s"
            );
            assert_eq!(
                before.elapsed(),
                Duration::from_secs((hook_secs as u64).min(grace)),
                "the hook is cut at the grace period"
            );
        }
        let reasons: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.reason)
            .collect();
        assert!(reasons.contains(&"Killing".to_owned()));
        assert!(
            reasons.contains(&"FailedPreStopHook".to_owned()),
            "the cut hook is reported: {reasons:?}"
        );
    }

    fn exec_hook(command: &[&str]) -> Hook {
        let handler = serde_json::from_value(serde_json::json!({"exec": {"command": command}}))
            .expect("handler");
        Hook {
            handler,
            ports: Vec::new(),
            host: None,
        }
    }

    /// Stops container `id` of `p` with `grace` and `hook`; returns how long it took.
    async fn stop_with_hook(
        rt: &FakeRuntime,
        cx: &ExecContext,
        p: &Arc<StaticPod>,
        id: ContainerId,
        grace: u64,
        hook: Hook,
    ) -> Duration {
        let work = PodWork {
            key: p.key.clone(),
            actions: vec![Action::StopContainers {
                containers: vec![StopTarget {
                    id,
                    name: "app".into(),
                    grace: Duration::from_secs(grace),
                    pre_stop: Some(hook),
                }],
                reason: StopReason::PodRemoved,
            }],
        };
        let before = tokio::time::Instant::now();
        assert!(execute(rt, &FakeHost::new(), cx, work).await.result.is_ok());
        before.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn an_exec_pre_stop_hook_is_cut_at_the_grace_period_whatever_the_runtime_does_issue_17() {
        // containerd 1.6 answers ExecSync only when `sleep 60` is gone: 60 s, not the 3 s asked.
        let clock = Clock::tokio(T0);
        let rt = FakeRuntime::new(clock);
        rt.set_exec_delay("sh", Duration::from_secs(60));
        let p = pod(POD);
        let (cx, mut rx) = context(clock);
        let id = running(&rt, &p, 0).await;
        rt.take_calls();
        let took = stop_with_hook(&rt, &cx, &p, id, 3, exec_hook(&["sh", "-c", "sleep 60"])).await;
        assert_eq!(
            took,
            Duration::from_secs(3),
            "the hook gets the grace period, no more"
        );
        assert_eq!(stops(&rt), [MIN_GRACE], "then the stop gets the 2 s floor");
        let failed: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|e| e.reason == "FailedPreStopHook")
            .map(|e| e.message)
            .collect();
        assert_eq!(failed, ["PreStopHook failed: did not finish within 3s"]);
    }

    #[tokio::test]
    async fn a_pre_stop_hook_that_cannot_run_reports_the_runtimes_reason_issue_17() {
        let rt = FakeRuntime::new(Clock::System);
        let p = pod(POD);
        let (cx, mut rx) = context(Clock::System);
        let id = running(&rt, &p, 0).await;
        rt.exit_container(&id, 1);
        stop_with_hook(&rt, &cx, &p, id, 2, exec_hook(&["/bin/drain"])).await;
        let failed: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .filter(|e| e.reason == "FailedPreStopHook")
            .map(|e| e.message)
            .collect();
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].starts_with(
                "PreStopHook failed: running command \"/bin/drain\": ExecSync failed: container "
            ) && failed[0].ends_with("is not running"),
            "{failed:?}"
        );
    }

    #[tokio::test]
    async fn failed_post_start_hook_stops_the_container_and_says_why() {
        let rt = FakeRuntime::new(Clock::System);
        let p = pod(&POD.replace(
            "image: 'busybox:1.35'",
            "image: 'busybox:1.35', lifecycle: {postStart: {exec: {command: [/bin/false]}}}",
        ));
        rt.set_exec_result(
            "/bin/false",
            ExecOutput {
                exit_code: 1,
                stdout: Vec::new(),
                stderr: b"nope".to_vec(),
            },
        );
        let (cx, mut rx) = context(Clock::System);
        let work = PodWork {
            key: p.key.clone(),
            actions: start_app(&p),
        };
        assert!(
            execute(&rt, &FakeHost::new(), &cx, work)
                .await
                .result
                .is_ok()
        );
        assert!(
            rt.running("p-n1").is_empty(),
            "stopped after its postStart hook failed"
        );
        assert_eq!(stops(&rt).len(), 1);
        let reasons: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.reason)
            .collect();
        assert_eq!(
            reasons,
            ["Pulled", "Created", "Started", "FailedPostStartHook"]
        );
    }

    #[tokio::test]
    async fn a_failure_stopping_the_old_version_says_the_new_one_waits_for_it_issue_17() {
        let rt = FakeRuntime::new(Clock::System);
        let p = pod(POD);
        rt.fail_next(
            "remove_sandbox",
            RuntimeError::Call {
                method: "RemovePodSandbox",
                code: tonic::Code::Unknown,
                message: "device or resource busy".into(),
            },
        );
        let (cx, _rx) = context(Clock::System);
        let mut actions = vec![Action::RemoveSandbox(SandboxId("old".into()))];
        actions.extend(start_app(&p));
        let work = PodWork {
            key: p.key.clone(),
            actions,
        };
        let err = execute(&rt, &FakeHost::new(), &cx, work)
            .await
            .result
            .expect_err("fails");
        assert_eq!(
            err.describe(),
            "the new version waits for the old one to stop: RemovePodSandbox failed: device or resource busy"
        );
        // A failure after the new sandbox runs is the new version's own.
        rt.fail_next(
            "start_container",
            RuntimeError::NoSuchContainer("app".into()),
        );
        let work = PodWork {
            key: p.key.clone(),
            actions: start_app(&p),
        };
        let err = execute(&rt, &FakeHost::new(), &cx, work)
            .await
            .result
            .expect_err("fails");
        assert_eq!(err.describe(), "pod has no container \"app\"");
    }

    #[tokio::test]
    async fn a_start_posts_the_kubelets_pulled_created_and_started_events_issue_17() {
        let rt = FakeRuntime::new(Clock::System);
        let p = pod(POD);
        let (cx, mut rx) = context(Clock::System);
        let work = PodWork {
            key: p.key.clone(),
            actions: start_app(&p),
        };
        assert!(
            execute(&rt, &FakeHost::new(), &cx, work)
                .await
                .result
                .is_ok()
        );
        let events: Vec<(String, String, Option<String>)> =
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(|e| (e.reason, e.message, e.field_path))
                .collect();
        let field = Some("spec.containers{app}".to_owned());
        assert_eq!(
            events,
            [
                (
                    "Pulled".into(),
                    "Container image \"busybox:1.35\" already present on machine".into(),
                    field.clone()
                ),
                ("Created".into(), "Container created".into(), field.clone()),
                ("Started".into(), "Container started".into(), field),
            ]
        );
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_micros(56_789)), "56.789ms");
        assert_eq!(go_duration(Duration::from_millis(123_500)), "2m3.5s");
    }

    #[tokio::test]
    async fn the_host_side_is_prepared_before_the_runtime_is_asked_and_cleaned_through_the_host_issue_11()
     {
        use crate::host::HostCall;
        use crate::pod::PodUid;
        let rt = FakeRuntime::new(Clock::System);
        let host = FakeHost::new();
        let p = pod(POD);
        let (cx, _rx) = context(Clock::System);
        let mut actions = vec![Action::PreparePod { pod: p.clone() }];
        actions.extend(start_app(&p));
        actions.push(Action::CleanupPod {
            key: p.key.clone(),
            uid: PodUid("old".into()),
        });
        let work = PodWork {
            key: p.key.clone(),
            actions,
        };
        assert!(execute(&rt, &host, &cx, work).await.result.is_ok());
        assert_eq!(
            host.calls(),
            [
                HostCall::PreparePod(p.key.clone()),
                HostCall::PrepareContainer(p.key.clone(), "app".into(), 0),
                HostCall::CleanupPod(p.key.clone(), PodUid("old".into())),
            ]
        );
        // A host failure ends the list before the runtime is asked, and says what failed.
        host.fail_next("prepare_pod", "read-only file system");
        rt.take_calls();
        let mut actions = vec![Action::PreparePod { pod: p.clone() }];
        actions.extend(start_app(&p));
        let err = execute(
            &rt,
            &host,
            &cx,
            PodWork {
                key: p.key.clone(),
                actions,
            },
        )
        .await
        .result
        .expect_err("host failure");
        assert!(matches!(err.error, StepError::Host(_)));
        assert!(
            err.describe().contains("read-only file system"),
            "{}",
            err.describe()
        );
        assert!(
            !rt.calls()
                .iter()
                .any(|c| matches!(c, FakeCall::RunSandbox(..))),
            "no sandbox without its host side"
        );
    }

    #[tokio::test]
    async fn a_failed_start_names_the_container_and_ends_the_list() {
        let rt = FakeRuntime::new(Clock::System);
        let p = pod(POD);
        rt.fail_next(
            "start_container",
            RuntimeError::ImageNeverPull {
                image: "busybox:1.35".into(),
            },
        );
        let (cx, mut rx) = context(Clock::System);
        let mut actions = start_app(&p);
        actions.push(Action::StopSandbox(SandboxId("never-reached".into())));
        let work = PodWork {
            key: p.key.clone(),
            actions,
        };
        let err = execute(&rt, &FakeHost::new(), &cx, work)
            .await
            .result
            .expect_err("start fails");
        assert_eq!(err.container.as_deref(), Some("app"));
        assert!(matches!(
            err.error,
            StepError::Runtime(RuntimeError::ImageNeverPull { .. })
        ));
        assert!(
            !rt.calls()
                .iter()
                .any(|c| matches!(c, FakeCall::StopSandbox(_)))
        );
        let e = rx.try_recv().expect("event");
        assert_eq!(
            (e.reason.as_str(), e.field_path.as_deref()),
            ("ErrImageNeverPull", Some("spec.containers{app}"))
        );
    }
}

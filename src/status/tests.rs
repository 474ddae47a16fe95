use std::collections::BTreeMap;
use std::time::Duration;

use super::*;
use crate::pod::{ContainerKind, PodUid, TerminationReason};
use crate::runtime::{ObservedSandbox, SandboxId};

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn pod(yaml: &str) -> StaticPod {
    crate::manifest::testing::static_pod(yaml)
}

fn sandbox(p: &StaticPod, ip: Option<&str>) -> ObservedSandbox {
    ObservedSandbox {
        id: SandboxId("sb1".into()),
        key: p.key.clone(),
        uid: p.uid.clone(),
        version: p.sandbox.clone(),
        attempt: 0,
        state: SandboxState::Ready,
        created_at: Some(T0),
        manifest: None,
        ip: ip.map(str::to_owned),
        priority: None,
        shutdown_order: None,
        component: None,
    }
}

fn container(
    p: &StaticPod,
    name: &str,
    attempt: u32,
    state: ContainerState,
    exit: Option<i32>,
) -> ObservedContainer {
    ObservedContainer {
        id: ContainerId(format!("{name}-{attempt}")),
        sandbox: SandboxId("sb1".into()),
        key: p.key.clone(),
        uid: p.uid.clone(),
        name: name.into(),
        attempt,
        restarts: attempt,
        kind: ContainerKind::App,
        state,
        hash: None,
        grace_seconds: None,
        pre_stop: None,
        image: "busybox:1.35".into(),
        image_ref: "sha256:abc".into(),
        created_at: Some(T0.plus(Duration::from_secs(u64::from(attempt)))),
        started_at: Some(T0.plus(Duration::from_secs(u64::from(attempt)))),
        finished_at: exit.map(|_| T0.plus(Duration::from_secs(u64::from(attempt) + 1))),
        exit_code: exit,
        reason: None,
        termination: None,
        message: String::new(),
    }
}

struct Case {
    pod: StaticPod,
    observed: Observed,
    probes: BTreeMap<ContainerId, ContainerProbes>,
    backing_off: Vec<BackingOff>,
    errors: BTreeMap<(PodKey, String), StartError>,
    now: Timestamp,
}

impl Case {
    fn new(yaml: &str) -> Case {
        Case {
            pod: pod(yaml),
            observed: Observed::default(),
            probes: BTreeMap::new(),
            backing_off: Vec::new(),
            errors: BTreeMap::new(),
            now: T0,
        }
    }

    fn status(&self) -> PodStatus {
        pod_status(&StatusInput {
            pod: &self.pod,
            observed: &self.observed,
            probes: &self.probes,
            backing_off: &self.backing_off,
            start_errors: &self.errors,
            runtime_name: "containerd",
            host_ip: Some("192.168.1.10"),
            now: self.now,
        })
    }
}

fn cond(s: &PodStatus, kind: &str) -> String {
    s.conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

fn waiting_reason(s: &ContainerStatus) -> Option<String> {
    s.state.as_ref()?.waiting.as_ref()?.reason.clone()
}

const WEB: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - {name: app, image: 'busybox:1.35'}\n";

#[test]
fn pod_without_containers_yet_is_pending_and_creating() {
    let c = Case::new(WEB);
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(waiting_reason(app).as_deref(), Some("ContainerCreating"));
    assert_eq!(cond(&s, "Initialized"), "True");
    assert_eq!(cond(&s, "Ready"), "False");
    assert_eq!(cond(&s, "PodScheduled"), "True");
    assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
}

#[test]
fn running_container_without_probes_is_ready_and_started() {
    let mut c = Case::new(WEB);
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    c.observed
        .containers
        .push(container(&c.pod, "app", 2, ContainerState::Running, None));
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert!(app.ready);
    assert_eq!(app.started, Some(true));
    assert_eq!(app.restart_count, 2);
    assert_eq!(app.container_id.as_deref(), Some("containerd://app-2"));
    assert_eq!(app.image_id, "sha256:abc");
    assert_eq!(cond(&s, "Ready"), "True");
    assert_eq!(cond(&s, "PodReadyToStartContainers"), "True");
    assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.5"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(s.start_time, Some(api_time(T0)));
}

#[test]
fn failing_readiness_makes_the_pod_not_ready_but_running() {
    let mut c = Case::new(WEB);
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    c.observed
        .containers
        .push(container(&c.pod, "app", 0, ContainerState::Running, None));
    c.probes.insert(
        ContainerId("app-0".into()),
        ContainerProbes {
            ready: Some(false),
            started: None,
        },
    );
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert!(!s.container_statuses.as_ref().expect("statuses")[0].ready);
    assert_eq!(cond(&s, "ContainersReady"), "False");
}

#[test]
fn a_restarted_container_created_but_not_yet_started_keeps_the_pod_running() {
    // Between CreateContainer and StartContainer of a restart the pod must not read Pending
    // (the kubelet keeps the previous instance as lastState, so the pod stays Running).
    let mut c = Case::new(WEB);
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    c.observed.containers.push(container(
        &c.pod,
        "app",
        0,
        ContainerState::Exited,
        Some(137),
    ));
    c.observed
        .containers
        .push(container(&c.pod, "app", 1, ContainerState::Created, None));
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(
        waiting_reason(app),
        None,
        "the kubelet's empty waiting state"
    );
    assert!(!app.ready);
    let last = app.last_state.as_ref().and_then(|l| l.terminated.as_ref());
    assert_eq!(last.map(|t| t.exit_code), Some(137));
    assert_eq!(app.restart_count, 1);
}

#[test]
fn crash_looping_container_waits_with_its_last_termination() {
    let mut c = Case::new(WEB);
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    let mut dead = container(&c.pod, "app", 3, ContainerState::Exited, Some(1));
    dead.reason = Some(TerminationReason::Error);
    c.observed.containers.push(dead.clone());
    let finished = dead.finished_at.expect("finished");
    c.backing_off.push(BackingOff {
        key: c.pod.key.clone(),
        name: "app".into(),
        until: finished.plus(Duration::from_secs(40)),
    });
    let s = c.status();
    assert_eq!(
        s.phase.as_deref(),
        Some("Running"),
        "restartPolicy Always: restarting counts as running"
    );
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(waiting_reason(app).as_deref(), Some("CrashLoopBackOff"));
    let msg = app
        .state
        .as_ref()
        .and_then(|st| st.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .expect("message");
    assert_eq!(
        msg,
        format!(
            "back-off 40s restarting failed container=app pod=web-n1_default({})",
            c.pod.uid
        ),
        "the kubelet's format.Pod: name_namespace(uid) (issue 17)"
    );
    let last = app
        .last_state
        .as_ref()
        .and_then(|l| l.terminated.as_ref())
        .expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(app.restart_count, 3);
}

#[test]
fn oom_killed_is_reported_as_the_termination_reason() {
    let mut c = Case::new(&WEB.replace("containers:", "restartPolicy: Never\n  containers:"));
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    let mut dead = container(&c.pod, "app", 0, ContainerState::Exited, Some(137));
    dead.reason = Some(TerminationReason::OomKilled);
    c.observed.containers.push(dead);
    let s = c.status();
    let t = s.container_statuses.as_ref().expect("statuses")[0]
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")));
    assert_eq!(s.phase.as_deref(), Some("Failed"));
}

#[test]
fn start_time_is_podvisors_first_sight_when_the_runtime_has_none_issue_17() {
    let mut c = Case::new(WEB);
    // No sandbox yet (the new version waits for the old one to stop).
    let s = c.status();
    assert_eq!(s.start_time, Some(api_time(c.pod.seen)));
    // A sandbox the runtime gives no creation time.
    let mut sb = sandbox(&c.pod, None);
    sb.created_at = None;
    c.observed.sandboxes.push(sb);
    assert_eq!(c.status().start_time, Some(api_time(c.pod.seen)));
    // A sandbox with one: that.
    c.observed.sandboxes[0].created_at = Some(T0);
    assert_eq!(c.status().start_time, Some(api_time(T0)));
}

#[test]
fn completed_never_pod_succeeds() {
    let mut c = Case::new(&WEB.replace("containers:", "restartPolicy: Never\n  containers:"));
    c.observed
        .containers
        .push(container(&c.pod, "app", 0, ContainerState::Exited, Some(0)));
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let t = s.container_statuses.as_ref().expect("statuses")[0]
        .state
        .as_ref()
        .and_then(|st| st.terminated.clone())
        .expect("terminated");
    assert_eq!(t.reason.as_deref(), Some("Completed"));
}

#[test]
fn running_init_container_keeps_the_pod_pending_and_uninitialized() {
    let mut c = Case::new(&WEB.replace(
        "containers:",
        "initContainers:\n  - {name: init, image: 'busybox:1.35'}\n  containers:",
    ));
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    let mut init = container(&c.pod, "init", 0, ContainerState::Running, None);
    init.kind = ContainerKind::Init;
    c.observed.containers.push(init);
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(cond(&s, "Initialized"), "False");
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(waiting_reason(app).as_deref(), Some("PodInitializing"));
    assert_eq!(s.init_container_statuses.as_ref().map(Vec::len), Some(1));
}

#[test]
fn failed_init_under_never_fails_the_pod() {
    let mut c = Case::new(&WEB.replace("containers:", "restartPolicy: Never\n  initContainers:\n  - {name: init, image: 'busybox:1.35'}\n  containers:"));
    let mut init = container(&c.pod, "init", 0, ContainerState::Exited, Some(2));
    init.kind = ContainerKind::Init;
    c.observed.containers.push(init);
    assert_eq!(c.status().phase.as_deref(), Some("Failed"));
}

#[test]
fn start_errors_show_as_the_kubelet_waiting_reason() {
    let mut c = Case::new(WEB);
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    c.errors.insert(
        (c.pod.key.clone(), "app".into()),
        StartError {
            reason: crate::pod::WaitingReason::ErrImageNeverPull,
            message: "image busybox:1.35 is not present".into(),
            image: None,
            at: T0,
        },
    );
    let s = c.status();
    assert_eq!(
        waiting_reason(&s.container_statuses.as_ref().expect("statuses")[0]).as_deref(),
        Some("ErrImageNeverPull")
    );
    assert_eq!(s.phase.as_deref(), Some("Pending"));
}

#[test]
fn host_network_pods_report_the_host_ip_as_pod_ip() {
    let mut c = Case::new(&WEB.replace("containers:", "hostNetwork: true\n  containers:"));
    c.observed.sandboxes.push(sandbox(&c.pod, None));
    let s = c.status();
    assert_eq!(s.pod_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(cond(&s, "PodReadyToStartContainers"), "True");
}

#[test]
fn after_a_container_only_edit_the_old_container_is_not_the_new_versions_status() {
    // The edit keeps the sandbox; the old container still runs until it is stopped. The new
    // version (a new config.hash) must not be reported Running and Ready on the old one:
    // `kubeadm upgrade` waits for the new hash to be Ready.
    let mut c = Case::new(WEB);
    c.observed.sandboxes.push(sandbox(&c.pod, None));
    let mut old = container(&c.pod, "app", 0, ContainerState::Running, None);
    old.hash = Some(crate::pod::ContainerHash("of-the-old-spec".into()));
    c.observed.containers.push(old.clone());
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(waiting_reason(app).as_deref(), Some("ContainerCreating"));
    assert!(!app.ready);
    assert_eq!(app.container_id, None);
    assert_eq!(cond(&s, "Ready"), "False");
    // once the new container runs, it alone is reported; the old one is no lastState
    let mut new = container(&c.pod, "app", 1, ContainerState::Running, None);
    new.hash = c.pod.container_hash("app").cloned();
    new.restarts = 0;
    old.state = ContainerState::Exited;
    old.exit_code = Some(0);
    c.observed.containers = vec![old, new];
    let s = c.status();
    let app = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(app.container_id.as_deref(), Some("containerd://app-1"));
    assert!(app.ready);
    assert_eq!(app.last_state, None);
    assert_eq!(app.restart_count, 0);
}

#[test]
fn other_versions_of_the_pod_are_not_counted() {
    let mut c = Case::new(WEB);
    let mut old = container(&c.pod, "app", 0, ContainerState::Running, None);
    old.uid = PodUid("an-older-version".into());
    c.observed.containers.push(old);
    let s = c.status();
    assert_eq!(
        waiting_reason(&s.container_statuses.as_ref().expect("statuses")[0]).as_deref(),
        Some("ContainerCreating")
    );
}

#[test]
fn a_completed_init_container_is_ready_and_unready_containers_are_named_issue_17() {
    let mut c = Case::new(&WEB.replace(
        "containers:",
        "initContainers:\n  - {name: init, image: 'busybox:1.35'}\n  containers:",
    ));
    c.observed
        .sandboxes
        .push(sandbox(&c.pod, Some("10.88.0.5")));
    let mut init = container(&c.pod, "init", 0, ContainerState::Exited, Some(0));
    init.kind = ContainerKind::Init;
    c.observed.containers.push(init);
    let s = c.status();
    assert!(s.init_container_statuses.as_ref().expect("init")[0].ready);
    let condition = |s: &PodStatus, t: &str| {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .cloned()
            .expect("condition")
    };
    let ready = condition(&s, "Ready");
    assert_eq!(
        (ready.reason.as_deref(), ready.message.as_deref()),
        (
            Some("ContainersNotReady"),
            Some("containers with unready status: [app]")
        )
    );
    c.observed
        .containers
        .push(container(&c.pod, "app", 0, ContainerState::Exited, Some(1)));
    let s = c.status();
    let ready = condition(&s, "ContainersReady");
    assert_eq!(
        ready.message.as_deref(),
        Some("containers with unready status: [app]")
    );
}

#[test]
fn a_finished_pod_says_pod_completed_and_running_containers_report_their_resources_issue_17() {
    let mut c = Case::new(&WEB.replace(
        "containers:\n  - {name: app, image: 'busybox:1.35'}",
        "restartPolicy: Never\n  containers:\n  - {name: app, image: 'busybox:1.35', resources: {limits: {cpu: 500m, memory: 64Mi, hugepages-2Mi: 2Mi}, requests: {ephemeral-storage: 1Gi}}}",
    ));
    c.observed
        .containers
        .push(container(&c.pod, "app", 0, ContainerState::Exited, Some(0)));
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    let ready = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    let resources = s.container_statuses.as_ref().expect("statuses")[0]
        .resources
        .clone()
        .expect("resources");
    let limits = resources.limits.expect("limits");
    assert_eq!(limits.keys().collect::<Vec<_>>(), ["cpu", "memory"]);
    // Requests default to limits, as the API server defaults them.
    let requests = resources.requests.expect("requests");
    assert_eq!(requests.keys().collect::<Vec<_>>(), ["cpu", "memory"]);
}

/// Issue 13.4: from its deadline on the pod is Failed with the kubelet's reason and message,
/// counted from its sandbox's creation.
#[test]
fn a_pod_past_its_active_deadline_is_failed_with_deadline_exceeded() {
    let mut c = Case::new(&WEB.replace("containers:", "activeDeadlineSeconds: 30\n  containers:"));
    c.observed.sandboxes.push(sandbox(&c.pod, Some("10.0.0.5")));
    c.observed
        .containers
        .push(container(&c.pod, "app", 0, ContainerState::Running, None));
    c.now = T0.plus(Duration::from_secs(29));
    let s = c.status();
    assert_eq!(
        (s.phase.as_deref(), s.reason.as_deref()),
        (Some("Running"), None)
    );
    c.now = T0.plus(Duration::from_secs(30));
    let s = c.status();
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        s.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
}

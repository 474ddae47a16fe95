//! The shutdown plan from runtime records: the kubelet's grouping examples, grace periods,
//! and podvisor's order within a group.

use super::*;
use crate::clock::Timestamp;
use crate::pod::PodUid;
use crate::runtime::ContainerId;

const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

fn key(name: &str) -> PodKey {
    PodKey {
        namespace: "kube-system".into(),
        name: name.into(),
    }
}

/// A running pod `name` with one app container, as the runtime records it.
struct Pod {
    sandbox: ObservedSandbox,
    containers: Vec<ObservedContainer>,
}

impl Pod {
    fn new(name: &str, priority: Option<i32>, grace: Option<i64>) -> Pod {
        let sandbox = ObservedSandbox {
            id: SandboxId(format!("sb-{name}")),
            key: key(name),
            uid: PodUid(format!("uid-{name}")),
            version: crate::pod::SandboxHash(format!("uid-{name}")),
            attempt: 0,
            state: SandboxState::Ready,
            created_at: Some(T0),
            manifest: None,
            ip: None,
            priority,
            shutdown_order: None,
            component: None,
        };
        let mut pod = Pod {
            sandbox,
            containers: Vec::new(),
        };
        pod.container("main", ContainerKind::App, ContainerState::Running, grace);
        pod
    }

    fn container(
        &mut self,
        name: &str,
        kind: ContainerKind,
        state: ContainerState,
        grace: Option<i64>,
    ) -> &mut Pod {
        self.containers.push(ObservedContainer {
            id: ContainerId(format!("{}-{name}", self.sandbox.key.name)),
            sandbox: self.sandbox.id.clone(),
            key: self.sandbox.key.clone(),
            uid: self.sandbox.uid.clone(),
            name: name.into(),
            attempt: 0,
            restarts: 0,
            kind,
            state,
            hash: None,
            grace_seconds: grace,
            pre_stop: Some(
                serde_json::from_value(serde_json::json!({"exec": {"command": ["true"]}}))
                    .expect("handler"),
            ),
            image: "busybox:1.35".into(),
            image_ref: String::new(),
            created_at: Some(T0),
            started_at: Some(T0),
            finished_at: None,
            exit_code: None,
            reason: None,
            termination: None,
            message: String::new(),
        });
        self
    }

    fn component(mut self, c: &str) -> Pod {
        self.sandbox.component = Some(c.into());
        self
    }

    fn order(mut self, o: i32) -> Pod {
        self.sandbox.shutdown_order = Some(o);
        self
    }
}

fn observed(pods: Vec<Pod>) -> Observed {
    let mut o = Observed::default();
    for p in pods {
        o.sandboxes.push(p.sandbox);
        o.containers.extend(p.containers);
    }
    o
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A step as (group priority, group period s, order, [(pod, grace s)]).
type StepView = (i32, u64, i32, Vec<(String, u64)>);

fn steps(plan: &ShutdownPlan) -> Vec<StepView> {
    plan.steps
        .iter()
        .map(|s| {
            (
                s.group.priority,
                s.group.period.as_secs(),
                s.order,
                s.pods
                    .iter()
                    .map(|p| (p.key.name.clone(), p.grace.as_secs()))
                    .collect(),
            )
        })
        .collect()
}

fn names(list: &[&str], grace: u64) -> Vec<(String, u64)> {
    list.iter().map(|n| ((*n).to_owned(), grace)).collect()
}

#[test]
fn migrated_durations_stop_normal_pods_first_then_critical_ones_as_the_kubelets_example() {
    let policy = ShutdownPolicy::migrate(secs(300), secs(120));
    let o = observed(vec![
        Pod::new("normal-pod", Some(0), None),
        Pod::new("highest-user-definable-pod", Some(1_000_000_000), None),
        Pod::new("critical-pod", Some(2_000_000_000), None),
    ]);
    let p = plan(&policy, &o, None);
    assert_eq!(
        steps(&p),
        [
            (
                0,
                180,
                0,
                names(&["highest-user-definable-pod", "normal-pod"], 180)
            ),
            (2_000_000_000, 120, 0, names(&["critical-pod"], 120)),
        ]
    );
    assert_eq!(p.bound(), secs(300));
    assert_eq!(p.pods(), 3);
}

#[test]
fn pods_go_to_the_range_they_fall_in_as_the_kubelets_pod_priority_example() {
    let policy = ShutdownPolicy::by_priority(
        [(1, 10), (2, 20), (3, 30), (4, 40)]
            .into_iter()
            .map(|(priority, s)| PriorityPeriod {
                priority,
                period: secs(s),
            })
            .collect(),
    );
    let o = observed(
        (0..=5)
            .map(|i| Pod::new(&format!("pod-{i}"), Some(i), None))
            .collect(),
    );
    assert_eq!(
        steps(&plan(&policy, &o, None)),
        [
            (1, 10, 0, names(&["pod-0", "pod-1"], 10)),
            (2, 20, 0, names(&["pod-2"], 20)),
            (3, 30, 0, names(&["pod-3"], 30)),
            (4, 40, 0, names(&["pod-4", "pod-5"], 40)),
        ]
    );
}

#[test]
fn a_pod_gets_its_own_grace_period_when_shorter_than_its_groups() {
    let policy = ShutdownPolicy::migrate(secs(30), secs(10));
    let o = observed(vec![
        Pod::new("quick", Some(0), Some(5)),
        Pod::new("slow", Some(0), Some(300)),
        Pod::new("unrecorded", Some(0), None),
    ]);
    let p = plan(&policy, &o, None);
    let graces: Vec<(String, u64)> = p.steps[0]
        .pods
        .iter()
        .map(|p| (p.key.name.clone(), p.grace.as_secs()))
        .collect();
    assert_eq!(
        graces,
        [
            ("quick".to_owned(), 5),
            ("slow".to_owned(), 20),
            ("unrecorded".to_owned(), 20)
        ]
    );
    let quick = &p.steps[0].pods[0];
    assert_eq!(quick.app[0].grace, secs(5), "the container's stop gets it");
    assert!(
        quick.app[0].pre_stop.is_some(),
        "its preStop runs within it"
    );
}

#[test]
fn kubeadms_etcd_stops_after_the_rest_of_the_control_plane_in_a_step_of_its_own() {
    // kubeadm gives all four system-node-critical (2000001000) and labels them by component
    let o = observed(vec![
        Pod::new("etcd-n1", Some(2_000_001_000), Some(30)).component("etcd"),
        Pod::new("kube-apiserver-n1", Some(2_000_001_000), Some(30)).component("kube-apiserver"),
        Pod::new("kube-controller-manager-n1", Some(2_000_001_000), Some(30))
            .component("kube-controller-manager"),
        Pod::new("kube-scheduler-n1", Some(2_000_001_000), Some(30)).component("kube-scheduler"),
        Pod::new("web-n1", None, Some(30)),
    ]);
    let p = plan(&ShutdownPolicy::podvisor_default(), &o, None);
    assert_eq!(
        steps(&p),
        [
            (0, 20, 0, names(&["web-n1"], 20)),
            (
                2_000_000_000,
                10,
                0,
                names(
                    &[
                        "kube-apiserver-n1",
                        "kube-controller-manager-n1",
                        "kube-scheduler-n1"
                    ],
                    10
                )
            ),
            (2_000_000_000, 10, 1, names(&["etcd-n1"], 10)),
        ]
    );
    assert_eq!(p.bound(), secs(40), "each step may take its group's period");
    assert_eq!(
        p.steps[0].pods[0].priority_source,
        PrioritySource::Unrecorded,
        "a sandbox of an older podvisor: priority 0, and said so"
    );
}

#[test]
fn the_shutdown_order_annotation_overrides_the_etcd_default_for_anyone() {
    let o = observed(vec![
        Pod::new("etcd", Some(5), None).component("etcd").order(-1),
        Pod::new("api", Some(5), None),
        Pod::new("backup", Some(5), None).order(7),
        Pod::new("other-etcd", Some(5), None).component("etcd"),
    ]);
    let p = plan(&ShutdownPolicy::podvisor_default(), &o, None);
    let order: Vec<(i32, Vec<String>)> = p
        .steps
        .iter()
        .map(|s| (s.order, s.pods.iter().map(|p| p.key.name.clone()).collect()))
        .collect();
    assert_eq!(
        order,
        [
            (-1, vec!["etcd".to_owned()]),
            (0, vec!["api".to_owned()]),
            (1, vec!["other-etcd".to_owned()]),
            (7, vec!["backup".to_owned()]),
        ]
    );
}

#[test]
fn stopped_pods_and_exited_containers_are_left_alone_and_sandboxes_only_stopped() {
    let mut done = Pod::new("done", Some(0), Some(30));
    done.sandbox.state = SandboxState::NotReady;
    done.containers[0].state = ContainerState::Exited;
    let mut web = Pod::new("web", Some(0), Some(30));
    web.container("old", ContainerKind::App, ContainerState::Exited, Some(30))
        .container(
            "sidecar",
            ContainerKind::Init,
            ContainerState::Running,
            Some(30),
        )
        .container(
            "setup",
            ContainerKind::Init,
            ContainerState::Exited,
            Some(30),
        );
    let p = plan(
        &ShutdownPolicy::podvisor_default(),
        &observed(vec![done, web]),
        None,
    );
    assert_eq!(p.pods(), 1);
    let web = &p.steps[0].pods[0];
    let names = |ts: &[StopTarget]| ts.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&web.app), ["main"]);
    assert_eq!(names(&web.init), ["sidecar"]);
    assert_eq!(web.sandboxes, [SandboxId("sb-web".into())]);
}

#[test]
fn a_zero_period_skips_pre_stop_and_keeps_the_two_second_floor() {
    let policy = ShutdownPolicy::migrate(secs(10), secs(0));
    let o = observed(vec![Pod::new("critical", Some(2_000_000_000), Some(30))]);
    let p = plan(&policy, &o, None);
    let pod = &p.steps[0].pods[0];
    assert_eq!(pod.grace, Duration::ZERO);
    assert_eq!(pod.app[0].grace, MIN_GRACE);
    assert!(pod.app[0].pre_stop.is_none(), "no time for preStop");
}

#[test]
fn nothing_is_planned_when_graceful_shutdown_is_off() {
    let o = observed(vec![Pod::new("web", Some(0), Some(30))]);
    let p = plan(&ShutdownPolicy::default(), &o, None);
    assert!(p.steps.is_empty());
    assert_eq!(p.bound(), Duration::ZERO);
}

#[test]
fn host_network_hooks_use_the_node_address_and_others_the_pod_ip() {
    let mut own = Pod::new("own", Some(0), Some(30));
    own.sandbox.ip = Some("10.88.0.7".into());
    let host = Pod::new("host", Some(0), Some(30));
    let p = plan(
        &ShutdownPolicy::podvisor_default(),
        &observed(vec![own, host]),
        Some("192.168.1.10"),
    );
    let hosts: Vec<Option<String>> = p.steps[0]
        .pods
        .iter()
        .map(|p| p.app[0].pre_stop.as_ref().and_then(|h| h.host.clone()))
        .collect();
    assert_eq!(
        hosts,
        [
            Some("192.168.1.10".to_owned()),
            Some("10.88.0.7".to_owned())
        ]
    );
}

//! `podvisor shutdown` against a real containerd: the stop order and each group's grace
//! period, as the runtime records them (container finish times and exit codes).

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use podvisor::clock::Timestamp;
use podvisor::runtime::{ContainerState, Observed, Runtime, SandboxState};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};
use crate::lifecycle::running;

const T: Duration = Duration::from_secs(30);
/// What a loaded machine may add to a stop: the runtime's kill, the sandbox's stop.
const SLACK: Duration = Duration::from_millis(2_500);
/// A step whose predecessor used its whole period starts on its own timer, which may fire a
/// few milliseconds before the runtime's kill of that predecessor lands (as the kubelet's).
const EARLY: Duration = Duration::from_millis(250);

/// A pod whose container, told to stop, exits `exit_after` later ("never": ignores SIGTERM).
fn pod(name: &str, meta: &str, spec: &str, grace: u32, exit_after: &str) -> String {
    let trap = match exit_after {
        "never" => "trap \\\"\\\" TERM".to_owned(),
        s => format!("trap \\\"sleep {s}; exit 0\\\" TERM"),
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
{meta}spec:
{spec}  terminationGracePeriodSeconds: {grace}
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, \"{trap}; while true; do sleep 0.2; done\"]
"
    )
}

/// Three priority groups of their own: 4 s for priority 0 and up, 4 s from 1000, 3 s for
/// critical pods.
const CONFIG: &str = "shutdownGracePeriodByPodPriority:
- {priority: 0, shutdownGracePeriodSeconds: 4}
- {priority: 1000, shutdownGracePeriodSeconds: 4}
- {priority: 2000000000, shutdownGracePeriodSeconds: 3}
";

fn shutdown(lab: &Lab, d: &Daemon, config: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .arg("shutdown")
        .arg("--config")
        .arg(config)
        .arg("--runtime-endpoint")
        .arg(&lab.endpoint)
        .arg("--root-dir")
        .arg(&d.root)
        .arg("--status-socket")
        .arg(&d.socket)
        .args(extra)
        .output()
        .expect("run podvisor shutdown")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// When pod `name`'s container finished, and its exit code.
fn finish(o: &Observed, pod: &str) -> (Timestamp, i32) {
    let c = o
        .containers
        .iter()
        .find(|c| c.key.name == pod)
        .unwrap_or_else(|| panic!("{pod} not in the runtime: {o:#?}"));
    assert_eq!(c.state, ContainerState::Exited, "{pod}");
    (
        c.finished_at.expect("finished"),
        c.exit_code.expect("exit code"),
    )
}

fn between(what: &str, took: Duration, min: Duration, max: Duration) {
    assert!(
        took >= min && took <= max,
        "{what} took {took:?}, expected {min:?} to {max:?}"
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn ordered_shutdown_stops_lowest_priority_first_each_group_within_its_period() {
    let lab = Lab::start();
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    let config = lab.dir.path().join("podvisor.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    // low: priority 0, ignores SIGTERM: killed at its group's 4 s, though its own is 30 s
    d.write("low.yaml", &pod("low", "", "", 30, "never"));
    // mid: priority 1000, exits 1 s after SIGTERM
    d.write("mid.yaml", &pod("mid", "", "  priority: 1000\n", 30, "1"));
    // kubeadm's pair: both system-node-critical, both ignore SIGTERM; the API server is
    // killed at the group's 3 s, then etcd, whose own 2 s is shorter than the group's
    let critical = "  priorityClassName: system-node-critical\n";
    let api_meta = "  labels: {component: kube-apiserver}\n";
    d.write("api.yaml", &pod("api", api_meta, critical, 30, "never"));
    let etcd_meta = "  labels: {component: etcd}\n";
    d.write("etcd.yaml", &pod("etcd", etcd_meta, critical, 2, "never"));
    let names = ["low", "mid", "api", "etcd"].map(|n| d.pod(n));
    wait_for(&cri, T, "all four running", |o| {
        names.iter().all(|n| running(o, n).len() == 1)
    })
    .await;

    // while the daemon runs, it would start again what is stopped: refused, nothing touched
    let out = shutdown(&lab, &d, &config, &[]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("stop it first"), "{}", text(&out));
    holds_for(&cri, Duration::from_secs(1), "pods left running", |o| {
        names.iter().all(|n| running(o, n).len() == 1)
    })
    .await;

    assert!(d.terminate().success());
    let out = shutdown(&lab, &d, &config, &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = |pod: &str| {
        plan.find(&format!("stopping kube-system/{pod}"))
            .unwrap_or_else(|| panic!("{pod} not in the plan:\n{plan}"))
    };
    assert!(
        at(&names[0]) < at(&names[1])
            && at(&names[1]) < at(&names[2])
            && at(&names[2]) < at(&names[3]),
        "plan out of order:\n{plan}"
    );
    assert!(plan.contains("in 4 steps, at most 14s"), "{plan}");
    let o = cri.observe().await.expect("observe");
    assert!(
        names.iter().all(|n| running(&o, n).len() == 1),
        "a dry run stops nothing"
    );

    let started = Timestamp::from_system(SystemTime::now());
    let out = shutdown(&lab, &d, &config, &[]);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("{}", text(&out));
    let o = cri.observe().await.expect("observe");
    let [low, mid, api, etcd] = names.each_ref().map(|n| finish(&o, n));
    let secs = Duration::from_secs;
    // low: the first SIGTERM, then SIGKILL at its group's period and not before (counted
    // from before the command started, so a little more than from its SIGTERM)
    assert_eq!(low.1, 137, "low was killed\n{}", text(&out));
    between("low", low.0.since(started), secs(4), secs(4) + SLACK);
    // mid: its step began when low's period was over, as low was killed; it exited by itself
    assert_eq!(mid.1, 0, "mid exited on SIGTERM\n{}", text(&out));
    between(
        "mid after low",
        mid.0.since(low.0),
        secs(1) - EARLY,
        secs(1) + SLACK,
    );
    // the API server: its step began once mid was done; killed at the critical group's 3 s
    assert_eq!(api.1, 137, "{}", text(&out));
    between(
        "api after mid",
        api.0.since(mid.0),
        secs(3),
        secs(3) + SLACK,
    );
    // etcd: last, after the API server of its own priority, killed at its own 2 s
    assert_eq!(etcd.1, 137, "{}", text(&out));
    between(
        "etcd after api",
        etcd.0.since(api.0),
        secs(2) - EARLY,
        secs(2) + SLACK,
    );
    // sandboxes stopped and kept, for the logs and the next boot's podvisor
    for n in &names {
        let s: Vec<_> = o.sandboxes.iter().filter(|s| &s.key.name == n).collect();
        assert!(
            s.len() == 1 && s[0].state == SandboxState::NotReady,
            "{n}: {s:?}"
        );
    }
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("4 of 4 pods stopped"), "{report}");
    assert!(
        report.contains(&format!(
            "stopping kube-system/{} (priority 2000001000, grace 2s)",
            names[3]
        )),
        "{report}"
    );
}

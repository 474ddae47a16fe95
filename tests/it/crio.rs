//! Issue 14: CRI-O as a second real runtime. The same behaviour as against containerd, through
//! the podvisor binary and a CRI-O built from source (hack/crio-lab.sh), plus where CRI-O
//! differs: exits come from CRI `GetContainerEvents`, whose stream ends when CRI-O restarts;
//! sandbox status carries no runtime handler; pod-level stats are empty with cgroupfs.
//!
//! Opt-in: every test passes at once, saying it skipped, unless `PODVISOR_CRIO_BIN` names the
//! directory of a CRI-O build (`crio`, `pinns`), e.g. /opt/crio/bin.

use std::path::Path;
use std::time::{Duration, Instant};

use podvisor::api::client::{get_json, get_raw};
use podvisor::runtime::{ContainerState, Runtime, Streaming};
use serde_json::Value;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, crio_bin, holds_for, wait_for};
use crate::lifecycle::{ready_sandboxes, running, sandbox_of, sleeper};

const T: Duration = Duration::from_secs(30);

/// A CRI-O lab, or `None` when the suite is not asked for.
fn crio_lab() -> Option<Lab> {
    crio_bin().map(Lab::start_crio)
}

/// podvisor's exit events counted so far, by source, from its `/metrics`.
async fn exit_events(d: &Daemon, source: &str) -> u64 {
    let (_, body) = get_raw(&d.socket, "/metrics").await.expect("metrics");
    let text = String::from_utf8_lossy(&body);
    let series = format!("podvisor_runtime_exit_events_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// `/pods/<namespace>/<pod>` once `check` holds for it.
async fn pod_until(d: &Daemon, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    loop {
        let detail: Option<Value> = get_json(&d.socket, path).await.ok();
        if let Some(v) = detail.as_ref().filter(|v| check(v)) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {detail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_pod_from_a_file_runs_its_edit_replaces_it_and_deleting_the_file_removes_it() {
    let Some(lab) = crio_lab() else { return };
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let before = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let old = running(&before, &pod)[0].id.clone();
    let sandbox = sandbox_of(&before, &pod);
    assert_eq!(sandbox.key.namespace, "kube-system");
    assert_eq!(
        sandbox.manifest.as_deref(),
        Some(d.manifests.join("web.yaml").as_path())
    );
    let log_dir = d.logs.join(format!("kube-system_{pod}_{}", sandbox.uid));
    assert!(log_dir.join("main/0.log").exists(), "no container log");
    // CRI-O answers RuntimeConfig: podvisor takes the driver from it
    d.wait_log("using the cgroup driver the runtime uses", T)
        .await;

    d.write("web.yaml", &sleeper("web", "2"));
    let after = wait_for(&cri, T, "edited container running", |o| {
        running(o, &pod).iter().any(|c| c.id != old)
    })
    .await;
    let new = running(&after, &pod)[0];
    assert_eq!(new.attempt, 1, "the edit is a new attempt of the container");
    assert_eq!(ready_sandboxes(&after, &pod), 1, "one sandbox throughout");

    d.remove("web.yaml");
    wait_for(&cri, T, "web gone", |o| {
        o.sandboxes.iter().all(|s| s.key.name != pod)
    })
    .await;
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_killed_container_is_restarted_with_a_higher_restart_count_woken_by_cri_events() {
    let Some(lab) = crio_lab() else { return };
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let id = running(&o, &pod)[0].id.clone();
    // CRI-O has GetContainerEvents: no fallback to containerd's events service
    d.wait_log("watching container exits source=Cri", T).await;
    let seen = exit_events(&d, "cri").await;

    let killed = Instant::now();
    lab.kill_container(&id.0);
    let o = wait_for(&cri, T, "restarted", |o| {
        running(o, &pod).iter().any(|c| c.id != id)
    })
    .await;
    eprintln!("crio: crash to running again: {:?}", killed.elapsed());
    let again = running(&o, &pod)[0];
    assert_eq!(
        (again.attempt, again.restarts),
        (1, 1),
        "a crash is a restart"
    );
    let dead: Vec<_> = o.containers.iter().filter(|c| c.id == id).collect();
    assert_eq!(dead.len(), 1, "the dead instance is kept for logs");
    assert_eq!(dead[0].exit_code, Some(137));
    assert!(
        exit_events(&d, "cri").await > seen,
        "the exit came as a CRI event"
    );
    let (code, ps, _) = d.cli(&["ps", "-o", "json"]);
    assert_eq!(code, 0);
    assert!(ps.contains("\"restarts\": 1"), "{ps}");
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_podvisor_killed_and_restarted_adopts_pods_without_restarting_them() {
    let Some(lab) = crio_lab() else { return };
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    d.write("a.yaml", &sleeper("a", "1"));
    // CRI-O leaves runtimeHandler empty in sandbox status: adoption must not depend on it
    d.write(
        "alt.yaml",
        &sleeper("alt", "1").replace("spec:\n", "spec:\n  runtimeClassName: runc-alt\n"),
    );
    d.write("c.yaml", &sleeper("c", "1"));
    let names = ["a", "alt", "c"];
    let before = wait_for(&cri, T, "three running", |o| {
        names.iter().all(|n| running(o, &d.pod(n)).len() == 1)
    })
    .await;
    d.kill9();
    d.remove("c.yaml");
    d.restart();
    let second_run = |log: &str| {
        log.rsplit("podvisor starting")
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let deadline = Instant::now() + T;
    loop {
        let log = d.log();
        if log.matches("podvisor starting").count() == 2
            && second_run(&log).contains("first full reconcile done")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no second reconcile:\n{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = wait_for(&cri, T, "c stopped", |o| {
        o.sandboxes.iter().all(|s| s.key.name != d.pod("c"))
    })
    .await;
    for name in ["a", "alt"] {
        let pod = d.pod(name);
        let ids = |o: &podvisor::runtime::Observed| -> Vec<_> {
            running(o, &pod)
                .iter()
                .map(|c| (c.id.clone(), c.attempt))
                .collect()
        };
        assert_eq!(ids(&before), ids(&after), "{pod} was restarted");
    }
    let log = d.log();
    assert!(
        !second_run(&log).contains("container started"),
        "the restarted daemon started containers:\n{log}"
    );
    assert!(
        !second_run(&log).contains("pod sandbox started"),
        "the restarted daemon started sandboxes:\n{log}"
    );
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_restart_leaves_pods_running_and_exit_events_are_taken_up_again() {
    let Some(lab) = crio_lab() else { return };
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let before = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let id = running(&before, &pod)[0].id.clone();
    d.wait_log("watching container exits source=Cri", T).await;

    lab.stop_runtime();
    tokio::time::sleep(Duration::from_secs(2)).await; // podvisor sees the socket gone
    lab.start_runtime();
    d.wait_log("container runtime reachable again", T).await;
    holds_for(
        &cri,
        Duration::from_secs(3),
        "same container, one sandbox",
        |o| {
            ready_sandboxes(o, &pod) == 1
                && o.sandboxes.len() == 1
                && running(o, &pod).iter().any(|c| c.id == id)
        },
    )
    .await;
    // CRI-O ended the event stream when it stopped; podvisor subscribes again
    let deadline = Instant::now() + T;
    while d
        .log()
        .matches("watching container exits source=Cri")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "never subscribed again:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = exit_events(&d, "cri").await;
    lab.kill_container(&id.0);
    let o = wait_for(&cri, T, "restarted after the CRI-O restart", |o| {
        running(o, &pod).iter().any(|c| c.id != id)
    })
    .await;
    assert_eq!(running(&o, &pod)[0].restarts, 1);
    assert!(
        exit_events(&d, "cri").await > seen,
        "the new stream carried the exit"
    );
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_runtime_class_name_picks_the_handler_and_a_missing_one_is_a_pod_error() {
    let Some(lab) = crio_lab() else { return };
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let with_class = |name: &str, class: &str| {
        sleeper(name, "1").replace("spec:\n", &format!("spec:\n  runtimeClassName: {class}\n"))
    };
    d.write("alt.yaml", &with_class("alt", "runc-alt"));
    let pod = d.pod("alt");
    let o = wait_for(&cri, T, "alt running", |o| running(o, &pod).len() == 1).await;
    // runc-alt is the lab's second handler: the same runc with a state root of its own
    let c = running(&o, &pod)[0];
    assert!(
        lab.runc_state("runc-alt", &c.id.0).exists(),
        "not run by runc-alt"
    );
    assert!(
        !lab.runc_state("runc", &c.id.0).exists(),
        "run by the default handler"
    );

    d.write(
        "nohandler.yaml",
        &with_class("nohandler", "no-such-handler"),
    );
    let path = format!("/pods/kube-system/{}", d.pod("nohandler"));
    let detail = pod_until(&d, &path, "the sandbox error", |v| {
        v["summary"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-handler"))
    })
    .await;
    let error = detail["summary"]["lastError"].as_str().unwrap_or_default();
    assert!(error.starts_with("RunPodSandbox failed:"), "{error}");
    assert_eq!(detail["pod"]["status"]["phase"], "Pending");
    let o = cri.observe().await.expect("observe");
    assert_eq!(ready_sandboxes(&o, &d.pod("nohandler")), 0, "no fallback");
}

async fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + T;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_env_volumes_and_probes_behave_as_under_a_kubelet() {
    let Some(lab) = crio_lab() else { return };
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let out = lab.path("out");
    let port = lab.port_base + 10;
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: web}}
spec:
  terminationGracePeriodSeconds: 10
  volumes:
  - {{name: www, emptyDir: {{}}}}
  - {{name: out, hostPath: {{path: {out}, type: Directory}}}}
  initContainers:
  - name: init
    image: {BUSYBOX}
    command: [sh, -c, 'echo ok > /www/healthz; echo ok > /www/ready']
    volumeMounts: [{{name: www, mountPath: /www}}]
  containers:
  - name: web
    image: {BUSYBOX}
    command: [sh, -c, 'echo \"$GREETING $POD_NAME\" > /out/env; trap \"exit 0\" TERM; httpd -f -p {port} -h /www & wait']
    env:
    - {{name: GREETING, value: hello}}
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    ports: [{{name: http, containerPort: {port}}}]
    volumeMounts: [{{name: www, mountPath: /www}}, {{name: out, mountPath: /out}}]
    readinessProbe: {{exec: {{command: [test, -f, /www/ready]}}, periodSeconds: 1}}
    livenessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1, failureThreshold: 2}}
",
        out = out.display()
    );
    d.write("web.yaml", &manifest);
    let pod = d.pod("web");
    let o = wait_for(&cri, T, "web running", |o| {
        running(o, &pod).iter().any(|c| c.name == "web")
    })
    .await;
    let init: Vec<_> = o
        .containers
        .iter()
        .filter(|c| c.key.name == pod && c.name == "init")
        .collect();
    assert_eq!(
        (init.len(), init[0].state, init[0].exit_code),
        (1, ContainerState::Exited, Some(0)),
        "the init container ran to completion first"
    );
    assert_eq!(
        wait_file(&out.join("env")).await.trim(),
        format!("hello {pod}")
    );
    d.wait_log("probe=\"Readiness\" result=Success", T).await;

    // the emptyDir is podvisor's directory on the host, shared by both containers
    let sandbox = sandbox_of(&o, &pod);
    let www = d
        .root
        .join("pods")
        .join(sandbox.uid.as_str())
        .join("volumes/kubernetes.io~empty-dir/www");
    assert!(www.join("healthz").exists(), "{}", www.display());

    // a failing liveness probe restarts the container; init does not run again
    std::fs::remove_file(www.join("healthz")).expect("rm healthz");
    let o = wait_for(&cri, T, "web restarted", |o| {
        running(o, &pod)
            .iter()
            .any(|c| c.name == "web" && c.attempt == 1)
    })
    .await;
    d.wait_log("failed liveness probe", T).await;
    assert_eq!(
        o.containers
            .iter()
            .filter(|c| c.key.name == pod && c.name == "init")
            .count(),
        1
    );

    // resource use: CRI-O's pod-level figures are empty with cgroupfs (it cannot read the
    // pod's cgroup), its container figures are there; the node API's Summary adds those up
    // for the pod (nodeapi::stats' unit test)
    let deadline = Instant::now() + T;
    let usage = loop {
        let usage = cri.usage().await.expect("usage");
        let has_cpu = usage.iter().any(|p| {
            p.name == pod
                && p.containers.iter().any(|c| {
                    c.cpu.is_some_and(|c| c.core_nanos.is_some())
                        && c.memory.is_some_and(|m| m.working_set.is_some())
                })
        });
        if has_cpu {
            break usage;
        }
        assert!(
            Instant::now() < deadline,
            "no container CPU and memory: {usage:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let this = usage.iter().find(|p| p.name == pod).expect("pod use");
    eprintln!(
        "crio: pod-level cpu {:?}, memory {:?}",
        this.cpu.map(|c| c.core_nanos),
        this.memory.map(|m| m.working_set)
    );
}

#[tokio::test]
#[ignore = "needs root and a CRI-O build (PODVISOR_CRIO_BIN): run with --include-ignored"]
async fn crio_without_pod_events_is_a_runtime_without_events_and_relisting_restarts_crashes() {
    let Some(bin) = crio_bin() else { return };
    let lab = Lab::start_crio_without_pod_events(bin);
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let id = running(&o, &pod)[0].id.clone();
    // GetContainerEvents answers at once with an empty stream: said once, not resubscribed
    d.wait_log("runtime offers no container events", T).await;
    lab.kill_container(&id.0);
    let o = wait_for(&cri, T, "restarted by relisting", |o| {
        running(o, &pod).iter().any(|c| c.id != id)
    })
    .await;
    assert_eq!(running(&o, &pod)[0].restarts, 1);
    let log = d.log();
    assert!(
        !log.contains("watching container exits"),
        "an empty stream was taken for events:\n{log}"
    );
    assert_eq!(exit_events(&d, "cri").await, 0);
}

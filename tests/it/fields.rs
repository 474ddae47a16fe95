//! Issue 13.4, "no silently ignored field", against a real containerd: a runtime class runs
//! the pod under that handler (and an unknown one is a pod error), AppArmor and SELinux
//! options reach the runtime, and `activeDeadlineSeconds` ends a pod for good.

use std::time::{Duration, Instant};

use podvisor::runtime::Runtime;
use serde_json::Value;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};
use crate::lifecycle::{ready_sandboxes, running};

const T: Duration = Duration::from_secs(30);

fn sleeper(name: &str, spec: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 2\n{spec}  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n{container}"
    )
}

/// `/pods/default/<pod>` once `check` holds for it.
async fn pod_until(d: &Daemon, pod: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + T;
    let path = format!("/pods/default/{pod}");
    loop {
        let detail: Option<Value> = podvisor::api::client::get_json(&d.socket, &path).await.ok();
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
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn runtime_class_name_picks_the_runtime_handler_and_an_unknown_one_is_a_pod_error() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    d.write(
        "alt.yaml",
        &sleeper("alt", "  runtimeClassName: runc-alt\n", ""),
    );
    let pod = d.pod("alt");
    let o = wait_for(&cri, T, "alt running", |o| running(o, &pod).len() == 1).await;
    // runc-alt is the lab's second handler: the same runc, with a state root of its own. The
    // container is looked for rather than the sandbox, whose infra container CRI-O leaves
    // out unless the pod shares a PID namespace.
    let container = &running(&o, &pod)[0].id.0;
    assert!(
        lab.runc_state("runc-alt", container).exists(),
        "not run by runc-alt"
    );
    assert!(
        !lab.runc_state("runc", container).exists(),
        "run by the default handler"
    );

    d.write(
        "nohandler.yaml",
        &sleeper("nohandler", "  runtimeClassName: no-such-handler\n", ""),
    );
    let detail = pod_until(&d, &d.pod("nohandler"), "the sandbox error", |v| {
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

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn apparmor_unconfined_and_selinux_options_run_and_a_profile_the_host_cannot_enforce_is_refused()
 {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    d.write(
        "unconfined.yaml",
        &sleeper(
            "unconfined",
            "  securityContext: {seLinuxOptions: {type: spc_t, level: 's0:c1,c2'}}\n",
            "    securityContext: {appArmorProfile: {type: Unconfined}}\n",
        ),
    );
    let pod = d.pod("unconfined");
    wait_for(&cri, T, "unconfined running", |o| {
        running(o, &pod).len() == 1
    })
    .await;

    let apparmor_host = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|t| t.starts_with('Y'));
    if apparmor_host {
        eprintln!("this host enforces AppArmor: the refusal is not testable here");
        return;
    }
    d.write(
        "confined.yaml",
        &sleeper(
            "confined",
            "",
            "    securityContext: {appArmorProfile: {type: RuntimeDefault}}\n",
        ),
    );
    let detail = pod_until(&d, &d.pod("confined"), "the AppArmor refusal", |v| {
        v["pod"]["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
            == "CreateContainerConfigError"
    })
    .await;
    let message = detail["pod"]["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.starts_with("Cannot enforce AppArmor: AppArmor is not enabled on the host"),
        "{message}"
    );
    let o = cri.observe().await.expect("observe");
    assert!(running(&o, &d.pod("confined")).is_empty());
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn active_deadline_ends_the_pod_for_good_even_across_a_daemon_restart() {
    let lab = Lab::start();
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    d.write(
        "deadline.yaml",
        &sleeper("deadline", "  activeDeadlineSeconds: 3\n", ""),
    );
    let pod = d.pod("deadline");
    wait_for(&cri, T, "deadline running", |o| running(o, &pod).len() == 1).await;
    let started = Instant::now();
    let detail = pod_until(&d, &pod, "DeadlineExceeded", |v| {
        v["pod"]["status"]["reason"] == "DeadlineExceeded"
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the deadline was 3 s: {:?}",
        started.elapsed()
    );
    assert_eq!(detail["pod"]["status"]["phase"], "Failed");
    assert_eq!(
        detail["pod"]["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    wait_for(&cri, T, "deadline stopped", |o| {
        running(o, &pod).is_empty() && ready_sandboxes(o, &pod) == 0
    })
    .await;
    // restartPolicy Always, yet it stays down; a restarted daemon reads the start from the
    // runtime and agrees.
    holds_for(&cri, Duration::from_secs(3), "deadline stays down", |o| {
        running(o, &pod).is_empty()
    })
    .await;
    d.kill9();
    d.restart();
    holds_for(
        &cri,
        Duration::from_secs(3),
        "deadline stays down after a restart",
        |o| running(o, &pod).is_empty(),
    )
    .await;
    pod_until(&d, &pod, "Failed after the restart", |v| {
        v["pod"]["status"]["reason"] == "DeadlineExceeded"
    })
    .await;

    // An edit is a new pod, with a deadline of its own.
    d.write(
        "deadline.yaml",
        &sleeper("deadline", "  activeDeadlineSeconds: 30\n", ""),
    );
    wait_for(&cri, T, "the edited pod running", |o| {
        running(o, &pod).len() == 1
    })
    .await;
}

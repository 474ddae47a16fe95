//! Operating podvisor: the status API and CLI against a running daemon, `check`, refusing
//! untrusted manifests, and systemd notifications.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use podvisor::api::client::{get_json, get_raw};
use podvisor::api::views::{ManifestView, PodView};
use podvisor::runtime::Runtime;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};
use crate::lifecycle::{running, sleeper};

const T: Duration = Duration::from_secs(30);

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn check_prints_what_would_run_and_each_error_and_fails_on_errors() {
    // relative paths, so the hashes (which include the file path) are the same everywhere
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["check", "check", "--node-name", "n1"])
        .current_dir(fixtures())
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "check/README: ignored (not a .yaml, .yml or .json file)
error: check/bad.yaml: document 1: spec.containers[0].livenessProbe.httpGet.port: \"http\" is not the name of one of this container's ports; spec.volumes[0].nfs: volume type not supported by podvisor: use hostPath, emptyDir, downwardAPI or projected downwardAPI; spec.serviceAccountName: static pods may not reference API objects (ServiceAccount)
error: check/broken.yml: line 8, column 12: unclosed bracket '['
check/good.yaml: ok
  pod edge/web-n1 hash 0892f9099ae6477faf2ed5b769162578
    container setup image podvisor.local/busybox:1.35
    container httpd image podvisor.local/busybox:1.35
1 ok, 2 with errors, 1 ignored
"
    );
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["check", "check/good.yaml", "--node-name", "n1", "--json"])
        .current_dir(fixtures())
        .output()
        .expect("run check");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("json");
    assert_eq!(v[0]["pods"][0]["pod"], "edge/web-n1");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn status_api_and_cli_show_pods_manifests_logs_and_metrics() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let talker = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: talker}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo hello from $$(hostname); echo second line; trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n"
    );
    d.write("talker.yaml", &talker);
    d.write("web.yaml", &sleeper("web", "1"));
    std::fs::write(d.manifests.join("README"), "docs").expect("write");
    std::fs::write(d.manifests.join("broken.yaml"), "kind: Pod\n").expect("write");
    let pod = d.pod("talker");
    wait_for(&cri, T, "both running", |o| {
        running(o, &pod).len() == 1 && running(o, &d.pod("web")).len() == 1
    })
    .await;

    // readiness and health
    for _ in 0..100 {
        if get_raw(&d.socket, "/readyz")
            .await
            .is_ok_and(|(s, _)| s.is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        get_raw(&d.socket, "/readyz")
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", d.log()))
            .0,
        200
    );
    assert_eq!(
        get_raw(&d.socket, "/healthz").await.expect("healthz").0,
        200
    );
    let mode = std::fs::metadata(&d.socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the status socket is root-only");

    // /pods and ps
    let mut pods: Vec<PodView> = Vec::new();
    for _ in 0..100 {
        pods = get_json(&d.socket, "/pods").await.expect("pods");
        if pods.iter().all(|p| p.phase == "Running") && pods.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = pods
        .iter()
        .find(|p| p.name == pod)
        .expect("talker in /pods");
    assert_eq!(
        (p.phase.as_str(), p.ready_count.as_str()),
        ("Running", "1/1")
    );
    assert_eq!(
        p.file,
        d.manifests.join("talker.yaml").display().to_string()
    );
    let (code, table, _) = d.cli(&["ps"]);
    assert_eq!(code, 0);
    assert!(table.starts_with("POD "), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&pod) && l.contains("talker.yaml") && l.contains("Running")),
        "{table}"
    );
    let (code, json, _) = d.cli(&["ps", "-o", "json"]);
    assert_eq!(code, 0);
    let parsed: Vec<PodView> = serde_json::from_str(&json).expect("ps -o json");
    assert_eq!(parsed.len(), 2);
    let (_, yaml, _) = d.cli(&["ps", "-o", "yaml"]);
    assert!(yaml.contains(&format!("name: {pod}")), "{yaml}");

    // inspect and logs
    let (code, inspect, _) = d.cli(&["inspect", "talker"]);
    assert_eq!(code, 0);
    assert!(
        inspect.contains("phase: Running") && inspect.contains("kubernetes.io/config.hash"),
        "{inspect}"
    );
    let (code, logs, _) = d.cli(&["logs", "talker"]);
    assert_eq!(code, 0);
    assert_eq!(logs, format!("hello from {pod}\nsecond line\n"));
    let (code, _, err) = d.cli(&["logs", "nosuchpod"]);
    assert_eq!(code, 1);
    assert!(err.contains("no static pod"), "{err}");

    // a crash: --previous reads the dead instance
    let o = cri.observe().await.unwrap_or_default();
    let id = running(&o, &pod)[0].id.clone();
    lab.kill_container(&id.0);
    wait_for(&cri, T, "restarted", |o| {
        running(o, &pod).iter().any(|c| c.attempt == 1)
    })
    .await;
    let (code, previous, _) = d.cli(&["logs", &pod, "--previous"]);
    assert_eq!(code, 0);
    assert_eq!(previous, format!("hello from {pod}\nsecond line\n"));

    // /manifests: every entry, with why
    let manifests: Vec<ManifestView> = get_json(&d.socket, "/manifests").await.expect("manifests");
    let by_name = |n: &str| {
        manifests
            .iter()
            .find(|m| m.path.ends_with(n))
            .cloned()
            .expect(n)
    };
    assert_eq!(by_name("README").status, "ignored");
    assert_eq!(by_name("broken.yaml").status, "rejected");
    assert!(
        by_name("broken.yaml").errors[0].contains("apiVersion"),
        "{:?}",
        by_name("broken.yaml")
    );
    assert_eq!(by_name("talker.yaml").pods, [format!("default/{pod}")]);

    // /metrics. The state gauges are podvisor's published state, which follows the runtime
    // by one observation: the restart seen through CRI above may not be in it yet.
    let restarted = format!(
        "podvisor_container_restarts{{namespace=\"default\",pod=\"{pod}\",container=\"app\"}} 1"
    );
    let mut metrics = String::new();
    for _ in 0..100 {
        let (code, body) = get_raw(&d.socket, "/metrics").await.expect("metrics");
        assert_eq!(code, 200);
        metrics = String::from_utf8_lossy(&body).into_owned();
        if metrics.contains(&restarted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("podvisor_pods{phase=\"Running\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("podvisor_cri_call_duration_seconds_count{method=\"ListContainers\"}"),
        "{metrics}"
    );
    assert!(metrics.contains(&restarted), "{metrics}");
    assert!(
        metrics.contains("podvisor_manifest_errors{file="),
        "{metrics}"
    );
    assert!(
        metrics.contains("podvisor_reconcile_duration_seconds_count"),
        "{metrics}"
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn untrusted_manifests_are_refused_and_running_pods_left_alone() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    std::fs::set_permissions(&d.manifests, std::fs::Permissions::from_mode(0o755))
        .expect("chmod dir");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running", |o| {
        running(o, &d.pod("web")).len() == 1
    })
    .await;
    let id = running(&o, &d.pod("web"))[0].id.clone();

    // a world-writable new manifest is refused, with a clear error. It arrives with its mode
    // (chmod before the rename): written first and chmod-ed after, a scan in between would
    // rightly start it from a file that was still trusted.
    let tmp = d.manifests.join(".open.yaml.tmp");
    std::fs::write(&tmp, sleeper("open", "1")).expect("write");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::rename(&tmp, d.manifests.join("open.yaml")).expect("rename");
    d.wait_log("writable by group and others (mode 0666)", T)
        .await;
    // an existing pod's manifest made group-writable: refused, the pod keeps running
    std::fs::set_permissions(
        d.manifests.join("web.yaml"),
        std::fs::Permissions::from_mode(0o664),
    )
    .expect("chmod");
    d.wait_log("writable by group (mode 0664)", T).await;
    holds_for(
        &cri,
        Duration::from_secs(3),
        "web untouched, open never started",
        |o| {
            running(o, &d.pod("web")).iter().any(|c| c.id == id)
                && running(o, &d.pod("open")).is_empty()
        },
    )
    .await;

    // --allow-insecure-manifests runs them, with a warning
    let lab2 = Lab::start();
    let d2 = Daemon::start_with(&lab2, &["--allow-insecure-manifests"]);
    d2.write("open.yaml", &sleeper("open", "1"));
    std::fs::set_permissions(
        d2.manifests.join("open.yaml"),
        std::fs::Permissions::from_mode(0o666),
    )
    .expect("chmod");
    wait_for(&lab2.cri(), T, "open running", |o| {
        running(o, &d2.pod("open")).len() == 1
    })
    .await;
    d2.wait_log("untrusted manifests allowed", T).await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn systemd_gets_ready_after_the_first_reconcile_and_watchdog_pings() {
    let lab = Lab::start();
    let sock = lab.dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&sock).expect("bind notify socket");
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let sock_str = sock.display().to_string();
    let d = Daemon::start_with_env(
        &lab,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_str.as_str()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    d.write("web.yaml", &sleeper("web", "1"));
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !(got.iter().any(|m: &String| m.contains("READY=1"))
        && got.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2)
    {
        let n = listener.recv(&mut buf).expect("a notification within 20 s");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready = got.iter().find(|m| m.contains("READY=1")).expect("ready");
    assert!(ready.contains("STATUS="), "{ready}");
    drop(d);
}

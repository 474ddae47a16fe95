//! kubectl's node-level commands on podvisor's pods through a real kube-apiserver (issue 12):
//! `logs` (with `-f`, `--previous`, `--tail`), `exec` (with stdin and a terminal),
//! `port-forward`, and the node proxy to `/stats/summary`. Opt-in like the rest of the real
//! API server suite (`PODVISOR_K8S_BIN`).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab};
use crate::real_apiserver::ApiLab;

const T: Duration = Duration::from_secs(60);

const WEB: &str = "apiVersion: v1
kind: Pod
metadata: {name: web, namespace: kube-system}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, 'mkdir -p /www; echo hello-from-pod > /www/index.html; httpd -p 8080 -h /www; echo first; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done']
  - name: crasher
    image: IMAGE
    command: [sh, -c, 'echo crash-run $(cat /proc/uptime); sleep 2; exit 1']
";

fn kubectl(api: &ApiLab, args: &[&str]) -> String {
    let (ok, out) = api.kubectl(args, "");
    assert!(ok, "kubectl {args:?}: {out}");
    out
}

fn eventually(what: &str, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + T;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn kubectl_logs_exec_port_forward_and_node_stats_reach_static_pods_issue_12() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let kubeconfig = api.node_kubeconfig("n1").display().to_string();
    let ca = api.ca_file().display().to_string();
    let d = Daemon::start_named(
        &lab,
        "n1",
        &[
            "--kubeconfig",
            &kubeconfig,
            "--client-ca-file",
            &ca,
            "--authentication-token-webhook",
            "true",
        ],
        &[],
    );
    d.write("web.yaml", &WEB.replace("IMAGE", BUSYBOX));
    eventually("web-n1 Running in the API server", || {
        let (ok, out) = api.kubectl(
            &[
                "get",
                "pod",
                "-n",
                "kube-system",
                "web-n1",
                "-o",
                "jsonpath={.status.phase}",
            ],
            "",
        );
        (ok && out.trim() == "Running").then_some(out)
    });

    // logs, --tail, --previous
    let logs = eventually("logs", || {
        let (ok, out) = api.kubectl(&["logs", "-n", "kube-system", "web-n1", "-c", "main"], "");
        (ok && out.contains("tick 2")).then_some(out)
    });
    assert!(logs.starts_with("first\n"), "{logs}");
    let tail = kubectl(
        &api,
        &[
            "logs",
            "-n",
            "kube-system",
            "web-n1",
            "-c",
            "main",
            "--tail",
            "1",
        ],
    );
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(tail.starts_with("tick "), "{tail}");
    let previous = eventually("previous logs", || {
        let (ok, out) = api.kubectl(
            &[
                "logs",
                "-n",
                "kube-system",
                "web-n1",
                "-c",
                "crasher",
                "--previous",
            ],
            "",
        );
        (ok && out.starts_with("crash-run ")).then_some(out)
    });
    assert_eq!(previous.lines().count(), 1, "{previous}");

    // logs -f: new lines keep coming
    let mut follow = Command::new(api.bin().join("kubectl"))
        .args(["--kubeconfig", &api.admin_path().display().to_string()])
        .args([
            "logs",
            "-f",
            "-n",
            "kube-system",
            "web-n1",
            "-c",
            "main",
            "--tail",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a followed line").expect("read");
    let second = lines.next().expect("another followed line").expect("read");
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        first.starts_with("tick ") && second.starts_with("tick "),
        "{first} / {second}"
    );
    assert_ne!(first, second);

    // exec, with stdin, and with a terminal
    let out = kubectl(
        &api,
        &[
            "exec",
            "-n",
            "kube-system",
            "web-n1",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "echo exec-ok",
        ],
    );
    assert_eq!(out, "exec-ok\n");
    let (ok, out) = api.kubectl(
        &[
            "exec",
            "-i",
            "-n",
            "kube-system",
            "web-n1",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "read x; echo stdin-$x",
        ],
        "piped\n",
    );
    assert!(ok, "{out}");
    assert_eq!(out, "stdin-piped\n");
    let tty = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "{} --kubeconfig {} exec -it -n kube-system web-n1 -c main -- tty",
            api.bin().join("kubectl").display(),
            api.admin_path().display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let tty_out = String::from_utf8_lossy(&tty.stdout);
    assert!(
        tty_out.contains("/dev/pts/"),
        "exec -it: {tty_out} {}",
        String::from_utf8_lossy(&tty.stderr)
    );

    // port-forward to the pod's httpd
    let local = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("addr").port()
    };
    let mut pf = Command::new(api.bin().join("kubectl"))
        .args(["--kubeconfig", &api.admin_path().display().to_string()])
        .args([
            "port-forward",
            "-n",
            "kube-system",
            "pod/web-n1",
            &format!("{local}:8080"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let page = eventually("a page through port-forward", || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
            .ok()?;
        let mut page = String::new();
        s.read_to_string(&mut page).ok()?;
        page.contains("hello-from-pod").then_some(page)
    });
    let _ = pf.kill();
    let _ = pf.wait();
    assert!(page.starts_with("HTTP/1."), "{page}");

    // the node proxy: stats/summary, as kubectl top and metrics-server read it
    let summary = eventually("stats through the node proxy", || {
        let (ok, out) = api.kubectl(
            &["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"],
            "",
        );
        let found = ok && out.contains("web-n1") && out.contains("workingSetBytes");
        if !found {
            eprintln!("stats/summary so far: {}", &out[..out.len().min(600)]);
        }
        found.then_some(out)
    });
    let v: serde_json::Value = serde_json::from_str(&summary).expect("summary JSON");
    assert_eq!(v["node"]["nodeName"], "n1");
    let resource = kubectl(
        &api,
        &["get", "--raw", "/api/v1/nodes/n1/proxy/metrics/resource"],
    );
    assert!(
        resource.contains("container_cpu_usage_seconds_total{container=\"main\""),
        "{resource}"
    );
    drop(d);
}

#[tokio::test]
#[ignore = "needs root, containerd and PODVISOR_K8S_BIN: run with --include-ignored"]
async fn a_pod_the_api_server_binds_here_is_failed_and_the_node_is_tainted_issue_13() {
    let Some(api) = ApiLab::start() else { return };
    let lab = Lab::start();
    let kubeconfig = api.node_kubeconfig("n1").display().to_string();
    let _d = Daemon::start_named(&lab, "n1", &["--kubeconfig", &kubeconfig], &[]);
    let taints = eventually("the Node registered with its taint", || {
        let (ok, out) = api.kubectl(&["get", "node", "n1", "-o", "jsonpath={.spec.taints}"], "");
        (ok && out.contains("podvisor.dev/static-pods-only")).then_some(out)
    });
    assert!(taints.contains("NoSchedule"), "{taints}");
    // a DaemonSet-style pod bound straight to the node: NodeRestriction lets the node fail it
    let bound = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: proxy-x, namespace: kube-system}}\nspec:\n  nodeName: n1\n  containers: [{{name: c, image: '{BUSYBOX}'}}]\n"
    );
    // no controller-manager here to make the namespace's default service account
    let _ = api.kubectl(
        &["create", "serviceaccount", "default", "-n", "kube-system"],
        "",
    );
    let (ok, out) = api.kubectl(&["apply", "-f", "-"], &bound);
    assert!(ok, "{out}");
    let reason = eventually("the bound pod failed", || {
        let (ok, out) = api.kubectl(
            &[
                "get",
                "pod",
                "-n",
                "kube-system",
                "proxy-x",
                "-o",
                "jsonpath={.status.phase}/{.status.reason}",
            ],
            "",
        );
        (ok && out.starts_with("Failed/")).then_some(out)
    });
    assert_eq!(reason, "Failed/StaticPodsOnly");
    let event = eventually("the rejection event", || {
        let (ok, out) = api.kubectl(
            &[
                "get",
                "events",
                "-n",
                "kube-system",
                "--field-selector",
                "involvedObject.name=proxy-x",
                "-o",
                "jsonpath={.items[*].reason}",
            ],
            "",
        );
        (ok && out.contains("StaticPodsOnly")).then_some(out)
    });
    assert!(event.contains("StaticPodsOnly"));
}

//! The kubelet's node API on real containerd, reached over HTTPS as kube-apiserver reaches it
//! (a client certificate from the client CA), authorized by the fake API server's
//! SubjectAccessReviews (issue 12).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fake_apiserver::FakeApiServer;
use http_body_util::BodyExt;

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::running;
use crate::nodeapi_client::{Ca, ClientCert, NodeApiClient};

const T: Duration = Duration::from_secs(30);

/// A lab with podvisor serving its node API, mirroring into a fake API server.
struct Node {
    lab: Lab,
    api: FakeApiServer,
    daemon: Daemon,
    client: NodeApiClient,
    ca: Ca,
    /// `kube-apiserver-kubelet-client` in `system:masters`, as kubeadm makes it.
    admin: ClientCert,
}

async fn node(extra: &[&str]) -> Node {
    let api = FakeApiServer::start().await;
    let lab = Lab::start();
    let kubeconfig = lab.dir.path().join("kubelet.conf");
    std::fs::write(&kubeconfig, api.kubeconfig_yaml("node-token")).expect("kubeconfig");
    let ca_file = lab.dir.path().join("ca.crt");
    let ca = Ca::new(&ca_file);
    let (kc, caf) = (
        kubeconfig.display().to_string(),
        ca_file.display().to_string(),
    );
    let mut args = vec![
        "--kubeconfig",
        kc.as_str(),
        "--client-ca-file",
        caf.as_str(),
        "--address",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    let daemon = Daemon::start_with(&lab, &args);
    // the port is what the Node publishes, as the API server reads it
    let deadline = Instant::now() + T;
    let port = loop {
        let published = api
            .node(&daemon.node)
            .and_then(|n| n.status)
            .and_then(|s| s.daemon_endpoints)
            .and_then(|d| d.kubelet_endpoint)
            .map(|e| e.port);
        if let Some(p) = published {
            break p;
        }
        assert!(Instant::now() < deadline, "no kubelet port on the Node");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client = NodeApiClient::new(addr, &lab.path("root"), &daemon.node);
    let admin = ca.client("kube-apiserver-kubelet-client", &["system:masters"]);
    Node {
        lab,
        api,
        daemon,
        client,
        ca,
        admin,
    }
}

fn counter_pod(name: &str, script: &str, restart: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: kube-system}}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, '{script}']
"
    )
}

/// Waits until the pod's container runs, as the runtime shows it and then as podvisor has
/// published it: the node API answers from podvisor's last pass, which follows the runtime
/// by one observation (a pod's work is one task, and the pass after it ends observes anew).
async fn until_running(n: &Node, manifest: &str) -> String {
    let pod = n.daemon.pod(manifest);
    wait_for(&n.lab.cri(), T, "pod running", |o| {
        running(o, &pod).len() == 1
    })
    .await;
    let seen = Instant::now();
    let path = format!("/pods/kube-system/{pod}");
    loop {
        let detail: Option<serde_json::Value> =
            podvisor::api::client::get_json(&n.daemon.socket, &path)
                .await
                .ok();
        let phase = detail.as_ref().map(|d| d["pod"]["status"]["phase"].clone());
        if phase.as_ref().is_some_and(|p| p == "Running") {
            eprintln!(
                "podvisor published Running {:?} after the runtime showed it",
                seen.elapsed()
            );
            return pod;
        }
        assert!(
            seen.elapsed() < T,
            "podvisor never published {pod} Running; last: {detail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` answers 200 with a body that passes `check`.
async fn until_body(n: &Node, path: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + T;
    loop {
        let (code, body) = n.client.request("GET", path, Some(&n.admin), None).await;
        if code == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: last answer {code}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn container_logs_answer_every_query_parameter_and_follow_a_growing_log_issue_12() {
    let n = node(&[]).await;
    n.daemon.write(
        "counter.yaml",
        &counter_pod(
            "counter",
            "i=0; while [ $i -lt 20 ]; do i=$((i+1)); echo line $i; sleep 0.1; done; sleep 3; i=100; while [ $i -lt 105 ]; do i=$((i+1)); echo late $i; sleep 0.2; done",
            "Never",
        ),
    );
    let pod = until_running(&n, "counter").await;
    let base = format!("/containerLogs/kube-system/{pod}/main");
    let all = until_body(&n, &base, |b| b.contains("line 20\n")).await;
    assert!(all.starts_with("line 1\nline 2\n"), "{all}");

    let tail = until_body(&n, &format!("{base}?tailLines=2"), |b| {
        b.contains("line 20")
    })
    .await;
    assert_eq!(tail, "line 19\nline 20\n");
    let (_, limited) = n
        .client
        .request(
            "GET",
            &format!("{base}?limitBytes=10"),
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!(limited, "line 1\nlin");
    let (_, stamped) = n
        .client
        .request(
            "GET",
            &format!("{base}?timestamps=true&tailLines=1"),
            Some(&n.admin),
            None,
        )
        .await;
    let (time, rest) = stamped.split_once(' ').expect("timestamp prefix");
    assert!(time.contains('T') && time.ends_with('Z'), "{stamped}");
    assert_eq!(rest, "line 20\n");
    let (_, recent) = n
        .client
        .request(
            "GET",
            &format!("{base}?sinceSeconds=1"),
            Some(&n.admin),
            None,
        )
        .await;
    assert!(
        !recent.contains("line 1\n"),
        "older lines are left out: {recent}"
    );
    let (code, bad) = n
        .client
        .request("GET", &format!("{base}?tailLines=-1"), Some(&n.admin), None)
        .await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad.contains("tailLines"), "{bad}");

    // follow: lines written after the request arrive, and the stream ends with the container
    let (code, mut body) = n
        .client
        .stream(&format!("{base}?follow=true&tailLines=0"), &n.admin)
        .await;
    assert_eq!(code, 200);
    let mut got = String::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.expect("frame").into_data() {
                got.push_str(&String::from_utf8_lossy(&data));
            }
        }
    };
    tokio::time::timeout(T, read)
        .await
        .expect("follow ends when the container ends");
    assert!(
        got.contains("late 101\n") && got.contains("late 105\n"),
        "{got}"
    );
    assert!(
        !got.contains("line 20"),
        "tailLines=0 starts at the end: {got}"
    );

    let (code, _) = n
        .client
        .request(
            "GET",
            "/containerLogs/kube-system/nope/main",
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!(code, 404);
    let (code, _) = n
        .client
        .request(
            "GET",
            &format!("/containerLogs/kube-system/{pod}/nope"),
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn previous_logs_are_the_dead_instances_issue_12() {
    let n = node(&[]).await;
    n.daemon.write(
        "crasher.yaml",
        &counter_pod(
            "crasher",
            "echo run $(cat /proc/uptime); sleep 1; exit 1",
            "Always",
        ),
    );
    let pod = n.daemon.pod("crasher");
    let path = format!("/containerLogs/kube-system/{pod}/main");
    let previous = until_body(&n, &format!("{path}?previous=true"), |b| {
        b.starts_with("run ")
    })
    .await;
    let current = until_body(&n, &path, |b| b.starts_with("run ") && b != previous).await;
    assert_ne!(previous, current);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn exec_and_attach_sessions_pass_stdin_tty_and_resize_through_issue_12() {
    let n = node(&[]).await;
    n.daemon.write(
        "shell.yaml",
        &counter_pod(
            "shell",
            "echo attached-start; while read line; do echo heard $line; done; sleep 3600",
            "Always",
        )
        .replace("    command:", "    stdin: true\n    command:"),
    );
    let pod = until_running(&n, "shell").await;

    // exec with stdin, no tty: stdout and the exit status come back
    let mut s = n
        .client
        .websocket(
            &format!("/exec/kube-system/{pod}/main?command=sh&command=-c&command=read+x%3B+echo+got+%24x%3B+echo+err+%3E%262&input=1&output=1&error=1"),
            &n.admin,
        )
        .await;
    s.send(0, b"hello\n").await;
    let out = tokio::time::timeout(T, s.finish())
        .await
        .expect("exec ends");
    assert_eq!(out.stdout, "got hello\n");
    assert_eq!(out.stderr, "err\n");
    assert!(out.status.contains("Success"), "{out:?}");

    // a failing command reports its exit code
    let s = n
        .client
        .websocket(
            &format!("/exec/kube-system/{pod}/main?command=sh&command=-c&command=exit+3&output=1"),
            &n.admin,
        )
        .await;
    let out = tokio::time::timeout(T, s.finish())
        .await
        .expect("exec ends");
    assert!(
        out.status.contains("ExitCode") && out.status.contains("\"3\""),
        "{out:?}"
    );

    // with a terminal: resize reaches it
    let mut s = n
        .client
        .websocket(
            &format!("/exec/kube-system/{pod}/main?command=sh&command=-c&command=read+x%3B+stty+size%3B+tty&input=1&output=1&tty=1"),
            &n.admin,
        )
        .await;
    s.send(4, br#"{"Width":123,"Height":45}"#).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.send(0, b"go\r").await;
    let out = tokio::time::timeout(T, s.finish())
        .await
        .expect("tty exec ends");
    assert!(out.stdout.contains("45 123"), "{out:?}");
    assert!(out.stdout.contains("/dev/pts/"), "{out:?}");

    // attach: the container's own stdin and stdout
    let mut s = n
        .client
        .websocket(
            &format!("/attach/kube-system/{pod}/main?input=1&output=1"),
            &n.admin,
        )
        .await;
    s.send(0, b"ping\n").await;
    let mut heard = false;
    let deadline = Instant::now() + T;
    // the session stays open: read until the echo arrives, then drop it
    let mut out = String::new();
    let reading = async {
        loop {
            let frame = futures::StreamExt::next(s.ws()).await;
            let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(data))) = frame else {
                break;
            };
            if data.first() == Some(&1) {
                out.push_str(&String::from_utf8_lossy(&data[1..]));
                if out.contains("heard ping") {
                    heard = true;
                    break;
                }
            }
            if Instant::now() > deadline {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(T, reading).await;
    assert!(heard, "attach output: {out:?}");

    // /run: a command's output as the answer
    let (code, body) = n
        .client
        .request(
            "POST",
            &format!("/run/kube-system/{pod}/main?cmd=echo+ran+here"),
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!((code, body.as_str()), (200, "ran here\n"));
    // exec needs an upgrade, a command, and a running container
    let (code, _) = n
        .client
        .request(
            "POST",
            &format!("/exec/kube-system/{pod}/main?command=true&output=1"),
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!(code, 400, "a plain request is not a session");
    let (code, _) = n
        .client
        .request(
            "POST",
            "/exec/kube-system/nope/main?command=true&output=1",
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn pods_stats_and_metrics_describe_the_static_pods_issue_12() {
    let n = node(&[]).await;
    n.daemon.write(
        "busy.yaml",
        &counter_pod("busy", "while true; do :; done", "Always"),
    );
    let pod = until_running(&n, "busy").await;

    let pods = until_body(&n, "/pods", |b| b.contains(&pod)).await;
    let list: serde_json::Value = serde_json::from_str(&pods).expect("PodList");
    assert_eq!(list["kind"], "PodList");
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["name"], pod.as_str());
    assert_eq!(item["status"]["phase"], "Running");
    let running = until_body(&n, "/runningpods/", |b| b.contains(&pod)).await;
    assert!(running.contains("\"main\""), "{running}");

    let summary = until_body(&n, "/stats/summary", |b| {
        b.contains(&pod) && b.contains("usageCoreNanoSeconds")
    })
    .await;
    let s: serde_json::Value = serde_json::from_str(&summary).expect("summary");
    assert_eq!(s["node"]["nodeName"], n.daemon.node.as_str());
    assert!(
        s["node"]["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
    let p = s["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .find(|p| p["podRef"]["name"] == pod.as_str())
        .expect("our pod");
    let c = &p["containers"][0];
    assert_eq!(c["name"], "main");
    assert!(
        c["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0,
        "{c}"
    );
    assert!(
        c["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0,
        "{c}"
    );

    let metrics = until_body(&n, "/metrics/resource", |b| b.contains(&pod)).await;
    for family in [
        "container_cpu_usage_seconds_total{container=\"main\",namespace=\"kube-system\"",
        "container_memory_working_set_bytes{",
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
        "pod_cpu_usage_seconds_total{",
        "resource_scrape_error 0",
    ] {
        assert!(metrics.contains(family), "{family} missing:\n{metrics}");
    }
    let own = until_body(&n, "/metrics", |b| b.contains("podvisor_")).await;
    assert!(own.contains("podvisor_"), "{own}");
    let (code, health) = n
        .client
        .request("GET", "/healthz", Some(&n.admin), None)
        .await;
    assert_eq!((code, health.as_str()), (200, "ok"));
    let (code, _) = n
        .client
        .request("GET", "/nothing", Some(&n.admin), None)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn requests_are_authenticated_and_authorized_as_the_kubelet_does_issue_12() {
    let n = node(&["--authentication-token-webhook", "true"]).await;
    // no credentials
    let (code, _) = n.client.request("GET", "/pods", None, None).await;
    assert_eq!(code, 401);
    // a certificate from another CA
    let other = Ca::new(&n.lab.dir.path().join("other-ca.crt"));
    let stranger = other.client("kube-apiserver-kubelet-client", &["system:masters"]);
    let (code, _) = n
        .client
        .request("GET", "/pods", Some(&stranger), None)
        .await;
    assert_eq!(code, 401);
    // the right CA, a user the authorizer refuses
    let bob = n.ca.client("bob", &[]);
    let (code, body) = n
        .client
        .request("GET", "/stats/summary", Some(&bob), None)
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("Forbidden (user=bob, verb=get, resource=nodes, subresource(s)=[stats])"),
        "{body}"
    );
    let sar = n.api.subject_access_reviews();
    let asked = sar.last().expect("a review");
    let attrs = asked
        .resource_attributes
        .as_ref()
        .expect("resource attributes");
    assert_eq!(asked.user.as_deref(), Some("bob"));
    assert_eq!(
        (
            attrs.verb.as_deref(),
            attrs.resource.as_deref(),
            attrs.subresource.as_deref(),
            attrs.name.as_deref()
        ),
        (
            Some("get"),
            Some("nodes"),
            Some("stats"),
            Some(n.daemon.node.as_str())
        )
    );
    // tokens go to TokenReview; a known one is who it says, an unknown one is 401
    n.api.register_token(
        "sa-token",
        "system:serviceaccount:monitoring:prom",
        "u1",
        &["system:masters"],
    );
    let (code, _) = n
        .client
        .request("GET", "/metrics", None, Some("sa-token"))
        .await;
    assert_eq!(code, 200);
    let (code, _) = n
        .client
        .request("GET", "/metrics", None, Some("sa-token"))
        .await;
    assert_eq!(code, 200);
    assert_eq!(n.api.token_review_count(), 1, "the review is cached");
    let (code, _) = n
        .client
        .request("GET", "/metrics", None, Some("forged"))
        .await;
    assert_eq!(code, 401);
    // a policy allowing only the fine-grained subresource lets /pods through
    n.api.set_authorization_policy(|spec| {
        let sub = spec
            .resource_attributes
            .as_ref()
            .and_then(|a| a.subresource.clone())
            .unwrap_or_default();
        (
            spec.user.as_deref() == Some("carol") && sub == "pods",
            String::new(),
        )
    });
    let carol = n.ca.client("carol", &[]);
    let (code, _) = n.client.request("GET", "/pods", Some(&carol), None).await;
    assert_eq!(code, 200);
    let (code, _) = n
        .client
        .request("GET", "/stats/summary", Some(&carol), None)
        .await;
    assert_eq!(code, 403);
    // a SubjectAccessReview that times out: the kubelet's 500, a log line and a count
    n.api.inject_error(
        http::Method::POST,
        "/apis/authorization.k8s.io/v1/subjectaccessreviews",
        http::StatusCode::GATEWAY_TIMEOUT,
        1,
    );
    let dave = n.ca.client("dave", &[]);
    let (code, body) = n.client.request("GET", "/pods", Some(&dave), None).await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("Authorization error (user=dave"), "{body}");
    n.daemon
        .wait_log(
            "node API: authorization review failed",
            Duration::from_secs(5),
        )
        .await;
    n.api.set_authorization_policy(|_| (true, String::new()));
    let metrics = until_body(&n, "/metrics", |b| {
        b.contains("podvisor_node_api_authorization_errors_total 1")
    })
    .await;
    assert!(metrics.contains("podvisor_node_api_authorization_errors_total 1"));
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_connection_flood_and_silent_clients_do_not_stop_reconciling_issue_12() {
    let n = node(&[]).await;
    // 400 connections that never speak TLS: more than the server takes
    let mut silent = Vec::new();
    for _ in 0..400 {
        if let Ok(s) = tokio::net::TcpStream::connect(n.client.addr).await {
            silent.push(s);
        }
    }
    // beyond the limit, connections are closed at once
    assert!(
        !n.client.handshake_ok().await,
        "the 401st connection must be refused while 400 are held"
    );
    // the loops carry on: a new pod comes up while they hang
    n.daemon.write(
        "during.yaml",
        &counter_pod("during", "sleep 3600", "Always"),
    );
    until_running(&n, "during").await;
    assert!(n.daemon.pid().is_some());
    // once the silent ones are gone, the API answers again
    drop(silent);
    let body = until_body(&n, "/healthz", |b| b == "ok").await;
    assert_eq!(body, "ok");
    // a client that connects and never starts TLS is cut after the handshake limit (10 s)
    use tokio::io::AsyncReadExt;
    let mut stalled = tokio::net::TcpStream::connect(n.client.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), stalled.read(&mut buf))
        .await
        .expect("closed by the server within 20 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn port_forward_reaches_a_server_in_the_pod_issue_12() {
    let n = node(&[]).await;
    n.daemon.write(
        "web.yaml",
        &counter_pod(
            "web",
            "mkdir -p /www; echo hello-from-pod > /www/index.html; httpd -f -p 8080 -h /www",
            "Always",
        ),
    );
    let pod = until_running(&n, "web").await;
    let deadline = Instant::now() + T;
    let page = loop {
        let mut s = n
            .client
            .websocket(
                &format!("/portForward/kube-system/{pod}?port=8080"),
                &n.admin,
            )
            .await;
        s.send(0, b"GET /index.html HTTP/1.0\r\n\r\n").await;
        // each channel first carries the port (2 bytes, little endian), then the data
        let mut page = Vec::new();
        let reading = async {
            while let Some(Ok(tokio_tungstenite::tungstenite::Message::Binary(data))) =
                futures::StreamExt::next(s.ws()).await
            {
                if data.first() == Some(&0) {
                    page.extend_from_slice(&data[1..]);
                    if String::from_utf8_lossy(&page).contains("hello-from-pod") {
                        break;
                    }
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), reading).await;
        let text = String::from_utf8_lossy(&page).into_owned();
        if text.contains("hello-from-pod") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no page through port-forward: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // the port (8080 = 0x1f90, little endian) comes first on the data channel
    assert!(page.contains("\u{1f}HTTP/1.1 200 OK"), "{page:?}");
    let (code, _) = n
        .client
        .request(
            "GET",
            "/portForward/kube-system/nope?port=80",
            Some(&n.admin),
            None,
        )
        .await;
    assert_eq!(code, 404);
}

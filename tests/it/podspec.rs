//! The fuller PodSpec against a real containerd: init containers, probes, hooks, volumes,
//! resources, termination messages.

use std::path::{Path, PathBuf};
use std::time::Duration;

use podvisor::pod::TerminationReason;
use podvisor::runtime::{ContainerState, Observed, ObservedContainer, Runtime};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::{running, sandbox_of};

const T: Duration = Duration::from_secs(30);

fn containers<'a>(o: &'a Observed, pod: &str, name: &str) -> Vec<&'a ObservedContainer> {
    let mut v: Vec<_> = o
        .containers
        .iter()
        .filter(|c| c.key.name == pod && c.name == name)
        .collect();
    v.sort_by_key(|c| c.attempt);
    v
}

async fn wait_file(path: &Path, timeout: Duration) -> String {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn out_dir(lab: &Lab) -> PathBuf {
    lab.path("out")
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn httpd_with_init_probes_and_pre_stop_behaves_like_under_a_kubelet() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let out = out_dir(&lab);
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
    command: [sh, -c, 'echo ok > /www/healthz; echo ok > /www/ready; echo done > /out/init-done']
    volumeMounts: [{{name: www, mountPath: /www}}, {{name: out, mountPath: /out}}]
  containers:
  - name: web
    image: {BUSYBOX}
    command: [sh, -c, 'cat /out/init-done > /out/web-saw-init; trap \"exit 0\" TERM; httpd -f -p {port} -h /www & wait']
    ports: [{{name: http, containerPort: {port}}}]
    volumeMounts: [{{name: www, mountPath: /www}}, {{name: out, mountPath: /out}}]
    readinessProbe: {{httpGet: {{path: /ready, port: http}}, periodSeconds: 1}}
    livenessProbe: {{httpGet: {{path: /healthz, port: http}}, periodSeconds: 1, failureThreshold: 2}}
    lifecycle:
      preStop: {{exec: {{command: [sh, -c, 'echo bye > /out/pre-stop-ran']}}}}
",
        out = out.display()
    );
    d.write("web.yaml", &manifest);
    let pod = d.pod("web");

    // init first, to completion, then the app container
    let o = wait_for(&cri, T, "web running", |o| {
        running(o, &pod).iter().any(|c| c.name == "web")
    })
    .await;
    let init = containers(&o, &pod, "init");
    assert_eq!(
        (init.len(), init[0].state, init[0].exit_code),
        (1, ContainerState::Exited, Some(0))
    );
    assert_eq!(
        wait_file(&out.join("web-saw-init"), T).await.trim(),
        "done",
        "the app container started after the init container finished"
    );

    // readiness flips to ready
    d.wait_log("probe=\"Readiness\" result=Success", T).await;
    let sandbox = sandbox_of(&o, &pod);
    let www = d
        .root
        .join("pods")
        .join(sandbox.uid.as_str())
        .join("volumes/kubernetes.io~empty-dir/www");
    assert!(www.join("ready").exists());

    // readiness alone never restarts: break it and the container stays
    let web0 = running(&o, &pod)
        .into_iter()
        .find(|c| c.name == "web")
        .expect("web")
        .id
        .clone();
    std::fs::remove_file(www.join("ready")).expect("rm ready");
    d.wait_log("probe=\"Readiness\" result=Failure", T).await;
    let o = cri.observe().await.expect("observe");
    assert!(
        running(&o, &pod).iter().any(|c| c.id == web0),
        "a failed readiness probe only changes status"
    );

    // breaking the liveness endpoint restarts the container
    std::fs::remove_file(www.join("healthz")).expect("rm healthz");
    let o = wait_for(&cri, T, "web restarted", |o| {
        running(o, &pod)
            .iter()
            .any(|c| c.name == "web" && c.attempt == 1)
    })
    .await;
    d.wait_log("failed liveness probe", T).await;
    assert_eq!(
        containers(&o, &pod, "init").len(),
        1,
        "init containers do not run again"
    );
    assert!(
        std::fs::read_to_string(out.join("pre-stop-ran")).is_ok(),
        "the liveness kill ran preStop too"
    );
    std::fs::remove_file(out.join("pre-stop-ran")).expect("rm marker");
    std::fs::write(www.join("healthz"), "ok").expect("restore healthz");

    // deleting the file runs preStop, then removes the pod
    d.remove("web.yaml");
    wait_for(&cri, T, "web gone", |o| o.sandboxes.is_empty()).await;
    assert_eq!(wait_file(&out.join("pre-stop-ran"), T).await.trim(), "bye");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn exec_probes_run_inside_the_container() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: ex}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {BUSYBOX}
    command: [sh, -c, 'sleep 1; touch /tmp/ready; trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    readinessProbe: {{exec: {{command: [test, -f, /tmp/ready]}}, periodSeconds: 1}}
    livenessProbe: {{exec: {{command: [test, -f, /tmp/alive]}}, initialDelaySeconds: 3, periodSeconds: 1, failureThreshold: 1}}
"
    );
    d.write("ex.yaml", &manifest);
    let pod = d.pod("ex");
    wait_for(&cri, T, "ex running", |o| running(o, &pod).len() == 1).await;
    d.wait_log("probe=\"Readiness\" result=Success", T).await;
    // /tmp/alive never exists: after the initial delay the liveness probe restarts it
    wait_for(&cri, T, "restarted by liveness", |o| {
        running(o, &pod).iter().any(|c| c.attempt == 1)
    })
    .await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn empty_dir_is_shared_between_containers_on_disk_and_in_memory() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let out = out_dir(&lab);
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: share}}
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - {{name: disk, emptyDir: {{}}}}
  - {{name: mem, emptyDir: {{medium: Memory, sizeLimit: 8Mi}}}}
  - {{name: out, hostPath: {{path: {out}}}}}
  containers:
  - name: writer
    image: {BUSYBOX}
    command: [sh, -c, 'echo hello > /disk/msg; echo ram > /mem/msg; trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{{name: disk, mountPath: /disk}}, {{name: mem, mountPath: /mem}}]
  - name: reader
    image: {BUSYBOX}
    command: [sh, -c, 'until [ -f /d/msg ] && [ -f /m/msg ]; do sleep 0.1; done; cat /d/msg /m/msg > /out/got; grep \" /m \" /proc/mounts > /out/mounts; trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{{name: disk, mountPath: /d}}, {{name: mem, mountPath: /m, readOnly: true}}, {{name: out, mountPath: /out}}]
",
        out = out.display()
    );
    d.write("share.yaml", &manifest);
    let pod = d.pod("share");
    let o = wait_for(&cri, T, "both running", |o| running(o, &pod).len() == 2).await;
    assert_eq!(wait_file(&out.join("got"), T).await, "hello\nram\n");
    let mounts = wait_file(&out.join("mounts"), T).await;
    assert!(
        mounts.contains("tmpfs") && mounts.contains("ro"),
        "medium: Memory is a tmpfs, mounted read-only here: {mounts}"
    );
    assert!(
        mounts.contains("size=8192k"),
        "sizeLimit bounds the tmpfs: {mounts}"
    );
    // removing the pod unmounts the tmpfs and removes the pod directory
    let uid = o.sandboxes[0].uid.clone();
    d.remove("share.yaml");
    wait_for(&cri, T, "gone", |o| o.sandboxes.is_empty()).await;
    let pod_dir = d.root.join("pods").join(uid.as_str());
    for _ in 0..100 {
        if !pod_dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!pod_dir.exists(), "pod dir left behind");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn memory_limit_gets_a_container_oom_killed_and_reported_so() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: hog}}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: {BUSYBOX}
    command: [sh, -c, 'x=$(head -c 200000000 /dev/zero | tr \"\\\\000\" a); echo survived']
    resources:
      limits: {{memory: 32Mi}}
"
    );
    d.write("hog.yaml", &manifest);
    let pod = d.pod("hog");
    let o = wait_for(&cri, T, "hog exited", |o| {
        containers(o, &pod, "hog")
            .iter()
            .any(|c| c.state == ContainerState::Exited)
    })
    .await;
    let c = containers(&o, &pod, "hog")[0];
    assert_eq!(c.reason, Some(TerminationReason::OomKilled), "{c:?}");
    assert_eq!(c.exit_code, Some(137));
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn termination_message_is_read_from_the_file_or_the_log_tail() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: msg}}
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: {BUSYBOX}
    command: [sh, -c, 'echo disk full > /dev/termination-log; exit 3']
  - name: logs
    image: {BUSYBOX}
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, 'echo first >&2; echo last words >&2; exit 4']
"
    );
    d.write("msg.yaml", &manifest);
    let pod = d.pod("msg");
    let o = wait_for(&cri, T, "both exited", |o| {
        ["file", "logs"].iter().all(|n| {
            containers(o, &pod, n)
                .iter()
                .any(|c| c.state == ContainerState::Exited)
        })
    })
    .await;
    let (file, logs) = (
        &containers(&o, &pod, "file")[0],
        &containers(&o, &pod, "logs")[0],
    );
    // The runtime's record says where each message is; the daemon reads it and reports it.
    let source = file
        .termination
        .as_ref()
        .expect("exited container has a source");
    assert!(
        source
            .file
            .as_ref()
            .is_some_and(|f| f.to_string_lossy().ends_with("/file/termination-log-0")),
        "{source:?}"
    );
    assert!(
        logs.termination
            .as_ref()
            .is_some_and(|s| s.fallback_to_logs)
    );
    let deadline = std::time::Instant::now() + T;
    let detail = loop {
        let (code, detail, _) = d.cli(&["inspect", "msg"]);
        if code == 0 && detail.contains("disk full") && detail.contains("last words") {
            break detail;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "messages never reported:\n{detail}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let statuses: serde_json::Value = serde_saphyr::from_str(&detail).expect("inspect is YAML");
    let message = |name: &str| {
        statuses["pod"]["status"]["containerStatuses"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .and_then(|c| c["state"]["terminated"]["message"].as_str())
            .map(|m| m.trim().to_owned())
    };
    assert_eq!(message("file").as_deref(), Some("disk full"), "{detail}");
    assert_eq!(
        message("logs").as_deref(),
        Some("first\nlast words"),
        "{detail}"
    );
}

/// `id`'s output without the names in parentheses: `uid=1000(app) gid=2000` is
/// `uid=1000 gid=2000`.
fn numeric_ids(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    let mut depth = 0usize;
    for c in id.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The host directory of a pod's emptyDir volume.
fn empty_dir(d: &Daemon, uid: &str, name: &str) -> PathBuf {
    d.root
        .join("pods")
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(name)
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn security_context_is_applied_and_run_as_non_root_refuses_a_root_image() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: sec}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext: {{runAsUser: 1000, runAsGroup: 2000, supplementalGroups: [3000]}}
  volumes: [{{name: out, emptyDir: {{}}}}]
  containers:
  - name: app
    image: {BUSYBOX}
    command: [sh, -c, 'id > /out/id; touch /rootfs-write 2> /out/rootfs || true; cat /proc/self/status | grep -E \"^(CapEff|NoNewPrivs)\" > /out/caps; trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    securityContext: {{readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}
    volumeMounts: [{{name: out, mountPath: /out}}]
"
    );
    d.write("sec.yaml", &manifest);
    let pod = d.pod("sec");
    let o = wait_for(&cri, T, "sec running", |o| running(o, &pod).len() == 1).await;
    let out = empty_dir(&d, o.sandboxes[0].uid.as_str(), "out");
    let id = wait_file(&out.join("id"), T).await;
    // ids only: CRI-O adds a passwd entry for a runAsUser the image lacks, so `id` may print
    // a name after the number (uid=1000(1000)), which containerd does not
    let ids = numeric_ids(&id);
    assert!(ids.starts_with("uid=1000 gid=2000 "), "{id}");
    assert!(
        ids.split_once("groups=")
            .is_some_and(|(_, g)| g.trim().split(',').any(|g| g == "3000")),
        "supplemental group: {id}"
    );
    assert!(
        wait_file(&out.join("rootfs"), T)
            .await
            .contains("Read-only file system")
    );
    let caps = wait_file(&out.join("caps"), T).await;
    assert!(caps.contains("CapEff:\t0000000000000000"), "{caps}");
    assert!(caps.contains("NoNewPrivs:\t1"), "{caps}");

    // the busybox image runs as root: runAsNonRoot without a runAsUser refuses it
    let root = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: rooty}}\nspec:\n  securityContext: {{runAsNonRoot: true}}\n  containers:\n  - {{name: app, image: {BUSYBOX}, command: [sleep, '60']}}\n"
    );
    d.write("rooty.yaml", &root);
    d.wait_log(
        "container app has runAsNonRoot and image will run as root",
        T,
    )
    .await;
    let o = cri.observe().await.expect("observe");
    assert!(running(&o, &d.pod("rooty")).is_empty());
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn host_aliases_downward_api_and_sub_paths_reach_the_container() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let manifest = format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: dw, labels: {{tier: edge}}}}
spec:
  terminationGracePeriodSeconds: 2
  hostAliases: [{{ip: 10.9.8.7, hostnames: [registry.local]}}]
  volumes:
  - {{name: out, emptyDir: {{}}}}
  - name: info
    downwardAPI: {{items: [{{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}]}}
  containers:
  - name: app
    image: {BUSYBOX}
    env:
    - {{name: POD_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}}}
    command: [sh, -c, 'cat /etc/hosts > /out/hosts; cat /info/labels > /out/labels; echo $POD_IP $NODE > /out/env; echo sub > /sub/x; trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    volumeMounts:
    - {{name: out, mountPath: /out}}
    - {{name: info, mountPath: /info}}
    - {{name: out, mountPath: /sub, subPathExpr: 'per-node/$(NODE)'}}
"
    );
    d.write("dw.yaml", &manifest);
    let pod = d.pod("dw");
    let o = wait_for(&cri, T, "dw running", |o| running(o, &pod).len() == 1).await;
    let sandbox = &o.sandboxes[0];
    let ip = sandbox.ip.clone().expect("pod ip");
    let out = empty_dir(&d, sandbox.uid.as_str(), "out");
    let hosts = wait_file(&out.join("hosts"), T).await;
    assert!(hosts.contains("10.9.8.7\tregistry.local"), "{hosts}");
    assert!(
        hosts.contains(&format!("{ip}\t{pod}")),
        "the pod's own name resolves: {hosts}"
    );
    assert_eq!(wait_file(&out.join("labels"), T).await, "tier=\"edge\"");
    assert_eq!(
        wait_file(&out.join("env"), T).await.trim(),
        format!("{ip} {}", d.node)
    );
    assert_eq!(
        wait_file(&out.join("per-node").join(&d.node).join("x"), T)
            .await
            .trim(),
        "sub"
    );
}

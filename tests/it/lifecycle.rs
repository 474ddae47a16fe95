//! Manifest file → pod, through the whole stack: drop, edit, delete, bad files, editor files.

use std::time::Duration;

use podvisor::runtime::{ContainerState, Observed, SandboxState};

use crate::daemon::Daemon;
use podvisor::runtime::Runtime;

use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};

const T: Duration = Duration::from_secs(20);

/// A pod whose container exits at once on SIGTERM, so stops are quick.
pub fn sleeper(name: &str, extra_env: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
  labels: {{app: {name}}}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    env: [{{name: EXTRA, value: '{extra_env}'}}]
"
    )
}

pub fn running<'a>(o: &'a Observed, pod: &str) -> Vec<&'a podvisor::runtime::ObservedContainer> {
    o.containers
        .iter()
        .filter(|c| c.key.name == pod && c.state == ContainerState::Running)
        .collect()
}

/// The sandbox of `pod`; there must be one.
pub fn sandbox_of<'a>(o: &'a Observed, pod: &str) -> &'a podvisor::runtime::ObservedSandbox {
    o.sandboxes
        .iter()
        .find(|s| s.key.name == pod)
        .expect("sandbox")
}

pub fn ready_sandboxes(o: &Observed, pod: &str) -> usize {
    o.sandboxes
        .iter()
        .filter(|s| s.key.name == pod && s.state == SandboxState::Ready)
        .count()
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn dropped_manifest_runs_with_kubelet_names_and_labels() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    d.write("web.yaml", &sleeper("web", "1"));
    let pod = d.pod("web");
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let sandbox = sandbox_of(&o, &pod);
    assert_eq!(sandbox.key.namespace, "kube-system");
    assert_eq!(sandbox.uid.as_str().len(), 32);
    assert_eq!(
        sandbox.manifest.as_deref(),
        Some(d.manifests.join("web.yaml").as_path())
    );
    let c = running(&o, &pod)[0];
    assert_eq!((c.name.as_str(), c.attempt), ("main", 0));
    assert!(c.hash.is_some());
    // log path as the kubelet lays it out
    let log_dir = d.logs.join(format!("kube-system_{pod}_{}", sandbox.uid));
    assert!(
        log_dir.join("main/0.log").exists(),
        "no log at {}",
        log_dir.display()
    );
    // the driver is cgroupfs (containerd 1.6 does not say it, so the default; CRI-O says so),
    // and the pod's cgroup is the kubelet's cgroupfs path for its QoS class
    d.wait_log(lab.kind.cgroup_driver_log(), T).await;
    let cgroup = std::path::Path::new("/sys/fs/cgroup/memory/kubepods/besteffort")
        .join(format!("pod{}", sandbox.uid));
    let unified = std::path::Path::new("/sys/fs/cgroup/kubepods/besteffort")
        .join(format!("pod{}", sandbox.uid));
    assert!(
        cgroup.is_dir() || unified.is_dir(),
        "no pod cgroup at {} or {}",
        cgroup.display(),
        unified.display()
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn edited_container_is_replaced_in_the_same_sandbox() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let before = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let old = running(&before, &pod)[0].id.clone();
    let sandbox = sandbox_of(&before, &pod).id.clone();

    d.write("web.yaml", &sleeper("web", "2"));
    let after = wait_for(&cri, T, "new container running", |o| {
        running(o, &pod).iter().any(|c| c.id != old)
    })
    .await;
    let new = running(&after, &pod)[0];
    assert_eq!(
        new.sandbox, sandbox,
        "a container-only edit keeps the sandbox"
    );
    assert_eq!(new.attempt, 1);
    assert_eq!(ready_sandboxes(&after, &pod), 1);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn sandbox_edit_replaces_the_pod_old_one_gone_first() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("net");
    let port = lab.port_base + 1;
    let manifest = |host_network: bool| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: net}}\nspec:\n  hostNetwork: {host_network}\n  terminationGracePeriodSeconds: 3\n  containers:\n  - name: httpd\n    image: {BUSYBOX}\n    command: [sh, -c, 'trap \"exit 0\" TERM; httpd -f -p {port} -h /var/www & wait']\n    ports: [{{containerPort: {port}, hostPort: {port}}}]\n"
        )
    };
    d.write("net.yaml", &manifest(false));
    let before = wait_for(&cri, T, "pod-network pod running", |o| {
        running(o, &pod).len() == 1
    })
    .await;
    let old_sandbox = sandbox_of(&before, &pod).clone();
    assert!(old_sandbox.ip.is_some(), "a pod network sandbox has an IP");
    let body = fetch(&format!("127.0.0.1:{port}")).await;
    assert!(
        body.contains("podvisor busybox"),
        "hostPort serves the pod: {body}"
    );

    d.write("net.yaml", &manifest(true));
    let after = wait_for(&cri, T, "hostNetwork pod running", |o| {
        running(o, &pod).len() == 1 && o.sandboxes.iter().all(|s| s.id != old_sandbox.id)
    })
    .await;
    assert_eq!(
        after.sandboxes.iter().filter(|s| s.key.name == pod).count(),
        1,
        "old sandbox removed"
    );
    let body = fetch(&format!("127.0.0.1:{port}")).await;
    assert!(
        body.contains("podvisor busybox"),
        "the same port serves again from the host network: {body}"
    );
}

/// An HTTP GET of `/` on `addr`, tried for about ten seconds. Each try is bounded: a port
/// whose packets go nowhere (a NAT rule to a dead address) would otherwise hold a connect for
/// minutes of SYN retries.
async fn fetch(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::timeout;
    for _ in 0..50 {
        if let Ok(Ok(mut s)) =
            timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
        {
            let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n").await;
            let mut out = String::new();
            let _ = timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await;
            if !out.is_empty() {
                return out;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing answered on {addr}");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn deleted_manifest_stops_and_removes_the_pod_and_its_logs() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let uid = o.sandboxes[0].uid.clone();
    d.remove("web.yaml");
    wait_for(&cri, T, "web gone", |o| {
        o.sandboxes.is_empty() && o.containers.is_empty()
    })
    .await;
    // the host-side clean-up is the step right after the sandbox removal
    let log_dir = d.logs.join(format!("kube-system_{pod}_{uid}"));
    let pod_dir = d.root.join("pods").join(uid.as_str());
    for _ in 0..100 {
        if !log_dir.exists() && !pod_dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !log_dir.exists(),
        "log dir {} left behind",
        log_dir.display()
    );
    assert!(
        !pod_dir.exists(),
        "pod dir {} left behind",
        pod_dir.display()
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn bad_file_is_reported_and_the_running_pod_keeps_its_last_good_spec() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    d.write("other.yaml", &sleeper("other", "1"));
    let o = wait_for(&cri, T, "both running", |o| {
        running(o, &pod).len() == 1 && running(o, &d.pod("other")).len() == 1
    })
    .await;
    let id = running(&o, &pod)[0].id.clone();

    d.write("web.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: main\n    image: [\n");
    d.wait_log(
        "manifest rejected; its pods keep running their last good version",
        T,
    )
    .await;
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{}: line 8",
            d.manifests.join("web.yaml").display()
        )),
        "error names file and line:\n{log}"
    );
    // through several resyncs (2 s each), nothing is touched
    holds_for(&cri, Duration::from_secs(5), "web untouched", |o| {
        running(o, &pod).iter().any(|c| c.id == id)
    })
    .await;

    // a validation error: also kept, also reported with the field
    d.write(
        "web.yaml",
        &sleeper("web", "1").replace("name: main", "name: Main_Bad"),
    );
    d.wait_log("spec.containers[0].name", T).await;
    holds_for(&cri, Duration::from_secs(1), "web untouched", |o| {
        running(o, &pod).iter().any(|c| c.id == id)
    })
    .await;

    // fixing the file applies the fix
    d.write("web.yaml", &sleeper("web", "fixed"));
    wait_for(&cri, T, "fixed version running", |o| {
        running(o, &pod).iter().any(|c| c.id != id)
    })
    .await;
    d.wait_log("manifest problem resolved", T).await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn editor_swap_and_backup_files_are_ignored() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let id = running(&o, &pod)[0].id.clone();
    std::fs::write(d.manifests.join(".web.yaml.swp"), "binary swap junk \0\0").expect("write");
    std::fs::write(d.manifests.join("web.yaml~"), sleeper("web", "backup")).expect("write");
    std::fs::write(d.manifests.join("4913"), "").expect("write");
    std::fs::write(d.manifests.join("web.yaml.bak"), sleeper("ghost", "1")).expect("write");
    std::fs::write(d.manifests.join("README"), "not a manifest").expect("write");
    holds_for(
        &cri,
        Duration::from_secs(5),
        "only the real pod, unchanged",
        |o| o.sandboxes.len() == 1 && running(o, &pod).iter().any(|c| c.id == id),
    )
    .await;
    assert!(
        !d.log().contains("manifest rejected"),
        "ignored files produced errors:\n{}",
        d.log()
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn vim_style_save_replaces_the_container_once_without_deleting_the_pod() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("web.yaml", &sleeper("web", "1"));
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let sandbox = o.sandboxes[0].id.clone();
    // vim without backupcopy: rename the file to a backup, write the new one, drop the backup
    let path = d.manifests.join("web.yaml");
    let backup = d.manifests.join("web.yaml~");
    std::fs::rename(&path, &backup).expect("rename");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, sleeper("web", "2")).expect("write");
    std::fs::remove_file(&backup).expect("rm");
    let after = wait_for(&cri, T, "edited container", |o| {
        running(o, &pod).iter().any(|c| c.attempt == 1)
    })
    .await;
    assert_eq!(after.sandboxes.len(), 1);
    assert_eq!(after.sandboxes[0].id, sandbox, "the pod was never deleted");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn duplicate_pod_first_file_wins_and_removing_the_loser_leaves_it() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    d.write("a.yaml", &sleeper("web", "from-a"));
    d.write("b.yaml", &sleeper("web", "from-b"));
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    d.wait_log("is already declared by", T).await;
    let winner = o.sandboxes[0].clone();
    assert_eq!(
        winner.manifest.as_deref(),
        Some(d.manifests.join("a.yaml").as_path())
    );
    let id = running(&o, &pod)[0].id.clone();
    d.remove("b.yaml");
    holds_for(&cri, Duration::from_secs(4), "winner untouched", |o| {
        running(o, &pod).iter().any(|c| c.id == id)
    })
    .await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn image_pull_policy_never_and_always_fail_clearly_without_a_registry() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let never = sleeper("never", "1")
        .replace(BUSYBOX, "podvisor.local/absent:1.0")
        .replace("    env:", "    imagePullPolicy: Never\n    env:");
    d.write("never.yaml", &never);
    d.wait_log(
        "image podvisor.local/absent:1.0 is not present and imagePullPolicy is Never",
        T,
    )
    .await;
    // Always pulls even a present image: here that fails, as there is no registry
    let always =
        sleeper("always", "1").replace("    env:", "    imagePullPolicy: Always\n    env:");
    d.write("always.yaml", &always);
    d.wait_log(&format!("pulling image {BUSYBOX} failed"), T)
        .await;
    // IfNotPresent with the image present never pulls: it just runs
    d.write("present.yaml", &sleeper("present", "1"));
    wait_for(&cri, T, "present running", |o| {
        running(o, &d.pod("present")).len() == 1
    })
    .await;
    let o = cri.observe().await.expect("observe");
    assert!(running(&o, &d.pod("never")).is_empty() && running(&o, &d.pod("always")).is_empty());
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn host_path_volumes_are_created_and_mounted() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let host_dir = lab.dir.path().join("data/made-by-podvisor");
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: vol}}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: writer\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo \"$(POD)\" > /data/hello; trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n    env: [{{name: POD, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}]\n    volumeMounts: [{{name: data, mountPath: /data}}]\n  volumes:\n  - name: data\n    hostPath: {{path: {}, type: DirectoryOrCreate}}\n",
        host_dir.display()
    );
    d.write("vol.yaml", &manifest);
    wait_for(&cri, T, "vol running", |o| {
        running(o, &d.pod("vol")).len() == 1
    })
    .await;
    let file = host_dir.join("hello");
    for _ in 0..100 {
        if file.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&file)
            .expect("written through the mount")
            .trim(),
        d.pod("vol")
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn image_calls_go_to_the_image_service_endpoint_issue_14() {
    let lab = Lab::start();
    // The image service at a socket of its own, not there yet: the runtime service answers,
    // but no image can be checked, so the pod waits with the image service's error.
    let images = lab.dir.path().join("images.sock");
    let images_endpoint = format!("unix://{}", images.display());
    let d = Daemon::start_with(&lab, &["--image-service-endpoint", &images_endpoint]);
    let cri = lab.cri();
    d.write("web.yaml", &sleeper("web", "1"));
    let web = d.pod("web");
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, ps, _) = d.cli(&["ps"]);
        if ps.contains("ImageStatus") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no image service error in ps:\n{ps}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let o = cri.observe().await.expect("observe");
    assert!(running(&o, &web).is_empty());
    // the image service comes up (here: a second path to the same containerd): the pod runs
    let runtime_socket = lab.endpoint.trim_start_matches("unix://").to_owned();
    std::os::unix::fs::symlink(&runtime_socket, &images).expect("image socket");
    wait_for(&cri, T, "web running", |o| running(o, &web).len() == 1).await;
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn container_logs_are_linked_where_log_shippers_look_and_the_links_go_with_the_pod_issue_15()
{
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    d.write("web.yaml", &sleeper("web", "1"));
    let pod = d.pod("web");
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let first = running(&o, &pod)[0].id.clone();
    let link = |id: &str| d.links.join(format!("{pod}_kube-system_main-{id}.log"));
    // The link follows the start (and the log file's creation) by a moment.
    let deadline = std::time::Instant::now() + T;
    while std::fs::symlink_metadata(link(&first.0)).is_err() && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let target = std::fs::read_link(link(&first.0)).expect("a link named as the kubelet names it");
    assert!(target.starts_with(&d.logs), "{}", target.display());
    assert!(target.ends_with("main/0.log"), "{}", target.display());
    // a restarted container gets a link of its own
    lab.kill_container(&first.0);
    let o = wait_for(&cri, T, "web restarted", |o| {
        running(o, &pod).iter().any(|c| c.id != first)
    })
    .await;
    let second = running(&o, &pod)[0].id.clone();
    let deadline = std::time::Instant::now() + T;
    while std::fs::symlink_metadata(link(&second.0)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "no link for the restarted container"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // the file removed: the pod and its links go
    d.remove("web.yaml");
    wait_for(&cri, T, "web gone", |o| o.sandboxes.is_empty()).await;
    let deadline = std::time::Instant::now() + T;
    loop {
        let left: Vec<_> = std::fs::read_dir(&d.links)
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "links left: {left:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

//! `podvisor diff` against a real containerd: for each outcome, what diff says about a
//! proposed manifest, then what the daemon does once the manifest is installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use podvisor::api::applied::{AppliedPod, AppliedView};
use podvisor::api::client::get_json;
use podvisor::runtime::{ContainerId, Observed, Runtime, SandboxId, SandboxState};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, holds_for, wait_for};
use crate::lifecycle::{running, sleeper};

const T: Duration = Duration::from_secs(30);

/// `podvisor diff ARGS --socket SOCKET`: (exit code, stdout, stderr).
fn diff(args: &[&str], socket: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .arg("diff")
        .args(args)
        .arg("--socket")
        .arg(socket)
        .output()
        .expect("run podvisor diff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `text` as `name` in the proposal directory `dir`; returns its path.
fn propose(dir: &Path, name: &str, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("proposal dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write proposal");
    path
}

/// The one running container of `pod`: its id and sandbox.
fn only(o: &Observed, pod: &str) -> (ContainerId, SandboxId) {
    let c = running(o, pod);
    assert_eq!(c.len(), 1, "{pod}: {c:#?}");
    (c[0].id.clone(), c[0].sandbox.clone())
}

fn ready(o: &Observed, pod: &str) -> Vec<SandboxId> {
    o.sandboxes
        .iter()
        .filter(|s| s.key.name == pod && s.state == SandboxState::Ready)
        .map(|s| s.id.clone())
        .collect()
}

/// Waits until the daemon's `/applied` shows `pod` as `check` wants it.
async fn applied(d: &Daemon, pod: &str, check: impl Fn(&AppliedPod) -> bool) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let view: AppliedView = get_json(&d.socket, "/applied").await.expect("/applied");
        if view.pods.iter().any(|p| p.name == pod && check(p)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pod} never applied as expected: {:#?}",
            view.pods
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn a_usage_error_exits_64_not_2_which_means_changes() {
    let socket = Path::new("/nonexistent/podvisor.sock");
    assert_eq!(diff(&["--no-such-flag"], socket).0, 64);
    let (code, out, _) = diff(&["--help"], socket);
    assert_eq!(code, 0);
    assert!(out.contains("2   something would change"), "{out}");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn diff_says_what_the_daemon_then_does_pod_by_pod() {
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let proposals = lab.path("proposals");
    for name in ["keep", "web", "net", "old"] {
        d.write(&format!("{name}.yaml"), &sleeper(name, "1"));
    }
    let (keep, web, net, old, new) = (
        d.pod("keep"),
        d.pod("web"),
        d.pod("net"),
        d.pod("old"),
        d.pod("new"),
    );
    let before = wait_for(&cri, T, "four pods running", |o| {
        [&keep, &web, &net, &old]
            .iter()
            .all(|p| running(o, p).len() == 1)
    })
    .await;

    // Nothing: the same file. The daemon keeps every container.
    let same = propose(&proposals, "keep.yaml", &sleeper("keep", "1"));
    let (code, out, err) = diff(&[path_str(&same)], &d.socket);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("compared with the running daemon (node itnode, "),
        "{out}"
    );
    assert!(
        out.contains(&format!("nothing  kube-system/{keep}\n")),
        "{out}"
    );
    assert!(out.ends_with("4 unchanged\n"), "{out}");
    d.write("keep.yaml", &sleeper("keep", "1"));
    let kept = only(&before, &keep);
    holds_for(&cri, Duration::from_secs(3), "keep untouched", |o| {
        running(o, &keep).first().map(|c| c.id.clone()) == Some(kept.0.clone())
    })
    .await;

    // Update: a new version that restarts nothing. The daemon keeps every container.
    let graceful = sleeper("keep", "1").replace(
        "terminationGracePeriodSeconds: 5",
        "terminationGracePeriodSeconds: 6",
    );
    let update = propose(&proposals, "keep.yaml", &graceful);
    let (code, out, _) = diff(&[path_str(&update)], &d.socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "update   kube-system/{keep}: changed: spec.terminationGracePeriodSeconds (no restart)\n"
        )),
        "{out}"
    );
    d.write("keep.yaml", &graceful);
    applied(&d, &keep, |p| {
        p.spec.termination_grace_period_seconds == Some(6)
    })
    .await;
    holds_for(&cri, Duration::from_secs(3), "keep untouched", |o| {
        running(o, &keep).first().map(|c| c.id.clone()) == Some(kept.0.clone())
    })
    .await;

    // Restart in place: a changed env. Same sandbox, a new container.
    let edited = propose(&proposals, "web.yaml", &sleeper("web", "2"));
    let (code, out, _) = diff(&[path_str(&edited)], &d.socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "restart  kube-system/{web}: restart container main in place (env)\n"
        )),
        "{out}"
    );
    assert!(!out.contains("images"), "busybox is on the node: {out}");
    let (json_code, json, _) = diff(&[path_str(&edited), "--json"], &d.socket);
    assert_eq!(json_code, 2);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["against"], "daemon");
    let pod = v["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .find(|p| p["pod"] == format!("kube-system/{web}"))
        .expect("web in the json");
    assert_eq!(pod["outcome"], "restart");
    assert_eq!(pod["containers"][0]["step"], "restart");
    let (old_web, web_sandbox) = only(&before, &web);
    d.write("web.yaml", &sleeper("web", "2"));
    let after = wait_for(&cri, T, "web restarted", |o| {
        running(o, &web).iter().any(|c| c.id != old_web)
    })
    .await;
    let (_, sandbox) = only(&after, &web);
    assert_eq!(sandbox, web_sandbox, "restarted in place");
    assert_eq!(ready(&after, &web), [web_sandbox]);

    // Replace: a label shapes the sandbox. A new sandbox, the old one gone.
    let relabelled =
        sleeper("net", "1").replace("labels: {app: net}", "labels: {app: net, tier: b}");
    let shaped = propose(&proposals, "net.yaml", &relabelled);
    let (code, out, _) = diff(&[path_str(&shaped)], &d.socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "replace  kube-system/{net}: changed: metadata.labels.tier\n"
        )),
        "{out}"
    );
    let (_, net_sandbox) = only(&before, &net);
    d.write("net.yaml", &relabelled);
    let after = wait_for(&cri, T, "net replaced", |o| {
        running(o, &net).len() == 1 && ready(o, &net).iter().all(|s| *s != net_sandbox)
    })
    .await;
    assert!(
        !after.sandboxes.iter().any(|s| s.id == net_sandbox),
        "the old sandbox is removed"
    );

    // Create: a new file, whose image the node holds, so nothing is pulled.
    let added = propose(&proposals, "new.yaml", &sleeper("new", "1"));
    let (code, out, _) = diff(&[path_str(&added)], &d.socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("create   kube-system/{new}\n")),
        "{out}"
    );
    assert!(!out.contains("images"), "{out}");
    d.write("new.yaml", &sleeper("new", "1"));
    wait_for(&cri, T, "new running", |o| running(o, &new).len() == 1).await;

    // An image the node does not hold is one to pull.
    let absent = sleeper("pull", "1").replace(BUSYBOX, "podvisor.local/absent:1");
    let pulls = propose(&proposals, "pull.yaml", &absent);
    let (code, out, _) = diff(&[path_str(&pulls)], &d.socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!(
            "images pulled (not on the node):\n  podvisor.local/absent:1  (kube-system/{})\n",
            d.pod("pull")
        )),
        "{out}"
    );

    // Remove: a directory without old.yaml replaces the whole manifest directory.
    let whole = lab.path("whole");
    for name in ["keep", "web", "net", "new"] {
        let text = std::fs::read_to_string(d.manifests.join(format!("{name}.yaml"))).expect("read");
        propose(&whole, &format!("{name}.yaml"), &text);
    }
    let (code, out, _) = diff(&[path_str(&whole)], &d.socket);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("remove   kube-system/{old}\n")),
        "{out}"
    );
    assert!(out.ends_with("1 to remove, 4 unchanged\n"), "{out}");
    d.remove("old.yaml");
    wait_for(&cri, T, "old removed", |o| {
        !o.sandboxes.iter().any(|s| s.key.name == old)
    })
    .await;

    // Invalid: exit 1 with the error; the daemon keeps the running version.
    let broken = sleeper("web", "3").replace("name: main", "name: Main_1");
    let bad = propose(&proposals, "web.yaml", &broken);
    let (code, out, _) = diff(&[path_str(&bad)], &d.socket);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "nothing  kube-system/{web}: its file is invalid: the running version is kept\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("error: ") && out.contains("spec.containers[0].name"),
        "{out}"
    );
    let now = cri.observe().await.expect("observe");
    let current = only(&now, &web);
    d.write("web.yaml", &broken);
    d.wait_log("its pods keep running their last good version", T)
        .await;
    holds_for(&cri, Duration::from_secs(3), "web kept", |o| {
        running(o, &web).first().map(|c| c.id.clone()) == Some(current.0.clone())
    })
    .await;
    // And against what runs, the last good version: the fixed file changes nothing.
    let fixed = propose(&proposals, "web.yaml", &sleeper("web", "2"));
    let (code, out, _) = diff(&[path_str(&fixed)], &d.socket);
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn without_a_daemon_diff_compares_with_the_directory_and_the_daemon_agrees() {
    let lab = Lab::start();
    let manifests = lab.path("manifests");
    std::fs::create_dir_all(&manifests).expect("manifest dir");
    std::fs::write(manifests.join("web.yaml"), sleeper("web", "1")).expect("write");
    let edited = propose(&lab.path("proposals"), "web.yaml", &sleeper("web", "2"));
    let socket = lab.dir.path().join("podvisor.sock");
    let (code, out, err) = diff(
        &[
            path_str(&edited),
            "--manifest-dir",
            path_str(&manifests),
            "--node-name",
            "itnode",
        ],
        &socket,
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "compared with the manifest directory {} (node itnode; no daemon asked)\nnote: no daemon answers at {}: compared with the directory\n",
            manifests.display(),
            socket.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("restart  kube-system/web-itnode: restart container main in place (env)\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "images pulled if not on the node (their presence is unknown without the daemon):\n  {BUSYBOX}  (kube-system/web-itnode)\n"
        )),
        "{out}"
    );

    // The daemon, started on that directory, then does what diff said.
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let pod = d.pod("web");
    let before = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    let (old, sandbox) = only(&before, &pod);
    d.write("web.yaml", &sleeper("web", "2"));
    let after = wait_for(&cri, T, "web restarted", |o| {
        running(o, &pod).iter().any(|c| c.id != old)
    })
    .await;
    assert_eq!(only(&after, &pod).1, sandbox, "restarted in place");
}

//! Container log files on a node that runs for months (issue 15): rotation under a fast
//! writer through containerd's `ReopenContainerLog`, reading across the rotated files, and
//! the log files of removed containers deleted.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::lab::{BUSYBOX, Lab, wait_for};
use crate::lifecycle::running;
use podvisor::runtime::Runtime;

const T: Duration = Duration::from_secs(30);
const LINES: u32 = 60_000;

fn writer(name: &str) -> String {
    // As fast as busybox sh writes: numbered lines, then quiet.
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'i=0; while [ $i -lt {LINES} ]; do echo line-$i; i=$((i+1)); done; echo done; trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n"
    )
}

/// The container log directory of the only version of `pod`.
fn container_dir(logs: &Path, pod: &str, container: &str) -> PathBuf {
    let prefix = format!("default_{pod}_");
    let dir = std::fs::read_dir(logs)
        .expect("pod log dir")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .unwrap_or_else(|| panic!("no log dir for {pod} in {}", logs.display()))
        .path();
    dir.join(container)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_fast_writers_log_is_rotated_and_compressed_and_reads_back_with_no_line_lost_or_doubled()
{
    let lab = Lab::start();
    let d = Daemon::start_with(
        &lab,
        &[
            "--container-log-max-size",
            "128Ki",
            "--container-log-max-files",
            "4",
            "--container-log-monitor-interval",
            "100ms",
        ],
    );
    let cri = lab.cri();
    d.write("writer.yaml", &writer("writer"));
    let pod = d.pod("writer");
    wait_for(&cri, T, "writer running", |o| running(o, &pod).len() == 1).await;

    // Wait until the writer is done and its last line is in a log file.
    let dir = container_dir(&d.logs, &pod, "app");
    let deadline = Instant::now() + T;
    loop {
        // podvisor's published state follows the runtime by one observation: until it has
        // seen the container start, `logs` answers that it has not started yet.
        let (code, out, err) = d.cli(&["logs", "writer"]);
        assert!(code == 0 || err.contains("not started yet"), "{err}");
        if out.ends_with("done\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the writer never finished: {:?}\n{}",
            names(&dir),
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The writer is done, but the log manager may still be rotating what it wrote last:
    // wait until the files stay the same for a few checks.
    let mut files = names(&dir);
    let mut same = 0;
    while same < 5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = names(&dir);
        same = if now == files { same + 1 } else { 0 };
        files = now;
        assert!(
            Instant::now() < deadline + T,
            "the log files never settle: {files:?}"
        );
    }
    let (code, out, err) = d.cli(&["logs", "writer"]);
    assert_eq!(code, 0, "{err}");

    // Rotated, more than once, and kept within the files allowed: compressed but the newest.
    let rotated: Vec<&String> = files.iter().filter(|n| n.starts_with("0.log.")).collect();
    // After a rename only the runtime's reopen makes a new 0.log: the container writes on.
    assert!(files.contains(&"0.log".to_owned()), "{files:?}");
    assert!(!rotated.is_empty() && files.len() <= 4, "{files:?}");
    assert!(
        rotated.iter().all(|n| !n.ends_with(".tmp")),
        "no temporaries left: {files:?}"
    );
    if rotated.len() > 1 {
        assert!(
            rotated[..rotated.len() - 1]
                .iter()
                .all(|n| n.ends_with(".gz")),
            "all but the newest rotated file compressed: {files:?}"
        );
        assert!(!rotated[rotated.len() - 1].ends_with(".gz"), "{files:?}");
    }
    let rotations = d.log().matches("container log rotated").count();
    assert!(rotations >= 2, "rotated {rotations} times:\n{}", d.log());

    // What `podvisor logs` reads across the files: a run of consecutive lines ending with the
    // last, none missing, none twice (the oldest rotated files were removed, as allowed).
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.last(), Some(&"done"));
    let numbers: Vec<u32> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            l.strip_prefix("line-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("not a writer's line: {l:?}"))
        })
        .collect();
    assert_eq!(numbers.last(), Some(&(LINES - 1)));
    for pair in numbers.windows(2) {
        assert_eq!(pair[1], pair[0] + 1, "a line lost or doubled at {pair:?}");
    }
    assert!(
        numbers.len() > 4_000,
        "more than the live file's worth was read back: {} lines",
        numbers.len()
    );
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn logs_of_removed_containers_are_deleted_and_the_current_and_previous_ones_kept() {
    let lab = Lab::start();
    let d = Daemon::start_with(&lab, &["--container-log-monitor-interval", "200ms"]);
    let cri = lab.cri();
    d.write(
        "web.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [sh, -c, 'echo started; trap \"exit 0\" TERM; while true; do sleep 0.2; done']\n"
        ),
    );
    let pod = d.pod("web");
    let o = wait_for(&cri, T, "web running", |o| running(o, &pod).len() == 1).await;
    lab.kill_container(&running(&o, &pod)[0].id.0);
    wait_for(&cri, T, "restarted", |o| {
        running(o, &pod).iter().any(|c| c.attempt == 1)
    })
    .await;

    // Left by a container removed long ago (attempt 7, written two minutes back), and a file
    // that is not a container log at all.
    let dir = container_dir(&d.logs, &pod, "app");
    let stale = ["7.log", "7.log.20261201-101010.gz"];
    for name in stale {
        std::fs::write(dir.join(name), "old\n").expect("write");
        let status = std::process::Command::new("touch")
            .args(["-d", "2 minutes ago"])
            .arg(dir.join(name))
            .status()
            .expect("touch");
        assert!(status.success());
    }
    std::fs::write(dir.join("notes.txt"), "mine\n").expect("write");
    // A crash changes what the runtime lists, which has podvisor look for such files.
    let o = cri.observe().await.unwrap_or_default();
    lab.kill_container(&running(&o, &pod)[0].id.0);
    wait_for(&cri, T, "restarted again", |o| {
        running(o, &pod).iter().any(|c| c.attempt == 2)
    })
    .await;

    let deadline = Instant::now() + T;
    while stale.iter().any(|n| dir.join(n).exists()) {
        assert!(
            Instant::now() < deadline,
            "stale logs stay: {:?}",
            names(&dir)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left = names(&dir);
    assert!(
        left.contains(&"1.log".to_owned()) && left.contains(&"2.log".to_owned()),
        "the previous and the current instance's logs stay: {left:?}"
    );
    assert!(left.contains(&"notes.txt".to_owned()), "{left:?}");
    // `logs` reads podvisor's published state, one pass behind the runtime: wait until it
    // has the second restart running before asking for the previous instance
    let deadline = Instant::now() + T;
    loop {
        let pods: Vec<podvisor::api::views::PodView> =
            podvisor::api::client::get_json(&d.socket, "/pods")
                .await
                .unwrap_or_default();
        let app = pods
            .iter()
            .filter(|p| p.name == pod)
            .flat_map(|p| p.containers.iter())
            .find(|c| c.name == "app");
        if app.is_some_and(|c| c.restarts == 2 && c.state == "running") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "podvisor never published the second restart: {app:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, previous, err) = d.cli(&["logs", "web", "--previous"]);
    assert_eq!((code, previous.as_str()), (0, "started\n"), "{err}");
}

//! The reliability suite: podvisor killed again and again, containerd restarted under it, a
//! manifest rewritten in a storm, and hundreds of files some of them broken. Each test checks
//! the runtime's own state afterwards (exactly the desired pods, nothing leaked or doubled, no
//! untouched pod restarted) and prints its figures as `reliability:` lines.
//!
//! CI runs the short form. `PODVISOR_RELIABILITY=long` runs the long form (100 kill cycles,
//! 10 containerd restarts, 500 files); `hack/reliability.sh` does that and collects the figures.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use podvisor::runtime::{ContainerState, Observed, ObservedContainer, Runtime, SandboxState};

use crate::daemon::{Daemon, write_atomic};
use crate::lab::{BUSYBOX, Lab, holds_for, tail};

/// True when the long form was asked for.
fn long() -> bool {
    std::env::var("PODVISOR_RELIABILITY").is_ok_and(|v| v == "long")
}

/// `short` in CI, `long` on demand.
fn scale(short: usize, long_form: usize) -> usize {
    if long() { long_form } else { short }
}

/// A hostNetwork pod whose container prints `version=<v>;` once and then sleeps.
fn versioned(name: &str, version: usize) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: kube-system
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: {BUSYBOX}
    command: [sh, -c, 'echo \"version=$VERSION;\"; trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    env: [{{name: VERSION, value: '{version}'}}]
"
    )
}

/// A tiny deterministic generator, so that a failing sequence can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// What a container printed, from its CRI log file under the pod log directory.
fn printed(d: &Daemon, c: &ObservedContainer) -> String {
    let dir = d
        .logs
        .join(format!("{}_{}_{}", c.key.namespace, c.key.name, c.uid));
    std::fs::read_to_string(dir.join(&c.name).join(format!("{}.log", c.attempt)))
        .unwrap_or_default()
}

/// How far the runtime is from "exactly these pods, each at this version".
#[derive(Debug, Default, PartialEq, Eq)]
struct Gap {
    /// Desired pods without exactly one running container at the desired version.
    missing: Vec<String>,
    /// Pods with more than one sandbox, or more than one running container.
    duplicated: Vec<String>,
    /// Sandboxes or running containers of pods that are not desired.
    leaked: Vec<String>,
}

impl Gap {
    fn closed(&self) -> bool {
        *self == Gap::default()
    }
}

/// Compares the runtime with `desired` (full pod name → version).
fn gap(d: &Daemon, o: &Observed, desired: &BTreeMap<String, usize>) -> Gap {
    let mut g = Gap::default();
    for (pod, version) in desired {
        let sandboxes = o.sandboxes.iter().filter(|s| &s.key.name == pod).count();
        let ready = o
            .sandboxes
            .iter()
            .filter(|s| &s.key.name == pod && s.state == SandboxState::Ready)
            .count();
        let running: Vec<_> = o
            .containers
            .iter()
            .filter(|c| &c.key.name == pod && c.state == ContainerState::Running)
            .collect();
        if sandboxes > 1 || running.len() > 1 {
            g.duplicated.push(pod.clone());
        }
        let at_version = running
            .iter()
            .any(|c| printed(d, c).contains(&format!("version={version};")));
        if ready != 1 || running.len() != 1 || !at_version {
            g.missing.push(pod.clone());
        }
    }
    for s in &o.sandboxes {
        if !desired.contains_key(&s.key.name) {
            g.leaked
                .push(format!("sandbox {} of {}", s.id.0, s.key.name));
        }
    }
    for c in &o.containers {
        let orphan = !o.sandboxes.iter().any(|s| s.id == c.sandbox);
        if orphan || (c.state == ContainerState::Running && !desired.contains_key(&c.key.name)) {
            g.leaked
                .push(format!("container {} of {}", c.id.0, c.key.name));
        }
    }
    g
}

/// Waits until the runtime holds exactly `desired`, then checks that it stays so for 3 s.
/// Returns when it first held.
async fn converge(
    lab: &Lab,
    d: &Daemon,
    desired: &BTreeMap<String, usize>,
    timeout: Duration,
) -> Instant {
    let cri = lab.cri();
    let started = Instant::now();
    let converged = loop {
        let o = cri.observe().await.unwrap_or_default();
        let g = gap(d, &o, desired);
        if g.closed() {
            break Instant::now();
        }
        assert!(
            started.elapsed() < timeout,
            "not converged after {timeout:?}: {g:#?}\nruntime has:\n{o:#?}\npodvisor log tail:\n{}\n\
             runtime log tail:\n{}",
            tail(&d.log(), 60),
            lab.runtime_log_tail(80)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    holds_for(
        &cri,
        Duration::from_secs(3),
        "exactly the desired pods",
        |o| gap(d, o, desired).closed(),
    )
    .await;
    converged
}

/// (sandbox id, container id, attempt) of each running container of `pod`.
fn identity(o: &Observed, pod: &str) -> Vec<(String, String, u32)> {
    o.containers
        .iter()
        .filter(|c| c.key.name == pod && c.state == ContainerState::Running)
        .map(|c| (c.sandbox.0.clone(), c.id.0.clone(), c.attempt))
        .collect()
}

/// Counts how many of `pods` changed identity between two observations.
fn restarted(before: &Observed, after: &Observed, pods: &[String]) -> Vec<String> {
    pods.iter()
        .filter(|p| identity(before, p) != identity(after, p))
        .cloned()
        .collect()
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn podvisor_killed_mid_change_again_and_again_ends_with_exactly_the_desired_pods() {
    let cycles = scale(12, 100);
    let lab = Lab::start();
    let mut d = Daemon::start(&lab);
    let cri = lab.cri();
    let mut desired = BTreeMap::new();
    let stable: Vec<String> = (0..3).map(|i| d.pod(&format!("stable{i}"))).collect();
    for (i, pod) in stable.iter().enumerate() {
        d.write(
            &format!("stable{i}.yaml"),
            &versioned(&format!("stable{i}"), 0),
        );
        desired.insert(pod.clone(), 0);
    }
    converge(&lab, &d, &desired, Duration::from_secs(60)).await;
    let before = cri.observe().await.expect("observe");

    let mut rng = Lcg(7);
    let mut version = 0;
    let mut change = |d: &Daemon, desired: &mut BTreeMap<String, usize>, rng: &mut Lcg| {
        let name = format!("churn{}", rng.below(5));
        let file = format!("{name}.yaml");
        if rng.below(3) == 0 {
            if d.manifests.join(&file).exists() {
                d.remove(&file);
            }
            desired.remove(&d.pod(&name));
        } else {
            version += 1;
            d.write(&file, &versioned(&name, version));
            desired.insert(d.pod(&name), version);
        }
    };
    let t0 = Instant::now();
    for _ in 0..cycles {
        for _ in 0..=rng.below(2) {
            change(&d, &mut desired, &mut rng);
        }
        // Kill it at a different moment each time: before it noticed, mid-create, mid-stop.
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
        d.kill9();
        if rng.below(3) == 0 {
            change(&d, &mut desired, &mut rng);
        }
        d.restart();
    }
    let churned = t0.elapsed();
    converge(&lab, &d, &desired, Duration::from_secs(90)).await;
    let after = cri.observe().await.expect("observe");
    let restarted = restarted(&before, &after, &stable);
    let sandboxes = after.sandboxes.len();
    // names a killed podvisor asked for without an answer, which the next one skipped
    let skipped = d
        .log()
        .matches("got no answer: asking for the next attempt")
        .count();
    // tasks containerd kept after a start cancelled mid-way, which podvisor cleared
    let cleared = d
        .log()
        .matches("containerd kept a task for an exited container")
        .count();
    eprintln!(
        "reliability: podvisor killed: {cycles} kill -9 cycles in {churned:.1?}; {} pods desired, \
         {sandboxes} sandboxes, 0 lost, 0 duplicated, 0 leaked; {} of {} unchanged pods \
         restarted; {skipped} unanswered names skipped, {cleared} leftover tasks cleared",
        desired.len(),
        restarted.len(),
        stable.len()
    );
    assert!(
        restarted.is_empty(),
        "pods whose manifest never changed were restarted: {restarted:?}"
    );
    assert_eq!(sandboxes, desired.len());
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn containerd_restarted_and_its_socket_taken_away_leaves_pods_untouched() {
    let restarts = scale(3, 10);
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let cri = lab.cri();
    let mut desired = BTreeMap::new();
    let pods: Vec<String> = (0..3).map(|i| d.pod(&format!("p{i}"))).collect();
    for (i, pod) in pods.iter().enumerate() {
        d.write(&format!("p{i}.yaml"), &versioned(&format!("p{i}"), 1));
        desired.insert(pod.clone(), 1);
    }
    converge(&lab, &d, &desired, Duration::from_secs(60)).await;
    let before = cri.observe().await.expect("observe");
    let socket = lab.socket();
    let away = socket.with_extension("sock.away");
    let t0 = Instant::now();
    for i in 0..restarts {
        lab.stop_containerd();
        tokio::time::sleep(Duration::from_millis(300 + 300 * (i as u64 % 3))).await;
        lab.start_containerd();
        // The socket file taken away and put back while containerd runs.
        std::fs::rename(&socket, &away).expect("hide the socket");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::rename(&away, &socket).expect("restore the socket");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = t0.elapsed();
    d.wait_log("container runtime reachable again", Duration::from_secs(20))
        .await;
    converge(&lab, &d, &desired, Duration::from_secs(30)).await;
    let after = cri.observe().await.expect("observe");
    let restarted = restarted(&before, &after, &pods);
    // It still reconciles: a new pod starts.
    d.write("late.yaml", &versioned("late", 1));
    desired.insert(d.pod("late"), 1);
    converge(&lab, &d, &desired, Duration::from_secs(30)).await;
    let lost = d.log().matches("container runtime unreachable").count();
    eprintln!(
        "reliability: containerd restarted {restarts} times and its socket hidden {restarts} times \
         in {elapsed:.1?}; podvisor saw the runtime go away {lost} times and came back each time; \
         {} of {} pods restarted, 0 duplicated; a pod added afterwards started",
        restarted.len(),
        pods.len()
    );
    assert!(restarted.is_empty(), "pods were restarted: {restarted:?}");
    assert!(lost >= 1, "podvisor never noticed containerd going away");
}

/// Points `dir/name` at a fresh `..v<n>` directory through `..data`, as ConfigMap tools do.
fn swap_in(dir: &Path, name: &str, n: usize, text: &str) {
    let version = format!("..v{n}");
    std::fs::create_dir_all(dir.join(&version)).expect("mkdir version");
    std::fs::write(dir.join(&version).join(name), text).expect("write version");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&version, &tmp).expect("symlink ..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    let link = dir.join(name);
    if !link.is_symlink() {
        let tmp = dir.join(format!(".{name}.link"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("..data/{name}"), &tmp).expect("symlink");
        std::fs::rename(&tmp, &link).expect("rename link");
    }
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn a_thousand_rewrites_in_five_seconds_converge_to_the_last_one_as_one_pod() {
    let writes = 1000;
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let name = "storm.yaml";
    let path = d.manifests.join(name);
    let t0 = Instant::now();
    for i in 1..=writes {
        let text = versioned("storm", i);
        match i % 3 {
            // In place: truncate and write, so podvisor may read a half-written file.
            0 => {
                if path.is_symlink() {
                    std::fs::remove_file(&path).expect("unlink symlink");
                }
                std::fs::write(&path, &text).expect("write in place")
            }
            1 => write_atomic(&path, &text),
            _ => {
                if path.exists() && !path.is_symlink() {
                    std::fs::remove_file(&path).expect("unlink file");
                }
                swap_in(&d.manifests, name, i, &text)
            }
        }
        let due = t0 + Duration::from_secs(5) * i as u32 / writes as u32;
        tokio::time::sleep_until(due.into()).await;
    }
    let storm = t0.elapsed();
    let last = Instant::now();
    let desired = BTreeMap::from([(d.pod("storm"), writes)]);
    let settled = converge(&lab, &d, &desired, Duration::from_secs(30)).await - last;
    let started = d
        .log()
        .matches("container started pod=kube-system/storm-")
        .count();
    let o = lab.cri().observe().await.expect("observe");
    eprintln!(
        "reliability: rewrite storm: {writes} rewrites (in place, rename, symlink swap) in \
         {storm:.2?}; converged to the last one {settled:.2?} after it, as 1 pod with {} sandbox; \
         {started} container starts in all",
        o.sandboxes.len()
    );
    assert_eq!(o.sandboxes.len(), 1);
}

#[tokio::test]
#[ignore = "needs root and containerd: run with --include-ignored"]
async fn hundreds_of_files_some_broken_some_duplicated_run_the_good_ones_and_report_each_bad_one_once()
 {
    let files = scale(60, 500);
    let lab = Lab::start();
    let d = Daemon::start(&lab);
    let mut desired = BTreeMap::new();
    let mut broken = Vec::new();
    let mut duplicates = Vec::new();
    for i in 0..files {
        match i % 10 {
            7 => {
                let file = format!("m{i:04}.yaml");
                let text = match i % 3 {
                    0 => "apiVersion: v1\nkind: Pod\nmetadata: {name: [unclosed\n".to_owned(),
                    1 => format!(
                        "apiVersion: v1\nkind: Pod\nmetadata: {{name: nocontainers{i}}}\nspec: {{containers: []}}\n"
                    ),
                    _ => versioned(&format!("Upper{i}"), 1),
                };
                d.write(&file, &text);
                broken.push(file);
            }
            8 => {
                // Same pod as the good m(i-2), in a file that sorts after it: a conflict.
                let file = format!("z-dup{i:04}.yaml");
                d.write(&file, &versioned(&format!("m{:04}", i - 2), 1));
                duplicates.push(file);
            }
            _ => {
                let name = format!("m{i:04}");
                d.write(&format!("{name}.yaml"), &versioned(&name, 1));
                desired.insert(d.pod(&name), 1);
            }
        }
    }
    let t0 = Instant::now();
    let timeout = Duration::from_secs(60 + 2 * files as u64);
    let up = converge(&lab, &d, &desired, timeout).await - t0;
    // Several resyncs (2 s each here) later, each bad file is still reported exactly once.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = d.log();
    let reports = |file: &str| {
        let path = d.manifests.join(file);
        let needle = format!("file={}", path.display());
        log.lines()
            .filter(|l| l.contains("manifest rejected") && l.contains(&needle))
            .count()
    };
    let misreported: Vec<(String, usize)> = broken
        .iter()
        .chain(&duplicates)
        .map(|f| (f.clone(), reports(f)))
        .filter(|(_, n)| *n != 1)
        .collect();
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", d.pid().expect("pid")))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    eprintln!(
        "reliability: many files: {files} manifests ({} good, {} broken, {} duplicates); all good \
         pods running {up:.1?} after the last write; {} bad files reported once each; podvisor RSS \
         {:.1} MiB",
        desired.len(),
        broken.len(),
        duplicates.len(),
        broken.len() + duplicates.len() - misreported.len(),
        rss_kib as f64 / 1024.0
    );
    assert!(
        misreported.is_empty(),
        "bad files not reported exactly once (file, times): {misreported:?}"
    );
    let bound_mib = 64 + files as u64 / 10;
    assert!(
        rss_kib / 1024 < bound_mib,
        "podvisor uses {rss_kib} KiB with {files} files, over {bound_mib} MiB"
    );
}

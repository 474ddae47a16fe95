//! `podvisor shutdown`: stops podvisor's pods in priority order, as the kubelet does when the
//! host shuts down, for a systemd unit ordered before the runtime stops
//! (`systemd/podvisor-shutdown.service`).
//!
//! The decisions are [`crate::nodeshutdown`]'s; this is the edge: it takes the daemon's locks
//! (so no podvisor runs meanwhile to start again what this stops, and none can start until it
//! is done), lists the pods through CRI, runs the plan and prints what it stops, in which
//! order, and how long each took. The lines are rendered by pure functions.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::api::{ListenError, ensure_socket_dir};
use crate::clock::Clock;
use crate::config::ShutdownConfig;
use crate::event::{EventType, channel};
use crate::host::NodeContext;
use crate::instance::{InstanceLock, LockError};
use crate::nodeshutdown::{
    Finished, Outcome, PodStop, PrioritySource, Progress, STRAGGLER_WAIT, ShutdownPlan, Step,
    execute, plan,
};
use crate::pod::NodeName;
use crate::reconcile::ExecContext;
use crate::runtime::{CriRuntime, Runtime, RuntimeError};

/// Why `podvisor shutdown` stopped nothing.
#[derive(Debug, Error)]
pub enum ShutdownError {
    /// A daemon holds the lock: it would start again what this stops.
    #[error("a podvisor daemon{} runs with {}: it would start again what this stops; stop it first (systemctl stop podvisor), or pass --force", pid.map(|p| format!(" (pid {p})")).unwrap_or_default(), path.display())]
    DaemonRuns {
        /// The lock file it holds.
        path: PathBuf,
        /// Its PID, when the lock file says.
        pid: Option<u32>,
    },
    /// The lock cannot be taken.
    #[error(transparent)]
    Lock(LockError),
    /// The root directory cannot be made.
    #[error("cannot create root dir {}: {source}", path.display())]
    RootDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The status socket's directory cannot be made.
    #[error(transparent)]
    SocketDir(ListenError),
    /// The runtime cannot list the pods.
    #[error("cannot list the pods: {0}")]
    List(RuntimeError),
}

/// Runs `podvisor shutdown`; `Ok(true)` when every pod it set out to stop was stopped.
pub async fn run(
    config: &ShutdownConfig,
    dry_run: bool,
    force: bool,
) -> Result<bool, ShutdownError> {
    let _lock = if dry_run { None } else { lock(config, force)? };
    if config.policy.is_off() {
        println!("graceful shutdown is off (shutdownGracePeriod: 0s): nothing stopped");
        return Ok(true);
    }
    let node = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let ctx = NodeContext::detect(
        NodeName::new(&node),
        config.root_dir.clone(),
        PathBuf::from(crate::config::DEFAULT_POD_LOG_DIR),
    );
    let host_ip = ctx.host_ip.map(|ip| ip.to_string());
    let rt = CriRuntime::new(&config.runtime_endpoint, Arc::new(ctx), None)
        .map_err(ShutdownError::List)?;
    let observed = rt.observe().await.map_err(ShutdownError::List)?;
    let plan = plan(&config.policy, &observed, host_ip.as_deref());
    print!("{}", header(&plan));
    if dry_run {
        for (index, step) in plan.steps.iter().enumerate() {
            print!("{}", step_lines(index, plan.steps.len(), step));
        }
        return Ok(true);
    }
    // The stop's own events: its warnings (a failed preStop hook) are printed with the
    // progress that follows them.
    let (events, mut warnings) = channel(1024);
    let mut warn = move || {
        while let Ok(e) = warnings.try_recv() {
            if e.type_ == EventType::Warning {
                println!("  {}: {}", e.key, e.message);
            }
        }
    };
    let cx = ExecContext {
        events,
        host_ip,
        clock: Clock::System,
    };
    let steps = plan.steps.len();
    let finished = execute(Arc::new(rt), cx, plan, |p| {
        warn();
        print!("{}", progress(&p, steps));
    })
    .await;
    warn();
    print!("{}", summary(&finished));
    Ok(finished.all_stopped())
}

/// Takes the daemon's locks, or says who holds them; with `force`, goes on without them.
fn lock(config: &ShutdownConfig, force: bool) -> Result<Option<InstanceLock>, ShutdownError> {
    std::fs::create_dir_all(&config.root_dir).map_err(|source| ShutdownError::RootDir {
        path: config.root_dir.clone(),
        source,
    })?;
    ensure_socket_dir(&config.status_socket).map_err(ShutdownError::SocketDir)?;
    match InstanceLock::acquire(&config.root_dir, &config.status_socket) {
        Ok(lock) => Ok(Some(lock)),
        Err(LockError::Held { path, pid }) if force => {
            let held = ShutdownError::DaemonRuns { path, pid };
            println!("warning: {held} (going on: --force)");
            Ok(None)
        }
        Err(LockError::Held { path, pid }) => Err(ShutdownError::DaemonRuns { path, pid }),
        Err(e) => Err(ShutdownError::Lock(e)),
    }
}

fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn took(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// What is about to happen. Pure.
pub fn header(plan: &ShutdownPlan) -> String {
    match plan.pods() {
        0 => "no pod of podvisor's is running: nothing to stop\n".to_owned(),
        n => format!(
            "stopping {n} pod{} in {} step{}, at most {} (+{} for the last to finish)\n",
            if n == 1 { "" } else { "s" },
            plan.steps.len(),
            if plan.steps.len() == 1 { "" } else { "s" },
            secs(plan.bound()),
            secs(STRAGGLER_WAIT),
        ),
    }
}

/// A step and its pods, as it begins. Pure.
pub fn step_lines(index: usize, steps: usize, step: &Step) -> String {
    let mut out = format!(
        "step {}/{steps}: priority >= {}, order {}, at most {}\n",
        index + 1,
        step.group.priority,
        step.order,
        secs(step.group.period),
    );
    for pod in &step.pods {
        out.push_str(&format!("  stopping {} ({})\n", pod.key, about(pod)));
    }
    out
}

fn about(pod: &PodStop) -> String {
    let priority = match pod.priority_source {
        PrioritySource::Recorded => format!("priority {}", pod.priority),
        PrioritySource::Unrecorded => {
            "priority 0: not recorded on its sandbox, made by an older podvisor".to_owned()
        }
    };
    format!("{priority}, grace {}", secs(pod.grace))
}

/// One progress report as lines. Pure.
pub fn progress(p: &Progress, steps: usize) -> String {
    match p {
        Progress::Step { index, step } => step_lines(*index, steps, step),
        Progress::Pod {
            key,
            took: t,
            outcome: Outcome::Stopped,
            ..
        } => format!("  {key} stopped in {}\n", took(*t)),
        Progress::Pod {
            key,
            took: t,
            outcome: Outcome::Failed(e),
            ..
        } => format!("  {key} failed after {}: {e}\n", took(*t)),
        Progress::PeriodOver { index, pending } => format!(
            "step {}/{steps}: its period is over, going on while {} still stop{}\n",
            index + 1,
            join(pending),
            if pending.len() == 1 { "s" } else { "" },
        ),
    }
}

fn join(keys: &[crate::pod::PodKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How it ended. Pure.
pub fn summary(f: &Finished) -> String {
    let total = f.stopped.len() + f.failed.len() + f.unfinished.len();
    let mut out = format!(
        "{} of {total} pod{} stopped in {}",
        f.stopped.len(),
        if total == 1 { "" } else { "s" },
        took(f.took)
    );
    if !f.failed.is_empty() {
        let keys: Vec<_> = f.failed.iter().map(|(k, _)| k.clone()).collect();
        out.push_str(&format!("; failed: {}", join(&keys)));
    }
    if !f.unfinished.is_empty() {
        out.push_str(&format!("; still stopping: {}", join(&f.unfinished)));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodeshutdown::PriorityPeriod;
    use crate::pod::PodKey;

    fn key(name: &str) -> PodKey {
        PodKey {
            namespace: "kube-system".into(),
            name: name.into(),
        }
    }

    fn stop(name: &str, priority: i32, source: PrioritySource, grace: u64) -> PodStop {
        PodStop {
            key: key(name),
            priority,
            priority_source: source,
            order: 0,
            grace: Duration::from_secs(grace),
            app: Vec::new(),
            init: Vec::new(),
            sandboxes: Vec::new(),
        }
    }

    fn step(priority: i32, period: u64, order: i32, pods: Vec<PodStop>) -> Step {
        Step {
            group: PriorityPeriod {
                priority,
                period: Duration::from_secs(period),
            },
            order,
            pods,
        }
    }

    #[test]
    fn a_daemon_holding_the_lock_is_refused_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = ShutdownConfig {
            runtime_endpoint: "unix:///unused".into(),
            root_dir: dir.path().join("root"),
            status_socket: dir.path().join("run/podvisor.sock"),
            policy: crate::nodeshutdown::ShutdownPolicy::podvisor_default(),
        };
        let free = lock(&config, false).expect("no daemon: locked");
        assert!(free.is_some());
        drop(free);
        // the daemon's own lock, as `podvisor run` takes it
        let _daemon =
            InstanceLock::acquire(&config.root_dir, &config.status_socket).expect("daemon");
        let refused = lock(&config, false).expect_err("a daemon runs");
        assert!(
            matches!(&refused, ShutdownError::DaemonRuns { pid: Some(p), .. } if *p == std::process::id()),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("stop it first"), "{refused}");
        assert!(lock(&config, true).expect("forced").is_none());
    }

    #[test]
    fn the_plan_reads_as_steps_with_their_pods_priorities_and_graces() {
        let plan = ShutdownPlan {
            steps: vec![
                step(
                    0,
                    20,
                    0,
                    vec![stop("web-n1", 0, PrioritySource::Unrecorded, 5)],
                ),
                step(
                    2_000_000_000,
                    10,
                    1,
                    vec![stop("etcd-n1", 2_000_001_000, PrioritySource::Recorded, 10)],
                ),
            ],
        };
        assert_eq!(
            header(&plan),
            "stopping 2 pods in 2 steps, at most 30s (+5s for the last to finish)\n"
        );
        assert_eq!(
            step_lines(1, 2, &plan.steps[1]),
            "step 2/2: priority >= 2000000000, order 1, at most 10s\n  stopping kube-system/etcd-n1 (priority 2000001000, grace 10s)\n"
        );
        assert!(
            step_lines(0, 2, &plan.steps[0]).contains("priority 0: not recorded on its sandbox"),
            "an older podvisor's sandbox says why its priority is 0"
        );
        assert_eq!(
            header(&ShutdownPlan::default()),
            "no pod of podvisor's is running: nothing to stop\n"
        );
    }

    #[test]
    fn progress_says_how_long_each_pod_took_and_when_a_period_ran_out() {
        let done = Progress::Pod {
            key: key("web-n1"),
            step: 0,
            took: Duration::from_millis(1_240),
            outcome: Outcome::Stopped,
        };
        assert_eq!(progress(&done, 3), "  kube-system/web-n1 stopped in 1.2s\n");
        let over = Progress::PeriodOver {
            index: 0,
            pending: vec![key("slow-n1")],
        };
        assert_eq!(
            progress(&over, 3),
            "step 1/3: its period is over, going on while kube-system/slow-n1 still stops\n"
        );
        let failed = Finished {
            took: Duration::from_secs(12),
            stopped: vec![key("a")],
            failed: vec![(
                key("b"),
                RuntimeError::Unavailable {
                    method: "StopContainer",
                    message: "reset".into(),
                },
            )],
            unfinished: vec![key("c")],
        };
        assert_eq!(
            summary(&failed),
            "1 of 3 pods stopped in 12.0s; failed: kube-system/b; still stopping: kube-system/c\n"
        );
    }
}

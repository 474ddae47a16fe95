//! Probes (liveness, readiness, startup) with the kubelet's semantics (`pkg/kubelet/prober`).
//!
//! Two halves, kept apart:
//!
//! * [`run_probe`] runs one probe through the shared actions (`crate::action`: exec,
//!   httpGet, tcpSocket, grpc), retrying a probe that could not run, and says how it went.
//! * [`ProbeWorker`] is pure (no IO, no clock reads): fed outcomes and the times they were
//!   taken, it says when the next probe is due and which [`ProbeResult`] to publish, after
//!   the thresholds. The [`Prober`] task owns one worker per (container instance,
//!   [`ProbeKind`](crate::pod::ProbeKind)) and publishes the results.
//!
//! Nothing here restarts containers or writes status.

mod manager;
mod worker;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};

use crate::action::{Outcome, exec, grpc, http_get, tcp_socket};
use crate::runtime::{ContainerId, Runtime};

pub use manager::{ContainerProbeResults, ContainerProbes, ProbeResults, Prober, probe_host};
pub use worker::{ProbeCounts, ProbeResult, ProbeWorker, container_started, initial_result};

/// How many times [`run_probe`] runs a probe that could not be run ([`Outcome::Unknown`])
/// before giving up (the kubelet's `maxProbeRetries`).
pub const MAX_PROBE_ATTEMPTS: usize = 3;

/// The probe timeout when `timeoutSeconds` is unset or not positive (the API default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// The probe's timeout: `timeoutSeconds`, or [`DEFAULT_TIMEOUT`] when unset or not positive.
pub fn probe_timeout(probe: &Probe) -> Duration {
    probe
        .timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// Runs `probe` against `container` once, retrying up to [`MAX_PROBE_ATTEMPTS`] times in all
/// while the probe cannot be run ([`Outcome::Unknown`]); a failure is not retried.
///
/// `ports` are the container's declared ports (for named probe ports); `default_host` is
/// where `httpGet`, `tcpSocket` and `grpc` connect when the probe names no host: the pod IP,
/// or the node IP for host-network pods. Exec commands run as given: expanding `$(VAR)`
/// references from the container's static env is the caller's job.
pub async fn run_probe<R: Runtime>(
    rt: &R,
    probe: &Probe,
    container: &ContainerId,
    ports: &[ContainerPort],
    default_host: &str,
) -> Outcome {
    let timeout = probe_timeout(probe);
    let mut outcome = Outcome::Unknown("probe was not run".to_owned());
    for _ in 0..MAX_PROBE_ATTEMPTS {
        outcome = run_once(rt, probe, container, ports, default_host, timeout).await;
        if !matches!(outcome, Outcome::Unknown(_)) {
            break;
        }
    }
    outcome
}

async fn run_once<R: Runtime>(
    rt: &R,
    probe: &Probe,
    container: &ContainerId,
    ports: &[ContainerPort],
    default_host: &str,
    timeout: Duration,
) -> Outcome {
    // The kubelet's order; validation allows only one handler anyway.
    if let Some(action) = &probe.exec {
        let command = action.command.clone().unwrap_or_default();
        exec(rt, container, command, timeout).await
    } else if let Some(action) = &probe.http_get {
        http_get(action, ports, default_host, timeout).await
    } else if let Some(action) = &probe.tcp_socket {
        tcp_socket(action, ports, default_host, timeout).await
    } else if let Some(action) = &probe.grpc {
        grpc(action, default_host, timeout).await
    } else {
        Outcome::Unknown("probe has no handler".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, TCPSocketAction};

    use super::*;
    use crate::clock::Clock;
    use crate::runtime::{ExecOutput, FakeCall, FakeRuntime, RuntimeError};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn timeout_defaults_to_one_second() {
        assert_eq!(probe_timeout(&Probe::default()), Duration::from_secs(1));
        let probe = Probe {
            timeout_seconds: Some(5),
            ..Probe::default()
        };
        assert_eq!(probe_timeout(&probe), Duration::from_secs(5));
    }

    fn exec_probe(command: &[&str]) -> Probe {
        Probe {
            exec: Some(ExecAction {
                command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
            }),
            ..Probe::default()
        }
    }

    #[tokio::test]
    async fn probes_that_cannot_run_are_tried_three_times() {
        let rt = FakeRuntime::new(Clock::System);
        let id = ContainerId("gone".to_owned());
        let outcome = run_probe(&rt, &exec_probe(&["true"]), &id, &[], "127.0.0.1").await;
        assert!(matches!(outcome, Outcome::Unknown(_)), "{outcome:?}");
        let execs = rt
            .calls()
            .into_iter()
            .filter(|c| matches!(c, FakeCall::ExecSync(..)))
            .count();
        assert_eq!(execs, MAX_PROBE_ATTEMPTS);
    }

    #[tokio::test]
    async fn a_probe_error_followed_by_an_answer_yields_the_answer() {
        let rt = FakeRuntime::new(Clock::System);
        let id = crate::action::testing::running_container(&rt);
        rt.fail_next(
            "exec_sync",
            RuntimeError::Unavailable {
                method: "ExecSync",
                message: "connection reset".to_owned(),
            },
        );
        rt.set_exec_result(
            "check",
            ExecOutput {
                exit_code: 1,
                ..ExecOutput::default()
            },
        );
        let outcome = run_probe(&rt, &exec_probe(&["check"]), &id, &[], "127.0.0.1").await;
        assert!(matches!(outcome, Outcome::Failure(_)), "{outcome:?}");
        assert_eq!(rt.calls().len(), 2);
    }

    #[tokio::test]
    async fn failures_are_not_retried() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap().port();
        drop(listener);
        let probe = Probe {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::Int(i32::from(closed)),
            }),
            ..Probe::default()
        };
        let rt = FakeRuntime::new(Clock::System);
        let outcome = run_probe(&rt, &probe, &ContainerId("c".to_owned()), &[], "127.0.0.1").await;
        assert!(matches!(outcome, Outcome::Failure(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_probe_without_a_handler_cannot_run() {
        let rt = FakeRuntime::new(Clock::System);
        let outcome = run_probe(
            &rt,
            &Probe::default(),
            &ContainerId("c".to_owned()),
            &[],
            "127.0.0.1",
        )
        .await;
        assert_eq!(outcome, Outcome::Unknown("probe has no handler".to_owned()));
    }
}

//! Probes (liveness, readiness, startup) and lifecycle hooks, with the kubelet's semantics
//! (`pkg/kubelet/prober`, `pkg/probe/{http,tcp,grpc,exec}`, `pkg/kubelet/lifecycle`).
//!
//! Two halves, kept apart:
//!
//! * The IO edge runs one probe and says how it went: [`run_probe`] dispatches to
//!   [`http_get`], [`tcp_socket`], [`grpc`] or [`exec`] and returns a [`ProbeOutcome`].
//!   [`run_handler`] runs a `postStart`/`preStop` hook. These functions hold no state and
//!   never decide anything about the container.
//! * [`ProbeWorker`] is pure (no IO, no clock reads): fed outcomes and the times they were
//!   taken, it says when the next probe is due and which [`ProbeResult`] to publish, after
//!   the thresholds.
//!
//! Nothing here schedules timers, restarts containers or writes status: the caller owns one
//! worker per (container instance, [`ProbeKind`]), sleeps until [`ProbeWorker::next_due`],
//! runs the probe and acts on what [`ProbeWorker::record`] publishes.

mod exec;
mod grpc;
mod hook;
mod http;
mod manager;
mod tcp;
#[cfg(test)]
mod testing;
mod tls;
mod url;
mod worker;

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use thiserror::Error;

use crate::runtime::{ContainerId, Runtime};

pub use exec::exec;
pub use grpc::grpc;
pub use hook::{HookError, run_handler};
pub use http::{HttpError, http_get};
pub use manager::{ContainerProbeResults, ProbeResults, Prober, probe_host};
pub use tcp::tcp_socket;
pub use worker::{ProbeCounts, ProbeKind, ProbeResult, ProbeWorker, container_started};

/// How many times [`run_probe`] runs a probe that could not be run ([`ProbeOutcome::Unknown`])
/// before giving up (the kubelet's `maxProbeRetries`).
pub const MAX_PROBE_ATTEMPTS: usize = 3;

/// The probe timeout when `timeoutSeconds` is unset or not positive (the API default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a probe checks, in words: `GET https://192.168.1.10:6443/livez`, `TCP 10.88.0.5:80`,
/// `gRPC 10.88.0.5:9000`, `exec [test -f /ready]`. For status output and tests.
pub fn describe_target(probe: &Probe, ports: &[ContainerPort], default_host: &str) -> String {
    if let Some(h) = &probe.http_get {
        return match http::Request::new(h, ports, default_host, http::Purpose::Probe) {
            Ok(req) => format!("GET {}", req.target()),
            Err(e) => format!("GET (invalid: {e})"),
        };
    }
    if let Some(t) = &probe.tcp_socket {
        return match resolve_port(&t.port, ports) {
            Ok(port) => format!(
                "TCP {}",
                join_host_port(t.host.as_deref().unwrap_or(default_host), port)
            ),
            Err(e) => format!("TCP (invalid: {e})"),
        };
    }
    if let Some(g) = &probe.grpc {
        let port = u16::try_from(g.port).unwrap_or(0);
        return format!("gRPC {}", join_host_port(default_host, port));
    }
    if let Some(e) = &probe.exec {
        return format!("exec {:?}", e.command.clone().unwrap_or_default());
    }
    "no handler".to_owned()
}

/// How one probe went (the kubelet's `probe.Result` with its output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The container is healthy.
    Success,
    /// Healthy, with something worth telling (an HTTP redirect that was not followed).
    /// Counts as a success.
    Warning(String),
    /// The container answered, or failed to answer, in a way that means unhealthy.
    Failure(String),
    /// The probe itself could not be run (bad port name, runtime error). The kubelet retries
    /// these and then discards them rather than counting them as failures.
    Unknown(String),
}

impl ProbeOutcome {
    /// Whether this counts as a success ([`Success`](Self::Success) or
    /// [`Warning`](Self::Warning)).
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeOutcome::Success | ProbeOutcome::Warning(_))
    }

    /// The human message; empty for a plain success.
    pub fn message(&self) -> &str {
        match self {
            ProbeOutcome::Success => "",
            ProbeOutcome::Warning(m) | ProbeOutcome::Failure(m) | ProbeOutcome::Unknown(m) => m,
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Success => f.write_str("success"),
            ProbeOutcome::Warning(m) => write!(f, "success with warning: {m}"),
            ProbeOutcome::Failure(m) => write!(f, "failure: {m}"),
            ProbeOutcome::Unknown(m) => write!(f, "error: {m}"),
        }
    }
}

/// A probe or hook port that does not name a usable port.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PortError {
    /// A name that none of the container's ports carries.
    #[error("port {0:?} not found in the container's ports")]
    UnknownName(String),
    /// A number outside 1..=65535.
    #[error("invalid port number {0}")]
    OutOfRange(i64),
}

/// Resolves a probe or hook port: a number, or the name of one of the container's ports.
/// Like the kubelet, a name that matches no port is tried as a number last.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Result<u16, PortError> {
    let number = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => {
            match ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
            {
                Some(p) => i64::from(p.container_port),
                None => name
                    .parse::<i64>()
                    .map_err(|_| PortError::UnknownName(name.clone()))?,
            }
        }
    };
    u16::try_from(number)
        .ok()
        .filter(|n| *n > 0)
        .ok_or(PortError::OutOfRange(number))
}

/// The probe's timeout: `timeoutSeconds`, or [`DEFAULT_TIMEOUT`] when unset or not positive.
pub fn probe_timeout(probe: &Probe) -> Duration {
    probe
        .timeout_seconds
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs)
}

/// Runs `probe` against `container` once, retrying up to [`MAX_PROBE_ATTEMPTS`] times in all
/// while the probe cannot be run ([`ProbeOutcome::Unknown`]); a failure is not retried.
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
) -> ProbeOutcome {
    let timeout = probe_timeout(probe);
    let mut outcome = ProbeOutcome::Unknown("probe was not run".to_owned());
    for _ in 0..MAX_PROBE_ATTEMPTS {
        outcome = run_once(rt, probe, container, ports, default_host, timeout).await;
        if !matches!(outcome, ProbeOutcome::Unknown(_)) {
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
) -> ProbeOutcome {
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
        ProbeOutcome::Unknown("probe has no handler".to_owned())
    }
}

/// `host` or, when unset or empty, `default_host`.
fn host_or<'a>(host: Option<&'a str>, default_host: &'a str) -> &'a str {
    host.filter(|h| !h.is_empty()).unwrap_or(default_host)
}

/// `host:port`, with an IPv6 literal in brackets (Go's `net.JoinHostPort`).
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

use crate::chain::chain as error_chain;

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ExecAction, TCPSocketAction};

    use super::*;
    use crate::clock::Clock;
    use crate::runtime::{ExecOutput, FakeCall, FakeRuntime, RuntimeError};

    fn port(name: &str, number: i32) -> ContainerPort {
        ContainerPort {
            name: Some(name.to_owned()),
            container_port: number,
            ..ContainerPort::default()
        }
    }

    #[test]
    fn numeric_ports_resolve_to_themselves() {
        assert_eq!(resolve_port(&IntOrString::Int(8080), &[]), Ok(8080));
    }

    #[test]
    fn named_ports_resolve_through_the_container_ports() {
        let ports = [port("metrics", 9090), port("http", 8080)];
        assert_eq!(
            resolve_port(&IntOrString::String("http".to_owned()), &ports),
            Ok(8080)
        );
    }

    #[test]
    fn unknown_port_names_are_an_error_naming_the_port() {
        let err = resolve_port(
            &IntOrString::String("admin".to_owned()),
            &[port("http", 80)],
        )
        .unwrap_err();
        assert_eq!(err, PortError::UnknownName("admin".to_owned()));
        assert!(err.to_string().contains("\"admin\""));
    }

    #[test]
    fn numeric_strings_are_ports_when_no_name_matches() {
        assert_eq!(
            resolve_port(&IntOrString::String("8443".to_owned()), &[]),
            Ok(8443)
        );
    }

    #[test]
    fn ports_outside_the_valid_range_are_rejected() {
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &[]),
            Err(PortError::OutOfRange(0))
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70_000), &[]),
            Err(PortError::OutOfRange(70_000))
        );
    }

    #[test]
    fn warnings_count_as_success_and_unknowns_do_not() {
        assert!(ProbeOutcome::Success.is_success());
        assert!(ProbeOutcome::Warning("redirect".to_owned()).is_success());
        assert!(!ProbeOutcome::Failure("500".to_owned()).is_success());
        assert!(!ProbeOutcome::Unknown("no runtime".to_owned()).is_success());
        assert_eq!(ProbeOutcome::Failure("500".to_owned()).message(), "500");
    }

    #[test]
    fn timeout_defaults_to_one_second() {
        assert_eq!(probe_timeout(&Probe::default()), Duration::from_secs(1));
        let probe = Probe {
            timeout_seconds: Some(5),
            ..Probe::default()
        };
        assert_eq!(probe_timeout(&probe), Duration::from_secs(5));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("[::1]", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
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
        assert!(matches!(outcome, ProbeOutcome::Unknown(_)), "{outcome:?}");
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
        let id = testing::running_container(&rt);
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
        assert!(matches!(outcome, ProbeOutcome::Failure(_)), "{outcome:?}");
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
        assert!(matches!(outcome, ProbeOutcome::Failure(_)), "{outcome:?}");
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
        assert_eq!(
            outcome,
            ProbeOutcome::Unknown("probe has no handler".to_owned())
        );
    }
}

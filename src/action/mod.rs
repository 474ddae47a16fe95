//! The actions that probes and lifecycle hooks share (`pkg/probe/{http,tcp,grpc,exec}`,
//! `pkg/kubelet/lifecycle`): run a command in the container, an HTTP GET, a TCP connect, a
//! gRPC health check, a sleep. Each runs once and says how it went; none holds state or
//! decides anything about the container. `probe` schedules them as probes; the executor runs
//! them as `postStart`/`preStop` hooks.

mod exec;
mod grpc;
mod hook;
mod http;
mod tcp;
#[cfg(test)]
pub(crate) mod testing;
mod tls;
mod url;

use std::fmt;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use thiserror::Error;

pub use exec::exec;
pub use grpc::grpc;
pub use hook::{HookError, run_handler};
pub use http::{HttpError, http_get};
pub use tcp::tcp_socket;

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
pub enum Outcome {
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

impl Outcome {
    /// Whether this counts as a success ([`Success`](Self::Success) or
    /// [`Warning`](Self::Warning)).
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Success | Outcome::Warning(_))
    }

    /// The human message; empty for a plain success.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Success => "",
            Outcome::Warning(m) | Outcome::Failure(m) | Outcome::Unknown(m) => m,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Success => f.write_str("success"),
            Outcome::Warning(m) => write!(f, "success with warning: {m}"),
            Outcome::Failure(m) => write!(f, "failure: {m}"),
            Outcome::Unknown(m) => write!(f, "error: {m}"),
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

/// `host` or, when unset or empty, `default_host`.
pub(crate) fn host_or<'a>(host: Option<&'a str>, default_host: &'a str) -> &'a str {
    host.filter(|h| !h.is_empty()).unwrap_or(default_host)
}

/// `host:port`, with an IPv6 literal in brackets (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

use crate::chain::chain as error_chain;

#[cfg(test)]
mod tests {

    use super::*;

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
        assert!(Outcome::Success.is_success());
        assert!(Outcome::Warning("redirect".to_owned()).is_success());
        assert!(!Outcome::Failure("500".to_owned()).is_success());
        assert!(!Outcome::Unknown("no runtime".to_owned()).is_success());
        assert_eq!(Outcome::Failure("500".to_owned()).message(), "500");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(join_host_port("::1", 80), "[::1]:80");
        assert_eq!(join_host_port("[::1]", 80), "[::1]:80");
        assert_eq!(join_host_port("10.0.0.1", 80), "10.0.0.1:80");
    }
}

//! TCP socket probes (`pkg/probe/tcp`): connecting within the timeout is a success.
//!
//! Also the dialer the HTTP probes use. Nothing is sent on the connection.

use std::io;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, TCPSocketAction};
use tokio::net::TcpStream;

use super::{Outcome, host_or, join_host_port, resolve_port};

/// Probes `action`: a TCP connection to its host (or `default_host`) and port, which may name
/// one of the container's `ports`, within `timeout`.
pub async fn tcp_socket(
    action: &TCPSocketAction,
    ports: &[ContainerPort],
    default_host: &str,
    timeout: Duration,
) -> Outcome {
    let port = match resolve_port(&action.port, ports) {
        Ok(port) => port,
        Err(e) => return Outcome::Unknown(e.to_string()),
    };
    let host = host_or(action.host.as_deref(), default_host);
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, dial(host, port)).await {
        Ok(Ok(_stream)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: timeout after {timeout:?}")),
    }
}

/// Opens a TCP connection to `host` (a name, an IPv4 or an unbracketed IPv6 address) and
/// `port`, trying each address the name resolves to.
pub(super) async fn dial(host: &str, port: u16) -> io::Result<TcpStream> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    TcpStream::connect((host, port)).await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use tokio::net::TcpListener;

    use super::*;

    fn action(port: IntOrString) -> TCPSocketAction {
        TCPSocketAction { host: None, port }
    }

    #[tokio::test]
    async fn a_listening_port_is_a_success() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let outcome = tcp_socket(
            &action(IntOrString::Int(i32::from(port))),
            &[],
            "127.0.0.1",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome, Outcome::Success);
    }

    #[tokio::test]
    async fn a_named_port_is_looked_up_in_the_container_ports() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = [ContainerPort {
            name: Some("db".to_owned()),
            container_port: i32::from(port),
            ..ContainerPort::default()
        }];
        let outcome = tcp_socket(
            &action(IntOrString::String("db".to_owned())),
            &ports,
            "127.0.0.1",
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(outcome, Outcome::Success);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let outcome = tcp_socket(
            &action(IntOrString::Int(i32::from(port))),
            &[],
            "127.0.0.1",
            Duration::from_secs(5),
        )
        .await;
        let Outcome::Failure(message) = outcome else {
            panic!("expected a failure, got {outcome:?}");
        };
        assert!(
            message.starts_with(&format!("dial tcp 127.0.0.1:{port}: ")),
            "{message}"
        );
    }

    #[tokio::test]
    async fn the_probe_host_overrides_the_default_host() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let action = TCPSocketAction {
            host: Some("127.0.0.1".to_owned()),
            port: IntOrString::Int(i32::from(port)),
        };
        let outcome = tcp_socket(&action, &[], "192.0.2.1", Duration::from_secs(5)).await;
        assert_eq!(outcome, Outcome::Success);
    }

    #[tokio::test]
    async fn an_unknown_port_name_cannot_be_probed() {
        let outcome = tcp_socket(
            &action(IntOrString::String("db".to_owned())),
            &[],
            "127.0.0.1",
            Duration::from_secs(1),
        )
        .await;
        assert!(
            matches!(&outcome, Outcome::Unknown(m) if m.contains("\"db\"")),
            "{outcome:?}"
        );
    }
}

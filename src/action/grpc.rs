//! gRPC probes (`pkg/probe/grpc`): `grpc.health.v1.Health/Check` over plaintext HTTP/2;
//! only `SERVING` is a success. Messages follow the kubelet's.

use std::time::Duration;

use k8s_openapi::api::core::v1::GRPCAction;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use super::{Outcome, error_chain, join_host_port};

/// Probes `action` on `host` (the pod IP; gRPC probes name no host): a health check of its
/// `service` (empty: the whole server), connection and call within `timeout`.
pub async fn grpc(action: &GRPCAction, host: &str, timeout: Duration) -> Outcome {
    let Some(port) = u16::try_from(action.port).ok().filter(|p| *p > 0) else {
        return Outcome::Unknown(format!("invalid port number {}", action.port));
    };
    let addr = join_host_port(host.trim_start_matches('[').trim_end_matches(']'), port);
    let endpoint = match Endpoint::from_shared(format!("http://{addr}"))
        .and_then(|e| e.user_agent("kube-probe/1.34"))
    {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            ));
        }
    };
    let deadline = Instant::now() + timeout;
    let channel = match tokio::time::timeout_at(deadline, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            ));
        }
        Err(_) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {timeout:?}"
            ));
        }
    };
    let request = HealthCheckRequest {
        service: action.service.clone().unwrap_or_default(),
    };
    let mut client = HealthClient::new(channel);
    let status = match tokio::time::timeout_at(deadline, client.check(request)).await {
        Ok(Ok(response)) => response.into_inner().status,
        Ok(Err(status)) => return rpc_failure(&status, timeout),
        Err(_) => return rpc_timeout(timeout),
    };
    match ServingStatus::try_from(status) {
        Ok(ServingStatus::Serving) => Outcome::Success,
        Ok(other) => Outcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            other.as_str_name()
        )),
        Err(_) => Outcome::Failure(format!("service unhealthy (responded with {status})")),
    }
}

fn rpc_timeout(timeout: Duration) -> Outcome {
    Outcome::Failure(format!(
        "timeout: health rpc did not complete within {timeout:?}"
    ))
}

fn rpc_failure(status: &tonic::Status, timeout: Duration) -> Outcome {
    match status.code() {
        Code::Unimplemented => Outcome::Failure(format!(
            "error: this server does not implement the grpc health protocol \
             (grpc.health.v1.Health): {}",
            status.message()
        )),
        Code::DeadlineExceeded => rpc_timeout(timeout),
        code => Outcome::Failure(format!(
            "error: health rpc probe failed: code = {code:?} desc = {}",
            status.message()
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tonic::transport::Server;
    use tonic::transport::server::TcpIncoming;

    use super::*;
    use crate::action::testing::{reply, serve};

    /// A gRPC health server on 127.0.0.1 where "" is serving, "up" is serving and "down" is
    /// not.
    async fn health_server() -> SocketAddr {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("up", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", tonic_health::ServingStatus::NotServing)
            .await;
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = incoming.local_addr().unwrap();
        tokio::spawn(async move {
            // The reporter must live as long as the server.
            let _reporter = reporter;
            Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
        });
        addr
    }

    fn action(port: u16, service: Option<&str>) -> GRPCAction {
        GRPCAction {
            port: i32::from(port),
            service: service.map(str::to_owned),
        }
    }

    async fn probe(port: u16, service: Option<&str>) -> Outcome {
        grpc(&action(port, service), "127.0.0.1", Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn a_serving_server_is_a_success() {
        let addr = health_server().await;
        assert_eq!(probe(addr.port(), None).await, Outcome::Success);
    }

    #[tokio::test]
    async fn a_serving_service_is_a_success() {
        let addr = health_server().await;
        assert_eq!(probe(addr.port(), Some("up")).await, Outcome::Success);
    }

    #[tokio::test]
    async fn a_service_not_serving_is_a_failure_naming_the_status() {
        let addr = health_server().await;
        assert_eq!(
            probe(addr.port(), Some("down")).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".to_owned())
        );
    }

    #[tokio::test]
    async fn an_unknown_service_is_a_failure() {
        let addr = health_server().await;
        let outcome = probe(addr.port(), Some("missing")).await;
        assert!(
            matches!(&outcome, Outcome::Failure(m) if m.contains("NotFound")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let outcome = probe(port, None).await;
        assert!(
            matches!(&outcome, Outcome::Failure(m) if m.starts_with("error: failed to connect")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_server_without_the_health_service_is_a_failure() {
        // An HTTP/1 server: the HTTP/2 handshake or the call fails.
        let (addr, _) = serve(|_| async { reply(200, &[], "") }).await;
        let outcome = probe(addr.port(), None).await;
        assert!(matches!(outcome, Outcome::Failure(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn an_invalid_port_cannot_be_probed() {
        let outcome = grpc(&action(0, None), "127.0.0.1", Duration::from_secs(1)).await;
        assert!(matches!(outcome, Outcome::Unknown(_)));
    }
}

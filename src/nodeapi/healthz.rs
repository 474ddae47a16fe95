//! The kubelet's plain-HTTP healthz (`healthzBindAddress:healthzPort`, 127.0.0.1:10248):
//! `kubeadm init` waits on it. `/healthz` answers `ok` while the loops make progress. A port
//! that cannot be bound is retried, as the kubelet does, without stopping anything else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::get;
use http::Response;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::answer::syncloop;
use crate::api::ApiState;

/// How long to wait before binding again.
const RETRY: Duration = Duration::from_secs(5);

async fn healthz(State(api): State<Arc<ApiState>>) -> Response<Body> {
    syncloop(&api)
}

/// Serves `/healthz` at `addr` until `token` is cancelled.
pub async fn serve_healthz(addr: SocketAddr, api: Arc<ApiState>, token: CancellationToken) {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .with_state(api);
    let mut warned = false;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                info!(%addr, "healthz listening");
                let served = axum::serve(listener, router.clone())
                    .with_graceful_shutdown(token.clone().cancelled_owned())
                    .await;
                if let Err(e) = served {
                    warn!(%addr, error = %e, "healthz server stopped");
                }
                if token.is_cancelled() {
                    return;
                }
            }
            Err(e) if !warned => {
                warn!(%addr, error = %e, "healthz: cannot listen; retrying every 5s");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

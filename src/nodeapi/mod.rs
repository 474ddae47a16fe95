//! The kubelet's node API: what kube-apiserver, kubectl (`logs`, `exec`, `attach`,
//! `port-forward`, `top`), metrics-server and Prometheus expect on a node's port 10250, served
//! for podvisor's static pods, and the kubelet's plain-HTTP healthz (127.0.0.1:10248).
//!
//! * `route` (pure): the kubelet's paths, and the `nodes/<subresource>` checks each needs.
//! * `auth`: client certificate, TokenReview and anonymous authentication; Webhook
//!   authorization with the kubelet's caches. `review`: the reviews, through the API server.
//! * `tls`: serving certificate (given or self-signed), client CA.
//! * `lookup` (pure): the pod or container a path names, from the published status.
//! * `handlers`: one per endpoint, answering through `answer` (text, JSON, the syncloop
//!   check the plain healthz shares). `logs`: `/containerLogs` over the CRI log files.
//!   `proxy`: exec, attach and port-forward joined to the runtime's streaming server.
//!   `stats` (pure, over `health::usage`): `/stats/summary` and `/metrics/resource`.
//! * `server`: the HTTPS listener, bounded in connections, streams, header size and time.
//!   `healthz`: the plain-HTTP one.
//!
//! It only reads what the loops publish and asks the runtime; the reconcile loop never waits
//! on it.

mod answer;
mod auth;
mod handlers;
mod healthz;
pub mod logs;
mod lookup;
mod proxy;
mod review;
pub mod route;
mod server;
mod stats;
mod tls;

use std::sync::Arc;

use tokio::sync::Semaphore;

pub use auth::{
    ANONYMOUS_USER, Auth, AuthSettings, Credential, Decision, Identity, Mode, Refusal, Review,
    ReviewError, Reviewer,
};
pub use healthz::serve_healthz;
pub use review::KubeReviewer;
pub use server::{Limits, NodeApiServer};
pub use tls::{ClientCa, ServingCert, TlsError, self_signed, server_config, serving_config};

use crate::api::ApiState;
use crate::clock::Timestamp;
use crate::health::usage::NodeSampler;

/// What the node API reads and asks.
pub struct NodeApi<R> {
    /// The runtime (exec, attach, port-forward, usage, `/run`).
    pub runtime: Arc<R>,
    /// The published state, as the status API reads it.
    pub state: Arc<ApiState>,
    /// Authentication and authorization.
    pub auth: Auth,
    /// The node's name.
    pub node: String,
    /// When podvisor started.
    pub started: Timestamp,
    /// Streaming sessions (exec, attach, port-forward) that may run at once.
    pub streams: Arc<Semaphore>,
    /// Verifies client certificates.
    pub client_ca: ClientCa,
    sampler: NodeSampler,
}

impl<R> NodeApi<R> {
    /// A node API over `runtime` and the published `state`; at most `streams` streaming
    /// sessions at once.
    pub fn new(
        runtime: Arc<R>,
        state: Arc<ApiState>,
        auth: Auth,
        client_ca: ClientCa,
        node: String,
        streams: usize,
    ) -> NodeApi<R> {
        let started = state.clock.now();
        NodeApi {
            runtime,
            state,
            auth,
            node,
            started,
            streams: Arc::new(Semaphore::new(streams)),
            client_ca,
            sampler: NodeSampler::default(),
        }
    }
}

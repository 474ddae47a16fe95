//! The HTTP side of the status API: routing GET requests to views, over unix and TCP listeners.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::gauges::gauges;
use super::listen::Listeners;
use super::views;
use crate::clock::{Clock, Timestamp};
use crate::manifest::Snapshot;
use crate::metrics::Metrics;
use crate::mirror::MirrorState;
use crate::reconcile::ReconcileState;
use crate::status::NodeStatus;

/// When the manifest watcher last tried a scan, to tell a live loop from a stuck one.
pub type Heartbeat = watch::Receiver<Timestamp>;

/// What the API reads from.
#[derive(Clone)]
pub struct ApiState {
    /// Every pod's status.
    pub status: watch::Receiver<Arc<NodeStatus>>,
    /// Manifest snapshots.
    pub snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    /// The reconciler's state.
    pub reconcile: watch::Receiver<Arc<ReconcileState>>,
    /// The mirror task's state, when mirroring is on.
    pub mirror: Option<watch::Receiver<MirrorState>>,
    /// The manifest watcher's last scan attempt.
    pub scans: Heartbeat,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Pod log directory (for log paths in views).
    pub pod_log_dir: PathBuf,
    /// The node name (to find pods by manifest name).
    pub node: String,
    /// How long the reconciler may go without a pass before it counts as stuck.
    pub reconcile_stall: Duration,
    /// How long the watcher may go without a scan before it counts as stuck.
    pub scan_stall: Duration,
    /// Time.
    pub clock: Clock,
}

type Body = Full<Bytes>;

fn reply(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = code;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn json(code: StatusCode, value: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            reply(code, "application/json", bytes)
        }
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            e.to_string(),
        ),
    }
}

fn error(code: StatusCode, message: String) -> Response<Body> {
    json(code, &serde_json::json!({ "error": message }))
}

impl ApiState {
    /// `Err(reason)` when a loop looks stuck.
    fn health(&self) -> Result<(), String> {
        let now = self.clock.now();
        let state = self.reconcile.borrow().clone();
        if state.passes > 0 && now.since(state.last_pass) > self.reconcile_stall {
            return Err(format!(
                "reconcile loop has not run for {:?}",
                now.since(state.last_pass)
            ));
        }
        let scanned = *self.scans.borrow();
        if scanned.0 > 0 && now.since(scanned) > self.scan_stall {
            return Err(format!(
                "manifest watcher has not scanned for {:?}",
                now.since(scanned)
            ));
        }
        Ok(())
    }

    fn readiness(&self) -> Result<(), String> {
        let state = self.reconcile.borrow().clone();
        if let Some(e) = &state.runtime_error {
            return Err(format!("container runtime unreachable: {e}"));
        }
        if !state.synced {
            return Err("first full reconcile not done yet".to_owned());
        }
        Ok(())
    }

    /// Answers one request. Pure apart from reading the channels.
    pub fn route(&self, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{method} is not allowed: the status API is read-only"),
            );
        }
        let path = path.trim_end_matches('/');
        match path {
            "/healthz" => match self.health() {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n"),
                Err(e) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{e}\n"),
                ),
            },
            "/readyz" => match self.readiness() {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n"),
                Err(e) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("{e}\n"),
                ),
            },
            "/pods" => {
                let status = self.status.borrow().clone();
                let state = self.reconcile.borrow().clone();
                json(
                    StatusCode::OK,
                    &views::pod_views(&status, &state, &self.pod_log_dir),
                )
            }
            "/manifests" => {
                let snapshot = self.snapshots.borrow().clone();
                json(StatusCode::OK, &views::manifest_views(snapshot.as_deref()))
            }
            "/mirror" => match &self.mirror {
                Some(m) => json(StatusCode::OK, &m.borrow().to_json()),
                None => json(StatusCode::OK, &MirrorState::default().to_json()),
            },
            "/metrics" => {
                let status = self.status.borrow().clone();
                let snapshot = self.snapshots.borrow().clone();
                let mirror = self.mirror.as_ref().map(|m| m.borrow().clone());
                let text =
                    self.metrics
                        .render(&gauges(&status, snapshot.as_deref(), mirror.as_ref()));
                reply(
                    StatusCode::OK,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            }
            p if p.starts_with("/pods/") => {
                let wanted = &p["/pods/".len()..];
                let status = self.status.borrow().clone();
                match views::find(&status, wanted, &self.node) {
                    Some(report) => {
                        let state = self.reconcile.borrow().clone();
                        json(
                            StatusCode::OK,
                            &views::pod_detail(report, &state, &self.pod_log_dir),
                        )
                    }
                    None => error(StatusCode::NOT_FOUND, format!("no static pod {wanted:?}")),
                }
            }
            _ => error(
                StatusCode::NOT_FOUND,
                format!(
                    "no such endpoint {path:?}: try /pods, /manifests, /mirror, /healthz, /readyz, /metrics"
                ),
            ),
        }
    }
}

async fn handle(
    state: Arc<ApiState>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let decoded = percent_decode(&path);
    Ok(state.route(req.method(), &decoded))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Serves the API on the bound `listeners` until `shutdown`; dropping them on return removes
/// the socket.
pub async fn serve(
    state: ApiState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(state);
    let (unix, tcp) = (&listeners.unix, &listeners.tcp);
    loop {
        let accepted: Result<Box<dyn ConnIo>, std::io::Error> = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = unix.accept() => r.map(|(s, _)| Box::new(s) as Box<dyn ConnIo>),
            r = async { match tcp { Some(l) => l.accept().await, None => std::future::pending().await } } => r.map(|(s, _)| Box::new(s) as Box<dyn ConnIo>),
        };
        match accepted {
            Ok(io) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    if let Err(e) = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(io), svc)
                        .await
                    {
                        debug!(error = %e, "status API connection ended");
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "status API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    drop(listeners);
    Ok(())
}

/// A byte stream a connection is served on.
trait ConnIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> ConnIo for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::ReconcileState;

    fn state() -> (
        ApiState,
        watch::Sender<Arc<ReconcileState>>,
        watch::Sender<Timestamp>,
    ) {
        let (rtx, rrx) = watch::channel(Arc::new(ReconcileState::default()));
        let (stx, srx) = watch::channel(Timestamp(0));
        let api = ApiState {
            status: watch::channel(Arc::new(NodeStatus::default())).1,
            snapshots: watch::channel(None).1,
            reconcile: rrx,
            mirror: None,
            scans: srx,
            metrics: Arc::new(Metrics::new()),
            pod_log_dir: PathBuf::from("/var/log/pods"),
            node: "n1".into(),
            reconcile_stall: Duration::from_secs(5),
            scan_stall: Duration::from_secs(30),
            clock: Clock::System,
        };
        (api, rtx, stx)
    }

    #[test]
    fn readyz_waits_for_the_first_reconcile_and_a_reachable_runtime() {
        let (api, rtx, _s) = state();
        assert_eq!(
            api.route(&Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        rtx.send_replace(Arc::new(ReconcileState {
            synced: true,
            ..Default::default()
        }));
        assert_eq!(api.route(&Method::GET, "/readyz").status(), StatusCode::OK);
        rtx.send_replace(Arc::new(ReconcileState {
            synced: true,
            runtime_error: Some("gone".into()),
            ..Default::default()
        }));
        assert_eq!(
            api.route(&Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn healthz_fails_when_a_loop_stops_making_progress() {
        let (api, rtx, stx) = state();
        assert_eq!(api.route(&Method::GET, "/healthz").status(), StatusCode::OK);
        let now = Clock::System.now();
        rtx.send_replace(Arc::new(ReconcileState {
            passes: 3,
            last_pass: now,
            ..Default::default()
        }));
        stx.send_replace(now);
        assert_eq!(api.route(&Method::GET, "/healthz").status(), StatusCode::OK);
        rtx.send_replace(Arc::new(ReconcileState {
            passes: 3,
            last_pass: Timestamp(now.0 - 60_000_000_000),
            ..Default::default()
        }));
        assert_eq!(
            api.route(&Method::GET, "/healthz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn only_reads_are_allowed_and_unknown_paths_say_what_exists() {
        let (api, _r, _s) = state();
        assert_eq!(
            api.route(&Method::POST, "/pods").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            api.route(&Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            api.route(&Method::GET, "/pods/missing").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(api.route(&Method::GET, "/pods").status(), StatusCode::OK);
        assert_eq!(
            percent_decode("/pods/kube-system%2Fetcd-n1"),
            "/pods/kube-system/etcd-n1"
        );
    }
}

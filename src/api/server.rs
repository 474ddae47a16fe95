//! The HTTP side of the status API: an axum router of GET endpoints over views, served on the
//! unix socket and, when asked, a TCP address.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, ServiceExt};
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::applied::{AppliedView, ImageView};
use super::gauges::gauges;
use super::listen::Listeners;
use super::views;
use crate::clock::{Clock, Timestamp};
use crate::manifest::Snapshot;
use crate::metrics::Metrics;
use crate::mirror::MirrorState;
use crate::reconcile::ReconcileState;
use crate::runtime::{RuntimeError, RuntimeImage};
use crate::status::NodeStatus;

/// When the manifest watcher last tried a scan, to tell a live loop from a stuck one.
pub type Heartbeat = watch::Receiver<Timestamp>;

/// Asks the runtime for its images (the runtime's `list_images`, boxed: the API does not
/// know the runtime's type).
pub type ImageLister =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<RuntimeImage>, RuntimeError>> + Send + Sync>;

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
    /// The manifest directory.
    pub manifest_dir: PathBuf,
    /// The runtime's images, for `/images`; `None` answers 503.
    pub images: Option<ImageLister>,
    /// How long the reconciler may go without a pass before it counts as stuck.
    pub reconcile_stall: Duration,
    /// How long the watcher may go without a scan before it counts as stuck.
    pub scan_stall: Duration,
    /// Time.
    pub clock: Clock,
}

fn text(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

fn json(value: &impl Serialize) -> Response {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response()
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn error(code: StatusCode, message: String) -> Response {
    let mut resp = json(&serde_json::json!({ "error": message }));
    *resp.status_mut() = code;
    resp
}

impl ApiState {
    /// `Err(reason)` when a loop looks stuck.
    pub fn health(&self) -> Result<(), String> {
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
}

type Api = State<Arc<ApiState>>;

async fn healthz(State(api): Api) -> Response {
    match api.health() {
        Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn readyz(State(api): Api) -> Response {
    match api.readiness() {
        Ok(()) => text(StatusCode::OK, "ok\n".to_owned()),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn pods(State(api): Api) -> Response {
    let status = api.status.borrow().clone();
    let state = api.reconcile.borrow().clone();
    json(&views::pod_views(&status, &state, &api.pod_log_dir))
}

/// One pod, by `name`, `namespace/name` or its full name with the node suffix.
async fn pod(State(api): Api, Path(wanted): Path<String>) -> Response {
    let status = api.status.borrow().clone();
    match views::find(&status, &wanted, &api.node) {
        Some(report) => {
            let state = api.reconcile.borrow().clone();
            json(&views::pod_detail(report, &state, &api.pod_log_dir))
        }
        None => error(StatusCode::NOT_FOUND, format!("no static pod {wanted:?}")),
    }
}

async fn manifests(State(api): Api) -> Response {
    let snapshot = api.snapshots.borrow().clone();
    json(&views::manifest_views(snapshot.as_deref()))
}

/// What the daemon runs, for `podvisor diff`; 503 until the manifests are first read.
async fn applied(State(api): Api) -> Response {
    let Some(snapshot) = api.snapshots.borrow().clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the manifest directory has not been read yet".to_owned(),
        );
    };
    let observed = api.reconcile.borrow().observed.clone();
    json(&AppliedView::of(
        &snapshot,
        &observed,
        &api.node,
        &api.manifest_dir,
    ))
}

/// The images the runtime holds, asked now.
async fn images(State(api): Api) -> Response {
    let Some(list) = &api.images else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "images are not listed by this daemon".to_owned(),
        );
    };
    match list().await {
        Ok(images) => json(&images.iter().map(ImageView::of).collect::<Vec<_>>()),
        Err(e) => error(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

async fn mirror(State(api): Api) -> Response {
    match &api.mirror {
        Some(m) => json(&m.borrow().to_json()),
        None => json(&MirrorState::default().to_json()),
    }
}

impl ApiState {
    /// `/metrics` as Prometheus (OpenMetrics) text: the counters and this moment's gauges.
    pub fn metrics_text(&self) -> String {
        let status = self.status.borrow().clone();
        let snapshot = self.snapshots.borrow().clone();
        let mirror = self.mirror.as_ref().map(|m| m.borrow().clone());
        self.metrics
            .render(&gauges(&status, snapshot.as_deref(), mirror.as_ref()))
    }
}

/// The content type of [`ApiState::metrics_text`].
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn metrics(State(api): Api) -> Response {
    let body = api.metrics_text();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        body,
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint {:?}: try /pods, /manifests, /applied, /images, /mirror, /healthz, /readyz, /metrics",
            uri.path()
        ),
    )
}

async fn read_only(method: Method) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed: the status API is read-only"),
    )
}

/// The API's routes: GET (and HEAD) only.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/pods", get(pods))
        .route("/pods/{*pod}", get(pod))
        .route("/manifests", get(manifests))
        .route("/applied", get(applied))
        .route("/images", get(images))
        .route("/mirror", get(mirror))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(read_only)
        .with_state(Arc::new(state))
}

/// A path with its trailing slashes removed (`/pods/` is `/pods`), before routing.
fn without_trailing_slash<B>(mut req: Request<B>) -> Request<B> {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = Uri::try_from(rebuilt) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// Serves the API on the bound `listeners` until `shutdown`; the socket is removed on return
/// if it is still the one bound.
pub async fn serve(
    state: ApiState,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let Listeners { unix, tcp, guard } = listeners;
    let app =
        tower::ServiceExt::<Request<Body>>::map_request(router(state), without_trailing_slash);
    let stopped = {
        let shutdown = shutdown.clone();
        move || {
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        }
    };
    let on_unix = axum::serve(
        unix,
        ServiceExt::<Request<Body>>::into_make_service(app.clone()),
    )
    .with_graceful_shutdown(stopped());
    let result = match tcp {
        Some(tcp) => {
            let on_tcp = axum::serve(tcp, ServiceExt::<Request<Body>>::into_make_service(app))
                .with_graceful_shutdown(stopped());
            tokio::try_join!(on_unix.into_future(), on_tcp.into_future()).map(|_| ())
        }
        None => on_unix.await,
    };
    drop(guard);
    result
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt as _;

    use super::*;
    use crate::clock::{Clock, Timestamp};
    use crate::metrics::Metrics;
    use crate::reconcile::ReconcileState;
    use crate::status::NodeStatus;

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
            manifest_dir: PathBuf::from("/m"),
            images: None,
            reconcile_stall: Duration::from_secs(5),
            scan_stall: Duration::from_secs(30),
            clock: Clock::System,
        };
        (api, rtx, stx)
    }

    /// The status and body of `method path`, routed as the server routes it.
    async fn call(api: &ApiState, method: Method, path: &str) -> (StatusCode, String) {
        let app = tower::ServiceExt::<Request<Body>>::map_request(
            router(api.clone()),
            without_trailing_slash,
        );
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .expect("request");
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn readyz_waits_for_the_first_reconcile_and_a_reachable_runtime() {
        let (api, rtx, _s) = state();
        let ready = |api: &ApiState| {
            let api = api.clone();
            async move { call(&api, Method::GET, "/readyz").await.0 }
        };
        assert_eq!(ready(&api).await, StatusCode::SERVICE_UNAVAILABLE);
        rtx.send_replace(Arc::new(ReconcileState {
            synced: true,
            ..Default::default()
        }));
        assert_eq!(ready(&api).await, StatusCode::OK);
        rtx.send_replace(Arc::new(ReconcileState {
            synced: true,
            runtime_error: Some("gone".into()),
            ..Default::default()
        }));
        let (code, body) = call(&api, Method::GET, "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, "container runtime unreachable: gone\n");
    }

    #[tokio::test]
    async fn applied_and_images_say_when_they_cannot_answer_yet() {
        let (api, _r, _s) = state();
        let (code, body) = call(&api, Method::GET, "/applied").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("has not been read yet"), "{body}");
        assert_eq!(
            call(&api, Method::GET, "/images").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let (_tx, snapshots) = watch::channel(Some(Arc::new(Snapshot::default())));
        let lister: ImageLister = Arc::new(|| {
            Box::pin(async {
                Ok(vec![RuntimeImage {
                    id: "sha256:1".into(),
                    tags: vec!["docker.io/library/busybox:1.35".into()],
                    digests: vec![],
                    size: 1,
                    pinned: false,
                }])
            })
        });
        let api = ApiState {
            snapshots,
            images: Some(lister),
            ..api
        };
        let (code, body) = call(&api, Method::GET, "/applied").await;
        assert_eq!(code, StatusCode::OK);
        let view: AppliedView = serde_json::from_str(&body).expect("applied view");
        assert_eq!((view.node.as_str(), view.pods.len()), ("n1", 0));
        let (code, body) = call(&api, Method::GET, "/images").await;
        assert_eq!(code, StatusCode::OK);
        assert!(body.contains("docker.io/library/busybox:1.35"), "{body}");
    }

    #[tokio::test]
    async fn healthz_fails_when_a_loop_stops_making_progress() {
        let (api, rtx, stx) = state();
        assert_eq!(call(&api, Method::GET, "/healthz").await.0, StatusCode::OK);
        let now = Clock::System.now();
        rtx.send_replace(Arc::new(ReconcileState {
            passes: 3,
            last_pass: now,
            ..Default::default()
        }));
        stx.send_replace(now);
        assert_eq!(call(&api, Method::GET, "/healthz").await.0, StatusCode::OK);
        rtx.send_replace(Arc::new(ReconcileState {
            passes: 3,
            last_pass: Timestamp(now.0 - 60_000_000_000),
            ..Default::default()
        }));
        assert_eq!(
            call(&api, Method::GET, "/healthz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn only_reads_are_allowed_and_unknown_paths_say_what_exists() {
        let (api, _r, _s) = state();
        let (code, body) = call(&api, Method::POST, "/pods").await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
        assert!(
            body.contains("POST is not allowed: the status API is read-only"),
            "{body}"
        );
        let (code, body) = call(&api, Method::GET, "/nope").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(body.contains("try /pods, /manifests"), "{body}");
        let (code, body) = call(&api, Method::GET, "/pods/kube-system%2Fetcd").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(
            body.contains(r#"no static pod \"kube-system/etcd\""#),
            "{body}"
        );
        let (code, body) = call(&api, Method::GET, "/pods/kube-system/etcd").await;
        assert_eq!(code, StatusCode::NOT_FOUND);
        assert!(
            body.contains(r#"no static pod \"kube-system/etcd\""#),
            "{body}"
        );
        assert_eq!(call(&api, Method::GET, "/pods").await.0, StatusCode::OK);
        assert_eq!(call(&api, Method::GET, "/pods/").await.0, StatusCode::OK);
        assert_eq!(call(&api, Method::HEAD, "/metrics").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn the_api_answers_on_the_socket_and_tcp_and_removes_its_socket_on_shutdown() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("api.sock");
        let listeners = Listeners::bind(&socket, Some("127.0.0.1:0".parse().expect("addr")))
            .await
            .expect("bind");
        let addr = listeners
            .tcp
            .as_ref()
            .expect("tcp")
            .local_addr()
            .expect("addr");
        let (api, _r, _s) = state();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(api, listeners, shutdown.clone()));
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut answers = Vec::new();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        tcp.write_all(request).await.expect("write");
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.expect("read");
        answers.push(out);
        let mut unix = tokio::net::UnixStream::connect(&socket)
            .await
            .expect("unix");
        unix.write_all(request).await.expect("write");
        let mut out = String::new();
        unix.read_to_string(&mut out).await.expect("read");
        answers.push(out);
        for answer in &answers {
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
            assert!(answer.ends_with("ok\n"), "{answer}");
        }
        shutdown.cancel();
        server.await.expect("join").expect("served");
        assert!(!socket.exists(), "the socket is removed on shutdown");
    }
}

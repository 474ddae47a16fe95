//! One function per endpoint: find what the request names, ask the runtime or read the
//! published state, answer as the kubelet answers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::json;

use super::NodeApi;
use super::answer::{json, syncloop, text};
use super::lookup::{self, LookupError};
use super::proxy;
use super::route::{Check, ContainerRef, PodRef, Route, Stream};
use super::stats;
use crate::api::METRICS_CONTENT_TYPE;
use crate::runtime::{ContainerState, Runtime, RuntimeError, Stdio, Streaming};

/// Longest `/run` may take, as the kubelet's runtime request timeout.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest a usage query may take.
const USAGE_TIMEOUT: Duration = Duration::from_secs(10);

fn not_found(e: LookupError) -> Response<Body> {
    let code = match e {
        LookupError::NoPod(_) | LookupError::NoContainer { .. } => StatusCode::NOT_FOUND,
        LookupError::NotRunning { .. } | LookupError::NoSandbox(_) => StatusCode::BAD_REQUEST,
    };
    text(code, format!("{e}\n"))
}

fn runtime_error(e: RuntimeError) -> Response<Body> {
    let code = match e {
        RuntimeError::NotFound { .. } => StatusCode::NOT_FOUND,
        _ if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(code, format!("{e}\n"))
}

/// The values of query parameter `key`, percent-decoded.
pub fn params(query: Option<&str>, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn flag(query: Option<&str>, key: &str) -> bool {
    params(query, key)
        .first()
        .is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

fn allowed(method: &Method, route: &Route) -> bool {
    match route {
        Route::Stream(..) | Route::PortForward(_) => {
            matches!(*method, Method::GET | Method::POST)
        }
        Route::Run(_) => *method == Method::POST,
        _ => matches!(*method, Method::GET | Method::HEAD),
    }
}

/// 429: every streaming session slot is taken.
fn too_many_sessions() -> Response<Body> {
    text(
        StatusCode::TOO_MANY_REQUESTS,
        "too many streaming sessions\n",
    )
}

/// Looks something up in the latest published status and observation.
fn find<R, T>(
    api: &NodeApi<R>,
    f: impl FnOnce(&crate::status::NodeStatus, &crate::runtime::Observed) -> Result<T, LookupError>,
) -> Result<T, LookupError> {
    let status = api.state.status.borrow().clone();
    let state = api.state.reconcile.borrow().clone();
    f(&status, &state.observed)
}

/// Answers one authorized request.
pub async fn dispatch<R: Runtime + Streaming>(
    api: Arc<NodeApi<R>>,
    route: Route,
    req: Request<Incoming>,
) -> Response<Body> {
    if !allowed(req.method(), &route) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match route {
        Route::Healthz(check) => healthz(&api, check),
        Route::Pods => pods(&api),
        Route::RunningPods => running_pods(&api),
        Route::ContainerLogs(c) => container_logs(api, &c, req.uri().query()).await,
        Route::Stream(kind, c) => stream(&api, kind, &c, req).await,
        Route::PortForward(p) => port_forward(&api, &p, req).await,
        Route::Run(c) => run(&api, &c, req.uri().query()).await,
        Route::StatsSummary => summary(&api).await,
        Route::Metrics => {
            let mut resp = text(StatusCode::OK, api.state.metrics_text());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
            );
            resp
        }
        Route::MetricsResource => resource_metrics(&api).await,
    }
}

/// `/healthz`: `ping` and `log` answer while the server does; `syncloop` (and the whole)
/// fail when a loop stops making progress.
pub fn healthz<R>(api: &NodeApi<R>, check: Check) -> Response<Body> {
    match check {
        Check::Ping | Check::Log => text(StatusCode::OK, "ok"),
        Check::SyncLoop | Check::All => syncloop(&api.state),
    }
}

fn pods<R>(api: &NodeApi<R>) -> Response<Body> {
    let status = api.state.status.borrow().clone();
    let items: Vec<Pod> = status
        .pods
        .values()
        .map(|r| Pod {
            metadata: r.pod.metadata.clone(),
            spec: Some(r.pod.spec.clone()),
            status: Some(r.status.clone()),
        })
        .collect();
    json(&json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": items,
    }))
}

fn running_pods<R>(api: &NodeApi<R>) -> Response<Body> {
    let state = api.state.reconcile.borrow().clone();
    let mut pods: Vec<Pod> = Vec::new();
    for c in state
        .observed
        .containers
        .iter()
        .filter(|c| c.state == ContainerState::Running)
    {
        let container = Container {
            name: c.name.clone(),
            image: Some(c.image.clone()),
            ..Container::default()
        };
        match pods
            .iter_mut()
            .find(|p| p.metadata.uid.as_deref() == Some(c.uid.as_str()))
        {
            Some(p) => p
                .spec
                .get_or_insert_with(PodSpec::default)
                .containers
                .push(container),
            None => pods.push(Pod {
                metadata: ObjectMeta {
                    name: Some(c.key.name.clone()),
                    namespace: Some(c.key.namespace.clone()),
                    uid: Some(c.uid.as_str().to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..PodSpec::default()
                }),
                status: None,
            }),
        }
    }
    json(&json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": pods,
    }))
}

async fn container_logs<R: Runtime + Streaming>(
    api: Arc<NodeApi<R>>,
    c: &ContainerRef,
    query: Option<&str>,
) -> Response<Body> {
    let query = match super::logs::LogQuery::parse(query.unwrap_or("")) {
        Ok(q) => q,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    let status = api.state.status.borrow().clone();
    let state = api.state.reconcile.borrow().clone();
    let found = match lookup::container(&status, &state.observed, c) {
        Ok(f) => f,
        Err(e) => return not_found(e),
    };
    let instance = if query.previous {
        found.instances.previous
    } else {
        found.instances.current
    };
    let Some(instance) = instance else {
        let which = if query.previous {
            "previous terminated container"
        } else {
            "container"
        };
        return text(
            StatusCode::BAD_REQUEST,
            format!("{which} {:?} in pod {:?} not found\n", c.container, c.pod),
        );
    };
    let file = found
        .report
        .pod
        .log_file(&api.state.pod_log_dir, &instance.name, instance.attempt);
    let id = instance.id.clone();
    let watch = api.state.reconcile.clone();
    let still_running = move || {
        watch
            .borrow()
            .observed
            .containers
            .iter()
            .any(|x| x.id == id && x.state == ContainerState::Running)
    };
    let now = api.state.clock.now();
    // the kubelet answers 400 when the file cannot be opened; after this, trouble ends the body
    if let Err(e) = std::fs::File::open(&file) {
        return text(
            StatusCode::BAD_REQUEST,
            format!("cannot open log file {}: {e}\n", file.display()),
        );
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    tokio::spawn(async move {
        let running = move || {
            let now_running = still_running();
            async move { now_running }
        };
        match super::logs::stream(&file, &query, now, running, tx).await {
            Ok(summary) if summary.malformed_lines > 0 => tracing::debug!(
                file = %file.display(),
                skipped = summary.malformed_lines,
                "node API: malformed log lines skipped"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %crate::chain::chain(&e), "node API: container log"),
        }
    });
    let chunks = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<_, std::convert::Infallible>))
    });
    let mut resp = Response::new(Body::from_stream(chunks));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// The streams a session asks for, in the kubelet's parameters (`input`, `output`, `error`,
/// `tty`, each `1` when wanted), as kube-apiserver sends them.
fn stdio(query: Option<&str>) -> Stdio {
    let tty = flag(query, "tty");
    Stdio {
        stdin: flag(query, "input"),
        stdout: flag(query, "output"),
        // a terminal merges stderr into stdout, as the kubelet's options do
        stderr: flag(query, "error") && !tty,
        tty,
    }
}

async fn stream<R: Runtime + Streaming>(
    api: &NodeApi<R>,
    kind: Stream,
    c: &ContainerRef,
    req: Request<Incoming>,
) -> Response<Body> {
    let query = req.uri().query().map(str::to_owned);
    let io = stdio(query.as_deref());
    if !(io.stdin || io.stdout || io.stderr) {
        return text(
            StatusCode::BAD_REQUEST,
            "you must specify at least 1 of stdin, stdout, stderr\n",
        );
    }
    let command = params(query.as_deref(), "command");
    if kind == Stream::Exec && command.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify a command\n");
    }
    let Ok(permit) = api.streams.clone().try_acquire_owned() else {
        return too_many_sessions();
    };
    let id = match find(api, |status, observed| {
        lookup::running(status, observed, c).map(|x| x.id.clone())
    }) {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    let url = match kind {
        Stream::Exec => api.runtime.exec_url(&id, command, io).await,
        Stream::Attach => api.runtime.attach_url(&id, io).await,
    };
    match url {
        Ok(url) => proxy::upgrade(req, &url, permit).await,
        Err(e) => runtime_error(e),
    }
}

async fn port_forward<R: Runtime + Streaming>(
    api: &NodeApi<R>,
    p: &PodRef,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut ports = Vec::new();
    for value in params(req.uri().query(), "port") {
        for one in value.split(',').filter(|s| !s.is_empty()) {
            match one.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(i32::from(port)),
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("unable to parse {one:?} as a port\n"),
                    );
                }
            }
        }
    }
    let Ok(permit) = api.streams.clone().try_acquire_owned() else {
        return too_many_sessions();
    };
    let sandbox = match find(api, |status, observed| {
        lookup::sandbox(status, observed, p).map(|s| s.id.clone())
    }) {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    match api.runtime.port_forward_url(&sandbox, ports).await {
        Ok(url) => proxy::upgrade(req, &url, permit).await,
        Err(e) => runtime_error(e),
    }
}

async fn run<R: Runtime + Streaming>(
    api: &NodeApi<R>,
    c: &ContainerRef,
    query: Option<&str>,
) -> Response<Body> {
    let cmd: Vec<String> = params(query, "cmd")
        .iter()
        .flat_map(|c| c.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if cmd.is_empty() {
        return text(StatusCode::BAD_REQUEST, "you must specify a cmd\n");
    }
    let id = match find(api, |status, observed| {
        lookup::running(status, observed, c).map(|x| x.id.clone())
    }) {
        Ok(id) => id,
        Err(e) => return not_found(e),
    };
    match api.runtime.exec_sync(&id, cmd, RUN_TIMEOUT).await {
        Ok(out) => {
            let mut body = out.stdout;
            body.extend_from_slice(&out.stderr);
            let mut resp = Response::new(Body::from(body));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain"),
            );
            resp
        }
        Err(e) => runtime_error(e),
    }
}

async fn usage<R: Runtime + Streaming>(
    api: &NodeApi<R>,
) -> (
    stats::NodeUse,
    Result<Vec<crate::runtime::PodUse>, RuntimeError>,
) {
    let now = api.state.clock.now();
    let (cpu, memory) = api.sampler.read(now);
    let node = stats::NodeUse {
        cpu,
        memory,
        started: Some(api.started),
    };
    let pods = match tokio::time::timeout(USAGE_TIMEOUT, api.runtime.usage()).await {
        Ok(r) => r,
        Err(_) => Err(RuntimeError::Timeout {
            method: "ListPodSandboxStats",
            timeout: USAGE_TIMEOUT,
        }),
    };
    (node, pods)
}

async fn summary<R: Runtime + Streaming>(api: &NodeApi<R>) -> Response<Body> {
    let (node, pods) = usage(api).await;
    let pods = match pods {
        Ok(p) => p,
        Err(e) => return runtime_error(e),
    };
    let status = api.state.status.borrow().clone();
    let state = api.state.reconcile.borrow().clone();
    json(&stats::summary(
        &api.node,
        &node,
        &pods,
        &status,
        &state.observed,
    ))
}

async fn resource_metrics<R: Runtime + Streaming>(api: &NodeApi<R>) -> Response<Body> {
    let (node, pods) = usage(api).await;
    if let Err(e) = &pods {
        tracing::warn!(error = %e, "node API: resource metrics without pod usage");
    }
    let state = api.state.reconcile.borrow().clone();
    let body = stats::resource_metrics(&node, pods.as_deref().map_err(|_| ()), &state.observed);
    let mut resp = text(StatusCode::OK, body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

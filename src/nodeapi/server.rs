//! The HTTPS listener of the node API. Every connection is bounded: at most
//! [`Limits::connections`] at once (more are closed at accept), a TLS handshake within
//! [`Limits::handshake`], request headers within [`Limits::headers`] time and
//! [`Limits::header_bytes`] size, no request body is read. Each request is authenticated,
//! authorized, then dispatched.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::NodeApi;
use super::answer::text;
use super::auth::{Credential, Identity, Refusal};
use super::handlers::dispatch;
use super::route::{attributes, route};
use crate::runtime::{Runtime, Streaming};

/// What one client may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once.
    pub connections: usize,
    /// Streaming sessions at once.
    pub streams: usize,
    /// Time for the TLS handshake.
    pub handshake: Duration,
    /// Time for a request's headers (also how long an idle keep-alive connection stays).
    pub headers: Duration,
    /// Size of a request's headers.
    pub header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connections: 256,
            streams: 64,
            handshake: Duration::from_secs(10),
            headers: Duration::from_secs(30),
            header_bytes: 64 * 1024,
        }
    }
}

/// A bound node API listener.
pub struct NodeApiServer {
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    limits: Limits,
}

impl NodeApiServer {
    /// Binds `addr` (port 0: any free port).
    pub async fn bind(
        addr: SocketAddr,
        tls: Arc<ServerConfig>,
        limits: Limits,
    ) -> std::io::Result<NodeApiServer> {
        Ok(NodeApiServer {
            listener: TcpListener::bind(addr).await?,
            tls,
            limits,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `token` is cancelled.
    pub async fn serve<R: Runtime + Streaming>(
        self,
        api: Arc<NodeApi<R>>,
        token: CancellationToken,
    ) {
        let acceptor = TlsAcceptor::from(self.tls);
        let connections = Arc::new(Semaphore::new(self.limits.connections));
        let limits = self.limits;
        let full_warned = Arc::new(AtomicBool::new(false));
        if let Ok(addr) = self.listener.local_addr() {
            info!(%addr, "node API listening");
        }
        loop {
            let accepted = tokio::select! {
                _ = token.cancelled() => return,
                a = self.listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "node API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = connections.clone().try_acquire_owned() else {
                if !full_warned.swap(true, Ordering::Relaxed) {
                    warn!(
                        limit = limits.connections,
                        "node API: connection limit reached; closing new connections"
                    );
                }
                drop(stream);
                continue;
            };
            full_warned.store(false, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let api = api.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let tls =
                    match tokio::time::timeout(limits.handshake, acceptor.accept(stream)).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "node API: TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(%peer, "node API: TLS handshake timed out");
                            return;
                        }
                    };
                let who = match api.client_ca.identity(tls.get_ref().1.peer_certificates()) {
                    Ok(Some(who)) => Some(Ok(who)),
                    Ok(None) => None,
                    Err(e) => {
                        debug!(%peer, error = %e, "node API: client certificate not accepted");
                        Some(Err(()))
                    }
                };
                let service = service_fn(move |req| {
                    let api = api.clone();
                    let who = who.clone();
                    async move { Ok::<_, Infallible>(handle(api, who, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.headers)
                    .max_buf_size(limits.header_bytes.max(8192))
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r { debug!(%peer, error = %e, "node API connection ended") },
                    _ = token.cancelled() => conn.as_mut().graceful_shutdown(),
                }
            });
        }
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

async fn handle<R: Runtime + Streaming>(
    api: Arc<NodeApi<R>>,
    certificate: Option<Result<Identity, ()>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let credential = match (certificate, bearer(&req)) {
        (Some(Ok(who)), _) => Credential::Certificate(who),
        (Some(Err(())), _) => Credential::Rejected,
        (None, Some(token)) => Credential::Bearer(token),
        (None, None) => Credential::None,
    };
    let who = match api.auth.authenticate(credential).await {
        Ok(w) => w,
        Err(refusal) => return text(refusal.status(), format!("{refusal}\n")),
    };
    let path = req.uri().path().to_owned();
    let checks = attributes(req.method(), &path);
    if let Err(refusal) = api.auth.authorize(&who, &checks).await {
        if let Refusal::ReviewFailed(why) = &refusal {
            // the API server is away, slow or refusing: no pod is touched, the caller gets
            // the kubelet's 500, and the operator a line and a count
            warn!(user = %who.user, %path, error = %why, "node API: authorization review failed");
            api.state.metrics.authorization_error();
        } else {
            debug!(user = %who.user, %path, "node API: refused");
        }
        return text(refusal.status(), format!("{refusal}\n"));
    }
    match route(&path) {
        Some(r) => dispatch(api, r, req).await,
        None => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

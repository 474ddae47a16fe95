//! Exec, attach and port-forward sessions: the runtime's streaming server has the session
//! at a URL; the request (an HTTP/1.1 upgrade to SPDY or WebSocket, as kube-apiserver or a
//! client sends it) is replayed there and, once the runtime switches protocols, the two
//! connections are joined byte for byte, as the kubelet's upgrade-aware proxy does. The
//! protocol inside is the runtime's business: SPDY, WebSocket, stdin, tty and resize all pass
//! through unchanged.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::debug;

use super::answer::text;

/// How long connecting to the runtime's streaming server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most of a refusal's body passed back (the runtime's error text).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Whether a request asks to switch protocols.
pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// Replays `req` at the runtime's `url` and joins the connections once both sides have
/// switched protocols. A request that is not an upgrade is refused (400), as the kubelet's
/// streaming server refuses it. `permit` is held for as long as the session lasts.
pub async fn upgrade(
    mut req: Request<Incoming>,
    url: &str,
    permit: OwnedSemaphorePermit,
) -> Response<Body> {
    if !is_upgrade(&req) {
        return text(
            StatusCode::BAD_REQUEST,
            "Upgrade request required (SPDY/3.1 or WebSocket)",
        );
    }
    let target: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("runtime streaming URL {url:?}: {e}"),
            );
        }
    };
    let Some(authority) = target.authority().cloned() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("runtime streaming URL {url:?} has no host"),
        );
    };
    let port = authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((authority.host().trim_matches(['[', ']']), port)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("runtime streaming server {authority}: {e}"),
            );
        }
        Err(_) => {
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "runtime streaming server {authority}: no connection within {CONNECT_TIMEOUT:?}"
                ),
            );
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("runtime streaming server: {e}"),
            );
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(error = %e, "runtime streaming connection ended");
        }
    });

    let client_side = hyper::upgrade::on(&mut req);
    // The runtime's URL names the session; a WebSocket port-forward also names its ports in
    // the query, which the runtime reads from its own URL. The kubelet drops the caller's
    // query here (so only SPDY port-forward works through it); podvisor passes it on when
    // the runtime's URL has none.
    let path = match (target.query(), req.uri().query()) {
        (None, Some(q)) => format!("{}?{q}", target.path()),
        _ => target
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
    };
    let mut upstream = Request::builder().method(req.method().clone()).uri(path);
    for (name, value) in req.headers() {
        // The caller's credentials are for podvisor, not for the runtime.
        if name == header::AUTHORIZATION || name == header::HOST {
            continue;
        }
        upstream = upstream.header(name, value);
    }
    let upstream = match upstream
        .header(
            header::HOST,
            HeaderValue::from_str(authority.as_str())
                .unwrap_or(HeaderValue::from_static("localhost")),
        )
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let mut answer = match sender.send_request(upstream).await {
        Ok(a) => a,
        Err(e) => {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("runtime streaming server: {e}"),
            );
        }
    };
    if answer.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = answer.status();
        let headers = answer.headers().clone();
        let body = Limited::new(answer.into_body(), ERROR_BODY_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = status;
        *resp.headers_mut() = headers;
        return resp;
    }
    let runtime_side = hyper::upgrade::on(&mut answer);
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = answer.headers().clone();
    tokio::spawn(async move {
        let _permit = permit;
        let (client, runtime) = match tokio::join!(client_side, runtime_side) {
            (Ok(c), Ok(r)) => (c, r),
            (c, r) => {
                debug!(client = ?c.err(), runtime = ?r.err(), "streaming upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut runtime = TokioIo::new(runtime);
        match tokio::io::copy_bidirectional(&mut client, &mut runtime).await {
            Ok((up, down)) => debug!(up, down, "streaming session ended"),
            Err(e) => debug!(error = %e, "streaming session cut"),
        }
    });
    resp
}

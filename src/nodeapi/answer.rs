//! The node API's answers: plain text and JSON bodies, and the kubelet's syncloop health
//! check, shared by the HTTPS endpoints, the streaming proxy and the plain-HTTP healthz.

use axum::body::Body;
use http::{Response, StatusCode, header};

use crate::api::ApiState;

/// A plain-text answer.
pub fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A JSON answer.
pub fn json(value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The kubelet's `syncloop` check: `ok` while the loops make progress, else 500 naming the
/// stalled loop.
pub fn syncloop(state: &ApiState) -> Response<Body> {
    match state.health() {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("[-]syncloop failed: {e}\nhealthz check failed\n"),
        ),
    }
}

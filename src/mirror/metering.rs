//! Counts every request the mirror task sends to the API server by its Kubernetes verb
//! (`podvisor_apiserver_requests_total{verb}`), as a tower layer on the kube client, so the
//! load podvisor puts on the API server is visible.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::metrics::Metrics;

/// The Kubernetes verb of a request: `watch` (GET with `watch=true`), `list` (GET of a
/// collection), `get`, `create`, `update`, `patch`, `delete`, `deletecollection`.
pub fn verb(method: &http::Method, path: &str, query: Option<&str>) -> &'static str {
    let watching = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| matches!(kv, "watch=true" | "watch=1" | "watch"))
    });
    // After /api/v1 or /apis/<group>/<version>: [namespaces/<ns>/]<resource>[/<name>[/<sub>]].
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..),
        Some(&"apis") => parts.get(3..),
        _ => None,
    }
    .unwrap_or(&[]);
    let named = match rest {
        ["namespaces", _, _resource, _name, ..] => true,
        ["namespaces", _, _resource] => false,
        ["namespaces", _name] => true,
        [_resource, _name, ..] => true,
        _ => false,
    };
    match *method {
        http::Method::GET if watching => "watch",
        http::Method::GET if named => "get",
        http::Method::GET => "list",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE if named => "delete",
        http::Method::DELETE => "deletecollection",
        _ => "other",
    }
}

/// The layer: wraps the client's service in a [`Meter`].
#[derive(Clone, Debug)]
pub struct MeterLayer(pub Arc<Metrics>);

impl<S> Layer<S> for MeterLayer {
    type Service = Meter<S>;

    fn layer(&self, inner: S) -> Meter<S> {
        Meter {
            inner,
            metrics: self.0.clone(),
        }
    }
}

/// Counts each request, then passes it on.
#[derive(Clone, Debug)]
pub struct Meter<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<http::Request<B>> for Meter<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let uri = req.uri();
        self.metrics
            .apiserver_request(verb(req.method(), uri.path(), uri.query()));
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn requests_are_named_by_their_kubernetes_verb() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods",
                Some("fieldSelector=spec.nodeName%3Dn1"),
                "list",
            ),
            (
                Method::GET,
                "/api/v1/pods",
                Some("fieldSelector=x&watch=true&resourceVersion=5"),
                "watch",
            ),
            (Method::GET, "/api/v1/nodes/n1", None, "get"),
            (
                Method::GET,
                "/api/v1/namespaces/kube-system/pods/etcd-n1",
                None,
                "get",
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/kube-system/pods/etcd-n1/status",
                None,
                "patch",
            ),
            (
                Method::POST,
                "/api/v1/namespaces/kube-system/pods",
                None,
                "create",
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                None,
                "update",
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/kube-system/pods/etcd-n1",
                None,
                "delete",
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/kube-system/events",
                None,
                "create",
            ),
            (Method::GET, "/api/v1/namespaces/kube-system", None, "get"),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(
                verb(&method, path, query),
                want,
                "{method} {path} {query:?}"
            );
        }
    }
}

//! Counts every request the mirror task sends to the API server by its Kubernetes verb
//! (`podvisor_apiserver_requests_total{verb}`), as a tower layer on the kube client, so the
//! load podvisor puts on the API server is visible.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::Method;
use tower::{Layer, Service};

use crate::metrics::Metrics;

/// Whether a `watch` query value asks for a watch: any value but `0` and `false` (in any
/// case) does, an empty one too, as apimachinery's `Convert_Slice_string_To_bool` reads it.
pub fn watch_truthy(value: &str) -> bool {
    value != "0" && !value.eq_ignore_ascii_case("false")
}

/// The first value of a query parameter, percent-decoding left aside (verbs never need it).
fn first_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn non_resource(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        Method::HEAD => "head",
        Method::OPTIONS => "options",
        _ => "",
    }
}

/// The Kubernetes verb of a request to `path` with the raw `query`, as the API server's
/// `RequestInfoFactory` derives it for authorization and audit: `get`, `list`, `watch`,
/// `create`, `update`, `patch`, `delete`, `deletecollection`, or the lowercased HTTP method
/// for a non-resource URL.
pub fn verb(method: &Method, path: &str, query: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return non_resource(method),
    };
    let (legacy_watch, rest) = match rest {
        [] => return non_resource(method),
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    // `namespaces/{ns}` alone names a namespace; followed by more, it scopes a resource.
    let rest = match rest {
        ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
        _ => rest,
    };
    let named = rest.len() >= 2;
    match *method {
        Method::GET if legacy_watch => "watch",
        Method::GET if named => "get",
        Method::GET if first_param(query, "watch").is_some_and(watch_truthy) => "watch",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => non_resource(method),
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
            .apiserver_request(verb(req.method(), uri.path(), uri.query().unwrap_or("")));
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_follow_the_request_info_rules() {
        let cases = [
            (Method::GET, "/api/v1/pods", "list"),
            (
                Method::GET,
                "/api/v1/pods?watch=true&resourceVersion=5",
                "watch",
            ),
            (Method::GET, "/api/v1/namespaces/ns/pods?watch=1", "watch"),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods?watch=false",
                "list",
            ),
            (Method::GET, "/api/v1/namespaces/ns/pods?watch=0", "list"),
            (Method::GET, "/api/v1/watch/namespaces/ns/pods/x", "watch"),
            (
                Method::GET,
                "/api/v1/namespaces/ns/pods/x?watch=true",
                "get",
            ),
            (Method::GET, "/api/v1/nodes/n1", "get"),
            (Method::POST, "/api/v1/namespaces/ns/pods", "create"),
            (Method::PUT, "/api/v1/nodes/n1/status", "update"),
            (
                Method::PATCH,
                "/api/v1/namespaces/ns/pods/x/status",
                "patch",
            ),
            (Method::DELETE, "/api/v1/namespaces/ns/pods/x", "delete"),
            (
                Method::DELETE,
                "/api/v1/namespaces/ns/pods",
                "deletecollection",
            ),
            (Method::GET, "/apis/coordination.k8s.io/v1/leases", "list"),
            (Method::GET, "/api/v1/namespaces/ns", "get"),
            (Method::GET, "/api/v1/namespaces", "list"),
            (Method::GET, "/version", "get"),
            (Method::GET, "/api/v1", "get"),
            (Method::POST, "/healthz", "post"),
        ];
        for (method, url, want) in cases {
            let (path, query) = url.split_once('?').unwrap_or((url, ""));
            assert_eq!(verb(&method, path, query), want, "{method} {url}");
        }
    }

    #[test]
    fn any_watch_value_but_false_and_zero_is_true() {
        for value in ["true", "1", "yes", "", "TRUE"] {
            assert!(watch_truthy(value), "{value:?}");
        }
        for value in ["false", "False", "0"] {
            assert!(!watch_truthy(value), "{value:?}");
        }
    }
}

//! Which endpoint a request is for, and what it must be authorized as: the kubelet's paths
//! (`pkg/kubelet/server/server.go`) and its mapping of a request to `nodes/<subresource>`
//! attributes (`auth.go`, with the fine-grained subresources of 1.33+ tried before `proxy`).
//! Pure.

use http::Method;

/// A container a request names: `{namespace}/{pod}[/{uid}]/{container}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's API name (`etcd-node1`).
    pub pod: String,
    /// The pod UID, when the path carries one (it must then match).
    pub uid: Option<String>,
    /// The container's name.
    pub container: String,
}

/// A pod a request names: `{namespace}/{pod}[/{uid}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's API name.
    pub pod: String,
    /// The pod UID, when the path carries one.
    pub uid: Option<String>,
}

/// The kubelet's `/healthz` checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// All checks.
    All,
    /// `ping`: the server answers.
    Ping,
    /// `log`: logging works.
    Log,
    /// `syncloop`: the reconcile loop is making progress.
    SyncLoop,
}

/// A streaming session kind: the runtime gives a URL and the connection is proxied to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// `/exec`: a new process in the container.
    Exec,
    /// `/attach`: the container's own stdio.
    Attach,
}

/// An endpoint of the node API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/healthz[/check]`.
    Healthz(Check),
    /// `/pods`: the static pods as a v1 `PodList`.
    Pods,
    /// `/runningpods/`: what runs, from the runtime.
    RunningPods,
    /// `/containerLogs/...`.
    ContainerLogs(ContainerRef),
    /// `/exec/...` or `/attach/...`.
    Stream(Stream, ContainerRef),
    /// `/portForward/...`.
    PortForward(PodRef),
    /// `/run/...`: a command, its output as the answer.
    Run(ContainerRef),
    /// `/stats/summary`.
    StatsSummary,
    /// `/metrics`: podvisor's own metrics.
    Metrics,
    /// `/metrics/resource`: container and node CPU and memory for metrics-server.
    MetricsResource,
}

/// Parses a request path (without the query). `None`: no such endpoint.
pub fn route(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let owned = |s: &&str| (*s).to_owned();
    let container = |rest: &[&str]| match rest {
        [ns, pod, c] if ![ns, pod, c].iter().any(|s| s.is_empty()) => Some(ContainerRef {
            namespace: owned(ns),
            pod: owned(pod),
            uid: None,
            container: owned(c),
        }),
        [ns, pod, uid, c] if ![ns, pod, uid, c].iter().any(|s| s.is_empty()) => {
            Some(ContainerRef {
                namespace: owned(ns),
                pod: owned(pod),
                uid: Some(owned(uid)),
                container: owned(c),
            })
        }
        _ => None,
    };
    Some(match parts.as_slice() {
        ["healthz"] => Route::Healthz(Check::All),
        ["healthz", "ping"] => Route::Healthz(Check::Ping),
        ["healthz", "log"] => Route::Healthz(Check::Log),
        ["healthz", "syncloop"] => Route::Healthz(Check::SyncLoop),
        ["pods"] | ["pods", ""] => Route::Pods,
        ["runningpods"] | ["runningpods", ""] => Route::RunningPods,
        ["stats", "summary"] => Route::StatsSummary,
        ["metrics"] => Route::Metrics,
        ["metrics", "resource"] => Route::MetricsResource,
        ["containerLogs", rest @ ..] if rest.len() == 3 => Route::ContainerLogs(container(rest)?),
        ["exec", rest @ ..] => Route::Stream(Stream::Exec, container(rest)?),
        ["attach", rest @ ..] => Route::Stream(Stream::Attach, container(rest)?),
        ["run", rest @ ..] => Route::Run(container(rest)?),
        ["portForward", ns, pod] if !ns.is_empty() && !pod.is_empty() => {
            Route::PortForward(PodRef {
                namespace: owned(ns),
                pod: owned(pod),
                uid: None,
            })
        }
        ["portForward", ns, pod, uid] if ![ns, pod, uid].iter().any(|s| s.is_empty()) => {
            Route::PortForward(PodRef {
                namespace: owned(ns),
                pod: owned(pod),
                uid: Some(owned(uid)),
            })
        }
        _ => return None,
    })
}

/// What one authorization check asks: may the user `verb` `nodes/<subresource>` of this node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attributes {
    /// `get`, `create`, ...
    pub verb: String,
    /// `proxy`, `stats`, `metrics`, `log`, `pods`, `healthz`, ...
    pub subresource: String,
}

fn is_subpath(path: &str, of: &str) -> bool {
    let of = of.trim_end_matches('/');
    path == of
        || path
            .strip_prefix(of)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The kubelet's verb for an HTTP method (`""` for others, which no policy allows).
pub fn verb(method: &Method) -> &'static str {
    match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// The checks a request needs, in the order the kubelet tries them: the request is allowed
/// when any one is. Fine-grained subresources (`pods`, `healthz`) come first, then the
/// coarse one (`stats`, `metrics`, `log`, or `proxy` for everything else).
pub fn attributes(method: &Method, path: &str) -> Vec<Attributes> {
    let verb = verb(method);
    let mut subresources = Vec::with_capacity(2);
    if is_subpath(path, "/pods") || is_subpath(path, "/runningpods/") {
        subresources.push("pods");
    } else if is_subpath(path, "/healthz") {
        subresources.push("healthz");
    } else if is_subpath(path, "/configz") {
        subresources.push("configz");
    }
    subresources.push(if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else if is_subpath(path, "/checkpoint") {
        "checkpoint"
    } else {
        "proxy"
    });
    subresources
        .into_iter()
        .map(|s| Attributes {
            verb: verb.to_owned(),
            subresource: s.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(method: Method, path: &str) -> Vec<String> {
        attributes(&method, path)
            .into_iter()
            .map(|a| format!("{} {}", a.verb, a.subresource))
            .collect()
    }

    #[test]
    fn requests_map_to_node_subresources_as_the_kubelet_maps_them() {
        assert_eq!(subs(Method::GET, "/stats/summary"), ["get stats"]);
        assert_eq!(subs(Method::GET, "/metrics/resource"), ["get metrics"]);
        assert_eq!(subs(Method::GET, "/metrics"), ["get metrics"]);
        assert_eq!(subs(Method::GET, "/pods"), ["get pods", "get proxy"]);
        assert_eq!(
            subs(Method::GET, "/runningpods/"),
            ["get pods", "get proxy"]
        );
        assert_eq!(subs(Method::GET, "/healthz"), ["get healthz", "get proxy"]);
        assert_eq!(
            subs(Method::GET, "/containerLogs/kube-system/etcd-n1/etcd"),
            ["get proxy"]
        );
        assert_eq!(subs(Method::POST, "/exec/ns/p/c"), ["create proxy"]);
        assert_eq!(subs(Method::GET, "/logs/syslog"), ["get log"]);
        // a prefix is not a subpath
        assert_eq!(subs(Method::GET, "/statsfoo"), ["get proxy"]);
        assert_eq!(subs(Method::GET, "/podsx"), ["get proxy"]);
    }

    #[test]
    fn paths_name_pods_and_containers_with_or_without_a_uid() {
        assert_eq!(
            route("/containerLogs/kube-system/etcd-n1/etcd"),
            Some(Route::ContainerLogs(ContainerRef {
                namespace: "kube-system".into(),
                pod: "etcd-n1".into(),
                uid: None,
                container: "etcd".into(),
            }))
        );
        assert_eq!(
            route("/exec/ns/p/u1/c"),
            Some(Route::Stream(
                Stream::Exec,
                ContainerRef {
                    namespace: "ns".into(),
                    pod: "p".into(),
                    uid: Some("u1".into()),
                    container: "c".into(),
                }
            ))
        );
        assert_eq!(
            route("/portForward/ns/p"),
            Some(Route::PortForward(PodRef {
                namespace: "ns".into(),
                pod: "p".into(),
                uid: None
            }))
        );
        assert!(matches!(
            route("/attach/ns/p/c"),
            Some(Route::Stream(Stream::Attach, _))
        ));
        assert!(matches!(route("/run/ns/p/c"), Some(Route::Run(_))));
        assert_eq!(route("/runningpods/"), Some(Route::RunningPods));
        assert_eq!(
            route("/healthz/syncloop"),
            Some(Route::Healthz(Check::SyncLoop))
        );
        assert_eq!(route("/containerLogs/ns/p/u/c"), None, "logs take no uid");
        assert_eq!(route("/exec/ns//c"), None);
        assert_eq!(route("/exec/ns/p"), None);
        assert_eq!(route("/nothing"), None);
    }
}

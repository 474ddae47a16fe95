//! The resources the fake serves and how their URLs parse.

/// A served resource. Core v1 events and events.k8s.io/v1 events are kept apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Resource {
    Pods,
    Nodes,
    Events,
    EventsV1,
    Leases,
    /// certificates.k8s.io/v1 CertificateSigningRequests.
    Csrs,
}

impl Resource {
    fn from_path(group: &str, version: &str, plural: &str) -> Option<Resource> {
        match (group, version, plural) {
            ("", "v1", "pods") => Some(Resource::Pods),
            ("", "v1", "nodes") => Some(Resource::Nodes),
            ("", "v1", "events") => Some(Resource::Events),
            ("events.k8s.io", "v1", "events") => Some(Resource::EventsV1),
            ("coordination.k8s.io", "v1", "leases") => Some(Resource::Leases),
            ("certificates.k8s.io", "v1", "certificatesigningrequests") => Some(Resource::Csrs),
            _ => None,
        }
    }

    /// API group, empty for core.
    pub(super) fn group(self) -> &'static str {
        match self {
            Resource::Pods | Resource::Nodes | Resource::Events => "",
            Resource::EventsV1 => "events.k8s.io",
            Resource::Leases => "coordination.k8s.io",
            Resource::Csrs => "certificates.k8s.io",
        }
    }

    /// `apiVersion` of the objects.
    pub(super) fn api_version(self) -> &'static str {
        match self {
            Resource::Pods | Resource::Nodes | Resource::Events => "v1",
            Resource::EventsV1 => "events.k8s.io/v1",
            Resource::Leases => "coordination.k8s.io/v1",
            Resource::Csrs => "certificates.k8s.io/v1",
        }
    }

    /// `kind` of the objects.
    pub(super) fn kind(self) -> &'static str {
        match self {
            Resource::Pods => "Pod",
            Resource::Nodes => "Node",
            Resource::Events | Resource::EventsV1 => "Event",
            Resource::Leases => "Lease",
            Resource::Csrs => "CertificateSigningRequest",
        }
    }

    /// Resource name in URLs.
    pub(super) fn plural(self) -> &'static str {
        match self {
            Resource::Pods => "pods",
            Resource::Nodes => "nodes",
            Resource::Events | Resource::EventsV1 => "events",
            Resource::Leases => "leases",
            Resource::Csrs => "certificatesigningrequests",
        }
    }

    /// `GroupResource.String()`: `pods`, `leases.coordination.k8s.io`.
    pub(super) fn qualified(self) -> String {
        match self.group() {
            "" => self.plural().to_owned(),
            group => format!("{}.{group}", self.plural()),
        }
    }

    pub(super) fn namespaced(self) -> bool {
        !matches!(self, Resource::Nodes | Resource::Csrs)
    }

    /// Whether the resource has a `status` subresource (and so a main resource that
    /// ignores status writes).
    pub(super) fn has_status(self) -> bool {
        matches!(self, Resource::Pods | Resource::Nodes | Resource::Csrs)
    }

    /// Pods answer DELETE with the object; the others with a `Status`.
    pub(super) fn returns_deleted_object(self) -> bool {
        matches!(self, Resource::Pods)
    }

    /// Events may be created by PUT.
    pub(super) fn allow_create_on_update(self) -> bool {
        matches!(self, Resource::Events | Resource::EventsV1)
    }

    /// Whether `metadata.generation` is maintained (pods, since PodObservedGenerationTracking).
    pub(super) fn tracks_generation(self) -> bool {
        matches!(self, Resource::Pods)
    }

    /// The etcd key the real server would use, as it appears in storage error messages.
    pub(super) fn etcd_key(self, namespace: &str, name: &str) -> String {
        match self {
            Resource::Pods => format!("/registry/pods/{namespace}/{name}"),
            Resource::Nodes => format!("/registry/minions/{name}"),
            Resource::Events | Resource::EventsV1 => format!("/registry/events/{namespace}/{name}"),
            Resource::Leases => format!("/registry/leases/{namespace}/{name}"),
            Resource::Csrs => format!("/registry/certificatesigningrequests/{name}"),
        }
    }

    /// Field selector labels the real server accepts for the resource.
    pub(super) fn field_labels(self) -> &'static [&'static str] {
        match self {
            Resource::Pods => &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
            Resource::Nodes => &["metadata.name", "spec.unschedulable"],
            Resource::Events => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            Resource::EventsV1 | Resource::Leases => &["metadata.name", "metadata.namespace"],
            Resource::Csrs => &["metadata.name", "spec.signerName"],
        }
    }
}

/// A parsed resource URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Route {
    pub(super) resource: Resource,
    /// Set for namespaced URLs; `None` for cluster-scoped resources and all-namespace lists.
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    /// The URL ends in `/status`.
    pub(super) status: bool,
}

impl Route {
    /// Parses `/api/v1/...` and `/apis/{group}/{version}/...`; `None` for anything not served.
    pub(super) fn parse(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            _ => (None, rest),
        };
        let (plural, name, sub) = match rest {
            [plural] => (*plural, None, None),
            [plural, name] => (*plural, Some(*name), None),
            [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
            _ => return None,
        };
        let resource = Resource::from_path(group, version, plural)?;
        let scoped_right = match (resource.namespaced(), &namespace) {
            (true, Some(_)) | (false, None) => true,
            // All-namespace list of a namespaced resource.
            (true, None) => name.is_none(),
            (false, Some(_)) => false,
        };
        let status = match sub {
            None => false,
            Some("status") if resource.has_status() => true,
            Some(_) => return None,
        };
        if !scoped_right || name.is_some_and(str::is_empty) {
            return None;
        }
        Some(Route {
            resource,
            namespace,
            name: name.map(str::to_owned),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_and_cluster_urls_parse() {
        let r = Route::parse("/api/v1/namespaces/kube-system/pods/etcd-n1/status").unwrap();
        assert_eq!(r.resource, Resource::Pods);
        assert_eq!(r.namespace.as_deref(), Some("kube-system"));
        assert_eq!(r.name.as_deref(), Some("etcd-n1"));
        assert!(r.status);
        let r = Route::parse("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1")
            .unwrap();
        assert_eq!(r.resource, Resource::Leases);
        assert!(Route::parse("/api/v1/pods").is_some_and(|r| r.namespace.is_none()));
        assert!(Route::parse("/api/v1/nodes/n1").is_some());
    }

    #[test]
    fn unserved_urls_do_not_parse() {
        for path in [
            "/api/v1/namespaces/default/nodes/n1",
            "/api/v1/pods/x",
            "/api/v1/namespaces/default/pods/x/log",
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l/status",
            "/api/v1/secrets",
            "/version",
        ] {
            assert_eq!(Route::parse(path), None, "{path}");
        }
    }
}

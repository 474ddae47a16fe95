//! The label and annotation keys podvisor writes, named once.
//!
//! The `io.kubernetes.*` and `kubernetes.io/config.*` keys are the kubelet's own
//! (`k8s.io/kubelet/pkg/types/labels.go`, `pkg/kubelet/types/pod_update.go`): crictl, kubeadm
//! and log shippers read them, so they must match the kubelet byte for byte. The
//! `podvisor.dev/*` keys are ours.

/// Sandbox and container label: the pod name, with the node suffix.
pub const POD_NAME: &str = "io.kubernetes.pod.name";
/// Sandbox and container label: the pod namespace.
pub const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Sandbox and container label: the pod UID.
pub const POD_UID: &str = "io.kubernetes.pod.uid";
/// Container label: the container name.
pub const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Container annotation: the container spec hash, hex.
pub const CONTAINER_HASH: &str = "io.kubernetes.container.hash";
/// Container annotation: the restart count, decimal.
pub const CONTAINER_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// Container annotation: where the termination message is read from.
pub const CONTAINER_TERMINATION_MESSAGE_PATH: &str =
    "io.kubernetes.container.terminationMessagePath";
/// Container annotation: `File` or `FallbackToLogsOnError`.
pub const CONTAINER_TERMINATION_MESSAGE_POLICY: &str =
    "io.kubernetes.container.terminationMessagePolicy";
/// Container annotation: the pod's termination grace period in seconds.
pub const POD_TERMINATION_GRACE_PERIOD: &str = "io.kubernetes.pod.terminationGracePeriod";
/// Container annotation: the JSON of `lifecycle.preStop`.
pub const CONTAINER_PRESTOP_HANDLER: &str = "io.kubernetes.container.preStopHandler";
/// Container annotation: the JSON of the container's `ports`.
pub const CONTAINER_PORTS: &str = "io.kubernetes.container.ports";

/// Pod annotation: the pod version hash (the kubelet's UID-as-hash).
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Pod annotation: where the pod came from; always `file` for us.
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// Pod annotation: when this pod version was first seen, RFC 3339 with nanoseconds.
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// Mirror-pod annotation: the static pod's config hash.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// Label on every sandbox and container podvisor creates. podvisor never touches CRI
/// objects without it, so it cannot harm containers other clients created.
pub const MANAGED: &str = "podvisor.dev/managed";
/// The value of [`MANAGED`].
pub const MANAGED_VALUE: &str = "true";
/// Sandbox annotation: the sandbox version it was created for. The pod UID is the sandbox
/// version too unless the manifest sets `metadata.uid`; sandboxes made before this annotation
/// existed are judged by their UID.
pub const SANDBOX_HASH: &str = "podvisor.dev/sandbox-hash";
/// Sandbox annotation: the manifest file the pod came from.
pub const MANIFEST_PATH: &str = "podvisor.dev/manifest";
/// Sandbox annotation: the pod's priority when the sandbox was made (`spec.priority`, or its
/// built-in `priorityClassName` resolved), which node shutdown orders pods by.
pub const PRIORITY: &str = "podvisor.dev/priority";
/// Pod annotation (copied to the sandbox with the others): an integer placing the pod among
/// those of its shutdown group; higher stops later.
pub const SHUTDOWN_ORDER: &str = "podvisor.dev/shutdown-order";
/// Pod label kubeadm puts on its control-plane pods (`etcd`, `kube-apiserver`, ...).
pub const COMPONENT: &str = "component";
/// Container annotation: `init` or `app`, so restarts and status can tell them apart.
pub const CONTAINER_KIND: &str = "podvisor.dev/container-kind";

//! The host facts a Node object reports: addresses, capacity, OS and versions. Read once at
//! start-up ([`NodeInfo::from_context`]); plain data afterwards.

use std::path::Path;

use crate::host::NodeContext;

/// The kubelet's default `--max-pods`.
pub const DEFAULT_MAX_PODS: i64 = 110;

/// What `status.nodeInfo.kubeletVersion` says: the Kubernetes API level podvisor follows,
/// with podvisor's version as build metadata (as k3s writes `v1.34.1+k3s1`), so that version
/// parsers in tools keep working.
pub const KUBELET_VERSION: &str = concat!("v1.34.0+podvisor-", env!("CARGO_PKG_VERSION"));

/// Host facts for the Node object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The `Hostname` address: the node name, as the kubelet reports its hostname override
    /// (kubeadm's `--node-name`) and otherwise the machine's name.
    pub hostname: String,
    /// The `InternalIP` addresses, primary first (`--node-ip`, or picked as the kubelet
    /// picks them).
    pub internal_ips: Vec<String>,
    /// Online CPUs.
    pub cpus: i64,
    /// Total memory in bytes.
    pub memory_bytes: i64,
    /// Pod capacity.
    pub max_pods: i64,
    /// `kubernetes.io/os`: `linux`.
    pub os: String,
    /// `kubernetes.io/arch`, in Go's spelling (`amd64`, `arm64`, ...).
    pub arch: String,
    /// `uname -r`, from `/proc/sys/kernel/osrelease`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os_image: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/sys/class/dmi/id/product_uuid` (often readable by root only).
    pub system_uuid: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
    /// See [`KUBELET_VERSION`].
    pub kubelet_version: String,
    /// The node API's port (`status.daemonEndpoints.kubeletEndpoint.port`, where the API
    /// server reaches `logs`, `exec` and stats), when it is served.
    pub kubelet_port: Option<u16>,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(Path::new(path))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `PRETTY_NAME` from os-release text.
fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        let value = l.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

/// Rust's architecture name in Go's spelling, as `kubernetes.io/arch` uses it.
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    }
}

impl NodeInfo {
    /// Reads the host, taking address and capacity from the runtime's node context.
    pub fn from_context(ctx: &NodeContext) -> NodeInfo {
        let hostname = ctx.node.as_str().to_owned();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| pretty_name(&t))
            .unwrap_or_default();
        NodeInfo {
            hostname,
            internal_ips: ctx.node_ips.iter().map(|ip| ip.to_string()).collect(),
            cpus: ctx.cpus,
            memory_bytes: ctx.memory_bytes,
            max_pods: DEFAULT_MAX_PODS,
            os: std::env::consts::OS.to_owned(),
            arch: go_arch(std::env::consts::ARCH).to_owned(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read_trimmed("/etc/machine-id"),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            kubelet_version: KUBELET_VERSION.to_owned(),
            kubelet_port: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_pretty_name_is_unquoted() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(pretty_name("ID=x\n"), None);
    }

    #[test]
    fn architectures_use_gos_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
    }

    #[test]
    fn detection_fills_what_the_node_object_needs() {
        let ctx = NodeContext::detect(
            crate::pod::NodeName::new("n1"),
            "/tmp/podvisor-test".into(),
            "/tmp/podvisor-test/logs".into(),
        );
        let info = NodeInfo::from_context(&ctx);
        assert_eq!(
            info.hostname, "n1",
            "the node name, as the kubelet's hostname override"
        );
        assert_eq!(info.internal_ips.len(), ctx.node_ips.len());
        assert_eq!(info.os, "linux");
        assert_eq!(info.cpus, ctx.cpus);
        assert!(info.kubelet_version.starts_with("v1."));
    }
}

//! What the node API asks of the runtime beyond running pods: streaming sessions (exec,
//! attach, port-forward: the runtime answers with a URL of its own streaming server, which the
//! node API proxies) and resource usage. On podvisor's own types, like [`super::Runtime`].

use std::future::Future;

use super::{ContainerId, RuntimeError, SandboxId};
use crate::clock::Timestamp;

/// Which standard streams a session carries, and whether it has a terminal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stdio {
    /// Standard input is attached.
    pub stdin: bool,
    /// Standard output is attached.
    pub stdout: bool,
    /// Standard error is attached (never with a terminal).
    pub stderr: bool,
    /// A terminal.
    pub tty: bool,
}

/// CPU use at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuUse {
    /// When it was read.
    pub at: Option<Timestamp>,
    /// Cumulative CPU time, nanoseconds.
    pub core_nanos: Option<u64>,
    /// Recent rate, nanocores (CPU-nanoseconds per second).
    pub nano_cores: Option<u64>,
}

/// Memory use at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// When it was read.
    pub at: Option<Timestamp>,
    /// Working set (what the OOM killer and eviction look at), bytes.
    pub working_set: Option<u64>,
    /// Usage including page cache, bytes.
    pub usage: Option<u64>,
    /// Anonymous and swap cache memory, bytes.
    pub rss: Option<u64>,
    /// Available before hitting the limit, bytes.
    pub available: Option<u64>,
    /// Page faults.
    pub page_faults: Option<u64>,
    /// Major page faults.
    pub major_page_faults: Option<u64>,
}

/// A filesystem's use by one container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsUse {
    /// When it was read.
    pub at: Option<Timestamp>,
    /// Bytes used.
    pub used_bytes: Option<u64>,
    /// Inodes used.
    pub inodes_used: Option<u64>,
}

/// One network interface's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterfaceUse {
    /// Interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: Option<u64>,
    /// Receive errors.
    pub rx_errors: Option<u64>,
    /// Bytes sent.
    pub tx_bytes: Option<u64>,
    /// Send errors.
    pub tx_errors: Option<u64>,
}

/// A pod's network use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkUse {
    /// When it was read.
    pub at: Option<Timestamp>,
    /// The default interface.
    pub default_interface: Option<InterfaceUse>,
    /// Every interface.
    pub interfaces: Vec<InterfaceUse>,
}

/// One container's resource use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerUse {
    /// Runtime ID.
    pub id: ContainerId,
    /// Container name.
    pub name: String,
    /// CPU.
    pub cpu: Option<CpuUse>,
    /// Memory.
    pub memory: Option<MemoryUse>,
    /// Its writable layer.
    pub rootfs: Option<FsUse>,
}

/// One pod sandbox's resource use, with its containers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUse {
    /// Sandbox ID.
    pub sandbox: SandboxId,
    /// The pod's name, namespace and UID as the sandbox metadata says.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// UID.
    pub uid: String,
    /// CPU of the whole pod, when the runtime reports pod-level stats.
    pub cpu: Option<CpuUse>,
    /// Memory of the whole pod.
    pub memory: Option<MemoryUse>,
    /// Network.
    pub network: Option<NetworkUse>,
    /// Processes in the pod.
    pub processes: Option<u64>,
    /// Its containers.
    pub containers: Vec<ContainerUse>,
}

/// Streaming sessions and resource use.
pub trait Streaming: Send + Sync + 'static {
    /// A URL of the runtime's streaming server running `cmd` in container `id`.
    fn exec_url(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        stdio: Stdio,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// A URL attaching to container `id`'s own standard streams.
    fn attach_url(
        &self,
        id: &ContainerId,
        stdio: Stdio,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// A URL forwarding connections into sandbox `id`'s network namespace.
    fn port_forward_url(
        &self,
        id: &SandboxId,
        ports: Vec<i32>,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Resource use of every sandbox podvisor created and its containers.
    fn usage(&self) -> impl Future<Output = Result<Vec<PodUse>, RuntimeError>> + Send;
}

//! [`Streaming`] over CRI: `Exec`, `Attach`, `PortForward` give URLs of the runtime's
//! streaming server; `ListPodSandboxStats` (or, from runtimes without it,
//! `ListContainerStats`) gives resource use.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::super::grpc::to_error;
use super::super::streams::{
    ContainerUse, CpuUse, FsUse, InterfaceUse, MemoryUse, NetworkUse, PodUse, Stdio, Streaming,
};
use super::super::{ContainerId, RuntimeError, SandboxId};
use super::{CriRuntime, READ_TIMEOUT, cri_time, managed_filter, timeout_of};

fn value(v: Option<cri::UInt64Value>) -> Option<u64> {
    v.map(|v| v.value)
}

fn cpu(c: Option<cri::CpuUsage>) -> Option<CpuUse> {
    c.map(|c| CpuUse {
        at: cri_time(c.timestamp),
        core_nanos: value(c.usage_core_nano_seconds),
        nano_cores: value(c.usage_nano_cores),
    })
}

fn memory(m: Option<cri::MemoryUsage>) -> Option<MemoryUse> {
    m.map(|m| MemoryUse {
        at: cri_time(m.timestamp),
        working_set: value(m.working_set_bytes),
        usage: value(m.usage_bytes),
        rss: value(m.rss_bytes),
        available: value(m.available_bytes),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
    })
}

fn interface(i: cri::NetworkInterfaceUsage) -> InterfaceUse {
    InterfaceUse {
        name: i.name,
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    }
}

fn container(c: cri::ContainerStats) -> ContainerUse {
    let attributes = c.attributes.unwrap_or_default();
    ContainerUse {
        id: ContainerId(attributes.id),
        name: attributes.metadata.map(|m| m.name).unwrap_or_default(),
        cpu: cpu(c.cpu),
        memory: memory(c.memory),
        rootfs: c.writable_layer.map(|w| FsUse {
            at: cri_time(w.timestamp),
            used_bytes: value(w.used_bytes),
            inodes_used: value(w.inodes_used),
        }),
    }
}

fn pod(s: cri::PodSandboxStats) -> PodUse {
    let attributes = s.attributes.unwrap_or_default();
    let meta = attributes.metadata.unwrap_or_default();
    let linux = s.linux.unwrap_or_default();
    PodUse {
        sandbox: SandboxId(attributes.id),
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        cpu: cpu(linux.cpu),
        memory: memory(linux.memory),
        network: linux.network.map(|n| NetworkUse {
            at: cri_time(n.timestamp),
            default_interface: n.default_interface.map(interface),
            interfaces: n.interfaces.into_iter().map(interface).collect(),
        }),
        processes: linux.process.and_then(|p| value(p.process_count)),
        containers: linux.containers.into_iter().map(container).collect(),
    }
}

impl CriRuntime {
    /// Pod use assembled from `ListContainerStats` and `ListPodSandbox`, for runtimes without
    /// `ListPodSandboxStats`: no pod-level CPU, memory or network.
    async fn usage_by_container(&self) -> Result<Vec<PodUse>, RuntimeError> {
        let sandboxes = self.managed_sandboxes().await?;
        let req = timeout_of(
            tonic::Request::new(cri::ListContainerStatsRequest {
                filter: Some(cri::ContainerStatsFilter {
                    label_selector: managed_filter(),
                    ..Default::default()
                }),
            }),
            READ_TIMEOUT,
        );
        let stats = self
            .rt()
            .list_container_stats(req)
            .await
            .map_err(|s| to_error("ListContainerStats", s, READ_TIMEOUT))?
            .into_inner()
            .stats;
        let mut by_uid: HashMap<String, Vec<ContainerUse>> = HashMap::new();
        for s in stats {
            let uid = s
                .attributes
                .as_ref()
                .and_then(|a| a.labels.get(crate::labels::POD_UID))
                .cloned()
                .unwrap_or_default();
            by_uid.entry(uid).or_default().push(container(s));
        }
        Ok(sandboxes
            .into_iter()
            .filter(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
            .map(|s| {
                let meta = s.metadata.unwrap_or_default();
                PodUse {
                    sandbox: SandboxId(s.id),
                    containers: by_uid.remove(&meta.uid).unwrap_or_default(),
                    name: meta.name,
                    namespace: meta.namespace,
                    uid: meta.uid,
                    ..PodUse::default()
                }
            })
            .collect())
    }
}

impl Streaming for CriRuntime {
    async fn exec_url(
        &self,
        id: &ContainerId,
        cmd: Vec<String>,
        stdio: Stdio,
    ) -> Result<String, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ExecRequest {
                container_id: id.0.clone(),
                cmd,
                tty: stdio.tty,
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
            }),
            READ_TIMEOUT,
        );
        Ok(self
            .rt()
            .exec(req)
            .await
            .map_err(|s| to_error("Exec", s, READ_TIMEOUT))?
            .into_inner()
            .url)
    }

    async fn attach_url(&self, id: &ContainerId, stdio: Stdio) -> Result<String, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::AttachRequest {
                container_id: id.0.clone(),
                stdin: stdio.stdin,
                tty: stdio.tty,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
            }),
            READ_TIMEOUT,
        );
        Ok(self
            .rt()
            .attach(req)
            .await
            .map_err(|s| to_error("Attach", s, READ_TIMEOUT))?
            .into_inner()
            .url)
    }

    async fn port_forward_url(
        &self,
        id: &SandboxId,
        ports: Vec<i32>,
    ) -> Result<String, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::PortForwardRequest {
                pod_sandbox_id: id.0.clone(),
                port: ports,
            }),
            READ_TIMEOUT,
        );
        Ok(self
            .rt()
            .port_forward(req)
            .await
            .map_err(|s| to_error("PortForward", s, READ_TIMEOUT))?
            .into_inner()
            .url)
    }

    async fn usage(&self) -> Result<Vec<PodUse>, RuntimeError> {
        let req = timeout_of(
            tonic::Request::new(cri::ListPodSandboxStatsRequest {
                filter: Some(cri::PodSandboxStatsFilter {
                    label_selector: managed_filter(),
                    ..Default::default()
                }),
            }),
            READ_TIMEOUT,
        );
        match self.rt().list_pod_sandbox_stats(req).await {
            Ok(resp) => Ok(resp.into_inner().stats.into_iter().map(pod).collect()),
            Err(s) if s.code() == tonic::Code::Unimplemented => self.usage_by_container().await,
            Err(s) => Err(to_error("ListPodSandboxStats", s, READ_TIMEOUT)),
        }
    }
}

//! Raw CRI over one open tonic connection to the lab's socket: the floor's calls, and the
//! observer that polls `ListContainers` / `ListPodSandbox` to timestamp what podvisor did.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// One open connection to the runtime.
#[derive(Clone)]
pub struct Cri {
    rt: RuntimeServiceClient<Channel>,
}

/// A label selector of one `key=value`.
pub fn selector(key: &str, value: &str) -> HashMap<String, String> {
    [(key.to_owned(), value.to_owned())].into()
}

impl Cri {
    /// Connects now (not lazily), so the first call pays no connection set-up.
    pub async fn connect(socket: &Path) -> Result<Cri> {
        let path: PathBuf = socket.to_owned();
        let channel =
            Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .with_context(|| format!("cannot connect to {}", socket.display()))?;
        let cri = Cri {
            rt: RuntimeServiceClient::new(channel),
        };
        // One round trip so that the HTTP/2 connection is fully up before anything is timed.
        cri.client()
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .context("CRI Version")?;
        Ok(cri)
    }

    /// A client over the shared connection.
    pub fn client(&self) -> RuntimeServiceClient<Channel> {
        self.rt.clone()
    }

    /// Containers with all of `labels`, only running ones if `running`.
    pub async fn containers(
        &self,
        labels: HashMap<String, String>,
        running: bool,
    ) -> Result<Vec<cri::Container>> {
        let state = running.then_some(cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        });
        Ok(self
            .client()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    state,
                    label_selector: labels,
                    ..Default::default()
                }),
            })
            .await
            .context("ListContainers")?
            .into_inner()
            .containers)
    }

    /// Sandboxes (ready or not) with all of `labels`.
    pub async fn sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<cri::PodSandbox>> {
        Ok(self
            .client()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            })
            .await
            .context("ListPodSandbox")?
            .into_inner()
            .items)
    }

    /// The host pid of a running container's init process (from containerd's verbose status).
    pub async fn container_pid(&self, id: &str) -> Result<i32> {
        let resp = self
            .client()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: true,
            })
            .await
            .context("ContainerStatus")?
            .into_inner();
        let info = resp
            .info
            .get("info")
            .ok_or_else(|| anyhow!("ContainerStatus of {id} has no verbose info"))?;
        let v: serde_json::Value = serde_json::from_str(info).context("verbose info JSON")?;
        match v.get("pid").and_then(serde_json::Value::as_i64) {
            Some(pid) if pid > 0 => Ok(i32::try_from(pid)?),
            _ => bail!("no pid in the verbose status of {id}"),
        }
    }

    /// CRI `Exec` of `cmd` in container `id` with stdout only (as `kubectl exec` without
    /// `-i`/`-t` asks for it, minus stderr): the runtime's streaming URL for the session.
    pub async fn exec_url(&self, id: &str, cmd: Vec<String>) -> Result<String> {
        Ok(self
            .client()
            .exec(cri::ExecRequest {
                container_id: id.to_owned(),
                cmd,
                tty: false,
                stdin: false,
                stdout: true,
                stderr: false,
            })
            .await
            .context("Exec")?
            .into_inner()
            .url)
    }

    /// The path of container `id`'s CRI log file, as the runtime reports it.
    pub async fn log_path(&self, id: &str) -> Result<PathBuf> {
        let status = self
            .client()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .context("ContainerStatus")?
            .into_inner()
            .status
            .ok_or_else(|| anyhow!("ContainerStatus of {id} has no status"))?;
        if status.log_path.is_empty() {
            bail!("container {id} has no log path");
        }
        Ok(PathBuf::from(status.log_path))
    }
}

/// How the observer polls, and what its polls cost.
pub struct Poller {
    /// Sleep between two polls.
    pub interval: Duration,
    /// Round-trip times of the polls so far, in ms.
    pub round_trips: Vec<f64>,
    /// Times from one poll's start to the next one's, in ms: how stale an observation can be.
    pub cycles: Vec<f64>,
}

impl Poller {
    /// A poller sleeping `interval` between calls.
    pub fn new(interval: Duration) -> Poller {
        Poller {
            interval,
            round_trips: Vec::new(),
            cycles: Vec::new(),
        }
    }

    /// Calls `probe` until it yields a value or `timeout` passes. Returns the value and the
    /// instant the answer that showed it arrived (not when the request left: conservative).
    pub async fn until<T, F, Fut>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut probe: F,
    ) -> Result<(Instant, T)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            if let Some(l) = last.replace(sent) {
                self.cycles.push((sent - l).as_secs_f64() * 1000.0);
            }
            let found = probe().await?;
            let answered = Instant::now();
            self.round_trips
                .push((answered - sent).as_secs_f64() * 1000.0);
            if let Some(v) = found {
                return Ok((answered, v));
            }
            if answered > deadline {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            tokio::time::sleep(self.interval).await;
        }
    }
}

/// Polls `ListContainers` for `pod_name` every `interval` until aborted: the same load the
/// observer puts on containerd during podvisor's figures, for the floor measured beside it.
pub async fn background_poll(cri: Cri, pod_name: String, interval: Duration) {
    loop {
        let _ = cri
            .containers(selector(podvisor::labels::POD_NAME, &pod_name), true)
            .await;
        tokio::time::sleep(interval).await;
    }
}

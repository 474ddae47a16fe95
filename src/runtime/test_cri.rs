//! An in-process CRI server on a unix socket for the runtime's own tests: it answers what a
//! test sets and refuses the rest as unimplemented, as a runtime without a method would.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::Stream;
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tokio::sync::broadcast;
use tonic::transport::{Endpoint, Uri};
use tonic::{Request, Response, Status};

/// A CRI server that answers a few calls as told and refuses the rest as unimplemented.
#[derive(Default)]
pub struct TestCri {
    /// Streams these from `GetContainerEvents`; `None`: the method is unimplemented.
    pub events: Option<broadcast::Sender<cri::ContainerEventResponse>>,
    /// `GetContainerEvents` ends its stream at once, as CRI-O's does with pod events off
    /// (takes precedence over `events`).
    pub events_off: bool,
    /// `ListContainers` answers these (and `ListPodSandbox` an empty list); `None`: both are
    /// unimplemented.
    pub containers: Option<Vec<cri::Container>>,
    /// `ContainerStatus` fails with this; `None`: it answers the listed container exited.
    pub status_error: Option<Status>,
    /// How many `ContainerStatus` calls came in.
    pub status_calls: Arc<AtomicUsize>,
    /// `StopContainer` and `RemoveContainer` fail with this; `None`: unimplemented.
    pub stop_error: Option<Status>,
    /// `RuntimeConfig` answers this cgroup driver (a `cri::CgroupDriver` value); `None`:
    /// unimplemented, as in containerd 1.6.
    pub cgroup_driver: Option<i32>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

fn refused_or<T>(error: &Option<Status>, ok: T) -> Result<Response<T>, Status> {
    match error {
        Some(e) => Err(Status::new(e.code(), e.message())),
        None => Ok(Response::new(ok)),
    }
}

#[tonic::async_trait]
impl RuntimeService for TestCri {
    async fn version(
        &self,
        _: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Err(Status::unimplemented("method version not implemented"))
    }

    async fn run_pod_sandbox(
        &self,
        _: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        Err(Status::unimplemented(
            "method run_pod_sandbox not implemented",
        ))
    }

    async fn stop_pod_sandbox(
        &self,
        _: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        Err(Status::unimplemented(
            "method stop_pod_sandbox not implemented",
        ))
    }

    async fn remove_pod_sandbox(
        &self,
        _: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        Err(Status::unimplemented(
            "method remove_pod_sandbox not implemented",
        ))
    }

    async fn pod_sandbox_status(
        &self,
        _: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        Err(Status::unimplemented(
            "method pod_sandbox_status not implemented",
        ))
    }

    async fn list_pod_sandbox(
        &self,
        _: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        match &self.containers {
            Some(_) => Ok(Response::new(cri::ListPodSandboxResponse::default())),
            None => Err(Status::unimplemented(
                "method list_pod_sandbox not implemented",
            )),
        }
    }

    async fn create_container(
        &self,
        _: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        Err(Status::unimplemented(
            "method create_container not implemented",
        ))
    }

    async fn start_container(
        &self,
        _: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        Err(Status::unimplemented(
            "method start_container not implemented",
        ))
    }

    async fn stop_container(
        &self,
        _: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        refused_or(&self.stop_error, cri::StopContainerResponse {})
    }

    async fn remove_container(
        &self,
        _: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        refused_or(&self.stop_error, cri::RemoveContainerResponse {})
    }

    async fn list_containers(
        &self,
        _: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        match &self.containers {
            Some(containers) => Ok(Response::new(cri::ListContainersResponse {
                containers: containers.clone(),
            })),
            None => Err(Status::unimplemented(
                "method list_containers not implemented",
            )),
        }
    }

    async fn container_status(
        &self,
        req: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        self.status_calls.fetch_add(1, Ordering::SeqCst);
        let id = req.into_inner().container_id;
        refused_or(
            &self.status_error,
            cri::ContainerStatusResponse {
                status: Some(cri::ContainerStatus {
                    id,
                    state: cri::ContainerState::ContainerExited as i32,
                    exit_code: 3,
                    reason: "Error".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
    }

    async fn update_container_resources(
        &self,
        _: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        Err(Status::unimplemented(
            "method update_container_resources not implemented",
        ))
    }

    async fn reopen_container_log(
        &self,
        _: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        Err(Status::unimplemented(
            "method reopen_container_log not implemented",
        ))
    }

    async fn exec_sync(
        &self,
        _: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        Err(Status::unimplemented("method exec_sync not implemented"))
    }

    async fn exec(
        &self,
        _: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        Err(Status::unimplemented("method exec not implemented"))
    }

    async fn attach(
        &self,
        _: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        Err(Status::unimplemented("method attach not implemented"))
    }

    async fn port_forward(
        &self,
        _: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        Err(Status::unimplemented("method port_forward not implemented"))
    }

    async fn container_stats(
        &self,
        _: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        Err(Status::unimplemented(
            "method container_stats not implemented",
        ))
    }

    async fn list_container_stats(
        &self,
        _: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        Err(Status::unimplemented(
            "method list_container_stats not implemented",
        ))
    }

    async fn pod_sandbox_stats(
        &self,
        _: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        Err(Status::unimplemented(
            "method pod_sandbox_stats not implemented",
        ))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        Err(Status::unimplemented(
            "method list_pod_sandbox_stats not implemented",
        ))
    }

    async fn update_runtime_config(
        &self,
        _: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        Err(Status::unimplemented(
            "method update_runtime_config not implemented",
        ))
    }

    async fn status(
        &self,
        _: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        Err(Status::unimplemented("method status not implemented"))
    }

    async fn checkpoint_container(
        &self,
        _: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(Status::unimplemented(
            "method checkpoint_container not implemented",
        ))
    }

    async fn list_metric_descriptors(
        &self,
        _: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(Status::unimplemented(
            "method list_metric_descriptors not implemented",
        ))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(Status::unimplemented(
            "method list_pod_sandbox_metrics not implemented",
        ))
    }

    async fn runtime_config(
        &self,
        _: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        match self.cgroup_driver {
            Some(d) => Ok(Response::new(cri::RuntimeConfigResponse {
                linux: Some(cri::LinuxRuntimeConfiguration { cgroup_driver: d }),
            })),
            None => Err(Status::unimplemented(
                "method runtime_config not implemented",
            )),
        }
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        if self.events_off {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let Some(tx) = &self.events else {
            return Err(Status::unimplemented(
                "method GetContainerEvents not implemented",
            ));
        };
        let rx = tx.subscribe();
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.ok().map(|e| (Ok(e), rx))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// An image service with one image, present once a pull succeeded.
#[derive(Clone, Default)]
pub struct TestImages {
    /// The one password `PullImage` accepts; `None`: any, and none.
    pub accept: Option<String>,
    /// The user name of every `PullImage` (empty without credentials).
    pub tried: Arc<std::sync::Mutex<Vec<String>>>,
    /// `PullImage` takes this long before it answers.
    pub takes: std::time::Duration,
    /// A pull succeeded.
    pub pulled: Arc<std::sync::atomic::AtomicBool>,
    /// How many `ImageStatus` calls came in.
    pub status_calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl ImageService for TestImages {
    async fn list_images(
        &self,
        _: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Err(Status::unimplemented("method list_images not implemented"))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        self.status_calls.fetch_add(1, Ordering::SeqCst);
        let image = self.pulled.load(Ordering::SeqCst).then(|| cri::Image {
            id: "sha256:1".into(),
            repo_tags: req
                .into_inner()
                .image
                .map(|i| i.image)
                .into_iter()
                .collect(),
            size: 42,
            ..Default::default()
        });
        Ok(Response::new(cri::ImageStatusResponse {
            image,
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let auth = req.into_inner().auth.unwrap_or_default();
        self.tried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(auth.username.clone());
        tokio::time::sleep(self.takes).await;
        if let Some(accept) = &self.accept
            && *accept != auth.password
        {
            // As careless a runtime as can be: it echoes what it was sent.
            return Err(Status::unknown(format!(
                "401 Unauthorized for {}:{}",
                auth.username, auth.password
            )));
        }
        self.pulled.store(true, Ordering::SeqCst);
        Ok(Response::new(cri::PullImageResponse {
            image_ref: "sha256:1".into(),
        }))
    }

    async fn remove_image(
        &self,
        _: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(Status::unimplemented("method remove_image not implemented"))
    }

    async fn image_fs_info(
        &self,
        _: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Ok(Response::new(cri::ImageFsInfoResponse::default()))
    }
}

/// Serves `images` (and a runtime service that implements nothing) on a unix socket in a
/// fresh directory; returns the directory (keep it) and the socket path.
pub async fn serve_images(images: TestImages) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cri.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ImageServiceServer::new(images))
            .serve_with_incoming(incoming),
    );
    (dir, path)
}

/// Serves `service` on a unix socket in a fresh directory; returns the directory (keep it)
/// and the socket path.
pub async fn serve(service: TestCri) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cri.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind");
    let incoming = futures::stream::unfold(listener, |l| async move {
        let conn = l.accept().await.map(|(s, _)| s);
        Some((conn, l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(service))
            .serve_with_incoming(incoming),
    );
    (dir, path)
}

/// A channel to the server at `path`.
pub async fn channel(path: PathBuf) -> tonic::transport::Channel {
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect")
}

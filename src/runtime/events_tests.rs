//! Tests of the exit-event subscription against an in-process CRI server on a unix socket,
//! one that implements `GetContainerEvents` (as containerd 1.7+ and CRI-O do) and one that
//! refuses every call. containerd 1.6's own events service is covered by the containerd tests.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tokio::sync::broadcast;
use tonic::transport::{Endpoint, Uri};
use tonic::{Request, Response, Status};

use super::{EventSource, subscribe};

/// A CRI server that only streams container events (when `events` is set).
struct EventsOnly {
    events: Option<broadcast::Sender<cri::ContainerEventResponse>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

// Every method but GetContainerEvents refuses, as a runtime without it would.

#[tonic::async_trait]
impl RuntimeService for EventsOnly {
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
        Err(Status::unimplemented(
            "method list_pod_sandbox not implemented",
        ))
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
        Err(Status::unimplemented(
            "method stop_container not implemented",
        ))
    }

    async fn remove_container(
        &self,
        _: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        Err(Status::unimplemented(
            "method remove_container not implemented",
        ))
    }

    async fn list_containers(
        &self,
        _: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        Err(Status::unimplemented(
            "method list_containers not implemented",
        ))
    }

    async fn container_status(
        &self,
        _: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        Err(Status::unimplemented(
            "method container_status not implemented",
        ))
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
        Err(Status::unimplemented(
            "method runtime_config not implemented",
        ))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
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

async fn serve(service: EventsOnly) -> (tempfile::TempDir, tonic::transport::Channel) {
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
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect");
    (dir, channel)
}

fn event(kind: cri::ContainerEventType) -> cri::ContainerEventResponse {
    cri::ContainerEventResponse {
        container_id: "c1".into(),
        container_event_type: kind as i32,
        ..Default::default()
    }
}

#[tokio::test]
async fn cri_container_events_are_used_where_the_runtime_has_them_and_only_exits_wake() {
    let (tx, _keep) = broadcast::channel(8);
    let (_dir, channel) = serve(EventsOnly {
        events: Some(tx.clone()),
    })
    .await;
    let (source, mut exits) = subscribe(&channel).await.expect("subscribed");
    assert_eq!(source, EventSource::Cri);
    // the server sends nothing before the first event; the subscription must not wait for it
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(event(cri::ContainerEventType::ContainerCreatedEvent))
        .expect("send");
    tx.send(event(cri::ContainerEventType::ContainerStartedEvent))
        .expect("send");
    tx.send(event(cri::ContainerEventType::ContainerStoppedEvent))
        .expect("send");
    let woke = tokio::time::timeout(Duration::from_secs(5), exits.next())
        .await
        .expect("an exit arrives");
    assert_eq!(woke, Some(()));
    // nothing else queued: the created and started events were dropped
    assert!(
        tokio::time::timeout(Duration::from_millis(100), exits.next())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_runtime_with_no_event_source_is_reported_as_unimplemented() {
    let (_dir, channel) = serve(EventsOnly { events: None }).await;
    let err = subscribe(&channel).await.err().expect("no events");
    // no CRI events, and this server has no containerd events service either
    assert!(matches!(err.code(), tonic::Code::Unimplemented), "{err:?}");
}

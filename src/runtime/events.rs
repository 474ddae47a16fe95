//! Container exit notifications, so a crash is noticed at once rather than at the next relist.
//!
//! CRI v1 has `GetContainerEvents` (containerd 1.7+, CRI-O). containerd 1.6 lacks it but
//! publishes `/tasks/exit` on its own events service on the same socket, which podvisor
//! subscribes to instead. Where neither exists, there is no stream and the relist alone
//! notices exits. CRI-O has `GetContainerEvents` but, with its pod events switched off
//! (`enable_pod_events = false`, its default), ends the stream at once: that counts as none.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use super::RuntimeError;
use super::grpc::to_error;

/// Yields once whenever a container exited.
pub type ExitStream = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// Which event source a stream comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    /// CRI `GetContainerEvents`.
    Cri,
    /// containerd's events service, topic `/tasks/exit`.
    Containerd,
}

impl EventSource {
    /// Its name in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            EventSource::Cri => "cri",
            EventSource::Containerd => "containerd",
        }
    }
}

/// `containerd.services.events.v1.SubscribeRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct SubscribeRequest {
    #[prost(string, repeated, tag = "1")]
    filters: Vec<String>,
}

/// `containerd.services.events.v1.Envelope`, without the fields podvisor does not read.
#[derive(Clone, PartialEq, prost::Message)]
struct Envelope {
    #[prost(string, tag = "2")]
    namespace: String,
    #[prost(string, tag = "3")]
    topic: String,
}

/// Opens the best exit stream the runtime offers: `Ok(None)` when it offers none, `Err`
/// when it could not be asked.
pub async fn subscribe(
    channel: &Channel,
) -> Result<Option<(EventSource, ExitStream)>, RuntimeError> {
    let unimplemented = |e: &RuntimeError| {
        matches!(
            e,
            RuntimeError::Call {
                code: tonic::Code::Unimplemented,
                ..
            }
        )
    };
    match cri_events(channel).await {
        Ok(Some(stream)) => return Ok(Some((EventSource::Cri, stream))),
        // implemented but switched off (CRI-O without enable_pod_events): as good as absent
        Ok(None) => {}
        Err(e) if unimplemented(&e) => {}
        Err(e) => return Err(e),
    }
    match containerd_events(channel).await {
        Ok(Some(stream)) => Ok(Some((EventSource::Containerd, stream))),
        Ok(None) => Ok(None),
        Err(e) if unimplemented(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// How long a runtime gets to refuse `GetContainerEvents` before podvisor assumes it streams.
const REFUSAL_WINDOW: Duration = Duration::from_millis(500);

type Connect<T> = Pin<
    Box<dyn Future<Output = Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>> + Send>,
>;

/// Wake-ups for the events of `events` that `keep` picks; a failed event ends nothing.
fn wakes<T, S, F>(events: S, keep: F) -> ExitStream
where
    T: Send + 'static,
    S: Stream<Item = Result<T, tonic::Status>> + Send + 'static,
    F: Fn(&T) -> bool + Send + Sync + Copy + 'static,
{
    Box::pin(events.filter_map(move |e| async move {
        match e {
            Ok(e) if keep(&e) => Some(()),
            _ => None,
        }
    }))
}

/// A stream over a server-streaming call that may not answer until its first event: gRPC
/// servers send headers with the first message, so the call itself is awaited lazily.
fn lazy<T: Send + 'static, F>(connect: Connect<T>, keep: F) -> ExitStream
where
    F: Fn(&T) -> bool + Send + Sync + Copy + 'static,
{
    let events = futures::stream::once(connect).flat_map(|r| match r {
        Ok(resp) => resp.into_inner().boxed(),
        Err(_) => futures::stream::empty().boxed(),
    });
    wakes(events, keep)
}

fn is_exit(e: &cri::ContainerEventResponse) -> bool {
    e.container_event_type == cri::ContainerEventType::ContainerStoppedEvent as i32
}

/// Starts a server-streaming call: a runtime without the method refuses at once, one that
/// has it may stay silent until its first event, so only the refusal window is awaited.
/// `Ok(None)`: the runtime has the method but ended the stream at once, with no event
/// (CRI-O answers `GetContainerEvents` so when its pod events are switched off).
async fn open<T: Send + 'static, F>(
    method: &'static str,
    mut connect: Connect<T>,
    keep: F,
) -> Result<Option<ExitStream>, RuntimeError>
where
    F: Fn(&T) -> bool + Send + Sync + Copy + 'static,
{
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(REFUSAL_WINDOW, &mut connect).await {
        Ok(Err(status)) => Err(to_error(method, status, REFUSAL_WINDOW)),
        Ok(Ok(resp)) => {
            // An answer within the window carries queued events or an already ended stream:
            // the rest of the window tells which.
            let mut events = resp.into_inner();
            let left = REFUSAL_WINDOW.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, events.message()).await {
                Ok(Ok(None)) => Ok(None),
                Ok(Err(status)) => Err(to_error(method, status, REFUSAL_WINDOW)),
                Ok(Ok(Some(first))) => Ok(Some(wakes(
                    futures::stream::iter([Ok(first)]).chain(events),
                    keep,
                ))),
                Err(_) => Ok(Some(wakes(events, keep))),
            }
        }
        Err(_) => Ok(Some(lazy(connect, keep))),
    }
}

async fn cri_events(channel: &Channel) -> Result<Option<ExitStream>, RuntimeError> {
    let mut client = RuntimeServiceClient::new(channel.clone());
    let connect: Connect<cri::ContainerEventResponse> =
        Box::pin(async move { client.get_container_events(cri::GetEventsRequest {}).await });
    open("GetContainerEvents", connect, is_exit).await
}

fn is_task_exit(e: &Envelope) -> bool {
    e.topic == "/tasks/exit" && e.namespace == "k8s.io"
}

async fn containerd_events(channel: &Channel) -> Result<Option<ExitStream>, RuntimeError> {
    const METHOD: &str = "containerd Events.Subscribe";
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| RuntimeError::Unavailable {
        method: METHOD,
        message: e.to_string(),
    })?;
    let connect: Connect<Envelope> = Box::pin(async move {
        let path =
            http::uri::PathAndQuery::from_static("/containerd.services.events.v1.Events/Subscribe");
        let codec = tonic_prost::ProstCodec::<SubscribeRequest, Envelope>::default();
        let request = SubscribeRequest {
            filters: vec![r#"topic=="/tasks/exit",namespace=="k8s.io""#.to_owned()],
        };
        grpc.server_streaming(tonic::Request::new(request), path, codec)
            .await
    });
    open(METHOD, connect, is_task_exit).await
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;

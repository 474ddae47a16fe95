//! A containerd task left behind by a `StartContainer` whose caller went away.
//!
//! containerd (1.6, and 1.7: containerd/containerd#11037) creates a container's task in the
//! shim during `StartContainer`; when the call is cancelled mid-way (podvisor killed, as the
//! reliability suite does), the CRI plugin marks the container exited ("StartError") but the
//! task it had created stays in the shim. From then on every `RemoveContainer`, and every
//! `RemovePodSandbox` of its sandbox, fails with `FailedPrecondition: ... cannot delete running
//! task <id>`: the pod can neither be replaced by an edit nor removed with its file, for good.
//! By hand one would run `ctr -n k8s.io task rm -f <id>`; podvisor does the same through
//! containerd's own Tasks service on the runtime's socket (SIGKILL, wait, delete) and asks the
//! CRI again. Only a task the CRI has already declared exited gets here: the CRI refuses to
//! remove a container it thinks runs with another error.

use std::time::Duration;

use tonic::transport::Channel;

use super::RuntimeError;
use super::grpc::to_error;

/// The namespace the CRI plugin keeps its containers in.
const NAMESPACE: &str = "k8s.io";

/// How long each Tasks call may take: the task gets this long to exit after SIGKILL before
/// it is deleted anyway.
const WAIT: Duration = Duration::from_secs(10);

/// `containerd.services.tasks.v1.KillRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct KillRequest {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(string, tag = "2")]
    exec_id: String,
    #[prost(uint32, tag = "3")]
    signal: u32,
    #[prost(bool, tag = "4")]
    all: bool,
}

/// `containerd.services.tasks.v1.WaitRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct WaitRequest {
    #[prost(string, tag = "1")]
    container_id: String,
    #[prost(string, tag = "2")]
    exec_id: String,
}

/// `containerd.services.tasks.v1.DeleteTaskRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct DeleteTaskRequest {
    #[prost(string, tag = "1")]
    container_id: String,
}

/// A Tasks method: the name errors carry, and its gRPC path.
struct Method(&'static str, &'static str);

const KILL_TASK: Method = Method(
    "containerd Tasks.Kill",
    "/containerd.services.tasks.v1.Tasks/Kill",
);
const WAIT_TASK: Method = Method(
    "containerd Tasks.Wait",
    "/containerd.services.tasks.v1.Tasks/Wait",
);
const DELETE_TASK: Method = Method(
    "containerd Tasks.Delete",
    "/containerd.services.tasks.v1.Tasks/Delete",
);

/// Any answer whose fields podvisor does not read (`google.protobuf.Empty`, `WaitResponse`,
/// `DeleteResponse`): prost skips unknown fields.
#[derive(Clone, PartialEq, prost::Message)]
struct Ignored {}

/// The container whose leftover task a failed remove names, if that is why it failed.
pub fn named_by(error: &RuntimeError) -> Option<&str> {
    const MARK: &str = "cannot delete running task ";
    let RuntimeError::Call {
        code: tonic::Code::FailedPrecondition,
        message,
        ..
    } = error
    else {
        return None;
    };
    let rest = &message[message.find(MARK)? + MARK.len()..];
    let id = rest.split(|c: char| !c.is_ascii_hexdigit()).next()?;
    (id.len() == 64).then_some(id)
}

/// Kills and deletes the task of container `id` in containerd's CRI namespace. A task that is
/// already gone (the CRI plugin's own exit handler may delete it on the way) is done.
pub async fn clear(channel: &Channel, id: &str) -> Result<(), RuntimeError> {
    const SIGKILL: u32 = 9;
    let kill = KillRequest {
        container_id: id.to_owned(),
        exec_id: String::new(),
        signal: SIGKILL,
        all: true,
    };
    gone_is_done(call(channel, KILL_TASK, kill).await)?;
    let wait = WaitRequest {
        container_id: id.to_owned(),
        exec_id: String::new(),
    };
    // a task that does not die within the wait is still asked to go: the delete says why not
    match call(channel, WAIT_TASK, wait).await {
        Ok(()) | Err(RuntimeError::NotFound { .. } | RuntimeError::Timeout { .. }) => {}
        Err(e) => return Err(e),
    }
    let delete = DeleteTaskRequest {
        container_id: id.to_owned(),
    };
    gone_is_done(call(channel, DELETE_TASK, delete).await)
}

fn gone_is_done(result: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Err(RuntimeError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Calls `method` with `message` in the CRI's namespace, allowing it [`WAIT`].
async fn call<M>(
    channel: &Channel,
    Method(label, path): Method,
    message: M,
) -> Result<(), RuntimeError>
where
    M: prost::Message + Send + Sync + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.map_err(|e| RuntimeError::Unavailable {
        method: label,
        message: e.to_string(),
    })?;
    let path = http::uri::PathAndQuery::from_static(path);
    let mut request = tonic::Request::new(message);
    request.set_timeout(WAIT);
    request.metadata_mut().insert(
        "containerd-namespace",
        tonic::metadata::MetadataValue::from_static(NAMESPACE),
    );
    let codec = tonic_prost::ProstCodec::<M, Ignored>::default();
    grpc.unary(request, path, codec)
        .await
        .map(|_| ())
        .map_err(|s| to_error(label, s, WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "c0ba50eaf8a37ac0ee370e9511ce8032bef755e7e839840978de128704e78b9b";

    fn precondition(message: String) -> RuntimeError {
        RuntimeError::Call {
            method: "RemovePodSandbox",
            code: tonic::Code::FailedPrecondition,
            message,
        }
    }

    #[test]
    fn a_remove_refused_for_a_leftover_task_names_its_container() {
        // containerd 1.6.20's words, as the reliability suite met them
        let e = precondition(format!(
            "failed to remove container \"{ID}\": failed to delete containerd container \"{ID}\": \
             cannot delete running task {ID}: failed precondition"
        ));
        assert_eq!(named_by(&e), Some(ID));
    }

    #[test]
    fn other_refusals_name_no_task() {
        let running = precondition(format!(
            "container \"{ID}\" is in running state, cannot remove"
        ));
        assert_eq!(named_by(&running), None);
        let not_an_id = precondition("cannot delete running task ../etc: x".into());
        assert_eq!(named_by(&not_an_id), None);
        let other_code = RuntimeError::Call {
            method: "RemoveContainer",
            code: tonic::Code::Unknown,
            message: format!("cannot delete running task {ID}: failed precondition"),
        };
        assert_eq!(named_by(&other_code), None);
    }
}

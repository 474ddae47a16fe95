//! gRPC statuses as [`RuntimeError`]s: by the status code the runtime answered with, or, for
//! statuses the client made itself, by the transport error they carry. Never by message text.

use std::time::Duration;

use super::RuntimeError;

/// The error for a failed call of `method` that had `timeout` to answer.
pub fn to_error(method: &'static str, status: tonic::Status, timeout: Duration) -> RuntimeError {
    use tonic::Code;
    let message = status.message().to_owned();
    match status.code() {
        Code::Unavailable | Code::Cancelled => RuntimeError::Unavailable { method, message },
        Code::DeadlineExceeded => RuntimeError::Timeout { method, timeout },
        Code::NotFound => RuntimeError::NotFound { method, message },
        // A connection that broke mid-call can surface as `Unknown` carrying the transport
        // error itself; that is the runtime being unreachable, not refusing.
        _ if from_transport(&status) => RuntimeError::Unavailable { method, message },
        code => RuntimeError::Call {
            method,
            code,
            message,
        },
    }
}

/// Whether the status was made by the client from a connection failure.
fn from_transport(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<hyper::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Stopping or removing something the runtime no longer has is done (CRI's contract; both
/// containerd and CRI-O answer `NotFound`).
pub fn done_if_gone(result: Result<(), RuntimeError>) -> Result<(), RuntimeError> {
    match result {
        Err(RuntimeError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_is_read_by_its_code_not_its_text() {
        let t = Duration::from_secs(1);
        let err = |s| to_error("StopContainer", s, t);
        assert!(matches!(
            err(tonic::Status::not_found("an error occurred: not found")),
            RuntimeError::NotFound { .. }
        ));
        assert!(matches!(
            err(tonic::Status::unknown("container \"x\" not found")),
            RuntimeError::Call {
                code: tonic::Code::Unknown,
                ..
            }
        ));
        assert!(err(tonic::Status::unavailable("connection refused")).is_unavailable());
        assert!(matches!(
            err(tonic::Status::deadline_exceeded("late")),
            RuntimeError::Timeout { .. }
        ));
        let broken = tonic::Status::from_error(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        assert!(err(broken).is_unavailable());
    }

    #[test]
    fn stopping_what_the_runtime_no_longer_has_is_done() {
        let gone = RuntimeError::NotFound {
            method: "RemoveContainer",
            message: "no such container".into(),
        };
        assert_eq!(done_if_gone(Err(gone)), Ok(()));
        let refused = RuntimeError::Call {
            method: "RemoveContainer",
            code: tonic::Code::FailedPrecondition,
            message: "still running".into(),
        };
        assert_eq!(done_if_gone(Err(refused.clone())), Err(refused));
    }
}

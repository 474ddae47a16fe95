//! Lifecycle hooks (`postStart`, `preStop`), as `pkg/kubelet/lifecycle/handlers.go` runs
//! them: exec through the runtime, HTTP GET with the probes' client, or sleep.
//!
//! This module runs one handler and reports how it went; what a failed `postStart` means for
//! the container (it is killed) and how long a `preStop` may take (the grace period) is
//! decided by the caller, which passes the `timeout`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, LifecycleHandler};
use thiserror::Error;
use tokio::time::Instant;

use super::exec::output;
use super::http::{HttpError, Purpose, Request};
use super::tls;
use crate::runtime::{ContainerId, Runtime, RuntimeError};

/// Why a lifecycle hook failed.
#[derive(Debug, Error)]
pub enum HookError {
    /// An exec handler's command exited non-zero.
    #[error("command {command:?} exited with {exit_code}: {output}")]
    Exited {
        /// The command, words joined by spaces.
        command: String,
        /// Its exit code.
        exit_code: i32,
        /// Its standard output then standard error, at most 10 KiB.
        output: String,
    },
    /// An exec handler's command could not be run.
    #[error("running command {command:?}")]
    Exec {
        /// The command, words joined by spaces.
        command: String,
        /// What the runtime said.
        #[source]
        source: RuntimeError,
    },
    /// An exec handler without a command.
    #[error("exec handler has no command")]
    EmptyCommand,
    /// An HTTP handler's request got no response.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A sleep handler longer than the time the hook was given.
    #[error("sleep of {seconds}s did not finish within {timeout:?}")]
    SleepCut {
        /// The requested sleep.
        seconds: i64,
        /// The time the hook was given.
        timeout: Duration,
    },
    /// A tcpSocket handler, which the API keeps only for compatibility.
    #[error(
        "tcpSocket is not supported as a lifecycle handler (the kubelet does not run it either)"
    )]
    TcpSocket,
    /// A handler with no action set.
    #[error("lifecycle handler has no action")]
    NoAction,
    /// The hook was still running when its time was up (for preStop: the grace period).
    /// containerd 1.6's `ExecSync` returns only once the command's children exit, however
    /// long after its own timeout, so the caller cuts the hook with its own timer.
    #[error("did not finish within {timeout:?}")]
    Cut {
        /// The time the hook was given.
        timeout: Duration,
    },
}

/// Runs a lifecycle `handler` for `container`, within `timeout`.
///
/// * exec: the command through the runtime's `ExecSync`; a non-zero exit is an error
///   carrying the output.
/// * httpGet: a GET like an HTTP probe's (`User-Agent: kube-lifecycle/1.34`, same-host
///   redirects). Like the kubelet, only a request that gets no response is an error: the
///   status code is not checked. An HTTPS request answered in plain HTTP is retried over
///   HTTP without the `Authorization` header.
/// * sleep: sleeps, failing if the sleep is longer than `timeout`.
/// * tcpSocket: an error; the kubelet does not support it either.
pub async fn run_handler<R: Runtime>(
    rt: &R,
    handler: &LifecycleHandler,
    container: &ContainerId,
    ports: &[ContainerPort],
    default_host: &str,
    timeout: Duration,
) -> Result<(), HookError> {
    if let Some(action) = &handler.exec {
        let command = action.command.clone().unwrap_or_default();
        run_exec(rt, container, command, timeout).await
    } else if let Some(action) = &handler.http_get {
        let request = Request::new(action, ports, default_host, Purpose::Lifecycle)?;
        run_http(&request, timeout).await
    } else if let Some(action) = &handler.sleep {
        run_sleep(action.seconds, timeout).await
    } else if handler.tcp_socket.is_some() {
        Err(HookError::TcpSocket)
    } else {
        Err(HookError::NoAction)
    }
}

async fn run_exec<R: Runtime>(
    rt: &R,
    container: &ContainerId,
    command: Vec<String>,
    timeout: Duration,
) -> Result<(), HookError> {
    if command.is_empty() {
        return Err(HookError::EmptyCommand);
    }
    let shown = command.join(" ");
    match rt.exec_sync(container, command, timeout).await {
        Ok(out) if out.exit_code == 0 => Ok(()),
        Ok(out) => Err(HookError::Exited {
            command: shown,
            exit_code: out.exit_code,
            output: output(&out),
        }),
        Err(source) => Err(HookError::Exec {
            command: shown,
            source,
        }),
    }
}

async fn run_http(request: &Request, timeout: Duration) -> Result<(), HookError> {
    let start = Instant::now();
    match request.fetch(timeout).await {
        Ok(_) => Ok(()),
        // The kubelet discards hook response bodies: a broken one does not fail the hook.
        Err(e) if e.is_body_error() => Ok(()),
        Err(HttpError::Tls { url, source }) if tls::is_plaintext_reply(&source) => {
            let remaining = timeout.saturating_sub(start.elapsed());
            match request.downgraded().fetch(remaining).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_body_error() => Ok(()),
                // Like the kubelet, report the original error when the fallback fails too.
                Err(_) => Err(HttpError::Tls { url, source }.into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}

async fn run_sleep(seconds: i64, timeout: Duration) -> Result<(), HookError> {
    let wanted = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
    if wanted <= timeout {
        tokio::time::sleep(wanted).await;
        Ok(())
    } else {
        tokio::time::sleep(timeout).await;
        Err(HookError::SleepCut { seconds, timeout })
    }
}

#[cfg(test)]
mod tests {
    use http::header::{AUTHORIZATION, USER_AGENT};
    use k8s_openapi::api::core::v1::{ExecAction, SleepAction, TCPSocketAction};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::*;
    use crate::action::testing::{get, reply, running_container, serve};
    use crate::clock::Clock;
    use crate::runtime::{ExecOutput, FakeCall, FakeRuntime};

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn exec_handler(command: &[&str]) -> LifecycleHandler {
        LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(command.iter().map(|s| (*s).to_owned()).collect()),
            }),
            ..LifecycleHandler::default()
        }
    }

    fn http_handler(action: k8s_openapi::api::core::v1::HTTPGetAction) -> LifecycleHandler {
        LifecycleHandler {
            http_get: Some(action),
            ..LifecycleHandler::default()
        }
    }

    fn sleep_handler(seconds: i64) -> LifecycleHandler {
        LifecycleHandler {
            sleep: Some(SleepAction { seconds }),
            ..LifecycleHandler::default()
        }
    }

    async fn run(rt: &FakeRuntime, handler: &LifecycleHandler) -> Result<(), HookError> {
        let id = running_container(rt);
        run_handler(rt, handler, &id, &[], "127.0.0.1", TIMEOUT).await
    }

    #[tokio::test]
    async fn an_exec_hook_runs_its_command_in_the_container() {
        let rt = FakeRuntime::new(Clock::System);
        run(&rt, &exec_handler(&["nginx", "-s", "quit"]))
            .await
            .unwrap();
        let id = running_container(&rt);
        assert_eq!(
            rt.calls(),
            [FakeCall::ExecSync(
                id,
                vec!["nginx".to_owned(), "-s".to_owned(), "quit".to_owned()]
            )]
        );
    }

    #[tokio::test]
    async fn an_exec_hook_exiting_non_zero_fails_with_its_output() {
        let rt = FakeRuntime::new(Clock::System);
        rt.set_exec_result(
            "warmup",
            ExecOutput {
                exit_code: 2,
                stdout: Vec::new(),
                stderr: b"cache unavailable".to_vec(),
            },
        );
        let err = run(&rt, &exec_handler(&["warmup"])).await.unwrap_err();
        assert!(
            matches!(&err, HookError::Exited { exit_code: 2, output, .. } if output == "cache unavailable"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_exec_hook_the_runtime_cannot_run_fails() {
        let rt = FakeRuntime::new(Clock::System);
        let gone = ContainerId("gone".to_owned());
        let err = run_handler(
            &rt,
            &exec_handler(&["true"]),
            &gone,
            &[],
            "127.0.0.1",
            TIMEOUT,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HookError::Exec { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn an_http_hook_sends_a_lifecycle_get() {
        let (addr, seen) = serve(|_| async { reply(200, &[], "") }).await;
        let rt = FakeRuntime::new(Clock::System);
        run(&rt, &http_handler(get(addr.port(), "/shutdown", &[])))
            .await
            .unwrap();
        let parts = seen.lock().unwrap()[0].clone();
        assert_eq!(parts.uri, "/shutdown");
        assert_eq!(parts.headers[USER_AGENT], "kube-lifecycle/1.34");
    }

    #[tokio::test]
    async fn an_http_hook_does_not_check_the_status_code() {
        let (addr, _) = serve(|_| async { reply(500, &[], "oops") }).await;
        let rt = FakeRuntime::new(Clock::System);
        run(&rt, &http_handler(get(addr.port(), "/", &[])))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_http_hook_that_cannot_connect_fails() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let rt = FakeRuntime::new(Clock::System);
        let err = run(&rt, &http_handler(get(port, "/", &[])))
            .await
            .unwrap_err();
        assert!(
            matches!(err, HookError::Http(HttpError::Connect { .. })),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_http_hook_with_an_unknown_port_name_fails() {
        let rt = FakeRuntime::new(Clock::System);
        let mut action = get(0, "/", &[]);
        action.port = IntOrString::String("admin".to_owned());
        let err = run(&rt, &http_handler(action)).await.unwrap_err();
        assert!(
            matches!(err, HookError::Http(HttpError::Port(_))),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_https_hook_answered_in_plain_http_is_retried_over_http() {
        let (addr, seen) = serve(|_| async { reply(200, &[], "") }).await;
        let mut action = get(addr.port(), "/drain", &[("Authorization", "Bearer secret")]);
        action.scheme = Some("HTTPS".to_owned());
        let rt = FakeRuntime::new(Clock::System);
        run(&rt, &http_handler(action)).await.unwrap();
        let seen = seen.lock().unwrap();
        // The TLS attempt never produced a request; the plain one did, without credentials.
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].uri, "/drain");
        assert!(seen[0].headers.get(AUTHORIZATION).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_hook_sleeps_for_its_seconds() {
        let rt = FakeRuntime::new(Clock::System);
        let start = Instant::now();
        run(&rt, &sleep_handler(3)).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_sleep_hook_longer_than_the_timeout_is_cut_short_and_fails() {
        let rt = FakeRuntime::new(Clock::System);
        let start = Instant::now();
        let err = run(&rt, &sleep_handler(60)).await.unwrap_err();
        assert_eq!(start.elapsed(), TIMEOUT);
        assert!(
            matches!(err, HookError::SleepCut { seconds: 60, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_tcp_socket_hook_is_not_supported() {
        let rt = FakeRuntime::new(Clock::System);
        let handler = LifecycleHandler {
            tcp_socket: Some(TCPSocketAction {
                host: None,
                port: IntOrString::Int(80),
            }),
            ..LifecycleHandler::default()
        };
        let err = run(&rt, &handler).await.unwrap_err();
        assert!(matches!(err, HookError::TcpSocket));
        assert!(err.to_string().contains("kubelet"));
    }

    #[tokio::test]
    async fn a_handler_without_an_action_fails() {
        let rt = FakeRuntime::new(Clock::System);
        let err = run(&rt, &LifecycleHandler::default()).await.unwrap_err();
        assert!(matches!(err, HookError::NoAction));
    }
}

//! Exec probes (`pkg/probe/exec`): a command run in the container through the runtime's
//! `ExecSync`; exit status 0 is a success.

use std::time::Duration;

use crate::runtime::{ContainerId, ExecOutput, Runtime, RuntimeError};

use super::Outcome;

/// The most of a command's output kept in a message.
const MAX_OUTPUT: usize = 10 * 1024;

/// Probes by running `command` in `container`, for at most `timeout`. A non-zero exit or a
/// timeout is a failure; any other runtime error means the probe could not run.
pub async fn exec<R: Runtime>(
    rt: &R,
    container: &ContainerId,
    command: Vec<String>,
    timeout: Duration,
) -> Outcome {
    if command.is_empty() {
        return Outcome::Unknown("exec probe has no command".to_owned());
    }
    let shown = command.join(" ");
    match rt.exec_sync(container, command, timeout).await {
        Ok(out) if out.exit_code == 0 => Outcome::Success,
        Ok(out) => Outcome::Failure(format!(
            "command {shown:?} exited with {}: {}",
            out.exit_code,
            output(&out)
        )),
        // The kubelet's ExecProbeTimeout: a command that overruns fails the probe.
        Err(RuntimeError::Timeout { .. }) => {
            Outcome::Failure(format!("command {shown:?} timed out after {timeout:?}"))
        }
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// Standard output then standard error, at most 10 KiB, as text.
pub(super) fn output(out: &ExecOutput) -> String {
    let mut bytes = out.stdout.clone();
    bytes.extend_from_slice(&out.stderr);
    bytes.truncate(MAX_OUTPUT);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::action::testing::running_container;
    use crate::clock::Clock;
    use crate::runtime::{FakeCall, FakeRuntime};

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[tokio::test]
    async fn exit_zero_is_a_success() {
        let rt = FakeRuntime::new(Clock::System);
        let id = running_container(&rt);
        let outcome = exec(
            &rt,
            &id,
            cmd(&["cat", "/tmp/healthy"]),
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(outcome, Outcome::Success);
        assert_eq!(
            rt.calls(),
            [FakeCall::ExecSync(id, cmd(&["cat", "/tmp/healthy"]))]
        );
    }

    #[tokio::test]
    async fn a_non_zero_exit_is_a_failure_with_code_and_output() {
        let rt = FakeRuntime::new(Clock::System);
        let id = running_container(&rt);
        rt.set_exec_result(
            "check",
            ExecOutput {
                exit_code: 3,
                stdout: b"db down\n".to_vec(),
                stderr: b"retrying".to_vec(),
            },
        );
        let outcome = exec(&rt, &id, cmd(&["check", "--db"]), Duration::from_secs(1)).await;
        assert_eq!(
            outcome,
            Outcome::Failure("command \"check --db\" exited with 3: db down\nretrying".to_owned())
        );
    }

    #[tokio::test]
    async fn long_output_is_truncated_to_ten_kib() {
        let rt = FakeRuntime::new(Clock::System);
        let id = running_container(&rt);
        rt.set_exec_result(
            "chatty",
            ExecOutput {
                exit_code: 1,
                stdout: vec![b'a'; 64 * 1024],
                stderr: Vec::new(),
            },
        );
        let outcome = exec(&rt, &id, cmd(&["chatty"]), Duration::from_secs(1)).await;
        let prefix = "command \"chatty\" exited with 1: ".len();
        assert_eq!(outcome.message().len(), prefix + MAX_OUTPUT);
    }

    #[tokio::test]
    async fn a_runtime_error_means_the_probe_could_not_run() {
        let rt = FakeRuntime::new(Clock::System);
        let stopped = ContainerId("not-running".to_owned());
        let outcome = exec(&rt, &stopped, cmd(&["true"]), Duration::from_secs(1)).await;
        assert!(matches!(outcome, Outcome::Unknown(_)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_command_that_times_out_is_a_failure() {
        let rt = FakeRuntime::new(Clock::System);
        let id = running_container(&rt);
        rt.fail_next(
            "exec_sync",
            RuntimeError::Timeout {
                method: "ExecSync",
                timeout: Duration::from_secs(1),
            },
        );
        let outcome = exec(&rt, &id, cmd(&["sleep", "10"]), Duration::from_secs(1)).await;
        assert_eq!(
            outcome,
            Outcome::Failure("command \"sleep 10\" timed out after 1s".to_owned())
        );
    }

    #[tokio::test]
    async fn an_empty_command_cannot_run() {
        let rt = FakeRuntime::new(Clock::System);
        let id = running_container(&rt);
        let outcome = exec(&rt, &id, Vec::new(), Duration::from_secs(1)).await;
        assert!(matches!(outcome, Outcome::Unknown(_)));
        assert!(rt.calls().is_empty());
    }
}

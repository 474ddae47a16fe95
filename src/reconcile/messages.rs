//! Termination messages: the runtime's record says where an exited container's message is
//! (its termination-message file, its log); the host reads it, once per container, and the
//! observation carries it from then on.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;

use crate::host::Host;
use crate::runtime::{ContainerId, Observed};

/// Reads at once, at most.
const CONCURRENCY: usize = 16;

/// The messages read so far, per container still listed.
#[derive(Debug, Default)]
pub struct TerminationMessages {
    read: HashMap<ContainerId, String>,
}

impl TerminationMessages {
    /// Reads the messages of containers that exited since the last call and puts every
    /// non-empty one into `observed` (an empty one leaves the runtime's message).
    pub async fn fill<H: Host>(&mut self, host: &H, observed: &mut Observed) {
        let unread: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| !self.read.contains_key(&c.id))
            .filter_map(|c| Some((c.id.clone(), c.termination.clone()?, c.exit_code?)))
            .collect();
        let fresh: Vec<(ContainerId, String)> =
            futures::stream::iter(unread)
                .map(|(id, source, code)| async move {
                    (id, host.termination_message(source, code).await)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
        self.read.extend(fresh);
        let live: HashSet<&ContainerId> = observed.containers.iter().map(|c| &c.id).collect();
        self.read.retain(|id, _| live.contains(id));
        for c in &mut observed.containers {
            if let Some(message) = self.read.get(&c.id).filter(|m| !m.is_empty()) {
                c.message.clone_from(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::host::{FakeHost, HostCall, TerminationSource};
    use crate::pod::{ContainerKind, PodKey, PodUid, TerminationReason};
    use crate::runtime::{ContainerState, ObservedContainer, SandboxId};

    fn exited(id: &str, file: &str) -> ObservedContainer {
        ObservedContainer {
            id: ContainerId(id.into()),
            sandbox: SandboxId("s".into()),
            key: PodKey {
                namespace: "default".into(),
                name: "web-n".into(),
            },
            uid: PodUid("u".into()),
            name: "c".into(),
            attempt: 0,
            restarts: 0,
            kind: ContainerKind::App,
            state: ContainerState::Exited,
            hash: None,
            grace_seconds: None,
            pre_stop: None,
            image: "i:1".into(),
            image_ref: String::new(),
            created_at: None,
            started_at: None,
            finished_at: None,
            exit_code: Some(1),
            reason: Some(TerminationReason::Error),
            termination: Some(TerminationSource {
                file: Some(PathBuf::from(file)),
                log: None,
                fallback_to_logs: false,
            }),
            message: "runtime says".into(),
        }
    }

    #[tokio::test]
    async fn an_exited_containers_message_is_read_from_the_host_once_and_kept() {
        let host = FakeHost::new();
        host.set_termination_message(std::path::Path::new("/msg/a"), "disk full");
        let mut messages = TerminationMessages::default();
        let mut observed = Observed {
            containers: vec![exited("a", "/msg/a"), exited("b", "/msg/b")],
            ..Observed::default()
        };
        messages.fill(&host, &mut observed).await;
        assert_eq!(observed.containers[0].message, "disk full");
        assert_eq!(
            observed.containers[1].message, "runtime says",
            "an empty message leaves the runtime's"
        );

        let mut again = Observed {
            containers: vec![exited("a", "/msg/a")],
            ..Observed::default()
        };
        messages.fill(&host, &mut again).await;
        assert_eq!(again.containers[0].message, "disk full");
        let reads = host
            .calls()
            .into_iter()
            .filter(|c| matches!(c, HostCall::TerminationMessage(_)))
            .count();
        assert_eq!(reads, 2, "one read per container, not per pass");
    }

    #[tokio::test]
    async fn a_running_container_has_no_message_to_read() {
        let host = FakeHost::new();
        let mut running = exited("a", "/msg/a");
        running.state = ContainerState::Running;
        running.exit_code = None;
        running.termination = None;
        let mut observed = Observed {
            containers: vec![running],
            ..Observed::default()
        };
        TerminationMessages::default()
            .fill(&host, &mut observed)
            .await;
        assert!(host.calls().is_empty());
    }
}

//! An in-memory [`Host`] for tests: records every call, can be told to fail the next ones,
//! and touches no filesystem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Host, HostError, Ready, TerminationSource};
use crate::pod::environment::Addresses;
use crate::pod::{PodKey, PodUid, StaticPod};

/// One call made to a [`FakeHost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCall {
    /// `prepare_pod(pod)`.
    PreparePod(PodKey),
    /// `check_pod(pod)`.
    CheckPod(PodKey),
    /// `prepare_container(pod, name, attempt)`.
    PrepareContainer(PodKey, String, u32),
    /// `cleanup_pod(key, uid)`.
    CleanupPod(PodKey, PodUid),
    /// `link_container_log(pod, name, attempt, id)`.
    LinkLog(PodKey, String, u32, String),
    /// `unlink_container_log(id)`.
    UnlinkLog(String),
    /// `termination_message(source, exit_code)`, by the source's file.
    TerminationMessage(Option<PathBuf>),
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<HostCall>,
    failures: BTreeMap<&'static str, Vec<HostError>>,
    no_logs: bool,
    messages: BTreeMap<PathBuf, String>,
}

/// An in-memory host.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: Mutex<State>,
}

impl FakeHost {
    /// A host where everything succeeds.
    pub fn new() -> FakeHost {
        FakeHost::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<HostCall> {
        self.lock().calls.clone()
    }

    /// Makes the next call of `method` (`"check_pod"`, `"prepare_pod"`,
    /// `"prepare_container"`, `"cleanup_pod"`) fail.
    pub fn fail_next(&self, method: &'static str, message: &str) {
        self.lock()
            .failures
            .entry(method)
            .or_default()
            .push(HostError::new(method, Path::new("/fake"), message));
    }

    /// Makes the termination-message file `file` hold `text`.
    pub fn set_termination_message(&self, file: &Path, text: &str) {
        self.lock()
            .messages
            .insert(file.to_owned(), text.to_owned());
    }

    /// Makes log directories unusable from now on (a full disk).
    pub fn set_logs_unusable(&self) {
        self.lock().no_logs = true;
    }

    fn record(&self, call: HostCall, method: &'static str) -> Result<Ready, HostError> {
        let mut s = self.lock();
        s.calls.push(call);
        if let Some(list) = s.failures.get_mut(method)
            && !list.is_empty()
        {
            return Err(list.remove(0));
        }
        Ok(Ready { logs: !s.no_logs })
    }
}

impl Host for FakeHost {
    async fn prepare_pod(&self, pod: Arc<StaticPod>) -> Result<Ready, HostError> {
        self.record(HostCall::PreparePod(pod.key.clone()), "prepare_pod")
    }

    async fn check_pod(&self, pod: Arc<StaticPod>) -> Result<(), HostError> {
        self.record(HostCall::CheckPod(pod.key.clone()), "check_pod")
            .map(|_| ())
    }

    async fn prepare_container(
        &self,
        pod: Arc<StaticPod>,
        name: String,
        attempt: u32,
        _addrs: Addresses,
    ) -> Result<Ready, HostError> {
        self.record(
            HostCall::PrepareContainer(pod.key.clone(), name, attempt),
            "prepare_container",
        )
    }

    async fn link_container_log(
        &self,
        pod: Arc<StaticPod>,
        name: String,
        attempt: u32,
        id: String,
    ) -> Result<(), HostError> {
        self.record(
            HostCall::LinkLog(pod.key.clone(), name, attempt, id),
            "link_container_log",
        )
        .map(|_| ())
    }

    async fn unlink_container_log(&self, id: String) {
        self.lock().calls.push(HostCall::UnlinkLog(id));
    }

    async fn termination_message(&self, source: TerminationSource, _exit_code: i32) -> String {
        let mut s = self.lock();
        s.calls
            .push(HostCall::TerminationMessage(source.file.clone()));
        source
            .file
            .and_then(|f| s.messages.get(&f).cloned())
            .unwrap_or_default()
    }

    async fn cleanup_pod(&self, key: PodKey, uid: PodUid) -> Result<(), HostError> {
        self.record(HostCall::CleanupPod(key, uid), "cleanup_pod")
            .map(|_| ())
    }
}

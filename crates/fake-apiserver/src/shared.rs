//! What the HTTP edge and the live watch streams share: the fake's whole state behind one
//! lock, the signal that wakes live watches when a write moves what they serve, and the
//! response body type both produce.

use std::convert::Infallible;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;

use super::admission::NodeIdentity;
use super::csr::Signer;
use super::review::Reviews;
use super::store::Store;
use super::{Mode, RequestRecord};

/// A response body: a whole JSON or text body, or a watch stream.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A scripted failure: the next `times` requests matching method and path prefix fail.
#[derive(Clone, Debug)]
pub(super) struct Injection {
    pub(super) method: Method,
    pub(super) path_prefix: String,
    pub(super) status: StatusCode,
    pub(super) times: usize,
}

/// Everything the fake knows; one lock, never held across an await.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) store: Store,
    pub(super) mode: Mode,
    pub(super) node_restriction: bool,
    pub(super) node_identity: Option<String>,
    pub(super) token: Option<String>,
    pub(super) injections: Vec<Injection>,
    pub(super) log: Vec<RequestRecord>,
    /// How often watches that allow bookmarks get one; `None` for the API server's minute.
    pub(super) bookmark_interval: Option<Duration>,
    /// Tokens, authorization policy and the reviews received, for the review APIs.
    pub(super) reviews: Reviews,
    /// Approves and signs new CertificateSigningRequests, when set.
    pub(super) csr_signer: Signer,
}

/// What live watches react to: a new revision, a compaction, a mode change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watermark {
    revision: u64,
    compacted: u64,
    mode: Mode,
}

impl State {
    fn watermark(&self) -> Watermark {
        Watermark {
            revision: self.store.current(),
            compacted: self.store.history().compacted(),
            mode: self.mode,
        }
    }

    pub(super) fn restriction(&self) -> Option<NodeIdentity> {
        self.node_restriction.then(|| match &self.node_identity {
            Some(n) => NodeIdentity::Named(n.clone()),
            None => NodeIdentity::PodsNode,
        })
    }
}

/// The state shared by the server tasks and the [`super::FakeApiServer`] handle.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a lock is released with the [`Watermark`] moved: live watches wait
    /// on it rather than poll.
    changed: tokio::sync::watch::Sender<()>,
}

impl Shared {
    pub(super) fn new(state: State) -> Shared {
        Shared {
            state: Mutex::new(state),
            changed: tokio::sync::watch::Sender::new(()),
        }
    }

    /// Locks the state. A panic in a test thread must not hide the state from the next one.
    pub(super) fn lock(&self) -> Locked<'_> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let seen = state.watermark();
        Locked {
            state,
            seen,
            changed: &self.changed,
        }
    }

    /// Changes to wait for: marked whenever the store, its history or the mode changed.
    pub(super) fn subscribe(&self) -> tokio::sync::watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// The locked state; unlocking it wakes the live watches if it changed what they serve.
pub(super) struct Locked<'a> {
    state: MutexGuard<'a, State>,
    seen: Watermark,
    changed: &'a tokio::sync::watch::Sender<()>,
}

impl Deref for Locked<'_> {
    type Target = State;

    fn deref(&self) -> &State {
        &self.state
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.state
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if self.state.watermark() != self.seen {
            self.changed.send_replace(());
        }
    }
}

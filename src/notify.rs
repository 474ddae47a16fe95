//! systemd integration (`Type=notify`): `READY=1` once the first full reconcile is done, and
//! `WATCHDOG=1` pings only while the reconcile loop makes progress, so a stuck podvisor is
//! restarted by systemd. Does nothing when `NOTIFY_SOCKET` is unset.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::reconcile::ReconcileState;

/// Decides what to tell systemd after a reconcile state change. Pure.
#[derive(Debug)]
pub struct Notifier {
    ready_sent: bool,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    last_passes: u64,
}

/// A message for systemd.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// `READY=1` with a status line.
    Ready(String),
    /// `WATCHDOG=1`.
    Watchdog,
}

impl Notifier {
    /// A notifier; `watchdog` is systemd's `WatchdogSec`, if set.
    pub fn new(watchdog: Option<Duration>) -> Notifier {
        Notifier {
            ready_sent: false,
            watchdog,
            last_ping: None,
            last_passes: 0,
        }
    }

    /// What to send, given the reconciler's state at `now`.
    pub fn on_state(&mut self, state: &ReconcileState, now: Instant) -> Vec<Message> {
        let mut out = Vec::new();
        if state.synced && !self.ready_sent {
            self.ready_sent = true;
            out.push(Message::Ready(format!(
                "{} pods reconciled",
                state.observed.sandboxes.len()
            )));
        }
        let progressed = state.passes > self.last_passes;
        self.last_passes = state.passes;
        if let Some(interval) = self.watchdog
            && progressed
            && self
                .last_ping
                .is_none_or(|t| now.duration_since(t) >= interval / 2)
        {
            self.last_ping = Some(now);
            out.push(Message::Watchdog);
        }
        out
    }
}

fn send(message: &Message) {
    let result = match message {
        Message::Ready(status) => {
            sd_notify::notify(&[NotifyState::Ready, NotifyState::Status(status)])
        }
        Message::Watchdog => sd_notify::notify(&[NotifyState::Watchdog]),
    };
    if let Err(e) = result {
        debug!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd about readiness and liveness until `shutdown`.
pub async fn run(mut state: watch::Receiver<Arc<ReconcileState>>, shutdown: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        shutdown.cancelled().await; // not under systemd: nothing to tell, but stay with the others
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    info!(watchdog = ?watchdog, "notifying systemd");
    let mut notifier = Notifier::new(watchdog);
    loop {
        let current = state.borrow_and_update().clone();
        for m in notifier.on_state(&current, Instant::now()) {
            send(&m);
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = state.changed() => if r.is_err() { break },
        }
    }
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(passes: u64, synced: bool) -> ReconcileState {
        ReconcileState {
            passes,
            synced,
            ..Default::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ready_once_after_the_first_reconcile_and_pings_only_on_progress() {
        let mut n = Notifier::new(Some(Duration::from_secs(10)));
        let t0 = Instant::now();
        assert_eq!(n.on_state(&state(1, false), t0), [Message::Watchdog]);
        let got = n.on_state(&state(2, true), t0 + Duration::from_secs(1));
        assert_eq!(
            got,
            [Message::Ready("0 pods reconciled".into())],
            "ready, and no ping before half the interval"
        );
        assert!(
            n.on_state(&state(3, true), t0 + Duration::from_secs(4))
                .is_empty()
        );
        assert_eq!(
            n.on_state(&state(4, true), t0 + Duration::from_secs(5)),
            [Message::Watchdog]
        );
        // no progress: no ping, however long it has been
        assert!(
            n.on_state(&state(4, true), t0 + Duration::from_secs(30))
                .is_empty()
        );
        assert_eq!(
            n.on_state(&state(5, true), t0 + Duration::from_secs(31)),
            [Message::Watchdog]
        );
    }

    #[test]
    fn without_a_watchdog_only_readiness_is_sent() {
        let mut n = Notifier::new(None);
        assert!(n.on_state(&state(1, false), Instant::now()).is_empty());
        assert_eq!(n.on_state(&state(2, true), Instant::now()).len(), 1);
        assert!(n.on_state(&state(3, true), Instant::now()).is_empty());
    }
}

//! Capped exponential backoff with jitter: for reconnecting to the API server, waiting for
//! the Node, and retrying a mirror pod the API server rejected.
//!
//! Pure: the jitter factor is passed in, so tests choose it; [`jitter`] draws one.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::pod::{PodKey, SpecHash};

/// A random jitter factor in `[0.5, 1.0]`: delays are spread over the upper half of each step,
/// so that many nodes restarting together do not hit the API server in lockstep.
pub fn jitter() -> f64 {
    rand::random_range(0.5..=1.0)
}

/// Delays that double from `initial` up to `max`.
#[derive(Clone, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    step: Option<Duration>,
}

impl Backoff {
    /// A backoff whose first delay is `initial` and whose delays never exceed `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            step: None,
        }
    }

    /// The next delay, scaled by `jitter` (clamped to `[0, 1]`).
    pub fn next(&mut self, jitter: f64) -> Duration {
        let step = match self.step {
            None => self.initial,
            Some(s) => s.saturating_mul(2).min(self.max),
        };
        self.step = Some(step);
        step.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// Starts again from `initial`, after a success.
    pub fn reset(&mut self) {
        self.step = None;
    }
}

/// When a mirror pod that the API server rejected may be tried again, per pod version.
/// A new version of the pod (another hash) is tried at once.
#[derive(Debug)]
pub struct RetryGate {
    initial: Duration,
    max: Duration,
    pods: BTreeMap<PodKey, (SpecHash, Backoff, Instant)>,
}

impl RetryGate {
    /// A gate whose delays double from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> RetryGate {
        RetryGate {
            initial,
            max,
            pods: BTreeMap::new(),
        }
    }

    /// Whether this version of the pod may be tried at `now`.
    pub fn ready(&self, key: &PodKey, hash: &SpecHash, now: Instant) -> bool {
        match self.pods.get(key) {
            Some((h, _, at)) if h == hash => now >= *at,
            _ => true,
        }
    }

    /// Records a failure at `now`; returns when the next attempt may be made.
    pub fn failed(&mut self, key: &PodKey, hash: &SpecHash, now: Instant, jitter: f64) -> Instant {
        let entry = self
            .pods
            .entry(key.clone())
            .or_insert_with(|| (hash.clone(), Backoff::new(self.initial, self.max), now));
        if entry.0 != *hash {
            *entry = (hash.clone(), Backoff::new(self.initial, self.max), now);
        }
        entry.2 = now + entry.1.next(jitter);
        entry.2
    }

    /// Forgets the pod, after a success or when it is gone.
    pub fn clear(&mut self, key: &PodKey) {
        self.pods.remove(key);
    }

    /// Forgets every pod not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&PodKey) -> bool) {
        self.pods.retain(|k, _| keep(k));
    }

    /// The earliest retry later than `after` (a pass at `after` took care of earlier ones).
    pub fn next_retry_after(&self, after: Option<Instant>) -> Option<Instant> {
        self.pods
            .values()
            .map(|(_, _, at)| *at)
            .filter(|at| after.is_none_or(|after| *at > after))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(ms(100), ms(700));
        let got: Vec<_> = (0..5).map(|_| b.next(1.0)).collect();
        assert_eq!(got, [ms(100), ms(200), ms(400), ms(700), ms(700)]);
        b.reset();
        assert_eq!(b.next(1.0), ms(100));
    }

    #[test]
    fn jitter_scales_the_step_without_changing_the_progression() {
        let mut b = Backoff::new(ms(100), ms(1000));
        assert_eq!(b.next(0.5), ms(50));
        assert_eq!(b.next(0.5), ms(100));
        assert_eq!(b.next(7.0), ms(400), "jitter is clamped to 1");
        let j = jitter();
        assert!((0.5..=1.0).contains(&j));
    }

    #[test]
    fn a_rejected_version_waits_but_a_new_version_is_tried_at_once() {
        let key = PodKey {
            namespace: "kube-system".into(),
            name: "etcd-n1".into(),
        };
        let (v1, v2) = (SpecHash("a".into()), SpecHash("b".into()));
        let mut gate = RetryGate::new(ms(100), ms(1000));
        let t0 = Instant::now();
        assert!(gate.ready(&key, &v1, t0));
        assert_eq!(gate.failed(&key, &v1, t0, 1.0), t0 + ms(100));
        assert!(!gate.ready(&key, &v1, t0 + ms(99)));
        assert!(gate.ready(&key, &v1, t0 + ms(100)));
        assert!(gate.ready(&key, &v2, t0));
        assert_eq!(gate.failed(&key, &v1, t0, 1.0), t0 + ms(200));
        assert_eq!(gate.next_retry_after(None), Some(t0 + ms(200)));
        assert_eq!(
            gate.next_retry_after(Some(t0 + ms(200))),
            None,
            "already handled"
        );
        assert_eq!(
            gate.failed(&key, &v2, t0, 1.0),
            t0 + ms(100),
            "a new version starts over"
        );
        gate.clear(&key);
        assert!(gate.ready(&key, &v2, t0));
        assert_eq!(gate.next_retry_after(None), None);
    }
}

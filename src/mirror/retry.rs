//! When a mirror pod the API server rejected may be posted again: per pod version, by
//! [`Policy::API_REJECTED`]; a new version of the pod is tried at once.

use std::collections::BTreeMap;

use tokio::time::Instant;

use crate::backoff::{Delays, Policy};
use crate::pod::{PodKey, SpecHash};

/// When a mirror pod that the API server rejected may be tried again, per pod version.
/// A new version of the pod (another hash) is tried at once.
#[derive(Debug)]
pub struct RetryGate {
    policy: Policy,
    pods: BTreeMap<PodKey, (SpecHash, Delays, Instant)>,
}

impl RetryGate {
    /// A gate whose delays follow `policy`.
    pub fn new(policy: Policy) -> RetryGate {
        RetryGate {
            policy,
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
            .or_insert_with(|| (hash.clone(), Delays::new(self.policy), now));
        if entry.0 != *hash {
            *entry = (hash.clone(), Delays::new(self.policy), now);
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
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_rejected_version_waits_but_a_new_version_is_tried_at_once() {
        let key = PodKey {
            namespace: "kube-system".into(),
            name: "etcd-n1".into(),
        };
        let (v1, v2) = (SpecHash("a".into()), SpecHash("b".into()));
        let mut gate = RetryGate::new(Policy::API_REJECTED.with(ms(100), ms(1000)));
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

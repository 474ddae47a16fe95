//! Every retry in podvisor waits by one rule: a delay that doubles from a first step up to a
//! cap, optionally spread by jitter, and forgotten after a quiet time. Each policy's
//! constants are here, named, beside the reason for them.
//!
//! * [`Delays`]: one thing retrying (a connection): each failure waits the next delay.
//! * [`Backoff`]: many things keyed (containers, pods, images) with the kubelet's semantics
//!   (`client-go/util/flowcontrol`): a wait counts from the failure, and a key that stayed
//!   quiet for `reset_after` starts over.
//!
//! Pure: "now" and the jitter factor are passed in; [`jitter`] draws one.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::clock::Timestamp;

/// How one kind of retry waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// A key without a new failure for this long starts over at `initial` (keyed backoffs).
    pub reset_after: Duration,
    /// Whether delays are spread over the upper half of each step, for retries that many
    /// nodes could make together against one server.
    pub jitter: bool,
}

impl Policy {
    /// The kubelet's CrashLoopBackOff: 10 s doubling to 300 s, reset after 600 s of running.
    pub const CRASH_LOOP: Policy = Policy::new(secs(10), secs(300), secs(600));
    /// The kubelet's image pull backoff: 10 s doubling to 300 s.
    pub const IMAGE_PULL: Policy = Policy::new(secs(10), secs(300), secs(600));
    /// A pod whose work failed (the runtime refused a step): 1 s doubling to 60 s.
    pub const POD_WORK: Policy = Policy::new(secs(1), secs(60), secs(600));
    /// Relisting an unreachable runtime: 100 ms doubling to 5 s, so that a restarted
    /// containerd is noticed within seconds. Local, so no jitter.
    pub const RUNTIME: Policy = Policy::new(Duration::from_millis(100), secs(5), secs(600));
    /// Subscribing to the runtime's exit events again: 1 s doubling to 30 s (relisting
    /// notices exits meanwhile).
    pub const EXIT_EVENTS: Policy = Policy::new(secs(1), secs(30), secs(600));
    /// Reconnecting to the API server or looking for the Node again, as the kubelet:
    /// 100 ms doubling to 7 s, with jitter.
    pub const API_SERVER: Policy =
        Policy::new(Duration::from_millis(100), secs(7), secs(600)).jittered();
    /// Posting a mirror pod the API server rejected again: 5 s doubling to 300 s, with
    /// jitter (a new version of the pod is tried at once).
    pub const API_REJECTED: Policy = Policy::new(secs(5), secs(300), secs(600)).jittered();

    /// A policy without jitter.
    pub const fn new(initial: Duration, max: Duration, reset_after: Duration) -> Policy {
        Policy {
            initial,
            max,
            reset_after,
            jitter: false,
        }
    }

    /// The same policy with jitter.
    pub const fn jittered(self) -> Policy {
        Policy {
            jitter: true,
            ..self
        }
    }

    /// The same policy with another first delay and cap (tests shorten them).
    pub const fn with(self, initial: Duration, max: Duration) -> Policy {
        Policy {
            initial,
            max,
            ..self
        }
    }

    /// The step after `previous` (the first step when there was none).
    fn step(&self, previous: Option<Duration>) -> Duration {
        match previous {
            None => self.initial,
            Some(d) => d.saturating_mul(2).min(self.max.max(self.initial)),
        }
    }

    /// A jitter factor for this policy: drawn when it has jitter, else 1.
    pub fn draw(&self) -> f64 {
        if self.jitter { jitter() } else { 1.0 }
    }
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A random jitter factor in `[0.5, 1.0]`: a delay is spread over the upper half of its step.
pub fn jitter() -> f64 {
    rand::random_range(0.5..=1.0)
}

/// The delays of one thing retrying.
#[derive(Clone, Debug, PartialEq)]
pub struct Delays {
    policy: Policy,
    step: Option<Duration>,
}

impl Delays {
    /// Delays by `policy`, starting at its first step.
    pub fn new(policy: Policy) -> Delays {
        Delays { policy, step: None }
    }

    /// The next delay, its step scaled by `jitter` (clamped to `[0, 1]`; 1 for policies
    /// without jitter). Pure.
    pub fn next(&mut self, jitter: f64) -> Duration {
        let step = self.policy.step(self.step);
        self.step = Some(step);
        let factor = if self.policy.jitter { jitter } else { 1.0 };
        step.mul_f64(factor.clamp(0.0, 1.0))
    }

    /// The next delay, with jitter drawn when the policy has it.
    pub fn next_drawn(&mut self) -> Duration {
        let draw = self.policy.draw();
        self.next(draw)
    }

    /// Starts again from the first step, after a success.
    pub fn reset(&mut self) {
        self.step = None;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    last_update: Timestamp,
}

/// Per-key backoff with the kubelet's semantics: the first failure retries at once, later
/// ones wait a doubling delay counted from the failure.
#[derive(Clone, Debug)]
pub struct Backoff<K> {
    policy: Policy,
    entries: HashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    /// A keyed backoff by `policy` (its jitter does not apply: keyed waits are the
    /// kubelet's, exact).
    pub fn new(policy: Policy) -> Backoff<K> {
        Backoff {
            policy,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, event: Timestamp) -> bool {
        event.since(e.last_update) > self.policy.reset_after
    }

    /// If `key` must still wait after a failure at `event`, when it may retry.
    pub fn retry_at(&self, key: &K, event: Timestamp, now: Timestamp) -> Option<Timestamp> {
        let e = self.entries.get(key)?;
        if self.expired(e, event) {
            return None;
        }
        let at = event.plus(e.delay);
        (now < at).then_some(at)
    }

    /// Records a retry of `key` at `now` after a failure at `event`: the next wait doubles, or
    /// starts over if the last retry was long enough before `event`.
    pub fn next(&mut self, key: &K, event: Timestamp, now: Timestamp) {
        let previous = self
            .entries
            .get(key)
            .filter(|e| !self.expired(e, event))
            .map(|e| e.delay);
        let delay = self.policy.step(previous);
        self.entries.insert(
            key.clone(),
            Entry {
                delay,
                last_update: now,
            },
        );
    }

    /// Forgets `key` (after a success).
    pub fn reset(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Drops entries idle for longer than `reset_after`, which can no longer delay anything.
    pub fn gc(&mut self, now: Timestamp) {
        let reset_after = self.policy.reset_after;
        self.entries
            .retain(|_, e| now.since(e.last_update) <= reset_after);
    }

    /// The current wait for `key`, if it has one.
    pub fn delay(&self, key: &K) -> Option<Duration> {
        self.entries.get(key).map(|e| e.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Timestamp {
        Timestamp(0).plus(Duration::from_secs(secs))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_failure_retries_at_once() {
        let b: Backoff<&str> = Backoff::new(Policy::CRASH_LOOP);
        assert_eq!(b.retry_at(&"c", t(100), t(100)), None);
    }

    #[test]
    fn crash_loop_waits_double_from_ten_seconds_to_five_minutes() {
        let mut b = Backoff::new(Policy::CRASH_LOOP);
        let mut now = t(1000);
        b.next(&"c", now, now); // first crash: restarted at once
        let mut waits = Vec::new();
        for _ in 0..8 {
            let crash = now.plus(Duration::from_secs(1)); // it crashes a second after starting
            let at = b.retry_at(&"c", crash, crash).expect("in backoff");
            waits.push(at.since(crash).as_secs());
            now = at;
            assert_eq!(b.retry_at(&"c", crash, now), None, "free exactly at expiry");
            b.next(&"c", crash, now);
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn crash_loop_resets_after_ten_minutes_of_running() {
        let mut b = Backoff::new(Policy::CRASH_LOOP);
        b.next(&"c", t(0), t(0));
        b.next(&"c", t(1), t(11)); // now at 20 s
        assert_eq!(b.delay(&"c"), Some(Duration::from_secs(20)));
        // ran from t=11 for more than 600 s before crashing again: restart at once, start over
        let crash = t(11 + 601);
        assert_eq!(b.retry_at(&"c", crash, crash), None);
        b.next(&"c", crash, crash);
        assert_eq!(b.delay(&"c"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn gc_forgets_idle_entries() {
        let mut b = Backoff::new(Policy::CRASH_LOOP);
        b.next(&"c", t(0), t(0));
        b.gc(t(599));
        assert!(b.delay(&"c").is_some());
        b.gc(t(601));
        assert!(b.delay(&"c").is_none());
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut d = Delays::new(Policy::RUNTIME);
        let got: Vec<_> = (0..8).map(|_| d.next(1.0)).collect();
        assert_eq!(
            got,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000)
            ]
        );
        d.reset();
        assert_eq!(d.next(1.0), ms(100));
    }

    #[test]
    fn jitter_scales_a_jittered_policys_step_without_changing_the_progression() {
        let mut d = Delays::new(Policy::API_SERVER.with(ms(100), ms(1000)));
        assert_eq!(d.next(0.5), ms(50));
        assert_eq!(d.next(0.5), ms(100));
        assert_eq!(d.next(7.0), ms(400), "jitter is clamped to 1");
        let j = jitter();
        assert!((0.5..=1.0).contains(&j));
        let mut exact = Delays::new(Policy::EXIT_EVENTS);
        assert_eq!(exact.next(0.5), Duration::from_secs(1), "no jitter asked");
    }

    #[test]
    fn a_cap_below_the_first_step_never_shortens_it() {
        let mut d = Delays::new(Policy::new(ms(300), ms(100), ms(1000)));
        assert_eq!((d.next(1.0), d.next(1.0)), (ms(300), ms(300)));
    }

    #[test]
    fn the_policies_are_the_kubelets_where_it_has_one() {
        let p = |p: Policy| (p.initial, p.max);
        assert_eq!(
            p(Policy::CRASH_LOOP),
            (Duration::from_secs(10), Duration::from_secs(300))
        );
        assert_eq!(
            p(Policy::IMAGE_PULL),
            (Duration::from_secs(10), Duration::from_secs(300))
        );
        assert_eq!(p(Policy::API_SERVER), (ms(100), Duration::from_secs(7)));
        let jitter = |p: Policy| p.jitter;
        assert!(jitter(Policy::API_SERVER) && jitter(Policy::API_REJECTED));
        assert!(!jitter(Policy::CRASH_LOOP) && !jitter(Policy::RUNTIME));
    }
}

//! Exponential backoff with the kubelet's semantics (`client-go/util/flowcontrol` as the
//! kubelet configures it): the first failure retries at once, then 10 s doubling to 5 min,
//! forgotten after 10 min without a new failure. Pure: "now" is always passed in.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::clock::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    delay: Duration,
    last_update: Timestamp,
}

/// Per-key backoff state.
#[derive(Clone, Debug)]
pub struct Backoff<K> {
    initial: Duration,
    max: Duration,
    reset_after: Duration,
    entries: HashMap<K, Entry>,
}

impl<K: Eq + Hash + Clone> Backoff<K> {
    /// The kubelet's CrashLoopBackOff: 10 s doubling to 300 s, reset after 600 s.
    pub fn crash_loop() -> Backoff<K> {
        Backoff::new(
            Duration::from_secs(10),
            Duration::from_secs(300),
            Duration::from_secs(600),
        )
    }

    /// A backoff starting at `initial`, doubling up to `max`, forgotten when the event comes
    /// more than `reset_after` after the last retry.
    pub fn new(initial: Duration, max: Duration, reset_after: Duration) -> Backoff<K> {
        Backoff {
            initial,
            max,
            reset_after,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, event: Timestamp) -> bool {
        event.since(e.last_update) > self.reset_after
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
    /// starts over at `initial` if the last retry was long enough before `event`.
    pub fn next(&mut self, key: &K, event: Timestamp, now: Timestamp) {
        let delay = match self.entries.get(key) {
            Some(e) if !self.expired(e, event) => (e.delay * 2).min(self.max),
            _ => self.initial,
        };
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
        let reset_after = self.reset_after;
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

    #[test]
    fn first_failure_retries_at_once() {
        let b: Backoff<&str> = Backoff::crash_loop();
        assert_eq!(b.retry_at(&"c", t(100), t(100)), None);
    }

    #[test]
    fn waits_double_from_ten_seconds_to_five_minutes() {
        let mut b = Backoff::crash_loop();
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
    fn backoff_resets_after_ten_minutes_of_running() {
        let mut b = Backoff::crash_loop();
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
        let mut b = Backoff::crash_loop();
        b.next(&"c", t(0), t(0));
        b.gc(t(599));
        assert!(b.delay(&"c").is_some());
        b.gc(t(601));
        assert!(b.delay(&"c").is_none());
    }
}

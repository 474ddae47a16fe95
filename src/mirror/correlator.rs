//! What the kubelet's event correlator (`client-go/tools/record/events_cache.go`) does before
//! an event reaches the API server, so that a probe failing every second does not write an
//! event every second forever. Pure: time is passed in.
//!
//! * [`Aggregator`]: events about one object with the same type and reason but different
//!   messages are combined once ten of them arrive within ten minutes: from then on they
//!   share one event whose message is `(combined from similar events): <latest message>`.
//! * [`SpamFilter`]: a token bucket per involved object: a burst of 25 writes, then one more
//!   every 5 minutes; events beyond it are dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::events::{EventKey, PendingEvent};
use crate::clock::Timestamp;
use crate::pod::PodKey;

/// Writes an object may get at once (`defaultSpamBurst`).
pub const SPAM_BURST: f64 = 25.0;
/// One more write per this long (`defaultSpamQPS` = 1/300).
pub const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Distinct messages that make a reason's events combine (`defaultAggregateMaxEvents`).
pub const AGGREGATE_AFTER: usize = 10;
/// How long similar events are counted together (`defaultAggregateIntervalInSeconds`).
pub const AGGREGATE_WINDOW: Duration = Duration::from_secs(600);
/// The prefix of a combined event's message.
pub const COMBINED: &str = "(combined from similar events): ";
/// Objects remembered at most; the least recently seen go first.
const CAPACITY: usize = 4096;

#[derive(Clone, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

/// Token buckets per involved object.
#[derive(Debug, Default)]
pub struct SpamFilter {
    buckets: BTreeMap<PodKey, Bucket>,
}

impl SpamFilter {
    /// Whether an event about `pod` may be written at `now`; takes a token if so.
    pub fn allow(&mut self, pod: &PodKey, now: Timestamp) -> bool {
        if self.buckets.len() >= CAPACITY && !self.buckets.contains_key(pod) {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.buckets.remove(&k);
            }
        }
        let bucket = self.buckets.entry(pod.clone()).or_insert(Bucket {
            tokens: SPAM_BURST,
            at: now,
        });
        let elapsed = now.since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed / SPAM_REFILL.as_secs_f64()).min(SPAM_BURST);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The messages seen lately for one (object, type, reason, field).
#[derive(Clone, Debug)]
struct Similar {
    messages: BTreeSet<String>,
    since: Timestamp,
}

/// Combines floods of similar events.
#[derive(Debug, Default)]
pub struct Aggregator {
    seen: BTreeMap<EventKey, Similar>,
}

impl Aggregator {
    /// `event` as it should be posted at `now`: unchanged, or, once its reason floods,
    /// keyed as the one combined event with the combined message.
    pub fn aggregate(&mut self, mut event: PendingEvent, now: Timestamp) -> PendingEvent {
        let mut group = event.key.clone();
        group.message.clear();
        if self.seen.len() >= CAPACITY && !self.seen.contains_key(&group) {
            let oldest = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.since)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.seen.remove(&k);
            }
        }
        let similar = self.seen.entry(group).or_insert(Similar {
            messages: BTreeSet::new(),
            since: now,
        });
        if now.since(similar.since) > AGGREGATE_WINDOW {
            similar.messages.clear();
            similar.since = now;
        }
        similar.messages.insert(event.key.message.clone());
        if similar.messages.len() >= AGGREGATE_AFTER {
            event.combined = Some(format!("{COMBINED}{}", event.key.message));
            event.key.message = COMBINED.to_owned();
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;

    const T0: Timestamp = Timestamp(1_700_000_000_000_000_000);

    fn at(secs: u64) -> Timestamp {
        T0.plus(Duration::from_secs(secs))
    }

    fn pod() -> PodKey {
        PodKey {
            namespace: "kube-system".into(),
            name: "etcd-n1".into(),
        }
    }

    fn pending(message: &str, when: Timestamp) -> PendingEvent {
        PendingEvent {
            key: EventKey {
                pod: pod(),
                type_: EventType::Warning.as_str(),
                reason: "Unhealthy".into(),
                message: message.into(),
                field_path: None,
            },
            first: when,
            last: when,
            count: 1,
            combined: None,
        }
    }

    #[test]
    fn a_probe_failing_every_second_writes_25_events_then_one_per_5_minutes_issue_17() {
        let mut spam = SpamFilter::default();
        let allowed = (0..120).filter(|s| spam.allow(&pod(), at(*s))).count();
        assert_eq!(allowed, 25, "the burst, then nothing within 2 minutes");
        let hour: Vec<u64> = (120..3720).filter(|s| spam.allow(&pod(), at(*s))).collect();
        assert_eq!(hour.len(), 12, "one every 5 minutes: {hour:?}");
        let other = PodKey {
            namespace: "kube-system".into(),
            name: "kube-apiserver-n1".into(),
        };
        assert!(spam.allow(&other, at(3720)), "buckets are per object");
    }

    #[test]
    fn ten_different_messages_of_one_reason_combine_into_one_event_issue_17() {
        let mut agg = Aggregator::default();
        let keys: Vec<EventKey> = (0..12)
            .map(|i| {
                agg.aggregate(pending(&format!("probe failed: {i}"), at(i)), at(i))
                    .key
            })
            .collect();
        assert!(keys[..9].iter().all(|k| !k.message.starts_with(COMBINED)));
        assert_eq!(keys[9], keys[10], "from the tenth on, one key: one event");
        let last = agg.aggregate(pending("probe failed: x", at(20)), at(20));
        assert_eq!(
            last.combined.as_deref(),
            Some("(combined from similar events): probe failed: x")
        );
        // After the window, counting starts over.
        let fresh = agg.aggregate(pending("probe failed: y", at(700)), at(700));
        assert_eq!(fresh.key.message, "probe failed: y");
    }
}

//! Pod events posted as core/v1 Events about the mirror pod, the way the kubelet's recorder
//! writes them (`source.component`, `count`, `firstTimestamp`/`lastTimestamp`).
//!
//! * [`EventBuffer`] (pure) holds events until they can be posted: while the API server is
//!   away, and while a pod's mirror pod is being created. It is bounded: when full, the oldest
//!   event is dropped. Repeats (same pod, type, reason, message and field) waiting in the
//!   buffer are folded into one with a count.
//! * [`EventPoster`] posts them; a repeat of an event posted in the last ten minutes bumps
//!   that event's `count` instead of creating a new one (the kubelet's event correlator).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::client::{MirrorError, call};
use crate::clock::Timestamp;
use crate::event::{EventType, PodEvent};
use crate::pod::{NodeName, PodKey};
use crate::status::api_time;

/// `source.component` and `reportingComponent` of posted events.
pub const COMPONENT: &str = "podvisor";

/// How long a posted event keeps absorbing repeats, as the kubelet's correlator does.
const REPEAT_WINDOW: Duration = Duration::from_secs(600);

/// How many posted events are remembered for folding repeats.
const RECENT_CAPACITY: usize = 256;

/// What makes two events repeats of each other.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey {
    /// The pod.
    pub pod: PodKey,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
    /// The container field path.
    pub field_path: Option<String>,
}

/// One event, with its repeats, waiting to be posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEvent {
    /// What it is.
    pub key: EventKey,
    /// When it first happened.
    pub first: Timestamp,
    /// When it last happened.
    pub last: Timestamp,
    /// How many times.
    pub count: i32,
    /// The message to post when the correlator combined it with similar events (the key's
    /// message is then the combined event's, the same for all of them).
    pub combined: Option<String>,
}

/// Where a pending event goes now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Post it; about the mirror pod with this UID, or, without one, about the pod by name.
    Post(Option<String>),
    /// Keep it: the pod's mirror pod is on its way.
    Hold,
}

/// Events waiting to be posted, oldest first, at most `capacity`.
#[derive(Debug)]
pub struct EventBuffer {
    pending: VecDeque<PendingEvent>,
    capacity: usize,
    dropped: u64,
}

impl EventBuffer {
    /// An empty buffer holding at most `capacity` events (at least one).
    pub fn new(capacity: usize) -> EventBuffer {
        EventBuffer {
            pending: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
        }
    }

    /// Adds an event: folded into a waiting repeat, else appended, dropping the oldest if full.
    pub fn push(&mut self, event: PodEvent) {
        let key = EventKey {
            pod: event.key,
            type_: match event.type_ {
                EventType::Normal => EventType::Normal.as_str(),
                EventType::Warning => EventType::Warning.as_str(),
            },
            reason: event.reason,
            message: event.message,
            field_path: event.field_path,
        };
        if let Some(same) = self.pending.iter_mut().find(|p| p.key == key) {
            same.count = same.count.saturating_add(1);
            same.first = same.first.min(event.at);
            same.last = same.last.max(event.at);
            return;
        }
        if self.pending.len() >= self.capacity {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(PendingEvent {
            key,
            first: event.at,
            last: event.at,
            count: 1,
            combined: None,
        });
    }

    /// Takes the events `route` says to post, oldest first, with their mirror pod UID;
    /// held events stay.
    pub fn take(
        &mut self,
        route: impl Fn(&PodKey) -> Route,
    ) -> Vec<(PendingEvent, Option<String>)> {
        let mut out = Vec::new();
        let mut kept = VecDeque::with_capacity(self.pending.len());
        for event in self.pending.drain(..) {
            match route(&event.key.pod) {
                Route::Post(uid) => out.push((event, uid)),
                Route::Hold => kept.push_back(event),
            }
        }
        self.pending = kept;
        out
    }

    /// Puts events that could not be posted back in front, oldest first; if that overfills
    /// the buffer, the oldest go.
    pub fn requeue(&mut self, events: Vec<PendingEvent>) {
        for event in events.into_iter().rev() {
            self.pending.push_front(event);
        }
        while self.pending.len() > self.capacity {
            self.pending.pop_front();
            self.dropped += 1;
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Events dropped because the buffer was full, since it was created.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// The Event to create for a pending event about the pod (its mirror pod when `uid` is set).
pub fn new_event(
    event: &PendingEvent,
    name: String,
    uid: Option<String>,
    node: &NodeName,
) -> Event {
    let pod = &event.key.pod;
    Event {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(pod.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Pod".to_owned()),
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            uid,
            field_path: event.key.field_path.clone(),
            ..ObjectReference::default()
        },
        reason: Some(event.key.reason.clone()),
        message: Some(
            event
                .combined
                .clone()
                .unwrap_or_else(|| event.key.message.clone()),
        ),
        type_: Some(event.key.type_.to_owned()),
        count: Some(event.count),
        first_timestamp: Some(api_time(event.first)),
        last_timestamp: Some(api_time(event.last)),
        source: Some(EventSource {
            component: Some(COMPONENT.to_owned()),
            host: Some(node.as_str().to_owned()),
        }),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(node.as_str().to_owned()),
        ..Event::default()
    }
}

/// The kubelet's Node event reason when condition `kind` starts (`holds`) or stops holding
/// (`NodeHasDiskPressure`, `NodeHasNoDiskPressure`, `NodeReady`, ...).
pub fn node_event_reason(kind: &str, holds: bool) -> Option<&'static str> {
    Some(match (kind, holds) {
        ("MemoryPressure", true) => "NodeHasInsufficientMemory",
        ("MemoryPressure", false) => "NodeHasSufficientMemory",
        ("DiskPressure", true) => "NodeHasDiskPressure",
        ("DiskPressure", false) => "NodeHasNoDiskPressure",
        ("PIDPressure", true) => "NodeHasInsufficientPID",
        ("PIDPressure", false) => "NodeHasSufficientPID",
        ("Ready", true) => "NodeReady",
        ("Ready", false) => "NodeNotReady",
        _ => return None,
    })
}

/// The Event the kubelet records about its Node when a condition flips: Normal, in
/// `default`, about the Node (whose UID the kubelet gives as its name), "Node <name> status
/// is now: <reason>". `nth` tells apart the events of one moment in their names.
pub fn new_node_event(node: &NodeName, reason: &str, at: Timestamp, nth: usize) -> Event {
    let name = node.as_str();
    let unique = at.0.saturating_add(i64::try_from(nth).unwrap_or(0));
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{unique:x}")),
            namespace: Some("default".to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            kind: Some("Node".to_owned()),
            name: Some(name.to_owned()),
            uid: Some(name.to_owned()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_owned()),
        message: Some(format!("Node {name} status is now: {reason}")),
        type_: Some("Normal".to_owned()),
        count: Some(1),
        first_timestamp: Some(api_time(at)),
        last_timestamp: Some(api_time(at)),
        source: Some(EventSource {
            component: Some("kubelet".to_owned()),
            host: Some(name.to_owned()),
        }),
        reporting_component: Some(COMPONENT.to_owned()),
        reporting_instance: Some(name.to_owned()),
        ..Event::default()
    }
}

/// Posts a Node event.
pub async fn post_node_event(
    client: &kube::Client,
    event: &Event,
    timeout: Duration,
) -> Result<(), MirrorError> {
    let api: Api<Event> = Api::namespaced(client.clone(), "default");
    call(timeout, api.create(&PostParams::default(), event)).await?;
    Ok(())
}

#[derive(Clone, Debug)]
struct Posted {
    name: String,
    uid: Option<String>,
    count: i32,
    last: Timestamp,
}

/// Posts events and remembers recent ones to fold repeats into.
#[derive(Debug, Default)]
pub struct EventPoster {
    recent: BTreeMap<EventKey, Posted>,
    last_name: i64,
}

impl EventPoster {
    /// A unique name, `<pod>.<hex nanoseconds>` as the kubelet's recorder names events.
    fn name(&mut self, pod: &PodKey, at: Timestamp) -> String {
        let nanos = at.0.max(self.last_name.saturating_add(1));
        self.last_name = nanos;
        format!("{}.{:x}", pod.name, nanos)
    }

    /// Posts one event, or bumps the count of its recent twin.
    pub async fn post(
        &mut self,
        client: &kube::Client,
        event: &PendingEvent,
        uid: Option<String>,
        node: &NodeName,
        timeout: Duration,
    ) -> Result<(), MirrorError> {
        let api: Api<Event> = Api::namespaced(client.clone(), &event.key.pod.namespace);
        let twin = self
            .recent
            .get(&event.key)
            .filter(|p| p.uid == uid && event.first.since(p.last) < REPEAT_WINDOW)
            .cloned();
        if let Some(twin) = twin {
            let count = twin.count.saturating_add(event.count);
            let mut patch = json!({"count": count, "lastTimestamp": api_time(event.last)});
            if let Some(message) = &event.combined {
                patch["message"] = json!(message);
            }
            let bumped = call(
                timeout,
                api.patch(&twin.name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await;
            match bumped {
                Ok(_) => {
                    self.remember(event, twin.name, uid, count);
                    return Ok(());
                }
                // Gone (expired, deleted): post it anew.
                Err(e) if e.is_code(404) => {}
                Err(e) => return Err(e),
            }
        }
        let name = self.name(&event.key.pod, event.first);
        let body = new_event(event, name.clone(), uid.clone(), node);
        call(timeout, api.create(&PostParams::default(), &body)).await?;
        self.remember(event, name, uid, event.count);
        Ok(())
    }

    fn remember(&mut self, event: &PendingEvent, name: String, uid: Option<String>, count: i32) {
        self.recent.insert(
            event.key.clone(),
            Posted {
                name,
                uid,
                count,
                last: event.last,
            },
        );
        if self.recent.len() > RECENT_CAPACITY {
            let oldest = self
                .recent
                .iter()
                .min_by_key(|(_, p)| p.last)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.recent.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(pod: &str, reason: &str, at: i64) -> PodEvent {
        PodEvent {
            key: PodKey {
                namespace: "kube-system".into(),
                name: pod.into(),
            },
            type_: EventType::Warning,
            reason: reason.into(),
            message: "m".into(),
            field_path: Some("spec.containers{c}".into()),
            at: Timestamp(at),
        }
    }

    fn reasons(buffer: &mut EventBuffer) -> Vec<(String, i32)> {
        buffer
            .take(|_| Route::Post(None))
            .into_iter()
            .map(|(e, _)| (e.key.reason, e.count))
            .collect()
    }

    #[test]
    fn repeats_waiting_in_the_buffer_are_folded_with_a_count() {
        let mut buffer = EventBuffer::new(10);
        buffer.push(ev("a", "BackOff", 1));
        buffer.push(ev("a", "Unhealthy", 2));
        buffer.push(ev("a", "BackOff", 3));
        let taken = buffer.take(|_| Route::Post(None));
        assert_eq!(taken.len(), 2);
        let back_off = &taken[0].0;
        assert_eq!(
            (back_off.count, back_off.first, back_off.last),
            (2, Timestamp(1), Timestamp(3))
        );
        assert_eq!(buffer.len(), 0);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_event() {
        let mut buffer = EventBuffer::new(2);
        for (i, reason) in ["one", "two", "three"].into_iter().enumerate() {
            buffer.push(ev("a", reason, i as i64));
        }
        assert_eq!(buffer.dropped(), 1);
        assert_eq!(
            reasons(&mut buffer),
            [("two".into(), 1), ("three".into(), 1)]
        );
    }

    #[test]
    fn held_events_stay_and_requeued_events_go_back_in_front() {
        let mut buffer = EventBuffer::new(3);
        buffer.push(ev("a", "one", 1));
        buffer.push(ev("b", "two", 2));
        let taken = buffer.take(|pod| {
            if pod.name == "a" {
                Route::Post(Some("uid-a".into()))
            } else {
                Route::Hold
            }
        });
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].1.as_deref(), Some("uid-a"));
        assert_eq!(buffer.len(), 1);
        buffer.push(ev("c", "three", 3));
        buffer.push(ev("c", "four", 4));
        buffer.requeue(taken.into_iter().map(|(e, _)| e).collect());
        assert_eq!(
            buffer.dropped(),
            1,
            "requeueing over capacity drops the oldest"
        );
        assert_eq!(
            reasons(&mut buffer),
            [("two".into(), 1), ("three".into(), 1), ("four".into(), 1)]
        );
    }

    #[test]
    fn events_are_about_the_mirror_pod_and_name_their_source() {
        let mut buffer = EventBuffer::new(1);
        buffer.push(ev("etcd-n1", "BackOff", 1_700_000_000_000_000_000));
        let (pending, _) = buffer.take(|_| Route::Post(None)).remove(0);
        let mut poster = EventPoster::default();
        let name = poster.name(&pending.key.pod, pending.first);
        assert_eq!(name, "etcd-n1.17979cfe362a0000");
        assert_ne!(
            poster.name(&pending.key.pod, pending.first),
            name,
            "names never repeat"
        );
        let event = new_event(
            &pending,
            name,
            Some("mirror-uid".into()),
            &NodeName::new("n1"),
        );
        let involved = &event.involved_object;
        assert_eq!(involved.kind.as_deref(), Some("Pod"));
        assert_eq!(involved.uid.as_deref(), Some("mirror-uid"));
        assert_eq!(involved.field_path.as_deref(), Some("spec.containers{c}"));
        assert_eq!(event.metadata.namespace, involved.namespace);
        assert_eq!(event.source.as_ref().unwrap().host.as_deref(), Some("n1"));
        assert_eq!(event.reporting_component.as_deref(), Some(COMPONENT));
        assert_eq!(event.count, Some(1));
    }
}

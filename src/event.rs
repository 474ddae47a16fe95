//! Pod events (the kubelet's `Warning BackOff`, `Unhealthy`, `Failed`, ...), emitted by the
//! loops and consumed by whoever publishes them (the mirror task posts them to the API server).
//! The channel is bounded and emitting never waits: when nobody drains it, events are dropped,
//! never the work that produced them.

use tokio::sync::mpsc;

use crate::clock::Timestamp;
use crate::pod::PodKey;

/// `Normal` or `Warning`, as in the Event API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something went wrong.
    Warning,
}

impl EventType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Something that happened to a static pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvent {
    /// The pod (its mirror pod is the involved object).
    pub key: PodKey,
    /// Normal or Warning.
    pub type_: EventType,
    /// CamelCase reason: `BackOff`, `Unhealthy`, `Failed`, `FailedManifest`, `Killing`, ...
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The container it concerns, as the API's `fieldPath` (`spec.containers{name}`).
    pub field_path: Option<String>,
    /// When it happened.
    pub at: Timestamp,
}

/// The sending side: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct EventSink(Option<mpsc::Sender<PodEvent>>);

impl EventSink {
    /// A sink that drops everything (no consumer configured).
    pub fn discard() -> EventSink {
        EventSink(None)
    }

    /// Emits an event; drops it if the buffer is full or nobody listens.
    pub fn emit(&self, event: PodEvent) {
        if let Some(tx) = &self.0 {
            let _ = tx.try_send(event);
        }
    }
}

/// A bounded event channel.
pub fn channel(capacity: usize) -> (EventSink, mpsc::Receiver<PodEvent>) {
    let (tx, rx) = mpsc::channel(capacity);
    (EventSink(Some(tx)), rx)
}

/// `spec.containers{name}` or `spec.initContainers{name}`.
pub fn container_field(init: bool, name: &str) -> String {
    if init {
        format!("spec.initContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: &str) -> PodEvent {
        PodEvent {
            key: PodKey {
                namespace: "default".into(),
                name: n.into(),
            },
            type_: EventType::Warning,
            reason: "BackOff".into(),
            message: "m".into(),
            field_path: None,
            at: Timestamp(0),
        }
    }

    #[test]
    fn a_full_buffer_drops_events_instead_of_blocking() {
        let (sink, mut rx) = channel(2);
        for n in ["a", "b", "c"] {
            sink.emit(ev(n));
        }
        assert_eq!(rx.try_recv().map(|e| e.key.name).ok().as_deref(), Some("a"));
        assert_eq!(rx.try_recv().map(|e| e.key.name).ok().as_deref(), Some("b"));
        assert!(rx.try_recv().is_err());
        EventSink::discard().emit(ev("d"));
    }
}

//! What pod work needs besides the runtime and the host: where events go, the node's
//! address, the clock.

use crate::clock::Clock;
use crate::event::{EventSink, EventType, PodEvent};
use crate::pod::PodKey;

/// What the executor needs besides the runtime.
#[derive(Clone, Debug)]
pub struct ExecContext {
    /// Where events go.
    pub events: EventSink,
    /// The node's address, which host-network pods' hooks use.
    pub host_ip: Option<String>,
    /// Time for event stamps.
    pub clock: Clock,
}

impl ExecContext {
    /// Posts a pod event stamped now.
    pub(super) fn emit(
        &self,
        key: &PodKey,
        type_: EventType,
        reason: &str,
        message: String,
        field_path: Option<String>,
    ) {
        self.events.emit(PodEvent {
            key: key.clone(),
            type_,
            reason: reason.to_owned(),
            message,
            field_path,
            at: self.clock.now(),
        });
    }
}

//! Graceful node shutdown, as the kubelet's node shutdown manager does it: podvisor's pods
//! stopped by priority, lowest first, each group within its grace period, the whole bounded.
//!
//! * `policy`: the kubelet's `shutdownGracePeriod*` settings as priority groups (pure).
//! * `plan`: which pods stop in which step, with what grace, from the runtime's record of
//!   them (pure; no manifest, no clock).
//! * `execute`: runs the steps through the [`crate::runtime::Runtime`], timing each pod, with
//!   the reconciler's own stop (preStop hooks, the 2 s floor). Sandboxes are stopped, never
//!   removed.
//!
//! The `podvisor shutdown` command (`commands::shutdown`) makes sure no daemon runs meanwhile,
//! so nothing starts again what this stops.

mod execute;
mod plan;
mod policy;

pub use execute::{Finished, Outcome, Progress, STRAGGLER_WAIT, execute};
pub use plan::{ETCD_ORDER, PodStop, PrioritySource, ShutdownPlan, Step, order, plan};
pub use policy::{DEFAULT_CRITICAL_PODS, DEFAULT_GRACE_PERIOD, PriorityPeriod, ShutdownPolicy};

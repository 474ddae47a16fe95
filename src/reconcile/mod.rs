//! Reconciling: from desired pods and observed runtime state to runtime actions.
//!
//! * `plan`: pure, no IO, no clock reads: `plan(desired, observed, now) -> actions`.
//! * `execute`: applies one pod's actions through the [`crate::runtime::Runtime`] trait.
//! * `hooks`: preStop before a stop, postStart after a start.
//! * `outcome`: what came of a pod's work, as errors and waiting reasons.
//! * `wording`: the kubelet's phrasing of events.
//! * `messages`: exited containers' termination messages, read from the host once.
//! * `run`: the loop that observes, plans and dispatches, one task per pod.

mod context;
mod execute;
mod hooks;
mod messages;
mod outcome;
mod plan;
mod recheck;
pub mod rollout;
mod rollout_store;
mod run;
mod wording;

pub use context::ExecContext;
pub use execute::{execute, stop_containers};
pub use outcome::{Outcome, StepError, WorkError};
pub use plan::{
    Action, BackingOff, Hook, MIN_GRACE, Plan, PlanInput, PodWork, RestartKey, SandboxRef,
    StopReason, StopTarget, grace, hook_host, plan, stop_recorded,
};
pub use rollout::RollbackPolicy;
pub use rollout_store::RolloutStore;
pub use run::{ReconcileState, Reconciler, ReconcilerConfig, StartError};

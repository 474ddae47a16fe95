//! Reconciling: from desired pods and observed runtime state to runtime actions.
//!
//! * `plan`: pure, no IO, no clock reads: `plan(desired, observed, now) -> actions`.
//! * `execute`: applies one pod's actions through the [`crate::runtime::Runtime`] trait.
//! * `messages`: exited containers' termination messages, read from the host once.
//! * `run`: the loop that observes, plans and dispatches, one task per pod.

mod execute;
mod messages;
mod plan;
mod recheck;
mod run;

pub use execute::{ExecContext, Outcome, StepError, WorkError, execute};
pub use plan::{
    Action, BackingOff, Hook, MIN_GRACE, Plan, PlanInput, PodWork, RestartKey, SandboxRef,
    StopReason, StopTarget, grace, plan,
};
pub use run::{ReconcileState, Reconciler, ReconcilerConfig, StartError};

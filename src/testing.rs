//! The testing facade: the in-memory runtime and host that podvisor's own unit tests use,
//! for its integration tests to drive the real reconciler without containerd. Present only
//! with the `test-util` feature, which only podvisor's dev-dependencies turn on; nothing
//! else of the crate's internals is opened up for tests.

pub use crate::host::fake::{FakeHost, HostCall};
pub use crate::mirror::testing::{node_info, static_pod};
pub use crate::runtime::fake::{FakeCall, FakeRuntime, termination_source};

//! Mirror pods in a Kubernetes API server. Filled in by the mirror work.

#[cfg(any(test, feature = "test-util"))]
pub mod fake_apiserver;

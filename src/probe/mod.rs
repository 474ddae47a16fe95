//! Probes (liveness, readiness, startup) and lifecycle hooks. Filled in by the probe work.

//! The local status API: a small HTTP server on a unix socket (mode 0600) and, when asked, a
//! loopback TCP address. It serves views of the loops' latest snapshots and never changes
//! anything. Bootstrap tooling can wait on `/pods` instead of an API server.
//!
//! * `/healthz`: the loops are alive. `/readyz`: first full reconcile done, runtime reachable.
//! * `/pods`, `/pods/<name>`, `/manifests`, `/mirror`: JSON views ([`views`]).
//! * `/applied`, `/images`: what the daemon runs, whole, and the images the node holds, for
//!   `podvisor diff` ([`applied`]).
//! * `/metrics`: Prometheus text.

pub mod applied;
pub mod client;
mod gauges;
mod listen;
mod server;
pub mod views;

pub use listen::{ListenError, Listeners, ensure_socket_dir};
pub use server::{ApiState, Heartbeat, ImageLister, METRICS_CONTENT_TYPE, serve};

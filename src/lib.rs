//! podvisor: a standalone static-pod supervisor — a kubelet without an API server.
//!
//! The pipeline, left to right, is the module layout:
//!
//! ```text
//! manifest dir ──► manifest (scan, parse, defaults, validate, resolve) ──► Snapshot
//!                                                                          │ tokio::sync::watch
//! runtime (CRI) ──► Observed ──┐                                          ▼
//!                              └──► reconcile::plan(desired, observed, now) ──► Vec<PodWork>
//!                                                                          │
//!              runtime (CRI) ◄── reconcile::execute ──► host (files, mounts)◄┘
//! ```
//!
//! `manifest` turns files into [`pod::StaticPod`]s, `reconcile` decides (pure) and applies
//! (through the [`runtime::Runtime`] and [`host::Host`] traits), `health` watches the runtime's
//! conditions and the node's pressure, `logfiles` and `images` keep the disk from filling
//! (log rotation and retention, image garbage collection), `registry` finds pull credentials
//! and watches pulls, `status` and `mirror` report,
//! `nodeshutdown` stops the pods by priority when the host shuts down (`podvisor shutdown`),
//! `api` (the local status API) and `nodeapi` (the kubelet's node API: logs, exec,
//! port-forward, stats) serve what the loops publish, and `app` wires the tasks together. Nothing in `manifest` or `reconcile::plan` performs IO.
//! Shared words sit low (`pod`, `backoff`, `clock`, `metrics`); nothing imports upwards.

pub mod action;
pub mod api;
pub mod app;
pub mod backoff;
pub mod certs;
pub mod chain;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod event;
pub mod health;
pub mod host;
pub mod images;
pub mod instance;
pub mod labels;
pub mod logfiles;
pub mod manifest;
pub mod metrics;
pub mod mirror;
pub mod nodeapi;
pub mod nodeshutdown;
pub mod notify;
pub mod pod;
pub mod probe;
pub mod quantity;
pub mod reconcile;
pub mod registry;
pub mod runtime;
pub mod shutdown;
pub mod status;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod testing;

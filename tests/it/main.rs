//! Integration tests: the podvisor binary against a real containerd started per test.
//!
//! Needs root, containerd and runc (Debian packages); every test here is `#[ignore]`d so that a
//! plain `cargo test` runs only what needs no privileges. Run them with the README's test
//! command (`--include-ignored`). The CRI-O suite (`crio.rs`) runs only where
//! `PODVISOR_CRIO_BIN` names a CRI-O build; elsewhere its tests pass at once, saying so.

mod crio;
mod daemon;
mod diff;
mod disk;
mod fields;
mod hostile;
mod images;
mod issue11;
mod issue17;
mod lab;
mod lifecycle;
mod logfiles;
mod mirror;
mod nodeapi;
mod nodeapi_client;
mod operate;
mod podspec;
mod real_apiserver;
mod real_certs;
mod real_kubeadm;
mod real_nodeapi;
mod registry;
mod reliability;
mod resilience;
mod safechanges;
mod shutdown;
mod supervise;

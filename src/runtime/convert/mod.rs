//! Pure translation of a [`StaticPod`](crate::pod::StaticPod) into CRI sandbox and container
//! configs, as the kubelet's `kuberuntime` builds them (labels, annotations, paths,
//! namespaces, resources, security). No IO: everything about the host comes in through
//! [`NodeContext`](super::NodeContext).
//!
//! * `sandbox`: the pod sandbox (namespaces, DNS, hostname, ports, cgroup parent).
//! * `env`: the environment and downward-API values.
//! * `container`: the container (command, env, mounts, resources, security).

mod container;
mod env;
mod sandbox;

pub use container::{container_config, sub_paths};
pub use env::{Addresses, environment, field_value, resource_value};
pub use sandbox::{sandbox_config, sandbox_hostname};

#[cfg(test)]
mod tests;

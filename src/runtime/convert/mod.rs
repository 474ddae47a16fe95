//! Pure translation of a [`StaticPod`](crate::pod::StaticPod) into CRI sandbox and container
//! configs, as the kubelet's `kuberuntime` builds them (labels, annotations, paths,
//! namespaces, resources, security). No IO: everything about the host comes in through
//! [`NodeContext`](crate::host::NodeContext).
//!
//! * `sandbox`: the pod sandbox (namespaces, DNS, hostname, ports, cgroup parent).
//! * `env`: the environment and downward-API values.
//! * `container`: the container (command, env, mounts, resources, security).
//! * `security`: seccomp, AppArmor and SELinux profiles.

mod container;
mod sandbox;
mod security;

pub use container::container_config;
pub use sandbox::{hostname_refusal, runtime_handler, sandbox_config};
pub use security::apparmor_refusal;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

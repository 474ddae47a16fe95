//! The confinement profiles of a container and its sandbox: seccomp, AppArmor and SELinux, as
//! the kubelet's `kuberuntime` passes them to CRI; and the one the host cannot enforce.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    AppArmorProfile, Container, PodSecurityContext, SELinuxOptions, SecurityContext,
};

use crate::host::NodeContext;
use crate::pod::{StaticPod, apparmor};

use cri::security_profile::ProfileType;

fn profile(profile_type: ProfileType, localhost_ref: String) -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: profile_type as i32,
        localhost_ref,
    }
}

pub(super) fn seccomp(
    container: Option<&SecurityContext>,
    pod: Option<&PodSecurityContext>,
    ctx: &NodeContext,
) -> cri::SecurityProfile {
    let chosen = container
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod.and_then(|s| s.seccomp_profile.as_ref()));
    match chosen.map(|p| (p.type_.as_str(), p.localhost_profile.clone())) {
        Some(("RuntimeDefault", _)) => profile(ProfileType::RuntimeDefault, String::new()),
        // Relative to `<root-dir>/seccomp`, as the kubelet's seccomp profile root.
        Some(("Localhost", Some(path))) => profile(
            ProfileType::Localhost,
            ctx.root_dir
                .join("seccomp")
                .join(path)
                .to_string_lossy()
                .into_owned(),
        ),
        // The kubelet's default without `seccompDefault`: Unconfined.
        _ => profile(ProfileType::Unconfined, String::new()),
    }
}

/// The AppArmor profile of container `c` as CRI carries it: the profile (CRI v1.30+) and
/// the deprecated string older runtimes read (containerd 1.6 reads only that one). No
/// profile leaves both empty: the runtime's default applies.
pub(super) fn apparmor(pod: &StaticPod, c: &Container) -> (Option<cri::SecurityProfile>, String) {
    let Some(p) = apparmor::profile(pod, c) else {
        return (None, String::new());
    };
    let deprecated = apparmor::to_annotation(&p);
    let cri_profile = match p.type_.as_str() {
        "RuntimeDefault" => profile(ProfileType::RuntimeDefault, String::new()),
        "Localhost" => profile(
            ProfileType::Localhost,
            p.localhost_profile.clone().unwrap_or_default(),
        ),
        _ => profile(ProfileType::Unconfined, String::new()),
    };
    (Some(cri_profile), deprecated)
}

/// Why container `c` of `pod` cannot run on this host, if it asks for an AppArmor profile
/// and the kernel enforces none: the kubelet refuses such a pod ("Cannot enforce AppArmor"),
/// and a runtime may drop the profile without a word (containerd with `disable_apparmor`).
pub fn apparmor_refusal(pod: &StaticPod, c: &Container, ctx: &NodeContext) -> Option<String> {
    let p: AppArmorProfile = apparmor::profile(pod, c)?;
    if ctx.apparmor || !apparmor::needs_apparmor(&p) {
        return None;
    }
    Some(format!(
        "Cannot enforce AppArmor: AppArmor is not enabled on the host (container {:?} asks for {})",
        c.name,
        apparmor::to_annotation(&p)
    ))
}

fn selinux_option(o: &SELinuxOptions) -> cri::SeLinuxOption {
    cri::SeLinuxOption {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        r#type: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    }
}

/// The sandbox's SELinux label: the pod's `seLinuxOptions`.
pub(super) fn sandbox_selinux(pod: Option<&PodSecurityContext>) -> Option<cri::SeLinuxOption> {
    pod.and_then(|s| s.se_linux_options.as_ref())
        .map(selinux_option)
}

/// A container's SELinux label: its own `seLinuxOptions` replace the pod's whole, as the
/// kubelet's `determineEffectiveSecurityContext` does.
pub(super) fn container_selinux(
    container: Option<&SecurityContext>,
    pod: Option<&PodSecurityContext>,
) -> Option<cri::SeLinuxOption> {
    container
        .and_then(|s| s.se_linux_options.as_ref())
        .or_else(|| pod.and_then(|s| s.se_linux_options.as_ref()))
        .map(selinux_option)
}

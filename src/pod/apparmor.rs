//! A container's AppArmor profile as the kubelet's `apparmor.GetProfile` finds it: the
//! container's `securityContext.appArmorProfile`, else the legacy annotation
//! `container.apparmor.security.beta.kubernetes.io/<container>` (static pods may carry only
//! that), else the pod's `securityContext.appArmorProfile`. Pure.

use k8s_openapi::api::core::v1::{AppArmorProfile, Container};

use super::StaticPod;

/// The legacy per-container annotation's key, before the container name.
pub const ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// The legacy annotation value for `RuntimeDefault`.
pub const RUNTIME_DEFAULT: &str = "runtime/default";
/// The legacy annotation value for `Unconfined`.
pub const UNCONFINED: &str = "unconfined";
/// The legacy annotation prefix of a `Localhost` profile's name.
pub const LOCALHOST_PREFIX: &str = "localhost/";

/// A legacy annotation value that is none of `runtime/default`, `unconfined` and
/// `localhost/<profile>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidAnnotation;

/// A legacy annotation value as a profile: `None` for an empty value (no profile asked for).
pub fn from_annotation(value: &str) -> Result<Option<AppArmorProfile>, InvalidAnnotation> {
    let profile = |type_: &str, localhost: Option<&str>| AppArmorProfile {
        type_: type_.to_owned(),
        localhost_profile: localhost.map(str::to_owned),
    };
    match value {
        "" => Ok(None),
        RUNTIME_DEFAULT => Ok(Some(profile("RuntimeDefault", None))),
        UNCONFINED => Ok(Some(profile("Unconfined", None))),
        other => match other.strip_prefix(LOCALHOST_PREFIX) {
            Some(name) => Ok(Some(profile("Localhost", Some(name)))),
            None => Err(InvalidAnnotation),
        },
    }
}

/// The legacy annotation value of a profile (what the CRI's deprecated `apparmor_profile`
/// carries).
pub fn to_annotation(p: &AppArmorProfile) -> String {
    match p.type_.as_str() {
        "RuntimeDefault" => RUNTIME_DEFAULT.to_owned(),
        "Localhost" => format!(
            "{LOCALHOST_PREFIX}{}",
            p.localhost_profile.as_deref().unwrap_or_default()
        ),
        _ => UNCONFINED.to_owned(),
    }
}

/// The profile container `c` of `pod` runs with; `None` leaves it to the runtime.
pub fn profile(pod: &StaticPod, c: &Container) -> Option<AppArmorProfile> {
    if let Some(p) = c
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.as_ref())
    {
        return Some(p.clone());
    }
    let key = format!("{ANNOTATION_PREFIX}{}", c.name);
    if let Some(Ok(Some(p))) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(&key))
        .map(|v| from_annotation(v))
    {
        return Some(p);
    }
    pod.spec
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.clone())
}

/// Whether `profile` needs AppArmor on the host to be enforced (anything but Unconfined).
pub fn needs_apparmor(profile: &AppArmorProfile) -> bool {
    profile.type_ != "Unconfined"
}

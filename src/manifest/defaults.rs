//! The kubelet's defaults for static pods (`pkg/apis/core/v1/defaults.go` and
//! `pkg/kubelet/config/common.go applyDefaults`), minus the node-specific part, which
//! [`crate::pod::StaticPod::build`] applies.
//!
//! The defaulted pod is hashed, and the hash lives in running containers' labels: adding or
//! changing a default here changes every pod's hash and restarts it on upgrade. Treat this
//! list as frozen. Pure; no IO.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HTTPGetAction, LifecycleHandler, Pod, PodSecurityContext,
    PodSpec, Probe, Toleration, Volume,
};

/// Applies the kubelet's defaulting to a decoded pod, in place.
pub fn apply_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    default_spec(spec);
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".to_owned());
    }
}

fn set<T>(slot: &mut Option<T>, value: T) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

fn default_spec(spec: &mut PodSpec) {
    set(&mut spec.restart_policy, "Always".to_owned());
    set(&mut spec.dns_policy, "ClusterFirst".to_owned());
    set(&mut spec.termination_grace_period_seconds, 30);
    set(&mut spec.scheduler_name, "default-scheduler".to_owned());
    set(&mut spec.security_context, PodSecurityContext::default());
    set(&mut spec.enable_service_links, true);

    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        default_container(c, host_network);
    }
    for c in &mut spec.containers {
        default_container(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        default_volume(v);
    }

    // applyDefaults: static pods tolerate every NoExecute taint.
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    let no_execute = Toleration {
        operator: Some("Exists".to_owned()),
        effect: Some("NoExecute".to_owned()),
        ..Default::default()
    };
    if !tolerations.contains(&no_execute) {
        tolerations.push(no_execute);
    }
}

/// `Always` for `:latest` or an untagged image, otherwise `IfNotPresent` (a digest counts as
/// a tag).
fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Container, host_network: bool) {
    if let Some(image) = &c.image {
        let policy = default_pull_policy(image).to_owned();
        set(&mut c.image_pull_policy, policy);
    }
    set(
        &mut c.termination_message_path,
        "/dev/termination-log".to_owned(),
    );
    set(&mut c.termination_message_policy, "File".to_owned());
    for port in c.ports.iter_mut().flatten() {
        set(&mut port.protocol, "TCP".to_owned());
        if host_network && port.host_port.unwrap_or(0) == 0 {
            port.host_port = Some(port.container_port);
        }
    }
    for env in c.env.iter_mut().flatten() {
        if let Some(field) = env.value_from.as_mut().and_then(|v| v.field_ref.as_mut()) {
            set(&mut field.api_version, "v1".to_owned());
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = &mut c.lifecycle {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            default_handler(handler);
        }
    }
    // Requests default to limits, per resource.
    if let Some(resources) = &mut c.resources
        && let Some(limits) = &resources.limits
    {
        let requests = resources.requests.get_or_insert_with(BTreeMap::new);
        for (name, q) in limits {
            requests.entry(name.clone()).or_insert_with(|| q.clone());
        }
    }
}

fn default_http_get(h: &mut HTTPGetAction) {
    set(&mut h.path, "/".to_owned());
    set(&mut h.scheme, "HTTP".to_owned());
}

fn default_probe(p: &mut Probe) {
    set(&mut p.timeout_seconds, 1);
    set(&mut p.period_seconds, 10);
    set(&mut p.success_threshold, 1);
    set(&mut p.failure_threshold, 3);
    if let Some(h) = &mut p.http_get {
        default_http_get(h);
    }
}

fn default_handler(h: &mut LifecycleHandler) {
    if let Some(h) = &mut h.http_get {
        default_http_get(h);
    }
}

fn default_volume(v: &mut Volume) {
    let has_source = v.host_path.is_some()
        || v.empty_dir.is_some()
        || v.secret.is_some()
        || v.config_map.is_some()
        || v.persistent_volume_claim.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
        || v.nfs.is_some()
        || v.iscsi.is_some()
        || v.csi.is_some()
        || v.ephemeral.is_some()
        || v.image.is_some()
        || v.fc.is_some()
        || v.rbd.is_some()
        || v.cephfs.is_some()
        || v.glusterfs.is_some()
        || v.git_repo.is_some()
        || v.flex_volume.is_some()
        || v.local_volume_source_is_some();
    if !has_source {
        v.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(hp) = &mut v.host_path {
        set(&mut hp.type_, String::new());
    }
    if let Some(d) = &mut v.downward_api {
        set(&mut d.default_mode, 0o644);
        for item in d.items.iter_mut().flatten() {
            if let Some(f) = &mut item.field_ref {
                set(&mut f.api_version, "v1".to_owned());
            }
        }
    }
    if let Some(p) = &mut v.projected {
        set(&mut p.default_mode, 0o644);
        for source in p.sources.iter_mut().flatten() {
            for item in source
                .downward_api
                .iter_mut()
                .flat_map(|d| d.items.iter_mut().flatten())
            {
                if let Some(f) = &mut item.field_ref {
                    set(&mut f.api_version, "v1".to_owned());
                }
            }
        }
    }
}

/// Volume sources without a convenient field list in one place: the remaining in-tree ones.
trait OtherSources {
    fn local_volume_source_is_some(&self) -> bool;
}

impl OtherSources for Volume {
    fn local_volume_source_is_some(&self) -> bool {
        self.aws_elastic_block_store.is_some()
            || self.azure_disk.is_some()
            || self.azure_file.is_some()
            || self.cinder.is_some()
            || self.flocker.is_some()
            || self.gce_persistent_disk.is_some()
            || self.photon_persistent_disk.is_some()
            || self.portworx_volume.is_some()
            || self.quobyte.is_some()
            || self.scale_io.is_some()
            || self.storageos.is_some()
            || self.vsphere_volume.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerPort, HostPathVolumeSource, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn pod(containers: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn container(image: &str) -> Container {
        Container {
            name: "c".into(),
            image: Some(image.into()),
            ..Default::default()
        }
    }

    #[test]
    fn pod_level_defaults_match_the_kubelet() {
        let mut p = pod(vec![container("busybox:1.35")]);
        apply_defaults(&mut p);
        let spec = p.spec.expect("spec");
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        assert_eq!(spec.enable_service_links, Some(true));
        let tolerations = spec.tolerations.expect("tolerations");
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(tolerations[0].effect.as_deref(), Some("NoExecute"));
        let c = &spec.containers[0];
        assert_eq!(
            c.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(c.termination_message_policy.as_deref(), Some("File"));
    }

    #[test]
    fn image_pull_policy_defaults_by_tag() {
        for (image, policy) in [
            ("busybox", "Always"),
            ("busybox:latest", "Always"),
            ("busybox:1.35", "IfNotPresent"),
            ("registry:5000/busybox", "Always"),
            ("registry:5000/busybox:1.35", "IfNotPresent"),
            ("busybox@sha256:abcd", "IfNotPresent"),
        ] {
            let mut p = pod(vec![container(image)]);
            apply_defaults(&mut p);
            let c = &p.spec.expect("spec").containers[0];
            assert_eq!(c.image_pull_policy.as_deref(), Some(policy), "{image}");
        }
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut c = container("busybox");
        c.image_pull_policy = Some("Never".into());
        let mut p = pod(vec![c]);
        p.spec.as_mut().expect("spec").restart_policy = Some("Never".into());
        apply_defaults(&mut p);
        let spec = p.spec.expect("spec");
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
    }

    #[test]
    fn probes_get_kubelet_defaults() {
        let mut c = container("busybox:1");
        c.liveness_probe = Some(Probe {
            http_get: Some(HTTPGetAction::default()),
            ..Default::default()
        });
        let mut p = pod(vec![c]);
        apply_defaults(&mut p);
        let probe = p.spec.expect("spec").containers[0]
            .liveness_probe
            .clone()
            .expect("probe");
        assert_eq!(
            (
                probe.timeout_seconds,
                probe.period_seconds,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Some(1), Some(10), Some(1), Some(3))
        );
        let h = probe.http_get.expect("httpGet");
        assert_eq!(
            (h.path.as_deref(), h.scheme.as_deref()),
            (Some("/"), Some("HTTP"))
        );
    }

    #[test]
    fn host_network_ports_default_host_port_and_protocol() {
        let mut c = container("busybox:1");
        c.ports = Some(vec![ContainerPort {
            container_port: 2379,
            ..Default::default()
        }]);
        let mut p = pod(vec![c]);
        p.spec.as_mut().expect("spec").host_network = Some(true);
        apply_defaults(&mut p);
        let port = &p.spec.expect("spec").containers[0]
            .ports
            .clone()
            .expect("ports")[0];
        assert_eq!(port.host_port, Some(2379));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
    }

    #[test]
    fn requests_default_to_limits() {
        let mut c = container("busybox:1");
        c.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_owned(), Quantity("64Mi".into()))].into()),
            requests: Some([("cpu".to_owned(), Quantity("100m".into()))].into()),
            ..Default::default()
        });
        let mut p = pod(vec![c]);
        apply_defaults(&mut p);
        let r = p.spec.expect("spec").containers[0]
            .resources
            .clone()
            .expect("resources");
        let requests = r.requests.expect("requests");
        assert_eq!(requests.get("memory"), Some(&Quantity("64Mi".into())));
        assert_eq!(requests.get("cpu"), Some(&Quantity("100m".into())));
    }

    #[test]
    fn sourceless_volume_becomes_empty_dir_and_host_path_type_defaults_empty() {
        let mut p = pod(vec![container("busybox:1")]);
        p.spec.as_mut().expect("spec").volumes = Some(vec![
            Volume {
                name: "scratch".into(),
                ..Default::default()
            },
            Volume {
                name: "certs".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/etc/ssl".into(),
                    type_: None,
                }),
                ..Default::default()
            },
        ]);
        apply_defaults(&mut p);
        let volumes = p.spec.expect("spec").volumes.expect("volumes");
        assert!(volumes[0].empty_dir.is_some());
        assert_eq!(
            volumes[1]
                .host_path
                .as_ref()
                .and_then(|h| h.type_.as_deref()),
            Some("")
        );
    }
}

//! API-object references static pods may not hold (`PreventStaticPodAPIReferences`). Pure.

use k8s_openapi::api::core::v1::PodSpec;

use super::Issues;

/// Static pods may not reference API objects: the API server would refuse their mirror pods,
/// and there is no API server to read them from (kubelet `PreventStaticPodAPIReferences`).
pub(super) fn validate_api_references(spec: &PodSpec, v: &mut Issues) {
    const WHY: &str = "static pods may not reference API objects";
    for (field, value) in [
        ("spec.serviceAccountName", &spec.service_account_name),
        ("spec.serviceAccount", &spec.service_account),
    ] {
        if value.as_deref().is_some_and(|s| !s.is_empty()) {
            v.add(field, format!("{WHY} (ServiceAccount)"));
        }
    }
    if spec
        .image_pull_secrets
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        v.add("spec.imagePullSecrets", format!("{WHY} (Secret)"));
    }
    if spec.resource_claims.as_ref().is_some_and(|s| !s.is_empty()) {
        v.add("spec.resourceClaims", format!("{WHY} (ResourceClaim)"));
    }
    for (i, vol) in spec.volumes.iter().flatten().enumerate() {
        let at = format!("spec.volumes[{i}]");
        for (present, field, what) in [
            (vol.secret.is_some(), "secret", "Secret"),
            (vol.config_map.is_some(), "configMap", "ConfigMap"),
            (
                vol.persistent_volume_claim.is_some(),
                "persistentVolumeClaim",
                "PersistentVolumeClaim",
            ),
            (
                vol.ephemeral.is_some(),
                "ephemeral",
                "PersistentVolumeClaim",
            ),
        ] {
            if present {
                v.add(format!("{at}.{field}"), format!("{WHY} ({what})"));
            }
        }
        for (j, s) in vol
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
            .enumerate()
        {
            for (present, field, what) in [
                (s.secret.is_some(), "secret", "Secret"),
                (s.config_map.is_some(), "configMap", "ConfigMap"),
                (
                    s.service_account_token.is_some(),
                    "serviceAccountToken",
                    "ServiceAccount",
                ),
                (
                    s.cluster_trust_bundle.is_some(),
                    "clusterTrustBundle",
                    "ClusterTrustBundle",
                ),
                (
                    s.pod_certificate.is_some(),
                    "podCertificate",
                    "PodCertificate",
                ),
            ] {
                if present {
                    v.add(
                        format!("{at}.projected.sources[{j}].{field}"),
                        format!("{WHY} ({what})"),
                    );
                }
            }
        }
    }
    for (kind, list) in [
        (
            "initContainers",
            spec.init_containers.as_deref().unwrap_or(&[]),
        ),
        ("containers", spec.containers.as_slice()),
    ] {
        for (i, c) in list.iter().enumerate() {
            for (j, e) in c.env.iter().flatten().enumerate() {
                if let Some(from) = &e.value_from {
                    if from.secret_key_ref.is_some() {
                        v.add(
                            format!("spec.{kind}[{i}].env[{j}].valueFrom.secretKeyRef"),
                            format!("{WHY} (Secret)"),
                        );
                    }
                    if from.config_map_key_ref.is_some() {
                        v.add(
                            format!("spec.{kind}[{i}].env[{j}].valueFrom.configMapKeyRef"),
                            format!("{WHY} (ConfigMap)"),
                        );
                    }
                }
            }
        }
    }
}

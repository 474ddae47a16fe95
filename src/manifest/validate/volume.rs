//! Volume sources: the ones podvisor can honour, their checks, and downwardAPI items. Pure.

use k8s_openapi::api::core::v1::Volume;

use super::Issues;
use crate::quantity;

pub(super) fn validate_volume(vol: &Volume, at: &str, v: &mut Issues) {
    let mut sources = Vec::new();
    if let Some(hp) = &vol.host_path {
        sources.push("hostPath");
        if hp.path.is_empty() {
            v.add(format!("{at}.hostPath.path"), "required");
        } else if hp.path.split('/').any(|s| s == "..") {
            v.add(format!("{at}.hostPath.path"), "must not contain '..'");
        }
        match hp.type_.as_deref().unwrap_or("") {
            "" | "DirectoryOrCreate" | "Directory" | "FileOrCreate" | "File" | "Socket" | "CharDevice"
            | "BlockDevice" => {}
            other => v.add(
                format!("{at}.hostPath.type"),
                format!("{other:?} must be one of DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice or empty"),
            ),
        }
    }
    if let Some(ed) = &vol.empty_dir {
        sources.push("emptyDir");
        match ed.medium.as_deref().unwrap_or("") {
            "" | "Memory" => {}
            other => v.add(
                format!("{at}.emptyDir.medium"),
                format!("{other:?} is not supported: use \"\" (disk) or Memory"),
            ),
        }
        if let Some(q) = &ed.size_limit
            && let Err(e) = quantity::value(&q.0)
        {
            v.add(format!("{at}.emptyDir.sizeLimit"), e.to_string());
        }
    }
    if let Some(d) = &vol.downward_api {
        sources.push("downwardAPI");
        validate_mode(d.default_mode, &format!("{at}.downwardAPI.defaultMode"), v);
        for (i, item) in d.items.iter().flatten().enumerate() {
            validate_mode(item.mode, &format!("{at}.downwardAPI.items[{i}].mode"), v);
            validate_downward_item(
                &item.path,
                item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                item.resource_field_ref.is_some(),
                &format!("{at}.downwardAPI.items[{i}]"),
                v,
            );
        }
    }
    if let Some(p) = &vol.projected {
        sources.push("projected");
        validate_mode(p.default_mode, &format!("{at}.projected.defaultMode"), v);
        for (i, s) in p.sources.iter().flatten().enumerate() {
            let sat = format!("{at}.projected.sources[{i}]");
            if let Some(d) = &s.downward_api {
                for (j, item) in d.items.iter().flatten().enumerate() {
                    validate_mode(item.mode, &format!("{sat}.downwardAPI.items[{j}].mode"), v);
                    validate_downward_item(
                        &item.path,
                        item.field_ref.as_ref().map(|f| f.field_path.as_str()),
                        item.resource_field_ref.is_some(),
                        &format!("{sat}.downwardAPI.items[{j}]"),
                        v,
                    );
                }
            }
            // secret, configMap, serviceAccountToken, clusterTrustBundle are API references,
            // reported by validate_api_references.
        }
    }
    for (present, name) in [
        (vol.secret.is_some(), "secret"),
        (vol.config_map.is_some(), "configMap"),
        (
            vol.persistent_volume_claim.is_some(),
            "persistentVolumeClaim",
        ),
        (vol.ephemeral.is_some(), "ephemeral"),
    ] {
        if present {
            sources.push(name); // refused as an API reference below
        }
    }
    let unsupported = [
        (vol.nfs.is_some(), "nfs"),
        (vol.iscsi.is_some(), "iscsi"),
        (vol.csi.is_some(), "csi"),
        (vol.image.is_some(), "image"),
        (vol.fc.is_some(), "fc"),
        (vol.rbd.is_some(), "rbd"),
        (vol.cephfs.is_some(), "cephfs"),
        (vol.glusterfs.is_some(), "glusterfs"),
        (vol.git_repo.is_some(), "gitRepo"),
        (vol.flex_volume.is_some(), "flexVolume"),
        (
            vol.aws_elastic_block_store.is_some(),
            "awsElasticBlockStore",
        ),
        (vol.azure_disk.is_some(), "azureDisk"),
        (vol.azure_file.is_some(), "azureFile"),
        (vol.cinder.is_some(), "cinder"),
        (vol.flocker.is_some(), "flocker"),
        (vol.gce_persistent_disk.is_some(), "gcePersistentDisk"),
        (vol.photon_persistent_disk.is_some(), "photonPersistentDisk"),
        (vol.portworx_volume.is_some(), "portworxVolume"),
        (vol.quobyte.is_some(), "quobyte"),
        (vol.scale_io.is_some(), "scaleIO"),
        (vol.storageos.is_some(), "storageos"),
        (vol.vsphere_volume.is_some(), "vsphereVolume"),
    ];
    for (present, name) in unsupported {
        if present {
            sources.push(name);
            v.add(
                format!("{at}.{name}"),
                "volume type not supported by podvisor: use hostPath, emptyDir, downwardAPI or projected downwardAPI",
            );
        }
    }
    if sources.len() > 1 {
        v.add(
            at.to_owned(),
            format!("exactly one volume source, found {}", sources.join(", ")),
        );
    }
}

pub(super) const DOWNWARD_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

/// File modes in volumes: Kubernetes allows 0 to 0777 only, so no setuid, setgid or sticky
/// bit ever reaches a file podvisor writes.
fn validate_mode(mode: Option<i32>, at: &str, v: &mut Issues) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        v.add(
            at.to_owned(),
            format!("{m} must be a file mode between 0 and 0777 (octal), i.e. 0 to 511"),
        );
    }
}

pub(super) fn validate_downward_item(
    path: &str,
    field: Option<&str>,
    resource: bool,
    at: &str,
    v: &mut Issues,
) {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|s| s == "..") {
        v.add(format!("{at}.path"), "must be a relative path without '..'");
    }
    match (field, resource) {
        (Some(f), false) => {
            let ok = DOWNWARD_FIELDS.contains(&f) || is_label_or_annotation_ref(f);
            if !ok {
                v.add(
                    format!("{at}.fieldRef.fieldPath"),
                    format!("{f:?} is not supported in a downwardAPI volume"),
                );
            }
        }
        (None, true) => {}
        _ => v.add(at.to_owned(), "exactly one of fieldRef or resourceFieldRef"),
    }
}

pub(super) fn is_label_or_annotation_ref(f: &str) -> bool {
    (f.starts_with("metadata.labels['") || f.starts_with("metadata.annotations['"))
        && f.ends_with("']")
}

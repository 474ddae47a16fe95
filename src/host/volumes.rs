//! Host-side volume preparation before a pod's containers run, as the kubelet's volume
//! plugins do: hostPath type checks and creation, emptyDir directories (tmpfs for
//! `medium: Memory`), downwardAPI files, subPath directories; and unmounting at removal.
//! Idempotent; IO on the host filesystem only.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, DownwardAPIVolumeFile, Volume};
use nix::mount::MsFlags;

use super::{HostError, NodeContext};
use crate::pod::StaticPod;
use crate::pod::environment::{Addresses, field_value, lookup, resource_value};
use crate::pod::expand;
use crate::quantity;

fn host_error(what: &'static str, path: &Path, message: impl ToString) -> HostError {
    HostError::new(what, path, message)
}

/// The directory backing a volume of a pod, for the volume types podvisor manages itself.
pub fn volume_path(ctx: &NodeContext, uid: &str, vol: &Volume) -> Option<PathBuf> {
    let kind = if vol.empty_dir.is_some() {
        "kubernetes.io~empty-dir"
    } else if vol.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if vol.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        return None;
    };
    Some(ctx.pod_dir(uid).join("volumes").join(kind).join(&vol.name))
}

/// The host directory and the sub-path within it of each volume mount that uses
/// `subPath` or `subPathExpr` (expanded with the container's environment).
pub fn sub_paths(
    pod: &StaticPod,
    c: &Container,
    env: &[(String, String)],
    ctx: &NodeContext,
) -> Vec<(PathBuf, PathBuf)> {
    let volumes = pod.spec.volumes.as_deref().unwrap_or(&[]);
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let Some(vol) = volumes.iter().find(|v| v.name == m.name) else {
            continue;
        };
        let sub = match (m.sub_path.as_deref(), m.sub_path_expr.as_deref()) {
            (Some(s), _) if !s.is_empty() => s.to_owned(),
            (_, Some(e)) if !e.is_empty() => expand(e, |n| lookup(env, n)),
            _ => continue,
        };
        if let Some(dir) = volume_host_dir(pod, vol, ctx) {
            out.push((dir, PathBuf::from(sub)));
        }
    }
    out
}

/// The host directory behind a volume: a hostPath's own path, else the directory podvisor
/// manages under the pod's directory.
pub fn volume_host_dir(
    pod: &StaticPod,
    vol: &k8s_openapi::api::core::v1::Volume,
    ctx: &NodeContext,
) -> Option<PathBuf> {
    match &vol.host_path {
        Some(hp) => Some(PathBuf::from(&hp.path)),
        None => volume_path(ctx, pod.uid.as_str(), vol),
    }
}

/// Checks and creates what `pod`'s volumes need on the host.
pub fn prepare(pod: &StaticPod, ctx: &NodeContext) -> Result<(), HostError> {
    // downwardAPI volumes may only use metadata and resources, never addresses.
    let addrs = &Addresses::default();
    for vol in pod.spec.volumes.iter().flatten() {
        if let Some(hp) = &vol.host_path {
            check_host_path(Path::new(&hp.path), hp.type_.as_deref().unwrap_or(""))?;
        }
        let Some(dir) = volume_path(ctx, pod.uid.as_str(), vol) else {
            continue;
        };
        fs::create_dir_all(&dir)
            .map_err(|e| host_error("creating volume directory", &dir, e.to_string()))?;
        if let Some(ed) = &vol.empty_dir {
            if ed.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
                let size = ed
                    .size_limit
                    .as_ref()
                    .and_then(|q| quantity::value(&q.0).ok());
                mount_tmpfs(&dir, size)?;
            }
            // emptyDir is world-writable, like the kubelet's (0777).
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                .map_err(|e| host_error("setting emptyDir mode", &dir, e.to_string()))?;
        }
        if let Some(d) = &vol.downward_api {
            write_downward(
                pod,
                ctx,
                addrs,
                &dir,
                d.items.as_deref().unwrap_or(&[]),
                d.default_mode.unwrap_or(0o644),
            )?;
        }
        if let Some(p) = &vol.projected {
            let items: Vec<DownwardAPIVolumeFile> = p
                .sources
                .iter()
                .flatten()
                .filter_map(|s| s.downward_api.as_ref())
                .flat_map(|d| d.items.iter().flatten().cloned())
                .collect();
            write_downward(
                pod,
                ctx,
                addrs,
                &dir,
                &items,
                p.default_mode.unwrap_or(0o644),
            )?;
        }
    }
    Ok(())
}

fn write_downward(
    pod: &StaticPod,
    ctx: &NodeContext,
    addrs: &Addresses,
    dir: &Path,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
) -> Result<(), HostError> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            field_value(pod, &f.field_path, addrs)
        } else if let Some(r) = &item.resource_field_ref {
            let container = pod
                .containers()
                .iter()
                .find(|c| Some(&c.name) == r.container_name.as_ref())
                .cloned()
                .unwrap_or_default();
            resource_value(
                &container,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                ctx.capacity(),
            )
        } else {
            continue;
        };
        let path = dir.join(&item.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| host_error("creating downwardAPI directory", parent, e.to_string()))?;
        }
        let tmp = path.with_extension("podvisor-tmp");
        fs::write(&tmp, value.as_bytes())
            .and_then(|()| {
                fs::set_permissions(
                    &tmp,
                    fs::Permissions::from_mode(item.mode.unwrap_or(default_mode) as u32 & 0o7777),
                )
            })
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| host_error("writing downwardAPI file", &path, e.to_string()))?;
    }
    Ok(())
}

fn is_mount_point(dir: &Path) -> bool {
    match (fs::metadata(dir), dir.parent().map(fs::metadata)) {
        (Ok(d), Some(Ok(p))) => d.dev() != p.dev(),
        _ => false,
    }
}

fn mount_tmpfs(dir: &Path, size: Option<i64>) -> Result<(), HostError> {
    let mut data = "mode=0777".to_owned();
    if let Some(bytes) = size.filter(|b| *b > 0) {
        data.push_str(&format!(",size={bytes}"));
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(|e| host_error("mounting tmpfs for emptyDir", dir, e.to_string()))
}

/// Creates missing subPath directories inside volumes, as the kubelet does before mounting.
pub fn ensure_sub_paths(mounts: &[(PathBuf, PathBuf)]) -> Result<(), HostError> {
    for (volume_dir, sub) in mounts {
        if !volume_dir.exists() {
            continue; // a hostPath with no type check: the runtime reports it
        }
        let target = volume_dir.join(sub);
        if fs::symlink_metadata(&target).is_err() {
            fs::create_dir_all(&target)
                .map_err(|e| host_error("creating subPath", &target, e.to_string()))?;
            let _ = fs::set_permissions(&target, fs::Permissions::from_mode(0o755));
        }
    }
    Ok(())
}

/// Checks what `pod`'s hostPath volumes need on the host without changing anything: a path
/// of a type that must exist (`Directory`, `File`, `Socket`, ...) exists and is of it, and a
/// `DirectoryOrCreate`/`FileOrCreate` path is absent or of its type. What podvisor checks
/// before it stops a running version for a new one.
pub fn check_host_paths(pod: &StaticPod) -> Result<(), HostError> {
    for vol in pod.spec.volumes.iter().flatten() {
        if let Some(hp) = &vol.host_path {
            check_host_path_type(Path::new(&hp.path), hp.type_.as_deref().unwrap_or(""))?;
        }
    }
    Ok(())
}

/// Whether `path` fits the hostPath `kind`, as the kubelet checks it; `*OrCreate` kinds
/// accept a missing path.
fn check_host_path_type(path: &Path, kind: &str) -> Result<(), HostError> {
    let mismatch = |expected: &str| {
        host_error(
            "hostPath type check failed for",
            path,
            format!("expected {expected}"),
        )
    };
    let meta = fs::metadata(path);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if !m.is_dir() => Err(mismatch("a directory")),
            _ => Ok(()),
        },
        "FileOrCreate" => match meta {
            Ok(m) if !m.is_file() => Err(mismatch("a file")),
            _ => Ok(()),
        },
        other => {
            let m = meta.map_err(|_| mismatch(&format!("an existing {other}")))?;
            let t = m.file_type();
            let ok = match other {
                "Directory" => t.is_dir(),
                "File" => t.is_file(),
                "Socket" => t.is_socket(),
                "CharDevice" => t.is_char_device(),
                "BlockDevice" => t.is_block_device(),
                _ => true,
            };
            if ok { Ok(()) } else { Err(mismatch(other)) }
        }
    }
}

/// Checks a hostPath of `kind`, then creates it if its kind says so and it is missing.
fn check_host_path(path: &Path, kind: &str) -> Result<(), HostError> {
    check_host_path_type(path, kind)?;
    if fs::metadata(path).is_ok() {
        return Ok(());
    }
    match kind {
        "DirectoryOrCreate" => {
            fs::create_dir_all(path)
                .map_err(|e| host_error("creating hostPath directory", path, e.to_string()))?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                .map_err(|e| host_error("setting hostPath mode", path, e.to_string()))
        }
        "FileOrCreate" => fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(|_| ())
            .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o644)))
            .map_err(|e| host_error("creating hostPath file", path, e.to_string())),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::host::ResolvConf;
    use crate::pod::NodeName;

    #[test]
    fn host_path_types_are_checked_and_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("made/deep");
        check_host_path(&d, "DirectoryOrCreate").expect("created");
        assert!(d.is_dir());
        let f = dir.path().join("made/file");
        check_host_path(&f, "FileOrCreate").expect("created");
        assert!(f.is_file());
        assert!(check_host_path(&f, "Directory").is_err());
        assert!(check_host_path(&d, "File").is_err());
        assert!(check_host_path(&dir.path().join("nope"), "Directory").is_err());
        assert!(check_host_path(&dir.path().join("nope/x"), "FileOrCreate").is_err());
        assert!(check_host_path(&d, "Socket").is_err());
        assert!(check_host_path(&d, "BlockDevice").is_err());
        check_host_path(Path::new("/dev/null"), "CharDevice").expect("char device");
        check_host_path(&dir.path().join("anything"), "").expect("no check");
    }

    #[test]
    fn downward_api_volumes_get_their_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = NodeContext {
            node: NodeName::new("n1"),
            root_dir: dir.path().to_owned(),
            pod_log_dir: dir.path().join("logs"),
            cgroup_root: "/kubepods".into(),
            cgroup_driver: crate::pod::CgroupDriver::Cgroupfs,
            container_log_links: None,
            resolv_conf: ResolvConf::default(),
            host_ip: None,
            node_ips: Vec::new(),
            memory_bytes: 1 << 30,
            cpus: 2,
            apparmor: false,
            hugepage_sizes: vec![2 << 20, 1 << 30],
        };
        let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: d, labels: {b: '2', a: '1'}}\nspec:\n  containers:\n  - {name: c, image: 'i:1', resources: {limits: {memory: 64Mi}}}\n  volumes:\n  - name: info\n    downwardAPI:\n      items:\n      - {path: name, fieldRef: {fieldPath: metadata.name}}\n      - {path: sub/labels, fieldRef: {fieldPath: metadata.labels}, mode: 0600}\n      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}\n  - name: proj\n    projected:\n      sources:\n      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}\n";
        let pod = crate::manifest::testing::static_pod_at("/m/d.yaml", "n1", yaml);
        prepare(&pod, &ctx).expect("prepared");
        let vols = pod.spec.volumes.clone().expect("volumes");
        let info = volume_path(&ctx, pod.uid.as_str(), &vols[0]).expect("path");
        assert_eq!(fs::read_to_string(info.join("name")).expect("name"), "d-n1");
        assert_eq!(
            fs::read_to_string(info.join("sub/labels")).expect("labels"),
            "a=\"1\"\nb=\"2\""
        );
        assert_eq!(
            fs::metadata(info.join("sub/labels"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(fs::read_to_string(info.join("mem")).expect("mem"), "64");
        let proj = volume_path(&ctx, pod.uid.as_str(), &vols[1]).expect("path");
        assert_eq!(fs::read_to_string(proj.join("ns")).expect("ns"), "default");
    }
}

//! Host-side volume preparation before a pod's containers run: hostPath type checks and
//! creation, emptyDir directories. Idempotent; IO on the host filesystem only.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{NodeContext, RuntimeError};
use crate::pod::StaticPod;

fn host_error(what: &'static str, path: &Path, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Host {
        what,
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The directory backing an emptyDir volume.
pub fn empty_dir_path(ctx: &NodeContext, uid: &str, name: &str) -> PathBuf {
    ctx.pod_dir(uid)
        .join("volumes/kubernetes.io~empty-dir")
        .join(name)
}

/// Checks and creates what `pod`'s volumes need on the host, as the kubelet's hostPath and
/// emptyDir plugins do.
pub fn prepare(pod: &StaticPod, ctx: &NodeContext) -> Result<(), RuntimeError> {
    for vol in pod.spec.volumes.iter().flatten() {
        if let Some(hp) = &vol.host_path {
            check_host_path(Path::new(&hp.path), hp.type_.as_deref().unwrap_or(""))?;
        }
        if vol.empty_dir.is_some() {
            let dir = empty_dir_path(ctx, pod.uid.as_str(), &vol.name);
            fs::create_dir_all(&dir)
                .map_err(|e| host_error("creating emptyDir", &dir, e.to_string()))?;
            // emptyDir is world-writable, like the kubelet's (0777).
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777))
                .map_err(|e| host_error("setting emptyDir mode", &dir, e.to_string()))?;
        }
    }
    Ok(())
}

fn check_host_path(path: &Path, kind: &str) -> Result<(), RuntimeError> {
    let meta = fs::metadata(path);
    let mismatch = |expected: &str| {
        host_error(
            "hostPath type check failed for",
            path,
            format!("expected {expected}"),
        )
    };
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" => match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(mismatch("a directory")),
            Err(_) => {
                fs::create_dir_all(path)
                    .map_err(|e| host_error("creating hostPath directory", path, e.to_string()))?;
                fs::set_permissions(path, fs::Permissions::from_mode(0o755))
                    .map_err(|e| host_error("setting hostPath mode", path, e.to_string()))
            }
        },
        "FileOrCreate" => match meta {
            Ok(m) if m.is_file() => Ok(()),
            Ok(_) => Err(mismatch("a file")),
            Err(_) => fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map(|_| ())
                .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o644)))
                .map_err(|e| host_error("creating hostPath file", path, e.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;

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
        check_host_path(Path::new("/dev/null"), "CharDevice").expect("char device");
        check_host_path(&dir.path().join("anything"), "").expect("no check");
    }
}

//! `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log`: one symlink per
//! container to its log file, as the kubelet makes them, because the log shippers users run
//! (Fluent Bit, Vector, Promtail, the OpenTelemetry collector) tail that directory and read
//! pod, namespace and container from the name. Made once the container exists and its log
//! file does (the kubelet makes no dangling link), removed with the container, and any link
//! into a pod version's log directory removed with that version.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tracing::debug;

use super::{HostError, NodeContext};
use crate::pod::StaticPod;

/// The longest file name ext4 takes.
const MAX_NAME: usize = 255;
const SUFFIX: &str = ".log";

/// The link's file name, cut to fit a file name as the kubelet cuts it (the suffix kept).
pub fn link_name(pod: &str, namespace: &str, container: &str, id: &str) -> String {
    let mut name = format!("{pod}_{namespace}_{container}-{id}");
    let room = MAX_NAME - SUFFIX.len();
    if name.len() > room {
        let mut cut = room;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name.push_str(SUFFIX);
    name
}

/// The container's log file, as its config names it: `<pod log dir>/<container>/<attempt>.log`.
pub fn log_file(ctx: &NodeContext, pod: &StaticPod, container: &str, attempt: u32) -> PathBuf {
    ctx.pod_log_dir(&pod.key.namespace, &pod.key.name, pod.uid.as_str())
        .join(container)
        .join(format!("{attempt}.log"))
}

/// Links container `id` of `pod` to its log file, when links are made and the file exists.
pub fn link(
    ctx: &NodeContext,
    pod: &StaticPod,
    container: &str,
    attempt: u32,
    id: &str,
) -> Result<(), HostError> {
    let Some(dir) = &ctx.container_log_links else {
        return Ok(());
    };
    let target = log_file(ctx, pod, container, attempt);
    if !target.exists() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| HostError::new("creating", dir, e))?;
    let path = dir.join(link_name(&pod.key.name, &pod.key.namespace, container, id));
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(HostError::new("replacing", &path, e)),
    }
    symlink(&target, &path).map_err(|e| HostError::new("linking", &path, e))
}

/// Removes the symlinks in the links directory for which `remove_if` holds (regular files
/// and anything else are never touched).
fn remove_links(dir: &Path, remove_if: impl Fn(&str, &Path) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        let (Some(name), Ok(target)) = (
            entry.file_name().to_str().map(str::to_owned),
            fs::read_link(&path),
        ) else {
            continue;
        };
        if is_link && remove_if(&name, &target) {
            match fs::remove_file(&path) {
                Ok(()) => debug!(path = %path.display(), "container log link removed"),
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "container log link not removed")
                }
            }
        }
    }
}

/// Removes container `id`'s link.
pub fn unlink_container(ctx: &NodeContext, id: &str) {
    if let Some(dir) = &ctx.container_log_links {
        let end = format!("-{id}{SUFFIX}");
        remove_links(dir, |name, _| name.ends_with(&end));
    }
}

/// Removes every link into `log_dir` (a pod version's log directory, being removed).
pub fn unlink_pod(ctx: &NodeContext, log_dir: &Path) {
    if let Some(dir) = &ctx.container_log_links {
        remove_links(dir, |_, target| target.starts_with(log_dir));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(dir: &Path) -> NodeContext {
        let mut ctx = NodeContext::detect(
            crate::pod::NodeName::new("n1"),
            dir.join("root"),
            dir.join("pods"),
        );
        ctx.container_log_links = Some(dir.join("containers"));
        ctx
    }

    fn pod() -> StaticPod {
        crate::manifest::testing::static_pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: kube-system}\nspec:\n  containers:\n  - {name: main, image: busybox}\n",
        )
    }

    #[test]
    fn the_name_is_the_kubelets_and_is_cut_to_fit_a_file_name() {
        assert_eq!(
            link_name("web-n1", "kube-system", "main", "abc123"),
            "web-n1_kube-system_main-abc123.log"
        );
        let long = link_name(&"p".repeat(300), "ns", "c", "id");
        assert_eq!(long.len(), 255);
        assert!(long.ends_with("ppp.log"));
    }

    #[test]
    fn a_link_points_at_the_log_file_and_goes_with_its_container_or_its_pod() {
        let dir = tempfile::tempdir().expect("tmp");
        let ctx = ctx(dir.path());
        let pod = pod();
        // no log file yet: no dangling link
        link(&ctx, &pod, "main", 0, "c0ffee").expect("link");
        let links = dir.path().join("containers");
        assert!(!links.exists() || fs::read_dir(&links).expect("dir").next().is_none());
        let file = log_file(&ctx, &pod, "main", 0);
        fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        fs::write(&file, "line\n").expect("log");
        link(&ctx, &pod, "main", 0, "c0ffee").expect("link");
        let name = links.join(link_name(&pod.key.name, "kube-system", "main", "c0ffee"));
        assert_eq!(fs::read_link(&name).expect("a link"), file);
        assert_eq!(fs::read_to_string(&name).expect("through it"), "line\n");
        // a second container of the pod, then the first one removed
        link(&ctx, &pod, "main", 0, "beef00").expect("link");
        unlink_container(&ctx, "c0ffee");
        assert!(!name.exists());
        let other = links.join(link_name(&pod.key.name, "kube-system", "main", "beef00"));
        assert!(fs::symlink_metadata(&other).is_ok());
        // a file of someone else's in the directory is never touched
        fs::write(links.join("other_ns_c-beef00.log"), "not ours").expect("file");
        unlink_pod(
            &ctx,
            &ctx.pod_log_dir("kube-system", &pod.key.name, pod.uid.as_str()),
        );
        assert!(
            fs::symlink_metadata(&other).is_err(),
            "the pod's links go with it"
        );
        assert!(links.join("other_ns_c-beef00.log").exists());
    }
}

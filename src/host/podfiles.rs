//! Files the kubelet manages for each pod and mounts into its containers: the `/etc/hosts`
//! file (so hostAliases and the pod's own name resolve) and the termination-message file, and
//! reading that message back after the container exits; and the pod log directory containerd
//! writes container logs into. Content builders are pure; the writers are thin IO.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

use super::{HostError, NodeContext};
use crate::pod::StaticPod;

/// Longest termination message read from the file, as the kubelet.
pub const MAX_MESSAGE_BYTES: u64 = 4096;
/// Longest log tail used by `FallbackToLogsOnError`.
pub const MAX_LOG_TAIL_BYTES: usize = 2048;
/// Most log lines used by `FallbackToLogsOnError`.
pub const MAX_LOG_TAIL_LINES: usize = 80;

fn host_error(what: &'static str, path: &Path, e: std::io::Error) -> HostError {
    HostError::new(what, path, e)
}

/// `<root-dir>/pods/<uid>/etc-hosts`.
pub fn etc_hosts_path(ctx: &NodeContext, uid: &str) -> PathBuf {
    ctx.pod_dir(uid).join("etc-hosts")
}

/// Whether the kubelet would mount its managed `/etc/hosts` into this container: when the pod
/// has an IP or uses the host network, unless the container mounts something there itself.
pub fn mounts_etc_hosts(pod: &StaticPod, c: &Container, has_ip: bool) -> bool {
    let own = c
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.mount_path.trim_end_matches('/') == "/etc/hosts");
    !own && (has_ip || pod.host_network())
}

/// The managed hosts file, as the kubelet's `managedHostsFileContent` writes it.
pub fn etc_hosts_content(pod: &StaticPod, pod_ip: Option<&str>, node_hosts: &str) -> String {
    let mut out = String::new();
    if pod.host_network() {
        out.push_str("# Kubernetes-managed hosts file (host network).\n");
        out.push_str(node_hosts);
        if !node_hosts.ends_with('\n') && !node_hosts.is_empty() {
            out.push('\n');
        }
    } else {
        out.push_str("# Kubernetes-managed hosts file.\n");
        out.push_str("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n");
        if let Some(ip) = pod_ip {
            let hostname = pod.hostname();
            match pod.spec.subdomain.as_deref().filter(|s| !s.is_empty()) {
                Some(sub) => out.push_str(&format!(
                    "{ip}\t{hostname}.{sub}.{}.svc.cluster.local\t{hostname}\n",
                    pod.key.namespace
                )),
                None => out.push_str(&format!("{ip}\t{hostname}\n")),
            }
        }
    }
    let aliases = pod.spec.host_aliases.as_deref().unwrap_or(&[]);
    if !aliases.is_empty() {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            let names = a.hostnames.as_deref().unwrap_or(&[]).join("\t");
            out.push_str(&format!("{}\t{names}\n", a.ip));
        }
    }
    out
}

/// Writes the managed hosts file for `pod` (idempotent).
pub fn write_etc_hosts(
    pod: &StaticPod,
    ctx: &NodeContext,
    pod_ip: Option<&str>,
) -> Result<PathBuf, HostError> {
    let path = etc_hosts_path(ctx, pod.uid.as_str());
    let node_hosts = if pod.host_network() {
        fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        String::new()
    };
    let content = etc_hosts_content(pod, pod_ip, &node_hosts);
    if fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| host_error("creating pod directory", parent, e))?;
        }
        remove_runtime_made_dir(&path)?;
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, content)
            .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|e| host_error("writing managed /etc/hosts", &path, e))?;
    }
    Ok(path)
}

/// Creates a pod or container log directory and checks that a log can be written into it.
///
/// An error (a read-only or full filesystem, most likely) is for the caller to report and then
/// run the container without logs: containerd fails a container whose log file it cannot
/// create, and a pod is worth more than its logs. The check writes and removes one byte, as
/// creating a directory succeeds on a full disk while writing does not.
pub fn ensure_log_dir(dir: &Path) -> Result<(), HostError> {
    fs::create_dir_all(dir).map_err(|e| host_error("creating log directory", dir, e))?;
    let probe = dir.join(".podvisor-write-check");
    let written = fs::write(&probe, b"\n");
    let _ = fs::remove_file(&probe);
    written.map_err(|e| host_error("writing into log directory", dir, e))
}

/// `<root-dir>/pods/<uid>/containers/<name>/termination-log-<attempt>`: one per instance, so a
/// restart never reads the previous instance's message.
pub fn termination_log_path(ctx: &NodeContext, uid: &str, name: &str, attempt: u32) -> PathBuf {
    ctx.pod_dir(uid)
        .join("containers")
        .join(name)
        .join(format!("termination-log-{attempt}"))
}

/// Removes an empty directory where a file podvisor bind-mounts belongs. containerd creates a
/// bind mount's missing source as a directory, so a `CreateContainer` still running in
/// containerd after podvisor was killed and the pod's directory removed can leave one there,
/// which would refuse the file, and the container, for good. A directory with anything in it
/// is not podvisor's to remove: that stays an error naming it.
fn remove_runtime_made_dir(path: &Path) -> Result<(), HostError> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir(path).map_err(|e| {
            host_error(
                "removing the directory in the place of a mounted file",
                path,
                e,
            )
        })?;
    }
    Ok(())
}

/// Creates the empty, world-writable termination-message file (the container may run as any
/// user), as the kubelet does; an empty directory in its place goes first.
pub fn create_termination_log(path: &Path) -> Result<(), HostError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| host_error("creating container directory", parent, e))?;
    }
    remove_runtime_made_dir(path)?;
    fs::write(path, b"")
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o666)))
        .map_err(|e| host_error("creating termination-message file", path, e))
}

/// Text from bytes read out of a window of a file: a UTF-8 character cut at either edge of the
/// window is left out, not allowed to spoil the rest (any other invalid byte shows as U+FFFD).
pub fn window_text(bytes: &[u8]) -> String {
    // A window may begin inside a character: skip its continuation bytes (at most three).
    let start = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let mut end = bytes.len();
    // ... and end inside one: drop a trailing lead byte whose sequence is incomplete.
    if let Some(lead) = (start..end)
        .rev()
        .take(4)
        .find(|i| (bytes[*i] & 0xC0) != 0x80)
    {
        let want = match bytes[lead] {
            b if b >= 0xF0 => 4,
            b if b >= 0xE0 => 3,
            b if b >= 0xC0 => 2,
            _ => 1,
        };
        if end - lead < want {
            end = lead;
        }
    }
    String::from_utf8_lossy(&bytes[start.min(end)..end]).into_owned()
}

/// Where an exited container's termination message can be found, as its runtime record
/// says: the host file mounted at its `terminationMessagePath`, its log file, and its policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TerminationSource {
    /// The host side of its termination-message file.
    pub file: Option<PathBuf>,
    /// Its CRI log file.
    pub log: Option<PathBuf>,
    /// `terminationMessagePolicy: FallbackToLogsOnError`.
    pub fallback_to_logs: bool,
}

/// The message of a container that exited: its termination-message file (at most 4 KiB), or,
/// for `FallbackToLogsOnError` after a failure with an empty file, the tail of its log.
pub fn termination_message(source: &TerminationSource, exit_code: i32) -> String {
    let from_file = source
        .file
        .as_deref()
        .and_then(|p| fs::File::open(p).ok())
        .map(|f| {
            let mut bytes = Vec::new();
            let _ = f.take(MAX_MESSAGE_BYTES).read_to_end(&mut bytes);
            window_text(&bytes)
        })
        .unwrap_or_default();
    if !from_file.is_empty() || !source.fallback_to_logs || exit_code == 0 {
        return from_file;
    }
    source.log.as_deref().map(log_tail).unwrap_or_default()
}

/// The last lines of a CRI log file, without the `<time> <stream> <tag> ` prefixes.
pub fn log_tail(path: &Path) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    // CRI prefixes take ~40 bytes a line; read enough raw bytes for the message budget.
    let window = (MAX_LOG_TAIL_BYTES as u64 + 64 * MAX_LOG_TAIL_LINES as u64).min(len);
    let _ = f.seek(SeekFrom::Start(len - window));
    let mut raw = Vec::new();
    let _ = f.read_to_end(&mut raw);
    tail_of_cri_log(&window_text(&raw), len > window)
}

/// Pure part of [`log_tail`]: decodes CRI log lines and keeps the last 80 lines / 2 KiB.
pub fn tail_of_cri_log(raw: &str, truncated_front: bool) -> String {
    let mut lines: Vec<&str> = raw.lines().collect();
    if truncated_front && !lines.is_empty() {
        lines.remove(0); // probably cut in the middle
    }
    let mut text = String::new();
    for line in lines {
        let mut parts = line.splitn(4, ' ');
        let (_time, _stream, tag, msg) = (parts.next(), parts.next(), parts.next(), parts.next());
        text.push_str(msg.unwrap_or(""));
        if tag != Some("P") {
            text.push('\n');
        }
    }
    let kept: Vec<&str> = text.lines().rev().take(MAX_LOG_TAIL_LINES).collect();
    let mut out: String = kept.into_iter().rev().collect::<Vec<_>>().join("\n");
    if out.len() > MAX_LOG_TAIL_BYTES {
        let mut cut = out.len() - MAX_LOG_TAIL_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = out[cut..].to_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> StaticPod {
        crate::manifest::testing::static_pod(yaml)
    }

    #[test]
    fn managed_hosts_file_names_the_pod_and_its_aliases() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  hostAliases: [{ip: 10.1.2.3, hostnames: [db, db.local]}]\n  containers: [{name: c, image: 'i:1'}]\n",
        );
        let hosts = etc_hosts_content(&p, Some("10.88.0.7"), "");
        assert!(
            hosts.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"),
            "{hosts}"
        );
        assert!(hosts.contains("\n10.88.0.7\tweb-n1\n"), "{hosts}");
        assert!(
            hosts.ends_with("\n# Entries added by HostAliases.\n10.1.2.3\tdb\tdb.local\n"),
            "{hosts}"
        );
    }

    #[test]
    fn host_network_hosts_file_copies_the_node_file() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  hostNetwork: true\n  hostAliases: [{ip: 10.1.2.3, hostnames: [db]}]\n  containers: [{name: c, image: 'i:1'}]\n",
        );
        let hosts = etc_hosts_content(&p, None, "127.0.0.1 localhost\n192.168.1.10 node1\n");
        assert_eq!(
            hosts,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.1.10 node1\n\n# Entries added by HostAliases.\n10.1.2.3\tdb\n"
        );
    }

    #[test]
    fn a_container_mounting_its_own_hosts_file_keeps_it() {
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: 'i:1', volumeMounts: [{name: h, mountPath: /etc/hosts}]}]\n  volumes: [{name: h, hostPath: {path: /etc/hosts}}]\n",
        );
        assert!(!mounts_etc_hosts(&p, &p.containers()[0], true));
    }

    #[test]
    fn termination_message_comes_from_the_file_else_the_log_tail_on_failure() {
        let dir = tempfile::tempdir().expect("tempdir");
        let msg = dir.path().join("msg");
        let log = dir.path().join("0.log");
        std::fs::write(&log, "2024-01-01T00:00:00.000000000Z stdout F starting\n2024-01-01T00:00:01.000000000Z stderr P part one \n2024-01-01T00:00:01.000000001Z stderr F and two\n").expect("write");
        std::fs::write(&msg, "").expect("write");
        let read = |fallback_to_logs, exit_code| {
            let source = TerminationSource {
                file: Some(msg.clone()),
                log: Some(log.clone()),
                fallback_to_logs,
            };
            termination_message(&source, exit_code)
        };
        assert_eq!(read(true, 1), "starting\npart one and two");
        assert_eq!(read(true, 0), "", "no fallback after success");
        assert_eq!(read(false, 1), "", "File policy never reads logs");
        std::fs::write(&msg, "disk full").expect("write");
        assert_eq!(read(true, 1), "disk full");
        std::fs::write(&msg, "x".repeat(5000)).expect("write");
        assert_eq!(read(false, 1).len(), 4096);
    }

    #[test]
    fn log_tail_keeps_the_last_eighty_lines() {
        let raw: String = (0..100).map(|i| format!("t stdout F line{i}\n")).collect();
        let tail = tail_of_cri_log(&raw, false);
        assert_eq!(tail.lines().count(), 80);
        assert!(tail.starts_with("line20\n") && tail.ends_with("line99"));
    }

    #[test]
    fn a_writable_log_directory_is_created_and_left_clean() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = dir.path().join("ns_web_uid").join("c");
        ensure_log_dir(&logs).expect("usable");
        assert!(logs.is_dir());
        assert_eq!(
            fs::read_dir(&logs).expect("list").count(),
            0,
            "probe left behind"
        );
    }

    #[test]
    fn a_log_directory_that_cannot_be_created_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "").expect("write");
        let err = ensure_log_dir(&file.join("ns_web_uid")).unwrap_err();
        assert!(err.path.starts_with(&file), "{err}");
    }

    /// A tmpfs mounted for one test, unmounted however the test ends.
    struct Tmpfs(tempfile::TempDir);

    impl Tmpfs {
        fn mount(options: &str) -> Tmpfs {
            use nix::mount::{MsFlags, mount};
            let dir = tempfile::tempdir().expect("tempdir");
            mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                MsFlags::empty(),
                Some(options),
            )
            .expect("mount tmpfs");
            Tmpfs(dir)
        }

        fn path(&self) -> &Path {
            self.0.path()
        }
    }

    impl Drop for Tmpfs {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(self.0.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn read_only_and_full_log_filesystems_are_reported_unusable() {
        use nix::mount::{MsFlags, mount};
        if !nix::unistd::geteuid().is_root() {
            return; // mounting needs root; the containerd tests run as root
        }
        let read_only = Tmpfs::mount("size=1m");
        mount(
            None::<&str>,
            read_only.path(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .expect("remount read-only");
        let err = ensure_log_dir(&read_only.path().join("ns_web_uid")).unwrap_err();
        assert!(err.to_string().contains("Read-only file system"), "{err}");

        let full = Tmpfs::mount("size=64k");
        let logs = full.path().join("ns_web_uid");
        fs::create_dir(&logs).expect("mkdir");
        // fill it up
        let _ = fs::write(full.path().join("filler"), vec![0u8; 128 << 10]);
        let err = ensure_log_dir(&logs).unwrap_err();
        assert!(err.to_string().contains("No space left on device"), "{err}");
    }

    #[test]
    fn a_window_cut_inside_a_character_keeps_the_rest_of_the_text_issue_11() {
        let text = "héllo wörld ✓";
        let bytes = text.as_bytes();
        // Cut after the first byte of 'é' and after the second byte of '✓'.
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(window_text(cut), "héllo wörld ");
        let e = text.find('é').expect("é");
        assert_eq!(window_text(&bytes[e + 1..]), "llo wörld ✓");
        assert_eq!(window_text(bytes), text);
        // A termination message longer than 4 KiB, cut inside a character.
        let dir = tempfile::tempdir().expect("tempdir");
        let msg = dir.path().join("msg");
        let long = format!("{}{}", "a".repeat(4095), "é and more");
        std::fs::write(&msg, &long).expect("write");
        assert_eq!(
            termination_message(
                &TerminationSource {
                    file: Some(msg.clone()),
                    log: None,
                    fallback_to_logs: false
                },
                1
            ),
            "a".repeat(4095)
        );
    }

    #[test]
    fn an_empty_directory_a_runtime_left_in_the_termination_files_place_is_replaced_by_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("containers/main/termination-log-2");
        fs::create_dir_all(&path).expect("mkdir");
        create_termination_log(&path).expect("created");
        let meta = fs::metadata(&path).expect("meta");
        assert!(meta.is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o666);

        // a directory with something in it is not podvisor's to remove: one clear error
        let full = dir.path().join("containers/main/termination-log-3");
        fs::create_dir_all(full.join("inside")).expect("mkdir");
        let e = create_termination_log(&full).expect_err("refused");
        assert!(e.to_string().contains("termination-log-3"), "{e}");
        assert!(full.join("inside").is_dir());
    }

    #[test]
    fn an_empty_directory_in_the_place_of_the_managed_hosts_file_is_replaced_by_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctx = crate::host::NodeContext::detect(
            crate::pod::NodeName::new("n1"),
            dir.path().to_path_buf(),
            dir.path().join("logs"),
        );
        let p = pod(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: c, image: 'i:1'}]\n",
        );
        fs::create_dir_all(etc_hosts_path(&ctx, p.uid.as_str())).expect("mkdir");
        let path = write_etc_hosts(&p, &ctx, Some("10.88.0.7")).expect("written");
        assert!(fs::read_to_string(path).expect("file").contains("web-n1"));
    }
}

//! Who may write the manifests a root daemon runs. The kubelet runs whatever is in its
//! directory, so anyone who can write a manifest there can start a privileged container:
//! when podvisor runs as root it refuses a manifest file, or the whole directory, that is
//! owned by another user or writable by group or others (unless told to allow it, then it
//! warns). Reads file metadata only.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

/// How ownership and modes are treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustPolicy {
    /// Not checked (podvisor does not run as root: it cannot be escalated through).
    Off,
    /// Untrusted files and directories are refused.
    Enforce,
    /// Untrusted files and directories are used, with a warning.
    Warn,
}

impl TrustPolicy {
    /// The policy for a process with effective user `euid`.
    pub fn for_process(euid: u32, allow_insecure: bool) -> TrustPolicy {
        match (euid, allow_insecure) {
            (0, false) => TrustPolicy::Enforce,
            (0, true) => TrustPolicy::Warn,
            _ => TrustPolicy::Off,
        }
    }
}

/// Why a file or directory is not trusted, if it is not: owned by a user other than root, or
/// writable by group or others.
pub fn untrusted(meta: &Metadata) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != 0 {
        return Some(format!("owned by uid {}, not root", meta.uid()));
    }
    if mode & 0o022 != 0 {
        let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "group",
            _ => "others",
        };
        return Some(format!("writable by {who} (mode {mode:04o})"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn root_owned_files_not_writable_by_others_are_trusted() {
        if !nix::unistd::geteuid().is_root() {
            return; // ownership by root cannot be arranged otherwise; the containerd tests run as root
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pod.yaml");
        std::fs::write(&f, "x").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(untrusted(&std::fs::metadata(&f).expect("meta")), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o664)).expect("chmod");
        assert_eq!(
            untrusted(&std::fs::metadata(&f).expect("meta")).as_deref(),
            Some("writable by group (mode 0664)")
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert_eq!(
            untrusted(&std::fs::metadata(&f).expect("meta")).as_deref(),
            Some("writable by group and others (mode 0666)")
        );
        nix::unistd::chown(&f, Some(nix::unistd::Uid::from_raw(1000)), None).expect("chown");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(
            untrusted(&std::fs::metadata(&f).expect("meta")).as_deref(),
            Some("owned by uid 1000, not root")
        );
    }

    #[test]
    fn only_root_enforces() {
        assert_eq!(TrustPolicy::for_process(0, false), TrustPolicy::Enforce);
        assert_eq!(TrustPolicy::for_process(0, true), TrustPolicy::Warn);
        assert_eq!(TrustPolicy::for_process(1000, false), TrustPolicy::Off);
    }
}

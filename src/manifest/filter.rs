//! Which directory entries are manifests: by name only, before anything is read.
//!
//! The kubelet parses every non-dot file, so editor backups and `.bak` copies override the real
//! manifest (kubernetes#136962, #40331, #83708). podvisor reads only `*.yaml`, `*.yml` and
//! `*.json`, and names why it skips everything else. Pure; no IO.

use std::fmt;

/// Why a directory entry is not read as a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IgnoreReason {
    /// Starts with a dot (includes `..data` and editor swap files like `.pod.yaml.swp`).
    Hidden,
    /// An editor or package-manager leftover: `*~`, `*.swp`, `*.bak`, `*.orig`, `*.dpkg-*`,
    /// `*.tmp`, vim's `4913` probe.
    Backup,
    /// Not `.yaml`, `.yml` or `.json`.
    Extension,
    /// A directory: the manifest directory is not read recursively.
    Directory,
    /// A dangling symlink: its target does not exist (yet). Entries that exist but are not
    /// regular files (FIFOs, sockets, devices) are errors instead (see `scan`).
    NotRegular,
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IgnoreReason::Hidden => "hidden file",
            IgnoreReason::Backup => "editor or backup file",
            IgnoreReason::Extension => "not a .yaml, .yml or .json file",
            IgnoreReason::Directory => "directory (not read recursively)",
            IgnoreReason::NotRegular => "dangling symlink (its target does not exist)",
        })
    }
}

/// The format a manifest file is read in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.yaml` or `.yml`: one or more YAML documents.
    Yaml,
    /// `.json`: one JSON value.
    Json,
}

/// Decides from the file name alone whether to read an entry, and how.
pub fn classify(name: &str) -> Result<Format, IgnoreReason> {
    if name.starts_with('.') {
        return Err(IgnoreReason::Hidden);
    }
    const BACKUP_SUFFIXES: &[&str] = &[".swp", ".swx", ".bak", ".orig", ".tmp", ".rej"];
    if name == "4913"
        || name.ends_with('~')
        || BACKUP_SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.contains(".dpkg-")
        || name.contains(".ucf-")
        || name.contains(".rpmnew")
        || name.contains(".rpmsave")
    {
        return Err(IgnoreReason::Backup);
    }
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        Ok(Format::Yaml)
    } else if name.ends_with(".json") {
        Ok(Format::Json)
    } else {
        Err(IgnoreReason::Extension)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_read_by_extension() {
        assert_eq!(classify("etcd.yaml"), Ok(Format::Yaml));
        assert_eq!(classify("etcd.yml"), Ok(Format::Yaml));
        assert_eq!(classify("etcd.json"), Ok(Format::Json));
    }

    #[test]
    fn editor_and_package_leftovers_are_ignored() {
        for name in [
            "etcd.yaml~",
            "etcd.yaml.swp",
            "etcd.yaml.bak",
            "etcd.yaml.orig",
            "etcd.yaml.dpkg-old",
            "etcd.yaml.dpkg-new",
            "etcd.yaml.tmp",
            "4913",
        ] {
            assert_eq!(classify(name), Err(IgnoreReason::Backup), "{name}");
        }
    }

    #[test]
    fn hidden_and_other_files_are_ignored() {
        assert_eq!(classify(".etcd.yaml.swp"), Err(IgnoreReason::Hidden));
        assert_eq!(classify("..data"), Err(IgnoreReason::Hidden));
        assert_eq!(classify("README"), Err(IgnoreReason::Extension));
        assert_eq!(classify("etcd.yaml.txt"), Err(IgnoreReason::Extension));
    }
}

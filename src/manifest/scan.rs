//! Reading the manifest directory: one pass over its entries, following symlinks, refusing
//! oversized files, and re-parsing only files whose bytes changed.
//!
//! This is the only part of `manifest` that touches the filesystem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{
    IgnoreReason, ManifestError, ParsedPod, TrustPolicy, classify, parse_manifest, untrusted,
};

/// The largest manifest read, as the kubelet's `maxConfigLength`: 10 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 10 * 1024 * 1024;

/// What one directory entry turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// Skipped, and why.
    Ignored(IgnoreReason),
    /// Read: its pods, or why it was rejected.
    Parsed(Result<Arc<Vec<ParsedPod>>, ManifestError>),
}

/// One pass over the directory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scan {
    /// Every entry, in name order.
    pub entries: BTreeMap<PathBuf, Entry>,
    /// Directories that manifests link into (to watch them as well).
    pub link_dirs: BTreeSet<PathBuf>,
    /// Trust warnings about the directory itself (files carry theirs in their entries).
    pub warnings: Vec<String>,
}

/// The directory itself could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ScanError {
    /// It does not exist (yet).
    #[error("manifest directory {} does not exist", path.display())]
    Missing {
        /// The manifest directory.
        path: PathBuf,
    },
    /// Running as root, the directory is owned by another user or writable by group or
    /// others: nothing in it is trusted, and running pods are left as they are.
    #[error("manifest directory {} refused: {reason} (chown root, chmod go-w, or run with --allow-insecure-manifests)", path.display())]
    Untrusted {
        /// The manifest directory.
        path: PathBuf,
        /// Who else may write it.
        reason: String,
    },
    /// It exists but cannot be listed.
    #[error("manifest directory {} cannot be read: {message}", path.display())]
    Unreadable {
        /// The manifest directory.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
}

struct Cached {
    digest: [u8; 32],
    result: Result<Arc<Vec<ParsedPod>>, ManifestError>,
}

/// Scans one directory, remembering what each file parsed to.
pub struct Scanner {
    dir: PathBuf,
    policy: TrustPolicy,
    cache: HashMap<PathBuf, Cached>,
}

impl Scanner {
    /// A scanner for `dir` that does not check ownership (see [`Scanner::with_policy`]).
    pub fn new(dir: impl Into<PathBuf>) -> Scanner {
        Scanner::with_policy(dir, TrustPolicy::Off)
    }

    /// A scanner for `dir` that treats untrusted files per `policy`.
    pub fn with_policy(dir: impl Into<PathBuf>, policy: TrustPolicy) -> Scanner {
        Scanner {
            dir: dir.into(),
            policy,
            cache: HashMap::new(),
        }
    }

    /// The directory scanned.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every entry of the directory.
    pub fn scan(&mut self) -> Result<Scan, ScanError> {
        let read_dir = std::fs::read_dir(&self.dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ScanError::Missing {
                path: self.dir.clone(),
            },
            _ => ScanError::Unreadable {
                path: self.dir.clone(),
                message: e.to_string(),
            },
        })?;
        let mut scan = Scan::default();
        if self.policy != TrustPolicy::Off
            && let Some(reason) = std::fs::metadata(&self.dir)
                .ok()
                .and_then(|m| untrusted(&m))
        {
            if self.policy == TrustPolicy::Enforce {
                return Err(ScanError::Untrusted {
                    path: self.dir.clone(),
                    reason,
                });
            }
            scan.warnings.push(format!(
                "manifest directory {} is {reason}",
                self.dir.display()
            ));
        }
        for entry in read_dir.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                scan.entries
                    .insert(path, Entry::Ignored(IgnoreReason::Extension));
                continue;
            };
            let format = match classify(name) {
                Ok(format) => format,
                Err(reason) => {
                    scan.entries.insert(path, Entry::Ignored(reason));
                    continue;
                }
            };
            // metadata() follows symlinks, including the `..data` swap layout.
            let meta = match std::fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let dangling = std::fs::symlink_metadata(&path).is_ok();
                    if dangling {
                        scan.entries
                            .insert(path, Entry::Ignored(IgnoreReason::NotRegular));
                    }
                    continue; // vanished between listing and stat: not there
                }
                Err(e) => {
                    let err = ManifestError::Read {
                        path: path.clone(),
                        message: e.to_string(),
                    };
                    scan.entries.insert(path, Entry::Parsed(Err(err)));
                    continue;
                }
            };
            if meta.is_dir() {
                scan.entries
                    .insert(path, Entry::Ignored(IgnoreReason::Directory));
                continue;
            }
            if !meta.is_file() {
                scan.entries
                    .insert(path, Entry::Ignored(IgnoreReason::NotRegular));
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_symlink())
                && let Some(dir) = std::fs::canonicalize(&path)
                    .ok()
                    .and_then(|t| t.parent().map(Path::to_path_buf))
            {
                scan.link_dirs.insert(dir);
            }
            let trust = if self.policy == TrustPolicy::Off {
                None
            } else {
                untrusted(&meta)
            };
            if let (Some(reason), TrustPolicy::Enforce) = (&trust, self.policy) {
                let err = ManifestError::Untrusted {
                    path: path.clone(),
                    reason: reason.clone(),
                };
                scan.entries.insert(path, Entry::Parsed(Err(err)));
                continue;
            }
            if let Some(reason) = trust {
                scan.warnings.push(format!(
                    "{} is {reason}; running it anyway (--allow-insecure-manifests)",
                    path.display()
                ));
            }
            let result = self.read_and_parse(&path, format, meta.len());
            scan.entries.insert(path, Entry::Parsed(result));
        }
        self.cache.retain(|p, _| scan.entries.contains_key(p));
        Ok(scan)
    }

    fn read_and_parse(
        &mut self,
        path: &Path,
        format: super::Format,
        size: u64,
    ) -> Result<Arc<Vec<ParsedPod>>, ManifestError> {
        let too_large = |size| ManifestError::TooLarge {
            path: path.to_owned(),
            size,
        };
        if size > MAX_MANIFEST_BYTES {
            self.cache.remove(path);
            return Err(too_large(size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let read = std::fs::File::open(path)
            .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            self.cache.remove(path);
            return Err(ManifestError::Read {
                path: path.to_owned(),
                message: e.to_string(),
            });
        }
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            self.cache.remove(path);
            return Err(too_large(bytes.len() as u64));
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(c) = self.cache.get(path)
            && c.digest == digest
        {
            return c.result.clone();
        }
        let result = parse_manifest(path, format, &bytes).map(Arc::new);
        self.cache.insert(
            path.to_owned(),
            Cached {
                digest,
                result: result.clone(),
            },
        );
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: NAME}\nspec: {containers: [{name: c, image: 'i:1'}]}\n";

    fn names(scan: &Scan) -> Vec<(String, &'static str)> {
        scan.entries
            .iter()
            .map(|(p, e)| {
                let n = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("")
                    .to_owned();
                let what = match e {
                    Entry::Ignored(_) => "ignored",
                    Entry::Parsed(Ok(_)) => "ok",
                    Entry::Parsed(Err(_)) => "error",
                };
                (n, what)
            })
            .collect()
    }

    #[test]
    fn scan_reads_manifests_and_reports_everything_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("a.yaml"), POD.replace("NAME", "a")).expect("write");
        fs::write(dir.path().join("a.yaml~"), POD.replace("NAME", "x")).expect("write");
        fs::write(dir.path().join(".a.yaml.swp"), "junk").expect("write");
        fs::write(dir.path().join("b.json"), "{").expect("write");
        fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
        let scan = Scanner::new(dir.path()).scan().expect("scan");
        assert_eq!(
            names(&scan),
            [
                (".a.yaml.swp".to_owned(), "ignored"),
                ("a.yaml".to_owned(), "ok"),
                ("a.yaml~".to_owned(), "ignored"),
                ("b.json".to_owned(), "error"),
                ("sub.yaml".to_owned(), "ignored"),
            ]
        );
    }

    #[test]
    fn symlinked_manifests_are_followed_including_the_data_swap_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v1 = dir.path().join("..2024_01_01");
        fs::create_dir(&v1).expect("mkdir");
        fs::write(v1.join("web.yaml"), POD.replace("NAME", "web")).expect("write");
        std::os::unix::fs::symlink("..2024_01_01", dir.path().join("..data")).expect("symlink");
        std::os::unix::fs::symlink("..data/web.yaml", dir.path().join("web.yaml"))
            .expect("symlink");
        let mut scanner = Scanner::new(dir.path());
        let scan = scanner.scan().expect("scan");
        let web = &scan.entries[&dir.path().join("web.yaml")];
        assert!(
            matches!(web, Entry::Parsed(Ok(p)) if p[0].metadata.name.as_deref() == Some("web"))
        );
        assert!(scan.link_dirs.iter().any(|d| d.ends_with("..2024_01_01")));

        // swap ..data to a new version, as ConfigMap-style tools do
        let v2 = dir.path().join("..2024_01_02");
        fs::create_dir(&v2).expect("mkdir");
        fs::write(v2.join("web.yaml"), POD.replace("NAME", "web2")).expect("write");
        std::os::unix::fs::symlink("..2024_01_02", dir.path().join("..data_tmp")).expect("symlink");
        fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).expect("rename");
        let scan = scanner.scan().expect("scan");
        let web = &scan.entries[&dir.path().join("web.yaml")];
        assert!(
            matches!(web, Entry::Parsed(Ok(p)) if p[0].metadata.name.as_deref() == Some("web2"))
        );
    }

    #[test]
    fn files_over_ten_mebibytes_are_refused_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.yaml");
        let f = fs::File::create(&big).expect("create");
        f.set_len(MAX_MANIFEST_BYTES + 1).expect("truncate");
        let scan = Scanner::new(dir.path()).scan().expect("scan");
        assert!(matches!(
            &scan.entries[&big],
            Entry::Parsed(Err(ManifestError::TooLarge { .. }))
        ));
    }

    #[test]
    fn missing_directory_is_an_error_not_an_empty_scan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Scanner::new(dir.path().join("nope")).scan().unwrap_err();
        assert!(matches!(err, ScanError::Missing { .. }));
    }

    #[test]
    fn as_root_untrusted_files_and_directories_are_refused_or_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            return; // ownership by root cannot be arranged otherwise; the containerd tests run as root
        }
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let good = dir.path().join("good.yaml");
        let open = dir.path().join("open.yaml");
        std::fs::write(&good, POD.replace("NAME", "good")).expect("write");
        std::fs::write(&open, POD.replace("NAME", "open")).expect("write");
        std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let scan = Scanner::with_policy(dir.path(), TrustPolicy::Enforce)
            .scan()
            .expect("scan");
        assert!(matches!(&scan.entries[&good], Entry::Parsed(Ok(_))));
        assert!(matches!(
            &scan.entries[&open],
            Entry::Parsed(Err(ManifestError::Untrusted { .. }))
        ));
        let scan = Scanner::with_policy(dir.path(), TrustPolicy::Warn)
            .scan()
            .expect("scan");
        assert!(matches!(&scan.entries[&open], Entry::Parsed(Ok(_))));
        assert_eq!(scan.warnings.len(), 1);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let err = Scanner::with_policy(dir.path(), TrustPolicy::Enforce)
            .scan()
            .unwrap_err();
        assert!(matches!(err, ScanError::Untrusted { .. }), "{err}");
    }

    #[test]
    fn dangling_symlink_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/nonexistent/x.yaml", dir.path().join("x.yaml"))
            .expect("symlink");
        let scan = Scanner::new(dir.path()).scan().expect("scan");
        assert_eq!(names(&scan), [("x.yaml".to_owned(), "ignored")]);
    }
}

//! Reading the manifest directory: one pass over its entries, following symlinks that stay
//! inside it, refusing oversized files and anything that is not a regular file, and
//! re-parsing only files whose bytes changed.
//!
//! Nothing here may block or grow without bound on what it finds: a FIFO or a device node is
//! never opened, a file is never read past [`MAX_MANIFEST_BYTES`] (even one that grows while
//! read), a symlink loop or a link out of the directory is an error, and parsing runs on a
//! thread with a stack of known size.
//!
//! This is the only part of `manifest` that touches the filesystem.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{FileType, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{
    Format, IgnoreReason, ManifestError, ParsedPod, TrustPolicy, classify, parse_manifest,
    untrusted,
};

/// The largest manifest read, as the kubelet's `maxConfigLength`: 10 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 10 * 1024 * 1024;

/// The stack of the thread a manifest is parsed on. YAML nesting is capped (see `parse`),
/// but each level costs the parser about 25 KiB of stack in a debug build (3 KiB optimised):
/// the cap's worth would nearly fill a 2 MiB tokio blocking thread, and overflowing a stack
/// aborts the daemon. Only the pages used are ever touched.
const PARSE_STACK_BYTES: usize = 8 * 1024 * 1024;

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
        // Symlinks are followed only to targets inside the directory (the `..data` layout
        // lives there); compared canonically, so a directory reached through a symlink works.
        let root = std::fs::canonicalize(&self.dir).unwrap_or_else(|_| self.dir.clone());
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
            let (file, meta) = match locate(&path, &root) {
                Ok(Located::Vanished) => continue, // gone between listing and stat: not there
                Ok(Located::Ignored(reason)) => {
                    scan.entries.insert(path, Entry::Ignored(reason));
                    continue;
                }
                Ok(Located::File { file, meta }) => (file, meta),
                Err(err) => {
                    self.cache.remove(&path);
                    scan.entries.insert(path, Entry::Parsed(Err(err)));
                    continue;
                }
            };
            if file != path
                && let Some(dir) = file.parent()
            {
                scan.link_dirs.insert(dir.to_path_buf());
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
            let result = self.read_and_parse(&path, &file, format, meta.len());
            scan.entries.insert(path, Entry::Parsed(result));
        }
        self.cache.retain(|p, _| scan.entries.contains_key(p));
        Ok(scan)
    }

    /// Reads `file` (what the entry `path` resolves to) and parses it, unless its bytes are
    /// those parsed last time.
    fn read_and_parse(
        &mut self,
        path: &Path,
        file: &Path,
        format: Format,
        size: u64,
    ) -> Result<Arc<Vec<ParsedPod>>, ManifestError> {
        if size > MAX_MANIFEST_BYTES {
            self.cache.remove(path);
            return Err(ManifestError::TooLarge {
                path: path.to_owned(),
                size,
            });
        }
        let bytes = match read_regular_file(path, file) {
            Ok(bytes) => bytes,
            Err(e) => {
                self.cache.remove(path);
                return Err(e);
            }
        };
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(c) = self.cache.get(path)
            && c.digest == digest
        {
            return c.result.clone();
        }
        let result = match parse_on_own_stack(path, format, &bytes) {
            Ok(result) => result.map(Arc::new),
            // Not the file's fault, so not remembered: the next scan tries again.
            Err(e) => return Err(e),
        };
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

/// What a manifest entry's path leads to, found without opening anything.
enum Located {
    /// Gone between listing and looking.
    Vanished,
    /// Not read, and why (a directory, a dangling symlink).
    Ignored(IgnoreReason),
    /// A regular file: `file` is `path` itself, or the canonical target of a symlink.
    File {
        /// What to open.
        file: PathBuf,
        /// Its metadata.
        meta: Metadata,
    },
}

fn cannot_read(path: &Path, message: impl Into<String>) -> ManifestError {
    ManifestError::Read {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// What a file that is not regular is, for people.
fn kind_of(t: &FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, t: &FileType) -> ManifestError {
    cannot_read(
        path,
        format!(
            "it is {}, not a regular file (only regular files, or symlinks to them, are read)",
            kind_of(t)
        ),
    )
}

fn is_symlink_loop(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(nix::libc::ELOOP)
}

/// Resolves one entry of the directory `root` (canonical) by its metadata alone: FIFOs and
/// device nodes are never opened (opening a FIFO blocks until a writer comes; opening a device
/// can have effects of its own).
fn locate(path: &Path, root: &Path) -> Result<Located, ManifestError> {
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Located::Vanished),
        Err(e) => return Err(cannot_read(path, e.to_string())),
    };
    let (file, meta) = if link.file_type().is_symlink() {
        let target = match std::fs::canonicalize(path) {
            Ok(t) => t,
            Err(e) if is_symlink_loop(&e) => {
                return Err(cannot_read(
                    path,
                    "symlink loop (too many levels of symbolic links)",
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(if std::fs::symlink_metadata(path).is_ok() {
                    Located::Ignored(IgnoreReason::NotRegular) // dangling
                } else {
                    Located::Vanished
                });
            }
            Err(e) => return Err(cannot_read(path, e.to_string())),
        };
        if !target.starts_with(root) {
            return Err(cannot_read(
                path,
                format!(
                    "symlink points outside the manifest directory: {} (only links within it are followed)",
                    target.display()
                ),
            ));
        }
        match std::fs::metadata(&target) {
            Ok(m) => (target, m),
            // the target went since: dangling now
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Located::Ignored(IgnoreReason::NotRegular));
            }
            Err(e) => return Err(cannot_read(path, e.to_string())),
        }
    } else {
        (path.to_owned(), link)
    };
    if meta.is_dir() {
        return Ok(Located::Ignored(IgnoreReason::Directory));
    }
    if !meta.is_file() {
        return Err(not_regular(path, &meta.file_type()));
    }
    Ok(Located::File { file, meta })
}

/// Reads one manifest named on a command line (`podvisor check FILE`): a symlink is followed
/// wherever it points, since the user named it; anything but a regular file is refused from
/// its metadata without being opened; at most [`MAX_MANIFEST_BYTES`] are read.
pub fn read_named_manifest(path: &Path) -> Result<Vec<u8>, ManifestError> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if is_symlink_loop(&e) {
            cannot_read(path, "symlink loop (too many levels of symbolic links)")
        } else {
            cannot_read(path, e.to_string())
        }
    })?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta.file_type()));
    }
    let file = std::fs::canonicalize(path).map_err(|e| cannot_read(path, e.to_string()))?;
    read_regular_file(path, &file)
}

/// Reads the regular file `file` for the entry `path`, at most [`MAX_MANIFEST_BYTES`].
///
/// Opened non-blocking and without following a final symlink, then checked again on the open
/// file: should something else have been swapped in since [`locate`] looked, opening neither
/// hangs on a FIFO nor leaves the directory, and nothing but a regular file is read.
fn read_regular_file(path: &Path, file: &Path) -> Result<Vec<u8>, ManifestError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW | nix::libc::O_NOCTTY)
        .open(file)
        .map_err(|e| {
            if is_symlink_loop(&e) {
                cannot_read(path, "it was replaced by a symlink while being read")
            } else {
                cannot_read(path, e.to_string())
            }
        })?;
    let meta = f.metadata().map_err(|e| cannot_read(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta.file_type()));
    }
    let bytes = read_at_most(f, meta.len()).map_err(|e| cannot_read(path, e.to_string()))?;
    let read = bytes.len() as u64;
    if read > MAX_MANIFEST_BYTES || meta.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge {
            path: path.to_owned(),
            size: read.max(meta.len()),
        });
    }
    Ok(bytes)
}

/// Reads up to one byte more than [`MAX_MANIFEST_BYTES`] (so that an oversized source shows),
/// whatever `size_hint` claims: a file may grow while it is read.
fn read_at_most(reader: impl Read, size_hint: u64) -> std::io::Result<Vec<u8>> {
    let capacity = usize::try_from(size_hint.min(MAX_MANIFEST_BYTES)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(capacity);
    reader
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses on a thread of its own with a [`PARSE_STACK_BYTES`] stack, whatever thread scans.
/// `Err` when no thread could be started (a passing condition, not the file's fault); a
/// panic in the parser becomes the file's error instead of taking the scan down.
fn parse_on_own_stack(
    path: &Path,
    format: Format,
    bytes: &[u8],
) -> Result<Result<Vec<ParsedPod>, ManifestError>, ManifestError> {
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new()
            .name("manifest-parse".to_owned())
            .stack_size(PARSE_STACK_BYTES)
            .spawn_scoped(scope, || parse_manifest(path, format, bytes))
            .map_err(|e| cannot_read(path, format!("cannot start a parser thread: {e}")))?;
        Ok(parser.join().unwrap_or_else(|_| {
            Err(cannot_read(
                path,
                "the parser failed on this file (a podvisor bug: please report it)",
            ))
        }))
    })
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

    /// Runs `f` on a thread with a `stack`-byte stack; fails, rather than hangs, when it does
    /// not return (a blocked `open`, an endless read) within a minute.
    fn bounded<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                let _ = tx.send(f());
            })
            .expect("thread");
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("finished in bounded time")
    }

    fn scan_bounded(dir: &Path) -> Scan {
        let dir = dir.to_owned();
        bounded(2 << 20, move || Scanner::new(dir).scan().expect("scan"))
    }

    /// The entry's `ManifestError::Read` message, checking that the error names the file.
    fn read_error(scan: &Scan, path: &Path) -> String {
        match &scan.entries[path] {
            Entry::Parsed(Err(e @ ManifestError::Read { path: named, .. })) => {
                assert_eq!(named, path);
                assert!(
                    e.to_string()
                        .starts_with(&format!("{}: cannot read: ", path.display())),
                    "{e}"
                );
                e.to_string()
            }
            other => panic!("{}: expected a read error, got {other:?}", path.display()),
        }
    }

    #[test]
    fn a_fifo_is_refused_by_its_type_without_being_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        fs::write(dir.path().join("good.yaml"), POD.replace("NAME", "good")).expect("write");
        let scan = scan_bounded(dir.path());
        let message = read_error(&scan, &fifo);
        assert!(
            message.ends_with("cannot read: it is a FIFO (named pipe), not a regular file (only regular files, or symlinks to them, are read)"),
            "{message}"
        );
        assert!(matches!(
            &scan.entries[&dir.path().join("good.yaml")],
            Entry::Parsed(Ok(_))
        ));
    }

    #[test]
    fn a_fifo_swapped_in_after_the_type_check_does_not_block_the_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe.yaml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        let read = bounded(2 << 20, move || read_regular_file(&fifo, &fifo));
        assert!(
            matches!(&read, Err(ManifestError::Read { message, .. }) if message.contains("a FIFO")),
            "{read:?}"
        );
    }

    #[test]
    fn a_device_node_is_refused_by_its_type_without_being_opened() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        if !nix::unistd::geteuid().is_root() {
            return; // mknod needs CAP_MKNOD; the containerd tests run as root
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let null = dir.path().join("null.yaml");
        mknod(
            &null,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o644),
            makedev(1, 3),
        )
        .expect("mknod");
        let scan = scan_bounded(dir.path());
        let message = read_error(&scan, &null);
        assert!(
            message.contains("it is a character device, not a regular file"),
            "{message}"
        );
    }

    #[test]
    fn symlink_loops_are_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, me) = (
            dir.path().join("a.yaml"),
            dir.path().join("b.yaml"),
            dir.path().join("me.yaml"),
        );
        std::os::unix::fs::symlink("b.yaml", &a).expect("symlink");
        std::os::unix::fs::symlink("a.yaml", &b).expect("symlink");
        std::os::unix::fs::symlink("me.yaml", &me).expect("symlink");
        let scan = scan_bounded(dir.path());
        for link in [a, b, me] {
            let message = read_error(&scan, &link);
            assert!(
                message.ends_with("cannot read: symlink loop (too many levels of symbolic links)"),
                "{message}"
            );
        }
    }

    #[test]
    fn symlinks_out_of_the_directory_are_refused_naming_their_target() {
        let outside = tempfile::tempdir().expect("tempdir");
        let elsewhere = outside.path().join("pod.yaml");
        fs::write(&elsewhere, POD.replace("NAME", "elsewhere")).expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.yaml");
        let up = dir.path().join("up.yaml");
        let passwd = dir.path().join("passwd.yaml");
        std::os::unix::fs::symlink(&elsewhere, &out).expect("symlink");
        let relative = Path::new("..")
            .join(outside.path().file_name().expect("name"))
            .join("pod.yaml");
        std::os::unix::fs::symlink(relative, &up).expect("symlink");
        std::os::unix::fs::symlink("/etc/passwd", &passwd).expect("symlink");
        let scan = scan_bounded(dir.path());
        let target = fs::canonicalize(&elsewhere).expect("canonical");
        for (link, target) in [
            (&out, &target),
            (&up, &target),
            (&passwd, &PathBuf::from("/etc/passwd")),
        ] {
            let message = read_error(&scan, link);
            assert!(
                message.contains(&format!(
                    "cannot read: symlink points outside the manifest directory: {} ",
                    target.display()
                )),
                "{message}"
            );
        }
        assert!(scan.link_dirs.is_empty(), "{:?}", scan.link_dirs);
    }

    #[test]
    fn a_manifest_directory_reached_through_a_symlink_follows_links_inside_it() {
        let base = tempfile::tempdir().expect("tempdir");
        let real = base.path().join("real");
        fs::create_dir(&real).expect("mkdir");
        fs::create_dir(real.join("..v1")).expect("mkdir");
        fs::write(real.join("..v1/web.yaml"), POD.replace("NAME", "web")).expect("write");
        std::os::unix::fs::symlink("..v1/web.yaml", real.join("web.yaml")).expect("symlink");
        let via = base.path().join("manifests");
        std::os::unix::fs::symlink(&real, &via).expect("symlink");
        let scan = scan_bounded(&via);
        assert!(matches!(
            &scan.entries[&via.join("web.yaml")],
            Entry::Parsed(Ok(_))
        ));
    }

    #[test]
    fn a_hundred_megabyte_file_is_refused_by_its_size_unread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.yaml");
        // sparse: nothing is written
        fs::File::create(&big)
            .and_then(|f| f.set_len(100 << 20))
            .expect("truncate");
        let scan = scan_bounded(dir.path());
        // The size is the file's own, not the 10 MiB + 1 a capped read would have seen.
        assert!(
            matches!(&scan.entries[&big], Entry::Parsed(Err(ManifestError::TooLarge { size, .. })) if *size == 100 << 20),
            "{:?}",
            scan.entries[&big]
        );
    }

    #[test]
    fn a_file_that_never_ends_is_read_only_up_to_the_limit() {
        // as a file growing while it is read would be, whatever its size said before
        let bytes = bounded(2 << 20, || read_at_most(std::io::repeat(b'x'), 10)).expect("read");
        assert_eq!(bytes.len() as u64, MAX_MANIFEST_BYTES + 1);
    }

    #[test]
    fn deeply_nested_files_are_refused_without_overflowing_a_small_scanning_thread() {
        let dir = tempfile::tempdir().expect("tempdir");
        let deep_yaml = dir.path().join("deep.yaml");
        let deep_json = dir.path().join("deep.json");
        let fine = dir.path().join("fine.yaml");
        fs::write(&deep_yaml, format!("{}x\n", "- ".repeat(10_000))).expect("write");
        fs::write(
            &deep_json,
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        )
        .expect("write");
        // as deep as allowed
        let nested = format!("{}1{}", "[".repeat(60), "]".repeat(60));
        fs::write(
            &fine,
            format!("{}x-extra: {nested}\n", POD.replace("NAME", "fine")),
        )
        .expect("write");
        let path = dir.path().to_owned();
        // 256 KiB: far less than the parser itself needs for 64 levels in a debug build
        let scan = bounded(256 << 10, move || Scanner::new(path).scan().expect("scan"));
        assert!(
            matches!(&scan.entries[&deep_yaml], Entry::Parsed(Err(ManifestError::Syntax { message, .. })) if message == "nested more than 64 levels deep"),
            "{:?}",
            scan.entries[&deep_yaml]
        );
        assert!(
            matches!(&scan.entries[&deep_json], Entry::Parsed(Err(ManifestError::Syntax { message, .. })) if message == "recursion limit exceeded"),
            "{:?}",
            scan.entries[&deep_json]
        );
        assert!(matches!(&scan.entries[&fine], Entry::Parsed(Ok(_))));
    }

    #[test]
    fn a_bad_file_gives_the_same_error_on_every_scan() {
        // so that it is reported once, not on every resync
        let dir = tempfile::tempdir().expect("tempdir");
        nix::unistd::mkfifo(
            &dir.path().join("pipe.yaml"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .expect("mkfifo");
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out.yaml")).expect("symlink");
        fs::write(dir.path().join("bad.yaml"), b"a: \xff\n").expect("write");
        let mut scanner = Scanner::new(dir.path());
        let first = scanner.scan().expect("scan");
        let second = scanner.scan().expect("scan");
        assert_eq!(first, second);
        assert_eq!(first.entries.len(), 3);
    }
}

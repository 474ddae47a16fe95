//! Where certificates are kept, as client-go's `FileStore` keeps them: each new pair in its own
//! file `<prefix>-<timestamp>.pem` (chain then key, mode 0600), and `<prefix>-current.pem`, a
//! symlink to the pair in use, which is what kubeconfigs and the TLS set-up name.
//!
//! Both steps are atomic, so a crash or a reader at any moment sees the old pair or the new
//! one, never half of one: the pair is written to a temporary file, synced and renamed into
//! place; the symlink is made beside the old one as `<prefix>-updated.pem` and renamed over
//! it. A crash between the two leaves `-updated` behind, which the next start completes, as
//! client-go's `recover` does.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::pair::Pair;
use super::{CertError, Kind};
use crate::clock::Timestamp;

/// A certificate directory, for one kind of pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    dir: PathBuf,
    prefix: &'static str,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> CertError + '_ {
    move |source| CertError::Store {
        path: path.to_owned(),
        source,
    }
}

impl Store {
    /// The store of `kind` pairs in `dir` (`kubelet-client-*` or `kubelet-server-*`).
    pub fn new(dir: &Path, kind: Kind) -> Store {
        Store {
            dir: dir.to_owned(),
            prefix: kind.file_prefix(),
        }
    }

    /// `<dir>/<prefix>-current.pem`, the pair in use.
    pub fn current_path(&self) -> PathBuf {
        self.path("current")
    }

    fn path(&self, qualifier: &str) -> PathBuf {
        self.dir.join(format!("{}-{qualifier}.pem", self.prefix))
    }

    /// The pair in use, `None` when there is none yet. A pair that cannot be read or used
    /// is an error, as it is for the kubelet.
    pub fn current(&self) -> Result<Option<Pair>, CertError> {
        self.recover()?;
        let path = self.current_path();
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
            Ok(_) => {}
        }
        Pair::read(&path)
            .map(Some)
            .map_err(|message| CertError::Pem { path, message })
    }

    /// Completes a swap a crash interrupted: `-updated` without `-current` becomes current.
    fn recover(&self) -> Result<(), CertError> {
        let current = self.current_path();
        let updated = self.path("updated");
        if std::fs::symlink_metadata(&current).is_ok() {
            return Ok(());
        }
        match std::fs::symlink_metadata(&updated) {
            Ok(m) if m.file_type().is_symlink() => {
                std::fs::rename(&updated, &current).map_err(io_error(&current))
            }
            _ => Ok(()),
        }
    }

    /// Keeps a new pair and makes it current. It is checked first: a certificate that does
    /// not parse or is not the key's never replaces the one in use.
    pub fn update(&self, cert_pem: &str, key_pem: &str, now: Timestamp) -> Result<Pair, CertError> {
        let pair = Pair::from_pem(cert_pem, key_pem).map_err(|message| CertError::Pem {
            path: self.current_path(),
            message,
        })?;
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        // client-go's name: the time to the second, here in UTC.
        let stamp: String = now.rfc3339_nanos()[..19]
            .chars()
            .map(|c| if c == 'T' || c == ':' { '-' } else { c })
            .collect();
        let file = self.path(&stamp);
        write_atomic(&file, pair.combined_pem().as_bytes())?;
        let updated = self.path("updated");
        match std::fs::remove_file(&updated) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io_error(&updated)(e));
            }
            _ => {}
        }
        let target = std::path::absolute(&file).map_err(io_error(&file))?;
        std::os::unix::fs::symlink(&target, &updated).map_err(io_error(&updated))?;
        let current = self.current_path();
        std::fs::rename(&updated, &current).map_err(io_error(&current))?;
        sync_dir(&self.dir)?;
        Ok(pair)
    }
}

/// Writes `bytes` to `path` (mode 0600) through a synced temporary file renamed into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    f.write_all(bytes).map_err(io_error(&tmp))?;
    f.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::pair::tests::issue;
    use std::os::unix::fs::PermissionsExt;

    const NOW: Timestamp = Timestamp(1_700_000_000_000_000_000);

    #[test]
    fn a_new_pair_gets_its_own_file_and_becomes_current_through_the_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), Kind::Client);
        assert!(store.current().expect("empty").is_none());
        let (cert, key) = issue("system:node:n1", &[], 1_700_000_000, 1_700_086_400);
        store.update(&cert, &key, NOW).expect("stored");
        let file = dir.path().join("kubelet-client-2023-11-14-22-13-20.pem");
        let link = std::fs::read_link(store.current_path()).expect("a symlink");
        assert_eq!(link, file);
        let mode = std::fs::metadata(&file).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let current = store.current().expect("readable").expect("present");
        assert_eq!(current.facts.common_name, "system:node:n1");

        let (cert2, key2) = issue("system:node:n1", &[], 1_700_000_100, 1_700_086_500);
        store
            .update(&cert2, &key2, Timestamp(NOW.0 + 100_000_000_000))
            .expect("rotated");
        let current = store.current().expect("readable").expect("present");
        assert_eq!(
            current.facts.lifetime.not_after.0,
            1_700_086_500_000_000_000
        );
        assert!(
            file.exists(),
            "older pairs are kept, as the kubelet keeps them"
        );
        assert!(!dir.path().join("kubelet-client-updated.pem").exists());
    }

    #[test]
    fn a_certificate_that_is_not_the_keys_never_replaces_the_current_pair() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), Kind::Serving);
        let (cert, key) = issue("system:node:n1", &["n1"], 1_700_000_000, 1_700_086_400);
        store.update(&cert, &key, NOW).expect("stored");
        let (other, _) = issue("system:node:n1", &["n1"], 1_700_000_000, 1_700_086_400);
        let err = store.update(&other, &key, NOW).expect_err("mismatch");
        assert!(matches!(err, CertError::Pem { .. }), "{err}");
        let current = store.current().expect("readable").expect("present");
        assert_eq!(current.cert_pem.trim(), cert.trim());
    }

    #[test]
    fn a_swap_cut_short_by_a_crash_is_completed_on_the_next_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::new(dir.path(), Kind::Client);
        let (cert, key) = issue("system:node:n1", &[], 1_700_000_000, 1_700_086_400);
        store.update(&cert, &key, NOW).expect("stored");
        std::fs::rename(
            store.current_path(),
            dir.path().join("kubelet-client-updated.pem"),
        )
        .expect("as if the rename had not happened");
        assert!(store.current().expect("recovered").is_some());
    }
}

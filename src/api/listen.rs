//! The status API's listeners, bound before any loop starts so that a bad `--status-socket`
//! is a startup error and not a task failure later.
//!
//! podvisor runs as root and the socket path is configuration, so it never deletes what it
//! did not make: an existing path is removed only when it is a socket that nothing listens on
//! (left behind by a podvisor that was killed). A regular file, a directory, a symlink or a
//! socket that answers is an error naming the path. On exit the socket is removed only if it
//! is still the one this process bound.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};
use tracing::info;

/// Why the status API cannot listen.
#[derive(Debug, Error)]
pub enum ListenError {
    /// Something other than a socket is at the socket path.
    #[error("--status-socket {}: a {kind} is in the way; podvisor only replaces a stale socket (choose another path or remove it yourself)", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// A live process listens on the socket.
    #[error("--status-socket {}: another process is listening on it", path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("status API {what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path or address.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The bound listeners; dropping them (their guard) removes the socket if it is still ours.
#[derive(Debug)]
pub struct Listeners {
    /// The unix socket.
    pub(super) unix: UnixListener,
    /// The TCP listener, if asked for.
    pub(super) tcp: Option<TcpListener>,
    /// Removes the socket when dropped, once the server is done with it.
    pub(super) guard: SocketGuard,
}

/// Removes the socket on drop, if it is still the one this process bound.
#[derive(Debug)]
pub(super) struct SocketGuard {
    socket: PathBuf,
    inode: (u64, u64),
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Removes `path` if it is a socket nobody listens on; refuses anything else.
fn clear_stale(path: &Path) -> Result<(), ListenError> {
    let io = |what, source| ListenError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("checking", e)),
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket {
            path: path.to_owned(),
            kind: kind_of(&meta),
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(ListenError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| io("removing the stale socket", e))
        }
        Err(e) => Err(io("checking", e)),
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Creates the socket's directory with mode 0700 if it does not exist.
pub fn ensure_socket_dir(socket: &Path) -> Result<(), ListenError> {
    if let Some(dir) = socket.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        let io = |what, source| ListenError::Io {
            what,
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| io("creating", e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("securing", e))?;
    }
    Ok(())
}

impl Listeners {
    /// Binds the unix socket with mode 0600 (its directory 0700 when podvisor creates it)
    /// and, if given, the TCP address. Must run inside a tokio runtime.
    pub async fn bind(socket: &Path, tcp: Option<SocketAddr>) -> Result<Listeners, ListenError> {
        let io = |what, path: &Path, source| ListenError::Io {
            what,
            path: path.to_owned(),
            source,
        };
        ensure_socket_dir(socket)?;
        clear_stale(socket)?;
        let unix = UnixListener::bind(socket).map_err(|e| io("binding", socket, e))?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("securing", socket, e))?;
        let inode = identity(socket).unwrap_or_default();
        info!(socket = %socket.display(), "status API listening");
        let tcp = match tcp {
            Some(addr) => {
                let shown = PathBuf::from(addr.to_string());
                let l = TcpListener::bind(addr)
                    .await
                    .map_err(|e| io("binding", &shown, e))?;
                info!(address = %addr, "status API listening on TCP");
                Some(l)
            }
            None => None,
        };
        Ok(Listeners {
            unix,
            tcp,
            guard: SocketGuard {
                socket: socket.to_owned(),
                inode,
            },
        })
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if identity(&self.socket) == Some(self.inode) {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_at_the_socket_path_is_never_deleted_issue_17() {
        let dir = tempfile::tempdir().expect("tempdir");
        let precious = dir.path().join("admin.conf");
        std::fs::write(&precious, "apiVersion: v1\n").expect("write");
        let err = Listeners::bind(&precious, None).await.unwrap_err();
        assert!(
            matches!(
                err,
                ListenError::NotASocket {
                    kind: "regular file",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("admin.conf"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&precious).expect("still there"),
            "apiVersion: v1\n"
        );

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).expect("dir");
        let err = Listeners::bind(&sub, None).await.unwrap_err();
        assert!(matches!(
            err,
            ListenError::NotASocket {
                kind: "directory",
                ..
            }
        ));

        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&precious, &link).expect("symlink");
        let err = Listeners::bind(&link, None).await.unwrap_err();
        assert!(matches!(
            err,
            ListenError::NotASocket {
                kind: "symlink",
                ..
            }
        ));
        assert!(precious.exists() && link.exists());
    }

    #[tokio::test]
    async fn a_live_socket_is_refused_and_a_stale_one_replaced_issue_17() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("podvisor.sock");
        let first = Listeners::bind(&path, None).await.expect("first");
        let err = Listeners::bind(&path, None).await.unwrap_err();
        assert!(matches!(err, ListenError::InUse { .. }), "{err:?}");
        assert!(path.exists(), "the first instance's socket is left alone");

        // A socket left behind by a killed process: bound, never removed, nobody listening.
        drop(first);
        let stale = std::os::unix::net::UnixListener::bind(&path).expect("stale");
        drop(stale);
        assert!(path.exists());
        let again = Listeners::bind(&path, None)
            .await
            .expect("stale socket replaced");
        drop(again);
        assert!(!path.exists(), "our own socket is removed on exit");
    }

    #[tokio::test]
    async fn on_exit_a_socket_that_is_no_longer_ours_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("podvisor.sock");
        let ours = Listeners::bind(&path, None).await.expect("bind");
        std::fs::remove_file(&path).expect("someone removes it");
        let theirs = std::os::unix::net::UnixListener::bind(&path).expect("someone binds");
        drop(ours);
        assert!(path.exists(), "another process's socket survives our exit");
        drop(theirs);
    }
}

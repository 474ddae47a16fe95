//! One podvisor per root directory and per status socket.
//!
//! Two daemons on the same root directory would reconcile the same pods against each other
//! (every CRI call fails with "failed to reserve sandbox name"), and the second would take the
//! first's status socket and delete it on exit. So `run` takes an exclusive, non-blocking
//! `flock` on `<root-dir>/podvisor.lock` and on `<status-socket>.lock` before anything else,
//! and refuses to start when another process holds either. The kernel drops the locks when
//! the process ends, however it ends (`kill -9` included), so a crashed podvisor never blocks
//! its successor. The lock files hold the owner's PID, for the error message only.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use thiserror::Error;

/// The lock file's name in the root directory.
pub const ROOT_LOCK: &str = "podvisor.lock";

/// Why this podvisor may not run.
#[derive(Debug, Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("another podvisor{} already runs with {}: stop it first, or give this one another --root-dir and --status-socket", pid_text(*.pid), path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's PID, when its lock file says.
        pid: Option<u32>,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Held locks; dropping this releases them.
#[derive(Debug)]
pub struct InstanceLock {
    _files: Vec<Flock<File>>,
}

/// `<socket>.lock`, next to the status socket.
pub fn socket_lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl InstanceLock {
    /// Locks `root_dir` and the status `socket` for this process, or says who holds them.
    /// Both directories must exist.
    pub fn acquire(root_dir: &Path, socket: &Path) -> Result<InstanceLock, LockError> {
        let files = vec![
            lock(&root_dir.join(ROOT_LOCK))?,
            lock(&socket_lock_path(socket))?,
        ];
        Ok(InstanceLock { _files: files })
    }
}

fn lock(path: &Path) -> Result<Flock<File>, LockError> {
    let io = |source| LockError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(LockError::Held {
                path: path.to_owned(),
                pid: text.trim().parse().ok(),
            });
        }
        Err((_, errno)) => return Err(io(errno.into())),
    };
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_instance_on_the_same_root_dir_is_refused_issue_17() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        let socket = dir.path().join("a.sock");
        let first = InstanceLock::acquire(&root, &socket).expect("first");
        let err = InstanceLock::acquire(&root, &dir.path().join("b.sock")).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, LockError::Held { pid: Some(p), .. } if *p == std::process::id()),
            "{err:?}"
        );
        assert!(text.contains("podvisor.lock"), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        InstanceLock::acquire(&root, &socket).expect("free again once the first is gone");
    }

    #[test]
    fn a_second_instance_on_the_same_status_socket_is_refused_issue_17() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir(&a).expect("a");
        std::fs::create_dir(&b).expect("b");
        let socket = dir.path().join("podvisor.sock");
        let _first = InstanceLock::acquire(&a, &socket).expect("first");
        let err = InstanceLock::acquire(&b, &socket).unwrap_err();
        assert!(err.to_string().contains("podvisor.sock.lock"), "{err}");
    }
}

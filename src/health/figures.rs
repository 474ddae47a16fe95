//! The node's figures that eviction signals are measured on, read from `/proc` and
//! `statvfs(2)`: memory not in the working set, free bytes and inodes on the root dir's
//! filesystem (nodefs) and on the runtime's image filesystem (imagefs), process IDs left.
//! The parsers are pure; [`read`] does the reading.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::thresholds::Signal;
use super::usage::meminfo_bytes;

/// What is left of something, and how much of it there is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Figure {
    /// Left.
    pub available: u64,
    /// In all.
    pub capacity: u64,
}

/// Free bytes and inodes of one filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsFigures {
    /// Bytes.
    pub bytes: Figure,
    /// Inodes (`None` where the filesystem has no fixed count, e.g. btrfs reports 0).
    pub inodes: Option<Figure>,
}

/// The node's figures at one moment; `None` where a figure could not be read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFigures {
    /// Memory: available = total − working set.
    pub memory: Option<Figure>,
    /// The root dir's filesystem.
    pub nodefs: Option<FsFigures>,
    /// The image filesystem, when it is another filesystem than the nodefs (as under the
    /// kubelet, imagefs thresholds apply only then; otherwise the nodefs ones cover it).
    pub imagefs: Option<FsFigures>,
    /// Process IDs.
    pub pids: Option<Figure>,
}

impl NodeFigures {
    /// The figure a signal is measured on.
    pub fn of(&self, signal: Signal) -> Option<Figure> {
        match signal {
            Signal::MemoryAvailable => self.memory,
            Signal::NodefsAvailable => self.nodefs.map(|f| f.bytes),
            Signal::NodefsInodesFree => self.nodefs.and_then(|f| f.inodes),
            Signal::ImagefsAvailable => self.imagefs.map(|f| f.bytes),
            Signal::ImagefsInodesFree => self.imagefs.and_then(|f| f.inodes),
            Signal::PidAvailable => self.pids,
        }
    }
}

/// Memory from `/proc/meminfo`, as the kubelet's `memory.available`: the total less the
/// working set, where the working set is what is in use less inactive file pages (which the
/// kernel reclaims before anything else). So: free plus inactive file pages.
pub fn memory(meminfo: &str) -> Option<Figure> {
    let total = meminfo_bytes(meminfo, "MemTotal")?;
    let free = meminfo_bytes(meminfo, "MemFree")?;
    let inactive_file = meminfo_bytes(meminfo, "Inactive(file)").unwrap_or(0);
    let working_set = total.saturating_sub(free).saturating_sub(inactive_file);
    Some(Figure {
        available: total.saturating_sub(working_set),
        capacity: total,
    })
}

/// Process IDs from `kernel/pid_max`, `kernel/threads-max` and `/proc/loadavg`'s count of
/// tasks, as the kubelet's `pid.available`: the smaller limit less the tasks running.
pub fn pids(pid_max: &str, threads_max: &str, loadavg: &str) -> Option<Figure> {
    let pid_max: u64 = pid_max.trim().parse().ok()?;
    let limit = threads_max
        .trim()
        .parse::<u64>()
        .map_or(pid_max, |t| t.min(pid_max));
    // "0.00 0.01 0.05 2/345 6789": runnable/total tasks in the fourth field
    let tasks: u64 = loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()?;
    Some(Figure {
        available: limit.saturating_sub(tasks),
        capacity: limit,
    })
}

/// Free bytes and inodes of the filesystem holding `path` (as an unprivileged user sees it:
/// blocks reserved for root are not available, as in the kubelet's cadvisor figures).
pub fn filesystem(path: &Path) -> Option<FsFigures> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let block = s.fragment_size();
    let bytes = Figure {
        available: s.blocks_available().saturating_mul(block),
        capacity: s.blocks().saturating_mul(block),
    };
    let inodes = (s.files() > 0).then(|| Figure {
        available: s.files_available(),
        capacity: s.files(),
    });
    Some(FsFigures { bytes, inodes })
}

fn device(path: &Path) -> Option<u64> {
    std::fs::metadata(path).ok().map(|m| m.dev())
}

fn read_proc(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Reads the figures now: nodefs is the filesystem of `root_dir`; imagefs the first of the
/// runtime's image filesystems, when it is on another device.
pub fn read(root_dir: &Path, image_filesystems: &[PathBuf]) -> NodeFigures {
    let root_dev = device(root_dir);
    let imagefs = image_filesystems
        .first()
        .filter(|p| device(p).is_some_and(|d| Some(d) != root_dev))
        .and_then(|p| filesystem(p));
    NodeFigures {
        memory: memory(&read_proc("/proc/meminfo")),
        nodefs: filesystem(root_dir),
        imagefs,
        pids: pids(
            &read_proc("/proc/sys/kernel/pid_max"),
            &read_proc("/proc/sys/kernel/threads-max"),
            &read_proc("/proc/loadavg"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_free_plus_inactive_file_pages() {
        let m =
            memory("MemTotal: 1000 kB\nMemFree: 200 kB\nInactive(file): 300 kB\n").expect("memory");
        assert_eq!(
            m,
            Figure {
                available: 500 * 1024,
                capacity: 1000 * 1024
            }
        );
        assert_eq!(memory("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn pids_left_are_the_smaller_limit_less_the_tasks() {
        let p = pids("4194304\n", "1000\n", "0.10 0.20 0.30 3/250 4242\n").expect("pids");
        assert_eq!(
            p,
            Figure {
                available: 750,
                capacity: 1000
            }
        );
        let p = pids("32768", "", "0 0 0 1/768 1").expect("pids");
        assert_eq!(p.available, 32000);
        assert_eq!(pids("32768", "", "garbage"), None);
    }

    #[test]
    fn the_root_dirs_filesystem_is_read_and_the_same_filesystem_is_no_imagefs() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = read(dir.path(), &[dir.path().to_path_buf()]);
        let nodefs = f.nodefs.expect("nodefs figures");
        assert!(nodefs.bytes.capacity > 0 && nodefs.bytes.available <= nodefs.bytes.capacity);
        assert_eq!(f.imagefs, None, "one filesystem: the nodefs covers images");
        assert!(f.memory.is_some() && f.pids.is_some());
        assert_eq!(f.of(Signal::NodefsAvailable), Some(nodefs.bytes));
    }

    #[test]
    fn an_image_filesystem_on_another_device_is_measured_apart() {
        let dir = tempfile::tempdir().expect("tmp");
        // /dev/shm is a tmpfs: another filesystem than a directory on disk
        let f = read(dir.path(), &[PathBuf::from("/dev/shm")]);
        let other = device(Path::new("/dev/shm")) != device(dir.path());
        assert_eq!(f.imagefs.is_some(), other);
    }
}

//! When and how a container's log file is rotated, as the kubelet's container log manager
//! does it (pure: names in, steps out).
//!
//! A log `<n>.log` that reached `containerLogMaxSize` is renamed to `<n>.log.<timestamp>` and
//! the runtime is asked to reopen it (CRI `ReopenContainerLog`), so the container writes on
//! into a fresh `<n>.log`. Before that, leftovers of an interrupted rotation are removed
//! (`*.tmp`, and an uncompressed file whose `.gz` exists), the oldest rotated files go so that
//! at most `containerLogMaxFiles` files remain once the container writes the new one, and the
//! rotated files but the newest are gzip-compressed. The newest rotated file stays
//! uncompressed, so a log shipper tailing it can finish reading it.

use std::path::{Path, PathBuf};

use crate::clock::Timestamp;

/// The suffix of a compressed rotated log.
pub const COMPRESSED: &str = ".gz";
/// The suffix of a file being compressed.
pub const TEMPORARY: &str = ".tmp";

/// The kubelet's `containerLogMaxSize` and `containerLogMaxFiles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Size in bytes at which a log is rotated.
    pub max_size: u64,
    /// Files kept per container log, the one being written included (at least 2).
    pub max_files: usize,
}

impl Default for Policy {
    /// The kubelet's defaults: 10Mi, 5 files.
    fn default() -> Policy {
        Policy {
            max_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// One file operation of a rotation, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delete the file.
    Remove(PathBuf),
    /// Gzip the file to `<file>.gz` (through `<file>.tmp`), then delete it.
    Compress(PathBuf),
    /// Rename the live log to `to`, then have the runtime reopen the live log.
    Rotate {
        /// The live log.
        from: PathBuf,
        /// Its rotated name.
        to: PathBuf,
    },
}

/// The rotated siblings of `log` among `names` (file names in its directory): those named
/// `<log>.<something>`.
pub fn siblings_of(log: &Path, names: &[String]) -> Vec<PathBuf> {
    let (Some(dir), Some(base)) = (log.parent(), log.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{base}.");
    let mut found: Vec<PathBuf> = names
        .iter()
        .filter(|n| n.starts_with(&prefix) && n.len() > prefix.len())
        .map(|n| dir.join(n))
        .collect();
    found.sort();
    found
}

/// Whether a rotated file still holds log lines: temporaries do not, nor does an uncompressed
/// file whose compressed copy exists (the compression finished, the delete did not).
fn in_use(file: &Path, all: &[PathBuf]) -> bool {
    let name = file.to_string_lossy();
    if name.ends_with(TEMPORARY) {
        return false;
    }
    if name.ends_with(COMPRESSED) {
        return true;
    }
    let compressed = format!("{name}{COMPRESSED}");
    !all.iter().any(|o| o.to_string_lossy() == compressed)
}

/// The rotated files still holding the log's lines, oldest first: what `logs` reads before
/// the live log.
pub fn rotated(siblings: &[PathBuf]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = siblings
        .iter()
        .filter(|s| in_use(s, siblings))
        .cloned()
        .collect();
    files.sort();
    files
}

/// The rotated name for `now`: `<log>.YYYYMMDD-hhmmss` (UTC; the kubelet's layout in its
/// local time). The layout sorts by time, which is how the oldest files are found.
pub fn rotated_name(log: &Path, now: Timestamp) -> PathBuf {
    let stamp = now.rfc3339_nanos();
    // 2026-12-01T16:20:05.123Z -> 20261201-162005
    let digits: String = stamp
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let mut name = log.as_os_str().to_owned();
    name.push(".");
    name.push(digits);
    PathBuf::from(name)
}

/// What to do with `log`, now `size` bytes, whose rotated siblings are `siblings`. Nothing
/// while it is under the policy's size, or when a rotation this second already took the
/// rotated name (renaming over it would lose that file).
pub fn plan(
    log: &Path,
    size: u64,
    siblings: &[PathBuf],
    policy: Policy,
    now: Timestamp,
) -> Vec<Step> {
    if size < policy.max_size {
        return Vec::new();
    }
    let to = rotated_name(log, now);
    let taken = |p: &Path| {
        let mut gz = p.as_os_str().to_owned();
        gz.push(COMPRESSED);
        siblings.iter().any(|s| s == p || s.as_os_str() == gz)
    };
    if taken(&to) {
        return Vec::new();
    }
    let mut steps = Vec::new();
    let mut kept: Vec<PathBuf> = Vec::new();
    for s in siblings {
        if in_use(s, siblings) {
            kept.push(s.clone());
        } else {
            steps.push(Step::Remove(s.clone()));
        }
    }
    kept.sort();
    // The live log, once renamed, and the fresh one the runtime opens take two of the files.
    let keep = policy.max_files.saturating_sub(2);
    let excess = kept.len().saturating_sub(keep);
    for old in kept.drain(..excess) {
        steps.push(Step::Remove(old));
    }
    for s in kept {
        if !s.to_string_lossy().ends_with(COMPRESSED) {
            steps.push(Step::Compress(s));
        }
    }
    steps.push(Step::Rotate {
        from: log.to_path_buf(),
        to,
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_796_143_605_000_000_000); // 2026-12-01T16:46:45Z

    fn log() -> PathBuf {
        PathBuf::from("/var/log/pods/ns_p_u/app/0.log")
    }

    fn sib(name: &str) -> PathBuf {
        PathBuf::from("/var/log/pods/ns_p_u/app").join(name)
    }

    #[test]
    fn the_rotated_name_is_the_kubelets_timestamp_layout() {
        assert_eq!(
            rotated_name(&log(), NOW),
            sib("0.log.20261201-164645"),
            "YYYYMMDD-hhmmss"
        );
    }

    #[test]
    fn a_log_under_the_maximum_size_is_left_alone() {
        let p = Policy::default();
        assert!(plan(&log(), p.max_size - 1, &[], p, NOW).is_empty());
    }

    #[test]
    fn a_full_log_is_renamed_with_nothing_else_to_do_the_first_time() {
        let p = Policy::default();
        assert_eq!(
            plan(&log(), p.max_size, &[], p, NOW),
            [Step::Rotate {
                from: log(),
                to: sib("0.log.20261201-164645")
            }]
        );
    }

    #[test]
    fn older_rotations_are_compressed_and_the_oldest_removed_to_keep_max_files() {
        let p = Policy {
            max_size: 100,
            max_files: 4,
        };
        let siblings = [
            sib("0.log.20261201-100000.gz"),
            sib("0.log.20261201-110000.gz"),
            sib("0.log.20261201-120000"),
        ];
        let steps = plan(&log(), 100, &siblings, p, NOW);
        assert_eq!(
            steps,
            [
                // 4 files: two rotated ones may stay besides the renamed and the new live log
                Step::Remove(sib("0.log.20261201-100000.gz")),
                Step::Compress(sib("0.log.20261201-120000")),
                Step::Rotate {
                    from: log(),
                    to: sib("0.log.20261201-164645")
                }
            ]
        );
    }

    #[test]
    fn leftovers_of_an_interrupted_rotation_are_removed_first() {
        let p = Policy::default();
        let siblings = [
            sib("0.log.20261201-100000"),
            sib("0.log.20261201-100000.gz"),
            sib("0.log.20261201-110000.tmp"),
        ];
        let steps = plan(&log(), p.max_size, &siblings, p, NOW);
        assert_eq!(steps[0], Step::Remove(sib("0.log.20261201-100000")));
        assert_eq!(steps[1], Step::Remove(sib("0.log.20261201-110000.tmp")));
        assert!(matches!(steps[2], Step::Rotate { .. }), "{steps:?}");
    }

    #[test]
    fn two_files_keep_only_the_renamed_log_beside_the_live_one() {
        let p = Policy {
            max_size: 1,
            max_files: 2,
        };
        let siblings = [sib("0.log.20261201-100000")];
        let steps = plan(&log(), 5, &siblings, p, NOW);
        assert_eq!(steps[0], Step::Remove(sib("0.log.20261201-100000")));
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn no_rotation_renames_over_one_made_the_same_second() {
        let p = Policy::default();
        for taken in ["0.log.20261201-164645", "0.log.20261201-164645.gz"] {
            assert!(plan(&log(), p.max_size, &[sib(taken)], p, NOW).is_empty());
        }
    }

    #[test]
    fn siblings_are_the_files_named_after_the_log_and_no_other_attempts() {
        let names: Vec<String> = [
            "0.log",
            "0.log.20261201-100000.gz",
            "10.log",
            "10.log.20261201-100000",
            "0.log.",
            "0.log.20261201-090000",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            siblings_of(&log(), &names),
            [
                sib("0.log.20261201-090000"),
                sib("0.log.20261201-100000.gz")
            ]
        );
    }

    #[test]
    fn logs_are_read_oldest_first_without_temporaries_or_compressed_duplicates() {
        let siblings = [
            sib("0.log.20261201-120000"),
            sib("0.log.20261201-100000.gz"),
            sib("0.log.20261201-110000"),
            sib("0.log.20261201-110000.gz"),
            sib("0.log.20261201-130000.tmp"),
        ];
        assert_eq!(
            rotated(&siblings),
            [
                sib("0.log.20261201-100000.gz"),
                sib("0.log.20261201-110000.gz"),
                sib("0.log.20261201-120000"),
            ]
        );
    }
}

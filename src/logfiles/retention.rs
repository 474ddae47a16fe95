//! Which log files of a pod's containers are garbage (pure).
//!
//! The kubelet deletes a container's log files when it removes the container, and it keeps
//! the current and the previous instance per container name. podvisor's planner already
//! removes every dead instance but the newest, so the log files to keep are exactly those of
//! the instances the runtime still lists; every other `<attempt>.log` (with its rotated
//! `<attempt>.log.*` files) is left from a removed container. A file written in the last
//! [`GRACE`] is kept whatever the list says: a container being created right now already has
//! its file but is not in the last observation yet.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::Timestamp;

/// How long an unlisted log file must have been left unwritten before it is deleted.
pub const GRACE: Duration = Duration::from_secs(60);

/// A file in a container's log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFile {
    /// Its name.
    pub name: String,
    /// When it was last written.
    pub modified: Timestamp,
}

/// The attempt a log file belongs to: `3` for `3.log` and for `3.log.20261201-101010.gz`.
/// `None` for a file podvisor does not name.
pub fn attempt_of(name: &str) -> Option<u32> {
    let (digits, rest) = name.split_at(name.find(|c: char| !c.is_ascii_digit())?);
    if digits.is_empty() || !(rest == ".log" || rest.starts_with(".log.")) {
        return None;
    }
    digits.parse().ok()
}

/// The files of `dir` (a container's log directory, listed as `files`) that belong to no
/// attempt in `live` and were last written more than [`GRACE`] before `now`.
pub fn garbage(
    dir: &Path,
    files: &[LogFile],
    live: &BTreeSet<u32>,
    now: Timestamp,
) -> Vec<PathBuf> {
    let mut newest: std::collections::BTreeMap<u32, Timestamp> = Default::default();
    for f in files {
        if let Some(a) = attempt_of(&f.name) {
            let at = newest.entry(a).or_insert(f.modified);
            *at = (*at).max(f.modified);
        }
    }
    files
        .iter()
        .filter(|f| {
            attempt_of(&f.name).is_some_and(|a| {
                !live.contains(&a) && newest.get(&a).is_some_and(|at| now.since(*at) > GRACE)
            })
        })
        .map(|f| dir.join(&f.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_796_143_605_000_000_000);

    fn file(name: &str, age_secs: u64) -> LogFile {
        LogFile {
            name: name.to_owned(),
            modified: Timestamp(NOW.0 - i64::try_from(age_secs).unwrap() * 1_000_000_000),
        }
    }

    #[test]
    fn attempts_are_read_from_live_rotated_and_compressed_names_only() {
        assert_eq!(attempt_of("0.log"), Some(0));
        assert_eq!(attempt_of("12.log.20261201-101010"), Some(12));
        assert_eq!(attempt_of("12.log.20261201-101010.gz"), Some(12));
        for other in ["log", ".log", "a.log", "1.logx", "1.txt", "1", "1.log2"] {
            assert_eq!(attempt_of(other), None, "{other}");
        }
    }

    #[test]
    fn files_of_removed_instances_go_and_listed_ones_stay() {
        let dir = Path::new("/logs/ns_p_u/app");
        let files = [
            file("0.log", 600),
            file("0.log.20261201-101010.gz", 900),
            file("1.log", 300),
            file("2.log", 200),
            file("3.log", 1),
            file("notes.txt", 9000),
        ];
        let live = BTreeSet::from([2]);
        assert_eq!(
            garbage(dir, &files, &live, NOW),
            [
                dir.join("0.log"),
                dir.join("0.log.20261201-101010.gz"),
                dir.join("1.log")
            ],
            "3.log is new (its container may not be observed yet); notes.txt is not ours"
        );
    }

    #[test]
    fn a_recently_written_file_keeps_its_rotated_siblings() {
        let dir = Path::new("/logs/ns_p_u/app");
        let files = [file("4.log", 5), file("4.log.20261201-101010.gz", 4000)];
        assert!(garbage(dir, &files, &BTreeSet::new(), NOW).is_empty());
    }
}

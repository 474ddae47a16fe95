//! Is a pull still making progress? CRI's `PullImage` says nothing until it ends, so podvisor
//! watches the runtime's download area instead: containerd writes every blob it fetches to
//! `<root>/io.containerd.content.v1.content/ingest/<ref>/data` and removes the entry once the
//! blob is committed. Any change there (a file growing, a download starting or finishing)
//! counts as progress; a pull during which nothing changes for the progress timeout is
//! stalled, which is containerd 1.7's `image_pull_progress_timeout` rule seen from outside.
//!
//! The signal is shared: while any pull on the node moves, no pull is judged stalled. Without
//! a download area to watch, the sample never changes, so the timeout becomes a plain
//! deadline for the whole pull. [`StallWatch`] is pure; [`sample`] reads the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// containerd's content store, beside its snapshotters under its root.
const CONTAINERD_CONTENT: &str = "io.containerd.content.v1.content";

/// What the download area holds at one moment: each file's path (relative) and size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample(BTreeMap<PathBuf, u64>);

/// The download area that goes with a containerd image filesystem
/// (`<root>/io.containerd.snapshotter.v1.overlayfs` → `<root>/io.containerd.content.v1.content/ingest`),
/// when it exists.
pub fn containerd_ingest_dir(image_fs: &Path) -> Option<PathBuf> {
    let dir = image_fs.parent()?.join(CONTAINERD_CONTENT).join("ingest");
    dir.is_dir().then_some(dir)
}

/// The files under `dir`, two levels deep (containerd's `ingest/<ref>/data`). A missing or
/// unreadable directory samples empty.
pub fn sample(dir: &Path) -> Sample {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Sample(out);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => {
                for inner in std::fs::read_dir(&path).into_iter().flatten().flatten() {
                    if let Ok(m) = inner.metadata() {
                        out.insert(inner.path(), m.len());
                    }
                }
            }
            Ok(m) => {
                out.insert(path, m.len());
            }
            Err(_) => {}
        }
    }
    Sample(out)
}

/// Judges one pull from the samples taken while it runs.
#[derive(Debug)]
pub struct StallWatch {
    timeout: Duration,
    last: Option<Sample>,
    since: Instant,
}

impl StallWatch {
    /// A watch over a pull that started at `now`; stalled after `timeout` without change.
    pub fn new(timeout: Duration, now: Instant) -> StallWatch {
        StallWatch {
            timeout,
            last: None,
            since: now,
        }
    }

    /// Takes the sample of `now`; true when nothing has changed for the timeout.
    pub fn stalled(&mut self, sample: Sample, now: Instant) -> bool {
        match &self.last {
            Some(last) if *last == sample => now.duration_since(self.since) >= self.timeout,
            Some(_) => {
                self.last = Some(sample);
                self.since = now;
                false
            }
            // The first sample is the baseline: what was there before this pull is no
            // progress of it.
            None => {
                self.last = Some(sample);
                now.duration_since(self.since) >= self.timeout
            }
        }
    }

    /// How often to sample: a tenth of the timeout, so a stall is noticed at most 10 % late;
    /// never more often than every 100 ms nor less often than every second.
    pub fn period(&self) -> Duration {
        (self.timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(files: &[(&str, u64)]) -> Sample {
        Sample(files.iter().map(|(p, n)| (PathBuf::from(p), *n)).collect())
    }

    #[tokio::test(start_paused = true)]
    async fn a_growing_download_is_never_stalled() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::from_secs(10), t0);
        for i in 0..100u64 {
            let now = t0 + Duration::from_secs(i);
            assert!(!w.stalled(s(&[("a/data", i * 1000)]), now));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_download_that_stops_growing_is_stalled_after_the_timeout() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::from_secs(10), t0);
        assert!(!w.stalled(s(&[("a/data", 1)]), t0));
        assert!(!w.stalled(s(&[("a/data", 5)]), t0 + Duration::from_secs(2)));
        assert!(!w.stalled(s(&[("a/data", 5)]), t0 + Duration::from_secs(11)));
        assert!(w.stalled(s(&[("a/data", 5)]), t0 + Duration::from_secs(12)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_blob_leaving_the_ingest_area_is_progress() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::from_secs(10), t0);
        assert!(!w.stalled(s(&[("a/data", 5)]), t0));
        assert!(!w.stalled(s(&[]), t0 + Duration::from_secs(9)));
        assert!(!w.stalled(s(&[]), t0 + Duration::from_secs(18)));
    }

    #[tokio::test(start_paused = true)]
    async fn without_any_change_the_timeout_is_a_deadline_from_the_start() {
        let t0 = Instant::now();
        let mut w = StallWatch::new(Duration::from_secs(10), t0);
        assert!(!w.stalled(Sample::default(), t0 + Duration::from_secs(9)));
        assert!(w.stalled(Sample::default(), t0 + Duration::from_secs(10)));
    }

    #[test]
    fn the_ingest_dir_is_found_beside_the_snapshotter() {
        let root = tempfile::tempdir().expect("tempdir");
        let fs = root.path().join("io.containerd.snapshotter.v1.overlayfs");
        assert_eq!(containerd_ingest_dir(&fs), None);
        let ingest = root.path().join(CONTAINERD_CONTENT).join("ingest");
        std::fs::create_dir_all(ingest.join("ref1")).expect("mkdir");
        std::fs::write(ingest.join("ref1/data"), b"12345").expect("write");
        assert_eq!(containerd_ingest_dir(&fs), Some(ingest.clone()));
        assert_eq!(
            sample(&ingest),
            s(&[(ingest.join("ref1/data").to_str().unwrap_or(""), 5)])
        );
    }
}

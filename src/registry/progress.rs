//! Is a pull still making progress? CRI's `PullImage` says nothing until it ends, so podvisor
//! watches the runtime's download area instead: containerd writes every blob it fetches to
//! `<root>/io.containerd.content.v1.content/ingest/<ref>/data` and removes the entry once the
//! blob is committed. Any change there (a file growing, a download starting or finishing)
//! counts as progress; a pull during which nothing changes for the progress timeout is
//! stalled, which is containerd 1.7's `image_pull_progress_timeout` rule seen from outside.
//!
//! CRI-O (containers/image into containers/storage) streams each blob into a directory
//! `container_images_storage*` under its big-files temporary directory, `/var/tmp` unless its
//! `big_files_temporary_dir` names another (which CRI does not tell: name that one with
//! `--image-pull-progress-dir`), and removes it when the image is committed.
//!
//! The signal is shared: while any pull on the node moves, no pull is judged stalled. Without
//! a download area to watch, the sample never changes, so the timeout becomes a plain
//! deadline for the whole pull. [`StallWatch`] is pure; [`Area::sample`] reads the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// containerd's content store, beside its snapshotters under its root.
const CONTAINERD_CONTENT: &str = "io.containerd.content.v1.content";

/// containers/image's big-files temporary directory when nothing else is configured.
pub const CONTAINERS_IMAGE_BIG_FILES: &str = "/var/tmp";

/// The name prefix of containers/image's temporary entries there.
const CONTAINERS_IMAGE_PREFIX: &str = "container_images_";

/// What the download area holds at one moment: each file's path (relative) and size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample(BTreeMap<PathBuf, u64>);

/// Where a runtime's downloads can be watched: a directory, or only the entries of one whose
/// names start with a prefix (a shared temporary directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    dir: PathBuf,
    prefix: Option<&'static str>,
}

impl Area {
    /// All of `dir`.
    pub fn dir(dir: PathBuf) -> Area {
        Area { dir, prefix: None }
    }

    /// The files under the area, two levels deep (containerd's `ingest/<ref>/data`,
    /// containers/image's `container_images_storage*/<blob>`). A missing or unreadable
    /// directory samples empty.
    pub fn sample(&self) -> Sample {
        sample_where(&self.dir, |name| {
            self.prefix
                .is_none_or(|p| name.to_str().is_some_and(|n| n.starts_with(p)))
        })
    }
}

/// The download area that goes with a runtime's image filesystem `image_fs`: containerd's
/// ingest directory beside it, or, for a containers/storage image store (CRI-O's
/// `<graphroot>/<driver>-images`, beside `<driver>-layers`), containers/image's entries in
/// `big_files` (its big-files temporary directory).
pub fn download_area(image_fs: &Path, big_files: &Path) -> Option<Area> {
    if let Some(dir) = containerd_ingest_dir(image_fs) {
        return Some(Area::dir(dir));
    }
    let driver = image_fs.file_name()?.to_str()?.strip_suffix("-images")?;
    let layers = image_fs.parent()?.join(format!("{driver}-layers"));
    (!driver.is_empty() && layers.is_dir()).then(|| Area {
        dir: big_files.to_owned(),
        prefix: Some(CONTAINERS_IMAGE_PREFIX),
    })
}

/// The download area that goes with a containerd image filesystem
/// (`<root>/io.containerd.snapshotter.v1.overlayfs` → `<root>/io.containerd.content.v1.content/ingest`),
/// when it exists.
pub fn containerd_ingest_dir(image_fs: &Path) -> Option<PathBuf> {
    let dir = image_fs.parent()?.join(CONTAINERD_CONTENT).join("ingest");
    dir.is_dir().then_some(dir)
}

/// The files under `dir`, two levels deep. A missing or unreadable directory samples empty.
pub fn sample(dir: &Path) -> Sample {
    sample_where(dir, |_| true)
}

/// [`sample`] over the entries of `dir` whose names pass `keep`.
fn sample_where(dir: &Path, keep: impl Fn(&std::ffi::OsStr) -> bool) -> Sample {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Sample(out);
    };
    for entry in entries.flatten() {
        if !keep(&entry.file_name()) {
            continue;
        }
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
    fn a_containers_storage_image_store_is_watched_in_the_big_files_directory_only_for_its_pulls() {
        let root = tempfile::tempdir().expect("tempdir");
        let graph = root.path().join("storage");
        let tmp = root.path().join("tmp");
        let images = graph.join("overlay-images");
        std::fs::create_dir_all(&images).expect("mkdir");
        assert_eq!(download_area(&images, &tmp), None, "no layers beside it");
        std::fs::create_dir_all(graph.join("overlay-layers")).expect("mkdir");
        let area = download_area(&images, &tmp).expect("a containers/storage store");

        let pull = tmp.join("container_images_storage123");
        std::fs::create_dir_all(&pull).expect("mkdir");
        std::fs::create_dir_all(tmp.join("unrelated")).expect("mkdir");
        std::fs::write(tmp.join("unrelated/file"), b"noise").expect("write");
        assert_eq!(area.sample(), Sample::default(), "only pulls count");
        std::fs::write(pull.join("1"), b"123").expect("write");
        assert_eq!(
            area.sample(),
            s(&[(pull.join("1").to_str().unwrap_or(""), 3)])
        );
    }

    #[test]
    fn an_image_filesystem_of_neither_kind_has_no_download_area() {
        let root = tempfile::tempdir().expect("tempdir");
        let fs = root.path().join("images");
        std::fs::create_dir_all(&fs).expect("mkdir");
        assert_eq!(download_area(&fs, root.path()), None);
        let dash = root.path().join("-images");
        std::fs::create_dir_all(root.path().join("-layers")).expect("mkdir");
        assert_eq!(download_area(&dash, root.path()), None, "no driver name");
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
            download_area(&fs, Path::new("/nowhere")),
            Some(Area::dir(ingest.clone()))
        );
        assert_eq!(
            sample(&ingest),
            s(&[(ingest.join("ref1/data").to_str().unwrap_or(""), 5)])
        );
    }
}

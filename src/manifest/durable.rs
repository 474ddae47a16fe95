//! The last good version of every manifest file, kept on disk under the root dir
//! (`<root>/last-good/<file name>.json`), so that a file that became invalid while podvisor
//! was down still has a version to run after it starts: the one that ran before.
//!
//! Each record holds the file's pods as accepted (parsed, defaulted, validated), before the
//! node binds them; loading one runs them through the resolver's binding again, which gives
//! the same hashes. Records are written atomically (temp file, fsync, rename, fsync of the
//! directory) whenever a file's accepted version changes, and deleted with the file.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::ParsedPod;
use crate::pod::DocRef;

/// One manifest file's last good version.
#[derive(Debug, Serialize, Deserialize)]
struct FileRecord {
    /// The manifest file.
    path: PathBuf,
    /// Its pods, in file order.
    pods: Vec<PodRecord>,
}

/// One accepted pod of a file.
#[derive(Debug, Serialize, Deserialize)]
struct PodRecord {
    document: usize,
    item: Option<usize>,
    metadata: ObjectMeta,
    spec: PodSpec,
}

/// The on-disk store of last good versions.
#[derive(Debug)]
pub struct LastGood {
    dir: PathBuf,
    /// The version written for each file (by the identity of its parse), to write only
    /// what changed.
    written: BTreeMap<PathBuf, usize>,
}

/// The identity of one parse of a file.
fn identity(parsed: &Arc<Vec<ParsedPod>>) -> usize {
    Arc::as_ptr(parsed) as usize
}

impl LastGood {
    /// A store in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> LastGood {
        LastGood {
            dir,
            written: BTreeMap::new(),
        }
    }

    fn record_path(&self, manifest: &Path) -> PathBuf {
        let name = manifest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.dir.join(format!("{name}.json"))
    }

    /// Every record that can be read, by manifest path. A record that cannot be read is
    /// reported and skipped: its file then has no last good version, as before the store.
    pub fn load(&self) -> Vec<(PathBuf, Vec<ParsedPod>)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let record: FileRecord = match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    warn!(record = %path.display(), error = %e, "last good version unreadable; skipped");
                    continue;
                }
            };
            let pods = record
                .pods
                .into_iter()
                .map(|p| ParsedPod {
                    at: DocRef {
                        document: p.document,
                        item: p.item,
                    },
                    metadata: p.metadata,
                    spec: p.spec,
                    warnings: Vec::new(),
                })
                .collect();
            out.push((record.path, pods));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Marks what `load` returned, once the resolver holds it, as already written.
    pub fn loaded(&mut self, accepted: &BTreeMap<PathBuf, Arc<Vec<ParsedPod>>>) {
        for (path, parsed) in accepted {
            self.written.insert(path.clone(), identity(parsed));
        }
    }

    /// Makes the store hold exactly `accepted`: writes the files whose accepted version
    /// changed, deletes the records of files that are gone. Failures are logged: the store
    /// is a safety net and never stops the daemon.
    pub fn sync(&mut self, accepted: &BTreeMap<PathBuf, Arc<Vec<ParsedPod>>>) {
        let gone: Vec<PathBuf> = self
            .written
            .keys()
            .filter(|p| !accepted.contains_key(*p))
            .cloned()
            .collect();
        for path in gone {
            let record = self.record_path(&path);
            match fs::remove_file(&record) {
                Ok(()) => debug!(record = %record.display(), "last good version removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(record = %record.display(), error = %e, "cannot remove last good version")
                }
            }
            self.written.remove(&path);
        }
        for (path, parsed) in accepted {
            let id = identity(parsed);
            if self.written.get(path) == Some(&id) {
                continue;
            }
            match self.write(path, parsed) {
                Ok(()) => {
                    self.written.insert(path.clone(), id);
                }
                Err(e) => {
                    warn!(manifest = %path.display(), error = %e, "cannot keep the last good version on disk")
                }
            }
        }
    }

    fn write(&self, path: &Path, parsed: &[ParsedPod]) -> std::io::Result<()> {
        let record = FileRecord {
            path: path.to_owned(),
            pods: parsed
                .iter()
                .map(|p| PodRecord {
                    document: p.at.document,
                    item: p.at.item,
                    metadata: p.metadata.clone(),
                    spec: p.spec.clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        write_atomic(&self.dir, &self.record_path(path), &bytes)
    }
}

/// Writes `bytes` to `target` in `dir` so that a crash leaves the old or the new content,
/// never a mix: temp file, fsync, rename, fsync of the directory. The copies hold whole pod
/// specs (environment values included) of manifests that are often `0600`: the directory is
/// made `0700` and the file `0600`, root's alone.
pub fn write_atomic(dir: &Path, target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = target.with_extension("json.tmp");
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, target)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Format, parse_manifest};

    fn parsed(image: &str) -> Arc<Vec<ParsedPod>> {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec: {{containers: [{{name: c, image: '{image}'}}]}}\n"
        );
        Arc::new(
            parse_manifest(Path::new("/m/web.yaml"), Format::Yaml, yaml.as_bytes()).expect("valid"),
        )
    }

    #[test]
    fn a_kept_version_reads_back_as_it_was_accepted_and_goes_with_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LastGood::new(dir.path().join("last-good"));
        let v1 = parsed("busybox:1");
        let accepted = BTreeMap::from([(PathBuf::from("/m/web.yaml"), v1.clone())]);
        store.sync(&accepted);
        let loaded = LastGood::new(dir.path().join("last-good")).load();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].0, Path::new("/m/web.yaml"));
        assert_eq!(loaded[0].1[0].spec, v1[0].spec);
        assert_eq!(loaded[0].1[0].metadata, v1[0].metadata);
        assert!(
            !dir.path().join("last-good/web.yaml.json.tmp").exists(),
            "no temp file left"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            fs::metadata(dir.path().join(p))
                .expect("exists")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("last-good"), 0o700, "the directory is root's alone");
        assert_eq!(mode("last-good/web.yaml.json"), 0o600, "so is each copy");

        // a new version replaces the record; the file gone removes it
        let v2 = parsed("busybox:2");
        store.sync(&BTreeMap::from([(
            PathBuf::from("/m/web.yaml"),
            v2.clone(),
        )]));
        let loaded = LastGood::new(dir.path().join("last-good")).load();
        assert_eq!(loaded[0].1[0].spec, v2[0].spec);
        store.sync(&BTreeMap::new());
        assert!(
            LastGood::new(dir.path().join("last-good"))
                .load()
                .is_empty()
        );
    }

    #[test]
    fn a_corrupt_record_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bad.yaml.json"), "{not json").expect("write");
        assert!(LastGood::new(dir.path().to_owned()).load().is_empty());
    }
}

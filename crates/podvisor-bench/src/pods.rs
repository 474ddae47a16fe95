//! The bench's pod and its manifest files. Files are written into a staging directory on the
//! same filesystem first and renamed into the manifest directory when the clock starts, so
//! podvisor sees one complete file appear and nothing earlier.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Namespace of every bench pod.
pub const NAMESPACE: &str = "bench";
/// The image; present in the lab, so `IfNotPresent` never pulls.
pub const IMAGE: &str = "podvisor.local/busybox:1.35";
/// Grace period of every bench pod.
pub const GRACE_SECONDS: i64 = 2;
/// The container: exits 0 on SIGTERM at once. `sleep & wait` rather than a plain `sleep`,
/// because sh runs a trap only after a foreground command ends, which would add up to a
/// second to every stop; `wait` returns as soon as a trapped signal arrives.
pub const COMMAND: [&str; 3] = [
    "sh",
    "-c",
    "trap 'exit 0' TERM; while true; do sleep 1 & wait $!; done",
];

/// A bench pod's manifest. `generation` goes into the environment, so changing it is a
/// container-only edit.
pub fn manifest(name: &str, host_network: bool, generation: u32) -> String {
    manifest_running(name, host_network, generation, COMMAND[2])
}

/// A bench pod's manifest whose container runs `sh -c script`.
pub fn manifest_running(name: &str, host_network: bool, generation: u32, script: &str) -> String {
    let network = if host_network {
        "  hostNetwork: true\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: bench}}
spec:
{network}  terminationGracePeriodSeconds: {GRACE_SECONDS}
  containers:
  - name: main
    image: {IMAGE}
    command: [{c0}, {c1}, {script:?}]
    env: [{{name: GEN, value: '{generation}'}}]
",
        c0 = COMMAND[0],
        c1 = COMMAND[1],
    )
}

/// The manifest directory podvisor watches, and its staging twin.
pub struct Manifests {
    /// Watched by podvisor.
    pub dir: PathBuf,
    staging: PathBuf,
}

impl Manifests {
    /// Both directories must exist and be on one filesystem.
    pub fn new(dir: PathBuf, staging: PathBuf) -> Manifests {
        Manifests { dir, staging }
    }

    /// Writes `file` into staging.
    pub fn stage(&self, file: &str, text: &str) -> Result<()> {
        let p = self.staging.join(file);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
    }

    /// Renames a staged `file` into the manifest directory (replacing any file of that name).
    pub fn commit(&self, file: &str) -> Result<()> {
        let from = self.staging.join(file);
        let to = self.dir.join(file);
        std::fs::rename(&from, &to)
            .with_context(|| format!("rename {} → {}", from.display(), to.display()))
    }

    /// Deletes `file` from the manifest directory.
    pub fn remove(&self, file: &str) -> Result<()> {
        let p = self.dir.join(file);
        std::fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))
    }

    /// Whether `file` is in the manifest directory.
    pub fn has(&self, file: &str) -> bool {
        Path::new(&self.dir.join(file)).exists()
    }

    /// Names of the files in the manifest directory.
    pub fn files(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for e in
            std::fs::read_dir(&self.dir).with_context(|| format!("read {}", self.dir.display()))?
        {
            out.push(e?.file_name().to_string_lossy().into_owned());
        }
        out.sort();
        Ok(out)
    }
}

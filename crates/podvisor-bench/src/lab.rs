//! The containerd the bench runs against, started as the integration tests start theirs:
//! `hack/containerd-lab.sh` config/start/import in a directory of its own under /tmp, and
//! `stop --all` (pods, shims, mounts, bridge) when dropped, also after an error or Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Runs `cmd`, failing with its output when it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Builds the pause and busybox images into `out` (byte-reproducible, takes about a second).
pub fn build_images(repo: &Path, out: &Path) -> Result<()> {
    run(Command::new(repo.join("hack/build-images.sh")).arg(out))?;
    Ok(())
}

/// A running private containerd.
pub struct Lab {
    /// Its directory (config, state, socket, and the bench's own files).
    pub dir: PathBuf,
    /// `unix://<dir>/containerd.sock`.
    pub endpoint: String,
    script: PathBuf,
    keep: bool,
}

impl Lab {
    /// Configures and starts a containerd in a fresh `/tmp/pvbench-<pid>` and imports the images.
    pub fn start(
        repo: &Path,
        images: &Path,
        bridge: &str,
        subnet: &str,
        keep: bool,
    ) -> Result<Lab> {
        let dir = PathBuf::from(format!("/tmp/pvbench-{}", std::process::id()));
        if dir.exists() {
            bail!("{} exists: a previous bench with this pid?", dir.display());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let lab = Lab {
            endpoint: format!("unix://{}", dir.join("containerd.sock").display()),
            dir,
            script: repo.join("hack/containerd-lab.sh"),
            keep,
        };
        run(Command::new(&lab.script)
            .arg("config")
            .arg(&lab.dir)
            .args([bridge, subnet]))?;
        run(Command::new(&lab.script).arg("start").arg(&lab.dir))?;
        run(Command::new(&lab.script)
            .arg("import")
            .arg(&lab.dir)
            .arg(images.join("pause.tar"))
            .arg(images.join("busybox.tar")))?;
        Ok(lab)
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// A directory under the lab, created.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(p)
    }

    /// containerd's pid.
    pub fn containerd_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        eprintln!(
            "bench: stopping containerd and its pods ({})",
            self.dir.display()
        );
        match Command::new(&self.script)
            .args(["stop", "--all"])
            .arg(&self.dir)
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "bench: containerd-lab.sh stop --all failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("bench: cannot run containerd-lab.sh stop --all: {e}"),
        }
        if self.keep {
            eprintln!("bench: kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("bench: cannot remove {}: {e}", self.dir.display());
        }
    }
}

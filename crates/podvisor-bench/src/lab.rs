//! The runtime the bench runs against, started as the integration tests start theirs:
//! `hack/containerd-lab.sh` (or, with `--crio-bin`, `hack/crio-lab.sh`) config/start/import in
//! a directory of its own under /tmp, and `stop --all` (pods, shims or conmons, mounts,
//! bridge) when dropped, also after an error or Ctrl-C.

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

/// A running private runtime.
pub struct Lab {
    /// Its directory (config, state, socket, and the bench's own files).
    pub dir: PathBuf,
    /// `unix://<dir>/<runtime>.sock`.
    pub endpoint: String,
    /// `containerd` or `crio`: names its socket and pid file.
    pub runtime: &'static str,
    script: PathBuf,
    crio_bin: Option<PathBuf>,
    keep: bool,
}

impl Lab {
    /// Configures and starts a containerd (or, given `crio_bin`, the CRI-O built there) in a
    /// fresh `/tmp/pvbench-<pid>` and imports the images.
    pub fn start(
        repo: &Path,
        images: &Path,
        bridge: &str,
        subnet: &str,
        crio_bin: Option<&Path>,
        keep: bool,
    ) -> Result<Lab> {
        let dir = PathBuf::from(format!("/tmp/pvbench-{}", std::process::id()));
        if dir.exists() {
            bail!("{} exists: a previous bench with this pid?", dir.display());
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
        let runtime = if crio_bin.is_some() {
            "crio"
        } else {
            "containerd"
        };
        let lab = Lab {
            endpoint: format!("unix://{}", dir.join(format!("{runtime}.sock")).display()),
            dir,
            runtime,
            script: repo.join(format!("hack/{runtime}-lab.sh")),
            crio_bin: crio_bin.map(Path::to_path_buf),
            keep,
        };
        run(lab
            .command()
            .arg("config")
            .arg(&lab.dir)
            .args([bridge, subnet]))?;
        run(lab.command().arg("start").arg(&lab.dir))?;
        run(lab
            .command()
            .arg("import")
            .arg(&lab.dir)
            .arg(images.join("pause.tar"))
            .arg(images.join("busybox.tar")))?;
        Ok(lab)
    }

    /// The lab script, with the CRI-O build to use.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.script);
        if let Some(bin) = &self.crio_bin {
            cmd.env("CRIO_BIN_DIR", bin);
        }
        cmd
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(format!("{}.sock", self.runtime))
    }

    /// A directory under the lab, created.
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("mkdir {}", p.display()))?;
        Ok(p)
    }

    /// The runtime daemon's pid.
    pub fn runtime_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join(format!("{}.pid", self.runtime)))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        eprintln!(
            "bench: stopping {} and its pods ({})",
            self.runtime,
            self.dir.display()
        );
        match self
            .command()
            .args(["stop", "--all"])
            .arg(&self.dir)
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "bench: {}-lab.sh stop --all failed:\n{}",
                self.runtime,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("bench: cannot run {}-lab.sh stop --all: {e}", self.runtime),
        }
        if self.keep {
            eprintln!("bench: kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("bench: cannot remove {}: {e}", self.dir.display());
        }
    }
}

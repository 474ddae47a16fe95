//! A real containerd for one test: its own config, root, state, socket, CNI bridge and subnet
//! under a temp dir, with the project's own pause and busybox images imported. Stopped, with
//! every pod it ran, when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podvisor::host::NodeContext;
use podvisor::pod::NodeName;
use podvisor::runtime::{CriRuntime, Observed, Runtime};

/// The images every test manifest uses.
pub const BUSYBOX: &str = "podvisor.local/busybox:1.35";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the test images once per test process.
fn images() -> &'static Path {
    static IMAGES: OnceLock<PathBuf> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let dir = repo().join("target/test-images");
        run(Command::new(repo().join("hack/build-images.sh")).arg(&dir));
        dir
    })
}

/// Checks that this machine can run containerd tests, with a message saying what is missing.
pub fn require_runtime() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "containerd tests need root (run the README's test command)"
    );
    for bin in ["/usr/bin/containerd", "/usr/sbin/runc", "/usr/bin/ctr"] {
        assert!(
            Path::new(bin).exists(),
            "{bin} missing: install Debian's containerd and runc"
        );
    }
}

/// One throw-away containerd.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    /// A host port range of its own, so labs running side by side never clash.
    pub port_base: u16,
    /// Its root is a tmpfs of its own, unmounted when dropped.
    small_root: bool,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Configures, starts and fills a containerd.
    pub fn start() -> Lab {
        Lab::start_with_root(None)
    }

    /// [`Lab::start`] with containerd's root (images, snapshots) on a tmpfs of `mib` MiB of
    /// its own: an image filesystem small enough to fill.
    pub fn start_small_root(mib: u32) -> Lab {
        Lab::start_with_root(Some(mib))
    }

    fn start_with_root(small_root: Option<u32>) -> Lab {
        require_runtime();
        let images = images();
        let n = NEXT.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 50) * 4;
        let dir = tempfile::Builder::new()
            .prefix("pvlab")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let bridge = format!("pvt{}", n % 1000);
        let subnet = format!("10.{}.0.0/16", 100 + (n % 150));
        let script = repo().join("hack/containerd-lab.sh");
        run(Command::new(&script)
            .args(["config"])
            .arg(dir.path())
            .args([&bridge, &subnet]));
        if let Some(mib) = small_root {
            run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "pvlab-root"])
                .arg(dir.path().join("root")));
        }
        run(Command::new(&script).arg("start").arg(dir.path()));
        run(Command::new(&script)
            .arg("import")
            .arg(dir.path())
            .arg(images.join("pause.tar"))
            .arg(images.join("busybox.tar")));
        let endpoint = format!("unix://{}", dir.path().join("containerd.sock").display());
        Lab {
            dir,
            endpoint,
            port_base: 20000 + (n % 400) as u16 * 100,
            small_root: small_root.is_some(),
        }
    }

    /// Imports more of the project's test images (`spare-1.tar`, ...).
    pub fn import(&self, files: &[&str]) {
        let images = images();
        run(Command::new(repo().join("hack/containerd-lab.sh"))
            .arg("import")
            .arg(self.dir.path())
            .args(files.iter().map(|f| images.join(f))));
    }

    /// Stops containerd only, leaving pods running.
    pub fn stop_containerd(&self) {
        run(Command::new(repo().join("hack/containerd-lab.sh"))
            .arg("stop")
            .arg(self.dir.path()));
    }

    /// Starts a stopped containerd.
    pub fn start_containerd(&self) {
        run(Command::new(repo().join("hack/containerd-lab.sh"))
            .arg("start")
            .arg(self.dir.path()));
    }

    /// A directory of the lab, created.
    pub fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }

    /// A CRI client to look at what podvisor did.
    pub fn cri(&self) -> CriRuntime {
        let ctx = NodeContext::detect(
            NodeName::new("observer"),
            self.path("observer-root"),
            self.path("observer-logs"),
        );
        CriRuntime::new(&self.endpoint, std::sync::Arc::new(ctx), None).expect("cri client")
    }

    /// Sends SIGKILL to a container's process, as a crash would.
    pub fn kill_container(&self, id: &str) {
        run(Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(self.dir.path().join("containerd.sock"))
            .args(["-n", "k8s.io", "task", "kill", "-s", "SIGKILL", id]));
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("hack/containerd-lab.sh"))
            .args(["stop", "--all"])
            .arg(self.dir.path())
            .output();
        if self.small_root {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path().join("root"))
                .output();
        }
    }
}

/// Polls `observe` until `check` holds or `timeout` passes; returns the last observation.
pub async fn wait_for(
    cri: &CriRuntime,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Observed) -> bool,
) -> Observed {
    let deadline = Instant::now() + timeout;
    loop {
        let observed = cri.observe().await.unwrap_or_default();
        if check(&observed) {
            return observed;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}; runtime has:\n{observed:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keeps observing for `period` and fails if `check` ever stops holding.
pub async fn holds_for(
    cri: &CriRuntime,
    period: Duration,
    what: &str,
    check: impl Fn(&Observed) -> bool,
) {
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        let observed = cri.observe().await.expect("observe");
        assert!(
            check(&observed),
            "{what} stopped holding; runtime has:\n{observed:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

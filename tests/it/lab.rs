//! A real CRI runtime for one test: its own config, root, state, socket, CNI bridge and subnet
//! under a temp dir, with the project's own pause and busybox images imported. Stopped, with
//! every pod it ran, when dropped. containerd (hack/containerd-lab.sh) by default; CRI-O
//! (hack/crio-lab.sh) for the opt-in suite in `crio.rs`, when [`CRIO_BIN_ENV`] names its build.

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

/// Runs `cmd`, failing the test with its output unless it succeeds; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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

/// The environment variable naming the directory of a CRI-O build (`crio`, `pinns`): set, the
/// CRI-O suite runs; unset, its tests pass at once, saying so.
pub const CRIO_BIN_ENV: &str = "PODVISOR_CRIO_BIN";

/// Which runtime a lab runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Debian's containerd 1.6.
    Containerd,
    /// CRI-O built from source, its binaries in this directory.
    Crio(PathBuf),
}

impl Kind {
    fn script(&self) -> PathBuf {
        match self {
            Kind::Containerd => repo().join("hack/containerd-lab.sh"),
            Kind::Crio(_) => repo().join("hack/crio-lab.sh"),
        }
    }

    fn socket(&self) -> &'static str {
        match self {
            Kind::Containerd => "containerd.sock",
            Kind::Crio(_) => "crio.sock",
        }
    }

    /// The runtime's own log in the lab directory (the lab scripts' `start` writes it).
    fn log(&self) -> &'static str {
        match self {
            Kind::Containerd => "containerd.log",
            Kind::Crio(_) => "crio.log",
        }
    }

    /// How podvisor should say it watches container exits with this runtime (its log line's
    /// `source=` field): containerd 1.6 has no CRI `GetContainerEvents`, so podvisor uses
    /// containerd's own events; CRI-O answers the CRI call.
    pub fn exit_source(&self) -> &'static str {
        match self {
            Kind::Containerd => "source=Containerd",
            Kind::Crio(_) => "source=Cri",
        }
    }

    /// What podvisor should log when it settles the cgroup driver with this runtime:
    /// containerd 1.6 has no CRI `RuntimeConfig` (the configured driver, cgroupfs, is used);
    /// the lab's CRI-O answers it with cgroupfs.
    pub fn cgroup_driver_log(&self) -> &'static str {
        match self {
            Kind::Containerd => "runtime does not say its cgroup driver (no CRI RuntimeConfig)",
            Kind::Crio(_) => "using the cgroup driver the runtime uses cgroup_driver=cgroupfs",
        }
    }

    /// The runtime's name in CRI `Version`, which is also the scheme of the container ids
    /// podvisor publishes (`containerd://ID`, `cri-o://ID`), as the kubelet does.
    pub fn runtime_name(&self) -> &'static str {
        match self {
            Kind::Containerd => "containerd",
            Kind::Crio(_) => "cri-o",
        }
    }

    /// Whether CRI `CreateContainer` already creates the OCI container (`runc create`), so
    /// that a command missing from the image fails there, the kubelet's
    /// `CreateContainerError`: CRI-O does; containerd creates it in `StartContainer`
    /// (`RunContainerError`).
    pub fn creates_the_process_at_create(&self) -> bool {
        matches!(self, Kind::Crio(_))
    }

    /// Whether a blob being pulled grows in the runtime's download area as its bytes arrive.
    /// CRI-O's (containers/image's temporary file) does. containerd 1.6 writes its ingest
    /// file in large steps: a 1 MB layer arriving at 96 KiB/s showed no change for 4 s here,
    /// so a slow pull of the 1 MB test image cannot show progress there.
    pub fn download_grows_per_read(&self) -> bool {
        matches!(self, Kind::Crio(_))
    }

    /// A lab script run with this runtime's binaries.
    fn command(&self) -> Command {
        let mut cmd = Command::new(self.script());
        if let Kind::Crio(bin) = self {
            cmd.env("CRIO_BIN_DIR", bin);
        }
        cmd
    }
}

/// The CRI-O build named by [`CRIO_BIN_ENV`], or `None` after printing why the test is skipped.
pub fn crio_bin() -> Option<PathBuf> {
    match std::env::var_os(CRIO_BIN_ENV) {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("crio").is_file() && dir.join("pinns").is_file(),
                "{CRIO_BIN_ENV}={} has no crio and pinns",
                dir.display()
            );
            Some(dir)
        }
        _ => {
            eprintln!("skipped: {CRIO_BIN_ENV} is unset (the directory of a CRI-O build)");
            None
        }
    }
}

/// One throw-away runtime.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub endpoint: String,
    /// A host port range of its own, so labs running side by side never clash.
    pub port_base: u16,
    /// Which runtime it runs.
    pub kind: Kind,
    /// Its root is a tmpfs of its own, unmounted when dropped.
    small_root: bool,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Lab {
    /// Configures, starts and fills a containerd; or, with `PODVISOR_LAB_RUNTIME=crio` (and
    /// [`CRIO_BIN_ENV`]), a CRI-O, so that any suite can be run against CRI-O as it is.
    pub fn start() -> Lab {
        let kind = match std::env::var("PODVISOR_LAB_RUNTIME").as_deref() {
            Ok("crio") => {
                Kind::Crio(crio_bin().expect("PODVISOR_LAB_RUNTIME=crio needs PODVISOR_CRIO_BIN"))
            }
            _ => Kind::Containerd,
        };
        Lab::start_kind(kind, &[], None)
    }

    /// [`Lab::start`] with containerd's root (images, snapshots) on a tmpfs of `mib` MiB of
    /// its own: an image filesystem small enough to fill.
    pub fn start_small_root(mib: u32) -> Lab {
        Lab::start_kind(Kind::Containerd, &[], Some(mib))
    }

    /// Configures, starts and fills a CRI-O whose binaries are in `bin`.
    pub fn start_crio(bin: PathBuf) -> Lab {
        Lab::start_kind(Kind::Crio(bin), &[], None)
    }

    /// A CRI-O as [`Lab::start_crio`] but with its pod events off (`enable_pod_events =
    /// false`, CRI-O's own default): `GetContainerEvents` answers an empty stream.
    pub fn start_crio_without_pod_events(bin: PathBuf) -> Lab {
        Lab::start_kind(Kind::Crio(bin), &[("POD_EVENTS", "false")], None)
    }

    fn start_kind(kind: Kind, config_env: &[(&str, &str)], small_root: Option<u32>) -> Lab {
        require_runtime();
        let images = images();
        let n = NEXT.fetch_add(1, Ordering::SeqCst) + (std::process::id() % 50) * 4;
        let dir = tempfile::Builder::new()
            .prefix("pvlab")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let bridge = format!("pvt{}", n % 1000);
        let subnet = format!("10.{}.0.0/16", 100 + (n % 150));
        run(kind
            .command()
            .envs(config_env.iter().copied())
            .args(["config"])
            .arg(dir.path())
            .args([&bridge, &subnet]));
        if let Some(mib) = small_root {
            run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "pvlab-root"])
                .arg(dir.path().join("root")));
        }
        run(kind.command().arg("start").arg(dir.path()));
        run(kind
            .command()
            .arg("import")
            .arg(dir.path())
            .arg(images.join("pause.tar"))
            .arg(images.join("busybox.tar")));
        let endpoint = format!("unix://{}", dir.path().join(kind.socket()).display());
        Lab {
            dir,
            endpoint,
            port_base: 20000 + (n % 400) as u16 * 100,
            kind,
            small_root: small_root.is_some(),
        }
    }

    /// Imports more of the project's test images (`spare-1.tar`, ...).
    pub fn import(&self, files: &[&str]) {
        let images = images();
        run(self
            .kind
            .command()
            .arg("import")
            .arg(self.dir.path())
            .args(files.iter().map(|f| images.join(f))));
    }

    /// Stops the runtime only, leaving pods running.
    pub fn stop_runtime(&self) {
        run(self.kind.command().arg("stop").arg(self.dir.path()));
    }

    /// Starts a stopped runtime.
    pub fn start_runtime(&self) {
        run(self.kind.command().arg("start").arg(self.dir.path()));
    }

    /// Stops containerd only, leaving pods running.
    pub fn stop_containerd(&self) {
        self.stop_runtime();
    }

    /// Starts a stopped containerd.
    pub fn start_containerd(&self) {
        self.start_runtime();
    }

    /// The last `lines` lines of the runtime's own log, for a failing test's message, and
    /// where a copy of the whole log is kept (the lab's directory goes with the lab).
    pub fn runtime_log_tail(&self, lines: usize) -> String {
        let path = self.dir.path().join(self.kind.log());
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        let kept = std::env::temp_dir().join(format!(
            "{}-{}",
            self.dir
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            self.kind.log()
        ));
        let kept = match std::fs::write(&kept, &log) {
            Ok(()) => format!("(whole log kept at {})", kept.display()),
            Err(e) => format!("(could not keep the whole log: {e})"),
        };
        format!("{kept}\n{}", tail(&log, lines))
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

    /// runc's state directory for container `id` run by the lab's runtime handler `handler`
    /// (`runc`, `runc-alt`): each handler has a state root of its own.
    pub fn runc_state(&self, handler: &str, id: &str) -> PathBuf {
        match &self.kind {
            Kind::Containerd => self.dir.path().join("state").join(handler).join("k8s.io"),
            Kind::Crio(_) => self.dir.path().join(handler),
        }
        .join(id)
    }

    /// Makes the runtime trust the CA certificate `ca` for the registry at `host_port`:
    /// containerd through a `hosts.toml` in its `config_path`, CRI-O (containers/image)
    /// through a `ca.crt` in the per-host certs directory of the home crio runs with.
    pub fn trust_registry_ca(&self, host_port: &str, ca: &Path) {
        match &self.kind {
            Kind::Containerd => std::fs::write(
                self.path(&format!("certs.d/{host_port}")).join("hosts.toml"),
                format!(
                    "server = \"https://{host_port}\"\n\n[host.\"https://{host_port}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
                    ca.display()
                ),
            ),
            Kind::Crio(_) => std::fs::copy(
                ca,
                self.path(&format!("home/.config/containers/certs.d/{host_port}"))
                    .join("ca.crt"),
            )
            .map(drop),
        }
        .expect("trust the registry's CA");
    }

    /// The path of the runtime's CRI socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join(self.kind.socket())
    }

    /// Runs containerd's `ctr` on the CRI's namespace with `args`; its output.
    fn ctr(&self, args: &[&str]) -> String {
        run(Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io"])
            .args(args))
    }

    /// Sends SIGKILL to a container's process, as a crash would.
    pub fn kill_container(&self, id: &str) {
        match &self.kind {
            Kind::Containerd => self.ctr(&["task", "kill", "-s", "SIGKILL", id]),
            // CRI-O's container id is runc's
            Kind::Crio(_) => run(Command::new("/usr/sbin/runc")
                .arg("--root")
                .arg(self.dir.path().join("runc"))
                .args(["kill", id, "KILL"])),
        };
    }

    /// Gives exited container `id` a task behind the CRI's back, as containerd leaves one when
    /// a `StartContainer` is cancelled mid-way (containerd/containerd#11037): the CRI still
    /// says exited, and removing the container or its sandbox is refused. containerd only.
    pub fn leave_task_behind(&self, id: &str) {
        assert_eq!(self.kind, Kind::Containerd, "a containerd trap");
        self.ctr(&["task", "start", "--null-io", "-d", id]);
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self
            .kind
            .command()
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

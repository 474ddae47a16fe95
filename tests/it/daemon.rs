//! The podvisor binary, run as a child process against a lab's containerd.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::lab::Lab;

/// A running podvisor daemon.
pub struct Daemon {
    child: Option<Child>,
    pub manifests: PathBuf,
    pub root: PathBuf,
    pub logs: PathBuf,
    /// Where container log symlinks go (`--container-log-links`).
    pub links: PathBuf,
    pub node: String,
    log_file: PathBuf,
    endpoint: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    /// The status API socket.
    pub socket: PathBuf,
}

impl Daemon {
    /// Starts podvisor on a fresh manifest directory of `lab`.
    pub fn start(lab: &Lab) -> Daemon {
        Daemon::start_with(lab, &[])
    }

    /// Starts podvisor with extra flags.
    pub fn start_with(lab: &Lab, extra: &[&str]) -> Daemon {
        Daemon::start_with_env(lab, extra, &[])
    }

    /// Starts podvisor with extra flags and environment.
    pub fn start_with_env(lab: &Lab, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_named(lab, "itnode", extra, env)
    }

    /// Starts podvisor as node `node`, with extra flags and environment.
    pub fn start_named(lab: &Lab, node: &str, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut d = Daemon {
            child: None,
            manifests: lab.path("manifests"),
            root: lab.path("root"),
            logs: lab.path("pod-logs"),
            links: lab.dir.path().join("containers"),
            node: node.to_owned(),
            log_file: lab.dir.path().join("podvisor.log"),
            endpoint: lab.endpoint.clone(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            socket: lab.dir.path().join("podvisor.sock"),
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
            .arg("run")
            .arg("--manifest-dir")
            .arg(&self.manifests)
            .arg("--runtime-endpoint")
            .arg(&self.endpoint)
            .arg("--node-name")
            .arg(&self.node)
            .arg("--root-dir")
            .arg(&self.root)
            .arg("--pod-log-dir")
            .arg(&self.logs)
            .arg("--resync-period")
            .arg("2s")
            .arg("--status-socket")
            .arg(&self.socket)
            .args(self.port_defaults())
            .args(&self.extra)
            .env("RUST_LOG", "podvisor=debug")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn podvisor");
        self.child = Some(child);
    }

    /// Tests run side by side: the node API on any free port, the healthz off, container
    /// log links in the lab and image GC off, unless a test names them.
    fn port_defaults(&self) -> Vec<String> {
        let named = |flag: &str| {
            self.extra
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut args: Vec<String> = Vec::new();
        if !named("--port") {
            args.extend(["--port".to_owned(), "0".to_owned()]);
        }
        if !named("--healthz-port") {
            args.extend(["--healthz-port".to_owned(), "0".to_owned()]);
        }
        // The machine's own disk may be nearly full (CI's is): images a later step needs
        // must not be collected under the tests, which cannot pull them back.
        if !named("--image-gc-high-threshold") {
            args.extend(["--image-gc-high-threshold".to_owned(), "100".to_owned()]);
        }
        if !named("--container-log-links") {
            args.push("--container-log-links".to_owned());
            args.push(self.links.display().to_string());
        }
        args
    }

    /// Writes a manifest atomically (temp file + rename), as tools should.
    pub fn write(&self, name: &str, text: &str) {
        write_atomic(&self.manifests.join(name), text);
    }

    /// Deletes a manifest.
    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.manifests.join(name)).expect("remove manifest");
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM).expect("signal");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "podvisor did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for it to exit on its own (as on a start-up error); `None` if it is still
    /// running after `timeout`.
    pub fn exited_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut().expect("started");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait().expect("wait") {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts it again with the same flags and directories.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "podvisor never logged {needle:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs a podvisor client command against this daemon; returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run podvisor cli");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The full pod name for a manifest's `metadata.name`.
    pub fn pod(&self, name: &str) -> String {
        format!("{name}-{}", self.node)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes `text` to `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("m")
    ));
    std::fs::write(&tmp, text).expect("write temp manifest");
    std::fs::rename(&tmp, path).expect("rename manifest");
}

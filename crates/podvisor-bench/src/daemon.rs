//! The podvisor binary as a child process, and what /proc says about it (CPU ticks, RSS).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// /proc reports CPU time in USER_HZ, which is 100 on every Linux architecture podvisor runs on.
pub const USER_HZ: f64 = 100.0;

/// The flags podvisor is started with.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The podvisor binary.
    pub bin: PathBuf,
    /// `--runtime-endpoint`.
    pub endpoint: String,
    /// `--manifest-dir`.
    pub manifest_dir: PathBuf,
    /// `--root-dir`.
    pub root_dir: PathBuf,
    /// `--pod-log-dir`.
    pub pod_log_dir: PathBuf,
    /// `--node-name`.
    pub node: String,
    /// `--resync-period`, if not the default.
    pub resync: Option<String>,
    /// `RUST_LOG`.
    pub rust_log: String,
    /// Where its log files go (one per start).
    pub log_dir: PathBuf,
    /// Further flags (e.g. a private `--status-socket`).
    pub extra: Vec<String>,
}

/// Flags for a private status socket, if this podvisor has a status API: its default socket
/// is shared by every podvisor on the machine.
pub fn private_flags(bin: &std::path::Path, socket: &std::path::Path) -> Vec<String> {
    let help = Command::new(bin)
        .args(["run", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if help.contains("--status-socket") {
        vec![
            "--status-socket".to_owned(),
            socket.to_string_lossy().into_owned(),
        ]
    } else {
        Vec::new()
    }
}

/// A running podvisor.
pub struct Daemon {
    child: Option<Child>,
    log: PathBuf,
    log_offset: u64,
    carry: String,
}

impl Daemon {
    /// Starts podvisor; `seq` numbers its log file. Returns it and the instant just before
    /// the spawn.
    pub fn spawn(cfg: &DaemonConfig, seq: usize) -> Result<(Daemon, Instant)> {
        let log = cfg.log_dir.join(format!("podvisor-{seq:02}.log"));
        let stderr = File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let mut cmd = Command::new(&cfg.bin);
        cmd.arg("run")
            .arg("--manifest-dir")
            .arg(&cfg.manifest_dir)
            .arg("--runtime-endpoint")
            .arg(&cfg.endpoint)
            .arg("--node-name")
            .arg(&cfg.node)
            .arg("--root-dir")
            .arg(&cfg.root_dir)
            .arg("--pod-log-dir")
            .arg(&cfg.pod_log_dir)
            .env("RUST_LOG", &cfg.rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(r) = &cfg.resync {
            cmd.arg("--resync-period").arg(r);
        }
        cmd.args(&cfg.extra);
        let t0 = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", cfg.bin.display()))?;
        Ok((
            Daemon {
                child: Some(child),
                log,
                log_offset: 0,
                carry: String::new(),
            },
            t0,
        ))
    }

    /// Its pid.
    pub fn pid(&self) -> Result<i32> {
        let c = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow!("podvisor is not running"))?;
        Ok(i32::try_from(c.id())?)
    }

    /// `kill -9`, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (podvisor leaves its pods running), and wait for it to exit.
    pub fn terminate(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        kill(Pid::from_raw(i32::try_from(c.id())?), Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = c.try_wait()? {
                if !status.success() {
                    bail!("podvisor exited with {status} after SIGTERM");
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("podvisor did not exit within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Fails if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let c = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("podvisor is not running"))?;
        if let Some(status) = c.try_wait()? {
            bail!("podvisor exited with {status}; log tail:\n{}", self.tail());
        }
        Ok(())
    }

    /// Whether `needle` appeared in the log since the last call (reads only what is new).
    fn log_has(&mut self, needle: &str) -> Result<bool> {
        let mut f = File::open(&self.log)?;
        f.seek(SeekFrom::Start(self.log_offset))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        self.log_offset += buf.len() as u64;
        self.carry.push_str(&String::from_utf8_lossy(&buf));
        if self.carry.contains(needle) {
            self.carry.clear();
            return Ok(true);
        }
        // Keep only what could still be the start of `needle`.
        let keep = self.carry.len().min(needle.len());
        let mut cut = self.carry.len() - keep;
        while !self.carry.is_char_boundary(cut) {
            cut -= 1;
        }
        self.carry.drain(..cut);
        Ok(false)
    }

    /// Polls the log every `interval` until it shows `needle`; returns when it was seen.
    pub async fn wait_log(
        &mut self,
        needle: &str,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_has(needle)? {
                return Ok(Instant::now());
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "podvisor did not log {needle:?} within {timeout:?}; log tail:\n{}",
                    self.tail()
                );
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// The last 30 lines of its log.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Its log file.
    pub fn log_path(&self) -> &PathBuf {
        &self.log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// utime + stime of `pid` (all its threads, live and exited), in USER_HZ ticks.
pub fn cpu_ticks(pid: i32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?;
    // Fields after the command: state is field 3, utime 14, stime 15.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: u64 = f.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    Ok(utime + stime)
}

/// A `Vm*:` line of /proc/<pid>/status, in KiB.
pub fn status_kib(pid: i32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow!("no {field} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow!("odd {field} line"))?
        .parse()?)
}

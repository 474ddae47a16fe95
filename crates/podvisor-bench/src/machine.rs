//! Facts about the machine and the code under test, for the report.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// What the figures were measured on.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Machine {
    /// UTC date and time of the start.
    pub date: String,
    /// Online CPUs.
    pub nproc: usize,
    /// CPU model.
    pub cpu: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// `uname -r`.
    pub kernel: String,
    /// `containerd --version` (with `--crio-bin`: `crio version 1.x` instead, the runtime
    /// of that run).
    pub containerd: String,
    /// /proc/loadavg at the start.
    pub load_before: String,
    /// /proc/loadavg at the end.
    pub load_after: String,
    /// `git describe --always --dirty` of the repository.
    pub commit: String,
}

fn output(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Gathers the facts.
pub fn detect(repo: &Path) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    let memory_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    Machine {
        date: output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
        nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu,
        memory_mib,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default(),
        containerd: output(Command::new("/usr/bin/containerd").arg("--version")),
        load_before: loadavg(),
        load_after: String::new(),
        commit: output(
            Command::new("git")
                .arg("-C")
                .arg(repo)
                .args(["describe", "--always", "--dirty"]),
        ),
    }
}

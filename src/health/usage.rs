//! The node's own CPU and memory use, read from `/proc` (the kubelet asks cAdvisor for the
//! root cgroup; on cgroup v2 the root has no counters, and `/proc` is where they come from).
//! The parsers are pure; [`NodeSampler`] keeps the previous CPU sample for a rate.

use std::sync::Mutex;

use crate::clock::Timestamp;
use crate::runtime::{CpuUse, MemoryUse};

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on Linux everywhere).
const USER_HZ: u64 = 100;

/// Cumulative busy CPU time from `/proc/stat`'s `cpu` line, in nanoseconds: user, nice,
/// system, irq, softirq and steal (idle and iowait are not use).
pub fn busy_nanos(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    let ticks = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
    Some(ticks.saturating_mul(1_000_000_000 / USER_HZ))
}

/// A `/proc/meminfo` figure (given in kB) in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find(|l| l.split(':').next() == Some(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Memory use from `/proc/meminfo`, as the node's cgroup would count it: usage is what is
/// not free, the working set is usage without inactive file pages, rss the anonymous pages.
pub fn memory(meminfo: &str, at: Timestamp) -> MemoryUse {
    let kib = |key: &str| meminfo_bytes(meminfo, key);
    let usage = kib("MemTotal")
        .zip(kib("MemFree"))
        .map(|(t, f)| t.saturating_sub(f));
    MemoryUse {
        at: Some(at),
        working_set: usage
            .zip(kib("Inactive(file)"))
            .map(|(u, i)| u.saturating_sub(i)),
        usage,
        rss: kib("AnonPages"),
        available: kib("MemAvailable"),
        page_faults: None,
        major_page_faults: None,
    }
}

/// Samples the node's CPU, keeping the last sample to give a rate.
#[derive(Default)]
pub struct NodeSampler {
    last: Mutex<Option<(Timestamp, u64)>>,
}

impl NodeSampler {
    /// The CPU use now from a `/proc/stat` reading; the rate is over the time since the
    /// previous sample (none at the first).
    pub fn cpu(&self, proc_stat: &str, now: Timestamp) -> Option<CpuUse> {
        let total = busy_nanos(proc_stat)?;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let nano_cores = last.and_then(|(t, prev)| {
            let secs = now.since(t).as_secs_f64();
            (secs > 0.0 && total >= prev).then(|| ((total - prev) as f64 / secs) as u64)
        });
        *last = Some((now, total));
        Some(CpuUse {
            at: Some(now),
            core_nanos: Some(total),
            nano_cores,
        })
    }

    /// Reads `/proc/stat` and `/proc/meminfo` now.
    pub fn read(&self, now: Timestamp) -> (Option<CpuUse>, Option<MemoryUse>) {
        let cpu = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| self.cpu(&s, now));
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .map(|m| memory(&m, now));
        (cpu, mem)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const STAT: &str = "cpu  100 20 30 1000 50 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n";

    #[test]
    fn node_cpu_counts_busy_ticks_and_gives_a_rate_from_the_second_sample() {
        assert_eq!(busy_nanos(STAT), Some(160 * 10_000_000));
        let s = NodeSampler::default();
        let t0 = Timestamp(1_000_000_000);
        assert_eq!(s.cpu(STAT, t0).expect("cpu").nano_cores, None);
        let later = "cpu  200 20 30 1000 50 5 5 0 0 0\n";
        let c = s.cpu(later, t0.plus(Duration::from_secs(2))).expect("cpu");
        // 100 ticks = 1 s of CPU over 2 s: half a core
        assert_eq!(c.nano_cores, Some(500_000_000));
    }

    #[test]
    fn node_memory_working_set_leaves_out_inactive_file_pages() {
        let m = memory(
            "MemTotal:  1000 kB\nMemFree:  200 kB\nMemAvailable: 600 kB\nInactive(file): 300 kB\nAnonPages: 250 kB\n",
            Timestamp(1),
        );
        assert_eq!(m.usage, Some(800 * 1024));
        assert_eq!(m.working_set, Some(500 * 1024));
        assert_eq!(m.available, Some(600 * 1024));
        assert_eq!(m.rss, Some(250 * 1024));
    }
}

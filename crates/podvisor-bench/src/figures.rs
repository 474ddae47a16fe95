//! Every figure the bench can report, in table order, with its floor and the target.
//! Scenarios only [`Figures::record`] samples by id; figures without samples are left out.

use anyhow::{Result, bail};

use crate::Settings;
use crate::daemon::USER_HZ;
use crate::report::{Figure, Stat, Target, Unit};

/// The figures of one run.
pub struct Figures {
    list: Vec<Figure>,
}

fn median_at_most(bound: f64) -> Target {
    Target::AtMost {
        stat: Stat::Median,
        bound,
    }
}

fn floor_plus(slack: f64) -> Target {
    Target::FloorPlus {
        stat: Stat::Median,
        slack,
    }
}

impl Figures {
    /// The catalogue, titled with this run's pod counts.
    pub fn new(s: &Settings) -> Figures {
        use Unit::*;
        let list = vec![
            Figure::new(
                "floor.host.up",
                "floor, hostNetwork: RunPodSandbox + CreateContainer + StartContainer",
                Ms,
            ),
            Figure::new(
                "floor.host.run_sandbox",
                "floor, hostNetwork: RunPodSandbox",
                Ms,
            ),
            Figure::new(
                "floor.host.create",
                "floor, hostNetwork: CreateContainer",
                Ms,
            ),
            Figure::new("floor.host.start", "floor, hostNetwork: StartContainer", Ms),
            Figure::new(
                "floor.host.down",
                "floor, hostNetwork: StopContainer + StopPodSandbox + RemovePodSandbox",
                Ms,
            ),
            Figure::new(
                "floor.host.stop_container",
                "floor, hostNetwork: StopContainer",
                Ms,
            ),
            Figure::new(
                "floor.host.stop_sandbox",
                "floor, hostNetwork: StopPodSandbox",
                Ms,
            ),
            Figure::new(
                "floor.host.remove_sandbox",
                "floor, hostNetwork: RemovePodSandbox",
                Ms,
            ),
            Figure::new("floor.host.down_up", "floor, hostNetwork: down + up", Ms),
            Figure::new(
                "floor.host.restart",
                "floor: StopContainer + CreateContainer + StartContainer (same sandbox)",
                Ms,
            ),
            Figure::new(
                "floor.host.recreate",
                "floor: CreateContainer + StartContainer (attempt 1, same sandbox)",
                Ms,
            ),
            Figure::new(
                "floor.host.exit_recorded",
                "floor: SIGKILL → ContainerStatus EXITED (polled back to back)",
                Ms,
            ),
            Figure::new(
                "floor.host.crash",
                "floor: SIGKILL → EXITED, then CreateContainer + StartContainer",
                Ms,
            ),
            Figure::new("floor.net.up", "floor, pod network: up", Ms),
            Figure::new(
                "floor.net.stop_container",
                "floor, pod network: StopContainer",
                Ms,
            ),
            Figure::new("floor.net.down", "floor, pod network: down", Ms),
            Figure::new(
                "floor.quiet.up",
                "floor, hostNetwork, no observer polling: up",
                Ms,
            ),
            Figure::new(
                "floor.quiet.down",
                "floor, hostNetwork, no observer polling: down",
                Ms,
            ),
            Figure::new("create.host", "create, hostNetwork: rename → RUNNING", Ms)
                .vs("floor.host.up")
                .target(floor_plus(10.0)),
            Figure::new("create.net", "create, pod network: rename → RUNNING", Ms)
                .vs("floor.net.up"),
            Figure::new("edit", "edit (env): rename → new container RUNNING", Ms)
                .vs("floor.host.restart")
                .target(floor_plus(20.0)),
            Figure::new(
                "delete.stopped",
                "delete, hostNetwork: unlink → container not RUNNING",
                Ms,
            )
            .vs("floor.host.stop_container")
            .target(floor_plus(10.0)),
            Figure::new(
                "delete.removed",
                "delete, hostNetwork: unlink → sandbox removed",
                Ms,
            )
            .vs("floor.host.down")
            .target(median_at_most(1000.0)),
            Figure::new(
                "delete.net.stopped",
                "delete, pod network: unlink → container not RUNNING",
                Ms,
            )
            .vs("floor.net.stop_container"),
            Figure::new(
                "delete.net.removed",
                "delete, pod network: unlink → sandbox removed",
                Ms,
            )
            .vs("floor.net.down"),
            Figure::new("crash", "crash: SIGKILL → new container RUNNING", Ms)
                .vs("floor.host.crash")
                .target(median_at_most(100.0)),
            Figure::new(
                "adopt.time",
                format!(
                    "adopt, {} pods: spawn after kill -9 → first full reconcile logged",
                    s.adopt_pods
                ),
                Ms,
            )
            .target(median_at_most(200.0)),
            Figure::new(
                "adopt.restarts",
                format!("adopt, {} pods: containers restarted", s.adopt_pods),
                Count,
            )
            .target(Target::AtMost {
                stat: Stat::Max,
                bound: 0.0,
            }),
            Figure::new(
                "burst.up",
                format!("burst: {} manifests at once → all RUNNING", s.burst_pods),
                Ms,
            ),
            Figure::new(
                "burst.down",
                format!(
                    "burst: {} manifests removed → all sandboxes removed",
                    s.burst_pods
                ),
                Ms,
            ),
            Figure::new(
                "resync.cpu",
                format!("resync, {} pods: CPU time of one resync", s.burst_pods),
                CpuMs,
            ),
            Figure::new(
                "relist.cpu",
                format!(
                    "{} pods, resync off: CPU time per second (1 s relist)",
                    s.burst_pods
                ),
                CpuMs,
            ),
            Figure::new(
                "idle.rss",
                format!("idle, {} pods: podvisor RSS (1 s samples)", s.idle_pods),
                MiB,
            )
            .target(Target::AtMost {
                stat: Stat::Max,
                bound: 10.0,
            }),
            Figure::new(
                "idle.cpu",
                format!(
                    "idle, {} pods: podvisor CPU over {} s",
                    s.idle_pods, s.idle_secs
                ),
                PercentCore,
            )
            .target(median_at_most(0.2)),
            Figure::new(
                "idle.rss_anon",
                "idle: of that RSS at the end, anonymous (heap, stacks)",
                MiB,
            ),
            Figure::new(
                "idle.rss_file",
                "idle: of that RSS at the end, file-backed (the binary's pages)",
                MiB,
            ),
            Figure::new(
                "idle.rss_long_lived",
                "RSS of the daemon that ran the adopt scenario",
                MiB,
            ),
            Figure::new(
                "idle.containerd_rss",
                format!("idle, {} pods: containerd RSS (context)", s.idle_pods),
                MiB,
            ),
            Figure::new(
                "nodeapi.log.file",
                format!(
                    "nodeapi: the CRI log file of {} MiB written to stdout",
                    s.log_mib
                ),
                MiB,
            ),
            Figure::new(
                "nodeapi.log.body",
                "nodeapi: the containerLogs body (the lines without their CRI prefixes)",
                MiB,
            ),
            Figure::new(
                "floor.log.read",
                "floor: read that log file from the page cache (128 KiB reads)",
                MiBps,
            ),
            Figure::new(
                "nodeapi.logs",
                "containerLogs over HTTPS, whole log, no follow (log-file MiB per second)",
                MiBps,
            )
            .vs("floor.log.read")
            .target(Target::FloorTimesAtLeast {
                stat: Stat::Median,
                factor: 0.8,
            }),
            Figure::new(
                "nodeapi.logs.cpu",
                "containerLogs: podvisor's CPU time per request",
                CpuMs,
            ),
            Figure::new(
                "nodeapi.logs.client_cpu",
                "containerLogs: the bench client's CPU time per request (TLS, HTTP)",
                CpuMs,
            ),
            Figure::new(
                "floor.exec",
                "floor: CRI Exec `true` + WebSocket to containerd's URL → session closed",
                Ms,
            ),
            Figure::new(
                "nodeapi.exec",
                "exec `true` through the node API: TLS + WebSocket upgrade → session closed",
                Ms,
            )
            .vs("floor.exec")
            .target(floor_plus(5.0)),
            Figure::new(
                "nodeapi.exec.cpu",
                "exec: podvisor's CPU time per session (mean over the rounds)",
                CpuMs,
            ),
            Figure::new(
                "nodeapi.rss_after",
                "RSS of the node-API daemon after the containerLogs and exec rounds",
                MiB,
            ),
            Figure::new(
                "nodeapi.idle.rss",
                format!(
                    "idle, {} pods, node API on: podvisor RSS (1 s samples)",
                    s.idle_pods
                ),
                MiB,
            )
            .vs("idle.rss")
            .target(floor_plus(1.0)),
            Figure::new(
                "nodeapi.idle.cpu",
                format!(
                    "idle, {} pods, node API on: podvisor CPU over {} s",
                    s.idle_pods, s.idle_secs
                ),
                PercentCore,
            )
            .vs("idle.cpu")
            // Within the measurement's resolution: each CPU reading is whole 10 ms ticks, so
            // two windows' difference is only known to ±2 ticks.
            .target(floor_plus(
                2.0 / USER_HZ / s.idle_secs.max(1) as f64 * 100.0,
            )),
            Figure::new(
                "nodeapi.idle.rss_anon",
                "idle, node API on: of that RSS at the end, anonymous",
                MiB,
            )
            .vs("idle.rss_anon"),
            Figure::new(
                "nodeapi.idle.rss_file",
                "idle, node API on: of that RSS at the end, file-backed",
                MiB,
            )
            .vs("idle.rss_file"),
            Figure::new(
                "housekeeping.cpu_rotation_off",
                format!(
                    "{} pods writing ~14 KB/s each, rotation off: podvisor CPU",
                    s.burst_pods
                ),
                PercentCore,
            ),
            Figure::new(
                "housekeeping.cpu_rotation_on",
                format!(
                    "{} pods writing, rotated at 64Ki, checked every 1 s: podvisor CPU",
                    s.burst_pods
                ),
                PercentCore,
            )
            .vs("housekeeping.cpu_rotation_off"),
            Figure::new(
                "housekeeping.rotations",
                "rotations in that 60 s window",
                Count,
            ),
            Figure::new(
                "housekeeping.cpu_per_rotation",
                "podvisor CPU per rotation (the difference of the two windows)",
                CpuMs,
            ),
            Figure::new(
                "housekeeping.image_gc_scan",
                format!(
                    "one image GC scan with {} pods (ListImages, ListContainers, Status, ImageStatus, statvfs)",
                    s.burst_pods
                ),
                Ms,
            ),
            Figure::new(
                "observer.rtt",
                "observer: one poll round trip (ListContainers or ListPodSandbox)",
                Ms,
            ),
            Figure::new(
                "observer.cycle",
                "observer: start of one poll → start of the next",
                Ms,
            ),
        ];
        Figures { list }
    }

    /// Adds a sample to figure `id`.
    pub fn record(&mut self, id: &str, value: f64) -> Result<()> {
        match self.list.iter_mut().find(|f| f.id == id) {
            Some(f) => {
                f.samples.push(value);
                Ok(())
            }
            None => bail!("no figure {id}"),
        }
    }

    /// Whether figure `id` has samples yet.
    pub fn has(&self, id: &str) -> bool {
        self.list
            .iter()
            .any(|f| f.id == id && !f.samples.is_empty())
    }

    /// The figures that have samples, in table order.
    pub fn measured(&self) -> Vec<Figure> {
        self.list
            .iter()
            .filter(|f| !f.samples.is_empty())
            .cloned()
            .collect()
    }
}

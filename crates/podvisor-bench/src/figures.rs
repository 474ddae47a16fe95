//! Every figure the bench can report, in table order, with its floor and the target.
//! Scenarios only [`Figures::record`] samples by id; figures without samples are left out.

use anyhow::{Result, bail};

use crate::Settings;
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

    /// The figures that have samples, in table order.
    pub fn measured(&self) -> Vec<Figure> {
        self.list
            .iter()
            .filter(|f| !f.samples.is_empty())
            .cloned()
            .collect()
    }
}

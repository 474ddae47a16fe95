//! podvisor-bench: measures podvisor against a private containerd and against the floor (raw
//! CRI calls for the same pod) in one run, prints a markdown table and writes JSON.
//!
//! ```text
//! hack/bench.sh           # as root: builds the `dist` profile (as shipped) and runs this
//! ```
//!
//! Scenarios, in order: `lifecycle` (floor, create, edit, crash, delete), `burst`, `resync`,
//! `adopt`, `idle`, `nodeapi`. BENCHMARKS.md says what each figure means.

mod bench;
mod cri;
mod daemon;
mod figures;
mod floor;
mod housekeeping;
mod lab;
mod lifecycle;
mod machine;
mod nodeapi;
mod pods;
mod report;
mod scale;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::bench::Bench;
use crate::figures::Figures;
use crate::lab::Lab;
use crate::machine::Machine;

/// A part of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// Floor, create, edit, crash, delete: one pod at a time.
    Lifecycle,
    /// N manifests at once, up and down.
    Burst,
    /// CPU time of one resync with N pods.
    Resync,
    /// kill -9 and restart with N pods.
    Adopt,
    /// RSS and CPU with N pods.
    Idle,
    /// Log rotation's CPU with N pods writing, and one image GC scan.
    Housekeeping,
    /// The kubelet's node API: containerLogs and exec against their floors, idle cost.
    #[value(name = "nodeapi")]
    NodeApi,
}

/// Measure podvisor against a private containerd and the raw-CRI floor (run as root).
#[derive(Debug, Parser)]
#[command(name = "podvisor-bench")]
struct Args {
    /// A short smoke run: 3 rounds, small pod counts, short windows.
    #[arg(long)]
    quick: bool,
    /// Rounds of floor + create/edit/crash/delete [default: 20, quick 3]
    #[arg(long)]
    reps: Option<usize>,
    /// Pods running when podvisor is killed [default: 50, quick 10]
    #[arg(long)]
    adopt_pods: Option<usize>,
    /// kill -9/restart rounds [default: 10, quick 3]
    #[arg(long)]
    adopt_reps: Option<usize>,
    /// Manifests dropped at once, and pods for the resync figure [default: 100, quick 20]
    #[arg(long)]
    burst_pods: Option<usize>,
    /// Burst rounds (up and down) [default: 3, quick 1]
    #[arg(long)]
    burst_reps: Option<usize>,
    /// Resync measurement rounds (a window with, one without) [default: 2, quick 1]
    #[arg(long)]
    resync_rounds: Option<usize>,
    /// Length of each resync measurement window, seconds [default: 30, quick 5]
    #[arg(long)]
    resync_window: Option<u64>,
    /// Pods running while idle [default: 30, quick 5]
    #[arg(long)]
    idle_pods: Option<usize>,
    /// Idle window, seconds [default: 60, quick 5]
    #[arg(long)]
    idle_secs: Option<u64>,
    /// MiB the nodeapi scenario's container writes to stdout for containerLogs
    #[arg(long, default_value_t = 100)]
    log_mib: u64,
    /// containerLogs rounds (API and floor each) [default: 7, quick 3]
    #[arg(long)]
    log_reps: Option<usize>,
    /// exec rounds (API and floor each) [default: 20, quick 5]
    #[arg(long)]
    exec_reps: Option<usize>,
    /// Sleep between two observer polls, ms
    #[arg(long, default_value_t = 1)]
    poll_ms: u64,
    /// Only these scenarios (comma-separated)
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// JSON output [default: <repo>/target/bench/latest.json]
    #[arg(long)]
    json: Option<PathBuf>,
    /// Images directory with pause.tar and busybox.tar [default: build into <repo>/target/bench-images]
    #[arg(long)]
    images: Option<PathBuf>,
    /// podvisor binary [default: `podvisor` next to this binary]
    #[arg(long)]
    podvisor: Option<PathBuf>,
    /// RUST_LOG for podvisor (its logs stay in the lab dir with --keep)
    #[arg(long, default_value = "info")]
    podvisor_log: String,
    /// CNI bridge of the private containerd
    #[arg(long, default_value = "pvbench0")]
    bridge: String,
    /// Pod subnet of the private containerd
    #[arg(long, default_value = "10.91.0.0/16")]
    subnet: String,
    /// Run against CRI-O instead of containerd: the directory of a CRI-O build (crio, pinns;
    /// see hack/crio-lab.sh), e.g. /opt/crio/bin
    #[arg(long)]
    crio_bin: Option<PathBuf>,
    /// Keep the lab directory (logs, manifests) after the run
    #[arg(long)]
    keep: bool,
}

/// Everything a run is parameterised by, as recorded in the JSON.
#[derive(Clone, Debug, Serialize)]
pub struct Settings {
    /// Rounds of the lifecycle scenario.
    pub reps: usize,
    /// Pods for adopt.
    pub adopt_pods: usize,
    /// Rounds of adopt.
    pub adopt_reps: usize,
    /// Pods for burst and resync.
    pub burst_pods: usize,
    /// Rounds of burst.
    pub burst_reps: usize,
    /// Rounds of resync.
    pub resync_rounds: usize,
    /// Window of each resync measurement, seconds.
    pub resync_window_secs: u64,
    /// Pods for idle.
    pub idle_pods: usize,
    /// Idle window, seconds.
    pub idle_secs: u64,
    /// MiB written to stdout for the containerLogs figure.
    pub log_mib: u64,
    /// Rounds of containerLogs.
    pub log_reps: usize,
    /// Rounds of exec.
    pub exec_reps: usize,
    /// Sleep between observer polls, ms.
    pub poll_ms: u64,
    /// Scenarios run.
    pub scenarios: Vec<Scenario>,
    /// podvisor's node name.
    pub node: String,
    /// The podvisor binary.
    pub podvisor: PathBuf,
    /// RUST_LOG for podvisor.
    pub podvisor_log: String,
}

impl Settings {
    fn from_args(a: &Args) -> Result<Settings> {
        let q = a.quick;
        let pick =
            |v: Option<usize>, full: usize, quick: usize| v.unwrap_or(if q { quick } else { full });
        let podvisor = match &a.podvisor {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .context("cannot find this binary")?
                .with_file_name("podvisor"),
        };
        if !podvisor.is_file() {
            bail!(
                "{} missing: build both binaries with `cargo build --profile dist --bins` (hack/bench.sh)",
                podvisor.display()
            );
        }
        let scenarios = if a.only.is_empty() {
            vec![
                Scenario::Lifecycle,
                Scenario::Burst,
                Scenario::Resync,
                Scenario::Adopt,
                Scenario::Idle,
                Scenario::NodeApi,
            ]
        } else {
            a.only.clone()
        };
        Ok(Settings {
            reps: pick(a.reps, 20, 3),
            adopt_pods: pick(a.adopt_pods, 50, 10),
            adopt_reps: pick(a.adopt_reps, 10, 3),
            burst_pods: pick(a.burst_pods, 100, 20),
            burst_reps: pick(a.burst_reps, 3, 1),
            resync_rounds: pick(a.resync_rounds, 2, 1),
            resync_window_secs: a.resync_window.unwrap_or(if q { 5 } else { 30 }),
            idle_pods: pick(a.idle_pods, 30, 5),
            idle_secs: a.idle_secs.unwrap_or(if q { 5 } else { 60 }),
            log_mib: a.log_mib,
            log_reps: pick(a.log_reps, 7, 3),
            exec_reps: pick(a.exec_reps, 20, 5),
            poll_ms: a.poll_ms,
            scenarios,
            node: "bench".to_owned(),
            podvisor,
            podvisor_log: a.podvisor_log.clone(),
        })
    }
}

impl Settings {
    /// Window of each resync measurement.
    pub fn resync_window(&self) -> Duration {
        Duration::from_secs(self.resync_window_secs)
    }

    /// Sleep between observer polls.
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms)
    }
}

/// The JSON document.
#[derive(Serialize)]
struct Output<'a> {
    machine: &'a Machine,
    settings: &'a Settings,
    /// Set when the run stopped early; the figures are those measured until then.
    error: Option<String>,
    figures: Vec<report::FigureOut>,
}

fn repo() -> PathBuf {
    // crates/podvisor-bench -> the repository root
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    root.canonicalize().unwrap_or(root)
}

async fn scenarios(lab: &Lab, s: &Settings, figures: &mut Figures) -> Result<()> {
    let mut b = Bench::new(lab, s, figures).await?;
    for sc in &s.scenarios {
        eprintln!("bench: scenario {sc:?}");
        match sc {
            Scenario::Lifecycle => lifecycle::run(&mut b).await?,
            Scenario::Burst => scale::burst(&mut b).await?,
            Scenario::Resync => scale::resync(&mut b).await?,
            Scenario::Adopt => scale::adopt(&mut b).await?,
            Scenario::Idle => scale::idle(&mut b, lab.runtime_pid()).await?,
            Scenario::NodeApi => nodeapi::run(&mut b).await?,
            Scenario::Housekeeping => housekeeping::run(&mut b, &lab.endpoint).await?,
        }
    }
    b.record_round_trips()?;
    b.daemon.terminate()?;
    Ok(())
}

/// Runs the scenarios until done, failed, or interrupted (SIGINT/SIGTERM).
async fn until_interrupted(lab: &Lab, s: &Settings, figures: &mut Figures) -> Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = scenarios(lab, s, figures) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        _ = term.recv() => bail!("terminated"),
    }
}

fn write_json(path: &Path, out: &Output<'_>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(out)?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(false)`: the run stopped early (figures and JSON are still written).
fn run() -> Result<bool> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root (containerd needs it)");
    }
    let settings = Settings::from_args(&args)?;
    let repo = repo();
    let mut machine = machine::detect(&repo);
    if let Some(bin) = &args.crio_bin {
        let out = Command::new(bin.join("crio"))
            .arg("--version")
            .output()
            .with_context(|| format!("cannot run {}/crio", bin.display()))?;
        machine.containerd = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("crio")
            .to_owned();
    }
    let images = match &args.images {
        Some(d) => d.clone(),
        None => {
            let d = repo.join("target/bench-images");
            lab::build_images(&repo, &d)?;
            d
        }
    };
    let mut figures = Figures::new(&settings);
    let result = {
        let lab = Lab::start(
            &repo,
            &images,
            &args.bridge,
            &args.subnet,
            args.crio_bin.as_deref(),
            args.keep,
        )?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(until_interrupted(&lab, &settings, &mut figures))
        // the lab (containerd and every pod) is stopped here
    };
    machine.load_after = machine::loadavg();
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    if let Some(e) = &error {
        eprintln!("bench: stopped early: {e}");
    }
    let evaluated = report::evaluate(&figures.measured());
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| repo.join("target/bench/latest.json"));
    write_json(
        &json,
        &Output {
            machine: &machine,
            settings: &settings,
            error: error.clone(),
            figures: report::evaluate(&figures.measured()),
        },
    )?;
    println!(
        "{} · {} × {} · {} MiB · kernel {} · {} · podvisor {} ({}) · load {} → {}\n",
        machine.date,
        machine.nproc,
        machine.cpu,
        machine.memory_mib,
        machine.kernel,
        machine.containerd,
        machine.commit,
        settings.podvisor.display(),
        machine.load_before,
        machine.load_after
    );
    print!("{}", report::markdown(&evaluated));
    eprintln!("bench: JSON written to {}", json.display());
    Ok(error.is_none())
}

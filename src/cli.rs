//! Command-line flags, as typed by the user: no defaults applied and nothing validated here
//! (that is [`crate::config`]). Every flag can also come from a `PODVISOR_*` variable.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// podvisor: a kubelet without an API server. It runs the static pods of a manifest
/// directory through a CRI runtime (containerd, CRI-O) and keeps them running.
#[derive(Debug, Parser)]
#[command(name = "podvisor", version, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the manifest directory and keep its pods running.
    Run(RunArgs),
    /// Print the version.
    Version,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `podvisor run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Directory of static pod manifests (*.yaml, *.yml, *.json) [default: /etc/kubernetes/manifests]
    #[arg(long, env = "PODVISOR_MANIFEST_DIR", value_name = "DIR")]
    pub manifest_dir: Option<PathBuf>,

    /// CRI endpoint of the container runtime [default: unix:///run/containerd/containerd.sock]
    #[arg(long, env = "PODVISOR_RUNTIME_ENDPOINT", value_name = "ENDPOINT")]
    pub runtime_endpoint: Option<String>,

    /// Node name appended to pod names (`<name>-<node>`) [default: the hostname, lowercased]
    #[arg(long, env = "PODVISOR_NODE_NAME", value_name = "NAME")]
    pub node_name: Option<String>,

    /// Full rescan of the manifest directory, whatever inotify reports [default: 10s]
    #[arg(long, env = "PODVISOR_RESYNC_PERIOD", value_name = "DURATION")]
    pub resync_period: Option<String>,

    /// How often the runtime is listed to notice container exits [default: 1s]
    #[arg(long, env = "PODVISOR_RELIST_PERIOD", value_name = "DURATION")]
    pub relist_period: Option<String>,

    /// podvisor's state directory; pod directories live in <DIR>/pods/<uid> [default: /var/lib/podvisor]
    #[arg(long, env = "PODVISOR_ROOT_DIR", value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// Where pod log directories are created [default: /var/log/pods]
    #[arg(long, env = "PODVISOR_POD_LOG_DIR", value_name = "DIR")]
    pub pod_log_dir: Option<PathBuf>,

    /// Log format [default: text]
    #[arg(long, env = "PODVISOR_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_flags_parse() {
        let cli = Cli::try_parse_from([
            "podvisor",
            "run",
            "--manifest-dir",
            "/m",
            "--node-name",
            "Edge-1",
            "--resync-period",
            "5s",
            "--log-format",
            "json",
        ])
        .expect("valid flags");
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.manifest_dir, Some(PathBuf::from("/m")));
        assert_eq!(args.node_name.as_deref(), Some("Edge-1"));
        assert_eq!(args.resync_period.as_deref(), Some("5s"));
        assert_eq!(args.log_format, Some(LogFormat::Json));
    }
}

//! Command-line flags, as typed by the user: no defaults applied and nothing validated here
//! (that is [`crate::config`], which also reads the config file and `PODVISOR_*` variables).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// podvisor: a kubelet without an API server. It runs the static pods of a manifest
/// directory through a CRI runtime (containerd, CRI-O), keeps them running, and optionally
/// mirrors them into a Kubernetes API server.
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
    Run(Box<RunArgs>),
    /// List the static pods of a running daemon.
    Ps(PsArgs),
    /// Show one pod of a running daemon in full.
    Inspect(InspectArgs),
    /// Print a container's log.
    Logs(LogsArgs),
    /// Validate manifests offline, with the daemon's own rules; exit 1 on any error.
    Check(CheckArgs),
    /// Show what the daemon would do with a proposed manifest file or directory, pod by pod,
    /// without touching anything.
    #[command(after_help = DIFF_HELP)]
    Diff(DiffArgs),
    /// Stop podvisor's pods in priority order, as the kubelet does when the host shuts down
    /// (for a unit ordered before the runtime stops; the daemon must be stopped first).
    Shutdown(ShutdownArgs),
    /// Configuration file helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print shell completions.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the version.
    Version,
}

/// `podvisor config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a complete configuration file with every default, commented.
    Default,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Output format of `ps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A table.
    Table,
    /// A wider table (uid, hash, IP, containers).
    Wide,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Flags of `podvisor run`. Each also comes from the config file (`--config`) and from a
/// `PODVISOR_<FLAG>` variable; flags win over variables, variables over the file.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// YAML configuration file (see `podvisor config default`)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of static pod manifests (*.yaml, *.yml, *.json) [default: /etc/kubernetes/manifests]
    #[arg(long, value_name = "DIR")]
    pub manifest_dir: Option<PathBuf>,

    /// CRI endpoint of the container runtime [default: unix:///run/containerd/containerd.sock]
    #[arg(long, value_name = "ENDPOINT")]
    pub runtime_endpoint: Option<String>,

    /// CRI endpoint of the image service, when it is not the runtime's [default: the runtime
    /// endpoint]
    #[arg(long, value_name = "ENDPOINT")]
    pub image_service_endpoint: Option<String>,

    /// The kubelet's CredentialProviderConfig file (or directory of them): credential provider
    /// plugins to ask for registry credentials [default: none]
    #[arg(long, value_name = "PATH")]
    pub image_credential_provider_config: Option<PathBuf>,

    /// Directory of the credential provider plugin binaries
    #[arg(long, value_name = "DIR")]
    pub image_credential_provider_bin_dir: Option<PathBuf>,

    /// Cancel a pull whose downloads show no progress for this long; then ErrImagePull and
    /// back-off [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub image_pull_progress_timeout: Option<String>,

    /// Directory whose changes show the runtime's download progress [default: containerd's
    /// ingest directory, found beside its image filesystem; with CRI-O, containers/image's
    /// entries in /var/tmp (name its big_files_temporary_dir here if it sets one)]
    #[arg(long, value_name = "DIR")]
    pub image_pull_progress_dir: Option<PathBuf>,

    /// Pull one image at a time [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub serialize_image_pulls: Option<bool>,

    /// Pulls at once, with --serialize-image-pulls=false [default: no limit]
    #[arg(long, value_name = "N")]
    pub max_parallel_image_pulls: Option<usize>,

    /// Health-gated rollback for pods without a `podvisor.dev/rollback` annotation: a new
    /// version that crashes or is not ready in time is replaced by the last healthy one
    /// until its file changes [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rollback_on_failure: Option<bool>,

    /// How long a new version has to become started and ready, on top of its startup
    /// probes' budget, before it is rolled back [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub rollback_ready_timeout: Option<String>,

    /// Node name appended to pod names (`<name>-<node>`) [default: the hostname, lowercased]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,

    /// Full rescan of the manifest directory, whatever inotify reports [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub resync_period: Option<String>,

    /// How often the runtime is listed to notice container exits [default: 1s]
    #[arg(long, value_name = "DURATION")]
    pub relist_period: Option<String>,

    /// podvisor's state directory; pod directories live in `DIR/pods/UID` [default: /var/lib/podvisor]
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// Where pod log directories are created [default: /var/log/pods]
    #[arg(long, value_name = "DIR")]
    pub pod_log_dir: Option<PathBuf>,

    /// Where each container's log gets a symlink `<pod>_<ns>_<container>-<id>.log`, as the
    /// kubelet's, for log shippers; empty: none [default: /var/log/containers]
    #[arg(long, value_name = "DIR")]
    pub container_log_links: Option<PathBuf>,

    /// Log format [default: text]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Unix socket of the local status API (mode 0600) [default: /run/podvisor/podvisor.sock]
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,

    /// Also serve the status API over TCP at this loopback address, e.g. 127.0.0.1:10256
    #[arg(long, value_name = "ADDR")]
    pub status_address: Option<String>,

    /// Allow --status-address to be a non-loopback address
    #[arg(long)]
    pub status_allow_remote: bool,

    /// Run manifests that are owned by a non-root user or writable by group or others
    /// (refused by default when running as root)
    #[arg(long)]
    pub allow_insecure_manifests: bool,

    /// cgroupfs or systemd; must match the runtime's. Unset: the runtime's own, when it says
    /// it (CRI RuntimeConfig), else cgroupfs
    #[arg(long, value_name = "DRIVER")]
    pub cgroup_driver: Option<String>,

    /// Kubeconfig of an API server to mirror static pods into (kubeadm's kubelet.conf);
    /// without it podvisor is fully standalone
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// Create (or adopt) the Node object when mirroring [default: true]
    #[arg(long, value_name = "BOOL")]
    pub register_node: Option<bool>,

    /// Labels for the Node object: key=value,key2=value2
    #[arg(long, value_name = "LABELS")]
    pub node_labels: Option<String>,

    /// Taints for the Node podvisor registers: key=value:Effect,key2:Effect
    /// (Effect: NoSchedule, PreferNoSchedule, NoExecute)
    #[arg(long, value_name = "TAINTS")]
    pub register_with_taints: Option<String>,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub node_api: NodeApiArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub node_status: NodeStatusArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub container_logs: ContainerLogArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub image_gc: ImageGcArgs,

    #[command(flatten)]
    #[allow(missing_docs)]
    pub certs: CertArgs,
}

/// What the Node's status is computed with, with the kubelet's flag names.
#[derive(Debug, Default, Args)]
pub struct NodeStatusArgs {
    /// The node's InternalIP (one, or one IPv4 and one IPv6); `::` prefers IPv6
    /// [default: the node name's address if local, else the default route's]
    #[arg(long, value_name = "IP[,IP]")]
    pub node_ip: Option<String>,

    /// Pressure thresholds: signal<amount,... (memory.available, nodefs.available,
    /// nodefs.inodesFree, imagefs.available, imagefs.inodesFree, pid.available)
    /// [default: memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%,imagefs.inodesFree<5%]
    #[arg(long, value_name = "THRESHOLDS")]
    pub eviction_hard: Option<String>,

    /// How long a pressure condition stays after its threshold was last met [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub eviction_pressure_transition_period: Option<String>,
}

/// Image garbage collection, with the kubelet's flag names.
#[derive(Debug, Default, Args)]
pub struct ImageGcArgs {
    /// Image filesystem usage (percent) at which unused images are removed; 100: never
    /// [default: 85]
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_high_threshold: Option<u8>,

    /// Usage (percent) that removing images aims to get down to [default: 80]
    #[arg(long, value_name = "PERCENT")]
    pub image_gc_low_threshold: Option<u8>,

    /// How long an image is kept after it first appears [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub image_minimum_gc_age: Option<String>,

    /// Remove images unused for this long whatever the usage; 0: never [default: 0]
    #[arg(long, value_name = "DURATION")]
    pub image_maximum_gc_age: Option<String>,
}

/// Container log rotation, with the kubelet's names.
#[derive(Debug, Default, Args)]
pub struct ContainerLogArgs {
    /// Size at which a container's log is rotated (a quantity; negative: never)
    /// [default: 10Mi]
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub container_log_max_size: Option<String>,

    /// Log files kept per container, the live one included (at least 2) [default: 5]
    #[arg(long, value_name = "N")]
    pub container_log_max_files: Option<usize>,

    /// How often container log sizes are checked [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub container_log_monitor_interval: Option<String>,

    /// Container logs rotated at once [default: 1]
    #[arg(long, value_name = "N")]
    pub container_log_max_workers: Option<usize>,
}

/// The node's certificates, with the kubelet's flag names (see [`crate::certs`]).
#[derive(Debug, Default, Args)]
pub struct CertArgs {
    /// Kubeconfig with bootstrap credentials (a token): while --kubeconfig is missing or has
    /// no valid client certificate, request one with these and write --kubeconfig
    #[arg(long, value_name = "FILE")]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// Renew the client certificate through the API server before it expires [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rotate_certificates: Option<bool>,

    /// Request the node API's serving certificate from the API server (serverTLSBootstrap)
    /// [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rotate_server_certificates: Option<bool>,

    /// Where the certificates are kept [default: ROOT_DIR/pki]
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
}

/// The kubelet's node API (HTTPS, for `kubectl logs/exec/port-forward/top`) and its healthz,
/// with the kubelet's flag names.
#[derive(Debug, Default, Args)]
pub struct NodeApiArgs {
    /// Serve the node API [default: true when --kubeconfig is set]
    #[arg(long, value_name = "BOOL")]
    pub node_api: Option<bool>,

    /// Address the node API listens on [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    pub address: Option<String>,

    /// Port of the node API; 0 picks a free one [default: 10250]
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,

    /// Serving certificate (PEM) [default: self-signed, kept in `ROOT_DIR/pki`]
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// Serving certificate's private key (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,

    /// CA that signs the client certificates to accept (kube-apiserver's kubelet client)
    #[arg(long, value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Serve requests without credentials as system:anonymous [default: false]
    #[arg(long, value_name = "BOOL")]
    pub anonymous_auth: Option<bool>,

    /// Check bearer tokens with the API server's TokenReview [default: false]
    #[arg(long, value_name = "BOOL")]
    pub authentication_token_webhook: Option<bool>,

    /// How long a token review is reused [default: 2m]
    #[arg(long, value_name = "DURATION")]
    pub authentication_token_webhook_cache_ttl: Option<String>,

    /// Webhook (a SubjectAccessReview per request) or AlwaysAllow [default: Webhook]
    #[arg(long, value_name = "MODE")]
    pub authorization_mode: Option<String>,

    /// How long an allowed review is reused [default: 5m]
    #[arg(long, value_name = "DURATION")]
    pub authorization_webhook_cache_authorized_ttl: Option<String>,

    /// How long a denied review is reused [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub authorization_webhook_cache_unauthorized_ttl: Option<String>,

    /// Address of the plain-HTTP healthz [default: 127.0.0.1]
    #[arg(long, value_name = "IP")]
    pub healthz_bind_address: Option<String>,

    /// Port of the plain-HTTP healthz; 0 turns it off [default: 10248]
    #[arg(long, value_name = "PORT")]
    pub healthz_port: Option<u16>,
}

/// Where to find a running daemon.
#[derive(Debug, Default, Args)]
pub struct ClientArgs {
    /// Unix socket of the daemon's status API [default: /run/podvisor/podvisor.sock]
    #[arg(long, value_name = "PATH", env = "PODVISOR_STATUS_SOCKET")]
    pub socket: Option<PathBuf>,
}

/// Flags of `podvisor ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
}

/// Flags of `podvisor inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Pod name (`web-node1`, or `namespace/web-node1`, or just `web`)
    pub pod: String,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
}

/// Flags of `podvisor logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Pod name (`web-node1`, `namespace/web-node1` or `web`)
    pub pod: String,
    /// Container name [default: the pod's only or first container]
    #[arg(short, long)]
    pub container: Option<String>,
    /// Keep printing as the log grows
    #[arg(short, long)]
    pub follow: bool,
    /// The previous (dead) instance's log
    #[arg(short, long)]
    pub previous: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
}

/// Flags of `podvisor shutdown`. The config file, `PODVISOR_*` variables and flags are read
/// as by `podvisor run`, with the same names.
#[derive(Debug, Default, Args)]
pub struct ShutdownArgs {
    /// YAML configuration file, the daemon's (see `podvisor config default`)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// CRI endpoint of the container runtime [default: unix:///run/containerd/containerd.sock]
    #[arg(long, value_name = "ENDPOINT")]
    pub runtime_endpoint: Option<String>,

    /// The daemon's state directory, whose lock tells whether it runs [default: /var/lib/podvisor]
    #[arg(long, value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// The daemon's status socket, whose lock tells whether it runs [default: /run/podvisor/podvisor.sock]
    #[arg(long, value_name = "PATH")]
    pub status_socket: Option<PathBuf>,

    /// The whole shutdown's grace period (the kubelet's shutdownGracePeriod); 0: off [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace_period: Option<String>,

    /// Its last part, for critical pods (priority 2000000000 and up) [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace_period_critical_pods: Option<String>,

    /// Print the plan (steps, pods, grace periods) and stop nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Stop the pods even while a podvisor daemon runs on the same root dir or socket (it
    /// starts again, by their restart policy, what this stops)
    #[arg(long)]
    pub force: bool,
}

/// Flags of `podvisor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest files or directories
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Node name for pod names and hashes [default: the hostname, lowercased]
    #[arg(long)]
    pub node_name: Option<String>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

const DIFF_HELP: &str = "\
A FILE replaces the manifest of the same name (other pods stay); a DIR replaces the whole
manifest directory (pods it does not declare are removed); with neither, the manifest
directory is compared with what the daemon runs. Each pod is reported as nothing, update (new
version, nothing restarted), restart (containers restarted, started or stopped in place; the
sandbox stays), replace (new sandbox, with the sandbox-shaping fields that changed), create or
remove, using the daemon's own parser and planner. With the daemon running (status socket),
the comparison is with what it runs (a pod whose file is invalid runs its last good version)
and the images to pull are those not on the node; without it, with the manifest directory as
a daemon starting now would read it, and the images' presence is unknown.

Exit status:
  0   nothing would change
  1   a proposed manifest is invalid (whatever else changes), or the comparison failed
  2   something would change, and every proposed manifest is valid
  64  usage error";

/// Flags of `podvisor diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// A proposed manifest FILE or DIR [default: the manifest directory as it is]
    #[arg(value_name = "FILE|DIR")]
    pub path: Option<PathBuf>,
    /// The manifest directory, when no daemon answers [default: /etc/kubernetes/manifests]
    #[arg(long, value_name = "DIR", env = "PODVISOR_MANIFEST_DIR")]
    pub manifest_dir: Option<PathBuf>,
    /// Node name, when no daemon answers [default: the hostname, lowercased]
    #[arg(long, env = "PODVISOR_NODE_NAME")]
    pub node_name: Option<String>,
    /// Compare with the manifest directory even if a daemon runs
    #[arg(long)]
    pub offline: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
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
            "--register-node=false",
            "--node-labels",
            "a=1,b=2",
        ])
        .expect("valid flags");
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.manifest_dir, Some(PathBuf::from("/m")));
        assert_eq!(args.node_name.as_deref(), Some("Edge-1"));
        assert_eq!(args.resync_period.as_deref(), Some("5s"));
        assert_eq!(args.log_format, Some(LogFormat::Json));
        assert_eq!(args.register_node, Some(false));
        assert_eq!(args.node_labels.as_deref(), Some("a=1,b=2"));
    }

    #[test]
    fn client_commands_parse() {
        let cli =
            Cli::try_parse_from(["podvisor", "logs", "web", "-c", "httpd", "-f", "--previous"])
                .expect("valid");
        let Command::Logs(l) = cli.command else {
            panic!("not logs")
        };
        assert_eq!(
            (l.pod.as_str(), l.container.as_deref(), l.follow, l.previous),
            ("web", Some("httpd"), true, true)
        );
        let cli = Cli::try_parse_from(["podvisor", "ps", "-o", "wide"]).expect("valid");
        assert!(matches!(
            cli.command,
            Command::Ps(PsArgs {
                output: Output::Wide,
                ..
            })
        ));
        assert!(
            Cli::try_parse_from(["podvisor", "check"]).is_err(),
            "check needs a path"
        );
        let cli = Cli::try_parse_from([
            "podvisor",
            "shutdown",
            "--config",
            "/etc/podvisor/config.yaml",
            "--shutdown-grace-period=1m",
            "--dry-run",
        ])
        .expect("valid");
        let Command::Shutdown(s) = cli.command else {
            panic!("not shutdown")
        };
        assert_eq!(
            (
                s.config,
                s.shutdown_grace_period.as_deref(),
                s.dry_run,
                s.force
            ),
            (
                Some(PathBuf::from("/etc/podvisor/config.yaml")),
                Some("1m"),
                true,
                false
            )
        );
    }
}

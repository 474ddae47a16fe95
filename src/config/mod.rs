//! The validated configuration, from three sources: the config file (`--config`, in the spirit
//! of KubeletConfiguration), `PODVISOR_*` environment variables, and flags — each overriding
//! the one before. Defaults live here and only here; everything is checked before any socket
//! is opened.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::cli::{LogFormat, RunArgs};
use crate::images::GcPolicy;
use crate::logfiles::LogSettings;
use crate::nodeshutdown::ShutdownPolicy;
use crate::pod::{CgroupDriver, NodeName};
use crate::runtime::PullSettings;

mod certs;
mod container_logs;
mod image_gc;
mod node_api;
mod node_status;
mod shutdown;

pub use certs::CertSettings;
pub use node_api::{
    AuthenticationFile, AuthorizationFile, DEFAULT_HEALTHZ_PORT, DEFAULT_PORT, NodeApiSettings,
};
pub use node_status::{NodeStatusSettings, parse_node_ips};
pub use shutdown::{PriorityPeriodFile, ShutdownConfig};

/// Default manifest directory, as kubeadm uses.
pub const DEFAULT_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
/// Default CRI endpoint.
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// Default state directory.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/podvisor";
/// Default pod log directory, where kubelet-aware log shippers look.
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";
/// Default directory of container log symlinks, where log shippers look.
pub const DEFAULT_CONTAINER_LOG_LINKS: &str = "/var/log/containers";
/// Default status API socket.
pub const DEFAULT_STATUS_SOCKET: &str = "/run/podvisor/podvisor.sock";
/// Default full rescan period.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(10);
/// Default runtime relist period (the kubelet's PLEG period).
pub const DEFAULT_RELIST: Duration = Duration::from_secs(1);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The config file cannot be read or parsed (unknown keys included).
    #[error("config file {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable that does not parse.
    #[error("{var}: {value:?} is not valid: {message}")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
    /// A duration that does not parse.
    #[error("{key}: {value:?} is not a duration (use e.g. 500ms, 10s, 1m30s)")]
    Duration {
        /// The setting.
        key: &'static str,
        /// What was given.
        value: String,
    },
    /// A duration that parses but cannot work.
    #[error("{key}: must be between {min:?} and {max:?}")]
    Range {
        /// The setting.
        key: &'static str,
        /// Smallest allowed.
        min: Duration,
        /// Largest allowed.
        max: Duration,
    },
    /// The node name is not usable in pod names.
    #[error("node name {0:?} must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.')")]
    NodeName(String),
    /// No node name given and the hostname cannot be read.
    #[error("cannot read the hostname for the node name: {0}; pass --node-name")]
    Hostname(String),
    /// The runtime endpoint is not a unix socket.
    #[error("CRI endpoint {0:?} must be unix:///path/to/socket")]
    Endpoint(String),
    /// The status TCP address does not parse, or is not loopback without permission.
    #[error("status address {0:?}: {1}")]
    StatusAddress(String, &'static str),
    /// Node labels that do not parse.
    #[error("node labels {0:?} must be key=value pairs separated by commas")]
    Labels(String),
    /// A node label in the kubernetes.io or k8s.io namespaces that a node may not set itself
    /// (NodeRestriction would refuse the Node).
    #[error(
        "node label {0:?}: a node may set only kubelet.kubernetes.io/ and node.kubernetes.io/ labels, and the well-known topology, os, arch and hostname ones, in the kubernetes.io and k8s.io namespaces"
    )]
    RestrictedLabel(String),
    /// A taint that does not parse or is not valid.
    #[error("taint {0:?}: {1}")]
    Taint(String, &'static str),
    /// Not a cgroup driver.
    #[error("cgroupDriver: {0}")]
    CgroupDriver(String),
    /// A `--node-ip` that cannot be used.
    #[error("--node-ip {0:?}: {1}")]
    NodeIp(String, String),
    /// An eviction threshold that cannot be read.
    #[error("{0}")]
    Eviction(String),
    /// An image garbage collection setting that cannot be used.
    #[error("{0}")]
    ImageGc(String),
    /// Pull settings that cannot be used together.
    #[error("{0}")]
    Pulls(String),
    /// A container log setting that cannot be used.
    #[error("{0}")]
    ContainerLogs(String),
    /// A node API or healthz setting that cannot be used.
    #[error("node API: {0}")]
    NodeApi(String),
    /// Certificate settings that cannot be used together.
    #[error("certificates: {0}")]
    Certificates(&'static str),
    /// A graceful node shutdown setting that cannot be used.
    #[error("{0}")]
    Shutdown(String),
    /// A credential provider config without the directory of its plugins.
    #[error("--image-credential-provider-config needs --image-credential-provider-bin-dir")]
    CredentialProviderBinDir,
}

/// The config file, as written: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// Manifest directory.
    pub static_pod_path: Option<PathBuf>,
    /// CRI endpoint.
    pub runtime_endpoint: Option<String>,
    /// CRI image service endpoint, when not the runtime's.
    pub image_service_endpoint: Option<String>,
    /// CredentialProviderConfig file or directory.
    pub image_credential_provider_config: Option<PathBuf>,
    /// Credential provider plugin directory.
    pub image_credential_provider_bin_dir: Option<PathBuf>,
    /// Pull progress timeout.
    pub image_pull_progress_timeout: Option<String>,
    /// Directory whose changes show pull progress.
    pub image_pull_progress_dir: Option<PathBuf>,
    /// One pull at a time (the kubelet's default).
    pub serialize_image_pulls: Option<bool>,
    /// Pulls at once when not serialized.
    pub max_parallel_image_pulls: Option<usize>,
    /// Health-gated rollback for pods that do not say.
    pub rollback_on_failure: Option<bool>,
    /// How long a new version has to become ready before it is rolled back.
    pub rollback_ready_timeout: Option<String>,
    /// Node name.
    pub node_name: Option<String>,
    /// Full manifest rescan period.
    pub resync_period: Option<String>,
    /// Runtime relist period.
    pub relist_period: Option<String>,
    /// State directory.
    pub root_dir: Option<PathBuf>,
    /// Pod log directory.
    pub pod_log_dir: Option<PathBuf>,
    /// Where container log symlinks go (empty: none).
    pub container_log_links: Option<PathBuf>,
    /// `containerLogMaxSize` (a quantity; negative: no rotation).
    pub container_log_max_size: Option<String>,
    /// `containerLogMaxFiles`.
    pub container_log_max_files: Option<usize>,
    /// `containerLogMonitorInterval`.
    pub container_log_monitor_interval: Option<String>,
    /// `containerLogMaxWorkers`.
    pub container_log_max_workers: Option<usize>,
    /// `imageGCHighThresholdPercent`.
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<u8>,
    /// `imageGCLowThresholdPercent`.
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<u8>,
    /// `imageMinimumGCAge`.
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<String>,
    /// `imageMaximumGCAge`.
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<LogFormat>,
    /// Status API socket.
    pub status_socket: Option<PathBuf>,
    /// Status API TCP address.
    pub status_address: Option<String>,
    /// Allow a non-loopback status address.
    pub status_allow_remote: Option<bool>,
    /// Run manifests that fail the ownership and mode checks.
    pub allow_insecure_manifests: Option<bool>,
    /// `cgroupfs` or `systemd`, as KubeletConfiguration's `cgroupDriver`.
    pub cgroup_driver: Option<String>,
    /// Kubeconfig for mirror pods.
    pub kubeconfig: Option<PathBuf>,
    /// Create the Node object.
    pub register_node: Option<bool>,
    /// Node labels.
    pub node_labels: Option<BTreeMap<String, String>>,
    /// Taints for a Node podvisor registers, as KubeletConfiguration's `registerWithTaints`.
    pub register_with_taints: Option<Vec<TaintFile>>,
    /// Serve the node API (default: when a kubeconfig is set).
    pub serve_node_api: Option<bool>,
    /// Node API address.
    pub address: Option<String>,
    /// Node API port.
    pub port: Option<u16>,
    /// Node API serving certificate.
    pub tls_cert_file: Option<PathBuf>,
    /// Its key.
    pub tls_private_key_file: Option<PathBuf>,
    /// Node API authentication, as KubeletConfiguration's.
    pub authentication: Option<AuthenticationFile>,
    /// Node API authorization, as KubeletConfiguration's.
    pub authorization: Option<AuthorizationFile>,
    /// Plain-HTTP healthz address.
    pub healthz_bind_address: Option<String>,
    /// Plain-HTTP healthz port (0: off).
    pub healthz_port: Option<u16>,
    /// `evictionHard`: signal → amount (`memory.available: 100Mi`), the pressure conditions.
    pub eviction_hard: Option<BTreeMap<String, String>>,
    /// `evictionPressureTransitionPeriod`.
    pub eviction_pressure_transition_period: Option<String>,
    /// Bootstrap kubeconfig (the kubelet's `--bootstrap-kubeconfig`).
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Renew the client certificate, as KubeletConfiguration's.
    pub rotate_certificates: Option<bool>,
    /// Request the serving certificate, as KubeletConfiguration's.
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    /// Certificate directory (the kubelet's `--cert-dir`).
    pub cert_dir: Option<PathBuf>,
    /// `shutdownGracePeriod`.
    pub shutdown_grace_period: Option<String>,
    /// `shutdownGracePeriodCriticalPods`.
    pub shutdown_grace_period_critical_pods: Option<String>,
    /// `shutdownGracePeriodByPodPriority`.
    pub shutdown_grace_period_by_pod_priority: Option<Vec<PriorityPeriodFile>>,
}

impl ConfigFile {
    /// Reads and parses a config file, strictly.
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
        let err = |message: String| ConfigError::File {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        if text.trim().is_empty() {
            return Ok(ConfigFile::default());
        }
        serde_saphyr::from_str(&text).map_err(|e| err(e.without_snippet().to_string()))
    }
}

/// A taint as the config file writes it (`{key, value, effect}`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaintFile {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A Node taint, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeTaint {
    /// Key.
    pub key: String,
    /// Value (may be empty).
    pub value: String,
    /// Effect.
    pub effect: String,
}

/// Parses and checks `key=value:Effect,key2:Effect`, as `--register-with-taints` takes them.
pub fn parse_taints(s: &str) -> Result<Vec<NodeTaint>, ConfigError> {
    s.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let (kv, effect) = t
                .rsplit_once(':')
                .ok_or_else(|| ConfigError::Taint(t.to_owned(), "no :Effect"))?;
            let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
            check_taint(TaintFile {
                key: key.to_owned(),
                value: value.to_owned(),
                effect: effect.to_owned(),
            })
        })
        .collect()
}

fn check_taint(t: TaintFile) -> Result<NodeTaint, ConfigError> {
    let text = format!("{}={}:{}", t.key, t.value, t.effect);
    if !matches!(
        t.effect.as_str(),
        "NoSchedule" | "PreferNoSchedule" | "NoExecute"
    ) {
        return Err(ConfigError::Taint(
            text,
            "effect must be NoSchedule, PreferNoSchedule or NoExecute",
        ));
    }
    let (prefix, name) = t.key.rsplit_once('/').unwrap_or(("", &t.key));
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric());
    if !name_ok || (t.key.contains('/') && (prefix.is_empty() || !valid_node_name(prefix))) {
        return Err(ConfigError::Taint(text, "key must be a qualified name"));
    }
    if t.value.len() > 63
        || !t
            .value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ConfigError::Taint(text, "value must be a label value"));
    }
    Ok(NodeTaint {
        key: t.key,
        value: t.value,
        effect: t.effect,
    })
}

/// Mirror-pod settings, present when a kubeconfig is configured.
#[derive(Clone, Debug, PartialEq)]
pub struct MirrorSettings {
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
    /// Create (or adopt) the Node object.
    pub register_node: bool,
    /// Extra Node labels.
    pub node_labels: BTreeMap<String, String>,
    /// Taints for a Node podvisor registers.
    pub register_taints: Vec<NodeTaint>,
    /// The node's certificates.
    pub certs: CertSettings,
}

/// Everything `podvisor run` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Manifest directory.
    pub manifest_dir: PathBuf,
    /// CRI endpoint.
    pub runtime_endpoint: String,
    /// The image service's endpoint, when it is not the runtime's.
    pub image_service_endpoint: Option<String>,
    /// Credential provider plugins: their config and their binaries' directory.
    pub credential_providers: Option<(PathBuf, PathBuf)>,
    /// How pulls are watched for progress.
    pub pulls: PullSettings,
    /// Health-gated rollback.
    pub rollback: crate::reconcile::RollbackPolicy,
    /// Node name.
    pub node_name: NodeName,
    /// Full manifest rescan period.
    pub resync_period: Duration,
    /// Runtime relist period.
    pub relist_period: Duration,
    /// State directory.
    pub root_dir: PathBuf,
    /// Pod log directory.
    pub pod_log_dir: PathBuf,
    /// Where container log symlinks go, if anywhere.
    pub container_log_links: Option<PathBuf>,
    /// Container log rotation.
    pub container_logs: LogSettings,
    /// Image garbage collection.
    pub image_gc: GcPolicy,
    /// Log format.
    pub log_format: LogFormat,
    /// Status API unix socket.
    pub status_socket: PathBuf,
    /// Status API TCP address, if any.
    pub status_address: Option<SocketAddr>,
    /// Whether manifests failing the ownership and mode checks still run.
    pub allow_insecure_manifests: bool,
    /// The configured cgroup driver; `None`: follow the runtime.
    pub cgroup_driver: Option<CgroupDriver>,
    /// Mirror pods, if configured.
    pub mirror: Option<MirrorSettings>,
    /// The kubelet's node API, when served.
    pub node_api: Option<NodeApiSettings>,
    /// The plain-HTTP healthz address, when served.
    pub healthz: Option<SocketAddr>,
    /// Node addresses and the pressure thresholds.
    pub node_status: NodeStatusSettings,
    /// Graceful node shutdown's priority groups: checked here, used by `podvisor shutdown`.
    pub shutdown: ShutdownPolicy,
}

/// How many pulls may run at once, checked as the kubelet checks `serializeImagePulls`
/// (default true: one) and `maxParallelImagePulls` (only without serializing; unset: no
/// limit).
fn parallel_pulls(
    serialize: Option<bool>,
    max: Option<usize>,
) -> Result<Option<usize>, ConfigError> {
    match (serialize.unwrap_or(true), max) {
        (_, Some(0)) => Err(ConfigError::Pulls(
            "maxParallelImagePulls: must be at least 1".to_owned(),
        )),
        (true, Some(n)) if n > 1 => Err(ConfigError::Pulls(format!(
            "maxParallelImagePulls: {n} needs serializeImagePulls: false"
        ))),
        (true, _) => Ok(Some(1)),
        (false, max) => Ok(max),
    }
}

/// Parses a duration as `humantime` writes them (`500ms`, `10s`, `1m30s`, `2h`), or a bare
/// whole number of seconds. `None` for anything else, including values too large to hold.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(Duration::from_secs);
    }
    humantime::parse_duration(s).ok()
}

fn duration(
    key: &'static str,
    value: Option<String>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = match value {
        None => default,
        Some(v) => parse_duration(&v).ok_or(ConfigError::Duration { key, value: v })?,
    };
    if d < min || d > max {
        return Err(ConfigError::Range { key, min, max });
    }
    Ok(d)
}

/// Whether a CRI endpoint is a unix socket (`unix:///path` or a bare absolute path).
fn is_unix(endpoint: &str) -> bool {
    endpoint
        .strip_prefix("unix://")
        .unwrap_or(endpoint)
        .starts_with('/')
}

/// The CRI endpoint: the flag, else `PODVISOR_RUNTIME_ENDPOINT`, else the file, else the
/// default; a unix socket.
fn runtime_endpoint(
    flag: Option<String>,
    file: &ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let endpoint = flag
        .or_else(|| env("PODVISOR_RUNTIME_ENDPOINT"))
        .or_else(|| file.runtime_endpoint.clone())
        .unwrap_or_else(|| DEFAULT_RUNTIME_ENDPOINT.to_owned());
    if is_unix(&endpoint) {
        Ok(endpoint)
    } else {
        Err(ConfigError::Endpoint(endpoint))
    }
}

fn valid_node_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Labels a node may set on itself in the `kubernetes.io`/`k8s.io` namespaces, as the
/// kubelet's `--node-labels` check allows.
const ALLOWED_NODE_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
];

fn check_node_label(key: &str) -> Result<(), ConfigError> {
    let Some((prefix, _)) = key.split_once('/') else {
        return Ok(());
    };
    let in_k8s = |ns: &str| prefix == ns || prefix.ends_with(&format!(".{ns}"));
    if !(in_k8s("kubernetes.io") || in_k8s("k8s.io")) {
        return Ok(());
    }
    let allowed_ns = ["kubelet.kubernetes.io", "node.kubernetes.io"]
        .iter()
        .any(|ns| prefix == *ns || prefix.ends_with(&format!(".{ns}")));
    if allowed_ns || ALLOWED_NODE_LABELS.contains(&key) {
        Ok(())
    } else {
        Err(ConfigError::RestrictedLabel(key.to_owned()))
    }
}

/// Parses `key=value,key2=value2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| ConfigError::Labels(s.to_owned()))?;
        if k.is_empty() {
            return Err(ConfigError::Labels(s.to_owned()));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    Ok(out)
}

fn env_bool(var: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<bool>, ConfigError> {
    match env(var) {
        None => Ok(None),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(Some(true)),
            "0" | "false" | "no" => Ok(Some(false)),
            _ => Err(ConfigError::Env {
                var: var.to_owned(),
                value: v,
                message: "expected true or false".into(),
            }),
        },
    }
}

impl Config {
    /// Merges the sources (file < environment < flags), applies defaults and validates.
    /// `env` reads a variable; `hostname` is consulted only when no node name is given.
    pub fn from_sources(
        args: &RunArgs,
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
        hostname: impl FnOnce() -> Result<String, String>,
    ) -> Result<Config, ConfigError> {
        let pick = |flag: Option<String>, var: &str, file: Option<String>| {
            flag.or_else(|| env(var)).or(file)
        };
        let pick_path = |flag: &Option<PathBuf>, var: &str, file: Option<PathBuf>| {
            flag.clone()
                .or_else(|| env(var).map(PathBuf::from))
                .or(file)
        };

        // before the file's values are taken apart below
        let kubeconfig = pick_path(
            &args.kubeconfig,
            "PODVISOR_KUBECONFIG",
            file.kubeconfig.clone(),
        );
        let healthz = node_api::healthz(&args.node_api, &file)?;
        let runtime_endpoint = runtime_endpoint(args.runtime_endpoint.clone(), &file, env)?;
        let shutdown = shutdown::policy(None, None, &file, env)?;
        let cgroup_driver = pick(
            args.cgroup_driver.clone(),
            "PODVISOR_CGROUP_DRIVER",
            file.cgroup_driver.clone(),
        )
        .map(|d| d.parse::<CgroupDriver>().map_err(ConfigError::CgroupDriver))
        .transpose()?;
        let node_status = node_status::node_status(&args.node_status, &file, env)?;
        let container_logs = container_logs::container_logs(&args.container_logs, &file)?;
        let image_gc = image_gc::image_gc(&args.image_gc, &file)?;
        let node_api = node_api::node_api(&args.node_api, &file, env, kubeconfig.is_some())?;
        let root_dir = pick_path(&args.root_dir, "PODVISOR_ROOT_DIR", file.root_dir.clone())
            .unwrap_or_else(|| DEFAULT_ROOT_DIR.into());
        let cert_settings = certs::certs(
            &args.certs,
            &file,
            env,
            &root_dir,
            kubeconfig.is_some(),
            node_api.is_some(),
        )?;
        let node = match pick(args.node_name.clone(), "PODVISOR_NODE_NAME", file.node_name) {
            Some(n) => n,
            None => hostname().map_err(ConfigError::Hostname)?,
        };
        let node_name = NodeName::new(&node);
        if !valid_node_name(node_name.as_str()) {
            return Err(ConfigError::NodeName(node));
        }
        let image_service_endpoint = pick(
            args.image_service_endpoint.clone(),
            "PODVISOR_IMAGE_SERVICE_ENDPOINT",
            file.image_service_endpoint.clone(),
        )
        .filter(|e| !e.is_empty());
        if let Some(e) = image_service_endpoint.as_ref().filter(|e| !is_unix(e)) {
            return Err(ConfigError::Endpoint(e.clone()));
        }
        let credential_providers = match (
            pick_path(
                &args.image_credential_provider_config,
                "PODVISOR_IMAGE_CREDENTIAL_PROVIDER_CONFIG",
                file.image_credential_provider_config.clone(),
            )
            .filter(|p| !p.as_os_str().is_empty()),
            pick_path(
                &args.image_credential_provider_bin_dir,
                "PODVISOR_IMAGE_CREDENTIAL_PROVIDER_BIN_DIR",
                file.image_credential_provider_bin_dir.clone(),
            )
            .filter(|p| !p.as_os_str().is_empty()),
        ) {
            (Some(config), Some(bin)) => Some((config, bin)),
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::CredentialProviderBinDir),
        };
        let pulls = PullSettings {
            progress_timeout: duration(
                "imagePullProgressTimeout",
                pick(
                    args.image_pull_progress_timeout.clone(),
                    "PODVISOR_IMAGE_PULL_PROGRESS_TIMEOUT",
                    file.image_pull_progress_timeout.clone(),
                ),
                PullSettings::DEFAULT_PROGRESS_TIMEOUT,
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            )?,
            progress_dir: pick_path(
                &args.image_pull_progress_dir,
                "PODVISOR_IMAGE_PULL_PROGRESS_DIR",
                file.image_pull_progress_dir.clone(),
            )
            .filter(|p| !p.as_os_str().is_empty()),
            parallel: parallel_pulls(
                args.serialize_image_pulls.or(file.serialize_image_pulls),
                args.max_parallel_image_pulls
                    .or(file.max_parallel_image_pulls),
            )?,
        };
        let rollback = crate::reconcile::RollbackPolicy {
            enabled: args
                .rollback_on_failure
                .or(file.rollback_on_failure)
                .unwrap_or(false),
            ready_timeout: duration(
                "rollbackReadyTimeout",
                pick(
                    args.rollback_ready_timeout.clone(),
                    "PODVISOR_ROLLBACK_READY_TIMEOUT",
                    file.rollback_ready_timeout.clone(),
                ),
                crate::reconcile::RollbackPolicy::default().ready_timeout,
                Duration::from_secs(1),
                Duration::from_secs(24 * 3600),
            )?,
        };
        let log_format = match (args.log_format, env("PODVISOR_LOG_FORMAT"), file.log_format) {
            (Some(f), _, _) => f,
            (None, Some(v), _) => match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        var: "PODVISOR_LOG_FORMAT".into(),
                        value: v,
                        message: "expected text or json".into(),
                    });
                }
            },
            (None, None, f) => f.unwrap_or(LogFormat::Text),
        };
        let allow_remote = args.status_allow_remote
            || env_bool("PODVISOR_STATUS_ALLOW_REMOTE", env)?
                .or(file.status_allow_remote)
                .unwrap_or(false);
        let status_address = match pick(
            args.status_address.clone(),
            "PODVISOR_STATUS_ADDRESS",
            file.status_address,
        )
        .filter(|a| !a.is_empty())
        {
            None => None,
            Some(a) => {
                let addr: SocketAddr = a
                    .parse()
                    .map_err(|_| ConfigError::StatusAddress(a.clone(), "not an IP:port address"))?;
                if !addr.ip().is_loopback() && !allow_remote {
                    return Err(ConfigError::StatusAddress(
                        a,
                        "not a loopback address; add --status-allow-remote to serve it anyway",
                    ));
                }
                Some(addr)
            }
        };
        let allow_insecure_manifests = args.allow_insecure_manifests
            || env_bool("PODVISOR_ALLOW_INSECURE_MANIFESTS", env)?
                .or(file.allow_insecure_manifests)
                .unwrap_or(false);
        let mirror = match kubeconfig {
            None => None,
            Some(kubeconfig) => {
                let register_node = match args.register_node {
                    Some(b) => b,
                    None => env_bool("PODVISOR_REGISTER_NODE", env)?
                        .or(file.register_node)
                        .unwrap_or(true),
                };
                let node_labels = match args
                    .node_labels
                    .clone()
                    .or_else(|| env("PODVISOR_NODE_LABELS"))
                {
                    Some(s) => parse_labels(&s)?,
                    None => file.node_labels.unwrap_or_default(),
                };
                for key in node_labels.keys() {
                    check_node_label(key)?;
                }
                let register_taints = match args
                    .register_with_taints
                    .clone()
                    .or_else(|| env("PODVISOR_REGISTER_WITH_TAINTS"))
                {
                    Some(s) => parse_taints(&s)?,
                    None => file
                        .register_with_taints
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(check_taint)
                        .collect::<Result<_, _>>()?,
                };
                Some(MirrorSettings {
                    kubeconfig,
                    register_node,
                    node_labels,
                    register_taints,
                    certs: cert_settings,
                })
            }
        };
        Ok(Config {
            manifest_dir: pick_path(
                &args.manifest_dir,
                "PODVISOR_MANIFEST_DIR",
                file.static_pod_path,
            )
            .unwrap_or_else(|| DEFAULT_MANIFEST_DIR.into()),
            runtime_endpoint,
            image_service_endpoint,
            credential_providers,
            pulls,
            rollback,
            node_name,
            resync_period: duration(
                "resyncPeriod",
                pick(
                    args.resync_period.clone(),
                    "PODVISOR_RESYNC_PERIOD",
                    file.resync_period,
                ),
                DEFAULT_RESYNC,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            )?,
            relist_period: duration(
                "relistPeriod",
                pick(
                    args.relist_period.clone(),
                    "PODVISOR_RELIST_PERIOD",
                    file.relist_period,
                ),
                DEFAULT_RELIST,
                Duration::from_millis(50),
                Duration::from_secs(300),
            )?,
            root_dir,
            pod_log_dir: pick_path(&args.pod_log_dir, "PODVISOR_POD_LOG_DIR", file.pod_log_dir)
                .unwrap_or_else(|| DEFAULT_POD_LOG_DIR.into()),
            container_log_links: match pick_path(
                &args.container_log_links,
                "PODVISOR_CONTAINER_LOG_LINKS",
                file.container_log_links,
            ) {
                None => Some(DEFAULT_CONTAINER_LOG_LINKS.into()),
                Some(p) if p.as_os_str().is_empty() => None,
                Some(p) => Some(p),
            },
            container_logs,
            image_gc,
            log_format,
            status_socket: pick_path(
                &args.status_socket,
                "PODVISOR_STATUS_SOCKET",
                file.status_socket,
            )
            .unwrap_or_else(|| DEFAULT_STATUS_SOCKET.into()),
            status_address,
            allow_insecure_manifests,
            cgroup_driver,
            mirror,
            node_api,
            healthz,
            node_status,
            shutdown,
        })
    }

    /// The config file named by `--config` or `PODVISOR_CONFIG`, if any.
    pub fn file_path(args: &RunArgs, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        args.config
            .clone()
            .or_else(|| env("PODVISOR_CONFIG").map(PathBuf::from))
    }
}

/// A complete config file with every setting at its default, each explained.
pub fn default_config_file() -> String {
    format!(
        "# podvisor configuration (podvisor run --config FILE).
# Every key is optional; unknown keys are errors. Precedence: this file < PODVISOR_* environment
# variables (PODVISOR_MANIFEST_DIR, PODVISOR_NODE_NAME, ...) < command-line flags.

# Directory of static pod manifests (*.yaml, *.yml, *.json).
staticPodPath: {DEFAULT_MANIFEST_DIR}
# CRI endpoint of the container runtime.
runtimeEndpoint: {DEFAULT_RUNTIME_ENDPOINT}
# CRI endpoint of the image service, when it is not the runtime's (the kubelet's
# imageServiceEndpoint).
# imageServiceEndpoint: unix:///run/images.sock
# Credential provider plugins, as the kubelet's --image-credential-provider-config (a
# CredentialProviderConfig file or a directory of them) and --image-credential-provider-bin-dir.
# Docker config files (config.json, .dockercfg) are also read from rootDir, the working
# directory, ~/.docker and /.docker, as the kubelet reads them.
# imageCredentialProviderConfig: /etc/kubernetes/credential-providers.yaml
# imageCredentialProviderBinDir: /usr/libexec/kubernetes/credential-providers
# A pull whose downloads show no progress for this long is cancelled (ErrImagePull, then
# back-off). Progress is read from containerd's ingest directory beside its image filesystem,
# or from imagePullProgressDir; with neither, this limits the whole pull.
imagePullProgressTimeout: 5m
# imagePullProgressDir: /var/lib/containerd/io.containerd.content.v1.content/ingest
# One pull at a time, as the kubelet by default; with serializeImagePulls: false,
# maxParallelImagePulls pulls at once (unset: no limit).
serializeImagePulls: true
# maxParallelImagePulls: 5
# Health-gated rollback, off by default: a pod's new version that crashes, or is not started
# and ready within rollbackReadyTimeout (plus its startup probes' budget), is replaced by its
# last healthy version until its file changes again. A pod's podvisor.dev/rollback annotation
# (true or false) overrides rollbackOnFailure for that pod.
rollbackOnFailure: false
rollbackReadyTimeout: 2m
# Node name appended to pod names (<name>-<node>); empty means the hostname, lowercased.
# nodeName: node1
# Full rescan of the manifest directory, whatever inotify reports.
resyncPeriod: 10s
# How often the runtime is listed to notice container exits (events make it faster).
relistPeriod: 1s
# podvisor's state directory: pod directories live in <rootDir>/pods/<uid>.
rootDir: {DEFAULT_ROOT_DIR}
# Where pod log directories are created.
podLogDir: {DEFAULT_POD_LOG_DIR}
# Symlinks <pod>_<namespace>_<container>-<id>.log to each container's log, as the kubelet
# makes them for log shippers; \"\" for none.
containerLogLinks: {DEFAULT_CONTAINER_LOG_LINKS}
# Container log rotation, as the kubelet's: a log is rotated at containerLogMaxSize (negative:
# never) and gzip-compressed; containerLogMaxFiles files are kept per container, the live one
# included. Sizes are checked every containerLogMonitorInterval, by containerLogMaxWorkers
# workers.
containerLogMaxSize: 10Mi
containerLogMaxFiles: 5
containerLogMonitorInterval: 10s
containerLogMaxWorkers: 1
# Image garbage collection, as the kubelet's: when the image filesystem is
# imageGCHighThresholdPercent full (100: never), unused images go, least recently used first,
# until it is down to imageGCLowThresholdPercent; an image is kept imageMinimumGCAge after it
# first appears; imageMaximumGCAge (0: off) removes images unused that long. An image a
# manifest in staticPodPath names is never removed, even while its pod is not running.
imageGCHighThresholdPercent: 85
imageGCLowThresholdPercent: 80
imageMinimumGCAge: 2m
imageMaximumGCAge: 0s
# Log format: text or json. RUST_LOG sets levels (default info).
logFormat: text
# Unix socket of the local status API (mode 0600).
statusSocket: {DEFAULT_STATUS_SOCKET}
# Also serve the status API over TCP at this address (loopback only unless statusAllowRemote).
statusAddress: \"\"
statusAllowRemote: false
# Run manifests owned by a non-root user or writable by group or others (refused when root).
allowInsecureManifests: false
# cgroupfs or systemd, as the runtime is configured (kubeadm: systemd). Unset: the runtime's
# own when it says it (CRI RuntimeConfig: containerd 1.7+, CRI-O), else cgroupfs.
# cgroupDriver: systemd
# Kubeconfig of an API server to mirror static pods into; empty: fully standalone.
# kubeconfig: /etc/kubernetes/kubelet.conf
# With a kubeconfig: create (or adopt) the Node object, with these extra labels.
registerNode: true
nodeLabels: {{}}
# Taints for a Node podvisor registers (only at registration), e.g.
# [{{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}}].
registerWithTaints: []
# With a kubeconfig, the node's certificates, as the kubelet keeps them (in certDir, default
# <rootDir>/pki): TLS bootstrap with a bootstrap token while the kubeconfig has no valid client
# certificate (then the kubeconfig is written), renewal of the client certificate at 70-90 % of
# its life, and a serving certificate for the node API from the kubernetes.io/kubelet-serving
# signer (someone must approve those CSRs: kubectl certificate approve).
# bootstrapKubeconfig: /etc/kubernetes/bootstrap-kubelet.conf
rotateCertificates: false
serverTLSBootstrap: false
# certDir: /var/lib/podvisor/pki

# The kubelet's node API (HTTPS: kubectl logs, exec, attach, port-forward, top), on by default
# with a kubeconfig. Keys as KubeletConfiguration's.
# serveNodeApi: true
address: 0.0.0.0
port: {DEFAULT_PORT}
# Serving certificate; without one, a self-signed one is made in <rootDir>/pki.
# tlsCertFile: /var/lib/podvisor/pki/podvisor.crt
# tlsPrivateKeyFile: /var/lib/podvisor/pki/podvisor.key
authentication:
  # The CA of kube-apiserver's kubelet client certificate (kubeadm: /etc/kubernetes/pki/ca.crt).
  x509: {{}}
  # Bearer tokens checked with the API server's TokenReview.
  webhook:
    enabled: false
    cacheTTL: 2m
  # Requests without credentials: refused (401) unless enabled.
  anonymous:
    enabled: false
authorization:
  # Webhook: a SubjectAccessReview per request; AlwaysAllow: anyone authenticated.
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 5m
    cacheUnauthorizedTTL: 30s
# Plain-HTTP healthz, as the kubelet's (kubeadm's wait-control-plane polls it); port 0: off.
healthzBindAddress: 127.0.0.1
healthzPort: {DEFAULT_HEALTHZ_PORT}

# The Node's MemoryPressure, DiskPressure and PIDPressure conditions: on while a figure is
# below its threshold, and for evictionPressureTransitionPeriod after. podvisor evicts nothing
# (static pods are never evicted). A map given here replaces these defaults as a whole, as
# under the kubelet; pid.available (e.g. 10%) has no default threshold.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 10%
  nodefs.inodesFree: 5%
  imagefs.available: 15%
  imagefs.inodesFree: 5%
evictionPressureTransitionPeriod: 5m

# Graceful node shutdown, by the kubelet's keys: what `podvisor shutdown` does (the unit
# systemd/podvisor-shutdown.service runs it as the host shuts down, before the runtime stops).
# Pods stop by priority, lowest first: pods under 2000000000 get shutdownGracePeriod minus
# shutdownGracePeriodCriticalPods, critical pods the rest, each pod at most its own
# terminationGracePeriodSeconds; the next group starts once the last is done or its time is
# up. 0s: off. The kubelet's defaults are 0s (off); podvisor's, with none of these keys set,
# are these. A pod's priority is spec.priority, else its priorityClassName if
# system-node-critical (2000001000) or system-cluster-critical (2000000000), else 0: other
# classes live in an API server, which a static pod cannot ask.
shutdownGracePeriod: 30s
shutdownGracePeriodCriticalPods: 10s
# Or groups of your own, instead of both (each from its priority up to the next's), e.g.
# [{{priority: 2000000000, shutdownGracePeriodSeconds: 10}}, {{priority: 0, shutdownGracePeriodSeconds: 20}}].
# Within a group, pods stop in steps by their podvisor.dev/shutdown-order annotation (an
# integer, higher later; default 0, and 1 for pods labelled component: etcd, so that etcd
# stops after the API server that writes to it); each step may take the group's time.
# shutdownGracePeriodByPodPriority: []
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Result<String, String> {
        Ok("My-Host".to_owned())
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn config(
        args: &RunArgs,
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::from_sources(args, file, env, host)
    }

    #[test]
    fn pulls_are_serialized_unless_told_otherwise_as_under_the_kubelet() {
        assert_eq!(parallel_pulls(None, None), Ok(Some(1)));
        assert_eq!(parallel_pulls(Some(true), Some(1)), Ok(Some(1)));
        assert_eq!(parallel_pulls(Some(false), None), Ok(None));
        assert_eq!(parallel_pulls(Some(false), Some(3)), Ok(Some(3)));
        for (serialize, max) in [(None, Some(3)), (Some(false), Some(0))] {
            let e = parallel_pulls(serialize, max).expect_err("refused");
            assert!(e.to_string().starts_with("maxParallelImagePulls"), "{e}");
        }
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = config(&RunArgs::default(), ConfigFile::default(), &no_env).expect("valid");
        assert_eq!(c.manifest_dir, PathBuf::from("/etc/kubernetes/manifests"));
        assert_eq!(c.runtime_endpoint, "unix:///run/containerd/containerd.sock");
        assert_eq!(c.node_name.as_str(), "my-host");
        assert_eq!(c.resync_period, Duration::from_secs(10));
        assert_eq!(c.relist_period, Duration::from_secs(1));
        assert_eq!(c.pod_log_dir, PathBuf::from("/var/log/pods"));
        assert_eq!(c.root_dir, PathBuf::from("/var/lib/podvisor"));
        assert_eq!(
            c.status_socket,
            PathBuf::from("/run/podvisor/podvisor.sock")
        );
        assert_eq!(
            (
                c.status_address,
                c.allow_insecure_manifests,
                c.mirror.clone()
            ),
            (None, false, None)
        );
    }

    #[test]
    fn the_printed_default_file_parses_strictly_to_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("podvisor.yaml");
        std::fs::write(&path, default_config_file()).expect("write");
        let file = ConfigFile::read(&path).expect("the default file is valid");
        assert_eq!(
            config(&RunArgs::default(), file, &no_env),
            config(&RunArgs::default(), ConfigFile::default(), &no_env)
        );
    }

    #[test]
    fn credential_providers_and_pull_progress_come_from_flags_env_or_file_issue_15() {
        let c = config(&RunArgs::default(), ConfigFile::default(), &no_env).expect("valid");
        assert_eq!(c.credential_providers, None);
        assert_eq!(c.pulls, PullSettings::default());
        let file = ConfigFile {
            image_credential_provider_config: Some("/etc/providers.yaml".into()),
            image_credential_provider_bin_dir: Some("/usr/libexec/providers".into()),
            image_pull_progress_timeout: Some("30s".into()),
            ..Default::default()
        };
        let env = |k: &str| {
            (k == "PODVISOR_IMAGE_PULL_PROGRESS_DIR").then(|| "/var/lib/ingest".to_owned())
        };
        let args = RunArgs {
            image_pull_progress_timeout: Some("2m".into()),
            ..Default::default()
        };
        let c = config(&args, file, &env).expect("valid");
        assert_eq!(
            c.credential_providers,
            Some((
                PathBuf::from("/etc/providers.yaml"),
                PathBuf::from("/usr/libexec/providers")
            ))
        );
        assert_eq!(c.pulls.progress_timeout, Duration::from_secs(120));
        assert_eq!(c.pulls.progress_dir, Some(PathBuf::from("/var/lib/ingest")));
    }

    #[test]
    fn a_credential_provider_config_without_its_bin_dir_is_refused_issue_15() {
        let args = RunArgs {
            image_credential_provider_config: Some("/etc/providers.yaml".into()),
            ..Default::default()
        };
        assert!(matches!(
            config(&args, ConfigFile::default(), &no_env),
            Err(ConfigError::CredentialProviderBinDir)
        ));
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "staticPodPath: /m\nresyncPeriodd: 5s\n").expect("write");
        let err = ConfigFile::read(&path).unwrap_err();
        assert!(err.to_string().contains("resyncPeriodd"), "{err}");
    }

    #[test]
    fn flags_beat_environment_which_beats_the_file() {
        let file = ConfigFile {
            static_pod_path: Some("/from-file".into()),
            resync_period: Some("3s".into()),
            node_name: Some("file-node".into()),
            relist_period: Some("2s".into()),
            ..Default::default()
        };
        let env = |k: &str| match k {
            "PODVISOR_RESYNC_PERIOD" => Some("4s".to_owned()),
            "PODVISOR_NODE_NAME" => Some("env-node".to_owned()),
            _ => None,
        };
        let args = RunArgs {
            node_name: Some("flag-node".into()),
            ..Default::default()
        };
        let c = config(&args, file, &env).expect("valid");
        assert_eq!(c.manifest_dir, PathBuf::from("/from-file"), "file only");
        assert_eq!(c.relist_period, Duration::from_secs(2), "file only");
        assert_eq!(c.resync_period, Duration::from_secs(4), "env beats file");
        assert_eq!(c.node_name.as_str(), "flag-node", "flag beats env and file");
    }

    #[test]
    fn mirror_settings_come_with_a_kubeconfig() {
        let args = RunArgs {
            kubeconfig: Some("/etc/kubernetes/kubelet.conf".into()),
            node_labels: Some("role=edge, zone=a".into()),
            ..Default::default()
        };
        let c = config(&args, ConfigFile::default(), &|k| {
            (k == "PODVISOR_REGISTER_NODE").then(|| "false".to_owned())
        })
        .expect("valid");
        let m = c.mirror.expect("mirror");
        assert_eq!(m.kubeconfig, PathBuf::from("/etc/kubernetes/kubelet.conf"));
        assert!(!m.register_node);
        assert_eq!(
            m.node_labels,
            [
                ("role".to_owned(), "edge".to_owned()),
                ("zone".to_owned(), "a".to_owned())
            ]
            .into()
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("-1s"), None);
    }

    #[test]
    fn a_duration_too_large_to_hold_is_refused_not_a_panic_issue_11() {
        assert_eq!(parse_duration("99999999999999999999s"), None);
        assert_eq!(parse_duration("99999999999999999999"), None);
        assert_eq!(parse_duration("18446744073709551615h"), None);
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        let args = RunArgs {
            resync_period: Some("soon".into()),
            ..Default::default()
        };
        let err = config(&args, ConfigFile::default(), &no_env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "resyncPeriod: \"soon\" is not a duration (use e.g. 500ms, 10s, 1m30s)"
        );
        let args = RunArgs {
            relist_period: Some("1ms".into()),
            ..Default::default()
        };
        assert!(matches!(
            config(&args, ConfigFile::default(), &no_env),
            Err(ConfigError::Range { .. })
        ));
        let args = RunArgs {
            node_name: Some("bad_name".into()),
            ..Default::default()
        };
        assert!(matches!(
            config(&args, ConfigFile::default(), &no_env),
            Err(ConfigError::NodeName(_))
        ));
        let args = RunArgs {
            runtime_endpoint: Some("tcp://1.2.3.4:1".into()),
            ..Default::default()
        };
        assert!(matches!(
            config(&args, ConfigFile::default(), &no_env),
            Err(ConfigError::Endpoint(_))
        ));
        let args = RunArgs {
            status_address: Some("0.0.0.0:10256".into()),
            ..Default::default()
        };
        assert!(matches!(
            config(&args, ConfigFile::default(), &no_env),
            Err(ConfigError::StatusAddress(..))
        ));
        let args = RunArgs {
            status_address: Some("0.0.0.0:10256".into()),
            status_allow_remote: true,
            ..Default::default()
        };
        assert!(config(&args, ConfigFile::default(), &no_env).is_ok());
        let bad_env =
            |k: &str| (k == "PODVISOR_ALLOW_INSECURE_MANIFESTS").then(|| "maybe".to_owned());
        assert!(matches!(
            config(&RunArgs::default(), ConfigFile::default(), &bad_env),
            Err(ConfigError::Env { .. })
        ));
        assert!(matches!(parse_labels("a=1,b"), Err(ConfigError::Labels(_))));
        for (labels, ok) in [
            ("node-role.kubernetes.io/control-plane=", false),
            ("kubernetes.io/role=master", false),
            ("example.k8s.io/x=1", false),
            ("node.kubernetes.io/edge=true", true),
            ("topology.kubernetes.io/zone=a", true),
            ("example.com/team=blue", true),
        ] {
            let args = RunArgs {
                kubeconfig: Some("/k".into()),
                node_labels: Some(labels.into()),
                ..Default::default()
            };
            assert_eq!(
                config(&args, ConfigFile::default(), &no_env).is_ok(),
                ok,
                "{labels}"
            );
        }
    }

    #[test]
    fn taints_parse_as_the_kubelet_takes_them_and_bad_ones_name_the_taint_issue_13() {
        let t = parse_taints(
            "node-role.kubernetes.io/control-plane:NoSchedule, dedicated=edge:NoExecute",
        )
        .expect("valid");
        assert_eq!(
            t,
            [
                NodeTaint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    value: String::new(),
                    effect: "NoSchedule".into()
                },
                NodeTaint {
                    key: "dedicated".into(),
                    value: "edge".into(),
                    effect: "NoExecute".into()
                },
            ]
        );
        for bad in ["a=b", "a=b:Sometimes", "/x:NoSchedule", "a=b c:NoSchedule"] {
            let err = parse_taints(bad).expect_err(bad);
            assert!(err.to_string().starts_with("taint "), "{err}");
        }
    }
}

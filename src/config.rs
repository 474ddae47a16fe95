//! The validated configuration: defaults applied in one place, durations and names typed,
//! everything checked before any socket is opened.

use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::cli::{LogFormat, RunArgs};
use crate::pod::NodeName;

/// Default manifest directory, as kubeadm uses.
pub const DEFAULT_MANIFEST_DIR: &str = "/etc/kubernetes/manifests";
/// Default CRI endpoint.
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
/// Default state directory.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/podvisor";
/// Default pod log directory, where kubelet-aware log shippers look.
pub const DEFAULT_POD_LOG_DIR: &str = "/var/log/pods";
/// Default full rescan period.
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(10);
/// Default runtime relist period (the kubelet's PLEG period).
pub const DEFAULT_RELIST: Duration = Duration::from_secs(1);

/// A configuration value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A duration that does not parse.
    #[error("{flag}: {value:?} is not a duration (use e.g. 500ms, 10s, 1m)")]
    Duration {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// A duration that parses but cannot work.
    #[error("{flag}: must be between {min:?} and {max:?}")]
    Range {
        /// The flag.
        flag: &'static str,
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
    #[error("runtime endpoint {0:?} must be unix:///path/to/socket")]
    Endpoint(String),
}

/// Everything `podvisor run` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Manifest directory.
    pub manifest_dir: PathBuf,
    /// CRI endpoint.
    pub runtime_endpoint: String,
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
    /// Log format.
    pub log_format: LogFormat,
}

/// Parses `500ms`, `10s`, `1m`, `2h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn duration(
    flag: &'static str,
    value: Option<&str>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let d = match value {
        None => default,
        Some(v) => parse_duration(v).ok_or_else(|| ConfigError::Duration {
            flag,
            value: v.to_owned(),
        })?,
    };
    if d < min || d > max {
        return Err(ConfigError::Range { flag, min, max });
    }
    Ok(d)
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

impl Config {
    /// Applies defaults to the flags of `podvisor run` and validates them. `hostname` is
    /// consulted only when no node name is given.
    pub fn from_run_args(
        args: &RunArgs,
        hostname: impl FnOnce() -> Result<String, String>,
    ) -> Result<Config, ConfigError> {
        let node = match &args.node_name {
            Some(n) => n.clone(),
            None => hostname().map_err(ConfigError::Hostname)?,
        };
        let node_name = NodeName::new(&node);
        if !valid_node_name(node_name.as_str()) {
            return Err(ConfigError::NodeName(node));
        }
        let runtime_endpoint = args
            .runtime_endpoint
            .clone()
            .unwrap_or_else(|| DEFAULT_RUNTIME_ENDPOINT.to_owned());
        let socket = runtime_endpoint
            .strip_prefix("unix://")
            .unwrap_or(&runtime_endpoint);
        if !socket.starts_with('/') {
            return Err(ConfigError::Endpoint(runtime_endpoint));
        }
        Ok(Config {
            manifest_dir: args
                .manifest_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_MANIFEST_DIR.into()),
            runtime_endpoint,
            node_name,
            resync_period: duration(
                "--resync-period",
                args.resync_period.as_deref(),
                DEFAULT_RESYNC,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            )?,
            relist_period: duration(
                "--relist-period",
                args.relist_period.as_deref(),
                DEFAULT_RELIST,
                Duration::from_millis(50),
                Duration::from_secs(300),
            )?,
            root_dir: args
                .root_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_ROOT_DIR.into()),
            pod_log_dir: args
                .pod_log_dir
                .clone()
                .unwrap_or_else(|| DEFAULT_POD_LOG_DIR.into()),
            log_format: args.log_format.unwrap_or(LogFormat::Text),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Result<String, String> {
        Ok("My-Host".to_owned())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let c = Config::from_run_args(&RunArgs::default(), host).expect("valid");
        assert_eq!(c.manifest_dir, PathBuf::from("/etc/kubernetes/manifests"));
        assert_eq!(c.runtime_endpoint, "unix:///run/containerd/containerd.sock");
        assert_eq!(c.node_name.as_str(), "my-host");
        assert_eq!(c.resync_period, Duration::from_secs(10));
        assert_eq!(c.relist_period, Duration::from_secs(1));
        assert_eq!(c.pod_log_dir, PathBuf::from("/var/log/pods"));
        assert_eq!(c.root_dir, PathBuf::from("/var/lib/podvisor"));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("5d"), None);
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        let args = RunArgs {
            resync_period: Some("soon".into()),
            ..Default::default()
        };
        let err = Config::from_run_args(&args, host).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--resync-period: \"soon\" is not a duration (use e.g. 500ms, 10s, 1m)"
        );
        let args = RunArgs {
            relist_period: Some("1ms".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::from_run_args(&args, host),
            Err(ConfigError::Range { .. })
        ));
        let args = RunArgs {
            node_name: Some("bad_name".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::from_run_args(&args, host),
            Err(ConfigError::NodeName(_))
        ));
        let args = RunArgs {
            runtime_endpoint: Some("tcp://1.2.3.4:1".into()),
            ..Default::default()
        };
        assert!(matches!(
            Config::from_run_args(&args, host),
            Err(ConfigError::Endpoint(_))
        ));
    }
}

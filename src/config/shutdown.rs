//! Graceful node shutdown settings, by the kubelet's names: `shutdownGracePeriod`,
//! `shutdownGracePeriodCriticalPods` and `shutdownGracePeriodByPodPriority` (file keys), the
//! first two also as flags and `PODVISOR_*` variables; and what `podvisor shutdown` needs
//! besides them. `podvisor run` checks them too, so that a bad value shows when the daemon
//! starts rather than when the host shuts down.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{
    ConfigError, ConfigFile, DEFAULT_ROOT_DIR, DEFAULT_STATUS_SOCKET, duration, runtime_endpoint,
};
use crate::cli::ShutdownArgs;
use crate::nodeshutdown::{PriorityPeriod, ShutdownPolicy};

/// One `shutdownGracePeriodByPodPriority` entry, as the file writes it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriorityPeriodFile {
    /// The lowest priority of the group.
    pub priority: i32,
    /// The group's period, in seconds.
    pub shutdown_grace_period_seconds: i64,
}

/// The longest grace period podvisor takes: a shutdown that long is a mistake.
const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

/// The policy from the two durations (flags or variables over the file) and the file's list,
/// checked as the kubelet checks them. None of the three set: podvisor's default (30 s, the
/// last 10 s for critical pods); any set: the kubelet's meaning, so 0 s turns it off.
pub fn policy(
    total: Option<String>,
    critical: Option<String>,
    file: &ConfigFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ShutdownPolicy, ConfigError> {
    let total = total
        .or_else(|| env("PODVISOR_SHUTDOWN_GRACE_PERIOD"))
        .or_else(|| file.shutdown_grace_period.clone());
    let critical = critical
        .or_else(|| env("PODVISOR_SHUTDOWN_GRACE_PERIOD_CRITICAL_PODS"))
        .or_else(|| file.shutdown_grace_period_critical_pods.clone());
    let by_priority = file.shutdown_grace_period_by_pod_priority.as_ref();
    if total.is_none() && critical.is_none() && by_priority.is_none() {
        return Ok(ShutdownPolicy::podvisor_default());
    }
    let bad = |m: String| ConfigError::Shutdown(m);
    let period = |key, value| {
        let d = duration(key, value, Duration::ZERO, Duration::ZERO, MAX_PERIOD)?;
        if !d.is_zero() && d < Duration::from_secs(1) {
            return Err(bad(format!(
                "{key}: {d:?} must be either zero or otherwise >= 1 sec"
            )));
        }
        Ok(d)
    };
    let total = period("shutdownGracePeriod", total)?;
    let critical = period("shutdownGracePeriodCriticalPods", critical)?;
    if critical > total {
        return Err(bad(format!(
            "shutdownGracePeriodCriticalPods: {critical:?} must be <= shutdownGracePeriod ({total:?})"
        )));
    }
    let Some(list) = by_priority.filter(|l| !l.is_empty()) else {
        return Ok(ShutdownPolicy::migrate(total, critical));
    };
    if !total.is_zero() || !critical.is_zero() {
        return Err(bad(
            "shutdownGracePeriodByPodPriority: cannot be set with shutdownGracePeriod or shutdownGracePeriodCriticalPods".to_owned(),
        ));
    }
    let mut periods: Vec<PriorityPeriod> = Vec::with_capacity(list.len());
    for entry in list {
        let seconds = u64::try_from(entry.shutdown_grace_period_seconds)
            .ok()
            .filter(|s| *s <= MAX_PERIOD.as_secs())
            .ok_or_else(|| {
                bad(format!(
                    "shutdownGracePeriodByPodPriority: priority {}: shutdownGracePeriodSeconds {} must be between 0 and {}",
                    entry.priority,
                    entry.shutdown_grace_period_seconds,
                    MAX_PERIOD.as_secs()
                ))
            })?;
        if periods.iter().any(|p| p.priority == entry.priority) {
            return Err(bad(format!(
                "shutdownGracePeriodByPodPriority: priority {} is listed twice",
                entry.priority
            )));
        }
        periods.push(PriorityPeriod {
            priority: entry.priority,
            period: Duration::from_secs(seconds),
        });
    }
    Ok(ShutdownPolicy::by_priority(periods))
}

/// What `podvisor shutdown` needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct ShutdownConfig {
    /// CRI endpoint.
    pub runtime_endpoint: String,
    /// The daemon's state directory (its lock).
    pub root_dir: PathBuf,
    /// The daemon's status socket (its lock).
    pub status_socket: PathBuf,
    /// The priority groups.
    pub policy: ShutdownPolicy,
}

impl ShutdownConfig {
    /// Merges the sources as `podvisor run` does (file < environment < flags).
    pub fn from_sources(
        args: &ShutdownArgs,
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ShutdownConfig, ConfigError> {
        let policy = policy(
            args.shutdown_grace_period.clone(),
            args.shutdown_grace_period_critical_pods.clone(),
            &file,
            env,
        )?;
        let path = |flag: &Option<PathBuf>, var: &str, file: Option<PathBuf>, default: &str| {
            flag.clone()
                .or_else(|| env(var).map(PathBuf::from))
                .or(file)
                .unwrap_or_else(|| default.into())
        };
        Ok(ShutdownConfig {
            runtime_endpoint: runtime_endpoint(args.runtime_endpoint.clone(), &file, env)?,
            root_dir: path(
                &args.root_dir,
                "PODVISOR_ROOT_DIR",
                file.root_dir,
                DEFAULT_ROOT_DIR,
            ),
            status_socket: path(
                &args.status_socket,
                "PODVISOR_STATUS_SOCKET",
                file.status_socket,
                DEFAULT_STATUS_SOCKET,
            ),
            policy,
        })
    }

    /// The config file named by `--config` or `PODVISOR_CONFIG`, if any.
    pub fn file_path(args: &ShutdownArgs, env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
        args.config
            .clone()
            .or_else(|| env("PODVISOR_CONFIG").map(PathBuf::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn group(priority: i32, s: u64) -> PriorityPeriod {
        PriorityPeriod {
            priority,
            period: secs(s),
        }
    }

    fn entry(priority: i32, seconds: i64) -> PriorityPeriodFile {
        PriorityPeriodFile {
            priority,
            shutdown_grace_period_seconds: seconds,
        }
    }

    #[test]
    fn nothing_set_is_podvisors_default_and_zero_turns_it_off_as_under_the_kubelet() {
        let p = policy(None, None, &ConfigFile::default(), &no_env).expect("default");
        assert_eq!(p, ShutdownPolicy::podvisor_default());
        let off = policy(Some("0s".into()), None, &ConfigFile::default(), &no_env).expect("off");
        assert!(off.is_off());
    }

    #[test]
    fn flags_beat_variables_which_beat_the_file() {
        let file = ConfigFile {
            shutdown_grace_period: Some("5m".into()),
            shutdown_grace_period_critical_pods: Some("1m".into()),
            ..ConfigFile::default()
        };
        let env = |k: &str| (k == "PODVISOR_SHUTDOWN_GRACE_PERIOD").then(|| "2m".to_owned());
        let p = policy(None, None, &file, &env).expect("valid");
        assert_eq!(p.periods(), [group(0, 60), group(2_000_000_000, 60)]);
        let p = policy(Some("90s".into()), Some("30s".into()), &file, &env).expect("valid");
        assert_eq!(p.periods(), [group(0, 60), group(2_000_000_000, 30)]);
    }

    #[test]
    fn the_list_by_priority_is_taken_as_given_in_any_order() {
        let file = ConfigFile {
            shutdown_grace_period_by_pod_priority: Some(vec![
                entry(2_000_000_000, 10),
                entry(10_000, 20),
                entry(0, 30),
            ]),
            ..ConfigFile::default()
        };
        let p = policy(None, None, &file, &no_env).expect("valid");
        assert_eq!(
            p.periods(),
            [group(0, 30), group(10_000, 20), group(2_000_000_000, 10)]
        );
    }

    #[test]
    fn the_kubelets_checks_refuse_bad_combinations_naming_the_key() {
        let by = |list| ConfigFile {
            shutdown_grace_period_by_pod_priority: Some(list),
            ..ConfigFile::default()
        };
        for (total, critical, file, key) in [
            (
                Some("10s"),
                Some("20s"),
                ConfigFile::default(),
                "shutdownGracePeriodCriticalPods",
            ),
            (
                Some("500ms"),
                None,
                ConfigFile::default(),
                "shutdownGracePeriod",
            ),
            (
                Some("soon"),
                None,
                ConfigFile::default(),
                "shutdownGracePeriod",
            ),
            (
                None,
                Some("5s"),
                ConfigFile::default(),
                "shutdownGracePeriodCriticalPods",
            ),
            (
                Some("30s"),
                None,
                by(vec![entry(0, 10)]),
                "shutdownGracePeriodByPodPriority",
            ),
            (
                None,
                None,
                by(vec![entry(0, -1)]),
                "shutdownGracePeriodByPodPriority",
            ),
            (
                None,
                None,
                by(vec![entry(0, 1), entry(0, 2)]),
                "shutdownGracePeriodByPodPriority",
            ),
        ] {
            let e = policy(
                total.map(str::to_owned),
                critical.map(str::to_owned),
                &file,
                &no_env,
            )
            .expect_err(key);
            assert!(e.to_string().starts_with(key), "{key}: {e}");
        }
    }

    #[test]
    fn the_file_keys_parse_strictly_with_the_kubelets_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "shutdownGracePeriodByPodPriority:\n- priority: 2000000000\n  shutdownGracePeriodSeconds: 10\n- {priority: 0, shutdownGracePeriodSeconds: 20}\n",
        )
        .expect("write");
        let file = ConfigFile::read(&path).expect("valid");
        assert_eq!(
            file.shutdown_grace_period_by_pod_priority,
            Some(vec![entry(2_000_000_000, 10), entry(0, 20)])
        );
        std::fs::write(
            &path,
            "shutdownGracePeriodByPodPriority:\n- {priority: 0, gracePeriod: 20}\n",
        )
        .expect("write");
        assert!(ConfigFile::read(&path).is_err(), "unknown key in an entry");
    }

    #[test]
    fn the_command_reads_the_daemons_endpoint_root_dir_and_socket() {
        let file = ConfigFile {
            runtime_endpoint: Some("unix:///run/crio/crio.sock".into()),
            root_dir: Some("/srv/podvisor".into()),
            ..ConfigFile::default()
        };
        let env = |k: &str| (k == "PODVISOR_STATUS_SOCKET").then(|| "/run/pv.sock".to_owned());
        let c = ShutdownConfig::from_sources(&ShutdownArgs::default(), file, &env).expect("valid");
        assert_eq!(
            (
                c.runtime_endpoint.as_str(),
                c.root_dir.to_str(),
                c.status_socket.to_str()
            ),
            (
                "unix:///run/crio/crio.sock",
                Some("/srv/podvisor"),
                Some("/run/pv.sock")
            )
        );
        let args = ShutdownArgs {
            runtime_endpoint: Some("tcp://1.2.3.4:1".into()),
            ..ShutdownArgs::default()
        };
        assert!(matches!(
            ShutdownConfig::from_sources(&args, ConfigFile::default(), &no_env),
            Err(ConfigError::Endpoint(_))
        ));
    }
}

//! Container log rotation settings, by the kubelet's names: `containerLogMaxSize`,
//! `containerLogMaxFiles`, `containerLogMonitorInterval`, `containerLogMaxWorkers` (file
//! keys), and the flags `--container-log-max-size` and friends.

use std::time::Duration;

use super::{ConfigError, ConfigFile, duration};
use crate::cli::ContainerLogArgs;
use crate::logfiles::{LogSettings, Policy};

fn bad(key: &str, value: impl std::fmt::Debug, why: &str) -> ConfigError {
    ConfigError::ContainerLogs(format!("{key}: {value:?} {why}"))
}

/// `containerLogMaxSize`: a quantity (`10Mi`); negative turns rotation off, as under the
/// kubelet.
fn max_size(s: &str) -> Result<Option<u64>, ConfigError> {
    let key = "containerLogMaxSize";
    if s.trim().starts_with('-') {
        crate::quantity::value(s.trim().trim_start_matches('-'))
            .map_err(|e| bad(key, s, &format!("is not a size: {e}")))?;
        return Ok(None);
    }
    let v = crate::quantity::value(s).map_err(|e| bad(key, s, &format!("is not a size: {e}")))?;
    let v = u64::try_from(v).map_err(|_| bad(key, s, "is too large"))?;
    if v == 0 {
        return Err(bad(
            key,
            s,
            "must be larger than 0 (negative turns rotation off)",
        ));
    }
    Ok(Some(v))
}

/// The settings from the flags and the file (flags win), checked.
pub fn container_logs(
    args: &ContainerLogArgs,
    file: &ConfigFile,
) -> Result<LogSettings, ConfigError> {
    let defaults = LogSettings::default();
    let default_policy = Policy::default();
    let size = match args
        .container_log_max_size
        .as_deref()
        .or(file.container_log_max_size.as_deref())
    {
        Some(s) => max_size(s)?,
        None => Some(default_policy.max_size),
    };
    let max_files = args
        .container_log_max_files
        .or(file.container_log_max_files)
        .unwrap_or(default_policy.max_files);
    if max_files < 2 {
        return Err(bad("containerLogMaxFiles", max_files, "must be at least 2"));
    }
    let max_workers = args
        .container_log_max_workers
        .or(file.container_log_max_workers)
        .unwrap_or(defaults.max_workers);
    if max_workers < 1 {
        return Err(bad(
            "containerLogMaxWorkers",
            max_workers,
            "must be at least 1",
        ));
    }
    let monitor_interval = duration(
        "containerLogMonitorInterval",
        args.container_log_monitor_interval
            .clone()
            .or_else(|| file.container_log_monitor_interval.clone()),
        defaults.monitor_interval,
        Duration::from_millis(100),
        Duration::from_secs(24 * 3600),
    )?;
    Ok(LogSettings {
        rotation: size.map(|max_size| Policy {
            max_size,
            max_files,
        }),
        monitor_interval,
        max_workers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kubelets() {
        let s =
            container_logs(&ContainerLogArgs::default(), &ConfigFile::default()).expect("defaults");
        assert_eq!(s, LogSettings::default());
        assert_eq!(
            s.rotation,
            Some(Policy {
                max_size: 10 * 1024 * 1024,
                max_files: 5
            })
        );
        assert_eq!(s.monitor_interval, Duration::from_secs(10));
        assert_eq!(s.max_workers, 1);
    }

    #[test]
    fn flags_beat_the_file_and_a_negative_size_turns_rotation_off() {
        let file = ConfigFile {
            container_log_max_size: Some("50Mi".into()),
            container_log_max_files: Some(3),
            container_log_monitor_interval: Some("30s".into()),
            container_log_max_workers: Some(4),
            ..ConfigFile::default()
        };
        let s = container_logs(&ContainerLogArgs::default(), &file).expect("file");
        assert_eq!(
            s.rotation.map(|p| (p.max_size, p.max_files)),
            Some((50 << 20, 3))
        );
        assert_eq!(s.monitor_interval, Duration::from_secs(30));
        assert_eq!(s.max_workers, 4);
        let args = ContainerLogArgs {
            container_log_max_size: Some("-1".into()),
            ..ContainerLogArgs::default()
        };
        assert_eq!(container_logs(&args, &file).expect("off").rotation, None);
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases = [
            (
                "containerLogMaxSize",
                ContainerLogArgs {
                    container_log_max_size: Some("ten".into()),
                    ..ContainerLogArgs::default()
                },
            ),
            (
                "containerLogMaxSize",
                ContainerLogArgs {
                    container_log_max_size: Some("0".into()),
                    ..ContainerLogArgs::default()
                },
            ),
            (
                "containerLogMaxFiles",
                ContainerLogArgs {
                    container_log_max_files: Some(1),
                    ..ContainerLogArgs::default()
                },
            ),
            (
                "containerLogMaxWorkers",
                ContainerLogArgs {
                    container_log_max_workers: Some(0),
                    ..ContainerLogArgs::default()
                },
            ),
            (
                "containerLogMonitorInterval",
                ContainerLogArgs {
                    container_log_monitor_interval: Some("1ms".into()),
                    ..ContainerLogArgs::default()
                },
            ),
        ];
        for (key, args) in cases {
            let e = container_logs(&args, &ConfigFile::default()).expect_err(key);
            assert!(e.to_string().starts_with(key), "{e}");
        }
    }
}

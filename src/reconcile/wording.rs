//! The words of the executor's pod events and log lines, in the kubelet's phrasing (v1.35)
//! where users' tools and eyes expect it. Pure.

use std::time::Duration;

use super::plan::StopReason;
use crate::runtime::ImageSource;

/// The `Pulled` event of a started container.
pub(super) fn pulled(image: &str, source: ImageSource) -> String {
    match source {
        ImageSource::Present => format!("Container image {image:?} already present on machine"),
        ImageSource::Pulled {
            took,
            with_waiting,
            size,
        } => format!(
            "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {size} bytes.",
            go_duration(took),
            go_duration(with_waiting)
        ),
    }
}

/// The `UpdateHeld` event of a pod whose new version could not be made ready while its old
/// one runs on.
pub(super) fn update_held(why: &str) -> String {
    format!("Keeping the running version: the new version cannot start: {why}")
}

/// The `Killing` event of a container about to be stopped.
pub(super) fn killing(name: &str, reason: StopReason) -> String {
    match reason {
        StopReason::LivenessProbe => {
            format!("Container {name} failed liveness probe, will be restarted")
        }
        StopReason::StartupProbe => {
            format!("Container {name} failed startup probe, will be restarted")
        }
        _ => format!("Stopping container {name}"),
    }
}

/// Why a container was stopped, for the log.
pub(super) fn stop_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::PodRemoved => "manifest removed",
        StopReason::PodReplaced => "pod replaced by a new version",
        StopReason::SpecChanged => "container spec changed",
        StopReason::ContainerRemoved => "container removed from the manifest",
        StopReason::SandboxGone => "sandbox gone or duplicated",
        StopReason::Unknown => "state unknown",
        StopReason::LivenessProbe => "failed liveness probe",
        StopReason::StartupProbe => "failed startup probe",
        StopReason::DeadlineExceeded => "active deadline exceeded",
        StopReason::NodeShutdown => "node shutting down",
    }
}

/// Go's `time.Duration.String()`: `1.234s`, `56.789ms`, `2m3.5s`, as the kubelet's pull
/// events print durations.
pub(super) fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trim(format!("{:.3}", nanos as f64 / 1e3)) + "µs";
    }
    if nanos < 1_000_000_000 {
        return trim(format!("{:.6}", nanos as f64 / 1e6)) + "ms";
    }
    let secs = d.as_secs();
    let frac = trim(format!(
        "{:.9}",
        f64::from(d.subsec_nanos()) / 1e9 + (secs % 60) as f64
    ));
    match (secs / 3600, secs % 3600 / 60) {
        (0, 0) => frac + "s",
        (0, m) => format!("{m}m{frac}s"),
        (h, m) => format!("{h}h{m}m{frac}s"),
    }
}

/// Drops trailing zeros (and a trailing point) from a decimal.
fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_gos() {
        assert_eq!(go_duration(Duration::from_millis(1234)), "1.234s");
        assert_eq!(go_duration(Duration::from_micros(56_789)), "56.789ms");
        assert_eq!(go_duration(Duration::from_millis(123_500)), "2m3.5s");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
    }
}

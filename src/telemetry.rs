//! Logging: one `init` for the whole process. `RUST_LOG` overrides the default `info` level.
//!
//! `RUST_LOG` takes a level and `target=level` pairs (`info,podvisor::mirror=debug`), filtered
//! by tracing's `Targets`: no span or field directives, and no regex engine compiled at start
//! (which `EnvFilter` would, for every daemon start, to parse its directives).

use std::io::IsTerminal;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;

/// Whether to colour text logs: only on a terminal, and never when `NO_COLOR` is set to
/// anything (<https://no-color.org>). Files and journald get plain text.
pub fn colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// kube's request tracing logs an ERROR for every failed request: while the API server is
/// down that is one line per retry. The mirror task logs each outage once, so these are off
/// unless `RUST_LOG` names kube_client itself.
const KUBE_REQUEST_TARGET: &str = "kube_client::client::builder";

/// The log filter for `RUST_LOG` (`info` when unset or invalid).
pub fn filter(rust_log: Option<&str>) -> Targets {
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let filter = spec
        .parse::<Targets>()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    if spec.contains("kube_client") {
        filter
    } else {
        filter.with_target(KUBE_REQUEST_TARGET, LevelFilter::OFF)
    }
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let no_color = std::env::var("NO_COLOR").ok();
    let ansi = colour(std::io::stderr().is_terminal(), no_color.as_deref());
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Text => registry.with(layer).try_init(),
        LogFormat::Json => registry.with(layer.json().flatten_event(true)).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_request_errors_are_off_unless_asked_for_issue_17() {
        let off = "kube_client::client::builder=off";
        assert!(filter(None).to_string().contains(off), "{}", filter(None));
        assert!(filter(Some("podvisor=debug")).to_string().contains(off));
        assert!(
            !filter(Some("kube_client=debug"))
                .to_string()
                .contains("=off")
        );
    }

    #[test]
    fn rust_log_sets_levels_by_target_and_a_bad_one_means_info() {
        use tracing::Level;
        let f = filter(Some("warn,podvisor::mirror=debug"));
        assert!(f.would_enable("podvisor::mirror::worker", &Level::DEBUG));
        assert!(!f.would_enable("podvisor::reconcile", &Level::INFO));
        assert!(f.would_enable("podvisor::reconcile", &Level::WARN));
        let bad = filter(Some("=?!"));
        assert!(bad.would_enable("podvisor", &Level::INFO));
        assert!(!bad.would_enable("podvisor", &Level::DEBUG));
        assert!(!bad.would_enable("kube_client::client::builder", &Level::ERROR));
    }

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color_issue_17() {
        assert!(colour(true, None));
        assert!(colour(true, Some("")));
        assert!(!colour(true, Some("1")));
        assert!(
            !colour(false, None),
            "a file or journald gets no escape codes"
        );
    }
}

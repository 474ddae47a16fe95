//! Logging: one `init` for the whole process. `RUST_LOG` overrides the default `info` level.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Whether to colour text logs: only on a terminal, and never when `NO_COLOR` is set to
/// anything (<https://no-color.org>). Files and journald get plain text.
pub fn colour(stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// kube's request tracing logs an ERROR for every failed request: while the API server is
/// down that is one line per retry. The mirror task logs each outage once, so these are off
/// unless `RUST_LOG` names kube_client itself.
const KUBE_REQUEST_ERRORS: &str = "kube_client::client::builder=off";

/// The log filter for `RUST_LOG` (`info` when unset or invalid).
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let spec = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let mut filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("info"));
    if !spec.contains("kube_client")
        && let Ok(directive) = KUBE_REQUEST_ERRORS.parse()
    {
        filter = filter.add_directive(directive);
    }
    filter
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let no_color = std::env::var("NO_COLOR").ok();
    let ansi = colour(std::io::stderr().is_terminal(), no_color.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_request_errors_are_off_unless_asked_for_issue_17() {
        assert!(filter(None).to_string().contains(KUBE_REQUEST_ERRORS));
        assert!(
            filter(Some("podvisor=debug"))
                .to_string()
                .contains(KUBE_REQUEST_ERRORS)
        );
        assert!(
            !filter(Some("kube_client=debug"))
                .to_string()
                .contains("=off")
        );
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

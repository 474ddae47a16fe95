//! The CLI's subcommands besides `run`: `ps`, `inspect` and `logs` read a running daemon's
//! status API; `check` validates manifests offline with the daemon's own code; `diff` shows
//! what the daemon would do with proposed manifests, with its own parser and planner;
//! `shutdown` stops the pods in priority order when the host shuts down. Rendering and
//! deciding are pure and tested; the rest is thin IO.

pub mod check;
pub mod diff;
pub mod inspect;
pub mod logs;
pub mod ps;
pub mod shutdown;

use std::path::PathBuf;

use crate::cli::ClientArgs;
use crate::config::DEFAULT_STATUS_SOCKET;

/// The status socket a client command talks to.
pub fn socket(args: &ClientArgs) -> PathBuf {
    args.socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATUS_SOCKET))
}

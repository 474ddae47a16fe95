//! SIGTERM/SIGINT handling. The first signal cancels the returned token: podvisor stops its
//! own loops and leaves every pod running. A second signal cancels the `force` token.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Tokens cancelled by the first and the second termination signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// Cancelled by the first SIGTERM or SIGINT.
    pub graceful: CancellationToken,
    /// Cancelled by the second.
    pub force: CancellationToken,
}

impl Shutdown {
    /// Tokens nothing cancels but the caller.
    pub fn new() -> Shutdown {
        Shutdown {
            graceful: CancellationToken::new(),
            force: CancellationToken::new(),
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

/// Starts listening for SIGTERM and SIGINT.
pub fn listen() -> std::io::Result<Shutdown> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let s = Shutdown {
        graceful: CancellationToken::new(),
        force: CancellationToken::new(),
    };
    let tokens = s.clone();
    tokio::spawn(async move {
        for n in 0..2 {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if n == 0 {
                info!(signal = name, "stopping podvisor; pods keep running");
                tokens.graceful.cancel();
            } else {
                warn!(signal = name, "second signal: exiting now");
                tokens.force.cancel();
            }
        }
    });
    Ok(s)
}

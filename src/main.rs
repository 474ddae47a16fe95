//! The podvisor binary: parse flags, build the configuration, start logging, run.

use std::process::ExitCode;

use clap::Parser;
use podvisor::cli::{Cli, Command};
use podvisor::config::Config;

/// Exit code for bad flags or configuration (EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn hostname() -> Result<String, String> {
    nix::unistd::gethostname()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "hostname is not UTF-8".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("podvisor {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let config = match Config::from_run_args(&args, hostname) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("podvisor: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            podvisor::telemetry::init(config.log_format);
            let rt = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("podvisor: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = rt.block_on(async {
                let shutdown = podvisor::shutdown::listen()?;
                podvisor::app::run(config, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("podvisor: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! The podvisor binary: parse flags, build the configuration, start logging, dispatch.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use podvisor::cli::{Cli, Command, ConfigCommand};
use podvisor::commands;
use podvisor::config::{Config, ConfigFile, ShutdownConfig, default_config_file};
use podvisor::manifest::TrustPolicy;
use podvisor::pod::NodeName;

/// Exit code for bad flags or configuration (EX_USAGE).
const EXIT_USAGE: u8 = 64;
/// Exit code when another podvisor holds the root dir or the status socket (EX_TEMPFAIL).
const EXIT_LOCKED: u8 = 75;

/// The exit code for a daemon that stopped with `err`.
fn exit_code(err: &anyhow::Error) -> ExitCode {
    use podvisor::api::ListenError;
    use podvisor::instance::LockError;
    if let Some(LockError::Held { .. }) = err.downcast_ref::<LockError>() {
        return ExitCode::from(EXIT_LOCKED);
    }
    if err
        .downcast_ref::<podvisor::registry::plugin::PluginConfigError>()
        .is_some()
    {
        return ExitCode::from(EXIT_USAGE);
    }
    match err.downcast_ref::<ListenError>() {
        Some(ListenError::InUse { .. }) => ExitCode::from(EXIT_LOCKED),
        Some(ListenError::NotASocket { .. }) => ExitCode::from(EXIT_USAGE),
        _ => ExitCode::FAILURE,
    }
}

fn hostname() -> Result<String, String> {
    nix::unistd::gethostname()
        .map_err(|e| e.to_string())?
        .into_string()
        .map_err(|_| "hostname is not UTF-8".to_owned())
}

fn env(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("podvisor: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

fn print(result: Result<String, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podvisor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `podvisor shutdown`: 0 when every pod stopped, 1 when one did not, 64 for bad
/// configuration, 75 while a daemon runs.
fn shutdown(args: &podvisor::cli::ShutdownArgs) -> ExitCode {
    use podvisor::commands::shutdown::ShutdownError;
    let file = match ShutdownConfig::file_path(args, &env).map(|p| ConfigFile::read(&p)) {
        None => ConfigFile::default(),
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            eprintln!("podvisor: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match ShutdownConfig::from_sources(args, file, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("podvisor: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(commands::shutdown::run(&config, args.dry_run, args.force)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e @ ShutdownError::DaemonRuns { .. }) => {
            eprintln!("podvisor: {e}");
            ExitCode::from(EXIT_LOCKED)
        }
        Err(e) => {
            eprintln!("podvisor: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    // clap's own exit status for a usage error is 2, which `diff` uses for "changes".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    match cli.command {
        Command::Version => {
            println!("podvisor {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Completion { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "podvisor",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Config(ConfigCommand::Default) => {
            print!("{}", default_config_file());
            ExitCode::SUCCESS
        }
        Command::Check(args) => {
            let node = match args.node_name.clone().map(Ok).unwrap_or_else(hostname) {
                Ok(n) => NodeName::new(&n),
                Err(e) => {
                    eprintln!("podvisor: cannot read the hostname: {e}; pass --node-name");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let policy = TrustPolicy::for_process(nix::unistd::geteuid().as_raw(), false);
            let verdicts = commands::check::check(&args.paths, &node, policy);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&verdicts).unwrap_or_default()
                );
            } else {
                print!("{}", commands::check::render(&verdicts));
            }
            if commands::check::failed(&verdicts) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Diff(args) => {
            let node = (args.node_name.clone().map(Ok))
                .unwrap_or_else(hostname)
                .map(|n| NodeName::new(&n));
            let policy = TrustPolicy::for_process(nix::unistd::geteuid().as_raw(), false);
            match runtime().map(|rt| rt.block_on(commands::diff::run(&args, node, policy))) {
                Ok(Ok(report)) => {
                    print!("{}", report.output(args.json));
                    ExitCode::from(report.exit_code())
                }
                Ok(Err(e)) => {
                    eprintln!("podvisor: {e}");
                    ExitCode::from(commands::diff::EXIT_INVALID)
                }
                Err(code) => code,
            }
        }
        Command::Ps(args) => match runtime() {
            Ok(rt) => print(rt.block_on(commands::ps::run(&args))),
            Err(code) => code,
        },
        Command::Inspect(args) => match runtime() {
            Ok(rt) => print(rt.block_on(commands::inspect::run(&args))),
            Err(code) => code,
        },
        Command::Logs(args) => match runtime() {
            Ok(rt) => {
                let mut out = std::io::stdout();
                let result = rt.block_on(commands::logs::run(&args, &mut out));
                let _ = out.flush();
                print(result.map(|()| String::new()))
            }
            Err(code) => code,
        },
        Command::Shutdown(args) => shutdown(&args),
        Command::Run(args) => {
            let file = match Config::file_path(&args, &env) {
                Some(path) => match ConfigFile::read(&path) {
                    Ok(f) => f,
                    Err(e) => {
                        eprintln!("podvisor: {e}");
                        return ExitCode::from(EXIT_USAGE);
                    }
                },
                None => ConfigFile::default(),
            };
            let config = match Config::from_sources(&args, file, &env, hostname) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("podvisor: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            podvisor::telemetry::init(config.log_format);
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let result = rt.block_on(async {
                let shutdown = podvisor::shutdown::listen()?;
                podvisor::app::run(config, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("podvisor: {e:#}");
                    exit_code(&e)
                }
            }
        }
    }
}

//! The `almanac` binary: parse the command line, set up logging, run.

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ALMANAC_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = almanac_services::cli::Cli::parse();
    match almanac_services::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("almanac: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! The `almanac` binary: parse the command line, set up logging, run.

use clap::Parser as _;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: the corpus fold allocates
/// millions of small objects and frees another thread's batches.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("ALMANAC_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = almanac_services::cli::Cli::parse_from(almanac_services::cli::go_style_args(
        std::env::args_os(),
    ));
    match almanac_services::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A reader that went away (`almanac log dump | head`) is not a failure.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("almanac: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

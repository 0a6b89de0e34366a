//! The `almanac` command line: one binary, a subcommand per tool or daemon.

pub mod demo;
pub mod log;

use clap::{Parser, Subcommand};

/// almanac: Go's build and maintainer infrastructure as one event-sourced log.
#[derive(Debug, Parser)]
#[command(name = "almanac", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with a mutation log directory.
    #[command(subcommand)]
    Log(log::LogCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Log(cmd) => log::run(cmd),
    }
}

//! The `almanac` command line: one binary, a subcommand per tool or daemon.

pub mod buildlet;
pub mod coordinator;
pub mod corpus;
pub mod demo;
pub mod log;
pub mod maint;
pub mod pubsub;
pub mod retrybuilds;

use clap::{Parser, Subcommand};
use std::ffi::OsString;

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
    /// Load the maintner corpus (GitHub, git, Gerrit) from a log.
    #[command(subcommand)]
    Corpus(corpus::CorpusCommand),
    /// Serve a log: maintner's /logs, the gRPC LogService and maintner API,
    /// /metrics. The log's single writer.
    Maintnerd(maint::MaintnerdArgs),
    /// Everything on loopback over a local log directory (the main job).
    Up(maint::UpArgs),
    /// Tail a server and print each mutation, as Go's maintwatch does.
    Maintwatch(maint::MaintwatchArgs),
    /// Query the maintner gRPC API, as Go's maintq does.
    Maintq(maint::MaintqArgs),
    /// The build farm's coordinator: discovers work in the corpus, queues
    /// it, runs builds on buildlets, serves the status pages. Its state is
    /// a fold of the log.
    Coordinator(coordinator::CoordinatorArgs),
    /// Clear dashboard results so they are built again (Go's retrybuilds).
    Retrybuilds(retrybuilds::RetrybuildsArgs),
    /// The worker server on every build machine (Go's buildlet), in listen
    /// or reverse mode.
    Buildlet(buildlet::BuildletArgs),
    /// Receive GitHub webhooks and Gerrit events and serve them as the
    /// feed maintnerd follows (Go's pubsubhelper).
    Pubsubhelper(pubsub::PubsubhelperArgs),
    /// Load and check the build farm's host types and builders, and list
    /// them (errors name the file, line and field).
    EnvCheck {
        /// The env directory (hosts.toml, builders.toml, setup/).
        #[arg(default_value = "env")]
        dir: std::path::PathBuf,
    },
    /// Write a deterministic log shaped like Go's real history.
    GenHistory {
        /// The shape: `small` (about 11 MB) or `go` (about 3 GB).
        #[arg(long, value_enum, default_value = "small")]
        profile: corpus::ProfileName,
        /// Seed; the same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The (empty or new) log directory to write.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Scale the profile to about this many bytes.
        #[arg(long)]
        target_size: Option<u64>,
    },
}

/// The subcommands that take Go's flags, which Go's `flag` package lets
/// people write with one dash (`-server=ADDR`) as well as two.
const GO_FLAG_COMMANDS: [&str; 2] = ["maintq", "maintwatch"];

/// The command line with Go's one-dash flags (`-server`, `-page=2`) of
/// [`GO_FLAG_COMMANDS`] spelled with two dashes, as the parser wants them;
/// every other argument as it was. A lone `-x` (a short option) and
/// everything after `--` stay as they are.
pub fn go_style_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut args: Vec<OsString> = args.into_iter().collect();
    let go_flags = args
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| GO_FLAG_COMMANDS.contains(&a));
    if !go_flags {
        return args;
    }
    for arg in args.iter_mut().skip(2) {
        let Some(text) = arg.to_str() else {
            continue;
        };
        if text == "--" {
            break;
        }
        let name = text.strip_prefix('-').unwrap_or("");
        let long_flag =
            !name.starts_with('-') && name.len() > 1 && name.as_bytes()[0].is_ascii_alphabetic();
        if long_flag {
            *arg = OsString::from(format!("-{text}"));
        }
    }
    args
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Log(cmd) => log::run(cmd),
        Command::Corpus(cmd) => corpus::run(cmd),
        Command::Maintnerd(args) => maint::maintnerd(args),
        Command::Up(args) => maint::up(args),
        Command::Maintwatch(args) => maint::maintwatch(args),
        Command::Maintq(args) => maint::maintq(args),
        Command::Pubsubhelper(args) => pubsub::run(args),
        Command::Buildlet(args) => buildlet::run(args),
        Command::Coordinator(args) => coordinator::run(args),
        Command::Retrybuilds(args) => retrybuilds::run(args),
        Command::EnvCheck { dir } => env_check(&dir),
        Command::GenHistory {
            profile,
            seed,
            out,
            target_size,
        } => corpus::gen_history(profile, seed, &out, target_size),
    }
}

/// `almanac env-check`: one line per host type and builder.
fn env_check(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    let envs = crate::farm::env::Environments::load(dir)?;
    let mut out = std::io::stdout().lock();
    for h in envs.hosts.values() {
        writeln!(
            out,
            "host {}\tpool={}\texpected={}\tsetup={}",
            h.name,
            h.pool.as_str(),
            h.expected_machines,
            h.setup.display()
        )?;
    }
    for b in envs.builders.values() {
        writeln!(
            out,
            "builder {}\thost={}\trepos={}\tbranches={}\ttry_bot={}\tsteps={}",
            b.name,
            b.host_type,
            b.repos.join(","),
            b.branches.join(","),
            b.try_bot,
            b.steps.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::go_style_args;
    use std::ffi::OsString;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn gos_one_dash_flags_become_two_for_gos_commands_only() {
        assert_eq!(
            go_style_args(args(&[
                "almanac",
                "maintq",
                "-server=h:1",
                "-page",
                "2",
                "get-dashboard"
            ])),
            args(&[
                "almanac",
                "maintq",
                "--server=h:1",
                "--page",
                "2",
                "get-dashboard"
            ])
        );
        assert_eq!(
            go_style_args(args(&[
                "almanac",
                "maintwatch",
                "-grpc",
                "--server",
                "h",
                "-h"
            ])),
            args(&["almanac", "maintwatch", "--grpc", "--server", "h", "-h"])
        );
        assert_eq!(
            go_style_args(args(&["almanac", "maintq", "--", "-server"])),
            args(&["almanac", "maintq", "--", "-server"])
        );
        assert_eq!(
            go_style_args(args(&["almanac", "log", "dump", "-limit"])),
            args(&["almanac", "log", "dump", "-limit"])
        );
    }
}

//! `almanac buildlet`: the worker server on every build machine (Go's
//! `cmd/buildlet`), in listen mode.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::maint::{runtime, shutdown_signal, write_addr_file};
use super::pubsub::read_secret;
use crate::buildlet::{Config, Server, host_key, wipe};
use crate::ingest::config::Secret;

/// Where the buildlet listens unless told otherwise: Go's non-cloud
/// default (`localhost:5936`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5936";

/// How long shutdown waits for in-flight requests before exiting anyway
/// (Go's hard exit after SIGTERM).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// `almanac buildlet`.
#[derive(Debug, Args)]
pub struct BuildletArgs {
    /// Address to serve on. Anyone who can reach it and holds the key runs
    /// code on this machine: keep it on loopback or a private network.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The work directory. Defaults to `$TMPDIR/workdir-<host type>`, which
    /// is wiped at start-up as Go does; a directory given here is used as
    /// it is, never wiped.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// The host type this machine is, e.g. `host-linux-bullseye`.
    #[arg(long)]
    pub host_type: String,
    /// File holding this host type's key (as `almanac` derives it from the
    /// master key).
    #[arg(
        long,
        conflicts_with = "master_key_file",
        required_unless_present = "master_key_file"
    )]
    pub key_file: Option<PathBuf>,
    /// File holding the master key, to derive the host type's key here
    /// (for development: production machines hold only their own key).
    #[arg(long)]
    pub master_key_file: Option<PathBuf>,
    /// The longest a command may run, in seconds (a request can ask for
    /// less).
    #[arg(long, default_value_t = 2 * 60 * 60)]
    pub exec_timeout: u64,
    /// Whether `/halt` stops the buildlet after killing its commands
    /// (`--halt-exits=false` keeps it serving).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub halt_exits: bool,
    /// Write the bound address to this file once listening (for scripts
    /// that pass port 0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Reverse mode: dial this coordinator (`host:port`), register, and
    /// serve it over that connection instead of listening (reconnecting
    /// with backoff whenever the connection ends).
    #[arg(long, value_name = "COORDINATOR")]
    pub reverse: Option<String>,
    /// The name this machine registers under [default: the system's
    /// hostname].
    #[arg(long)]
    pub hostname: Option<String>,
}

/// Runs the buildlet until SIGTERM, Ctrl-C or `/halt`.
pub fn run(args: BuildletArgs) -> Result<()> {
    let host_type = args.host_type.trim().to_owned();
    anyhow::ensure!(
        !host_type.is_empty() && !host_type.contains('/'),
        "--host-type must be a host type's name, like host-linux-bullseye"
    );
    anyhow::ensure!(args.exec_timeout > 0, "--exec-timeout must be positive");
    let key = match (&args.key_file, &args.master_key_file) {
        (Some(path), _) => read_secret(Some(path.as_path()))?.context("no key file")?,
        (None, Some(path)) => {
            let master = read_secret(Some(path.as_path()))?.context("no master key file")?;
            Secret::new(host_key(master.expose().as_bytes(), &host_type))
        }
        (None, None) => anyhow::bail!("--key-file or --master-key-file is required"),
    };
    let workdir = match args.workdir {
        Some(dir) => dir,
        None => {
            let dir = std::env::temp_dir().join(format!("workdir-{host_type}"));
            wipe(&dir).with_context(|| format!("wiping {}", dir.display()))?;
            dir
        }
    };
    if !args.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %args.listen,
            "listening on a non-loopback address: whoever reaches it with the key runs code here"
        );
    }
    let mut config = Config::new(args.listen, workdir, host_type.clone(), key.clone());
    config.exec_timeout = Duration::from_secs(args.exec_timeout);
    config.halt_exits = args.halt_exits;
    if let Some(coordinator) = args.reverse {
        let hostname = match args.hostname {
            Some(h) => h,
            None => std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unknown".to_owned()),
        };
        let registration = crate::buildlet::reverse::Registration {
            coordinator,
            host_type,
            hostname,
            key,
        };
        return run_reverse(registration, config);
    }
    let addr_file = args.addr_file;
    runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        if let Some(path) = &addr_file {
            write_addr_file(path, server.addr())?;
        }
        tokio::select! {
            () = shutdown_signal() => tracing::info!("signalled: killing commands and stopping"),
            () = server.halted() => tracing::info!("halted: stopping"),
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, server.shutdown()).await {
            Ok(res) => res,
            Err(_) => {
                tracing::warn!("requests still running after 5 s; exiting anyway");
                Ok(())
            }
        }
    })
}

/// Reverse mode: register with the coordinator and serve it until a
/// signal, or `/halt` (which the coordinator sends when it releases the
/// machine; a supervisor starts a fresh buildlet, as Go's stage0 does).
fn run_reverse(registration: crate::buildlet::reverse::Registration, config: Config) -> Result<()> {
    let buildlet = crate::buildlet::Buildlet::new(&config)?;
    runtime()?.block_on(async move {
        let mut serving = tokio::spawn(crate::buildlet::reverse::run(
            registration,
            buildlet.clone(),
            std::future::pending(),
        ));
        tokio::select! {
            () = shutdown_signal() => tracing::info!("signalled: killing commands and stopping"),
            () = buildlet.stopped() => {
                tracing::info!("halted: stopping");
                // The connection closes once the /halt answer is sent, and
                // the serving task then ends.
                if tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await.is_err() {
                    tracing::warn!("the coordinator connection did not close within 5 s; exiting anyway");
                }
            }
        }
        buildlet.kill_execs();
        serving.abort();
        Ok(())
    })
}

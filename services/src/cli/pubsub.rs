//! `almanac pubsubhelper`: the webhook receiver and event feed maintnerd
//! follows (Go's `cmd/pubsubhelper`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use clap::Args;

use super::maint::{runtime, shutdown_signal, write_addr_file};
use crate::ingest::config::Secret;
use crate::pubsubhelper::{Config, Server};

/// Where pubsubhelper listens unless told otherwise: loopback, next to
/// maintnerd's 8020. Put a TLS-terminating proxy in front to take GitHub's
/// webhooks from the internet.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8021";

/// `almanac pubsubhelper`.
#[derive(Debug, Args)]
pub struct PubsubhelperArgs {
    /// Address for /waitevent, /recent, the webhooks and /metrics.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// File holding the GitHub webhook secret (without it every GitHub
    /// delivery is refused).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the secret Gerrit events are signed with (without it
    /// every Gerrit event is refused).
    #[arg(long)]
    pub gerrit_secret_file: Option<PathBuf>,
    /// The Gerrit server's web address (e.g.
    /// `https://go-review.googlesource.com`), the URL of events whose
    /// payload names none (ref updates).
    #[arg(long)]
    pub gerrit_url: Option<String>,
    /// Write the bound address to this file once listening (for scripts
    /// that pass port 0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

/// Runs pubsubhelper until SIGTERM or Ctrl-C.
pub fn run(args: PubsubhelperArgs) -> Result<()> {
    let mut config = Config::new(args.listen);
    config.webhook_secret = read_secret(args.webhook_secret_file.as_deref())?;
    config.gerrit_secret = read_secret(args.gerrit_secret_file.as_deref())?;
    config.gerrit_url = args.gerrit_url;
    let addr_file = args.addr_file;
    runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        if let Some(path) = &addr_file {
            write_addr_file(path, server.addr())?;
        }
        shutdown_signal().await;
        tracing::info!("shutting down: answering waiting long-polls");
        server.shutdown().await
    })
}

/// A secret from a file, trimmed; an empty file is an error, not "no secret".
pub(super) fn read_secret(path: Option<&Path>) -> Result<Option<Secret>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading a secret from {}", path.display()))?;
    let secret = text.trim();
    anyhow::ensure!(!secret.is_empty(), "{} is empty", path.display());
    Ok(Some(Secret::new(secret.to_owned())))
}

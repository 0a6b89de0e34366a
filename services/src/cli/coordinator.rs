//! `almanac coordinator`: the build farm's coordinator as its own process,
//! appending to and following maintnerd's log over gRPC.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::coordinator::machines::StaticBuildlet;
use crate::coordinator::upstream::Upstream;
use crate::coordinator::{Config, Coordinator};
use crate::farm::env::Environments;

/// The coordinator's default address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8030";

/// `almanac coordinator`.
#[derive(Debug, Args)]
pub struct CoordinatorArgs {
    /// maintnerd's address (`host:port`): its gRPC log and `/logs`.
    #[arg(long, default_value = "127.0.0.1:8020")]
    pub server: String,
    /// File holding maintnerd's append token (else `ALMANAC_APPEND_TOKEN`).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// The build environments (hosts.toml, builders.toml, setup/).
    #[arg(long, default_value = "env")]
    pub env: PathBuf,
    /// Where the status pages, `/metrics` and `/reverse` are served.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// The coordinator's own directory: build logs (`blobs/`) and its copy of
    /// the log for the corpus (`corpus-cache/`).
    #[arg(long, default_value = "almanac-coordinator")]
    pub data: PathBuf,
    /// File holding the master key host-type keys derive from.
    #[arg(long)]
    pub master_key_file: PathBuf,
    /// A git repository builds take source from: `NAME=PATH`, NAME as the
    /// corpus knows it (repeatable). Work in other repositories is not
    /// requested.
    #[arg(long = "repo", value_name = "NAME=PATH")]
    pub repos: Vec<String>,
    /// A listen-mode buildlet to dial: `HOST_TYPE=HOST:PORT` (repeatable).
    #[arg(long = "buildlet", value_name = "HOST_TYPE=ADDR")]
    pub buildlets: Vec<String>,
    /// Seconds between discovery passes when nothing wakes it.
    #[arg(long, default_value_t = 15)]
    pub discovery_interval: u64,
    /// Commits back from each branch head that post-submit discovery builds.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// The longest a build step may run, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub step_timeout: u64,
    /// Seconds between status checks of every machine (one that does not
    /// answer within 5 s is dropped as lost).
    #[arg(long, default_value_t = 15)]
    pub health_interval: u64,
    /// Gerrit server to post trybot results to (e.g.
    /// https://go-review.googlesource.com); without it none are posted.
    #[arg(long)]
    pub gerrit_url: Option<String>,
    /// File holding `user:password` for Gerrit (posts go to `/a/...`);
    /// without it posts are unauthenticated.
    #[arg(long, requires = "gerrit_url")]
    pub gerrit_auth_file: Option<PathBuf>,
    /// This coordinator's address as people reach it, for links in the
    /// reviews it posts.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Write the bound address to this file once listening.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

fn pair<'a>(flag: &str, value: &'a str) -> Result<(&'a str, &'a str)> {
    value
        .split_once('=')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .with_context(|| format!("{flag} {value:?}: want NAME=VALUE"))
}

/// Parses `--repo` values.
pub(crate) fn parse_repos(values: &[String]) -> Result<BTreeMap<String, PathBuf>> {
    let mut repos = BTreeMap::new();
    for v in values {
        let (name, path) = pair("--repo", v)?;
        let path = std::fs::canonicalize(path).with_context(|| format!("--repo {v}"))?;
        gix::open(&path).with_context(|| format!("--repo {v}: not a git repository"))?;
        anyhow::ensure!(
            repos.insert(name.to_owned(), path).is_none(),
            "--repo {name} given twice"
        );
    }
    Ok(repos)
}

pub fn run(args: CoordinatorArgs) -> Result<()> {
    let envs = Environments::load(&args.env)?;
    let master_key = crate::cli::pubsub::read_secret(Some(&args.master_key_file))?
        .context("the master key file is empty")?;
    let token = crate::maintnerd::load_token(args.token_file.as_deref())?
        .context("an append token is needed (--token-file or ALMANAC_APPEND_TOKEN)")?;
    let mut config = Config::new(envs, master_key, args.data.join("blobs"));
    config.repos = parse_repos(&args.repos)?;
    for v in &args.buildlets {
        let (host_type, addr) = pair("--buildlet", v)?;
        anyhow::ensure!(
            config.envs.hosts.contains_key(host_type),
            "--buildlet {v}: no host type {host_type:?} in {}",
            args.env.display()
        );
        config.statics.push(StaticBuildlet {
            host_type: host_type.to_owned(),
            addr: addr.to_owned(),
        });
    }
    anyhow::ensure!(
        args.discovery_interval > 0,
        "--discovery-interval must be positive"
    );
    config.discovery_interval = Duration::from_secs(args.discovery_interval);
    config.depth = args.depth;
    config.step_timeout = Duration::from_secs(args.step_timeout.max(1));
    anyhow::ensure!(
        args.health_interval > 0,
        "--health-interval must be positive"
    );
    config.health_interval = Duration::from_secs(args.health_interval);
    config.gerrit = match &args.gerrit_url {
        Some(url) => Some(crate::coordinator::gerrit::GerritConfig {
            url: url.clone(),
            auth: crate::cli::pubsub::read_secret(args.gerrit_auth_file.as_deref())?,
        }),
        None => None,
    };
    config.public_url = args.public_url.clone();
    let cache = args.data.join("corpus-cache");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    crate::cli::maint::runtime()?.block_on(async move {
        tracing::info!(server = %args.server, "loading the log from maintnerd");
        let upstream = Upstream::connect(&args.server, token, &cache).await?;
        let coordinator = Coordinator::start(upstream, config).await?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let addr = listener.local_addr()?;
        if let Some(path) = &args.addr_file {
            crate::cli::maint::write_addr_file(path, addr)?;
        }
        eprintln!(
            "coordinator {} on http://{addr}/ (status), /metrics, /reverse",
            coordinator.instance()
        );
        let router = coordinator.router();
        let outcome = tokio::select! {
            r = axum::serve(listener, router) => r.context("serving"),
            () = crate::cli::maint::shutdown_signal() => {
                tracing::info!("signalled: stopping");
                Ok(())
            }
            why = coordinator.failed() => Err(anyhow::anyhow!("the coordinator stopped: {why}")),
        };
        coordinator.stop().await;
        outcome
    })
}

/// The build farm `almanac up` runs beside maintnerd: a coordinator sharing
/// the log in process, and one listen-mode buildlet on loopback for each
/// listen-pool host type of the env directory.
pub(crate) struct LocalFarm {
    pub coordinator: Coordinator,
    pub addr: SocketAddr,
    pub buildlets: Vec<crate::buildlet::Server>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl LocalFarm {
    /// Starts it: keys and work directories live under `data`.
    pub(crate) async fn start(
        data: &std::path::Path,
        envs: Environments,
        sink: crate::ingest::Sink,
        repos: BTreeMap<String, PathBuf>,
        listen: SocketAddr,
    ) -> Result<LocalFarm> {
        let key_path = data.join("master-key");
        let master_key = match std::fs::read_to_string(&key_path) {
            Ok(k) if !k.trim().is_empty() => k.trim().to_owned(),
            _ => {
                let k = crate::maintnerd::random_token()?;
                crate::cli::maint::write_private(&key_path, &k)?;
                k
            }
        };
        let master_key = crate::ingest::config::Secret::new(master_key);
        let mut config = Config::new(envs, master_key.clone(), data.join("blobs"));
        config.repos = repos;
        config.discovery_interval = Duration::from_secs(5);
        let mut buildlets = Vec::new();
        let listen_hosts: Vec<String> = config
            .envs
            .hosts
            .values()
            .filter(|h| h.pool == crate::farm::env::Pool::Listen)
            .map(|h| h.name.clone())
            .collect();
        for host_type in listen_hosts {
            let workdir = data.join("buildlets").join(&host_type);
            crate::buildlet::wipe(&workdir)
                .with_context(|| format!("wiping {}", workdir.display()))?;
            let key = crate::ingest::config::Secret::new(crate::buildlet::host_key(
                master_key.expose().as_bytes(),
                &host_type,
            ));
            let mut bc = crate::buildlet::Config::new(
                SocketAddr::new(listen.ip(), 0),
                workdir,
                host_type.clone(),
                key,
            );
            bc.halt_exits = false;
            let server = crate::buildlet::Server::start(bc).await?;
            config.statics.push(StaticBuildlet {
                host_type,
                addr: server.addr().to_string(),
            });
            buildlets.push(server);
        }
        let coordinator = Coordinator::start(Upstream::Local(sink), config).await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let addr = listener.local_addr()?;
        let router = coordinator.router();
        let serve = tokio::spawn(async move { axum::serve(listener, router).await });
        Ok(LocalFarm {
            coordinator,
            addr,
            buildlets,
            serve,
        })
    }

    /// Stops appending (so the buildlets going away is not recorded as
    /// lost machines and failed builds), then serving, and kills running
    /// commands.
    pub(crate) async fn shutdown(self) -> Result<()> {
        self.coordinator.stop().await;
        self.serve.abort();
        for b in self.buildlets {
            b.shutdown().await?;
        }
        Ok(())
    }
}

//! The serving commands: `maintnerd`, `up`, and the clients `maintwatch`
//! and `maintq`, under Go's names with Go's arguments.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use clap::{Args, Subcommand};
use prost::Message as _;

use almanac_log_client::grpc::{LogClient, Subscription, grpc_url};
use almanac_log_client::netsource::Tail;
use almanac_proto::pb::apipb;
use almanac_proto::pb::apipb::maintner_service_client::MaintnerServiceClient;

use crate::codec::{MutationCodec, message_text};
use crate::ingest;
use crate::maintnerd::{self, Config, Server};
use crate::sample::SampleHistory;

/// Where maintnerd and `almanac up` listen unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8020";

/// `almanac maintnerd`.
#[derive(Debug, Args)]
pub struct MaintnerdArgs {
    /// The log directory (created if missing).
    #[arg(long)]
    pub data: PathBuf,
    /// Address for HTTP (/logs, /metrics) and gRPC, on one port
    /// [default: 127.0.0.1:8020; with --sync-and-quit, an ephemeral port].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// File holding the bearer token gRPC `Append` requires (else
    /// `ALMANAC_APPEND_TOKEN`; with neither, appends are refused).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Do not fold a corpus (the maintner API then answers UNAVAILABLE).
    #[arg(long)]
    pub no_corpus: bool,
    /// Write the bound address to this file once listening (for scripts
    /// that pass port 0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A TOML file naming the git, GitHub and Gerrit sources to sync into
    /// the log (see the README's "Ingest" section).
    #[arg(long, conflicts_with = "no_corpus")]
    pub config: Option<PathBuf>,
    /// Sync every source of --config once, append, and exit (Go's
    /// -sync-and-quit). Binds an ephemeral port unless --listen is given.
    #[arg(long, requires = "config")]
    pub sync_and_quit: bool,
    /// Where git and Gerrit mirrors are kept (default: DATA/repos).
    #[arg(long)]
    pub repos: Option<PathBuf>,
}

/// `almanac up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// The log directory.
    #[arg(long, default_value = "almanac-data")]
    pub data: PathBuf,
    /// Address for everything, on loopback by default.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Sample mutations appended per second, so there is something to
    /// watch until real ingest is configured; 0 turns it off.
    #[arg(long, default_value_t = 2.0)]
    pub sample_rate: f64,
    /// Leave an empty log empty (by default it is seeded with the `small`
    /// generated Go-shaped history, so the maintner API has data to answer).
    #[arg(long)]
    pub no_seed: bool,
    /// Write the bound address to this file once listening.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Sync the sources of this TOML file into the log (as maintnerd
    /// --config does).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Track a local git repository (repeatable); its directory name is
    /// its `GitRepo.go_repo`. Polled every 5 s.
    #[arg(long = "git", value_name = "PATH")]
    pub git: Vec<PathBuf>,
    /// Where the in-process pubsubhelper listens when GitHub or Gerrit
    /// sources are tracked [default: 127.0.0.1:8021, or an ephemeral port
    /// when --listen's port is 0]. Its webhook secret is DATA/webhook-secret.
    #[arg(long)]
    pub pubsub_listen: Option<SocketAddr>,
    /// The build environments; the coordinator and a local buildlet run
    /// when this directory exists.
    #[arg(long, default_value = "env")]
    pub env: PathBuf,
    /// Where the coordinator's status pages are served [default:
    /// 127.0.0.1:8030, or an ephemeral port when --listen's port is 0].
    #[arg(long)]
    pub coordinator_listen: Option<SocketAddr>,
    /// Run no coordinator or buildlet.
    #[arg(long)]
    pub no_farm: bool,
}

/// `almanac maintwatch`.
#[derive(Debug, Args)]
pub struct MaintwatchArgs {
    /// The /logs URL (maintner's protocol), or with --grpc the gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:8020/logs")]
    pub server: String,
    /// Follow the gRPC LogService subscription (millisecond latency)
    /// instead of long-polling /logs.
    #[arg(long)]
    pub grpc: bool,
    /// With --grpc: start at this position instead of the current end.
    #[arg(long)]
    pub from: Option<u64>,
    /// Extra CA certificates (PEM) to trust for an https server.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// `almanac maintq`.
#[derive(Debug, Args)]
pub struct MaintqArgs {
    /// The maintner gRPC server: `host:port`, `http://host:port` or
    /// `https://host:port`.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub server: String,
    /// Extra CA certificates (PEM) to trust for an https server.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The query.
    #[command(subcommand)]
    pub query: Query,
}

/// maintq's subcommands (Go's names).
#[derive(Debug, Subcommand)]
pub enum Query {
    /// Whether ANCESTOR is in the history of COMMIT.
    HasAncestor {
        /// 40-hex commit.
        commit: String,
        /// 40-hex commit.
        ancestor: String,
    },
    /// A ref's commit in a go.googlesource.com project.
    GetRef {
        /// The Gerrit project (e.g. `go`).
        project: String,
        /// The ref (e.g. `refs/heads/master`).
        #[arg(name = "ref")]
        reference: String,
    },
    /// CLs waiting for trybots.
    TryWork {
        /// `staging` to ask for staging work.
        staging: Option<String>,
    },
    /// The two supported Go releases.
    ListReleases,
    /// The build dashboard's commits.
    GetDashboard {
        /// Page number.
        #[arg(long, default_value_t = 0)]
        page: i32,
        /// Branch (`master` if empty; `mixed` for all).
        #[arg(long, default_value = "")]
        branch: String,
        /// Repo import path (`go` if empty).
        #[arg(long, default_value = "")]
        repo: String,
    },
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub(super) async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Runs maintnerd until SIGTERM or Ctrl-C.
pub fn maintnerd(args: MaintnerdArgs) -> Result<()> {
    let token = maintnerd::load_token(args.token_file.as_deref())?;
    if token.is_none() {
        tracing::warn!(
            "no append token (--token-file or ALMANAC_APPEND_TOKEN): gRPC appends are refused"
        );
    }
    let sources = args
        .config
        .as_deref()
        .map(ingest::config::Config::load)
        .transpose()?;
    let repos = args
        .repos
        .clone()
        .unwrap_or_else(|| args.data.join("repos"));
    let listen = match args.listen {
        Some(addr) => addr,
        None if args.sync_and_quit => SocketAddr::from(([127, 0, 0, 1], 0)),
        None => DEFAULT_LISTEN.parse().context("default listen address")?,
    };
    let mut config = Config::new(args.data, listen);
    config.append_token = token;
    config.serve_corpus = !args.no_corpus;
    if let (Some(cert), Some(key)) = (args.tls_cert, args.tls_key) {
        config.tls = Some(maintnerd::TlsFiles { cert, key });
    }
    runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        if let Some(path) = &args.addr_file {
            write_addr_file(path, server.addr())?;
        }
        let ingest = match sources {
            Some(sources) => Some(ingest::run::Ingest::new(sources, repos, server.sink())?),
            None => None,
        };
        if args.sync_and_quit {
            let ingest = ingest.context("--sync-and-quit needs --config")?;
            let outcomes = ingest.sync_once().await;
            let failed = report_outcomes(&outcomes);
            server.shutdown().await?;
            if failed > 0 {
                anyhow::bail!("{failed} of {} sources failed to sync", outcomes.len());
            }
            return Ok(());
        }
        let syncers = ingest.map(ingest::run::Ingest::spawn);
        shutdown_signal().await;
        tracing::info!("shutting down: finishing queued appends");
        let result = server.shutdown().await;
        if let Some(mut syncers) = syncers {
            syncers.abort_all();
            while syncers.join_next().await.is_some() {}
        }
        result
    })
}

/// Prints one line per source of a `--sync-and-quit` pass; returns how
/// many failed.
fn report_outcomes(outcomes: &[ingest::run::Outcome]) -> usize {
    let mut failed = 0;
    for o in outcomes {
        match &o.result {
            Ok(n) => eprintln!("synced {}: {n} appended", o.source),
            Err(e) => {
                failed += 1;
                eprintln!("sync of {} failed: {e}", o.source);
            }
        }
    }
    failed
}

/// `almanac up`: maintnerd on loopback over a local log directory, with an
/// append token written next to it, and sample activity to watch.
pub fn up(args: UpArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let token_path = args.data.join("append-token");
    let token = match std::fs::read_to_string(&token_path) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => {
            let t = maintnerd::random_token()?;
            write_private(&token_path, &t)?;
            t
        }
    };
    let empty = almanac_log::Snapshot::open(&args.data).map_or(true, |s| s.end().0 == 0);
    if empty && !args.no_seed {
        eprintln!(
            "seeding the empty log in {} with a small Go-shaped history (--no-seed to skip)",
            args.data.display()
        );
        crate::cli::corpus::gen_history(
            crate::cli::corpus::ProfileName::Small,
            1,
            &args.data,
            None,
        )?;
    }
    let mut sources = match &args.config {
        Some(path) => ingest::config::Config::load(path)?,
        None => ingest::config::Config::default(),
    };
    for path in &args.git {
        let path =
            std::fs::canonicalize(path).with_context(|| format!("--git {}", path.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().trim_end_matches(".git").to_string())
            .filter(|n| !n.is_empty())
            .with_context(|| format!("--git {}: no directory name", path.display()))?;
        sources.git.push(ingest::config::GitSource {
            name,
            url: path.display().to_string(),
        });
        // A local repository is cheap to look at: follow it closely.
        sources.poll.git = sources.poll.git.min(5);
    }
    let repos = args.data.join("repos");
    let farm_envs = if args.no_farm {
        None
    } else if args.env.is_dir() {
        Some(crate::farm::env::Environments::load(&args.env)?)
    } else {
        eprintln!(
            "no env directory at {}: running without a coordinator (--env DIR to name one)",
            args.env.display()
        );
        None
    };
    let farm_sources: std::collections::BTreeMap<String, PathBuf> = sources
        .git
        .iter()
        .map(|g| (g.name.clone(), ingest::git::source_dir(g, &repos)))
        .collect();
    let coordinator_listen = match args.coordinator_listen {
        Some(addr) => addr,
        None if args.listen.port() == 0 => SocketAddr::new(args.listen.ip(), 0),
        None => crate::cli::coordinator::DEFAULT_LISTEN
            .parse()
            .context("default coordinator address")?,
    };
    let mut config = Config::new(args.data.clone(), args.listen);
    config.append_token = Some(token);
    let rate = args.sample_rate;
    // Webhooks wake the GitHub and Gerrit syncers within a second; without
    // them they poll (15 and 5 minutes).
    let webhooks =
        (!sources.github.is_empty() || !sources.gerrit.is_empty()) && sources.pubsub.is_none();
    let webhook_secret = if webhooks {
        let path = args.data.join("webhook-secret");
        let secret = match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
            _ => {
                let t = maintnerd::random_token()?;
                write_private(&path, &t)?;
                t
            }
        };
        Some((path, ingest::config::Secret::new(secret)))
    } else {
        None
    };
    let pubsub_listen = match args.pubsub_listen {
        Some(addr) => addr,
        None if args.listen.port() == 0 => SocketAddr::new(args.listen.ip(), 0),
        None => crate::cli::pubsub::DEFAULT_LISTEN
            .parse()
            .context("default pubsub address")?,
    };
    runtime()?.block_on(async move {
        let server = Server::start(config).await?;
        let addr = server.addr();
        let mut extra = String::new();
        let helper = match webhook_secret {
            Some((path, secret)) => {
                let mut helper_config = crate::pubsubhelper::Config::new(pubsub_listen);
                helper_config.webhook_secret = Some(secret.clone());
                helper_config.gerrit_secret = Some(secret);
                let helper = crate::pubsubhelper::Server::start(helper_config).await?;
                sources.pubsub = Some(ingest::config::PubsubSource {
                    url: format!("http://{}", helper.addr()),
                });
                extra.push_str(&format!(
                    "  webhooks:              POST http://{}/github-webhook (and /gerrit-event), secret in {}\n",
                    helper.addr(),
                    path.display()
                ));
                Some(helper)
            }
            None => None,
        };
        let syncers = if sources.is_empty() {
            None
        } else {
            let tracked: Vec<String> = sources
                .git
                .iter()
                .map(|g| format!("git {}", g.name))
                .chain(sources.github.iter().map(|g| format!("github {}", g.repo)))
                .chain(sources.gerrit.iter().map(|g| format!("gerrit {}", g.project)))
                .collect();
            extra.push_str(&format!(
                "  syncing:               {} (curl http://{addr}/metrics | grep ingest)\n",
                tracked.join(", ")
            ));
            Some(ingest::run::Ingest::new(sources, repos, server.sink())?.spawn())
        };
        let farm = match farm_envs {
            Some(envs) => {
                let tracked = !farm_sources.is_empty();
                let farm = crate::cli::coordinator::LocalFarm::start(
                    &args.data,
                    envs,
                    server.sink(),
                    farm_sources,
                    coordinator_listen,
                )
                .await?;
                extra.push_str(&format!(
                    "  build farm:            http://{}/ (coordinator {}; {} local buildlet(s); builds {})\n",
                    farm.addr,
                    farm.coordinator.instance(),
                    farm.buildlets.len(),
                    if tracked {
                        "new commits of the tracked repositories"
                    } else {
                        "nothing until a repository is tracked with --git"
                    }
                ));
                if let Some(path) = &args.addr_file {
                    write_addr_file(&path.with_extension("coordinator"), farm.addr)?;
                }
                Some(farm)
            }
            None => None,
        };
        if let Some(path) = &args.addr_file {
            write_addr_file(path, addr)?;
        }
        let mut out = String::new();
        out.push_str(&format!(
            "almanac is up on {addr} (log in {}).\n",
            args.data.display()
        ));
        out.push_str(&format!(
            "  watch records arrive:  almanac maintwatch --server http://{addr}/logs\n"
        ));
        out.push_str(&format!(
            "  live over gRPC:        almanac maintwatch --grpc --server {addr}\n"
        ));
        out.push_str(&format!(
            "  query the corpus:      almanac maintq --server {addr} list-releases (or try-work, get-dashboard)\n"
        ));
        out.push_str(&format!(
            "  metrics:               curl http://{addr}/metrics\n"
        ));
        out.push_str(&format!(
            "  append token:          {} (gRPC Append: authorization: Bearer <token>)\n",
            token_path.display()
        ));
        if rate > 0.0 {
            out.push_str(&format!(
                "  sample activity:       {rate} mutations/s (--sample-rate 0 to stop)\n"
            ));
        }
        out.push_str(&extra);
        eprint!("{out}");
        let with_farm = farm.is_some();
        let sampler = (rate > 0.0).then(|| {
            let log = server.log().clone();
            tokio::spawn(async move {
                let seed = log.end().0;
                let mut history = SampleHistory::new(seed);
                if with_farm {
                    // The coordinator acts on build requests: none are
                    // made up while it runs.
                    history = history.without_farm_events();
                }
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                loop {
                    tick.tick().await;
                    let rec = Bytes::from(history.next_mutation().encode_to_vec());
                    if let Err(e) = log.append(vec![rec]).await {
                        tracing::info!(error = %e, "sample activity stopped");
                        return;
                    }
                }
            })
        });
        let coordinator = farm.as_ref().map(|f| f.coordinator.clone());
        let farm_failed = async {
            match &coordinator {
                Some(c) => Some(c.failed().await),
                None => std::future::pending().await,
            }
        };
        let failure = tokio::select! {
            () = shutdown_signal() => None,
            why = farm_failed => why,
        };
        if let Some(why) = &failure {
            tracing::error!(why, "the coordinator stopped; shutting down");
        }
        if let Some(s) = sampler {
            s.abort();
        }
        if let Some(mut syncers) = syncers {
            syncers.abort_all();
            while syncers.join_next().await.is_some() {}
        }
        tracing::info!("shutting down");
        if let Some(farm) = farm {
            farm.shutdown().await?;
        }
        if let Some(helper) = helper {
            helper.shutdown().await?;
        }
        server.shutdown().await?;
        match failure {
            Some(why) => anyhow::bail!("the coordinator stopped: {why}"),
            None => Ok(()),
        }
    })
}

/// Writes the address through a temporary file, so a reader never sees
/// half of it.
pub(super) fn write_addr_file(path: &Path, addr: SocketAddr) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addr.to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()))
}

pub(super) fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}

/// Tails a server and prints each mutation after a blank line, as Go's
/// maintwatch does.
pub fn maintwatch(args: MaintwatchArgs) -> Result<()> {
    let codec = MutationCodec::new()?;
    let print = |payload: &[u8]| -> Result<()> {
        use std::io::Write as _;
        let text = codec.to_text(payload)?;
        let mut out = std::io::stdout().lock();
        writeln!(out)?;
        write!(out, "{text}")?;
        out.flush()?;
        Ok(())
    };
    runtime()?.block_on(async move {
        if args.grpc {
            let from = match args.from {
                Some(p) => p,
                None => {
                    LogClient::connect_with(&args.server, args.ca_file.as_deref())
                        .await?
                        .head()
                        .await?
                        .end_position
                }
            };
            let mut sub = Subscription::new(&args.server, from).with_ca_file(args.ca_file.clone());
            loop {
                let rec = sub.next().await?;
                print(&rec.mutation)?;
            }
        }
        // Unlike Go's tail, a failed poll is retried from where the tail
        // was, so a server that is away for a while loses the watcher no
        // records; only repeated failures (a history that changed under
        // it, say) start a fresh tail at the server's end.
        loop {
            let mut tail = Tail::new(&args.server, args.ca_file.clone())?;
            let mut failures = 0;
            while failures < 3 {
                match tail.next_batch().await {
                    Ok(batch) => {
                        failures = 0;
                        for rec in batch {
                            print(&rec.payload)?;
                        }
                    }
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("# ignoring err: {e}");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
            }
            tracing::warn!("starting a fresh tail at the server's end");
        }
    })
}

/// One maintner API query, printed in text format.
pub fn maintq(args: MaintqArgs) -> Result<()> {
    let rt = runtime()?;
    let result = rt.block_on(maintq_call(args));
    // Go's clients print gRPC failures this way.
    result.map_err(|e| match e.downcast::<tonic::Status>() {
        Ok(s) => anyhow::anyhow!("rpc error: code = {:?} desc = {}", s.code(), s.message()),
        Err(e) => e,
    })
}

async fn maintq_call(args: MaintqArgs) -> Result<()> {
    {
        let url = grpc_url(&args.server);
        let channel = almanac_log_client::grpc::channel(&args.server, args.ca_file.as_deref())
            .await
            .with_context(|| format!("unable to connect to {url}"))?;
        let mut client = MaintnerServiceClient::new(channel).max_decoding_message_size(64 << 20);
        let (name, bytes) = match args.query {
            Query::HasAncestor { commit, ancestor } => {
                let r = client
                    .has_ancestor(apipb::HasAncestorRequest { commit, ancestor })
                    .await?
                    .into_inner();
                // Go prints this one with fmt.Println: the one-line form.
                let mut fields = Vec::new();
                if r.has_ancestor {
                    fields.push("has_ancestor:true");
                }
                if r.unknown_commit {
                    fields.push("unknown_commit:true");
                }
                use std::io::Write as _;
                writeln!(std::io::stdout().lock(), "{}", fields.join(" "))?;
                return Ok(());
            }
            Query::GetRef { project, reference } => {
                let r = client
                    .get_ref(apipb::GetRefRequest {
                        r#ref: reference,
                        gerrit_server: "go.googlesource.com".to_owned(),
                        gerrit_project: project,
                    })
                    .await?
                    .into_inner();
                anyhow::ensure!(!r.value.is_empty(), "ref not found");
                use std::io::Write as _;
                writeln!(std::io::stdout().lock(), "{}", r.value)?;
                return Ok(());
            }
            Query::TryWork { staging } => {
                let for_staging = match staging.as_deref() {
                    None => false,
                    Some("staging") => true,
                    Some(_) => {
                        anyhow::bail!("Usage: maintq try-work [\"staging\"]  # prod is default")
                    }
                };
                let r = client
                    .go_find_try_work(apipb::GoFindTryWorkRequest { for_staging })
                    .await?
                    .into_inner();
                ("apipb.GoFindTryWorkResponse", r.encode_to_vec())
            }
            Query::ListReleases => {
                let r = client
                    .list_go_releases(apipb::ListGoReleasesRequest {})
                    .await?
                    .into_inner();
                ("apipb.ListGoReleasesResponse", r.encode_to_vec())
            }
            Query::GetDashboard { page, branch, repo } => {
                let r = client
                    .get_dashboard(apipb::DashboardRequest {
                        page,
                        repo,
                        branch,
                        max_commits: 0,
                    })
                    .await?
                    .into_inner();
                ("apipb.DashboardResponse", r.encode_to_vec())
            }
        };
        use std::io::Write as _;
        write!(std::io::stdout().lock(), "{}", message_text(name, &bytes)?)?;
        Ok(())
    }
}

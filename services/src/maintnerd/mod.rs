//! maintnerd: the log's single writer, serving it to everyone else.
//!
//! One port carries everything: HTTP/1.1 for maintner's `/logs` protocol,
//! `/metrics` and a small home page, and HTTP/2 (prior knowledge) for gRPC:
//! `almanac.log.v1.LogService`, Go's `apipb.MaintnerService`, health and
//! server reflection. A connection's first bytes decide (hyper's auto
//! builder), so a Go netsource client, `curl` and a stock gRPC tool all talk
//! to the same address.
//!
//! The maintner API answers from a corpus folded from the log in the
//! background; until the first fold finishes it answers `UNAVAILABLE`. The
//! corpus follows every durable append.
//!
//! What it never does: write anything but through the log's writer, or
//! serve a byte that is not durable.

pub mod api;
mod api_grpc;
pub mod log_grpc;
mod logs_http;
pub mod metrics;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse as _, Response};
use axum::routing::{any, get};
use tokio::sync::watch;

use almanac_log::serve::TailHasher;
use almanac_log::{Log, Options};
use almanac_projections::corpus::Corpus;
use almanac_proto::pb::apipb::maintner_service_server::MaintnerServiceServer;
use almanac_proto::pb::log::log_service_server::LogServiceServer;

pub use logs_http::LONG_POLL;
pub use metrics::Metrics;

/// The largest record `Append` accepts, and the gRPC message limit built
/// on it.
pub const MAX_RECORD_LEN: u64 = 64 << 20;

/// How maintnerd runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The log directory (created if missing).
    pub data: PathBuf,
    /// Where to listen (port 0 picks one).
    pub listen: SocketAddr,
    /// The bearer token `Append` requires; `None` refuses every append.
    pub append_token: Option<String>,
    /// How long a `/logs?waitsizenot=` long-poll waits before 304.
    pub long_poll: Duration,
    /// Fold a corpus and answer the maintner API from it.
    pub serve_corpus: bool,
    /// Log tuning (segment size for tests).
    pub log_options: Options,
    /// Serve TLS (HTTPS and gRPC over TLS) with this certificate chain and
    /// key, both PEM; plain HTTP when `None`.
    pub tls: Option<TlsFiles>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Config {
    /// Defaults for `data` on `listen`.
    pub fn new(data: PathBuf, listen: SocketAddr) -> Config {
        Config {
            data,
            listen,
            append_token: None,
            long_poll: LONG_POLL,
            serve_corpus: true,
            tls: None,
            log_options: Options {
                max_record_len: MAX_RECORD_LEN,
                ..Options::default()
            },
        }
    }
}

/// A one-way shutdown signal many tasks can wait on.
#[derive(Debug)]
pub(crate) struct Shutdown(watch::Sender<bool>);

impl Shutdown {
    fn new() -> Shutdown {
        Shutdown(watch::channel(false).0)
    }

    fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// Resolves once shutdown began.
    pub(crate) async fn cancelled(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// State every handler shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) log: Log,
    pub(crate) metrics: Metrics,
    pub(crate) tail_hasher: TailHasher,
    pub(crate) long_poll: Duration,
    pub(crate) append_token: Option<String>,
    pub(crate) max_record_len: u64,
    pub(crate) shutdown: Shutdown,
    /// The folded corpus, once the first fold finished.
    pub(crate) corpus: RwLock<Option<Corpus>>,
    /// The log position the corpus has folded to (None until the first
    /// fold finished).
    pub(crate) corpus_position: watch::Sender<Option<u64>>,
}

/// A running maintnerd.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    serve: tokio::task::JoinHandle<std::io::Result<()>>,
    corpus_ready: watch::Receiver<bool>,
}

impl Server {
    /// Opens the log and starts serving. Returns once the port is bound.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&config.data)
            .with_context(|| format!("creating {}", config.data.display()))?;
        let data = config.data.clone();
        let opts = config.log_options.clone();
        // Recovery (and any torn tail it cuts) is logged by the log itself.
        let (log, _recovery) = tokio::task::spawn_blocking(move || Log::open(&data, opts))
            .await
            .context("opening the log")??;
        tracing::info!(dir = %config.data.display(), end = log.end().0, "log open");
        let shared = Arc::new(Shared {
            max_record_len: config.log_options.max_record_len,
            log,
            metrics: Metrics::default(),
            tail_hasher: TailHasher::new(),
            long_poll: config.long_poll,
            append_token: config.append_token.clone(),
            shutdown: Shutdown::new(),
            corpus: RwLock::new(None),
            corpus_position: watch::Sender::new(None),
        });

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let router = router(shared.clone()).await?;
        let shutdown = shared.clone();
        let serve = match &config.tls {
            None => {
                // Small frames (a live record, a long-poll answer) must not
                // wait for Nagle's algorithm and a delayed ACK (up to 40 ms).
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "TCP_NODELAY");
                    }
                });
                tokio::spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move { shutdown.shutdown.cancelled().await })
                        .await
                })
            }
            Some(files) => {
                let acceptor = tls::acceptor(files)?;
                tokio::spawn(tls::serve(listener, router, acceptor, shutdown))
            }
        };
        let (ready_tx, corpus_ready) = watch::channel(false);
        if config.serve_corpus {
            tokio::spawn(follow_corpus(shared.clone(), ready_tx));
        }
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(%addr, scheme, "maintnerd serving /logs, gRPC and /metrics");
        Ok(Server {
            addr,
            shared,
            serve,
            corpus_ready,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where ingest appends, diffing against this server's corpus.
    pub fn sink(&self) -> crate::ingest::Sink {
        crate::ingest::Sink::new(self.shared.clone())
    }

    /// The log (for in-process appends, as `almanac up` does).
    pub fn log(&self) -> &Log {
        &self.shared.log
    }

    /// Waits until the maintner API's corpus has folded the log once.
    pub async fn corpus_ready(&mut self) {
        let _ = self.corpus_ready.wait_for(|ready| *ready).await;
    }

    /// Stops accepting connections, ends long-polls and streams, finishes
    /// queued appends and closes the log.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.shared.shutdown.trigger();
        let log = self.shared.log.clone();
        // Closing the log ends every follower after its last durable record.
        tokio::task::spawn_blocking(move || log.close()).await?;
        self.serve.await??;
        Ok(())
    }
}

async fn router(shared: Arc<Shared>) -> anyhow::Result<Router> {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(almanac_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(almanac_proto::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("building gRPC reflection")?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let limit = MAX_RECORD_LEN as usize + (1 << 20);
    let log_service = LogServiceServer::new(log_grpc::LogGrpc {
        shared: shared.clone(),
    })
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let api_service = MaintnerServiceServer::new(api_grpc::ApiGrpc {
        shared: shared.clone(),
        try_work: Arc::default(),
    })
    .max_encoding_message_size(usize::MAX);
    // Serving before the port is bound, so no check ever sees UNKNOWN.
    health_reporter
        .set_serving::<LogServiceServer<log_grpc::LogGrpc>>()
        .await;
    health_reporter
        .set_serving::<MaintnerServiceServer<api_grpc::ApiGrpc>>()
        .await;
    let grpc = tonic::service::Routes::new(log_service)
        .add_service(api_service)
        .add_service(health)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .into_axum_router();
    let http = Router::new()
        .route("/", get(home))
        .route("/logs", any(logs_http::index))
        .route("/logs/", any(logs_http::segment))
        .route("/logs/{*rest}", any(logs_http::segment))
        .route("/metrics", get(metrics))
        .with_state(shared);
    Ok(grpc.merge(http))
}

async fn home() -> Html<&'static str> {
    Html(
        "<!DOCTYPE html><html><head><title>maintnerd</title></head><body>\
         <h1>almanac maintnerd</h1><ul>\
         <li><a href=\"/logs\">/logs</a>: the mutation log (maintner's protocol)</li>\
         <li><a href=\"/metrics\">/metrics</a></li>\
         <li>gRPC: almanac.log.v1.LogService, apipb.MaintnerService (reflection enabled)</li>\
         </ul></body></html>",
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = shared.metrics.render(&shared.log);
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Folds the log into the served corpus, then keeps it current after every
/// durable batch. Folding runs on a blocking thread; the API reads the
/// corpus under a read lock and waits only while a batch is folded.
async fn follow_corpus(shared: Arc<Shared>, ready: watch::Sender<bool>) {
    let mut rx = shared.log.watch();
    let mut first = true;
    loop {
        rx.borrow_and_update();
        let snapshot = shared.log.snapshot();
        let worker = shared.clone();
        let started = Instant::now();
        let folded = tokio::task::spawn_blocking(move || {
            let opts = almanac_projections::load::LoadOptions::default;
            let mut guard = worker.corpus.write().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(corpus) if corpus.position() >= snapshot.end() => Ok(0),
                Some(corpus) => corpus.fold_snapshot(&snapshot, opts()),
                None => {
                    // The first fold can take seconds: build it unlocked,
                    // so the API answers UNAVAILABLE meanwhile, not hangs,
                    // and report progress every few seconds.
                    drop(guard);
                    let mut corpus = Corpus::new();
                    let mut last = Instant::now();
                    let progress = move |p: almanac_projections::load::Progress| {
                        if last.elapsed() >= Duration::from_secs(3) {
                            last = Instant::now();
                            tracing::info!(
                                position = p.position.0,
                                end = p.end.0,
                                records = p.records,
                                percent =
                                    (p.position.0 as f64 * 100.0 / p.end.0.max(1) as f64).round(),
                                "folding the corpus"
                            );
                        }
                    };
                    let load = almanac_projections::load::LoadOptions {
                        progress: Some(Box::new(progress)),
                        ..Default::default()
                    };
                    let n = corpus.fold_snapshot(&snapshot, load)?;
                    *worker.corpus.write().unwrap_or_else(|p| p.into_inner()) = Some(corpus);
                    Ok(n)
                }
            }
        })
        .await;
        match folded {
            Ok(Ok(n)) => {
                let folded_to = shared
                    .corpus
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|c| c.position().0);
                shared.corpus_position.send_replace(folded_to);
                shared
                    .metrics
                    .corpus_records
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                if first {
                    tracing::info!(
                        records = n,
                        elapsed = ?started.elapsed(),
                        "corpus folded; the maintner API is serving"
                    );
                    first = false;
                    ready.send_replace(true);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "folding the corpus failed; the maintner API stays at its last position");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "corpus folding thread failed");
                return;
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = shared.shutdown.cancelled() => return,
        }
    }
}

/// Reads a token from a file (trimmed), or from `ALMANAC_APPEND_TOKEN`.
pub fn load_token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the append token from {}", path.display()))?;
        let token = text.trim().to_owned();
        anyhow::ensure!(!token.is_empty(), "{} is empty", path.display());
        return Ok(Some(token));
    }
    Ok(std::env::var("ALMANAC_APPEND_TOKEN")
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// A fresh random token (hex of 32 bytes from the OS).
pub fn random_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

//! Where the coordinator reads and writes the log: in the same process as
//! maintnerd (`almanac up`), or over maintnerd's gRPC from another process
//! (`almanac coordinator --server`).
//!
//! Either way it offers the same three things: append a batch of mutations
//! (returning once they are durable, with the position of the last), follow
//! the log's records from a position, and read the maintner corpus (folded by
//! maintnerd in process, or by a local mirror of the log kept current by a
//! gRPC subscription). The coordinator's own state is never here: it folds
//! the records it follows.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use tokio::sync::watch;

use almanac_log_client::grpc::{LogClient, Subscription};
use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::Mutation;

use crate::ingest::Sink;

/// Why the log could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("appending to the log: {0}")]
    Append(String),
    /// The coordinator is stopping: nothing more goes into the log, so a
    /// build cut short by the shutdown is left running there, for the next
    /// coordinator to take over, rather than recorded as failed.
    #[error("the coordinator is stopping; nothing more is appended")]
    Stopping,
    #[error("following the log: {0}")]
    Follow(String),
    #[error("loading the corpus from {url}: {message}")]
    Corpus { url: String, message: String },
}

/// The log, local or remote.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// maintnerd in this process.
    Local(Sink),
    /// maintnerd elsewhere, over gRPC.
    Remote(Arc<Remote>),
}

/// A remote maintnerd and the corpus mirrored from it.
#[derive(Debug)]
pub struct Remote {
    addr: String,
    client: LogClient,
    corpus: Arc<RwLock<Corpus>>,
    corpus_changes: watch::Receiver<u64>,
    /// Set when the corpus mirror stops for good.
    failure: watch::Receiver<Option<String>>,
}

/// One record as the coordinator follows it.
#[derive(Debug, Clone)]
pub struct Record {
    pub position: u64,
    /// Where the next record starts.
    pub end: u64,
    pub payload: Bytes,
}

/// A live stream of records.
#[derive(Debug)]
pub enum Records {
    Local(Box<almanac_log::Follower>),
    Remote(Box<Subscription>),
}

impl Records {
    /// The next record if it can be had without waiting (a local log's
    /// durable records; never for a remote stream).
    pub fn try_next(&mut self) -> Option<Result<Record, UpstreamError>> {
        match self {
            Records::Local(f) => f.try_next().map(|r| {
                r.map(|r| Record {
                    position: r.position.0,
                    end: r.end().0,
                    payload: r.payload,
                })
                .map_err(|e| UpstreamError::Follow(e.to_string()))
            }),
            Records::Remote(_) => None,
        }
    }

    /// The next record, waiting for it. `None` when a local log closed.
    pub async fn next(&mut self) -> Option<Result<Record, UpstreamError>> {
        match self {
            Records::Local(f) => f.next().await.map(|r| {
                r.map(|r| Record {
                    position: r.position.0,
                    end: r.end().0,
                    payload: r.payload,
                })
                .map_err(|e| UpstreamError::Follow(e.to_string()))
            }),
            Records::Remote(s) => Some(
                s.next()
                    .await
                    .map(|r| Record {
                        position: r.position,
                        end: almanac_log_client::grpc::record_end(&r),
                        payload: r.mutation,
                    })
                    .map_err(|e| UpstreamError::Follow(e.to_string())),
            ),
        }
    }
}

impl Upstream {
    /// Connects to maintnerd at `addr` (`host:port`) with an append token,
    /// mirrors its log into `cache_dir` and folds the corpus from it (a
    /// blocking first load), then keeps the corpus current from a gRPC
    /// subscription on a thread of its own.
    pub async fn connect(
        addr: &str,
        token: String,
        cache_dir: &Path,
    ) -> Result<Upstream, UpstreamError> {
        let client = LogClient::connect(addr)
            .await
            .map_err(|e| UpstreamError::Append(format!("connecting to {addr}: {e}")))?
            .with_token(token);
        let url = if addr.starts_with("https://") || addr.starts_with("http://") {
            format!("{}/logs", addr.trim_end_matches('/'))
        } else {
            format!("http://{addr}/logs")
        };
        let (corpus, changes, failure) =
            spawn_corpus_mirror(url, addr.to_owned(), cache_dir.to_owned())
                .await
                .map_err(|message| UpstreamError::Corpus {
                    url: addr.to_owned(),
                    message,
                })?;
        Ok(Upstream::Remote(Arc::new(Remote {
            addr: addr.to_owned(),
            client,
            corpus,
            corpus_changes: changes,
            failure,
        })))
    }

    /// Appends `mutations` durably; returns the position of the last.
    pub async fn append(&self, mutations: &[Mutation]) -> Result<Option<u64>, UpstreamError> {
        if mutations.is_empty() {
            return Ok(None);
        }
        let records: Vec<Bytes> = mutations
            .iter()
            .map(|m| Bytes::from(m.encode_to_vec()))
            .collect();
        let positions: Vec<u64> = match self {
            Upstream::Local(sink) => sink
                .log()
                .append(records)
                .await
                .map_err(|e| UpstreamError::Append(e.to_string()))?
                .into_iter()
                .map(|p| p.0)
                .collect(),
            Upstream::Remote(remote) => remote
                .client
                .clone()
                .append(records)
                .await
                .map_err(|e| UpstreamError::Append(e.to_string()))?,
        };
        Ok(positions.last().copied())
    }

    /// Where the log ends now (the position the next record will get).
    pub async fn end(&self) -> Result<u64, UpstreamError> {
        match self {
            Upstream::Local(sink) => Ok(sink.log().end().0),
            Upstream::Remote(remote) => remote
                .client
                .clone()
                .head()
                .await
                .map(|h| h.end_position)
                .map_err(|e| UpstreamError::Follow(e.to_string())),
        }
    }

    /// Follows the log from `from`.
    pub fn records(&self, from: u64) -> Result<Records, UpstreamError> {
        match self {
            Upstream::Local(sink) => sink
                .log()
                .follow(almanac_log::Position(from))
                .map(|f| Records::Local(Box::new(f)))
                .map_err(|e| UpstreamError::Follow(e.to_string())),
            Upstream::Remote(remote) => Ok(Records::Remote(Box::new(Subscription::new(
                &remote.addr,
                from,
            )))),
        }
    }

    /// Runs `f` on the corpus (None until maintnerd's first fold). Keep `f`
    /// short; never await inside it.
    pub fn read_corpus<R>(&self, f: impl FnOnce(&Corpus) -> R) -> Option<R> {
        match self {
            Upstream::Local(sink) => sink.read(f).ok(),
            Upstream::Remote(remote) => {
                let guard = remote.corpus.read().unwrap_or_else(|p| p.into_inner());
                Some(f(&guard))
            }
        }
    }

    /// Why the upstream stopped for good, once it has (a remote corpus
    /// mirror that failed); a local upstream never reports one.
    pub fn failure(&self) -> Option<watch::Receiver<Option<String>>> {
        match self {
            Upstream::Local(_) => None,
            Upstream::Remote(remote) => Some(remote.failure.clone()),
        }
    }

    /// Resolves when the corpus has folded something new since the last call
    /// on this receiver.
    pub fn corpus_changes(&self) -> CorpusChanges {
        match self {
            Upstream::Local(sink) => CorpusChanges::Local(sink.corpus_positions()),
            Upstream::Remote(remote) => CorpusChanges::Remote(remote.corpus_changes.clone()),
        }
    }
}

/// Wakes when the corpus moves.
#[derive(Debug)]
pub enum CorpusChanges {
    Local(watch::Receiver<Option<u64>>),
    Remote(watch::Receiver<u64>),
}

impl CorpusChanges {
    /// Waits for the next change; pends forever if the source is gone.
    pub async fn changed(&mut self) {
        let gone = match self {
            CorpusChanges::Local(rx) => rx.changed().await.is_err(),
            CorpusChanges::Remote(rx) => rx.changed().await.is_err(),
        };
        if gone {
            std::future::pending::<()>().await;
        }
    }
}

/// The corpus, its change counter and its failure.
type Mirror = (
    Arc<RwLock<Corpus>>,
    watch::Receiver<u64>,
    watch::Receiver<Option<String>>,
);

/// Loads the corpus from `url` into `cache_dir` on a thread, then keeps it
/// current from a gRPC subscription to `addr`, bumping the returned watch
/// after each fold; the failure watch is set if it stops.
async fn spawn_corpus_mirror(
    url: String,
    addr: String,
    cache_dir: PathBuf,
) -> Result<Mirror, String> {
    let (loaded_tx, loaded_rx) = tokio::sync::oneshot::channel();
    let (changes_tx, changes_rx) = watch::channel(0u64);
    let (failure_tx, failure_rx) = watch::channel(None);
    std::thread::Builder::new()
        .name("coordinator-corpus".into())
        .spawn(move || {
            let corpus = match Corpus::open_network(&url, &cache_dir) {
                Ok(c) => c,
                Err(e) => {
                    let _ = loaded_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let subscription = match corpus.subscribe(&addr) {
                Ok(s) => s,
                Err(e) => {
                    let _ = loaded_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let shared = Arc::new(RwLock::new(corpus));
            if loaded_tx.send(Ok(shared.clone())).is_err() {
                return;
            }
            loop {
                let position = shared
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .position()
                    .0;
                match subscription.wait_past(position, Duration::from_secs(30)) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "coordinator corpus subscription ended");
                        failure_tx
                            .send_replace(Some(format!("the corpus subscription ended: {e}")));
                        return;
                    }
                }
                let folded = {
                    let mut corpus = shared.write().unwrap_or_else(|p| p.into_inner());
                    subscription.wait(&mut corpus, Duration::ZERO)
                };
                match folded {
                    Ok(_) => {
                        changes_tx.send_modify(|n| *n += 1);
                        if changes_tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "folding the coordinator's corpus failed");
                        failure_tx.send_replace(Some(format!("folding the corpus failed: {e}")));
                        return;
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let corpus = loaded_rx
        .await
        .map_err(|_| "the corpus thread ended".to_string())??;
    Ok((corpus, changes_rx, failure_rx))
}

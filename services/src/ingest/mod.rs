//! Ingest: watches GitHub, Gerrit and git repositories and appends a
//! mutation for every change it sees, carrying only what changed relative to
//! the corpus, as Go's maintnerd writes them (spec/maintner.md §6).
//!
//! Layout:
//! - [`config`]: the TOML file naming the tracked sources.
//! - [`git`]: plain git repositories (gix): commits in parent-before-child
//!   order with their numstat diff trees, and branch/tag refs.
//! - [`gerrit`]: Gerrit projects (gix fetch): change refs, meta refs and
//!   branches, fetched and appended in batches of 250 hashes.
//! - [`github`]: GitHub repositories (octocrab): labels, milestones,
//!   issues, comments, events and reviews, with ETags and rate limits.
//! - [`pubsub`]: follows a pubsubhelper's `/waitevent` and wakes syncers.
//! - [`run`]: runs the syncers once (`--sync-and-quit`) or forever.
//!
//! Every syncer diffs against the corpus that maintnerd folds from its own
//! log, and appends through a [`Sink`], which returns only once the appended
//! records are durable *and* folded, so the next diff sees them. A syncer
//! never keeps state of its own that the log cannot rebuild: after a crash,
//! the next pass diffs against the log and completes the picture.

pub mod config;
pub mod gerrit;
pub mod git;
pub mod github;
pub mod pubsub;
pub mod run;

use std::sync::Arc;

use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::Mutation;
use prost::Message as _;

use crate::maintnerd::Shared;

/// Why a sync pass failed. A failed pass appended nothing half-way: every
/// append is whole or absent, so the next pass simply diffs again.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("appending to the log: {0}")]
    Append(#[from] almanac_log::append::Error),
    #[error("the corpus is not folded (maintnerd runs with --no-corpus?)")]
    NoCorpus,
    #[error("maintnerd is shutting down")]
    ShuttingDown,
    #[error("git: {0}")]
    Git(String),
    #[error("GitHub: {0}")]
    GitHub(String),
    #[error("{0}")]
    Other(String),
}

/// Where syncers append, and the corpus they diff against.
#[derive(Clone, Debug)]
pub struct Sink {
    shared: Arc<Shared>,
}

impl Sink {
    pub(crate) fn new(shared: Arc<Shared>) -> Sink {
        Sink { shared }
    }

    /// Appends `mutations` in one durable group commit, then waits until the
    /// corpus has folded them. An empty batch appends nothing.
    pub async fn append(&self, mutations: Vec<Mutation>) -> Result<(), SyncError> {
        if mutations.is_empty() {
            return Ok(());
        }
        let records: Vec<bytes::Bytes> = mutations
            .iter()
            .map(|m| bytes::Bytes::from(m.encode_to_vec()))
            .collect();
        let count = records.len() as u64;
        self.shared.log.append(records).await?;
        // Everything acknowledged so far, ours included, ends here.
        let end = self.shared.log.end();
        self.shared
            .metrics
            .ingest_mutations
            .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
        self.wait_folded(end).await
    }

    /// Waits until the corpus has folded everything before `end`.
    pub async fn wait_folded(&self, end: almanac_log::Position) -> Result<(), SyncError> {
        let mut rx = self.shared.corpus_position.subscribe();
        tokio::select! {
            r = rx.wait_for(|pos| pos.is_some_and(|p| p >= end.0)) => {
                r.map(|_| ()).map_err(|_| SyncError::NoCorpus)
            }
            () = self.shared.shutdown.cancelled() => Err(SyncError::ShuttingDown),
        }
    }

    /// Waits for the first fold of the log, so diffs start from the log's
    /// whole history.
    pub async fn ready(&self) -> Result<(), SyncError> {
        self.wait_folded(self.shared.log.end()).await
    }

    /// Runs `f` on the corpus under its read lock. Keep `f` short and
    /// never await inside it.
    pub fn read<R>(&self, f: impl FnOnce(&Corpus) -> R) -> Result<R, SyncError> {
        let guard = self.shared.corpus.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(f).ok_or(SyncError::NoCorpus)
    }

    /// The log itself, for appenders that need no corpus wait (the
    /// coordinator folds its own view).
    pub fn log(&self) -> &almanac_log::Log {
        &self.shared.log
    }

    /// Where the corpus has folded to (None before the first fold); changes
    /// after every fold.
    pub fn corpus_positions(&self) -> tokio::sync::watch::Receiver<Option<u64>> {
        self.shared.corpus_position.subscribe()
    }

    /// Resolves when maintnerd begins shutting down.
    pub async fn cancelled(&self) {
        self.shared.shutdown.cancelled().await
    }
}

//! Running the syncers: once each (`--sync-and-quit`), or forever, one task
//! per source, each polling at its interval and woken early by a
//! pubsubhelper event for its topic.
//!
//! A failed pass is logged and counted, and the source is retried after
//! 30 seconds (Go retries every error as temporary); one source failing
//! never stops the others. Nothing here holds state the log cannot rebuild:
//! every pass diffs against the corpus.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;

use super::config::{Config, GerritSource, GitHubSource, GitSource};
use super::pubsub::Wakeups;
use super::{Sink, SyncError, gerrit, git, github};

/// Wait after a failed pass before trying the source again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// One source, named as logs and errors name it.
#[derive(Debug, Clone)]
enum Source {
    Git(GitSource),
    GitHub(GitHubSource, Arc<github::GitHubClient>),
    Gerrit(GerritSource),
}

impl Source {
    fn label(&self) -> String {
        match self {
            Source::Git(g) => format!("git {}", g.name),
            Source::GitHub(g, _) => format!("github {}", g.repo),
            Source::Gerrit(g) => format!("gerrit {}", g.project),
        }
    }

    /// The pubsubhelper topic that wakes this source (Go's names).
    fn topic(&self) -> Option<String> {
        match self {
            Source::Git(_) => None,
            Source::GitHub(g, _) => Some(format!("github:{}", g.repo)),
            Source::Gerrit(g) => Some(format!("gerrit:{}", g.project)),
        }
    }

    /// Runs one pass; returns how many mutations it appended.
    async fn pass(
        &self,
        sink: &Sink,
        repos: &std::path::Path,
        bypass_cache: bool,
    ) -> Result<u64, SyncError> {
        match self {
            Source::Git(g) => git::sync_repo(sink, g, repos)
                .await
                .map(|s| s.commits + u64::from(s.refs + s.deleted_refs > 0)),
            Source::GitHub(g, client) => github::sync_repo(client, sink, g, bypass_cache)
                .await
                .map(|s| s.mutations),
            Source::Gerrit(g) => gerrit::sync_project(sink, g, repos)
                .await
                .map(|s| s.commits + s.refs + s.deleted_refs),
        }
    }
}

/// The syncers of one configuration.
#[derive(Debug)]
pub struct Ingest {
    sources: Vec<Source>,
    config: Config,
    repos: PathBuf,
    sink: Sink,
}

/// What [`Ingest::sync_once`] did, per source.
#[derive(Debug)]
pub struct Outcome {
    pub source: String,
    pub result: Result<u64, SyncError>,
}

impl Ingest {
    /// Prepares a syncer per source; git mirrors live under `repos`.
    pub fn new(config: Config, repos: PathBuf, sink: Sink) -> Result<Ingest, SyncError> {
        let mut sources: Vec<Source> = config.git.iter().cloned().map(Source::Git).collect();
        // One limiter for every repository, as Go's is global.
        let limiter = (config.github_rate > 0.0)
            .then(|| Arc::new(github::client::RateLimiter::new(config.github_rate)));
        for gh in &config.github {
            let options = github::client::ClientOptions {
                limiter: limiter.clone(),
                ..Default::default()
            };
            let client = github::GitHubClient::new(&gh.api_url, gh.token.as_ref(), options)?;
            sources.push(Source::GitHub(gh.clone(), Arc::new(client)));
        }
        sources.extend(config.gerrit.iter().cloned().map(Source::Gerrit));
        Ok(Ingest {
            sources,
            config,
            repos,
            sink,
        })
    }

    /// One pass over every source, concurrently (Go's `-sync-and-quit`).
    pub async fn sync_once(&self) -> Vec<Outcome> {
        if let Err(e) = self.sink.ready().await {
            return vec![Outcome {
                source: "corpus".into(),
                result: Err(e),
            }];
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let (source, sink, repos) = (source.clone(), self.sink.clone(), self.repos.clone());
            tasks
                .spawn(async move { (i, source.label(), source.pass(&sink, &repos, false).await) });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((i, source, result)) => outcomes.push((i, Outcome { source, result })),
                Err(e) => outcomes.push((
                    usize::MAX,
                    Outcome {
                        source: "sync task".into(),
                        result: Err(SyncError::Other(e.to_string())),
                    },
                )),
            }
        }
        outcomes.sort_by_key(|(i, _)| *i);
        outcomes.into_iter().map(|(_, o)| o).collect()
    }

    /// Runs every source forever (until maintnerd shuts down), following
    /// the configured pubsubhelper for wake-ups.
    pub fn spawn(self) -> tokio::task::JoinSet<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let wakeups = Arc::new(Wakeups::default());
        // Topics exist before the follower runs, so no early event is
        // dropped as unknown.
        let loops: Vec<_> = self
            .sources
            .into_iter()
            .map(|source| {
                let interval = match &source {
                    Source::Git(_) => self.config.poll.git(),
                    Source::GitHub(..) => self.config.poll.github(),
                    Source::Gerrit(_) => self.config.poll.gerrit(),
                };
                let wake = source.topic().map(|t| wakeups.topic(&t));
                (source, interval, wake)
            })
            .collect();
        if let Some(pubsub) = &self.config.pubsub {
            let (url, wakeups, sink) = (pubsub.url.clone(), wakeups.clone(), self.sink.clone());
            tasks.spawn(async move {
                let metrics_sink = sink.clone();
                super::pubsub::follow(
                    url,
                    wakeups,
                    move || metrics_sink.count_wakeup(),
                    async move { sink.cancelled().await },
                )
                .await;
            });
        }
        for (source, interval, wake) in loops {
            let (sink, repos) = (self.sink.clone(), self.repos.clone());
            tasks.spawn(source_loop(source, sink, repos, interval, wake));
        }
        tasks
    }
}

/// One source's loop: pass, then sleep for `interval` or until woken. A
/// GitHub wake-up that finds nothing new re-polls with backoff from 1 s,
/// doubling up to the interval, bypassing the HTTP cache, until something
/// changes (GitHub's API lags its webhooks).
async fn source_loop(
    source: Source,
    sink: Sink,
    repos: PathBuf,
    interval: Duration,
    wake: Option<Arc<Notify>>,
) {
    if sink.ready().await.is_err() {
        return;
    }
    let label = source.label();
    let mut expect_changes = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        let wait = match source.pass(&sink, &repos, expect_changes).await {
            Ok(appended) => {
                sink.count_pass(true);
                tracing::debug!(source = %label, appended, elapsed = ?started.elapsed(), "sync pass");
                if expect_changes && appended == 0 && matches!(source, Source::GitHub(..)) {
                    let wait = backoff;
                    backoff = (backoff * 2).min(interval);
                    wait
                } else {
                    expect_changes = false;
                    backoff = Duration::from_secs(1);
                    interval
                }
            }
            Err(SyncError::ShuttingDown) => return,
            Err(e) => {
                sink.count_pass(false);
                tracing::warn!(source = %label, error = %e, "sync pass failed; retrying in 30 s");
                RETRY_AFTER_FAILURE.min(interval)
            }
        };
        let woken = async {
            match &wake {
                Some(notify) => notify.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = woken => {
                tracing::info!(source = %label, "woken by pubsubhelper");
                expect_changes = true;
                backoff = Duration::from_secs(1);
            }
            () = sink.cancelled() => return,
        }
    }
}

impl Sink {
    pub(crate) fn count_pass(&self, ok: bool) {
        let m = &self.shared.metrics;
        m.ingest_passes.fetch_add(1, Ordering::Relaxed);
        if !ok {
            m.ingest_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_wakeup(&self) {
        self.shared
            .metrics
            .ingest_wakeups
            .fetch_add(1, Ordering::Relaxed);
    }
}

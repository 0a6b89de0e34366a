//! GitHub polling: one pass over a repository in Go maintner's order
//! (spec/maintner.md §6.3), appending only what the corpus lacks.
//!
//! Layout:
//! - [`client`]: the REST client (octocrab underneath): ETag cache, `Link`
//!   paging, rate-limit waits, 5xx retries, a request counter.
//! - [`diff`]: pure functions from payloads and the corpus to mutations.
//! - this module: [`sync_repo`], the pass itself.
//!
//! A pass runs four phases. Issues: the list sorted by update time, newest
//! first, page by page; before a page's first change (unless that page came
//! from the cache) labels and milestones are synced; a page with no change
//! ends the listing unless issue numbers are missing below the highest,
//! and missing numbers are then fetched one by one (404 or 410 records
//! `not_exist`). Then comments, events and reviews (pull requests only), for
//! every issue whose sync time is not after its update time, each phase
//! recording the server's `Date` as that issue's sync watermark.
//!
//! What it never does: keep state the log cannot rebuild. Between passes
//! only the client's ETag cache survives, and losing it costs requests,
//! never correctness. Each append is whole; a pass that fails part-way
//! leaves the rest stale, and the next pass picks it up.
//!
//! Deliberate differences from Go: labels and milestones go in one
//! `GithubMutation`, not two; appends are batched (one per issue page, up to
//! [`BATCH`] mutations otherwise), and a comment page that changes nothing
//! and is not the last is not logged as an empty mutation; events and
//! reviews with id 0 are not sent (the fold ignores them); an events,
//! reviews or comments listing that answers 404 or 410 records `not_exist`
//! (Go HEAD does this for comments); a single-issue fetch answering 301 (the
//! issue moved to another repository) or returning another number also
//! records `not_exist`; the stale-issue phases run one round, not until
//! nothing is stale; comments are paged by `Link`, not by `since` (see
//! `sync_issue_comments`); one issue whose comments, events or reviews fail
//! is logged and retried next pass instead of failing the whole pass.

pub mod client;
pub mod diff;

use std::collections::HashSet;

use almanac_projections::corpus::time::Time;
use almanac_proto::pb::maintpb::{
    GithubIssueMutation, GithubIssueSyncStatus, GithubMutation, Mutation,
};
use serde::de::DeserializeOwned;

use super::config::GitHubSource;
use super::{Sink, SyncError};
pub use client::{CachePolicy, ClientOptions, Fetched, GitHubClient};
use diff::{ApiComment, ApiIssue, ApiLabel, ApiMilestone};

/// Items per listing page, GitHub's maximum.
pub const PER_PAGE: usize = 100;

/// Most mutations per append outside the issue listing.
pub const BATCH: usize = 100;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassStats {
    /// HTTP requests sent, retries and 304s included.
    pub requests: u64,
    /// Requests the server answered 304 (served from the ETag cache).
    pub not_modified: u64,
    /// Mutations appended.
    pub mutations: u64,
}

/// Runs one sync pass over `source` and returns what it did. With
/// `bypass_cache` the first issues page is fetched without `If-None-Match`
/// (Go does this after a webhook announced a change the cache may hide).
///
/// `PassStats::requests` is the change in `client`'s counter, so run one
/// pass per client at a time for exact figures.
pub async fn sync_repo(
    client: &GitHubClient,
    sink: &Sink,
    source: &GitHubSource,
    bypass_cache: bool,
) -> Result<PassStats, SyncError> {
    let (owner, repo) = source.owner_repo();
    if owner.is_empty() || repo.is_empty() {
        return Err(SyncError::GitHub(format!(
            "repo {:?} is not owner/repo",
            source.repo
        )));
    }
    sink.ready().await?;
    let (requests, not_modified) = (client.requests(), client.not_modified());
    let mut pass = Pass {
        client,
        sink,
        owner,
        repo,
        pending: Vec::new(),
        mutations: 0,
        last_progress: std::time::Instant::now(),
    };
    pass.sync_issues(bypass_cache).await?;
    pass.sync_comments().await?;
    pass.sync_listing(Listing::Events).await?;
    pass.sync_listing(Listing::Reviews).await?;
    let stats = PassStats {
        requests: client.requests() - requests,
        not_modified: client.not_modified() - not_modified,
        mutations: pass.mutations,
    };
    tracing::info!(
        repo = %source.repo,
        requests = stats.requests,
        not_modified = stats.not_modified,
        mutations = stats.mutations,
        "GitHub sync pass done"
    );
    Ok(stats)
}

/// One pass's state.
struct Pass<'a> {
    client: &'a GitHubClient,
    sink: &'a Sink,
    owner: &'a str,
    repo: &'a str,
    /// Mutations not yet appended (never more than [`BATCH`]).
    pending: Vec<Mutation>,
    mutations: u64,
    /// When progress was last logged (a first sync of a big repository
    /// takes many minutes at GitHub's rates).
    last_progress: std::time::Instant,
}

/// How often a long pass logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn issue_mutation(m: GithubIssueMutation) -> Mutation {
    Mutation {
        github_issue: Some(m),
        ..Mutation::default()
    }
}

fn sync_status(date: Time) -> GithubIssueSyncStatus {
    GithubIssueSyncStatus {
        server_date: Some(diff::timestamp(date)),
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8], path: &str) -> Result<T, SyncError> {
    serde_json::from_slice(body)
        .map_err(|e| SyncError::GitHub(format!("GET {path}: unexpected JSON: {e}")))
}

/// A per-issue failure in the comments, events or reviews phase is logged
/// and skipped (that issue's sync status is not written, so the next pass
/// retries it); only failures of the log itself end the pass, so one odd
/// issue never starves the rest.
fn skip_issue_failure(
    result: Result<(), SyncError>,
    repo: &str,
    number: i32,
    phase: &str,
) -> Result<(), SyncError> {
    match result {
        Ok(()) => Ok(()),
        Err(e @ (SyncError::Append(_) | SyncError::NoCorpus | SyncError::ShuttingDown)) => Err(e),
        Err(e) => {
            tracing::warn!(repo, number, phase, error = %e, "skipping this issue until the next pass");
            Ok(())
        }
    }
}

impl Pass<'_> {
    /// Logs `done` (of `total`, when known) for `phase` at most every
    /// [`PROGRESS_EVERY`].
    fn progress(&mut self, phase: &str, done: usize, total: Option<usize>) {
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = std::time::Instant::now();
            tracing::info!(
                repo = %format!("{}/{}", self.owner, self.repo),
                phase,
                done,
                total = ?total,
                requests = self.client.requests(),
                mutations = self.mutations,
                "GitHub sync progress"
            );
        }
    }

    fn issue_base(&self, number: i32) -> GithubIssueMutation {
        GithubIssueMutation {
            owner: self.owner.to_owned(),
            repo: self.repo.to_owned(),
            number,
            ..GithubIssueMutation::default()
        }
    }

    fn not_exist(&self, number: i32) -> Mutation {
        issue_mutation(GithubIssueMutation {
            not_exist: true,
            ..self.issue_base(number)
        })
    }

    /// Appends `batch` now (the corpus has folded it when this returns).
    async fn append(&mut self, batch: Vec<Mutation>) -> Result<(), SyncError> {
        let n = batch.len() as u64;
        self.sink.append(batch).await?;
        self.mutations += n;
        Ok(())
    }

    /// Queues `m`, appending the queue once it holds [`BATCH`].
    async fn push(&mut self, m: Mutation) -> Result<(), SyncError> {
        self.pending.push(m);
        if self.pending.len() >= BATCH {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SyncError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        self.append(batch).await
    }

    /// The issue numbers of this repo that pass `stale`, ascending.
    fn stale_issues(
        &self,
        stale: impl Fn(&almanac_projections::corpus::api::Issue<'_>) -> bool,
    ) -> Result<Vec<i32>, SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        self.sink.read(|c| {
            c.github()
                .repo(owner, repo)
                .map(|r| {
                    r.issues()
                        .filter(|i| !i.not_exist() && stale(i))
                        .map(|i| i.number())
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    // ---- Issues ----------------------------------------------------------

    async fn sync_issues(&mut self, bypass_cache: bool) -> Result<(), SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        let mut next = Some(format!(
            "/repos/{owner}/{repo}/issues?state=all&sort=updated&direction=desc&per_page={PER_PAGE}"
        ));
        let mut first_page = true;
        let mut seen_pages = 0usize;
        let mut seen: HashSet<i64> = HashSet::new();
        while let Some(path) = next.take() {
            // Like Go's httpcache, only the first page is cached: later
            // pages are read only when the first one changed.
            let policy = match (first_page, bypass_cache) {
                (true, false) => CachePolicy::Revalidate,
                (true, true) => CachePolicy::Refresh,
                (false, _) => CachePolicy::Bypass,
            };
            first_page = false;
            let page = self.client.get(&path, policy).await?.expect_ok(&path)?;
            let issues: Vec<ApiIssue> = parse_json(&page.body, &path)?;
            seen_pages += 1;
            self.progress("issue pages", seen_pages, None);
            if issues.is_empty() {
                tracing::debug!(owner, repo, "issues: reached the end");
                break;
            }
            // An issue updated while we page moves to the top and can show
            // up again on the next page.
            let fresh: Vec<ApiIssue> = issues.into_iter().filter(|i| seen.insert(i.id)).collect();
            let changes: Vec<Mutation> = self.sink.read(|c| {
                let have = c.github().repo(owner, repo);
                fresh
                    .iter()
                    .filter_map(|api| {
                        diff::diff_issue(
                            owner,
                            repo,
                            // An issue marked gone that is listed again is
                            // diffed as new, which revives it.
                            have.and_then(|r| r.issue(api.number))
                                .filter(|i| !i.not_exist()),
                            api,
                        )
                    })
                    .map(issue_mutation)
                    .collect()
            })?;
            let n_changes = changes.len();
            if n_changes > 0 {
                if !page.not_modified {
                    self.sync_labels_and_milestones().await?;
                }
                self.append(changes).await?;
            }
            tracing::debug!(
                owner,
                repo,
                issues = fresh.len(),
                changes = n_changes,
                cached = page.not_modified,
                "issues page"
            );
            if n_changes == 0 {
                let missing = self.missing_numbers()?;
                if missing.is_empty() {
                    return Ok(());
                }
                tracing::debug!(
                    owner,
                    repo,
                    missing = missing.len(),
                    "missing issue numbers"
                );
                // Few enough to fetch one by one; otherwise keep paging,
                // which finds them a hundred at a time.
                if missing.len() < PER_PAGE {
                    break;
                }
            }
            next = page.next;
        }
        self.fetch_missing_issues().await
    }

    fn missing_numbers(&self) -> Result<Vec<i32>, SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        self.sink
            .read(|c| diff::missing_numbers(c.github().repo(owner, repo)))
    }

    /// Fetches each missing number: gone (301, 404, 410) records
    /// `not_exist`; otherwise the whole issue, diffed against nothing as Go
    /// does.
    async fn fetch_missing_issues(&mut self) -> Result<(), SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        for number in self.missing_numbers()? {
            let path = format!("/repos/{owner}/{repo}/issues/{number}");
            let fetched = self.client.get(&path, CachePolicy::Bypass).await?;
            let m = match fetched.status {
                301 | 404 | 410 => Some(self.not_exist(number)),
                _ => {
                    let fetched = fetched.expect_ok(&path)?;
                    let api: ApiIssue = parse_json(&fetched.body, &path)?;
                    if api.number == number {
                        diff::diff_issue(owner, repo, None, &api).map(issue_mutation)
                    } else {
                        Some(self.not_exist(number))
                    }
                }
            };
            if let Some(m) = m {
                self.push(m).await?;
            }
        }
        self.flush().await
    }

    /// Lists every page of `first` (cached); `None` when the first page is
    /// unchanged since the last listing.
    async fn list_all<T: DeserializeOwned>(
        &self,
        first: String,
    ) -> Result<Option<Vec<T>>, SyncError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut first_page = true;
        while let Some(path) = next.take() {
            let page = self
                .client
                .get(&path, CachePolicy::Revalidate)
                .await?
                .expect_ok(&path)?;
            let items: Vec<T> = parse_json(&page.body, &path)?;
            if items.is_empty() {
                break;
            }
            if first_page && page.not_modified {
                return Ok(None);
            }
            first_page = false;
            out.extend(items);
            next = page.next;
        }
        Ok(Some(out))
    }

    async fn sync_labels_and_milestones(&mut self) -> Result<(), SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        let milestones: Option<Vec<ApiMilestone>> = self
            .list_all(format!(
                "/repos/{owner}/{repo}/milestones?state=all&per_page={PER_PAGE}"
            ))
            .await?;
        let labels: Option<Vec<ApiLabel>> = self
            .list_all(format!("/repos/{owner}/{repo}/labels?per_page={PER_PAGE}"))
            .await?;
        let m = self.sink.read(|c| {
            let have = c.github().repo(owner, repo);
            GithubMutation {
                owner: owner.to_owned(),
                repo: repo.to_owned(),
                labels: labels
                    .as_deref()
                    .map(|l| diff::diff_labels(have, l))
                    .unwrap_or_default(),
                milestones: milestones
                    .as_deref()
                    .map(|m| diff::diff_milestones(have, m))
                    .unwrap_or_default(),
            }
        })?;
        tracing::debug!(
            owner,
            repo,
            labels = m.labels.len(),
            milestones = m.milestones.len(),
            "label and milestone changes"
        );
        if m.labels.is_empty() && m.milestones.is_empty() {
            return Ok(());
        }
        self.append(vec![Mutation {
            github: Some(m),
            ..Mutation::default()
        }])
        .await
    }

    // ---- Comments --------------------------------------------------------

    async fn sync_comments(&mut self) -> Result<(), SyncError> {
        let stale = self.stale_issues(|i| i.comments_synced() <= i.updated())?;
        tracing::debug!(
            owner = self.owner,
            repo = self.repo,
            issues = stale.len(),
            "comment sync"
        );
        let total = stale.len();
        for (done, number) in stale.into_iter().enumerate() {
            self.progress("comments", done, Some(total));
            let result = self.sync_issue_comments(number).await;
            skip_issue_failure(result, self.repo, number, "comments")?;
        }
        self.flush().await
    }

    /// Pages through comments by `Link: rel="next"`, one mutation per page
    /// with changes; the last page's carries `comment_status`. Go pages by
    /// `since` = the page's last `updated_at`, but this endpoint lists
    /// comments by id whatever `sort` says, so a comment created before an
    /// older comment's edit would fall outside every later page and never be
    /// logged; following `Link` sees every comment (each page is diffed
    /// against the corpus, so nothing known is sent twice).
    async fn sync_issue_comments(&mut self, number: i32) -> Result<(), SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        let base = format!(
            "/repos/{owner}/{repo}/issues/{number}/comments?sort=updated&direction=asc&per_page={PER_PAGE}"
        );
        let mut path = base;
        loop {
            let fetched = self.client.get(&path, CachePolicy::Bypass).await?;
            if fetched.is_gone() {
                return self.push(self.not_exist(number)).await;
            }
            let fetched = fetched.expect_ok(&path)?;
            let date = fetched.server_date(&path)?;
            let comments: Vec<ApiComment> = parse_json(&fetched.body, &path)?;
            let page = self.sink.read(|c| {
                let have = c.github().repo(owner, repo).and_then(|r| r.issue(number));
                diff::diff_comments(have, &comments)
            })?;
            let mut m = GithubIssueMutation {
                comment: page.changes,
                ..self.issue_base(number)
            };
            let Some(link) = fetched.next else {
                m.comment_status = Some(sync_status(date));
                return self.push(issue_mutation(m)).await;
            };
            if !m.comment.is_empty() {
                self.push(issue_mutation(m)).await?;
            }
            // The next page is diffed against this one.
            self.flush().await?;
            path = link;
        }
    }

    // ---- Events and reviews ----------------------------------------------

    /// Events of every issue, then reviews of every pull request, whose
    /// sync status is older than their last update.
    async fn sync_listing(&mut self, kind: Listing) -> Result<(), SyncError> {
        let stale = self.stale_issues(|i| {
            let synced = match kind {
                Listing::Events => i.events_synced(),
                Listing::Reviews if i.is_pull_request() => i.reviews_synced(),
                Listing::Reviews => return false,
            };
            synced <= i.updated()
        })?;
        tracing::debug!(
            owner = self.owner,
            repo = self.repo,
            issues = stale.len(),
            listing = kind.name(),
            "listing sync"
        );
        let total = stale.len();
        for (done, number) in stale.into_iter().enumerate() {
            self.progress(kind.name(), done, Some(total));
            let result = self.sync_issue_listing(kind, number).await;
            skip_issue_failure(result, self.repo, number, kind.name())?;
        }
        self.flush().await
    }

    /// Reads an issue's events (or a pull request's reviews) from the
    /// first page holding unknown ones (`1 + known/100`), following `Link`,
    /// into one mutation of the new items plus the listing's sync status.
    /// Items never change, so known ids are skipped.
    async fn sync_issue_listing(&mut self, kind: Listing, number: i32) -> Result<(), SyncError> {
        let (owner, repo) = (self.owner, self.repo);
        let (known, mut seen) = self.sink.read(|c| {
            let have = c.github().repo(owner, repo).and_then(|r| r.issue(number));
            let ids = match kind {
                Listing::Events => diff::known_event_ids(have),
                Listing::Reviews => diff::known_review_ids(have),
            };
            (ids.len(), ids)
        })?;
        let first = 1 + known / PER_PAGE;
        let mut path = match kind {
            Listing::Events => format!(
                "/repos/{owner}/{repo}/issues/{number}/events?per_page={PER_PAGE}&page={first}"
            ),
            Listing::Reviews => format!(
                "/repos/{owner}/{repo}/pulls/{number}/reviews?per_page={PER_PAGE}&page={first}"
            ),
        };
        let mut m = self.issue_base(number);
        loop {
            let fetched = self.client.get(&path, CachePolicy::Bypass).await?;
            if fetched.is_gone() {
                return self.push(self.not_exist(number)).await;
            }
            let fetched = fetched.expect_ok(&path)?;
            let status = Some(sync_status(fetched.server_date(&path)?));
            let parse_error =
                |e| SyncError::GitHub(format!("GET {path}: parsing {}: {e}", kind.name()));
            let page_len = match kind {
                Listing::Events => {
                    m.event_status = status;
                    let events = diff::parse_events(&fetched.body).map_err(parse_error)?;
                    let len = events.len();
                    m.event.extend(
                        events
                            .into_iter()
                            .filter(|e| e.id != 0 && seen.insert(e.id)),
                    );
                    len
                }
                Listing::Reviews => {
                    m.review_status = status;
                    let reviews = diff::parse_reviews(&fetched.body).map_err(parse_error)?;
                    let len = reviews.len();
                    m.review.extend(
                        reviews
                            .into_iter()
                            .filter(|r| r.id != 0 && seen.insert(r.id)),
                    );
                    len
                }
            };
            if page_len == 0 {
                break;
            }
            match fetched.next {
                Some(next) => path = next,
                None => break,
            }
        }
        self.push(issue_mutation(m)).await
    }
}

/// The per-issue listings whose items never change once posted.
#[derive(Debug, Clone, Copy)]
enum Listing {
    Events,
    Reviews,
}

impl Listing {
    fn name(self) -> &'static str {
        match self {
            Listing::Events => "events",
            Listing::Reviews => "reviews",
        }
    }
}

//! The maintner corpus: GitHub, git and Gerrit state folded from the log
//! with Go maintner's semantics, quirks included, so that a program written
//! against Go's `godata` finds the same world here.
//!
//! Layout:
//! - [`api`]: the read API (repos, issues, CLs, commits) as borrowed views.
//! - [`github`], [`git`], [`gerrit`]: the three folds.
//! - [`notedb`]: Gerrit NoteDB and commit-message text rules.
//! - [`text`], [`time`]: compact strings and instants.
//! - [`dump`]: the corpus rendered in the oracle format of Go's fold.
//! - [`checkpoint`]: saving the corpus at a position and reopening it.
//!
//! Folding is deterministic and does no IO. Gerrit CLs are derived lazily,
//! as in Go: [`Corpus::finish`] must run after a batch of mutations (the
//! loaders do this) before CL status, messages and metas are current.
//!
//! Where Go panics on a record that decodes but contradicts the state (a
//! label with id 0, a non-hex hash, a commit without a blank line), the
//! record's offending part is skipped and counted in [`Skipped`]; the load
//! never stops for it. One exception is not counted: Go removes a deleted
//! assignee by an index that can run past the end of the list (and then
//! panics); we skip that removal only.

pub mod api;
pub mod checkpoint;
pub(crate) mod chunked;
pub(crate) mod commit_index;
pub mod dump;
pub mod gerrit;
pub mod git;
pub mod github;
pub mod notedb;
pub mod text;
pub mod time;
pub mod wire;

use std::convert::Infallible;
use std::fmt;

use almanac_log::Position;
use almanac_proto::pb::maintpb::Mutation;

use crate::Projection;
use gerrit::{GerritSkip, GerritState};
pub use git::CommitKeys;
use git::{GitState, GitStrings};
use github::{Dropped, GitHubState, Strings};
use text::{Interner, Texts};

/// The folded world.
#[derive(Debug, Default)]
pub struct Corpus {
    pub(crate) syms: Interner,
    pub(crate) texts: Texts,
    pub(crate) github: GitHubState,
    pub(crate) git: GitState,
    pub(crate) gerrit: GerritState,
    pub(crate) mutations: u64,
    pub(crate) folded_to: Position,
    pub(crate) skipped: Skipped,
    /// The directory it was loaded from, for updates.
    pub(crate) source: Option<crate::load::Source>,
    /// The server it follows, when loaded with `Corpus::open_network`.
    pub(crate) remote: Option<Box<crate::network::Remote>>,
    /// The symbols of the loader's current [`CommitKeys`] (not saved: a
    /// new load starts new keys).
    pub(crate) keyed: git::KeyedSyms,
}

/// Commits and Gerrit ref updates of canonical records, parsed ahead of
/// folding (on the loader's decoding thread), for a whole batch of
/// records: one allocation per batch, not per commit.
#[derive(Debug, Default)]
pub struct Prepared {
    commits: Vec<git::ParsedCommit>,
    files: Vec<git::FileSpan>,
    /// Gerrit ref updates, parsed.
    refs: Vec<gerrit::RefAhead>,
    /// The [`CommitKeys`] table the commits were keyed with.
    keys_generation: u64,
}

/// The commits of one record within a [`Prepared`] batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreparedRange {
    start: u32,
    end: u32,
    refs_start: u32,
    refs_end: u32,
}

impl Prepared {
    /// Empties the batch, keeping its memory for the next one.
    pub fn clear(&mut self) {
        self.commits.clear();
        self.files.clear();
        self.refs.clear();
    }

    /// Parses the commits of a record that [`wire::check`] accepted as
    /// canonical, in record order, naming their people, zones and branches
    /// with `keys` (one table for all the batches one decoder makes in a
    /// load; the folding side keeps each table's symbols apart).
    pub fn add(&mut self, payload: &[u8], keys: &mut CommitKeys) -> PreparedRange {
        self.add_view(
            payload,
            &wire::MutationView::parse_commit_parts(payload),
            keys,
        )
    }

    /// [`Prepared::add`] for a record already viewed (`m` views `payload`).
    pub fn add_view(
        &mut self,
        payload: &[u8],
        m: &wire::MutationView<'_>,
        keys: &mut CommitKeys,
    ) -> PreparedRange {
        self.keys_generation = keys.generation();
        let start = self.commits.len() as u32;
        let refs_start = self.refs.len() as u32;
        if let Some(c) = m.git.as_ref().and_then(|g| g.commit.as_ref()) {
            let mut p = git::ParsedCommit::parse(payload, c, &mut self.files);
            p.assign_keys(payload, keys);
            self.commits.push(p);
        }
        if let Some(gm) = &m.gerrit {
            let project = std::str::from_utf8(gm.project()).unwrap_or("");
            for c in gm.commits() {
                let mut p = git::ParsedCommit::parse(payload, &c, &mut self.files);
                p.read_github_refs(payload, project);
                p.assign_keys(payload, keys);
                self.commits.push(p);
            }
            self.refs.extend(
                gm.refs()
                    .map(|(name, sha1)| gerrit::RefAhead::parse(payload, name, sha1)),
            );
        }
        PreparedRange {
            start,
            end: self.commits.len() as u32,
            refs_start,
            refs_end: self.refs.len() as u32,
        }
    }
}

/// The comments and events of a record's issue mutation, viewed ahead of
/// folding (the loader's decoding thread does), in record order.
#[derive(Debug, Clone, Copy)]
pub struct IssueParts<'v, 'a> {
    /// Its comments.
    pub comments: &'v [wire::CommentView<'a>],
    /// Its events.
    pub events: &'v [wire::EventView<'a>],
}

/// A record's parsed commits and the batch's file list they index.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreparedCommits<'a> {
    pub(crate) commits: &'a [git::ParsedCommit],
    pub(crate) files: &'a [git::FileSpan],
    /// The record's Gerrit ref updates.
    pub(crate) refs: &'a [gerrit::RefAhead],
}

/// Parts of mutations that could not be applied, by reason. Go logs most of
/// these and panics on some; we count them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// GitHub mutations without owner or repo.
    pub github_no_repo: u64,
    /// Issue mutations with number 0.
    pub github_no_number: u64,
    /// Labels or milestones with id 0.
    pub github_zero_id: u64,
    /// Commits that failed to parse.
    pub bad_commits: u64,
    /// Refs with a malformed hash.
    pub bad_refs: u64,
    /// Refs to commits never seen.
    pub refs_to_unknown_commits: u64,
    /// CL meta walks that hit a merge, a cycle or a missing parent.
    pub meta_walk_failures: u64,
    /// Records that did not decode and were skipped on request.
    pub undecodable_records: u64,
}

impl Skipped {
    /// The total.
    pub fn total(&self) -> u64 {
        self.github_no_repo
            + self.github_no_number
            + self.github_zero_id
            + self.bad_commits
            + self.bad_refs
            + self.refs_to_unknown_commits
            + self.meta_walk_failures
            + self.undecodable_records
    }

    fn count_github(&mut self, dropped: &[Dropped]) {
        for d in dropped {
            match d {
                Dropped::NoRepo => self.github_no_repo += 1,
                Dropped::NoNumber => self.github_no_number += 1,
                Dropped::ZeroId => self.github_zero_id += 1,
            }
        }
    }

    fn count_gerrit(&mut self, skips: &[GerritSkip]) {
        for s in skips {
            match s {
                GerritSkip::Commit(_) => self.bad_commits += 1,
                GerritSkip::BadRefHash(_) => self.bad_refs += 1,
                GerritSkip::UnknownCommit(_) => self.refs_to_unknown_commits += 1,
                GerritSkip::MetaWalk(..) => self.meta_walk_failures += 1,
            }
        }
    }
}

impl Corpus {
    /// An empty corpus.
    pub fn new() -> Corpus {
        Corpus::default()
    }

    /// Applies one mutation: its GitHub issue, GitHub repo, git and Gerrit
    /// parts, in Go's order.
    pub fn apply_mutation(&mut self, m: &Mutation) {
        let bytes = prost::Message::encode_to_vec(m);
        self.apply_view(&bytes, &wire::MutationView::parse(&bytes), None, None);
    }

    /// Applies a record's bytes, which must have passed [`wire::check`] as
    /// [`wire::Check::Canonical`]. With the payload's log position (and the
    /// log mapped), texts are kept as positions in the log, not copied.
    pub fn apply_canonical(&mut self, payload: &[u8], pos: Option<Position>) {
        self.apply_with(payload, pos, None);
    }

    /// [`Corpus::apply_canonical`] with the record's commits already parsed
    /// (in record order) into a [`Prepared`] batch, as the loader's decoders
    /// do.
    pub fn apply_prepared(
        &mut self,
        payload: &[u8],
        pos: Option<Position>,
        batch: &Prepared,
        range: PreparedRange,
    ) {
        let view = wire::MutationView::parse(payload);
        self.apply_prepared_view(payload, &view, None, pos, batch, range);
    }

    /// [`Corpus::apply_prepared`] for a record already viewed (`view` views
    /// `payload`): the loader views records read from the mapped log when it
    /// decodes them, and folds them with this.
    pub fn apply_prepared_view(
        &mut self,
        payload: &[u8],
        view: &wire::MutationView<'_>,
        parts: Option<IssueParts<'_, '_>>,
        pos: Option<Position>,
        batch: &Prepared,
        range: PreparedRange,
    ) {
        let commits = PreparedCommits {
            commits: &batch.commits[range.start as usize..range.end as usize],
            files: &batch.files,
            refs: &batch.refs[range.refs_start as usize..range.refs_end as usize],
        };
        self.keyed.begin_batch(batch.keys_generation);
        self.texts.begin_record(payload, pos.map(|p| p.0));
        self.apply_view(payload, view, Some(commits), parts);
        self.texts.end_record();
    }

    fn apply_with(
        &mut self,
        payload: &[u8],
        pos: Option<Position>,
        commits: Option<PreparedCommits<'_>>,
    ) {
        self.texts.begin_record(payload, pos.map(|p| p.0));
        self.apply_view(payload, &wire::MutationView::parse(payload), commits, None);
        self.texts.end_record();
    }

    fn apply_view(
        &mut self,
        base: &[u8],
        m: &wire::MutationView<'_>,
        commits: Option<PreparedCommits<'_>>,
        parts: Option<IssueParts<'_, '_>>,
    ) {
        self.mutations += 1;
        let mut dropped = Vec::new();
        if let Some(issue) = &m.github_issue {
            let mut strings = Strings {
                syms: &mut self.syms,
                texts: &mut self.texts,
            };
            match parts {
                Some(p) => {
                    self.github
                        .apply_issue(&mut strings, issue, p.comments, p.events, &mut dropped)
                }
                None => {
                    let comments: Vec<_> = issue.comments().collect();
                    let events: Vec<_> = issue.events().collect();
                    self.github
                        .apply_issue(&mut strings, issue, &comments, &events, &mut dropped)
                }
            }
        }
        if let Some(repo) = &m.github {
            let mut strings = Strings {
                syms: &mut self.syms,
                texts: &mut self.texts,
            };
            self.github.apply_repo(&mut strings, repo, &mut dropped);
        }
        self.skipped.count_github(&dropped);
        let mut strings = GitStrings {
            syms: &mut self.syms,
            texts: &mut self.texts,
            keyed: &mut self.keyed,
        };
        // Commits come in record order: the git mutation's, then Gerrit's.
        let mut commits = commits;
        if let Some(commit) = m.git.as_ref().and_then(|g| g.commit.as_ref()) {
            let applied = match commits.and_then(|c| c.commits.split_first().map(|f| (f, c))) {
                Some(((first, rest), c)) => {
                    commits = Some(PreparedCommits {
                        commits: rest,
                        files: c.files,
                        refs: c.refs,
                    });
                    self.git.apply_parsed(&mut strings, base, first, c.files)
                }
                None => self.git.apply_commit(&mut strings, base, commit),
            };
            if applied.is_err() {
                self.skipped.bad_commits += 1;
            }
        }
        if let Some(g) = &m.git {
            self.git.apply_repo_refs(g);
        }
        if let Some(gm) = &m.gerrit {
            let skips = self.gerrit.apply(
                &mut self.git,
                &mut self.github,
                &mut strings,
                base,
                gm,
                commits,
            );
            self.skipped.count_gerrit(&skips);
        }
    }

    /// Derives every CL whose meta ref moved (Go's `finishProcessing`).
    /// Loaders call this once a batch is applied.
    pub fn finish(&mut self) {
        self.finish_on(None);
    }

    /// [`Corpus::finish`] with the number of threads that walk meta chains
    /// fixed (`None`: chosen by how many CLs are dirty).
    fn finish_on(&mut self, threads: Option<usize>) {
        let mut strings = GitStrings {
            syms: &mut self.syms,
            texts: &mut self.texts,
            keyed: &mut self.keyed,
        };
        let mut skips = Vec::new();
        self.gerrit
            .finish(&self.git, &mut strings, &mut skips, threads);
        self.skipped.count_gerrit(&skips);
    }

    /// The log position just past the last record folded in.
    pub fn position(&self) -> Position {
        self.folded_to
    }

    /// Records that the fold has reached `pos`.
    pub fn set_position(&mut self, pos: Position) {
        self.folded_to = pos;
    }

    /// How many mutations were folded in all.
    pub fn mutation_count(&self) -> u64 {
        self.mutations
    }

    /// What was skipped so far.
    pub fn skipped(&self) -> &Skipped {
        &self.skipped
    }

    /// Counts of everything, as Go's corpus reports them.
    pub fn counts(&self) -> Counts {
        let mut c = Counts {
            mutations: self.mutations,
            github_repos: self.github.repos.len() as u64,
            github_users: self.github.users.len() as u64,
            github_teams: self.github.teams.len() as u64,
            gerrit_projects: self.gerrit.projects.len() as u64,
            git_commits: self.git.commits.len() as u64,
            ..Counts::default()
        };
        for repo in self.github.repos.values() {
            for issue in repo.issues.values() {
                c.github_issues += 1;
                c.github_prs += u64::from(issue.pull_request);
                c.github_not_exist += u64::from(issue.not_exist);
                c.github_comments += issue.comments.len() as u64;
                c.github_events += issue.events.len() as u64;
                c.github_reviews += issue.reviews.len() as u64;
            }
        }
        for p in self.gerrit.projects.values() {
            c.gerrit_cls += p.cls.len() as u64;
            c.gerrit_project_commits += p.commit_count;
        }
        c.git_placeholders = self
            .git
            .commits
            .iter()
            .filter(|c| c.is_placeholder())
            .count() as u64;
        c
    }
}

impl Projection for Corpus {
    type Error = Infallible;

    fn apply(&mut self, _pos: Position, m: &Mutation) -> Result<(), Infallible> {
        self.apply_mutation(m);
        Ok(())
    }
}

/// What a corpus holds, in Go's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Mutations folded.
    pub mutations: u64,
    /// GitHub repositories (including ones only referenced from commits).
    pub github_repos: u64,
    /// GitHub users seen.
    pub github_users: u64,
    /// GitHub teams seen.
    pub github_teams: u64,
    /// Issues and pull requests.
    pub github_issues: u64,
    /// Of which pull requests.
    pub github_prs: u64,
    /// Of which found not to exist.
    pub github_not_exist: u64,
    /// Comments.
    pub github_comments: u64,
    /// Timeline events.
    pub github_events: u64,
    /// Pull-request reviews.
    pub github_reviews: u64,
    /// Gerrit projects.
    pub gerrit_projects: u64,
    /// Gerrit CLs.
    pub gerrit_cls: u64,
    /// Commits logged per Gerrit project, summed.
    pub gerrit_project_commits: u64,
    /// Commits in the global map.
    pub git_commits: u64,
    /// Of which placeholders.
    pub git_placeholders: u64,
}

impl fmt::Display for Counts {
    /// The `.counts` format of the Go oracle.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = |f: &mut fmt::Formatter<'_>, label: &str, value: String| {
            writeln!(f, "{label:<20}{value}")
        };
        line(f, "mutations:", self.mutations.to_string())?;
        line(
            f,
            "github repos:",
            format!(
                "{} (users {}, teams {})",
                self.github_repos, self.github_users, self.github_teams
            ),
        )?;
        line(
            f,
            "github issues:",
            format!(
                "{} (PRs {}, NotExist {})",
                self.github_issues, self.github_prs, self.github_not_exist
            ),
        )?;
        line(f, "github comments:", self.github_comments.to_string())?;
        line(
            f,
            "github events:",
            format!("{}, reviews {}", self.github_events, self.github_reviews),
        )?;
        line(f, "gerrit projects:", self.gerrit_projects.to_string())?;
        line(f, "gerrit CLs:", self.gerrit_cls.to_string())?;
        line(
            f,
            "gerrit proj commits:",
            self.gerrit_project_commits.to_string(),
        )?;
        line(
            f,
            "git commits:",
            format!(
                "{} (placeholders {})",
                self.git_commits, self.git_placeholders
            ),
        )
    }
}

/// Approximate heap bytes held, by part (for tuning and `corpus stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Text arena: bytes reserved (most text stays in the mapped log and is
    /// not counted here).
    pub texts: u64,
    /// Interned strings and their index.
    pub symbols: u64,
    /// GitHub structures (issues, comments, events, reviews, maps).
    pub github: u64,
    /// Commit table, diff trees and the hash index.
    pub git: u64,
    /// Gerrit projects and CLs.
    pub gerrit: u64,
}

impl MemoryUse {
    /// The sum.
    pub fn total(&self) -> u64 {
        self.texts + self.symbols + self.github + self.git + self.gerrit
    }
}

impl Corpus {
    /// Approximate heap bytes held, by part.
    pub fn memory_use(&self) -> MemoryUse {
        use std::mem::size_of;
        let mut m = MemoryUse {
            texts: self.texts.arena_reserved() as u64,
            ..MemoryUse::default()
        };
        m.symbols = self.syms.heap_bytes() as u64;
        for repo in self.github.repos.values() {
            m.github += (repo.issues.len() * (size_of::<github::IssueData>() + 24)) as u64;
            for issue in repo.issues.values() {
                m.github += (issue.comments.capacity() * size_of::<github::CommentData>()
                    + issue.events.capacity() * size_of::<github::EventData>()
                    + issue.reviews.capacity() * size_of::<github::ReviewData>()
                    + issue.assignees.capacity() * 8
                    + issue.labels.capacity() * 8) as u64;
            }
        }
        m.github += (self.github.users.capacity() * 16) as u64;
        m.git = (self.git.commits.capacity() * size_of::<git::CommitData>()
            + self.git.by_hash.heap_bytes()) as u64;
        for c in &self.git.commits {
            if let Some(f) = &c.files {
                m.git += (f.len() * size_of::<git::FileStat>()) as u64;
            }
            if let git::Parents::Many(p) = &c.parents {
                m.git += (p.len() * 4) as u64;
            }
        }
        for p in self.gerrit.projects.values() {
            m.gerrit += ((p.other_commits.capacity() + p.need.capacity()) * 21
                + p.cls.len() * (size_of::<gerrit::ClData>() + 24)) as u64;
            for cl in p.cls.values() {
                m.gerrit += (cl.metas.capacity() * 4
                    + cl.remote.capacity() * 24
                    + cl.messages.capacity() * size_of::<gerrit::MessageData>()
                    + cl.github_refs.capacity() * 12) as u64;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use almanac_log::segment::Sha224Digest;
    use almanac_log::{Position, Snapshot};

    use super::Corpus;

    /// Go's `mixed` log folded record by record, its CLs not yet derived.
    fn mixed_unfinished() -> Corpus {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../log/tests/fixtures/go/mixed.mutlog");
        let bytes = std::fs::read(path).expect("fixture");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
        std::fs::write(dir.path().join(file), &bytes).expect("write");
        let snap = Snapshot::open(dir.path()).expect("snapshot");
        let mut corpus = Corpus::new();
        crate::replay(
            &mut snap.read_from(Position(0)).expect("reader"),
            &mut corpus,
        )
        .expect("replay");
        corpus
    }

    #[test]
    fn meta_walks_on_several_threads_derive_what_one_thread_does() {
        let mut one = mixed_unfinished();
        one.finish_on(Some(1));
        let derived = one
            .gerrit
            .projects
            .values()
            .flat_map(|p| p.cls.values())
            .filter(|cl| !cl.metas.is_empty())
            .count();
        assert!(derived >= 100, "only {derived} CLs derived");
        for threads in [2, 3, 7] {
            let mut many = mixed_unfinished();
            many.finish_on(Some(threads));
            assert_eq!(many.dump(), one.dump(), "{threads} threads");
            assert_eq!(many.syms.len(), one.syms.len(), "{threads} threads");
            assert_eq!(
                format!("{:?}", many.skipped),
                format!("{:?}", one.skipped),
                "{threads} threads"
            );
        }
    }
}

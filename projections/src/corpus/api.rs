//! The read API: what godata users call, as borrowed views and iterators.
//!
//! Every view borrows the corpus (`'a`), so they are cheap to copy and
//! cannot outlive an update. Ordering follows Go's: repos by owner then
//! name; issues by number; comments and events by creation time then id;
//! reviews by creation time (then id, where Go leaves ties unordered); CLs
//! by number; refs by name. GitHub text is always valid UTF-8 (protobuf
//! strings); git text is bytes, with `_str` accessors that replace invalid
//! UTF-8.

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::Corpus;
use super::gerrit::{ClData, ClStatus, MessageData, ProjectData};
use super::git::{CommitData, CommitIdx, Committer, FileStat, GitHash, GitTime};
use super::github::{
    CommentData, EventData, EventExtra, IssueData, MilestoneData, MilestoneRef, RepoData, RepoKey,
    ReviewData, UserRef,
};
use super::notedb;
use super::text::{Sym, Text};
use super::time::Time;

fn utf8(bytes: &[u8]) -> &str {
    // GitHub strings come from protobuf `string` fields, which decoding
    // validated; nothing else reaches these accessors.
    std::str::from_utf8(bytes).unwrap_or("")
}

/// An invariant [`Corpus::check`] found broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// A commit is known only as another's parent.
    #[error("git commit {0} is a placeholder (seen only as a parent)")]
    Placeholder(GitHash),
    /// A commit is not found by its own hash.
    #[error("git commit {0} is not found by its own hash")]
    HashMismatch(GitHash),
    /// A commit names a parent outside the commit table.
    #[error("git commit {0} has a parent that is not in the corpus")]
    MissingParent(GitHash),
    /// A Gerrit project logged commits whose parents it never logged.
    #[error("Gerrit project {project} is missing {missing} commits (first: {first})")]
    ProjectMissingCommits {
        /// The project, as mutations name it.
        project: String,
        /// How many parents it still waits for.
        missing: usize,
        /// The smallest of their hashes.
        first: GitHash,
    },
}

impl Corpus {
    /// The GitHub side.
    pub fn github(&self) -> GitHub<'_> {
        GitHub { c: self }
    }

    /// The Gerrit side.
    pub fn gerrit(&self) -> Gerrit<'_> {
        Gerrit { c: self }
    }

    /// A commit by 40 hex digits (either case); it may be a placeholder.
    pub fn git_commit(&self, hex: &str) -> Option<Commit<'_>> {
        let hash = GitHash::from_hex(hex.as_bytes())?;
        self.git.lookup(&hash).map(|idx| Commit { c: self, idx })
    }

    /// A plain git repository's logged refs (almanac's `GitMutation.refs`),
    /// by its `GitRepo.go_repo` name.
    pub fn git_repo(&self, name: &str) -> Option<GitRepo<'_>> {
        let (name, refs) = self.git.repo_refs.get_key_value(name)?;
        Some(GitRepo { name, refs })
    }

    /// The plain git repositories whose refs were logged, by name.
    pub fn git_repos(&self) -> impl Iterator<Item = GitRepo<'_>> {
        self.git
            .repo_refs
            .iter()
            .map(|(name, refs)| GitRepo { name, refs })
    }

    /// Go's `Corpus.Check`: the invariants a fully synced corpus keeps. No
    /// commit is still a placeholder, every commit is found by its own
    /// hash, every parent is in the commit table, and no Gerrit project
    /// still waits for a parent it has not logged. The first broken one is
    /// the error.
    pub fn check(&self) -> Result<(), CheckError> {
        let commits = &self.git.commits;
        for (i, c) in commits.iter().enumerate() {
            if c.is_placeholder() {
                return Err(CheckError::Placeholder(c.hash));
            }
            if self.git.lookup(&c.hash) != Some(CommitIdx(i as u32)) {
                return Err(CheckError::HashMismatch(c.hash));
            }
            for p in c.parents.as_slice() {
                if p.0 as usize >= commits.len() {
                    return Err(CheckError::MissingParent(c.hash));
                }
            }
        }
        for (name, project) in &self.gerrit.projects {
            if let Some(first) = project.need.iter().min() {
                return Err(CheckError::ProjectMissingCommits {
                    project: name.clone(),
                    missing: project.need.len(),
                    first: *first,
                });
            }
        }
        Ok(())
    }

    /// Every commit in the global map, in no particular order.
    pub fn git_commits(&self) -> impl Iterator<Item = Commit<'_>> {
        (0..self.git.commits.len()).map(|i| Commit {
            c: self,
            idx: CommitIdx(i as u32),
        })
    }

    pub(crate) fn text(&self, t: Text) -> &[u8] {
        self.texts.get(t)
    }
}

/// GitHub: repos and users.
#[derive(Debug, Clone, Copy)]
pub struct GitHub<'a> {
    c: &'a Corpus,
}

impl<'a> GitHub<'a> {
    /// Every repo, by owner then name (including repos only referenced
    /// from CL messages, as in Go).
    pub fn repos(self) -> impl Iterator<Item = Repo<'a>> {
        let c = self.c;
        let mut repos: Vec<Repo<'a>> = c
            .github
            .repos
            .iter()
            .map(|(key, data)| Repo { c, key: *key, data })
            .collect();
        repos.sort_by(|a, b| (a.owner(), a.name()).cmp(&(b.owner(), b.name())));
        repos.into_iter()
    }

    /// A repo by owner and name (case-sensitive, as Go).
    pub fn repo(self, owner: &str, repo: &str) -> Option<Repo<'a>> {
        let key = RepoKey {
            owner: self.c.syms.lookup(owner.as_bytes())?,
            repo: self.c.syms.lookup(repo.as_bytes())?,
        };
        let data = self.c.github.repos.get(&key)?;
        Some(Repo {
            c: self.c,
            key,
            data,
        })
    }

    /// A user by id.
    pub fn user(self, id: i64) -> Option<User<'a>> {
        self.c.github.user_by_id(id).map(|r| User { c: self.c, r })
    }
}

/// A GitHub user.
#[derive(Debug, Clone, Copy)]
pub struct User<'a> {
    c: &'a Corpus,
    r: UserRef,
}

impl<'a> User<'a> {
    /// The user id.
    pub fn id(self) -> i64 {
        self.c.github.user_data(self.r).id
    }

    /// The login, "" if never seen.
    pub fn login(self) -> &'a str {
        utf8(self.c.sym(self.c.github.user_data(self.r).login))
    }
}

fn user(c: &Corpus, r: Option<UserRef>) -> Option<User<'_>> {
    r.map(|r| User { c, r })
}

/// A repository.
#[derive(Debug, Clone, Copy)]
pub struct Repo<'a> {
    c: &'a Corpus,
    key: RepoKey,
    data: &'a RepoData,
}

impl<'a> Repo<'a> {
    /// Owner (`golang`).
    pub fn owner(self) -> &'a str {
        utf8(self.c.sym(self.key.owner))
    }

    /// Name (`go`).
    pub fn name(self) -> &'a str {
        utf8(self.c.sym(self.key.repo))
    }

    /// An issue or PR by number (including ones that do not exist).
    pub fn issue(self, number: i32) -> Option<Issue<'a>> {
        let data: &IssueData = self.data.issues.get(&number)?;
        Some(Issue {
            c: self.c,
            repo: self.data,
            data,
        })
    }

    /// Every issue and PR by number, NotExist ones included.
    pub fn issues(self) -> impl Iterator<Item = Issue<'a>> {
        let (c, repo) = (self.c, self.data);
        repo.issues
            .values()
            .map(move |data| Issue { c, repo, data })
    }

    /// The labels, by id.
    pub fn labels(self) -> impl Iterator<Item = Label<'a>> {
        let c = self.c;
        self.data.labels.iter().map(move |(id, name)| Label {
            c,
            id: *id,
            name: *name,
        })
    }

    /// The milestones, by id.
    pub fn milestones(self) -> impl Iterator<Item = Milestone<'a>> {
        let c = self.c;
        self.data
            .milestones
            .iter()
            .map(move |(id, data)| Milestone { c, id: *id, data })
    }
}

/// A label.
#[derive(Debug, Clone, Copy)]
pub struct Label<'a> {
    c: &'a Corpus,
    id: i64,
    name: Sym,
}

impl<'a> Label<'a> {
    /// The label id.
    pub fn id(self) -> i64 {
        self.id
    }

    /// Its name.
    pub fn name(self) -> &'a str {
        utf8(self.c.sym(self.name))
    }
}

/// A milestone.
#[derive(Debug, Clone, Copy)]
pub struct Milestone<'a> {
    c: &'a Corpus,
    id: i64,
    data: &'a MilestoneData,
}

impl<'a> Milestone<'a> {
    /// The milestone id.
    pub fn id(self) -> i64 {
        self.id
    }

    /// Its title.
    pub fn title(self) -> &'a str {
        utf8(self.c.sym(self.data.title))
    }

    /// Its per-repo number.
    pub fn number(self) -> i64 {
        self.data.number
    }

    /// Whether it is closed.
    pub fn closed(self) -> bool {
        self.data.closed
    }
}

/// An issue's milestone, as Go distinguishes it.
#[derive(Debug, Clone, Copy)]
pub enum IssueMilestone<'a> {
    /// Never said (Go's `IsUnknown`).
    Unknown,
    /// Explicitly none (Go's `IsNone`).
    None,
    /// This milestone.
    Set(Milestone<'a>),
}

/// An issue or pull request.
#[derive(Debug, Clone, Copy)]
pub struct Issue<'a> {
    c: &'a Corpus,
    repo: &'a RepoData,
    data: &'a IssueData,
}

impl<'a> Issue<'a> {
    /// Per-repo number.
    pub fn number(self) -> i32 {
        self.data.number
    }

    /// Global id, as first seen (usually 0 in Go's logs).
    pub fn id(self) -> i64 {
        self.data.id
    }

    /// Found not to exist (404/410).
    pub fn not_exist(self) -> bool {
        self.data.not_exist
    }

    /// A pull request.
    pub fn is_pull_request(self) -> bool {
        self.data.pull_request
    }

    /// Closed.
    pub fn closed(self) -> bool {
        self.data.closed
    }

    /// Locked.
    pub fn locked(self) -> bool {
        self.data.locked
    }

    /// The author.
    pub fn user(self) -> Option<User<'a>> {
        user(self.c, self.data.user)
    }

    /// Assignees in Go's order.
    pub fn assignees(self) -> impl Iterator<Item = User<'a>> {
        let c = self.c;
        self.data.assignees.iter().map(move |r| User { c, r: *r })
    }

    /// Creation time (`Time::ZERO` if unknown).
    pub fn created(self) -> Time {
        self.data.created
    }

    /// Last update time.
    pub fn updated(self) -> Time {
        self.data.updated
    }

    /// Closing time.
    pub fn closed_at(self) -> Time {
        self.data.closed_at
    }

    /// Who closed it.
    pub fn closed_by(self) -> Option<User<'a>> {
        user(self.c, self.data.closed_by)
    }

    /// The title.
    pub fn title(self) -> &'a str {
        utf8(self.c.text(self.data.title))
    }

    /// The body (top post).
    pub fn body(self) -> &'a str {
        utf8(self.c.text(self.data.body))
    }

    /// The milestone.
    pub fn milestone(self) -> IssueMilestone<'a> {
        match self.data.milestone {
            MilestoneRef::Unknown => IssueMilestone::Unknown,
            MilestoneRef::None => IssueMilestone::None,
            MilestoneRef::Id(id) => match self.repo.milestones.get(&id) {
                Some(data) => IssueMilestone::Set(Milestone {
                    c: self.c,
                    id,
                    data,
                }),
                None => IssueMilestone::Unknown,
            },
        }
    }

    /// Labels, by id.
    pub fn labels(self) -> impl Iterator<Item = Label<'a>> {
        let (c, repo) = (self.c, self.repo);
        self.data.labels.iter().map(move |id| Label {
            c,
            id: *id,
            name: repo.labels.get(id).copied().unwrap_or_default(),
        })
    }

    /// Whether it has a label with this name.
    pub fn has_label(self, name: &str) -> bool {
        self.labels().any(|l| l.name() == name)
    }

    /// Whether it has the label with this id.
    pub fn has_label_id(self, id: i64) -> bool {
        self.data.labels.binary_search(&id).is_ok()
    }

    /// Comments by creation time, then id.
    pub fn comments(self) -> impl Iterator<Item = Comment<'a>> {
        let c = self.c;
        let mut v: Vec<&'a CommentData> = self.data.comments.iter().collect();
        v.sort_by_key(|x| (x.created, x.id));
        v.into_iter().map(move |data| Comment { c, data })
    }

    /// Timeline events by creation time, then id.
    pub fn events(self) -> impl Iterator<Item = Event<'a>> {
        let c = self.c;
        let mut v: Vec<&'a EventData> = self.data.events.iter().collect();
        v.sort_by_key(|x| (x.created, x.id));
        v.into_iter().map(move |data| Event { c, data })
    }

    /// Whether an event of this type happened.
    pub fn has_event(self, event_type: &str) -> bool {
        self.data
            .events
            .iter()
            .any(|e| self.c.sym(e.typ) == event_type.as_bytes())
    }

    /// Reviews by creation time (none unless a pull request).
    pub fn reviews(self) -> impl Iterator<Item = Review<'a>> {
        let c = self.c;
        let mut v: Vec<&'a ReviewData> = if self.data.pull_request {
            self.data.reviews.iter().collect()
        } else {
            Vec::new()
        };
        v.sort_by_key(|x| (x.created, x.id));
        v.into_iter().map(move |data| Review { c, data })
    }

    /// Go's `LastModified()`: the latest of the update time and any event
    /// or review time.
    pub fn last_modified(self) -> Time {
        self.data.updated.max(self.data.event_max_time)
    }

    /// When comments were last synced (the server's Date).
    pub fn comments_synced(self) -> Time {
        self.data.comments_synced
    }

    /// When events were last synced.
    pub fn events_synced(self) -> Time {
        self.data.events_synced
    }

    /// When reviews were last synced.
    pub fn reviews_synced(self) -> Time {
        self.data.reviews_synced
    }
}

/// An issue comment.
#[derive(Debug, Clone, Copy)]
pub struct Comment<'a> {
    c: &'a Corpus,
    data: &'a CommentData,
}

impl<'a> Comment<'a> {
    /// Comment id.
    pub fn id(self) -> i64 {
        self.data.id
    }

    /// Author.
    pub fn user(self) -> Option<User<'a>> {
        user(self.c, self.data.user)
    }

    /// Creation time.
    pub fn created(self) -> Time {
        self.data.created
    }

    /// Last edit time.
    pub fn updated(self) -> Time {
        self.data.updated
    }

    /// The text.
    pub fn body(self) -> &'a str {
        utf8(self.c.text(self.data.body))
    }
}

/// An issue timeline event.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    c: &'a Corpus,
    data: &'a EventData,
}

/// A team.
#[derive(Debug, Clone, Copy)]
pub struct Team<'a> {
    c: &'a Corpus,
    id: i64,
}

impl<'a> Team<'a> {
    /// Team id.
    pub fn id(self) -> i64 {
        self.id
    }

    /// Its slug.
    pub fn slug(self) -> &'a str {
        self.c
            .github
            .teams
            .get(&self.id)
            .map_or("", |s| utf8(self.c.sym(*s)))
    }
}

/// The review a `review_dismissed` event dismissed.
#[derive(Debug, Clone, Copy)]
pub struct DismissedReview<'a> {
    /// Review id.
    pub review_id: i64,
    /// Its state then.
    pub state: &'a str,
    /// Why it was dismissed.
    pub message: &'a str,
}

impl<'a> Event<'a> {
    /// Event id.
    pub fn id(self) -> i64 {
        self.data.id
    }

    /// GitHub's event type (`labeled`, `closed`, ...).
    pub fn event_type(self) -> &'a str {
        utf8(self.c.sym(self.data.typ))
    }

    /// Who did it.
    pub fn actor(self) -> Option<User<'a>> {
        user(self.c, self.data.actor)
    }

    /// When.
    pub fn created(self) -> Time {
        self.data.created
    }

    /// The label name (labeled, unlabeled).
    pub fn label(self) -> &'a str {
        utf8(self.c.sym(self.data.label))
    }

    /// The milestone title (milestoned, demilestoned).
    pub fn milestone(self) -> &'a str {
        utf8(self.c.sym(self.data.milestone))
    }

    fn extra(self) -> EventExtra {
        self.c.github.extra(self.data)
    }

    /// Assignee (assigned, unassigned).
    pub fn assignee(self) -> Option<User<'a>> {
        user(self.c, self.extra().assignee)
    }

    /// Assigner.
    pub fn assigner(self) -> Option<User<'a>> {
        user(self.c, self.extra().assigner)
    }

    /// Requested reviewer.
    pub fn reviewer(self) -> Option<User<'a>> {
        user(self.c, self.extra().reviewer)
    }

    /// Who requested the review.
    pub fn review_requester(self) -> Option<User<'a>> {
        user(self.c, self.extra().review_requester)
    }

    /// A requested team.
    pub fn team_reviewer(self) -> Option<Team<'a>> {
        self.extra().team_reviewer.map(|id| Team { c: self.c, id })
    }

    /// Old title (renamed).
    pub fn rename_from(self) -> &'a str {
        utf8(self.c.text(self.extra().from))
    }

    /// New title (renamed).
    pub fn rename_to(self) -> &'a str {
        utf8(self.c.text(self.extra().to))
    }

    /// The commit (closed, referenced).
    pub fn commit_id(self) -> &'a str {
        utf8(self.c.sym(self.data.commit_id))
    }

    /// The commit's API URL, when owner and repo were known.
    pub fn commit_url(self) -> &'a str {
        utf8(self.c.text(self.extra().commit_url))
    }

    /// For review_dismissed.
    pub fn dismissed_review(self) -> Option<DismissedReview<'a>> {
        self.extra().dismissed_review.map(|d| DismissedReview {
            review_id: d.review_id,
            state: utf8(self.c.sym(d.state)),
            message: utf8(self.c.text(d.message)),
        })
    }
}

/// A pull-request review.
#[derive(Debug, Clone, Copy)]
pub struct Review<'a> {
    c: &'a Corpus,
    data: &'a ReviewData,
}

impl<'a> Review<'a> {
    /// Review id.
    pub fn id(self) -> i64 {
        self.data.id
    }

    /// Reviewer.
    pub fn actor(self) -> Option<User<'a>> {
        user(self.c, self.data.actor)
    }

    /// Submission time.
    pub fn created(self) -> Time {
        self.data.created
    }

    /// Text.
    pub fn body(self) -> &'a str {
        utf8(self.c.text(self.data.body))
    }

    /// COMMENTED, APPROVED or CHANGES_REQUESTED.
    pub fn state(self) -> &'a str {
        utf8(self.c.sym(self.data.state))
    }

    /// The reviewed commit.
    pub fn commit_id(self) -> &'a str {
        utf8(self.c.sym(self.data.commit_id))
    }

    /// GitHub's author_association.
    pub fn actor_association(self) -> &'a str {
        utf8(self.c.sym(self.data.actor_association))
    }

    /// JSON the sync did not understand.
    pub fn other_json(self) -> &'a [u8] {
        self.c.text(self.data.other_json)
    }
}

/// Gerrit: projects.
#[derive(Debug, Clone, Copy)]
pub struct Gerrit<'a> {
    c: &'a Corpus,
}

/// Go's `normalizeGerritServer`: the host of a URL, and
/// `X-review.googlesource.com` as `X.googlesource.com`.
pub fn normalize_gerrit_server(server: &str) -> String {
    let host = server
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .filter(|h| !h.is_empty())
        .unwrap_or(server);
    if host.ends_with("-review.googlesource.com") {
        host.replacen("-review.googlesource.com", ".googlesource.com", 1)
    } else {
        host.to_owned()
    }
}

impl<'a> Gerrit<'a> {
    /// Every project, by name.
    pub fn projects(self) -> impl Iterator<Item = Project<'a>> {
        let c = self.c;
        c.gerrit
            .projects
            .iter()
            .map(move |(name, data)| Project { c, name, data })
    }

    /// A project by server (host or URL; review hosts are normalised) and
    /// project name.
    pub fn project(self, server: &str, project: &str) -> Option<Project<'a>> {
        let key = format!("{}/{project}", normalize_gerrit_server(server));
        let (name, data) = self.c.gerrit.projects.get_key_value(&key)?;
        Some(Project {
            c: self.c,
            name,
            data,
        })
    }
}

/// A Gerrit project.
#[derive(Debug, Clone, Copy)]
pub struct Project<'a> {
    c: &'a Corpus,
    name: &'a str,
    data: &'a ProjectData,
}

impl<'a> Project<'a> {
    /// `host/project`.
    pub fn server_slash_project(self) -> &'a str {
        self.name
    }

    /// The host.
    pub fn server(self) -> &'a str {
        self.name.split_once('/').map_or("", |(s, _)| s)
    }

    /// The project name.
    pub fn project(self) -> &'a str {
        self.name.split_once('/').map_or("", |(_, p)| p)
    }

    /// A complete CL by number.
    pub fn cl(self, number: i32) -> Option<Cl<'a>> {
        let data = self.data.cls.get(&number)?;
        data.is_complete().then_some(Cl { p: self, data })
    }

    /// Every complete CL (private ones too), by number.
    pub fn cls(self) -> impl Iterator<Item = Cl<'a>> {
        self.data
            .cls
            .values()
            .filter(|d| d.is_complete())
            .map(move |data| Cl { p: self, data })
    }

    /// Open CLs: complete, status new, not private; by number.
    pub fn open_cls(self) -> impl Iterator<Item = Cl<'a>> {
        self.cls()
            .filter(|cl| cl.status() == ClStatus::New && !cl.is_private())
    }

    /// The commit a change ref (`refs/changes/NN/<cl>/<version>`, version
    /// 0 for `meta`) was last logged at, whether or not the CL is complete.
    pub fn change_ref_hash(self, cl: i32, version: i32) -> Option<GitHash> {
        let data = self.data.cls.get(&cl)?;
        data.remote
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, hash)| *hash)
    }

    /// A non-change ref's commit.
    pub fn ref_hash(self, name: &str) -> Option<GitHash> {
        self.data.refs.get(name.as_bytes()).copied()
    }

    /// Non-change refs by name.
    pub fn refs(self) -> impl Iterator<Item = (&'a str, GitHash)> {
        self.data
            .refs
            .iter()
            .map(|(k, v)| (std::str::from_utf8(k).unwrap_or(""), *v))
    }

    /// A commit logged for this project.
    pub fn commit(self, hex: &str) -> Option<Commit<'a>> {
        let hash = GitHash::from_hex(hex.as_bytes())?;
        if !self.data.has_commit(&self.c.git, &hash) {
            return None;
        }
        self.c
            .git
            .lookup(&hash)
            .map(|idx| Commit { c: self.c, idx })
    }

    /// Go's overcounting label-change signal.
    pub fn num_label_changes(self) -> i64 {
        self.data.num_label_changes
    }
}

/// A Gerrit CL (always complete).
#[derive(Debug, Clone, Copy)]
pub struct Cl<'a> {
    p: Project<'a>,
    data: &'a ClData,
}

impl<'a> Cl<'a> {
    fn c(self) -> &'a Corpus {
        self.p.c
    }

    /// The CL number.
    pub fn number(self) -> i32 {
        self.data.number
    }

    /// Its project.
    pub fn project(self) -> Project<'a> {
        self.p
    }

    /// Status derived from NoteDB.
    pub fn status(self) -> ClStatus {
        self.data.status
    }

    /// Private (sticky once seen).
    pub fn is_private(self) -> bool {
        self.data.private
    }

    /// The patch set of the last patch-set ref seen.
    pub fn version(self) -> i32 {
        self.data.version
    }

    /// The current patch set's commit.
    pub fn commit(self) -> Commit<'a> {
        Commit {
            c: self.c(),
            idx: self.data.commit.expect("complete CLs have a commit"),
        }
    }

    /// The meta ref's commit.
    pub fn meta(self) -> Commit<'a> {
        Commit {
            c: self.c(),
            idx: self.data.meta.expect("complete CLs have a meta"),
        }
    }

    /// The NoteDB meta commits, oldest first.
    pub fn metas(self) -> impl Iterator<Item = Meta<'a>> {
        (0..self.data.metas.len()).map(move |i| Meta { cl: self, index: i })
    }

    /// Review messages, oldest first.
    pub fn messages(self) -> impl Iterator<Item = Message<'a>> {
        let c = self.c();
        self.data
            .messages
            .iter()
            .map(move |data| Message { c, data })
    }

    /// Creation time (the first meta commit's).
    pub fn created(self) -> Option<CommitTime<'a>> {
        self.data.created.map(|t| CommitTime { c: self.c(), t })
    }

    /// The target branch, without `refs/heads/`.
    pub fn branch(self) -> &'a str {
        utf8(self.c().sym(self.data.branch))
    }

    /// GitHub issues referenced from the commit message.
    pub fn github_refs(self) -> impl Iterator<Item = (&'a str, &'a str, i32)> {
        let c = self.c();
        self.data
            .github_refs
            .iter()
            .map(move |(k, n)| (utf8(c.sym(k.owner)), utf8(c.sym(k.repo)), *n))
    }

    /// The `Change-Id` footer (`I` and 40 hex digits), or "".
    pub fn change_id(self) -> &'a str {
        utf8(notedb::change_id(self.commit().message()))
    }

    /// The first paragraph of the message, on one line.
    pub fn subject(self) -> String {
        String::from_utf8_lossy(&notedb::subject(self.commit().message())).into_owned()
    }

    /// The first value of a footer (key ending in `:`) in the message.
    pub fn footer(self, key: &str) -> Cow<'a, str> {
        String::from_utf8_lossy(notedb::line_value(self.commit().message(), key.as_bytes()))
    }

    /// Go's `WorkInProgress()`.
    pub fn work_in_progress(self) -> bool {
        self.c().work_in_progress(self.data)
    }

    /// Go's `OwnerID()`: the number before `@` in the first meta's author
    /// email, or -1.
    pub fn owner_id(self) -> i64 {
        let Some(first) = self.metas().next() else {
            return -1;
        };
        let Some(author) = first.commit().author() else {
            return -1;
        };
        let email = author.email();
        email
            .split_once('@')
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(-1)
    }

    /// The commit of patch set `v` (1..=version).
    pub fn commit_at_version(self, v: i32) -> Option<Commit<'a>> {
        if v < 1 || v > self.data.version {
            return None;
        }
        let hash = self.data.remote(v)?;
        if !self.p.data.has_commit(&self.c().git, &hash) {
            return None;
        }
        self.c()
            .git
            .lookup(&hash)
            .map(|idx| Commit { c: self.c(), idx })
    }
}

/// A review message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    c: &'a Corpus,
    data: &'a MessageData,
}

impl<'a> Message<'a> {
    /// The meta commit it came from.
    pub fn meta(self) -> Commit<'a> {
        Commit {
            c: self.c,
            idx: self.data.meta,
        }
    }

    /// The patch set it is about.
    pub fn version(self) -> i32 {
        self.data.version
    }

    /// The text.
    pub fn text(self) -> Cow<'a, str> {
        self.c.texts.get_str(self.data.text)
    }

    /// When (the meta commit's time).
    pub fn date(self) -> Option<CommitTime<'a>> {
        self.data.date.map(|t| CommitTime { c: self.c, t })
    }

    /// Who (the meta commit's author).
    pub fn author(self) -> Option<Person<'a>> {
        self.data.author.map(|s| Person { c: self.c, s })
    }
}

/// A NoteDB meta commit of a CL.
#[derive(Debug, Clone, Copy)]
pub struct Meta<'a> {
    cl: Cl<'a>,
    index: usize,
}

impl<'a> Meta<'a> {
    /// The commit.
    pub fn commit(self) -> Commit<'a> {
        Commit {
            c: self.cl.c(),
            idx: self.cl.data.metas[self.index],
        }
    }

    /// The text after the last blank line.
    pub fn footer(self) -> &'a [u8] {
        notedb::footer(self.commit().message())
    }

    /// The `Tag:` footer.
    pub fn action_tag(self) -> &'a [u8] {
        notedb::action_tag(self.commit().message())
    }

    /// The `Hashtags: ` footer here, or of the nearest older meta that has
    /// one.
    pub fn hashtags(self) -> Cow<'a, str> {
        for i in (0..=self.index).rev() {
            let meta = Meta {
                cl: self.cl,
                index: i,
            };
            let (v, _, ok) = notedb::line_value_ok(meta.footer(), b"Hashtags: ");
            if ok {
                return String::from_utf8_lossy(v);
            }
        }
        Cow::Borrowed("")
    }

    /// Votes as of this meta: label to voter email to value, replaying the
    /// metas up to here (Go's `LabelVotes`). A new patch set with a
    /// different diffstat clears Run-TryBot and TryBot-Result.
    pub fn label_votes(self) -> BTreeMap<String, BTreeMap<String, i8>> {
        let mut labels: BTreeMap<String, BTreeMap<String, i8>> = BTreeMap::new();
        let mut last_commit: Option<Commit<'a>> = None;
        for i in 0..=self.index {
            let meta = Meta {
                cl: self.cl,
                index: i,
            };
            let footer = meta.footer();
            let is_new =
                notedb::find(footer, b"\nTag: autogenerated:gerrit:newPatchSet\n").is_some();
            let email = meta
                .commit()
                .author()
                .map(|a| a.email().into_owned())
                .unwrap_or_default();
            if is_new {
                let c = notedb::line_value(footer, b"Commit: ");
                if !c.is_empty() {
                    let new = self.cl.p.commit(&String::from_utf8_lossy(c));
                    if let (Some(old), Some(new)) = (last_commit, new)
                        && !old.same_diff_stat(new)
                    {
                        labels.remove("Run-TryBot");
                        labels.remove("TryBot-Result");
                    }
                    last_commit = new;
                }
            }
            let mut rest = footer;
            while !rest.is_empty() {
                let (val, remain) = notedb::line_value_rest(rest, b"Label: ");
                rest = remain;
                if val.is_empty() {
                    continue;
                }
                let (label, value, whose) = notedb::parse_label_value(val);
                if label.is_empty() {
                    continue;
                }
                let whose = if whose.is_empty() {
                    email.clone()
                } else {
                    String::from_utf8_lossy(whose).into_owned()
                };
                let label = String::from_utf8_lossy(label);
                if let Some(name) = label.strip_prefix('-') {
                    if let Some(votes) = labels.get_mut(name) {
                        votes.remove(&whose);
                    }
                } else {
                    labels
                        .entry(label.into_owned())
                        .or_default()
                        .insert(whose, value);
                }
            }
        }
        labels
    }
}

/// A git commit.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    c: &'a Corpus,
    idx: CommitIdx,
}

impl<'a> Commit<'a> {
    fn data(self) -> &'a CommitData {
        self.c.git.get(self.idx)
    }

    /// Its id.
    pub fn hash(self) -> GitHash {
        self.data().hash
    }

    /// A parent referenced before the commit itself was seen.
    pub fn is_placeholder(self) -> bool {
        self.data().is_placeholder()
    }

    /// Its tree.
    pub fn tree(self) -> GitHash {
        self.data().tree
    }

    /// Parents in order.
    pub fn parents(self) -> impl Iterator<Item = Commit<'a>> {
        let c = self.c;
        self.data()
            .parents
            .as_slice()
            .iter()
            .map(move |idx| Commit { c, idx: *idx })
    }

    /// The author.
    pub fn author(self) -> Option<Person<'a>> {
        self.data().author.map(|s| Person { c: self.c, s })
    }

    /// When it was authored.
    pub fn author_time(self) -> Option<CommitTime<'a>> {
        self.data().author_time.map(|t| CommitTime { c: self.c, t })
    }

    /// The committer (`None` for placeholders).
    pub fn committer(self) -> Option<Person<'a>> {
        match self.data().committer {
            Committer::Person(s) => Some(Person { c: self.c, s }),
            Committer::None | Committer::Placeholder => None,
        }
    }

    /// When it was committed.
    pub fn commit_time(self) -> Option<CommitTime<'a>> {
        self.data().commit_time.map(|t| CommitTime { c: self.c, t })
    }

    /// The first `Reviewer: ` line of the message.
    pub fn reviewer(self) -> Option<&'a [u8]> {
        self.data().reviewer.map(|t| self.c.text(t))
    }

    /// The message (everything after the header), as bytes.
    pub fn message(self) -> &'a [u8] {
        self.c.text(self.data().msg)
    }

    /// The message as a string.
    pub fn message_str(self) -> Cow<'a, str> {
        self.c.texts.get_str(self.data().msg)
    }

    /// The first line of the message, trimmed.
    pub fn summary(self) -> Cow<'a, str> {
        let msg = self.message();
        let line = msg.split(|&b| b == b'\n').next().unwrap_or(b"");
        String::from_utf8_lossy(notedb::trim_space(line))
    }

    /// `git diff-tree --numstat` files, by name.
    pub fn files(self) -> impl Iterator<Item = File<'a>> {
        let c = self.c;
        self.data()
            .files
            .iter()
            .flat_map(|f| f.iter())
            .map(move |data| File { c, data })
    }

    /// Go's `SameDiffStat`.
    pub fn same_diff_stat(self, other: Commit<'_>) -> bool {
        let a: &[FileStat] = self.data().files.as_deref().unwrap_or(&[]);
        let b: &[FileStat] = other.data().files.as_deref().unwrap_or(&[]);
        a.len() == b.len()
            && a.iter().zip(b).all(|(x, y)| {
                self.c.text(x.file) == other.c.text(y.file)
                    && (x.added, x.deleted, x.binary) == (y.added, y.deleted, y.binary)
            })
    }

    /// Whether `ancestor` is reachable through parents (a commit is not its
    /// own ancestor).
    pub fn has_ancestor(self, ancestor: Commit<'_>) -> bool {
        self.c.git.has_ancestor(self.idx, ancestor.idx)
    }
}

/// One file of a commit's diff tree.
#[derive(Debug, Clone, Copy)]
pub struct File<'a> {
    c: &'a Corpus,
    data: &'a FileStat,
}

impl<'a> File<'a> {
    /// Path.
    pub fn name(self) -> Cow<'a, str> {
        self.c.texts.get_str(self.data.file)
    }

    /// Lines added.
    pub fn added(self) -> i64 {
        self.data.added
    }

    /// Lines deleted.
    pub fn deleted(self) -> i64 {
        self.data.deleted
    }

    /// Binary file.
    pub fn binary(self) -> bool {
        self.data.binary
    }
}

/// A git author or committer: the `Name <email>` text.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    c: &'a Corpus,
    s: Sym,
}

impl<'a> Person<'a> {
    /// The whole `Name <email>`.
    pub fn text(self) -> Cow<'a, str> {
        self.c.syms.get_str(self.s)
    }

    /// The text between `<` and `>`, or "".
    pub fn email(self) -> Cow<'a, str> {
        let s = self.c.sym(self.s);
        let lt = s.iter().position(|&b| b == b'<');
        let gt = s.iter().position(|&b| b == b'>');
        match (lt, gt) {
            (Some(lt), Some(gt)) if gt > lt => String::from_utf8_lossy(&s[lt + 1..gt]),
            _ => Cow::Borrowed(""),
        }
    }

    /// The text before `<`, trimmed.
    pub fn name(self) -> Cow<'a, str> {
        let s = self.c.sym(self.s);
        let head = s.iter().position(|&b| b == b'<').map_or(s, |lt| &s[..lt]);
        String::from_utf8_lossy(notedb::trim_space(head))
    }
}

/// A time as git wrote it: the instant and its zone.
#[derive(Debug, Clone, Copy)]
pub struct CommitTime<'a> {
    c: &'a Corpus,
    t: GitTime,
}

impl<'a> CommitTime<'a> {
    /// The instant.
    pub fn instant(self) -> Time {
        self.t.instant()
    }

    /// The zone as written (`-0700`), Go's zone name.
    pub fn zone(self) -> Cow<'a, str> {
        self.c.syms.get_str(self.t.zone)
    }

    /// Seconds east of UTC.
    pub fn offset(self) -> i32 {
        super::git::zone_offset(self.c.sym(self.t.zone))
    }
}

/// A plain git repository's refs, as logged by git sync.
#[derive(Clone, Copy)]
pub struct GitRepo<'a> {
    name: &'a str,
    refs: &'a std::collections::BTreeMap<String, GitHash>,
}

impl<'a> GitRepo<'a> {
    /// `GitRepo.go_repo`.
    pub fn name(self) -> &'a str {
        self.name
    }

    /// Every ref, by name.
    pub fn refs(self) -> impl Iterator<Item = (&'a str, GitHash)> {
        self.refs.iter().map(|(name, hash)| (name.as_str(), *hash))
    }

    /// The hash a ref names.
    pub fn ref_hash(self, name: &str) -> Option<GitHash> {
        self.refs.get(name).copied()
    }
}

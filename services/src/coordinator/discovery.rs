//! Work discovery: which builders should build which commits, post-submit
//! and as trybots (spec/coordinator.md §4.1–4.3), answered from the log's
//! own state.
//!
//! Go's coordinator asks the build dashboard for empty cells every 15
//! seconds and maintner for CLs that want trybots every second. Here both
//! answers come from folds the coordinator already holds: branch heads and
//! first-parent history from the maintner corpus, recorded results and
//! live builds from the farm, and what each builder builds from the build
//! environments. Post-submit work is each branch's newest commits, for
//! every builder of that branch that has no result for the commit and is
//! not building it; try work is every open CL that `GoFindTryWork` lists,
//! for every builder that runs as a trybot on its project and branch.
//!
//! Pure functions: no IO, no clock, no randomness, and the same inputs
//! always give the same list in the same order. This module never requests
//! a build, records an event or picks a machine: the coordinator records
//! each item it takes as `BuildRequested`, and the scheduler decides where
//! it runs.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use almanac_projections::corpus::Corpus;
use almanac_projections::corpus::api::Commit;
use almanac_projections::corpus::git::GitHash;
use almanac_projections::farm::{Farm, WorkKey};
use almanac_proto::pb::apipb::{GerritTryWorkItem, GoFindTryWorkRequest};
use almanac_proto::pb::farm::BuildKind;

use crate::farm::env::{Builder, Environments};
use crate::maintnerd::api::go_find_try_work;

/// The Gerrit host whose projects are built (the host `maintnerd::api`
/// answers `GoFindTryWork` and `GetDashboard` for).
const GO_SERVER: &str = "go.googlesource.com";

/// The main repository's name; every other repository is built against it.
const GO_REPO: &str = "go";

/// The prefix of branch refs.
const HEADS: &str = "refs/heads/";

/// A CL's patch set that asked for trybots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryInfo {
    pub project: String,
    pub branch: String,
    pub change_id: String,
    pub commit: String,
    pub patchset: i32,
    pub go_commits: Vec<String>,
}

/// One piece of work to request: a builder at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Work {
    pub builder: String,
    pub host_type: String,
    /// `BuildKind::PostSubmit` or `BuildKind::Try`.
    pub kind: BuildKind,
    /// "go" or the repository's name as the corpus knows it.
    pub repo: String,
    pub branch: String,
    /// The go commit; for other repositories "" (post-submit) or the CL's
    /// first go commit (try).
    pub rev: String,
    /// "" for the go repository, else `repo`.
    pub sub_name: String,
    /// The repository's commit for other repositories, else "".
    pub sub_rev: String,
    /// Committer time, nanoseconds since the Unix epoch (0 if unknown).
    pub commit_time: i128,
    pub try_info: Option<TryInfo>,
}

impl Work {
    /// The commit whose tree is built: `sub_rev` when set, else `rev`.
    pub fn commit(&self) -> &str {
        if self.sub_rev.is_empty() {
            self.rev.as_str()
        } else {
            self.sub_rev.as_str()
        }
    }

    /// The dashboard key's package path: "" for go, else the repo name.
    pub fn package_path(&self) -> &str {
        if self.repo == GO_REPO {
            ""
        } else {
            self.repo.as_str()
        }
    }

    /// The dashboard key's go hash: the go commit a subrepository commit
    /// is built with, "" for go itself.
    fn go_hash(&self) -> &str {
        if self.sub_name.is_empty() {
            ""
        } else {
            self.rev.as_str()
        }
    }

    /// The farm's identity of this work.
    fn key(&self) -> WorkKey {
        (
            self.builder.clone(),
            self.rev.clone(),
            self.sub_name.clone(),
            self.sub_rev.clone(),
        )
    }

    fn is_live(&self, farm: &Farm) -> bool {
        farm.has_live_build(&self.builder, &self.rev, &self.sub_name, &self.sub_rev)
    }
}

/// A branch of a repository and the commit it names.
struct Head<'a> {
    repo: &'a str,
    branch: &'a str,
    hash: GitHash,
}

/// The branch heads among `refs`, in ref-name order.
fn heads<'a>(repo: &'a str, refs: impl Iterator<Item = (&'a str, GitHash)>) -> Vec<Head<'a>> {
    let mut refs: Vec<(&'a str, GitHash)> = refs.collect();
    refs.sort_by_key(|(name, _)| *name);
    refs.into_iter()
        .filter_map(|(name, hash)| {
            let branch = name.strip_prefix(HEADS)?;
            Some(Head { repo, branch, hash })
        })
        .collect()
}

/// `git log --first-parent` from `head` over the corpus-wide commit map:
/// it ends at a root, at a commit the corpus does not have, or before a
/// commit it has only as a placeholder.
fn first_parent(corpus: &Corpus, head: GitHash) -> impl Iterator<Item = Commit<'_>> {
    let start = corpus
        .git_commit(&head.to_string())
        .filter(|commit| !commit.is_placeholder());
    std::iter::successors(start, |commit| {
        commit
            .parents()
            .next()
            .filter(|parent| !parent.is_placeholder())
    })
}

/// A commit's committer time in nanoseconds since the Unix epoch, 0 if
/// unknown.
fn commit_nanos(commit: Commit<'_>) -> i128 {
    let Some(time) = commit.commit_time() else {
        return 0;
    };
    let instant = time.instant();
    if instant.is_zero() {
        return 0;
    }
    let (seconds, nanos) = (instant.seconds, instant.nanos);
    i128::from(seconds) * 1_000_000_000 + i128::from(nanos)
}

/// Post-submit work: for every branch head (`refs/heads/<branch>`) of every
/// plain git repository in the corpus and of every Gerrit project on
/// go.googlesource.com, for each builder whose `builds_post_submit(repo,
/// branch)` holds, the newest `depth` commits along the first-parent chain
/// from the head (stopping at placeholders or missing commits), skipping
/// work that has a recorded result or a live build.
///
/// The go repository's work is `rev = commit`; another repository's is
/// `sub_name = repo, sub_rev = commit` with `rev` empty. Work reached twice
/// (from two branches, or from a git repository and a Gerrit project of
/// the same name) is listed once: git repositories come first, by name,
/// then Gerrit projects, by name, and within one the first branch in
/// ref-name order wins. Sorted newest commit time first, then builder
/// name, then commit hash (then repository and branch), so the output is
/// deterministic.
pub fn post_submit_work(
    corpus: &Corpus,
    farm: &Farm,
    envs: &Environments,
    depth: usize,
) -> Vec<Work> {
    let mut all_heads: Vec<Head<'_>> = Vec::new();
    for repo in corpus.git_repos() {
        all_heads.extend(heads(repo.name(), repo.refs()));
    }
    for project in corpus
        .gerrit()
        .projects()
        .filter(|p| p.server() == GO_SERVER)
    {
        all_heads.extend(heads(project.project(), project.refs()));
    }

    let mut seen: BTreeSet<WorkKey> = BTreeSet::new();
    let mut out = Vec::new();
    for head in &all_heads {
        let builders: Vec<&Builder> = envs
            .builders
            .values()
            .filter(|b| b.builds_post_submit(head.repo, head.branch))
            .collect();
        if builders.is_empty() {
            continue;
        }
        for commit in first_parent(corpus, head.hash).take(depth) {
            let hash = commit.hash().to_string();
            let commit_time = commit_nanos(commit);
            for builder in &builders {
                let work = post_submit(builder, head, &hash, commit_time);
                if !seen.insert(work.key()) {
                    continue;
                }
                let has_result = farm
                    .result(
                        &work.builder,
                        work.package_path(),
                        work.commit(),
                        work.go_hash(),
                    )
                    .is_some();
                if has_result || work.is_live(farm) {
                    continue;
                }
                out.push(work);
            }
        }
    }
    out.sort_by(|a, b| {
        b.commit_time
            .cmp(&a.commit_time)
            .then_with(|| a.builder.cmp(&b.builder))
            .then_with(|| a.commit().cmp(b.commit()))
            .then_with(|| a.repo.cmp(&b.repo))
            .then_with(|| a.branch.cmp(&b.branch))
    });
    out
}

fn post_submit(builder: &Builder, head: &Head<'_>, hash: &str, commit_time: i128) -> Work {
    let (rev, sub_name, sub_rev) = if head.repo == GO_REPO {
        (hash.to_owned(), String::new(), String::new())
    } else {
        (String::new(), head.repo.to_owned(), hash.to_owned())
    };
    Work {
        builder: builder.name.clone(),
        host_type: builder.host_type.clone(),
        kind: BuildKind::PostSubmit,
        repo: head.repo.to_owned(),
        branch: head.branch.to_owned(),
        rev,
        sub_name,
        sub_rev,
        commit_time,
        try_info: None,
    }
}

/// Try work: the items `GoFindTryWork` lists (an error, such as a corpus
/// without Go releases, means no try work), and for each every builder
/// whose `builds_try(project, branch)` holds. For the go project the work
/// is `rev = commit`; for another project `rev` is the CL's first go
/// commit ("" if none), `sub_name` the project and `sub_rev` the commit.
///
/// Work with a live build is skipped, and so is work whose last concluded
/// build was a try build: that patch set was tried, whether or not the
/// result has reached Gerrit yet. A communication error concludes nothing,
/// so its work is listed again. `commit_time` is the CL commit's committer
/// time when the corpus has the commit, else 0. Work listed twice is kept
/// once. Sorted by change id, then project, branch, commit and builder.
pub fn try_work(corpus: &Corpus, farm: &Farm, envs: &Environments) -> Vec<Work> {
    let Ok(found) = go_find_try_work(corpus, &GoFindTryWorkRequest::default()) else {
        return Vec::new();
    };
    let mut seen: BTreeSet<WorkKey> = BTreeSet::new();
    let mut out = Vec::new();
    for item in &found.waiting {
        let commit_time = corpus.git_commit(&item.commit).map_or(0, commit_nanos);
        for builder in envs
            .builders
            .values()
            .filter(|b| b.builds_try(&item.project, &item.branch))
        {
            let work = try_item_work(builder, item, commit_time);
            if !seen.insert(work.key()) || work.is_live(farm) {
                continue;
            }
            let tried = farm
                .concluded_build(&work.builder, &work.rev, &work.sub_name, &work.sub_rev)
                .is_some_and(|concluded| concluded.kind == BuildKind::Try);
            if tried {
                continue;
            }
            out.push(work);
        }
    }
    out.sort_by(try_order);
    out
}

fn try_item_work(builder: &Builder, item: &GerritTryWorkItem, commit_time: i128) -> Work {
    let (rev, sub_name, sub_rev) = if item.project == GO_REPO {
        (item.commit.clone(), String::new(), String::new())
    } else {
        (
            item.go_commit.first().cloned().unwrap_or_default(),
            item.project.clone(),
            item.commit.clone(),
        )
    };
    Work {
        builder: builder.name.clone(),
        host_type: builder.host_type.clone(),
        kind: BuildKind::Try,
        repo: item.project.clone(),
        branch: item.branch.clone(),
        rev,
        sub_name,
        sub_rev,
        commit_time,
        try_info: Some(TryInfo {
            project: item.project.clone(),
            branch: item.branch.clone(),
            change_id: item.change_id.clone(),
            commit: item.commit.clone(),
            patchset: item.version,
            go_commits: item.go_commit.clone(),
        }),
    }
}

/// Try work's order: change id, project, branch, commit, builder.
fn try_order(a: &Work, b: &Work) -> Ordering {
    try_key(a).cmp(&try_key(b))
}

fn try_key(work: &Work) -> (&str, &str, &str, &str, &str) {
    match &work.try_info {
        Some(t) => (
            t.change_id.as_str(),
            t.project.as_str(),
            t.branch.as_str(),
            t.commit.as_str(),
            work.builder.as_str(),
        ),
        None => (
            "",
            work.repo.as_str(),
            work.branch.as_str(),
            work.commit(),
            work.builder.as_str(),
        ),
    }
}

//! The query logic of Go's `apipb.MaintnerService` (spec/maintner.md §6.6),
//! answered from the in-memory corpus: plain synchronous functions from a
//! request to a response, so they can be tested without a server.
//!
//! The gRPC plumbing (read lock, blocking thread, status codes) lives in
//! `api_grpc`. Nothing here does IO, reads a clock, caches or talks to
//! Gerrit: `GoFindTryWork`, which Go answers by querying Gerrit's REST API,
//! is answered from the folded votes and review messages alone.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt;

use almanac_projections::corpus::Corpus;
use almanac_projections::corpus::api::{Cl, Commit, Project};
use almanac_projections::corpus::git::GitHash;
use almanac_proto::pb::apipb::{
    DashCommit, DashRepoHead, DashboardRequest, DashboardResponse, GerritTryWorkItem,
    GetRefRequest, GetRefResponse, GoFindTryWorkRequest, GoFindTryWorkResponse, GoRelease,
    HasAncestorRequest, HasAncestorResponse, ListGoReleasesResponse, MajorMinor, TryVoteMessage,
};

/// The Gerrit host of the Go project and its subrepos.
const GO_SERVER: &str = "go.googlesource.com";

/// Go's zero `time.Time` in Unix seconds: what a commit without a commit
/// time reports as `commit_time_sec`.
const GO_ZERO_UNIX: i64 = -62_135_596_800;

/// Go's zero time where only comparisons matter ("no oldest commit yet"):
/// no commit time is before it.
const NO_TIME: i64 = i64::MIN;

/// Why a query failed. Each variant names the gRPC code it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// A malformed request (`INVALID_ARGUMENT`).
    InvalidArgument(String),
    /// The requested repo, project or branch does not exist (`NOT_FOUND`).
    NotFound(String),
    /// Go's plain errors, which reach clients as `UNKNOWN`.
    Unknown(String),
}

impl ApiError {
    /// The message, worded as Go's where Go has one.
    pub fn message(&self) -> &str {
        match self {
            ApiError::InvalidArgument(m) | ApiError::NotFound(m) | ApiError::Unknown(m) => m,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ApiError {}

fn no_releases() -> ApiError {
    ApiError::Unknown("there was a problem finding supported Go releases".to_owned())
}

/// `HasAncestor`: whether `ancestor` is in the history of `commit`, over
/// the corpus-wide commit map (a commit is not its own ancestor).
///
/// As Go: both values must be 40 bytes long (errors `invalid Commit` and
/// `invalid Ancestor`); an unknown or non-hex commit answers
/// `unknown_commit`; an unknown ancestor answers `has_ancestor = false`.
pub fn has_ancestor(c: &Corpus, req: &HasAncestorRequest) -> Result<HasAncestorResponse, ApiError> {
    if req.commit.len() != 40 {
        return Err(ApiError::Unknown("invalid Commit".to_owned()));
    }
    if req.ancestor.len() != 40 {
        return Err(ApiError::Unknown("invalid Ancestor".to_owned()));
    }
    let Some(commit) = c.git_commit(&req.commit) else {
        return Ok(HasAncestorResponse {
            has_ancestor: false,
            unknown_commit: true,
        });
    };
    let has_ancestor = c
        .git_commit(&req.ancestor)
        .is_some_and(|ancestor| commit.has_ancestor(ancestor));
    Ok(HasAncestorResponse {
        has_ancestor,
        unknown_commit: false,
    })
}

/// `GetRef`: the hex commit of a non-change ref of a Gerrit project, or ""
/// when the project has no such ref. The server may be a host, a URL or the
/// `-review` host. An unknown project is Go's error `unknown gerrit
/// project`. Change refs (`refs/changes/...`) are never answered, as in Go.
pub fn get_ref(c: &Corpus, req: &GetRefRequest) -> Result<GetRefResponse, ApiError> {
    let project = c
        .gerrit()
        .project(&req.gerrit_server, &req.gerrit_project)
        .ok_or_else(|| ApiError::Unknown("unknown gerrit project".to_owned()))?;
    let value = project
        .ref_hash(&req.r#ref)
        .map(|hash| hash.to_string())
        .unwrap_or_default();
    Ok(GetRefResponse { value })
}

/// `ListGoReleases`: the two supported Go releases, newest first, from the
/// tags and release branches of go.googlesource.com/go (see
/// `supported_releases`). Fewer than two is Go's error `there was a
/// problem finding supported Go releases`; so is a corpus without the go
/// project (where Go would crash).
pub fn list_go_releases(c: &Corpus) -> Result<ListGoReleasesResponse, ApiError> {
    let releases = go_releases(c.gerrit().project(GO_SERVER, "go"))?;
    Ok(ListGoReleasesResponse { releases })
}

fn go_releases(go: Option<Project<'_>>) -> Result<Vec<GoRelease>, ApiError> {
    supported_releases(go.into_iter().flat_map(|p| p.refs()))
}

/// Go's `supportedGoReleases` over `(ref name, hash)` pairs in name order:
/// for each `refs/tags/goX[.Y[.Z]]` keep the highest patch per major.minor
/// (the first seen on a tie); a release needs its
/// `refs/heads/release-branch.goX[.Y]` too. Returns exactly the newest
/// two, or the error when there are fewer.
fn supported_releases<'r>(
    refs: impl Iterator<Item = (&'r str, GitHash)>,
) -> Result<Vec<GoRelease>, ApiError> {
    let mut tags: BTreeMap<(i32, i32), (i32, &'r str, GitHash)> = BTreeMap::new();
    let mut branches: BTreeMap<(i32, i32), (&'r str, GitHash)> = BTreeMap::new();
    for (name, hash) in refs {
        if let Some(tag) = name.strip_prefix("refs/tags/") {
            let Some((major, minor, patch)) = parse_tag(tag) else {
                continue;
            };
            if tags
                .get(&(major, minor))
                .is_some_and(|&(seen, _, _)| patch <= seen)
            {
                continue;
            }
            tags.insert((major, minor), (patch, tag, hash));
        } else if let Some(branch) = name.strip_prefix("refs/heads/")
            && let Some(version) = parse_release_branch(branch)
        {
            branches.insert(version, (branch, hash));
        }
    }
    let mut releases: Vec<GoRelease> = tags
        .iter()
        .filter_map(|(&(major, minor), &(patch, tag, tag_hash))| {
            let &(branch, branch_hash) = branches.get(&(major, minor))?;
            Some(GoRelease {
                major,
                minor,
                patch,
                tag_name: tag.to_owned(),
                tag_commit: tag_hash.to_string(),
                branch_name: branch.to_owned(),
                branch_commit: branch_hash.to_string(),
            })
        })
        .collect();
    releases.sort_by_key(|r| Reverse((r.major, r.minor, r.patch)));
    if releases.len() < 2 {
        return Err(no_releases());
    }
    releases.truncate(2);
    Ok(releases)
}

/// A number 0–999 written canonically: ASCII digits, no sign, no leading
/// zero (Go's `parse0To999`).
fn parse_0_to_999(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 3 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    if !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.parse().ok()
}

/// A release tag name `goX`, `goX.Y` or `goX.Y.Z` as (major, minor, patch),
/// with missing parts 0 and major ≥ 1. Pre-releases (`go1.2rc1`) are
/// rejected. A trailing `.0` is rejected as Go's 2022 parser did, except a
/// `goX.Y.0` from Go 1.21 on, which is how releases are named since then
/// (Go at HEAD accepts `go1.21.0`).
fn parse_tag(name: &str) -> Option<(i32, i32, i32)> {
    let rest = name.strip_prefix("go")?;
    let mut parts = rest.split('.');
    let major = parse_0_to_999(parts.next()?)?;
    let minor = parts.next();
    let patch = parts.next();
    if parts.next().is_some() || major == 0 {
        return None;
    }
    let minor = match minor {
        Some(m) => parse_0_to_999(m)?,
        None => 0,
    };
    let has_patch = patch.is_some();
    let patch = match patch {
        Some(p) => parse_0_to_999(p)?,
        None => 0,
    };
    if name.ends_with(".0") && !(has_patch && (major, minor) >= (1, 21)) {
        return None;
    }
    Some((major, minor, patch))
}

/// A release branch name `release-branch.goX` or `release-branch.goX.Y` as
/// (major, minor); a trailing `.0` and suffixes (`-security`) are rejected.
fn parse_release_branch(name: &str) -> Option<(i32, i32)> {
    let rest = name.strip_prefix("release-branch.go")?;
    if name.ends_with(".0") {
        return None;
    }
    let (major, minor) = match rest.split_once('.') {
        Some((major, minor)) => (major, Some(minor)),
        None => (rest, None),
    };
    let major = parse_0_to_999(major)?;
    if major == 0 {
        return None;
    }
    let minor = match minor {
        Some(m) => parse_0_to_999(m)?,
        None => 0,
    };
    Some((major, minor))
}

/// An internal branch name `internal-branch.goX.Y-<suffix>` as (X, Y);
/// the part before the first `-` must be a release tag name.
fn parse_internal_branch(name: &str) -> Option<(i32, i32)> {
    let rest = name.strip_prefix("internal-branch.")?;
    let (tag, _suffix) = rest.split_once('-')?;
    let (major, minor, _) = parse_tag(tag)?;
    Some((major, minor))
}

/// `GoFindTryWork`: open CLs of go.googlesource.com projects that asked for
/// trybots and have no result yet, ordered by commit hex.
///
/// This is where we deliberately differ from Go, which asks Gerrit's REST
/// API (`label:Run-TryBot=1 label:TryBot-Result=0 status:open`) and caches
/// the answer. Here the corpus fold alone answers, recomputed on every call:
/// - Candidates are complete CLs with status new that are not private
///   (an anonymous Gerrit query cannot see private changes).
/// - Votes are the newest meta commit's `label_votes` (Go maintner's
///   `LabelVotes`): some `Run-TryBot` vote is +1 and no `TryBot-Result` vote
///   is non-zero. Votes carry over to a new patch set unless its diffstat
///   changed, maintner's stand-in for Gerrit's copy rules.
/// - `commit` and `version` are the CL's current patch set as the corpus
///   knows it (Go prefers Gerrit's, which can be newer).
/// - TRY= requests come from the review message text: a message starting
///   with `Patch Set ` whose first line contains `Run-TryBot+1`, then its
///   first line starting `TRY=`. Go at HEAD reads them from Gerrit's
///   patch-set-level comments, which the corpus does not hold; old Gerrit
///   put that text in the message, newer Gerrit does not, so recent CLs
///   carry no TRY= requests here.
/// - `author_id` is the Gerrit account number in the message author's
///   email (0 if there is none); `author_email` is the git author email
///   of patch set 1 (Go's `Owner()`), or "".
///
/// As Go: `for_staging` is ignored, the supported releases must exist, and
/// the go versions follow `go_targets`.
pub fn go_find_try_work(
    c: &Corpus,
    _req: &GoFindTryWorkRequest,
) -> Result<GoFindTryWorkResponse, ApiError> {
    let go = c.gerrit().project(GO_SERVER, "go");
    let releases = go_releases(go)?;
    let Some(latest) = releases.first() else {
        return Err(no_releases());
    };
    let devel = MajorMinor {
        major: latest.major,
        minor: latest.minor + 1,
    };
    let go_master = go
        .and_then(|p| p.ref_hash("refs/heads/master"))
        .map(|hash| hash.to_string())
        .unwrap_or_default();
    let mut waiting = Vec::new();
    for project in c.gerrit().projects().filter(|p| p.server() == GO_SERVER) {
        for cl in project.open_cls() {
            if !wants_trybots(cl) {
                continue;
            }
            let Some(targets) = go_targets(
                project.project(),
                cl.branch(),
                go,
                &releases,
                devel,
                &go_master,
            ) else {
                continue;
            };
            waiting.push(try_work_item(cl, targets));
        }
    }
    waiting.sort_by(|a, b| a.commit.cmp(&b.commit));
    Ok(GoFindTryWorkResponse { waiting })
}

/// Whether the newest votes hold a +1 `Run-TryBot` and no non-zero
/// `TryBot-Result`.
fn wants_trybots(cl: Cl<'_>) -> bool {
    let Some(meta) = cl.metas().last() else {
        return false;
    };
    let votes = meta.label_votes();
    let run = votes
        .get("Run-TryBot")
        .is_some_and(|v| v.values().any(|&value| value == 1));
    let done = votes
        .get("TryBot-Result")
        .is_some_and(|v| v.values().any(|&value| value != 0));
    run && !done
}

/// The go toolchain commits a try run tests against, their branch names and
/// versions (the three lists line up, except that a go-project CL has a
/// version only).
#[derive(Debug, Default, PartialEq)]
struct GoTargets {
    commits: Vec<String>,
    branches: Vec<String>,
    versions: Vec<MajorMinor>,
}

impl GoTargets {
    fn push(&mut self, commit: String, branch: String, version: MajorMinor) {
        self.commits.push(commit);
        self.branches.push(branch);
        self.versions.push(version);
    }
}

/// The spec's rules (HEAD) for what a CL on `branch` of `project` is tested
/// with; `None` skips the CL.
/// - go: `release-branch.goX[.Y]` gives that version, any other branch the
///   development version; no commits.
/// - a subrepo on `internal-branch.goX.Y-<suffix>`: only go's
///   `release-branch.goX.Y`, skipping the CL when go has no such branch.
/// - a subrepo on master, or x/tools on `gopls-release-branch.*`: go master,
///   then the supported release branches.
/// - a subrepo on any other branch: go master only.
fn go_targets(
    project: &str,
    branch: &str,
    go: Option<Project<'_>>,
    releases: &[GoRelease],
    devel: MajorMinor,
    go_master: &str,
) -> Option<GoTargets> {
    let mut targets = GoTargets::default();
    if project == "go" {
        let version = match parse_release_branch(branch) {
            Some((major, minor)) => MajorMinor { major, minor },
            None => devel,
        };
        targets.versions.push(version);
        return Some(targets);
    }
    if let Some((major, minor)) = parse_internal_branch(branch) {
        let go_branch = format!("release-branch.go{major}.{minor}");
        let hash = go?.ref_hash(&format!("refs/heads/{go_branch}"))?;
        targets.push(hash.to_string(), go_branch, MajorMinor { major, minor });
        return Some(targets);
    }
    targets.push(go_master.to_owned(), "master".to_owned(), devel);
    let with_releases =
        branch == "master" || (project == "tools" && branch.starts_with("gopls-release-branch."));
    if with_releases {
        for r in releases {
            let version = MajorMinor {
                major: r.major,
                minor: r.minor,
            };
            targets.push(r.branch_commit.clone(), r.branch_name.clone(), version);
        }
    }
    Some(targets)
}

fn try_work_item(cl: Cl<'_>, targets: GoTargets) -> GerritTryWorkItem {
    let author_email = cl
        .commit_at_version(1)
        .and_then(|commit| commit.author())
        .map(|author| author.email().into_owned())
        .unwrap_or_default();
    GerritTryWorkItem {
        project: cl.project().project().to_owned(),
        branch: cl.branch().to_owned(),
        change_id: cl.change_id().to_owned(),
        commit: cl.commit().hash().to_string(),
        go_commit: targets.commits,
        go_branch: targets.branches,
        go_version: targets.versions,
        try_message: try_messages(cl),
        version: cl.version(),
        author_email,
    }
}

/// The TRY= requests of a CL's review messages, oldest first; as Go, one
/// on a patch set older than the last one collected is skipped.
fn try_messages(cl: Cl<'_>) -> Vec<TryVoteMessage> {
    let mut out: Vec<TryVoteMessage> = Vec::new();
    for message in cl.messages() {
        let text = message.text();
        let Some(request) = try_request(&text) else {
            continue;
        };
        let version = message.version();
        if out.last().is_some_and(|last| version < last.version) {
            continue;
        }
        let author_id = message
            .author()
            .map_or(0, |author| gerrit_account_id(&author.email()));
        out.push(TryVoteMessage {
            message: request.to_owned(),
            author_id,
            version,
        });
    }
    out
}

/// The text after `TRY=` on the first line starting with it (Go's
/// `(?m)^TRY=(.*)$`), in a message that starts with `Patch Set ` and whose
/// first line votes `Run-TryBot+1`.
fn try_request(text: &str) -> Option<&str> {
    let first_line = text.split('\n').next().unwrap_or(text);
    if !text.starts_with("Patch Set ") || !first_line.contains("Run-TryBot+1") {
        return None;
    }
    text.split('\n').find_map(|line| line.strip_prefix("TRY="))
}

/// The Gerrit account number in a NoteDB identity (`5065@<server uuid>`),
/// or 0.
fn gerrit_account_id(email: &str) -> i64 {
    email
        .split_once('@')
        .and_then(|(id, _)| id.parse().ok())
        .unwrap_or(0)
}

/// `GetDashboard`: commits of one branch (or of every branch, `mixed`) of a
/// go.googlesource.com project for the build dashboard, with go's branches,
/// the master head of every project and the supported releases.
///
/// As Go at HEAD (spec §6.6), with these choices where Go leaves room:
/// - `repo` is "", "go" or `golang.org/x/NAME`, which maps to project NAME
///   (Go consults its `repos` table, which maps every x/ repo that way).
/// - History walks follow first parents over the corpus-wide commit map and
///   stop at a commit the corpus has only as a placeholder (Go would crash
///   on it); a commit without author reports "" for name and email.
/// - Mixed mode sorts by commit time with a stable sort (Go's is not, so
///   equal times may come out in another order).
/// - The HEAD-only rule that mixed mode needs a page at least as large as
///   the number of branches uses our own error wording.
pub fn get_dashboard(c: &Corpus, req: &DashboardRequest) -> Result<DashboardResponse, ApiError> {
    let Some(go) = c.gerrit().project(GO_SERVER, "go") else {
        return Err(ApiError::Unknown("go gerrit project not found".to_owned()));
    };
    let project_name = dash_repo_to_project(&req.repo)?;
    let project = c
        .gerrit()
        .project(GO_SERVER, project_name)
        .ok_or_else(|| ApiError::NotFound(format!("repo project {project_name:?} not found")))?;

    let heads: Vec<(&str, GitHash)> = go
        .refs()
        .filter_map(|(name, hash)| Some((name.strip_prefix("refs/heads/")?, hash)))
        .collect();
    let branch = if req.branch.is_empty() {
        "master"
    } else {
        req.branch.as_str()
    };
    let mixed = branch == "mixed";
    if !mixed && !heads.iter().any(|&(name, _)| name == branch) {
        return Err(ApiError::NotFound(format!("unknown branch {branch:?}")));
    }
    let per_page = page_size(req.max_commits, mixed, heads.len())?;
    let skip = page_skip(req.page, mixed, per_page)?;

    let listed: Vec<&str> = if mixed {
        heads.iter().map(|&(name, _)| name).collect()
    } else {
        vec![branch]
    };
    let DashListing {
        mut commits,
        truncated,
        oldest_skipped,
    } = list_dash_commits(c, project, &listed, per_page, skip);
    if project_name != "go" {
        add_go_commits(c, go, oldest_skipped, &mut commits);
    }

    let master = heads
        .iter()
        .find(|&&(name, _)| name == "master")
        .map(|&(_, hash)| hash.to_string())
        .unwrap_or_default();
    let mut releases = vec![GoRelease {
        branch_name: "master".to_owned(),
        branch_commit: master,
        ..GoRelease::default()
    }];
    releases.extend(go_releases(Some(go))?);

    Ok(DashboardResponse {
        commits,
        commits_truncated: truncated,
        repo_heads: dash_repo_heads(c),
        branches: heads.iter().map(|&(name, _)| name.to_owned()).collect(),
        releases,
    })
}

/// The Gerrit project on go.googlesource.com a dashboard `repo` names.
fn dash_repo_to_project(repo: &str) -> Result<&str, ApiError> {
    if repo.is_empty() || repo == "go" {
        return Ok("go");
    }
    match repo.strip_prefix("golang.org/x/") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name),
        _ => Err(ApiError::NotFound(format!(
            "unknown repo {repo:?}; must be empty, \"go\", or \"golang.org/*\""
        ))),
    }
}

/// Commits per page: negative is invalid, 0 is 500 in mixed mode and 30
/// otherwise, anything above 1000 is 1000; mixed mode needs at least one
/// commit per branch.
fn page_size(max_commits: i32, mixed: bool, n_branches: usize) -> Result<usize, ApiError> {
    if max_commits < 0 {
        return Err(ApiError::InvalidArgument("negative max commits".to_owned()));
    }
    let size = match max_commits {
        0 if mixed => 500,
        0 => 30,
        n => n.min(1000) as usize,
    };
    if mixed && size < n_branches {
        return Err(ApiError::InvalidArgument(format!(
            "branch=mixed needs max_commits of at least {n_branches}, one per branch"
        )));
    }
    Ok(size)
}

/// How many commits to skip for `page`: pages count from 0, mixed mode has
/// only page 0, and skipping 10000 or more is "too far back".
fn page_skip(page: i32, mixed: bool, per_page: usize) -> Result<usize, ApiError> {
    if page < 0 {
        return Err(ApiError::InvalidArgument("invalid page".to_owned()));
    }
    if page != 0 && mixed {
        return Err(ApiError::InvalidArgument(
            "branch=mixed does not support pagination".to_owned(),
        ));
    }
    let skip = (page as usize).saturating_mul(per_page);
    if skip >= 10_000 {
        return Err(ApiError::InvalidArgument("too far back".to_owned()));
    }
    Ok(skip)
}

/// A page of dashboard commits, newest first.
struct DashListing {
    commits: Vec<DashCommit>,
    /// More history exists (single branch), or the merge was cut (mixed).
    truncated: bool,
    /// Commit time of the last commit skipped to reach the page, or
    /// `NO_TIME` on page 0.
    oldest_skipped: i64,
}

/// Go's `listDashCommits`: walks each branch's first-parent history in
/// `project`, skipping `skip` commits and keeping up to `per_page`. With
/// several branches (`skip` is then 0) the branches are merged by commit
/// time, newest first, and a branch's walk stops at the first commit older
/// than the oldest kept so far; a commit on two branches appears twice.
fn list_dash_commits(
    c: &Corpus,
    project: Project<'_>,
    branches: &[&str],
    per_page: usize,
    skip: usize,
) -> DashListing {
    let mixed = branches.len() > 1;
    let mut commits: Vec<DashCommit> = Vec::new();
    let mut truncated = false;
    let mut oldest_skipped = NO_TIME;
    let mut oldest_kept = NO_TIME;
    for &branch in branches {
        let Some(head) = project.ref_hash(&format!("refs/heads/{branch}")) else {
            continue;
        };
        let mut log = FirstParentLog::new(c, head);
        let mut skipped = 0;
        let mut added = 0;
        while added < per_page {
            let Some(commit) = log.next() else {
                break;
            };
            let time = commit_time_sec(commit);
            if time < oldest_kept {
                break;
            }
            if skipped >= skip {
                commits.push(dash_commit(commit, branch));
                added += 1;
            } else {
                skipped += 1;
                oldest_skipped = time;
            }
        }
        if !mixed {
            truncated = log.has_next();
            break;
        }
        commits.sort_by_key(|dc| Reverse(dc.commit_time_sec));
        if commits.len() > per_page {
            commits.truncate(per_page);
            truncated = true;
        }
        if let Some(last) = commits.last() {
            oldest_kept = last.commit_time_sec;
        }
    }
    DashListing {
        commits,
        truncated,
        oldest_skipped,
    }
}

/// Go's `addGoCommits`: for a subrepo page, collects go master's
/// first-parent history back to the first commit older than the page's
/// oldest commit, then fills each commit's go commits.
fn add_go_commits(c: &Corpus, go: Project<'_>, oldest_skipped: i64, commits: &mut [DashCommit]) {
    let Some(oldest) = commits.last().map(|dc| dc.commit_time_sec) else {
        return;
    };
    let mut go_log: Vec<(i64, String)> = Vec::new();
    if let Some(head) = go.ref_hash("refs/heads/master") {
        for commit in FirstParentLog::new(c, head) {
            let time = commit_time_sec(commit);
            go_log.push((time, commit.hash().to_string()));
            if time < oldest {
                break;
            }
        }
    }
    assign_go_commits(commits, go_log, oldest_skipped);
}

/// Fills `go_commit_at_time` and `go_commit_latest` from `go_log` (go
/// commits as (commit time, hex), newest first), walking the page from its
/// oldest commit: "at time" is the oldest go commit still in the log, and
/// "latest" the newest go commit older than the next newer commit of the
/// page (`oldest_skipped` for the top one, so on page 0 the two agree).
fn assign_go_commits(
    commits: &mut [DashCommit],
    mut go_log: Vec<(i64, String)>,
    oldest_skipped: i64,
) {
    for i in (0..commits.len()).rev() {
        let max_go_age = if i == 0 {
            oldest_skipped
        } else {
            commits[i - 1].commit_time_sec
        };
        commits[i].go_commit_at_time = last_hash(&go_log);
        while go_log.len() >= 2 && go_log[go_log.len() - 2].0 < max_go_age {
            go_log.pop();
        }
        commits[i].go_commit_latest = last_hash(&go_log);
    }
}

/// The hex of the last (oldest) commit of a go log, or "".
fn last_hash(go_log: &[(i64, String)]) -> String {
    go_log
        .last()
        .map(|(_, hash)| hash.clone())
        .unwrap_or_default()
}

/// The master head of every go.googlesource.com project that has one, by
/// project name (the head must be a commit logged for that project).
fn dash_repo_heads(c: &Corpus) -> Vec<DashRepoHead> {
    c.gerrit()
        .projects()
        .filter(|p| p.server() == GO_SERVER)
        .filter_map(|p| {
            let head = p.ref_hash("refs/heads/master")?;
            let commit = p.commit(&head.to_string())?;
            Some(DashRepoHead {
                gerrit_project: p.project().to_owned(),
                commit: Some(dash_commit(commit, "")),
            })
        })
        .collect()
}

fn dash_commit(commit: Commit<'_>, branch: &str) -> DashCommit {
    let author = commit.author();
    DashCommit {
        commit: commit.hash().to_string(),
        author_name: author.map(|a| a.name().into_owned()).unwrap_or_default(),
        author_email: author.map(|a| a.email().into_owned()).unwrap_or_default(),
        commit_time_sec: commit_time_sec(commit),
        title: commit.summary().into_owned(),
        branch: branch.to_owned(),
        ..DashCommit::default()
    }
}

fn commit_time_sec(commit: Commit<'_>) -> i64 {
    commit
        .commit_time()
        .map_or(GO_ZERO_UNIX, |t| t.instant().seconds)
}

/// `git log --first-parent` over the corpus-wide commit map. It ends at a
/// root, or before a commit known only as a placeholder.
struct FirstParentLog<'a> {
    next: Option<Commit<'a>>,
}

impl<'a> FirstParentLog<'a> {
    fn new(c: &'a Corpus, head: GitHash) -> FirstParentLog<'a> {
        FirstParentLog {
            next: c
                .git_commit(&head.to_string())
                .filter(|commit| !commit.is_placeholder()),
        }
    }

    fn has_next(&self) -> bool {
        self.next.is_some()
    }
}

impl<'a> Iterator for FirstParentLog<'a> {
    type Item = Commit<'a>;

    fn next(&mut self) -> Option<Commit<'a>> {
        let commit = self.next.take()?;
        self.next = commit
            .parents()
            .next()
            .filter(|parent| !parent.is_placeholder());
        Some(commit)
    }
}

#[cfg(test)]
mod tests;

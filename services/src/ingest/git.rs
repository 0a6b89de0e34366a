//! Plain git repositories: new commits as maintner's `GitMutation`s, and the
//! repository's branch and tag refs.
//!
//! Each commit is logged as Go's maintnerd logs one: the raw object exactly
//! as `git cat-file commit` prints it, and the diff tree as `git diff-tree
//! --numstat` prints it (see [`numstat`]). Commits are appended parent before
//! child, in batches, and a ref is appended only after every commit it
//! reaches, so a crash mid-sync leaves a log whose refs never dangle; the
//! next pass walks from the tips, stops at commits the corpus knows, and
//! completes the picture.
//!
//! A local path is read in place (Go's maintnerd, too, expects the
//! directory to be kept current by someone else). A URL is fetched with gix
//! into a bare mirror under the repos directory, and the refs the server
//! advertised are what is logged.
//!
//! This module never runs the git command; everything goes through gix.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use almanac_proto::pb::maintpb::{
    GitCommit, GitDiffTree, GitDiffTreeFile, GitMutation, GitRef, GitRepo, Mutation,
};
use gix::ObjectId;

use super::config::GitSource;
use super::{Sink, SyncError};

/// How long a fetch may run before it is interrupted (Go's limit).
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Commits appended per group commit.
const APPEND_BATCH: usize = 250;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Commits appended.
    pub commits: u64,
    /// Refs appended as new or moved.
    pub refs: u64,
    /// Refs appended as deleted.
    pub deleted_refs: u64,
}

/// Where a source's objects are read from.
fn is_url(url: &str) -> bool {
    url.contains("://") || (url.contains(':') && !url.starts_with('/') && !url.contains('\\'))
}

/// The bare mirror a URL source is fetched into.
pub fn mirror_dir(repos: &Path, kind: &str, name: &str) -> PathBuf {
    repos.join(kind).join(path_escape(name))
}

/// Go's `url.PathEscape`, which names Gerrit clones `go.googlesource.com%2Fgo`.
pub fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let unreserved = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'~' | b'$' | b'&' | b'+' | b',' | b';' | b'=' | b':' | b'@'
            );
        if unreserved {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn git_err(context: &str, e: impl std::fmt::Display) -> SyncError {
    SyncError::Git(format!("{context}: {e}"))
}

/// A URL fit for logs and errors: any `user:password@` is replaced, so
/// credentials written into a configured URL are never printed.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Opens a repository, bare or not, ignoring the user's and system's git
/// configuration so that a pass reads the same everywhere.
pub fn open(path: &Path) -> Result<gix::Repository, SyncError> {
    gix::open_opts(path, gix::open::Options::isolated())
        .map_err(|e| git_err(&format!("opening {}", path.display()), e))
}

/// A ref as the remote (or the local repository) lists it: its direct
/// target, and the commit it peels to when that is a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRef {
    pub name: String,
    pub target: ObjectId,
    pub peeled: Option<ObjectId>,
}

/// Fetches `refspecs` from `url` into the bare repository at `dir` (made if
/// missing). Returns every ref the server advertised under the refspecs'
/// prefixes, in the server's (lexicographic) order.
pub fn fetch(dir: &Path, url: &str, refspecs: &[String]) -> Result<Vec<ListedRef>, SyncError> {
    let repo = if dir.join("HEAD").exists() || dir.join(".git").exists() {
        open(dir)?
    } else {
        std::fs::create_dir_all(dir).map_err(|e| git_err("creating the mirror", e))?;
        gix::init_bare(dir).map_err(|e| git_err(&format!("git init {}", dir.display()), e))?;
        open(dir)?
    };
    let remote = repo
        .remote_at(url)
        .map_err(|e| git_err(&format!("remote {}", redact_url(url)), e))?
        .with_refspecs(
            refspecs.iter().map(String::as_str),
            gix::remote::Direction::Fetch,
        )
        .map_err(|e| git_err("refspecs", e))?;
    let connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| git_err(&format!("connecting to {}", redact_url(url)), e))?;
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|e| git_err(&format!("listing refs of {}", redact_url(url)), e))?;
    let listed = advertised(&prepare.ref_map().remote_refs);
    // Go stops a fetch after 10 minutes; a watchdog thread raises gix's
    // interrupt flag then, and leaves as soon as the fetch ends.
    let interrupt = std::sync::Arc::new(AtomicBool::new(false));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let flag = interrupt.clone();
    let watchdog = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            finished.recv_timeout(FETCH_TIMEOUT)
        {
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let received = prepare.receive(gix::progress::Discard, &interrupt);
    drop(done);
    let _ = watchdog.join();
    received.map_err(|e| git_err(&format!("fetching from {}", redact_url(url)), e))?;
    Ok(listed)
}

/// Lists every ref of `url`, HEAD included (`git ls-remote`), fetching
/// nothing. The mirror at `dir` is made if missing (gix needs a repository
/// to talk from).
pub fn ls_remote(dir: &Path, url: &str) -> Result<Vec<ListedRef>, SyncError> {
    let repo = open_or_init_bare(dir)?;
    let remote = repo
        .remote_at(url)
        .map_err(|e| git_err(&format!("remote {}", redact_url(url)), e))?
        .with_refspecs(["+refs/*:refs/*"], gix::remote::Direction::Fetch)
        .map_err(|e| git_err("refspecs", e))?;
    let connection = remote
        .connect(gix::remote::Direction::Fetch)
        .map_err(|e| git_err(&format!("connecting to {}", redact_url(url)), e))?;
    let options = gix::remote::ref_map::Options {
        prefix_from_spec_as_filter_on_remote: false,
        ..Default::default()
    };
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, options)
        .map_err(|e| git_err(&format!("listing refs of {}", redact_url(url)), e))?;
    Ok(advertised(&prepare.ref_map().remote_refs))
}

/// Opens the bare mirror at `dir`, making it if missing.
pub fn open_or_init_bare(dir: &Path) -> Result<gix::Repository, SyncError> {
    if dir.join("HEAD").exists() {
        return open(dir);
    }
    std::fs::create_dir_all(dir).map_err(|e| git_err("creating the mirror", e))?;
    gix::init_bare(dir).map_err(|e| git_err(&format!("git init {}", dir.display()), e))?;
    open(dir)
}

fn advertised(refs: &[gix::protocol::handshake::Ref]) -> Vec<ListedRef> {
    let mut listed: Vec<ListedRef> = refs
        .iter()
        .filter_map(|r| {
            let (name, target, peeled) = r.unpack();
            Some(ListedRef {
                name: name.to_string(),
                target: target?.to_owned(),
                peeled: peeled.map(|p| p.to_owned()),
            })
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    listed
}

/// The local repository's refs under `prefixes`, sorted by name, with
/// annotated tags peeled.
pub fn local_refs(repo: &gix::Repository, prefixes: &[&str]) -> Result<Vec<ListedRef>, SyncError> {
    let platform = repo.references().map_err(|e| git_err("reading refs", e))?;
    let mut listed = Vec::new();
    for r in platform.all().map_err(|e| git_err("reading refs", e))? {
        let mut r = r.map_err(|e| git_err("reading a ref", e))?;
        let name = r.name().as_bstr().to_string();
        if !prefixes.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let Some(target) = r.target().try_id().map(|id| id.to_owned()) else {
            continue; // symbolic
        };
        let peeled = r.peel_to_id().ok().map(|id| id.detach());
        listed.push(ListedRef {
            name,
            target,
            peeled: peeled.filter(|p| *p != target),
        });
    }
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

/// The commit a ref reaches, if it reaches one.
pub fn commit_of(repo: &gix::Repository, r: &ListedRef) -> Option<ObjectId> {
    let id = r.peeled.unwrap_or(r.target);
    let object = repo.find_object(id).ok()?;
    (object.kind == gix::object::Kind::Commit).then_some(id)
}

/// Every commit reachable from `tips` that `known` does not know, parents
/// before children. The walk stops at known commits, so an incremental pass
/// costs what is new. Iterative: histories are deep.
pub fn new_commits(
    repo: &gix::Repository,
    tips: &[ObjectId],
    known: &mut dyn FnMut(&ObjectId) -> bool,
) -> Result<Vec<ObjectId>, SyncError> {
    let mut order = Vec::new();
    let mut visited: HashSet<ObjectId> = HashSet::new();
    // (commit, parents pushed yet)
    let mut stack: Vec<(ObjectId, bool)> = Vec::new();
    for tip in tips {
        if visited.contains(tip) || known(tip) {
            continue;
        }
        stack.push((*tip, false));
        while let Some((id, expanded)) = stack.pop() {
            if expanded {
                order.push(id);
                continue;
            }
            if !visited.insert(id) {
                continue;
            }
            stack.push((id, true));
            let object = repo
                .find_object(id)
                .map_err(|e| git_err(&format!("reading commit {id}"), e))?;
            let commit = gix::objs::CommitRef::from_bytes(&object.data, gix::hash::Kind::Sha1)
                .map_err(|e| git_err(&format!("parsing commit {id}"), e))?;
            // Push in reverse so the first parent is walked (and logged) first.
            let parents: Vec<ObjectId> = commit.parents().collect();
            for parent in parents.into_iter().rev() {
                if !visited.contains(&parent) && !known(&parent) {
                    stack.push((parent, false));
                }
            }
        }
    }
    Ok(order)
}

/// The commit `id` as maintner logs it: raw object bytes and numstat.
pub fn commit_record(repo: &gix::Repository, id: ObjectId) -> Result<GitCommit, SyncError> {
    let object = repo
        .find_object(id)
        .map_err(|e| git_err(&format!("reading commit {id}"), e))?;
    if object.kind != gix::object::Kind::Commit {
        return Err(SyncError::Git(format!(
            "{id} is a {}, not a commit",
            object.kind
        )));
    }
    let raw = object.data.clone();
    let (parents, tree) = {
        let commit = gix::objs::CommitRef::from_bytes(&raw, gix::hash::Kind::Sha1)
            .map_err(|e| git_err(&format!("parsing commit {id}"), e))?;
        (commit.parents().collect::<Vec<ObjectId>>(), commit.tree())
    };
    // diff-tree prints nothing for root commits (without --root) and for
    // merges (without -m or -c); Go logs an empty diff tree for both.
    let file = match parents.as_slice() {
        [parent] => {
            let parent_tree = tree_of(repo, *parent)?;
            numstat(repo, Some(parent_tree), tree)?
        }
        _ => Vec::new(),
    };
    Ok(GitCommit {
        sha1: id.to_string(),
        raw: raw.into(),
        diff_tree: Some(GitDiffTree { file }),
    })
}

fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId, SyncError> {
    let object = repo
        .find_object(commit)
        .map_err(|e| git_err(&format!("reading commit {commit}"), e))?;
    let parsed = gix::objs::CommitRef::from_bytes(&object.data, gix::hash::Kind::Sha1)
        .map_err(|e| git_err(&format!("parsing commit {commit}"), e))?;
    Ok(parsed.tree())
}

/// One side of a changed path: its mode and blob (or gitlink) id.
#[derive(Clone, Copy)]
struct Side {
    mode: gix::objs::tree::EntryMode,
    id: ObjectId,
}

/// The lines `git diff-tree -r --numstat OLD NEW` prints, as maintner
/// parses them: recursive, no rename detection (so a rename is a deletion
/// and an addition), `-` counts for binary files (a NUL byte in the first
/// 8000 bytes, git's rule), names C-quoted as git's default `core.quotePath`
/// does, then trimmed as Go's parser trims them. Sorted by name.
pub fn numstat(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: ObjectId,
) -> Result<Vec<GitDiffTreeFile>, SyncError> {
    let mut changes = Vec::new();
    let mut prefix = Vec::new();
    diff_trees(repo, old, Some(new), &mut prefix, &mut changes)?;
    let mut files = Vec::with_capacity(changes.len());
    for (path, before, after) in changes {
        let old_data = side_data(repo, before)?;
        let new_data = side_data(repo, after)?;
        let binary = is_binary(&old_data) || is_binary(&new_data);
        let (added, deleted) = if binary {
            (0, 0)
        } else {
            line_counts(&old_data, &new_data)
        };
        files.push(GitDiffTreeFile {
            file: go_trimmed(&quote_path(&path)),
            added,
            deleted,
            binary,
        });
    }
    files.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(files)
}

type Change = (Vec<u8>, Option<Side>, Option<Side>);

fn tree_entries(
    repo: &gix::Repository,
    tree: Option<ObjectId>,
) -> Result<Vec<(Vec<u8>, Side)>, SyncError> {
    let Some(tree) = tree else {
        return Ok(Vec::new());
    };
    let object = repo
        .find_object(tree)
        .map_err(|e| git_err(&format!("reading tree {tree}"), e))?;
    let parsed = gix::objs::TreeRef::from_bytes(&object.data, gix::hash::Kind::Sha1)
        .map_err(|e| git_err(&format!("parsing tree {tree}"), e))?;
    Ok(parsed
        .entries
        .iter()
        .map(|e| {
            (
                e.filename.to_vec(),
                Side {
                    mode: e.mode,
                    id: e.oid.to_owned(),
                },
            )
        })
        .collect())
}

/// Git's tree order: names compare as bytes, with a tree's name followed
/// by `/`.
fn tree_order(a: &(Vec<u8>, Side), b: &(Vec<u8>, Side)) -> std::cmp::Ordering {
    let key = |(name, side): &(Vec<u8>, Side)| {
        let mut k = name.clone();
        if side.mode.is_tree() {
            k.push(b'/');
        }
        k
    };
    key(a).cmp(&key(b))
}

fn diff_trees(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
    prefix: &mut Vec<u8>,
    out: &mut Vec<Change>,
) -> Result<(), SyncError> {
    if old == new {
        return Ok(());
    }
    let before = tree_entries(repo, old)?;
    let after = tree_entries(repo, new)?;
    let (mut i, mut j) = (0, 0);
    while i < before.len() || j < after.len() {
        let ord = match (before.get(i), after.get(j)) {
            (Some(a), Some(b)) => tree_order(a, b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, _) => std::cmp::Ordering::Greater,
        };
        match ord {
            std::cmp::Ordering::Less => {
                entry_changed(repo, prefix, &before[i].0, Some(before[i].1), None, out)?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                entry_changed(repo, prefix, &after[j].0, None, Some(after[j].1), out)?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (a, b) = (before[i].1, after[j].1);
                if a.id != b.id || a.mode != b.mode {
                    entry_changed(repo, prefix, &before[i].0, Some(a), Some(b), out)?;
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
}

fn entry_changed(
    repo: &gix::Repository,
    prefix: &mut Vec<u8>,
    name: &[u8],
    before: Option<Side>,
    after: Option<Side>,
    out: &mut Vec<Change>,
) -> Result<(), SyncError> {
    let len = prefix.len();
    prefix.extend_from_slice(name);
    let is_tree = |s: Option<Side>| s.is_some_and(|s| s.mode.is_tree());
    if is_tree(before) || is_tree(after) {
        // Same name and both trees (tree order keeps a tree and a file of
        // one name apart, so mixed pairs never meet here).
        prefix.push(b'/');
        let result = diff_trees(repo, before.map(|s| s.id), after.map(|s| s.id), prefix, out);
        prefix.truncate(len);
        return result;
    }
    out.push((prefix.clone(), before, after));
    prefix.truncate(len);
    Ok(())
}

/// The content git diffs for one side: a blob's bytes, or for a gitlink
/// (submodule) the line `Subproject commit <hex>`.
fn side_data(repo: &gix::Repository, side: Option<Side>) -> Result<Vec<u8>, SyncError> {
    let Some(side) = side else {
        return Ok(Vec::new());
    };
    if side.mode.is_commit() {
        return Ok(format!("Subproject commit {}\n", side.id).into_bytes());
    }
    let object = repo
        .find_object(side.id)
        .map_err(|e| git_err(&format!("reading blob {}", side.id), e))?;
    Ok(object.data.clone())
}

/// git's `buffer_is_binary`: a NUL in the first 8000 bytes.
fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
}

/// Lines added and deleted, as git's Myers diff counts them. git's xdiff
/// finds a minimal edit script except in huge, pathological inputs, so the
/// minimal variant matches it (imara's heuristic Myers gives up sooner and
/// over-counts a few lines on real files); past a size where a minimal
/// search could take seconds, the heuristic one is used.
fn line_counts(old: &[u8], new: &[u8]) -> (i64, i64) {
    // Content anyone can upload (a Gerrit patch set) must not make one
    // commit cost seconds: the minimal search is quadratic in the worst
    // case, so past this size the capped heuristic search runs instead.
    const MINIMAL_UP_TO: usize = 256 << 10;
    let input = imara_diff::InternedInput::new(old, new);
    let algorithm = if old.len() + new.len() <= MINIMAL_UP_TO {
        imara_diff::Algorithm::MyersMinimal
    } else {
        imara_diff::Algorithm::Myers
    };
    let diff = imara_diff::Diff::compute(algorithm, &input);
    (
        i64::from(diff.count_additions()),
        i64::from(diff.count_removals()),
    )
}

/// git's `quote_c_style` under the default `core.quotePath=true`: a name
/// with a control character, `"`, `\` or a byte >= 0x80 is printed in
/// double quotes with C escapes and octal bytes.
pub fn quote_path(path: &[u8]) -> String {
    let needs = path
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b >= 0x7f);
    if !needs {
        return String::from_utf8_lossy(path).into_owned();
    }
    let mut out = String::from("\"");
    for &b in path {
        match b {
            b'\x07' => out.push_str("\\a"),
            b'\x08' => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\x0b' => out.push_str("\\v"),
            b'\x0c' => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if !(0x20..0x7f).contains(&b) => out.push_str(&format!("\\{b:03o}")),
            b => out.push(b as char),
        }
    }
    out.push('"');
    out
}

/// Go's parser takes the name as the rest of a `strings.TrimSpace`d line.
fn go_trimmed(name: &str) -> String {
    name.trim().to_string()
}

/// The refs a mutation must carry so the corpus's refs for a repository
/// equal `listed`: new or moved refs, and names that went away.
pub fn ref_changes(
    known: &BTreeMap<String, String>,
    listed: &[ListedRef],
) -> (Vec<GitRef>, Vec<String>) {
    let mut changed = Vec::new();
    let mut seen = HashSet::new();
    for r in listed {
        seen.insert(r.name.as_str());
        let hex = r.target.to_string();
        if known.get(&r.name) != Some(&hex) {
            changed.push(GitRef {
                r#ref: r.name.clone(),
                sha1: hex,
            });
        }
    }
    let deleted = known
        .keys()
        .filter(|name| !seen.contains(name.as_str()))
        .cloned()
        .collect();
    (changed, deleted)
}

/// Which refs of a plain repository are logged.
const REF_PREFIXES: &[&str] = &["refs/heads/", "refs/tags/"];

/// One pass over a plain git repository: fetch if it is a URL, append every
/// commit the corpus lacks (parents first), then the refs that changed.
pub async fn sync_repo(
    sink: &Sink,
    source: &GitSource,
    repos_dir: &Path,
) -> Result<PassStats, SyncError> {
    let sink = sink.clone();
    let source = source.clone();
    let repos_dir = repos_dir.to_path_buf();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let (repo, listed) = if is_url(&source.url) {
            let dir = mirror_dir(&repos_dir, "git", &source.name);
            let specs: Vec<String> = REF_PREFIXES.iter().map(|p| format!("+{p}*:{p}*")).collect();
            let listed = fetch(&dir, &source.url, &specs)?;
            let listed = listed
                .into_iter()
                .filter(|r| REF_PREFIXES.iter().any(|p| r.name.starts_with(p)))
                .collect();
            (open(&dir)?, listed)
        } else {
            let repo = open(Path::new(&source.url))?;
            let listed = local_refs(&repo, REF_PREFIXES)?;
            (repo, listed)
        };
        let tips: Vec<ObjectId> = listed.iter().filter_map(|r| commit_of(&repo, r)).collect();
        let mut read_failed = None;
        let mut known = |id: &ObjectId| {
            let hex = id.to_string();
            sink.read(|c| c.git_commit(&hex).is_some_and(|c| !c.is_placeholder()))
                .unwrap_or_else(|e| {
                    read_failed = Some(e);
                    true
                })
        };
        let todo = new_commits(&repo, &tips, &mut known)?;
        if let Some(e) = read_failed {
            return Err(e);
        }
        let mut stats = PassStats::default();
        let repo_name = GitRepo {
            go_repo: source.name.clone(),
        };
        for chunk in todo.chunks(APPEND_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for id in chunk {
                batch.push(Mutation {
                    git: Some(GitMutation {
                        repo: Some(repo_name.clone()),
                        commit: Some(commit_record(&repo, *id)?),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            stats.commits += batch.len() as u64;
            handle.block_on(sink.append(batch))?;
            tracing::info!(
                repo = %source.name,
                appended = stats.commits,
                of = todo.len(),
                "git sync progress"
            );
        }
        let known_refs = sink.read(|c| {
            c.git_repo(&source.name)
                .map(|r| {
                    r.refs()
                        .map(|(name, hash)| (name.to_string(), hash.to_string()))
                        .collect()
                })
                .unwrap_or_default()
        })?;
        let (refs, deleted_refs) = ref_changes(&known_refs, &listed);
        stats.refs = refs.len() as u64;
        stats.deleted_refs = deleted_refs.len() as u64;
        if !refs.is_empty() || !deleted_refs.is_empty() {
            handle.block_on(sink.append(vec![Mutation {
                git: Some(GitMutation {
                    repo: Some(repo_name),
                    commit: None,
                    refs,
                    deleted_refs,
                }),
                ..Default::default()
            }]))?;
        }
        if stats != PassStats::default() {
            tracing::info!(
                repo = %source.name,
                commits = stats.commits,
                refs = stats.refs,
                deleted_refs = stats.deleted_refs,
                "git sync appended"
            );
        }
        Ok(stats)
    })
    .await
    .map_err(|e| SyncError::Other(format!("git sync thread: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_git() {
        assert_eq!(quote_path(b"a/b c.txt"), "a/b c.txt");
        assert_eq!(quote_path("caf\u{e9}".as_bytes()), "\"caf\\303\\251\"");
        assert_eq!(quote_path(b"tab\there"), "\"tab\\there\"");
        assert_eq!(quote_path(b"q\"uote"), "\"q\\\"uote\"");
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://me:s3cret@example.com/repo.git"),
            "https://<redacted>@example.com/repo.git"
        );
        assert_eq!(
            redact_url("https://example.com/a@b"),
            "https://example.com/a@b"
        );
        assert_eq!(redact_url("/srv/git/go"), "/srv/git/go");
    }

    #[test]
    fn path_escape_matches_go() {
        assert_eq!(
            path_escape("go.googlesource.com/go"),
            "go.googlesource.com%2Fgo"
        );
        assert_eq!(path_escape("a b"), "a%20b");
    }

    #[test]
    fn counts_lines_like_numstat() {
        assert_eq!(line_counts(b"a\nb\nc\n", b"a\nB\nc\nd\n"), (2, 1));
        assert_eq!(line_counts(b"", b"x\ny"), (2, 0));
        assert_eq!(line_counts(b"x\n", b"x"), (1, 1));
        assert!(is_binary(b"ab\0c"));
        assert!(!is_binary(b"plain"));
    }

    #[test]
    fn ref_changes_list_moves_and_deletions() {
        let id = |b: u8| ObjectId::from_bytes_or_panic(&[b; 20]);
        let mut known = BTreeMap::new();
        known.insert("refs/heads/main".to_string(), id(1).to_string());
        known.insert("refs/heads/gone".to_string(), id(2).to_string());
        let listed = vec![
            ListedRef {
                name: "refs/heads/main".into(),
                target: id(3),
                peeled: None,
            },
            ListedRef {
                name: "refs/tags/v1".into(),
                target: id(1),
                peeled: None,
            },
        ];
        let (changed, deleted) = ref_changes(&known, &listed);
        assert_eq!(
            changed.iter().map(|r| r.r#ref.as_str()).collect::<Vec<_>>(),
            ["refs/heads/main", "refs/tags/v1"]
        );
        assert_eq!(deleted, ["refs/heads/gone"]);
    }
}

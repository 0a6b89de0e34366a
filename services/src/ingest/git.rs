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
    let mut repo = gix::open_opts(path, gix::open::Options::isolated())
        .map_err(|e| git_err(&format!("opening {}", path.display()), e))?;
    // Every tree is read twice (as a commit's, then as its child's
    // parent's), and blobs are often deltas of recent ones.
    repo.object_cache_size_if_unset(OBJECT_CACHE);
    Ok(repo)
}

/// Decoded objects kept per open repository.
const OBJECT_CACHE: usize = 64 << 20;

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
    ensure_crypto_provider();
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

/// gix's https transport is reqwest over rustls without a built-in
/// crypto provider; this process uses ring everywhere, so it is installed
/// as the process default before the first connection (a no-op once one
/// is installed).
fn ensure_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    ensure_crypto_provider();
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

/// Lines added and deleted, counted as `git diff --numstat` counts them:
/// this is git's default (Myers) line diff, xdiff's, decision for
/// decision, because its counts are not the minimal edit script's and Go's
/// maintner logs what git prints.
///
/// Three stages, as xdiff has them:
/// 1. Lines become equivalence classes (whole lines, newline included); the
///    common head and tail are trimmed.
/// 2. Cleanup: a line with no match in the other file is changed outright;
///    a line matching many (about the square root of the file's length)
///    is changed too when it sits among unmatched lines ([`keep_lines`]).
///    A minimal diff would match such a `}`; git counts it removed and
///    re-added.
/// 3. Divide and conquer over what is left with Myers' middle snake
///    ([`middle_snake`]), including xdiff's heuristics that cut an
///    expensive search short (git runs without `--minimal`).
fn line_counts(old: &[u8], new: &[u8]) -> (i64, i64) {
    let before = split_lines(old);
    let after = split_lines(new);
    let mut classes: rustc_hash::FxHashMap<&[u8], u32> = rustc_hash::FxHashMap::default();
    let mut ha: Vec<u32> = Vec::with_capacity(before.len());
    for line in &before {
        let next = classes.len() as u32;
        ha.push(*classes.entry(line).or_insert(next));
    }
    let mut hb: Vec<u32> = Vec::with_capacity(after.len());
    for line in &after {
        let next = classes.len() as u32;
        hb.push(*classes.entry(line).or_insert(next));
    }
    let class_count = classes.len();
    let mut in_before = vec![0usize; class_count];
    let mut in_after = vec![0usize; class_count];
    for &c in &ha {
        in_before[c as usize] += 1;
    }
    for &c in &hb {
        in_after[c as usize] += 1;
    }

    // Trim the common head, then the common tail (never overlapping it).
    let (n1, n2) = (ha.len(), hb.len());
    let limit = n1.min(n2);
    let mut head = 0;
    while head < limit && ha[head] == hb[head] {
        head += 1;
    }
    let mut tail = 0;
    while tail < limit - head && ha[n1 - 1 - tail] == hb[n2 - 1 - tail] {
        tail += 1;
    }
    let (kept1, discarded1) = keep_lines(&ha, head..n1 - tail, &in_after, n1);
    let (kept2, discarded2) = keep_lines(&hb, head..n2 - tail, &in_before, n2);
    let (deleted, added) = myers_counts(&kept1, &kept2);
    ((discarded2 + added) as i64, (discarded1 + deleted) as i64)
}

/// xdiff's search limits: the cost past which the heuristics may cut the
/// search (at least [`MAX_COST_MIN`]), the cost before they start, the
/// snake length that counts as a good one, and the heuristic's factor.
const MAX_COST_MIN: i64 = 256;
const HEURISTIC_MIN_COST: i64 = 256;
const SNAKE_COUNT: i64 = 20;
const HEURISTIC_FACTOR: i64 = 4;

/// Where a box is split, and whether each half must be searched minimally.
struct Split {
    i1: i64,
    i2: i64,
    minimal_low: bool,
    minimal_high: bool,
}

/// The diagonal vectors of the forward and backward searches, indexed by
/// diagonal `d = i1 - i2` (offset so that every diagonal of the whole
/// problem fits).
struct Diagonals {
    forward: Vec<i64>,
    backward: Vec<i64>,
    offset: i64,
}

impl Diagonals {
    fn f(&mut self, d: i64) -> &mut i64 {
        &mut self.forward[(d + self.offset) as usize]
    }
    fn b(&mut self, d: i64) -> &mut i64 {
        &mut self.backward[(d + self.offset) as usize]
    }
}

/// Lines deleted from `a` and added in `b` by xdiff's divide and conquer
/// (`xdl_recs_cmp`), without `--minimal`. Boxes are kept on an explicit
/// stack: their order does not change any decision, and deep histories of
/// splits must not exhaust a thread's stack.
fn myers_counts(a: &[u32], b: &[u32]) -> (usize, usize) {
    let (n1, n2) = (a.len() as i64, b.len() as i64);
    let diagonals = n1 + n2 + 3;
    let mut kv = Diagonals {
        forward: vec![0; (diagonals + 2) as usize],
        backward: vec![0; (diagonals + 2) as usize],
        offset: n2 + 1,
    };
    let max_cost = (bogo_sqrt(diagonals as usize) as i64).max(MAX_COST_MIN);
    let (mut deleted, mut added) = (0usize, 0usize);
    let mut boxes = vec![(0i64, n1, 0i64, n2, false)];
    while let Some((mut off1, mut lim1, mut off2, mut lim2, minimal)) = boxes.pop() {
        while off1 < lim1 && off2 < lim2 && a[off1 as usize] == b[off2 as usize] {
            off1 += 1;
            off2 += 1;
        }
        while off1 < lim1 && off2 < lim2 && a[(lim1 - 1) as usize] == b[(lim2 - 1) as usize] {
            lim1 -= 1;
            lim2 -= 1;
        }
        if off1 == lim1 {
            added += (lim2 - off2) as usize;
        } else if off2 == lim2 {
            deleted += (lim1 - off1) as usize;
        } else {
            let split = middle_snake(a, b, (off1, lim1, off2, lim2), &mut kv, minimal, max_cost);
            boxes.push((off1, split.i1, off2, split.i2, split.minimal_low));
            boxes.push((split.i1, lim1, split.i2, lim2, split.minimal_high));
        }
    }
    (deleted, added)
}

/// Myers' middle snake of the box `(off1, lim1, off2, lim2)` with xdiff's
/// heuristics (`xdl_split`): forward and backward searches meet on a
/// diagonal; past [`HEURISTIC_MIN_COST`] a long enough snake far along a
/// diagonal is taken; past `max_cost` the furthest-reaching point is.
fn middle_snake(
    a: &[u32],
    b: &[u32],
    (off1, lim1, off2, lim2): (i64, i64, i64, i64),
    kv: &mut Diagonals,
    minimal: bool,
    max_cost: i64,
) -> Split {
    let eq = |i1: i64, i2: i64| a[i1 as usize] == b[i2 as usize];
    let (dmin, dmax) = (off1 - lim2, lim1 - off2);
    let (fmid, bmid) = (off1 - off2, lim1 - lim2);
    let odd = (fmid - bmid) & 1 != 0;
    let (mut fmin, mut fmax) = (fmid, fmid);
    let (mut bmin, mut bmax) = (bmid, bmid);
    *kv.f(fmid) = off1;
    *kv.b(bmid) = lim1;
    let mut cost = 1i64;
    loop {
        let mut got_snake = false;

        // Forward: widen the diagonal range by one each way, or narrow it
        // where it would leave the box.
        if fmin > dmin {
            fmin -= 1;
            *kv.f(fmin - 1) = -1;
        } else {
            fmin += 1;
        }
        if fmax < dmax {
            fmax += 1;
            *kv.f(fmax + 1) = -1;
        } else {
            fmax -= 1;
        }
        let mut d = fmax;
        while d >= fmin {
            let mut i1 = if *kv.f(d - 1) >= *kv.f(d + 1) {
                *kv.f(d - 1) + 1
            } else {
                *kv.f(d + 1)
            };
            let start = i1;
            let mut i2 = i1 - d;
            while i1 < lim1 && i2 < lim2 && eq(i1, i2) {
                i1 += 1;
                i2 += 1;
            }
            if i1 - start > SNAKE_COUNT {
                got_snake = true;
            }
            *kv.f(d) = i1;
            if odd && bmin <= d && d <= bmax && *kv.b(d) <= i1 {
                return Split {
                    i1,
                    i2,
                    minimal_low: true,
                    minimal_high: true,
                };
            }
            d -= 2;
        }

        // Backward, likewise.
        if bmin > dmin {
            bmin -= 1;
            *kv.b(bmin - 1) = i64::MAX;
        } else {
            bmin += 1;
        }
        if bmax < dmax {
            bmax += 1;
            *kv.b(bmax + 1) = i64::MAX;
        } else {
            bmax -= 1;
        }
        let mut d = bmax;
        while d >= bmin {
            let mut i1 = if *kv.b(d - 1) < *kv.b(d + 1) {
                *kv.b(d - 1)
            } else {
                *kv.b(d + 1) - 1
            };
            let start = i1;
            let mut i2 = i1 - d;
            while i1 > off1 && i2 > off2 && eq(i1 - 1, i2 - 1) {
                i1 -= 1;
                i2 -= 1;
            }
            if start - i1 > SNAKE_COUNT {
                got_snake = true;
            }
            *kv.b(d) = i1;
            if !odd && fmin <= d && d <= fmax && i1 <= *kv.f(d) {
                return Split {
                    i1,
                    i2,
                    minimal_low: true,
                    minimal_high: true,
                };
            }
            d -= 2;
        }

        if !minimal {
            if got_snake && cost > HEURISTIC_MIN_COST {
                // A diagonal that got far from the corner, with a snake of
                // SNAKE_COUNT equal lines just before its end.
                let mut best = 0;
                let mut found = None;
                let mut d = fmax;
                while d >= fmin {
                    let dd = (d - fmid).abs();
                    let i1 = *kv.f(d);
                    let i2 = i1 - d;
                    let v = (i1 - off1) + (i2 - off2) - dd;
                    if v > HEURISTIC_FACTOR * cost
                        && v > best
                        && off1 + SNAKE_COUNT <= i1
                        && i1 < lim1
                        && off2 + SNAKE_COUNT <= i2
                        && i2 < lim2
                        && (1..=SNAKE_COUNT).all(|k| eq(i1 - k, i2 - k))
                    {
                        best = v;
                        found = Some((i1, i2));
                    }
                    d -= 2;
                }
                if let Some((i1, i2)) = found {
                    return Split {
                        i1,
                        i2,
                        minimal_low: true,
                        minimal_high: false,
                    };
                }
                let mut best = 0;
                let mut found = None;
                let mut d = bmax;
                while d >= bmin {
                    let dd = (d - bmid).abs();
                    let i1 = *kv.b(d);
                    let i2 = i1 - d;
                    let v = (lim1 - i1) + (lim2 - i2) - dd;
                    if v > HEURISTIC_FACTOR * cost
                        && v > best
                        && off1 < i1
                        && i1 <= lim1 - SNAKE_COUNT
                        && off2 < i2
                        && i2 <= lim2 - SNAKE_COUNT
                        && (0..SNAKE_COUNT).all(|k| eq(i1 + k, i2 + k))
                    {
                        best = v;
                        found = Some((i1, i2));
                    }
                    d -= 2;
                }
                if let Some((i1, i2)) = found {
                    return Split {
                        i1,
                        i2,
                        minimal_low: false,
                        minimal_high: true,
                    };
                }
            }

            // Enough: take the furthest-reaching point of either search.
            if cost >= max_cost {
                let (mut fbest, mut fbest1) = (-1i64, -1i64);
                let mut d = fmax;
                while d >= fmin {
                    let mut i1 = (*kv.f(d)).min(lim1);
                    let mut i2 = i1 - d;
                    if lim2 < i2 {
                        i1 = lim2 + d;
                        i2 = lim2;
                    }
                    if fbest < i1 + i2 {
                        fbest = i1 + i2;
                        fbest1 = i1;
                    }
                    d -= 2;
                }
                let (mut bbest, mut bbest1) = (i64::MAX, i64::MAX);
                let mut d = bmax;
                while d >= bmin {
                    let mut i1 = off1.max(*kv.b(d));
                    let mut i2 = i1 - d;
                    if i2 < off2 {
                        i1 = off2 + d;
                        i2 = off2;
                    }
                    if i1 + i2 < bbest {
                        bbest = i1 + i2;
                        bbest1 = i1;
                    }
                    d -= 2;
                }
                return if (lim1 + lim2) - bbest < fbest - (off1 + off2) {
                    Split {
                        i1: fbest1,
                        i2: fbest - fbest1,
                        minimal_low: true,
                        minimal_high: false,
                    }
                } else {
                    Split {
                        i1: bbest1,
                        i2: bbest - bbest1,
                        minimal_low: false,
                        minimal_high: true,
                    }
                };
            }
        }
        cost += 1;
    }
}

/// xdiff's constants: how far the frequent-line scan looks, the ratio that
/// decides a frequent line is discarded, and the cap on "frequent".
const SIMSCAN_WINDOW: usize = 100;
const KPDIS_RUN: usize = 4;
const MAX_EQLIMIT: usize = 1024;

/// Lines as git splits them: each ends after its `\n`, the last one may
/// lack it.
fn split_lines(data: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = memchr_newline(rest).map_or(rest.len(), |i| i + 1);
        lines.push(&rest[..end]);
        rest = &rest[end..];
    }
    lines
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    data.iter().position(|&b| b == b'\n')
}

/// git's square-root estimate (`xdl_bogosqrt`).
fn bogo_sqrt(mut n: usize) -> usize {
    let mut root = 1;
    while n > 0 {
        root <<= 1;
        n >>= 2;
    }
    root
}

/// xdiff's record cleanup for one file: of the lines in `range`, which go
/// into the diff (their classes, in order) and how many are discarded as
/// changed. `in_other` counts each class's lines in the other file; `total`
/// is this file's line count.
fn keep_lines(
    classes: &[u32],
    range: std::ops::Range<usize>,
    in_other: &[usize],
    total: usize,
) -> (Vec<u32>, usize) {
    let frequent = bogo_sqrt(total).min(MAX_EQLIMIT);
    // 0: no match in the other file; 1: some; 2: many.
    let kind: Vec<u8> = classes
        .iter()
        .map(|&c| match in_other[c as usize] {
            0 => 0,
            n if n >= frequent => 2,
            _ => 1,
        })
        .collect();
    let mut kept = Vec::with_capacity(range.len());
    let mut discarded = 0;
    if range.is_empty() {
        return (kept, discarded);
    }
    let (start, end) = (range.start, range.end - 1);
    for i in range {
        let keep = kind[i] == 1 || (kind[i] == 2 && !discard_frequent(&kind, i, start, end));
        if keep {
            kept.push(classes[i]);
        } else {
            discarded += 1;
        }
    }
    (kept, discarded)
}

/// Whether a frequent line at `i` (`kind[i] == 2`) is discarded: only
/// inside runs of unmatched and frequent lines on both sides, with enough
/// unmatched lines among them (`xdl_clean_mmatch`). `start..=end` is the
/// untrimmed range; the scan looks at most [`SIMSCAN_WINDOW`] lines away.
fn discard_frequent(kind: &[u8], i: usize, start: usize, end: usize) -> bool {
    let start = start.max(i.saturating_sub(SIMSCAN_WINDOW));
    let end = end.min(i + SIMSCAN_WINDOW);
    let (mut unmatched_before, mut frequent_before) = (0, 1);
    for j in (start..i).rev() {
        match kind[j] {
            0 => unmatched_before += 1,
            2 => frequent_before += 1,
            _ => break,
        }
    }
    if unmatched_before == 0 {
        return false;
    }
    let (mut unmatched_after, mut frequent_after) = (0, 1);
    for &k in &kind[i + 1..=end] {
        match k {
            0 => unmatched_after += 1,
            2 => frequent_after += 1,
            _ => break,
        }
    }
    if unmatched_after == 0 {
        return false;
    }
    let unmatched = unmatched_before + unmatched_after;
    let frequent = frequent_before + frequent_after;
    frequent * KPDIS_RUN < frequent + unmatched
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

/// Where a git source's objects are read: the repository itself for a local
/// path, else the mirror sync fetches into under `repos_dir`.
pub fn source_dir(source: &GitSource, repos_dir: &Path) -> PathBuf {
    if is_url(&source.url) {
        mirror_dir(repos_dir, "git", &source.name)
    } else {
        PathBuf::from(&source.url)
    }
}

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
    fn an_unreachable_https_remote_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Port 1 on loopback refuses connections.
        let err = ls_remote(&dir.path().join("m"), "https://me:pw@127.0.0.1:1/x.git")
            .expect_err("nothing listens there");
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:1"), "{text}");
        assert!(!text.contains("pw@"), "credentials leaked: {text}");
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

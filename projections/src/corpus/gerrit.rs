//! Gerrit projects, refs and CLs folded from `GerritMutation`s, with Go
//! maintner's deferred derivation (spec/maintner.md §3.4).
//!
//! Refs are applied as they arrive: patch-set refs set a CL's commit and
//! version (last in log order wins), meta refs set its meta commit and mark
//! it dirty. A CL's status, messages, metas, creation time and branch are
//! derived only when the fold is finished (Go's `finishProcessing`, run at
//! the end of each load or update), by walking its meta commits.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashSet as HashSet;

use super::git::{CommitError, CommitIdx, GitHash, GitState, GitStrings, GitTime, Span};
use super::github::GitHubState;
use super::notedb;
use super::text::{Interner, Sym, Text};
use super::wire::GerritView;

/// A CL's status as derived from its meta commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClStatus {
    /// Never derived (a CL whose meta was never walked).
    #[default]
    Unset,
    /// Open.
    New,
    /// Submitted.
    Merged,
    /// Abandoned.
    Abandoned,
    /// A draft (old Gerrit).
    Draft,
}

impl ClStatus {
    /// Go's string for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClStatus::Unset => "",
            ClStatus::New => "new",
            ClStatus::Merged => "merged",
            ClStatus::Abandoned => "abandoned",
            ClStatus::Draft => "draft",
        }
    }

    fn parse(s: &str) -> ClStatus {
        match s {
            "new" => ClStatus::New,
            "merged" => ClStatus::Merged,
            "abandoned" => ClStatus::Abandoned,
            "draft" => ClStatus::Draft,
            _ => ClStatus::Unset,
        }
    }
}

/// A review message from a meta commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageData {
    pub(crate) meta: CommitIdx,
    pub(crate) version: i32,
    pub(crate) text: Text,
    pub(crate) date: Option<GitTime>,
    pub(crate) author: Option<Sym>,
}

/// One CL.
#[derive(Debug, Clone, Default)]
pub struct ClData {
    pub(crate) number: i32,
    pub(crate) version: i32,
    pub(crate) commit: Option<CommitIdx>,
    pub(crate) meta: Option<CommitIdx>,
    /// Oldest first.
    pub(crate) metas: Vec<CommitIdx>,
    /// Oldest first.
    pub(crate) messages: Vec<MessageData>,
    pub(crate) status: ClStatus,
    pub(crate) private: bool,
    pub(crate) created: Option<GitTime>,
    pub(crate) branch: Sym,
    pub(crate) github_refs: Vec<(super::github::RepoKey, i32)>,
    /// Label-change metas already counted into the project's
    /// `num_label_changes`.
    pub(crate) label_metas_counted: u32,
    /// Go's `remote` entries of this CL: version (0 = meta) to commit.
    pub(crate) remote: Vec<(i32, GitHash)>,
}

impl ProjectData {
    /// Whether this project logged the commit (Go's `gp.commit[hash]`).
    pub(crate) fn has_commit(&self, git: &GitState, hash: &GitHash) -> bool {
        git.lookup(hash)
            .is_some_and(|idx| git.get(idx).project == self.id + 1)
            || self.other_commits.contains(hash)
    }

    /// Go's `len(gp.remote)`.
    pub(crate) fn remote_count(&self) -> usize {
        self.cls.values().map(|cl| cl.remote.len()).sum()
    }
}

impl ClData {
    /// The commit of a version (0 = meta) in Go's `remote` map.
    pub(crate) fn remote(&self, version: i32) -> Option<GitHash> {
        self.remote
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, h)| *h)
    }

    /// Go's `complete()`: meta, at least one walked meta, and a commit.
    pub fn is_complete(&self) -> bool {
        self.meta.is_some() && !self.metas.is_empty() && self.commit.is_some()
    }
}

/// One Gerrit project.
#[derive(Debug, Clone, Default)]
pub struct ProjectData {
    /// Its id: commits record the first project that logged them.
    pub(crate) id: u16,
    pub(crate) cls: BTreeMap<i32, ClData>,
    /// Non-change refs.
    pub(crate) refs: BTreeMap<Vec<u8>, GitHash>,
    /// How many commits this project logged (Go's `len(gp.commit)`).
    pub(crate) commit_count: u64,
    /// Commits logged here that another project logged first.
    pub(crate) other_commits: HashSet<GitHash>,
    /// Parents not yet logged here.
    pub(crate) need: HashSet<GitHash>,
    pub(crate) num_label_changes: i64,
    pub(crate) dirty: BTreeSet<i32>,
}

/// All Gerrit projects, keyed exactly as mutations name them.
#[derive(Debug, Clone, Default)]
pub struct GerritState {
    pub(crate) projects: BTreeMap<String, ProjectData>,
}

/// What a Gerrit mutation could not apply (Go logs these; some it panics on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GerritSkip {
    /// A commit that failed to parse.
    Commit(CommitError),
    /// A ref whose hash is not 40 hex digits (Go panics).
    BadRefHash(String),
    /// A ref to a commit the corpus has not seen (Go logs and ignores).
    UnknownCommit(String),
    /// A meta walk that hit a merge or a missing parent.
    MetaWalk(i32, &'static str),
}

impl GerritState {
    pub(crate) fn apply(
        &mut self,
        git: &mut GitState,
        github: &mut GitHubState,
        strings: &mut GitStrings<'_>,
        base: &[u8],
        gm: &GerritView<'_>,
        parsed: Option<super::PreparedCommits<'_>>,
    ) -> Vec<GerritSkip> {
        let mut skipped = Vec::new();
        let name = std::str::from_utf8(gm.project()).unwrap_or("");
        let next_id = self.projects.len() as u16;
        let project = match self.projects.get_mut(name) {
            Some(p) => p,
            None => self.projects.entry(name.to_owned()).or_insert(ProjectData {
                id: next_id,
                ..ProjectData::default()
            }),
        };
        // The commits parsed ahead are the record's, in order; without them
        // (a record applied on its own), each is parsed here.
        let mut commits = gm.commits();
        let mut prepared = parsed.map(|p| (p.commits.iter(), p.files));
        loop {
            let applied = match &mut prepared {
                Some((ahead, files)) => match ahead.next() {
                    Some(p) => git.apply_parsed(strings, base, p, files),
                    None => break,
                },
                None => match commits.next() {
                    Some(c) => git.apply_commit(strings, base, &c),
                    None => break,
                },
            };
            match applied {
                Ok(idx) => {
                    let hash = git.get(idx).hash;
                    let owner = git.commits[idx.0 as usize].project;
                    if owner == 0 {
                        git.commits[idx.0 as usize].project = project.id + 1;
                        project.commit_count += 1;
                    } else if owner != project.id + 1 && project.other_commits.insert(hash) {
                        project.commit_count += 1;
                    }
                    project.need.remove(&hash);
                    for p in git.get(idx).parents.as_slice() {
                        // `has_commit`, with the parent's index in hand.
                        let parent = git.get(*p);
                        if parent.project != project.id + 1
                            && !project.other_commits.contains(&parent.hash)
                        {
                            project.need.insert(parent.hash);
                        }
                    }
                }
                Err(e) => skipped.push(GerritSkip::Commit(e)),
            }
        }
        for deleted in gm.deleted_refs() {
            project.refs.remove(deleted);
        }
        // Parsed ahead with the commits, or here for a record on its own.
        let read_now: Vec<RefAhead>;
        let refs = match parsed {
            Some(p) => p.refs,
            None => {
                read_now = gm
                    .refs()
                    .map(|(n, s)| RefAhead::parse(base, n, s))
                    .collect();
                &read_now[..]
            }
        };
        for r in refs {
            let ref_name = r.name.get(base);
            let lossy = || String::from_utf8_lossy(ref_name).into_owned();
            let Some(hash) = r.hash else {
                skipped.push(GerritSkip::BadRefHash(lossy()));
                continue;
            };
            let Some((cl_num, version)) = r.change else {
                if ref_name.starts_with(b"refs/meta/") {
                    continue;
                }
                if git.lookup(&hash).is_none() {
                    skipped.push(GerritSkip::UnknownCommit(lossy()));
                    continue;
                }
                project.refs.insert(ref_name.to_vec(), hash);
                continue;
            };
            let (Some(cl_num), Some(version)) = (cl_num, version) else {
                continue;
            };
            let Some(idx) = git.lookup(&hash) else {
                skipped.push(GerritSkip::UnknownCommit(lossy()));
                continue;
            };
            let cl = project.cls.entry(cl_num).or_insert_with(|| ClData {
                number: cl_num,
                ..ClData::default()
            });
            match cl.remote.iter_mut().find(|(v, _)| *v == version) {
                Some(entry) => entry.1 = hash,
                None => cl.remote.push((version, hash)),
            }
            if version == 0 {
                cl.meta = Some(idx);
                project.dirty.insert(cl_num);
            } else {
                cl.commit = Some(idx);
                cl.version = version;
                // The commit usually came in this record, and its
                // references were read ahead on the decoding thread.
                let ahead = parsed
                    .and_then(|p| p.commits.iter().find(|c| c.hash() == hash))
                    .and_then(|c| c.github_refs.as_deref());
                let read_now;
                let refs = match ahead {
                    Some(refs) => refs,
                    None => {
                        read_now = notedb::github_refs(name, strings.texts.get(git.get(idx).msg));
                        &read_now[..]
                    }
                };
                cl.github_refs = refs
                    .iter()
                    .filter_map(|r| {
                        github.repo_mut(strings.syms, r.owner.as_bytes(), r.repo.as_bytes())?;
                        let key = super::github::RepoKey {
                            owner: strings.syms.intern(r.owner.as_bytes()),
                            repo: strings.syms.intern(r.repo.as_bytes()),
                        };
                        Some((key, r.number))
                    })
                    .collect();
            }
        }
        skipped
    }

    /// Go's `finishProcessing`: derives every dirty CL from its meta chain.
    /// Many CLs (a whole log's load) are walked on several threads: on
    /// `threads` of them, or (`None`) on as many as the count of dirty CLs
    /// makes worth it.
    pub(crate) fn finish(
        &mut self,
        git: &GitState,
        strings: &mut GitStrings<'_>,
        skipped: &mut Vec<GerritSkip>,
        threads: Option<usize>,
    ) {
        // The CLs to derive, in Go's order: projects by name, CLs by number.
        // A CL without a meta commit has nothing to derive.
        let mut jobs: Vec<Vec<(i32, CommitIdx)>> = Vec::with_capacity(self.projects.len());
        for project in self.projects.values_mut() {
            let dirty = std::mem::take(&mut project.dirty);
            jobs.push(
                dirty
                    .into_iter()
                    .filter_map(|number| Some((number, project.cls.get(&number)?.meta?)))
                    .collect(),
            );
        }
        let starts: Vec<CommitIdx> = jobs.iter().flatten().map(|&(_, at)| at).collect();
        let threads = threads.unwrap_or_else(|| finish_threads(starts.len()));
        let mut walks = walk_all(&starts, git, strings.texts, threads).into_iter();
        // Applied in order, so that symbols are interned as one walk after
        // the other would have interned them.
        for (project, jobs) in self.projects.values_mut().zip(jobs) {
            for (number, _) in jobs {
                let Some(walk) = walks.next() else { return };
                let Some(cl) = project.cls.get_mut(&number) else {
                    continue;
                };
                if let Err(why) =
                    walk.apply_to(cl, &mut project.num_label_changes, git, strings.syms)
                {
                    skipped.push(GerritSkip::MetaWalk(number, why));
                }
            }
        }
    }
}

/// Dirty CLs from which a finish walks on more than one thread: below this
/// a thread costs more than it saves.
const PARALLEL_FINISH_MIN: usize = 2048;

/// How many threads walk `cls` meta chains.
fn finish_threads(cls: usize) -> usize {
    if cls < PARALLEL_FINISH_MIN {
        return 1;
    }
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Walks the meta chain from each of `starts`, on `threads` threads, and
/// returns the walks in the order of `starts`.
fn walk_all<'t>(
    starts: &[CommitIdx],
    git: &'t GitState,
    texts: &'t super::text::Texts,
    threads: usize,
) -> Vec<MetaWalk<'t>> {
    if threads <= 1 || starts.len() < 2 {
        return starts
            .iter()
            .map(|&at| MetaWalk::of(at, git, texts))
            .collect();
    }
    let per_thread = starts.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let mut parts = starts.chunks(per_thread);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|&at| MetaWalk::of(at, git, texts))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut walks: Vec<MetaWalk<'t>> = Vec::with_capacity(starts.len());
        walks.extend(first.iter().map(|&at| MetaWalk::of(at, git, texts)));
        for other in others {
            match other.join() {
                Ok(part) => walks.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        walks
    })
}

/// How a meta walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkEnd {
    /// At a root commit: the CL is derived.
    Root,
    /// The chain was longer than the commit table (Go's cycle check).
    Cycle,
    /// A meta commit with more than one parent.
    Merge,
}

/// A `Branch:` footer's value: interned when the commit's facts were
/// precomputed, else still the message's bytes.
#[derive(Debug, Clone, Copy)]
enum BranchValue<'t> {
    Sym(Sym),
    Bytes(&'t [u8]),
}

/// What walking one CL's meta chain found. Walks read shared state only
/// (they mark commits through [`MetaMark`]), so many run at once; applying
/// one to its CL is [`MetaWalk::apply_to`].
///
/// [`MetaMark`]: super::git::MetaMark
#[derive(Debug)]
struct MetaWalk<'t> {
    /// Newest first (the walk's order).
    metas: Vec<CommitIdx>,
    /// Newest first.
    messages: Vec<MessageData>,
    /// The first `Status:` found, newest to oldest.
    status: Option<&'static str>,
    label_metas: u32,
    private: bool,
    /// The first `Branch:` found, newest to oldest.
    branch: Option<BranchValue<'t>>,
    /// The non-empty `Branch:` values of visited commits whose facts were
    /// not precomputed, in walk order: a walk with the interner at hand
    /// interns each as it goes, and so must its application.
    uninterned: Vec<&'t [u8]>,
    end: WalkEnd,
}

impl<'t> MetaWalk<'t> {
    fn of(start: CommitIdx, git: &'t GitState, texts: &'t super::text::Texts) -> MetaWalk<'t> {
        let mut walk = MetaWalk {
            metas: Vec::new(),
            messages: Vec::new(),
            status: None,
            label_metas: 0,
            private: false,
            branch: None,
            uninterned: Vec::new(),
            end: WalkEnd::Root,
        };
        let limit = git.commits.len() + 1;
        let mut at = start;
        loop {
            if walk.metas.len() > limit {
                walk.end = WalkEnd::Cycle;
                return walk;
            }
            let data = git.get(at);
            let (facts, branch) = match data.note {
                0 => {
                    let (facts, raw) = notedb::NoteFacts::of_raw(texts.get(data.msg));
                    if !raw.is_empty() {
                        walk.uninterned.push(raw);
                    }
                    (facts, (!raw.is_empty()).then_some(BranchValue::Bytes(raw)))
                }
                n => {
                    let facts = git.notes[n as usize - 1];
                    let branch =
                        (facts.branch != Sym::default()).then_some(BranchValue::Sym(facts.branch));
                    (facts, branch)
                }
            };
            if facts.label {
                walk.label_metas += 1;
            }
            if facts.private {
                walk.private = true;
            }
            data.gerrit_meta.set();
            if walk.status.is_none() {
                walk.status = facts.status;
            }
            if walk.branch.is_none() {
                walk.branch = branch;
            }
            walk.metas.push(at);
            if let Some(span) = facts.message {
                walk.messages.push(MessageData {
                    meta: at,
                    version: span.version,
                    text: data.msg.slice(span.start, span.end),
                    date: data.commit_time,
                    author: data.author,
                });
            }
            match data.parents.as_slice() {
                [] => return walk,
                [parent] => at = *parent,
                _ => {
                    walk.end = WalkEnd::Merge;
                    return walk;
                }
            }
        }
    }

    /// Derives `cl` from the walk, exactly as Go's walk of its metas does.
    fn apply_to(
        self,
        cl: &mut ClData,
        num_label_changes: &mut i64,
        git: &GitState,
        syms: &mut Interner,
    ) -> Result<(), &'static str> {
        for value in &self.uninterned {
            syms.intern(value);
        }
        if self.private {
            cl.private = true;
        }
        match self.end {
            WalkEnd::Root => {}
            WalkEnd::Cycle => return Err("meta commit cycle"),
            WalkEnd::Merge => {
                // Go counts the metas it visited before giving up.
                count_label_metas(cl, num_label_changes, self.label_metas);
                return Err("too many commit parents");
            }
        }
        match self.status {
            Some(s) => cl.status = ClStatus::parse(s),
            None if cl.status == ClStatus::Unset => cl.status = ClStatus::New,
            None => {}
        }
        count_label_metas(cl, num_label_changes, self.label_metas);
        let (mut metas, mut messages) = (self.metas, self.messages);
        metas.reverse();
        messages.reverse();
        // A root ending means at least one meta was visited.
        cl.created = metas.first().and_then(|&m| git.get(m).commit_time);
        // The first Branch: value searching newest to oldest (the walk's order).
        let branch = match self.branch {
            None => None,
            Some(BranchValue::Sym(b)) => Some(syms.get(b).to_vec()),
            Some(BranchValue::Bytes(b)) => Some(b.to_vec()),
        };
        if let Some(value) = branch {
            cl.branch = syms.intern(value.strip_prefix(b"refs/heads/").unwrap_or(&value));
        }
        cl.metas = metas;
        cl.messages = messages;
        Ok(())
    }
}

/// A Gerrit ref update with its hash and change-ref parts parsed: work that
/// needs no state, so the loader's decoding thread does it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefAhead {
    /// The ref's name, in the record.
    name: Span,
    /// The hash, if it is 40 hex digits.
    hash: Option<GitHash>,
    /// CL number and version, for `refs/changes/` names (see
    /// [`change_ref`]).
    change: Option<(Option<i32>, Option<i32>)>,
}

impl RefAhead {
    /// Parses a ref update whose `name` lies within the record `base`.
    pub(crate) fn parse(base: &[u8], name: &[u8], sha1: &[u8]) -> RefAhead {
        RefAhead {
            name: Span::of(base, name),
            hash: GitHash::from_hex(sha1),
            change: change_ref(name),
        }
    }
}

/// Matches `^refs/changes/[0-9a-f]{2}/([0-9]+)/(meta|(?:\d+))` (no end
/// anchor). Returns the parsed CL number and version ("meta" is 0), each
/// `None` when it does not fit in an int32.
fn change_ref(name: &[u8]) -> Option<(Option<i32>, Option<i32>)> {
    let rest = name.strip_prefix(b"refs/changes/")?;
    if rest.len() < 3
        || !rest[..2]
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        || rest[2] != b'/'
    {
        return None;
    }
    let rest = &rest[3..];
    let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || rest.get(n) != Some(&b'/') {
        return None;
    }
    let cl = std::str::from_utf8(&rest[..n]).ok()?.parse::<i32>().ok();
    let tail = &rest[n + 1..];
    if tail.starts_with(b"meta") {
        return Some((cl, Some(0)));
    }
    let d = tail.iter().take_while(|b| b.is_ascii_digit()).count();
    if d == 0 {
        return None;
    }
    let version = std::str::from_utf8(&tail[..d]).ok()?.parse::<i32>().ok();
    Some((cl, version))
}

/// Go adds every label-change meta each time a CL is re-walked, so its count
/// depends on how often CLs are derived. We count each one once: the same as
/// Go after a single load, and the same whatever the update cadence (so a
/// checkpoint plus the rest equals one fold).
fn count_label_metas(cl: &mut ClData, num_label_changes: &mut i64, label_metas: u32) {
    *num_label_changes += i64::from(label_metas.saturating_sub(cl.label_metas_counted));
    cl.label_metas_counted = cl.label_metas_counted.max(label_metas);
}

#[cfg(test)]
mod tests {
    use super::change_ref;

    #[test]
    fn change_refs_match_go_regexp() {
        assert_eq!(
            change_ref(b"refs/changes/00/14700/1"),
            Some((Some(14700), Some(1)))
        );
        assert_eq!(
            change_ref(b"refs/changes/00/14700/meta"),
            Some((Some(14700), Some(0)))
        );
        assert_eq!(
            change_ref(b"refs/changes/34/1234/5xyz"),
            Some((Some(1234), Some(5)))
        );
        assert_eq!(
            change_ref(b"refs/changes/34/1234/0"),
            Some((Some(1234), Some(0)))
        );
        assert_eq!(change_ref(b"refs/changes/34/1234/robot-comments"), None);
        assert_eq!(change_ref(b"refs/changes/zz/1234/1"), None);
        assert_eq!(change_ref(b"refs/heads/master"), None);
        assert_eq!(
            change_ref(b"refs/changes/34/99999999999/1"),
            Some((None, Some(1)))
        );
    }
}

//! Gerrit projects, refs and CLs folded from `GerritMutation`s, with Go
//! maintner's deferred derivation (spec/maintner.md §3.4).
//!
//! Refs are applied as they arrive: patch-set refs set a CL's commit and
//! version (last in log order wins), meta refs set its meta commit and mark
//! it dirty. A CL's status, messages, metas, creation time and branch are
//! derived only when the fold is finished (Go's `finishProcessing`, run at
//! the end of each load or update), by walking its meta commits.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use almanac_proto::pb::maintpb;

use super::git::{CommitError, CommitIdx, GitHash, GitState, GitStrings, GitTime};
use super::github::GitHubState;
use super::notedb;
use super::text::{Interner, Sym, Text};

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
}

impl ClData {
    /// Go's `complete()`: meta, at least one walked meta, and a commit.
    pub fn is_complete(&self) -> bool {
        self.meta.is_some() && !self.metas.is_empty() && self.commit.is_some()
    }
}

/// One Gerrit project.
#[derive(Debug, Clone, Default)]
pub struct ProjectData {
    pub(crate) cls: BTreeMap<i32, ClData>,
    /// (CL, version) to commit; version 0 is the meta ref.
    pub(crate) remote: HashMap<(i32, i32), GitHash>,
    /// Non-change refs.
    pub(crate) refs: BTreeMap<Vec<u8>, GitHash>,
    /// Commits logged for this project.
    pub(crate) commits: HashSet<GitHash>,
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
        gm: &maintpb::GerritMutation,
        skipped: &mut Vec<GerritSkip>,
    ) {
        let project = self.projects.entry(gm.project.clone()).or_default();
        for c in &gm.commits {
            match git.apply_commit(strings, c) {
                Ok(idx) => {
                    let data = git.get(idx);
                    project.commits.insert(data.hash);
                    project.need.remove(&data.hash);
                    for p in data.parents.as_slice() {
                        let ph = git.get(*p).hash;
                        if !project.commits.contains(&ph) {
                            project.need.insert(ph);
                        }
                    }
                }
                Err(e) => skipped.push(GerritSkip::Commit(e)),
            }
        }
        for name in &gm.deleted_refs {
            project.refs.remove(name.as_bytes());
        }
        for r in &gm.refs {
            let Some(hash) = GitHash::from_hex(r.sha1.as_bytes()) else {
                skipped.push(GerritSkip::BadRefHash(r.r#ref.clone()));
                continue;
            };
            let Some((cl_num, version)) = change_ref(&r.r#ref) else {
                if r.r#ref.starts_with("refs/meta/") {
                    continue;
                }
                if git.lookup(&hash).is_none() {
                    skipped.push(GerritSkip::UnknownCommit(r.r#ref.clone()));
                    continue;
                }
                project.refs.insert(r.r#ref.as_bytes().to_vec(), hash);
                continue;
            };
            let (Some(cl_num), Some(version)) = (cl_num, version) else {
                continue;
            };
            let Some(idx) = git.lookup(&hash) else {
                skipped.push(GerritSkip::UnknownCommit(r.r#ref.clone()));
                continue;
            };
            project.remote.insert((cl_num, version), hash);
            let cl = project.cls.entry(cl_num).or_insert_with(|| ClData {
                number: cl_num,
                ..ClData::default()
            });
            if version == 0 {
                cl.meta = Some(idx);
                project.dirty.insert(cl_num);
            } else {
                cl.commit = Some(idx);
                cl.version = version;
                let msg = strings.texts.get(git.get(idx).msg);
                let refs = notedb::github_refs(&gm.project, msg);
                cl.github_refs = refs
                    .into_iter()
                    .filter_map(|r| {
                        github.repo_mut(strings.syms, &r.owner, &r.repo)?;
                        let key = super::github::RepoKey {
                            owner: strings.syms.intern(r.owner.as_bytes()),
                            repo: strings.syms.intern(r.repo.as_bytes()),
                        };
                        Some((key, r.number))
                    })
                    .collect();
            }
        }
    }

    /// Go's `finishProcessing`: derives every dirty CL from its meta chain.
    pub(crate) fn finish(
        &mut self,
        git: &mut GitState,
        strings: &mut GitStrings<'_>,
        skipped: &mut Vec<GerritSkip>,
    ) {
        for project in self.projects.values_mut() {
            let dirty = std::mem::take(&mut project.dirty);
            for number in dirty {
                let Some(cl) = project.cls.get_mut(&number) else {
                    continue;
                };
                if let Err(why) = finish_cl(
                    cl,
                    &mut project.num_label_changes,
                    git,
                    strings.syms,
                    strings.texts,
                ) {
                    skipped.push(GerritSkip::MetaWalk(number, why));
                }
            }
        }
    }
}

/// Matches `^refs/changes/[0-9a-f]{2}/([0-9]+)/(meta|(?:\d+))` (no end
/// anchor). Returns the parsed CL number and version ("meta" is 0), each
/// `None` when it does not fit in an int32.
fn change_ref(name: &str) -> Option<(Option<i32>, Option<i32>)> {
    let rest = name.strip_prefix("refs/changes/")?.as_bytes();
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

fn finish_cl(
    cl: &mut ClData,
    num_label_changes: &mut i64,
    git: &mut GitState,
    syms: &mut Interner,
    texts: &super::text::TextArena,
) -> Result<(), &'static str> {
    let Some(mut at) = cl.meta else {
        return Ok(());
    };
    let mut found_status: Option<&'static str> = None;
    let mut metas: Vec<CommitIdx> = Vec::new();
    let mut messages: Vec<MessageData> = Vec::new();
    let limit = git.commits.len() + 1;
    loop {
        if metas.len() > limit {
            return Err("meta commit cycle");
        }
        let data = &mut git.commits[at.0 as usize];
        let msg = texts.get(data.msg);
        if notedb::find(msg, b"\nLabel: ").is_some() {
            *num_label_changes += 1;
        }
        if notedb::find(msg, b"\nPrivate: true\n").is_some() {
            cl.private = true;
        }
        data.gerrit_meta = true;
        if found_status.is_none() {
            found_status = notedb::gerrit_status(msg);
        }
        metas.push(at);
        if let Some(span) = notedb::gerrit_message(msg) {
            messages.push(MessageData {
                meta: at,
                version: span.version,
                text: data.msg.slice(span.start, span.end),
                date: data.commit_time,
                author: data.author,
            });
        }
        match data.parents.as_slice() {
            [] => break,
            [parent] => at = *parent,
            _ => return Err("too many commit parents"),
        }
    }
    match found_status {
        Some(s) => cl.status = ClStatus::parse(s),
        None if cl.status == ClStatus::Unset => cl.status = ClStatus::New,
        None => {}
    }
    metas.reverse();
    messages.reverse();
    cl.created = git.get(metas[0]).commit_time;
    for &m in metas.iter().rev() {
        let b = notedb::line_value(texts.get(git.get(m).msg), b"Branch:");
        if !b.is_empty() {
            cl.branch = syms.intern(b.strip_prefix(b"refs/heads/").unwrap_or(b));
            break;
        }
    }
    cl.metas = metas;
    cl.messages = messages;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::change_ref;

    #[test]
    fn change_refs_match_go_regexp() {
        assert_eq!(
            change_ref("refs/changes/00/14700/1"),
            Some((Some(14700), Some(1)))
        );
        assert_eq!(
            change_ref("refs/changes/00/14700/meta"),
            Some((Some(14700), Some(0)))
        );
        assert_eq!(
            change_ref("refs/changes/34/1234/5xyz"),
            Some((Some(1234), Some(5)))
        );
        assert_eq!(
            change_ref("refs/changes/34/1234/0"),
            Some((Some(1234), Some(0)))
        );
        assert_eq!(change_ref("refs/changes/34/1234/robot-comments"), None);
        assert_eq!(change_ref("refs/changes/zz/1234/1"), None);
        assert_eq!(change_ref("refs/heads/master"), None);
        assert_eq!(
            change_ref("refs/changes/34/99999999999/1"),
            Some((None, Some(1)))
        );
    }
}

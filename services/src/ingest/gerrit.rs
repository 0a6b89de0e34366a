//! Gerrit projects: change refs (patch sets and NoteDB `meta` refs) and the
//! project's other refs, fetched with gix and appended as maintner's
//! `GerritMutation`s (spec/maintner.md §6.4).
//!
//! A pass lists the server's refs (`git ls-remote`), compares them with the
//! corpus (what the log already says), records refs that went away in one
//! `deleted_refs` mutation, then takes the changed refs in ls-remote
//! (lexicographic) order in batches of at most 250: fetch them into a bare
//! mirror, append one mutation per commit the corpus lacks (parents first),
//! then one mutation with the batch's refs. Commits always precede the refs
//! that name them, so the fold never drops a ref for an unknown commit, and
//! a crash between the two leaves commits the next pass will not repeat.
//!
//! Refs are filtered as Go's maintnerd filters them: change refs whose last
//! part is neither a number nor `meta` (`robot-comments`, `edit`...) and refs
//! under `refs/users/`, `refs/meta/` and `refs/cache-automerge/` are never
//! logged. One deliberate difference: a ref naming an annotated tag is
//! logged with the commit the tag points at (Go logs the tag's hash, which
//! its fold then drops as an unknown commit, so Go re-logs it every pass).
//!
//! This module never runs the git command.

use std::path::Path;

use almanac_proto::pb::maintpb::{GerritMutation, GitRef, Mutation};
use gix::ObjectId;

use super::config::GerritSource;
use super::git::{self, ListedRef};
use super::{Sink, SyncError};

/// Refs fetched and appended per batch, as Go's maintnerd batches them.
pub const BATCH: usize = 250;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// Commits appended.
    pub commits: u64,
    /// Refs appended as new or moved.
    pub refs: u64,
    /// Refs appended as deleted.
    pub deleted_refs: u64,
    /// Fetches made (one per batch of changed refs).
    pub fetches: u64,
}

/// How a listed ref is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracked {
    /// `refs/changes/NN/<cl>/<version>`, version 0 for `meta`.
    Change { cl: i32, version: i32 },
    /// Any other tracked ref (HEAD, branches, tags, `refs/notes/...`).
    Other,
}

/// Go's classification of an ls-remote line's ref.
fn tracked(name: &str) -> Option<Tracked> {
    if let Some(rest) = name.strip_prefix("refs/changes/") {
        let mut parts = rest.splitn(3, '/');
        let (shard, cl, version) = (parts.next()?, parts.next()?, parts.next()?);
        let shard_ok = shard.len() == 2 && shard.bytes().all(|b| b.is_ascii_hexdigit());
        let cl: i32 = cl.parse().ok().filter(|_| shard_ok)?;
        let version = match version {
            "meta" => 0,
            v => v.parse().ok().filter(|v: &i32| *v > 0)?,
        };
        return Some(Tracked::Change { cl, version });
    }
    let ignored = ["refs/users/", "refs/meta/", "refs/cache-automerge/"];
    if ignored.iter().any(|p| name.starts_with(p)) {
        return None;
    }
    Some(Tracked::Other)
}

/// The local name a fetched ref is stored under in the mirror.
fn local_name(name: &str) -> String {
    if name.starts_with("refs/") {
        name.to_string()
    } else {
        format!("refs/almanac/{name}")
    }
}

/// The `host/project` split maintner uses: server and project name.
fn split_project(project: &str) -> (&str, &str) {
    project.split_once('/').unwrap_or((project, ""))
}

/// One pass over a Gerrit project.
pub async fn sync_project(
    sink: &Sink,
    source: &GerritSource,
    repos_dir: &Path,
) -> Result<PassStats, SyncError> {
    let sink = sink.clone();
    let source = source.clone();
    let dir = git::mirror_dir(repos_dir, "gerrit", &source.project);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let url = source.fetch_url();
        let listed = git::ls_remote(&dir, &url)?;
        let (server, name) = split_project(&source.project);
        let mut stats = PassStats::default();

        // What the log already says.
        let (changed, deleted): (Vec<(ListedRef, Tracked)>, Vec<String>) = sink.read(|c| {
            let project = c.gerrit().project(server, name);
            let mut changed = Vec::new();
            for r in &listed {
                let Some(kind) = tracked(&r.name) else {
                    continue;
                };
                let logged = match (kind, project) {
                    (_, None) => None,
                    (Tracked::Change { cl, version }, Some(p)) => p.change_ref_hash(cl, version),
                    (Tracked::Other, Some(p)) => p.ref_hash(&r.name),
                };
                let wanted = r.peeled.unwrap_or(r.target);
                if logged.map(|h| h.0) != Some(hash_bytes(&wanted)) {
                    changed.push((r.clone(), kind));
                }
            }
            let names: std::collections::HashSet<&str> =
                listed.iter().map(|r| r.name.as_str()).collect();
            let deleted = project
                .map(|p| {
                    p.refs()
                        .filter(|(n, _)| !names.contains(n))
                        .map(|(n, _)| n.to_string())
                        .collect()
                })
                .unwrap_or_default();
            (changed, deleted)
        })?;

        if !deleted.is_empty() {
            stats.deleted_refs = deleted.len() as u64;
            handle.block_on(sink.append(vec![Mutation {
                gerrit: Some(GerritMutation {
                    project: source.project.clone(),
                    deleted_refs: deleted,
                    ..Default::default()
                }),
                ..Default::default()
            }]))?;
        }

        for batch in changed.chunks(BATCH) {
            let specs: Vec<String> = batch
                .iter()
                .map(|(r, _)| format!("+{}:{}", r.name, local_name(&r.name)))
                .collect();
            git::fetch(&dir, &url, &specs)?;
            stats.fetches += 1;
            let repo = git::open(&dir)?;
            let tips: Vec<ObjectId> = batch
                .iter()
                .filter_map(|(r, _)| git::commit_of(&repo, r))
                .collect();
            // Known to this project: a commit logged by another project or
            // a plain repository is logged again here, as Go does, because
            // a project's CLs read only the project's own commits.
            let mut read_failed = None;
            let mut known = |id: &ObjectId| {
                let hex = id.to_string();
                sink.read(|c| {
                    c.gerrit()
                        .project(server, name)
                        .and_then(|p| p.commit(&hex))
                        .is_some_and(|c| !c.is_placeholder())
                })
                .unwrap_or_else(|e| {
                    read_failed = Some(e);
                    true
                })
            };
            let todo = git::new_commits(&repo, &tips, &mut known)?;
            if let Some(e) = read_failed {
                return Err(e);
            }
            for chunk in todo.chunks(BATCH) {
                let mut mutations = Vec::with_capacity(chunk.len());
                for id in chunk {
                    mutations.push(Mutation {
                        gerrit: Some(GerritMutation {
                            project: source.project.clone(),
                            commits: vec![git::commit_record(&repo, *id)?],
                            ..Default::default()
                        }),
                        ..Default::default()
                    });
                }
                stats.commits += mutations.len() as u64;
                handle.block_on(sink.append(mutations))?;
                tracing::info!(
                    project = %source.project,
                    commits = stats.commits,
                    refs = stats.refs,
                    of_refs = changed.len(),
                    "gerrit sync progress"
                );
            }
            let refs: Vec<GitRef> = batch
                .iter()
                .filter_map(|(r, _)| {
                    let commit = git::commit_of(&repo, r)?;
                    Some(GitRef {
                        r#ref: r.name.clone(),
                        sha1: commit.to_string(),
                    })
                })
                .collect();
            stats.refs += refs.len() as u64;
            if refs.is_empty() {
                // Refs to trees or blobs: nothing the fold would keep.
                continue;
            }
            handle.block_on(sink.append(vec![Mutation {
                gerrit: Some(GerritMutation {
                    project: source.project.clone(),
                    refs,
                    ..Default::default()
                }),
                ..Default::default()
            }]))?;
        }
        if stats.commits + stats.refs + stats.deleted_refs > 0 {
            tracing::info!(
                project = %source.project,
                commits = stats.commits,
                refs = stats.refs,
                deleted_refs = stats.deleted_refs,
                fetches = stats.fetches,
                "gerrit sync appended"
            );
        }
        Ok(stats)
    })
    .await
    .map_err(|e| SyncError::Other(format!("gerrit sync thread: {e}")))?
}

fn hash_bytes(id: &ObjectId) -> [u8; 20] {
    let mut out = [0u8; 20];
    let bytes = id.as_bytes();
    let n = bytes.len().min(20);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_refs_as_go_does() {
        assert_eq!(
            tracked("refs/changes/45/12345/3"),
            Some(Tracked::Change {
                cl: 12345,
                version: 3
            })
        );
        assert_eq!(
            tracked("refs/changes/45/12345/meta"),
            Some(Tracked::Change {
                cl: 12345,
                version: 0
            })
        );
        assert_eq!(tracked("refs/changes/45/12345/robot-comments"), None);
        assert_eq!(tracked("refs/users/01/1001/edit-1/2"), None);
        assert_eq!(tracked("refs/meta/config"), None);
        assert_eq!(tracked("refs/cache-automerge/ab/cdef"), None);
        assert_eq!(tracked("refs/heads/master"), Some(Tracked::Other));
        assert_eq!(tracked("HEAD"), Some(Tracked::Other));
        assert_eq!(local_name("HEAD"), "refs/almanac/HEAD");
    }
}

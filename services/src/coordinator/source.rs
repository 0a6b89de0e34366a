//! The source a build runs on: the tree of one commit of a tracked git
//! repository, as the gzip-compressed tarball the buildlet's `/writetgz`
//! takes. Read with gix from the repository (or the mirror git sync
//! keeps); nothing is checked out and the git command never runs.
//!
//! The tarball is deterministic for a commit: entries in tree order, every
//! time set to the commit's committer time, owner and group 0. Files are
//! 0644 or 0755 as git records them, symbolic links are links (the
//! buildlet skips them, as Go's does), submodules are left out.

use gix::ObjectId;

/// Why a tarball could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0} is not a commit hash")]
    BadRev(String),
    #[error("reading {what}: {message}")]
    Git { what: String, message: String },
    #[error("writing the tarball: {0}")]
    Io(#[from] std::io::Error),
}

fn git_err(what: impl Into<String>, e: impl std::fmt::Display) -> SourceError {
    SourceError::Git {
        what: what.into(),
        message: e.to_string(),
    }
}

/// The tree of commit `rev` (40 hex digits) as a `.tar.gz`.
pub fn tarball(repo: &gix::Repository, rev: &str) -> Result<Vec<u8>, SourceError> {
    let id =
        ObjectId::from_hex(rev.as_bytes()).map_err(|_| SourceError::BadRev(rev.to_string()))?;
    let commit = repo
        .find_object(id)
        .map_err(|e| git_err(format!("commit {rev}"), e))?;
    let parsed = gix::objs::CommitRef::from_bytes(&commit.data, gix::hash::Kind::Sha1)
        .map_err(|e| git_err(format!("commit {rev}"), e))?;
    let mtime = parsed.committer().map(|c| c.seconds()).unwrap_or(0).max(0) as u64;
    let tree = parsed.tree();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut prefix = Vec::new();
    add_tree(repo, tree, &mut prefix, mtime, &mut tar)?;
    let gz = tar.into_inner()?;
    Ok(gz.finish()?)
}

fn add_tree<W: std::io::Write>(
    repo: &gix::Repository,
    tree: ObjectId,
    prefix: &mut Vec<u8>,
    mtime: u64,
    tar: &mut tar::Builder<W>,
) -> Result<(), SourceError> {
    let object = repo
        .find_object(tree)
        .map_err(|e| git_err(format!("tree {tree}"), e))?;
    let parsed = gix::objs::TreeRef::from_bytes(&object.data, gix::hash::Kind::Sha1)
        .map_err(|e| git_err(format!("tree {tree}"), e))?;
    for entry in &parsed.entries {
        let len = prefix.len();
        prefix.extend_from_slice(entry.filename);
        let path = String::from_utf8_lossy(prefix).into_owned();
        let oid = entry.oid.to_owned();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        if entry.mode.is_tree() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
            prefix.push(b'/');
            add_tree(repo, oid, prefix, mtime, tar)?;
        } else if entry.mode.is_commit() {
            // A submodule: not part of this repository's source.
        } else {
            let blob = repo
                .find_object(oid)
                .map_err(|e| git_err(format!("blob {oid} ({path})"), e))?;
            if entry.mode.is_link() {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                let target = String::from_utf8_lossy(&blob.data).into_owned();
                tar.append_link(&mut header, &path, target)?;
            } else {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if entry.mode.is_executable() {
                    0o755
                } else {
                    0o644
                });
                header.set_size(blob.data.len() as u64);
                tar.append_data(&mut header, &path, blob.data.as_slice())?;
            }
        }
        prefix.truncate(len);
    }
    Ok(())
}

//! Checkpoints: the folded corpus saved at a log position, so a program can
//! reopen it and fold only the records after that position.
//!
//! The format is this crate's own (it mirrors the in-memory layout and
//! changes with it): a magic line and version, the position, then every
//! table field by field in little-endian, the text arena as raw blocks, and
//! a CRC-32 of everything before the trailer. A file from another version,
//! a truncated file or a damaged one is refused with a clear error, never
//! half-loaded. Writing goes to a temporary file that is fsynced and renamed
//! into place, so a crash never leaves a partial checkpoint under the name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use almanac_log::Position;
use rustc_hash::{FxHashMap, FxHashSet};

use super::Corpus;
use super::Skipped;
use super::gerrit::{ClData, ClStatus, GerritState, MessageData, ProjectData};
use super::git::{CommitData, CommitIdx, Committer, FileStat, GitHash, GitState, GitTime, Parents};
use super::github::{
    CommentData, DismissedReview, EventData, EventExtra, IssueData, MilestoneData, MilestoneRef,
    RepoData, RepoKey, ReviewData, UserData, UserRef,
};
use super::notedb::{MessageSpan, NoteFacts};
use super::text::{Interner, Sym, Text, TextArena, Texts};
use super::time::Time;
use crate::load::Source;

const MAGIC: &[u8] = b"ALMANAC-CORPUS-CHECKPOINT\n";
const VERSION: u32 = 1;

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Reading or writing the file failed.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Not a checkpoint, or one written by another version.
    #[error("{path} is not a corpus checkpoint of version {VERSION} ({why})")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was found.
        why: String,
    },
    /// The log the checkpoint was folded from is gone or no longer extends
    /// it (its texts live there).
    #[error("checkpoint {path}: {source}")]
    Log {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong with the log.
        source: crate::load::LoadError,
    },
    /// The file is truncated or damaged.
    #[error("checkpoint {path} is damaged: {why}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// A writer that checksums what it writes.
struct Out<W: Write> {
    w: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Out<W> {
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.w.write_all(b)
    }
}

/// A reader over the checkpoint's bytes, already in memory and checksummed.
struct In<'a> {
    buf: &'a [u8],
}

impl<'a> In<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn bytes(&mut self, out: &mut [u8]) -> io::Result<()> {
        out.copy_from_slice(self.take(out.len())?);
        Ok(())
    }

    fn vec(&mut self, len: usize) -> io::Result<Vec<u8>> {
        Ok(self.take(len)?.to_vec())
    }
}

/// Field-by-field encoding.
trait Enc {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()>;
}

/// Field-by-field decoding.
trait Dec: Sized {
    fn dec(i: &mut In<'_>) -> io::Result<Self>;
}

macro_rules! int {
    ($($t:ty),*) => {$(
        impl Enc for $t {
            fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
                o.bytes(&self.to_le_bytes())
            }
        }
        impl Dec for $t {
            fn dec(i: &mut In<'_>) -> io::Result<Self> {
                let mut b = [0u8; std::mem::size_of::<$t>()];
                i.bytes(&mut b)?;
                Ok(<$t>::from_le_bytes(b))
            }
        }
    )*};
}
int!(u8, u16, u32, i32, u64, i64);

fn bad(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

impl Enc for bool {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        u8::from(*self).enc(o)
    }
}
impl Dec for bool {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        match u8::dec(i)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad("bad bool")),
        }
    }
}

impl<T: Enc> Enc for Option<T> {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        match self {
            None => 0u8.enc(o),
            Some(v) => {
                1u8.enc(o)?;
                v.enc(o)
            }
        }
    }
}
impl<T: Dec> Dec for Option<T> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        match u8::dec(i)? {
            0 => Ok(None),
            1 => Ok(Some(T::dec(i)?)),
            _ => Err(bad("bad option")),
        }
    }
}

impl<T: Enc> Enc for Vec<T> {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        (self.len() as u64).enc(o)?;
        self.iter().try_for_each(|v| v.enc(o))
    }
}
impl<T: Dec> Dec for Vec<T> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let n = u64::dec(i)? as usize;
        let mut v = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            v.push(T::dec(i)?);
        }
        Ok(v)
    }
}

impl<A: Enc, B: Enc> Enc for (A, B) {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.0.enc(o)?;
        self.1.enc(o)
    }
}
impl<A: Dec, B: Dec> Dec for (A, B) {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok((A::dec(i)?, B::dec(i)?))
    }
}

/// Byte strings: length and bytes.
struct Blob(Vec<u8>);

impl Enc for [u8] {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        (self.len() as u64).enc(o)?;
        o.bytes(self)
    }
}
impl Dec for Blob {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let n = u64::dec(i)? as usize;
        Ok(Blob(i.vec(n)?))
    }
}

impl Enc for String {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.as_bytes().enc(o)
    }
}
impl Dec for String {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        String::from_utf8(Blob::dec(i)?.0).map_err(|_| bad("bad string"))
    }
}

impl<T: Enc + ?Sized> Enc for &T {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        (**self).enc(o)
    }
}

/// Generates Enc/Dec for a struct, field by field.
macro_rules! record {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl Enc for $t {
            fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
                $( self.$f.enc(o)?; )*
                Ok(())
            }
        }
        impl Dec for $t {
            fn dec(i: &mut In<'_>) -> io::Result<Self> {
                Ok(Self { $( $f: Dec::dec(i)?, )* })
            }
        }
    };
}

impl Enc for Sym {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.0.enc(o)
    }
}
impl Dec for Sym {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(Sym(u32::dec(i)?))
    }
}

impl Enc for Text {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        let (loc, len) = self.to_parts();
        loc.enc(o)?;
        len.enc(o)
    }
}
impl Dec for Text {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(Text::from_parts(u64::dec(i)?, u32::dec(i)?))
    }
}

/// Enc/Dec for packed (Copy) structs: fields are read by value.
macro_rules! packed_record {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl Enc for $t {
            fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
                $( { let v = self.$f; v.enc(o)?; } )*
                Ok(())
            }
        }
        impl Dec for $t {
            fn dec(i: &mut In<'_>) -> io::Result<Self> {
                Ok(Self { $( $f: Dec::dec(i)?, )* })
            }
        }
    };
}

packed_record!(Time { seconds, nanos });
record!(RepoKey { owner, repo });
record!(MilestoneData {
    title,
    number,
    closed
});
record!(CommentData {
    id,
    user,
    created,
    updated,
    body
});
record!(DismissedReview {
    review_id,
    state,
    message
});
record!(EventData {
    id,
    created,
    typ,
    actor,
    label,
    milestone,
    commit_id,
    extra,
});
record!(EventExtra {
    assignee,
    assigner,
    reviewer,
    review_requester,
    team_reviewer,
    from,
    to,
    commit_url,
    dismissed_review,
});
record!(UserData { id, login });

impl Enc for UserRef {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.0.get().enc(o)
    }
}
impl Dec for UserRef {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        std::num::NonZeroU32::new(u32::dec(i)?)
            .map(UserRef)
            .ok_or_else(|| bad("bad user"))
    }
}

impl Enc for Box<IssueData> {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        (**self).enc(o)
    }
}
impl Dec for Box<IssueData> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(Box::new(IssueData::dec(i)?))
    }
}
record!(ReviewData {
    id,
    actor,
    created,
    body,
    state,
    commit_id,
    actor_association,
    other_json
});
record!(IssueData {
    id,
    number,
    not_exist,
    closed,
    locked,
    pull_request,
    user,
    assignees,
    created,
    updated,
    closed_at,
    closed_by,
    title,
    body,
    milestone,
    labels,
    comments,
    events,
    reviews,
    comments_synced,
    events_synced,
    reviews_synced,
    event_max_time,
});
packed_record!(GitTime { seconds, zone });
record!(FileStat {
    file,
    added,
    deleted,
    binary
});
record!(CommitData {
    hash,
    tree,
    parents,
    author,
    author_time,
    committer,
    commit_time,
    reviewer,
    msg,
    files,
    gerrit_meta,
    note,
    project,
});
record!(NoteFacts {
    label,
    private,
    status,
    message,
    branch,
    wip
});

impl Enc for &'static str {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        let code: u8 = match *self {
            "merged" => 1,
            "abandoned" => 2,
            "draft" => 3,
            "new" => 4,
            _ => 0,
        };
        code.enc(o)
    }
}
impl Dec for &'static str {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(match u8::dec(i)? {
            1 => "merged",
            2 => "abandoned",
            3 => "draft",
            4 => "new",
            _ => return Err(bad("bad status")),
        })
    }
}

impl Enc for MessageSpan {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.version.enc(o)?;
        (self.start as u64).enc(o)?;
        (self.end as u64).enc(o)
    }
}
impl Dec for MessageSpan {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(MessageSpan {
            version: i32::dec(i)?,
            start: u64::dec(i)? as usize,
            end: u64::dec(i)? as usize,
        })
    }
}
record!(MessageData {
    meta,
    version,
    text,
    date,
    author
});
record!(ClData {
    number,
    version,
    commit,
    meta,
    metas,
    messages,
    status,
    private,
    created,
    branch,
    github_refs,
    label_metas_counted,
    remote,
});
record!(Skipped {
    github_no_repo,
    github_no_number,
    github_zero_id,
    bad_commits,
    bad_refs,
    refs_to_unknown_commits,
    meta_walk_failures,
    undecodable_records,
});

impl Enc for MilestoneRef {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        match self {
            MilestoneRef::Unknown => 0u8.enc(o),
            MilestoneRef::None => 1u8.enc(o),
            MilestoneRef::Id(id) => {
                2u8.enc(o)?;
                id.enc(o)
            }
        }
    }
}
impl Dec for MilestoneRef {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        match u8::dec(i)? {
            0 => Ok(MilestoneRef::Unknown),
            1 => Ok(MilestoneRef::None),
            2 => Ok(MilestoneRef::Id(i64::dec(i)?)),
            _ => Err(bad("bad milestone")),
        }
    }
}

impl Enc for GitHash {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        o.bytes(&self.0)
    }
}
impl Dec for GitHash {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let mut b = [0u8; 20];
        i.bytes(&mut b)?;
        Ok(GitHash(b))
    }
}

impl Enc for CommitIdx {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.0.enc(o)
    }
}
impl Dec for CommitIdx {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(CommitIdx(u32::dec(i)?))
    }
}

impl Enc for Parents {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        self.as_slice().to_vec().enc(o)
    }
}
impl Dec for Parents {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let v: Vec<CommitIdx> = Dec::dec(i)?;
        Ok(match v.len() {
            0 => Parents::None,
            1 => Parents::One(v[0]),
            _ => Parents::Many(v.into_boxed_slice()),
        })
    }
}

impl Enc for Committer {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        match self {
            Committer::None => 0u8.enc(o),
            Committer::Placeholder => 1u8.enc(o),
            Committer::Person(s) => {
                2u8.enc(o)?;
                s.enc(o)
            }
        }
    }
}
impl Dec for Committer {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        match u8::dec(i)? {
            0 => Ok(Committer::None),
            1 => Ok(Committer::Placeholder),
            2 => Ok(Committer::Person(Sym::dec(i)?)),
            _ => Err(bad("bad committer")),
        }
    }
}

impl Enc for Box<[FileStat]> {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        (self.len() as u64).enc(o)?;
        self.iter().try_for_each(|f| f.enc(o))
    }
}
impl Dec for Box<[FileStat]> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let v: Vec<FileStat> = Dec::dec(i)?;
        Ok(v.into_boxed_slice())
    }
}

impl Enc for ClStatus {
    fn enc<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        let code: u8 = match self {
            ClStatus::Unset => 0,
            ClStatus::New => 1,
            ClStatus::Merged => 2,
            ClStatus::Abandoned => 3,
            ClStatus::Draft => 4,
        };
        code.enc(o)
    }
}
impl Dec for ClStatus {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(match u8::dec(i)? {
            0 => ClStatus::Unset,
            1 => ClStatus::New,
            2 => ClStatus::Merged,
            3 => ClStatus::Abandoned,
            4 => ClStatus::Draft,
            _ => return Err(bad("bad status")),
        })
    }
}

fn enc_map<K: Enc, V: Enc, W: Write>(
    items: impl ExactSizeIterator<Item = (K, V)>,
    o: &mut Out<W>,
) -> io::Result<()> {
    (items.len() as u64).enc(o)?;
    for (k, v) in items {
        k.enc(o)?;
        v.enc(o)?;
    }
    Ok(())
}

impl Corpus {
    /// Saves the corpus, with the position it has folded to, at `path`
    /// (atomically: a temporary file, fsync, rename).
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).map_err(io_err)?;
        let mut o = Out {
            w: BufWriter::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
        };
        self.write_checkpoint(&mut o).map_err(io_err)?;
        let crc = o.crc.clone().finalize();
        o.w.write_all(&crc.to_le_bytes()).map_err(io_err)?;
        let file = o.w.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&tmp, path).map_err(io_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }

    fn write_checkpoint<W: Write>(&self, o: &mut Out<W>) -> io::Result<()> {
        o.bytes(MAGIC)?;
        VERSION.enc(o)?;
        self.folded_to.0.enc(o)?;
        self.mutations.enc(o)?;
        self.skipped.enc(o)?;
        match &self.source {
            None => 0u8.enc(o)?,
            Some(s) => {
                1u8.enc(o)?;
                s.dir.to_string_lossy().into_owned().enc(o)?;
                s.sealed.enc(o)?;
            }
        }
        // Strings.
        (self.syms.strings().len() as u64).enc(o)?;
        for s in self.syms.strings() {
            s[..].enc(o)?;
        }
        (self.texts.arena().blocks().len() as u64).enc(o)?;
        for b in self.texts.arena().blocks() {
            (b.capacity() as u64).enc(o)?;
            b[..].enc(o)?;
        }
        // GitHub.
        let gh = &self.github;
        gh.users.enc(o)?;
        enc_map(gh.teams.iter().map(|(k, v)| (*k, *v)), o)?;
        gh.event_extras.enc(o)?;
        (gh.repos.len() as u64).enc(o)?;
        for (key, repo) in &gh.repos {
            key.enc(o)?;
            enc_map(repo.labels.iter().map(|(k, v)| (*k, *v)), o)?;
            enc_map(repo.milestones.iter().map(|(k, v)| (*k, v)), o)?;
            enc_map(repo.issues.iter().map(|(k, v)| (*k, v)), o)?;
        }
        // Git.
        self.git.commits.enc(o)?;
        self.git.notes.enc(o)?;
        enc_map(self.git.hg.iter().map(|(k, v)| (&k[..], v)), o)?;
        // Gerrit.
        (self.gerrit.projects.len() as u64).enc(o)?;
        for (name, p) in &self.gerrit.projects {
            name.enc(o)?;
            (p.cls.len() as u64).enc(o)?;
            for cl in p.cls.values() {
                cl.enc(o)?;
            }
            p.id.enc(o)?;
            enc_map(p.refs.iter().map(|(k, v)| (&k[..], v)), o)?;
            p.commit_count.enc(o)?;
            let mut others: Vec<GitHash> = p.other_commits.iter().copied().collect();
            others.sort();
            others.enc(o)?;
            let mut need: Vec<GitHash> = p.need.iter().copied().collect();
            need.sort();
            need.enc(o)?;
            p.num_label_changes.enc(o)?;
            p.dirty.iter().copied().collect::<Vec<i32>>().enc(o)?;
        }
        Ok(())
    }

    /// Reopens a checkpoint. Call [`Corpus::update`] to fold what the log
    /// gained since.
    pub fn open_checkpoint(path: &Path) -> Result<Corpus, CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let data = fs::read(path).map_err(io_err)?;
        let format = |why: String| CheckpointError::Format {
            path: path.to_owned(),
            why,
        };
        if data.len() < MAGIC.len() + 8 || !data.starts_with(MAGIC) {
            return Err(format("no checkpoint header".to_owned()));
        }
        let (body, trailer) = data.split_at(data.len() - 4);
        let mut i = In {
            buf: &body[MAGIC.len()..],
        };
        let version = u32::dec(&mut i).map_err(|e| format(e.to_string()))?;
        if version != VERSION {
            return Err(format(format!("version {version}")));
        }
        let damaged = |why: String| CheckpointError::Damaged {
            path: path.to_owned(),
            why,
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(body);
        let want = u32::from_le_bytes(trailer.try_into().expect("four bytes were split off"));
        if crc.finalize() != want {
            return Err(damaged(
                "checksum mismatch (truncated or damaged)".to_owned(),
            ));
        }
        let mut corpus = Corpus::read_checkpoint(&mut i).map_err(|e| damaged(e.to_string()))?;
        if !i.buf.is_empty() {
            return Err(damaged(format!(
                "{} unexpected bytes at the end",
                i.buf.len()
            )));
        }
        drop(data);
        // Texts live in the log the corpus was folded from: map it, after
        // checking it still extends the folded history.
        if let Some(source) = corpus.source.clone() {
            let log = |e: crate::load::LoadError| CheckpointError::Log {
                path: path.to_owned(),
                source: e,
            };
            let snapshot = almanac_log::Snapshot::open(&source.dir).map_err(|e| log(e.into()))?;
            corpus.check_extends(&source, &snapshot).map_err(log)?;
            corpus.map_log(&snapshot).map_err(log)?;
        }
        corpus.validate().map_err(|why| damaged(why.to_owned()))?;
        corpus.rebuild_indexes();
        Ok(corpus)
    }

    fn read_checkpoint(i: &mut In<'_>) -> io::Result<Corpus> {
        let mut c = Corpus {
            folded_to: Position(u64::dec(i)?),
            mutations: u64::dec(i)?,
            skipped: Skipped::dec(i)?,
            ..Corpus::default()
        };
        c.source = match u8::dec(i)? {
            0 => None,
            1 => Some(Source {
                dir: PathBuf::from(String::dec(i)?),
                sealed: Dec::dec(i)?,
            }),
            _ => return Err(bad("bad source")),
        };
        let n = u64::dec(i)? as usize;
        let mut strings: Vec<Arc<[u8]>> = Vec::with_capacity(n.min(1 << 24));
        for _ in 0..n {
            strings.push(Arc::from(Blob::dec(i)?.0));
        }
        c.syms = Interner::from_strings(strings);
        let n = u64::dec(i)? as usize;
        let mut blocks = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let cap = u64::dec(i)? as usize;
            let len = u64::dec(i)? as usize;
            if len > cap || cap > 1 << 32 {
                return Err(bad("bad text block"));
            }
            let mut block = Vec::with_capacity(cap);
            block.resize(len, 0);
            i.bytes(&mut block)?;
            blocks.push(block);
        }
        c.texts = Texts::with_arena(TextArena::from_blocks(blocks));
        c.github.users = Dec::dec(i)?;
        let teams: Vec<(i64, Sym)> = Dec::dec(i)?;
        c.github.teams = teams.into_iter().collect();
        c.github.event_extras = Dec::dec(i)?;
        let repos = u64::dec(i)?;
        for _ in 0..repos {
            let key = RepoKey::dec(i)?;
            let labels: Vec<(i64, Sym)> = Dec::dec(i)?;
            let milestones: Vec<(i64, MilestoneData)> = Dec::dec(i)?;
            let issues: Vec<(i32, Box<IssueData>)> = Dec::dec(i)?;
            c.github.repos.insert(
                key,
                RepoData {
                    issues: issues.into_iter().collect::<BTreeMap<_, _>>(),
                    labels: labels.into_iter().collect(),
                    milestones: milestones.into_iter().collect(),
                },
            );
        }
        c.git = GitState {
            commits: Dec::dec(i)?,
            notes: Dec::dec(i)?,
            by_hash: FxHashMap::default(),
            hg: {
                let hg: Vec<(Blob, GitHash)> = Dec::dec(i)?;
                hg.into_iter()
                    .map(|(k, v)| (k.0.into_boxed_slice(), v))
                    .collect()
            },
        };
        let projects = u64::dec(i)?;
        c.gerrit = GerritState::default();
        for _ in 0..projects {
            let name = String::dec(i)?;
            let n = u64::dec(i)?;
            let mut cls = BTreeMap::new();
            for _ in 0..n {
                let cl = ClData::dec(i)?;
                cls.insert(cl.number, cl);
            }
            let id = u16::dec(i)?;
            let refs: Vec<(Blob, GitHash)> = Dec::dec(i)?;
            let commit_count = u64::dec(i)?;
            let others: Vec<GitHash> = Dec::dec(i)?;
            let need: Vec<GitHash> = Dec::dec(i)?;
            let num_label_changes = i64::dec(i)?;
            let dirty: Vec<i32> = Dec::dec(i)?;
            c.gerrit.projects.insert(
                name,
                ProjectData {
                    id,
                    cls,
                    refs: refs.into_iter().map(|(k, v)| (k.0, v)).collect(),
                    commit_count,
                    other_commits: others.into_iter().collect::<FxHashSet<_>>(),
                    need: need.into_iter().collect(),
                    num_label_changes,
                    dirty: dirty.into_iter().collect::<BTreeSet<_>>(),
                },
            );
        }
        Ok(c)
    }

    /// Rebuilds what the checkpoint leaves out because it is derived.
    fn rebuild_indexes(&mut self) {
        self.github.user_index = self
            .github
            .users
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let r = UserRef(
                    std::num::NonZeroU32::new(i as u32 + 1).expect("index + 1 is non-zero"),
                );
                (u.id, r)
            })
            .collect();
        self.git.by_hash = self
            .git
            .commits
            .iter()
            .enumerate()
            .map(|(i, c)| (c.hash, CommitIdx(i as u32)))
            .collect();
    }

    /// Checks that every reference in a decoded checkpoint points inside its
    /// table, so a damaged file can never make an accessor panic.
    fn validate(&self) -> Result<(), &'static str> {
        let syms = self.syms.len();
        let sym_ok = |s: Sym| (s.0 as usize) < syms;
        let end = self.folded_to.0;
        let text_ok = |t: Text| {
            self.texts.contains(t) && (t.in_arena() || t.log_position() + t.len() as u64 <= end)
        };
        let commits = self.git.commits.len();
        let commit_ok = |c: CommitIdx| (c.0 as usize) < commits;
        if self.git.notes.iter().any(|n| !sym_ok(n.branch)) {
            return Err("a NoteDB fact refers outside the symbols");
        }
        for c in &self.git.commits {
            let note_ok = match c.note {
                0 => true,
                n => self.git.notes.get(n as usize - 1).is_some_and(|f| {
                    f.message
                        .is_none_or(|m| m.start <= m.end && m.end <= c.msg.len())
                }),
            };
            let ok = note_ok
                && c.parents.as_slice().iter().all(|p| commit_ok(*p))
                && c.author.is_none_or(sym_ok)
                && c.author_time.is_none_or(|t| sym_ok(t.zone))
                && c.commit_time.is_none_or(|t| sym_ok(t.zone))
                && !matches!(c.committer, Committer::Person(s) if !sym_ok(s))
                && c.reviewer.is_none_or(text_ok)
                && text_ok(c.msg)
                && c.files
                    .iter()
                    .flat_map(|f| f.iter())
                    .all(|f| text_ok(f.file));
            if !ok {
                return Err("a commit refers outside its tables");
            }
        }
        let users = self.github.users.len();
        let user_ok = |u: UserRef| (u.0.get() as usize) <= users;
        let extras = self.github.event_extras.len();
        for (key, repo) in &self.github.repos {
            let ok = sym_ok(key.owner)
                && sym_ok(key.repo)
                && repo.labels.values().all(|s| sym_ok(*s))
                && repo.milestones.values().all(|m| sym_ok(m.title))
                && repo.issues.values().all(|i| {
                    text_ok(i.title)
                        && text_ok(i.body)
                        && i.comments.iter().all(|c| text_ok(c.body))
                        && [i.user, i.closed_by]
                            .iter()
                            .flatten()
                            .chain(&i.assignees)
                            .all(|u| user_ok(*u))
                        && i.comments.iter().all(|c| c.user.is_none_or(user_ok))
                        && i.events.iter().all(|e| {
                            sym_ok(e.typ)
                                && sym_ok(e.label)
                                && sym_ok(e.milestone)
                                && sym_ok(e.commit_id)
                                && e.actor.is_none_or(user_ok)
                                && (e.extra as usize) <= extras
                        })
                        && i.reviews.iter().all(|r| {
                            r.actor.is_none_or(user_ok)
                                && text_ok(r.body)
                                && text_ok(r.other_json)
                                && sym_ok(r.state)
                                && sym_ok(r.commit_id)
                                && sym_ok(r.actor_association)
                        })
                });
            if !ok {
                return Err("a GitHub record refers outside its tables");
            }
        }
        if self.github.users.iter().any(|u| !sym_ok(u.login))
            || self.github.teams.values().any(|s| !sym_ok(*s))
        {
            return Err("a user refers outside the symbols");
        }
        let extras_ok = self.github.event_extras.iter().all(|x| {
            [x.assignee, x.assigner, x.reviewer, x.review_requester]
                .iter()
                .flatten()
                .all(|u| user_ok(*u))
                && text_ok(x.from)
                && text_ok(x.to)
                && text_ok(x.commit_url)
                && x.dismissed_review
                    .is_none_or(|d| sym_ok(d.state) && text_ok(d.message))
        });
        if !extras_ok {
            return Err("an event refers outside its tables");
        }
        for p in self.gerrit.projects.values() {
            for cl in p.cls.values() {
                let ok = cl.commit.is_none_or(commit_ok)
                    && cl.meta.is_none_or(commit_ok)
                    && cl.metas.iter().all(|m| commit_ok(*m))
                    && cl.messages.iter().all(|m| {
                        commit_ok(m.meta)
                            && text_ok(m.text)
                            && m.author.is_none_or(sym_ok)
                            && m.date.is_none_or(|t| sym_ok(t.zone))
                    })
                    && sym_ok(cl.branch)
                    && cl.created.is_none_or(|t| sym_ok(t.zone))
                    && cl
                        .github_refs
                        .iter()
                        .all(|(k, _)| sym_ok(k.owner) && sym_ok(k.repo));
                if !ok {
                    return Err("a CL refers outside its tables");
                }
            }
        }
        Ok(())
    }
}

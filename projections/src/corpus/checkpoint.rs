//! Checkpoints: the folded corpus saved at a log position, so a program can
//! reopen it and fold only the records after that position.
//!
//! The format is this crate's own (it mirrors the in-memory layout and
//! changes with it): a magic line and version, then sections, each a length,
//! a CRC-32 and a body: header (position, counts, source log), strings
//! (symbols and the text arena as raw blocks), git without its commits
//! (NoteDB facts, hg map, the commit index's slots as they are), GitHub,
//! Gerrit, then the commits in chunks of 131,072. Tables are written field
//! by field in little-endian. Sections let reopening read and decode on two
//! threads, each through one reused buffer.
//!
//! A file from another version, a truncated file or a damaged one is refused
//! with a clear error, never half-loaded: every length is checked against
//! the bytes left before anything is allocated for it, every section's
//! checksum is checked, and every reference between tables is checked, so a
//! damaged file can never make an accessor panic. Writing goes to a
//! temporary file that is fsynced and renamed into place, so a crash never
//! leaves a partial checkpoint under the name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use almanac_log::Position;
use rustc_hash::FxHashSet;

use super::Corpus;
use super::Skipped;
use super::commit_index::{CommitIndex, Slot};
use super::gerrit::{ClData, ClStatus, GerritState, MessageData, ProjectData};
use super::git::{CommitData, CommitIdx, Committer, FileStat, GitHash, GitState, GitTime, Parents};
use super::github::{
    ById, CommentData, DismissedReview, EventData, EventExtra, GitHubState, HasId, IssueData,
    MilestoneData, MilestoneRef, RepoData, RepoKey, ReviewData, UserData, UserRef,
};
use super::notedb::{MessageSpan, NoteFacts};
use super::text::{Interner, Sym, Text, TextArena, Texts};
use super::time::Time;
use crate::load::Source;

const MAGIC: &[u8] = b"ALMANAC-CORPUS-CHECKPOINT\n";
const VERSION: u32 = 3;

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

/// The file being written, one section at a time: bytes are gathered into
/// large chunks so the checksum and the writes run over big buffers.
struct Out {
    w: BufWriter<File>,
    chunk: Vec<u8>,
    crc: crc32fast::Hasher,
    /// Bytes of the open section written so far, and where its header is.
    section: Option<(u64, u64)>,
}

/// Chunk size for checksumming and writing.
const CHUNK: usize = 1 << 20;

impl Out {
    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.chunk.extend_from_slice(b);
        if self.chunk.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self) -> io::Result<()> {
        self.crc.update(&self.chunk);
        self.w.write_all(&self.chunk)?;
        if let Some((len, _)) = &mut self.section {
            *len += self.chunk.len() as u64;
        }
        self.chunk.clear();
        Ok(())
    }

    /// Starts a section: a header (length and CRC-32, filled in by
    /// [`Out::end_section`]) then its bytes.
    fn begin_section(&mut self) -> io::Result<()> {
        self.flush_chunk()?;
        let at = self.w.stream_position()?;
        self.w.write_all(&[0; SECTION_HEADER])?;
        self.crc = crc32fast::Hasher::new();
        self.section = Some((0, at));
        Ok(())
    }

    fn end_section(&mut self) -> io::Result<()> {
        self.flush_chunk()?;
        let Some((len, at)) = self.section.take() else {
            return Ok(());
        };
        let end = self.w.stream_position()?;
        let crc = std::mem::take(&mut self.crc).finalize();
        self.w.seek(SeekFrom::Start(at))?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(&crc.to_le_bytes())?;
        self.w.seek(SeekFrom::Start(end))?;
        Ok(())
    }
}

/// A reader over one section's body: read from the file in chunks into one
/// reused buffer (so a section never has to fit in memory twice), and
/// checksummed as it goes. Decoding runs ahead of the checksum, so every
/// length read from the file is checked against what the section holds
/// before anything is allocated for it.
struct In<'a> {
    src: io::Take<ReadAt<'a>>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    crc: crc32fast::Hasher,
}

impl<'a> In<'a> {
    fn new(file: &'a File, at: SectionAt) -> In<'a> {
        In {
            src: ReadAt {
                file,
                pos: at.offset,
            }
            .take(at.len),
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Bytes left in the section.
    fn remaining(&self) -> u64 {
        (self.end - self.start) as u64 + self.src.limit()
    }

    #[inline]
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.start < n {
            self.refill(n)?;
        }
        let s = &self.buf[self.start..self.start + n];
        self.start += n;
        Ok(s)
    }

    /// Makes at least `n` bytes available from `start`.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, n: usize) -> io::Result<()> {
        if n as u64 > self.remaining() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
        while self.end < n {
            let got = self.src.read(&mut self.buf[self.end..])?;
            if got == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "truncated"));
            }
            self.crc.update(&self.buf[self.end..self.end + got]);
            self.end += got;
        }
        Ok(())
    }

    #[inline]
    fn bytes(&mut self, out: &mut [u8]) -> io::Result<()> {
        out.copy_from_slice(self.take(out.len())?);
        Ok(())
    }

    fn vec(&mut self, len: usize) -> io::Result<Vec<u8>> {
        Ok(self.take(len)?.to_vec())
    }

    /// Checks the section was consumed exactly and its checksum matches.
    fn finish(mut self, want: u32) -> Result<(), String> {
        if self.remaining() != 0 {
            return Err(format!(
                "{} unexpected bytes after a section",
                self.remaining()
            ));
        }
        if std::mem::take(&mut self.crc).finalize() != want {
            return Err("checksum mismatch (damaged)".to_owned());
        }
        Ok(())
    }
}

/// Field-by-field encoding.
trait Enc {
    fn enc(&self, o: &mut Out) -> io::Result<()>;
}

/// Field-by-field decoding.
trait Dec: Sized {
    fn dec(i: &mut In<'_>) -> io::Result<Self>;
}

macro_rules! int {
    ($($t:ty),*) => {$(
        impl Enc for $t {
            fn enc(&self, o: &mut Out) -> io::Result<()> {
                o.bytes(&self.to_le_bytes())
            }
        }
        impl Dec for $t {
            #[inline]
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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

impl Enc for super::git::MetaMark {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        self.get().enc(o)
    }
}
impl Dec for super::git::MetaMark {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(super::git::MetaMark::new(bool::dec(i)?))
    }
}

impl<T: Enc> Enc for Option<T> {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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

/// A sequence: its length, then each entry.
fn enc_seq<'a, T: Enc + 'a>(
    len: usize,
    mut entries: impl Iterator<Item = &'a T>,
    o: &mut Out,
) -> io::Result<()> {
    (len as u64).enc(o)?;
    entries.try_for_each(|v| v.enc(o))
}

/// The length of a sequence [`enc_seq`] wrote.
fn dec_seq_len(i: &mut In<'_>) -> io::Result<usize> {
    let n = u64::dec(i)?;
    // Every element takes at least one byte: a count beyond the bytes
    // left is damage, caught before anything is allocated for it.
    if n > i.remaining() {
        return Err(bad("bad length"));
    }
    Ok(n as usize)
}

impl<T: Enc> Enc for Vec<T> {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        enc_seq(self.len(), self.iter(), o)
    }
}
impl<T: Dec> Dec for Vec<T> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let n = dec_seq_len(i)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::dec(i)?);
        }
        Ok(v)
    }
}

/// The same bytes as a `Vec` of the same entries.
impl<T: Enc> Enc for super::chunked::Chunked<T> {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        enc_seq(self.len(), self.iter(), o)
    }
}
impl<T: Dec> Dec for super::chunked::Chunked<T> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        let mut v = super::chunked::Chunked::default();
        for _ in 0..dec_seq_len(i)? {
            v.push(T::dec(i)?);
        }
        Ok(v)
    }
}

impl<A: Enc, B: Enc> Enc for (A, B) {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        self.as_bytes().enc(o)
    }
}
impl Dec for String {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        String::from_utf8(Blob::dec(i)?.0).map_err(|_| bad("bad string"))
    }
}

impl<T: Enc + ?Sized> Enc for &T {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        (**self).enc(o)
    }
}

/// Generates Enc/Dec for a struct, field by field.
macro_rules! record {
    ($t:ty { $($f:ident),* $(,)? }) => {
        impl Enc for $t {
            fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        self.0.enc(o)
    }
}
impl Dec for Sym {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(Sym(u32::dec(i)?))
    }
}

impl Enc for Text {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
            fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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

/// The same bytes as a `Vec` of the entries.
impl<T: Enc> Enc for ById<T> {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        enc_seq(self.len(), self.iter(), o)
    }
}
impl<T: Dec + HasId> Dec for ById<T> {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(ById::from_items(Vec::<T>::dec(i)?))
    }
}

impl Enc for Box<IssueData> {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        self.0.enc(o)
    }
}
impl Dec for CommitIdx {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(CommitIdx(u32::dec(i)?))
    }
}

impl Enc for Parents {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        let parents = self.as_slice();
        (parents.len() as u32).enc(o)?;
        parents.iter().try_for_each(|p| p.enc(o))
    }
}
impl Dec for Parents {
    fn dec(i: &mut In<'_>) -> io::Result<Self> {
        Ok(match u32::dec(i)? {
            0 => Parents::None,
            1 => Parents::One(CommitIdx::dec(i)?),
            n => {
                if u64::from(n) > i.remaining() {
                    return Err(bad("bad parents"));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(CommitIdx::dec(i)?);
                }
                Parents::Many(v.into_boxed_slice())
            }
        })
    }
}

impl Enc for Committer {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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
    fn enc(&self, o: &mut Out) -> io::Result<()> {
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

fn enc_map<K: Enc, V: Enc>(
    items: impl ExactSizeIterator<Item = (K, V)>,
    o: &mut Out,
) -> io::Result<()> {
    (items.len() as u64).enc(o)?;
    for (k, v) in items {
        k.enc(o)?;
        v.enc(o)?;
    }
    Ok(())
}

/// Bytes before each section's body: its length (u64) and CRC-32 (u32).
const SECTION_HEADER: usize = 12;

/// Sections before the commit chunks: header, strings, git (without the
/// commits), GitHub, Gerrit.
const FIXED_SECTIONS: usize = 5;

/// Commits per commit-chunk section (one chunk of the commit table):
/// chunks are decoded by whichever thread is free.
const COMMITS_PER_CHUNK: usize = super::chunked::CHUNK;

/// Where one section's body lies in the file.
#[derive(Debug, Clone, Copy)]
struct SectionAt {
    offset: u64,
    len: u64,
    crc: u32,
}

/// `Read` over a file at an offset, with positioned reads.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Decodes a whole section, which must be consumed exactly and match its
/// checksum.
fn decode_section<T>(
    file: &File,
    at: SectionAt,
    f: impl FnOnce(&mut In<'_>) -> io::Result<T>,
) -> Result<T, String> {
    let mut i = In::new(file, at);
    let v = f(&mut i).map_err(|e| e.to_string())?;
    i.finish(at.crc)?;
    Ok(v)
}

/// What validation checks references against.
struct Bounds<'a> {
    syms: usize,
    texts: &'a Texts,
    end: u64,
    commits: usize,
}

impl Bounds<'_> {
    fn sym(&self, s: Sym) -> bool {
        (s.0 as usize) < self.syms
    }

    fn text(&self, t: Text) -> bool {
        self.texts.contains(t) && (t.in_arena() || t.log_position() + t.len() as u64 <= self.end)
    }

    fn commit(&self, c: CommitIdx) -> bool {
        (c.0 as usize) < self.commits
    }
}

impl Enc for Slot {
    fn enc(&self, o: &mut Out) -> io::Result<()> {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.prefix_lo.to_le_bytes());
        b[4..8].copy_from_slice(&self.prefix_hi.to_le_bytes());
        b[8..].copy_from_slice(&self.idx_plus_one.to_le_bytes());
        o.bytes(&b)
    }
}

fn dec_slots(i: &mut In<'_>) -> io::Result<Vec<Slot>> {
    let n = u64::dec(i)? as usize;
    if n.saturating_mul(12) as u64 > i.remaining() {
        return Err(bad("bad commit index"));
    }
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut slots = Vec::with_capacity(n);
    while slots.len() < n {
        let batch = (n - slots.len()).min(CHUNK / 12);
        slots.extend(i.take(batch * 12)?.chunks_exact(12).map(|b| Slot {
            prefix_lo: word(&b[..4]),
            prefix_hi: word(&b[4..8]),
            idx_plus_one: word(&b[8..]),
        }));
    }
    Ok(slots)
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
            w: BufWriter::with_capacity(CHUNK, file),
            chunk: Vec::with_capacity(CHUNK + 4096),
            crc: crc32fast::Hasher::new(),
            section: None,
        };
        self.write_checkpoint(&mut o).map_err(io_err)?;
        let file = o.w.into_inner().map_err(|e| io_err(e.into_error()))?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&tmp, path).map_err(io_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }

    fn write_checkpoint(&self, o: &mut Out) -> io::Result<()> {
        o.bytes(MAGIC)?;
        VERSION.enc(o)?;
        // Header.
        o.begin_section()?;
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
        (self.git.commits.len() as u64).enc(o)?;
        o.end_section()?;
        // Strings.
        o.begin_section()?;
        (self.syms.strings().len() as u64).enc(o)?;
        for s in self.syms.strings() {
            s[..].enc(o)?;
        }
        (self.texts.arena().blocks().len() as u64).enc(o)?;
        for b in self.texts.arena().blocks() {
            (b.capacity() as u64).enc(o)?;
            b[..].enc(o)?;
        }
        o.end_section()?;
        // Git, but the commits.
        o.begin_section()?;
        self.git.notes.enc(o)?;
        enc_map(self.git.hg.iter().map(|(k, v)| (&k[..], v)), o)?;
        let (seed, len, slots) = self.git.by_hash.parts();
        seed.enc(o)?;
        (len as u64).enc(o)?;
        (slots.len() as u64).enc(o)?;
        slots.iter().try_for_each(|s| s.enc(o))?;
        (self.git.repo_refs.len() as u64).enc(o)?;
        for (repo, refs) in &self.git.repo_refs {
            repo.enc(o)?;
            (refs.len() as u64).enc(o)?;
            for (name, hash) in refs {
                name.enc(o)?;
                hash.enc(o)?;
            }
        }
        o.end_section()?;
        // GitHub.
        o.begin_section()?;
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
        o.end_section()?;
        // Gerrit.
        o.begin_section()?;
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
        o.end_section()?;
        // The commits, in chunks.
        for chunk in self.git.commits.chunks() {
            o.begin_section()?;
            chunk.iter().try_for_each(|c| c.enc(o))?;
            o.end_section()?;
        }
        Ok(())
    }

    /// Reopens a checkpoint. Call [`Corpus::update`] to fold what the log
    /// gained since.
    ///
    /// Sections are decoded on two threads: GitHub and Gerrit on one, the
    /// rest of git on the caller's, then the commit chunks on whichever is
    /// free.
    pub fn open_checkpoint(path: &Path) -> Result<Corpus, CheckpointError> {
        let io_err = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let format = |why: String| CheckpointError::Format {
            path: path.to_owned(),
            why,
        };
        let damaged = |why: String| CheckpointError::Damaged {
            path: path.to_owned(),
            why,
        };
        let file = File::open(path).map_err(io_err)?;
        let file_len = file.metadata().map_err(io_err)?.len();
        let mut lead = [0u8; MAGIC.len() + 4];
        if file_len < lead.len() as u64 {
            return Err(format("no checkpoint header".to_owned()));
        }
        file.read_exact_at(&mut lead, 0).map_err(io_err)?;
        if !lead.starts_with(MAGIC) {
            return Err(format("no checkpoint header".to_owned()));
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&lead[MAGIC.len()..]);
        let version = u32::from_le_bytes(version);
        if version != VERSION {
            return Err(format(format!("version {version}")));
        }
        // The section directory: each header says how far to skip.
        let mut sections = Vec::new();
        let mut pos = lead.len() as u64;
        while pos < file_len {
            let mut h = [0u8; SECTION_HEADER];
            if pos + SECTION_HEADER as u64 > file_len {
                return Err(damaged("truncated".to_owned()));
            }
            file.read_exact_at(&mut h, pos).map_err(io_err)?;
            let mut len = [0u8; 8];
            len.copy_from_slice(&h[..8]);
            let len = u64::from_le_bytes(len);
            let mut crc = [0u8; 4];
            crc.copy_from_slice(&h[8..]);
            let offset = pos + SECTION_HEADER as u64;
            if len > file_len - offset {
                return Err(damaged("truncated".to_owned()));
            }
            sections.push(SectionAt {
                offset,
                len,
                crc: u32::from_le_bytes(crc),
            });
            pos = offset + len;
        }
        let [header_at, strings_at, git_at, github_at, gerrit_at, ..] = sections[..] else {
            return Err(damaged("truncated".to_owned()));
        };
        let (mut corpus, commit_count) =
            decode_section(&file, header_at, Corpus::read_header).map_err(&damaged)?;
        let chunks = &sections[FIXED_SECTIONS..];
        // A commit takes at least its hash and tree: a count the chunks
        // cannot hold is damage, caught before the table is allocated.
        let chunk_bytes: u64 = chunks.iter().map(|c| c.len).sum();
        if chunks.len() != commit_count.div_ceil(COMMITS_PER_CHUNK)
            || commit_count as u64 > chunk_bytes / 40
        {
            return Err(damaged(format!(
                "{} commit sections for {commit_count} commits (truncated?)",
                chunks.len()
            )));
        }
        (corpus.syms, corpus.texts) =
            decode_section(&file, strings_at, read_strings).map_err(&damaged)?;
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
        let bounds = Bounds {
            syms: corpus.syms.len(),
            texts: &corpus.texts,
            end: corpus.folded_to.0,
            commits: commit_count,
        };
        let mut commits: Vec<Vec<CommitData>> = Vec::new();
        // The commit chunks go to whichever thread is free; the queue is
        // set up once the table is allocated, which overlaps the other
        // thread's first sections.
        type Work<'c> = std::iter::Zip<
            std::slice::IterMut<'c, Vec<CommitData>>,
            std::slice::Iter<'c, SectionAt>,
        >;
        let queue: std::sync::OnceLock<std::sync::Mutex<Work<'_>>> = std::sync::OnceLock::new();
        let decode_chunks = || -> Result<(), String> {
            let queue = queue.wait();
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((out, at)) = next else {
                    return Ok(());
                };
                decode_section(&file, *at, |i| read_commits(i, out))?;
                validate_commits(out, &bounds)?;
            }
        };
        let (git, others) = std::thread::scope(|scope| {
            let others = scope.spawn(|| -> Result<(GitHubState, GerritState), String> {
                let github = decode_section(&file, github_at, read_github)?;
                validate_github(&github, &bounds)?;
                let gerrit = decode_section(&file, gerrit_at, read_gerrit)?;
                validate_gerrit(&gerrit, &bounds)?;
                decode_chunks()?;
                Ok((github, gerrit))
            });
            commits = (0..commit_count.div_ceil(COMMITS_PER_CHUNK))
                .map(|i| {
                    let len = COMMITS_PER_CHUNK.min(commit_count - i * COMMITS_PER_CHUNK);
                    let mut chunk = Vec::with_capacity(len);
                    chunk.resize_with(len, CommitData::default);
                    chunk
                })
                .collect();
            let work = commits.iter_mut().zip(chunks);
            // Set exactly once, before anything can fail, so the other
            // thread never waits for nothing.
            let _ = queue.set(std::sync::Mutex::new(work));
            let git = decode_section(&file, git_at, |i| read_git(i, commit_count))
                .and_then(|git| decode_chunks().map(|()| git));
            let others = others
                .join()
                .unwrap_or_else(|_| Err("decoding thread panicked".to_owned()));
            (git, others)
        });
        drop(queue);
        let (notes, hg, by_hash, repo_refs) = git.map_err(&damaged)?;
        let commits = super::chunked::Chunked::from_chunks(commits)
            .ok_or_else(|| damaged("the commit sections do not fill whole chunks".to_owned()))?;
        corpus.git = GitState {
            commits,
            by_hash,
            hg,
            notes,
            repo_refs,
        };
        validate_notes(&corpus.git, corpus.syms.len()).map_err(&damaged)?;
        (corpus.github, corpus.gerrit) = others.map_err(&damaged)?;
        corpus.github.user_index = corpus
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
        Ok(corpus)
    }

    fn read_header(i: &mut In<'_>) -> io::Result<(Corpus, usize)> {
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
        let commits = u64::dec(i)?;
        if commits > u64::from(u32::MAX) {
            return Err(bad("too many commits"));
        }
        Ok((c, commits as usize))
    }
}

fn read_strings(i: &mut In<'_>) -> io::Result<(Interner, Texts)> {
    let n = u64::dec(i)?;
    if n > i.remaining() / 8 {
        return Err(bad("bad symbol count"));
    }
    let mut strings: Vec<Arc<[u8]>> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len = u64::dec(i)? as usize;
        strings.push(Arc::from(i.take(len)?));
    }
    let syms = Interner::from_strings(strings);
    let n = u64::dec(i)?;
    if n > i.remaining() / 16 {
        return Err(bad("bad text block count"));
    }
    let mut blocks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let cap = u64::dec(i)? as usize;
        let len = u64::dec(i)? as usize;
        if len > cap || cap > len.max(4 << 20) || len as u64 > i.remaining() {
            return Err(bad("bad text block"));
        }
        let mut block = Vec::with_capacity(cap);
        block.extend_from_slice(i.take(len)?);
        blocks.push(block);
    }
    Ok((syms, Texts::with_arena(TextArena::from_blocks(blocks))))
}

/// The git tables decoded apart from the commits.
type GitRest = (
    super::chunked::Chunked<NoteFacts>,
    rustc_hash::FxHashMap<Box<[u8]>, GitHash>,
    CommitIndex,
    BTreeMap<String, BTreeMap<String, GitHash>>,
);

fn read_git(i: &mut In<'_>, commits: usize) -> io::Result<GitRest> {
    let notes = Dec::dec(i)?;
    let hg: Vec<(Blob, GitHash)> = Dec::dec(i)?;
    let seed = u64::dec(i)?;
    let len = u64::dec(i)? as usize;
    let slots = dec_slots(i)?;
    let by_hash = CommitIndex::from_parts(seed, len, slots, commits).map_err(bad)?;
    let repo_refs: Vec<(String, Vec<(String, GitHash)>)> = Dec::dec(i)?;
    let repo_refs = repo_refs
        .into_iter()
        .map(|(repo, refs)| (repo, refs.into_iter().collect()))
        .collect();
    let hg = hg
        .into_iter()
        .map(|(k, v)| (k.0.into_boxed_slice(), v))
        .collect();
    Ok((notes, hg, by_hash, repo_refs))
}

/// Decodes exactly `out.len()` commits.
fn read_commits(i: &mut In<'_>, out: &mut [CommitData]) -> io::Result<()> {
    for c in out {
        *c = CommitData::dec(i)?;
    }
    Ok(())
}

fn read_github(i: &mut In<'_>) -> io::Result<GitHubState> {
    let mut github = GitHubState {
        users: Dec::dec(i)?,
        ..GitHubState::default()
    };
    let teams: Vec<(i64, Sym)> = Dec::dec(i)?;
    github.teams = teams.into_iter().collect();
    github.event_extras = Dec::dec(i)?;
    let repos = u64::dec(i)?;
    for _ in 0..repos {
        let key = RepoKey::dec(i)?;
        let labels: Vec<(i64, Sym)> = Dec::dec(i)?;
        let milestones: Vec<(i64, MilestoneData)> = Dec::dec(i)?;
        let issues: Vec<(i32, Box<IssueData>)> = Dec::dec(i)?;
        github.repos.insert(
            key,
            RepoData {
                issues: issues.into_iter().collect::<BTreeMap<_, _>>(),
                labels: labels.into_iter().collect(),
                milestones: milestones.into_iter().collect(),
            },
        );
    }
    Ok(github)
}

fn read_gerrit(i: &mut In<'_>) -> io::Result<GerritState> {
    let projects = u64::dec(i)?;
    let mut gerrit = GerritState::default();
    for _ in 0..projects {
        let name = String::dec(i)?;
        let n = u64::dec(i)?;
        if n > i.remaining() {
            return Err(bad("bad CL count"));
        }
        let mut cls = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let cl = ClData::dec(i)?;
            cls.push((cl.number, cl));
        }
        let id = u16::dec(i)?;
        let refs: Vec<(Blob, GitHash)> = Dec::dec(i)?;
        let commit_count = u64::dec(i)?;
        let others: Vec<GitHash> = Dec::dec(i)?;
        let need: Vec<GitHash> = Dec::dec(i)?;
        let num_label_changes = i64::dec(i)?;
        let dirty: Vec<i32> = Dec::dec(i)?;
        gerrit.projects.insert(
            name,
            ProjectData {
                id,
                cls: cls.into_iter().collect(),
                refs: refs.into_iter().map(|(k, v)| (k.0, v)).collect(),
                commit_count,
                other_commits: others.into_iter().collect::<FxHashSet<_>>(),
                need: need.into_iter().collect(),
                num_label_changes,
                dirty: dirty.into_iter().collect::<BTreeSet<_>>(),
            },
        );
    }
    Ok(gerrit)
}

/// Checks that every reference in decoded commits points inside its table,
/// so a damaged file can never make an accessor panic. NoteDB facts are
/// checked by [`validate_notes`] once all the commits are in.
fn validate_commits(commits: &[CommitData], b: &Bounds<'_>) -> Result<(), String> {
    for c in commits {
        let ok = c.parents.as_slice().iter().all(|p| b.commit(*p))
            && c.author.is_none_or(|s| b.sym(s))
            && c.author_time.is_none_or(|t| b.sym(t.zone))
            && c.commit_time.is_none_or(|t| b.sym(t.zone))
            && !matches!(c.committer, Committer::Person(s) if !b.sym(s))
            && c.reviewer.is_none_or(|t| b.text(t))
            && b.text(c.msg)
            && c.files
                .iter()
                .flat_map(|f| f.iter())
                .all(|f| b.text(f.file));
        if !ok {
            return Err("a commit refers outside its tables".to_owned());
        }
    }
    Ok(())
}

/// Checks the commits' NoteDB facts and the facts' symbols.
fn validate_notes(git: &GitState, syms: usize) -> Result<(), String> {
    if git.notes.iter().any(|n| (n.branch.0 as usize) >= syms) {
        return Err("a NoteDB fact refers outside the symbols".to_owned());
    }
    let ok = git.commits.iter().all(|c| match c.note {
        0 => true,
        n => git.notes.get(n as usize - 1).is_some_and(|f| {
            f.message
                .is_none_or(|m| m.start <= m.end && m.end <= c.msg.len())
        }),
    });
    if !ok {
        return Err("a commit refers outside its NoteDB facts".to_owned());
    }
    Ok(())
}

fn validate_github(gh: &GitHubState, b: &Bounds<'_>) -> Result<(), String> {
    let users = gh.users.len();
    let user_ok = |u: UserRef| (u.0.get() as usize) <= users;
    let extras = gh.event_extras.len();
    for (key, repo) in &gh.repos {
        let ok = b.sym(key.owner)
            && b.sym(key.repo)
            && repo.labels.values().all(|s| b.sym(*s))
            && repo.milestones.values().all(|m| b.sym(m.title))
            && repo.issues.values().all(|i| {
                b.text(i.title)
                    && b.text(i.body)
                    && i.comments.iter().all(|c| b.text(c.body))
                    && [i.user, i.closed_by]
                        .iter()
                        .flatten()
                        .chain(&i.assignees)
                        .all(|u| user_ok(*u))
                    && i.comments.iter().all(|c| c.user.is_none_or(user_ok))
                    && i.events.iter().all(|e| {
                        b.sym(e.typ)
                            && b.sym(e.label)
                            && b.sym(e.milestone)
                            && b.sym(e.commit_id)
                            && e.actor.is_none_or(user_ok)
                            && (e.extra as usize) <= extras
                    })
                    && i.reviews.iter().all(|r| {
                        r.actor.is_none_or(user_ok)
                            && b.text(r.body)
                            && b.text(r.other_json)
                            && b.sym(r.state)
                            && b.sym(r.commit_id)
                            && b.sym(r.actor_association)
                    })
            });
        if !ok {
            return Err("a GitHub record refers outside its tables".to_owned());
        }
    }
    if gh.users.iter().any(|u| !b.sym(u.login)) || gh.teams.values().any(|s| !b.sym(*s)) {
        return Err("a user refers outside the symbols".to_owned());
    }
    let extras_ok = gh.event_extras.iter().all(|x| {
        [x.assignee, x.assigner, x.reviewer, x.review_requester]
            .iter()
            .flatten()
            .all(|u| user_ok(*u))
            && b.text(x.from)
            && b.text(x.to)
            && b.text(x.commit_url)
            && x.dismissed_review
                .is_none_or(|d| b.sym(d.state) && b.text(d.message))
    });
    if !extras_ok {
        return Err("an event refers outside its tables".to_owned());
    }
    Ok(())
}

fn validate_gerrit(gerrit: &GerritState, b: &Bounds<'_>) -> Result<(), String> {
    for p in gerrit.projects.values() {
        for cl in p.cls.values() {
            let ok = cl.commit.is_none_or(|c| b.commit(c))
                && cl.meta.is_none_or(|c| b.commit(c))
                && cl.metas.iter().all(|m| b.commit(*m))
                && cl.messages.iter().all(|m| {
                    b.commit(m.meta)
                        && b.text(m.text)
                        && m.author.is_none_or(|s| b.sym(s))
                        && m.date.is_none_or(|t| b.sym(t.zone))
                })
                && b.sym(cl.branch)
                && cl.created.is_none_or(|t| b.sym(t.zone))
                && cl
                    .github_refs
                    .iter()
                    .all(|(k, _)| b.sym(k.owner) && b.sym(k.repo));
            if !ok {
                return Err("a CL refers outside its tables".to_owned());
            }
        }
    }
    Ok(())
}

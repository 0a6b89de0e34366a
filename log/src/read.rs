//! Reading records from any position up to a bound.
//!
//! A [`Reader`] walks a segment table from a record position, reading each
//! file in large positional reads and handing out payloads as `Bytes` slices
//! of those reads (no copy per record). It stops at its bound, which for a
//! live log is the durable end. A segment that ends inside a record is
//! corruption, except for the last segment of a directory snapshot, where it
//! is a torn or in-flight tail: reading stops before it and [`Reader::torn_tail`]
//! says where.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf as _, Bytes, BytesMut};

use crate::framing::{self, Frame, FrameError, FrameErrorKind};
use crate::segment::{SegmentName, SegmentState};
use crate::table::{Position, SegmentMeta, SegmentTable, Snapshot};

/// Bytes per read: large enough to amortise syscalls, small enough to stay
/// in cache while its records are parsed.
const CHUNK: usize = 256 << 10;

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position in the log.
    pub position: Position,
    /// The segment holding it.
    pub segment: u32,
    /// Its offset within that segment.
    pub offset: u64,
    /// The length of its header.
    pub header_len: u32,
    /// The payload (a `maintpb.Mutation`), exactly as stored.
    pub payload: Bytes,
}

impl Record {
    /// The position just past this record: where the next one starts.
    pub fn end(&self) -> Position {
        Position(self.position.0 + u64::from(self.header_len) + self.payload.len() as u64)
    }
}

/// Why reading failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A segment file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A malformed record.
    #[error("corrupt log: segment {segment:04} offset {offset} (position {position}): {source}")]
    Corrupt {
        /// Segment number.
        segment: u32,
        /// Offset within the segment.
        offset: u64,
        /// Position in the log.
        position: Position,
        /// What is wrong, in Go's words.
        source: FrameError,
    },
    /// The position falls inside a record.
    #[error(
        "position {requested} is inside a record; the nearest record positions are {before} and {after}"
    )]
    NotRecordBoundary {
        /// What was asked for.
        requested: Position,
        /// The record start before it.
        before: Position,
        /// The record start after it (or the end of the log).
        after: Position,
    },
    /// The position is past the end of the log.
    #[error("position {requested} is past the end of the log ({end})")]
    PastEnd {
        /// What was asked for.
        requested: Position,
        /// The end position.
        end: Position,
    },
}

/// Where a directory snapshot's last segment ends inside a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub segment: u32,
    /// Offset of the incomplete record in it.
    pub offset: u64,
    /// Its position.
    pub position: Position,
    /// Bytes from there to the end of the segment.
    pub len: u64,
}

/// Reads records in order from a position up to a bound.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    table: Arc<SegmentTable>,
    bound: Position,
    may_end_mid_record: bool,
    pos: Position,
    seg_idx: usize,
    file: Option<File>,
    /// Unparsed bytes of the current segment, starting at `pos`.
    buf: Bytes,
    /// The whole chunk `buf` is part of.
    chunk: Bytes,
    /// Earlier chunks, oldest first, to reuse once no record points into
    /// them: reading into memory already written needs no zeroing and no
    /// fresh pages. Empty unless [`Reader::reuse_chunks`] asked for it.
    retired: std::collections::VecDeque<Bytes>,
    /// How many chunks `retired` may keep.
    retired_limit: usize,
    torn: Option<TornTail>,
    failed: bool,
    /// Maps to take segment bytes from instead of reading them, when they
    /// cover them.
    maps: Option<crate::mapped::SegmentMaps>,
}

impl Snapshot {
    /// Reads every record from `from` to the end of this snapshot.
    /// `from` must be a record position (or the end).
    pub fn read_from(&self, from: Position) -> Result<Reader, Error> {
        Reader::new(&self.dir, self.table.clone(), from, self.may_end_mid_record)
    }
}

impl Reader {
    pub(crate) fn new(
        dir: &Path,
        table: Arc<SegmentTable>,
        from: Position,
        may_end_mid_record: bool,
    ) -> Result<Reader, Error> {
        let end = table.end();
        if from > end {
            return Err(Error::PastEnd {
                requested: from,
                end,
            });
        }
        // At the end, start on the last segment: if it grows, the records
        // continue in it; if it is sealed, reading moves on to the next.
        let seg_idx = table.locate(from).unwrap_or(table.len().saturating_sub(1));
        let mut reader = Reader {
            dir: dir.to_owned(),
            bound: end,
            table,
            may_end_mid_record,
            pos: from,
            seg_idx,
            file: None,
            buf: Bytes::new(),
            chunk: Bytes::new(),
            retired: std::collections::VecDeque::new(),
            retired_limit: 0,
            torn: None,
            failed: false,
            maps: None,
        };
        reader.check_boundary(from)?;
        Ok(reader)
    }

    /// Keeps up to `chunks` read chunks whose records the caller still
    /// holds, to read into again once it has dropped them, instead of
    /// allocating and zeroing fresh memory. For a caller that holds many
    /// records at a time and reads a lot without mapping the log (a
    /// scanner handing batches to another thread); the kept chunks
    /// (256 KiB each) live as long as the reader, so a long-lived follower
    /// should not ask for this. Mapped bytes ([`Reader::read_mapped`]) need
    /// no chunks.
    pub fn reuse_chunks(&mut self, chunks: usize) {
        self.retired_limit = chunks;
        self.retired.truncate(chunks);
    }

    /// Takes the bytes of segments from `maps` wherever they cover them,
    /// instead of reading them into chunks: records are then slices of the
    /// maps (no copy, no buffer memory), and a segment's pages count
    /// towards the process's resident memory until released (see
    /// [`SegmentMaps::release`](crate::mapped::SegmentMaps::release)).
    /// Bytes past the maps are read as usual.
    pub fn read_mapped(&mut self, maps: &crate::mapped::SegmentMaps) {
        self.maps = Some(maps.clone());
    }

    /// The position of the next record this reader would return.
    pub fn next_position(&self) -> Position {
        self.pos
    }

    /// Where the last segment ended inside a record, once reading reached it.
    pub fn torn_tail(&self) -> Option<TornTail> {
        self.torn
    }

    /// Moves the bound forward to a newer table's end. The table must extend
    /// the current one (same segments, longer or newly sealed).
    pub(crate) fn extend(&mut self, table: Arc<SegmentTable>) {
        self.bound = table.end();
        self.table = table;
    }

    /// Checks that `from` starts a record by walking its segment's records
    /// from the segment's start.
    fn check_boundary(&mut self, from: Position) -> Result<(), Error> {
        if from == self.table.end() {
            return Ok(());
        }
        let Some(seg) = self.table.get(self.seg_idx).cloned() else {
            return Ok(());
        };
        if from == seg.start {
            return Ok(());
        }
        // Walk from the segment start with a throwaway reader.
        self.pos = seg.start;
        while self.pos < from {
            match self.next_record()? {
                Some(rec) if rec.end() <= from => {}
                Some(rec) => {
                    return Err(Error::NotRecordBoundary {
                        requested: from,
                        before: rec.position,
                        after: rec.end(),
                    });
                }
                None => break,
            }
        }
        if self.pos != from {
            return Err(Error::NotRecordBoundary {
                requested: from,
                before: self.pos,
                after: self.bound,
            });
        }
        Ok(())
    }

    /// The next record, `Ok(None)` at the bound.
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        if self.failed {
            return Ok(None);
        }
        let res = self.advance();
        if res.is_err() {
            self.failed = true;
        }
        res
    }

    fn advance(&mut self) -> Result<Option<Record>, Error> {
        loop {
            if self.pos >= self.bound || self.torn.is_some() {
                return Ok(None);
            }
            let Some(seg) = self.table.get(self.seg_idx) else {
                return Ok(None);
            };
            let Some(offset) = self.pos.0.checked_sub(seg.start.0) else {
                // Only possible if the table changed shape under us; find the
                // segment holding the position again.
                match self.table.locate(self.pos) {
                    Some(idx) if idx != self.seg_idx => {
                        self.seg_idx = idx;
                        self.file = None;
                        self.buf = Bytes::new();
                        continue;
                    }
                    _ => return Ok(None),
                }
            };
            if offset >= seg.len {
                self.seg_idx += 1;
                self.file = None;
                self.buf = Bytes::new();
                continue;
            }
            let parsed = framing::parse(&self.buf, offset);
            match parsed {
                Ok(Frame::Record {
                    header_len,
                    payload_len,
                }) => {
                    let total = header_len + payload_len;
                    let payload = self.buf.slice(header_len..total);
                    self.buf.advance(total);
                    let rec = Record {
                        position: self.pos,
                        segment: seg.number,
                        offset,
                        header_len: header_len as u32,
                        payload,
                    };
                    self.pos = Position(self.pos.0 + total as u64);
                    return Ok(Some(rec));
                }
                Ok(Frame::Incomplete { needed }) => {
                    let readable_end = seg.len.min(self.bound.0 - seg.start.0);
                    let have_end = offset + self.buf.len() as u64;
                    if have_end >= readable_end {
                        let seg = seg.clone();
                        return self.incomplete_at_end(&seg, offset, needed);
                    }
                    let seg = seg.clone();
                    let want = needed
                        .map_or(0, |n| n.saturating_sub(self.buf.len() as u64))
                        .max(CHUNK as u64)
                        .min(readable_end - have_end);
                    self.fill(&seg, have_end, want as usize)?;
                }
                Err(source) => {
                    return Err(Error::Corrupt {
                        segment: seg.number,
                        offset,
                        position: self.pos,
                        source,
                    });
                }
            }
        }
    }

    fn incomplete_at_end(
        &mut self,
        seg: &SegmentMeta,
        offset: u64,
        needed: Option<u64>,
    ) -> Result<Option<Record>, Error> {
        let is_last = self.seg_idx + 1 == self.table.len();
        let growing = seg.state == SegmentState::Growing;
        if is_last && growing && self.may_end_mid_record && seg.end() == self.bound {
            self.torn = Some(TornTail {
                segment: seg.number,
                offset,
                position: self.pos,
                len: seg.len - offset,
            });
            return Ok(None);
        }
        let present = self.buf.len() as u64;
        let header_len = needed.and_then(|_| {
            self.buf
                .iter()
                .position(|&b| b == b'=')
                .map(|i| i as u64 + 1)
        });
        Err(Error::Corrupt {
            segment: seg.number,
            offset,
            position: self.pos,
            source: FrameError {
                offset,
                kind: FrameErrorKind::Truncated {
                    payload_len: needed.zip(header_len).map(|(n, h)| n - h),
                    payload_present: header_len.map_or(0, |h| present.saturating_sub(h)),
                },
            },
        })
    }

    /// Reads `want` more bytes of `seg` from `file_offset` onto the buffer.
    fn fill(&mut self, seg: &SegmentMeta, file_offset: u64, want: usize) -> Result<(), Error> {
        if self.fill_mapped(seg, file_offset) {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(open_segment(&self.dir, seg)?);
        }
        let file = self.file.as_ref().expect("opened above");
        // Reuse the previous chunk's memory when no record still points into
        // it (the usual case when scanning): no fresh allocation, no page
        // faults, and the buffer stays warm in cache. Otherwise reuse an
        // earlier chunk whose records are all gone. `buf` is always the
        // unparsed tail of `chunk`.
        let tail_len = self.buf.len();
        self.buf = Bytes::new();
        let chunk = std::mem::take(&mut self.chunk);
        let tail_start = chunk.len() - tail_len;
        let mut next = match chunk.try_into_mut() {
            Ok(mut unique) => {
                unique.copy_within(tail_start.., 0);
                set_len_keeping_bytes(&mut unique, tail_len + want);
                unique
            }
            Err(shared) => {
                let mut next = reusable_chunk(&mut self.retired, tail_len + want);
                next[..tail_len].copy_from_slice(&shared[tail_start..]);
                if !shared.is_empty() && self.retired_limit > 0 {
                    if self.retired.len() == self.retired_limit {
                        self.retired.pop_front();
                    }
                    self.retired.push_back(shared);
                }
                next
            }
        };
        let old = tail_len;
        let mut filled = old;
        while filled < next.len() {
            let at = file_offset + (filled - old) as u64;
            match file.read_at(&mut next[filled..], at) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: seg.path.clone(),
                        source,
                    });
                }
            }
        }
        if filled < next.len() {
            // The file is shorter than the table says: it was truncated
            // underneath us (repair) or the table is stale.
            return Err(Error::Io {
                path: seg.path.clone(),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "segment {:04} ends at {} but the log says it holds {} bytes",
                        seg.number,
                        file_offset + (filled - old) as u64,
                        seg.len
                    ),
                ),
            });
        }
        let chunk = next.freeze();
        self.buf = chunk.clone();
        self.chunk = chunk;
        Ok(())
    }
}

impl Reader {
    /// Makes the buffer the mapped bytes of `seg` from the unparsed tail up
    /// to what may be read, if the maps hold them.
    fn fill_mapped(&mut self, seg: &SegmentMeta, file_offset: u64) -> bool {
        let Some(maps) = &self.maps else {
            return false;
        };
        let from = file_offset - self.buf.len() as u64;
        let readable_end = seg.len.min(self.bound.0 - seg.start.0);
        let Ok(len) = usize::try_from(readable_end - from) else {
            return false;
        };
        match maps.bytes(Position(seg.start.0 + from), len) {
            Some(bytes) => {
                self.chunk = bytes.clone();
                self.buf = bytes;
                true
            }
            None => false,
        }
    }
}

/// A buffer of exactly `len` bytes, from a retired chunk nobody else holds
/// if there is one (its old bytes are overwritten, not zeroed).
fn reusable_chunk(retired: &mut std::collections::VecDeque<Bytes>, len: usize) -> BytesMut {
    for _ in 0..retired.len() {
        let Some(old) = retired.pop_front() else {
            break;
        };
        match old.try_into_mut() {
            Ok(mut unique) => {
                set_len_keeping_bytes(&mut unique, len);
                return unique;
            }
            Err(shared) => retired.push_back(shared),
        }
    }
    let mut fresh = BytesMut::with_capacity(len);
    fresh.resize(len, 0);
    fresh
}

/// Makes `buf` `len` bytes long, zeroing only bytes it never held.
fn set_len_keeping_bytes(buf: &mut BytesMut, len: usize) {
    if buf.len() >= len {
        buf.truncate(len);
    } else {
        buf.resize(len, 0);
    }
}

impl Iterator for Reader {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// Opens a segment's file. A growing segment may have been sealed (renamed)
/// since the table was taken; then the sealed file of the same number is
/// opened instead.
pub fn open_segment(dir: &Path, seg: &SegmentMeta) -> Result<File, Error> {
    match File::open(&seg.path) {
        Ok(f) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound && seg.state == SegmentState::Growing => {
            let sealed = find_sealed(dir, seg.number).map_err(|source| Error::Io {
                path: dir.to_owned(),
                source,
            })?;
            match sealed {
                Some(path) => File::open(&path).map_err(|source| Error::Io { path, source }),
                None => Err(Error::Io {
                    path: seg.path.clone(),
                    source: e,
                }),
            }
        }
        Err(source) => Err(Error::Io {
            path: seg.path.clone(),
            source,
        }),
    }
}

fn find_sealed(dir: &Path, number: u32) -> io::Result<Option<PathBuf>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str().and_then(SegmentName::parse) else {
            continue;
        };
        if name.number == number && matches!(name.state, SegmentState::Sealed(_)) {
            return Ok(Some(entry.path()));
        }
    }
    Ok(None)
}

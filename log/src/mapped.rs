//! Read-only memory maps of a log's segments, so that programs folding the
//! log (the corpus) can keep the text of records as slices of the segment
//! files instead of copying gigabytes into memory, and can read the records
//! themselves without copying them out of the page cache (see
//! [`Reader::read_mapped`](crate::read::Reader::read_mapped)).
//!
//! This module holds the project's only `unsafe` code: creating the maps.
//! Mapping a file is sound in Rust only while nobody changes the mapped
//! bytes. The log guarantees that for every byte a map covers:
//! - sealed segments are immutable;
//! - the growing segment is only appended to, past the mapped length;
//! - recovery only cuts a torn tail, bytes after the last whole record,
//!   which no map covers (maps stop at a snapshot's record boundary);
//! - Go's godata replaces growing files by rename, which leaves a mapped
//!   inode untouched.
//!
//! The one operation that breaks this is `almanac log repair` cutting
//! records a running reader has mapped: an access would then fault (SIGBUS).
//! Repair is an operator action for a stopped log; run it with readers
//! stopped too.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use memmap2::{Mmap, MmapOptions, UncheckedAdvice};

use crate::read;
use crate::table::{Position, SegmentMeta, SegmentTable};

/// One mapped segment.
#[derive(Debug, Clone)]
struct Mapped {
    start: Position,
    len: u64,
    /// `None` for an empty segment (empty files cannot be mapped). Shared
    /// with the [`Bytes`] handed out by [`SegmentMaps::bytes`], which keep
    /// the map alive.
    map: Option<Arc<Mmap>>,
}

impl Mapped {
    /// The offsets of `len` bytes at `pos` in this segment, if it holds
    /// them all.
    fn range(&self, pos: Position, len: usize) -> Option<(usize, usize)> {
        let off = usize::try_from(pos.0.checked_sub(self.start.0)?).ok()?;
        let end = off.checked_add(len)?;
        (end as u64 <= self.len).then_some((off, end))
    }

    fn get(&self, pos: Position, len: usize) -> Option<&[u8]> {
        let (off, end) = self.range(pos, len)?;
        match &self.map {
            Some(map) => map.get(off..end),
            None => (len == 0).then_some(&[][..]),
        }
    }
}

/// [`SegmentMaps::get`] for positions looked up in order: the segment of
/// the last lookup is tried first.
#[derive(Debug)]
pub struct Cursor<'m> {
    maps: &'m SegmentMaps,
    idx: usize,
}

impl<'m> Cursor<'m> {
    /// The mapped bytes at `pos`, `len` long, if they lie within one mapped
    /// segment.
    pub fn get(&mut self, pos: Position, len: usize) -> Option<&'m [u8]> {
        if let Some(bytes) = self
            .maps
            .segments
            .get(self.idx)
            .and_then(|s| s.get(pos, len))
        {
            return Some(bytes);
        }
        let idx = self.maps.segment_index(pos)?;
        self.idx = idx;
        self.maps.segments[idx].get(pos, len)
    }
}

/// A map as the owner of [`Bytes`].
struct SharedMap(Arc<Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Maps of a log's segments up to an end position. Cloning shares the maps.
#[derive(Debug, Default, Clone)]
pub struct SegmentMaps {
    dir: PathBuf,
    segments: Vec<Mapped>,
}

/// Why a segment could not be mapped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening or mapping failed.
    #[error("mapping {path}: {source}")]
    Io {
        /// The segment.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Opening the segment failed.
    #[error(transparent)]
    Open(#[from] read::Error),
}

impl SegmentMaps {
    /// Maps every segment of `table`, each up to its length in the table.
    pub fn new(dir: PathBuf, table: &SegmentTable) -> Result<SegmentMaps, Error> {
        let mut maps = SegmentMaps {
            dir,
            segments: Vec::new(),
        };
        maps.extend(table)?;
        Ok(maps)
    }

    /// Maps what `table` has beyond what is mapped: new segments, and the
    /// rest of a segment that grew (it is mapped again, whole).
    pub fn extend(&mut self, table: &SegmentTable) -> Result<(), Error> {
        for (i, meta) in table.segments().enumerate() {
            match self.segments.get(i) {
                Some(m) if m.len == meta.len && m.start == meta.start => continue,
                _ => {}
            }
            let mapped = map_segment(&self.dir, meta)?;
            if i < self.segments.len() {
                self.segments[i] = mapped;
            } else {
                self.segments.push(mapped);
            }
        }
        Ok(())
    }

    /// The mapped bytes at `pos`, `len` long, if they lie within one mapped
    /// segment.
    pub fn get(&self, pos: Position, len: usize) -> Option<&[u8]> {
        self.segment_of(pos)?.get(pos, len)
    }

    /// A cursor for looking up positions in order, as a scan does.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor { maps: self, idx: 0 }
    }

    /// The mapped bytes at `pos`, `len` long, as a handle that keeps the
    /// map alive, if they lie within one mapped segment.
    pub fn bytes(&self, pos: Position, len: usize) -> Option<Bytes> {
        let seg = self.segment_of(pos)?;
        let (off, end) = seg.range(pos, len)?;
        match &seg.map {
            Some(map) => Some(Bytes::from_owner(SharedMap(Arc::clone(map))).slice(off..end)),
            None => (len == 0).then(Bytes::new),
        }
    }

    /// Lets the kernel take back this process's pages of the maps between
    /// `from` and `to` (whole pages only). The bytes stay readable: the next
    /// access maps them again from the page cache. For a reader that has
    /// scanned past them, so that scanning a large log does not count the
    /// whole log towards its resident memory.
    pub fn release(&self, from: Position, to: Position) {
        const PAGE: u64 = 4096;
        for seg in &self.segments {
            let Some(map) = &seg.map else { continue };
            let lo = from.0.max(seg.start.0) - seg.start.0;
            let hi = to.0.min(seg.start.0 + seg.len).saturating_sub(seg.start.0);
            // The map starts on a page; only pages wholly inside the range.
            let (lo, hi) = (lo.div_ceil(PAGE) * PAGE, hi / PAGE * PAGE);
            if hi <= lo {
                continue;
            }
            let (Ok(lo), Ok(len)) = (usize::try_from(lo), usize::try_from(hi - lo)) else {
                continue;
            };
            // SAFETY: the map is a shared, read-only map of a file whose
            // mapped bytes never change (module documentation). Dropping its
            // pages changes no byte anyone can read: the next access maps
            // the same file bytes again.
            #[expect(
                unsafe_code,
                reason = "MADV_DONTNEED on a shared read-only file map only unmaps pages"
            )]
            let advised = unsafe { map.unchecked_advise_range(UncheckedAdvice::DontNeed, lo, len) };
            if let Err(e) = advised {
                // Only memory is at stake: the pages stay counted.
                tracing::debug!(error = %e, "releasing mapped log pages");
            }
        }
    }

    fn segment_index(&self, pos: Position) -> Option<usize> {
        self.segments
            .partition_point(|m| m.start <= pos)
            .checked_sub(1)
    }

    fn segment_of(&self, pos: Position) -> Option<&Mapped> {
        self.segments.get(self.segment_index(pos)?)
    }

    /// The end of the mapped bytes.
    pub fn end(&self) -> Position {
        self.segments
            .last()
            .map_or(Position(0), |m| Position(m.start.0 + m.len))
    }
}

fn map_segment(dir: &std::path::Path, meta: &SegmentMeta) -> Result<Mapped, Error> {
    let file: File = read::open_segment(dir, meta)?;
    let map = if meta.len == 0 {
        None
    } else {
        let len = usize::try_from(meta.len).map_err(|_| Error::Io {
            path: meta.path.clone(),
            source: io::Error::other("segment larger than the address space"),
        })?;
        // SAFETY: the log never changes bytes below a table's length once
        // they are written (see the module documentation); the map covers
        // exactly those bytes and is only ever read.
        #[expect(
            unsafe_code,
            reason = "read-only map of append-only log bytes; see module docs"
        )]
        let map = unsafe { MmapOptions::new().len(len).map(&file) };
        Some(Arc::new(map.map_err(|source| Error::Io {
            path: meta.path.clone(),
            source,
        })?))
    };
    Ok(Mapped {
        start: meta.start,
        len: meta.len,
        map,
    })
}

//! Read-only memory maps of a log's segments, so that programs folding the
//! log (the corpus) can keep the text of records as slices of the segment
//! files instead of copying gigabytes into memory.
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

use memmap2::{Mmap, MmapOptions};

use crate::read;
use crate::table::{Position, SegmentMeta, SegmentTable};

/// One mapped segment.
#[derive(Debug)]
struct Mapped {
    start: Position,
    len: u64,
    /// `None` for an empty segment (empty files cannot be mapped).
    map: Option<Mmap>,
}

/// Maps of a log's segments up to an end position.
#[derive(Debug, Default)]
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
        let idx = self
            .segments
            .partition_point(|m| m.start <= pos)
            .checked_sub(1)?;
        let seg = &self.segments[idx];
        let off = usize::try_from(pos.0 - seg.start.0).ok()?;
        let end = off.checked_add(len)?;
        if end as u64 > seg.len {
            return None;
        }
        match &seg.map {
            Some(map) => map.get(off..end),
            None => (len == 0).then_some(&[][..]),
        }
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
        Some(map.map_err(|source| Error::Io {
            path: meta.path.clone(),
            source,
        })?)
    };
    Ok(Mapped {
        start: meta.start,
        len: meta.len,
        map,
    })
}

//! Positions and the segment table: which byte of the log lives in which file.
//!
//! A record's position is its byte offset in the concatenation of all
//! segments: the sizes of the earlier segments plus its offset in its own.
//! The table maps positions to segment files. The writer publishes a new
//! table after every durable batch; readers take a snapshot and never see
//! bytes past its end.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::segment::{self, LayoutError, SegmentName, SegmentState};

/// A byte offset in the concatenation of all segments. Record positions are
/// where subscribers resume and what checkpoints name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position(pub u64);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One segment in a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Segment number, from 0.
    pub number: u32,
    /// Sealed (with its hash) or growing.
    pub state: SegmentState,
    /// The file. A growing segment's path changes when it is sealed.
    pub path: PathBuf,
    /// Position of its first byte.
    pub start: Position,
    /// Bytes in it that the table covers.
    pub len: u64,
}

impl SegmentMeta {
    /// Position just past its last byte.
    pub fn end(&self) -> Position {
        Position(self.start.0 + self.len)
    }

    /// The file name, as Go's godata cache names it.
    pub fn file_name(&self) -> String {
        SegmentName {
            number: self.number,
            state: self.state,
        }
        .file_name()
    }
}

/// The segments of a log up to an end position.
///
/// Sealed segments are shared between tables (`Arc`), so publishing a new
/// table after each batch costs O(1) however long the log is.
#[derive(Debug, Clone, Default)]
pub struct SegmentTable {
    sealed: Arc<Vec<SegmentMeta>>,
    tail: Option<SegmentMeta>,
}

impl SegmentTable {
    /// A table of sealed segments and an optional growing tail.
    pub fn new(sealed: Arc<Vec<SegmentMeta>>, tail: Option<SegmentMeta>) -> SegmentTable {
        SegmentTable { sealed, tail }
    }

    /// Every segment in order.
    pub fn segments(&self) -> impl Iterator<Item = &SegmentMeta> {
        self.sealed.iter().chain(self.tail.as_ref())
    }

    /// The number of segments.
    pub fn len(&self) -> usize {
        self.sealed.len() + usize::from(self.tail.is_some())
    }

    /// Whether the table has no segments.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The segment at index `idx` (its number, since numbers have no gaps).
    pub fn get(&self, idx: usize) -> Option<&SegmentMeta> {
        self.sealed.get(idx).or_else(|| {
            (idx == self.sealed.len())
                .then_some(self.tail.as_ref())
                .flatten()
        })
    }

    /// The sealed segments.
    pub fn sealed(&self) -> &Arc<Vec<SegmentMeta>> {
        &self.sealed
    }

    /// The growing segment, if any.
    pub fn tail(&self) -> Option<&SegmentMeta> {
        self.tail.as_ref()
    }

    /// The position just past the last byte covered.
    pub fn end(&self) -> Position {
        self.segments().last().map_or(Position(0), SegmentMeta::end)
    }

    /// The index of the segment holding `pos`; `None` at or past the end.
    pub fn locate(&self, pos: Position) -> Option<usize> {
        if pos >= self.end() {
            return None;
        }
        let sealed_end = self.sealed.last().map_or(Position(0), SegmentMeta::end);
        if pos >= sealed_end {
            return Some(self.sealed.len());
        }
        // Segments are contiguous and ordered: binary search on start.
        let idx = self.sealed.partition_point(|s| s.start <= pos);
        Some(idx - 1)
    }

    /// Builds a table from a directory layout, covering every byte listed.
    pub fn from_layout(layout: &segment::Layout) -> SegmentTable {
        let mut sealed = Vec::new();
        let mut tail = None;
        let mut start = 0u64;
        for file in &layout.segments {
            let meta = SegmentMeta {
                number: file.name.number,
                state: file.name.state,
                path: file.path.clone(),
                start: Position(start),
                len: file.len,
            };
            start += file.len;
            match file.name.state {
                SegmentState::Sealed(_) => sealed.push(meta),
                SegmentState::Growing => tail = Some(meta),
            }
        }
        SegmentTable::new(Arc::new(sealed), tail)
    }
}

/// A read-only view of a log directory as of one moment: its segment table,
/// and what the directory held that is not part of the log.
///
/// Opening a snapshot never writes to the directory and takes no lock, so it
/// works on a log a writer is appending to (the growing segment may then end
/// inside a record being written; readers stop before it) and on a godata
/// cache that Go programs share.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) dir: PathBuf,
    pub(crate) table: Arc<SegmentTable>,
    /// Growing files superseded by a sealed segment of the same number.
    pub stale_growing: Vec<PathBuf>,
    /// Whether the table may end inside an in-flight record (a snapshot of a
    /// directory rather than of a writer's durable state).
    pub(crate) may_end_mid_record: bool,
}

/// Why a directory cannot be read as a log.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Listing the directory failed.
    #[error("cannot list log directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The segment files do not form a log.
    #[error("log directory {dir}: {source}")]
    Layout {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        source: LayoutError,
    },
}

impl SnapshotError {
    /// A file that vanished from a directory that is still there, or a gap
    /// between segments: what a listing taken while a segment is sealed
    /// (its growing file renamed) can show.
    fn may_be_a_seal_in_progress(&self) -> bool {
        match self {
            SnapshotError::Io { dir, source } => {
                source.kind() == std::io::ErrorKind::NotFound && dir.is_dir()
            }
            SnapshotError::Layout { source, .. } => matches!(source, LayoutError::Gap { .. }),
        }
    }
}

impl Snapshot {
    /// Lists `dir` and snapshots its segments as they are now. A cache that
    /// Go's netsource client filled from a server other than Google's
    /// (every segment kept as `NNNN.growing.mutlog`) reads too: see
    /// [`segment::scan_dir_lenient`].
    ///
    /// A writer sealing a segment while the directory is listed renames its
    /// growing file: a file can vanish between the listing and its `stat`,
    /// or the listing can miss both names. Either shows as a missing file
    /// or a gap, so the listing is taken again (a few times) before either
    /// is reported.
    pub fn open(dir: &Path) -> Result<Snapshot, SnapshotError> {
        const ATTEMPTS: usize = 8;
        let scan = || {
            segment::scan_dir_lenient(dir)
                .map_err(|source| SnapshotError::Io {
                    dir: dir.to_owned(),
                    source,
                })?
                .map_err(|source| SnapshotError::Layout {
                    dir: dir.to_owned(),
                    source,
                })
        };
        let mut attempt = 1;
        let layout = loop {
            match scan() {
                Ok(layout) => break layout,
                Err(e) if attempt < ATTEMPTS && e.may_be_a_seal_in_progress() => {
                    attempt += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e),
            }
        };
        Ok(Snapshot {
            dir: dir.to_owned(),
            table: Arc::new(SegmentTable::from_layout(&layout)),
            stale_growing: layout.stale_growing,
            may_end_mid_record: true,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The segment table.
    pub fn table(&self) -> &SegmentTable {
        &self.table
    }

    /// The end position.
    pub fn end(&self) -> Position {
        self.table.end()
    }
}

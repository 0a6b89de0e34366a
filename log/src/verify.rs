//! Verification: every sealed segment's SHA-224, every record's framing and
//! protobuf decoding, and the directory's layout, reported with locations.
//!
//! Verification only reads. It checks every segment file it finds, even
//! when the layout is broken, so one report shows everything that is wrong.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use prost::Message as _;

use crate::framing::FrameError;
use crate::lock::DirLock;
use crate::scan::{self, ScanEnd, ScanOptions};
use crate::segment::{self, LayoutError, SegmentFile, SegmentState, Sha224Digest};
use crate::table::Position;

/// Something wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The segment file concerned, if any.
    pub file: Option<PathBuf>,
    /// Segment number, if any.
    pub segment: Option<u32>,
    /// Offset within the segment, if the problem is at a record.
    pub offset: Option<u64>,
    /// Position in the log, when the layout allows computing it.
    pub position: Option<Position>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// The kinds of problem verification finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The segment files do not form a log.
    Layout(LayoutError),
    /// A sealed segment's content does not match the hash in its name.
    ShaMismatch {
        /// From the file name.
        named: Sha224Digest,
        /// Of the content.
        actual: Sha224Digest,
    },
    /// A malformed or truncated record.
    Frame(FrameError),
    /// A torn tail on the growing segment (recovery would cut it).
    TornTail {
        /// Bytes after the last whole record.
        len: u64,
    },
    /// A record whose payload is not a `maintpb.Mutation`.
    Undecodable {
        /// The decoder's message.
        error: String,
    },
    /// A file could not be read.
    Io(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = self.segment {
            write!(f, "segment {n:04}")?;
            if let Some(off) = self.offset {
                write!(f, " offset {off}")?;
            }
            if let Some(pos) = self.position {
                write!(f, " (position {pos})")?;
            }
            if let Some(file) = &self.file
                && let Some(name) = file.file_name()
            {
                write!(f, " [{}]", name.to_string_lossy())?;
            }
            f.write_str(": ")?;
        }
        match &self.kind {
            ProblemKind::Layout(e) => write!(f, "{e}"),
            ProblemKind::ShaMismatch { named, actual } => write!(
                f,
                "SHA-224 mismatch: the name says {named} but the content hashes to {actual}"
            ),
            ProblemKind::Frame(e) => write!(f, "{e}"),
            ProblemKind::TornTail { len } => write!(
                f,
                "torn tail: {len} bytes after the last whole record (opening the log for writing cuts them)"
            ),
            ProblemKind::Undecodable { error } => {
                write!(f, "record does not decode as maintpb.Mutation: {error}")
            }
            ProblemKind::Io(e) => write!(f, "{e}"),
        }
    }
}

/// What verification found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Segment files checked.
    pub segments: usize,
    /// Whole records seen.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Everything wrong, in order.
    pub problems: Vec<Problem>,
    /// Growing files superseded by sealed ones (not a problem).
    pub stale_growing: Vec<PathBuf>,
    /// An incomplete record at the end of the growing segment while a writer
    /// holds the log: an append in flight, not a problem.
    pub in_flight_tail: Option<u64>,
}

impl Report {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Progress through verification, for a caller's display.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The file about to be checked.
    pub file: &'a SegmentFile,
    /// Bytes checked before it.
    pub bytes_done: u64,
    /// Bytes in all files.
    pub bytes_total: u64,
}

/// Verifies the log in `dir`.
pub fn verify(dir: &Path, mut progress: impl FnMut(Progress<'_>)) -> io::Result<Report> {
    let (files, _) = segment::list_files(dir)?;
    let mut report = Report::default();
    let layout = segment::scan_dir(dir)?;
    let layout_ok = match &layout {
        Ok(l) => {
            report.stale_growing = l.stale_growing.clone();
            true
        }
        Err(e) => {
            report.problems.push(Problem {
                file: None,
                segment: Some(e.segment()),
                offset: None,
                position: None,
                kind: ProblemKind::Layout(e.clone()),
            });
            false
        }
    };
    let writer_running = DirLock::holder(dir).is_some();
    let bytes_total: u64 = files.iter().map(|f| f.len).sum();
    let mut start = 0u64;
    let last_number = files.last().map(|f| f.name.number);
    for file in &files {
        if report.stale_growing.contains(&file.path) {
            continue;
        }
        progress(Progress {
            file,
            bytes_done: report.bytes,
            bytes_total,
        });
        let position = |offset: u64| layout_ok.then_some(Position(start + offset));
        let problem = |offset: Option<u64>, position: Option<Position>, kind| Problem {
            file: Some(file.path.clone()),
            segment: Some(file.name.number),
            offset,
            position,
            kind,
        };
        let mut undecodable: Vec<(u64, String)> = Vec::new();
        let scanned = scan::scan_file(
            &file.path,
            ScanOptions {
                hash_whole_file: true,
                limit: None,
            },
            |offset, payload| {
                if let Err(e) = almanac_proto::pb::maintpb::Mutation::decode(payload) {
                    undecodable.push((offset, e.to_string()));
                }
                ControlFlow::Continue(())
            },
        );
        report.segments += 1;
        let scan = match scanned {
            Ok(scan) => scan,
            Err(e) => {
                report
                    .problems
                    .push(problem(None, None, ProblemKind::Io(e.to_string())));
                start += file.len;
                continue;
            }
        };
        report.records += scan.records;
        report.bytes += scan.file_len;
        for (offset, error) in undecodable {
            report.problems.push(problem(
                Some(offset),
                position(offset),
                ProblemKind::Undecodable { error },
            ));
        }
        let is_growing = file.name.state == SegmentState::Growing;
        match &scan.end {
            ScanEnd::Clean | ScanEnd::Stopped => {}
            end if is_growing && end.is_torn_tail() => {
                let len = scan.file_len - scan.valid_len;
                let in_flight = writer_running
                    && matches!(end, ScanEnd::Incomplete { .. })
                    && Some(file.name.number) == last_number;
                if in_flight {
                    report.in_flight_tail = Some(len);
                } else {
                    report.problems.push(problem(
                        Some(scan.valid_len),
                        position(scan.valid_len),
                        ProblemKind::TornTail { len },
                    ));
                }
            }
            end => {
                let error = end
                    .as_frame_error()
                    .expect("a non-clean end has a frame error");
                report.problems.push(problem(
                    Some(error.offset),
                    position(error.offset),
                    ProblemKind::Frame(error),
                ));
            }
        }
        if let (SegmentState::Sealed(named), Some(actual)) = (file.name.state, scan.sha224)
            && named != actual
        {
            report.problems.push(problem(
                None,
                None,
                ProblemKind::ShaMismatch { named, actual },
            ));
        }
        start += scan.file_len;
    }
    Ok(report)
}

//! Importing logs written by Go's maintner into an almanac log.
//!
//! Two kinds of source are understood: a directory of Go disk-logger files
//! (`maintner-YYYY-MM-DD.mutlog`, read in lexical order, offsets restarting
//! at 0 in each file), and a segmented log directory (a godata cache or
//! another almanac log). Every source record is checked first (framing and
//! protobuf decoding) so a bad source imports nothing; then the payloads are
//! appended unchanged, re-framed at their new offsets.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message as _;

use crate::append::{self, Ticket};
use crate::log::Log;
use crate::read;
use crate::scan::{self, ScanOptions};
use crate::segment;
use crate::table::{Position, Snapshot, SnapshotError};

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Source files read.
    pub files: usize,
    /// Records appended.
    pub records: u64,
    /// Payload bytes appended.
    pub payload_bytes: u64,
    /// The log's end after the import.
    pub end: Position,
}

/// Why an import failed. When it fails before appending (a bad source, a
/// non-empty destination), nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The destination already holds records.
    #[error("{dir} already holds {end} bytes of log; import into an empty directory")]
    NotEmpty {
        /// The destination.
        dir: PathBuf,
        /// Its end position.
        end: Position,
    },
    /// The source has nothing to import.
    #[error("{0} holds neither maintner-*.mutlog files nor log segments")]
    NothingToImport(PathBuf),
    /// A source record is malformed.
    #[error("{file}: {reason}")]
    BadSource {
        /// The source file.
        file: PathBuf,
        /// What is wrong, with its offset.
        reason: String,
    },
    /// The source directory is not a readable log.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Reading the source failed.
    #[error(transparent)]
    Read(#[from] read::Error),
    /// Reading failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Appending failed.
    #[error(transparent)]
    Append(#[from] append::Error),
}

/// Progress through an import, for a caller's display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Records appended so far.
    pub records: u64,
    /// Source bytes processed so far.
    pub bytes_done: u64,
    /// Source bytes in all.
    pub bytes_total: u64,
}

const BATCH_BYTES: usize = 1 << 20;
const IN_FLIGHT: usize = 4;

/// Imports `source` into `log`, which must be empty.
pub fn import(
    log: &Log,
    source: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<Report, Error> {
    if log.end() != Position(0) {
        return Err(Error::NotEmpty {
            dir: log.dir().to_owned(),
            end: log.end(),
        });
    }
    let (_, disk_files) = segment::list_files(source).map_err(|e| Error::Io {
        path: source.to_owned(),
        source: e,
    })?;
    let mut appender = Appender::new(log);
    if !disk_files.is_empty() {
        let bytes_total = total_len(&disk_files)?;
        for file in &disk_files {
            check_file(file)?;
        }
        let mut bytes_done = 0;
        for file in &disk_files {
            let mut failure = None;
            let scan = scan::scan_file(file, ScanOptions::default(), |_, payload| {
                match appender.push(Bytes::copy_from_slice(payload)) {
                    Ok(()) => ControlFlow::Continue(()),
                    Err(e) => {
                        failure = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
            .map_err(|e| Error::Io {
                path: file.clone(),
                source: e,
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            bytes_done += scan.file_len;
            progress(Progress {
                records: appender.records,
                bytes_done,
                bytes_total,
            });
        }
        let files = disk_files.len();
        return appender.finish(files);
    }

    let snapshot = Snapshot::open(source)?;
    if snapshot.table().is_empty() {
        return Err(Error::NothingToImport(source.to_owned()));
    }
    let files: Vec<PathBuf> = snapshot
        .table()
        .segments()
        .map(|s| s.path.clone())
        .collect();
    for file in &files {
        check_file(file)?;
    }
    let bytes_total = snapshot.end().0;
    let mut reader = snapshot.read_from(Position(0))?;
    while let Some(rec) = reader.next_record()? {
        let end = rec.end();
        appender.push(rec.payload)?;
        if appender.records.is_multiple_of(10_000) {
            progress(Progress {
                records: appender.records,
                bytes_done: end.0,
                bytes_total,
            });
        }
    }
    progress(Progress {
        records: appender.records,
        bytes_done: reader.next_position().0,
        bytes_total,
    });
    appender.finish(files.len())
}

fn total_len(files: &[PathBuf]) -> Result<u64, Error> {
    let mut total = 0;
    for f in files {
        total += std::fs::metadata(f)
            .map_err(|e| Error::Io {
                path: f.clone(),
                source: e,
            })?
            .len();
    }
    Ok(total)
}

/// Checks a source file's framing and that every record decodes.
fn check_file(file: &Path) -> Result<(), Error> {
    let mut bad = None;
    let scan = scan::scan_file(file, ScanOptions::default(), |offset, payload| {
        match almanac_proto::pb::maintpb::Mutation::decode(payload) {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                bad = Some(format!(
                    "record at offset {offset} does not decode as maintpb.Mutation: {e}"
                ));
                ControlFlow::Break(())
            }
        }
    })
    .map_err(|e| Error::Io {
        path: file.to_owned(),
        source: e,
    })?;
    let reason = bad.or_else(|| scan.end.as_frame_error().map(|e| e.to_string()));
    match reason {
        Some(reason) => Err(Error::BadSource {
            file: file.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Batches records into appends, keeping a few in flight.
struct Appender<'a> {
    log: &'a Log,
    batch: Vec<Bytes>,
    batch_bytes: usize,
    in_flight: std::collections::VecDeque<Ticket>,
    records: u64,
    payload_bytes: u64,
}

impl<'a> Appender<'a> {
    fn new(log: &'a Log) -> Appender<'a> {
        Appender {
            log,
            batch: Vec::new(),
            batch_bytes: 0,
            in_flight: Default::default(),
            records: 0,
            payload_bytes: 0,
        }
    }

    fn push(&mut self, payload: Bytes) -> Result<(), Error> {
        self.batch_bytes += payload.len();
        self.payload_bytes += payload.len() as u64;
        self.records += 1;
        self.batch.push(payload);
        if self.batch_bytes >= BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    fn send(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.in_flight.push_back(self.log.submit(batch)?);
        while self.in_flight.len() > IN_FLIGHT {
            self.in_flight
                .pop_front()
                .expect("queue is non-empty")
                .wait()?;
        }
        Ok(())
    }

    fn finish(mut self, files: usize) -> Result<Report, Error> {
        self.send()?;
        while let Some(t) = self.in_flight.pop_front() {
            t.wait()?;
        }
        Ok(Report {
            files,
            records: self.records,
            payload_bytes: self.payload_bytes,
            end: self.log.end(),
        })
    }
}

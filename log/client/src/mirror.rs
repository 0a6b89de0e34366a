//! A cache directory kept byte-identical to a server's log from streamed
//! records.
//!
//! Each `LogRecord` names its segment and offset, and the framing is
//! deterministic, so writing each record at its place reproduces the
//! server's segments exactly: when a record opens segment N+1, segment N is
//! complete, and is sealed under the same `NNNN.<sha224>.mutlog` name the
//! server gave it. The result is a log directory like any other, and the
//! `/logs` client and this mirror can take turns on one cache.
//!
//! A record already held (a resumed stream's overlap) is skipped; one that
//! would leave a gap is refused. The mirror does not fsync: it is a cache,
//! and a torn tail after a crash is cut by the next open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha224};

use almanac_log::framing;
use almanac_log::segment::{SegmentName, SegmentState, Sha224Digest};
use almanac_log::{Position, Snapshot};
use almanac_proto::pb::log::LogRecord;

/// Why a record could not be mirrored.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The cache could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The directory is not a readable log.
    #[error(transparent)]
    Snapshot(#[from] almanac_log::table::SnapshotError),
    /// The record does not continue the cache.
    #[error(
        "record at position {position} (segment {segment:04} offset {offset}) does not continue the cache, which ends at position {end} (segment {tail_segment:04} offset {tail_len})"
    )]
    Gap {
        /// The record's position.
        position: u64,
        /// Its segment.
        segment: u32,
        /// Its offset.
        offset: u64,
        /// The cache's end.
        end: u64,
        /// The cache's last segment.
        tail_segment: u32,
        /// Its length.
        tail_len: u64,
    },
}

/// Whether a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mirrored {
    /// Written; the cache now ends after it.
    Written,
    /// Already held (before the cache's end): skipped.
    AlreadyHeld,
}

/// Writes streamed records into a cache directory.
#[derive(Debug)]
pub struct Mirror {
    dir: PathBuf,
    /// The growing segment's number and length.
    tail_number: u32,
    tail_len: u64,
    /// Where the growing segment starts.
    tail_start: u64,
    file: Option<File>,
    hasher: Option<Sha224>,
    buf: Vec<u8>,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Mirror {
    /// Opens `dir` (created if missing) at its current end. A torn record at
    /// the end of the growing segment (an interrupted earlier mirror) is cut.
    pub fn open(dir: &Path) -> Result<Mirror, MirrorError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snapshot = Snapshot::open(dir)?;
        let table = snapshot.table();
        // Find where the last whole record ends.
        let mut reader = snapshot
            .read_from(table.tail().map_or(table.end(), |t| t.start))
            .map_err(|e| MirrorError::Io {
                path: dir.to_owned(),
                source: io::Error::other(e.to_string()),
            })?;
        for rec in reader.by_ref() {
            rec.map_err(|e| MirrorError::Io {
                path: dir.to_owned(),
                source: io::Error::other(e.to_string()),
            })?;
        }
        let end = reader.next_position();
        let (tail_number, tail_start) = match table.tail() {
            Some(t) => (t.number, t.start.0),
            None => (table.sealed().len() as u32, table.end().0),
        };
        let mirror = Mirror {
            dir: dir.to_owned(),
            tail_number,
            tail_len: end.0 - tail_start,
            tail_start,
            file: None,
            hasher: None,
            buf: Vec::new(),
        };
        if let Some(t) = table.tail()
            && t.len > mirror.tail_len
        {
            let f = OpenOptions::new()
                .write(true)
                .open(&t.path)
                .map_err(io_err(&t.path))?;
            f.set_len(mirror.tail_len).map_err(io_err(&t.path))?;
        }
        Ok(mirror)
    }

    /// The position the next record must have.
    pub fn end(&self) -> Position {
        Position(self.tail_start + self.tail_len)
    }

    fn growing_path(&self) -> PathBuf {
        self.dir.join(
            SegmentName {
                number: self.tail_number,
                state: SegmentState::Growing,
            }
            .file_name(),
        )
    }

    /// Writes one record at its place.
    pub fn write(&mut self, rec: &LogRecord) -> Result<Mirrored, MirrorError> {
        let end = self.end().0;
        if rec.position < end {
            return Ok(Mirrored::AlreadyHeld);
        }
        let gap = || MirrorError::Gap {
            position: rec.position,
            segment: rec.segment,
            offset: rec.offset,
            end,
            tail_segment: self.tail_number,
            tail_len: self.tail_len,
        };
        if rec.position != end {
            return Err(gap());
        }
        if rec.segment == self.tail_number + 1 && rec.offset == 0 && self.tail_len > 0 {
            self.seal()?;
        } else if rec.segment != self.tail_number || rec.offset != self.tail_len {
            return Err(gap());
        }
        self.buf.clear();
        framing::encode_record(&mut self.buf, rec.offset, &rec.mutation);
        let path = self.growing_path();
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .read(true)
                .open(&path)
                .map_err(io_err(&path))?;
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            unreachable!("opened above")
        };
        file.write_all(&self.buf).map_err(io_err(&path))?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&self.buf);
        }
        self.tail_len += self.buf.len() as u64;
        Ok(Mirrored::Written)
    }

    /// Seals the growing segment under its hash name.
    fn seal(&mut self) -> Result<(), MirrorError> {
        let path = self.growing_path();
        let digest = match self.hasher.take() {
            Some(h) => Sha224Digest::finish(h),
            None => {
                let mut f = File::open(&path).map_err(io_err(&path))?;
                f.seek(SeekFrom::Start(0)).map_err(io_err(&path))?;
                let mut h = Sha224::new();
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).map_err(io_err(&path))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                Sha224Digest::finish(h)
            }
        };
        self.file = None;
        let sealed = self.dir.join(
            SegmentName {
                number: self.tail_number,
                state: SegmentState::Sealed(digest),
            }
            .file_name(),
        );
        fs::rename(&path, &sealed).map_err(io_err(&sealed))?;
        self.tail_start += self.tail_len;
        self.tail_number += 1;
        self.tail_len = 0;
        self.hasher = Some(Sha224::new());
        Ok(())
    }
}

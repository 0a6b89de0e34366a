//! The log's derived index, in sled: per sealed segment, its file name,
//! length, record count and the first and last record times where known.
//!
//! Everything here can be rebuilt from the segment files, and is: an entry
//! whose file name or length no longer matches the directory is stale and is
//! recomputed on open; entries for segments that are gone are dropped. The
//! index lets opening a large log skip scanning every sealed segment and lets
//! `log info` answer without reading them.

use std::ops::ControlFlow;
use std::path::Path;

use prost::Message as _;
use prost_types::Timestamp;

use crate::scan::{self, Scan, ScanOptions};
use crate::table::{Position, SegmentMeta};

/// The index directory's name inside a log directory.
pub const INDEX_DIR: &str = "index.sled";

const SEGMENTS_TREE: &str = "segments/v2";

/// What the index knows about one sealed segment.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SegmentEntry {
    /// The segment's file name (which carries its hash).
    #[prost(string, tag = "1")]
    pub file_name: String,
    /// Its length in bytes.
    #[prost(uint64, tag = "2")]
    pub len: u64,
    /// Records in it.
    #[prost(uint64, tag = "3")]
    pub records: u64,
    /// Time of the first record that carries one.
    #[prost(message, optional, tag = "4")]
    pub first_time: Option<Timestamp>,
    /// Time of the last record that carries one.
    #[prost(message, optional, tag = "5")]
    pub last_time: Option<Timestamp>,
    /// Offset of its last record within the segment.
    #[prost(uint64, tag = "6")]
    pub last_record_offset: u64,
}

/// Statistics for one segment, from the index or a scan.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentStats {
    /// The segment.
    pub meta: SegmentMeta,
    /// Records in it.
    pub records: u64,
    /// Position of its last record, if it has any.
    pub last_record: Option<Position>,
    /// Time of the first record that carries one.
    pub first_time: Option<Timestamp>,
    /// Time of the last record that carries one.
    pub last_time: Option<Timestamp>,
}

/// Why the index could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// sled failed (or another process holds the index).
    #[error("log index: {0}")]
    Sled(#[from] sled::Error),
    /// A stored entry does not decode.
    #[error("log index entry for segment {segment:04} is unreadable: {source}")]
    Decode {
        /// The segment.
        segment: u32,
        /// The failure.
        source: prost::DecodeError,
    },
}

/// The sled-backed index of a log directory.
#[derive(Clone, Debug)]
pub struct Index {
    db: sled::Db,
    segments: sled::Tree,
}

/// How long [`Index::open`] waits out a lock that a just-closed index in this
/// process still holds.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Index {
    /// Opens (creating if needed) the index inside `dir`. Fails if another
    /// process has it open.
    ///
    /// The caller holds the log's directory lock, so no other writer can
    /// hold sled's own file lock. sled's background IO threads can keep that
    /// lock for a moment after a `Log` in this process was closed, though; a
    /// lock conflict is therefore retried for up to [`LOCK_WAIT`] before it
    /// is reported.
    pub fn open(dir: &Path) -> Result<Index, Error> {
        let started = std::time::Instant::now();
        loop {
            let opened = sled::Config::new()
                .path(dir.join(INDEX_DIR))
                .cache_capacity(8 << 20)
                .open();
            let db = match opened {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && started.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                other => other?,
            };
            let segments = db.open_tree(SEGMENTS_TREE)?;
            return Ok(Index { db, segments });
        }
    }

    /// Opens the index of `dir` only if it already exists.
    pub fn open_existing(dir: &Path) -> Result<Option<Index>, Error> {
        if !dir.join(INDEX_DIR).exists() {
            return Ok(None);
        }
        Index::open(dir).map(Some)
    }

    /// The entry for segment `number`, if any.
    pub fn get(&self, number: u32) -> Result<Option<SegmentEntry>, Error> {
        let Some(bytes) = self.segments.get(number.to_be_bytes())? else {
            return Ok(None);
        };
        SegmentEntry::decode(&bytes[..])
            .map(Some)
            .map_err(|source| Error::Decode {
                segment: number,
                source,
            })
    }

    /// Records an entry.
    pub fn put(&self, number: u32, entry: &SegmentEntry) -> Result<(), Error> {
        self.segments
            .insert(number.to_be_bytes(), entry.encode_to_vec())?;
        Ok(())
    }

    /// Drops entries for segments numbered `from` and up.
    pub fn remove_from(&self, from: u32) -> Result<(), Error> {
        for item in self.segments.range(from.to_be_bytes()..) {
            let (key, _) = item?;
            self.segments.remove(key)?;
        }
        Ok(())
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<(), Error> {
        self.db.flush()?;
        Ok(())
    }

    /// The entry for `meta` if it is present and still describes the file.
    pub fn fresh_entry(&self, meta: &SegmentMeta) -> Result<Option<SegmentEntry>, Error> {
        Ok(self
            .get(meta.number)?
            .filter(|e| e.file_name == meta.file_name() && e.len == meta.len))
    }
}

/// Scans a segment for its statistics: record count and record times.
/// Only the first records (until one carries a time) and the last few are
/// decoded, so this runs at framing speed. Payloads that do not decode
/// simply carry no time; verification reports them.
pub fn scan_stats(meta: &SegmentMeta) -> std::io::Result<(Scan, SegmentEntry)> {
    const TAIL: usize = 8;
    let mut entry = SegmentEntry {
        file_name: meta.file_name(),
        len: meta.len,
        ..SegmentEntry::default()
    };
    let mut last_offset = None;
    // The last few payloads, to find the last time without decoding all.
    let mut tail: Vec<Vec<u8>> = vec![Vec::new(); TAIL];
    let mut n = 0usize;
    let scan = scan::scan_file(
        &meta.path,
        ScanOptions {
            limit: Some(meta.len),
            ..ScanOptions::default()
        },
        |offset, payload| {
            last_offset = Some(offset);
            if entry.first_time.is_none() {
                entry.first_time = time_of(payload);
            }
            let slot = &mut tail[n % TAIL];
            slot.clear();
            slot.extend_from_slice(payload);
            n += 1;
            ControlFlow::Continue(())
        },
    )?;
    entry.last_time = (0..n.min(TAIL))
        .map(|back| &tail[(n - 1 - back) % TAIL])
        .find_map(|payload| time_of(payload));
    entry.records = scan.records;
    entry.last_record_offset = last_offset.unwrap_or(0);
    Ok((scan, entry))
}

fn time_of(payload: &[u8]) -> Option<Timestamp> {
    almanac_proto::pb::maintpb::Mutation::decode(payload)
        .ok()
        .and_then(|m| almanac_proto::summary::record_time(&m))
}

impl SegmentStats {
    /// Stats from an index entry.
    pub fn from_entry(meta: SegmentMeta, entry: &SegmentEntry) -> SegmentStats {
        SegmentStats {
            last_record: (entry.records > 0)
                .then_some(Position(meta.start.0 + entry.last_record_offset)),
            records: entry.records,
            first_time: entry.first_time,
            last_time: entry.last_time,
            meta,
        }
    }
}

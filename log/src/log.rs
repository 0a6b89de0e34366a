//! Opening a log for appending: the lock, recovery, the index, and the
//! handle through which records are appended, read and followed.
//!
//! Recovery on open, in order:
//! 1. Take the directory's writer lock.
//! 2. List the segments; a gap, a duplicate or a misplaced growing segment
//!    is corruption.
//! 3. Check each sealed segment's framing, unless the index already holds a
//!    fresh entry for it (same file name and length), and record what the
//!    scan learned in the index.
//! 4. Scan the growing segment. Bytes after the last whole record that are
//!    an incomplete record, or only zeros, are a torn tail: they are copied
//!    to `recovered/`, cut, and reported. Anything else malformed is
//!    corruption: opening fails with [`Error::Corrupt`] and appends are
//!    refused until `almanac log repair` has run.

use std::fs::{self, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sha2::{Digest as _, Sha224};
use tokio::sync::{oneshot, watch};

use crate::append::{
    self, CommitTimes, Metrics, MetricsSnapshot, Request, Sealed, Tail, Ticket, Writer,
};
use crate::follow::Follower;
use crate::framing::{self, Frame};
use crate::index::{self, Index, SegmentStats};
use crate::lock::{DirLock, LockError};
use crate::read::{self, Reader};
use crate::scan::{self, ScanOptions};
use crate::segment::{self, LayoutError, SegmentState};
use crate::table::{Position, SegmentMeta, SegmentTable, Snapshot};

/// Tuning for an open log.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seal a segment when the next record would take it past this many
    /// bytes. Go's value, 16 MiB, unless a test wants small segments.
    pub segment_target_len: u64,
    /// The largest record accepted.
    pub max_record_len: u64,
    /// Roughly how many payload bytes one group commit gathers.
    pub max_batch_bytes: usize,
    /// Keep the sled index (`index.sled`). Without it every open scans every
    /// sealed segment's framing.
    pub use_index: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            segment_target_len: segment::SEGMENT_TARGET_LEN,
            max_record_len: 256 << 20,
            max_batch_bytes: 8 << 20,
            use_index: true,
        }
    }
}

/// Why a log could not be opened for appending.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory or a segment could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// Another writer has the log open.
    #[error(transparent)]
    Locked(#[from] LockError),
    /// A malformed record or segment layout. Appends are refused until
    /// `almanac log repair` has run.
    #[error(
        "corrupt log in {dir}: segment {segment:04} offset {offset}: {reason}; run `almanac log repair {dir}` (it keeps a copy of what it cuts)"
    )]
    Corrupt {
        /// The log directory.
        dir: PathBuf,
        /// Segment number.
        segment: u32,
        /// Offset within the segment.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds Go disk-logger files, not segments.
    #[error(
        "{dir} holds Go maintner disk-logger files ({count} maintner-*.mutlog), not a segmented log; use `almanac log import NEW_DIR {dir}`"
    )]
    GoDiskLog {
        /// The directory.
        dir: PathBuf,
        /// How many such files.
        count: usize,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] index::Error),
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// A torn tail that was cut.
    pub torn_tail: Option<CutTail>,
    /// Sealed segments whose framing was checked because the index had no
    /// fresh entry for them.
    pub scanned_segments: Vec<u32>,
    /// Growing files superseded by a sealed file of the same number.
    pub stale_growing: Vec<PathBuf>,
}

/// A torn tail cut during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutTail {
    /// The growing segment.
    pub segment: u32,
    /// Where it was cut (the start of the incomplete record).
    pub offset: u64,
    /// Bytes cut.
    pub len: u64,
    /// Where a copy of the cut bytes was kept.
    pub saved_to: PathBuf,
}

/// An open log: the only writer of its directory.
///
/// Cloning is cheap; all clones share one writer. The writer thread stops
/// when the last clone is dropped or [`Log::close`] is called.
#[derive(Clone, Debug)]
pub struct Log {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    opts: Options,
    table_rx: watch::Receiver<Arc<SegmentTable>>,
    submit: Mutex<Option<mpsc::Sender<Request>>>,
    failure: Arc<Mutex<Option<String>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Dropped on close, releasing sled's own lock with ours.
    index: Mutex<Option<Index>>,
    metrics: Arc<Metrics>,
    commit_times: Arc<CommitTimes>,
    lock: Mutex<Option<DirLock>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Request({} records)", self.records.len())
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir` for appending, recovering
    /// its tail.
    pub fn open(dir: &Path, opts: Options) -> Result<(Log, Recovery), Error> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = DirLock::acquire(dir)?;
        let layout = segment::scan_dir(dir)
            .map_err(io_err(dir))?
            .map_err(|e: LayoutError| Error::Corrupt {
                dir: dir.to_owned(),
                segment: e.segment(),
                offset: 0,
                reason: e.to_string(),
            })?;
        if layout.segments.is_empty() && !layout.disk_logger_files.is_empty() {
            return Err(Error::GoDiskLog {
                dir: dir.to_owned(),
                count: layout.disk_logger_files.len(),
            });
        }
        let index = if opts.use_index {
            Some(Index::open(dir)?)
        } else {
            None
        };
        let table = SegmentTable::from_layout(&layout);
        let mut recovery = Recovery {
            stale_growing: layout.stale_growing.clone(),
            ..Recovery::default()
        };

        // Sealed segments: trust fresh index entries, scan the rest.
        for meta in table.sealed().iter() {
            if let Some(index) = &index
                && index.fresh_entry(meta)?.is_some()
            {
                continue;
            }
            tracing::info!(
                segment = meta.number,
                "checking sealed segment (no fresh index entry)"
            );
            let (scan, entry) = index::scan_stats(meta).map_err(io_err(&meta.path))?;
            if let Some(err) = scan.end.as_frame_error() {
                return Err(Error::Corrupt {
                    dir: dir.to_owned(),
                    segment: meta.number,
                    offset: err.offset,
                    reason: err.to_string(),
                });
            }
            if let Some(index) = &index {
                index.put(meta.number, &entry)?;
            }
            recovery.scanned_segments.push(meta.number);
        }
        if !recovery.scanned_segments.is_empty() {
            tracing::info!(
                segments = recovery.scanned_segments.len(),
                "checked sealed segments the index did not know and indexed them"
            );
        }
        if let Some(index) = &index {
            index.remove_from(table.sealed().len() as u32)?;
            index.flush()?;
        }

        // The growing segment: recover a torn tail.
        let mut tail = None;
        if let Some(meta) = table.tail() {
            let (t, cut) = recover_tail(dir, meta)?;
            recovery.torn_tail = cut;
            tail = Some(t);
        }
        if let Some(cut) = &recovery.torn_tail {
            tracing::warn!(
                segment = cut.segment,
                offset = cut.offset,
                len = cut.len,
                saved_to = %cut.saved_to.display(),
                "cut a torn tail"
            );
        }

        let sealed = table.sealed().clone();
        let next_number = table.len() as u32;
        let tail_meta = tail.as_ref().map(|t: &Tail| SegmentMeta {
            number: t.number,
            state: SegmentState::Growing,
            path: t.path.clone(),
            start: t.start,
            len: t.len,
        });
        let (table_tx, table_rx) =
            watch::channel(Arc::new(SegmentTable::new(sealed.clone(), tail_meta)));
        let failure = Arc::new(Mutex::new(None));
        let metrics = Arc::new(Metrics::default());
        let commit_times = Arc::new(CommitTimes::default());
        let mut threads = Vec::new();
        let sealed_tx = if let Some(index) = &index {
            let (tx, rx) = mpsc::channel::<Sealed>();
            let index = index.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("almanac-log-index".into())
                    .spawn(move || run_indexer(index, rx))
                    .map_err(io_err(dir))?,
            );
            Some(tx)
        } else {
            None
        };
        let writer = Writer {
            dir: dir.to_owned(),
            segment_target_len: opts.segment_target_len,
            max_batch_bytes: opts.max_batch_bytes,
            next_number: tail.as_ref().map_or(next_number, |t| t.number + 1),
            tail,
            sealed,
            table_tx,
            failure: failure.clone(),
            sealed_tx,
            buf: Vec::with_capacity(1 << 20),
            metrics: metrics.clone(),
            commit_times: commit_times.clone(),
        };
        // Records before this end were appended before this open: unknown.
        commit_times.record(writer.table_tx.borrow().end(), std::time::SystemTime::now());
        let (tx, rx) = mpsc::channel();
        threads.push(
            std::thread::Builder::new()
                .name("almanac-log-writer".into())
                .spawn(move || writer.run(rx))
                .map_err(io_err(dir))?,
        );
        let log = Log {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                opts,
                table_rx,
                submit: Mutex::new(Some(tx)),
                failure,
                threads: Mutex::new(threads),
                index: Mutex::new(index),
                metrics,
                commit_times,
                lock: Mutex::new(Some(lock)),
            }),
        };
        Ok((log, recovery))
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Queues records for appending and returns at once. The ticket resolves
    /// to their positions once they are durable. Records from one call are
    /// contiguous and in order; calls are ordered as they reach the writer.
    pub fn submit(&self, records: Vec<Bytes>) -> Result<Ticket, append::Error> {
        let max = self.shared.opts.max_record_len;
        if let Some((index, r)) = records
            .iter()
            .enumerate()
            .find(|(_, r)| r.len() as u64 > max)
        {
            return Err(append::Error::TooLarge {
                index,
                len: r.len() as u64,
                max,
            });
        }
        self.check_failure()?;
        let (reply, rx) = oneshot::channel();
        let guard = self
            .shared
            .submit
            .lock()
            .expect("submit lock is never poisoned");
        let Some(sender) = guard.as_ref() else {
            return Err(append::Error::Closed);
        };
        if sender.send(Request { records, reply }).is_err() {
            drop(guard);
            self.check_failure()?;
            return Err(append::Error::Closed);
        }
        Ok(Ticket(rx))
    }

    /// Appends and waits until the records are durable.
    pub async fn append(&self, records: Vec<Bytes>) -> Result<Vec<Position>, append::Error> {
        self.submit(records)?.await
    }

    /// Appends and blocks until the records are durable. Do not call from
    /// inside an async runtime; use [`Log::append`] there.
    pub fn append_blocking(&self, records: Vec<Bytes>) -> Result<Vec<Position>, append::Error> {
        self.submit(records)?.wait()
    }

    fn check_failure(&self) -> Result<(), append::Error> {
        match &*self
            .shared
            .failure
            .lock()
            .expect("failure lock is never poisoned")
        {
            Some(reason) => Err(append::Error::Failed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Counters of the write path since open.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// When the record at `position` became durable, if it was appended
    /// recently (since this open, within the last few thousand commits).
    pub fn append_time(&self, position: Position) -> Option<std::time::SystemTime> {
        self.shared.commit_times.of(position)
    }

    /// The durable end: the position the next record will get.
    pub fn end(&self) -> Position {
        self.shared.table_rx.borrow().end()
    }

    /// The durable segment table.
    pub fn table(&self) -> Arc<SegmentTable> {
        self.shared.table_rx.borrow().clone()
    }

    /// A read-only snapshot of what is durable now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            dir: self.shared.dir.clone(),
            table: self.table(),
            stale_growing: Vec::new(),
            may_end_mid_record: false,
        }
    }

    /// Reads the durable records from `from` on (as of now).
    pub fn read_from(&self, from: Position) -> Result<Reader, read::Error> {
        self.snapshot().read_from(from)
    }

    /// Follows the log from `from`: every durable record, then each new one
    /// as soon as it is durable. The follower wakes on appends; it never
    /// polls.
    pub fn follow(&self, from: Position) -> Result<Follower, read::Error> {
        let mut rx = self.shared.table_rx.clone();
        let table = rx.borrow_and_update().clone();
        let reader = Reader::new(&self.shared.dir, table, from, false)?;
        Ok(Follower::new(reader, rx))
    }

    /// A receiver that changes whenever the durable end moves.
    pub fn watch(&self) -> watch::Receiver<Arc<SegmentTable>> {
        self.shared.table_rx.clone()
    }

    /// Per-segment statistics: from the index for sealed segments it knows,
    /// by scanning for the others.
    pub fn stats(&self) -> Result<Vec<SegmentStats>, Error> {
        let index = self
            .shared
            .index
            .lock()
            .expect("index lock is never poisoned")
            .clone();
        segment_stats(&self.table(), index.as_ref())
    }

    /// Stops accepting appends, finishes the queued ones, waits for the
    /// writer to exit and releases the directory's lock. Other clones see
    /// [`append::Error::Closed`]; followers end after the last durable record.
    pub fn close(&self) {
        self.shared.close();
    }
}

impl Shared {
    fn close(&self) {
        drop(
            self.submit
                .lock()
                .expect("submit lock is never poisoned")
                .take(),
        );
        let threads: Vec<_> = self
            .threads
            .lock()
            .expect("threads lock is never poisoned")
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
        if let Some(index) = self
            .index
            .lock()
            .expect("index lock is never poisoned")
            .take()
        {
            let _ = index.flush();
        }
        drop(
            self.lock
                .lock()
                .expect("lock mutex is never poisoned")
                .take(),
        );
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close();
    }
}

/// Statistics for every segment of `table`, from `index` where it is fresh.
pub fn segment_stats(
    table: &SegmentTable,
    index: Option<&Index>,
) -> Result<Vec<SegmentStats>, Error> {
    let mut out = Vec::with_capacity(table.len());
    for meta in table.segments() {
        if matches!(meta.state, SegmentState::Sealed(_))
            && let Some(index) = index
            && let Some(entry) = index.fresh_entry(meta)?
        {
            out.push(SegmentStats::from_entry(meta.clone(), &entry));
            continue;
        }
        let (_, entry) = index::scan_stats(meta).map_err(io_err(&meta.path))?;
        out.push(SegmentStats::from_entry(meta.clone(), &entry));
    }
    Ok(out)
}

fn run_indexer(index: Index, rx: mpsc::Receiver<Sealed>) {
    while let Ok(sealed) = rx.recv() {
        let number = sealed.meta.number;
        let res = index::scan_stats(&sealed.meta)
            .map_err(|e| e.to_string())
            .and_then(|(_, entry)| index.put(number, &entry).map_err(|e| e.to_string()))
            .and_then(|()| index.flush().map_err(|e| e.to_string()));
        if let Err(error) = res {
            // The index is derived: the next open rebuilds what is missing.
            tracing::warn!(segment = number, %error, "could not index sealed segment");
        }
    }
}

/// Scans the growing segment, cuts a torn tail, and opens it for appending.
fn recover_tail(dir: &Path, meta: &SegmentMeta) -> Result<(Tail, Option<CutTail>), Error> {
    let mut hasher = Sha224::new();
    let scan = scan::scan_file(&meta.path, ScanOptions::default(), |_, _| {
        ControlFlow::Continue(())
    })
    .map_err(io_err(&meta.path))?;
    let corrupt = |offset: u64, reason: String| Error::Corrupt {
        dir: dir.to_owned(),
        segment: meta.number,
        offset,
        reason,
    };
    let mut cut = None;
    if scan.end.is_torn_tail() {
        // A torn tail is only ever the last record written. A whole record
        // further on means the "incomplete" one is damage (say, a flipped
        // bit in a length), which must not silently cut good records.
        if let Some(later) = later_record(&meta.path, scan.valid_len).map_err(io_err(&meta.path))? {
            return Err(corrupt(
                scan.valid_len,
                format!(
                    "the record at offset {} runs past the end of the segment, but a whole record starts at offset {later} inside it",
                    scan.valid_len
                ),
            ));
        }
        let saved_to = save_cut(dir, meta, scan.valid_len)?;
        let file = OpenOptions::new()
            .write(true)
            .open(&meta.path)
            .map_err(io_err(&meta.path))?;
        file.set_len(scan.valid_len).map_err(io_err(&meta.path))?;
        cut = Some(CutTail {
            segment: meta.number,
            offset: scan.valid_len,
            len: scan.file_len - scan.valid_len,
            saved_to,
        });
    } else if let Some(error) = scan.end.as_frame_error() {
        return Err(corrupt(error.offset, error.to_string()));
    }
    // Whatever the tail holds now is served as durable, so make it so: a
    // writer killed between write and fsync leaves whole records that only
    // the page cache holds.
    fs::File::open(&meta.path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(&meta.path))?;
    segment::sync_dir(dir).map_err(io_err(dir))?;
    // Hash the durable prefix for the seal to come.
    let mut file = fs::File::open(&meta.path).map_err(io_err(&meta.path))?;
    let mut limited = (&mut file).take(scan.valid_len);
    io::copy(&mut limited, &mut HashWriter(&mut hasher)).map_err(io_err(&meta.path))?;
    let file = append::open_tail(&meta.path).map_err(io_err(&meta.path))?;
    Ok((
        Tail {
            file,
            number: meta.number,
            path: meta.path.clone(),
            start: meta.start,
            len: scan.valid_len,
            hasher,
        },
        cut,
    ))
}

/// The offset of the first whole, correctly placed record that starts after
/// `offset` in the file, if any.
fn later_record(path: &Path, offset: u64) -> io::Result<Option<u64>> {
    let mut file = fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset + 1))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)?;
    let mut at = 0;
    while let Some(i) = rest[at..].windows(4).position(|w| w == b"REC@") {
        let pos = at + i;
        let abs = offset + 1 + pos as u64;
        if let Ok(Frame::Record { .. }) = framing::parse(&rest[pos..], abs) {
            return Ok(Some(abs));
        }
        at = pos + 1;
    }
    Ok(None)
}

struct HashWriter<'a>(&'a mut Sha224);

impl io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies the bytes of `meta` from `offset` on into `dir/recovered/`.
fn save_cut(dir: &Path, meta: &SegmentMeta, offset: u64) -> Result<PathBuf, Error> {
    let recovered = dir.join("recovered");
    if !recovered.is_dir() {
        fs::create_dir_all(&recovered).map_err(io_err(&recovered))?;
        segment::sync_dir(dir).map_err(io_err(dir))?;
    }
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let stem = format!("{:04}.torn-at-{offset}.{stamp}.bin", meta.number);
    let (mut out, dest) =
        segment::create_unique_file(&recovered, &stem).map_err(io_err(&recovered))?;
    let mut src = fs::File::open(&meta.path).map_err(io_err(&meta.path))?;
    src.seek(SeekFrom::Start(offset))
        .map_err(io_err(&meta.path))?;
    io::copy(&mut src, &mut out).map_err(io_err(&dest))?;
    out.flush().map_err(io_err(&dest))?;
    out.sync_all().map_err(io_err(&dest))?;
    segment::sync_dir(&recovered).map_err(io_err(&recovered))?;
    Ok(dest)
}

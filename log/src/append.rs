//! Durable appends with group commit: the writer thread.
//!
//! The write path, in order:
//! 1. `Log::submit` checks the records' sizes and queues them with a reply
//!    channel. Nothing is acknowledged yet.
//! 2. The writer thread takes every queued request (up to a byte budget) as
//!    one batch and frames the records into one buffer, offsets continuing
//!    the growing segment.
//! 3. If a record would take a non-empty segment past 16 MiB, the buffer so
//!    far is written, the segment is fsynced, renamed to its sealed name
//!    `NNNN.<sha224>.mutlog`, the directory is fsynced, and a new growing
//!    segment (created, directory fsynced) takes the rest.
//! 4. The buffer is written to the growing file in place (never rewritten)
//!    and `fdatasync`ed once for the whole batch: concurrent appenders share
//!    one fsync.
//! 5. Only then is the new segment table published (readers and followers
//!    wake) and each request acknowledged with its records' positions.
//!
//! Any IO failure stops the writer for good: the batch and everything queued
//! after it fail with [`Error::Failed`], nothing more is written, and the log
//! must be reopened (which recovers the tail). This is deliberate: after a
//! failed fsync the page cache cannot be trusted to hold what was written.
//! `Failed` means "outcome unknown", not "not written": records of a failed
//! batch that a seal had already made durable stay in the log, as may whole
//! records that reached the disk anyway. An appender that retries must be
//! able to recognise its own records (maintner's mutations are idempotent
//! updates, and farm events carry an `event_id`).

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use sha2::{Digest as _, Sha224};
use tokio::sync::{oneshot, watch};

use crate::framing;
use crate::segment::{self, SegmentName, SegmentState, Sha224Digest};
use crate::table::{Position, SegmentMeta, SegmentTable};

/// Why an append was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A record is larger than the log accepts.
    #[error("record {index} is {len} bytes; the largest accepted is {max}")]
    TooLarge {
        /// Which record of the request.
        index: usize,
        /// Its length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The writer hit an IO error and stopped; reopen the log.
    #[error("the log writer stopped after an IO error and accepts no more appends: {reason}")]
    Failed {
        /// The IO error.
        reason: String,
    },
    /// The log was closed.
    #[error("the log is closed")]
    Closed,
}

/// Counters of the write path, for metrics and tests.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Append requests acknowledged.
    pub requests: AtomicU64,
    /// Records acknowledged.
    pub records: AtomicU64,
    /// Framed bytes made durable.
    pub bytes: AtomicU64,
    /// Group commits (one fdatasync each).
    pub commits: AtomicU64,
    /// Segments sealed.
    pub seals: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Append requests acknowledged.
    pub requests: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Framed bytes made durable.
    pub bytes: u64,
    /// Group commits (one fdatasync each).
    pub commits: u64,
    /// Segments sealed.
    pub seals: u64,
}

impl Metrics {
    /// Reads every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            seals: self.seals.load(Ordering::Relaxed),
        }
    }
}

/// A queued append: records and where to send their positions.
pub(crate) struct Request {
    pub(crate) records: Vec<Bytes>,
    pub(crate) reply: oneshot::Sender<Result<Vec<Position>, Error>>,
}

/// An append in flight. Resolves to the records' positions once they are on
/// disk: `.await` it, or call [`Ticket::wait`] from a thread that is not
/// running an async runtime.
#[derive(Debug)]
pub struct Ticket(pub(crate) oneshot::Receiver<Result<Vec<Position>, Error>>);

impl Ticket {
    /// Blocks until the append is durable (or failed).
    pub fn wait(self) -> Result<Vec<Position>, Error> {
        self.0.blocking_recv().unwrap_or(Err(Error::Closed))
    }
}

impl Future for Ticket {
    type Output = Result<Vec<Position>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

/// The growing segment the writer appends to.
pub(crate) struct Tail {
    pub(crate) file: File,
    pub(crate) number: u32,
    pub(crate) path: PathBuf,
    pub(crate) start: Position,
    /// Durable bytes in the file.
    pub(crate) len: u64,
    /// Running hash of those bytes.
    pub(crate) hasher: Sha224,
}

/// A segment just sealed, for the indexer.
pub(crate) struct Sealed {
    pub(crate) meta: SegmentMeta,
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) segment_target_len: u64,
    pub(crate) max_batch_bytes: usize,
    pub(crate) tail: Option<Tail>,
    pub(crate) next_number: u32,
    pub(crate) sealed: Arc<Vec<SegmentMeta>>,
    pub(crate) table_tx: watch::Sender<Arc<SegmentTable>>,
    pub(crate) failure: Arc<Mutex<Option<String>>>,
    pub(crate) sealed_tx: Option<mpsc::Sender<Sealed>>,
    pub(crate) buf: Vec<u8>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) commit_times: Arc<CommitTimes>,
}

/// When recent group commits became durable: `(end position, time)` for
/// the last [`CommitTimes::KEPT`] commits, so a server can tell a live
/// subscriber when each record was appended.
#[derive(Debug, Default)]
pub struct CommitTimes {
    recent: Mutex<std::collections::VecDeque<(Position, std::time::SystemTime)>>,
}

impl CommitTimes {
    /// How many commits are remembered.
    pub const KEPT: usize = 4096;

    /// Notes that everything before `end` was durable at `at` (a commit, or
    /// the log's end when it was opened).
    pub(crate) fn record(&self, end: Position, at: std::time::SystemTime) {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == Self::KEPT {
            recent.pop_front();
        }
        recent.push_back((end, at));
    }

    /// When the record at `position` became durable, if its commit is
    /// recent enough to be remembered.
    pub fn of(&self, position: Position) -> Option<std::time::SystemTime> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        // The first commit ending after the position holds the record.
        let idx = recent.partition_point(|(end, _)| *end <= position);
        // A record before the oldest remembered commit's batch is unknown:
        // that commit's batch may have started earlier.
        if idx == 0 || idx >= recent.len() {
            return None;
        }
        Some(recent[idx].1)
    }
}

impl Writer {
    /// Serves requests until every sender is gone or an IO error stops it.
    pub(crate) fn run(mut self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut bytes: usize = first.records.iter().map(Bytes::len).sum();
            let mut batch = vec![first];
            while bytes < self.max_batch_bytes {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.records.iter().map(Bytes::len).sum::<usize>();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            let end_before = self.table_tx.borrow().end();
            match self.write_batch(&batch) {
                Ok(positions) => {
                    self.publish_commit();
                    let m = &self.metrics;
                    let records: usize = batch.iter().map(|r| r.records.len()).sum();
                    m.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    m.records.fetch_add(records as u64, Ordering::Relaxed);
                    m.commits.fetch_add(1, Ordering::Relaxed);
                    let end_after = self.table_tx.borrow().end();
                    m.bytes
                        .fetch_add(end_after.0 - end_before.0, Ordering::Relaxed);
                    for (req, pos) in batch.into_iter().zip(positions) {
                        let _ = req.reply.send(Ok(pos));
                    }
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(error = %reason, dir = %self.dir.display(), "log writer stopped");
                    *self.failure.lock().expect("failure lock is never poisoned") =
                        Some(reason.clone());
                    let fail = || {
                        Err(Error::Failed {
                            reason: reason.clone(),
                        })
                    };
                    for req in batch {
                        let _ = req.reply.send(fail());
                    }
                    // Publish what is durable (a seal may have completed).
                    self.publish_durable_only();
                    while let Ok(req) = rx.recv() {
                        let _ = req.reply.send(fail());
                    }
                    return;
                }
            }
        }
        if let Some(tail) = &self.tail {
            // Every acknowledged byte is already synced; this is belt and braces.
            let _ = tail.file.sync_data();
        }
    }

    /// Frames and writes a batch; returns each request's positions.
    fn write_batch(&mut self, batch: &[Request]) -> io::Result<Vec<Vec<Position>>> {
        self.buf.clear();
        let mut out = Vec::with_capacity(batch.len());
        for req in batch {
            let mut positions = Vec::with_capacity(req.records.len());
            for payload in &req.records {
                if self.tail.is_none() {
                    self.create_tail()?;
                }
                let tail = self.tail.as_ref().expect("created above");
                let mut offset = tail.len + self.buf.len() as u64;
                let len = framing::record_len(offset, payload.len() as u64);
                if offset > 0 && offset + len > self.segment_target_len {
                    self.flush_buf()?;
                    self.seal()?;
                    self.create_tail()?;
                    offset = 0;
                }
                let tail = self.tail.as_ref().expect("present after sealing");
                positions.push(Position(tail.start.0 + offset));
                framing::encode_record(&mut self.buf, offset, payload);
            }
            out.push(positions);
        }
        self.flush_buf()?;
        if let Some(tail) = &self.tail {
            tail.file.sync_data()?;
        }
        Ok(out)
    }

    /// Writes the buffer to the growing file (not yet synced).
    fn flush_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let tail = self
            .tail
            .as_mut()
            .expect("a tail exists while the buffer holds records");
        tail.file.write_all(&self.buf)?;
        tail.hasher.update(&self.buf);
        tail.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn create_tail(&mut self) -> io::Result<()> {
        let number = self.next_number;
        let start = self.sealed.last().map_or(Position(0), SegmentMeta::end);
        let path = self.dir.join(
            SegmentName {
                number,
                state: SegmentState::Growing,
            }
            .file_name(),
        );
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        segment::sync_dir(&self.dir)?;
        self.tail = Some(Tail {
            file,
            number,
            path,
            start,
            len: 0,
            hasher: Sha224::new(),
        });
        self.next_number = number + 1;
        Ok(())
    }

    /// Seals the growing segment: fsync, rename to its hash name, fsync dir.
    fn seal(&mut self) -> io::Result<()> {
        let tail = self.tail.take().expect("sealing needs a tail");
        tail.file.sync_all()?;
        let sha = Sha224Digest::finish(tail.hasher);
        let name = SegmentName {
            number: tail.number,
            state: SegmentState::Sealed(sha),
        };
        let sealed_path = self.dir.join(name.file_name());
        fs::rename(&tail.path, &sealed_path)?;
        segment::sync_dir(&self.dir)?;
        let meta = SegmentMeta {
            number: tail.number,
            state: SegmentState::Sealed(sha),
            path: sealed_path,
            start: tail.start,
            len: tail.len,
        };
        let mut sealed = Vec::clone(&self.sealed);
        sealed.push(meta.clone());
        self.sealed = Arc::new(sealed);
        self.metrics.seals.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(segment = tail.number, len = tail.len, sha224 = %sha, "sealed segment");
        if let Some(tx) = &self.sealed_tx {
            let _ = tx.send(Sealed { meta });
        }
        Ok(())
    }

    fn tail_meta(&self) -> Option<SegmentMeta> {
        self.tail.as_ref().map(|t| SegmentMeta {
            number: t.number,
            state: SegmentState::Growing,
            path: t.path.clone(),
            start: t.start,
            len: t.len,
        })
    }

    /// Publishes a batch that just became durable, noting when.
    fn publish_commit(&self) {
        let table = SegmentTable::new(self.sealed.clone(), self.tail_meta());
        self.commit_times
            .record(table.end(), std::time::SystemTime::now());
        self.table_tx.send_replace(Arc::new(table));
    }

    /// After a failure: publish sealed segments, and the tail only up to what
    /// the last successful batch made durable.
    fn publish_durable_only(&self) {
        let durable_end = self.table_tx.borrow().end();
        let tail = self.tail_meta().map(|mut t| {
            t.len = durable_end.0.saturating_sub(t.start.0).min(t.len);
            t
        });
        let table = SegmentTable::new(self.sealed.clone(), tail);
        if table.end() >= durable_end {
            self.table_tx.send_replace(Arc::new(table));
        }
    }
}

/// Opens an existing growing segment for appending.
pub(crate) fn open_tail(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).append(true).open(path)
}

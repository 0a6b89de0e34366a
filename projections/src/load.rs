//! Loading a corpus from a log directory, godata-style: the one module of
//! this crate that does IO.
//!
//! [`Corpus::open`] folds a whole log directory and returns when caught up;
//! [`Corpus::update`] folds what was appended since. Records are read and
//! decoded in numbered batches on threads of their own (one per core but
//! one, from one to three) and applied in log order on the caller's thread,
//! which decodes a batch itself when none is ready; so decoding and folding
//! overlap and no core waits. A record that does not decode stops the load with
//! its position, unless [`LoadOptions::skip_undecodable`] is set (then it is
//! counted in [`Skipped::undecodable_records`](crate::corpus::Skipped)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use almanac_log::mapped::{Cursor, SegmentMaps};
use almanac_log::read::{Reader, Record as LogRecord};
use almanac_log::{Position, Snapshot};
use almanac_proto::pb::maintpb::Mutation;
use prost::Message as _;

use bytes::Bytes;

use crate::corpus::{CommitKeys, Corpus, IssueParts, Prepared, PreparedRange, wire};

/// Progress through a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Where the fold is.
    pub position: Position,
    /// Where the log ends.
    pub end: Position,
    /// Records folded so far in this load.
    pub records: u64,
}

/// How to load.
#[derive(Default)]
pub struct LoadOptions<'a> {
    /// Skip (and count) records that do not decode instead of failing.
    pub skip_undecodable: bool,
    /// Called now and then with the progress (about every 100 ms).
    pub progress: Option<Box<dyn FnMut(Progress) + 'a>>,
}

impl std::fmt::Debug for LoadOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadOptions")
            .field("skip_undecodable", &self.skip_undecodable)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Why a load failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory is not a readable log.
    #[error(transparent)]
    Snapshot(#[from] almanac_log::table::SnapshotError),
    /// Reading failed (IO or a malformed record).
    #[error(transparent)]
    Read(#[from] almanac_log::read::Error),
    /// A record does not decode.
    #[error("record at position {position} does not decode as maintpb.Mutation: {source}")]
    Undecodable {
        /// Where.
        position: Position,
        /// Why.
        source: prost::DecodeError,
    },
    /// The log no longer extends what this corpus folded (it was cut by a
    /// repair, or replaced): load a new corpus.
    #[error("the log in {dir} no longer extends the folded history at position {position}: {why}")]
    Split {
        /// The directory.
        dir: PathBuf,
        /// The corpus's position.
        position: Position,
        /// What changed.
        why: String,
    },
    /// A segment could not be memory-mapped.
    #[error(transparent)]
    Map(#[from] almanac_log::mapped::Error),
    /// Talking to a server failed.
    #[error(transparent)]
    Net(#[from] almanac_log_client::NetError),
    /// A subscription or network set-up failed.
    #[error("{0}")]
    Network(String),
    /// [`Corpus::update`] on a corpus that was not loaded from a directory.
    #[error("this corpus was not loaded from a log directory")]
    NoSource,
}

/// Where a corpus came from, to update it later.
#[derive(Debug, Clone, Default)]
pub(crate) struct Source {
    pub(crate) dir: PathBuf,
    /// File names of the sealed segments wholly folded (their names carry
    /// their hashes, so a changed history shows).
    pub(crate) sealed: Vec<String>,
}

/// Records decoded per batch handed to the folding thread.
const BATCH: usize = 2048;

/// Decoded batches queued for the folding thread.
const IN_FLIGHT: usize = 8;

/// How many bytes of folded records' mapped pages are released at a time.
const RELEASE_STEP: u64 = 8 << 20;

impl Corpus {
    /// Folds the whole log in `dir` and returns when caught up.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use almanac_projections::corpus::Corpus;
    /// use almanac_projections::load::godata_dir;
    ///
    /// let dir = godata_dir().ok_or("no home directory")?;
    /// let mut corpus = Corpus::open(&dir)?;
    /// if let Some(go) = corpus.github().repo("golang", "go") {
    ///     let open = go.issues().filter(|i| !i.closed()).count();
    ///     println!("golang/go has {open} open issues");
    /// }
    /// let folded = corpus.update()?; // what was appended since
    /// println!("{folded} more records");
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(dir: &Path) -> Result<Corpus, LoadError> {
        Corpus::open_with(dir, LoadOptions::default())
    }

    /// [`Corpus::open`] with options.
    pub fn open_with(dir: &Path, opts: LoadOptions<'_>) -> Result<Corpus, LoadError> {
        let mut corpus = Corpus::new();
        // Kept absolute: a checkpoint records it and may be reopened from
        // another working directory.
        let dir = dir
            .canonicalize()
            .or_else(|_| std::path::absolute(dir))
            .unwrap_or_else(|_| dir.to_owned());
        corpus.source = Some(Source {
            dir,
            sealed: Vec::new(),
        });
        corpus.update_with(opts)?;
        Ok(corpus)
    }

    /// The log directory this corpus was folded from (absolute), which
    /// [`Corpus::update`] reads.
    pub fn log_dir(&self) -> Option<&Path> {
        self.source.as_ref().map(|s| s.dir.as_path())
    }

    /// Folds what was appended to the log since the last load or update;
    /// returns how many records were folded.
    pub fn update(&mut self) -> Result<u64, LoadError> {
        self.update_with(LoadOptions::default())
    }

    /// [`Corpus::update`] with options. For a corpus loaded with
    /// [`Corpus::open_network`] this long-polls the server (up to about a
    /// minute) for new bytes first.
    pub fn update_with(&mut self, opts: LoadOptions<'_>) -> Result<u64, LoadError> {
        if self.remote.is_some() {
            return self.update_network(opts);
        }
        self.update_local(opts)
    }

    /// Folds what the directory gained.
    pub(crate) fn update_local(&mut self, opts: LoadOptions<'_>) -> Result<u64, LoadError> {
        let source = self.source.clone().ok_or(LoadError::NoSource)?;
        let snapshot = Snapshot::open(&source.dir)?;
        self.check_extends(&source, &snapshot)?;
        let n = self.fold_snapshot(&snapshot, opts)?;
        let position = self.position();
        let sealed = snapshot
            .table()
            .sealed()
            .iter()
            .filter(|s| s.end() <= position)
            .map(|s| s.file_name())
            .collect();
        self.source = Some(Source {
            dir: source.dir,
            sealed,
        });
        Ok(n)
    }

    /// Maps the snapshot's segments (or what they gained), so texts of the
    /// records about to be folded can stay in the log.
    pub(crate) fn map_log(&mut self, snapshot: &Snapshot) -> Result<(), LoadError> {
        let maps = self.texts.maps_mut();
        match maps {
            Some(m) => m.extend(snapshot.table())?,
            None => {
                *maps = Some(SegmentMaps::new(
                    snapshot.dir().to_owned(),
                    snapshot.table(),
                )?);
            }
        }
        Ok(())
    }

    pub(crate) fn check_extends(
        &self,
        source: &Source,
        snapshot: &Snapshot,
    ) -> Result<(), LoadError> {
        let split = |why: String| LoadError::Split {
            dir: source.dir.clone(),
            position: self.position(),
            why,
        };
        if snapshot.end() < self.position() {
            return Err(split(format!("the log now ends at {}", snapshot.end())));
        }
        let names: Vec<String> = snapshot.table().segments().map(|s| s.file_name()).collect();
        for (i, want) in source.sealed.iter().enumerate() {
            if names.get(i) != Some(want) {
                return Err(split(format!("segment {want} changed")));
            }
        }
        Ok(())
    }

    /// Folds every record of `snapshot` from this corpus's position on, then
    /// derives dirty CLs. Decoding runs on threads of its own.
    pub fn fold_snapshot(
        &mut self,
        snapshot: &Snapshot,
        opts: LoadOptions<'_>,
    ) -> Result<u64, LoadError> {
        // One thread folds (and decodes when it would otherwise wait); the
        // other cores decode.
        let decoders = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1).clamp(1, MAX_DECODERS));
        self.fold_snapshot_on(
            snapshot,
            opts,
            Plan {
                batch: BATCH,
                decoders,
                panic_at: None,
            },
        )
    }

    /// [`Corpus::fold_snapshot`] with the batch size and number of decoding
    /// threads given.
    fn fold_snapshot_on(
        &mut self,
        snapshot: &Snapshot,
        mut opts: LoadOptions<'_>,
        plan: Plan,
    ) -> Result<u64, LoadError> {
        self.map_log(snapshot)?;
        let mut reader = snapshot.read_from(self.position())?;
        // Records are read as slices of the maps: no copy out of the page
        // cache, and views of them made on a decoding thread stay valid on
        // the folding one. The pages of folded records are released as
        // folding moves on, so that the whole log never counts towards the
        // resident memory (a released page is only mapped again if read).
        let maps = self.texts.maps().cloned().unwrap_or_default();
        reader.read_mapped(&maps);
        let maps = &maps;
        let mut released = self.position();
        let feed = Mutex::new(Feed {
            reader,
            next: 0,
            done: false,
        });
        let feed = &feed;
        let end = snapshot.end();
        let skip = opts.skip_undecodable;
        let started = Instant::now();
        let mut last_report = started;
        let mut records = 0u64;
        let decoders = plan.decoders;
        let batch_size = plan.batch.max(1);
        let result = std::thread::scope(|scope| -> Result<(), LoadError> {
            let (tx, rx) = mpsc::sync_channel::<Decoded<'_>>(IN_FLIGHT);
            // Emptied batches go back to the thread that filled them, so
            // their vectors are grown once per load rather than once per
            // batch.
            let mut recycle = Vec::with_capacity(decoders);
            let mut threads = Vec::with_capacity(decoders);
            let decoder = |id| Decoder {
                id,
                feed,
                maps,
                batch_size,
                skip,
                panic_at: plan.panic_at,
            };
            for id in 0..decoders {
                let (recycle_tx, recycle_rx) = mpsc::channel::<Batch<'_>>();
                recycle.push(recycle_tx);
                let tx = tx.clone();
                // Batches in flight: the channel's share, the one being
                // folded and the one being filled. Once that many exist,
                // wait for one to come back rather than make another:
                // records are large (a view each), and fresh memory costs
                // page faults.
                let most = IN_FLIGHT.div_ceil(decoders) + 2;
                let decoder = decoder(id);
                threads.push(scope.spawn(move || decoder.run(most, &tx, &recycle_rx)));
            }
            drop(tx);
            // This thread decodes too when no batch is ready for it, as
            // decoder number `decoders`.
            let helper = decoder(decoders);
            let mut helping = Decoding::new(maps);
            let mut helper_batches: Vec<Batch<'_>> = Vec::new();
            let mut helper_made = 0;
            // Each decoding thread keys commits its own way; their symbols
            // are kept apart on this side.
            let mut keyed: Vec<_> = (0..=decoders).map(|_| Default::default()).collect();
            // Batches come in whatever order they are finished, and are
            // folded in log order.
            let mut waiting: BTreeMap<u64, (usize, Batch<'_>)> = BTreeMap::new();
            let mut next = 0u64;
            loop {
                while let Some((id, (mut batch, mut prepared, mut parts))) = waiting.remove(&next) {
                    next += 1;
                    std::mem::swap(&mut self.keyed, &mut keyed[id]);
                    let folded = self.fold_batch(&mut batch, &prepared, &parts, &mut records);
                    std::mem::swap(&mut self.keyed, &mut keyed[id]);
                    folded?;
                    batch.clear();
                    prepared.clear();
                    parts.clear();
                    if self.position().0 - released.0 >= RELEASE_STEP {
                        maps.release(released, self.position());
                        released = self.position();
                    }
                    if id == helper.id {
                        helper_batches.push((batch, prepared, parts));
                    } else {
                        // The decoding thread may have finished: then the
                        // batch is simply freed.
                        let _ = recycle[id].send((batch, prepared, parts));
                    }
                    if let Some(report) = opts.progress.as_mut()
                        && last_report.elapsed() >= Duration::from_millis(100)
                    {
                        last_report = Instant::now();
                        report(Progress {
                            position: self.position(),
                            end,
                            records,
                        });
                    }
                }
                match rx.try_recv() {
                    Ok(Decoded::Batch(seq, id, batch)) => {
                        waiting.insert(seq, (id, batch));
                        continue;
                    }
                    // Its panic comes back below, when it is joined.
                    Ok(Decoded::Panicked) => break,
                    Err(_) => {}
                }
                // Nothing to fold: decode the feed's next batch here rather
                // than wait (a few batches at most, so that the decoding
                // threads' batches are not held up behind this one's).
                if helper_made < HELPER_BATCHES || !helper_batches.is_empty() {
                    let mut batch = helper_batches.pop().unwrap_or_else(|| {
                        helper_made += 1;
                        Batch::default()
                    });
                    match helper.fill(&mut helping, &mut batch) {
                        Some(seq) => {
                            waiting.insert(seq, (helper.id, batch));
                            continue;
                        }
                        None => helper_batches.push(batch),
                    }
                }
                match rx.recv() {
                    Ok(Decoded::Batch(seq, id, batch)) => {
                        waiting.insert(seq, (id, batch));
                    }
                    Ok(Decoded::Panicked) => break,
                    // Every decoding thread is done, and so is the feed.
                    Err(_) => break,
                }
            }
            // Decoding threads still waiting to send or for a batch to fill
            // see the folding end gone, and stop.
            drop(rx);
            drop(recycle);
            for thread in threads {
                if let Err(panic) = thread.join() {
                    std::panic::resume_unwind(panic);
                }
            }
            Ok(())
        });
        // Whatever was folded stays folded; derive CLs before reporting.
        // This load's commit keys die with its decoding threads.
        self.keyed = Default::default();
        self.finish();
        result?;
        if let Some(report) = opts.progress.as_mut() {
            report(Progress {
                position: self.position(),
                end,
                records,
            });
        }
        Ok(records)
    }

    /// Folds one decoded batch in order, counting its records; stops at the
    /// error a decoding thread stopped at.
    fn fold_batch(
        &mut self,
        batch: &mut [Item<'_>],
        prepared: &Prepared,
        parts: &ViewedParts<'_>,
        records: &mut u64,
    ) -> Result<(), LoadError> {
        // Records are read in place: a view is hundreds of bytes, and moving
        // each out of the batch costs a copy.
        for item in batch.iter_mut() {
            let Ok((pos, decoded)) = item else {
                // Where decoding stopped: its error.
                return std::mem::replace(item, Ok((Position(0), Record::Skipped))).map(drop);
            };
            match decoded {
                Record::Viewed {
                    payload,
                    at,
                    view,
                    range,
                    issue,
                } => {
                    let issue = issue.map(|r| parts.issues.get(r));
                    self.apply_prepared_view(
                        payload,
                        &parts.views[*view as usize],
                        issue,
                        Some(*at),
                        prepared,
                        *range,
                    )
                }
                Record::Owned { bytes, at, range } => {
                    self.apply_prepared(bytes, *at, prepared, *range)
                }
                Record::Skipped => self.skipped.undecodable_records += 1,
            }
            self.set_position(*pos);
            *records += 1;
        }
        Ok(())
    }
}

/// How a load splits its work.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Records per batch.
    batch: usize,
    /// Decoding threads besides the folding one (none: it decodes all).
    decoders: usize,
    /// Makes the decoder that takes this batch panic (tests of what a
    /// decoder's panic does to a load).
    panic_at: Option<u64>,
}

/// Decoding threads at most (besides the folding thread, which decodes
/// when it would otherwise wait): past a few, folding is all that is left.
const MAX_DECODERS: usize = 3;

/// The log's records, handed to the decoding threads a batch at a time in
/// log order. Reading only frames records (their bytes are the maps'), so
/// the threads take turns at it.
struct Feed {
    reader: Reader,
    /// The next batch's number: the folding thread folds batches in
    /// number order.
    next: u64,
    /// The log's end, a read error or a decoding error was reached: no
    /// more batches.
    done: bool,
}

impl Feed {
    /// The next batch's records, and its number; `None` once done.
    fn take(&mut self, n: usize, into: &mut Vec<Result<LogRecord, LoadError>>) -> Option<u64> {
        if self.done {
            return None;
        }
        while into.len() < n {
            match self.reader.next_record() {
                Ok(Some(rec)) => into.push(Ok(rec)),
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    into.push(Err(e.into()));
                    break;
                }
            }
        }
        if into.is_empty() {
            return None;
        }
        self.next += 1;
        Some(self.next - 1)
    }
}

/// A decoder's share of a load: the folding thread's, when it decodes, or
/// a decoding thread's.
struct Decoder<'f, 'm> {
    /// Its number: which commit keys its batches carry.
    id: usize,
    feed: &'f Mutex<Feed>,
    maps: &'m SegmentMaps,
    batch_size: usize,
    skip: bool,
    panic_at: Option<u64>,
}

/// A decoder's state across its batches.
struct Decoding<'m> {
    keys: CommitKeys,
    cursor: Cursor<'m>,
    /// The records of the batch being decoded.
    raw: Vec<Result<LogRecord, LoadError>>,
}

impl<'m> Decoding<'m> {
    fn new(maps: &'m SegmentMaps) -> Decoding<'m> {
        Decoding {
            keys: CommitKeys::default(),
            cursor: maps.cursor(),
            raw: Vec::new(),
        }
    }
}

impl<'m> Decoder<'_, 'm> {
    /// Takes the feed's next records and decodes them into the empty
    /// `batch`. Returns the batch's number, or `None` once the feed is done.
    /// A batch that ends with an error stops the feed.
    fn fill(&self, state: &mut Decoding<'m>, batch: &mut Batch<'m>) -> Option<u64> {
        // A poisoned feed: a decoder panicked while reading, and what it
        // read is lost; no decoder takes more (the panic stops the load).
        let seq = self
            .feed
            .lock()
            .ok()?
            .take(self.batch_size, &mut state.raw)?;
        assert!(
            self.panic_at != Some(seq),
            "a decoder failed on batch {seq}"
        );
        let (items, prepared, parts) = batch;
        let mut stop = false;
        for rec in state.raw.drain(..) {
            let item = rec.and_then(|rec| {
                let end = rec.end();
                let at = Position(rec.position.0 + u64::from(rec.header_len));
                // Views and commits are made here, off the folding path.
                let ahead = Ahead {
                    prepared: &mut *prepared,
                    keys: &mut state.keys,
                    parts: &mut *parts,
                };
                match decode(&mut state.cursor, rec.payload, at, ahead) {
                    Ok(decoded) => Ok((end, decoded)),
                    Err(_) if self.skip => Ok((end, Record::Skipped)),
                    Err(source) => Err(LoadError::Undecodable {
                        position: rec.position,
                        source,
                    }),
                }
            });
            stop = item.is_err();
            items.push(item);
            if stop {
                break;
            }
        }
        if stop {
            // Nothing after an error is folded: no decoder takes more.
            state.raw.clear();
            self.feed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .done = true;
        }
        Some(seq)
    }

    /// A decoding thread: fills batches (making at most `most` of them) and
    /// sends them to the folding thread, until the feed is done or the
    /// folding thread stops listening.
    fn run(
        self,
        most: usize,
        tx: &mpsc::SyncSender<Decoded<'m>>,
        recycle: &mpsc::Receiver<Batch<'m>>,
    ) {
        let mut made = 0;
        let mut state = Decoding::new(self.maps);
        loop {
            // A batch to fill comes first: a thread waiting for one holds
            // no batch number, so the folding thread never waits for it.
            let mut batch = match recycle.try_recv() {
                Ok(batch) => batch,
                Err(_) if made >= most => recycle.recv().unwrap_or_default(),
                Err(_) => {
                    made += 1;
                    Batch::default()
                }
            };
            // A panic here would leave its batch number in nobody's hands
            // and the folding thread waiting for it: the folding thread is
            // told, stops, and joins this thread to raise the panic.
            let filled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.fill(&mut state, &mut batch)
            }));
            let seq = match filled {
                Ok(Some(seq)) => seq,
                Ok(None) => return,
                Err(panic) => {
                    if let Ok(mut feed) = self.feed.lock() {
                        feed.done = true;
                    }
                    let _ = tx.send(Decoded::Panicked);
                    std::panic::resume_unwind(panic);
                }
            };
            let stop = batch.0.last().is_some_and(Result::is_err);
            if tx.send(Decoded::Batch(seq, self.id, batch)).is_err() || stop {
                return;
            }
        }
    }
}

/// Batches the folding thread decodes ahead of what it folds, at most.
const HELPER_BATCHES: usize = 2;

/// A record as a decoding thread hands it to the folding one.
enum Record<'m> {
    /// A canonical record in the mapped log, viewed.
    Viewed {
        payload: &'m [u8],
        /// The payload's log position.
        at: Position,
        /// Its view, in the batch's [`ViewedParts`] (views are hundreds of
        /// bytes: written once there, they are not copied again).
        view: u32,
        range: PreparedRange,
        /// Where its issue's comments and events are in the batch's
        /// [`IssueVecs`].
        issue: Option<PartsRange>,
    },
    /// A record re-encoded into canonical form (or, should the maps not
    /// cover it, read into memory): viewed when folded.
    Owned {
        bytes: Bytes,
        /// The payload's log position when the bytes are the record's own.
        at: Option<Position>,
        range: PreparedRange,
    },
    /// Undecodable, and skipped on request.
    Skipped,
}

/// A decoded record: its end position and the record, or why loading
/// stops.
type Item<'m> = Result<(Position, Record<'m>), LoadError>;

/// A batch handed to the folding thread: its records, their commits, and
/// their issues' comments and events.
type Batch<'m> = (Vec<Item<'m>>, Prepared, ViewedParts<'m>);

/// What a decoding thread sends.
enum Decoded<'m> {
    /// The batch's number in log order, the thread's number (its commit
    /// keys are its own), and the batch.
    Batch(u64, usize, Batch<'m>),
    /// The thread panicked.
    Panicked,
}

/// The views of a batch's records, and the comments and events of its
/// issue mutations, all made by a decoder (each walk of a
/// record's fields for them would otherwise be made on the folding one).
#[derive(Default)]
struct ViewedParts<'m> {
    views: Vec<wire::MutationView<'m>>,
    issues: IssueVecs<'m>,
}

/// The comments and events of a batch's issue mutations.
#[derive(Default)]
struct IssueVecs<'m> {
    comments: Vec<wire::CommentView<'m>>,
    events: Vec<wire::EventView<'m>>,
}

/// Where one record's comments and events are in [`IssueVecs`].
#[derive(Clone, Copy)]
struct PartsRange {
    comments: (u32, u32),
    events: (u32, u32),
}

impl<'m> IssueVecs<'m> {
    fn add(&mut self, issue: &wire::IssueView<'m>) -> PartsRange {
        let comments_start = self.comments.len() as u32;
        self.comments.extend(issue.comments());
        let events_start = self.events.len() as u32;
        self.events.extend(issue.events());
        PartsRange {
            comments: (comments_start, self.comments.len() as u32),
            events: (events_start, self.events.len() as u32),
        }
    }

    fn get(&self, r: PartsRange) -> IssueParts<'_, 'm> {
        IssueParts {
            comments: &self.comments[r.comments.0 as usize..r.comments.1 as usize],
            events: &self.events[r.events.0 as usize..r.events.1 as usize],
        }
    }
}

impl ViewedParts<'_> {
    fn clear(&mut self) {
        self.views.clear();
        self.issues.comments.clear();
        self.issues.events.clear();
    }
}

/// What a decoder prepares for each record besides its view.
struct Ahead<'a, 'm> {
    prepared: &'a mut Prepared,
    keys: &'a mut CommitKeys,
    parts: &'a mut ViewedParts<'m>,
}

/// Puts a record (its payload at log position `at`) in the canonical form
/// the corpus views read, and parses its commits into `prepared`. A record
/// the zero-copy check accepts is used as it is; any other is decoded by
/// prost (whose verdict and error text are the reference) and re-encoded.
fn decode<'m>(
    maps: &mut Cursor<'m>,
    payload: Bytes,
    at: Position,
    ahead: Ahead<'_, 'm>,
) -> Result<Record<'m>, prost::DecodeError> {
    let Ahead {
        prepared,
        keys,
        parts,
    } = ahead;
    if let Ok(wire::Check::Canonical) = wire::check(&payload) {
        if let Some(payload) = maps.get(at, payload.len()) {
            let view = parts.views.len() as u32;
            parts.views.push(wire::MutationView::parse(payload));
            let viewed = &parts.views[view as usize];
            let range = prepared.add_view(payload, viewed, keys);
            let issue = viewed.github_issue.as_ref().map(|i| parts.issues.add(i));
            return Ok(Record::Viewed {
                payload,
                at,
                view,
                range,
                issue,
            });
        }
        let range = prepared.add(&payload, keys);
        return Ok(Record::Owned {
            bytes: payload,
            at: Some(at),
            range,
        });
    }
    let bytes = Bytes::from(Mutation::decode(payload)?.encode_to_vec());
    let range = prepared.add(&bytes, keys);
    Ok(Record::Owned {
        bytes,
        at: None,
        range,
    })
}

/// The godata cache directory: `$XDG_CACHE_HOME/golang-maintner`, else
/// `~/.cache/golang-maintner` (`~/Library/Caches/golang-maintner` on macOS).
pub fn godata_dir() -> Option<PathBuf> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("golang-maintner"));
    }
    let home = PathBuf::from(std::env::var_os("HOME")?);
    if cfg!(target_os = "macos") {
        Some(home.join("Library/Caches/golang-maintner"))
    } else {
        Some(home.join(".cache/golang-maintner"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use almanac_log::segment::Sha224Digest;
    use almanac_log::{Log, Options, Position, Snapshot};
    use bytes::Bytes;

    use super::{LoadOptions, Plan};
    use crate::corpus::Corpus;

    fn go_fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../log/tests/fixtures/go")
            .join(name)
    }

    /// Go's log `name` as a log directory.
    fn go_log(name: &str) -> tempfile::TempDir {
        let bytes = std::fs::read(go_fixture(&format!("{name}.mutlog"))).expect("fixture");
        let dir = tempfile::tempdir().expect("tempdir");
        let file = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
        std::fs::write(dir.path().join(file), &bytes).expect("write");
        dir
    }

    fn load(dir: &Path, plan: Plan, skip: bool) -> Result<Corpus, super::LoadError> {
        let snapshot = Snapshot::open(dir).expect("snapshot");
        let mut corpus = Corpus::new();
        let opts = LoadOptions {
            skip_undecodable: skip,
            progress: None,
        };
        corpus.fold_snapshot_on(&snapshot, opts, plan)?;
        Ok(corpus)
    }

    #[test]
    fn small_batches_on_several_threads_fold_as_go_does() {
        let dir = go_log("mixed");
        let want = std::fs::read_to_string(go_fixture("mixed.dump")).expect("dump");
        for (batch, decoders) in [(1, 0), (7, 0), (1, 1), (7, 1), (7, 2), (64, 3), (500, 2)] {
            let plan = Plan {
                batch,
                decoders,
                panic_at: None,
            };
            let corpus = load(dir.path(), plan, false).expect("load");
            assert_eq!(
                corpus.counts().mutations,
                1625,
                "batch {batch}, {decoders} threads"
            );
            assert!(corpus.dump() == want, "batch {batch}, {decoders} threads");
        }
    }

    #[test]
    fn an_undecodable_record_stops_every_decoding_thread_at_its_position() {
        let records = {
            let dir = go_log("tiny");
            let snapshot = Snapshot::open(dir.path()).expect("snapshot");
            let mut reader = snapshot.read_from(Position(0)).expect("reader");
            let mut records = Vec::new();
            while let Some(rec) = reader.next_record().expect("read") {
                records.push(rec.payload);
            }
            records
        };
        // The good records many times over, one bad one in the middle.
        let mut payloads: Vec<Bytes> = Vec::new();
        for _ in 0..20 {
            payloads.extend(records.iter().cloned());
        }
        let bad_at = payloads.len() / 2 + 3;
        payloads.insert(bad_at, Bytes::from_static(&[0x08, 0xff]));
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, _) = Log::open(dir.path(), Options::default()).expect("open");
        let positions = log.append_blocking(payloads.clone()).expect("append");
        for (batch, decoders) in [(5, 0), (5, 3), (1, 2)] {
            let plan = Plan {
                batch,
                decoders,
                panic_at: None,
            };
            let err = load(dir.path(), plan, false).expect_err("undecodable");
            assert!(
                err.to_string().contains(&format!(
                    "record at position {} does not decode",
                    positions[bad_at]
                )),
                "{err}"
            );
            let corpus = load(dir.path(), plan, true).expect("skipping");
            assert_eq!(corpus.skipped().undecodable_records, 1);
            assert_eq!(corpus.counts().mutations as usize, payloads.len() - 1);
            assert_eq!(corpus.position(), log.end());
        }
    }

    #[test]
    fn a_decoder_that_panics_ends_the_load_with_its_panic() {
        let dir = go_log("mixed");
        // Batch 1 goes to whichever decoder takes it: a decoding thread or,
        // with none, the folding thread.
        for decoders in [0, 1, 2, 3] {
            let path = dir.path().to_owned();
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let plan = Plan {
                    batch: 3,
                    decoders,
                    panic_at: Some(1),
                };
                let loaded = std::panic::catch_unwind(|| load(&path, plan, false).is_ok());
                let _ = done_tx.send(loaded.is_err());
            });
            // A load that waits forever for the lost batch fails here.
            let panicked = done_rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("the load ends");
            assert!(panicked, "{decoders} decoding threads: the panic was lost");
        }
    }
}

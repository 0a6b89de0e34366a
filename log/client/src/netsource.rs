//! maintner's `/logs` protocol from the client side: Go's netsource
//! algorithm (spec/maintner.md §4.2), syncing a server's segments into a
//! godata cache directory.
//!
//! Each [`NetSource::sync`] fetches the JSON index (long-polling with
//! `waitsizenot` when asked), downloads only the bytes the cache lacks with
//! `Range`, checks every segment's SHA-224, stores sealed segments as
//! `NNNN.<sha224>.mutlog` and the growing one as `NNNN.growing.mutlog`, and
//! compares the new index with the previous one: if the bytes it had already
//! seen changed (the server restarted with a different tail), it reports a
//! [`Synced`] split instead of mixing two histories.
//!
//! A cache directory written here is a log directory (`almanac_log`'s
//! `Snapshot` reads it), so callers fold it like any local log.
//!
//! What it never does: trust a downloaded byte whose segment hash does not
//! match, or delete a sealed segment.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use almanac_log::segment::{SegmentName, SegmentState, Sha224Digest};

/// Where Go's production server keeps sealed segments; a URL there is a
/// sealed segment in Go's index.
const GCS_PREFIX: &str = "https://storage.googleapis.com/";

/// The largest index body accepted (10,000 segments fit easily).
const MAX_INDEX_BYTES: usize = 8 << 20;

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The URL is not one this client can fetch.
    #[error("{url}: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// The server could not be reached or the transfer broke.
    #[error("fetching {url}: {}", cause_text(.source.as_ref()))]
    Transport {
        /// The URL.
        url: String,
        /// The failure.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an unexpected status.
    #[error("fetching {url}: HTTP {status}: {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The index is not maintner's JSON.
    #[error("bad /logs index from {url}: {why}")]
    BadIndex {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// A downloaded segment does not hash to what the index says.
    #[error("corrupt download of segment {number:04}: want sha224 {want}, got {got}")]
    Corrupt {
        /// Segment number.
        number: u32,
        /// The index's hash.
        want: Sha224Digest,
        /// The downloaded bytes' hash.
        got: Sha224Digest,
    },
    /// The cache directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

impl NetError {
    /// Whether trying again may help (transport failures and 5xx, but not
    /// a TLS failure such as an untrusted certificate).
    pub fn is_retryable(&self) -> bool {
        match self {
            NetError::Transport { .. } => !self.is_tls_failure(),
            NetError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// Whether TLS failed (an untrusted or invalid certificate, a protocol
    /// mismatch): retrying will not help.
    pub fn is_tls_failure(&self) -> bool {
        let NetError::Transport { source, .. } = self else {
            return false;
        };
        any_cause(source.as_ref(), &|e| {
            e.downcast_ref::<rustls::Error>().is_some()
        })
    }

    /// Whether the server could not be reached at all (no route, refused,
    /// no such host): the cue to work offline from the cache.
    pub fn is_unreachable(&self) -> bool {
        let NetError::Transport { source, .. } = self else {
            return false;
        };
        let mut err: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(e) = err {
            if let Some(io) = e.downcast_ref::<io::Error>() {
                use io::ErrorKind::*;
                if matches!(
                    io.kind(),
                    ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
                ) || io.to_string().contains("failed to lookup address")
                {
                    return true;
                }
            }
            let text = e.to_string();
            if text.contains("dns error") || text.contains("no such host") {
                return true;
            }
            err = e.source();
        }
        false
    }
}

/// An error and its causes as one line, io payloads included
/// ("client error (Connect): invalid peer certificate: UnknownIssuer").
fn cause_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = match e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    parts.join(": ")
}

/// Whether `err` or anything it wraps satisfies `pred`. `io::Error` hides
/// its payload from `source()` (it returns the payload's source), so its
/// payload is visited explicitly.
fn any_cause(
    err: &(dyn std::error::Error + 'static),
    pred: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    if pred(err) {
        return true;
    }
    if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref())
        && any_cause(inner, pred)
    {
        return true;
    }
    err.source().is_some_and(|s| any_cause(s, pred))
}

/// One segment as the index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSegment {
    /// Segment number.
    pub number: u32,
    /// Its size now.
    pub size: u64,
    /// SHA-224 of those bytes.
    pub sha224: Sha224Digest,
    /// Where to fetch it (resolved against the index URL).
    pub url: String,
}

/// What a sync found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The cache now mirrors the index. Bytes before `common` are the ones
    /// the previous sync had already seen.
    Updated {
        /// Bytes shared with the previous sync's view.
        common: u64,
        /// The log's size now.
        total: u64,
    },
    /// The long-poll ended with nothing new (304).
    NotModified,
    /// The server was unreachable on the first sync; the cache is used as it
    /// is.
    Offline,
    /// The history the previous sync saw is not a prefix of the server's
    /// now (spec §4.2 step 6): the server restarted with different tail
    /// bytes. The cache holds the new history; everything folded from the
    /// old one must be rebuilt.
    Split {
        /// Bytes the two histories share.
        common: u64,
        /// What the previous sync had seen.
        previous: u64,
    },
}

/// How far a sync is: bytes the cache holds of what the index lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncProgress {
    /// Bytes of the listed segments now in the cache.
    pub done: u64,
    /// The log's size per the index.
    pub total: u64,
}

/// A progress callback (called after each segment).
pub type ProgressFn = std::sync::Arc<dyn Fn(SyncProgress) + Send + Sync>;

/// Retry and timing policy.
#[derive(Clone)]
pub struct NetOptions {
    /// Tries for the index before giving up (Go: 5).
    pub index_tries: u32,
    /// Tries per segment download (Go: 10).
    pub segment_tries: u32,
    /// The unit of the `try²` backoff (Go: 1 s).
    pub backoff_unit: Duration,
    /// Extra CA certificates (PEM) to trust for `https://` servers, beside
    /// the system's.
    pub ca_file: Option<PathBuf>,
    /// Told how far a sync is after each segment.
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for NetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetOptions")
            .field("index_tries", &self.index_tries)
            .field("segment_tries", &self.segment_tries)
            .field("backoff_unit", &self.backoff_unit)
            .field("ca_file", &self.ca_file)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Default for NetOptions {
    fn default() -> NetOptions {
        NetOptions {
            index_tries: 5,
            segment_tries: 10,
            backoff_unit: Duration::from_secs(1),
            ca_file: None,
            progress: None,
        }
    }
}

/// A `/logs` server followed into a cache directory.
#[derive(Debug)]
pub struct NetSource {
    index_url: http::Uri,
    cache_dir: PathBuf,
    opts: NetOptions,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// The index of the last successful sync.
    last: Vec<IndexSegment>,
}

impl NetSource {
    /// A source for the index at `url` (e.g. `http://127.0.0.1:8080/logs`),
    /// caching into `cache_dir` (created with mode 0700 if missing).
    pub fn new(url: &str, cache_dir: &Path, opts: NetOptions) -> Result<NetSource, NetError> {
        let bad = |why: &str| NetError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let index_url: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let tls = match index_url.scheme_str() {
            Some("http") => crate::tls::plain_http_config().map_err(|e| bad(&e.to_string()))?,
            Some("https") => crate::tls::client_config(opts.ca_file.as_deref())
                .map_err(|e| bad(&e.to_string()))?,
            _ => return Err(bad("the URL must start with http:// or https://")),
        };
        create_private_dir(cache_dir)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(NetSource {
            index_url,
            cache_dir: cache_dir.to_owned(),
            opts,
            client,
            last: Vec::new(),
        })
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The log size the last sync saw.
    pub fn seen_size(&self) -> u64 {
        self.last.iter().map(|s| s.size).sum()
    }

    /// Forgets what earlier syncs saw, so the next sync takes the server's
    /// history as it is (after a split has been handled).
    pub fn reset(&mut self) {
        self.last.clear();
    }

    /// One round of Go's `getNewSegments`. With `wait`, and once something
    /// was seen, the index request long-polls until the log's size changes.
    pub async fn sync(&mut self, wait: bool) -> Result<Synced, NetError> {
        let seen = self.seen_size();
        let url = if wait && seen > 0 {
            with_query(&self.index_url, &format!("waitsizenot={seen}"))
        } else {
            self.index_url.to_string()
        };
        let index = match self.fetch_index_retrying(&url).await {
            Ok(Some(index)) => index,
            Ok(None) => return Ok(Synced::NotModified),
            Err(e) if seen == 0 && e.is_unreachable() => {
                tracing::warn!(error = %e, dir = %self.cache_dir.display(), "server unreachable; using the cache as it is");
                return Ok(Synced::Offline);
            }
            Err(e) => return Err(e),
        };
        let count = index.len();
        self.set_aside_unlisted(&index)?;
        // Whole segments the cache lacks are fetched while earlier ones are
        // hashed and written on blocking threads (two at a time, so one's
        // fsync overlaps the next one's hashing): a first sync runs at the
        // speed of its slowest stage, not their sum.
        let mut storing: std::collections::VecDeque<tokio::task::JoinHandle<Result<(), NetError>>> =
            std::collections::VecDeque::new();
        let total: u64 = index.iter().map(|s| s.size).sum();
        let mut done = 0u64;
        for (i, seg) in index.iter().enumerate() {
            if let Some(report) = &self.opts.progress {
                report(SyncProgress { done, total });
            }
            done += seg.size;
            let sealed = seg.url.starts_with(GCS_PREFIX) || i + 1 < count;
            let (sealed_path, growing_path) = self.paths(seg);
            let fresh =
                file_len(&sealed_path)? != Some(seg.size) && file_len(&growing_path)?.is_none();
            if !fresh {
                while let Some(task) = storing.pop_front() {
                    finish_storing(task).await?;
                }
                self.sync_segment_retrying(seg, sealed).await?;
                continue;
            }
            let body = self.download_whole_retrying(seg).await?;
            if storing.len() >= STORING_AT_ONCE
                && let Some(task) = storing.pop_front()
            {
                finish_storing(task).await?;
            }
            let (dir, number, want) = (self.cache_dir.clone(), seg.number, seg.sha224);
            let target = if sealed { sealed_path } else { growing_path };
            storing.push_back(tokio::task::spawn_blocking(move || {
                let got = Sha224Digest::of(&body);
                if got != want {
                    return Err(NetError::Corrupt { number, want, got });
                }
                write_atomically(&dir, &target, &body)
            }));
        }
        while let Some(task) = storing.pop_front() {
            finish_storing(task).await?;
        }
        if let Some(report) = &self.opts.progress {
            report(SyncProgress { done, total });
        }
        let common = self.common_prefix(&index)?;
        self.last = index;
        if common != seen {
            return Ok(Synced::Split {
                common,
                previous: seen,
            });
        }
        Ok(Synced::Updated { common, total })
    }

    async fn fetch_index_retrying(&self, url: &str) -> Result<Option<Vec<IndexSegment>>, NetError> {
        // An unreachable server is not retried here: on a first sync the
        // caller falls back to the cache at once.
        self.retrying(self.opts.index_tries, false, "index fetch", async || {
            self.fetch_index(url).await
        })
        .await
    }

    /// Go's retry policy: up to `tries` attempts, sleeping `try²` units after
    /// each retryable failure (transport errors, 5xx; never TLS failures).
    async fn retrying<T>(
        &self,
        tries: u32,
        retry_unreachable: bool,
        what: &str,
        mut attempt: impl AsyncFnMut() -> Result<T, NetError>,
    ) -> Result<T, NetError> {
        let mut done = 0;
        loop {
            done += 1;
            match attempt().await {
                Err(e)
                    if e.is_retryable()
                        && (retry_unreachable || !e.is_unreachable())
                        && done < tries =>
                {
                    tracing::warn!(error = %e, tries = done, "{what} failed; retrying");
                    tokio::time::sleep(self.opts.backoff_unit * done * done).await;
                }
                other => return other,
            }
        }
    }

    async fn fetch_index(&self, url: &str) -> Result<Option<Vec<IndexSegment>>, NetError> {
        let (status, body) = self.get(url, None).await?;
        if status == 304 {
            return Ok(None);
        }
        if status != 200 {
            return Err(status_error(url, status, &body));
        }
        parse_index(url, &body).map(Some)
    }

    async fn get(&self, url: &str, range: Option<String>) -> Result<(u16, Bytes), NetError> {
        let transport = |source: Box<dyn std::error::Error + Send + Sync>| NetError::Transport {
            url: url.to_owned(),
            source,
        };
        let mut req = http::Request::get(url);
        if let Some(range) = range {
            req = req.header(http::header::RANGE, range);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| transport(Box::new(e)))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| transport(Box::new(e)))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| transport(Box::new(e)))?
            .to_bytes();
        Ok((status, body))
    }

    async fn sync_segment_retrying(
        &self,
        seg: &IndexSegment,
        sealed: bool,
    ) -> Result<(), NetError> {
        self.retrying(
            self.opts.segment_tries,
            true,
            "segment download",
            async || self.sync_segment(seg, sealed).await,
        )
        .await
    }

    /// The sealed and growing file names of a segment in the cache.
    fn paths(&self, seg: &IndexSegment) -> (PathBuf, PathBuf) {
        let name = |state| SegmentName {
            number: seg.number,
            state,
        };
        (
            self.cache_dir
                .join(name(SegmentState::Sealed(seg.sha224)).file_name()),
            self.cache_dir.join(name(SegmentState::Growing).file_name()),
        )
    }

    /// A whole segment's bytes, retried as Go retries a segment.
    async fn download_whole_retrying(&self, seg: &IndexSegment) -> Result<Bytes, NetError> {
        let url = resolve(&self.index_url, &seg.url);
        self.retrying(
            self.opts.segment_tries,
            true,
            "segment download",
            async || {
                let (status, body) = self.get(&url, None).await?;
                if status != 200 {
                    return Err(status_error(&url, status, &body));
                }
                if body.len() as u64 != seg.size {
                    return Err(NetError::BadIndex {
                        url: url.clone(),
                        why: format!(
                            "segment {:04}: the index says {} bytes, the server sent {}",
                            seg.number,
                            seg.size,
                            body.len()
                        ),
                    });
                }
                Ok(body)
            },
        )
        .await
    }

    /// Go's `syncSeg`: make the cache hold exactly `seg`.
    async fn sync_segment(&self, seg: &IndexSegment, sealed: bool) -> Result<(), NetError> {
        let (sealed_path, growing_path) = self.paths(seg);
        if file_len(&sealed_path)? == Some(seg.size) {
            remove_if_exists(&growing_path)?;
            return Ok(());
        }
        let mut have = read_if_exists(&growing_path)?;
        for attempt in 0..2 {
            let had = have.len() as u64;
            let mut downloaded: Option<Bytes> = None;
            let new: Vec<u8> = if had == seg.size {
                std::mem::take(&mut have)
            } else if had > seg.size {
                // The cache is ahead of a restarted server: keep its prefix.
                have.truncate(seg.size as usize);
                std::mem::take(&mut have)
            } else {
                let url = resolve(&self.index_url, &seg.url);
                let (status, body) = self
                    .get(&url, Some(format!("bytes={had}-{}", seg.size - 1)))
                    .await?;
                if status != 200 && status != 206 {
                    return Err(status_error(&url, status, &body));
                }
                if body.len() as u64 == seg.size {
                    body.to_vec()
                } else if had + body.len() as u64 == seg.size {
                    downloaded = Some(body.clone());
                    let mut v = std::mem::take(&mut have);
                    v.extend_from_slice(&body);
                    v
                } else {
                    return Err(NetError::BadIndex {
                        url,
                        why: format!(
                            "segment {:04}: asked for bytes {had}-{} and got {} bytes",
                            seg.number,
                            seg.size - 1,
                            body.len()
                        ),
                    });
                }
            };
            let got = Sha224Digest::of(&new);
            if got != seg.sha224 {
                if had == 0 || attempt == 1 {
                    return Err(NetError::Corrupt {
                        number: seg.number,
                        want: seg.sha224,
                        got,
                    });
                }
                // What the cache held belongs to another history: start over.
                remove_if_exists(&growing_path)?;
                have = Vec::new();
                continue;
            }
            if sealed {
                write_atomically(&self.cache_dir, &sealed_path, &new)?;
                remove_if_exists(&growing_path)?;
            } else if let Some(tail) = downloaded {
                // Only the new bytes are written; readers of the growing file
                // stop at the last whole record, as on a live log.
                append_to(&growing_path, &tail)?;
            } else {
                write_atomically(&self.cache_dir, &growing_path, &new)?;
            }
            return Ok(());
        }
        Ok(())
    }

    /// Moves segment files the index does not list (a sealed segment whose
    /// hash differs from the index's, a segment numbered past its end) out
    /// of the cache into a `split-<unix seconds>` directory beside them, so
    /// the cache never mixes two histories and nothing is deleted. Go's
    /// client leaves them, and its next load then fails or folds both; this
    /// only matters after the server's history split. Returns how many
    /// files moved.
    fn set_aside_unlisted(&self, index: &[IndexSegment]) -> Result<usize, NetError> {
        let listed: std::collections::BTreeMap<u32, Sha224Digest> =
            index.iter().map(|s| (s.number, s.sha224)).collect();
        let (files, _) =
            almanac_log::segment::list_files(&self.cache_dir).map_err(io_err(&self.cache_dir))?;
        let mut aside: Option<PathBuf> = None;
        let mut moved = 0;
        for file in files {
            let keep = match (listed.get(&file.name.number), file.name.state) {
                (None, _) => false,
                (Some(_), SegmentState::Growing) => true,
                (Some(sha), SegmentState::Sealed(have)) => *sha == have,
            };
            if keep {
                continue;
            }
            let dir = match &aside {
                Some(dir) => dir.clone(),
                None => {
                    let secs = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let dir = self.cache_dir.join(format!("split-{secs}"));
                    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                    aside = Some(dir.clone());
                    dir
                }
            };
            let to = dir.join(file.name.file_name());
            fs::rename(&file.path, &to).map_err(io_err(&file.path))?;
            moved += 1;
        }
        if let Some(dir) = &aside {
            tracing::warn!(moved, to = %dir.display(), "the server's history split: set aside cached segments it no longer lists");
        }
        Ok(moved)
    }

    /// Go's `sumCommonPrefixSize` of the new index against the last one.
    fn common_prefix(&self, new: &[IndexSegment]) -> Result<u64, NetError> {
        let mut sum = 0u64;
        for (a, b) in new.iter().zip(&self.last) {
            if a.sha224 == b.sha224 {
                sum += a.size;
                continue;
            }
            if a.size == b.size {
                break;
            }
            // The segment grew: is what was seen a prefix of what the cache
            // holds now? (If it shrank, the history split whatever its
            // bytes are, since the sum seen can no longer be reached.)
            if a.size > b.size {
                let bytes = self.read_cached(a)?;
                if Sha224Digest::of(&bytes[..b.size as usize]) == b.sha224 {
                    sum += b.size;
                }
            }
            break;
        }
        Ok(sum)
    }

    fn read_cached(&self, seg: &IndexSegment) -> Result<Vec<u8>, NetError> {
        for state in [SegmentState::Sealed(seg.sha224), SegmentState::Growing] {
            let path = self.cache_dir.join(
                SegmentName {
                    number: seg.number,
                    state,
                }
                .file_name(),
            );
            if let Some(bytes) = read_opt(&path)?
                && bytes.len() as u64 >= seg.size
            {
                return Ok(bytes);
            }
        }
        Err(NetError::Io {
            path: self.cache_dir.clone(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("segment {:04} is missing from the cache", seg.number),
            ),
        })
    }
}

/// One record seen by a [`Tail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailRecord {
    /// Its segment.
    pub segment: u32,
    /// Its offset in the segment.
    pub offset: u64,
    /// The payload.
    pub payload: Bytes,
}

/// Go's `TailNetworkMutationSource`: follow a `/logs` server from its
/// current end, fetching only the new bytes of each segment with `Range`
/// and parsing only those. Nothing is cached.
#[derive(Debug)]
pub struct Tail {
    source: NetSource,
    /// Segment number and size where the next new bytes start.
    at: Option<(u32, u64)>,
    total: u64,
}

impl Tail {
    /// A tail of the index at `url`, trusting `ca_file` (PEM) beside the
    /// system's roots for `https://`.
    pub fn new(url: &str, ca_file: Option<PathBuf>) -> Result<Tail, NetError> {
        let scratch = std::env::temp_dir();
        let opts = NetOptions {
            ca_file,
            ..NetOptions::default()
        };
        let source = NetSource::new(url, &scratch, opts)?;
        Ok(Tail {
            source,
            at: None,
            total: 0,
        })
    }

    /// Waits (long-polling) for new records and returns them. The first
    /// call only learns where the log ends and returns nothing.
    pub async fn next_batch(&mut self) -> Result<Vec<TailRecord>, NetError> {
        let url = match self.at {
            None => self.source.index_url.to_string(),
            Some(_) => with_query(
                &self.source.index_url,
                &format!("waitsizenot={}", self.total),
            ),
        };
        let Some(index) = self.source.fetch_index(&url).await? else {
            return Ok(Vec::new());
        };
        self.total = index.iter().map(|s| s.size).sum();
        let Some((last_num, last_size)) = self.at else {
            self.at = Some(index.last().map_or((0, 0), |s| (s.number, s.size)));
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for seg in index.iter().filter(|s| s.number >= last_num) {
            let from = if seg.number == last_num { last_size } else { 0 };
            if seg.size <= from {
                continue;
            }
            let seg_url = resolve(&self.source.index_url, &seg.url);
            let (status, body) = self
                .source
                .get(&seg_url, Some(format!("bytes={from}-{}", seg.size - 1)))
                .await?;
            if status != 206 && !(status == 200 && from == 0) {
                return Err(status_error(&seg_url, status, &body));
            }
            let mut at = 0usize;
            while at < body.len() {
                let offset = from + at as u64;
                match almanac_log::framing::parse(&body[at..], offset) {
                    Ok(almanac_log::framing::Frame::Record {
                        header_len,
                        payload_len,
                    }) => {
                        let start = at + header_len;
                        out.push(TailRecord {
                            segment: seg.number,
                            offset,
                            payload: body.slice(start..start + payload_len),
                        });
                        at = start + payload_len;
                    }
                    Ok(almanac_log::framing::Frame::Incomplete { .. }) => break,
                    Err(e) => {
                        return Err(NetError::BadIndex {
                            url: seg_url,
                            why: format!("segment {:04}: {e}", seg.number),
                        });
                    }
                }
            }
            self.at = Some((seg.number, from + at as u64));
        }
        Ok(out)
    }
}

/// Segments hashed and written at once during a first sync.
const STORING_AT_ONCE: usize = 2;

/// Waits for a segment being hashed and written.
async fn finish_storing(
    task: tokio::task::JoinHandle<Result<(), NetError>>,
) -> Result<(), NetError> {
    task.await.map_err(|e| NetError::Io {
        path: PathBuf::from("(segment writer)"),
        source: io::Error::other(e.to_string()),
    })?
}

/// Parses the JSON index (`number`, `size`, `sha224`, `url`).
pub fn parse_index(url: &str, body: &[u8]) -> Result<Vec<IndexSegment>, NetError> {
    let bad = |why: String| NetError::BadIndex {
        url: url.to_owned(),
        why,
    };
    if body.len() > MAX_INDEX_BYTES {
        return Err(bad(format!("{} bytes is too large", body.len())));
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    let items = match value {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        _ => return Err(bad("not a JSON array".to_owned())),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |k: &str| {
            item.get(k)
                .ok_or_else(|| bad(format!("element {i} has no {k:?}")))
        };
        let number = field("number")?
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad(format!("element {i}: bad number")))?;
        let size = field("size")?
            .as_u64()
            .ok_or_else(|| bad(format!("element {i}: bad size")))?;
        let sha224 = field("sha224")?
            .as_str()
            .and_then(Sha224Digest::parse)
            .ok_or_else(|| bad(format!("element {i}: bad sha224")))?;
        let seg_url = field("url")?
            .as_str()
            .ok_or_else(|| bad(format!("element {i}: bad url")))?
            .to_owned();
        if number as usize != i {
            return Err(bad(format!("element {i} is numbered {number}")));
        }
        out.push(IndexSegment {
            number,
            size,
            sha224,
            url: seg_url,
        });
    }
    Ok(out)
}

fn status_error(url: &str, status: u16, body: &[u8]) -> NetError {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    NetError::Status {
        url: url.to_owned(),
        status,
        body: text.trim().to_owned(),
    }
}

fn with_query(base: &http::Uri, query: &str) -> String {
    let s = base.to_string();
    if base.query().is_some() {
        format!("{s}&{query}")
    } else {
        format!("{s}?{query}")
    }
}

/// Resolves a segment URL against the index URL as Go's `url.ResolveReference`
/// does for the forms servers send: absolute, or an absolute path.
fn resolve(base: &http::Uri, url: &str) -> String {
    if url.contains("://") {
        return url.to_owned();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map_or("", |a| a.as_str());
    if url.starts_with('/') {
        format!("{scheme}://{authority}{url}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{url}")
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> NetError + '_ {
    move |source| NetError::Io {
        path: path.to_owned(),
        source,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), NetError> {
    use std::os::unix::fs::DirBuilderExt as _;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

fn file_len(path: &Path) -> Result<Option<u64>, NetError> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, NetError> {
    match File::open(path) {
        Ok(mut f) => {
            let mut v = Vec::new();
            f.read_to_end(&mut v).map_err(io_err(path))?;
            Ok(Some(v))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn read_if_exists(path: &Path) -> Result<Vec<u8>, NetError> {
    Ok(read_opt(path)?.unwrap_or_default())
}

fn remove_if_exists(path: &Path) -> Result<(), NetError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn append_to(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let mut f = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

/// Writes through a `tempseg*` file and renames, as Go's client does, so a
/// reader never sees a half-written file under a segment name.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    let tmp = dir.join(format!(
        "tempseg{}-{}",
        std::process::id(),
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_data().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parses_go_json_and_rejects_bad_fields() {
        let sha = "0".repeat(56);
        let body = format!(
            "[\n\t{{\n\t\t\"number\": 0,\n\t\t\"size\": 12,\n\t\t\"sha224\": \"{sha}\",\n\t\t\"url\": \"/logs/0\"\n\t}}\n]"
        );
        let idx = parse_index("u", body.as_bytes()).expect("parse");
        assert_eq!(idx.len(), 1);
        assert_eq!(idx[0].size, 12);
        assert_eq!(idx[0].url, "/logs/0");
        assert!(parse_index("u", b"[]").expect("empty").is_empty());
        assert!(parse_index("u", b"{}").is_err());
        assert!(
            parse_index(
                "u",
                b"[{\"number\":1,\"size\":1,\"sha224\":\"x\",\"url\":\"\"}]"
            )
            .is_err()
        );
    }

    #[test]
    fn relative_urls_resolve_against_the_index() {
        let base: http::Uri = "http://127.0.0.1:9/logs".parse().expect("uri");
        assert_eq!(resolve(&base, "/logs/3"), "http://127.0.0.1:9/logs/3");
        assert_eq!(resolve(&base, "logs/3"), "http://127.0.0.1:9/logs/3");
        assert_eq!(resolve(&base, "https://x/y"), "https://x/y");
    }
}

//! The corpus from a server: godata's `Get` and `Update` over maintner's
//! `/logs` protocol, and a live corpus fed by the gRPC subscription.
//!
//! Both write the server's segments into a local cache directory in the
//! godata layout and fold that directory, so a corpus loaded over the
//! network is the same value as one loaded from the same bytes on disk, and
//! its long texts stay in the memory-mapped segments.
//!
//! - [`Corpus::open_network`]: sync the cache (only the missing bytes), fold
//!   it, return when caught up. Unreachable server on first use: fold the
//!   cache as it is.
//! - [`Corpus::update`] on such a corpus long-polls for new bytes, syncs and
//!   folds them; when the server's history split (it restarted with a
//!   different tail) it rebuilds the corpus from the new history.
//! - [`Corpus::subscribe`]: a background stream of records from the corpus's
//!   position, mirrored into the cache; [`LiveSubscription::wait`] folds
//!   what arrived. It resumes across server restarts with no gap and no
//!   duplicate.
//!
//! The IO lives here and in `almanac-log-client`; folds stay pure.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use almanac_log::lock::DirLock;
use almanac_log_client::grpc::Subscription;
use almanac_log_client::{Mirror, NetOptions, NetSource, Synced};

use crate::corpus::Corpus;
use crate::load::{LoadError, LoadOptions};

/// The network side of a corpus loaded with [`Corpus::open_network`].
#[derive(Debug)]
pub struct Remote {
    net: NetSource,
    ca_file: Option<PathBuf>,
    runtime: tokio::runtime::Runtime,
    splits: u64,
}

fn runtime() -> Result<tokio::runtime::Runtime, LoadError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LoadError::Network(e.to_string()))
}

impl Corpus {
    /// Loads the log served at `url` (maintner's `/logs` index URL, such as
    /// `http://127.0.0.1:8080/logs`), caching its segments in `cache_dir`
    /// (e.g. [`crate::load::godata_dir`]). Only bytes the cache lacks are
    /// downloaded, and every segment's SHA-224 is checked. If the server is
    /// unreachable the cache is folded as it is.
    ///
    /// Blocking; call it from a thread that is not running an async
    /// runtime.
    pub fn open_network(url: &str, cache_dir: &Path) -> Result<Corpus, LoadError> {
        Corpus::open_network_with(
            url,
            cache_dir,
            NetOptions::default(),
            LoadOptions::default(),
        )
    }

    /// [`Corpus::open_network`] with options.
    pub fn open_network_with(
        url: &str,
        cache_dir: &Path,
        net_opts: NetOptions,
        opts: LoadOptions<'_>,
    ) -> Result<Corpus, LoadError> {
        let rt = runtime()?;
        let ca_file = net_opts.ca_file.clone();
        let mut net = NetSource::new(url, cache_dir, net_opts)?;
        let synced = rt.block_on(net.sync(false))?;
        let mut corpus = Corpus::open_with(cache_dir, opts)?;
        if synced == Synced::Offline {
            // Not seen anything from the server yet: the next update starts
            // from the server's whole index, and a differing cache is a split.
            net.reset();
        }
        corpus.remote = Some(Box::new(Remote {
            net,
            ca_file,
            runtime: rt,
            splits: 0,
        }));
        Ok(corpus)
    }

    /// How many times [`Corpus::update`] found the server's history split
    /// and rebuilt this corpus.
    pub fn split_reloads(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.splits)
    }

    /// The network update: long-poll, sync, fold; rebuild on a split.
    pub(crate) fn update_network(&mut self, opts: LoadOptions<'_>) -> Result<u64, LoadError> {
        let Some(remote) = self.remote.as_mut() else {
            return Err(LoadError::NoSource);
        };
        let wait = remote.net.seen_size() > 0;
        let synced = remote.runtime.block_on(remote.net.sync(wait))?;
        match synced {
            Synced::NotModified | Synced::Offline => Ok(0),
            Synced::Updated { .. } => self.update_local(opts),
            Synced::Split { common, previous } => {
                let dir = remote.net.cache_dir().to_owned();
                let mut remote = self.remote.take();
                if let Some(r) = remote.as_mut() {
                    r.splits += 1;
                }
                let _ = (common, previous);
                *self = Corpus::open_with(&dir, opts)?;
                self.remote = remote;
                Ok(self.mutation_count())
            }
        }
    }

    /// Starts following the gRPC `LogService` at `addr` (`host:port` or
    /// `http://host:port`) from this corpus's position, mirroring records
    /// into its cache directory; fold them with [`LiveSubscription::wait`].
    ///
    /// The corpus must have been loaded from a cache directory that no log
    /// writer owns (as [`Corpus::open_network`] makes); the subscription
    /// holds that directory's lock while it runs.
    pub fn subscribe(&self, addr: &str) -> Result<LiveSubscription, LoadError> {
        let dir = self.log_dir().ok_or(LoadError::NoSource)?.to_owned();
        let ca_file = self.remote.as_ref().and_then(|r| r.ca_file.clone());
        LiveSubscription::start(addr, &dir, self.position().0, ca_file)
    }
}

#[derive(Debug, Default)]
struct LiveState {
    /// The cache's end after the last mirrored record.
    end: u64,
    /// Why the background stream stopped, if it did.
    failed: Option<String>,
}

/// A background gRPC subscription mirroring records into a corpus's cache.
/// Dropping it stops the stream.
#[derive(Debug)]
pub struct LiveSubscription {
    state: Arc<(Mutex<LiveState>, Condvar)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl LiveSubscription {
    fn start(
        addr: &str,
        dir: &Path,
        from: u64,
        ca_file: Option<PathBuf>,
    ) -> Result<LiveSubscription, LoadError> {
        let lock = DirLock::acquire(dir).map_err(|e| LoadError::Network(e.to_string()))?;
        let mut mirror = Mirror::open(dir).map_err(|e| LoadError::Network(e.to_string()))?;
        if mirror.end().0 < from {
            return Err(LoadError::Network(format!(
                "the cache in {} ends at {} but the corpus folded to {from}",
                dir.display(),
                mirror.end()
            )));
        }
        let state = Arc::new((
            Mutex::new(LiveState {
                end: mirror.end().0,
                failed: None,
            }),
            Condvar::new(),
        ));
        let rt = runtime()?;
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let shared = state.clone();
        let addr = addr.to_owned();
        let start_at = mirror.end().0;
        let thread = std::thread::Builder::new()
            .name("corpus-subscription".to_owned())
            .spawn(move || {
                let _lock = lock;
                let mut sub = Subscription::new(&addr, start_at).with_ca_file(ca_file);
                let failed = rt.block_on(async {
                    loop {
                        let rec = tokio::select! {
                            rec = sub.next() => rec,
                            _ = &mut stop_rx => return None,
                        };
                        let rec = match rec {
                            Ok(rec) => rec,
                            Err(e) => return Some(e.to_string()),
                        };
                        if let Err(e) = mirror.write(&rec) {
                            return Some(e.to_string());
                        }
                        let (lock, cvar) = &*shared;
                        let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                        st.end = mirror.end().0;
                        cvar.notify_all();
                    }
                });
                let (lock, cvar) = &*shared;
                let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                st.failed = Some(failed.unwrap_or_else(|| "stopped".to_owned()));
                cvar.notify_all();
            })
            .map_err(|e| LoadError::Network(e.to_string()))?;
        Ok(LiveSubscription {
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
            dir: dir.to_owned(),
        })
    }

    /// Where the mirrored records end now.
    pub fn received_to(&self) -> u64 {
        let (lock, _) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).end
    }

    /// Waits up to `timeout` until records past `position` have been
    /// mirrored, without touching a corpus (so a reader can keep using it
    /// meanwhile); true if there are.
    pub fn wait_past(&self, position: u64, timeout: Duration) -> Result<bool, LoadError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.state;
        let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
        while st.end <= position {
            if let Some(why) = &st.failed {
                return Err(LoadError::Network(format!(
                    "the subscription mirroring into {} ended: {why}",
                    self.dir.display()
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            st = cvar
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        Ok(true)
    }

    /// Waits up to `timeout` for records past the corpus's position, then
    /// folds everything mirrored so far; returns how many records were
    /// folded (0 on timeout).
    pub fn wait(&self, corpus: &mut Corpus, timeout: Duration) -> Result<u64, LoadError> {
        if !self.wait_past(corpus.position().0, timeout)? {
            return Ok(0);
        }
        corpus.update_local(LoadOptions::default())
    }
}

impl Drop for LiveSubscription {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! The coordinator process: folds the farm's events from the log, compares
//! that view with the machines it can reach and the work the corpus says
//! exists, and records what it decides (machines registered and lost, builds
//! requested, assignments), then runs each assigned build on its machine.
//!
//! The decision loop (`decide.rs`) is single-threaded and reads its own
//! writes: it appends a batch, waits until its fold has seen that batch,
//! and only then decides again, so it never decides twice from a stale
//! view. Everything it knows
//! comes from the log, so a coordinator killed at any point and restarted
//! rebuilds the same queue, pool and builds by replay. What it cannot
//! rebuild is a build that was running in the dead process: such a build
//! (live in the fold, run by no execution here) is recorded as ending in a
//! communication error and requested again, so it finishes exactly once;
//! completed builds have their results in the log and are never redone.
//!
//! The loop never blocks on a build: executions run as tasks of their own
//! and append their step events, logs and outcome themselves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use almanac_log::Position;
use almanac_projections::Projection as _;
use almanac_projections::farm::{Build, BuildState, Farm, TrySet, WorkKey};
use almanac_proto::pb::farm::{
    BuildCanceled, BuildCompleted, BuildEvent, BuildKind, BuildOutcome, BuildRequested, BuilderRev,
    BuildletRequested, BuildletRole, EventMeta, MachineEvent, Priority, PriorityClass, ResultEvent,
    build_event, machine_event,
};
use almanac_proto::pb::maintpb::Mutation;

use super::blobs::BlobStore;
use super::machines::{Machines, StaticBuildlet};
use super::reverse::ReversePool;
use super::upstream::Upstream;
use crate::farm::env::Environments;
use crate::ingest::config::Secret;

/// How a coordinator runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub envs: Environments,
    /// Derives each host type's buildlet key.
    pub master_key: Secret,
    /// The git repositories builds take their source from, by the name the
    /// corpus knows them by. Work in other repositories is never requested
    /// (Go's "coordinator can build").
    pub repos: BTreeMap<String, PathBuf>,
    /// Listen-mode buildlets to dial.
    pub statics: Vec<StaticBuildlet>,
    /// Where build logs are stored.
    pub blobs_dir: PathBuf,
    /// How often discovery runs without being woken (Go: 15 s).
    pub discovery_interval: Duration,
    /// How many commits back from each branch head post-submit discovery
    /// looks.
    pub depth: usize,
    /// The longest one step may run.
    pub step_timeout: Duration,
    /// How often every machine is asked for its status (Go: 10 to 15 s).
    pub health_interval: Duration,
    /// How long a status check may take before the machine is dropped.
    pub health_timeout: Duration,
    /// Where trybot results are posted (none: not posted).
    pub gerrit: Option<super::gerrit::GerritConfig>,
    /// The coordinator's address as people reach it, for links in reviews.
    pub public_url: Option<String>,
    /// How long a work item waits after its first failure that is not
    /// retried at once; doubled per further failure, up to ten minutes.
    pub retry_backoff: Duration,
}

impl Config {
    pub fn new(envs: Environments, master_key: Secret, blobs_dir: PathBuf) -> Config {
        Config {
            envs,
            master_key,
            repos: BTreeMap::new(),
            statics: Vec::new(),
            blobs_dir,
            discovery_interval: Duration::from_secs(15),
            depth: 3,
            step_timeout: Duration::from_secs(60 * 60),
            health_interval: Duration::from_secs(15),
            health_timeout: Duration::from_secs(5),
            gerrit: None,
            public_url: None,
            retry_backoff: FIRST_BACKOFF,
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub builds_requested: AtomicU64,
    pub builds_requeued: AtomicU64,
    pub assignments: AtomicU64,
    pub builds_passed: AtomicU64,
    pub builds_failed: AtomicU64,
    pub builds_comm_error: AtomicU64,
    pub machines_registered: AtomicU64,
    pub machines_lost: AtomicU64,
    pub registrations_refused: AtomicU64,
    pub append_failures: AtomicU64,
    /// Appends refused because the coordinator is stopping.
    pub appends_after_stop: AtomicU64,
    /// Builds cut short after `stop` whose end was left for the next
    /// coordinator.
    pub builds_left_running: AtomicU64,
    pub decisions: AtomicU64,
    pub discovery_passes: AtomicU64,
    pub try_discovery_passes: AtomicU64,
}

/// What the coordinator shares between its loop, its executions and its
/// HTTP handlers.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) upstream: Upstream,
    pub(crate) config: Config,
    pub(crate) instance: String,
    pub(crate) machines: Arc<Machines>,
    pub(crate) farm: RwLock<Farm>,
    /// The position the farm has folded to (where the next record starts).
    pub(crate) folded: watch::Sender<u64>,
    /// Builds run by this process right now.
    pub(crate) executing: Mutex<BTreeSet<String>>,
    pub(crate) blobs: BlobStore,
    pub(crate) metrics: Metrics,
    pub(crate) started: SystemTime,
    /// Set when the coordinator cannot go on (its fold or its corpus
    /// stopped): it then decides nothing more, and the process should exit
    /// so a supervisor restarts it.
    fatal: watch::Sender<Option<String>>,
    /// Set by [`Coordinator::stop`]: nothing new is decided or posted.
    pub(crate) stopping: watch::Sender<bool>,
    /// Held (shared) by every Gerrit post while it runs, so `stop` can let
    /// the ones under way finish and record what they posted.
    pub(crate) posting: tokio::sync::RwLock<()>,
    /// Set by `stop` once those posts are done: appends are refused.
    appends_closed: std::sync::atomic::AtomicBool,
    /// Held (shared) by every append while it runs, so `stop` can wait for
    /// the ones already under way.
    appending: tokio::sync::RwLock<()>,
    /// Work whose builds keep failing without a verdict, and until when it
    /// waits before it is requested again (kept in memory only: a restart
    /// forgets it, which costs at most a few early retries).
    retry: Mutex<BTreeMap<WorkKey, Backoff>>,
    /// Try-set reviews in flight or waiting to be tried again.
    pub(crate) reviews: Mutex<super::gerrit::Reviews>,
    event_seq: AtomicU64,
    id_seq: AtomicU64,
    id_seed: u64,
}

/// A running coordinator.
#[derive(Debug, Clone)]
pub struct Coordinator {
    pub(crate) inner: Arc<Inner>,
}

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] super::upstream::UpstreamError),
    #[error(transparent)]
    Blobs(#[from] super::blobs::BlobError),
    #[error("reading the random seed: {0}")]
    Random(std::io::Error),
    #[error("folding the log: {0}")]
    Fold(String),
}

fn random_u64() -> Result<u64, std::io::Error> {
    use std::io::Read as _;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// splitmix64: spreads a counter into well-mixed bits.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A work item's run of failures without a verdict.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    consecutive: u32,
    until: Instant,
}

/// Failures of one work item that are retried at once; later ones wait.
const IMMEDIATE_RETRIES: u32 = 2;
/// The first wait after the immediate retries, doubled per failure (the
/// default of [`Config::retry_backoff`]).
const FIRST_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between tries of one work item.
const MAX_BACKOFF: Duration = Duration::from_secs(10 * 60);
/// How long an append may take before it counts as failed.
const APPEND_TIMEOUT: Duration = Duration::from_secs(60);

fn work_key_of(b: &Build) -> WorkKey {
    (
        b.builder.clone(),
        b.rev.clone(),
        b.sub_name.clone(),
        b.sub_rev.clone(),
    )
}

/// Nanoseconds since the epoch, as a protobuf timestamp.
pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

pub(crate) fn timestamp_nanos(nanos: i128) -> Option<prost_types::Timestamp> {
    (nanos != 0).then(|| prost_types::Timestamp {
        seconds: i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0),
        nanos: i32::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0),
    })
}

impl Inner {
    /// A fresh id: `prefix` and 9 hex digits, not used by any build the
    /// fold knows.
    pub(crate) fn new_build_id(&self, farm: &Farm, taken: &BTreeSet<String>) -> String {
        loop {
            let n = self.id_seq.fetch_add(1, Ordering::Relaxed);
            let id = format!("B{:09x}", mix(self.id_seed ^ n) & 0xf_ffff_ffff);
            if !farm.knows_build_id(&id) && !taken.contains(&id) {
                return id;
            }
        }
    }

    pub(crate) fn meta(&self, correlation_id: &str) -> Option<EventMeta> {
        let n = self.event_seq.fetch_add(1, Ordering::Relaxed);
        Some(EventMeta {
            event_id: format!("{}-{n}", self.instance),
            time: Some(timestamp(SystemTime::now())),
            coordinator_instance: self.instance.clone(),
            correlation_id: correlation_id.to_owned(),
            batch_following: 0,
        })
    }

    pub(crate) fn build_event(&self, correlation: &str, event: build_event::Event) -> Mutation {
        Mutation {
            build: Some(BuildEvent {
                meta: self.meta(correlation),
                event: Some(event),
            }),
            ..Default::default()
        }
    }

    pub(crate) fn machine_event(&self, correlation: &str, event: machine_event::Event) -> Mutation {
        Mutation {
            machine: Some(MachineEvent {
                meta: self.meta(correlation),
                event: Some(event),
            }),
            ..Default::default()
        }
    }

    pub(crate) fn result_event(
        &self,
        correlation: &str,
        event: almanac_proto::pb::farm::result_event::Event,
    ) -> Mutation {
        Mutation {
            result: Some(ResultEvent {
                meta: self.meta(correlation),
                event: Some(event),
            }),
            ..Default::default()
        }
    }

    /// Appends `mutations` as one atomic batch (each event says how many
    /// follow it, so folds apply them together), counting failures.
    pub(crate) async fn append(
        &self,
        mutations: &[Mutation],
    ) -> Result<Option<u64>, super::upstream::UpstreamError> {
        let _appending = self.appending.read().await;
        if self.appends_closed.load(Ordering::SeqCst) {
            self.metrics
                .appends_after_stop
                .fetch_add(1, Ordering::Relaxed);
            return Err(super::upstream::UpstreamError::Stopping);
        }
        let mut batch = mutations.to_vec();
        let n = batch.len();
        for (i, m) in batch.iter_mut().enumerate() {
            let following = u32::try_from(n - 1 - i).unwrap_or(u32::MAX);
            let meta = m
                .build
                .as_mut()
                .and_then(|e| e.meta.as_mut())
                .or(m.machine.as_mut().and_then(|e| e.meta.as_mut()))
                .or(m.result.as_mut().and_then(|e| e.meta.as_mut()))
                .or(m.farm_input.as_mut().and_then(|e| e.meta.as_mut()));
            if let Some(meta) = meta {
                meta.batch_following = following;
            }
        }
        let r = match tokio::time::timeout(APPEND_TIMEOUT, self.upstream.append(&batch)).await {
            Ok(r) => r,
            Err(_) => Err(super::upstream::UpstreamError::Append(format!(
                "no answer within {APPEND_TIMEOUT:?}"
            ))),
        };
        if r.is_err() {
            self.metrics.append_failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Waits until the fold has applied the record at `position`.
    pub(crate) async fn wait_folded(&self, position: u64) {
        let mut rx = self.folded.subscribe();
        let _ = rx.wait_for(|folded| *folded > position).await;
    }

    /// The events that request a build: the request itself, then the
    /// buildlet request that queues it (priority from its kind).
    pub(crate) fn request_events(&self, r: BuildRequested) -> Vec<Mutation> {
        let class = match r.kind() {
            BuildKind::Gomote => PriorityClass::Gomote,
            BuildKind::Try | BuildKind::Slowbot | BuildKind::TryXrepo | BuildKind::TryGoRelease => {
                PriorityClass::Try
            }
            BuildKind::PostSubmit | BuildKind::Unspecified => PriorityClass::Regular,
        };
        let queued = BuildletRequested {
            request_id: format!("{}.main", r.build_id),
            host_type: r.host_type.clone(),
            build_id: r.build_id.clone(),
            role: BuildletRole::Main as i32,
            gomote_session: String::new(),
            priority: Some(Priority {
                class: class as i32,
                request_time: Some(timestamp(SystemTime::now())),
                commit_time: r.commit_time,
            }),
        };
        let build_id = r.build_id.clone();
        vec![
            self.build_event(&build_id, build_event::Event::BuildRequested(r)),
            self.build_event(&build_id, build_event::Event::BuildletRequested(queued)),
        ]
    }

    /// A build's end in a communication error: not a result.
    pub(crate) fn comm_error_event(&self, build: &Build, why: &str) -> Mutation {
        self.build_event(
            &build.build_id,
            build_event::Event::BuildCompleted(BuildCompleted {
                build_id: build.build_id.clone(),
                outcome: BuildOutcome::CommError as i32,
                done_msg: format!("communication error: {why}"),
                remote_error: String::new(),
                exec_duration: None,
                log: None,
                log_url: String::new(),
            }),
        )
    }

    /// Notes that a build of `b`'s work ended without a verdict. Returns
    /// `None` if it should be requested again at once (`immediate` and one
    /// of the first failures in a row), else how long its work now waits.
    pub(crate) fn note_failure(&self, b: &Build, immediate: bool) -> Option<Duration> {
        let mut retry = self.retry.lock().unwrap_or_else(|p| p.into_inner());
        let entry = retry.entry(work_key_of(b)).or_insert(Backoff {
            consecutive: 0,
            until: Instant::now(),
        });
        entry.consecutive += 1;
        if immediate && entry.consecutive <= IMMEDIATE_RETRIES {
            return None;
        }
        let doublings = entry
            .consecutive
            .saturating_sub(IMMEDIATE_RETRIES + 1)
            .min(16);
        let wait = self
            .config
            .retry_backoff
            .saturating_mul(1 << doublings)
            .min(MAX_BACKOFF.max(self.config.retry_backoff));
        entry.until = Instant::now() + wait;
        Some(wait)
    }

    /// Notes that a build of `b`'s work reached a verdict.
    pub(crate) fn note_verdict(&self, b: &Build) {
        self.retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&work_key_of(b));
    }

    /// Whether `work` is waiting out a backoff now.
    pub(crate) fn backing_off(&self, work: &WorkKey) -> bool {
        self.retry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(work)
            .is_some_and(|b| b.until > Instant::now())
    }

    /// Waits until the fold has caught up with the log's end as it is now
    /// (after an append whose outcome is unknown).
    pub(crate) async fn sync_to_head(&self) -> Result<(), super::upstream::UpstreamError> {
        let end = tokio::time::timeout(APPEND_TIMEOUT, self.upstream.end())
            .await
            .map_err(|_| {
                super::upstream::UpstreamError::Follow(format!(
                    "no answer within {APPEND_TIMEOUT:?}"
                ))
            })??;
        if end > 0 {
            self.wait_folded(end - 1).await;
        }
        Ok(())
    }

    /// Whether the fold shows `build_id` queued or running.
    pub(crate) fn is_live(&self, build_id: &str) -> bool {
        self.read_farm()
            .build(build_id)
            .is_some_and(|b| !matches!(b.state, BuildState::Done { .. }))
    }

    /// A build that will not finish here ends in a communication error (not
    /// a result) and its work is requested again as a new attempt.
    pub(crate) fn requeue_events(
        &self,
        farm: &Farm,
        build: &Build,
        why: &str,
        taken: &mut BTreeSet<String>,
    ) -> Vec<Mutation> {
        let mut events = vec![self.comm_error_event(build, why)];
        events.extend(self.retry_events(farm, build, &build.host_type, taken));
        events
    }

    /// The events that end `build`, whose builder now runs on `host_type`,
    /// and request it again there: what a restart with the new
    /// configuration would do, without ending a try set on a build that
    /// never ran.
    pub(crate) fn move_events(
        &self,
        farm: &Farm,
        build: &Build,
        host_type: &str,
        taken: &mut BTreeSet<String>,
    ) -> Vec<Mutation> {
        let mut events = vec![self.build_event(
            &build.build_id,
            build_event::Event::BuildCanceled(BuildCanceled {
                build_id: build.build_id.clone(),
                reason: format!("moved: {} now runs on {host_type}", build.builder),
            }),
        )];
        events.extend(self.retry_events(farm, build, host_type, taken));
        events
    }

    /// A new build of `build`'s work on `host_type`, superseding it.
    fn retry_events(
        &self,
        farm: &Farm,
        build: &Build,
        host_type: &str,
        taken: &mut BTreeSet<String>,
    ) -> Vec<Mutation> {
        let retry = self.new_build_id(farm, taken);
        taken.insert(retry.clone());
        let work = BuilderRev {
            builder: build.builder.clone(),
            rev: build.rev.clone(),
            sub_name: build.sub_name.clone(),
            sub_rev: build.sub_rev.clone(),
        };
        let events = self.request_events(BuildRequested {
            build_id: retry,
            work: Some(work),
            host_type: host_type.to_owned(),
            kind: build.kind as i32,
            try_id: build.try_id.clone(),
            try_slot: 0,
            branch: build.branch.clone(),
            go_branch: String::new(),
            commit_time: timestamp_nanos(build.commit_time),
            attempt: build.attempt + 1,
            supersedes_build_id: build.build_id.clone(),
        });
        self.metrics.builds_requeued.fetch_add(1, Ordering::Relaxed);
        events
    }
}

impl Coordinator {
    /// Starts folding the log, dialing listen-mode buildlets and deciding.
    /// Returns once the fold has caught up with the log's end as it was at
    /// start, so the first decision sees the whole history.
    pub async fn start(upstream: Upstream, config: Config) -> Result<Coordinator, StartError> {
        let seed = random_u64().map_err(StartError::Random)?;
        let instance = format!("P{:09x}", mix(seed) & 0xf_ffff_ffff);
        let blobs = BlobStore::open(&config.blobs_dir)?;
        let reverse = ReversePool::with_instance(config.master_key.clone(), &instance);
        let machines = Machines::new(reverse, &instance);
        let inner = Arc::new(Inner {
            upstream,
            instance: instance.clone(),
            machines,
            farm: RwLock::new(Farm::new()),
            folded: watch::Sender::new(0),
            executing: Mutex::new(BTreeSet::new()),
            blobs,
            metrics: Metrics::default(),
            started: SystemTime::now(),
            fatal: watch::Sender::new(None),
            stopping: watch::Sender::new(false),
            posting: tokio::sync::RwLock::new(()),
            appends_closed: std::sync::atomic::AtomicBool::new(false),
            appending: tokio::sync::RwLock::new(()),
            retry: Mutex::new(BTreeMap::new()),
            reviews: Mutex::new(BTreeMap::new()),
            event_seq: AtomicU64::new(0),
            id_seq: AtomicU64::new(0),
            id_seed: seed,
            config,
        });
        let end = inner.upstream.end().await?;
        let records = inner.upstream.records(0)?;
        tokio::spawn(fold(inner.clone(), records));
        if let Some(mut failure) = inner.upstream.failure() {
            let fatal = inner.clone();
            tokio::spawn(async move {
                if let Ok(why) = failure.wait_for(Option::is_some).await {
                    fatal.fatal.send_replace(why.clone());
                }
            });
        }
        let loaded = Instant::now();
        if end > 0 {
            let mut fatal = inner.fatal.subscribe();
            tokio::select! {
                () = inner.wait_folded(end - 1) => {}
                why = fatal.wait_for(Option::is_some) => {
                    let why = why.map(|w| w.clone().unwrap_or_default()).unwrap_or_default();
                    return Err(StartError::Fold(why));
                }
            }
        }
        tracing::info!(
            instance,
            end,
            events = inner.read_farm().events(),
            elapsed = ?loaded.elapsed(),
            "coordinator folded the log"
        );
        inner.record_config().await?;
        for buildlet in inner.config.statics.clone() {
            let key = Secret::new(crate::buildlet::host_key(
                inner.config.master_key.expose().as_bytes(),
                &buildlet.host_type,
            ));
            inner.machines.spawn_static(buildlet, key);
        }
        inner
            .machines
            .spawn_health_checks(inner.config.health_interval, inner.config.health_timeout);
        tokio::spawn(super::decide::decide_loop(inner.clone()));
        Ok(Coordinator { inner })
    }

    /// Resolves with the reason if the coordinator stopped for good (its
    /// fold or its corpus failed); it then decides nothing more.
    pub async fn failed(&self) -> String {
        let mut rx = self.inner.fatal.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops the coordinator's part in the log: the decision loop ends and
    /// no Gerrit post starts; the posts under way finish and are recorded;
    /// then no append starts, and this returns once the appends already
    /// under way have finished. Builds still running are left as the log
    /// has them, for the next coordinator to take over. Call it before the
    /// buildlets or the log go away, so that their going is not recorded as
    /// lost machines and failed builds.
    pub async fn stop(&self) {
        self.inner.stopping.send_replace(true);
        drop(self.inner.posting.write().await);
        self.inner.appends_closed.store(true, Ordering::SeqCst);
        drop(self.inner.appending.write().await);
        tracing::info!(instance = %self.inner.instance, "coordinator stopped appending");
    }

    /// The instance id stamped on every event this process appends.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The reverse pool (its `/reverse` route is part of [`Coordinator::router`]).
    pub fn reverse_pool(&self) -> &Arc<ReversePool> {
        self.inner.machines.reverse()
    }

    /// Runs `f` on the farm fold.
    pub fn read_farm<R>(&self, f: impl FnOnce(&Farm) -> R) -> R {
        f(&self.inner.read_farm())
    }

    /// The coordinator's counters (as `/metrics` shows them).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Where the fold has got to.
    pub fn folded_to(&self) -> u64 {
        *self.inner.folded.borrow()
    }

    /// Waits until `ready` holds for the farm (checked after every folded
    /// record), or `timeout` passes (then false).
    pub async fn wait_until(&self, timeout: Duration, ready: impl Fn(&Farm) -> bool) -> bool {
        let mut rx = self.inner.folded.subscribe();
        tokio::time::timeout(timeout, async {
            loop {
                rx.borrow_and_update();
                if ready(&self.inner.read_farm()) {
                    return true;
                }
                if rx.changed().await.is_err() {
                    return false;
                }
            }
        })
        .await
        .unwrap_or(false)
    }

    /// The HTTP routes: status pages, logs, `/metrics` and `/reverse`.
    pub fn router(&self) -> axum::Router {
        super::http::router(self.inner.clone())
    }
}

impl Inner {
    /// Records the builders and host types in force, unless the log's last
    /// snapshot has the same hash, so the log says which policy decided
    /// what.
    async fn record_config(&self) -> Result<(), StartError> {
        let snapshot = super::config::snapshot(&self.config.envs, &self.config.statics);
        if self.read_farm().config_hash() == Some(snapshot.config_hash.as_str()) {
            return Ok(());
        }
        tracing::info!(hash = %snapshot.config_hash, "recording the build configuration");
        let m = Mutation {
            farm_input: Some(almanac_proto::pb::farm::FarmInput {
                meta: self.meta(""),
                event: Some(
                    almanac_proto::pb::farm::farm_input::Event::ConfigSnapshotLoaded(snapshot),
                ),
            }),
            ..Default::default()
        };
        if let Some(last) = self.append(&[m]).await? {
            self.wait_folded(last).await;
        }
        Ok(())
    }

    /// Whether this coordinator can run `b`: its builder and host type are
    /// configured and it has the source repository.
    pub(crate) fn buildable(&self, b: &Build) -> Result<(), String> {
        let envs = &self.config.envs;
        let builder = envs
            .builders
            .get(&b.builder)
            .ok_or_else(|| format!("no builder {:?} in the configuration", b.builder))?;
        if !envs.hosts.contains_key(&builder.host_type) {
            return Err(format!("no host type {:?}", builder.host_type));
        }
        if builder.host_type != b.host_type {
            return Err(format!(
                "requested on {:?}, but {} now runs on {:?}",
                b.host_type, b.builder, builder.host_type
            ));
        }
        let repo = if b.sub_name.is_empty() {
            "go"
        } else {
            b.sub_name.as_str()
        };
        if !self.config.repos.contains_key(repo) {
            return Err(format!("no source repository for {repo:?}"));
        }
        Ok(())
    }

    /// Whether the configuration in force runs `builder` as a trybot for
    /// `set`'s project and branch: a try set counts only such builders.
    pub(crate) fn try_builder_in_force(&self, builder: &str, set: &TrySet) -> bool {
        self.config
            .envs
            .builders
            .get(builder)
            .is_some_and(|b| b.builds_try(&set.project, &set.branch))
    }

    /// The host type `b`'s builder now runs on, when the move is all that
    /// keeps this coordinator from running `b` (see [`Inner::move_events`]).
    pub(crate) fn moved_to(&self, b: &Build) -> Option<String> {
        let builder = self.config.envs.builders.get(&b.builder)?;
        if builder.host_type == b.host_type {
            return None;
        }
        let moved = Build {
            host_type: builder.host_type.clone(),
            ..b.clone()
        };
        self.buildable(&moved).ok()?;
        Some(moved.host_type)
    }

    pub(crate) fn read_farm(&self) -> std::sync::RwLockReadGuard<'_, Farm> {
        self.farm.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn executing(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.executing.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The farm events of a mutation, decoded without the rest (GitHub, git
/// and Gerrit fields are skipped unread).
#[derive(Clone, PartialEq, prost::Message)]
struct FarmFields {
    #[prost(message, optional, tag = "100")]
    farm_input: Option<almanac_proto::pb::farm::FarmInput>,
    #[prost(message, optional, tag = "101")]
    build: Option<BuildEvent>,
    #[prost(message, optional, tag = "102")]
    machine: Option<MachineEvent>,
    #[prost(message, optional, tag = "103")]
    result: Option<ResultEvent>,
}

/// The most records folded under one write lock.
const FOLD_CHUNK: usize = 4096;

/// The farm events of one record, if it has any.
fn farm_mutation(record: &super::upstream::Record) -> Option<Mutation> {
    use prost::Message as _;
    match FarmFields::decode(record.payload.as_ref()) {
        Ok(f)
            if f.build.is_some()
                || f.machine.is_some()
                || f.result.is_some()
                || f.farm_input.is_some() =>
        {
            Some(Mutation {
                farm_input: f.farm_input,
                build: f.build,
                machine: f.machine,
                result: f.result,
                ..Default::default()
            })
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(position = record.position, error = %e, "a record's farm fields do not decode; skipped");
            None
        }
    }
}

/// Folds every record into the farm, for as long as the log lasts: what is
/// already durable is taken in chunks, decoded, then applied under one
/// write lock, and the folded position is published once per chunk.
async fn fold(inner: Arc<Inner>, mut records: super::upstream::Records) {
    let mut chunk = Vec::with_capacity(FOLD_CHUNK);
    while let Some(first) = records.next().await {
        let mut next = Some(first);
        let mut end = None;
        let mut taken = 0usize;
        while let Some(record) = next {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the coordinator's fold stopped");
                    inner
                        .fatal
                        .send_replace(Some(format!("the fold of the log stopped: {e}")));
                    return;
                }
            };
            end = Some(record.end);
            taken += 1;
            if let Some(m) = farm_mutation(&record) {
                chunk.push((Position(record.position), m));
            }
            next = if taken < FOLD_CHUNK {
                records.try_next()
            } else {
                None
            };
        }
        // The position is published under the write lock, so a reader
        // holding the read lock sees a farm and a position that match.
        {
            let mut farm = inner.farm.write().unwrap_or_else(|p| p.into_inner());
            for (position, m) in chunk.drain(..) {
                let _ = farm.apply(position, &m);
            }
            if let Some(end) = end {
                inner.folded.send_replace(end);
            }
        }
        // Catching up reads what is durable without waiting: let the
        // runtime's other tasks (maintnerd's, in `up`) run between chunks.
        tokio::task::yield_now().await;
    }
    tracing::info!("the log closed; the coordinator's fold ended");
}

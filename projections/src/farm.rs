//! The build farm's state as a fold of its events (`almanac.farm.v1`,
//! `Mutation` fields 100 to 103): the queue of buildlet requests per host
//! type, the machine pool, the builds with their steps, and the results
//! the dashboard shows. A coordinator that restarts replays the log into
//! this and knows exactly what was waiting, running and done.
//!
//! The queue's order is Go's scheduler's (spec/coordinator.md §3.1):
//! gomote sessions first, then trybots first come first served, then
//! post-submit work newest commit first; ties by request time, then by
//! request id so the order is total. [`Farm::next_assignments`] pairs idle
//! machines with the head of their host type's queue; the scheduler records
//! each pairing as a `BuildletAssigned` event, so a replay never re-runs
//! the policy to learn what happened.
//!
//! Pure and deterministic: no clock, no IO. Events that name unknown
//! builds, requests or machines are counted in [`FarmSkipped`], never
//! applied half-way.
//!
//! Memory stays bounded however long the history: a finished build is
//! kept whole (steps, log, times) only while it is among the last
//! [`DONE_BUILDS_KEPT`] to finish. After that the fold remembers only its
//! id (so no id is used twice) and, for try and other non-post-submit
//! work, a [`Concluded`] verdict; a try set not yet reported keeps how each
//! of its builders' builds ended ([`TrySet::ended`]), so its review needs
//! no build; post-submit verdicts live on as [`Result`]s. The rule reads
//! nothing but the log, so every replay lets the same builds go.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use almanac_log::Position;
use almanac_proto::pb::farm::{
    BuildEvent, BuildKind, BuildOutcome, MachineEvent, PriorityClass, ResultEvent, ResultKey,
    build_event, farm_input, machine_event, result_event,
};
use almanac_proto::pb::maintpb::Mutation;

use crate::Projection;

/// A time as the events carry it, in nanoseconds since the Unix epoch.
pub type Nanos = i128;

fn nanos(t: Option<&prost_types::Timestamp>) -> Nanos {
    t.map_or(0, |t| {
        i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
    })
}

/// Where a request stands in its host type's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueKey {
    class: i32,
    /// Within a class: try by request time ascending; regular by commit
    /// time descending (stored negated), then request time.
    primary: Nanos,
    secondary: Nanos,
    request_id: String,
}

impl Ord for QueueKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.class, self.primary, self.secondary, &self.request_id).cmp(&(
            other.class,
            other.primary,
            other.secondary,
            &other.request_id,
        ))
    }
}

impl PartialOrd for QueueKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A request waiting for a machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub request_id: String,
    pub host_type: String,
    pub build_id: String,
    pub gomote_session: String,
    pub class: PriorityClass,
    pub request_time: Nanos,
    pub commit_time: Nanos,
    key: QueueKey,
}

/// A machine in the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub machine_id: String,
    pub host_type: String,
    pub hostname: String,
    pub pool: String,
    pub version: String,
    /// When it registered (its event's time).
    pub registered_time: Nanos,
    /// The request it was assigned to, while it is busy.
    pub assigned_to: Option<String>,
    /// The build it runs, once started.
    pub running: Option<String>,
}

/// Where a build is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildState {
    /// Requested; waiting for a machine.
    Queued,
    Running {
        machine_id: String,
    },
    Done {
        outcome: BuildOutcome,
        done_msg: String,
    },
}

/// One step of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub step_id: String,
    pub name: String,
    pub detail: String,
    pub started_time: Nanos,
    /// None while running; Some("") on success.
    pub error: Option<String>,
    /// Set once finished.
    pub duration_ns: Option<i128>,
}

/// A stored blob (a build log), by content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub sha256: String,
    pub size: u64,
}

/// A build and its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub build_id: String,
    pub builder: String,
    pub rev: String,
    pub sub_name: String,
    pub sub_rev: String,
    pub host_type: String,
    pub kind: BuildKind,
    pub attempt: i32,
    pub branch: String,
    pub try_id: String,
    pub commit_time: Nanos,
    /// Event times (the appender's clock).
    pub requested_time: Nanos,
    pub started_time: Option<Nanos>,
    pub done_time: Option<Nanos>,
    /// The machine it started on (kept after it ends).
    pub ran_on: Option<String>,
    pub state: BuildState,
    pub steps: Vec<Step>,
    /// Log chunks appended so far.
    pub log_chunks: u64,
    /// The whole log, once the build completed.
    pub log: Option<Blob>,
    /// The build this one retries (after a communication error).
    pub supersedes: String,
    /// The log position of its `BuildRequested`, for "recent" ordering.
    pub requested_at: u64,
}

/// A dashboard cell's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Result {
    pub ok: bool,
    pub log_hash: String,
    pub build_id: String,
}

/// A registration the coordinator refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub host_type: String,
    pub hostname: String,
    pub remote_addr: String,
    pub http_status: i32,
    pub reason: String,
    pub time: Nanos,
}

/// How many refused registrations the fold remembers (the log has all).
pub const REJECTIONS_KEPT: usize = 100;

/// How many finished builds the fold keeps whole, most recently finished
/// first (about a week of Go's post-submit and try builds). Older ones
/// are let go, whatever waits on them (a try set keeps its own record of
/// how its builds ended); the log keeps everything.
pub const DONE_BUILDS_KEPT: usize = 10_000;

/// What the fold keeps of work that ended with a verdict, once the build
/// itself may be gone: enough for discovery not to run it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concluded {
    pub build_id: String,
    pub kind: BuildKind,
}

/// The fold's retention rule: how many finished builds it keeps whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retention {
    done_builds_kept: usize,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            done_builds_kept: DONE_BUILDS_KEPT,
        }
    }
}

/// Events that could not be applied, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FarmSkipped {
    /// Events naming a build never requested, or one let go under the
    /// retention rule.
    pub unknown_build: u64,
    pub unknown_request: u64,
    pub unknown_machine: u64,
    /// A second `BuildRequested` for an id already known.
    pub duplicate_build: u64,
    /// A completion, cancel or skip of a build already done.
    pub already_done: u64,
    /// Batches cut short (an event of a new batch, or of none, arrived
    /// before the last of the open one); what arrived was applied.
    pub torn_batches: u64,
    /// A buildlet request for a request id already waiting, or for a build
    /// that already has a machine or is running or done (a batch appended
    /// twice after an ambiguous failure).
    pub duplicate_request: u64,
    /// A registration of a machine id already in the pool.
    pub duplicate_machine: u64,
    /// An assignment to a machine that is not idle.
    pub busy_machine: u64,
}

/// The identity of a piece of work: builder, rev, sub name, sub rev.
pub type WorkKey = (String, String, String, String);

/// The farm.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Farm {
    /// Waiting requests per host type, in scheduling order.
    queues: BTreeMap<String, BTreeMap<QueueKey, Waiting>>,
    /// Request id to its queue key, while waiting.
    waiting: BTreeMap<String, (String, QueueKey)>,
    machines: BTreeMap<String, Machine>,
    builds: BTreeMap<String, Build>,
    /// Request id to build id, while the request waits.
    request_builds: BTreeMap<String, String>,
    /// Build id to its requests still waiting (so finishing a build costs
    /// what it had, not what the whole history had).
    build_waiting: BTreeMap<String, Vec<String>>,
    /// Build id to the machine assigned to it or running it.
    build_machine: BTreeMap<String, String>,
    /// Idle machines per host type (kept with every machine change, so
    /// scheduling never scans the pool).
    idle: BTreeMap<String, BTreeSet<String>>,
    results: BTreeMap<(String, String, String, String), Result>,
    /// Work with a build that is not done, to that build.
    live_work: BTreeMap<WorkKey, String>,
    /// Work to its last build that ended with a verdict (passed, failed,
    /// skipped, canceled: anything but a communication error), for builds
    /// that are not post-submit (whose verdicts are the results).
    concluded_work: BTreeMap<WorkKey, Concluded>,
    /// The finished builds kept whole, in the order they finished: at most
    /// `retention.done_builds_kept`.
    done_order: VecDeque<String>,
    /// Ids of the builds let go.
    retired: HashSet<Box<str>>,
    retention: Retention,
    /// The last [`REJECTIONS_KEPT`] refused registrations, oldest first.
    rejections: VecDeque<Rejection>,
    rejections_total: u64,
    /// Try sets (try id, commit) whose final result has not been posted
    /// to Gerrit, with each builder's latest build.
    try_sets: BTreeMap<(String, String), TrySet>,
    /// Bumped whenever what work discovery reads changes: a build ends (its
    /// work may be wanted again), a result is recorded or cleared.
    work_generation: u64,
    /// The hash of the last configuration snapshot recorded.
    config_hash: Option<String>,
    config_snapshots: u64,
    /// The open batch's events so far, applied when its last arrives.
    pending: Vec<(Position, Mutation)>,
    /// The `batch_following` the open batch's next event must carry.
    pending_next: u32,
    events: u64,
    skipped: FarmSkipped,
}

fn work_key(builder: &str, rev: &str, sub_name: &str, sub_rev: &str) -> WorkKey {
    (
        builder.to_string(),
        rev.to_string(),
        sub_name.to_string(),
        sub_rev.to_string(),
    )
}

fn result_key(k: Option<&ResultKey>) -> (String, String, String, String) {
    k.map_or_else(Default::default, |k| {
        (
            k.builder.clone(),
            k.package_path.clone(),
            k.hash.clone(),
            k.go_hash.clone(),
        )
    })
}

/// One try set (a CL's patch set) on its way to Gerrit: each builder's
/// latest build and how it ended, and which of the reviews before the
/// final one were posted (spec/coordinator.md §4.9). It holds all its
/// review needs, so the builds themselves may be let go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrySet {
    /// The change's project (`go` or the sub-repository) and branch, as
    /// its first build names them.
    pub project: String,
    pub branch: String,
    /// Each builder's latest build id.
    pub builds: BTreeMap<String, String>,
    /// How each builder's latest build ended, once it has: its outcome
    /// and its done message (a skip's or cancel's reason).
    pub ended: BTreeMap<String, (BuildOutcome, String)>,
    /// The "TryBots beginning" review was posted.
    pub began: bool,
    /// The review about the first failure while builds remained was
    /// posted.
    pub progress_posted: bool,
}

/// Which of a try set's reviews a posted review was, by its tag
/// (`autogenerated:trybots~<state>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStage {
    /// `~beginning`: the set started.
    Beginning,
    /// `~progress`: a build failed while others still ran.
    Progress,
    /// Anything else (`~happy`, `~failed`): the result, which ends the set.
    Final,
}

impl ReviewStage {
    /// The stage a review's tag names; tags this does not know are final,
    /// as every review was before stages were recorded.
    pub fn of_tag(tag: &str) -> ReviewStage {
        match tag.rsplit_once('~').map(|(_, state)| state) {
            Some("beginning") => ReviewStage::Beginning,
            Some("progress") => ReviewStage::Progress,
            _ => ReviewStage::Final,
        }
    }
}

impl Farm {
    pub fn new() -> Farm {
        Farm::default()
    }

    /// A fold that keeps at most `n` finished builds whole (the rest as in
    /// [`DONE_BUILDS_KEPT`]'s rule). Two folds of one log agree only if
    /// they keep the same `n`.
    pub fn keeping_done_builds(n: usize) -> Farm {
        Farm {
            retention: Retention {
                done_builds_kept: n,
            },
            ..Farm::default()
        }
    }

    /// Whether `id` names a build this fold has seen, kept whole or let
    /// go: a new build must not take it.
    pub fn knows_build_id(&self, id: &str) -> bool {
        self.builds.contains_key(id) || self.retired.contains(id)
    }

    /// Finished builds let go under the retention rule.
    pub fn retired_builds(&self) -> usize {
        self.retired.len()
    }

    /// Builds kept whole: live ones, and finished ones not yet let go.
    pub fn builds_kept(&self) -> usize {
        self.builds.len()
    }

    /// Farm events folded.
    pub fn events(&self) -> u64 {
        self.events
    }

    pub fn skipped(&self) -> &FarmSkipped {
        &self.skipped
    }

    /// The most recent refused registrations, oldest first.
    pub fn rejections(&self) -> impl Iterator<Item = &Rejection> {
        self.rejections.iter()
    }

    /// The hash of the builders and host types in force (the last
    /// `ConfigSnapshotLoaded`), if any was recorded.
    pub fn config_hash(&self) -> Option<&str> {
        self.config_hash.as_deref()
    }

    /// Changes whenever a build ends or a result is recorded or cleared:
    /// work discovery need only look again when it moved.
    pub fn work_generation(&self) -> u64 {
        self.work_generation
    }

    /// Try sets whose final result has not been posted to Gerrit: (try
    /// id, commit) and the set.
    pub fn unposted_try_sets(&self) -> impl Iterator<Item = (&(String, String), &TrySet)> {
        self.try_sets.iter()
    }

    /// How many configuration snapshots were recorded.
    pub fn config_snapshots(&self) -> u64 {
        self.config_snapshots
    }

    /// Every refused registration ever recorded.
    pub fn rejections_total(&self) -> u64 {
        self.rejections_total
    }

    /// Waiting requests of `host_type`, first to be served first.
    pub fn queue(&self, host_type: &str) -> impl Iterator<Item = &Waiting> {
        self.queues
            .get(host_type)
            .into_iter()
            .flat_map(|q| q.values())
    }

    /// Host types with waiting requests, and how many wait.
    pub fn queue_lengths(&self) -> impl Iterator<Item = (&str, usize)> {
        self.queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(h, q)| (h.as_str(), q.len()))
    }

    /// Every machine, by id.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.machines.values()
    }

    pub fn machine(&self, id: &str) -> Option<&Machine> {
        self.machines.get(id)
    }

    pub fn build(&self, id: &str) -> Option<&Build> {
        self.builds.get(id)
    }

    /// Every build, by id.
    pub fn builds(&self) -> impl Iterator<Item = &Build> {
        self.builds.values()
    }

    /// Running builds.
    pub fn active_builds(&self) -> impl Iterator<Item = &Build> {
        self.builds
            .values()
            .filter(|b| matches!(b.state, BuildState::Running { .. }))
    }

    /// Finished builds, most recently finished first, at most `n`.
    pub fn recent_builds(&self, n: usize) -> Vec<&Build> {
        self.done_order
            .iter()
            .rev()
            .take(n)
            .filter_map(|id| self.builds.get(id))
            .collect()
    }

    /// Builds waiting for a machine (requested, not yet started), oldest
    /// request first.
    pub fn pending_builds(&self) -> Vec<&Build> {
        let mut pending: Vec<&Build> = self
            .live_work
            .values()
            .filter_map(|id| self.builds.get(id))
            .filter(|b| b.state == BuildState::Queued)
            .collect();
        pending.sort_by_key(|b| b.requested_at);
        pending
    }

    /// Builds not done (queued or running), by id.
    pub fn live_builds(&self) -> impl Iterator<Item = &Build> {
        self.live_work.values().filter_map(|id| self.builds.get(id))
    }

    /// The machine a live build was assigned to or runs on.
    pub fn machine_of(&self, build_id: &str) -> Option<&str> {
        self.build_machine.get(build_id).map(String::as_str)
    }

    /// Whether any of a build's buildlet requests is still waiting.
    pub fn is_waiting(&self, build_id: &str) -> bool {
        self.build_waiting
            .get(build_id)
            .is_some_and(|reqs| reqs.iter().any(|r| self.waiting.contains_key(r)))
    }

    /// The last trybot (or other non-post-submit) build of this work that
    /// ended with a verdict (not a communication error), kept however old
    /// it is. Post-submit verdicts are [`Farm::result`]s, which operators
    /// can clear.
    pub fn concluded_build(
        &self,
        builder: &str,
        rev: &str,
        sub_name: &str,
        sub_rev: &str,
    ) -> Option<&Concluded> {
        self.concluded_work
            .get(&work_key(builder, rev, sub_name, sub_rev))
    }

    /// Every recorded result, keyed by (builder, package path, hash, go
    /// hash).
    pub fn results(&self) -> impl Iterator<Item = (&(String, String, String, String), &Result)> {
        self.results.iter()
    }

    /// The dashboard's result for a cell.
    pub fn result(
        &self,
        builder: &str,
        package_path: &str,
        hash: &str,
        go_hash: &str,
    ) -> Option<&Result> {
        self.results.get(&(
            builder.to_string(),
            package_path.to_string(),
            hash.to_string(),
            go_hash.to_string(),
        ))
    }

    /// Whether work `(builder, rev, sub_name, sub_rev)` has a live build
    /// (queued or running). Discovery skips such work, and work with a
    /// recorded [`Farm::result`]; a build that ended in a communication
    /// error is neither, so its work is requested again.
    pub fn has_live_build(&self, builder: &str, rev: &str, sub_name: &str, sub_rev: &str) -> bool {
        self.live_work
            .contains_key(&work_key(builder, rev, sub_name, sub_rev))
    }

    /// Pairs every idle machine with the head of its host type's queue, in
    /// queue order: the assignments the scheduler should record next.
    /// Machines are taken in id order, so the answer is deterministic.
    pub fn next_assignments(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (host_type, machines) in &self.idle {
            let Some(queue) = self.queues.get(host_type) else {
                continue;
            };
            for (waiting, machine) in queue.values().zip(machines) {
                out.push((waiting.request_id.clone(), machine.clone()));
            }
        }
        out
    }

    /// The first of [`Farm::next_assignments`], without computing the rest.
    pub fn next_assignment(&self) -> Option<(String, String)> {
        self.idle.iter().find_map(|(host_type, machines)| {
            let waiting = self.queues.get(host_type)?.values().next()?;
            let machine = machines.iter().next()?;
            Some((waiting.request_id.clone(), machine.clone()))
        })
    }

    /// Brings the idle index in line with `machine_id`'s state (idle when
    /// it exists and is assigned to nothing).
    fn sync_idle(&mut self, machine_id: &str, host_type: &str) {
        let idle = self
            .machines
            .get(machine_id)
            .is_some_and(|m| m.assigned_to.is_none());
        if idle {
            self.idle
                .entry(host_type.to_string())
                .or_default()
                .insert(machine_id.to_string());
        } else if let Some(set) = self.idle.get_mut(host_type) {
            set.remove(machine_id);
            if set.is_empty() {
                self.idle.remove(host_type);
            }
        }
    }

    fn enqueue(&mut self, w: Waiting) {
        self.waiting
            .insert(w.request_id.clone(), (w.host_type.clone(), w.key.clone()));
        self.queues
            .entry(w.host_type.clone())
            .or_default()
            .insert(w.key.clone(), w);
    }

    fn dequeue(&mut self, request_id: &str) -> Option<Waiting> {
        let (host_type, key) = self.waiting.remove(request_id)?;
        let queue = self.queues.get_mut(&host_type)?;
        let w = queue.remove(&key);
        if queue.is_empty() {
            self.queues.remove(&host_type);
        }
        w
    }

    /// Frees the machine a build ran on (or was assigned to).
    fn free_machine_of(&mut self, build_id: &str) {
        if let Some(id) = self.build_machine.remove(build_id)
            && let Some(m) = self.machines.get_mut(&id)
        {
            m.running = None;
            m.assigned_to = None;
            let host_type = m.host_type.clone();
            self.sync_idle(&id, &host_type);
        }
    }

    fn apply_build(&mut self, pos: Position, e: &BuildEvent) {
        use build_event::Event;
        let Some(event) = &e.event else { return };
        let time = nanos(e.meta.as_ref().and_then(|m| m.time.as_ref()));
        match event {
            Event::BuildRequested(r) => {
                if self.knows_build_id(&r.build_id) {
                    self.skipped.duplicate_build += 1;
                    return;
                }
                let work = r.work.clone().unwrap_or_default();
                if !r.try_id.is_empty() && r.kind() != BuildKind::PostSubmit {
                    let commit = if work.sub_rev.is_empty() {
                        work.rev.clone()
                    } else {
                        work.sub_rev.clone()
                    };
                    let set = self.try_sets.entry((r.try_id.clone(), commit)).or_default();
                    if set.builds.is_empty() {
                        set.project = if work.sub_name.is_empty() {
                            "go".to_owned()
                        } else {
                            work.sub_name.clone()
                        };
                        set.branch = r.branch.clone();
                    }
                    set.builds.insert(work.builder.clone(), r.build_id.clone());
                    set.ended.remove(&work.builder);
                }
                self.live_work.insert(
                    work_key(&work.builder, &work.rev, &work.sub_name, &work.sub_rev),
                    r.build_id.clone(),
                );
                self.builds.insert(
                    r.build_id.clone(),
                    Build {
                        build_id: r.build_id.clone(),
                        builder: work.builder,
                        rev: work.rev,
                        sub_name: work.sub_name,
                        sub_rev: work.sub_rev,
                        host_type: r.host_type.clone(),
                        kind: r.kind(),
                        attempt: r.attempt,
                        branch: r.branch.clone(),
                        try_id: r.try_id.clone(),
                        commit_time: nanos(r.commit_time.as_ref()),
                        requested_time: time,
                        started_time: None,
                        done_time: None,
                        ran_on: None,
                        state: BuildState::Queued,
                        steps: Vec::new(),
                        log_chunks: 0,
                        log: None,
                        supersedes: r.supersedes_build_id.clone(),
                        requested_at: pos.0,
                    },
                );
            }
            Event::BuildletRequested(r) => {
                let priority = r.priority.unwrap_or_default();
                let class = priority.class();
                let request_time = nanos(priority.request_time.as_ref());
                let commit_time = nanos(priority.commit_time.as_ref());
                let (primary, secondary) = match class {
                    PriorityClass::Regular => (-commit_time, request_time),
                    _ => (request_time, 0),
                };
                let class_rank = match class {
                    PriorityClass::Gomote => 0,
                    PriorityClass::Try => 1,
                    PriorityClass::Regular | PriorityClass::Unspecified => 2,
                };
                if self.waiting.contains_key(&r.request_id) {
                    self.skipped.duplicate_request += 1;
                    return;
                }
                if !r.build_id.is_empty() {
                    let Some(b) = self.builds.get(&r.build_id) else {
                        self.skipped.unknown_build += 1;
                        return;
                    };
                    if b.state != BuildState::Queued || self.build_machine.contains_key(&r.build_id)
                    {
                        self.skipped.duplicate_request += 1;
                        return;
                    }
                    self.request_builds
                        .insert(r.request_id.clone(), r.build_id.clone());
                    self.build_waiting
                        .entry(r.build_id.clone())
                        .or_default()
                        .push(r.request_id.clone());
                }
                self.enqueue(Waiting {
                    request_id: r.request_id.clone(),
                    host_type: r.host_type.clone(),
                    build_id: r.build_id.clone(),
                    gomote_session: r.gomote_session.clone(),
                    class,
                    request_time,
                    commit_time,
                    key: QueueKey {
                        class: class_rank,
                        primary,
                        secondary,
                        request_id: r.request_id.clone(),
                    },
                });
            }
            Event::BuildletRequestWithdrawn(w) => {
                self.request_builds.remove(&w.request_id);
                if self.dequeue(&w.request_id).is_none() {
                    self.skipped.unknown_request += 1;
                }
            }
            Event::BuildletAssigned(a) => {
                let Some(machine) = self.machines.get(&a.machine_id) else {
                    self.skipped.unknown_machine += 1;
                    return;
                };
                if machine.assigned_to.is_some() {
                    self.skipped.busy_machine += 1;
                    return;
                }
                if self.dequeue(&a.request_id).is_none() {
                    self.skipped.unknown_request += 1;
                    return;
                }
                if let Some(m) = self.machines.get_mut(&a.machine_id) {
                    m.assigned_to = Some(a.request_id.clone());
                    let host_type = m.host_type.clone();
                    self.sync_idle(&a.machine_id, &host_type);
                }
                if let Some(build_id) = self.request_builds.remove(&a.request_id) {
                    self.build_machine.insert(build_id, a.machine_id.clone());
                }
            }
            Event::BuildStarted(s) => {
                let Some(b) = self.builds.get_mut(&s.build_id) else {
                    self.skipped.unknown_build += 1;
                    return;
                };
                if matches!(b.state, BuildState::Done { .. }) {
                    self.skipped.already_done += 1;
                    return;
                }
                b.state = BuildState::Running {
                    machine_id: s.machine_id.clone(),
                };
                b.started_time = Some(time);
                b.ran_on = Some(s.machine_id.clone());
                if let Some(m) = self.machines.get_mut(&s.machine_id) {
                    m.running = Some(s.build_id.clone());
                }
                self.build_machine
                    .insert(s.build_id.clone(), s.machine_id.clone());
            }
            Event::StepStarted(s) => {
                let Some(b) = self.builds.get_mut(&s.build_id) else {
                    self.skipped.unknown_build += 1;
                    return;
                };
                b.steps.push(Step {
                    step_id: s.step_id.clone(),
                    name: s.name.clone(),
                    detail: s.detail.clone(),
                    started_time: time,
                    error: None,
                    duration_ns: None,
                });
            }
            Event::StepFinished(s) => {
                let Some(b) = self.builds.get_mut(&s.build_id) else {
                    self.skipped.unknown_build += 1;
                    return;
                };
                if let Some(step) = b.steps.iter_mut().rev().find(|st| st.step_id == s.step_id) {
                    step.error = Some(s.error.clone());
                    step.duration_ns = Some(s.duration.map_or(0, |d| {
                        i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos)
                    }));
                }
            }
            Event::LogChunkAppended(l) => match self.builds.get_mut(&l.build_id) {
                Some(b) => b.log_chunks += 1,
                None => self.skipped.unknown_build += 1,
            },
            Event::BuildCompleted(c) => {
                let log = c.log.as_ref().map(|l| Blob {
                    sha256: l.sha256.clone(),
                    size: l.size,
                });
                self.finish(&c.build_id, c.outcome(), &c.done_msg, log, time);
            }
            Event::BuildCanceled(c) => {
                self.finish(&c.build_id, BuildOutcome::Canceled, &c.reason, None, time);
            }
            Event::BuildSkipped(s) => {
                self.finish(&s.build_id, BuildOutcome::Skipped, &s.reason, None, time);
            }
            // Recorded for the status pages and dist-test sharding, which
            // come later; they change nothing here.
            Event::SnapshotChecked(_)
            | Event::BuildEventNoted(_)
            | Event::TestPlanComputed(_)
            | Event::TestGroupDispatched(_)
            | Event::TestGroupCompleted(_)
            | Event::TestGroupExecFailed(_)
            | Event::SnapshotStored(_) => {}
        }
    }

    /// A build ends: its machine is freed, its waiting requests leave the
    /// queue, and its work is no longer live.
    fn finish(
        &mut self,
        build_id: &str,
        outcome: BuildOutcome,
        done_msg: &str,
        log: Option<Blob>,
        time: Nanos,
    ) {
        let Some(b) = self.builds.get_mut(build_id) else {
            self.skipped.unknown_build += 1;
            return;
        };
        if matches!(b.state, BuildState::Done { .. }) {
            self.skipped.already_done += 1;
            return;
        }
        b.state = BuildState::Done {
            outcome,
            done_msg: done_msg.to_string(),
        };
        b.done_time = Some(time);
        if log.is_some() {
            b.log = log;
        }
        let key = work_key(&b.builder, &b.rev, &b.sub_name, &b.sub_rev);
        if self.live_work.get(&key).is_some_and(|id| id == build_id) {
            self.live_work.remove(&key);
        }
        if outcome != BuildOutcome::CommError && b.kind != BuildKind::PostSubmit {
            let concluded = Concluded {
                build_id: build_id.to_string(),
                kind: b.kind,
            };
            self.concluded_work.insert(key, concluded);
        }
        if !b.try_id.is_empty() && b.kind != BuildKind::PostSubmit {
            let commit = if b.sub_rev.is_empty() {
                &b.rev
            } else {
                &b.sub_rev
            };
            if let Some(set) = self.try_sets.get_mut(&(b.try_id.clone(), commit.clone()))
                && set.builds.get(&b.builder).is_some_and(|id| id == build_id)
            {
                set.ended
                    .insert(b.builder.clone(), (outcome, done_msg.to_string()));
            }
        }
        self.done_order.push_back(build_id.to_string());
        self.work_generation += 1;
        self.free_machine_of(build_id);
        self.withdraw_requests_of(build_id);
        while self.done_order.len() > self.retention.done_builds_kept {
            let Some(oldest) = self.done_order.pop_front() else {
                break;
            };
            self.retire(&oldest);
        }
    }

    /// Lets a finished build go, keeping its id.
    fn retire(&mut self, build_id: &str) {
        if self.builds.remove(build_id).is_some() {
            self.retired.insert(build_id.into());
        }
    }

    /// A finished build's requests still waiting leave the queue.
    fn withdraw_requests_of(&mut self, build_id: &str) {
        for r in self.build_waiting.remove(build_id).unwrap_or_default() {
            self.request_builds.remove(&r);
            self.dequeue(&r);
        }
    }

    fn apply_machine(&mut self, e: &MachineEvent) {
        use machine_event::Event;
        let Some(event) = &e.event else { return };
        let time = nanos(e.meta.as_ref().and_then(|m| m.time.as_ref()));
        match event {
            Event::Registered(r) => {
                // Ids are new for every connection: a known one is the same
                // registration appended twice, and must not free a busy
                // machine.
                if self.machines.contains_key(&r.machine_id) {
                    self.skipped.duplicate_machine += 1;
                    return;
                }
                self.machines.insert(
                    r.machine_id.clone(),
                    Machine {
                        machine_id: r.machine_id.clone(),
                        host_type: r.host_type.clone(),
                        hostname: r.hostname.clone(),
                        pool: r.pool.clone(),
                        version: r.buildlet_version.clone(),
                        registered_time: time,
                        assigned_to: None,
                        running: None,
                    },
                );
                self.sync_idle(&r.machine_id, &r.host_type);
            }
            Event::Ready(r) => {
                // A provisioned (listen-mode) machine is known once ready.
                self.machines
                    .entry(r.machine_id.clone())
                    .or_insert_with(|| Machine {
                        machine_id: r.machine_id.clone(),
                        host_type: String::new(),
                        hostname: r.ip_port.clone(),
                        pool: String::new(),
                        version: r.buildlet_version.clone(),
                        registered_time: time,
                        assigned_to: None,
                        running: None,
                    });
                if let Some(host_type) = self
                    .machines
                    .get(&r.machine_id)
                    .map(|m| m.host_type.clone())
                {
                    self.sync_idle(&r.machine_id, &host_type);
                }
            }
            Event::Released(r) => match self.machines.get_mut(&r.machine_id) {
                Some(m) => {
                    m.assigned_to = None;
                    m.running = None;
                    let host_type = m.host_type.clone();
                    self.sync_idle(&r.machine_id, &host_type);
                }
                None => self.skipped.unknown_machine += 1,
            },
            Event::Lost(l) => match self.machines.remove(&l.machine_id) {
                Some(m) => self.sync_idle(&l.machine_id, &m.host_type),
                None => self.skipped.unknown_machine += 1,
            },
            Event::Destroyed(d) => {
                if let Some(m) = self.machines.remove(&d.machine_id) {
                    self.sync_idle(&d.machine_id, &m.host_type);
                }
            }
            Event::RegistrationRejected(r) => {
                if self.rejections.len() == REJECTIONS_KEPT {
                    self.rejections.pop_front();
                }
                self.rejections.push_back(Rejection {
                    host_type: r.host_type.clone(),
                    hostname: r.hostname.clone(),
                    remote_addr: r.remote_addr.clone(),
                    http_status: r.http_status,
                    reason: r.reason.clone(),
                    time,
                });
                self.rejections_total += 1;
            }
            Event::QuotaReserved(_)
            | Event::QuotaReleased(_)
            | Event::QuotaObserved(_)
            | Event::ProvisionRequested(_)
            | Event::InstanceCreated(_)
            | Event::ProvisionFailed(_)
            | Event::HealthCheckFailed(_)
            | Event::SeenHealthy(_)
            | Event::Cleaned(_) => {}
        }
    }

    fn apply_result(&mut self, e: &ResultEvent) {
        use result_event::Event;
        let Some(event) = &e.event else { return };
        match event {
            Event::ResultRecorded(r) => {
                self.work_generation += 1;
                self.results.insert(
                    result_key(r.key.as_ref()),
                    Result {
                        ok: r.ok,
                        log_hash: r.log_hash.clone(),
                        build_id: r.build_id.clone(),
                    },
                );
            }
            Event::GerritReviewPosted(p) => {
                let key = (p.try_id.clone(), p.revision.clone());
                match ReviewStage::of_tag(&p.tag) {
                    ReviewStage::Beginning => {
                        if let Some(set) = self.try_sets.get_mut(&key) {
                            set.began = true;
                        }
                    }
                    ReviewStage::Progress => {
                        if let Some(set) = self.try_sets.get_mut(&key) {
                            set.progress_posted = true;
                        }
                    }
                    ReviewStage::Final => {
                        self.try_sets.remove(&key);
                    }
                }
            }
            Event::ResultCleared(c) => {
                self.work_generation += 1;
                self.results.remove(&result_key(c.key.as_ref()));
            }
            _ => {}
        }
    }

    /// Builds of host types with no machine and no request can never run;
    /// the names of host types that have waiting requests and no machine.
    pub fn starved_host_types(&self) -> BTreeSet<&str> {
        let with_machines: BTreeSet<&str> = self
            .machines
            .values()
            .map(|m| m.host_type.as_str())
            .collect();
        self.queues
            .keys()
            .map(String::as_str)
            .filter(|h| !with_machines.contains(h))
            .collect()
    }
}

/// How many events follow `m` in its atomic batch (0 if none, or if `m`
/// carries no farm event).
fn batch_following(m: &Mutation) -> u32 {
    m.build
        .as_ref()
        .and_then(|e| e.meta.as_ref())
        .or_else(|| m.machine.as_ref().and_then(|e| e.meta.as_ref()))
        .or_else(|| m.result.as_ref().and_then(|e| e.meta.as_ref()))
        .or_else(|| m.farm_input.as_ref().and_then(|e| e.meta.as_ref()))
        .map_or(0, |meta| meta.batch_following)
}

impl Farm {
    /// Whether a batch has started and not yet ended (its events are held,
    /// not applied).
    pub fn in_batch(&self) -> bool {
        !self.pending.is_empty()
    }

    fn apply_one(&mut self, pos: Position, m: &Mutation) {
        let mut any = false;
        if let Some(e) = &m.build {
            self.apply_build(pos, e);
            any = true;
        }
        if let Some(e) = &m.machine {
            self.apply_machine(e);
            any = true;
        }
        if let Some(e) = &m.result {
            self.apply_result(e);
            any = true;
        }
        if let Some(e) = &m.farm_input {
            if let Some(farm_input::Event::ConfigSnapshotLoaded(c)) = &e.event {
                self.config_hash = Some(c.config_hash.clone());
                self.config_snapshots += 1;
            }
            any = true;
        }
        if any {
            self.events += 1;
        }
    }
}

impl Projection for Farm {
    type Error = std::convert::Infallible;

    /// Applies `m`, or holds it while its batch is open: a batch's events
    /// are applied together when its last arrives, so no view ever shows a
    /// state between them.
    fn apply(&mut self, pos: Position, m: &Mutation) -> std::result::Result<(), Self::Error> {
        let is_farm = m.build.is_some()
            || m.machine.is_some()
            || m.result.is_some()
            || m.farm_input.is_some();
        let following = batch_following(m);
        if !self.pending.is_empty() && (!is_farm || following != self.pending_next) {
            self.skipped.torn_batches += 1;
            for (p, held) in std::mem::take(&mut self.pending) {
                self.apply_one(p, &held);
            }
        }
        if !is_farm {
            return Ok(());
        }
        if following > 0 {
            self.pending.push((pos, m.clone()));
            self.pending_next = following - 1;
            return Ok(());
        }
        for (p, held) in std::mem::take(&mut self.pending) {
            self.apply_one(p, &held);
        }
        self.apply_one(pos, m);
        Ok(())
    }
}

#[cfg(test)]
mod tests;

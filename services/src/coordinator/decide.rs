//! The coordinator's decisions: one round compares the farm fold with the
//! machines that are connected and the work discovery finds, and returns
//! the events to append (machines registered and lost, refusals, builds
//! canceled, requeued and requested, assignments) and the builds to start
//! once they are folded. The loop around it appends each round as one
//! batch and waits for its fold before the next, so no round decides from
//! a view that lacks the previous one.
//!
//! A round reads; it never appends or runs anything itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use almanac_projections::farm::{Build, BuildState};
use almanac_proto::pb::farm::{
    BuildCanceled, BuildRequested, BuilderRev, BuildletAssigned, BuildletRequestWithdrawn,
    MachineLost, MachineLostReason, MachineRegistered, MachineRegistrationRejected, build_event,
    machine_event,
};
use almanac_proto::pb::maintpb::Mutation;

use super::discovery::{self, Work};
use super::machines::LiveMachine;
use super::run::{Inner, timestamp_nanos};
use crate::farm::env::Pool;

/// One round of decisions: events to append, then builds to start.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    /// Finished try sets to report to Gerrit.
    reviews: Vec<super::gerrit::Review>,
    events: Vec<Mutation>,
    /// (build id, machine id) pairs assigned in `events`.
    launches: Vec<(String, String)>,
}

/// Decides, appends, waits for the fold to see it, and again; sleeps until
/// something changes when there is nothing to decide.
pub(crate) async fn decide_loop(inner: Arc<Inner>) {
    let mut folded = inner.folded.subscribe();
    let mut stopping = inner.stopping.subscribe();
    let (mut local_changes, mut reverse_changes) = inner.machines.changes();
    let mut corpus = inner.upstream.corpus_changes();
    let mut tick = tokio::time::interval(inner.config.discovery_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut state = DecideState::default();
    let mut last_try: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    // Discovery walks the corpus, so it runs only when something it reads
    // moved (the corpus, a build's end or a result, the pool) or on the
    // tick, not on every record ingest appends or every log chunk.
    let mut discovery_due = true;
    let mut generation_seen = u64::MAX;
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        let generation = inner.read_farm().work_generation();
        if generation != generation_seen {
            generation_seen = generation;
            discovery_due = true;
        }
        let discovery = match discovery_due {
            false => Discovery::Skip,
            true if last_try.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) => {
                last_try = Some(Instant::now());
                Discovery::WithTry
            }
            true => Discovery::PostSubmit,
        };
        discovery_due = false;
        let mut decisions = decide(&inner, &mut state, discovery);
        inner.metrics.decisions.fetch_add(1, Ordering::Relaxed);
        if let Some(config) = &inner.config.gerrit {
            for review in std::mem::take(&mut decisions.reviews) {
                tokio::spawn(super::gerrit::post(inner.clone(), config.clone(), review));
            }
        }
        if !decisions.events.is_empty() {
            match inner.append(&decisions.events).await {
                Ok(Some(last)) => {
                    backoff = Duration::from_millis(100);
                    inner.wait_folded(last).await;
                    if *stopping.borrow() {
                        // Assigned in the log, never started: the next
                        // coordinator takes them over.
                        return;
                    }
                    for (build_id, machine_id) in decisions.launches {
                        tokio::spawn(super::execute::run(inner.clone(), build_id, machine_id));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(super::upstream::UpstreamError::Stopping) => return,
                Err(e) => {
                    tracing::error!(error = %e, "recording decisions failed; retrying");
                    {
                        let mut executing = inner.executing();
                        for (build_id, _) in &decisions.launches {
                            executing.remove(build_id);
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    // The batch may have been made durable with its answer
                    // lost: decide again only from a fold that has caught
                    // up with the log, so nothing is decided twice.
                    if let Err(e) = inner.sync_to_head().await {
                        tracing::warn!(error = %e, "could not reach the log's end");
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            _ = stopping.changed() => return,
            r = folded.changed() => if r.is_err() { return },
            _ = local_changes.changed() => discovery_due = true,
            _ = reverse_changes.changed() => discovery_due = true,
            () = corpus.changed() => discovery_due = true,
            _ = tick.tick() => discovery_due = true,
        }
    }
}

/// What the decision loop remembers between rounds.
#[derive(Debug, Default)]
struct DecideState {
    /// Refusals the reverse pool has had that were looked at.
    refusals_seen: u64,
    /// When each kind of refusal (host type, hostname, reason) was last
    /// recorded: repeats within [`REFUSAL_QUIET`] are counted, not logged,
    /// so a misconfigured or hostile dialer cannot grow the log.
    refusals_recorded: BTreeMap<(String, String, String), Instant>,
}

/// How long an identical refusal goes unrecorded after one was.
const REFUSAL_QUIET: Duration = Duration::from_secs(60);

/// What a round of decisions discovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discovery {
    Skip,
    PostSubmit,
    /// Post-submit and try work (try work at most once a second, as Go).
    WithTry,
}

/// One round: reconcile machines, recover orphaned builds, discover work,
/// assign machines. Reads the fold as it is now; appends nothing itself.
fn decide(inner: &Arc<Inner>, state: &mut DecideState, discovery: Discovery) -> Decisions {
    let mut d = Decisions::default();
    let live = inner.machines.live();
    let farm = inner.read_farm();
    let live_ids: BTreeSet<&str> = live.iter().map(|m| m.machine_id.as_str()).collect();

    // Machines: what is connected and what the log says.
    for m in &live {
        if farm.machine(&m.machine_id).is_none() {
            d.events.push(registered(inner, m));
            inner
                .metrics
                .machines_registered
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    for m in farm.machines() {
        if !live_ids.contains(m.machine_id.as_str()) {
            let (reason, detail) = inner.machines.take_loss(&m.machine_id).unwrap_or((
                MachineLostReason::ConnectionClosed,
                "connection ended".into(),
            ));
            d.events.push(inner.machine_event(
                &m.machine_id,
                machine_event::Event::Lost(MachineLost {
                    machine_id: m.machine_id.clone(),
                    reason: reason as i32,
                    detail,
                }),
            ));
            inner.metrics.machines_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
    inner
        .machines
        .retain_losses(|id| live_ids.contains(id) || farm.machine(id).is_some());
    let (refusals, total) = inner.machines.reverse().refusals_since(state.refusals_seen);
    state.refusals_seen = total;
    let now = Instant::now();
    state
        .refusals_recorded
        .retain(|_, at| now.duration_since(*at) < REFUSAL_QUIET);
    for r in refusals {
        let key = (r.host_type.clone(), r.hostname.clone(), r.reason.clone());
        if state.refusals_recorded.contains_key(&key) {
            inner
                .metrics
                .registrations_refused
                .fetch_add(1, Ordering::Relaxed);
            continue;
        }
        state.refusals_recorded.insert(key, now);
        d.events.push(inner.machine_event(
            "",
            machine_event::Event::RegistrationRejected(MachineRegistrationRejected {
                host_type: r.host_type,
                hostname: r.hostname,
                remote_addr: String::new(),
                http_status: i32::from(r.status),
                reason: r.reason,
            }),
        ));
        inner
            .metrics
            .registrations_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    // Live builds this coordinator cannot run (a builder, host type or
    // source repository its configuration lacks) are canceled rather than
    // queued for machines that would fail them; one whose builder moved
    // to another host type is requested again there.
    let mut canceled = BTreeSet::new();
    let mut taken = BTreeSet::new();
    {
        let executing = inner.executing();
        for b in farm.live_builds() {
            if executing.contains(&b.build_id) {
                continue;
            }
            if let Some(host_type) = inner.moved_to(b) {
                tracing::info!(build = %b.build_id, builder = %b.builder, from = %b.host_type, to = %host_type, "requesting a build again on its builder's new host type");
                d.events
                    .extend(inner.move_events(&farm, b, &host_type, &mut taken));
                canceled.insert(b.build_id.clone());
                continue;
            }
            if let Err(why) = inner.buildable(b) {
                tracing::warn!(build = %b.build_id, builder = %b.builder, why, "canceling a build this coordinator cannot run");
                d.events.push(inner.build_event(
                    &b.build_id,
                    build_event::Event::BuildCanceled(BuildCanceled {
                        build_id: b.build_id.clone(),
                        reason: format!("not_buildable: {why}"),
                    }),
                ));
                canceled.insert(b.build_id.clone());
            }
        }
    }

    // Builds live in the log that nothing here runs or waits for: their
    // machine or their coordinator went away.
    let orphans: Vec<&Build> = {
        let executing = inner.executing();
        farm.live_builds()
            .filter(|b| !executing.contains(&b.build_id) && !canceled.contains(&b.build_id))
            .filter(|b| !(b.state == BuildState::Queued && farm.is_waiting(&b.build_id)))
            .collect()
    };
    for b in orphans {
        // Builds run here always record their end before they leave
        // `executing`, so an orphan was left by another coordinator
        // process (or by one of ours that could not reach the log).
        let why = "the coordinator running it went away before it finished";
        tracing::info!(build = %b.build_id, builder = %b.builder, why, "requeueing");
        d.events
            .extend(inner.requeue_events(&farm, b, why, &mut taken));
    }

    // New work.
    let connected: BTreeSet<&str> = live.iter().map(|m| m.host_type.as_str()).collect();
    let buildable = |w: &Work| {
        let key = (
            w.builder.clone(),
            w.rev.clone(),
            w.sub_name.clone(),
            w.sub_rev.clone(),
        );
        inner.config.repos.contains_key(&w.repo)
            && !inner.backing_off(&key)
            && inner.config.envs.hosts.get(&w.host_type).is_some_and(|h| {
                h.pool != Pool::Reverse || connected.contains(w.host_type.as_str())
            })
    };
    match discovery {
        Discovery::Skip => {}
        Discovery::PostSubmit => {
            inner
                .metrics
                .discovery_passes
                .fetch_add(1, Ordering::Relaxed);
        }
        Discovery::WithTry => {
            inner
                .metrics
                .discovery_passes
                .fetch_add(1, Ordering::Relaxed);
            inner
                .metrics
                .try_discovery_passes
                .fetch_add(1, Ordering::Relaxed);
        }
    }
    let found: Option<Vec<Work>> = match discovery {
        Discovery::Skip => None,
        Discovery::PostSubmit | Discovery::WithTry => inner.upstream.read_corpus(|corpus| {
            let mut work =
                discovery::post_submit_work(corpus, &farm, &inner.config.envs, inner.config.depth);
            if discovery == Discovery::WithTry {
                work.extend(discovery::try_work(corpus, &farm, &inner.config.envs));
            }
            work
        }),
    };
    let mut requested = BTreeSet::new();
    for w in found.unwrap_or_default().into_iter().filter(buildable) {
        let key = (
            w.builder.clone(),
            w.rev.clone(),
            w.sub_name.clone(),
            w.sub_rev.clone(),
        );
        if !requested.insert(key) {
            continue;
        }
        let build_id = inner.new_build_id(&farm, &taken);
        taken.insert(build_id.clone());
        let work = BuilderRev {
            builder: w.builder.clone(),
            rev: w.rev.clone(),
            sub_name: w.sub_name.clone(),
            sub_rev: w.sub_rev.clone(),
        };
        let try_id = w
            .try_info
            .as_ref()
            .map(|t| t.change_id.clone())
            .unwrap_or_default();
        tracing::info!(build = %build_id, builder = %w.builder, repo = %w.repo, commit = %w.commit(), kind = ?w.kind, "build requested");
        d.events.extend(inner.request_events(BuildRequested {
            build_id,
            work: Some(work),
            host_type: w.host_type.clone(),
            kind: w.kind as i32,
            try_id,
            try_slot: 0,
            branch: w.branch.clone(),
            go_branch: String::new(),
            commit_time: timestamp_nanos(w.commit_time),
            attempt: 1,
            supersedes_build_id: String::new(),
        }));
        inner
            .metrics
            .builds_requested
            .fetch_add(1, Ordering::Relaxed);
    }

    // Gomote sessions are not served by this coordinator: such requests
    // are withdrawn, so they cannot hold the head of a queue.
    for (host_type, _) in farm.queue_lengths() {
        for w in farm.queue(host_type).filter(|w| w.build_id.is_empty()) {
            tracing::warn!(request = %w.request_id, session = %w.gomote_session, "withdrawing a gomote request (not served here)");
            d.events.push(inner.build_event(
                &w.request_id,
                build_event::Event::BuildletRequestWithdrawn(BuildletRequestWithdrawn {
                    request_id: w.request_id.clone(),
                    reason: "gomote_unsupported".into(),
                }),
            ));
            canceled.insert(w.request_id.clone());
        }
    }

    // Try sets' reviews go to Gerrit (posted by the loop, outside the
    // round).
    if inner.config.gerrit.is_some() {
        d.reviews = super::gerrit::due(inner, &farm);
    }

    // Idle connected machines take the heads of their queues.
    let mut executing = inner.executing();
    for (request_id, machine_id) in farm.next_assignments() {
        if !live_ids.contains(machine_id.as_str()) {
            continue;
        }
        let Some(waiting) = farm
            .queue(
                &farm
                    .machine(&machine_id)
                    .map(|m| m.host_type.clone())
                    .unwrap_or_default(),
            )
            .find(|w| w.request_id == request_id)
        else {
            continue;
        };
        if waiting.build_id.is_empty() {
            continue;
        }
        if canceled.contains(&waiting.build_id) || executing.contains(&waiting.build_id) {
            continue;
        }
        let ahead = farm
            .queue(&waiting.host_type)
            .take_while(|w| w.request_id != request_id)
            .count();
        executing.insert(waiting.build_id.clone());
        d.events.push(inner.build_event(
            &waiting.build_id,
            build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: request_id.clone(),
                machine_id: machine_id.clone(),
                ahead_at_assign: i32::try_from(ahead).unwrap_or(i32::MAX),
            }),
        ));
        d.launches.push((waiting.build_id.clone(), machine_id));
        inner.metrics.assignments.fetch_add(1, Ordering::Relaxed);
    }
    d
}

fn registered(inner: &Inner, m: &LiveMachine) -> Mutation {
    inner.machine_event(
        &m.machine_id,
        machine_event::Event::Registered(MachineRegistered {
            machine_id: m.machine_id.clone(),
            pool: m.pool.to_owned(),
            host_type: m.host_type.clone(),
            hostname: m.hostname.clone(),
            remote_addr: String::new(),
            buildlet_version: m.version.clone(),
            revdial_version: if m.pool == "reverse" {
                crate::buildlet::reverse::REVDIAL_VERSION.to_owned()
            } else {
                String::new()
            },
        }),
    )
}

//! The farm fold: Go's queue order, assignments, a build's life, machine
//! loss, communication errors, results and their clearing, and replay
//! determinism.

use almanac_log::Position;
use almanac_proto::pb::farm::{
    BuildCompleted, BuildEvent, BuildOutcome, BuildRequested, BuildStarted, BuilderRev,
    BuildletAssigned, BuildletRequested, MachineEvent, MachineLost, MachineRegistered, Priority,
    PriorityClass, ResultCleared, ResultEvent, ResultKey, ResultRecorded, StepFinished,
    StepStarted, build_event, machine_event, result_event,
};
use almanac_proto::pb::maintpb::Mutation;
use prost_types::Timestamp;

use super::*;

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn build(e: build_event::Event) -> Mutation {
    Mutation {
        build: Some(BuildEvent {
            meta: None,
            event: Some(e),
        }),
        ..Default::default()
    }
}

fn machine(e: machine_event::Event) -> Mutation {
    Mutation {
        machine: Some(MachineEvent {
            meta: None,
            event: Some(e),
        }),
        ..Default::default()
    }
}

fn result(e: result_event::Event) -> Mutation {
    Mutation {
        result: Some(ResultEvent {
            meta: None,
            event: Some(e),
        }),
        ..Default::default()
    }
}

fn requested(id: &str, builder: &str, rev: &str, host: &str) -> Mutation {
    build(build_event::Event::BuildRequested(BuildRequested {
        build_id: id.into(),
        work: Some(BuilderRev {
            builder: builder.into(),
            rev: rev.into(),
            ..Default::default()
        }),
        host_type: host.into(),
        attempt: 1,
        ..Default::default()
    }))
}

fn wants(
    request: &str,
    build_id: &str,
    host: &str,
    class: PriorityClass,
    request_time: i64,
    commit_time: i64,
) -> Mutation {
    build(build_event::Event::BuildletRequested(BuildletRequested {
        request_id: request.into(),
        host_type: host.into(),
        build_id: build_id.into(),
        priority: Some(Priority {
            class: class as i32,
            request_time: ts(request_time),
            commit_time: ts(commit_time),
        }),
        ..Default::default()
    }))
}

fn registered(id: &str, host: &str) -> Mutation {
    machine(machine_event::Event::Registered(MachineRegistered {
        machine_id: id.into(),
        pool: "reverse".into(),
        host_type: host.into(),
        hostname: format!("{id}.local"),
        ..Default::default()
    }))
}

fn completed(id: &str, outcome: BuildOutcome) -> Mutation {
    build(build_event::Event::BuildCompleted(BuildCompleted {
        build_id: id.into(),
        outcome: outcome as i32,
        ..Default::default()
    }))
}

fn fold(farm: &mut Farm, mutations: &[Mutation]) {
    for (i, m) in mutations.iter().enumerate() {
        let pos = Position(farm.events() * 1000 + i as u64);
        farm.apply(pos, m).expect("infallible");
    }
}

const HOST: &str = "host-linux-amd64-local";

/// Five builds waiting on one host type, in every priority class.
fn queued() -> Vec<Mutation> {
    vec![
        requested("B1", "linux-amd64", "old", HOST),
        wants("R1", "B1", HOST, PriorityClass::Regular, 10, 100),
        requested("B2", "linux-amd64", "new", HOST),
        wants("R2", "B2", HOST, PriorityClass::Regular, 11, 200),
        requested("B3", "linux-amd64", "try-late", HOST),
        wants("R3", "B3", HOST, PriorityClass::Try, 50, 0),
        requested("B4", "linux-amd64", "try-early", HOST),
        wants("R4", "B4", HOST, PriorityClass::Try, 20, 0),
        wants("R5", "", HOST, PriorityClass::Gomote, 90, 0),
    ]
}

#[test]
fn the_queue_is_gos_order() {
    let mut farm = Farm::new();
    fold(&mut farm, &queued());
    let order: Vec<&str> = farm.queue(HOST).map(|w| w.request_id.as_str()).collect();
    // Gomote, then try first come first served, then newest commit first.
    assert_eq!(order, ["R5", "R4", "R3", "R2", "R1"]);
    assert_eq!(farm.queue_lengths().collect::<Vec<_>>(), [(HOST, 5)]);
    assert_eq!(
        farm.starved_host_types().into_iter().collect::<Vec<_>>(),
        [HOST]
    );
    assert!(farm.next_assignments().is_empty(), "no machine yet");
}

#[test]
fn idle_machines_take_the_head_of_their_queue() {
    let mut farm = Farm::new();
    fold(&mut farm, &queued());
    fold(
        &mut farm,
        &[
            registered("M2", HOST),
            registered("M1", HOST),
            registered("M3", "host-other"),
        ],
    );
    assert_eq!(
        farm.next_assignments(),
        [
            ("R5".to_string(), "M1".to_string()),
            ("R4".to_string(), "M2".to_string())
        ]
    );
    fold(
        &mut farm,
        &[build(build_event::Event::BuildletAssigned(
            BuildletAssigned {
                request_id: "R4".into(),
                machine_id: "M1".into(),
                ahead_at_assign: 1,
            },
        ))],
    );
    assert_eq!(
        farm.machine("M1").and_then(|m| m.assigned_to.as_deref()),
        Some("R4")
    );
    assert_eq!(
        farm.next_assignments(),
        [("R5".to_string(), "M2".to_string())]
    );
    assert_eq!(farm.queue(HOST).count(), 4);
}

#[test]
fn a_build_runs_its_steps_and_frees_its_machine() {
    let mut farm = Farm::new();
    fold(&mut farm, &queued());
    fold(
        &mut farm,
        &[
            registered("M1", HOST),
            build(build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: "R4".into(),
                machine_id: "M1".into(),
                ahead_at_assign: 1,
            })),
            build(build_event::Event::BuildStarted(BuildStarted {
                build_id: "B4".into(),
                machine_id: "M1".into(),
            })),
            build(build_event::Event::StepStarted(StepStarted {
                build_id: "B4".into(),
                step_id: "S1".into(),
                name: "make".into(),
                ..Default::default()
            })),
        ],
    );
    assert_eq!(
        farm.active_builds()
            .map(|b| b.build_id.as_str())
            .collect::<Vec<_>>(),
        ["B4"]
    );
    assert!(farm.has_live_build("linux-amd64", "try-early", "", ""));
    fold(
        &mut farm,
        &[
            build(build_event::Event::StepFinished(StepFinished {
                build_id: "B4".into(),
                step_id: "S1".into(),
                error: String::new(),
                duration: None,
            })),
            build(build_event::Event::BuildCompleted(BuildCompleted {
                build_id: "B4".into(),
                outcome: BuildOutcome::Passed as i32,
                done_msg: "ok".into(),
                ..Default::default()
            })),
        ],
    );
    let b4 = farm.build("B4").expect("B4");
    assert_eq!(b4.steps[0].error.as_deref(), Some(""));
    assert!(matches!(
        b4.state,
        BuildState::Done {
            outcome: BuildOutcome::Passed,
            ..
        }
    ));
    assert!(!farm.has_live_build("linux-amd64", "try-early", "", ""));
    let m1 = farm.machine("M1").expect("M1");
    assert_eq!(
        (m1.assigned_to.as_deref(), m1.running.as_deref()),
        (None, None)
    );
    assert_eq!(farm.recent_builds(10).len(), 1);
}

#[test]
fn a_lost_machine_leaves_its_build_for_the_coordinator_to_requeue() {
    let mut farm = Farm::new();
    fold(&mut farm, &queued());
    fold(
        &mut farm,
        &[
            registered("M1", HOST),
            build(build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: "R2".into(),
                machine_id: "M1".into(),
                ahead_at_assign: 0,
            })),
            build(build_event::Event::BuildStarted(BuildStarted {
                build_id: "B2".into(),
                machine_id: "M1".into(),
            })),
            machine(machine_event::Event::Lost(MachineLost {
                machine_id: "M1".into(),
                reason: 2,
                detail: "connection closed".into(),
            })),
            // The coordinator records the communication error: not a
            // result, and the work is live no more.
            build(build_event::Event::BuildCompleted(BuildCompleted {
                build_id: "B2".into(),
                outcome: BuildOutcome::CommError as i32,
                ..Default::default()
            })),
        ],
    );
    assert!(farm.machine("M1").is_none());
    assert!(!farm.has_live_build("linux-amd64", "new", "", ""));
    assert!(farm.result("linux-amd64", "", "new", "").is_none());
}

#[test]
fn results_are_recorded_and_cleared() {
    let key = || {
        Some(ResultKey {
            builder: "linux-amd64".into(),
            hash: "abc".into(),
            ..Default::default()
        })
    };
    let mut farm = Farm::new();
    fold(
        &mut farm,
        &[result(result_event::Event::ResultRecorded(
            ResultRecorded {
                key: key(),
                ok: false,
                log_hash: "L".into(),
                run_time_ns: 1,
                build_id: "B9".into(),
            },
        ))],
    );
    assert_eq!(
        farm.result("linux-amd64", "", "abc", "").map(|r| r.ok),
        Some(false)
    );
    fold(
        &mut farm,
        &[result(result_event::Event::ResultCleared(ResultCleared {
            key: key(),
            actor: "operator".into(),
            reason: "retrybuilds".into(),
        }))],
    );
    assert!(farm.result("linux-amd64", "", "abc", "").is_none());
}

#[test]
fn unknown_references_are_counted_not_applied() {
    let mut farm = Farm::new();
    fold(
        &mut farm,
        &[
            wants("R1", "B-nope", HOST, PriorityClass::Try, 1, 0),
            build(build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: "R1".into(),
                machine_id: "M-nope".into(),
                ahead_at_assign: 0,
            })),
            requested("B1", "linux-amd64", "x", HOST),
            requested("B1", "linux-amd64", "x", HOST),
            completed("B1", BuildOutcome::Failed),
            completed("B1", BuildOutcome::Passed),
        ],
    );
    assert_eq!(
        farm.skipped(),
        &FarmSkipped {
            unknown_build: 1,
            unknown_request: 0,
            unknown_machine: 1,
            duplicate_build: 1,
            already_done: 1,
            torn_batches: 0,
            duplicate_request: 0,
            duplicate_machine: 0,
            busy_machine: 0,
        }
    );
    // The first verdict stands.
    assert_eq!(
        farm.build("B1").map(|b| b.state.clone()),
        Some(BuildState::Done {
            outcome: BuildOutcome::Failed,
            done_msg: String::new()
        })
    );
    assert_eq!(farm.queue(HOST).count(), 0);
}

#[test]
fn replay_is_deterministic() {
    let mut events = queued();
    events.push(registered("M1", HOST));
    let mut a = Farm::new();
    fold(&mut a, &events);
    let mut b = Farm::new();
    fold(&mut b, &events);
    assert_eq!(a, b);
}

fn in_batch(mut m: Mutation, following: u32) -> Mutation {
    let meta = Some(almanac_proto::pb::farm::EventMeta {
        batch_following: following,
        ..Default::default()
    });
    if let Some(e) = m.build.as_mut() {
        e.meta = meta;
    } else if let Some(e) = m.machine.as_mut() {
        e.meta = meta;
    } else if let Some(e) = m.result.as_mut() {
        e.meta = meta;
    }
    m
}

#[test]
fn a_batch_is_applied_whole_when_its_last_event_arrives() {
    let mut farm = Farm::new();
    fold(&mut farm, &[requested("B1", "linux-amd64", "x", HOST)]);
    // A verdict: result first, then the completion, as one batch.
    let batch = [
        in_batch(
            result(result_event::Event::ResultRecorded(ResultRecorded {
                key: Some(ResultKey {
                    builder: "linux-amd64".into(),
                    hash: "x".into(),
                    ..Default::default()
                }),
                ok: true,
                build_id: "B1".into(),
                ..Default::default()
            })),
            1,
        ),
        in_batch(completed("B1", BuildOutcome::Passed), 0),
    ];
    farm.apply(Position(100), &batch[0]).expect("apply");
    assert!(farm.in_batch());
    assert!(
        farm.result("linux-amd64", "", "x", "").is_none(),
        "held, not applied"
    );
    assert!(farm.has_live_build("linux-amd64", "x", "", ""));
    farm.apply(Position(200), &batch[1]).expect("apply");
    assert!(!farm.in_batch());
    assert!(farm.result("linux-amd64", "", "x", "").is_some());
    assert!(!farm.has_live_build("linux-amd64", "x", "", ""));

    // A batch cut short by an unrelated event is applied, and counted.
    let mut torn = Farm::new();
    fold(
        &mut torn,
        &[in_batch(requested("B2", "linux-amd64", "y", HOST), 2)],
    );
    assert!(torn.build("B2").is_none());
    fold(&mut torn, &[requested("B3", "linux-amd64", "z", HOST)]);
    assert!(torn.build("B2").is_some() && torn.build("B3").is_some());
    assert_eq!(torn.skipped().torn_batches, 1);
}

#[test]
fn a_batch_appended_twice_changes_nothing_the_second_time() {
    let mut farm = Farm::new();
    let setup = [
        registered("M1", HOST),
        registered("M2", HOST),
        requested("B1", "linux-amd64", "x", HOST),
        wants("R1", "B1", HOST, PriorityClass::Regular, 1, 1),
        build(build_event::Event::BuildletAssigned(BuildletAssigned {
            request_id: "R1".into(),
            machine_id: "M1".into(),
            ahead_at_assign: 0,
        })),
    ];
    fold(&mut farm, &setup);
    let once = farm.clone();
    // The registration, the request and the assignment again.
    fold(
        &mut farm,
        &[
            registered("M1", HOST),
            wants("R1", "B1", HOST, PriorityClass::Regular, 1, 1),
            build(build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: "R1".into(),
                machine_id: "M2".into(),
                ahead_at_assign: 0,
            })),
        ],
    );
    assert_eq!(
        farm.machine("M1")
            .and_then(|m| m.assigned_to.clone())
            .as_deref(),
        Some("R1")
    );
    assert_eq!(
        farm.queue(HOST).count(),
        0,
        "the request is not queued again"
    );
    assert_eq!(farm.next_assignment(), None);
    assert_eq!(farm.skipped().duplicate_machine, 1);
    assert_eq!(farm.skipped().duplicate_request, 1);
    assert_eq!(farm.skipped().unknown_request, 1);
    // Apart from the counters, the view is what it was.
    assert_eq!(
        farm.machines().collect::<Vec<_>>(),
        once.machines().collect::<Vec<_>>()
    );
    assert_eq!(
        farm.builds().collect::<Vec<_>>(),
        once.builds().collect::<Vec<_>>()
    );

    // An assignment to a busy machine is refused.
    fold(
        &mut farm,
        &[
            requested("B2", "linux-amd64", "y", HOST),
            wants("R2", "B2", HOST, PriorityClass::Regular, 2, 2),
            build(build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id: "R2".into(),
                machine_id: "M1".into(),
                ahead_at_assign: 0,
            })),
        ],
    );
    assert_eq!(farm.skipped().busy_machine, 1);
    assert_eq!(farm.queue(HOST).count(), 1, "R2 still waits");
}

fn try_requested(id: &str, builder: &str, rev: &str, change: &str) -> Mutation {
    let mut m = requested(id, builder, rev, HOST);
    if let Some(BuildEvent {
        event: Some(build_event::Event::BuildRequested(r)),
        ..
    }) = m.build.as_mut()
    {
        r.try_id = change.into();
        r.kind = almanac_proto::pb::farm::BuildKind::Try as i32;
    }
    m
}

fn review_posted(change: &str, rev: &str, tag: &str) -> Mutation {
    result(result_event::Event::GerritReviewPosted(
        almanac_proto::pb::farm::GerritReviewPosted {
            try_id: change.into(),
            revision: rev.into(),
            tag: tag.into(),
            ..Default::default()
        },
    ))
}

/// The beginning and progress reviews are noted on the try set; the
/// result's review (or any review of an older log, whatever its tag) ends
/// it; a review of another revision changes nothing.
#[test]
fn a_try_set_notes_its_reviews_until_the_result_ends_it() {
    let mut farm = Farm::new();
    fold(
        &mut farm,
        &[
            try_requested("T1", "linux-amd64", "abc", "I1"),
            try_requested("T2", "linux-386", "abc", "I1"),
        ],
    );
    let set = |farm: &Farm| {
        farm.unposted_try_sets()
            .find(|(key, _)| *key == &("I1".to_owned(), "abc".to_owned()))
            .map(|(_, set)| set.clone())
    };
    let first = set(&farm).expect("the set");
    assert_eq!(first.builds.len(), 2);
    assert!(!first.began && !first.progress_posted);

    fold(
        &mut farm,
        &[review_posted(
            "I1",
            "abc",
            "autogenerated:trybots~beginning",
        )],
    );
    let began = set(&farm).expect("still there");
    assert!(began.began && !began.progress_posted);

    fold(
        &mut farm,
        &[
            review_posted("I1", "other", "autogenerated:trybots~happy"),
            review_posted("I1", "abc", "autogenerated:trybots~progress"),
        ],
    );
    let progressed = set(&farm).expect("still there");
    assert!(progressed.began && progressed.progress_posted);
    assert_eq!(progressed.builds, first.builds);

    fold(
        &mut farm,
        &[review_posted("I1", "abc", "autogenerated:trybots~failed")],
    );
    assert_eq!(set(&farm), None);

    // A log written before reviews had stages: its one review, tagged or
    // not, is the result.
    fold(
        &mut farm,
        &[try_requested("T3", "linux-amd64", "def", "I2")],
    );
    assert_eq!(farm.unposted_try_sets().count(), 1);
    fold(&mut farm, &[review_posted("I2", "def", "")]);
    assert_eq!(farm.unposted_try_sets().count(), 0);
    assert_eq!(
        ReviewStage::of_tag("autogenerated:trybots~happy"),
        ReviewStage::Final
    );
    assert_eq!(
        ReviewStage::of_tag("autogenerated:trybots~beginning"),
        ReviewStage::Beginning
    );
}

/// Post-submit builds past the kept window are let go, oldest finished
/// first; their ids stay taken, and the newest stay whole.
#[test]
fn finished_builds_past_the_window_are_let_go_and_their_ids_stay_taken() {
    let mut farm = Farm::keeping_done_builds(2);
    for i in 0..5 {
        let id = format!("B{i}");
        fold(
            &mut farm,
            &[
                requested(&id, "linux-amd64", &format!("rev{i}"), HOST),
                completed(&id, BuildOutcome::Passed),
            ],
        );
    }
    let kept: Vec<&str> = farm.builds().map(|b| b.build_id.as_str()).collect();
    assert_eq!(kept, ["B3", "B4"]);
    let recent: Vec<&str> = farm
        .recent_builds(10)
        .iter()
        .map(|b| b.build_id.as_str())
        .collect();
    assert_eq!(recent, ["B4", "B3"]);
    assert_eq!(farm.retired_builds(), 3);
    assert!(farm.build("B0").is_none());
    assert!(farm.knows_build_id("B0") && farm.knows_build_id("B4"));
    assert!(!farm.knows_build_id("B5"));

    // A request that reuses a let-go id is the duplicate it would have
    // been before, and changes nothing.
    let before = farm.clone();
    fold(&mut farm, &[requested("B0", "linux-amd64", "again", HOST)]);
    assert_eq!(farm.skipped().duplicate_build, 1);
    assert!(farm.build("B0").is_none());
    assert!(!farm.has_live_build("linux-amd64", "again", "", ""));
    assert_eq!(farm.retired_builds(), before.retired_builds());

    // Live builds are never let go, however many finish after them.
    fold(&mut farm, &[requested("L", "linux-amd64", "live", HOST)]);
    for i in 5..9 {
        let id = format!("B{i}");
        fold(
            &mut farm,
            &[
                requested(&id, "linux-amd64", &format!("rev{i}"), HOST),
                completed(&id, BuildOutcome::Failed),
            ],
        );
    }
    assert_eq!(farm.build("L").map(|b| &b.state), Some(&BuildState::Queued));
    assert!(farm.has_live_build("linux-amd64", "live", "", ""));
    assert_eq!(farm.builds().count(), 3, "two finished and the live one");
}

/// A try set keeps how each builder's latest build ended, so it needs
/// none of its builds once they are let go; an end of a build its
/// builder has replaced is not the builder's. The verdict that keeps
/// discovery from running the work again outlives the build too.
#[test]
fn a_try_set_keeps_its_endings_after_its_builds_are_let_go() {
    let chunks: Vec<Vec<Mutation>> = vec![
        vec![
            try_requested("T1", "linux-amd64", "abc", "I1"),
            try_requested("T2", "linux-386", "abc", "I1"),
            completed("T1", BuildOutcome::Passed),
            completed("T2", BuildOutcome::CommError),
        ],
        vec![try_requested("T3", "linux-386", "abc", "I1")],
        vec![
            requested("P1", "linux-amd64", "post", HOST),
            completed("P1", BuildOutcome::Passed),
            completed("T3", BuildOutcome::Failed),
        ],
        vec![
            try_requested("T5", "linux-arm", "abc", "I1"),
            try_requested("T6", "linux-arm", "abc", "I1"),
            build(build_event::Event::BuildCanceled(
                almanac_proto::pb::farm::BuildCanceled {
                    build_id: "T5".into(),
                    reason: "operator".into(),
                },
            )),
        ],
    ];
    let mut farm = Farm::keeping_done_builds(1);
    for chunk in &chunks {
        fold(&mut farm, chunk);
    }
    assert_eq!(
        farm.builds_kept(),
        2,
        "T5, the last to finish, and T6, live"
    );
    assert!(farm.build("T1").is_none() && farm.build("T3").is_none());
    let (_, set) = farm
        .unposted_try_sets()
        .find(|(key, _)| *key == &("I1".to_owned(), "abc".to_owned()))
        .expect("the set");
    assert_eq!(set.project, "go");
    let builds: Vec<(&str, &str)> = set
        .builds
        .iter()
        .map(|(b, id)| (b.as_str(), id.as_str()))
        .collect();
    assert_eq!(
        builds,
        [
            ("linux-386", "T3"),
            ("linux-amd64", "T1"),
            ("linux-arm", "T6")
        ]
    );
    let ended: Vec<(&str, BuildOutcome)> = set
        .ended
        .iter()
        .map(|(b, (outcome, _))| (b.as_str(), *outcome))
        .collect();
    assert_eq!(
        ended,
        [
            ("linux-386", BuildOutcome::Failed),
            ("linux-amd64", BuildOutcome::Passed)
        ],
        "T2's communication error was replaced by T3's end, and T5's cancel is not linux-arm's"
    );
    assert_eq!(
        farm.concluded_build("linux-amd64", "abc", "", ""),
        Some(&Concluded {
            build_id: "T1".into(),
            kind: BuildKind::Try,
        })
    );

    // Replaying the same log lets the same builds go.
    let mut again = Farm::keeping_done_builds(1);
    for chunk in &chunks {
        fold(&mut again, chunk);
    }
    assert_eq!(again, farm);

    fold(
        &mut farm,
        &[review_posted("I1", "abc", "autogenerated:trybots~failed")],
    );
    assert_eq!(farm.unposted_try_sets().count(), 0);
}

//! The coordinator's scheduling state as a fold (`almanac_projections::farm`):
//!
//! 1. Scheduling: 10,000 waiting requests across 50 host types and 1,000
//!    machines (20 per host type), in all three priority classes. Each
//!    decision asks the fold for the next assignment, records it
//!    (`BuildletAssigned`), then records that build's completion, which
//!    frees its machine: decisions per second and the latency of one
//!    decision (p50/p99/max) until the queue is empty.
//! 2. Restart: a log holding a year of build events (`ALMANAC_FARM_DAYS`,
//!    default 365; 1,200 builds a day, 13 events each: request, buildlet
//!    request, assignment, start, three steps, two log chunks, completion,
//!    result) is written with almanac-log, then folded from disk as a
//!    restarted coordinator does: events per second and wall time; then
//!    the real thing: maintnerd opens that log and `Coordinator::start`
//!    returns once its fold has caught up.
//!
//! Run: `cargo bench -p almanac-services --bench farm_schedule`

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use prost_types::Timestamp;

use almanac_log::{Log, Options, Position};
use almanac_projections::Projection as _;
use almanac_projections::farm::Farm;
use almanac_proto::pb::farm::{
    BlobRef, BuildCompleted, BuildEvent, BuildOutcome, BuildRequested, BuildStarted, BuilderRev,
    BuildletAssigned, BuildletRequested, LogChunkAppended, MachineEvent, MachineRegistered,
    Priority, PriorityClass, ResultEvent, ResultKey, ResultRecorded, StepFinished, StepStarted,
    build_event, machine_event, result_event,
};
use almanac_proto::pb::maintpb::Mutation;

const HOST_TYPES: usize = 50;
const MACHINES_PER_HOST: usize = 20;
const REQUESTS: usize = 10_000;

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

fn host(i: usize) -> String {
    format!("host-bench-{i:02}")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn scheduling() {
    let mut farm = Farm::new();
    let mut pos = 0u64;
    let mut apply = |farm: &mut Farm, m: &Mutation| {
        pos += 1;
        farm.apply(Position(pos), m).expect("infallible");
    };
    for h in 0..HOST_TYPES {
        for k in 0..MACHINES_PER_HOST {
            apply(
                &mut farm,
                &Mutation {
                    machine: Some(MachineEvent {
                        meta: None,
                        event: Some(machine_event::Event::Registered(MachineRegistered {
                            machine_id: format!("M{h:02}-{k:02}"),
                            pool: "reverse".into(),
                            host_type: host(h),
                            hostname: format!("m{h}-{k}"),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                },
            );
        }
    }
    for i in 0..REQUESTS {
        let build_id = format!("B{i:09}");
        let class = match i % 10 {
            0 => PriorityClass::Gomote,
            1..=3 => PriorityClass::Try,
            _ => PriorityClass::Regular,
        };
        apply(
            &mut farm,
            &build(build_event::Event::BuildRequested(BuildRequested {
                build_id: build_id.clone(),
                work: Some(BuilderRev {
                    builder: format!("builder-{}", i % 200),
                    rev: format!("{i:040x}"),
                    ..Default::default()
                }),
                host_type: host(i % HOST_TYPES),
                attempt: 1,
                ..Default::default()
            })),
        );
        apply(
            &mut farm,
            &build(build_event::Event::BuildletRequested(BuildletRequested {
                request_id: format!("R{i:09}"),
                host_type: host(i % HOST_TYPES),
                build_id,
                priority: Some(Priority {
                    class: class as i32,
                    request_time: ts(1_700_000_000 + i as i64),
                    commit_time: ts(1_600_000_000 + ((i * 7919) % 100_000) as i64),
                }),
                ..Default::default()
            })),
        );
    }
    println!(
        "== scheduling: {REQUESTS} waiting requests, {HOST_TYPES} host types, {} machines",
        HOST_TYPES * MACHINES_PER_HOST
    );
    let mut latencies = Vec::with_capacity(REQUESTS);
    let started = Instant::now();
    loop {
        let t0 = Instant::now();
        let Some((request_id, machine_id)) = farm.next_assignment() else {
            break;
        };
        let build_id = format!("B{}", &request_id[1..]);
        apply(
            &mut farm,
            &build(build_event::Event::BuildletAssigned(BuildletAssigned {
                request_id,
                machine_id,
                ahead_at_assign: 0,
            })),
        );
        latencies.push(t0.elapsed());
        apply(
            &mut farm,
            &build(build_event::Event::BuildCompleted(BuildCompleted {
                build_id,
                outcome: BuildOutcome::Passed as i32,
                ..Default::default()
            })),
        );
    }
    let wall = started.elapsed();
    assert_eq!(latencies.len(), REQUESTS, "every request was served");
    latencies.sort();
    println!(
        "decisions: {} in {wall:.2?} ({:.0}/s, each followed by the build's completion); one decision (next_assignment + record): p50 {:.1?} p99 {:.1?} max {:.1?}",
        latencies.len(),
        latencies.len() as f64 / wall.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}

/// The 13 events of one build.
fn one_build(day: i64, i: usize, machine: &str) -> Vec<Mutation> {
    let build_id = format!("B{day:03}{i:06}");
    let step = |k: usize| {
        [
            build(build_event::Event::StepStarted(StepStarted {
                build_id: build_id.clone(),
                step_id: format!("S{k}"),
                name: ["make", "run_test:go_test:runtime", "run_test:go_test:net"][k].into(),
                machine_id: machine.into(),
                ..Default::default()
            })),
            build(build_event::Event::StepFinished(StepFinished {
                build_id: build_id.clone(),
                step_id: format!("S{k}"),
                error: String::new(),
                duration: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            })),
        ]
    };
    let rev = format!("{:040x}", day as usize * 100_000 + i / 30);
    let builder = format!("builder-{:02}", i % 30);
    let mut events = vec![
        build(build_event::Event::BuildRequested(BuildRequested {
            build_id: build_id.clone(),
            work: Some(BuilderRev {
                builder: builder.clone(),
                rev: rev.clone(),
                ..Default::default()
            }),
            host_type: host(i % 30),
            attempt: 1,
            branch: "master".into(),
            commit_time: ts(1_700_000_000 + day * 86_400 + i as i64),
            ..Default::default()
        })),
        build(build_event::Event::BuildletRequested(BuildletRequested {
            request_id: format!("R{day:03}{i:06}"),
            host_type: host(i % 30),
            build_id: build_id.clone(),
            priority: Some(Priority {
                class: PriorityClass::Regular as i32,
                request_time: ts(1_700_000_000 + day * 86_400 + i as i64),
                commit_time: ts(1_700_000_000 + day * 86_400 + i as i64),
            }),
            ..Default::default()
        })),
        build(build_event::Event::BuildletAssigned(BuildletAssigned {
            request_id: format!("R{day:03}{i:06}"),
            machine_id: machine.into(),
            ahead_at_assign: 0,
        })),
        build(build_event::Event::BuildStarted(BuildStarted {
            build_id: build_id.clone(),
            machine_id: machine.into(),
        })),
    ];
    for k in 0..3 {
        events.extend(step(k));
    }
    for seq in 0..2 {
        events.push(build(build_event::Event::LogChunkAppended(
            LogChunkAppended {
                build_id: build_id.clone(),
                seq,
                blob: Some(BlobRef {
                    sha256: format!("{:064x}", day as usize * 1_000_000 + i * 2 + seq as usize),
                    size: 65_536,
                }),
                stream: "main".into(),
                ..Default::default()
            },
        )));
    }
    events.push(build(build_event::Event::BuildCompleted(BuildCompleted {
        build_id: build_id.clone(),
        outcome: BuildOutcome::Passed as i32,
        done_msg: "ok".into(),
        ..Default::default()
    })));
    events.push(Mutation {
        result: Some(ResultEvent {
            meta: None,
            event: Some(result_event::Event::ResultRecorded(ResultRecorded {
                key: Some(ResultKey {
                    builder,
                    hash: rev,
                    ..Default::default()
                }),
                ok: true,
                log_hash: format!("{:040x}", i),
                run_time_ns: 180_000_000_000,
                build_id,
            })),
        }),
        ..Default::default()
    });
    events
}

fn restart() {
    let days: i64 = std::env::var("ALMANAC_FARM_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(365);
    const BUILDS_PER_DAY: usize = 1_200;
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (log, _) = Log::open(dir.path(), Options::default()).expect("open log");
    let started = Instant::now();
    let mut events = 0u64;
    // Machines first, as the coordinator registers them.
    let mut first = Vec::new();
    for h in 0..30 {
        first.push(Bytes::from(
            Mutation {
                machine: Some(MachineEvent {
                    meta: None,
                    event: Some(machine_event::Event::Registered(MachineRegistered {
                        machine_id: format!("M{h:02}"),
                        pool: "reverse".into(),
                        host_type: host(h),
                        hostname: format!("m{h}"),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        ));
    }
    events += first.len() as u64;
    rt.block_on(log.append(first)).expect("append");
    for day in 0..days {
        let mut batch = Vec::with_capacity(BUILDS_PER_DAY * 13);
        for i in 0..BUILDS_PER_DAY {
            for m in one_build(day, i, &format!("M{:02}", i % 30)) {
                batch.push(Bytes::from(m.encode_to_vec()));
            }
        }
        events += batch.len() as u64;
        for chunk in batch.chunks(4096) {
            rt.block_on(log.append(chunk.to_vec())).expect("append");
        }
    }
    let bytes = log.end().0;
    drop(log);
    println!(
        "== restart: {days} days of build events, {events} events, {:.0} MB, written in {:.1?}",
        bytes as f64 / 1e6,
        started.elapsed()
    );

    let rss_before = common::rss_mib();
    let started = Instant::now();
    let snapshot = almanac_log::Snapshot::open(dir.path()).expect("snapshot");
    let mut reader = snapshot.read_from(Position(0)).expect("reader");
    let mut farm = Farm::new();
    almanac_projections::replay(&mut reader, &mut farm).expect("replay");
    let wall = started.elapsed();
    assert_eq!(farm.events(), events);
    assert_eq!(farm.active_builds().count(), 0);
    let total_builds = days as usize * BUILDS_PER_DAY;
    assert_eq!(farm.builds().count() + farm.retired_builds(), total_builds);
    println!(
        "fold from disk: {wall:.2?} ({:.0} events/s, {:.0} MB/s); {total_builds} builds ({} kept whole, {} let go), {} machines; RSS {:.0} MiB after the fold (+{:.0} MiB), peak {:.0} MiB",
        events as f64 / wall.as_secs_f64(),
        bytes as f64 / 1e6 / wall.as_secs_f64(),
        farm.builds().count(),
        farm.retired_builds(),
        farm.machines().count(),
        common::rss_mib(),
        common::rss_mib() - rss_before,
        common::peak_rss_mib()
    );
    drop(farm);
    drop(reader);

    // The same log under the real coordinator: maintnerd opens it, and
    // `Coordinator::start` returns once its fold has caught up.
    rt.block_on(async {
        let mut config =
            almanac_services::maintnerd::Config::new(dir.path().to_owned(), "127.0.0.1:0".parse().expect("addr"));
        config.serve_corpus = false;
        let server = almanac_services::maintnerd::Server::start(config)
            .await
            .expect("maintnerd");
        let envs = almanac_services::farm::env::Environments {
            hosts: Default::default(),
            builders: Default::default(),
        };
        let blobs = tempfile::tempdir().expect("tempdir");
        let config = almanac_services::coordinator::Config::new(
            envs,
            almanac_services::ingest::config::Secret::new("bench".into()),
            blobs.path().to_owned(),
        );
        let started = Instant::now();
        let coordinator = almanac_services::coordinator::Coordinator::start(
            almanac_services::coordinator::upstream::Upstream::Local(server.sink()),
            config,
        )
        .await
        .expect("coordinator");
        let wall = started.elapsed();
        let (builds, done) = coordinator
            .read_farm(|f| (f.builds().count() + f.retired_builds(), f.recent_builds(1).len()));
        assert_eq!(builds, days as usize * BUILDS_PER_DAY);
        assert_eq!(done, 1);
        println!(
            "restarted coordinator (maintnerd's log, in process): folded in {wall:.2?} ({:.0} events/s, {:.0} MB/s); RSS {:.0} MiB, peak {:.0} MiB",
            events as f64 / wall.as_secs_f64(),
            bytes as f64 / 1e6 / wall.as_secs_f64(),
            common::rss_mib(),
            common::peak_rss_mib()
        );
        server.shutdown().await.expect("shutdown");
    });
}

fn main() {
    scheduling();
    restart();
}

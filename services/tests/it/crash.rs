//! Crash safety: SIGKILL a writer process under load, many times; every
//! acknowledged record survives and nothing half-written is ever visible.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;

use almanac_log::{Log, Options, Position};
use almanac_proto::pb::maintpb::Mutation;
use almanac_services::codec::MutationCodec;
use almanac_services::sample::Rng;
use prost::Message as _;

use crate::support::{almanac, arg};

/// The mutation with sequence number `i`: a comment whose id is `i`.
fn numbered(i: u64) -> Mutation {
    let mut m = almanac_services::sample::SampleHistory::new(i)
        .nth(1)
        .expect("history is endless");
    m.github_issue = Some(almanac_proto::pb::maintpb::GithubIssueMutation {
        owner: "golang".into(),
        repo: "go".into(),
        number: 1,
        comment: vec![almanac_proto::pb::maintpb::GithubIssueCommentMutation {
            id: i as i64 + 1,
            body: "x".repeat((i % 700) as usize),
            ..Default::default()
        }],
        ..Default::default()
    });
    m
}

fn sequence_number(payload: &[u8]) -> u64 {
    let m = Mutation::decode(payload).expect("every visible record decodes");
    m.github_issue.expect("issue").comment[0].id as u64 - 1
}

#[test]
fn sigkill_under_load_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let codec = MutationCodec::new().expect("codec");
    let mut rng = Rng::new(2026);
    let mut next = 0u64;
    let mut acked_total = 0u64;
    let rounds = 12;
    let mut torn_tails = 0;
    for round in 0..rounds {
        let mut child = almanac()
            .args([
                "log",
                "append",
                arg(dir.path()),
                "--json",
                "--segment-size",
                "65536",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let mut input = child.stdin.take().expect("stdin");
        let first = next;
        let lines: Vec<String> = (first..first + 20_000)
            .map(|i| codec.to_json(&numbered(i).encode_to_vec()).expect("json"))
            .collect();
        let feeder = std::thread::spawn(move || {
            for line in lines {
                if writeln!(input, "{line}").is_err() {
                    break;
                }
            }
        });
        let kill_after = 50 + rng.below(1500);
        let mut acks = Vec::new();
        for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
            let Ok(line) = line else { break };
            acks.push(Position(line.parse().expect("a position")));
            if acks.len() as u64 == kill_after {
                child.kill().expect("SIGKILL");
                break;
            }
        }
        let _ = child.wait();
        let _ = feeder.join();
        assert_eq!(
            acks.len() as u64,
            kill_after,
            "round {round}: the writer died early"
        );
        acked_total += acks.len() as u64;

        // Reopen as the next writer would: recovery, then read everything.
        let (log, recovery) = Log::open(dir.path(), Options::default()).expect("reopens");
        if recovery.torn_tail.is_some() {
            torn_tails += 1;
        }
        let records: Vec<_> = log
            .read_from(Position(0))
            .expect("reader")
            .map(|r| r.expect("no corruption after a crash"))
            .collect();
        // The log is exactly the records 0..n in order: a prefix of what was
        // sent, with nothing half-written.
        for (i, rec) in records.iter().enumerate() {
            assert_eq!(sequence_number(&rec.payload), i as u64, "round {round}");
        }
        // Every acknowledged record is there, at its acknowledged position.
        for (k, pos) in acks.iter().enumerate() {
            let i = (first + k as u64) as usize;
            assert!(i < records.len(), "round {round}: acked record {i} lost");
            assert_eq!(records[i].position, *pos, "round {round}: record {i}");
        }
        next = records.len() as u64;
        log.close();
    }
    assert!(acked_total > 0);
    // Sealing happened along the way, so kills also landed between seals.
    let sealed = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter(|e| {
            let name = e.as_ref().expect("entry").file_name();
            let name = name.to_string_lossy();
            name.ends_with(".mutlog") && !name.contains("growing")
        })
        .count();
    assert!(sealed > 5, "{sealed} sealed segments");
    let report = almanac_log::verify::verify(dir.path(), |_| {}).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    eprintln!(
        "{rounds} kills, {acked_total} acknowledged, {next} present, {torn_tails} torn tails cut"
    );
}

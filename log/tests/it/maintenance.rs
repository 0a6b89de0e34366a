//! Verification names what is wrong and where; repair cuts and keeps.

use std::fs;

use almanac_log::verify::{self, ProblemKind};
use almanac_log::{Options, Position};
use almanac_proto::pb::maintpb::Mutation;
use prost::Message as _;

use crate::support::{open, payload, segment_files, small_segments};

fn sealed_log(dir: &std::path::Path) -> Vec<String> {
    let log = open(dir, small_segments(2048));
    for i in 0..50 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    log.close();
    segment_files(dir)
}

#[test]
fn a_healthy_log_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = sealed_log(dir.path());
    let mut seen = Vec::new();
    let report = verify::verify(dir.path(), |p| seen.push(p.file.name.number)).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(report.records, 50);
    assert_eq!(report.segments, files.len());
    assert_eq!(seen.len(), files.len());
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = sealed_log(dir.path());
    let victim = dir.path().join(&files[2]);
    let mut bytes = fs::read(&victim).expect("read");
    // Flip a byte inside the first record's comment body: framing and
    // decoding still succeed, only the hash can tell.
    let at = bytes
        .windows(8)
        .position(|w| w == b"Comment ")
        .expect("a comment body");
    bytes[at] ^= 0x20;
    fs::write(&victim, &bytes).expect("write");
    let report = verify::verify(dir.path(), |_| {}).expect("verify");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!(problem.segment, Some(2));
    assert!(matches!(problem.kind, ProblemKind::ShaMismatch { .. }));
    let text = problem.to_string();
    assert!(text.starts_with("segment 0002"), "{text}");
    assert!(text.contains(&files[2]), "{text}");
    // Repair cannot locate the damage and says so instead of cutting.
    let report = almanac_log::repair::repair(dir.path()).expect("repair");
    assert_eq!(report.cut, None);
    assert!(
        report.left_alone[0].contains("SHA-224 mismatch"),
        "{report:?}"
    );
}

#[test]
fn undecodable_records_and_torn_tails_are_reported_with_positions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), Options::default());
    log.append_blocking(vec![payload(0)]).expect("append");
    // Bytes that frame fine but are not a Mutation (a truncated varint).
    let bad_pos = log
        .append_blocking(vec![bytes::Bytes::from_static(&[0x08, 0xff])])
        .expect("append")[0];
    log.append_blocking(vec![payload(1)]).expect("append");
    log.close();
    drop(log);
    let growing = dir.path().join("0000.growing.mutlog");
    let mut bytes = fs::read(&growing).expect("read");
    let end = bytes.len() as u64;
    bytes.extend_from_slice(b"REC@");
    fs::write(&growing, &bytes).expect("write");

    let report = verify::verify(dir.path(), |_| {}).expect("verify");
    assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
    assert_eq!(report.problems[0].position, Some(bad_pos));
    assert!(matches!(
        report.problems[0].kind,
        ProblemKind::Undecodable { .. }
    ));
    assert_eq!(report.problems[1].position, Some(Position(end)));
    assert_eq!(report.problems[1].kind, ProblemKind::TornTail { len: 4 });
    assert!(Mutation::decode(&[0x08, 0xff][..]).is_err());

    // Repair cuts at the first undecodable record, keeping the rest aside.
    let report = almanac_log::repair::repair(dir.path()).expect("repair");
    let cut = report.cut.expect("cut");
    assert_eq!(cut.offset, bad_pos.0);
    let after = verify::verify(dir.path(), |_| {}).expect("verify");
    assert!(after.is_ok(), "{:?}", after.problems);
    assert_eq!(after.records, 1);
}

#[test]
fn a_layout_gap_is_reported_and_every_file_still_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = sealed_log(dir.path());
    let lost = fs::read(dir.path().join(&files[1])).expect("read");
    let lost_records = crate::support::parse_segment(&lost).len() as u64;
    fs::remove_file(dir.path().join(&files[1])).expect("rm");
    let report = verify::verify(dir.path(), |_| {}).expect("verify");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(matches!(report.problems[0].kind, ProblemKind::Layout(_)));
    assert_eq!(report.segments, files.len() - 1);
    assert_eq!(report.records, 50 - lost_records, "{report:?}");
}

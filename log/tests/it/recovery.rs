//! Recovery on open: torn tails are cut and kept, everything else malformed
//! is corruption that refuses appends until repair.

use std::fs;
use std::path::Path;

use almanac_log::log::Error as OpenError;
use almanac_log::segment::Sha224Digest;
use almanac_log::{Log, Options, Position, repair};

use crate::golden::three_mutations;
use crate::support::{open, payload, read_all, segment_files, small_segments};

fn three_framed() -> Vec<u8> {
    fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/three_mutations.mutlog"))
        .expect("fixture")
}

fn no_index() -> Options {
    Options {
        use_index: false,
        ..Options::default()
    }
}

#[test]
fn truncating_at_every_byte_recovers_exactly_a_prefix() {
    let bytes = three_framed();
    let payloads = three_mutations();
    // Record end offsets: 37, 66, 178.
    let mut ends = Vec::new();
    let mut off = 0;
    for p in &payloads {
        off += almanac_log::framing::record_len(off, p.len() as u64);
        ends.push(off as usize);
    }
    for cut in 0..=bytes.len() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("0000.growing.mutlog"), &bytes[..cut]).expect("write");
        let (log, recovery) =
            Log::open(dir.path(), no_index()).expect("a torn tail is not corruption");
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        let boundary = if whole == 0 { 0 } else { ends[whole - 1] };
        let got: Vec<Vec<u8>> = log
            .read_from(Position(0))
            .expect("reader")
            .map(|r| r.expect("record").payload.to_vec())
            .collect();
        assert_eq!(got, payloads[..whole], "cut at {cut}");
        match &recovery.torn_tail {
            None => assert_eq!(cut, boundary, "cut at {cut} needs no recovery"),
            Some(t) => {
                assert_eq!(t.offset as usize, boundary, "cut at {cut}");
                assert_eq!(t.len as usize, cut - boundary);
                let saved = fs::read(&t.saved_to).expect("the cut bytes are kept");
                assert_eq!(saved, &bytes[boundary..cut]);
            }
        }
        // Appending continues at the boundary, and is readable by Go's rules.
        let pos = log.append_blocking(vec![payload(9)]).expect("append");
        assert_eq!(pos, [Position(boundary as u64)]);
        log.close();
        drop(log);
        assert_eq!(read_all(dir.path()).len(), whole + 1, "cut at {cut}");
    }
}

#[test]
fn a_zero_filled_tail_is_torn_not_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = three_framed();
    bytes.extend(std::iter::repeat_n(0u8, 4096));
    fs::write(dir.path().join("0000.growing.mutlog"), &bytes).expect("write");
    let (log, recovery) = Log::open(dir.path(), no_index()).expect("open");
    let cut = recovery.torn_tail.expect("zeros are cut");
    assert_eq!((cut.offset, cut.len), (178, 4096));
    assert_eq!(log.end(), Position(178));
}

/// Writes `bytes` as the growing segment and expects corruption at `offset`.
fn expect_corrupt_tail(bytes: &[u8], offset: u64, reason: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("0000.growing.mutlog"), bytes).expect("write");
    let err = Log::open(dir.path(), no_index()).expect_err("corrupt");
    match &err {
        OpenError::Corrupt {
            segment: 0,
            offset: o,
            reason: r,
            ..
        } => {
            assert_eq!(*o, offset, "{err}");
            assert!(r.contains(reason), "{r:?} should mention {reason:?}");
        }
        other => panic!("expected corruption, got {other}"),
    }
    assert!(err.to_string().contains("almanac log repair"), "{err}");
    // Nothing was cut or appended: the file is as it was.
    assert_eq!(
        fs::read(dir.path().join("0000.growing.mutlog")).expect("read"),
        bytes
    );
    // Repair cuts at the bad record and keeps the rest.
    let report = repair::repair(dir.path()).expect("repair");
    let cut = report.cut.expect("a cut");
    assert_eq!((cut.segment, cut.offset), (0, offset));
    assert_eq!(cut.bytes_cut, bytes.len() as u64 - offset);
    let saved = fs::read(&cut.saved[0]).expect("kept");
    assert_eq!(saved, &bytes[offset as usize..]);
    let log = open(dir.path(), no_index());
    assert_eq!(log.end(), Position(offset));
    log.append_blocking(vec![payload(1)])
        .expect("appends work again");
}

#[test]
fn malformed_records_are_corruption_with_their_offset() {
    let good = three_framed();
    let bad_header =
        fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/bad_header.mutlog"))
            .expect("fixture");
    expect_corrupt_tail(&bad_header, 37, "doesn't match expected offset 37");

    let mut non_hex = good[..37].to_vec();
    non_hex.extend_from_slice(b"REC@25+1g=");
    non_hex.extend_from_slice(&good[47..]);
    expect_corrupt_tail(&non_hex, 37, "(bad size)");

    let mut overlong = good[..66].to_vec();
    overlong.extend(std::iter::repeat_n(b'7', 64));
    expect_corrupt_tail(&overlong, 66, "malformed overlong header");

    let mut garbage = good.clone();
    garbage.extend_from_slice(b"not a record at all");
    expect_corrupt_tail(&garbage, 178, "malformed header");
}

#[test]
fn a_length_past_the_end_of_a_sealed_segment_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = three_framed();
    // A sealed segment whose last record claims more bytes than it has (its
    // name even hashes the damaged content, so only framing catches it).
    let mut bytes = good[..66].to_vec();
    bytes.extend_from_slice(b"REC@42+ff=short");
    let name = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
    fs::write(dir.path().join(&name), &bytes).expect("write");
    fs::write(dir.path().join("0001.growing.mutlog"), &good).expect("write");
    let err = Log::open(dir.path(), Options::default()).expect_err("corrupt");
    assert!(
        matches!(
            err,
            OpenError::Corrupt {
                segment: 0,
                offset: 66,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("truncated record at offset 66: unexpected EOF"),
        "{err}"
    );
    // Repair cuts segment 0 at 66 and moves segment 1 aside.
    let report = repair::repair(dir.path()).expect("repair");
    let cut = report.cut.expect("cut");
    assert_eq!(cut.saved.len(), 2);
    assert_eq!(segment_files(dir.path()), ["0000.growing.mutlog"]);
    let log = open(dir.path(), Options::default());
    assert_eq!(log.end(), Position(66));
}

#[test]
fn empty_files_are_empty_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("0000.growing.mutlog"), b"").expect("write");
    let (log, recovery) = Log::open(dir.path(), Options::default()).expect("open");
    assert_eq!(recovery.torn_tail, None);
    assert_eq!(log.end(), Position(0));
    assert_eq!(
        log.append_blocking(vec![payload(0)]).expect("append"),
        [Position(0)]
    );
    log.close();
    drop(log);

    let dir = tempfile::tempdir().expect("tempdir");
    let empty_sealed = format!("0000.{}.mutlog", Sha224Digest::of(b""));
    fs::write(dir.path().join(empty_sealed), b"").expect("write");
    let log = open(dir.path(), Options::default());
    assert_eq!(log.end(), Position(0));
    log.append_blocking(vec![payload(0)]).expect("append");
    log.close();
    assert_eq!(segment_files(dir.path()).len(), 2);
}

#[test]
fn a_segment_number_gap_is_corruption_until_repaired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(1024));
    for i in 0..40 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    log.close();
    drop(log);
    let files = segment_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    // Lose segment 0001.
    let lost = dir.path().join(&files[1]);
    fs::remove_file(&lost).expect("remove");
    let err = Log::open(dir.path(), Options::default()).expect_err("gap");
    assert!(
        matches!(
            err,
            OpenError::Corrupt {
                segment: 1,
                offset: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("segment 0001 is missing"), "{err}");
    let report = repair::repair(dir.path()).expect("repair");
    let cut = report.cut.expect("cut");
    assert_eq!(
        cut.segment, 2,
        "the first file after the gap is moved aside"
    );
    assert_eq!(cut.saved.len(), files.len() - 2);
    let log = open(dir.path(), Options::default());
    // Segment 0000 is sealed; appends start segment 0001 again.
    let pos = log.append_blocking(vec![payload(99)]).expect("append");
    assert_eq!(pos[0], log.table().get(1).expect("segment 1").start);
}

#[test]
fn a_record_larger_than_a_segment_gets_one_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), Options::default());
    let big = bytes::Bytes::from(vec![0x42u8; 17 << 20]);
    log.append_blocking(vec![payload(1)]).expect("small");
    let big_pos = log.append_blocking(vec![big.clone()]).expect("big")[0];
    let after = log.append_blocking(vec![payload(2)]).expect("small");
    log.close();
    drop(log);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("0000.") && !files[0].contains("growing"));
    assert!(files[1].starts_with("0001.") && !files[1].contains("growing"));
    assert_eq!(files[2], "0002.growing.mutlog");
    let seg1 = fs::read(dir.path().join(&files[1])).expect("read");
    assert_eq!(crate::support::parse_segment(&seg1), [big.to_vec()]);
    assert_eq!(
        files[1],
        format!("0001.{}.mutlog", Sha224Digest::of(&seg1)),
        "sealed under its SHA-224"
    );
    assert_eq!(
        big_pos.0,
        fs::metadata(dir.path().join(&files[0]))
            .expect("stat")
            .len()
    );
    assert_eq!(after[0].0, big_pos.0 + seg1.len() as u64);
    let all = read_all(dir.path());
    assert_eq!(all.len(), 3);
    assert_eq!(all[1], big);
}

#[test]
fn sealed_segments_are_named_by_their_hash_and_stay_under_the_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(4096));
    let mut positions = Vec::new();
    for i in 0..200 {
        positions.extend(log.append_blocking(vec![payload(i)]).expect("append"));
    }
    assert!(log.metrics().seals >= 10);
    log.close();
    drop(log);
    for name in segment_files(dir.path()) {
        let bytes = fs::read(dir.path().join(&name)).expect("read");
        assert!(bytes.len() <= 4096, "{name} is {} bytes", bytes.len());
        if !name.contains("growing") {
            assert_eq!(name[5..61], Sha224Digest::of(&bytes).to_string());
        }
    }
    let all = read_all(dir.path());
    assert_eq!(all.len(), 200);
    for (i, p) in all.iter().enumerate() {
        assert_eq!(*p, payload(i as u64));
    }
    // Positions are the byte offsets in the concatenation of the segments.
    let snap = almanac_log::Snapshot::open(dir.path()).expect("snapshot");
    let read_positions: Vec<Position> = snap
        .read_from(Position(0))
        .expect("reader")
        .map(|r| r.expect("record").position)
        .collect();
    assert_eq!(read_positions, positions);
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), Options::default());
    let err = Log::open(dir.path(), Options::default()).expect_err("locked");
    assert!(matches!(err, OpenError::Locked(_)), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("process {}", std::process::id())),
        "{err}"
    );
    let err = repair::repair(dir.path()).expect_err("repair needs the lock too");
    assert!(
        err.to_string().contains("already open for writing"),
        "{err}"
    );
    log.close();
    drop(log);
    open(dir.path(), Options::default());
}

#[test]
fn the_index_is_trusted_when_fresh_and_rebuilt_when_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open(dir.path(), small_segments(2048));
    for i in 0..60 {
        log.append_blocking(vec![payload(i)]).expect("append");
    }
    let stats = log.stats().expect("stats");
    log.close();
    drop(log);
    let sealed = stats.len() - 1;
    assert!(sealed >= 5);
    assert_eq!(stats.iter().map(|s| s.records).sum::<u64>(), 60);
    let first = stats[0].first_time.expect("comments carry times");
    assert_eq!(first.seconds, 1_500_000_000);

    let (log, recovery) = Log::open(dir.path(), small_segments(2048)).expect("open");
    assert!(recovery.scanned_segments.is_empty(), "{recovery:?}");
    assert_eq!(log.stats().expect("stats"), stats);
    log.close();
    drop(log);

    fs::remove_dir_all(dir.path().join(almanac_log::index::INDEX_DIR)).expect("rm index");
    let (log, recovery) = Log::open(dir.path(), small_segments(2048)).expect("open");
    assert_eq!(
        recovery.scanned_segments,
        (0..sealed as u32).collect::<Vec<_>>()
    );
    assert_eq!(log.stats().expect("stats"), stats);
}

#[test]
fn an_absurd_length_neither_crashes_nor_hides_later_records() {
    // At the very end of the tail, a header claiming 2^63 bytes is a torn
    // tail like any other: cut, kept, no giant allocation.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = three_framed();
    bytes.extend_from_slice(b"REC@b2+7fffffffffffffff=abc");
    fs::write(dir.path().join("0000.growing.mutlog"), &bytes).expect("write");
    let (log, recovery) = Log::open(dir.path(), no_index()).expect("open");
    assert_eq!(recovery.torn_tail.expect("cut").offset, 178);
    assert_eq!(log.end(), Position(178));
    log.close();

    // A damaged length in the middle, with whole records after it, is
    // corruption: recovery must not cut acknowledged records silently.
    let dir = tempfile::tempdir().expect("tempdir");
    let good = three_framed();
    let mut bytes = good.clone();
    let at = bytes
        .windows(10)
        .position(|w| w == b"REC@25+13=")
        .expect("second header");
    bytes.splice(at..at + 10, b"REC@25+ff=".iter().copied());
    fs::write(dir.path().join("0000.growing.mutlog"), &bytes).expect("write");
    let err = Log::open(dir.path(), no_index()).expect_err("corrupt");
    assert!(
        matches!(
            err,
            OpenError::Corrupt {
                segment: 0,
                offset: 37,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("a whole record starts at offset 66"),
        "{err}"
    );
    // Verify and repair handle it without crashing, keeping a copy.
    let report = almanac_log::verify::verify(dir.path(), |_| {}).expect("verify");
    assert!(!report.is_ok());
    let report = repair::repair(dir.path()).expect("repair");
    assert_eq!(report.cut.expect("cut").offset, 37);
    assert_eq!(open(dir.path(), no_index()).end(), Position(37));
}

#[test]
fn repair_keeps_a_stale_growing_file_and_the_good_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = three_framed();
    // A sealed segment with garbage after two good records, and the stale
    // growing file godata leaves beside a frozen segment.
    let mut bad = good[..66].to_vec();
    bad.extend_from_slice(b"garbage, not a record");
    fs::write(
        dir.path()
            .join(format!("0000.{}.mutlog", Sha224Digest::of(&bad))),
        &bad,
    )
    .expect("write");
    fs::write(dir.path().join("0000.growing.mutlog"), b"stale bytes").expect("write");
    let report = repair::repair(dir.path()).expect("repair");
    let cut = report.cut.expect("cut");
    assert_eq!((cut.segment, cut.offset), (0, 66));
    let saved: Vec<Vec<u8>> = cut
        .saved
        .iter()
        .map(|p| fs::read(p).expect("saved copy"))
        .collect();
    assert!(saved.contains(&b"garbage, not a record".to_vec()));
    assert!(
        saved.contains(&b"stale bytes".to_vec()),
        "the stale file is kept"
    );
    assert_eq!(segment_files(dir.path()), ["0000.growing.mutlog"]);
    let log = open(dir.path(), no_index());
    assert_eq!(log.end(), Position(66));
    let got: Vec<Vec<u8>> = log
        .read_from(Position(0))
        .expect("reader")
        .map(|r| r.expect("ok").payload.to_vec())
        .collect();
    assert_eq!(got, three_mutations()[..2]);
}

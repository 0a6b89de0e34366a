//! Logs written by Go's maintner read back record for record, and what we
//! write is what Go writes.

use std::fs;

use almanac_log::import;
use almanac_log::segment::Sha224Digest;
use almanac_log::{Log, Options, Position, Snapshot};
use almanac_proto::pb::maintpb::Mutation;
use prost::Message as _;

use crate::support::{go_fixture, open, parse_segment, payload, read_all, segment_files};

const FIXTURES: &[&str] = &["tiny", "gerrit-sync", "mixed"];

fn go_count(name: &str) -> usize {
    let counts = fs::read_to_string(go_fixture(&format!("{name}.counts"))).expect("counts");
    counts
        .lines()
        .find_map(|l| l.strip_prefix("mutations:"))
        .expect("a mutations line")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn go_logs_read_back_record_for_record() {
    for name in FIXTURES {
        let bytes = fs::read(go_fixture(&format!("{name}.mutlog"))).expect("fixture");
        let records = parse_segment(&bytes);
        assert_eq!(records.len(), go_count(name), "{name}: Go's mutation count");
        for (i, rec) in records.iter().enumerate() {
            let m = Mutation::decode(&rec[..]).unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
            // prost encodes exactly as Go's protobuf did: field order,
            // packed repeated fields, no defaults on the wire.
            assert_eq!(
                &m.encode_to_vec(),
                rec,
                "{name} #{i} re-encodes to Go's bytes"
            );
        }

        // The same file as a sealed segment of a godata cache.
        let dir = tempfile::tempdir().expect("tempdir");
        let sealed = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
        fs::write(dir.path().join(&sealed), &bytes).expect("write");
        let got: Vec<Vec<u8>> = read_all(dir.path()).iter().map(|b| b.to_vec()).collect();
        assert_eq!(got, records, "{name} through the reader");
        let report = almanac_log::verify::verify(dir.path(), |_| {}).expect("verify");
        assert!(report.is_ok(), "{name}: {:?}", report.problems);
        assert_eq!(report.records as usize, records.len());
    }
}

#[test]
fn importing_one_go_file_reproduces_its_bytes() {
    for name in FIXTURES {
        let src = tempfile::tempdir().expect("tempdir");
        let original = fs::read(go_fixture(&format!("{name}.mutlog"))).expect("fixture");
        fs::write(src.path().join("maintner-2017-01-01.mutlog"), &original).expect("write");
        let dest = tempfile::tempdir().expect("tempdir");
        let log = open(dest.path(), Options::default());
        let report = import::import(&log, src.path(), |_| {}).expect("import");
        assert_eq!(report.records as usize, go_count(name));
        assert_eq!(report.end, Position(original.len() as u64));
        log.close();
        let files = segment_files(dest.path());
        assert_eq!(files, ["0000.growing.mutlog"]);
        let ours = fs::read(dest.path().join(&files[0])).expect("read");
        assert!(ours == original, "{name}: our bytes differ from Go's");
    }
}

#[test]
fn importing_many_disk_logger_files_restarts_their_offsets() {
    let src = tempfile::tempdir().expect("tempdir");
    let mut expected = Vec::new();
    for (day, name) in FIXTURES.iter().enumerate() {
        let bytes = fs::read(go_fixture(&format!("{name}.mutlog"))).expect("fixture");
        expected.extend(parse_segment(&bytes));
        fs::write(
            src.path()
                .join(format!("maintner-2017-01-0{}.mutlog", day + 1)),
            bytes,
        )
        .expect("write");
    }
    // A Go disk-logger directory is not itself a log; opening says so.
    let err = Log::open(src.path(), Options::default()).expect_err("not a segmented log");
    assert!(err.to_string().contains("almanac log import"), "{err}");

    let dest = tempfile::tempdir().expect("tempdir");
    // Small segments: the import must seal along the way.
    let log = open(dest.path(), crate::support::small_segments(256 << 10));
    let report = import::import(&log, src.path(), |_| {}).expect("import");
    assert_eq!(report.files, 3);
    assert_eq!(report.records as usize, expected.len());
    log.close();
    assert!(segment_files(dest.path()).len() > 2);
    let got: Vec<Vec<u8>> = read_all(dest.path()).iter().map(|b| b.to_vec()).collect();
    assert_eq!(got, expected);
    // A second import into a non-empty log is refused, writing nothing.
    let log = open(dest.path(), Options::default());
    let end = log.end();
    let err = import::import(&log, src.path(), |_| {}).expect_err("non-empty");
    assert!(matches!(err, import::Error::NotEmpty { .. }), "{err}");
    assert_eq!(log.end(), end);
}

#[test]
fn a_bad_source_imports_nothing() {
    let src = tempfile::tempdir().expect("tempdir");
    let good = fs::read(go_fixture("tiny.mutlog")).expect("fixture");
    fs::write(src.path().join("maintner-2017-01-01.mutlog"), &good).expect("write");
    let mut bad = fs::read(go_fixture("gerrit-sync.mutlog")).expect("fixture");
    bad.truncate(bad.len() - 3);
    fs::write(src.path().join("maintner-2017-01-02.mutlog"), &bad).expect("write");
    let dest = tempfile::tempdir().expect("tempdir");
    let log = open(dest.path(), Options::default());
    let err = import::import(&log, src.path(), |_| {}).expect_err("truncated source");
    assert!(
        err.to_string().contains("maintner-2017-01-02.mutlog"),
        "{err}"
    );
    assert!(
        err.to_string().contains("truncated record at offset"),
        "{err}"
    );
    assert_eq!(log.end(), Position(0));
}

#[test]
fn a_godata_cache_directory_opens_reads_and_appends() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = fs::read(go_fixture("tiny.mutlog")).expect("fixture");
    let gerrit = fs::read(go_fixture("gerrit-sync.mutlog")).expect("fixture");
    fs::write(
        dir.path()
            .join(format!("0000.{}.mutlog", Sha224Digest::of(&tiny))),
        &tiny,
    )
    .expect("write");
    // godata leaves a stale growing file behind when a segment is frozen.
    fs::write(dir.path().join("0000.growing.mutlog"), &tiny[..100]).expect("write");
    fs::write(dir.path().join("0001.growing.mutlog"), &gerrit).expect("write");
    fs::write(dir.path().join("tempseg123"), b"godata temp file").expect("write");

    let mut expected = parse_segment(&tiny);
    expected.extend(parse_segment(&gerrit));
    let snap = Snapshot::open(dir.path()).expect("snapshot");
    assert_eq!(snap.stale_growing.len(), 1);
    assert_eq!(snap.end(), Position((tiny.len() + gerrit.len()) as u64));

    let (log, recovery) = Log::open(dir.path(), Options::default()).expect("open");
    assert_eq!(recovery.stale_growing.len(), 1);
    assert_eq!(recovery.torn_tail, None);
    let positions = log.append_blocking(vec![payload(1)]).expect("append");
    assert_eq!(
        positions,
        [Position((tiny.len() + gerrit.len()) as u64)],
        "appends continue the growing segment in place"
    );
    log.close();
    drop(log);
    expected.push(payload(1).to_vec());
    let got: Vec<Vec<u8>> = read_all(dir.path()).iter().map(|b| b.to_vec()).collect();
    assert_eq!(got, expected);
    // The growing segment is still Go-readable: Go's framing from offset 0.
    let tail = fs::read(dir.path().join("0001.growing.mutlog")).expect("read");
    assert_eq!(parse_segment(&tail).len(), parse_segment(&gerrit).len() + 1);
}

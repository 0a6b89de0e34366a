//! Our corpus, rendered in the oracle format, equals Go's fold of the same
//! log line for line.

use std::path::{Path, PathBuf};

use almanac_log::segment::Sha224Digest;
use almanac_log::{Position, Snapshot};
use almanac_projections::corpus::Corpus;
use almanac_projections::replay;

pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../log/tests/fixtures/go")
        .join(name)
}

pub(crate) fn fold(name: &str) -> Corpus {
    let bytes = std::fs::read(fixture(&format!("{name}.mutlog"))).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
    std::fs::write(dir.path().join(file), &bytes).expect("write");
    let snap = Snapshot::open(dir.path()).expect("snapshot");
    let mut corpus = Corpus::new();
    replay(
        &mut snap.read_from(Position(0)).expect("reader"),
        &mut corpus,
    )
    .expect("replay");
    corpus.finish();
    corpus
}

/// The fixture folded by [`Corpus::open`]: decoded and parsed on the
/// loader's thread, keyed, and folded in batches.
fn load(name: &str) -> Corpus {
    let bytes = std::fs::read(fixture(&format!("{name}.mutlog"))).expect("fixture");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = format!("0000.{}.mutlog", Sha224Digest::of(&bytes));
    std::fs::write(dir.path().join(file), &bytes).expect("write");
    Corpus::open(dir.path()).expect("load")
}

/// Go's dump of the fixture equals ours, folded record by record and by
/// the loader.
fn check(name: &str) {
    check_corpus(name, &fold(name), "replay");
    check_corpus(name, &load(name), "Corpus::open");
}

fn check_corpus(name: &str, corpus: &Corpus, how: &str) {
    let want = std::fs::read_to_string(fixture(&format!("{name}.dump"))).expect("dump");
    let got = corpus.dump();
    let mut diffs = Vec::new();
    let (w, g): (Vec<&str>, Vec<&str>) = (want.lines().collect(), got.lines().collect());
    for i in 0..w.len().max(g.len()) {
        let (a, b) = (
            w.get(i).copied().unwrap_or("<none>"),
            g.get(i).copied().unwrap_or("<none>"),
        );
        if a != b {
            diffs.push(format!("line {}:\n  go:   {a}\n  ours: {b}", i + 1));
        }
    }
    assert!(
        diffs.is_empty(),
        "{name} ({how}): {} of {} lines differ; first ones:\n{}",
        diffs.len(),
        w.len(),
        diffs.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
    let counts = std::fs::read_to_string(fixture(&format!("{name}.counts"))).expect("counts");
    assert_eq!(
        corpus.counts().to_string(),
        counts,
        "{name} ({how}): counts"
    );
}

#[test]
fn tiny_matches_go() {
    check("tiny");
}

#[test]
fn gerrit_sync_matches_go() {
    check("gerrit-sync");
}

#[test]
fn mixed_matches_go() {
    check("mixed");
}

/// The progress callback hears of the fold as it goes, and last of its
/// end: every record folded, the position the log's end.
#[test]
fn progress_is_reported_up_to_the_end() {
    let records = crate::checkpoint::records("mixed");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) =
        almanac_log::Log::open(dir.path(), almanac_log::Options::default()).expect("open");
    log.append_blocking(records.clone()).expect("append");
    let end = log.end();
    log.close();
    let mut heard = Vec::new();
    let corpus = Corpus::open_with(
        dir.path(),
        almanac_projections::load::LoadOptions {
            progress: Some(Box::new(|p| heard.push((p.position, p.end, p.records)))),
            ..Default::default()
        },
    )
    .expect("load");
    assert_eq!(corpus.position(), end);
    let last = *heard.last().expect("at least the final report");
    assert_eq!(last, (end, end, records.len() as u64));
    assert!(
        heard
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].2 <= w[1].2),
        "{heard:?}"
    );
}

#[test]
fn open_then_update_equals_one_fold() {
    // Split Go's mixed log into a sealed first part and a growing rest, load
    // the first part, append the rest, update: the same world as one fold.
    let records = crate::checkpoint::records("mixed");
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) =
        almanac_log::Log::open(dir.path(), almanac_log::Options::default()).expect("open");
    let cut = records.len() / 3;
    log.append_blocking(records[..cut].to_vec())
        .expect("append");
    let mut corpus = Corpus::open(dir.path()).expect("load");
    assert_eq!(corpus.counts().mutations as usize, cut);
    log.append_blocking(records[cut..].to_vec())
        .expect("append");
    let n = corpus.update().expect("update");
    assert_eq!(n as usize, records.len() - cut);
    assert_eq!(corpus.position(), log.end());
    let want = std::fs::read_to_string(fixture("mixed.dump")).expect("dump");
    assert_eq!(corpus.dump(), want);
    // Nothing new: an update folds nothing.
    assert_eq!(corpus.update().expect("update"), 0);
}

#[test]
fn an_undecodable_record_stops_the_load_unless_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (log, _) =
        almanac_log::Log::open(dir.path(), almanac_log::Options::default()).expect("open");
    let tiny = std::fs::read(fixture("tiny.mutlog")).expect("fixture");
    let first = match almanac_log::framing::parse(&tiny, 0).expect("framed") {
        almanac_log::framing::Frame::Record {
            header_len,
            payload_len,
        } => bytes::Bytes::copy_from_slice(&tiny[header_len..header_len + payload_len]),
        other => panic!("{other:?}"),
    };
    let positions = log
        .append_blocking(vec![
            first.clone(),
            bytes::Bytes::from_static(&[0x08, 0xff]),
            first,
        ])
        .expect("append");
    let err = Corpus::open(dir.path()).expect_err("undecodable");
    assert!(
        err.to_string().contains(&format!(
            "record at position {} does not decode",
            positions[1]
        )),
        "{err}"
    );
    let corpus = Corpus::open_with(
        dir.path(),
        almanac_projections::load::LoadOptions {
            skip_undecodable: true,
            progress: None,
        },
    )
    .expect("skipping");
    assert_eq!(corpus.skipped().undecodable_records, 1);
    assert_eq!(corpus.counts().mutations, 2);
    assert_eq!(corpus.position(), log.end());
}

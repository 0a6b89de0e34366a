//! Our corpus, rendered in the oracle format, equals Go's fold of the same
//! log line for line.

use std::path::{Path, PathBuf};

use almanac_log::segment::Sha224Digest;
use almanac_log::{Position, Snapshot};
use almanac_projections::corpus::Corpus;
use almanac_projections::replay;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../log/tests/fixtures/go")
        .join(name)
}

fn fold(name: &str) -> Corpus {
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

fn check(name: &str) {
    let corpus = fold(name);
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
        "{name}: {} of {} lines differ; first ones:\n{}",
        diffs.len(),
        w.len(),
        diffs.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
    let counts = std::fs::read_to_string(fixture(&format!("{name}.counts"))).expect("counts");
    assert_eq!(corpus.counts().to_string(), counts, "{name}: counts");
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

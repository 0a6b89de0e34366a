//! A corpus saved at a position and reopened, plus the records after it,
//! is the same world as one fold of the whole log.

use std::path::Path;

use almanac_log::{Log, Options};
use almanac_projections::corpus::Corpus;
use almanac_projections::corpus::checkpoint::CheckpointError;
use bytes::Bytes;

use crate::oracle::fixture;

/// The payloads of a Go fixture log, in order.
pub(crate) fn records(name: &str) -> Vec<Bytes> {
    let bytes = std::fs::read(fixture(&format!("{name}.mutlog"))).expect("fixture");
    let mut out = Vec::new();
    let mut off = 0usize;
    while let Ok(almanac_log::framing::Frame::Record {
        header_len,
        payload_len,
    }) = almanac_log::framing::parse(&bytes[off..], off as u64)
    {
        out.push(Bytes::copy_from_slice(
            &bytes[off + header_len..off + header_len + payload_len],
        ));
        off += header_len + payload_len;
    }
    out
}

fn write_log(dir: &Path, records: &[Bytes]) -> Log {
    let (log, _) = Log::open(dir, Options::default()).expect("open");
    if !records.is_empty() {
        log.append_blocking(records.to_vec()).expect("append");
    }
    log
}

/// What Go's dump leaves out: commit times with their zones, diff-tree
/// files, issues' sync times and last modification, and what was skipped.
fn beyond_the_dump(c: &Corpus) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for commit in c.git_commits() {
        let _ = writeln!(out, "{}", commit.hash());
        out.push_str(&crate::scenarios::describe_commit(commit));
    }
    for repo in c.github().repos() {
        for i in repo.issues() {
            let _ = writeln!(
                out,
                "#{} {} {} {} {}",
                i.number(),
                i.comments_synced(),
                i.events_synced(),
                i.reviews_synced(),
                i.last_modified()
            );
        }
    }
    let _ = writeln!(out, "{:?}", c.skipped());
    out
}

#[test]
fn checkpoint_plus_the_rest_equals_one_fold() {
    for name in ["mixed", "gerrit-sync", "tiny"] {
        let all = records(name);
        let full = Corpus::open(write_log(tempfile::tempdir().expect("tmp").path(), &all).dir())
            .expect("full fold");
        let want = full.dump();
        let want_beyond = beyond_the_dump(&full);
        assert_eq!(
            want,
            std::fs::read_to_string(fixture(&format!("{name}.dump"))).expect("dump")
        );
        for cut in [
            0,
            1,
            all.len() / 10,
            all.len() / 3,
            all.len() / 2,
            all.len() * 9 / 10,
            all.len(),
        ] {
            let dir = tempfile::tempdir().expect("tmp");
            let log = write_log(dir.path(), &all[..cut]);
            let prefix = Corpus::open(dir.path()).expect("prefix");
            let path = dir.path().join("corpus.ckpt");
            prefix.save_checkpoint(&path).expect("save");
            // Reopened as saved: the same view at the same position.
            let reopened = Corpus::open_checkpoint(&path).expect("reopen");
            assert_eq!(reopened.position(), prefix.position(), "{name} cut {cut}");
            assert_eq!(reopened.dump(), prefix.dump(), "{name} cut {cut}");
            assert_eq!(
                beyond_the_dump(&reopened),
                beyond_the_dump(&prefix),
                "{name} cut {cut}"
            );
            // Then the rest of the log arrives.
            if cut < all.len() {
                log.append_blocking(all[cut..].to_vec()).expect("append");
            }
            let mut resumed = Corpus::open_checkpoint(&path).expect("reopen");
            let n = resumed.update().expect("update");
            assert_eq!(n as usize, all.len() - cut, "{name} cut {cut}");
            assert_eq!(resumed.position(), log.end());
            assert!(
                resumed.dump() == want,
                "{name}: checkpoint at record {cut} plus the rest differs"
            );
            assert_eq!(resumed.counts(), full.counts());
            assert_eq!(beyond_the_dump(&resumed), want_beyond, "{name} cut {cut}");
        }
    }
}

#[test]
fn damaged_checkpoints_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    write_log(dir.path(), &records("mixed"));
    let corpus = Corpus::open(dir.path()).expect("fold");
    let path = dir.path().join("c.ckpt");
    corpus.save_checkpoint(&path).expect("save");
    let good = std::fs::read(&path).expect("read");

    // A flipped bit anywhere after the magic and version, in any section's
    // header or body, is caught.
    let lead = b"ALMANAC-CORPUS-CHECKPOINT\n".len() + 4;
    for k in 0..40 {
        let at = lead + (good.len() - lead) * k / 40;
        let mut flipped = good.clone();
        flipped[at] ^= 0x40;
        std::fs::write(&path, &flipped).expect("write");
        let err = Corpus::open_checkpoint(&path).expect_err("flipped byte");
        assert!(
            matches!(err, CheckpointError::Damaged { .. }),
            "at {at}: {err}"
        );
    }

    for cut in [good.len() - 1, good.len() / 2, 40] {
        std::fs::write(&path, &good[..cut]).expect("write");
        let err = Corpus::open_checkpoint(&path).expect_err("truncated");
        assert!(
            matches!(err, CheckpointError::Damaged { .. }),
            "cut {cut}: {err}"
        );
    }

    std::fs::write(&path, b"not a checkpoint at all, just some text").expect("write");
    let err = Corpus::open_checkpoint(&path).expect_err("not a checkpoint");
    assert!(matches!(err, CheckpointError::Format { .. }), "{err}");

    let mut other_version = good.clone();
    other_version[b"ALMANAC-CORPUS-CHECKPOINT\n".len()] = 99;
    std::fs::write(&path, &other_version).expect("write");
    let err = Corpus::open_checkpoint(&path).expect_err("version");
    assert!(err.to_string().contains("version 99"), "{err}");

    std::fs::write(&path, &good).expect("write");
    assert_eq!(
        Corpus::open_checkpoint(&path).expect("good").dump(),
        corpus.dump()
    );
}

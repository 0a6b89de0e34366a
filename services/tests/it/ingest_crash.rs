//! Killing maintnerd mid-sync: `almanac maintnerd --config --sync-and-quit`
//! is SIGKILLed while it appends a large repository's history; a second run
//! completes the picture. The folded state must equal a sync that was never
//! interrupted, and no commit may be logged twice.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};

use prost::Message as _;

use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::Mutation;

use crate::support::{almanac, arg};

const COMMITS: usize = 6000;

/// A linear history of `COMMITS` commits, each editing one of a few files,
/// written with `git fast-import` (seconds, not minutes), plus a branch.
fn make_big_repo(dir: &Path) {
    let status = Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(dir)
        .status()
        .expect("git init");
    assert!(status.success());
    let mut child = Command::new("git")
        .current_dir(dir)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    let mut input = child.stdin.take().expect("stdin");
    let mut stream = Vec::new();
    for i in 0..COMMITS {
        let content = format!("package p\n\n// revision {i}\nvar V = {i}\n");
        let msg = format!("commit {i}\n");
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{}\ncommitter Gopher <g@example.com> {} +0000\ndata {}\n{msg}",
                i + 1,
                1_600_000_000 + i,
                msg.len()
            )
            .as_bytes(),
        );
        if i > 0 {
            stream.extend_from_slice(format!("from :{i}\n").as_bytes());
        }
        stream.extend_from_slice(
            format!(
                "M 100644 inline f{}.go\ndata {}\n{content}\n",
                i % 7,
                content.len()
            )
            .as_bytes(),
        );
    }
    stream
        .extend_from_slice(format!("reset refs/heads/side\nfrom :{}\n\n", COMMITS / 2).as_bytes());
    input.write_all(&stream).expect("fast-import input");
    drop(input);
    assert!(child.wait().expect("fast-import").success());
}

fn write_config(path: &Path, repo: &Path) {
    std::fs::write(
        path,
        format!(
            "[[git]]\nname = \"big\"\nurl = {:?}\n",
            repo.display().to_string()
        ),
    )
    .expect("config");
}

fn sync_and_quit(data: &Path, config: &Path) -> std::process::Output {
    almanac()
        .args([
            "maintnerd",
            "--data",
            arg(data),
            "--config",
            arg(config),
            "--sync-and-quit",
        ])
        .output()
        .expect("maintnerd")
}

/// Every commit hash logged, in order, and the folded commits and refs.
fn folded(data: &Path) -> (Vec<String>, BTreeMap<String, String>, usize) {
    let corpus = Corpus::open(data).expect("corpus");
    let refs = corpus
        .git_repo("big")
        .map(|r| {
            r.refs()
                .map(|(n, h)| (n.to_string(), h.to_string()))
                .collect()
        })
        .unwrap_or_default();
    let commits = corpus.git_commits().filter(|c| !c.is_placeholder()).count();
    let snapshot = almanac_log::Snapshot::open(data).expect("snapshot");
    let mut reader = snapshot
        .read_from(almanac_log::Position(0))
        .expect("reader");
    let mut logged = Vec::new();
    while let Some(r) = reader.next_record().expect("read") {
        let m = Mutation::decode(r.payload.as_ref()).expect("decode");
        if let Some(c) = m.git.and_then(|g| g.commit) {
            logged.push(c.sha1);
        }
    }
    (logged, refs, commits)
}

/// Runs a sync into `data`, SIGKILLs it as soon as it reports its first
/// durable batch, and returns its exit status and the commits and refs
/// then in the log.
fn kill_after_first_batch(
    data: &Path,
    config: &Path,
) -> (
    std::process::ExitStatus,
    Vec<String>,
    BTreeMap<String, String>,
) {
    let mut child = almanac()
        .args([
            "maintnerd",
            "--data",
            arg(data),
            "--config",
            arg(config),
            "--sync-and-quit",
        ])
        .env("ALMANAC_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut saw_progress = false;
    for line in stderr.lines() {
        let line = line.expect("stderr line");
        if line.contains("git sync progress") {
            saw_progress = true;
            break;
        }
    }
    assert!(saw_progress, "maintnerd never reported progress");
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    let (partial, partial_refs, _) = folded(data);
    (status, partial, partial_refs)
}

#[test]
fn a_sync_killed_midway_is_completed_by_the_next() {
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("big");
    make_big_repo(&repo);
    let config = work.path().join("ingest.toml");
    write_config(&config, &repo);

    // Reference: one uninterrupted sync.
    let reference = work.path().join("reference");
    let out = sync_and_quit(&reference, &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Killed after its first durable batch. On a slow machine the sync can
    // finish between the progress line and the kill; then the kill proved
    // nothing, and it is tried again in a fresh directory.
    let mut data = work.path().join("data");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (status, partial, partial_refs) = kill_after_first_batch(&data, &config);
        if partial.len() == COMMITS && attempts < 3 {
            data = work.path().join(format!("data-{attempts}"));
            continue;
        }
        assert!(!status.success(), "killed before it could finish");
        assert!(
            !partial.is_empty() && partial.len() < COMMITS,
            "{} commits at the kill",
            partial.len()
        );
        assert!(
            partial_refs.is_empty(),
            "refs are logged only after every commit"
        );
        break;
    }

    // The next run completes the picture.
    let out = sync_and_quit(&data, &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (logged, refs, commits) = folded(&data);
    let (ref_logged, ref_refs, ref_commits) = folded(&reference);
    assert_eq!(commits, COMMITS);
    assert_eq!(commits, ref_commits);
    assert_eq!(refs, ref_refs);
    let unique: HashSet<&String> = logged.iter().collect();
    assert_eq!(unique.len(), logged.len(), "a commit was logged twice");
    assert_eq!(
        unique,
        ref_logged.iter().collect::<HashSet<_>>(),
        "the same commits as the uninterrupted sync"
    );

    // And a third run has nothing to add.
    let end = almanac_log::Snapshot::open(&data).expect("snapshot").end();
    let out = sync_and_quit(&data, &config);
    assert!(out.status.success());
    assert_eq!(
        almanac_log::Snapshot::open(&data).expect("snapshot").end(),
        end
    );
}

//! `almanac gen-history` and `almanac corpus stats` as a user runs them.

use crate::support::{arg, run, stderr, stdout};

#[test]
fn a_generated_history_is_deterministic_and_loads() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    for dir in [&a, &b] {
        let out = run(
            &[
                "gen-history",
                "--profile",
                "small",
                "--seed",
                "7",
                "--out",
                arg(dir.path()),
            ],
            "",
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("wrote "), "{}", stdout(&out));
    }
    let files = |d: &std::path::Path| {
        let mut names: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .expect("ls")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "mutlog"))
            .map(|p| {
                let name = p.file_name().expect("name").to_string_lossy().into_owned();
                (name, std::fs::read(&p).expect("read"))
            })
            .collect();
        names.sort();
        names
    };
    // Same seed, same bytes.
    assert!(
        files(a.path()) == files(b.path()),
        "the same seed gave different logs"
    );
    let out = run(&["corpus", "stats", arg(a.path())], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("github issues:      600 "), "{text}");
    assert!(text.contains("gerrit CLs:         900"), "{text}");
    assert!(text.contains("placeholders 0"), "{text}");
    assert!(text.contains("loaded "), "{text}");
    // The counts agree with a tally of the log made apart from the fold:
    // every record decoded by prost, distinct ids counted.
    let tally = tally(a.path());
    for line in [
        format!("mutations:          {}\n", tally.mutations),
        format!("github issues:      {} ", tally.issues),
        format!("github comments:    {}\n", tally.comments),
        format!("github events:      {}, ", tally.events),
        format!("git commits:        {} ", tally.commits),
    ] {
        assert!(text.contains(&line), "{line:?} not in\n{text}");
    }

    // A different seed, a different history.
    let c = tempfile::tempdir().expect("tempdir");
    run(
        &[
            "gen-history",
            "--profile",
            "small",
            "--seed",
            "8",
            "--out",
            arg(c.path()),
        ],
        "",
    );
    assert!(
        files(a.path()) != files(c.path()),
        "different seeds gave the same log"
    );
}

#[test]
fn corpus_stats_defaults_to_the_godata_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let dir = cache.path().join("golang-maintner");
    std::fs::create_dir(&dir).expect("mkdir");
    let tiny = std::fs::read(crate::support::go_fixture("tiny.mutlog")).expect("fixture");
    std::fs::write(
        dir.join(format!(
            "0000.{}.mutlog",
            almanac_log::segment::Sha224Digest::of(&tiny)
        )),
        &tiny,
    )
    .expect("write");
    let out = crate::support::almanac()
        .args(["corpus", "stats"])
        .env("XDG_CACHE_HOME", cache.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let want = std::fs::read_to_string(crate::support::go_fixture("tiny.counts")).expect("counts");
    assert!(stdout(&out).starts_with(&want), "{}", stdout(&out));
}

#[test]
fn a_checkpoint_from_the_command_line_folds_only_what_is_new() {
    let log = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    for (dir, seed) in [(&log, "7"), (&other, "8")] {
        let out = run(
            &[
                "gen-history",
                "--profile",
                "small",
                "--seed",
                seed,
                "--out",
                arg(dir.path()),
            ],
            "",
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let checkpoint = log.path().join("corpus.ckpt");
    let stats = |dir: &std::path::Path| {
        run(
            &[
                "corpus",
                "stats",
                arg(dir),
                "--checkpoint",
                arg(&checkpoint),
            ],
            "",
        )
    };
    let counts = |text: &str| -> Vec<String> {
        text.lines()
            .take_while(|l| !l.starts_with("memory"))
            .map(str::to_owned)
            .collect()
    };

    let first = stats(log.path());
    assert!(first.status.success(), "{}", stderr(&first));
    let first = stdout(&first);
    assert!(first.contains("loaded "), "{first}");
    assert!(first.contains("saved the checkpoint"), "{first}");

    let again = stats(log.path());
    assert!(again.status.success(), "{}", stderr(&again));
    let again = stdout(&again);
    assert!(
        again.contains("opened the checkpoint") && again.contains("then folded 0 bytes more"),
        "{again}"
    );
    assert_eq!(counts(&again), counts(&first));

    // Records appended since are folded on top of the checkpoint.
    let lines = crate::support::sample_json(3, 25).join("\n");
    let out = run(&["log", "append", arg(log.path()), "--json"], &lines);
    assert!(out.status.success(), "{}", stderr(&out));
    let grown = stats(log.path());
    assert!(grown.status.success(), "{}", stderr(&grown));
    let grown = stdout(&grown);
    assert!(grown.contains("opened the checkpoint"), "{grown}");
    assert!(!grown.contains("then folded 0 bytes more"), "{grown}");
    let mutations = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("mutations:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("a mutations line")
    };
    assert_eq!(mutations(&grown), mutations(&first) + 25);

    // A checkpoint belongs to the log it was folded from.
    let wrong = stats(other.path());
    assert!(!wrong.status.success());
    assert!(
        stderr(&wrong).contains("was folded from"),
        "{}",
        stderr(&wrong)
    );
}

/// Counts of a log made with prost, independently of the corpus fold.
#[derive(Debug, Default)]
struct Tally {
    mutations: u64,
    issues: usize,
    comments: usize,
    events: usize,
    commits: usize,
}

fn tally(dir: &std::path::Path) -> Tally {
    use prost::Message as _;
    use std::collections::BTreeSet;
    let snapshot = almanac_log::Snapshot::open(dir).expect("snapshot");
    let mut reader = snapshot
        .read_from(almanac_log::Position(0))
        .expect("reader");
    let mut t = Tally::default();
    let (mut issues, mut comments, mut events, mut commits) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    while let Some(r) = reader.next_record().expect("read") {
        t.mutations += 1;
        let m = almanac_proto::pb::maintpb::Mutation::decode(r.payload.as_ref()).expect("decode");
        if let Some(i) = m.github_issue {
            let issue = (i.owner.clone(), i.repo.clone(), i.number);
            comments.extend(
                i.comment
                    .iter()
                    .filter(|c| c.id != 0)
                    .map(|c| (issue.clone(), c.id)),
            );
            events.extend(
                i.event
                    .iter()
                    .filter(|e| e.id != 0)
                    .map(|e| (issue.clone(), e.id)),
            );
            issues.insert(issue);
        }
        if let Some(c) = m.git.and_then(|g| g.commit) {
            commits.insert(c.sha1);
        }
        if let Some(g) = m.gerrit {
            commits.extend(g.commits.into_iter().map(|c| c.sha1));
        }
    }
    t.issues = issues.len();
    t.comments = comments.len();
    t.events = events.len();
    t.commits = commits.len();
    t
}

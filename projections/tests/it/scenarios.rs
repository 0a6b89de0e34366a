//! Data-driven fold scenarios (raft-rs style): each file in
//! `tests/data/*.txt` is a sequence of commands, each followed by `----`
//! and its expected output. `UPDATE_GOLDEN=1` rewrites the expectations.
//!
//! Commands:
//! - `json`: one protobuf-JSON `maintpb.Mutation` per input line, applied in
//!   order.
//! - `git <sha1>` / `gerrit <project> <sha1>`: a raw commit object as input
//!   lines (header, blank line, message), applied as a `GitMutation` or a
//!   `GerritMutation` carrying that commit.
//! - `ref <project> <ref> <sha1>`: a `GerritMutation` carrying that ref.
//! - `finish`: derive dirty CLs (what every load does at its end).
//! - `dump`: the corpus in the Go oracle's format.
//! - `counts`, `skipped`: Go's counts; what was skipped.
//! - `cl <server> <project> <number>`: what the read API shows of a CL
//!   (`hidden` while it is incomplete, as Go's `CL(n)` returns nil).
//!
//! Mutating commands print `ok`.

use std::fmt::Write as _;
use std::path::Path;

use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::{GerritMutation, GitCommit, GitMutation, GitRef, Mutation};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};

struct Case {
    command: String,
    input: Vec<String>,
    expected: String,
}

fn parse(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let command = line.to_owned();
        let mut input = Vec::new();
        for l in lines.by_ref() {
            if l == "----" {
                break;
            }
            input.push(l.to_owned());
        }
        let mut expected = String::new();
        while let Some(l) = lines.peek() {
            if l.is_empty() {
                break;
            }
            expected.push_str(l);
            expected.push('\n');
            lines.next();
        }
        cases.push(Case {
            command,
            input,
            expected,
        });
    }
    cases
}

fn mutation_from_json(line: &str) -> Mutation {
    let pool = DescriptorPool::decode(almanac_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let desc = pool
        .get_message_by_name(almanac_proto::MUTATION_MESSAGE)
        .expect("Mutation");
    let mut de = serde_json::Deserializer::from_str(line);
    let dynamic = DynamicMessage::deserialize(desc, &mut de)
        .unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"));
    Mutation::decode(dynamic.encode_to_vec().as_slice()).expect("re-decodes")
}

fn raw_commit(sha1: &str, input: &[String]) -> GitCommit {
    GitCommit {
        sha1: sha1.to_owned(),
        raw: (input.join("\n") + "\n").into_bytes().into(),
        diff_tree: None,
    }
}

fn run(corpus: &mut Corpus, case: &Case) -> String {
    let args: Vec<&str> = case.command.split_whitespace().collect();
    match args.as_slice() {
        ["json"] => {
            for line in &case.input {
                corpus.apply_mutation(&mutation_from_json(line));
            }
            "ok\n".to_owned()
        }
        ["git", sha1] => {
            corpus.apply_mutation(&Mutation {
                git: Some(GitMutation {
                    repo: None,
                    commit: Some(raw_commit(sha1, &case.input)),
                    ..Default::default()
                }),
                ..Default::default()
            });
            "ok\n".to_owned()
        }
        ["gerrit", project, sha1] => {
            corpus.apply_mutation(&Mutation {
                gerrit: Some(GerritMutation {
                    project: (*project).to_owned(),
                    commits: vec![raw_commit(sha1, &case.input)],
                    ..Default::default()
                }),
                ..Default::default()
            });
            "ok\n".to_owned()
        }
        ["ref", project, name, sha1] => {
            corpus.apply_mutation(&Mutation {
                gerrit: Some(GerritMutation {
                    project: (*project).to_owned(),
                    refs: vec![GitRef {
                        r#ref: (*name).to_owned(),
                        sha1: (*sha1).to_owned(),
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            });
            "ok\n".to_owned()
        }
        ["finish"] => {
            corpus.finish();
            "ok\n".to_owned()
        }
        ["dump"] => corpus.dump(),
        ["counts"] => corpus.counts().to_string(),
        ["cl", server, project, number] => {
            let number: i32 = number.parse().expect("a CL number");
            match corpus
                .gerrit()
                .project(server, project)
                .and_then(|p| p.cl(number))
            {
                None => "hidden\n".to_owned(),
                Some(cl) => format!(
                    "status={} version={} branch={} metas={} messages={} private={} owner={} refs={:?}\n",
                    cl.status().as_str(),
                    cl.version(),
                    cl.branch(),
                    cl.metas().count(),
                    cl.messages().count(),
                    cl.is_private(),
                    cl.owner_id(),
                    cl.github_refs().collect::<Vec<_>>(),
                ),
            }
        }
        ["commit", hex] => corpus
            .git_commit(hex)
            .map_or_else(|| "unknown\n".to_owned(), describe_commit),
        ["sync", repo, number] => {
            let (owner, name) = repo.split_once('/').expect("owner/repo");
            let number: i32 = number.parse().expect("an issue number");
            match corpus
                .github()
                .repo(owner, name)
                .and_then(|r| r.issue(number))
            {
                None => "unknown\n".to_owned(),
                Some(i) => format!(
                    "comments_synced={} events_synced={} reviews_synced={} last_modified={}\n",
                    i.comments_synced(),
                    i.events_synced(),
                    i.reviews_synced(),
                    i.last_modified()
                ),
            }
        }
        ["votes", server, project, number, index] => {
            let number: i32 = number.parse().expect("a CL number");
            let index: usize = index.parse().expect("a meta index");
            let meta = corpus
                .gerrit()
                .project(server, project)
                .and_then(|p| p.cl(number))
                .and_then(|cl| cl.metas().nth(index))
                .expect("the CL's meta");
            let mut out = String::new();
            for (label, votes) in meta.label_votes() {
                let votes: Vec<String> =
                    votes.iter().map(|(who, v)| format!("{who}:{v}")).collect();
                let _ = writeln!(out, "{label}={}", votes.join(","));
            }
            out
        }
        ["check"] => match corpus.check() {
            Ok(()) => "ok\n".to_owned(),
            Err(e) => format!("{e}\n"),
        },
        ["skipped"] => {
            let mut out = String::new();
            let _ = writeln!(out, "{:?}", corpus.skipped());
            out
        }
        other => panic!("unknown command {other:?}"),
    }
}

fn check_file(path: &Path) {
    let text = std::fs::read_to_string(path).expect("scenario");
    let cases = parse(&text);
    let mut corpus = Corpus::new();
    let mut rewritten = String::new();
    let mut failures = Vec::new();
    // Keep the file's comments and commands, refresh the expectations.
    let mut lines = text.lines().peekable();
    let mut case_iter = cases.iter();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() || line.starts_with('#') {
            rewritten.push_str(line);
            rewritten.push('\n');
            continue;
        }
        let case = case_iter.next().expect("as many cases as commands");
        rewritten.push_str(line);
        rewritten.push('\n');
        for l in lines.by_ref() {
            rewritten.push_str(l);
            rewritten.push('\n');
            if l == "----" {
                break;
            }
        }
        while lines.peek().is_some_and(|l| !l.is_empty()) {
            lines.next();
        }
        let got = run(&mut corpus, case);
        rewritten.push_str(&got);
        if got != case.expected {
            failures.push(format!(
                "{}: `{}`\n--- expected\n{}--- got\n{}",
                path.display(),
                case.command,
                case.expected,
                got
            ));
        }
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, rewritten).expect("rewrite");
        return;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fold_scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "scenario files: {files:?}");
    for f in files {
        check_file(&f);
    }
}

/// A commit's people, times (with the zone as written) and diff-tree files,
/// one per line: what Go's dump leaves out of commits.
pub(crate) fn describe_commit(c: almanac_projections::corpus::api::Commit<'_>) -> String {
    let mut out = String::new();
    let person = |p: Option<almanac_projections::corpus::api::Person<'_>>| {
        p.map_or_else(|| "-".to_owned(), |p| p.text().into_owned())
    };
    let time = |t: Option<almanac_projections::corpus::api::CommitTime<'_>>| {
        t.map_or_else(
            || "-".to_owned(),
            |t| format!("{} zone={} offset={}", t.instant(), t.zone(), t.offset()),
        )
    };
    let _ = writeln!(
        out,
        "author {} at {}",
        person(c.author()),
        time(c.author_time())
    );
    let _ = writeln!(
        out,
        "committer {} at {}",
        person(c.committer()),
        time(c.commit_time())
    );
    for f in c.files() {
        let _ = writeln!(
            out,
            "file {} +{} -{} binary={}",
            f.name(),
            f.added(),
            f.deleted(),
            f.binary()
        );
    }
    out
}

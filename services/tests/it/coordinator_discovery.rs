//! The coordinator's work discovery over real corpora and farm folds:
//! post-submit work along first parents of the branches a builder builds,
//! work removed by results and live builds and brought back by
//! communication errors and cleared results, work reached twice listed
//! once, and try work for CLs that voted Run-TryBot+1.

use std::path::Path;

use bytes::Bytes;
use prost::Message as _;

use almanac_log::Position;
use almanac_projections::Projection as _;
use almanac_projections::corpus::Corpus;
use almanac_projections::farm::Farm;
use almanac_proto::pb::farm::{
    BuildCompleted, BuildEvent, BuildKind, BuildOutcome, BuildRequested, BuilderRev, ResultCleared,
    ResultEvent, ResultKey, ResultRecorded, build_event, result_event,
};
use almanac_proto::pb::maintpb::{
    GerritMutation, GitCommit, GitMutation, GitRef, GitRepo, Mutation,
};
use almanac_services::coordinator::discovery::{TryInfo, Work, post_submit_work, try_work};
use almanac_services::farm::env::Environments;

use crate::support::{
    GO, RUN_TRYBOT, TRYBOT_DONE, cl_mutation, commit, git_ref, go_history, hash, write_log,
};

const HOST: &str = "host-linux-amd64-local";

/// The build environments of `builders` (`[[builder]]` entries), all on
/// one reverse host type.
fn envs(builders: &[String]) -> Environments {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("setup")).expect("mkdir");
    std::fs::write(dir.path().join("setup/local.sh"), "#!/bin/sh\n").expect("write");
    let hosts =
        format!("[[host]]\ntype = \"{HOST}\"\npool = \"reverse\"\nsetup = \"setup/local.sh\"\n");
    Environments::parse(
        dir.path(),
        Path::new("env/hosts.toml"),
        &hosts,
        Path::new("env/builders.toml"),
        &builders.concat(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A `[[builder]]` entry.
fn builder(name: &str, repos: &[&str], branches: &[&str], try_bot: bool, try_only: bool) -> String {
    format!(
        "[[builder]]\nname = \"{name}\"\nhost_type = \"{HOST}\"\nsteps = [\"./make.bash\"]\n\
         repos = {repos:?}\nbranches = {branches:?}\ntry_bot = {try_bot}\ntry_only = {try_only}\n\n"
    )
}

/// Hand-made commit `i` with two parents (a merge), committed when
/// [`commit`] would commit `i`.
fn merge(i: u32, first: u32, second: u32) -> GitCommit {
    let t = 1_700_000_000 + i64::from(i) * 3600;
    GitCommit {
        sha1: hash(i),
        raw: format!(
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\nparent {}\nparent {}\n\
             author Gopher <gopher@golang.org> {t} +0000\n\
             committer Gopher <gopher@golang.org> {t} +0000\n\nMerge side\n",
            hash(first),
            hash(second)
        )
        .into_bytes()
        .into(),
        diff_tree: None,
    }
}

/// The committer time of hand-made commit `i`, in nanoseconds.
fn nanos(i: u32) -> i128 {
    (1_700_000_000 + i128::from(i) * 3600) * 1_000_000_000
}

/// A plain git repository as git sync logs it: its commits, parents
/// first, then its refs.
fn git_repo(name: &str, commits: Vec<GitCommit>, refs: Vec<GitRef>) -> Vec<Bytes> {
    let repo = Some(GitRepo {
        go_repo: name.to_owned(),
    });
    let record = |commit: Option<GitCommit>, refs: Vec<GitRef>| {
        Bytes::from(
            Mutation {
                git: Some(GitMutation {
                    repo: repo.clone(),
                    commit,
                    refs,
                    deleted_refs: Vec::new(),
                }),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    };
    let mut out: Vec<Bytes> = commits
        .into_iter()
        .map(|c| record(Some(c), Vec::new()))
        .collect();
    out.push(record(None, refs));
    out
}

/// Repository `demo`: main is 10, 11, 12, 14 and the merge 15 of 14 and
/// the side branch's 13 (newer than 12, but not a first parent of main).
/// A tag names 11.
fn demo() -> Vec<Bytes> {
    git_repo(
        "demo",
        vec![
            commit(10, None, "demo: initial"),
            commit(11, Some(10), "demo: two"),
            commit(12, Some(11), "demo: three"),
            commit(13, Some(12), "demo: side work"),
            commit(14, Some(12), "demo: four"),
            merge(15, 14, 13),
        ],
        vec![
            git_ref("refs/heads/main", 15),
            git_ref("refs/heads/side", 13),
            git_ref("refs/tags/v0.1.0", 11),
        ],
    )
}

/// The corpus of a new log in `dir` holding `records`.
fn corpus(dir: &Path, records: Vec<Bytes>) -> Corpus {
    write_log(dir, records);
    Corpus::open(dir).expect("open corpus")
}

/// The number `i` of hand-made commit `hash(i)`.
fn number(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16)
        .ok()
        .and_then(|n| n.checked_sub(0xc0ffee_u64 * 1000))
        .unwrap_or_else(|| panic!("{hex} is not a hand-made commit"))
}

/// Post-submit work as (builder, repo, branch, commit number).
fn listed(work: &[Work]) -> Vec<(&str, &str, &str, u64)> {
    work.iter()
        .map(|w| {
            (
                w.builder.as_str(),
                w.repo.as_str(),
                w.branch.as_str(),
                number(w.commit()),
            )
        })
        .collect()
}

fn fold(farm: &mut Farm, events: Vec<Mutation>) {
    for m in &events {
        let pos = Position(farm.events());
        farm.apply(pos, m).expect("the farm fold is infallible");
    }
}

fn result_mutation(e: result_event::Event) -> Mutation {
    Mutation {
        result: Some(ResultEvent {
            meta: None,
            event: Some(e),
        }),
        ..Default::default()
    }
}

fn result_key(builder: &str, package_path: &str, hash: &str, go_hash: &str) -> Option<ResultKey> {
    Some(ResultKey {
        builder: builder.into(),
        package_path: package_path.into(),
        hash: hash.into(),
        go_hash: go_hash.into(),
    })
}

fn recorded(builder: &str, package_path: &str, hash: &str, go_hash: &str) -> Mutation {
    result_mutation(result_event::Event::ResultRecorded(ResultRecorded {
        key: result_key(builder, package_path, hash, go_hash),
        ok: true,
        build_id: format!("B-{builder}-{hash}"),
        ..Default::default()
    }))
}

fn cleared(builder: &str, package_path: &str, hash: &str, go_hash: &str) -> Mutation {
    result_mutation(result_event::Event::ResultCleared(ResultCleared {
        key: result_key(builder, package_path, hash, go_hash),
        actor: "gopher".into(),
        reason: "flaky".into(),
    }))
}

fn build_mutation(e: build_event::Event) -> Mutation {
    Mutation {
        build: Some(BuildEvent {
            meta: None,
            event: Some(e),
        }),
        ..Default::default()
    }
}

/// `BuildRequested` for work (builder, rev, sub_name, sub_rev).
fn requested(id: &str, work: [&str; 4], kind: BuildKind) -> Mutation {
    let [builder, rev, sub_name, sub_rev] = work;
    build_mutation(build_event::Event::BuildRequested(BuildRequested {
        build_id: id.into(),
        work: Some(BuilderRev {
            builder: builder.into(),
            rev: rev.into(),
            sub_name: sub_name.into(),
            sub_rev: sub_rev.into(),
        }),
        host_type: HOST.into(),
        kind: kind as i32,
        attempt: 1,
        ..Default::default()
    }))
}

fn completed(id: &str, outcome: BuildOutcome) -> Mutation {
    build_mutation(build_event::Event::BuildCompleted(BuildCompleted {
        build_id: id.into(),
        outcome: outcome as i32,
        ..Default::default()
    }))
}

#[test]
fn post_submit_work_walks_first_parents_of_the_branches_a_builder_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = demo();
    // Repository `short` starts at a commit whose parent was never logged:
    // the walk stops before the placeholder.
    records.extend(git_repo(
        "short",
        vec![commit(20, Some(19), "short: orphan")],
        vec![git_ref("refs/heads/main", 20)],
    ));
    let corpus = corpus(dir.path(), records);
    let envs = envs(&[
        builder("linux-amd64", &["demo"], &["main"], false, false),
        builder(
            "linux-arm64",
            &["demo"],
            &["release-branch.*"],
            false,
            false,
        ),
        builder("freebsd-amd64", &["demo", "short"], &["*"], false, false),
        builder("windows-amd64", &["go"], &["*"], false, false),
        builder("openbsd-amd64", &["demo"], &["main"], true, true),
    ]);
    let farm = Farm::new();

    let work = post_submit_work(&corpus, &farm, &envs, 3);
    assert_eq!(
        listed(&work),
        [
            ("freebsd-amd64", "short", "main", 20),
            ("freebsd-amd64", "demo", "main", 15),
            ("linux-amd64", "demo", "main", 15),
            ("freebsd-amd64", "demo", "main", 14),
            ("linux-amd64", "demo", "main", 14),
            ("freebsd-amd64", "demo", "side", 13),
            ("freebsd-amd64", "demo", "main", 12),
            ("linux-amd64", "demo", "main", 12),
            ("freebsd-amd64", "demo", "side", 11),
        ],
        "newest first; linux-arm64 matches no branch, windows-amd64 no \
         repository, openbsd-amd64 is a trybot only; a tag is no branch"
    );
    assert_eq!(
        work[2],
        Work {
            builder: "linux-amd64".into(),
            host_type: HOST.into(),
            kind: BuildKind::PostSubmit,
            repo: "demo".into(),
            branch: "main".into(),
            rev: String::new(),
            sub_name: "demo".into(),
            sub_rev: hash(15),
            commit_time: nanos(15),
            try_info: None,
        }
    );
    assert_eq!(work[2].commit(), hash(15));
    assert_eq!(work[2].package_path(), "demo");

    // Deeper than the history: the walk ends at the root.
    let deep = post_submit_work(&corpus, &farm, &envs, 10);
    let linux: Vec<u64> = listed(&deep)
        .into_iter()
        .filter(|(b, ..)| *b == "linux-amd64")
        .map(|(.., n)| n)
        .collect();
    assert_eq!(linux, [15, 14, 12, 11, 10]);
    assert!(post_submit_work(&corpus, &farm, &envs, 0).is_empty());

    // No go project, no Go releases: GoFindTryWork fails, so no try work.
    assert!(try_work(&corpus, &farm, &envs).is_empty());
}

#[test]
fn results_and_live_builds_remove_work_and_communication_errors_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = go_history();
    records.extend(demo());
    let corpus = corpus(dir.path(), records);
    let envs = envs(&[builder(
        "linux-amd64",
        &["go", "demo"],
        &["main", "master"],
        false,
        false,
    )]);
    let mut farm = Farm::new();
    let work = post_submit_work(&corpus, &farm, &envs, 2);
    assert_eq!(
        listed(&work),
        [
            ("linux-amd64", "demo", "main", 15),
            ("linux-amd64", "demo", "main", 14),
            ("linux-amd64", "go", "master", 4),
            ("linux-amd64", "go", "master", 3),
        ]
    );
    let go = &work[2];
    assert_eq!(
        (go.rev.as_str(), go.sub_name.as_str(), go.sub_rev.as_str()),
        (hash(4).as_str(), "", "")
    );
    assert_eq!((go.commit(), go.package_path()), (hash(4).as_str(), ""));
    assert_eq!(go.commit_time, nanos(4));

    // Results: the dashboard's keys (go's package path is "").
    fold(
        &mut farm,
        vec![
            recorded("linux-amd64", "demo", &hash(15), ""),
            recorded("linux-amd64", "", &hash(4), ""),
            recorded("linux-arm64", "demo", &hash(14), ""),
            recorded("linux-amd64", "go", &hash(3), ""),
        ],
    );
    let work = post_submit_work(&corpus, &farm, &envs, 2);
    assert_eq!(
        listed(&work),
        [
            ("linux-amd64", "demo", "main", 14),
            ("linux-amd64", "go", "master", 3),
        ],
        "another builder's result, or one under another package path, \
         leaves the work"
    );

    // Live builds: queued work is not requested again.
    fold(
        &mut farm,
        vec![
            requested(
                "B1",
                ["linux-amd64", "", "demo", &hash(14)],
                BuildKind::PostSubmit,
            ),
            requested(
                "B2",
                ["linux-amd64", &hash(3), "", ""],
                BuildKind::PostSubmit,
            ),
        ],
    );
    assert!(post_submit_work(&corpus, &farm, &envs, 2).is_empty());

    // A communication error is not a result: the work comes back.
    fold(&mut farm, vec![completed("B2", BuildOutcome::CommError)]);
    assert_eq!(
        listed(&post_submit_work(&corpus, &farm, &envs, 2)),
        [("linux-amd64", "go", "master", 3)]
    );

    // A cleared result asks for the build again.
    fold(
        &mut farm,
        vec![cleared("linux-amd64", "demo", &hash(15), "")],
    );
    assert_eq!(
        listed(&post_submit_work(&corpus, &farm, &envs, 2)),
        [
            ("linux-amd64", "demo", "main", 15),
            ("linux-amd64", "go", "master", 3),
        ]
    );
}

#[test]
fn work_reached_twice_is_listed_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = go_history();
    records.extend(demo());
    // A plain git mirror of the go project: the same commits and master.
    records.extend(git_repo(
        "go",
        vec![
            commit(0, None, "all: initial commit"),
            commit(1, Some(0), "runtime: faster maps"),
            commit(2, Some(1), "cmd/go: better errors"),
            commit(3, Some(2), "net/http: fix a race"),
            commit(4, Some(3), "spec: clarify generics"),
        ],
        vec![git_ref("refs/heads/master", 4)],
    ));
    let corpus = corpus(dir.path(), records);
    let envs = envs(&[
        builder(
            "linux-amd64",
            &["go"],
            &["master", "release-branch.go1.22"],
            false,
            false,
        ),
        builder("freebsd-amd64", &["demo"], &["*"], false, false),
    ]);
    let farm = Farm::new();
    let work = post_submit_work(&corpus, &farm, &envs, 5);

    // Go's master (4..0) and release-branch.go1.22 (2..0) share 2..0, and
    // the git mirror shares all of master: each commit once, from master.
    let go: Vec<(&str, u64)> = listed(&work)
        .into_iter()
        .filter(|(_, repo, ..)| *repo == "go")
        .map(|(_, _, branch, n)| (branch, n))
        .collect();
    assert_eq!(
        go,
        [
            ("master", 4),
            ("master", 3),
            ("master", 2),
            ("master", 1),
            ("master", 0),
        ]
    );

    // demo's side branch shares 12, 11 and 10 with main: listed once each,
    // from main (first in ref-name order).
    let demo: Vec<(&str, u64)> = listed(&work)
        .into_iter()
        .filter(|(_, repo, ..)| *repo == "demo")
        .map(|(_, _, branch, n)| (branch, n))
        .collect();
    assert_eq!(
        demo,
        [
            ("main", 15),
            ("main", 14),
            ("side", 13),
            ("main", 12),
            ("main", 11),
            ("main", 10),
        ]
    );

    // With a shallower walk, release-branch.go1.22's own commits show.
    let shallow = post_submit_work(&corpus, &farm, &envs, 3);
    let go: Vec<(&str, u64)> = listed(&shallow)
        .into_iter()
        .filter(|(_, repo, ..)| *repo == "go")
        .map(|(_, _, branch, n)| (branch, n))
        .collect();
    assert_eq!(
        go,
        [
            ("master", 4),
            ("master", 3),
            ("master", 2),
            ("release-branch.go1.22", 1),
            ("release-branch.go1.22", 0),
        ]
    );
}

#[test]
fn try_work_follows_run_trybot_votes_until_a_try_build_concludes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = "go.googlesource.com/tools";
    let mut records = go_history();
    records.push(Bytes::from(
        Mutation {
            gerrit: Some(GerritMutation {
                project: tools.to_owned(),
                commits: vec![commit(50, None, "tools: initial")],
                refs: vec![git_ref("refs/heads/master", 50)],
                deleted_refs: vec![],
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    ));
    let (waiting, go_ps) = cl_mutation(GO, 101, &hash(4), &[(5555, RUN_TRYBOT)]);
    let (done, _) = cl_mutation(
        GO,
        102,
        &hash(4),
        &[(5555, RUN_TRYBOT), (7777, TRYBOT_DONE)],
    );
    let (subrepo, tools_ps) = cl_mutation(tools, 105, &hash(50), &[(6666, RUN_TRYBOT)]);
    records.extend([waiting, done, subrepo]);
    let corpus = corpus(dir.path(), records);
    let envs = envs(&[
        builder("linux-amd64", &["go", "tools"], &["master"], true, false),
        builder("linux-arm64", &["go"], &["master"], false, false),
        builder("windows-amd64", &["go"], &["master"], true, true),
        builder("freebsd-amd64", &["go"], &["release-branch.*"], true, false),
    ]);
    let mut farm = Farm::new();

    let go_change = format!("I{:040x}", 0xdef000_u64 + 101);
    let tools_change = format!("I{:040x}", 0xdef000_u64 + 105);
    let cl_time = |number: i128| (1_700_100_000 + number * 60) * 1_000_000_000;
    let go_try = |builder: &str| Work {
        builder: builder.into(),
        host_type: HOST.into(),
        kind: BuildKind::Try,
        repo: "go".into(),
        branch: "master".into(),
        rev: go_ps.clone(),
        sub_name: String::new(),
        sub_rev: String::new(),
        commit_time: cl_time(101),
        try_info: Some(TryInfo {
            project: "go".into(),
            branch: "master".into(),
            change_id: go_change.clone(),
            commit: go_ps.clone(),
            patchset: 1,
            go_commits: Vec::new(),
        }),
    };
    let tools_try = Work {
        builder: "linux-amd64".into(),
        host_type: HOST.into(),
        kind: BuildKind::Try,
        repo: "tools".into(),
        branch: "master".into(),
        rev: hash(4),
        sub_name: "tools".into(),
        sub_rev: tools_ps.clone(),
        commit_time: cl_time(105),
        try_info: Some(TryInfo {
            project: "tools".into(),
            branch: "master".into(),
            change_id: tools_change,
            commit: tools_ps.clone(),
            patchset: 1,
            go_commits: vec![hash(4), hash(2), hash(1)],
        }),
    };

    // CL 102 already has its TryBot-Result; linux-arm64 is no trybot and
    // freebsd-amd64 tries release branches only.
    let work = try_work(&corpus, &farm, &envs);
    assert_eq!(
        work,
        [
            go_try("linux-amd64"),
            go_try("windows-amd64"),
            tools_try.clone(),
        ]
    );
    assert_eq!(work[2].commit(), tools_ps);
    assert_eq!(work[2].package_path(), "tools");

    // CL patch sets are not branch heads: post-submit sees only branches
    // (freebsd-amd64 builds go's release branches post-submit too).
    assert_eq!(
        listed(&post_submit_work(&corpus, &farm, &envs, 1)),
        [
            ("linux-amd64", "tools", "master", 50),
            ("linux-amd64", "go", "master", 4),
            ("linux-arm64", "go", "master", 4),
            ("freebsd-amd64", "go", "release-branch.go1.22", 2),
            ("freebsd-amd64", "go", "release-branch.go1.21", 1),
        ]
    );

    // A live try build, then its verdict, remove the work; a post-submit
    // build of the same commit does not; a communication error brings the
    // work back.
    fold(
        &mut farm,
        vec![requested(
            "T1",
            ["linux-amd64", &go_ps, "", ""],
            BuildKind::Try,
        )],
    );
    assert_eq!(
        try_work(&corpus, &farm, &envs),
        [go_try("windows-amd64"), tools_try.clone()]
    );
    fold(
        &mut farm,
        vec![
            completed("T1", BuildOutcome::Passed),
            requested(
                "P1",
                ["windows-amd64", &go_ps, "", ""],
                BuildKind::PostSubmit,
            ),
            completed("P1", BuildOutcome::Passed),
            requested(
                "T2",
                ["linux-amd64", &hash(4), "tools", &tools_ps],
                BuildKind::Try,
            ),
        ],
    );
    assert_eq!(try_work(&corpus, &farm, &envs), [go_try("windows-amd64")]);
    fold(&mut farm, vec![completed("T2", BuildOutcome::CommError)]);
    assert_eq!(
        try_work(&corpus, &farm, &envs),
        [go_try("windows-amd64"), tools_try]
    );
}

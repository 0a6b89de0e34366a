//! `almanac up` pointed at a local git repository and a (fake) GitHub: the
//! process syncs both into its log, a gRPC subscriber sees the mutations
//! arrive, a commit made while it runs shows up within seconds, and the
//! corpus folded from the log afterwards shows the repository's commits
//! and refs and the GitHub issues.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message as _;

use almanac_log_client::grpc::Subscription;
use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::Mutation;

use crate::fake_github::FakeGitHub;
use crate::github_sync::{OWNER, REPO, fake_repo};
use crate::support::{almanac, arg, wait_for_addr_file};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = crate::support::git(dir, args);
    String::from_utf8(out).expect("utf-8").trim().to_string()
}

/// Records from the subscription until `done` says enough, or panics at
/// the deadline.
async fn receive_until(
    sub: &mut Subscription,
    seen: &mut Vec<Mutation>,
    done: impl Fn(&[Mutation]) -> bool,
    what: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done(seen) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} within two minutes");
        let record = tokio::time::timeout(left, sub.next())
            .await
            .unwrap_or_else(|_| panic!("no {what} within two minutes"))
            .expect("subscription");
        seen.push(Mutation::decode(record.mutation.as_ref()).expect("decode"));
    }
}

/// Whether a mutation pointed `name` at `sha`. The sync appends a ref only
/// after the commits it reaches, in a later append.
fn has_ref(seen: &[Mutation], name: &str, sha: &str) -> bool {
    seen.iter().any(|m| {
        m.git
            .as_ref()
            .is_some_and(|g| g.refs.iter().any(|r| r.r#ref == name && r.sha1 == sha))
    })
}

/// How many of the fake repository's issues were logged. Issues come a
/// page (two) per append, so the first issue seen does not mean the rest.
fn issue_numbers(seen: &[Mutation]) -> usize {
    seen.iter()
        .filter_map(|m| m.github_issue.as_ref())
        .filter(|i| i.owner == OWNER && i.repo == REPO)
        .map(|i| i.number)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

fn has_commit(seen: &[Mutation], sha: &str) -> bool {
    seen.iter().any(|m| {
        m.git
            .as_ref()
            .and_then(|g| g.commit.as_ref())
            .is_some_and(|c| c.sha1 == sha)
    })
}

#[test]
fn up_syncs_a_local_repository_and_github_into_the_corpus() {
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("hello");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("hello.go"), "package hello\n").expect("write");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "hello: first"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let fake = rt.block_on(FakeGitHub::start(fake_repo()));
    let config = work.path().join("ingest.toml");
    std::fs::write(
        &config,
        format!(
            "[[github]]\nrepo = \"{OWNER}/{REPO}\"\napi_url = {:?}\n",
            fake.url()
        ),
    )
    .expect("config");

    let data = work.path().join("data");
    let addr_file = work.path().join("addr");
    let mut child = almanac()
        .args([
            "up",
            "--data",
            arg(&data),
            "--listen",
            "127.0.0.1:0",
            "--addr-file",
            arg(&addr_file),
            "--no-seed",
            "--sample-rate",
            "0",
            "--git",
            arg(&repo),
            "--config",
            arg(&config),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    let addr = wait_for_addr_file(&addr_file, &mut child);

    let mut seen = Vec::new();
    rt.block_on(async {
        let mut sub = Subscription::new(&addr.to_string(), 0);
        receive_until(
            &mut sub,
            &mut seen,
            |seen| has_commit(seen, &first) && issue_numbers(seen) >= 3,
            "git commit and three GitHub issues",
        )
        .await;

        // A commit made while up runs is logged within its 5 s poll, and
        // then the branch that reaches it.
        std::fs::write(repo.join("hello.go"), "package hello\n\nfunc Hi() {}\n").expect("write");
        git(&repo, &["commit", "-q", "-am", "hello: second"]);
        let second = git(&repo, &["rev-parse", "HEAD"]);
        receive_until(
            &mut sub,
            &mut seen,
            |s| has_commit(s, &second) && has_ref(s, "refs/heads/main", &second),
            "second commit and main moved to it",
        )
        .await;
    });

    // SIGTERM: a clean shutdown.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(child.wait().expect("wait").success());

    let corpus = Corpus::open(&data).expect("corpus");
    let head = git(&repo, &["rev-parse", "main"]);
    let hello = corpus.git_repo("hello").expect("the repository's refs");
    assert_eq!(
        hello.ref_hash("refs/heads/main").map(|h| h.to_string()),
        Some(head.clone())
    );
    let commit = corpus.git_commit(&head).expect("head commit");
    assert_eq!(commit.summary(), "hello: second");
    let gh = corpus.github().repo(OWNER, REPO).expect("GitHub repo");
    assert!(gh.issues().count() >= 3, "{} issues", gh.issues().count());
    assert!(gh.labels().count() >= 1);
}

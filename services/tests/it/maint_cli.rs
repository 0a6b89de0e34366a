//! The client commands as a user runs them, against a real maintnerd on
//! 127.0.0.1: `almanac maintq` (Go's subcommands) over a Go-shaped Gerrit
//! history, `almanac maintwatch` over `/logs` and gRPC, and a corpus kept
//! live by `Corpus::subscribe`.

use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;

use almanac_log::{Log, Options};
use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::{
    GerritMutation, GitCommit, GitRef, GithubIssueCommentMutation, GithubIssueMutation, Mutation,
};
use almanac_services::maintnerd::{Config, Server};

use crate::support::{almanac, stderr, stdout};

const GO: &str = "go.googlesource.com/go";

fn hash(i: u32) -> String {
    format!("{:040x}", 0xc0ffee_u64 * 1000 + u64::from(i))
}

fn commit(i: u32, parent: Option<u32>, title: &str) -> GitCommit {
    let t = 1_700_000_000 + i64::from(i) * 3600;
    let parent = parent.map_or(String::new(), |p| format!("parent {}\n", hash(p)));
    GitCommit {
        sha1: hash(i),
        raw: format!(
            "tree {}\n{parent}author Gopher Gopherson <gopher@golang.org> {t} +0000\ncommitter Gopher Gopherson <gopher@golang.org> {t} +0000\n\n{title}\n\nMore text.\n",
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        )
        .into_bytes()
        .into(),
        diff_tree: None,
    }
}

fn git_ref(name: &str, i: u32) -> GitRef {
    GitRef {
        r#ref: name.to_owned(),
        sha1: hash(i),
    }
}

/// The go project: master c0..c4, release branches and tags for 1.21 and
/// 1.22 (whose newest patches are go1.21.3 and go1.22.1).
fn go_history() -> Vec<Bytes> {
    let commits = vec![
        commit(0, None, "all: initial commit"),
        commit(1, Some(0), "runtime: faster maps"),
        commit(2, Some(1), "cmd/go: better errors"),
        commit(3, Some(2), "net/http: fix a race"),
        commit(4, Some(3), "spec: clarify generics"),
    ];
    let refs = vec![
        git_ref("refs/heads/master", 4),
        git_ref("refs/heads/release-branch.go1.21", 1),
        git_ref("refs/tags/go1.21.2", 0),
        git_ref("refs/tags/go1.21.3", 1),
        git_ref("refs/heads/release-branch.go1.22", 2),
        git_ref("refs/tags/go1.22.0", 2),
        git_ref("refs/tags/go1.22.1", 2),
    ];
    vec![Bytes::from(
        Mutation {
            gerrit: Some(GerritMutation {
                project: GO.to_owned(),
                commits,
                refs,
                deleted_refs: Vec::new(),
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    )]
}

fn comment(id: i64) -> Bytes {
    Bytes::from(
        Mutation {
            github_issue: Some(GithubIssueMutation {
                owner: "golang".into(),
                repo: "go".into(),
                number: 7,
                comment: vec![GithubIssueCommentMutation {
                    id,
                    body: format!("comment number {id}"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn write_log(dir: &Path, records: Vec<Bytes>) {
    let (log, _) = Log::open(dir, Options::default()).expect("open");
    log.append_blocking(records).expect("append");
    log.close();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn serve(rt: &tokio::runtime::Runtime, dir: &Path) -> Server {
    let mut config = Config::new(dir.to_owned(), "127.0.0.1:0".parse().expect("addr"));
    config.append_token = Some("t".into());
    let mut server = rt.block_on(Server::start(config)).expect("start");
    rt.block_on(server.corpus_ready());
    server
}

fn maintq(addr: SocketAddr, args: &[&str]) -> std::process::Output {
    let addr = addr.to_string();
    let mut all = vec!["maintq", "--server", addr.as_str()];
    all.extend_from_slice(args);
    almanac().args(&all).output().expect("run maintq")
}

#[test]
fn maintq_answers_gos_subcommands() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), go_history());
    let rt = runtime();
    let server = serve(&rt, dir.path());
    let addr = server.addr();

    let out = maintq(addr, &["list-releases"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let newest = text.find("go1.22.1").expect("go1.22.1 listed");
    let older = text.find("go1.21.3").expect("go1.21.3 listed");
    assert!(newest < older, "newest first:\n{text}");
    assert!(text.contains("release-branch.go1.21"), "{text}");
    assert!(
        !text.contains("go1.21.2"),
        "only the highest patch:\n{text}"
    );

    let out = maintq(addr, &["get-ref", "go", "refs/heads/master"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{}\n", hash(4)));
    let out = maintq(addr, &["get-ref", "go", "refs/heads/nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ref not found"), "{}", stderr(&out));

    let out = maintq(addr, &["has-ancestor", &hash(4), &hash(0)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("has_ancestor: true"),
        "{}",
        stdout(&out)
    );
    let out = maintq(addr, &["has-ancestor", &hash(0), &hash(4)]);
    assert!(!stdout(&out).contains("has_ancestor"), "{}", stdout(&out));
    let out = maintq(addr, &["has-ancestor", "abc", &hash(4)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("rpc error: code = Unknown desc = invalid Commit"),
        "{}",
        stderr(&out)
    );

    let out = maintq(addr, &["get-dashboard"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for title in ["spec: clarify generics", "all: initial commit"] {
        assert!(text.contains(title), "{title} missing:\n{text}");
    }
    assert!(
        text.find("spec: clarify generics") < text.find("all: initial commit"),
        "newest first"
    );
    let out = maintq(addr, &["get-dashboard", "--branch", "nope"]);
    assert!(!out.status.success());

    let out = maintq(addr, &["try-work"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = maintq(addr, &["try-work", "prod"]);
    assert!(!out.status.success());
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn metric(addr: SocketAddr, name: &str) -> i64 {
    raw_get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(-1)
}

fn raw_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn wait_for_metric(addr: SocketAddr, name: &str, value: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(addr, name) != value {
        assert!(Instant::now() < deadline, "{name} never reached {value}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the watcher printed comments `ids`, in order.
fn expect_comments(rx: &mpsc::Receiver<String>, ids: &[i64]) {
    let mut want = ids.iter();
    let mut next = want.next();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(id) = next {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("maintwatch printed the record in time");
        if line.contains(&format!("comment number {id}")) {
            next = want.next();
        }
    }
}

#[test]
fn maintwatch_prints_records_as_they_arrive() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), vec![comment(1)]);
    let rt = runtime();
    let server = serve(&rt, dir.path());
    let addr = server.addr();

    // Over /logs, as Go's maintwatch: parked on a long-poll, then woken.
    let mut watch = almanac()
        .args(["maintwatch", "--server", &format!("http://{addr}/logs")])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn maintwatch");
    let lines = lines_of(&mut watch);
    wait_for_metric(addr, "almanac_logs_long_polls_waiting", 1);
    rt.block_on(server.log().append(vec![comment(2), comment(3)]))
        .expect("append");
    expect_comments(&lines, &[2, 3]);
    watch.kill().expect("kill");
    watch.wait().expect("reap");

    // Over gRPC.
    let mut watch = almanac()
        .args(["maintwatch", "--grpc", "--server", &addr.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn maintwatch");
    let lines = lines_of(&mut watch);
    wait_for_metric(addr, "almanac_subscribers", 1);
    rt.block_on(server.log().append(vec![comment(4)]))
        .expect("append");
    expect_comments(&lines, &[4]);
    watch.kill().expect("kill");
    watch.wait().expect("reap");
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn a_subscribed_corpus_follows_the_log_and_mirrors_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let mut records = go_history();
    records.extend((1..=50).map(comment));
    let (log, _) = Log::open(
        dir.path(),
        Options {
            segment_target_len: 1024,
            ..Options::default()
        },
    )
    .expect("open");
    log.append_blocking(records).expect("append");
    log.close();
    let rt = runtime();
    let mut config = Config::new(dir.path().to_owned(), "127.0.0.1:0".parse().expect("addr"));
    config.log_options.segment_target_len = 1024;
    let server = rt.block_on(Server::start(config)).expect("start");
    let addr = server.addr();

    let url = format!("http://{addr}/logs");
    let cache_dir = cache.path().to_owned();
    let (mut corpus, sub) = std::thread::spawn(move || {
        let corpus = Corpus::open_network(&url, &cache_dir).expect("open");
        let sub = corpus.subscribe(&addr.to_string()).expect("subscribe");
        (corpus, sub)
    })
    .join()
    .expect("thread");

    rt.block_on(server.log().append((51..=120).map(comment).collect()))
        .expect("append");
    let end = server.log().end();
    let deadline = Instant::now() + Duration::from_secs(60);
    while corpus.position() < end {
        assert!(Instant::now() < deadline, "the corpus never caught up");
        sub.wait(&mut corpus, Duration::from_secs(5)).expect("wait");
    }
    let truth = Corpus::open(dir.path()).expect("open truth");
    assert_eq!(corpus.dump(), truth.dump());
    let issue = corpus
        .github()
        .repo("golang", "go")
        .and_then(|r| r.issue(7))
        .expect("issue 7");
    assert_eq!(issue.comments().count(), 120);
    drop(sub);

    // The mirror is byte-identical to the server's segments, names too.
    let names = |d: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .expect("dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "mutlog"))
            .map(|p| {
                (
                    p.file_name().expect("name").to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("read"),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert!(names(dir.path()).len() > 3, "the test must cross seals");
    assert_eq!(names(cache.path()), names(dir.path()));
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn up_serves_a_seeded_log_with_live_activity_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let addr_file = dir.path().join("addr");
    let child = almanac()
        .args([
            "up",
            "--data",
            data.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--sample-rate",
            "50",
            "--addr-file",
            addr_file.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn up");
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut up = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    let addr: SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&addr_file)
            && let Ok(addr) = text.trim().parse()
        {
            break addr;
        }
        assert!(Instant::now() < deadline, "up never listened");
        std::thread::sleep(Duration::from_millis(10));
    };

    // The seeded history answers the maintner API (once folded).
    let deadline = Instant::now() + Duration::from_secs(120);
    let releases = loop {
        let out = maintq(addr, &["list-releases"]);
        if out.status.success() {
            break stdout(&out);
        }
        assert!(
            stderr(&out).contains("Unavailable") && Instant::now() < deadline,
            "{}",
            stderr(&out)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(releases.contains("tag_name: \"go1."), "{releases}");

    // Sample activity arrives live.
    let mut watch = almanac()
        .args(["maintwatch", "--grpc", "--server", &addr.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn maintwatch");
    let lines = lines_of(&mut watch);
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("a live record");
    assert!(line.is_empty(), "a blank line first, as Go's maintwatch");
    let line = lines
        .recv_timeout(Duration::from_secs(60))
        .expect("a live record");
    assert_eq!(line, "github_issue: {");
    watch.kill().expect("kill");
    watch.wait().expect("reap");

    // SIGTERM: a clean exit, and the log opens cleanly (nothing torn).
    let pid = up.0.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = up.0.wait().expect("wait");
    assert!(exit.success(), "up exited with {exit}");
    let (log, recovery) = Log::open(&data, Options::default()).expect("reopen");
    assert_eq!(recovery.torn_tail, None);
    assert!(log.end().0 > 0);
}

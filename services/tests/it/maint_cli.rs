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
    GerritMutation, GithubIssueCommentMutation, GithubIssueMutation, Mutation,
};
use almanac_services::maintnerd::{Config, Server};

use crate::support::{
    GO, MERGED, RUN_TRYBOT, TRYBOT_DONE, almanac, cl_mutation, commit, git_ref, go_history, hash,
    runtime, segment_files, stderr, stdout, write_log,
};

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

fn serve(rt: &tokio::runtime::Runtime, dir: &Path) -> Server {
    let mut config = Config::new(dir.to_owned(), "127.0.0.1:0".parse().expect("addr"));
    config.append_token = Some("t".into());
    let mut server = rt
        .block_on(Server::start(config))
        .unwrap_or_else(|e| panic!("maintnerd did not start: {e:#}"));
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
    // Go's flag package takes one dash as well as two.
    let go_style = almanac()
        .args([
            "maintq",
            &format!("-server={addr}"),
            "get-ref",
            "go",
            "refs/heads/master",
        ])
        .output()
        .expect("run maintq");
    assert!(go_style.status.success(), "{}", stderr(&go_style));
    assert_eq!(stdout(&go_style), format!("{}\n", hash(4)));
    let out = maintq(addr, &["get-ref", "go", "refs/heads/nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ref not found"), "{}", stderr(&out));

    let out = maintq(addr, &["has-ancestor", &hash(4), &hash(0)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "has_ancestor:true\n");
    let out = maintq(addr, &["has-ancestor", &hash(0), &hash(4)]);
    assert_eq!(
        stdout(&out),
        "\n",
        "an all-false answer prints an empty line, as Go"
    );
    let out = maintq(addr, &["has-ancestor", &"9".repeat(40), &hash(4)]);
    assert_eq!(stdout(&out), "unknown_commit:true\n");
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

    // The server goes away and comes back on the same address: the
    // watcher resumes where it was, missing nothing appended meanwhile.
    rt.block_on(server.shutdown()).expect("shutdown");
    let mut config = Config::new(dir.path().to_owned(), addr);
    config.append_token = Some("t".into());
    let server = rt
        .block_on(Server::start(config))
        .unwrap_or_else(|e| panic!("restart: {e:#}"));
    rt.block_on(server.log().append(vec![comment(5)]))
        .expect("append");
    expect_comments(&lines, &[5]);
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
    let server = rt
        .block_on(Server::start(config))
        .unwrap_or_else(|e| panic!("start: {e:#}"));
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
    assert!(
        segment_files(dir.path()).len() > 3,
        "the test must cross seals"
    );
    assert_eq!(segment_files(cache.path()), segment_files(dir.path()));
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
    let addr = crate::support::wait_for_addr_file(&addr_file, &mut up.0);

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
    assert!(
        line.ends_with(": {") && !line.starts_with(' '),
        "a top-level Mutation field opens the record: {line:?}"
    );
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

#[test]
fn try_work_lists_open_cls_waiting_for_trybots() {
    use almanac_proto::pb::apipb::{GoFindTryWorkRequest, MajorMinor, TryVoteMessage};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut records = go_history();
    let tools = "go.googlesource.com/tools";
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
    let (merged, _) = cl_mutation(GO, 103, &hash(4), &[(5555, RUN_TRYBOT), (1000, MERGED)]);
    let (quiet, _) = cl_mutation(GO, 104, &hash(4), &[]);
    let (subrepo, tools_ps) = cl_mutation(tools, 105, &hash(50), &[(6666, RUN_TRYBOT)]);
    records.extend([waiting, done, merged, quiet, subrepo]);
    write_log(dir.path(), records);

    let corpus = Corpus::open(dir.path()).expect("open");
    let resp = almanac_services::maintnerd::api::go_find_try_work(
        &corpus,
        &GoFindTryWorkRequest { for_staging: false },
    )
    .expect("try work");
    let mut want_order = vec![go_ps.clone(), tools_ps.clone()];
    want_order.sort();
    let got: Vec<&str> = resp.waiting.iter().map(|w| w.commit.as_str()).collect();
    assert_eq!(got, want_order, "only CLs 101 and 105 wait, by commit hex");
    let devel = MajorMinor {
        major: 1,
        minor: 23,
    };
    for item in &resp.waiting {
        assert_eq!(item.branch, "master");
        assert_eq!(item.version, 1);
        assert_eq!(item.author_email, "ann@golang.org");
        if item.commit == go_ps {
            assert_eq!(item.project, "go");
            assert_eq!(item.change_id, format!("I{:040x}", 0xdef000_u64 + 101));
            assert!(item.go_commit.is_empty() && item.go_branch.is_empty());
            assert_eq!(item.go_version, vec![devel]);
            assert_eq!(
                item.try_message,
                vec![TryVoteMessage {
                    message: "linux-amd64-race".into(),
                    author_id: 5555,
                    version: 1,
                }]
            );
        } else {
            assert_eq!(item.project, "tools");
            assert_eq!(item.go_commit, vec![hash(4), hash(2), hash(1)]);
            assert_eq!(
                item.go_branch,
                vec!["master", "release-branch.go1.22", "release-branch.go1.21"]
            );
            assert_eq!(
                item.go_version,
                vec![
                    devel,
                    MajorMinor {
                        major: 1,
                        minor: 22
                    },
                    MajorMinor {
                        major: 1,
                        minor: 21
                    }
                ]
            );
            assert_eq!(item.try_message[0].author_id, 6666);
        }
    }

    // The dashboard of a subrepo pairs its commits with go's.
    let dash = almanac_services::maintnerd::api::get_dashboard(
        &corpus,
        &almanac_proto::pb::apipb::DashboardRequest {
            repo: "golang.org/x/tools".into(),
            ..Default::default()
        },
    )
    .expect("dashboard");
    assert_eq!(dash.commits.len(), 1);
    assert_eq!(dash.commits[0].commit, hash(50));
    assert_eq!(dash.commits[0].title, "tools: initial");
    assert_eq!(dash.commits[0].go_commit_at_time, hash(4));
    assert_eq!(dash.commits[0].go_commit_latest, hash(4));
    let heads: Vec<&str> = dash
        .repo_heads
        .iter()
        .map(|h| h.gerrit_project.as_str())
        .collect();
    assert_eq!(heads, ["go", "tools"]);
    assert_eq!(dash.releases.len(), 3);
    assert_eq!(dash.releases[0].branch_name, "master");
}

#[test]
fn corpus_stats_syncs_from_a_server_then_folds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = tempfile::tempdir().expect("cache");
    let mut records = go_history();
    records.extend((1..=30).map(comment));
    write_log(dir.path(), records);
    let rt = runtime();
    let server = serve(&rt, dir.path());
    let url = format!("http://{}/logs", server.addr());
    let cache_dir = cache.path().join("golang-maintner");
    let out = almanac()
        .args(["corpus", "stats", "--server", &url])
        .arg(&cache_dir)
        .output()
        .expect("run corpus stats");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("synced"), "{text}");
    let truth = Corpus::open(dir.path()).expect("open");
    assert!(
        text.contains(&format!("loaded {} bytes", truth.position())),
        "{text}"
    );
    assert_eq!(segment_files(&cache_dir), segment_files(dir.path()));
    // The cache is private, as godata makes it.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&cache_dir)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// `almanac log append --server ADDR --token-file TOKEN --json` fed `lines`.
fn append_via(addr: &str, token: &Path, lines: &str) -> std::process::Output {
    crate::support::run(
        &[
            "log",
            "append",
            "--server",
            addr,
            "--token-file",
            token.to_str().expect("utf-8"),
            "--json",
        ],
        lines,
    )
}

#[test]
fn log_append_through_a_running_maintnerd() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_log(dir.path(), go_history());
    let rt = runtime();
    let server = serve(&rt, dir.path());
    let addr = server.addr().to_string();
    let token = dir.path().join("token");
    std::fs::write(&token, "t\n").expect("token");
    let lines = crate::support::sample_json(3, 300).join("\n");
    let before = server.log().end().0;

    let out = append_via(&addr, &token, &lines);
    assert!(out.status.success(), "{}", stderr(&out));
    let positions: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| l.parse().expect("a position"))
        .collect();
    assert_eq!(positions.len(), 300);
    assert_eq!(positions[0], before);
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
    assert!(server.log().end().0 > *positions.last().expect("some"));

    // A wrong token is refused and nothing is written.
    std::fs::write(&token, "nope").expect("token");
    let end = server.log().end();
    let out = append_via(&addr, &token, &lines);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong append token"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.log().end(), end);
    rt.block_on(server.shutdown()).expect("shutdown");
}

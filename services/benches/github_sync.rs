//! The GitHub sync against a fake GitHub API on 127.0.0.1: a generated
//! repository of 10,000 issues (every tenth a pull request with a review;
//! two comments and three events each; a few numbers missing), synced into
//! an in-process maintnerd. Reports the initial sync (requests, 304s,
//! mutations, MB appended, wall time, requests/s) and an incremental pass
//! with nothing new (requests, 304s, and mutations appended, which must be
//! 0), plus peak RSS (fake, client and corpus together).
//!
//! Run: `cargo bench -p almanac-services --bench github_sync`
//! (`ALMANAC_GH_ISSUES` sets the issue count, default 10,000).
//!
//! Both sides share this machine's two cores; the fake renders JSON and
//! hashes every body for its ETag, so the figures are a floor for the
//! client, not GitHub's speed.

#![expect(clippy::print_stdout, reason = "a benchmark prints its figures")]

mod common;

#[allow(dead_code, reason = "the benchmark uses only part of the fake")]
#[path = "../tests/it/fake_github.rs"]
mod fake_github;

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Value, json};

use almanac_services::ingest;
use almanac_services::ingest::config::{GitHubSource, Secret};
use almanac_services::ingest::github::{ClientOptions, GitHubClient, sync_repo};
use almanac_services::maintnerd::{Config, Server};
use almanac_services::pubsubhelper;

use fake_github::{FakeGitHub, FakeRepo};

const OWNER: &str = "golang";
const REPO: &str = "go";
/// 2020-01-01T00:00:00Z: issue times start here, well before the fake's
/// `Date`.
const EPOCH: i64 = 1_577_836_800;
const LABELS: i64 = 20;
const MILESTONES: i64 = 10;
const USERS: i64 = 50;

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("a time in range")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn user(k: i64) -> Value {
    let (id, login) = (1_000 + k, format!("gopher{k}"));
    json!({
        "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "url": format!("https://api.github.com/users/{login}"), "type": "User", "site_admin": false
    })
}

fn label(k: i64) -> Value {
    json!({
        "id": 100_000 + k, "node_id": format!("MDU6TGFiZWw{k}"),
        "url": format!("https://api.github.com/repos/golang/go/labels/label-{k}"),
        "name": format!("label-{k}"), "color": "ededed", "default": false
    })
}

fn milestone(k: i64) -> Value {
    json!({
        "id": 200_000 + k, "number": k + 1, "title": format!("Go1.{}", k + 10),
        "state": if k < 5 { "closed" } else { "open" }, "description": "",
        "open_issues": 0, "closed_issues": 0, "due_on": null
    })
}

/// `n` issue numbers (a few left out), with comments, events and reviews.
fn generate(n: i64) -> FakeRepo {
    let mut repo = FakeRepo {
        owner: OWNER.into(),
        name: REPO.into(),
        labels: (0..LABELS).map(label).collect(),
        milestones: (0..MILESTONES).map(milestone).collect(),
        comments: BTreeMap::new(),
        events: BTreeMap::new(),
        reviews: BTreeMap::new(),
        issues: Vec::new(),
        page_size: 100,
    };
    for number in 1..=n {
        if number % 997 == 0 {
            continue;
        }
        let created = EPOCH + number * 60;
        let updated = created + 86_400;
        let base = format!("https://api.github.com/repos/golang/go/issues/{number}");
        let is_pr = number % 10 == 0;
        let closed = number % 3 == 0;
        let mut issue = json!({
            "url": base, "html_url": format!("https://github.com/golang/go/issues/{number}"),
            "id": 300_000_000 + number, "node_id": format!("MDU6SXNzdWU{number}"),
            "number": number, "title": format!("pkg{}: something is wrong in case {number}", number % 40),
            "user": user(number % USERS),
            "labels": [label(number % LABELS), label((number * 7) % LABELS)],
            "state": if closed { "closed" } else { "open" }, "locked": false,
            "assignees": if number % 4 == 0 { json!([user((number + 1) % USERS)]) } else { json!([]) },
            "milestone": if number % 5 == 0 { Value::Null } else { milestone(number % MILESTONES) },
            "comments": 2, "created_at": rfc3339(created), "updated_at": rfc3339(updated),
            "closed_at": if closed { Value::from(rfc3339(updated)) } else { Value::Null },
            "author_association": "CONTRIBUTOR",
            "body": format!("What version of Go are you using?\n\ngo1.14 linux/amd64\n\nIssue {number}.")
        });
        if is_pr {
            issue["pull_request"] = json!({
                "url": format!("https://api.github.com/repos/golang/go/pulls/{number}"),
                "html_url": format!("https://github.com/golang/go/pull/{number}")
            });
            repo.reviews.insert(
                number,
                vec![json!({
                    "id": 500_000_000 + number, "node_id": "MDE3OlB1bGxSZXF1ZXN0UmV2aWV3",
                    "user": user((number + 2) % USERS), "body": "LGTM", "state": "APPROVED",
                    "html_url": format!("https://github.com/golang/go/pull/{number}"),
                    "pull_request_url": format!("https://api.github.com/repos/golang/go/pulls/{number}"),
                    "author_association": "MEMBER", "_links": {},
                    "submitted_at": rfc3339(created + 3_600),
                    "commit_id": "6e5df99e93230516fdd46108f7673b02f96a27ff"
                })],
            );
        }
        repo.comments.insert(
            number,
            (1..=2)
                .map(|k| {
                    let at = rfc3339(created + k * 600);
                    json!({
                        "url": format!("https://api.github.com/repos/golang/go/issues/comments/{}", number * 10 + k),
                        "id": number * 10 + k, "node_id": "MDEyOklzc3VlQ29tbWVudA",
                        "user": user((number + k) % USERS), "created_at": at, "updated_at": at,
                        "author_association": "MEMBER",
                        "body": format!("Comment {k} on issue {number}: this looks like a bug in the runtime.")
                    })
                })
                .collect(),
        );
        let event = |k: i64, kind: &str, extra: Value| {
            let mut e = json!({
                "id": number * 10 + k, "node_id": "MDEyOkxhYmVsZWRFdmVudA",
                "url": format!("https://api.github.com/repos/golang/go/issues/events/{}", number * 10 + k),
                "actor": user((number + 3) % USERS), "event": kind,
                "commit_id": null, "commit_url": null, "created_at": rfc3339(created + k * 60)
            });
            if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
                e.extend(extra.clone());
            }
            e
        };
        repo.events.insert(
            number,
            vec![vec![
                event(1, "labeled", json!({"label": {"name": format!("label-{}", number % LABELS), "color": "ededed"}})),
                event(2, "milestoned", json!({"milestone": {"title": "Go1.15"}})),
                event(3, "subscribed", json!({})),
            ]],
        );
        repo.issues.push(issue);
    }
    repo
}

/// Webhook to appended: maintnerd's syncers run as in production (a 1-hour
/// poll, so only wake-ups explain a fast sync), following an in-process
/// pubsubhelper. Each round renames an issue on the fake, posts a signed
/// `issues` webhook for it, and times until the corpus shows the new title
/// (appended, durable and folded). `github_rate` is the syncers' shared
/// request limit (10/s by default, as Go's; 0 is unlimited); rounds are
/// numbered from `first_round` so each run renames to new titles.
#[allow(clippy::too_many_arguments)]
fn webhook_latency(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    fake: &FakeGitHub,
    source: &GitHubSource,
    dir: &std::path::Path,
    n: i64,
    github_rate: f64,
    first_round: usize,
) {
    const SECRET: &str = "bench-webhook-secret";
    const ROUNDS: usize = 30;
    let mut helper_config = pubsubhelper::Config::new("127.0.0.1:0".parse().expect("addr"));
    helper_config.webhook_secret = Some(Secret::new(SECRET.into()));
    let helper = rt
        .block_on(pubsubhelper::Server::start(helper_config))
        .expect("pubsubhelper");
    let mut sources = ingest::config::Config::default();
    sources.github.push(source.clone());
    sources.pubsub = Some(ingest::config::PubsubSource {
        url: format!("http://{}", helper.addr()),
    });
    sources.poll.github = 3_600;
    sources.github_rate = github_rate;
    let sink = server.sink();
    let tasks = rt.block_on(async {
        ingest::run::Ingest::new(sources, dir.join("repos"), sink.clone())
            .expect("ingest")
            .spawn()
    });
    let mut latencies = Vec::new();
    for round in first_round..=first_round + ROUNDS {
        let number = 1 + (round as i64 * 37) % n.max(1);
        let number = if number % 997 == 0 {
            number + 1
        } else {
            number
        };
        let title = format!("renamed in round {round}");
        let updated = rfc3339(EPOCH + n * 60 + 10 * 86_400 + round as i64 * 60);
        fake.edit(|repo| {
            for issue in &mut repo.issues {
                if issue["number"].as_i64() == Some(number) {
                    issue["title"] = Value::from(title.clone());
                    issue["updated_at"] = Value::from(updated.clone());
                }
            }
        });
        let body = json!({
            "action": "edited",
            "issue": {"number": number},
            "repository": {"full_name": format!("{OWNER}/{REPO}")},
        })
        .to_string();
        let started = Instant::now();
        post_webhook(helper.addr(), SECRET, &body);
        rt.block_on(async {
            loop {
                let mut changed = server.log().watch();
                changed.borrow_and_update();
                let end = server.log().end();
                sink.wait_folded(end).await.expect("corpus");
                let shows = sink
                    .read(|c| {
                        c.github()
                            .repo(OWNER, REPO)
                            .and_then(|r| r.issue(number as i32))
                            .is_some_and(|i| i.title() == title)
                    })
                    .expect("corpus");
                if shows {
                    break;
                }
                changed.changed().await.expect("log open");
            }
        });
        // The first round warms up (the syncer's first pass may still be running).
        if round > first_round {
            latencies.push(started.elapsed());
        }
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "webhook to appended and folded ({} rounds, poll 1 h, github_rate {github_rate}/s{}): p50 {:.1?} p90 {:.1?} max {:.1?}",
        latencies.len(),
        if github_rate > 0.0 {
            ""
        } else {
            " = unlimited"
        },
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
    drop(tasks);
    rt.block_on(helper.shutdown())
        .expect("pubsubhelper shutdown");
}

/// POSTs a signed GitHub `issues` delivery and checks it was accepted.
fn post_webhook(addr: std::net::SocketAddr, secret: &str, body: &str) {
    use std::io::{Read as _, Write as _};
    let sig = pubsubhelper::signature(secret.as_bytes(), body.as_bytes());
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    let request = format!(
        "POST /github-webhook HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: issues\r\n\
         X-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

fn main() {
    let n: i64 = std::env::var("ALMANAC_GH_ISSUES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");

    let started = Instant::now();
    let repo = generate(n);
    let issues = repo.issues.len();
    println!(
        "== GitHub sync: {issues} issues ({} pull requests), {n} numbers, generated in {:.2?}",
        repo.reviews.len(),
        started.elapsed()
    );

    let mut server = rt
        .block_on(Server::start(Config::new(
            dir.path().to_owned(),
            "127.0.0.1:0".parse().expect("addr"),
        )))
        .unwrap_or_else(|e| panic!("start maintnerd: {e:#}"));
    rt.block_on(server.corpus_ready());
    let sink = server.sink();
    let fake = rt.block_on(FakeGitHub::start(repo));
    let source = GitHubSource {
        repo: format!("{OWNER}/{REPO}"),
        token_file: None,
        token_env: None,
        api_url: fake.url(),
        token: None,
    };
    let client = rt
        .block_on(async { GitHubClient::new(&source.api_url, None, ClientOptions::default()) })
        .expect("client");

    let started = Instant::now();
    let first = rt
        .block_on(sync_repo(&client, &sink, &source, false))
        .expect("initial sync");
    let wall = started.elapsed();
    let appended = server.log().end().0;
    println!(
        "initial sync: {:.2?}, {} requests ({:.0}/s), {} answered 304, {} mutations, {:.1} MB appended ({:.1} MB/s)",
        wall,
        first.requests,
        first.requests as f64 / wall.as_secs_f64(),
        first.not_modified,
        first.mutations,
        appended as f64 / 1e6,
        appended as f64 / 1e6 / wall.as_secs_f64(),
    );

    let started = Instant::now();
    let second = rt
        .block_on(sync_repo(&client, &sink, &source, false))
        .expect("incremental sync");
    let wall = started.elapsed();
    println!(
        "incremental sync, nothing new: {:.2?}, {} requests, {} answered 304, {} mutations, {} bytes appended",
        wall,
        second.requests,
        second.not_modified,
        second.mutations,
        server.log().end().0 - appended,
    );
    assert_eq!(
        second.mutations, 0,
        "an unchanged repository appends nothing"
    );

    // With Go's default request limit, then without one.
    webhook_latency(&rt, &server, &fake, &source, dir.path(), n, 10.0, 0);
    webhook_latency(&rt, &server, &fake, &source, dir.path(), n, 0.0, 100);

    println!("peak RSS: {:.0} MiB", common::peak_rss_mib());
    rt.block_on(server.shutdown()).expect("shutdown");
}

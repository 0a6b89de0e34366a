//! pubsubhelper over real sockets on 127.0.0.1: signed GitHub and Gerrit
//! deliveries (and every way one is refused), `/waitevent` and `/recent` as
//! Go serves them, and maintnerd's follower waking the named repository.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{HttpResponse, exchange, runtime};
use almanac_services::ingest::config::Secret;
use almanac_services::ingest::pubsub::{Wakeups, event_topic, follow};
use almanac_services::pubsubhelper::{Config, Event, MAX_BODY, Server, Time3339, signature};

const SECRET: &str = "webhook-secret-for-tests";
const GERRIT_SECRET: &str = "gerrit-secret-for-tests";
const GERRIT_URL: &str = "https://go-review.googlesource.com";

fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    exchange(addr, "GET", path, &[], b"", true)
}

fn post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    exchange(addr, "POST", path, headers, body, true)
}

/// A GitHub delivery signed with the test secret.
fn github_webhook(addr: SocketAddr, body: &[u8], delivery: Option<&str>) -> HttpResponse {
    let sig = signature(SECRET.as_bytes(), body);
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "issues"),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    if let Some(id) = delivery {
        headers.push(("X-GitHub-Delivery", id));
    }
    post(addr, "/github-webhook", &headers, body)
}

/// A Gerrit event signed with `secret`.
fn gerrit_event(addr: SocketAddr, secret: &str, body: &Value) -> HttpResponse {
    let body = body.to_string();
    let sig = signature(secret.as_bytes(), body.as_bytes());
    post(
        addr,
        "/gerrit-event",
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", &sig),
        ],
        body.as_bytes(),
    )
}

fn issue_payload(repo: &str, number: i64) -> String {
    json!({
        "action": "opened",
        "issue": {"number": number, "title": "x: something broke", "user": {"login": "gopher"}},
        "repository": {"full_name": repo, "private": false},
        "sender": {"login": "gopher"},
    })
    .to_string()
}

/// `/recent` as parsed events.
fn recent(addr: SocketAddr, query: &str) -> Vec<Value> {
    let r = get(addr, &format!("/recent{query}"));
    assert_eq!(r.status, 200, "{}", r.text());
    match r.json() {
        Value::Array(events) => events,
        other => panic!("not an array: {other}"),
    }
}

fn issue_numbers(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["GitHub"]["IssueNumber"].as_i64().expect("an issue event"))
        .collect()
}

/// An object's keys, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn metric(addr: SocketAddr, line_prefix: &str) -> String {
    let text = get(addr, "/metrics").text();
    text.lines()
        .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
        .map(|l| l[line_prefix.len()..].trim().to_owned())
        .unwrap_or_else(|| panic!("no {line_prefix} in\n{text}"))
}

fn config() -> Config {
    let mut c = Config::new("127.0.0.1:0".parse().expect("addr"));
    c.webhook_secret = Some(Secret::new(SECRET.to_owned()));
    c.gerrit_secret = Some(Secret::new(GERRIT_SECRET.to_owned()));
    c.gerrit_url = Some(GERRIT_URL.to_owned());
    c
}

fn start(rt: &tokio::runtime::Runtime, config: Config) -> Server {
    rt.block_on(Server::start(config))
        .unwrap_or_else(|e| panic!("start: {e:#}"))
}

/// Waits until `n` long-polls are subscribed (the gauge rises only after
/// the buffer was checked and the waiter subscribed, so a publish from now
/// on reaches them).
fn wait_for_waiters(server: &Server, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metrics().waiters.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "no long-poll waiting after a minute"
        );
        // A short nap, not a spin: the server needs the cores.
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn signatures_gate_what_is_published() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();
    let body = issue_payload("owner/repo", 7);

    let missing = post(
        addr,
        "/github-webhook",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(missing.status, 401, "{}", missing.text());
    assert!(missing.text().contains("X-Hub-Signature-256"));
    let wrong_secret = signature(b"not the secret", body.as_bytes());
    let other_body = signature(SECRET.as_bytes(), b"{}");
    for sig in [
        wrong_secret.as_str(),
        other_body.as_str(),
        "sha256=not-hex",
        "sha256=",
        "0123abcd",
    ] {
        let r = post(
            addr,
            "/github-webhook",
            &[("X-Hub-Signature-256", sig)],
            body.as_bytes(),
        );
        assert_eq!(r.status, 401, "{sig}: {}", r.text());
    }
    // Go's old header with SHA-1 is not accepted.
    let r = post(
        addr,
        "/github-webhook",
        &[(
            "X-Hub-Signature",
            "sha1=0123456789abcdef0123456789abcdef01234567",
        )],
        body.as_bytes(),
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        recent(addr, ""),
        Vec::<Value>::new(),
        "nothing refused is recorded"
    );

    let good = github_webhook(addr, body.as_bytes(), Some("delivery-1"));
    assert_eq!(good.status, 200, "{}", good.text());
    assert!(good.body.is_empty());
    // Go's header name carrying a SHA-256 signature is accepted too, and so
    // is GitHub's form encoding.
    let pr = json!({"action": "closed", "repository": {"full_name": "owner/repo"},
                    "pull_request": {"number": 8}})
    .to_string();
    let form = format!(
        "payload={}",
        pr.bytes()
            .map(|b| if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            })
            .collect::<String>()
    );
    let sig = signature(SECRET.as_bytes(), form.as_bytes());
    let r = post(
        addr,
        "/github-webhook",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature", &sig),
        ],
        form.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let events = recent(addr, "");
    assert_eq!(events.len(), 2);
    assert_eq!(keys(&events[1]), vec!["GitHub", "Time"]);
    assert_eq!(
        events[1]["GitHub"],
        json!({"Action": "opened", "RepoOwner": "owner", "Repo": "repo", "IssueNumber": 7})
    );
    assert_eq!(
        events[0]["GitHub"],
        json!({"Action": "closed", "RepoOwner": "owner", "Repo": "repo", "PullRequestNumber": 8})
    );
    assert_eq!(
        metric(
            addr,
            "almanac_pubsub_deliveries_rejected_total{reason=\"signature\"}"
        ),
        "7"
    );
    assert_eq!(
        metric(
            addr,
            "almanac_pubsub_deliveries_accepted_total{source=\"github\"}"
        ),
        "2"
    );
    assert_eq!(metric(addr, "almanac_pubsub_events_published_total"), "2");
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn a_replayed_delivery_is_accepted_but_published_once() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();
    let first = issue_payload("owner/repo", 1);
    for _ in 0..2 {
        let r = github_webhook(
            addr,
            first.as_bytes(),
            Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = github_webhook(
        addr,
        issue_payload("owner/repo", 2).as_bytes(),
        Some("another-delivery"),
    );
    assert_eq!(r.status, 200);
    // Without a delivery id there is nothing to compare: published again.
    let r = github_webhook(addr, first.as_bytes(), None);
    assert_eq!(r.status, 200);
    assert_eq!(issue_numbers(&recent(addr, "")), vec![1, 2, 1]);
    assert_eq!(
        metric(addr, "almanac_pubsub_deliveries_replayed_total"),
        "1"
    );
    // A ping (no issue, no pull request) is accepted and not published.
    let ping = json!({"zen": "Design for failure.", "hook_id": 1, "repository": {"full_name": "owner/repo"}});
    let r = github_webhook(addr, ping.to_string().as_bytes(), Some("ping-1"));
    assert_eq!(r.status, 200);
    assert_eq!(recent(addr, "").len(), 3);
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn oversized_and_malformed_bodies_are_refused() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();

    // Exactly the limit is accepted (a payload padded with whitespace).
    let mut exact = issue_payload("owner/repo", 1).into_bytes();
    exact.resize(MAX_BODY, b' ');
    let r = github_webhook(addr, &exact, None);
    assert_eq!(r.status, 200, "{}", r.text());
    // One byte more is not, signature or not.
    let mut over = issue_payload("owner/repo", 2).into_bytes();
    over.resize(MAX_BODY + 1, b' ');
    let r = github_webhook(addr, &over, None);
    assert_eq!(r.status, 413, "{}", r.text());
    // A client that asks before sending is told at once.
    let r = exchange(
        addr,
        "POST",
        "/github-webhook",
        &[
            ("Expect", "100-continue"),
            ("X-Hub-Signature-256", "sha256=00"),
        ],
        &over,
        false,
    );
    assert_eq!(r.status, 413, "{}", r.text());

    let malformed: [&[u8]; 4] = [
        b"{\"action\": \"opened\", \"issue\": ",
        b"not json at all",
        br#"{"repository": {"full_name": "owner/repo"}, "issue": {"number": "seven"}}"#,
        b"",
    ];
    for bad in malformed {
        let r = github_webhook(addr, bad, Some("malformed"));
        assert_eq!(
            r.status,
            400,
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            r.text()
        );
    }
    // The malformed deliveries' id was not recorded: a good delivery with it
    // is published.
    let r = github_webhook(
        addr,
        issue_payload("owner/repo", 3).as_bytes(),
        Some("malformed"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(issue_numbers(&recent(addr, "")), vec![3, 1]);
    assert_eq!(
        metric(
            addr,
            "almanac_pubsub_deliveries_rejected_total{reason=\"too_large\"}"
        ),
        "2"
    );
    assert_eq!(
        metric(
            addr,
            "almanac_pubsub_deliveries_rejected_total{reason=\"malformed\"}"
        ),
        "4"
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn without_secrets_every_delivery_is_refused() {
    let rt = runtime();
    let server = start(&rt, Config::new("127.0.0.1:0".parse().expect("addr")));
    let addr = server.addr();
    let body = issue_payload("owner/repo", 1);
    let r = github_webhook(addr, body.as_bytes(), None);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = gerrit_event(
        addr,
        GERRIT_SECRET,
        &json!({"type": "ref-updated",
        "refUpdate": {"project": "go", "refName": "refs/heads/master", "newRev": "ab"}}),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(recent(addr, "").is_empty());
    assert_eq!(
        metric(
            addr,
            "almanac_pubsub_deliveries_rejected_total{reason=\"unconfigured\"}"
        ),
        "2"
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn waitevent_answers_from_the_buffer_then_times_out() {
    let rt = runtime();
    let mut c = config();
    c.long_poll = Duration::from_millis(200);
    let server = start(&rt, c);
    let addr = server.addr();
    for n in [1, 2] {
        let r = github_webhook(addr, issue_payload("owner/repo", n).as_bytes(), None);
        assert_eq!(r.status, 200);
    }

    // The oldest event strictly after `after`, at once.
    let first = get(addr, "/waitevent?after=2000-01-01T00:00:00Z");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert!(
        first.text().starts_with("{\n\t\"Time\": \""),
        "{}",
        first.text()
    );
    let first = first.json();
    assert_eq!(first["GitHub"]["IssueNumber"], 1);
    let t1 = first["Time"].as_str().expect("Time").to_owned();
    // Resuming from an event's Time gives the next one (escaped or not).
    let second = get(
        addr,
        &format!("/waitevent?after={}", t1.replace(':', "%3A")),
    )
    .json();
    assert_eq!(second["GitHub"]["IssueNumber"], 2);
    let t2 = second["Time"].as_str().expect("Time").to_owned();
    assert!(Time3339::parse(&t2).expect("t2") > Time3339::parse(&t1).expect("t1"));

    // Nothing after the newest: the long-poll times out.
    let timeout = get(addr, &format!("/waitevent?after={t2}"));
    assert_eq!(timeout.status, 200);
    let timeout = timeout.json();
    assert_eq!(keys(&timeout), vec!["LongPollTimeout", "Time"]);
    assert_eq!(timeout["LongPollTimeout"], true);
    let t3 = Time3339::parse(timeout["Time"].as_str().expect("Time")).expect("t3");
    assert!(t3 > Time3339::parse(&t2).expect("t2"));
    assert_eq!(metric(addr, "almanac_pubsub_long_poll_timeouts_total"), "1");

    let r = post(addr, "/waitevent", &[], b"");
    assert_eq!(r.status, 400);
    assert_eq!(r.text(), "requires GET\n");
    for bad in ["yesterday", "2017-04-05", "2017-04-05T18:43:09+02:00"] {
        // The last is valid RFC 3339, but an unescaped `+` is a space.
        let r = get(addr, &format!("/waitevent?after={bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let r = get(addr, &format!("/recent?after={bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn a_long_poll_is_woken_by_the_next_publish() {
    let rt = runtime();
    // Go's 30-second long-poll: only a publish can answer in time.
    let server = start(&rt, config());
    let addr = server.addr();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || get(addr, "/waitevent"));
    wait_for_waiters(&server, 1);
    let r = github_webhook(addr, issue_payload("owner/repo", 9).as_bytes(), None);
    assert_eq!(r.status, 200);
    let woken = waiter.join().expect("waiter");
    assert_eq!(woken.status, 200);
    let woken = woken.json();
    assert_eq!(woken.get("LongPollTimeout"), None, "{woken}");
    assert_eq!(woken["GitHub"]["IssueNumber"], 9);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(server.metrics().waiters.load(Ordering::SeqCst), 0);
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn recent_lists_newest_first() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();
    let empty = get(addr, "/recent");
    assert_eq!(empty.text(), "[\n\n]\n");
    assert_eq!(
        empty.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    for n in [1, 2, 3] {
        let r = github_webhook(addr, issue_payload("owner/repo", n).as_bytes(), None);
        assert_eq!(r.status, 200);
    }
    let all = get(addr, "/recent");
    assert!(all.text().starts_with("[\n{\n\t\"Time\""), "{}", all.text());
    assert!(all.text().ends_with("}\n]\n"), "{}", all.text());
    let events = recent(addr, "");
    assert_eq!(issue_numbers(&events), vec![3, 2, 1]);
    // `after` is inclusive here (Go skips only events before it).
    let t2 = events[1]["Time"].as_str().expect("Time");
    assert_eq!(
        issue_numbers(&recent(addr, &format!("?after={t2}"))),
        vec![3, 2]
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn gerrit_events_are_signed_stream_events_json() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();
    let created = json!({
        "type": "patchset-created",
        "change": {"project": "net", "branch": "master", "number": 39551,
                   "url": "https://go-review.googlesource.com/c/net/+/39551",
                   "owner": {"name": "Gopher"}},
        "patchSet": {"number": 1, "revision": "0123abcd", "ref": "refs/changes/51/39551/1"},
        "eventCreatedOn": 1491417789,
    });
    let r = gerrit_event(addr, SECRET, &created);
    assert_eq!(
        r.status, 401,
        "the GitHub secret does not sign Gerrit events"
    );
    let r = gerrit_event(addr, GERRIT_SECRET, &created);
    assert_eq!(r.status, 200, "{}", r.text());
    let pushed = json!({"type": "ref-updated",
        "refUpdate": {"oldRev": "aa", "newRev": "bb", "refName": "refs/heads/master", "project": "go"}});
    assert_eq!(gerrit_event(addr, GERRIT_SECRET, &pushed).status, 200);
    let other = json!({"type": "project-created", "projectName": "x"});
    assert_eq!(gerrit_event(addr, GERRIT_SECRET, &other).status, 200);
    let r = post(
        addr,
        "/gerrit-event",
        &[(
            "X-Hub-Signature-256",
            &signature(GERRIT_SECRET.as_bytes(), b"{nope"),
        )],
        b"{nope",
    );
    assert_eq!(r.status, 400);

    let events = recent(addr, "");
    assert_eq!(events.len(), 2);
    assert_eq!(keys(&events[1]), vec!["Gerrit", "Time"]);
    assert_eq!(
        events[1]["Gerrit"],
        json!({"URL": "https://go-review.googlesource.com/c/net/+/39551", "Project": "net",
               "CommitHash": "0123abcd", "ChangeNumber": 39551})
    );
    assert_eq!(
        events[0]["Gerrit"],
        json!({"URL": GERRIT_URL, "Project": "go", "CommitHash": "bb"})
    );
    let topics: Vec<Option<String>> = events
        .iter()
        .map(|e| event_topic(&serde_json::from_value::<Event>(e.clone()).expect("an Event")))
        .collect();
    assert_eq!(
        topics,
        vec![
            Some("gerrit:go.googlesource.com/go".to_owned()),
            Some("gerrit:go.googlesource.com/net".to_owned()),
        ]
    );
    assert_eq!(
        metric(
            addr,
            "almanac_pubsub_deliveries_accepted_total{source=\"gerrit\"}"
        ),
        "3"
    );
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn home_page_metrics_and_unknown_paths() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();
    let home = get(addr, "/");
    assert_eq!(home.status, 200);
    assert!(home.text().contains("/waitevent"));
    for path in ["/nope", "/waitevent/x", "/github-webhook/"] {
        let r = get(addr, path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.text(), "404 page not found\n");
    }
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    for name in [
        "almanac_pubsub_deliveries_accepted_total",
        "almanac_pubsub_deliveries_rejected_total",
        "almanac_pubsub_events_published_total",
        "almanac_pubsub_waiters",
    ] {
        assert!(
            metrics.text().contains(&format!("# TYPE {name} ")),
            "{name}"
        );
    }
    rt.block_on(server.shutdown()).expect("shutdown");
}

#[test]
fn the_follower_wakes_the_named_repository() {
    let rt = runtime();
    let server = start(&rt, config());
    let addr = server.addr();
    let wakeups = Arc::new(Wakeups::new());
    let repo = wakeups.topic("github:owner/repo");
    let other = wakeups.topic("github:owner/other");
    let net = wakeups.topic("gerrit:go.googlesource.com/net");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let follower = rt.spawn(follow(
        format!("http://{addr}/"),
        wakeups.clone(),
        move || {
            counter.fetch_add(1, Ordering::SeqCst);
        },
        async move {
            let _ = stopped.await;
        },
    ));
    // The follower's first long-poll starts from "now": publish only once
    // it waits.
    wait_for_waiters(&server, 1);
    let r = github_webhook(addr, issue_payload("owner/repo", 5).as_bytes(), Some("d-5"));
    assert_eq!(r.status, 200);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), repo.notified()).await })
        .expect("owner/repo woken");

    // Published while the follower reconnects: it resumes from the last
    // Time, so this one is not missed either.
    let created = json!({"type": "comment-added",
        "change": {"project": "net", "number": 7, "url": "https://go-review.googlesource.com/c/net/+/7"},
        "patchSet": {"number": 1, "revision": "cafe"}});
    assert_eq!(gerrit_event(addr, GERRIT_SECRET, &created).status, 200);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), net.notified()).await })
        .expect("gerrit net woken");

    let other_woken =
        rt.block_on(async { tokio::time::timeout(Duration::ZERO, other.notified()).await });
    assert!(other_woken.is_err(), "owner/other had no event");

    stop.send(()).expect("follower running");
    rt.block_on(follower)
        .expect("the follower ends when cancelled");
    assert_eq!(received.load(Ordering::SeqCst), 2, "two events received");
    rt.block_on(server.shutdown()).expect("shutdown");
}

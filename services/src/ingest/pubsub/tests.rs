//! Unit tests: topics from events, and wake-ups kept while a syncer is busy.

use super::*;
use crate::pubsubhelper::event::{GerritEvent, GitHubEvent};

#[test]
fn gerrit_topics_name_the_git_host() {
    let cases = [
        (
            "https://go-review.googlesource.com/39551",
            "net",
            Some("gerrit:go.googlesource.com/net"),
        ),
        (
            "https://go-review.googlesource.com/c/go/+/1",
            "go",
            Some("gerrit:go.googlesource.com/go"),
        ),
        (
            "https://gerrit.example.com/c/foo/+/1",
            "foo",
            Some("gerrit:gerrit.example.com/foo"),
        ),
        (
            "http://127.0.0.1:8080/c/foo/+/1",
            "foo",
            Some("gerrit:127.0.0.1:8080/foo"),
        ),
        ("", "go", None),
        ("not a url", "go", None),
    ];
    for (url, project, want) in cases {
        assert_eq!(gerrit_topic(url, project).as_deref(), want, "{url}");
    }
}

#[test]
fn events_map_to_topics() {
    let gh = Event::github(GitHubEvent {
        action: "opened".into(),
        repo_owner: "golang".into(),
        repo: "go".into(),
        issue_number: 1,
        pull_request_number: 0,
    });
    assert_eq!(event_topic(&gh).as_deref(), Some("github:golang/go"));
    let g = Event::gerrit(GerritEvent {
        url: "https://go-review.googlesource.com/39551".into(),
        project: "net".into(),
        commit_hash: String::new(),
        change_number: 39551,
    });
    assert_eq!(
        event_topic(&g).as_deref(),
        Some("gerrit:go.googlesource.com/net")
    );
    assert_eq!(
        event_topic(&Event::long_poll_timeout(Time3339::now())),
        None
    );
}

#[test]
fn a_wake_up_while_busy_is_kept_once() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let wakeups = Wakeups::new();
    assert!(!wakeups.fire("github:a/b"), "nobody follows it yet");
    let topic = wakeups.topic("github:a/b");
    assert!(Arc::ptr_eq(&topic, &wakeups.topic("github:a/b")));
    // Two fires while the syncer is busy leave one permit.
    assert!(wakeups.fire("github:a/b"));
    assert!(wakeups.fire("github:a/b"));
    rt.block_on(async {
        let first = tokio::time::timeout(Duration::ZERO, topic.notified()).await;
        assert!(first.is_ok(), "the kept wake-up");
        let second = tokio::time::timeout(Duration::ZERO, topic.notified()).await;
        assert!(second.is_err(), "only one is kept");
    });
}

#[test]
fn after_is_escaped_for_the_query() {
    let client = Client::new("http://127.0.0.1:8021/").expect("client");
    assert_eq!(client.wait_url(None), "http://127.0.0.1:8021/waitevent");
    let t = Time3339::parse("2017-04-05T18:43:09.5Z").expect("time");
    assert_eq!(
        client.wait_url(Some(t)),
        "http://127.0.0.1:8021/waitevent?after=2017-04-05T18%3A43%3A09.5Z"
    );
    assert!(Client::new("ftp://example.com").is_err());
}

//! Unit tests: Go's time and JSON shapes, the buffer rule, signatures and
//! payload mapping.

use chrono::{DateTime, TimeDelta, Utc};

use super::buffer::{Buffer, Next};
use super::event::{Event, GerritEvent, GitHubEvent, Time3339};
use super::webhook::{GerritPayload, GitHubPayload, signature, verify};
use super::{KEEP_MIN, form_value};

fn at(secs: i64, nanos: u32) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, nanos).expect("in range")
}

#[test]
fn times_print_as_go_rfc3339nano() {
    // 2017-04-05T18:43:09Z.
    let cases = [
        (0, "2017-04-05T18:43:09Z"),
        (123_450_000, "2017-04-05T18:43:09.12345Z"),
        (1, "2017-04-05T18:43:09.000000001Z"),
        (100_000_000, "2017-04-05T18:43:09.1Z"),
    ];
    for (nanos, want) in cases {
        let t = Time3339(at(1_491_417_789, nanos));
        assert_eq!(t.to_string(), want);
        assert_eq!(Time3339::parse(want).expect("parses"), t, "{want}");
    }
    // Other offsets and fraction lengths parse to the same instant.
    assert_eq!(
        Time3339::parse("2017-04-05T20:43:09.5+02:00").expect("parses"),
        Time3339(at(1_491_417_789, 500_000_000))
    );
    assert!(Time3339::parse("2017-04-05 nonsense").is_err());
}

#[test]
fn event_json_has_gos_keys_and_omissions() {
    let mut e = Event::github(GitHubEvent {
        action: "opened".into(),
        repo_owner: "golang".into(),
        repo: "go".into(),
        issue_number: 42,
        pull_request_number: 0,
    });
    e.time = Time3339(at(1_491_417_789, 5));
    assert_eq!(
        e.to_go_json(),
        "{\n\t\"Time\": \"2017-04-05T18:43:09.000000005Z\",\n\t\"GitHub\": {\n\t\t\"Action\": \"opened\",\n\t\t\"RepoOwner\": \"golang\",\n\t\t\"Repo\": \"go\",\n\t\t\"IssueNumber\": 42\n\t}\n}"
    );
    let timeout = Event::long_poll_timeout(Time3339(at(1_491_417_789, 0)));
    assert_eq!(
        timeout.to_go_json(),
        "{\n\t\"Time\": \"2017-04-05T18:43:09Z\",\n\t\"LongPollTimeout\": true\n}"
    );
    let mut g = Event::gerrit(GerritEvent {
        url: "https://go-review.googlesource.com/c/go/+/39551?a=1&b=<2>".into(),
        project: "go".into(),
        commit_hash: "abc".into(),
        change_number: 0,
    });
    g.time = Time3339(at(1_491_417_789, 0));
    let json = g.to_go_json();
    assert!(json.contains("\\u0026b=\\u003c2\\u003e"), "{json}");
    assert!(!json.contains("ChangeNumber"), "{json}");
    // And it reads back, Go's escapes included.
    let back: Event = serde_json::from_str(&json).expect("decodes");
    assert_eq!(back, g);
}

fn github_event(n: i64) -> Event {
    Event::github(GitHubEvent {
        action: "edited".into(),
        repo_owner: "o".into(),
        repo: "r".into(),
        issue_number: n,
        pull_request_number: 0,
    })
}

#[test]
fn the_buffer_trims_old_events_only_past_keep_min() {
    let t0 = at(1_700_000_000, 0);
    let buffer = Buffer::new();
    for n in 0..KEEP_MIN as i64 {
        buffer.publish_at(github_event(n), t0);
    }
    // Exactly KEEP_MIN, however old: nothing is trimmed.
    buffer.publish_at(github_event(1000), t0 + TimeDelta::hours(3));
    // KEEP_MIN + 1 now, so every event older than an hour goes at once
    // (Go's rule: the buffer may drop below KEEP_MIN).
    assert_eq!(buffer.len(), 1);

    let buffer = Buffer::new();
    for n in 0..KEEP_MIN as i64 - 1 {
        buffer.publish_at(github_event(n), t0);
    }
    buffer.publish_at(github_event(1000), t0 + TimeDelta::hours(3));
    assert_eq!(buffer.len(), KEEP_MIN, "at KEEP_MIN nothing is trimmed");
}

#[test]
fn stamps_strictly_increase_and_after_is_strict() {
    let t0 = at(1_700_000_000, 0);
    let buffer = Buffer::new();
    let a = buffer.publish_at(github_event(1), t0);
    // The clock stepped back: still after `a`.
    let b = buffer.publish_at(github_event(2), t0 - TimeDelta::seconds(5));
    assert!(b.time > a.time);
    assert_eq!(b.event.time.0, b.time);
    match buffer.next_after(a.time) {
        Next::Ready(p) => assert_eq!(p.time, b.time),
        Next::Wait(_) => panic!("b is after a"),
    }
    assert!(matches!(buffer.next_after(b.time), Next::Wait(_)));
    // A timeout is stamped after b, and a later publish after the timeout.
    let timeout = buffer.timeout_or_newer(b.time, t0);
    assert!(timeout.event.long_poll_timeout && timeout.time > b.time);
    let c = buffer.publish_at(github_event(3), t0);
    assert!(c.time > timeout.time);
    // A wait that timed out while an event slipped in returns the event.
    let slipped = buffer.timeout_or_newer(b.time, t0);
    assert_eq!(slipped.time, c.time);
    assert!(!slipped.event.long_poll_timeout);
    // /recent: newest first, `after` inclusive.
    let times: Vec<_> = buffer.recent(Some(b.time)).iter().map(|p| p.time).collect();
    assert_eq!(times, vec![c.time, b.time]);
    assert_eq!(buffer.recent(None).len(), 3);
}

#[test]
fn a_waiter_subscribed_before_a_publish_receives_it() {
    let buffer = Buffer::new();
    let Next::Wait(mut rx) = buffer.next_after(at(1_700_000_000, 0)) else {
        panic!("empty buffer");
    };
    let p = buffer.publish(github_event(7));
    let got = rx
        .try_recv()
        .expect("published under the lock it subscribed under");
    assert_eq!(got.time, p.time);
}

#[test]
fn signatures_match_githubs_documented_example() {
    // From GitHub's "Validating webhook deliveries" page.
    let secret = b"It's a Secret to Everybody";
    let body = b"Hello, World!";
    let want = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(signature(secret, body), want);
    assert_eq!(verify(secret, body, want), Ok(()));
    assert_eq!(
        verify(
            secret,
            body,
            &want.to_uppercase().replace("SHA256", "sha256")
        ),
        Ok(())
    );
    assert!(verify(secret, b"Hello, World?", want).is_err());
    assert!(verify(b"another secret", body, want).is_err());
    assert!(verify(secret, body, "sha256=zz").is_err());
    assert!(verify(secret, body, "sha256=757107").is_err());
    assert!(verify(secret, body, "sha1=0123").is_err());
    assert!(verify(secret, body, "").is_err());
}

#[test]
fn form_values_decode_as_go() {
    assert_eq!(
        form_value("x=1&after=2017-04-05T18%3A43%3A09.5Z", "after").as_deref(),
        Some("2017-04-05T18:43:09.5Z")
    );
    // `+` is a space (so an unescaped `+02:00` offset fails to parse, as in Go).
    assert_eq!(form_value("after=a+b", "after").as_deref(), Some("a b"));
    assert_eq!(form_value("after", "after").as_deref(), Some(""));
    assert_eq!(form_value("other=1", "after"), None);
    assert_eq!(form_value("after=1&after=2", "after").as_deref(), Some("1"));
}

fn github(json: &str) -> Option<GitHubEvent> {
    serde_json::from_str::<GitHubPayload>(json)
        .expect("parses")
        .event()
}

#[test]
fn github_payloads_publish_only_issues_and_prs() {
    let issue = github(
        r#"{"action":"labeled","repository":{"full_name":"golang/go","id":1},
            "issue":{"number":12,"title":"x"},"sender":{"login":"gopher"}}"#,
    )
    .expect("an issue event");
    assert_eq!(
        issue,
        GitHubEvent {
            action: "labeled".into(),
            repo_owner: "golang".into(),
            repo: "go".into(),
            issue_number: 12,
            pull_request_number: 0,
        }
    );
    let pr = github(
        r#"{"action":"opened","repository":{"full_name":"a/b"},"pull_request":{"number":3}}"#,
    )
    .expect("a PR event");
    assert_eq!((pr.issue_number, pr.pull_request_number), (0, 3));
    // A ping, a push, a bogus repository name: nothing.
    assert_eq!(
        github(r#"{"zen":"Keep it simple.","hook_id":1,"repository":{"full_name":"a/b"}}"#),
        None
    );
    assert_eq!(
        github(r#"{"ref":"refs/heads/main","repository":{"full_name":"a/b"}}"#),
        None
    );
    assert_eq!(
        github(r#"{"repository":{"full_name":"a/b/c"},"issue":{"number":1}}"#),
        None
    );
    assert_eq!(github(r#"{"issue":{"number":1}}"#), None);
    // Wrong types are malformed, not ignored.
    assert!(serde_json::from_str::<GitHubPayload>(r#"{"issue":{"number":"1"}}"#).is_err());
}

fn gerrit(json: &str, server: Option<&str>) -> Option<GerritEvent> {
    serde_json::from_str::<GerritPayload>(json)
        .expect("parses")
        .event(server)
}

#[test]
fn gerrit_payloads_map_to_gos_gerrit_event() {
    let created = gerrit(
        r#"{"type":"patchset-created","eventCreatedOn":1,
            "change":{"project":"net","branch":"master","number":39551,
                      "url":"https://go-review.googlesource.com/c/net/+/39551"},
            "patchSet":{"number":2,"revision":"0123abcd"}}"#,
        None,
    )
    .expect("a change event");
    assert_eq!(
        created,
        GerritEvent {
            url: "https://go-review.googlesource.com/c/net/+/39551".into(),
            project: "net".into(),
            commit_hash: "0123abcd".into(),
            change_number: 39551,
        }
    );
    // Old Gerrit: the number as a string; no URL, so the configured server's.
    let old = gerrit(
        r#"{"type":"comment-added","change":{"project":"go","number":"7"}}"#,
        Some("https://go-review.googlesource.com/"),
    )
    .expect("a change event");
    assert_eq!(old.url, "https://go-review.googlesource.com/7");
    assert_eq!(old.change_number, 7);
    let merged = gerrit(
        r#"{"type":"change-merged","change":{"project":"go","number":8},"newRev":"feed"}"#,
        None,
    )
    .expect("a change event");
    assert_eq!(merged.commit_hash, "feed");
    let pushed = gerrit(
        r#"{"type":"ref-updated","refUpdate":{"oldRev":"a","newRev":"b","refName":"refs/heads/master","project":"go"}}"#,
        Some("https://go-review.googlesource.com"),
    )
    .expect("a ref update");
    assert_eq!(
        pushed,
        GerritEvent {
            url: "https://go-review.googlesource.com".into(),
            project: "go".into(),
            commit_hash: "b".into(),
            change_number: 0,
        }
    );
    assert_eq!(
        gerrit(r#"{"type":"project-created","projectName":"x"}"#, None),
        None
    );
}

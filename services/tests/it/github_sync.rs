//! The GitHub sync end to end: maintnerd in-process on a temp dir, a fake
//! GitHub API serving real event payloads, and `sync_repo` passes whose
//! appended records, request counts and corpus are checked exactly. A
//! rate limit, a 502 and a missing issue number happen on the way; a second
//! pass over unchanged data is one 304 and appends nothing; an edit appends
//! only what changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use almanac_proto::pb::maintpb::{
    BoolChange, GithubIssueCommentMutation, GithubIssueEvent, GithubIssueMutation, GithubLabel,
    GithubReview, GithubUser, Mutation, StringChange,
};
use almanac_services::ingest::config::GitHubSource;
use almanac_services::ingest::github::{ClientOptions, GitHubClient, PassStats, sync_repo};
use almanac_services::maintnerd::{Config, Server};

use crate::fake_github::{FakeGitHub, FakeRepo};
use crate::support::{logged, runtime};

pub(crate) const OWNER: &str = "gopher";
pub(crate) const REPO: &str = "fake";
/// `FAKE_DATE` as Unix seconds.
const FAKE_DATE_UNIX: i64 = 1_668_499_951;

fn fixture(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/github")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).expect("a JSON array")
}

fn user(login: &str, id: i64) -> Value {
    json!({
        "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "", "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"), "type": "User", "site_admin": false
    })
}

fn label(id: i64, name: &str, color: &str) -> Value {
    json!({
        "id": id, "node_id": format!("MDU6TGFiZWw{id}"),
        "url": format!("https://api.github.com/repos/gopher/fake/labels/{}", name.replace(' ', "%20")),
        "name": name, "color": color, "default": false, "description": null
    })
}

fn milestone(id: i64, number: i64, title: &str, state: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/gopher/fake/milestones/{number}"),
        "html_url": format!("https://github.com/gopher/fake/milestone/{number}"),
        "id": id, "node_id": format!("MDk6TWlsZXN0b25l{id}"), "number": number, "title": title,
        "description": "", "creator": user("gopherbot", 8566911), "open_issues": 3,
        "closed_issues": 1, "state": state, "created_at": "2018-01-05T00:00:00Z",
        "updated_at": "2018-12-01T00:00:00Z", "due_on": null, "closed_at": null
    })
}

/// An issue as the list endpoint returns it; callers set the rest.
fn issue(number: i64, title: &str, author: Value, created: &str, updated: &str) -> Value {
    let base = format!("https://api.github.com/repos/gopher/fake/issues/{number}");
    json!({
        "url": base, "repository_url": "https://api.github.com/repos/gopher/fake",
        "labels_url": format!("{base}/labels{{/name}}"), "comments_url": format!("{base}/comments"),
        "events_url": format!("{base}/events"),
        "html_url": format!("https://github.com/gopher/fake/issues/{number}"),
        "id": 377_000_000 + number, "node_id": format!("MDU6SXNzdWU{number}"),
        "number": number, "title": title, "user": author, "labels": [], "state": "open",
        "locked": false, "assignee": null, "assignees": [], "milestone": null, "comments": 0,
        "created_at": created, "updated_at": updated, "closed_at": null,
        "author_association": "CONTRIBUTOR", "active_lock_reason": null, "body": "",
        "reactions": {"url": format!("{base}/reactions"), "total_count": 0, "+1": 0},
        "timeline_url": format!("{base}/timeline"), "performed_via_github_app": null,
        "state_reason": null
    })
}

fn comment(id: i64, number: i64, author: Value, at: &str, body: &str) -> Value {
    json!({
        "url": format!("https://api.github.com/repos/gopher/fake/issues/comments/{id}"),
        "html_url": format!("https://github.com/gopher/fake/issues/{number}#issuecomment-{id}"),
        "issue_url": format!("https://api.github.com/repos/gopher/fake/issues/{number}"),
        "id": id, "node_id": format!("MDEyOklzc3VlQ29tbWVudD{id}"), "user": author,
        "created_at": at, "updated_at": at, "author_association": "MEMBER", "body": body,
        "reactions": {"total_count": 0}, "performed_via_github_app": null
    })
}

fn review(id: i64, number: i64, author: Value, state: &str, at: &str, body: &str) -> Value {
    let html = format!("https://github.com/gopher/fake/pull/{number}#pullrequestreview-{id}");
    let pr = format!("https://api.github.com/repos/gopher/fake/pulls/{number}");
    json!({
        "id": id, "node_id": format!("MDE3OlB1bGxSZXF1ZXN0UmV2aWV3{id}"), "user": author,
        "body": body, "state": state, "html_url": html, "pull_request_url": pr,
        "author_association": "MEMBER",
        "_links": {"html": {"href": html}, "pull_request": {"href": pr}},
        "submitted_at": at, "commit_id": "6e5df99e93230516fdd46108f7673b02f96a27ff"
    })
}

const DOCUMENTATION: i64 = 150880209;
const HELP_WANTED: i64 = 150880219;
const NEEDS_INVESTIGATION: i64 = 150880243;
const TESTING: i64 = 373401956;
const GO1_12: i64 = 3729394;
const UNPLANNED: i64 = 1383003;

/// Issues 1, 2, 3 (a pull request) and 5; number 4 does not exist.
pub(crate) fn fake_repo() -> FakeRepo {
    let bcmills = || user("bcmills", 5200974);
    let rsc = || user("rsc", 104030);
    let labels = BTreeMap::from([
        (
            DOCUMENTATION,
            label(DOCUMENTATION, "Documentation", "aaffaa"),
        ),
        (HELP_WANTED, label(HELP_WANTED, "help wanted", "fbca04")),
        (
            NEEDS_INVESTIGATION,
            label(NEEDS_INVESTIGATION, "NeedsInvestigation", "ededed"),
        ),
        (TESTING, label(TESTING, "Testing", "aaffaa")),
    ]);
    let go112 = milestone(GO1_12, 74, "Go1.12", "open");
    let unplanned = milestone(UNPLANNED, 30, "Unplanned", "open");

    let mut i1 = issue(
        1,
        "x/build: add OpenBSD 6.4 builder",
        bcmills(),
        "2018-11-02T15:44:38Z",
        "2018-11-02T17:27:53Z",
    );
    i1["body"] = "OpenBSD 6.4 was released on 2018-10-18.".into();
    i1["state"] = "closed".into();
    i1["closed_at"] = "2018-11-02T17:27:53Z".into();
    i1["labels"] = json!([labels[&TESTING], labels[&NEEDS_INVESTIGATION]]);
    i1["milestone"] = go112.clone();

    let mut i2 = issue(
        2,
        "doc: in Go memory model \"threads\" should read \"goroutines\"",
        user("robpike", 4324516),
        "2018-10-22T17:20:31Z",
        "2018-12-11T21:09:39Z",
    );
    i2["body"] = "The memory model says threads where it means goroutines.".into();
    i2["labels"] = json!([labels[&DOCUMENTATION], labels[&NEEDS_INVESTIGATION]]);
    i2["milestone"] = unplanned.clone();
    i2["assignee"] = rsc();
    i2["assignees"] = json!([rsc()]);

    let mut i3 = issue(
        3,
        "net/http: close idle connections on Transport shutdown",
        user("bradfitz", 2621),
        "2018-12-20T09:00:00Z",
        "2018-12-21T10:00:00Z",
    );
    i3["body"] = "Fixes #2.".into();
    i3["state"] = "closed".into();
    i3["closed_at"] = "2018-12-21T10:00:00Z".into();
    i3["locked"] = true.into();
    i3["active_lock_reason"] = "resolved".into();
    i3["pull_request"] = json!({
        "url": "https://api.github.com/repos/gopher/fake/pulls/3",
        "html_url": "https://github.com/gopher/fake/pull/3",
        "diff_url": "https://github.com/gopher/fake/pull/3.diff",
        "patch_url": "https://github.com/gopher/fake/pull/3.patch",
        "merged_at": "2018-12-21T10:00:00Z"
    });

    let mut i5 = issue(
        5,
        "x/build: OpenBSD builders are flaky",
        bcmills(),
        "2018-11-02T18:00:00Z",
        "2019-01-10T00:00:00Z",
    );
    i5["labels"] = json!([labels[&HELP_WANTED]]);
    i5["milestone"] = unplanned.clone();
    i5["assignee"] = bcmills();
    i5["assignees"] = json!([bcmills()]);

    FakeRepo {
        owner: OWNER.into(),
        name: REPO.into(),
        issues: vec![i1, i2, i3, i5],
        comments: BTreeMap::from([
            (
                1,
                vec![
                    comment(
                        435442772,
                        1,
                        user("bradfitz", 2621),
                        "2018-11-02T16:01:02Z",
                        "I can set one up.",
                    ),
                    comment(435450001, 1, bcmills(), "2018-11-02T16:20:00Z", "Thanks."),
                ],
            ),
            (
                2,
                vec![comment(
                    432065031,
                    2,
                    rsc(),
                    "2018-10-22T22:25:24Z",
                    "Sounds right to me.",
                )],
            ),
            (
                3,
                vec![comment(
                    449100001,
                    3,
                    user("gopherbot", 8566911),
                    "2018-12-20T09:05:00Z",
                    "This PR (HEAD: 6e5df99) has been imported to Gerrit for code review.",
                )],
            ),
        ]),
        events: BTreeMap::from([
            (1, vec![fixture("TestParseMultipleGithubEvents.json")]),
            (2, vec![fixture("TestMissingMilestoneEvents.json")]),
            (
                5,
                (1..=4)
                    .map(|p| fixture(&format!("TestParseMultipleGithubEvents_p{p}.json")))
                    .collect(),
            ),
        ]),
        reviews: BTreeMap::from([(
            3,
            vec![
                review(
                    186370001,
                    3,
                    rsc(),
                    "APPROVED",
                    "2018-12-21T09:00:00Z",
                    "LGTM",
                ),
                review(
                    186370002,
                    3,
                    user("ianlancetaylor", 3194333),
                    "CHANGES_REQUESTED",
                    "2018-12-20T12:00:00Z",
                    "Please add a test.",
                ),
            ],
        )]),
        labels: labels.into_values().collect(),
        milestones: vec![go112, unplanned, milestone(3132993, 62, "Go1.11", "closed")],
        // Two per page, so every listing pages with `Link`.
        page_size: 2,
    }
}

/// The key fields of a mutation on one line.
fn summary(m: &Mutation) -> String {
    if let Some(g) = &m.github {
        let labels: Vec<String> = g
            .labels
            .iter()
            .map(|l| format!("{}:{}", l.id, l.name))
            .collect();
        let milestones: Vec<String> = g
            .milestones
            .iter()
            .map(|ms| {
                let closed = ms
                    .closed
                    .map_or(String::new(), |c| format!(":closed={}", c.val));
                format!("{}:{}#{}{closed}", ms.id, ms.title, ms.number)
            })
            .collect();
        return format!(
            "github {}/{} labels=[{}] milestones=[{}]",
            g.owner,
            g.repo,
            labels.join(","),
            milestones.join(",")
        );
    }
    let Some(i) = &m.github_issue else {
        return "other".into();
    };
    assert_eq!((i.owner.as_str(), i.repo.as_str()), (OWNER, REPO));
    let mut parts = vec![format!("#{}", i.number)];
    let mut flag = |on: bool, name: &str| {
        if on {
            parts.push(name.to_owned());
        }
    };
    flag(i.not_exist, "not_exist");
    flag(i.created.is_some(), "created");
    flag(i.updated.is_some(), "updated");
    flag(i.pull_request, "pr");
    if !i.title.is_empty() {
        parts.push(format!("title={:?}", i.title));
    }
    if let Some(c) = i.closed {
        parts.push(format!("closed={}", c.val));
    }
    if i.closed_at.is_some() {
        parts.push("closed_at".into());
    }
    if let Some(l) = i.locked {
        parts.push(format!("locked={}", l.val));
    }
    if i.milestone_id != 0 {
        parts.push(format!("milestone={}", i.milestone_id));
    }
    if i.no_milestone {
        parts.push("no_milestone".into());
    }
    if !i.add_label.is_empty() {
        let ids: Vec<i64> = i.add_label.iter().map(|l| l.id).collect();
        parts.push(format!("labels={ids:?}"));
    }
    if !i.assignees.is_empty() {
        let logins: Vec<&str> = i.assignees.iter().map(|u| u.login.as_str()).collect();
        parts.push(format!("assignees={logins:?}"));
    }
    if !i.comment.is_empty() {
        let ids: Vec<i64> = i.comment.iter().map(|c| c.id).collect();
        parts.push(format!("comments={ids:?}"));
    }
    if i.comment_status.is_some() {
        parts.push("comment_status".into());
    }
    if !i.event.is_empty() {
        parts.push(format!("events={}", i.event.len()));
    }
    if i.event_status.is_some() {
        parts.push("event_status".into());
    }
    if !i.review.is_empty() {
        let states: Vec<&str> = i.review.iter().map(|r| r.state.as_str()).collect();
        parts.push(format!("reviews={states:?}"));
    }
    if i.review_status.is_some() {
        parts.push("review_status".into());
    }
    parts.join(" ")
}

fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp { seconds, nanos: 0 })
}

fn status_at(seconds: i64) -> Option<almanac_proto::pb::maintpb::GithubIssueSyncStatus> {
    Some(almanac_proto::pb::maintpb::GithubIssueSyncStatus {
        server_date: ts(seconds),
    })
}

fn options() -> ClientOptions {
    ClientOptions {
        max_sleep: Duration::from_millis(300),
        first_backoff: Duration::from_millis(20),
        ..ClientOptions::default()
    }
}

#[test]
fn passes_append_what_changed_and_nothing_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let mut server = rt
        .block_on(Server::start(Config::new(
            dir.path().to_owned(),
            "127.0.0.1:0".parse().expect("addr"),
        )))
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    rt.block_on(server.corpus_ready());
    let sink = server.sink();
    let fake = rt.block_on(FakeGitHub::start(fake_repo()));
    fake.fail_once_with_rate_limit("/repos/gopher/fake/labels");
    fake.fail_once_with_bad_gateway("/repos/gopher/fake/issues/2/events");
    let source = GitHubSource {
        repo: format!("{OWNER}/{REPO}"),
        token_file: None,
        token_env: None,
        api_url: fake.url(),
        token: None,
    };
    // octocrab spawns its request buffer, so the client is built inside
    // the runtime.
    let client = rt
        .block_on(async { GitHubClient::new(&source.api_url, None, options()) })
        .expect("client");

    // ---- Pass 1: everything is new. ----
    let stats = rt
        .block_on(sync_repo(&client, &sink, &source, false))
        .expect("first pass");
    let log = logged(&server);
    let summaries: Vec<String> = log.iter().map(summary).collect();
    assert_eq!(
        summaries,
        [
            "github gopher/fake labels=[150880209:Documentation,150880219:help wanted,\
             150880243:NeedsInvestigation,373401956:Testing] \
             milestones=[3729394:Go1.12#74,1383003:Unplanned#30,3132993:Go1.11#62:closed=true]",
            // Issues page 1 (newest first), one append.
            "#5 created updated title=\"x/build: OpenBSD builders are flaky\" closed=false \
             milestone=1383003 labels=[150880219] assignees=[\"bcmills\"]",
            "#3 created updated pr title=\"net/http: close idle connections on Transport shutdown\" \
             closed=true closed_at locked=true no_milestone",
            // Page 2.
            "#2 created updated title=\"doc: in Go memory model \\\"threads\\\" should read \\\"goroutines\\\"\" \
             closed=false milestone=1383003 labels=[150880209, 150880243] assignees=[\"rsc\"]",
            "#1 created updated title=\"x/build: add OpenBSD 6.4 builder\" closed=true closed_at \
             milestone=3729394 labels=[373401956, 150880243]",
            // The gap below the highest number.
            "#4 not_exist",
            "#1 comments=[435442772, 435450001] comment_status",
            "#2 comments=[432065031] comment_status",
            "#3 comments=[449100001] comment_status",
            "#5 comment_status",
            "#1 events=7 event_status",
            "#2 events=11 event_status",
            "#3 event_status",
            "#5 events=7 event_status",
            "#3 reviews=[\"APPROVED\", \"CHANGES_REQUESTED\"] review_status",
        ]
    );
    // Issues: 2 pages; before page 1's changes, milestones (2 pages) and
    // labels (a 403, then 2 pages); before page 2's, both first pages again
    // (304, so nothing more); issue 4 (404). Comments: 4. Events: issue 1,
    // issue 2 (a 502, then 200), issue 3, and 4 pages for issue 5.
    // Reviews: 1.
    assert_eq!(
        stats,
        PassStats {
            requests: 23,
            not_modified: 2,
            mutations: 15
        }
    );

    // A few records in full.
    assert_eq!(
        log[4].github_issue.as_ref().expect("issue"),
        &GithubIssueMutation {
            owner: OWNER.into(),
            repo: REPO.into(),
            number: 1,
            user: Some(GithubUser {
                id: 5200974,
                login: "bcmills".into()
            }),
            created: ts(1_541_173_478),
            updated: ts(1_541_179_673),
            body_change: Some(StringChange {
                val: "OpenBSD 6.4 was released on 2018-10-18.".into()
            }),
            title: "x/build: add OpenBSD 6.4 builder".into(),
            milestone_id: GO1_12,
            milestone_num: 74,
            milestone_title: "Go1.12".into(),
            closed: Some(BoolChange { val: true }),
            closed_at: ts(1_541_179_673),
            add_label: vec![
                GithubLabel {
                    id: TESTING,
                    name: "Testing".into()
                },
                GithubLabel {
                    id: NEEDS_INVESTIGATION,
                    name: "NeedsInvestigation".into()
                },
            ],
            ..GithubIssueMutation::default()
        }
    );
    let comments = log[6].github_issue.as_ref().expect("comments");
    assert_eq!(
        comments.comment[0],
        GithubIssueCommentMutation {
            id: 435442772,
            user: Some(GithubUser {
                id: 2621,
                login: "bradfitz".into()
            }),
            body: "I can set one up.".into(),
            created: ts(1_541_174_462),
            updated: ts(1_541_174_462),
        }
    );
    assert_eq!(comments.comment_status, status_at(FAKE_DATE_UNIX));
    let events = log[10].github_issue.as_ref().expect("events");
    assert_eq!(
        events.event[0],
        GithubIssueEvent {
            id: 1943301510,
            event_type: "labeled".into(),
            actor_id: 5200974,
            created: ts(1_541_174_039),
            label: Some(GithubLabel {
                id: 0,
                name: "Testing".into()
            }),
            ..GithubIssueEvent::default()
        }
    );
    assert_eq!(events.event_status, status_at(FAKE_DATE_UNIX));
    let reviews = log[14].github_issue.as_ref().expect("reviews");
    assert_eq!(
        reviews.review[0],
        GithubReview {
            id: 186370001,
            actor_id: 104030,
            created: ts(1_545_382_800),
            body: "LGTM".into(),
            state: "APPROVED".into(),
            commit_id: "6e5df99e93230516fdd46108f7673b02f96a27ff".into(),
            actor_association: "MEMBER".into(),
            other_json: bytes::Bytes::new(),
        }
    );
    assert!(
        log.iter()
            .filter_map(|m| m.github_issue.as_ref())
            .flat_map(|i| i
                .event
                .iter()
                .map(|e| &e.other_json)
                .chain(i.review.iter().map(|r| &r.other_json)))
            .all(|j| j.is_empty()),
        "real payloads leave nothing unparsed"
    );

    // What the fake saw: our User-Agent, and each fault once, retried.
    let requests = fake.requests();
    assert_eq!(requests.len(), 23);
    assert!(
        requests.iter().all(|r| r.user_agent == "almanac-maintnerd"),
        "{requests:#?}"
    );
    let statuses = |code: u16| {
        requests
            .iter()
            .filter(|r| r.status == code)
            .map(|r| r.path.as_str())
            .collect::<Vec<&str>>()
    };
    assert_eq!(statuses(403), ["/repos/gopher/fake/labels?per_page=100"]);
    assert_eq!(
        statuses(502),
        ["/repos/gopher/fake/issues/2/events?per_page=100&page=1"]
    );
    assert_eq!(statuses(404), ["/repos/gopher/fake/issues/4"]);
    assert_eq!(
        statuses(304),
        [
            "/repos/gopher/fake/milestones?state=all&per_page=100",
            "/repos/gopher/fake/labels?per_page=100"
        ]
    );
    let after_fault = |path: &str| {
        let i = requests
            .iter()
            .position(|r| r.path == path && r.status != 200)
            .expect("the fault");
        (requests[i + 1].path.clone(), requests[i + 1].status)
    };
    assert_eq!(
        after_fault("/repos/gopher/fake/labels?per_page=100"),
        ("/repos/gopher/fake/labels?per_page=100".to_owned(), 200)
    );
    assert_eq!(
        after_fault("/repos/gopher/fake/issues/2/events?per_page=100&page=1"),
        (
            "/repos/gopher/fake/issues/2/events?per_page=100&page=1".to_owned(),
            200
        )
    );
    // Event pages of issue 5 followed `Link`.
    let pages: Vec<&str> = requests
        .iter()
        .filter(|r| r.path.starts_with("/repos/gopher/fake/issues/5/events"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        pages,
        [
            "/repos/gopher/fake/issues/5/events?per_page=100&page=1",
            "/repos/gopher/fake/issues/5/events?per_page=100&page=2",
            "/repos/gopher/fake/issues/5/events?per_page=100&page=3",
            "/repos/gopher/fake/issues/5/events?per_page=100&page=4",
        ]
    );

    // The corpus shows it all.
    let view = sink
        .read(|c| {
            let repo = c.github().repo(OWNER, REPO).expect("the repo");
            let mut labels: Vec<String> = repo.labels().map(|l| l.name().to_owned()).collect();
            labels.sort();
            let issue = |n: i32| repo.issue(n).expect("issue");
            let i1 = issue(1);
            (
                repo.issues().count(),
                issue(4).not_exist(),
                labels,
                repo.milestones().count(),
                i1.title().to_owned(),
                i1.labels().map(|l| l.name().to_owned()).collect::<Vec<_>>(),
                i1.comments()
                    .map(|c| (c.user().map(|u| u.login().to_owned()), c.body().to_owned()))
                    .collect::<Vec<_>>(),
                i1.events()
                    .map(|e| e.event_type().to_owned())
                    .collect::<Vec<_>>(),
                issue(2)
                    .events()
                    .find(|e| e.event_type() == "renamed")
                    .map(|e| e.rename_to().to_owned()),
                issue(3).is_pull_request(),
                issue(3)
                    .reviews()
                    .map(|r| r.state().to_owned())
                    .collect::<Vec<_>>(),
                issue(5)
                    .assignees()
                    .map(|u| u.login().to_owned())
                    .collect::<Vec<_>>(),
            )
        })
        .expect("corpus");
    assert_eq!(view.0, 5);
    assert!(view.1, "issue 4 does not exist");
    assert_eq!(
        view.2,
        [
            "Documentation",
            "NeedsInvestigation",
            "Testing",
            "help wanted"
        ]
    );
    assert_eq!(view.3, 3);
    assert_eq!(view.4, "x/build: add OpenBSD 6.4 builder");
    // Labels by id.
    assert_eq!(view.5, ["NeedsInvestigation", "Testing"]);
    assert_eq!(
        view.6,
        [
            (Some("bradfitz".to_owned()), "I can set one up.".to_owned()),
            (Some("bcmills".to_owned()), "Thanks.".to_owned()),
        ]
    );
    assert_eq!(
        view.7,
        [
            "labeled",
            "labeled",
            "labeled",
            "labeled",
            "labeled",
            "milestoned",
            "closed"
        ]
    );
    assert_eq!(
        view.8.as_deref(),
        Some("doc: in Go memory model \"threads\" should read \"goroutines\"")
    );
    assert!(view.9);
    // By submission time.
    assert_eq!(view.10, ["CHANGES_REQUESTED", "APPROVED"]);
    assert_eq!(view.11, ["bcmills"]);

    // ---- Pass 2: nothing changed. One request, answered 304. ----
    let end = server.log().end();
    let stats = rt
        .block_on(sync_repo(&client, &sink, &source, false))
        .expect("second pass");
    assert_eq!(
        stats,
        PassStats {
            requests: 1,
            not_modified: 1,
            mutations: 0
        }
    );
    assert_eq!(server.log().end(), end, "nothing appended");
    let last = fake.requests().pop().expect("a request");
    assert_eq!(
        last.path,
        "/repos/gopher/fake/issues?state=all&sort=updated&direction=desc&per_page=100"
    );
    assert!(last.if_none_match);
    assert_eq!(last.status, 304);

    // ---- Pass 3: issue 1 renamed and commented on, a week later. ----
    fake.edit(|r| {
        let i1 = r
            .issues
            .iter_mut()
            .find(|i| i["number"] == 1)
            .expect("issue 1");
        i1["title"] = "x/build: add OpenBSD 6.4 and 6.5 builders".into();
        i1["updated_at"] = "2022-11-20T00:00:00Z".into();
        r.comments.get_mut(&1).expect("comments").push(comment(
            436000001,
            1,
            user("rsc", 104030),
            "2022-11-20T00:00:00Z",
            "6.5 is out too.",
        ));
    });
    fake.set_date("Mon, 21 Nov 2022 00:00:00 GMT");
    let stats = rt
        .block_on(sync_repo(&client, &sink, &source, false))
        .expect("third pass");
    let log = logged(&server);
    let summaries: Vec<String> = log[15..].iter().map(summary).collect();
    assert_eq!(
        summaries,
        [
            "#1 updated title=\"x/build: add OpenBSD 6.4 and 6.5 builders\"",
            "#1 comments=[436000001] comment_status",
            // No new event; the watermark moves.
            "#1 event_status",
        ]
    );
    // Issues page 1 (changed: 200) + milestones and labels (304) + page 2
    // (no change, nothing missing: done) + two pages of issue 1's comments
    // (the second by its Link) + its events.
    assert_eq!(
        stats,
        PassStats {
            requests: 7,
            not_modified: 2,
            mutations: 3
        }
    );
    let renamed = log[15].github_issue.as_ref().expect("issue");
    assert_eq!(renamed.updated, ts(1_668_902_400));
    assert!(renamed.body_change.is_none() && renamed.user.is_none());
    let commented = log[16].github_issue.as_ref().expect("comments");
    assert_eq!(commented.comment_status, status_at(1_668_988_800));
    let comment_pages: Vec<String> = fake
        .requests()
        .into_iter()
        .rev()
        .filter(|r| r.path.starts_with("/repos/gopher/fake/issues/1/comments"))
        .take(2)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        comment_pages,
        [
            // Paged by Link, not by `since`: the endpoint lists comments
            // by id, so `since` = the last update could skip a comment.
            "/repos/gopher/fake/issues/1/comments?sort=updated&direction=asc&per_page=100&page=2",
            "/repos/gopher/fake/issues/1/comments?sort=updated&direction=asc&per_page=100",
        ]
    );

    // ---- Pass 4: quiet again; bypassing the cache costs one full page. ----
    let stats = rt
        .block_on(sync_repo(&client, &sink, &source, true))
        .expect("fourth pass");
    assert_eq!(
        stats,
        PassStats {
            requests: 1,
            not_modified: 0,
            mutations: 0
        }
    );
    let last = fake.requests().pop().expect("a request");
    assert!(!last.if_none_match);
    assert_eq!(last.status, 200);

    rt.block_on(server.shutdown()).expect("shutdown");
}

/// A signed webhook makes the syncers fetch at once: maintnerd's syncers
/// run as in production with a one-hour poll, following a pubsubhelper;
/// an issue renamed on the fake shows in the corpus after one webhook, and
/// a webhook with a bad signature wakes nothing.
#[test]
fn a_webhook_syncs_the_named_repository_at_once() {
    use almanac_services::ingest::config::{Config as Sources, PubsubSource, Secret};
    use almanac_services::ingest::run::Ingest;
    use almanac_services::pubsubhelper;

    const SECRET: &str = "webhook-test-secret";
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = runtime();
    let mut server = rt
        .block_on(Server::start(Config::new(
            dir.path().join("log"),
            "127.0.0.1:0".parse().expect("addr"),
        )))
        .unwrap_or_else(|e| panic!("start: {e:#}"));
    rt.block_on(server.corpus_ready());
    let fake = rt.block_on(FakeGitHub::start(fake_repo()));
    let mut helper_config = pubsubhelper::Config::new("127.0.0.1:0".parse().expect("addr"));
    helper_config.webhook_secret = Some(Secret::new(SECRET.into()));
    let helper = rt
        .block_on(pubsubhelper::Server::start(helper_config))
        .expect("pubsubhelper");

    let mut sources = Sources::default();
    sources.github.push(GitHubSource {
        repo: format!("{OWNER}/{REPO}"),
        token_file: None,
        token_env: None,
        api_url: fake.url(),
        token: None,
    });
    sources.pubsub = Some(PubsubSource {
        url: format!("http://{}", helper.addr()),
    });
    sources.poll.github = 3_600;
    let sink = server.sink();
    let syncers = rt.block_on(async {
        Ingest::new(sources, dir.path().join("repos"), sink.clone())
            .expect("ingest")
            .spawn()
    });

    let title_of = |number: i32| {
        sink.read(|c| {
            c.github()
                .repo(OWNER, REPO)
                .and_then(|r| r.issue(number))
                .map(|i| i.title().to_string())
        })
        .expect("corpus")
    };
    // Waits (on appends, not on time) until the corpus shows `want`.
    let wait_for_title = |number: i32, want: &str| {
        rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let mut appended = server.log().watch();
                appended.borrow_and_update();
                sink.wait_folded(server.log().end()).await.expect("fold");
                if title_of(number).as_deref() == Some(want) {
                    return;
                }
                tokio::time::timeout_at(deadline, appended.changed())
                    .await
                    .unwrap_or_else(|_| panic!("issue {number} never became {want:?}"))
                    .expect("log open");
            }
        })
    };
    // The first pass runs at start.
    let original = fake_repo().issues[0]["title"]
        .as_str()
        .expect("title")
        .to_string();
    let number = fake_repo().issues[0]["number"].as_i64().expect("number") as i32;
    wait_for_title(number, &original);

    // Renamed on GitHub; the syncer sleeps for an hour unless woken.
    fake.edit(|repo| {
        for issue in &mut repo.issues {
            if issue["number"].as_i64() == Some(i64::from(number)) {
                issue["title"] = Value::from("renamed by a webhook");
                issue["updated_at"] = Value::from("2022-11-20T00:00:00Z");
            }
        }
    });
    let body = json!({
        "action": "edited",
        "issue": {"number": number},
        "repository": {"full_name": format!("{OWNER}/{REPO}")},
    })
    .to_string();
    // The follower's first long-poll starts from "now": publish only once
    // it waits, or the event predates it and is never seen.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while helper
        .metrics()
        .waiters
        .load(std::sync::atomic::Ordering::SeqCst)
        < 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the syncer's follower never long-polled the helper"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let refused = post_webhook(helper.addr(), "sha256=00", &body);
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let signature = almanac_services::pubsubhelper::signature(SECRET.as_bytes(), body.as_bytes());
    let accepted = post_webhook(helper.addr(), &signature, &body);
    assert!(accepted.starts_with("HTTP/1.1 200"), "{accepted}");
    wait_for_title(number, "renamed by a webhook");

    drop(syncers);
    rt.block_on(helper.shutdown())
        .expect("pubsubhelper shutdown");
    rt.block_on(server.shutdown()).expect("shutdown");
}

/// POSTs a GitHub `issues` delivery with `signature`; returns the raw
/// response.
fn post_webhook(addr: std::net::SocketAddr, signature: &str, body: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let request = format!(
        "POST /github-webhook HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-GitHub-Event: issues\r\n\
         X-Hub-Signature-256: {signature}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("write");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read");
    answer
}

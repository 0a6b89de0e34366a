//! Unit tests of the GitHub differ and payload parsers, on real payloads:
//! every diff is folded into a corpus and diffed again, which must then
//! find nothing.

use super::*;
use almanac_projections::corpus::Corpus;
use almanac_proto::pb::maintpb::{GithubIssueSyncStatus, GithubMutation, Mutation};

const OWNER: &str = "golang";
const REPO: &str = "go";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/github/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn t(text: &str) -> Time {
    parse_rfc3339(text).expect("RFC 3339")
}

fn ts(text: &str) -> Option<prost_types::Timestamp> {
    Some(timestamp(t(text)))
}

fn issue_json() -> Value {
    serde_json::json!({
        "url": "https://api.github.com/repos/golang/go/issues/28566",
        "repository_url": "https://api.github.com/repos/golang/go",
        "labels_url": "https://api.github.com/repos/golang/go/issues/28566/labels{/name}",
        "comments_url": "https://api.github.com/repos/golang/go/issues/28566/comments",
        "events_url": "https://api.github.com/repos/golang/go/issues/28566/events",
        "html_url": "https://github.com/golang/go/issues/28566",
        "id": 377130468,
        "node_id": "MDU6SXNzdWUzNzcxMzA0Njg=",
        "number": 28566,
        "title": "x/build: add OpenBSD 6.4 builder",
        "user": {
            "login": "bcmills", "id": 5200974, "node_id": "MDQ6VXNlcjUyMDA5NzQ=",
            "avatar_url": "https://avatars3.githubusercontent.com/u/5200974?v=4",
            "url": "https://api.github.com/users/bcmills", "type": "User", "site_admin": false
        },
        "labels": [
            {"id": 373401956, "node_id": "MDU6TGFiZWwzNzM0MDE5NTY=",
             "url": "https://api.github.com/repos/golang/go/labels/Testing",
             "name": "Testing", "color": "aaffaa", "default": false},
            {"id": 150880219, "node_id": "MDU6TGFiZWwxNTA4ODAyMTk=",
             "url": "https://api.github.com/repos/golang/go/labels/help%20wanted",
             "name": "help wanted", "color": "fbca04", "default": true}
        ],
        "state": "open",
        "locked": false,
        "assignee": {"login": "bradfitz", "id": 2621},
        "assignees": [{"login": "bradfitz", "id": 2621, "type": "User"}],
        "milestone": {
            "url": "https://api.github.com/repos/golang/go/milestones/74",
            "html_url": "https://github.com/golang/go/milestone/74",
            "id": 3729394, "node_id": "MDk6TWlsZXN0b25lMzcyOTM5NA==", "number": 74,
            "title": "Go1.12", "description": "", "open_issues": 431, "closed_issues": 702,
            "state": "open", "created_at": "2018-09-07T19:33:22Z",
            "updated_at": "2018-11-02T15:53:59Z", "due_on": "2019-02-01T08:00:00Z",
            "closed_at": null
        },
        "comments": 3,
        "created_at": "2018-11-02T15:44:38Z",
        "updated_at": "2018-11-02T15:53:59Z",
        "closed_at": null,
        "author_association": "CONTRIBUTOR",
        "body": "OpenBSD 6.4 was released on 2018-10-18.\r\n\r\nWe should add a builder."
    })
}

fn api(v: &Value) -> ApiIssue {
    serde_json::from_value(v.clone()).expect("issue JSON")
}

fn fold(c: &mut Corpus, m: GithubIssueMutation) {
    c.apply_mutation(&Mutation {
        github_issue: Some(m),
        ..Mutation::default()
    });
}

/// Diffs `v` against an empty state and folds the result.
fn fold_new(c: &mut Corpus, v: &Value) {
    let m = diff_in(c, v).expect("a new issue changes");
    fold(c, m);
}

fn diff_in(c: &Corpus, v: &Value) -> Option<GithubIssueMutation> {
    let a = api(v);
    let have = c.github().repo(OWNER, REPO).and_then(|r| r.issue(a.number));
    diff_issue(OWNER, REPO, have, &a)
}

#[test]
fn times_parse_as_go_rfc3339() {
    assert_eq!(t("2018-11-02T15:53:59Z"), Time::from_unix(1_541_174_039));
    assert_eq!(
        t("2018-11-02T16:53:59+01:00"),
        Time::from_unix(1_541_174_039)
    );
    assert_eq!(
        t("2018-11-02T15:53:59.25Z"),
        Time {
            seconds: 1_541_174_039,
            nanos: 250_000_000
        }
    );
    assert_eq!(parse_rfc3339("Fri, 02 Nov 2018 15:53:59 GMT"), None);
}

#[test]
fn a_new_issue_sends_everything_go_sends() {
    let got = diff_issue(OWNER, REPO, None, &api(&issue_json())).expect("a new issue changes");
    let want = GithubIssueMutation {
        owner: "golang".into(),
        repo: "go".into(),
        number: 28566,
        user: Some(GithubUser {
            id: 5200974,
            login: "bcmills".into(),
        }),
        created: ts("2018-11-02T15:44:38Z"),
        updated: ts("2018-11-02T15:53:59Z"),
        body_change: Some(StringChange {
            val: "OpenBSD 6.4 was released on 2018-10-18.\r\n\r\nWe should add a builder.".into(),
        }),
        title: "x/build: add OpenBSD 6.4 builder".into(),
        milestone_id: 3729394,
        milestone_num: 74,
        milestone_title: "Go1.12".into(),
        assignees: vec![GithubUser {
            id: 2621,
            login: "bradfitz".into(),
        }],
        // Always present on a new issue; `locked` only when true.
        closed: Some(BoolChange { val: false }),
        add_label: vec![
            GithubLabel {
                id: 373401956,
                name: "Testing".into(),
            },
            GithubLabel {
                id: 150880219,
                name: "help wanted".into(),
            },
        ],
        ..GithubIssueMutation::default()
    };
    assert_eq!(got, want);
}

#[test]
fn a_folded_issue_diffs_to_nothing() {
    let mut c = Corpus::new();
    let v = issue_json();
    fold_new(&mut c, &v);
    assert_eq!(diff_in(&c, &v), None);

    // A closed, locked pull request without milestone, labels or body.
    let mut pr = issue_json();
    pr["number"] = 28570.into();
    pr["state"] = "closed".into();
    pr["locked"] = true.into();
    pr["closed_at"] = "2018-11-03T09:00:00Z".into();
    pr["milestone"] = Value::Null;
    pr["labels"] = serde_json::json!([]);
    pr["assignees"] = serde_json::json!([]);
    pr["body"] = Value::Null;
    pr["pull_request"] = serde_json::json!({
        "url": "https://api.github.com/repos/golang/go/pulls/28570",
        "html_url": "https://github.com/golang/go/pull/28570"
    });
    let first = diff_in(&c, &pr).expect("new PR");
    assert!(first.pull_request);
    assert!(first.no_milestone);
    assert_eq!(first.locked, Some(BoolChange { val: true }));
    assert_eq!(first.closed, Some(BoolChange { val: true }));
    assert_eq!(first.closed_at, ts("2018-11-03T09:00:00Z"));
    assert_eq!(first.body_change, Some(StringChange { val: String::new() }));
    fold(&mut c, first);
    assert_eq!(diff_in(&c, &pr), None);
}

#[test]
fn a_changed_issue_sends_only_what_changed() {
    let mut c = Corpus::new();
    let v = issue_json();
    fold_new(&mut c, &v);

    let mut changed = v.clone();
    changed["title"] = "x/build: add OpenBSD 6.4 builders".into();
    changed["updated_at"] = "2018-11-05T10:00:00Z".into();
    changed["state"] = "closed".into();
    changed["closed_at"] = "2018-11-05T10:00:00Z".into();
    changed["milestone"] = Value::Null;
    changed["assignees"] = serde_json::json!([{"login": "ianlancetaylor", "id": 3194333}]);
    changed["labels"] = serde_json::json!([
        {"id": 373401956, "name": "Testing"},
        {"id": 150880243, "name": "NeedsInvestigation"}
    ]);
    changed["user"]["login"] = "bcmills2".into();
    changed["closed_by"] = serde_json::json!({"login": "ianlancetaylor", "id": 3194333});

    let got = diff_in(&c, &changed).expect("changes");
    let want = GithubIssueMutation {
        owner: "golang".into(),
        repo: "go".into(),
        number: 28566,
        updated: ts("2018-11-05T10:00:00Z"),
        user: Some(GithubUser {
            id: 5200974,
            login: "bcmills2".into(),
        }),
        title: "x/build: add OpenBSD 6.4 builders".into(),
        no_milestone: true,
        assignees: vec![GithubUser {
            id: 3194333,
            login: "ianlancetaylor".into(),
        }],
        deleted_assignees: vec![2621],
        closed: Some(BoolChange { val: true }),
        closed_at: ts("2018-11-05T10:00:00Z"),
        closed_by: Some(GithubUser {
            id: 3194333,
            login: "ianlancetaylor".into(),
        }),
        add_label: vec![GithubLabel {
            id: 150880243,
            name: "NeedsInvestigation".into(),
        }],
        remove_label: vec![150880219],
        ..GithubIssueMutation::default()
    };
    assert_eq!(got, want);
    fold(&mut c, got);
    assert_eq!(diff_in(&c, &changed), None);

    // Back to a milestone: id, number and title; an empty title never
    // clears the stored one.
    let mut again = changed.clone();
    again["milestone"] = v["milestone"].clone();
    again["title"] = "".into();
    let got = diff_in(&c, &again).expect("milestone");
    assert_eq!(
        (
            got.milestone_id,
            got.milestone_num,
            got.milestone_title.as_str()
        ),
        (3729394, 74, "Go1.12")
    );
    assert_eq!(got.title, "");
    assert!(!got.no_milestone);
}

#[test]
fn labels_and_milestones_send_new_and_changed_entries() {
    let mut c = Corpus::new();
    c.apply_mutation(&Mutation {
        github: Some(GithubMutation {
            owner: OWNER.into(),
            repo: REPO.into(),
            labels: vec![
                GithubLabel {
                    id: 373401956,
                    name: "Testing".into(),
                },
                GithubLabel {
                    id: 150880219,
                    name: "help-wanted".into(),
                },
            ],
            milestones: vec![GithubMilestone {
                id: 3729394,
                title: "Go1.12".into(),
                number: 74,
                closed: None,
            }],
        }),
        ..Mutation::default()
    });
    let labels: Vec<ApiLabel> = serde_json::from_value(serde_json::json!([
        {"id": 373401956, "node_id": "MDU6TGFiZWwzNzM0MDE5NTY=", "name": "Testing", "color": "aaffaa", "default": false},
        {"id": 150880219, "name": "help wanted", "color": "fbca04", "default": true},
        {"id": 150880243, "name": "NeedsInvestigation", "color": "ededed", "default": false}
    ]))
    .expect("labels");
    let milestones: Vec<ApiMilestone> = serde_json::from_value(serde_json::json!([
        {"id": 3729394, "number": 74, "title": "Go1.12", "state": "closed", "open_issues": 0},
        {"id": 1383003, "number": 30, "title": "Unplanned", "state": "open", "due_on": null}
    ]))
    .expect("milestones");
    let repo = c.github().repo(OWNER, REPO);
    assert_eq!(
        diff_labels(repo, &labels),
        vec![
            GithubLabel {
                id: 150880219,
                name: "help wanted".into()
            },
            GithubLabel {
                id: 150880243,
                name: "NeedsInvestigation".into()
            },
        ]
    );
    assert_eq!(
        diff_milestones(repo, &milestones),
        vec![
            GithubMilestone {
                id: 3729394,
                closed: Some(BoolChange { val: true }),
                ..GithubMilestone::default()
            },
            GithubMilestone {
                id: 1383003,
                title: "Unplanned".into(),
                number: 30,
                closed: None,
            },
        ]
    );
    // Nothing known at all: everything is new.
    assert_eq!(diff_labels(None, &labels).len(), 3);
}

#[test]
fn comments_send_new_whole_and_edits_in_part() {
    let mut c = Corpus::new();
    fold_new(&mut c, &issue_json());
    let page = |body2: &str, updated2: &str| -> Vec<ApiComment> {
        serde_json::from_value(serde_json::json!([
            {
                "url": "https://api.github.com/repos/golang/go/issues/comments/435442772",
                "html_url": "https://github.com/golang/go/issues/28566#issuecomment-435442772",
                "issue_url": "https://api.github.com/repos/golang/go/issues/28566",
                "id": 435442772, "node_id": "MDEyOklzc3VlQ29tbWVudDQzNTQ0Mjc3Mg==",
                "user": {"login": "bradfitz", "id": 2621, "type": "User"},
                "created_at": "2018-11-02T16:01:02Z", "updated_at": "2018-11-02T16:01:02Z",
                "author_association": "CONTRIBUTOR",
                "body": "I can set one up."
            },
            {
                "id": 435450001,
                "user": {"login": "bcmills", "id": 5200974},
                "created_at": "2018-11-02T16:20:00Z", "updated_at": updated2,
                "body": body2
            },
            // Bogus: no body. Skipped, and it does not move the cursor.
            {"id": 435450002, "body": null, "user": {"login": "x", "id": 1},
             "created_at": "2018-11-02T16:30:00Z", "updated_at": "2018-11-02T16:30:00Z"}
        ]))
        .expect("comments")
    };
    let issue = |c: &Corpus| -> CommentDiff {
        let have = c.github().repo(OWNER, REPO).and_then(|r| r.issue(28566));
        diff_comments(have, &page("Thanks.", "2018-11-02T16:20:00Z"))
    };
    let first = issue(&c);
    assert_eq!(first.cursor, Some(t("2018-11-02T16:20:00Z")));
    assert_eq!(
        first.changes[0],
        GithubIssueCommentMutation {
            id: 435442772,
            user: Some(GithubUser {
                id: 2621,
                login: "bradfitz".into()
            }),
            body: "I can set one up.".into(),
            created: ts("2018-11-02T16:01:02Z"),
            updated: ts("2018-11-02T16:01:02Z"),
        }
    );
    assert_eq!(first.changes.len(), 2);
    fold(
        &mut c,
        GithubIssueMutation {
            owner: OWNER.into(),
            repo: REPO.into(),
            number: 28566,
            comment: first.changes,
            comment_status: Some(GithubIssueSyncStatus {
                server_date: ts("2018-11-02T17:00:00Z"),
            }),
            ..GithubIssueMutation::default()
        },
    );
    assert!(issue(&c).changes.is_empty());

    let have = c.github().repo(OWNER, REPO).and_then(|r| r.issue(28566));
    let edited = diff_comments(have, &page("Thanks!", "2018-11-02T18:00:00Z"));
    assert_eq!(
        edited.changes,
        vec![GithubIssueCommentMutation {
            id: 435450001,
            body: "Thanks!".into(),
            updated: ts("2018-11-02T18:00:00Z"),
            ..GithubIssueCommentMutation::default()
        }]
    );
    assert_eq!(edited.cursor, Some(t("2018-11-02T18:00:00Z")));
}

#[test]
fn missing_numbers_are_the_gaps_below_the_highest() {
    let mut c = Corpus::new();
    assert!(missing_numbers(c.github().repo(OWNER, REPO)).is_empty());
    for n in [2, 5, 6] {
        let mut v = issue_json();
        v["number"] = n.into();
        fold_new(&mut c, &v);
    }
    fold(
        &mut c,
        GithubIssueMutation {
            owner: OWNER.into(),
            repo: REPO.into(),
            number: 3,
            not_exist: true,
            ..GithubIssueMutation::default()
        },
    );
    assert_eq!(missing_numbers(c.github().repo(OWNER, REPO)), vec![1, 4]);
}

#[test]
fn the_events_fixture_parses_as_go_parses_it() {
    let events = parse_events(&fixture("TestParseMultipleGithubEvents.json")).expect("parse");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
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
        events[0],
        GithubIssueEvent {
            id: 1943301510,
            event_type: "labeled".into(),
            actor_id: 5200974,
            created: Some(timestamp(Time::from_unix(1_541_174_039))),
            label: Some(GithubLabel {
                id: 0,
                name: "Testing".into()
            }),
            ..GithubIssueEvent::default()
        }
    );
    assert_eq!(
        events[5].milestone,
        Some(GithubMilestone {
            title: "Go1.12".into(),
            ..GithubMilestone::default()
        })
    );
    assert_eq!(events[6].actor_id, 3194333);
    assert_eq!(events[6].commit, None, "a null commit_id is no commit");
    // Everything in these real payloads is understood.
    assert!(events.iter().all(|e| e.other_json.is_empty()));

    // The same events cut into pages parse to the same list.
    let mut paged = Vec::new();
    for p in 1..=4 {
        let name = format!("TestParseMultipleGithubEvents_p{p}.json");
        paged.extend(parse_events(&fixture(&name)).expect("page"));
    }
    assert_eq!(paged, events);
}

#[test]
fn the_missing_milestone_fixture_keeps_assignments_and_renames() {
    let events = parse_events(&fixture("TestMissingMilestoneEvents.json")).expect("parse");
    assert_eq!(events.len(), 11);
    let assigned = &events[4];
    assert_eq!(assigned.event_type, "assigned");
    assert_eq!(
        (
            assigned.actor_id,
            assigned.assignee_id,
            assigned.assigner_id
        ),
        (104030, 104030, 5200974)
    );
    let renamed = &events[8];
    assert_eq!(renamed.event_type, "renamed");
    assert_eq!(
        renamed.rename_from,
        "doc/go_mem.html: \"threads\" should read \"goroutines\""
    );
    assert_eq!(
        renamed.rename_to,
        "doc: in Go memory model \"threads\" should read \"goroutines\""
    );
    let titles: Vec<(&str, &str)> = events
        .iter()
        .filter_map(|e| {
            e.milestone
                .as_ref()
                .map(|m| (e.event_type.as_str(), m.title.as_str()))
        })
        .collect();
    assert_eq!(
        titles,
        [
            ("milestoned", "Go1.12"),
            ("demilestoned", "Go1.12"),
            ("milestoned", "Unplanned")
        ]
    );
    assert!(events.iter().all(|e| e.other_json.is_empty()));
}

#[test]
fn unknown_event_fields_go_to_other_json_as_go_marshals_them() {
    let body = serde_json::json!([
        {
            "id": 2001, "node_id": "X", "url": "https://api.github.com/repos/golang/go/issues/events/2001",
            "actor": {"login": "gopherbot", "id": 8566911},
            "event": "referenced",
            "commit_id": "5383ecf5a0824649ffcc0349f00f0317575753d0",
            "commit_url": "https://api.github.com/repos/golang/tools/commits/5383ecf5a0824649ffcc0349f00f0317575753d0",
            "created_at": "2018-11-02T15:53:59Z",
            "lock_reason": null,
            "performed_via_github_app": null,
            "zeta": {"b": 1, "a": "<x & y>"},
            "alpha": [true, 2.5, "\u{2028}"]
        },
        {
            "id": 2002, "event": "review_requested", "created_at": "2018-11-02T15:53:59Z",
            "actor": {"login": "rsc", "id": 104030},
            "requested_reviewer": {"login": "bcmills", "id": 5200974},
            "review_requester": {"login": "rsc", "id": 104030},
            "requested_team": {"id": 42, "slug": "go-team", "name": "Go Team"}
        },
        {
            "id": 2003, "event": "review_dismissed", "created_at": "2018-11-02T15:53:59Z",
            "dismissed_review": {"state": "changes_requested", "review_id": 777, "dismissal_message": "stale"},
            "lock_reason": "resolved"
        },
        {"id": 2004, "event": "locked"}
    ]);
    let events = parse_events(&serde_json::to_vec(&body).expect("json")).expect("parse");
    assert_eq!(
        events[0].commit,
        Some(GithubCommit {
            owner: "golang".into(),
            repo: "tools".into(),
            commit_id: "5383ecf5a0824649ffcc0349f00f0317575753d0".into(),
        })
    );
    assert_eq!(
        std::str::from_utf8(&events[0].other_json).expect("utf-8"),
        r#"{"alpha":[true,2.5,"\u2028"],"zeta":{"a":"\u003cx \u0026 y\u003e","b":1}}"#
    );
    assert_eq!(
        (events[1].reviewer_id, events[1].review_requester_id),
        (5200974, 104030)
    );
    assert_eq!(
        events[1].team_reviewer,
        Some(GithubTeam {
            id: 42,
            slug: "go-team".into()
        })
    );
    assert!(
        events[1].other_json.is_empty(),
        "the team's name is not kept"
    );
    assert_eq!(
        events[2].dismissed_review,
        Some(GithubDismissedReviewEvent {
            review_id: 777,
            dismissal_message: "stale".into(),
            state: "changes_requested".into(),
        })
    );
    assert!(events[2].other_json.is_empty());
    assert_eq!(
        events[3],
        GithubIssueEvent {
            id: 2004,
            event_type: "locked".into(),
            ..GithubIssueEvent::default()
        }
    );
    assert!(matches!(
        parse_events(br#"[{"id": 1, "created_at": "yesterday"}]"#),
        Err(ParseError::Time {
            field: "created_at",
            ..
        })
    ));
    assert!(parse_events(b"{}").is_err());
}

#[test]
fn reviews_parse_as_go_parses_them() {
    let body = serde_json::json!([
        {
            "id": 174879387,
            "node_id": "MDE3OlB1bGxSZXF1ZXN0UmV2aWV3MTc0ODc5Mzg3",
            "user": {"login": "bradfitz", "id": 2621, "type": "User", "site_admin": false},
            "body": "LGTM",
            "state": "APPROVED",
            "html_url": "https://github.com/golang/go/pull/28570#pullrequestreview-174879387",
            "pull_request_url": "https://api.github.com/repos/golang/go/pulls/28570",
            "author_association": "MEMBER",
            "_links": {
                "html": {"href": "https://github.com/golang/go/pull/28570#pullrequestreview-174879387"},
                "pull_request": {"href": "https://api.github.com/repos/golang/go/pulls/28570"}
            },
            "submitted_at": "2018-11-03T10:00:00Z",
            "commit_id": "6e5df99e93230516fdd46108f7673b02f96a27ff"
        },
        {"id": 174879400, "user": null, "body": "", "state": "COMMENTED", "extra": 1}
    ]);
    let reviews = parse_reviews(&serde_json::to_vec(&body).expect("json")).expect("parse");
    assert_eq!(
        reviews[0],
        GithubReview {
            id: 174879387,
            actor_id: 2621,
            created: ts("2018-11-03T10:00:00Z"),
            body: "LGTM".into(),
            state: "APPROVED".into(),
            commit_id: "6e5df99e93230516fdd46108f7673b02f96a27ff".into(),
            actor_association: "MEMBER".into(),
            other_json: bytes::Bytes::new(),
        }
    );
    assert_eq!(reviews[1].actor_id, 0);
    assert_eq!(&reviews[1].other_json[..], br#"{"extra":1}"#);
}

//! The read API over Go's tiny log, checked against what Go's dump says.

use almanac_projections::corpus::api::IssueMilestone;
use almanac_projections::corpus::gerrit::ClStatus;

use crate::oracle::fold;

#[test]
fn github_views() {
    let corpus = fold("tiny");
    let repos: Vec<String> = corpus
        .github()
        .repos()
        .map(|r| format!("{}/{}", r.owner(), r.name()))
        .collect();
    assert_eq!(repos, ["golang/go", "golang/repo0"]);
    let repo = corpus.github().repo("golang", "repo0").expect("repo0");
    assert!(
        corpus.github().repo("Golang", "repo0").is_none(),
        "case-sensitive"
    );
    let labels: Vec<(i64, &str)> = repo.labels().map(|l| (l.id(), l.name())).collect();
    assert_eq!(labels, [(1, "NeedsFix"), (2, "Documentation")]);
    let issue = repo.issue(1).expect("issue 1");
    assert_eq!(issue.title(), "issue 1: something is broken");
    assert_eq!(issue.body(), "edited body");
    assert_eq!(
        issue.user().map(|u| (u.id(), u.login())),
        Some((2, "gopher2"))
    );
    assert_eq!(issue.created().to_string(), "2017-01-01T01:00:00Z");
    assert!(issue.has_label("NeedsFix") && issue.has_label_id(1) && !issue.has_label_id(2));
    match issue.milestone() {
        IssueMilestone::Set(m) => assert_eq!((m.id(), m.title(), m.number()), (10, "Go1.9", 1)),
        other => panic!("{other:?}"),
    }
    let comments: Vec<(i64, &str)> = issue.comments().map(|c| (c.id(), c.body())).collect();
    assert_eq!(
        comments,
        [(2000001, "comment 0 on 1"), (2000002, "comment 1 on 1")]
    );
    let events: Vec<&str> = issue.events().map(|e| e.event_type()).collect();
    assert_eq!(events, ["labeled", "milestoned"]);
    assert!(issue.has_event("milestoned") && !issue.has_event("closed"));
    assert_eq!(issue.reviews().count(), 0);
    assert!(repo.issue(3).expect("issue 3").closed());
    let gone = repo.issue(4).expect("issue 4");
    assert!(gone.not_exist());
    assert!(matches!(gone.milestone(), IssueMilestone::Unknown));
    assert_eq!(repo.issues().count(), 4);
}

#[test]
fn gerrit_and_git_views() {
    let corpus = fold("tiny");
    let project = corpus
        .gerrit()
        .project("https://go-review.googlesource.com", "test")
        .expect("review host normalised");
    assert_eq!(project.server(), "go.googlesource.com");
    assert_eq!(project.project(), "test");
    let cls: Vec<i32> = project.cls().map(|c| c.number()).collect();
    assert_eq!(cls, [1, 2]);
    let open: Vec<i32> = project.open_cls().map(|c| c.number()).collect();
    assert_eq!(open, [1]);
    let cl = project.cl(1).expect("cl 1");
    assert_eq!(cl.status(), ClStatus::New);
    assert_eq!(cl.version(), 2);
    assert_eq!(cl.branch(), "master");
    assert_eq!(cl.change_id(), "I0000000000000000000000000000000000000001");
    assert_eq!(cl.subject(), "cl 1 subject");
    assert_eq!(
        cl.github_refs().collect::<Vec<_>>(),
        [("golang", "go", 201)]
    );
    assert_eq!(cl.owner_id(), 5190);
    assert_eq!(cl.metas().count(), 3);
    let msgs: Vec<(i32, String)> = cl
        .messages()
        .map(|m| (m.version(), m.text().into_owned()))
        .collect();
    assert_eq!(
        msgs,
        [(2, "Patch Set 2: Code-Review+2\n\nLooks good.".to_owned())]
    );
    let last = cl.metas().last().expect("a meta");
    let votes = last.label_votes();
    assert_eq!(
        votes["Code-Review"].iter().collect::<Vec<_>>(),
        [(
            &"5190@62eb7196-b449-3ce5-99f1-c037f21e1705".to_owned(),
            &2i8
        )]
    );
    assert_eq!(last.hashtags(), "foo, bar");
    assert_eq!(cl.metas().next().expect("first").hashtags(), "");
    assert!(cl.commit_at_version(1).is_some() && cl.commit_at_version(3).is_none());
    assert_eq!(
        project
            .ref_hash("refs/heads/master")
            .map(|h| h.to_string())
            .as_deref(),
        Some("4a30e12e3506b776500e307bacd28dfaaf8bee13")
    );
    let merged = project.cl(2).expect("cl 2");
    assert_eq!(merged.status(), ClStatus::Merged);

    let head = corpus
        .git_commit("8B0C5EE4AF10C0CB46F08A94837B01EC84115C0B")
        .expect("hex in either case");
    let root = corpus
        .git_commit("de4f2f78042e1c632dc9da537bdd2739141362ec")
        .expect("root");
    assert!(head.has_ancestor(root) && !root.has_ancestor(head) && !head.has_ancestor(head));
    assert_eq!(head.summary(), "git commit 3");
    assert_eq!(
        head.author().map(|a| a.email().into_owned()).as_deref(),
        Some("one@example.com")
    );
    assert_eq!(
        head.author().map(|a| a.name().into_owned()).as_deref(),
        Some("Gopher One")
    );
    assert_eq!(head.files().count(), 2);
    assert_eq!(corpus.git_commits().count(), 17);
    assert!(corpus.git_commit("not hex").is_none());
}

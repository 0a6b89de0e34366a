//! Unit tests of the maintner API's pure helpers: version parsing, TRY=
//! requests, dashboard paging and go commit assignment.

use super::*;

#[test]
fn numbers_are_canonical_0_to_999() {
    assert_eq!(parse_0_to_999("0"), Some(0));
    assert_eq!(parse_0_to_999("7"), Some(7));
    assert_eq!(parse_0_to_999("999"), Some(999));
    for bad in ["", "1000", "01", "00", "001", "+1", "-1", "1a", " 1", "1."] {
        assert_eq!(parse_0_to_999(bad), None, "{bad:?}");
    }
}

#[test]
fn tags() {
    let good = [
        ("go1", (1, 0, 0)),
        ("go1.2", (1, 2, 0)),
        ("go1.2.3", (1, 2, 3)),
        ("go23.45.67", (23, 45, 67)),
        ("go1.21.0", (1, 21, 0)),
        ("go1.21.3", (1, 21, 3)),
        ("go1.22.0", (1, 22, 0)),
        ("go1.10", (1, 10, 0)),
        ("go1.20", (1, 20, 0)),
    ];
    for (name, want) in good {
        assert_eq!(parse_tag(name), Some(want), "{name}");
    }
    let bad = [
        "not-go",
        "go",
        "go.",
        "go1.",
        "go1-bad",
        "go1.2.",
        "go1.2-bad",
        "go1.2.3.",
        "go1.2.3-bad",
        "go1.2.3.4",
        "go0.0.0",
        "go0",
        "go-1",
        "go1.-2",
        "go1.2.-3",
        "go+1",
        "go01",
        "go001",
        "go1000",
        "go1.0",
        "go1.0.0",
        "go1.2.0",
        "go1.20.0",
        "go00",
        "go00.2",
        "go00.2.3",
        "go1.00",
        "go1.00.0",
        "go1.00.3",
        "go1.2.00",
        "go1.21rc1",
        "go1.2beta3",
        "go1.21.0.",
    ];
    for name in bad {
        assert_eq!(parse_tag(name), None, "{name}");
    }
}

#[test]
fn release_branches() {
    let good = [
        ("release-branch.go1", (1, 0)),
        ("release-branch.go1.2", (1, 2)),
        ("release-branch.go1.21", (1, 21)),
        ("release-branch.go1.20", (1, 20)),
        ("release-branch.go23.45", (23, 45)),
    ];
    for (name, want) in good {
        assert_eq!(parse_release_branch(name), Some(want), "{name}");
    }
    let bad = [
        "not-release-branch",
        "release-branch.go",
        "release-branch.go.",
        "release-branch.go1.",
        "release-branch.go1-bad",
        "release-branch.go1.2.",
        "release-branch.go1.2-bad",
        "release-branch.go1.2.3",
        "release-branch.go0.0",
        "release-branch.go0",
        "release-branch.go-1",
        "release-branch.go1.-2",
        "release-branch.go+1",
        "release-branch.go01",
        "release-branch.go001",
        "release-branch.go1000",
        "release-branch.go1.0",
        "release-branch.go00",
        "release-branch.go00.2",
        "release-branch.go1.00",
        "release-branch.go1.10-security",
        "master",
    ];
    for name in bad {
        assert_eq!(parse_release_branch(name), None, "{name}");
    }
}

#[test]
fn internal_branches() {
    assert_eq!(
        parse_internal_branch("internal-branch.go1.21-vendor"),
        Some((1, 21))
    );
    assert_eq!(
        parse_internal_branch("internal-branch.go1.17-a-b"),
        Some((1, 17))
    );
    assert_eq!(parse_internal_branch("internal-branch.go1.21"), None);
    assert_eq!(parse_internal_branch("internal-branch.gox-vendor"), None);
    assert_eq!(parse_internal_branch("release-branch.go1.21"), None);
}

fn hash(n: u8) -> GitHash {
    GitHash([n; 20])
}

#[test]
fn supported_releases_are_the_newest_two_with_branches() {
    let refs = [
        ("refs/heads/master", hash(1)),
        ("refs/heads/release-branch.go1.20", hash(2)),
        ("refs/heads/release-branch.go1.21", hash(3)),
        ("refs/heads/release-branch.go1.22", hash(4)),
        ("refs/heads/release-branch.go1.21-security", hash(5)),
        ("refs/tags/go1.20", hash(6)),
        ("refs/tags/go1.20.1", hash(7)),
        ("refs/tags/go1.21.0", hash(8)),
        ("refs/tags/go1.21.10", hash(9)),
        ("refs/tags/go1.21.2", hash(10)),
        ("refs/tags/go1.22rc1", hash(11)),
        ("refs/tags/go1.23.0", hash(12)),
    ];
    let got = supported_releases(refs.iter().copied()).expect("two releases");
    let summary: Vec<(i32, i32, i32, &str, &str)> = got
        .iter()
        .map(|r| {
            (
                r.major,
                r.minor,
                r.patch,
                r.tag_name.as_str(),
                r.branch_name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, 21, 10, "go1.21.10", "release-branch.go1.21"),
            (1, 20, 1, "go1.20.1", "release-branch.go1.20"),
        ]
    );
    assert_eq!(got[0].tag_commit, hash(9).to_string());
    assert_eq!(got[0].branch_commit, hash(3).to_string());
}

#[test]
fn fewer_than_two_releases_is_an_error() {
    let refs = [
        ("refs/heads/release-branch.go1.21", hash(3)),
        ("refs/tags/go1.21.1", hash(8)),
        ("refs/tags/go1.20.1", hash(7)),
    ];
    assert_eq!(supported_releases(refs.iter().copied()), Err(no_releases()));
    assert_eq!(supported_releases(std::iter::empty()), Err(no_releases()));
}

#[test]
fn try_requests() {
    assert_eq!(
        try_request("Patch Set 2: Run-TryBot+1\n\nTRY=foo2"),
        Some("foo2")
    );
    assert_eq!(
        try_request("Patch Set 2: Code-Review+2 Run-TryBot+1\n\nTRY=a\nTRY=b"),
        Some("a")
    );
    assert_eq!(try_request("Patch Set 1: Run-TryBot+1\n\nTRY="), Some(""));
    assert_eq!(try_request("Patch Set 2: Run-TryBot+1\n\nsee TRY=x"), None);
    assert_eq!(try_request("Patch Set 2: Run-TryBot+1 Code-Review-2"), None);
    assert_eq!(try_request("Patch Set 2: Code-Review+1\n\nTRY=x"), None);
    assert_eq!(try_request("Patch Set 2:\n\nRun-TryBot+1\nTRY=x"), None);
    assert_eq!(
        try_request("Uploaded patch set 2: Run-TryBot+1.\n\nTRY=x"),
        None
    );
}

#[test]
fn account_ids() {
    assert_eq!(
        gerrit_account_id("5065@62eb7196-b449-3ce5-99f1-c037f21e1705"),
        5065
    );
    assert_eq!(gerrit_account_id("gopher@golang.org"), 0);
    assert_eq!(gerrit_account_id(""), 0);
}

#[test]
fn dashboard_repos() {
    assert_eq!(dash_repo_to_project(""), Ok("go"));
    assert_eq!(dash_repo_to_project("go"), Ok("go"));
    assert_eq!(dash_repo_to_project("golang.org/x/net"), Ok("net"));
    for bad in [
        "golang.org/x/",
        "golang.org/x/net/http2",
        "github.com/golang/go",
        "net",
    ] {
        assert!(
            matches!(dash_repo_to_project(bad), Err(ApiError::NotFound(_))),
            "{bad}"
        );
    }
}

#[test]
fn page_sizes() {
    assert_eq!(page_size(0, false, 5), Ok(30));
    assert_eq!(page_size(0, true, 5), Ok(500));
    assert_eq!(page_size(7, false, 50), Ok(7));
    assert_eq!(page_size(5000, true, 5), Ok(1000));
    assert_eq!(
        page_size(-1, false, 5),
        Err(ApiError::InvalidArgument("negative max commits".to_owned()))
    );
    assert!(matches!(
        page_size(3, true, 5),
        Err(ApiError::InvalidArgument(_))
    ));
    assert_eq!(page_size(5, true, 5), Ok(5));
}

#[test]
fn page_skips() {
    assert_eq!(page_skip(0, true, 500), Ok(0));
    assert_eq!(page_skip(3, false, 30), Ok(90));
    assert_eq!(
        page_skip(-1, false, 30),
        Err(ApiError::InvalidArgument("invalid page".to_owned()))
    );
    assert_eq!(
        page_skip(1, true, 30),
        Err(ApiError::InvalidArgument(
            "branch=mixed does not support pagination".to_owned()
        ))
    );
    assert_eq!(page_skip(333, false, 30), Ok(9990));
    assert_eq!(
        page_skip(334, false, 30),
        Err(ApiError::InvalidArgument("too far back".to_owned()))
    );
    assert!(page_skip(i32::MAX, false, 1000).is_err());
}

fn page(times: &[i64]) -> Vec<DashCommit> {
    times
        .iter()
        .map(|&t| DashCommit {
            commit_time_sec: t,
            ..DashCommit::default()
        })
        .collect()
}

fn go_log() -> Vec<(i64, String)> {
    [(350, "g4"), (250, "g3"), (150, "g2"), (50, "g1")]
        .iter()
        .map(|&(t, h)| (t, h.to_owned()))
        .collect()
}

fn go_commits(commits: &[DashCommit]) -> Vec<(&str, &str)> {
    commits
        .iter()
        .map(|dc| (dc.go_commit_at_time.as_str(), dc.go_commit_latest.as_str()))
        .collect()
}

#[test]
fn go_commits_on_the_first_page() {
    let mut commits = page(&[300, 200, 100]);
    assign_go_commits(&mut commits, go_log(), NO_TIME);
    assert_eq!(
        go_commits(&commits),
        [("g3", "g3"), ("g2", "g3"), ("g1", "g2")]
    );
}

#[test]
fn go_commits_on_a_later_page() {
    let mut commits = page(&[300, 200, 100]);
    assign_go_commits(&mut commits, go_log(), 400);
    assert_eq!(
        go_commits(&commits),
        [("g3", "g4"), ("g2", "g3"), ("g1", "g2")]
    );
}

#[test]
fn go_commits_without_go_history() {
    let mut commits = page(&[300]);
    assign_go_commits(&mut commits, Vec::new(), NO_TIME);
    assert_eq!(go_commits(&commits), [("", "")]);
}

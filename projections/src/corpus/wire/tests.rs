//! The zero-copy views agree with prost: same verdicts on arbitrary bytes,
//! same values on every field the fold reads.

use almanac_proto::pb::maintpb::{
    BoolChange, GerritMutation, GitCommit, GitDiffTree, GitDiffTreeFile, GitMutation, GitRef,
    GithubCommit, GithubDismissedReviewEvent, GithubIssueCommentMutation, GithubIssueEvent,
    GithubIssueMutation, GithubIssueSyncStatus, GithubLabel, GithubMilestone, GithubMutation,
    GithubReview, GithubTeam, GithubUser, Mutation, StringChange,
};
use proptest::prelude::*;
use prost::Message as _;
use prost_types::Timestamp;

use super::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z]{1,8}", "\\PC{0,12}"]
}

fn ts() -> impl Strategy<Value = Option<Timestamp>> {
    proptest::option::of(
        (any::<i64>(), 0i32..1_000_000_000).prop_map(|(s, n)| Timestamp {
            seconds: s % 100_000_000_000,
            nanos: n,
        }),
    )
}

fn user() -> impl Strategy<Value = Option<GithubUser>> {
    proptest::option::of((any::<i64>(), text()).prop_map(|(id, login)| GithubUser { id, login }))
}

fn event() -> impl Strategy<Value = GithubIssueEvent> {
    (
        (any::<i64>(), text(), any::<i64>(), ts()),
        (proptest::option::of(text()), proptest::option::of(text())),
        (
            any::<i64>(),
            any::<i64>(),
            proptest::option::of((text(), text(), text())),
        ),
        (text(), text(), any::<i64>(), any::<i64>()),
        proptest::option::of((any::<i64>(), text(), text())),
        proptest::option::of((any::<i64>(), text())),
    )
        .prop_map(
            |(
                (id, t, actor, created),
                (label, ms),
                (asg, asr, commit),
                (from, to, rv, rq),
                dismissed,
                team,
            )| {
                GithubIssueEvent {
                    id,
                    event_type: t,
                    actor_id: actor,
                    created,
                    label: label.map(|name| GithubLabel { id: 3, name }),
                    milestone: ms.map(|title| GithubMilestone {
                        id: 4,
                        title,
                        ..Default::default()
                    }),
                    assignee_id: asg,
                    assigner_id: asr,
                    commit: commit.map(|(owner, repo, commit_id)| GithubCommit {
                        owner,
                        repo,
                        commit_id,
                    }),
                    other_json: Default::default(),
                    rename_from: from,
                    rename_to: to,
                    reviewer_id: rv,
                    review_requester_id: rq,
                    dismissed_review: dismissed.map(|(review_id, m, state)| {
                        GithubDismissedReviewEvent {
                            review_id,
                            dismissal_message: m,
                            state,
                        }
                    }),
                    team_reviewer: team.map(|(id, slug)| GithubTeam { id, slug }),
                }
            },
        )
}

fn issue() -> impl Strategy<Value = GithubIssueMutation> {
    (
        (
            text(),
            text(),
            any::<i32>(),
            user(),
            ts(),
            ts(),
            text(),
            text(),
        ),
        (
            proptest::collection::vec(
                (any::<i64>(), user(), text(), ts(), ts()).prop_map(
                    |(id, user, body, created, updated)| GithubIssueCommentMutation {
                        id,
                        user,
                        body,
                        created,
                        updated,
                    },
                ),
                0..3,
            ),
            proptest::collection::vec(user().prop_map(Option::unwrap_or_default), 0..3),
            proptest::collection::vec(any::<i64>(), 0..4),
            proptest::collection::vec(any::<i64>(), 0..4),
        ),
        (
            any::<i64>(),
            any::<bool>(),
            any::<bool>(),
            any::<i64>(),
            any::<i64>(),
            text(),
        ),
        (
            proptest::option::of(any::<bool>()),
            proptest::option::of(any::<bool>()),
            ts(),
            user(),
            any::<bool>(),
            proptest::option::of(text()),
            (ts(), ts(), ts()),
        ),
        (
            proptest::collection::vec(event(), 0..3),
            proptest::collection::vec(
                (
                    any::<i64>(),
                    any::<i64>(),
                    ts(),
                    text(),
                    text(),
                    text(),
                    text(),
                )
                    .prop_map(
                        |(id, actor_id, created, body, state, commit_id, assoc)| GithubReview {
                            id,
                            actor_id,
                            created,
                            body,
                            state,
                            commit_id,
                            actor_association: assoc,
                            other_json: b"{}".to_vec().into(),
                        },
                    ),
                0..2,
            ),
            proptest::collection::vec(
                (any::<i64>(), text()).prop_map(|(id, name)| GithubLabel { id, name }),
                0..3,
            ),
        ),
    )
        .prop_map(|(a, b, c, d, e)| {
            let (owner, repo, number, user, created, updated, body, title) = a;
            let (comment, assignees, deleted_assignees, remove_label) = b;
            let (id, not_exist, no_milestone, milestone_id, milestone_num, milestone_title) = c;
            let (closed, locked, closed_at, closed_by, pull_request, body_change, (cs, es, rs)) = d;
            let (event, review, add_label) = e;
            let status = |t: Option<Timestamp>| {
                t.map(|t| GithubIssueSyncStatus {
                    server_date: Some(t),
                })
            };
            GithubIssueMutation {
                owner,
                repo,
                number,
                user,
                created,
                updated,
                body,
                comment,
                title,
                assignees,
                deleted_assignees,
                id,
                not_exist,
                comment_status: status(cs),
                no_milestone,
                milestone_id,
                milestone_num,
                milestone_title,
                closed: closed.map(|val| BoolChange { val }),
                closed_at,
                closed_by,
                remove_label,
                add_label,
                locked: locked.map(|val| BoolChange { val }),
                event,
                event_status: status(es),
                pull_request,
                review,
                review_status: status(rs),
                body_change: body_change.map(|val| StringChange { val }),
            }
        })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        proptest::option::of(issue()),
        proptest::option::of(
            (
                text(),
                text(),
                proptest::collection::vec((any::<i64>(), text()), 0..3),
            )
                .prop_map(|(owner, repo, labels)| GithubMutation {
                    owner,
                    repo,
                    labels: labels
                        .into_iter()
                        .map(|(id, name)| GithubLabel { id, name })
                        .collect(),
                    milestones: vec![GithubMilestone {
                        id: 9,
                        title: "Go1.9".into(),
                        closed: Some(BoolChange { val: true }),
                        number: 3,
                    }],
                }),
        ),
        proptest::option::of(
            (
                text(),
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::option::of(proptest::collection::vec(
                    (text(), any::<i64>(), any::<i64>(), any::<bool>()),
                    0..3,
                )),
            )
                .prop_map(|(sha1, raw, files)| GitMutation {
                    repo: None,
                    commit: Some(GitCommit {
                        sha1,
                        raw: raw.into(),
                        diff_tree: files.map(|f| GitDiffTree {
                            file: f
                                .into_iter()
                                .map(|(file, added, deleted, binary)| GitDiffTreeFile {
                                    file,
                                    added,
                                    deleted,
                                    binary,
                                })
                                .collect(),
                        }),
                    }),
                    ..Default::default()
                }),
        ),
        proptest::option::of(
            (
                text(),
                proptest::collection::vec((text(), text()), 0..3),
                proptest::collection::vec(text(), 0..2),
            )
                .prop_map(|(project, refs, deleted_refs)| GerritMutation {
                    project,
                    commits: vec![GitCommit {
                        sha1: "a".repeat(40),
                        raw: b"tree x\n\nmsg".to_vec().into(),
                        diff_tree: None,
                    }],
                    refs: refs
                        .into_iter()
                        .map(|(r, sha1)| GitRef { r#ref: r, sha1 })
                        .collect(),
                    deleted_refs,
                }),
        ),
    )
        .prop_map(|(github_issue, github, git, gerrit)| Mutation {
            github_issue,
            github,
            git,
            gerrit,
            ..Default::default()
        })
}

fn time(t: &Option<Timestamp>) -> Option<Time> {
    t.as_ref().map(Time::from_proto)
}

fn same_user(v: &Option<UserView<'_>>, p: &Option<GithubUser>) -> bool {
    match (v, p) {
        (None, None) => true,
        (Some(v), Some(p)) => v.id == p.id && v.login == p.login.as_bytes(),
        _ => false,
    }
}

fn assert_views_match(m: &Mutation, bytes: &[u8]) -> Result<(), TestCaseError> {
    let v = MutationView::parse(bytes);
    prop_assert_eq!(v.github_issue.is_some(), m.github_issue.is_some());
    if let (Some(v), Some(p)) = (&v.github_issue, &m.github_issue) {
        prop_assert_eq!(v.owner, p.owner.as_bytes());
        prop_assert_eq!(v.repo, p.repo.as_bytes());
        prop_assert_eq!(v.number, p.number);
        prop_assert!(same_user(&v.user, &p.user));
        prop_assert!(same_user(&v.closed_by, &p.closed_by));
        prop_assert_eq!(v.created, time(&p.created));
        prop_assert_eq!(v.updated, time(&p.updated));
        prop_assert_eq!(v.closed_at, time(&p.closed_at));
        prop_assert_eq!(v.body, p.body.as_bytes());
        prop_assert_eq!(v.title, p.title.as_bytes());
        prop_assert_eq!(v.id, p.id);
        prop_assert_eq!(v.not_exist, p.not_exist);
        prop_assert_eq!(v.no_milestone, p.no_milestone);
        prop_assert_eq!(v.milestone_id, p.milestone_id);
        prop_assert_eq!(v.milestone_num, p.milestone_num);
        prop_assert_eq!(v.milestone_title, p.milestone_title.as_bytes());
        prop_assert_eq!(v.closed, p.closed.map(|b| b.val));
        prop_assert_eq!(v.locked, p.locked.map(|b| b.val));
        prop_assert_eq!(v.pull_request, p.pull_request);
        prop_assert_eq!(
            v.body_change,
            p.body_change.as_ref().map(|b| b.val.as_bytes())
        );
        let sync =
            |s: &Option<GithubIssueSyncStatus>| s.as_ref().and_then(|s| time(&s.server_date));
        prop_assert_eq!(v.comment_status, sync(&p.comment_status));
        prop_assert_eq!(v.event_status, sync(&p.event_status));
        prop_assert_eq!(v.review_status, sync(&p.review_status));
        prop_assert_eq!(
            v.deleted_assignees().collect::<Vec<_>>(),
            p.deleted_assignees.clone()
        );
        prop_assert_eq!(
            v.remove_labels().collect::<Vec<_>>(),
            p.remove_label.clone()
        );
        let labels: Vec<(i64, Vec<u8>)> = v.add_labels().map(|l| (l.id, l.name.to_vec())).collect();
        let want: Vec<(i64, Vec<u8>)> = p
            .add_label
            .iter()
            .map(|l| (l.id, l.name.clone().into_bytes()))
            .collect();
        prop_assert_eq!(labels, want);
        let assignees: Vec<(i64, Vec<u8>)> =
            v.assignees().map(|u| (u.id, u.login.to_vec())).collect();
        let want: Vec<(i64, Vec<u8>)> = p
            .assignees
            .iter()
            .map(|u| (u.id, u.login.clone().into_bytes()))
            .collect();
        prop_assert_eq!(assignees, want);
        let comments: Vec<_> = v.comments().collect();
        prop_assert_eq!(comments.len(), p.comment.len());
        for (c, pc) in comments.iter().zip(&p.comment) {
            prop_assert_eq!(c.id, pc.id);
            prop_assert!(same_user(&c.user, &pc.user));
            prop_assert_eq!(c.body, pc.body.as_bytes());
            prop_assert_eq!(c.created, time(&pc.created));
            prop_assert_eq!(c.updated, time(&pc.updated));
        }
        let events: Vec<_> = v.events().collect();
        prop_assert_eq!(events.len(), p.event.len());
        for (e, pe) in events.iter().zip(&p.event) {
            prop_assert_eq!(e.id, pe.id);
            prop_assert_eq!(e.event_type, pe.event_type.as_bytes());
            prop_assert_eq!(e.actor_id, pe.actor_id);
            prop_assert_eq!(e.created, time(&pe.created));
            prop_assert_eq!(e.label, pe.label.as_ref().map(|l| l.name.as_bytes()));
            prop_assert_eq!(
                e.milestone,
                pe.milestone.as_ref().map(|m| m.title.as_bytes())
            );
            prop_assert_eq!(e.assignee_id, pe.assignee_id);
            prop_assert_eq!(e.assigner_id, pe.assigner_id);
            prop_assert_eq!(
                e.commit,
                pe.commit.as_ref().map(|c| (
                    c.owner.as_bytes(),
                    c.repo.as_bytes(),
                    c.commit_id.as_bytes()
                ))
            );
            prop_assert_eq!(e.rename_from, pe.rename_from.as_bytes());
            prop_assert_eq!(e.rename_to, pe.rename_to.as_bytes());
            prop_assert_eq!(e.reviewer_id, pe.reviewer_id);
            prop_assert_eq!(e.review_requester_id, pe.review_requester_id);
            prop_assert_eq!(
                e.dismissed_review,
                pe.dismissed_review.as_ref().map(|d| (
                    d.review_id,
                    d.dismissal_message.as_bytes(),
                    d.state.as_bytes()
                ))
            );
            prop_assert_eq!(
                e.team_reviewer.map(|t| (t.id, t.login.to_vec())),
                pe.team_reviewer
                    .as_ref()
                    .map(|t| (t.id, t.slug.clone().into_bytes()))
            );
        }
        let reviews: Vec<_> = v.reviews().collect();
        prop_assert_eq!(reviews.len(), p.review.len());
        for (r, pr) in reviews.iter().zip(&p.review) {
            prop_assert_eq!(
                (
                    r.id,
                    r.actor_id,
                    r.created,
                    r.body,
                    r.state,
                    r.commit_id,
                    r.actor_association,
                    r.other_json
                ),
                (
                    pr.id,
                    pr.actor_id,
                    time(&pr.created),
                    pr.body.as_bytes(),
                    pr.state.as_bytes(),
                    pr.commit_id.as_bytes(),
                    pr.actor_association.as_bytes(),
                    &pr.other_json[..]
                )
            );
        }
    }
    if let (Some(v), Some(p)) = (&v.github, &m.github) {
        prop_assert_eq!(v.owner(), p.owner.as_bytes());
        prop_assert_eq!(v.repo(), p.repo.as_bytes());
        let labels: Vec<(i64, Vec<u8>)> = v.labels().map(|l| (l.id, l.name.to_vec())).collect();
        let want: Vec<(i64, Vec<u8>)> = p
            .labels
            .iter()
            .map(|l| (l.id, l.name.clone().into_bytes()))
            .collect();
        prop_assert_eq!(labels, want);
        let ms: Vec<_> = v
            .milestones()
            .map(|m| (m.id, m.title.to_vec(), m.closed, m.number))
            .collect();
        let want: Vec<_> = p
            .milestones
            .iter()
            .map(|m| {
                (
                    m.id,
                    m.title.clone().into_bytes(),
                    m.closed.map(|c| c.val),
                    m.number,
                )
            })
            .collect();
        prop_assert_eq!(ms, want);
    }
    prop_assert_eq!(
        v.git.as_ref().map(|g| g.commit.is_some()),
        m.git.as_ref().map(|g| g.commit.is_some())
    );
    if let (Some(c), Some(pc)) = (
        v.git.as_ref().and_then(|g| g.commit),
        m.git.as_ref().and_then(|g| g.commit.as_ref()),
    ) {
        prop_assert_eq!(c.sha1, pc.sha1.as_bytes());
        prop_assert_eq!(c.raw, &pc.raw[..]);
        let files: Option<Vec<_>> = c.files().map(|f| {
            f.map(|f| (f.file.to_vec(), f.added, f.deleted, f.binary))
                .collect()
        });
        let want: Option<Vec<_>> = pc.diff_tree.as_ref().map(|d| {
            d.file
                .iter()
                .map(|f| (f.file.clone().into_bytes(), f.added, f.deleted, f.binary))
                .collect()
        });
        prop_assert_eq!(files, want);
    }
    if let (Some(v), Some(p)) = (&v.gerrit, &m.gerrit) {
        prop_assert_eq!(v.project(), p.project.as_bytes());
        prop_assert_eq!(v.commits().count(), p.commits.len());
        let refs: Vec<_> = v.refs().map(|(r, s)| (r.to_vec(), s.to_vec())).collect();
        let want: Vec<_> = p
            .refs
            .iter()
            .map(|r| (r.r#ref.clone().into_bytes(), r.sha1.clone().into_bytes()))
            .collect();
        prop_assert_eq!(refs, want);
        let deleted: Vec<_> = v.deleted_refs().map(<[u8]>::to_vec).collect();
        let want: Vec<_> = p
            .deleted_refs
            .iter()
            .map(|r| r.clone().into_bytes())
            .collect();
        prop_assert_eq!(deleted, want);
    }
    Ok(())
}

/// What the loader relies on: a record `check` takes as canonical decodes,
/// and one it refuses does not. `NeedsCanonical` leaves the verdict to
/// prost (records with farm fields, which prost alone validates, or with
/// repeated singular messages), so it holds either way.
fn agrees_with_prost(
    ours: &Result<Check, WireError>,
    prost: &Result<Mutation, prost::DecodeError>,
) -> Result<(), TestCaseError> {
    match ours {
        Ok(Check::Canonical) => prop_assert!(prost.is_ok(), "canonical, but prost: {:?}", prost),
        Ok(Check::NeedsCanonical) => {}
        Err(e) => prop_assert!(prost.is_err(), "refused ({e:?}), but prost decodes it"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn views_read_what_prost_decodes(m in mutation()) {
        let bytes = m.encode_to_vec();
        prop_assert_eq!(check(&bytes), Ok(Check::Canonical));
        assert_views_match(&m, &bytes)?;
    }

    #[test]
    fn check_agrees_with_prost_on_damaged_records(m in mutation(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = m.encode_to_vec();
        prop_assume!(!bytes.is_empty());
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let ours = check(&bytes);
        let prost = Mutation::decode(&bytes[..]);
        agrees_with_prost(&ours, &prost)?;
        if let (Ok(Check::Canonical), Ok(decoded)) = (ours, prost) {
            assert_views_match(&decoded, &bytes)?;
        }
    }

    #[test]
    fn arbitrary_bytes_get_prosts_verdict(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        agrees_with_prost(&check(&bytes), &Mutation::decode(&bytes[..]))?;
    }
}

#[test]
fn repeated_singular_messages_need_canonicalising() {
    let issue = GithubIssueMutation {
        owner: "golang".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut twice = Vec::new();
    for _ in 0..2 {
        prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut twice);
        prost::encoding::encode_varint(issue.len() as u64, &mut twice);
        twice.extend_from_slice(&issue);
    }
    assert_eq!(check(&twice), Ok(Check::NeedsCanonical));
    let farm = Mutation {
        build: Some(Default::default()),
        ..Default::default()
    };
    assert_eq!(check(&farm.encode_to_vec()), Ok(Check::NeedsCanonical));
    let mut unpacked = Vec::new();
    let inner = [0x58u8, 1, 0x58, 2];
    prost::encoding::encode_key(1, prost::encoding::WireType::LengthDelimited, &mut unpacked);
    prost::encoding::encode_varint(inner.len() as u64, &mut unpacked);
    unpacked.extend_from_slice(&inner);
    assert_eq!(check(&unpacked), Ok(Check::Canonical));
    let view = MutationView::parse(&unpacked);
    assert_eq!(
        view.github_issue
            .expect("issue")
            .deleted_assignees()
            .collect::<Vec<_>>(),
        [1, 2]
    );
}

/// A group where the schema has a field is refused, as prost refuses it;
/// a group under an unknown number is skipped, as prost skips it, and the
/// views read past it.
#[test]
fn groups_are_refused_for_known_fields_and_skipped_for_unknown_ones() {
    let wrap = |field: u32, inner: &[u8]| {
        let mut out = Vec::new();
        prost::encoding::encode_key(field, prost::encoding::WireType::LengthDelimited, &mut out);
        prost::encoding::encode_varint(inner.len() as u64, &mut out);
        out.extend_from_slice(inner);
        out
    };
    let group = |field: u32| {
        let mut g = Vec::new();
        prost::encoding::encode_key(field, prost::encoding::WireType::StartGroup, &mut g);
        prost::encoding::encode_key(1, prost::encoding::WireType::Varint, &mut g);
        g.push(7);
        prost::encoding::encode_key(field, prost::encoding::WireType::EndGroup, &mut g);
        g
    };
    // An event (issue field 26) whose actor id (field 3) is a group.
    let mut event = vec![0x08, 0x05];
    event.extend(group(3));
    let mut issue = b"\x0a\x06golang\x12\x02go\x18\x07".to_vec();
    issue.extend(wrap(26, &event));
    let record = wrap(1, &issue);
    assert!(Mutation::decode(&record[..]).is_err());
    assert!(check(&record).is_err(), "{:?}", check(&record));

    // The same group under a number the event does not have.
    let mut event = vec![0x08, 0x05];
    event.extend(group(99));
    event.extend([0x18, 0x2a]);
    let mut issue = b"\x0a\x06golang\x12\x02go\x18\x07".to_vec();
    issue.extend(wrap(26, &event));
    let record = wrap(1, &issue);
    let decoded = Mutation::decode(&record[..]).expect("prost skips it");
    assert_eq!(check(&record), Ok(Check::Canonical));
    let view = MutationView::parse(&record);
    let events: Vec<_> = view.github_issue.expect("issue").events().collect();
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].id, events[0].actor_id), (5, 42));
    let issue = decoded.github_issue.expect("issue");
    assert_eq!((issue.event[0].id, issue.event[0].actor_id), (5, 42));

    // Inside a skipped group, keys are checked as everywhere: field 0 and
    // keys past 32 bits are refused.
    for inner in [
        &[0x05u8, 0, 0, 0, 0][..],
        &[0x80, 0x80, 0x80, 0x80, 0x10, 0],
    ] {
        let mut record = Vec::new();
        prost::encoding::encode_key(8, prost::encoding::WireType::StartGroup, &mut record);
        record.extend_from_slice(inner);
        prost::encoding::encode_key(8, prost::encoding::WireType::EndGroup, &mut record);
        assert!(Mutation::decode(&record[..]).is_err(), "{record:?}");
        assert!(check(&record).is_err(), "{record:?}");
    }
}

/// Varints of every length, with and without bytes after them (the reader
/// takes a different path when fewer than ten bytes remain), read as prost
/// reads them; malformed ones refused as prost refuses them.
#[test]
fn varints_of_every_length_read_as_prost_reads_them() {
    let mut values = vec![0u64, 1, u64::MAX, u64::MAX - 1];
    for bits in 1..64 {
        values.extend([(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1]);
    }
    for v in values {
        let mut encoded = Vec::new();
        prost::encoding::encode_varint(v, &mut encoded);
        for trailing in [0usize, 1, 9, 12] {
            let mut buf = encoded.clone();
            buf.extend(std::iter::repeat_n(0x7fu8, trailing));
            let mut fields = Fields::new(&buf);
            assert_eq!(fields.varint(), Ok(v), "{v} with {trailing} bytes after");
            assert_eq!(
                fields.buf.len(),
                trailing,
                "{v} with {trailing} bytes after"
            );
        }
    }
    let malformed: [&[u8]; 5] = [
        &[0x80],
        &[0xff; 9],
        &[0xff; 10],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
        &[
            0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01,
        ],
    ];
    for bytes in malformed {
        for trailing in [0usize, 12] {
            let mut buf = bytes.to_vec();
            buf.extend(std::iter::repeat_n(0xffu8, trailing));
            let ours = Fields::new(&buf).varint();
            let prosts = prost::encoding::decode_varint(&mut &buf[..]);
            assert!(ours.is_err(), "{bytes:?} with {trailing} bytes after");
            assert!(prosts.is_err(), "{bytes:?}: prost accepts it");
        }
    }
}

#[test]
fn the_field_table_is_the_schema() {
    for (i, &schema) in super::SCHEMAS.iter().enumerate() {
        assert_eq!(schema as usize, i, "{schema:?} out of order");
        for n in 0..300 {
            assert_eq!(
                super::field_kind(schema, n),
                super::field(schema, n),
                "{schema:?} field {n}"
            );
        }
    }
}

fn prost_decodes<M: prost::Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

#[test]
fn every_one_byte_key_gets_prosts_verdict_in_every_schema() {
    use almanac_proto::pb::maintpb::GitRepo;
    // Each schema's prost type, in the order of `SCHEMAS`.
    let prost: [fn(&[u8]) -> bool; 23] = [
        prost_decodes::<Mutation>,
        prost_decodes::<GithubMutation>,
        prost_decodes::<GithubIssueMutation>,
        prost_decodes::<BoolChange>,
        prost_decodes::<StringChange>,
        prost_decodes::<GithubLabel>,
        prost_decodes::<GithubMilestone>,
        prost_decodes::<GithubIssueEvent>,
        prost_decodes::<GithubDismissedReviewEvent>,
        prost_decodes::<GithubCommit>,
        prost_decodes::<GithubReview>,
        prost_decodes::<GithubIssueSyncStatus>,
        prost_decodes::<GithubIssueCommentMutation>,
        prost_decodes::<GithubUser>,
        prost_decodes::<GithubTeam>,
        prost_decodes::<GitMutation>,
        prost_decodes::<GitRepo>,
        prost_decodes::<GitCommit>,
        prost_decodes::<GitDiffTree>,
        prost_decodes::<GitDiffTreeFile>,
        prost_decodes::<GerritMutation>,
        prost_decodes::<GitRef>,
        prost_decodes::<Timestamp>,
    ];
    // What may follow a key: nothing, varints whole and cut, strings valid
    // and not, a small message, fixed-width values whole and cut.
    let tails: &[&[u8]] = &[
        &[],
        &[0x01],
        &[0x96, 0x01],
        &[0x80],
        &[0x02, b'o', b'k'],
        &[0x02, 0xc3, 0x28],
        &[0x05, b'o'],
        &[0x03, 0x08, 0x96, 0x01],
        &[0x02, 0x08, 0x80],
        &[1, 2, 3, 4, 5, 6, 7, 8],
        &[1, 2, 3, 4],
        &[1, 2, 3],
    ];
    let mut cases = 0;
    for (schema, prost) in SCHEMAS.iter().zip(prost) {
        for key in 0u8..0x80 {
            let mut with_tails: Vec<Vec<u8>> = tails
                .iter()
                .map(|tail| [&[key][..], tail].concat())
                .collect();
            // A group closed by its own end key, and one closed by another's.
            with_tails.push(vec![key, 0x08, 0x01, key + 1]);
            with_tails.push(vec![key, 0x0c]);
            for bytes in with_tails {
                let mut canonical = true;
                let ours = check_message(&bytes, *schema, 0, &mut canonical).is_ok();
                assert_eq!(ours, prost(&bytes), "{schema:?} {bytes:02x?}");
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 23 * 128 * 14);
}

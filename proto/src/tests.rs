//! Schema tests: Go's field numbers, forward compatibility, summaries.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{FileDescriptorSet, Timestamp};

use crate::pb::farm;
use crate::pb::maintpb::{
    GitCommit, GitMutation, GithubIssueCommentMutation, GithubIssueMutation, GithubUser, Mutation,
};
use crate::summary::{commit_time, describe, record_time};

/// Renders every field of package `maintpb` as `Message.field = N type`.
fn render_maintpb_fields() -> Vec<String> {
    let fds = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).expect("descriptor decodes");
    let mut lines = Vec::new();
    for file in fds.file.iter().filter(|f| f.package() == "maintpb") {
        for msg in &file.message_type {
            for field in &msg.field {
                let ty = match field.r#type() {
                    Type::Message | Type::Enum => field.type_name().to_owned(),
                    other => other
                        .as_str_name()
                        .trim_start_matches("TYPE_")
                        .to_lowercase(),
                };
                let repeated = if field.label() == Label::Repeated {
                    "repeated "
                } else {
                    ""
                };
                lines.push(format!(
                    "{}.{} = {} {repeated}{ty}",
                    msg.name(),
                    field.name(),
                    field.number()
                ));
            }
        }
    }
    lines.sort();
    lines
}

#[test]
fn maintpb_matches_go_field_for_field() {
    let expected: Vec<String> = include_str!("../tests/maintpb_fields.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(str::to_owned)
        .collect();
    let ours = render_maintpb_fields();
    // Go's own fields: everything numbered below 100.
    let go_range: Vec<String> = ours
        .iter()
        .filter(|l| {
            let n: u32 = l
                .split(" = ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .map_or(0, |n| {
                    n.parse().expect("rendered field numbers are numbers")
                });
            n < 100
        })
        .cloned()
        .collect();
    assert_eq!(go_range, expected);
    // Our additions are exactly the four farm fields of Mutation and the
    // plain repository's refs in GitMutation.
    let additions: Vec<&String> = ours.iter().filter(|l| !expected.contains(l)).collect();
    assert_eq!(
        additions,
        [
            "GitMutation.deleted_refs = 101 repeated string",
            "GitMutation.refs = 100 repeated .maintpb.GitRef",
            "Mutation.build = 101 .almanac.farm.v1.BuildEvent",
            "Mutation.farm_input = 100 .almanac.farm.v1.FarmInput",
            "Mutation.machine = 102 .almanac.farm.v1.MachineEvent",
            "Mutation.result = 103 .almanac.farm.v1.ResultEvent",
        ]
    );
}

#[test]
fn repeated_int64_is_packed_and_unpacked_is_accepted() {
    let m = GithubIssueMutation {
        deleted_assignees: vec![1, 300],
        ..Default::default()
    };
    // Packed: tag 11, wire type 2, length 3, varints 1 and 300 (0xac 0x02).
    assert_eq!(m.encode_to_vec(), [0x5a, 3, 1, 0xac, 0x02]);
    // Unpacked: two tag-11 varint fields.
    let unpacked = [0x58, 1, 0x58, 0xac, 0x02];
    let decoded = GithubIssueMutation::decode(&unpacked[..]).expect("unpacked decodes");
    assert_eq!(decoded.deleted_assignees, [1, 300]);
}

fn sample_mutation() -> Mutation {
    Mutation {
        github_issue: Some(GithubIssueMutation {
            owner: "golang".into(),
            repo: "go".into(),
            number: 7,
            user: Some(GithubUser {
                id: 1,
                login: "gopher".into(),
            }),
            comment: vec![GithubIssueCommentMutation {
                id: 99,
                body: "hello".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Appends a field with the given number and wire type 2 (bytes).
fn push_unknown_bytes_field(buf: &mut Vec<u8>, number: u32, payload: &[u8]) {
    prost::encoding::encode_key(number, prost::encoding::WireType::LengthDelimited, buf);
    prost::encoding::encode_varint(payload.len() as u64, buf);
    buf.extend_from_slice(payload);
}

#[test]
fn records_with_unknown_fields_still_decode() {
    let known = sample_mutation();
    let mut bytes = known.encode_to_vec();
    // A top-level field from a future schema, a varint and a fixed64 one.
    push_unknown_bytes_field(&mut bytes, 999, b"from the future");
    prost::encoding::encode_key(5000, prost::encoding::WireType::Varint, &mut bytes);
    prost::encoding::encode_varint(12345, &mut bytes);
    prost::encoding::encode_key(77, prost::encoding::WireType::SixtyFourBit, &mut bytes);
    bytes.extend_from_slice(&42u64.to_le_bytes());
    // And an unknown field inside a known nested message: re-encode the
    // issue with an extra field 500 and wrap it as field 1 again.
    let mut issue = known
        .github_issue
        .as_ref()
        .expect("sample has an issue")
        .encode_to_vec();
    push_unknown_bytes_field(&mut issue, 500, b"nested future field");
    push_unknown_bytes_field(&mut bytes, 1, &issue);

    let decoded = Mutation::decode(&bytes[..]).expect("unknown fields are skipped, not errors");
    // The repeated occurrence of field 1 merges into the same issue, so the
    // comment list doubles; everything else is exactly what we wrote.
    let issue = decoded.github_issue.expect("issue survives");
    assert_eq!(issue.owner, "golang");
    assert_eq!(issue.number, 7);
    assert_eq!(issue.comment.len(), 2);
    assert_eq!(issue.comment[0].body, "hello");
    assert!(decoded.git.is_none() && decoded.build.is_none());
}

#[test]
fn farm_fields_are_invisible_to_a_go_shaped_reader() {
    // A reader that only knows Go's four fields (modelled by a message with
    // just github_issue) skips a build event without error.
    #[derive(Clone, PartialEq, prost::Message)]
    struct GoMutation {
        #[prost(message, optional, tag = "1")]
        github_issue: Option<GithubIssueMutation>,
    }
    let m = Mutation {
        build: Some(farm::BuildEvent {
            meta: Some(farm::EventMeta {
                event_id: "E1".into(),
                ..Default::default()
            }),
            event: Some(farm::build_event::Event::BuildStarted(farm::BuildStarted {
                build_id: "B123456789".into(),
                machine_id: "M1".into(),
            })),
        }),
        ..sample_mutation()
    };
    let go = GoMutation::decode(m.encode_to_vec().as_slice()).expect("Go skips farm fields");
    assert_eq!(go.github_issue, m.github_issue);
}

#[test]
fn record_time_prefers_what_the_mutation_describes() {
    let mut m = sample_mutation();
    assert_eq!(record_time(&m), None);
    m.github_issue
        .as_mut()
        .expect("issue")
        .comment
        .push(GithubIssueCommentMutation {
            id: 100,
            updated: Some(Timestamp {
                seconds: 50,
                nanos: 0,
            }),
            ..Default::default()
        });
    assert_eq!(record_time(&m).map(|t| t.seconds), Some(50));
    m.github_issue.as_mut().expect("issue").updated = Some(Timestamp {
        seconds: 70,
        nanos: 0,
    });
    assert_eq!(record_time(&m).map(|t| t.seconds), Some(70));

    let raw = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
author A <a@example.com> 1483228800 +0100\n\
committer C <c@example.com> 1483232400 -0700\n\
\n\
committer 12 +0000 is in the message, not the header\n";
    let commit = GitCommit {
        sha1: "0".repeat(40),
        raw: raw.to_vec().into(),
        diff_tree: None,
    };
    assert_eq!(commit_time(&commit).map(|t| t.seconds), Some(1483232400));
    let git = Mutation {
        git: Some(GitMutation {
            repo: None,
            commit: Some(commit),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(record_time(&git).map(|t| t.seconds), Some(1483232400));
    assert_eq!(describe(&git), format!("git  {}", "0".repeat(40)));
    assert_eq!(describe(&sample_mutation()), "github_issue golang/go#7");
    assert_eq!(describe(&Mutation::default()), "empty");
}

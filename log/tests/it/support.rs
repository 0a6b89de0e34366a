//! Shared helpers: realistic mutations, directories, reading everything.

use std::path::{Path, PathBuf};

use almanac_log::{Log, Options, Position, Snapshot};
use almanac_proto::pb::maintpb::{
    GithubIssueCommentMutation, GithubIssueMutation, GithubUser, Mutation,
};
use bytes::Bytes;
use prost::Message as _;

/// A GitHub comment mutation of about 300 bytes, distinct for each `i`.
pub(crate) fn comment_mutation(i: u64) -> Mutation {
    let ts = prost_types::Timestamp {
        seconds: 1_500_000_000 + i as i64,
        nanos: 0,
    };
    Mutation {
        github_issue: Some(GithubIssueMutation {
            owner: "golang".into(),
            repo: "go".into(),
            number: (i % 50_000) as i32 + 1,
            comment: vec![GithubIssueCommentMutation {
                id: 1_000_000 + i as i64,
                user: Some(GithubUser {
                    id: 4242,
                    login: "gopher".into(),
                }),
                body: format!(
                    "Comment {i}: I can reproduce this on linux/amd64 with tip; the test \
                     times out after 10m in TestSomethingLong. Bisecting now, will report \
                     back with the culprit commit."
                ),
                created: Some(ts),
                updated: Some(ts),
            }],
            updated: Some(ts),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The encoded form of [`comment_mutation`].
pub(crate) fn payload(i: u64) -> Bytes {
    Bytes::from(comment_mutation(i).encode_to_vec())
}

/// Options with small segments, so tests cross seals quickly.
pub(crate) fn small_segments(target: u64) -> Options {
    Options {
        segment_target_len: target,
        ..Options::default()
    }
}

/// Opens a log, panicking with the error on failure.
pub(crate) fn open(dir: &Path, opts: Options) -> Log {
    let (log, _) = Log::open(dir, opts).expect("log opens");
    log
}

/// Every payload of the log in `dir`, read through a directory snapshot.
pub(crate) fn read_all(dir: &Path) -> Vec<Bytes> {
    let snap = Snapshot::open(dir).expect("snapshot");
    snap.read_from(Position(0))
        .expect("reader")
        .map(|r| r.expect("record").payload)
        .collect()
}

/// Path of the shared Go fixtures.
pub(crate) fn go_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/go")
        .join(name)
}

/// The names of the segment files in `dir`, sorted.
pub(crate) fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mutlog"))
        .collect();
    names.sort();
    names
}

/// Records of a single segment file, parsed with the framing module alone.
pub(crate) fn parse_segment(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut off = 0usize;
    loop {
        match almanac_log::framing::parse(&bytes[off..], off as u64).expect("well framed") {
            almanac_log::framing::Frame::Record {
                header_len,
                payload_len,
            } => {
                out.push(bytes[off + header_len..off + header_len + payload_len].to_vec());
                off += header_len + payload_len;
            }
            almanac_log::framing::Frame::Incomplete { .. } => {
                assert_eq!(off, bytes.len(), "segment ends inside a record");
                return out;
            }
        }
    }
}
